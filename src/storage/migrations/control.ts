import { type Kysely, type Migration } from 'kysely';
import { tenantHandoverControlMigration, tenantKeysControlMigration } from '../../crypto/tenant-keys.js';
import { accountsMigration } from '../../identity/accounts.migrations.js';
import { oneTimeKeysMigration } from '../../identity/one-time-keys.js';
import { secondFactorMigration } from '../../identity/second-factor.js';
import { ledgerMigration, ledgerOriginMigration } from '../../ledger/ledger.migrations.js';
import { mailQueueMigration } from '../../mail/mail.migrations.js';
import { e2eSealedKeyNullableMigration, transfersControlMigration } from '../../transfers/transfers.migrations.js';

/** Control-database migrations: forward only, never edited once released. */
export const controlMigrations: Record<string, Migration> = {
  '0001_platform': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('resellers')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(200)', (c) => c.notNull().unique())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('tenants')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(200)', (c) => c.notNull().unique())
        .addColumn('reseller_id', 'varchar(36)', (c) => c.references('resellers.id'))
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('licence_ends_at', 'varchar(32)')
        .addColumn('database_name', 'varchar(63)', (c) => c.notNull().unique())
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('tenants_reseller_idx').on('tenants').column('reseller_id').execute();
      await db.schema
        .createTable('tenant_db_credentials')
        .addColumn('tenant_id', 'varchar(36)', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
        .addColumn('role_name', 'varchar(63)', (c) => c.notNull())
        .addColumn('sealed_password', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('accounts')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('login', 'varchar(254)', (c) => c.notNull().unique())
        .addColumn('tier', 'varchar(16)', (c) => c.notNull())
        .addColumn('reseller_id', 'varchar(36)', (c) => c.references('resellers.id'))
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('must_change_password', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('sessions')
        .addColumn('id_hash', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('account_id', 'varchar(36)', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
        .addColumn('last_seen_at', 'varchar(32)', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('deletion_reports')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('tenant_id', 'varchar(36)', (c) => c.notNull())
        .addColumn('reason', 'varchar(32)', (c) => c.notNull())
        .addColumn('report', 'text', (c) => c.notNull())
        .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
        .execute();
    },
  },
  '0002_ledger': ledgerMigration,
  '0003_one_time_keys': oneTimeKeysMigration,
  '0004_second_factor': secondFactorMigration,
  '0005_accounts': accountsMigration,
  '0006_tenant_keys': tenantKeysControlMigration,
  '0007_transfers': transfersControlMigration,
  '0008_ledger_origin': ledgerOriginMigration,
  '0009_e2e_sealed_key_nullable': e2eSealedKeyNullableMigration,
  '0010_tenant_handover': tenantHandoverControlMigration,
  '0011_mail_queue': mailQueueMigration,
};

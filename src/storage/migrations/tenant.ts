import type { Kysely, Migration } from 'kysely';
import { activationBindingTenantMigration, keyWrapsTenantMigration } from '../../crypto/tenant-keys.js';
import { blindIndexPlanMigration, bookKeysMigration } from '../../records/collection.js';
import { contactsMigration, contactsSpec } from '../../records/contacts.js';
import { jobsMigration, jobsSpec } from '../../records/jobs.js';
import { grantsMigration } from '../../identity/grants.js';
import { ledgerMigration, ledgerOriginMigration } from '../../ledger/ledger.migrations.js';
import { fileRequestsTenantMigration, purgedAddressChecksMigration, transferDownloadAccountMigration, transferManifestMigration, transfersTenantMigration } from '../../transfers/transfers.migrations.js';

/** Migrations applied to every tenant database: forward only. */
export const tenantMigrations: Record<string, Migration> = {
  '0001_tenant_meta': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('tenant_meta')
        .addColumn('key', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0002_ledger': ledgerMigration,
  '0003_key_wraps': keyWrapsTenantMigration,
  '0004_contacts': contactsMigration,
  '0005_grants': grantsMigration,
  '0006_jobs': jobsMigration,
  '0007_transfers': transfersTenantMigration,
  '0008_ledger_origin': ledgerOriginMigration,
  '0009_file_requests': fileRequestsTenantMigration,
  '0010_transfer_download_account': transferDownloadAccountMigration,
  '0011_blind_index_plans': blindIndexPlanMigration([contactsSpec, jobsSpec]),
  '0012_book_keys': bookKeysMigration,
  '0013_activation_binding': activationBindingTenantMigration,
  '0014_transfer_manifest': transferManifestMigration,
  '0015_purged_address_checks': purgedAddressChecksMigration,
};

import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Accounts of every tier (identity issue): tenant, external and guest accounts live in the control
 * database beside operator and reseller accounts, because a login must be unique across the platform
 * before its tenant is known. They hold only what authentication needs (login e-mail, role, hashes);
 * personal data of a tenant's customers never comes here. Deleting a tenant deletes its accounts.
 */
export interface PasswordHistoryTable {
  account_id: string;
  password_hash: string;
  created_at: string;
}

export interface TenantPolicyTable {
  tenant_id: string;
  /** JSON of `PasswordPolicy`. */
  policy: string;
  updated_at: string;
}

export const accountsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('accounts').addColumn('tenant_id', 'varchar(36)', (c) => c.references('tenants.id').onDelete('cascade')).execute();
    await db.schema.alterTable('accounts').addColumn('role', 'varchar(32)').execute();
    await db.schema.alterTable('accounts').addColumn('language', 'varchar(2)').execute();
    await db.schema.alterTable('accounts').addColumn('password_changed_at', 'varchar(32)').execute();
    await sql`UPDATE accounts SET role = tier, password_changed_at = created_at`.execute(db);
    await db.schema.createIndex('accounts_tenant_idx').on('accounts').column('tenant_id').execute();
    await db.schema
      .createTable('password_history')
      .addColumn('account_id', 'varchar(36)', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('password_history_account_idx').on('password_history').column('account_id').execute();
    await db.schema
      .createTable('tenant_policies')
      .addColumn('tenant_id', 'varchar(36)', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
      .addColumn('policy', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    // Sessions: how the id travels (a cookie session is never accepted as a bearer token, so the replay
    // lock cannot be side-stepped), the request-token counter of the replay lock, and what is pending.
    await db.schema.alterTable('sessions').addColumn('kind', 'varchar(8)', (c) => c.notNull().defaultTo('token')).execute();
    await db.schema.alterTable('sessions').addColumn('request_counter', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.alterTable('sessions').addColumn('grace_until', 'varchar(32)').execute();
    await db.schema.alterTable('sessions').addColumn('grace_used', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.alterTable('sessions').addColumn('locked_at', 'varchar(32)').execute();
    await db.schema.alterTable('sessions').addColumn('pending', 'varchar(64)', (c) => c.notNull().defaultTo('')).execute();
  },
};

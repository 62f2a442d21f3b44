import type { Kysely, Migration } from 'kysely';

/**
 * Grants (S2.2): a data user gives an external account (technician, control centre, authority) access to
 * a scope — the shared address book, or chosen contacts — until an end time. The grantee gets a copy of the
 * tenant secret wrapped to its key for that grant only; the server limits it to the scope, checks the grant
 * on every request (so access ends in a live session too) and destroys the copy when the grant expires or
 * is revoked.
 */
export interface GrantTable {
  id: string;
  grantee_id: string;
  /** Which collection: `contacts` (the shared address book) or `jobs`. */
  collection: string;
  /** JSON: null for the whole collection, or a list of record ids. */
  record_ids: string | null;
  expires_at: string;
  created_by: string;
  created_at: string;
  ended_at: string | null;
  end_reason: string | null;
}

export const grantsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('grants')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('grantee_id', 'varchar(36)', (c) => c.notNull())
      .addColumn('collection', 'varchar(32)', (c) => c.notNull())
      .addColumn('record_ids', 'text')
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(36)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('ended_at', 'varchar(32)')
      .addColumn('end_reason', 'varchar(16)')
      .execute();
    await db.schema.createIndex('grants_grantee_idx').on('grants').columns(['grantee_id', 'expires_at']).execute();
  },
};

export interface GrantView {
  id: string;
  granteeId: string;
  collection: string;
  recordIds: string[] | null;
  expiresAt: string;
  createdBy: string;
  createdAt: string;
  endedAt: string | null;
  endReason: string | null;
}

export const grantView = (g: GrantTable): GrantView => ({
  id: g.id,
  granteeId: g.grantee_id,
  collection: g.collection,
  recordIds: g.record_ids === null ? null : (JSON.parse(g.record_ids) as string[]),
  expiresAt: g.expires_at,
  createdBy: g.created_by,
  createdAt: g.created_at,
  endedAt: g.ended_at,
  endReason: g.end_reason,
});

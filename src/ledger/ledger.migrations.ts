import type { Kysely, Migration } from 'kysely';

/** The ledger's tables, created in the control database (platform ledger) and in every tenant database. */
export const ledgerMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('ledger_head')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('tree_size', 'integer', (c) => c.notNull())
      .addColumn('compact_range', 'text', (c) => c.notNull())
      .execute();
    await (db as Kysely<LedgerSchema>).insertInto('ledger_head').values({ id: 1, tree_size: 0, compact_range: '[]' }).execute();
    await db.schema
      .createTable('ledger_entries')
      .addColumn('seq', 'integer', (c) => c.primaryKey())
      .addColumn('time', 'varchar(32)', (c) => c.notNull())
      .addColumn('actor', 'varchar(512)', (c) => c.notNull())
      .addColumn('action', 'varchar(512)', (c) => c.notNull())
      .addColumn('resource', 'varchar(512)', (c) => c.notNull())
      .addColumn('outcome', 'varchar(16)', (c) => c.notNull())
      .addColumn('entry', 'text', (c) => c.notNull())
      .addColumn('leaf_hash', 'varchar(64)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('ledger_entries_time_idx').on('ledger_entries').column('time').execute();
    await db.schema.createIndex('ledger_entries_actor_idx').on('ledger_entries').column('actor').execute();
    await db.schema
      .createTable('ledger_nodes')
      .addColumn('level', 'integer', (c) => c.notNull())
      .addColumn('idx', 'integer', (c) => c.notNull())
      .addColumn('hash', 'varchar(64)', (c) => c.notNull())
      .addPrimaryKeyConstraint('ledger_nodes_pk', ['level', 'idx'])
      .execute();
    await db.schema
      .createTable('ledger_payloads')
      .addColumn('seq', 'integer', (c) => c.primaryKey())
      .addColumn('salt', 'varchar(64)', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('ledger_payloads_expiry_idx').on('ledger_payloads').column('expires_at').execute();
    await db.schema
      .createTable('ledger_checkpoints')
      .addColumn('tree_size', 'integer', (c) => c.primaryKey())
      .addColumn('root_hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('time', 'varchar(32)', (c) => c.notNull())
      .addColumn('note', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('ledger_keys')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('sealed_private_key', 'text', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .execute();
  },
};

export interface LedgerSchema {
  /** `origin`: the checkpoint origin, pinned when the ledger is first opened (null before). */
  ledger_head: { id: number; tree_size: number; compact_range: string; origin: string | null };
  ledger_entries: {
    seq: number;
    time: string;
    actor: string;
    action: string;
    resource: string;
    outcome: string;
    entry: string;
    leaf_hash: string;
  };
  ledger_nodes: { level: number; idx: number; hash: string };
  ledger_payloads: { seq: number; salt: string; payload: string; expires_at: string };
  ledger_checkpoints: { tree_size: number; root_hash: string; time: string; note: string };
  ledger_keys: { id: number; public_key: string; sealed_private_key: string; created_at: string };
}

/**
 * The checkpoint origin is pinned in the ledger itself when it is first opened: witnesses keep checkpoints
 * by origin, so a later change of `server.public_url` must not change it.
 */
export const ledgerOriginMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('ledger_head').addColumn('origin', 'varchar(512)').execute();
  },
};

import { sql, SqliteAdapter, type Kysely, type Migration } from 'kysely';

/**
 * Tables of the secure exchange (docs/transfers.md). In each tenant database: transfers, their files
 * (ciphertext blobs live on disk), recipients, end-to-end key wraps and download tokens. In the control
 * database: people's SecuPass-protected key pairs and the index from a recipient link to its tenant.
 */
export interface TransferTable {
  id: string;
  sender_id: string;
  level: number;
  /** Subject and (levels 1–3) message, AES-256-GCM under the transfer key K_tr. */
  subject_ct: string;
  message_ct: string | null;
  language: string;
  /** K_tr wrapped under a key derived from the tenant data key of `key_version`. */
  key_wrap: string | null;
  key_version: number;
  download_limit: number | null;
  created_at: string;
  expires_at: string;
  sent_at: string | null;
  withdrawn_at: string | null;
  /** Set once blobs and key material are gone (withdrawn or expired). */
  deleted_at: string | null;
}

export interface TransferFileTable {
  id: string;
  transfer_id: string;
  idx: number;
  /** `file`, or `bundle` (level 4: the end-to-end encrypted message and file names). */
  kind: string;
  /** The file name under K_tr (levels 1–3); null for level 4 and for the bundle. */
  name_ct: string | null;
  size: number;
  cipher_size: number;
  received: number;
  /** Levels 1–2: the file key under K_tr. */
  file_key_ct: string | null;
  /**
   * The sender's list of SHA-256 digests of the plaintext, one per 8 MiB, end-to-end encrypted under the
   * file key (set before the first byte of the file arrives). After an interruption the sender's browser
   * checks a file chosen again against the whole of it before encrypting anything a second time.
   */
  manifest: string | null;
}

export interface TransferRecipientTable {
  id: string;
  transfer_id: string;
  idx: number;
  email_ct: string;
  /** HMAC of the normalised address under a key derived from the link secret (the level-1 check). */
  email_check: string | null;
  /** SHA-256 of the link secret. */
  secret_hash: string | null;
  /** K_tr wrapped under a key derived from the link secret. */
  key_wrap: string | null;
  state: string;
  /** JSON: downloads per file id. */
  downloads: string;
  opened_at: string | null;
  downloaded_at: string | null;
  /** Levels 3–4: the fingerprint the file keys are wrapped to, and the state of that. */
  key_fingerprint: string | null;
  key_state: string;
  pending_fingerprint: string | null;
}

export interface TransferWrapTable {
  id: string;
  transfer_id: string;
  file_id: string;
  /** `sender` or a recipient id. */
  holder: string;
  fingerprint: string;
  wrapped: string;
}

export interface TransferDownloadTable {
  token_hash: string;
  recipient_id: string;
  transfer_id: string;
  /** K_tr under a key derived from the download token. */
  key_wrap: string;
  expires_at: string;
  /** Levels 2–4: the account that opened the link; the token works only in a session of that account. */
  account_id: string | null;
}

/**
 * A "request files" link (S4): an outsider uploads to the member who made it. Its key K_req is wrapped
 * under the tenant data key (for the member) and under the link secret (for the outsider); transfers
 * uploaded through it have their K_tr wrapped under K_req.
 */
export interface FileRequestTable {
  id: string;
  owner_id: string;
  level: number;
  message_ct: string | null;
  key_wrap: string | null;
  key_version: number;
  link_wrap: string | null;
  secret_hash: string | null;
  owner_fingerprint: string | null;
  language: string;
  expires_at: string;
  created_at: string;
  closed_at: string | null;
  uploads: number;
}

export interface TransferSchema {
  file_requests: FileRequestTable;
  transfers: TransferTable & { request_id: string | null; from_ct: string | null };
  transfer_files: TransferFileTable;
  transfer_recipients: TransferRecipientTable;
  transfer_wraps: TransferWrapTable;
  transfer_downloads: TransferDownloadTable;
}

export interface E2eKeyTable {
  id: string;
  account_id: string;
  public_key: string;
  fingerprint: string;
  /** The private key sealed under the SecuPass key; null once the key is replaced (a reset wipes it). */
  sealed_private_key: string | null;
  created_at: string;
  replaced_at: string | null;
}

export interface TransferIndexTable {
  recipient_id: string;
  tenant_id: string;
}

export interface TransferControlSchema {
  e2e_keys: E2eKeyTable;
  transfer_index: TransferIndexTable;
}

export const transfersTenantMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('transfers')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('sender_id', 'varchar(36)', (c) => c.notNull())
      .addColumn('level', 'integer', (c) => c.notNull())
      .addColumn('subject_ct', 'text', (c) => c.notNull())
      .addColumn('message_ct', 'text')
      .addColumn('language', 'varchar(2)', (c) => c.notNull())
      .addColumn('key_wrap', 'text')
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('download_limit', 'integer')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('sent_at', 'varchar(32)')
      .addColumn('withdrawn_at', 'varchar(32)')
      .addColumn('deleted_at', 'varchar(32)')
      .execute();
    await db.schema.createIndex('transfers_sender_idx').on('transfers').columns(['sender_id', 'created_at']).execute();
    await db.schema.createIndex('transfers_expiry_idx').on('transfers').columns(['deleted_at', 'expires_at']).execute();
    await db.schema
      .createTable('transfer_files')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('transfer_id', 'varchar(36)', (c) => c.notNull().references('transfers.id').onDelete('cascade'))
      .addColumn('idx', 'integer', (c) => c.notNull())
      .addColumn('kind', 'varchar(8)', (c) => c.notNull())
      .addColumn('name_ct', 'text')
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('cipher_size', 'bigint', (c) => c.notNull())
      .addColumn('received', 'bigint', (c) => c.notNull())
      .addColumn('file_key_ct', 'text')
      .execute();
    await db.schema.createIndex('transfer_files_transfer_idx').on('transfer_files').column('transfer_id').execute();
    await db.schema
      .createTable('transfer_recipients')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('transfer_id', 'varchar(36)', (c) => c.notNull().references('transfers.id').onDelete('cascade'))
      .addColumn('idx', 'integer', (c) => c.notNull())
      .addColumn('email_ct', 'text', (c) => c.notNull())
      .addColumn('email_check', 'varchar(64)')
      .addColumn('secret_hash', 'varchar(64)')
      .addColumn('key_wrap', 'text')
      .addColumn('state', 'varchar(16)', (c) => c.notNull())
      .addColumn('downloads', 'text', (c) => c.notNull())
      .addColumn('opened_at', 'varchar(32)')
      .addColumn('downloaded_at', 'varchar(32)')
      .addColumn('key_fingerprint', 'varchar(80)')
      .addColumn('key_state', 'varchar(16)', (c) => c.notNull())
      .addColumn('pending_fingerprint', 'varchar(80)')
      .execute();
    await db.schema.createIndex('transfer_recipients_transfer_idx').on('transfer_recipients').column('transfer_id').execute();
    await db.schema.createIndex('transfer_recipients_fp_idx').on('transfer_recipients').column('key_fingerprint').execute();
    await db.schema
      .createTable('transfer_wraps')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('transfer_id', 'varchar(36)', (c) => c.notNull().references('transfers.id').onDelete('cascade'))
      .addColumn('file_id', 'varchar(36)', (c) => c.notNull())
      .addColumn('holder', 'varchar(36)', (c) => c.notNull())
      .addColumn('fingerprint', 'varchar(80)', (c) => c.notNull())
      .addColumn('wrapped', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('transfer_wraps_holder_idx').on('transfer_wraps').columns(['transfer_id', 'holder']).execute();
    await db.schema.createIndex('transfer_wraps_fp_idx').on('transfer_wraps').column('fingerprint').execute();
    await db.schema
      .createTable('transfer_downloads')
      .addColumn('token_hash', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('recipient_id', 'varchar(36)', (c) => c.notNull())
      .addColumn('transfer_id', 'varchar(36)', (c) => c.notNull().references('transfers.id').onDelete('cascade'))
      .addColumn('key_wrap', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .execute();
  },
};

export const transfersControlMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('e2e_keys')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('account_id', 'varchar(36)', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'varchar(80)', (c) => c.notNull())
      .addColumn('sealed_private_key', 'text', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('replaced_at', 'varchar(32)')
      .execute();
    await db.schema.createIndex('e2e_keys_account_idx').on('e2e_keys').columns(['account_id', 'replaced_at']).execute();
    await db.schema
      .createTable('transfer_index')
      .addColumn('recipient_id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('tenant_id', 'varchar(36)', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .execute();
  },
};

export const fileRequestsTenantMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('file_requests')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('owner_id', 'varchar(36)', (c) => c.notNull())
      .addColumn('level', 'integer', (c) => c.notNull())
      .addColumn('message_ct', 'text')
      .addColumn('key_wrap', 'text')
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('link_wrap', 'text')
      .addColumn('secret_hash', 'varchar(64)')
      .addColumn('owner_fingerprint', 'varchar(80)')
      .addColumn('language', 'varchar(2)', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('closed_at', 'varchar(32)')
      .addColumn('uploads', 'integer', (c) => c.notNull())
      .execute();
    await db.schema.alterTable('transfers').addColumn('request_id', 'varchar(36)').execute();
    await db.schema.alterTable('transfers').addColumn('from_ct', 'text').execute();
  },
};

/** Binds a download token to the account that opened the link (levels 2–4: no download without that login). */
export const transferDownloadAccountMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('transfer_downloads').addColumn('account_id', 'varchar(36)').execute();
  },
};

/**
 * A replaced SecuPass key keeps its row (fingerprint, dates) but loses its sealed private key, so a reset
 * really makes the data sent for it unreadable: `sealed_private_key` becomes nullable. SQLite cannot drop a
 * NOT NULL constraint, so there the table is rebuilt; PostgreSQL alters the column.
 */
export const e2eSealedKeyNullableMigration: Migration = {
  async up(db: Kysely<unknown>) {
    if (!(db.getExecutor().adapter instanceof SqliteAdapter)) {
      await db.schema.alterTable('e2e_keys').alterColumn('sealed_private_key', (c) => c.dropNotNull()).execute();
      await sql`UPDATE e2e_keys SET sealed_private_key = NULL WHERE replaced_at IS NOT NULL`.execute(db);
      return;
    }
    await db.schema
      .createTable('e2e_keys_next')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('account_id', 'varchar(36)', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
      .addColumn('public_key', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'varchar(80)', (c) => c.notNull())
      .addColumn('sealed_private_key', 'text')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('replaced_at', 'varchar(32)')
      .execute();
    await sql`INSERT INTO e2e_keys_next (id, account_id, public_key, fingerprint, sealed_private_key, created_at, replaced_at)
      SELECT id, account_id, public_key, fingerprint, CASE WHEN replaced_at IS NULL THEN sealed_private_key END, created_at, replaced_at FROM e2e_keys`.execute(db);
    await db.schema.dropTable('e2e_keys').execute();
    await db.schema.alterTable('e2e_keys_next').renameTo('e2e_keys').execute();
    await db.schema.createIndex('e2e_keys_account_idx').on('e2e_keys').columns(['account_id', 'replaced_at']).execute();
  },
};

/** The sender's encrypted digest list per file, for uploads that go on after a page reload (see TransferFileTable.manifest). */
export const transferManifestMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('transfer_files').addColumn('manifest', 'text').execute();
  },
};

/**
 * Withdrawals and expiries before this version left each recipient's level-1 address check (an HMAC of the
 * address under the link secret) behind; purging now clears it with the link key, and this clears what earlier
 * purges left.
 */
export const purgedAddressChecksMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`UPDATE transfer_recipients SET email_check = NULL WHERE email_check IS NOT NULL AND transfer_id IN (SELECT id FROM transfers WHERE deleted_at IS NOT NULL)`.execute(db);
  },
};

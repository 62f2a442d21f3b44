import type { Kysely, Migration } from 'kysely';

/**
 * The outbound mail queue (control database). Each message waits here until the relay accepts it:
 * recipient, subject and body are personal data and carry one-time keys, so they are stored only sealed
 * under the master key (AAD `mail-queue|<id>`). What stays in clear is what an operator needs to run the
 * queue: the template kind, attempts, the next attempt and the last error code (never an address).
 */
export interface MailQueueTable {
  id: string;
  /** The template (`invitation`, `password-reset`, …): no personal data. */
  kind: string;
  /** JSON `{ to, subject, text }` sealed under the master key. */
  sealed_message: string;
  attempts: number;
  /** ISO 8601 (UTC); also the lease while one node is delivering it. */
  next_attempt_at: string;
  created_at: string;
  /** A stable error code (`ECONNECTION`, `SMTP_451`, …), never a relay message: those may quote the address. */
  last_error_code: string | null;
}

export interface MailSchema {
  mail_queue: MailQueueTable;
}

export const mailQueueMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('mail_queue')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('kind', 'varchar(40)', (c) => c.notNull())
      .addColumn('sealed_message', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('last_error_code', 'varchar(40)')
      .execute();
    await db.schema.createIndex('mail_queue_due_idx').on('mail_queue').column('next_attempt_at').execute();
  },
};

import type { Kysely } from 'kysely';
import type { MailQueueTable, MailSchema } from './mail.migrations.js';

/** The only code that touches `mail_queue`. */
export interface MailQueueRepo {
  insert(row: MailQueueTable): Promise<void>;
  /** Rows whose next attempt is due, oldest first. */
  due(now: string, limit: number): Promise<MailQueueTable[]>;
  /**
   * Takes a due row for one delivery attempt: moves its next attempt to `leaseUntil` only if nobody else
   * did meanwhile (compare-and-set), so two nodes never deliver the same row at once.
   */
  claim(id: string, seenNextAttemptAt: string, leaseUntil: string): Promise<boolean>;
  failed(id: string, update: { attempts: number; next_attempt_at: string; last_error_code: string }): Promise<void>;
  remove(id: string): Promise<void>;
  list(): Promise<Omit<MailQueueTable, 'sealed_message'>[]>;
  /** Makes every row that waits for its backoff due at `now`; rows in their first attempt are left alone. */
  makeDue(now: string): Promise<number>;
}

export function createMailQueueRepo(db: Kysely<MailSchema>): MailQueueRepo {
  return {
    async insert(row) {
      await db.insertInto('mail_queue').values(row).execute();
    },
    async due(now, limit) {
      return db.selectFrom('mail_queue').selectAll().where('next_attempt_at', '<=', now).orderBy('next_attempt_at').orderBy('id').limit(limit).execute();
    },
    async claim(id, seenNextAttemptAt, leaseUntil) {
      const r = await db.updateTable('mail_queue').set({ next_attempt_at: leaseUntil }).where('id', '=', id).where('next_attempt_at', '=', seenNextAttemptAt).executeTakeFirst();
      return Number(r.numUpdatedRows) === 1;
    },
    async failed(id, update) {
      await db.updateTable('mail_queue').set(update).where('id', '=', id).execute();
    },
    async remove(id) {
      await db.deleteFrom('mail_queue').where('id', '=', id).execute();
    },
    async list() {
      return db.selectFrom('mail_queue').select(['id', 'kind', 'attempts', 'next_attempt_at', 'created_at', 'last_error_code']).orderBy('created_at').orderBy('id').execute();
    },
    async makeDue(now) {
      const r = await db.updateTable('mail_queue').set({ next_attempt_at: now }).where('attempts', '>', 0).where('next_attempt_at', '>', now).executeTakeFirst();
      return Number(r.numUpdatedRows);
    },
  };
}

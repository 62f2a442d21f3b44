import type { Kysely, Migration } from 'kysely';
import { randomToken, sha256Hex } from '../crypto/random.js';
import type { Ledger } from '../ledger/index.js';
import { DomainError } from '../shared/errors.js';

/**
 * One-time access keys (S2.7, DESIGN §3): 256 bits from the CSPRNG, returned once, stored only as
 * SHA-256, bound to one purpose and one subject, expiring, and usable exactly once. A second use is
 * refused and recorded as a security event.
 */
export type OneTimeKeyPurpose = 'invite' | 'password-reset' | 'external-access' | 'download';

export interface OneTimeKeyTable {
  key_hash: string;
  purpose: string;
  subject: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export const oneTimeKeysMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('one_time_keys')
      .addColumn('key_hash', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('purpose', 'varchar(32)', (c) => c.notNull())
      .addColumn('subject', 'varchar(64)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('used_at', 'varchar(32)')
      .execute();
  },
};

export class OneTimeKeyError extends DomainError {
  constructor() {
    // One message for unknown, expired, used and wrong-purpose keys: a probe learns nothing.
    super('UNAUTHENTICATED', 'this link is not valid (any more); ask for a new one');
  }
}

export function createOneTimeKeys(deps: {
  db: Kysely<{ one_time_keys: OneTimeKeyTable }>;
  ledger: Pick<Ledger, 'append'>;
  clock: { now(): Date };
}) {
  const { db, ledger, clock } = deps;
  return {
    async issue(purpose: OneTimeKeyPurpose, subject: string, ttlMs: number): Promise<{ key: string; expiresAt: string }> {
      const key = randomToken(32);
      const now = clock.now();
      const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
      await db
        .insertInto('one_time_keys')
        .values({ key_hash: sha256Hex(key), purpose, subject, created_at: now.toISOString(), expires_at: expiresAt, used_at: null })
        .execute();
      await ledger.append({ actor: { tier: 'system', role: 'identity', id: 'identity' }, action: 'onetime-key.issue', resource: { type: purpose, id: subject }, outcome: 'success' });
      return { key, expiresAt };
    },

    /** The subject of a still-usable key, without using it (to validate input before the key is spent). */
    async peek(key: string, purpose: OneTimeKeyPurpose): Promise<string | undefined> {
      const row = await db.selectFrom('one_time_keys').selectAll().where('key_hash', '=', sha256Hex(key)).executeTakeFirst();
      return row && row.purpose === purpose && row.used_at === null && row.expires_at > clock.now().toISOString() ? row.subject : undefined;
    },

    /** Marks the key used and returns its subject; the conditional update makes two racing uses yield one winner. */
    async consume(key: string, purpose: OneTimeKeyPurpose): Promise<string> {
      const keyHash = sha256Hex(key);
      const now = clock.now().toISOString();
      const row = await db.selectFrom('one_time_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
      const usable = row && row.purpose === purpose && row.used_at === null && row.expires_at > now;
      if (usable) {
        const result = await db
          .updateTable('one_time_keys')
          .set({ used_at: now })
          .where('key_hash', '=', keyHash)
          .where('used_at', 'is', null)
          .executeTakeFirst();
        if (Number(result.numUpdatedRows) === 1) {
          await ledger.append({ actor: { tier: 'anonymous', role: 'key-holder', id: row.subject }, action: 'onetime-key.use', resource: { type: purpose, id: row.subject }, outcome: 'success' });
          return row.subject;
        }
      }
      await ledger.append({
        actor: { tier: 'anonymous', role: 'key-holder', id: row?.subject ?? 'unknown' },
        action: row?.used_at ? 'onetime-key.reuse' : 'onetime-key.use',
        resource: { type: row?.purpose ?? 'unknown', id: row?.subject },
        outcome: 'denied',
      });
      throw new OneTimeKeyError();
    },
  };
}

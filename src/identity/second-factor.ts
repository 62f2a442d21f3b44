import { randomBytes } from 'node:crypto';
import type { Kysely, Migration } from 'kysely';
import { Secret, TOTP } from 'otpauth';
import type { CipherService } from '../crypto/cipher-service.js';
import { randomPassword, sha256Hex } from '../crypto/random.js';
import { ConflictError, DomainError, ValidationError } from '../shared/errors.js';

/**
 * TOTP second factor (RFC 6238: 30 s steps, 6 digits, HMAC-SHA-1 — what authenticator apps support;
 * HMAC-SHA-1 is not affected by SHA-1 collisions) with ten single-use recovery codes. The TOTP secret is
 * stored sealed under the master key; recovery codes only as hashes. A code is accepted once: the last
 * used time step is remembered, so a code seen over someone's shoulder cannot be replayed.
 */
export interface SecondFactorTable {
  account_id: string;
  sealed_secret: string;
  enabled_at: string | null;
  last_step: number;
}

export interface RecoveryCodeTable {
  account_id: string;
  code_hash: string;
  used_at: string | null;
}

export const secondFactorMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('second_factors')
      .addColumn('account_id', 'varchar(36)', (c) => c.primaryKey().references('accounts.id').onDelete('cascade'))
      .addColumn('sealed_secret', 'text', (c) => c.notNull())
      .addColumn('enabled_at', 'varchar(32)')
      .addColumn('last_step', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .createTable('recovery_codes')
      .addColumn('account_id', 'varchar(36)', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
      .addColumn('code_hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('used_at', 'varchar(32)')
      .addPrimaryKeyConstraint('recovery_codes_pk', ['account_id', 'code_hash'])
      .execute();
  },
};

export class SecondFactorRequiredError extends DomainError {
  constructor() {
    super('SECOND_FACTOR_REQUIRED', 'enter the 6-digit code from your authenticator app (or a recovery code) as "otp"');
  }
}

const PERIOD_S = 30;

export function createSecondFactors(deps: {
  db: Kysely<{ second_factors: SecondFactorTable; recovery_codes: RecoveryCodeTable }>;
  masterKey: CipherService;
  clock: { now(): Date };
  issuer: string;
}) {
  const { db, masterKey, clock } = deps;
  const aad = (accountId: string) => `totp|${accountId}`;
  const totpFor = (secret: Secret, label: string) => new TOTP({ issuer: deps.issuer, label, secret, algorithm: 'SHA1', digits: 6, period: PERIOD_S });
  const secretOf = async (row: SecondFactorTable) => Secret.fromBase32((await masterKey.open(row.sealed_secret, aad(row.account_id))).toString('utf8'));

  return {
    async isEnabled(accountId: string): Promise<boolean> {
      const row = await db.selectFrom('second_factors').select('enabled_at').where('account_id', '=', accountId).executeTakeFirst();
      return Boolean(row?.enabled_at);
    },

    /** Starts enrolment: a new secret, not yet active until `enable` sees a valid code. */
    async setup(accountId: string, label: string): Promise<{ secret: string; uri: string }> {
      const existing = await db.selectFrom('second_factors').select('enabled_at').where('account_id', '=', accountId).executeTakeFirst();
      if (existing?.enabled_at) throw new ConflictError('a second factor is already active for this account');
      const secret = new Secret({ buffer: randomBytes(20).buffer });
      const sealed = await masterKey.seal(Buffer.from(secret.base32, 'utf8'), aad(accountId));
      await db.deleteFrom('second_factors').where('account_id', '=', accountId).execute();
      await db.insertInto('second_factors').values({ account_id: accountId, sealed_secret: sealed, enabled_at: null, last_step: 0 }).execute();
      return { secret: secret.base32, uri: totpFor(secret, label).toString() };
    },

    /** Activates the pending secret with a valid code and returns ten recovery codes, shown once. */
    async enable(accountId: string, code: string): Promise<string[]> {
      const row = await db.selectFrom('second_factors').selectAll().where('account_id', '=', accountId).executeTakeFirst();
      if (!row || row.enabled_at) throw new ConflictError('start the set-up first (POST /api/v1/auth/totp/setup)');
      const step = await this.matchStep(row, code);
      if (step === undefined) throw new ValidationError('that code is not valid; check the time on your device and enter the current code');
      const codes = Array.from({ length: 10 }, () => randomPassword(12));
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('second_factors').set({ enabled_at: clock.now().toISOString(), last_step: step }).where('account_id', '=', accountId).execute();
        await trx.deleteFrom('recovery_codes').where('account_id', '=', accountId).execute();
        await trx.insertInto('recovery_codes').values(codes.map((c) => ({ account_id: accountId, code_hash: sha256Hex(c), used_at: null }))).execute();
      });
      return codes;
    },

    async matchStep(row: SecondFactorTable, code: string): Promise<number | undefined> {
      if (!/^\d{6}$/.test(code)) return undefined;
      const now = clock.now().getTime();
      const delta = TOTP.validate({ token: code, secret: await secretOf(row), algorithm: 'SHA1', digits: 6, period: PERIOD_S, timestamp: now, window: 1 });
      if (delta === null) return undefined;
      const step = Math.floor(now / 1000 / PERIOD_S) + delta;
      return step > row.last_step ? step : undefined; // each code (time step) only once
    },

    /** Removes the second factor and its recovery codes (an administrator's reset); false when there was none. */
    async remove(accountId: string): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        await trx.deleteFrom('recovery_codes').where('account_id', '=', accountId).execute();
        const removed = await trx.deleteFrom('second_factors').where('account_id', '=', accountId).executeTakeFirst();
        return Number(removed.numDeletedRows) > 0;
      });
    },

    /** Ten new recovery codes replace all earlier ones (used or not); shown once. */
    async regenerateRecoveryCodes(accountId: string): Promise<string[]> {
      const codes = Array.from({ length: 10 }, () => randomPassword(12));
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('recovery_codes').where('account_id', '=', accountId).execute();
        await trx.insertInto('recovery_codes').values(codes.map((c) => ({ account_id: accountId, code_hash: sha256Hex(c), used_at: null }))).execute();
      });
      return codes;
    },

    /** Checks a TOTP code or a recovery code for an account with an active second factor; uses it up. */
    async verify(accountId: string, otp: string): Promise<boolean> {
      const row = await db.selectFrom('second_factors').selectAll().where('account_id', '=', accountId).executeTakeFirst();
      if (!row?.enabled_at) return true;
      const step = await this.matchStep(row, otp.trim());
      if (step !== undefined) {
        const updated = await db
          .updateTable('second_factors')
          .set({ last_step: step })
          .where('account_id', '=', accountId)
          .where('last_step', '<', step)
          .executeTakeFirst();
        return Number(updated.numUpdatedRows) === 1;
      }
      const used = await db
        .updateTable('recovery_codes')
        .set({ used_at: clock.now().toISOString() })
        .where('account_id', '=', accountId)
        .where('code_hash', '=', sha256Hex(otp.trim()))
        .where('used_at', 'is', null)
        .executeTakeFirst();
      return Number(used.numUpdatedRows) === 1;
    },
  };
}

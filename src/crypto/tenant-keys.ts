import { createHmac, randomBytes } from 'node:crypto';
import type { Kysely, Migration } from 'kysely';
import { constantTimeEqual, sha256Hex } from './random.js';
import { hkdf32, KeyError, unwrapWithKey, unwrapWithPrivateKey, wrapForPublicKey, wrapWithKey } from './envelope.js';
import type { CipherService } from './cipher-service.js';
import { ConflictError } from '../shared/errors.js';

/**
 * The tenant key hierarchy of DESIGN §3.
 *
 *  - service component C_t: random 32 bytes, stored only sealed under the master key (control database);
 *  - tenant secret T_t: random 32 bytes, never stored in clear — wrapped to each data-capable account's
 *    public key and shown once, as the recovery code, to the data user who activated or rotated it;
 *  - at creation only a placeholder secret (version 0) exists, wrapped under the one-time activation key
 *    that the creator passes on; the first activation replaces it by a fresh T_t (version 1) that nobody
 *    on the administrating side ever saw, so the activation key opens nothing once data can exist;
 *  - tenant data key K_t = HKDF-SHA-256(T_t ‖ C_t, "tresor/tenant/v1").
 *
 * So the database alone, or the database with the master key, yields no K_t: T_t is missing. An account
 * without a wrapped copy (a tenant admin, the operator, a reseller) has no path to it at all. Deleting C_t
 * (tenant deletion) makes every copy of T_t useless: crypto-shredding, backups included.
 */
export interface TenantKeyTable {
  tenant_id: string;
  sealed_component: string;
  secret_version: number;
  /** HMAC(K_t, "check"): tells a right recovery code from a wrong one without storing anything usable. */
  secret_check: string;
  created_at: string;
}

/** In the tenant database: the wrapped copies of T_t. */
export interface KeyWrapTable {
  id: string;
  /**
   * `account` (to an account's public key), `grant` (to a grantee's key, for one grant), `activation`, or
   * `rotation` (the previous secret under the new data key, while records are re-encrypted), or
   * `recovery` (no key at all: a note that the account is owed the recovery code of this version, which it
   * can see once, from a session that holds the secret).
   */
  kind: 'account' | 'activation' | 'grant' | 'link' | 'recovery' | 'rotation';
  /**
   * Account id, grant id (for `grant`, and for `link`: the copy behind a grant's one-time access link,
   * wrapped under that link's key), or the SHA-256 of the activation key.
   */
  holder: string;
  wrapped: string;
  secret_version: number;
  created_at: string;
  created_by: string;
  /**
   * For an `activation` copy only: the account the activation key is bound to (the tenant's named first
   * data user), or null when whoever holds the key may activate. Also bound into the copy's AAD, so a
   * changed column makes the copy unopenable rather than usable by another account.
   */
  bound_to?: string | null;
}

export const tenantKeysControlMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('tenant_keys')
      .addColumn('tenant_id', 'varchar(36)', (c) => c.primaryKey().references('tenants.id').onDelete('cascade'))
      .addColumn('sealed_component', 'text', (c) => c.notNull())
      .addColumn('secret_version', 'integer', (c) => c.notNull())
      .addColumn('secret_check', 'varchar(64)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    // Account key pairs: the private key sealed under a key derived from the account's password.
    await db.schema.alterTable('accounts').addColumn('public_key', 'text').execute();
    await db.schema.alterTable('accounts').addColumn('sealed_private_key', 'text').execute();
    await db.schema.alterTable('accounts').addColumn('key_salt', 'varchar(64)').execute();
    // T_t for the length of a session, sealed under a key derived from the session id (only in the cookie).
    await db.schema.alterTable('sessions').addColumn('sealed_tenant_secret', 'text').execute();
  },
};

/**
 * The installer handover (S2.3) also ends the reseller staff's administration of the tenant: the policy
 * refuses installers on a tenant with `handed_over_at` set (the reseller itself keeps its rights).
 */
export const tenantHandoverControlMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('tenants').addColumn('handed_over_at', 'varchar(32)').execute();
  },
};

export const keyWrapsTenantMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('key_wraps')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('kind', 'varchar(16)', (c) => c.notNull())
      .addColumn('holder', 'varchar(64)', (c) => c.notNull())
      .addColumn('wrapped', 'text', (c) => c.notNull())
      .addColumn('secret_version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('created_by', 'varchar(64)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('key_wraps_holder_idx').on('key_wraps').columns(['holder', 'kind']).execute();
  },
};

/**
 * The activation key's binding to the tenant's named first data user (B.1): without it, whoever activates
 * first becomes the key holder, so a creator in bad faith could activate with a data seat of its own.
 */
export const activationBindingTenantMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('key_wraps').addColumn('bound_to', 'varchar(36)').execute();
  },
};

const componentAad = (tenantId: string) => `tenant-component|${tenantId}`;
/** The AAD of an activation copy: a bound copy names its account, so it opens for no other binding. */
const activationContext = (tenantId: string, version: number, boundTo: string | null | undefined) =>
  boundTo ? `${secretContext(tenantId, version)}|activation|${boundTo}` : secretContext(tenantId, version);
export const secretContext = (tenantId: string, version: number) => `tenant-secret|${tenantId}|v${version}`;

/** K_t from both halves. */
export function tenantDataKey(secret: Uint8Array, component: Uint8Array): Buffer {
  return hkdf32(Buffer.concat([secret, component]), 'tresor/tenant/v1');
}

const checkOf = (dataKey: Uint8Array) => createHmac('sha256', dataKey).update('tresor/tenant-secret-check/v1').digest('hex');

/** The recovery code: T_t in groups of base32 (no 0/1/8/9 confusion in RFC 4648 base32), shown once. */
export function formatRecoveryCode(secret: Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of secret) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out.match(/.{1,4}/g)!.join('-');
}

export function parseRecoveryCode(code: string): Buffer | undefined {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = code.toUpperCase().replace(/[\s-]/g, '');
  if (!/^[A-Z2-7]{52}$/.test(clean)) return undefined;
  let bits = 0;
  let value = 0;
  const bytes: number[] = [];
  for (const ch of clean) {
    value = (value << 5) | alphabet.indexOf(ch);
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(bytes.slice(0, 32));
}

export interface TenantKeyStore {
  control: Kysely<{ tenant_keys: TenantKeyTable }>;
  tenantDb(tenantId: string): Promise<Kysely<{ key_wraps: KeyWrapTable }>>;
}

export function createTenantKeys(deps: { store: TenantKeyStore; masterKey: CipherService; clock: { now(): Date }; newId: () => string }) {
  const { store, masterKey } = deps;

  const row = async (tenantId: string) => {
    const r = await store.control.selectFrom('tenant_keys').selectAll().where('tenant_id', '=', tenantId).executeTakeFirst();
    if (!r) throw new KeyError('this tenant has no keys (it was deleted, or created before keys existed)');
    return r;
  };

  return {
    /**
     * New keys for a new tenant. Returns only the one-time activation key: the secret behind it is a
     * placeholder (version 0) that the first activation replaces (`rotate`), so neither the creator nor a
     * copy of the database taken now ever holds the secret that protects data. No recovery code exists yet.
     * With `boundTo` (an account id) only that account can activate with the key (`openActivation`).
     */
    async create(tenantId: string, by: string, opts: { boundTo?: string } = {}): Promise<{ activationKey: string }> {
      const secret = randomBytes(32);
      const component = randomBytes(32);
      const activationKey = randomBytes(32);
      await store.control
        .insertInto('tenant_keys')
        .values({
          tenant_id: tenantId,
          sealed_component: await masterKey.seal(component, componentAad(tenantId)),
          secret_version: 0,
          secret_check: checkOf(tenantDataKey(secret, component)),
          created_at: deps.clock.now().toISOString(),
        })
        .execute();
      const db = await store.tenantDb(tenantId);
      await db
        .insertInto('key_wraps')
        .values({
          id: deps.newId(),
          kind: 'activation',
          holder: sha256Hex(activationKey.toString('base64url')),
          wrapped: wrapWithKey(secret, activationKey, activationContext(tenantId, 0, opts.boundTo)),
          secret_version: 0,
          created_at: deps.clock.now().toISOString(),
          created_by: by,
          bound_to: opts.boundTo ?? null,
        })
        .execute();
      return { activationKey: activationKey.toString('base64url') };
    },

    /**
     * K_t and its version for a secret, if it is the tenant's current secret (after a rotation an old copy,
     * say in a session, no longer counts).
     */
    async openSecret(tenantId: string, secret: Uint8Array): Promise<{ dataKey: Buffer; version: number } | undefined> {
      const r = await store.control.selectFrom('tenant_keys').selectAll().where('tenant_id', '=', tenantId).executeTakeFirst();
      if (!r) return undefined;
      const dataKey = tenantDataKey(secret, (await masterKey.open(r.sealed_component, componentAad(tenantId))));
      return constantTimeEqual(checkOf(dataKey), r.secret_check) ? { dataKey, version: r.secret_version } : undefined;
    },

    /**
     * Replaces T_t by a new secret (first activation, handover, or after someone with a copy left): the new
     * one is wrapped for `keep` (accounts) and `grants`; `recoveryFor` are owed its recovery code (shown once,
     * `takeRecoveryCode`). The old one is kept, wrapped under the new data key, until the records are
     * re-encrypted (`finishRotation`), so an interrupted rotation can be resumed by anyone with the new
     * secret; every other copy of the old secret is deleted.
     *
     * Safe to repeat after a crash: the tenant database gets the new copies first, then the control
     * database moves to the new version (only from the version this call started from). Copies left by an
     * attempt that stopped in between are at a version the control database never reached; readers ignore
     * them (they only use copies of the current version) and the next successful rotation removes them. Of
     * two rotations at once, the second finds the version moved on, removes its own copies and fails.
     */
    async rotate(
      tenantId: string,
      oldSecret: Uint8Array,
      opts: { by: string; keep: { id: string; publicKey: string }[]; grants: { id: string; publicKey: string }[]; recoveryFor?: string[] },
    ) {
      const current = await row(tenantId);
      const component = await masterKey.open(current.sealed_component, componentAad(tenantId));
      if (!constantTimeEqual(checkOf(tenantDataKey(oldSecret, component)), current.secret_check)) throw new KeyError('this is not the current tenant secret');
      const from = current.secret_version;
      const to = from + 1;
      const secret = randomBytes(32);
      const dataKey = tenantDataKey(secret, component);
      const db = await store.tenantDb(tenantId);
      const now = deps.clock.now().toISOString();
      const wrap = (kind: KeyWrapTable['kind'], holder: string, wrapped: string) => ({ id: deps.newId(), kind, holder, wrapped, secret_version: to, created_at: now, created_by: opts.by });
      const rows = [
        wrap('rotation', `v${from}`, wrapWithKey(oldSecret, dataKey, secretContext(tenantId, from))),
        ...opts.keep.map((a) => wrap('account', a.id, wrapForPublicKey(secret, a.publicKey, secretContext(tenantId, to)))),
        ...opts.grants.map((g) => wrap('grant', g.id, wrapForPublicKey(secret, g.publicKey, secretContext(tenantId, to)))),
        ...[...new Set(opts.recoveryFor ?? [])].map((accountId) => wrap('recovery', accountId, '')),
      ];
      const ours = rows.map((r) => r.id);
      await db.transaction().execute(async (trx) => {
        for (const r of rows) await trx.insertInto('key_wraps').values(r).execute();
      });
      const moved = await store.control
        .updateTable('tenant_keys')
        .set({ secret_version: to, secret_check: checkOf(dataKey) })
        .where('tenant_id', '=', tenantId)
        .where('secret_version', '=', from)
        .where('secret_check', '=', current.secret_check)
        .executeTakeFirst();
      if (Number(moved.numUpdatedRows) !== 1) {
        await db.deleteFrom('key_wraps').where('id', 'in', ours).execute();
        throw new ConflictError('another rotation of the tenant secret finished first: log in again and retry if still needed');
      }
      // Leftovers of an attempt that stopped before the control database moved on, then the old copies.
      await db.deleteFrom('key_wraps').where('secret_version', '=', to).where('id', 'not in', ours).execute();
      await db.deleteFrom('key_wraps').where('secret_version', '<', to).where('kind', '!=', 'rotation').execute();
      return { secret, from: { dataKey: tenantDataKey(oldSecret, component), version: from }, to: { dataKey, version: to } };
    },

    /**
     * During a rotation: the previous secret's data key, from the rotation copy (to resume re-encryption).
     * Old copies that a crash may have left behind are deleted first, so they cannot open the records that
     * are still at the old version.
     */
    async rotationInProgress(tenantId: string, dataKey: Buffer): Promise<{ dataKey: Buffer; version: number } | undefined> {
      const db = await store.tenantDb(tenantId);
      const r = await row(tenantId);
      await db.deleteFrom('key_wraps').where('secret_version', '<', r.secret_version).where('kind', '!=', 'rotation').execute();
      const w = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'rotation').where('secret_version', '=', r.secret_version).executeTakeFirst();
      if (!w) return undefined;
      const version = Number(w.holder.slice(1));
      const oldSecret = unwrapWithKey(w.wrapped, dataKey, secretContext(tenantId, version));
      return { dataKey: tenantDataKey(oldSecret, (await masterKey.open(r.sealed_component, componentAad(tenantId)))), version };
    },

    /**
     * While a rotation to `version` is unfinished: the previous data key (from the rotation copy, which only
     * the new data key opens), so that records not re-encrypted yet can still be read. Reads only.
     */
    async previousKey(tenantId: string, dataKey: Buffer, version: number): Promise<{ dataKey: Buffer; version: number } | undefined> {
      const db = await store.tenantDb(tenantId);
      const w = await db.selectFrom('key_wraps').select(['holder', 'wrapped']).where('kind', '=', 'rotation').where('secret_version', '=', version).executeTakeFirst();
      if (!w) return undefined;
      const from = Number(w.holder.slice(1));
      const oldSecret = unwrapWithKey(w.wrapped, dataKey, secretContext(tenantId, from));
      const r = await row(tenantId);
      return { dataKey: tenantDataKey(oldSecret, await masterKey.open(r.sealed_component, componentAad(tenantId))), version: from };
    },

    /** Whether a rotation of the current version still waits for its records (any data user may resume it). */
    async rotationPending(tenantId: string): Promise<boolean> {
      const r = await store.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirst();
      if (!r) return false;
      const db = await store.tenantDb(tenantId);
      return (await db.selectFrom('key_wraps').select('id').where('kind', '=', 'rotation').where('secret_version', '=', r.secret_version).executeTakeFirst()) !== undefined;
    },

    async finishRotation(tenantId: string): Promise<void> {
      const db = await store.tenantDb(tenantId);
      const { secret_version: version } = await row(tenantId);
      await db.deleteFrom('key_wraps').where((eb) => eb.or([eb('kind', '=', 'rotation'), eb('secret_version', '<', version)])).execute();
    },

    /**
     * The recovery code for an account that is owed it (after its activation, or as the owner after a
     * rotation or handover): shown once. `secret` is the secret of the caller's session.
     */
    async takeRecoveryCode(tenantId: string, accountId: string, secret: Uint8Array): Promise<string | undefined> {
      const r = await row(tenantId);
      const component = await masterKey.open(r.sealed_component, componentAad(tenantId));
      if (!constantTimeEqual(checkOf(tenantDataKey(secret, component)), r.secret_check)) return undefined;
      const db = await store.tenantDb(tenantId);
      const taken = await db.deleteFrom('key_wraps').where('kind', '=', 'recovery').where('holder', '=', accountId).where('secret_version', '=', r.secret_version).executeTakeFirst();
      return Number(taken.numDeletedRows) === 1 ? formatRecoveryCode(secret) : undefined;
    },

    async owesRecoveryCode(tenantId: string, accountId: string): Promise<boolean> {
      const r = await store.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirst();
      if (!r) return false;
      const db = await store.tenantDb(tenantId);
      return (await db.selectFrom('key_wraps').select('id').where('kind', '=', 'recovery').where('holder', '=', accountId).where('secret_version', '=', r.secret_version).executeTakeFirst()) !== undefined;
    },

    /** K_t for a tenant secret: the service component is unwrapped with the master key (cipher service). */
    async dataKey(tenantId: string, secret: Uint8Array): Promise<Buffer> {
      const r = await row(tenantId);
      return tenantDataKey(secret, (await masterKey.open(r.sealed_component, componentAad(tenantId))));
    },

    /** Checks a tenant secret that came from outside (recovery code) against the stored check value. */
    async checkSecret(tenantId: string, secret: Uint8Array): Promise<boolean> {
      const r = await row(tenantId);
      const dataKey = tenantDataKey(secret, (await masterKey.open(r.sealed_component, componentAad(tenantId))));
      return constantTimeEqual(checkOf(dataKey), r.secret_check);
    },

    /**
     * The secret behind a one-time activation key for `accountId`, without using it up: the caller replaces
     * that secret at once (`rotate`), which deletes the activation copy together with every other copy of it.
     * `undefined` for a wrong or used key; `bound-to-another-account` when the key is bound to the tenant's
     * named first data user and `accountId` is someone else (the copy stays, so the key still works for them).
     */
    async openActivation(tenantId: string, activationKey: string, accountId: string): Promise<{ secret: Buffer } | { refused: 'bound-to-another-account' } | undefined> {
      const db = await store.tenantDb(tenantId);
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'activation').where('holder', '=', sha256Hex(activationKey)).executeTakeFirst();
      if (!wrap) return undefined;
      if (wrap.bound_to && wrap.bound_to !== accountId) return { refused: 'bound-to-another-account' };
      try {
        return { secret: unwrapWithKey(wrap.wrapped, Buffer.from(activationKey, 'base64url'), activationContext(tenantId, wrap.secret_version, wrap.bound_to)) };
      } catch {
        return undefined;
      }
    },

    /**
     * T_t from the one-time activation key; the activation copy is deleted, so the key works once. A copy
     * bound to a first data user opens only for that account (`forAccount`).
     */
    async redeemActivation(tenantId: string, activationKey: string, forAccount?: string): Promise<Buffer | undefined> {
      const db = await store.tenantDb(tenantId);
      const holder = sha256Hex(activationKey);
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'activation').where('holder', '=', holder).executeTakeFirst();
      if (!wrap || (wrap.bound_to && wrap.bound_to !== forAccount)) return undefined;
      const deleted = await db.deleteFrom('key_wraps').where('id', '=', wrap.id).executeTakeFirst();
      if (Number(deleted.numDeletedRows) !== 1) return undefined;
      return unwrapWithKey(wrap.wrapped, Buffer.from(activationKey, 'base64url'), activationContext(tenantId, wrap.secret_version, wrap.bound_to));
    },

    /** Wraps T_t for an account's public key (replacing an older copy of that account). */
    async wrapForAccount(tenantId: string, secret: Uint8Array, account: { id: string; publicKey: string }, by: string): Promise<void> {
      const { secret_version: version } = await row(tenantId);
      const db = await store.tenantDb(tenantId);
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('key_wraps').where('kind', '=', 'account').where('holder', '=', account.id).execute();
        await trx
          .insertInto('key_wraps')
          .values({
            id: deps.newId(),
            kind: 'account',
            holder: account.id,
            wrapped: wrapForPublicKey(secret, account.publicKey, secretContext(tenantId, version)),
            secret_version: version,
            created_at: deps.clock.now().toISOString(),
            created_by: by,
          })
          .execute();
      });
    },

    /** T_t through an account's private key, or undefined when the account holds no copy. */
    async unwrapForAccount(tenantId: string, accountId: string, privateKey: Uint8Array): Promise<Buffer | undefined> {
      const db = await store.tenantDb(tenantId);
      const current = await store.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirst();
      if (!current) return undefined;
      // Only a copy of the current version: one of a rotation that stopped half-way holds a secret never set.
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'account').where('holder', '=', accountId).where('secret_version', '=', current.secret_version).executeTakeFirst();
      if (!wrap) return undefined;
      return unwrapWithPrivateKey(wrap.wrapped, privateKey, secretContext(tenantId, wrap.secret_version));
    },

    /** The accounts holding a copy of the current secret. */
    async accountHolders(tenantId: string): Promise<string[]> {
      const current = await store.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirst();
      if (!current) return [];
      const db = await store.tenantDb(tenantId);
      return (await db.selectFrom('key_wraps').select('holder').where('kind', '=', 'account').where('secret_version', '=', current.secret_version).execute()).map((w) => w.holder);
    },

    async hasAccountCopy(tenantId: string, accountId: string): Promise<boolean> {
      const db = await store.tenantDb(tenantId);
      return (await db.selectFrom('key_wraps').select('id').where('kind', '=', 'account').where('holder', '=', accountId).executeTakeFirst()) !== undefined;
    },

    /** Removes an account's copy (grant ended, account deleted, password forgotten). */
    async dropAccountCopy(tenantId: string, accountId: string): Promise<void> {
      const db = await store.tenantDb(tenantId);
      await db.deleteFrom('key_wraps').where('kind', '=', 'account').where('holder', '=', accountId).execute();
    },

    /** A grantee's copy of T_t for one grant. */
    async wrapForGrant(tenantId: string, secret: Uint8Array, grantId: string, publicKey: string, by: string): Promise<void> {
      const { secret_version: version } = await row(tenantId);
      const db = await store.tenantDb(tenantId);
      await db
        .insertInto('key_wraps')
        .values({ id: deps.newId(), kind: 'grant', holder: grantId, wrapped: wrapForPublicKey(secret, publicKey, secretContext(tenantId, version)), secret_version: version, created_at: deps.clock.now().toISOString(), created_by: by })
        .execute();
    },

    async unwrapForGrant(tenantId: string, grantId: string, privateKey: Uint8Array): Promise<Buffer | undefined> {
      const db = await store.tenantDb(tenantId);
      const current = await store.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirst();
      if (!current) return undefined;
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'grant').where('holder', '=', grantId).where('secret_version', '=', current.secret_version).executeTakeFirst();
      return wrap ? unwrapWithPrivateKey(wrap.wrapped, privateKey, secretContext(tenantId, wrap.secret_version)) : undefined;
    },

    /** Destroys a grant's copies: the grantee's and that of an unused access link. */
    async dropGrantCopy(tenantId: string, grantId: string): Promise<number> {
      const db = await store.tenantDb(tenantId);
      return Number((await db.deleteFrom('key_wraps').where('kind', 'in', ['grant', 'link']).where('holder', '=', grantId).executeTakeFirst()).numDeletedRows);
    },

    /**
     * The copy of T_t behind a grant's one-time access link, wrapped under the link's key (which only the
     * mail to the grantee carries; the server keeps its hash). A newer link replaces an unused older one.
     */
    async wrapForLink(tenantId: string, secret: Uint8Array, grantId: string, linkKey: Uint8Array, by: string): Promise<void> {
      const { secret_version: version } = await row(tenantId);
      const db = await store.tenantDb(tenantId);
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('key_wraps').where('kind', '=', 'link').where('holder', '=', grantId).execute();
        await trx
          .insertInto('key_wraps')
          .values({ id: deps.newId(), kind: 'link', holder: grantId, wrapped: wrapWithKey(secret, linkKey, `${secretContext(tenantId, version)}|link|${grantId}`), secret_version: version, created_at: deps.clock.now().toISOString(), created_by: by })
          .execute();
      });
    },

    /** T_t from an access link of one of `grantIds`; the link's copy is deleted, so it opens once. */
    async redeemLink(tenantId: string, grantIds: string[], linkKey: Uint8Array): Promise<{ grantId: string; secret: Buffer } | undefined> {
      if (grantIds.length === 0) return undefined;
      const db = await store.tenantDb(tenantId);
      const wraps = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'link').where('holder', 'in', grantIds).execute();
      for (const wrap of wraps) {
        let secret: Buffer;
        try {
          secret = unwrapWithKey(wrap.wrapped, linkKey, `${secretContext(tenantId, wrap.secret_version)}|link|${wrap.holder}`);
        } catch {
          continue; // another link of the same grantee
        }
        const deleted = await db.deleteFrom('key_wraps').where('id', '=', wrap.id).executeTakeFirst();
        if (Number(deleted.numDeletedRows) === 1) return { grantId: wrap.holder, secret };
      }
      return undefined;
    },

    /**
     * Crypto-shredding, before anything else of a tenant is removed: every wrapped copy of T_t in the tenant
     * database, then the service component C_t. Without C_t no copy of T_t, wherever it survived (a copy of
     * the tenant database, a recovery code on paper), opens anything any more. Returns what was destroyed.
     */
    async shred(tenantId: string): Promise<{ keyCopies: number; serviceComponent: boolean }> {
      let keyCopies = 0;
      try {
        const db = await store.tenantDb(tenantId);
        keyCopies = Number((await db.deleteFrom('key_wraps').executeTakeFirst()).numDeletedRows);
      } catch {
        // A tenant database that cannot be opened is dropped next anyway; C_t must go regardless.
      }
      const component = await store.control.deleteFrom('tenant_keys').where('tenant_id', '=', tenantId).executeTakeFirst();
      return { keyCopies, serviceComponent: Number(component.numDeletedRows) === 1 };
    },
  };
}

export type TenantKeys = ReturnType<typeof createTenantKeys>;

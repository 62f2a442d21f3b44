import { createHmac, randomBytes } from 'node:crypto';
import type { Kysely, Migration } from 'kysely';
import { constantTimeEqual, sha256Hex } from './random.js';
import { hkdf32, KeyError, unwrapWithKey, unwrapWithPrivateKey, wrapForPublicKey, wrapWithKey } from './envelope.js';
import type { CipherService } from './cipher-service.js';

/**
 * The tenant key hierarchy of DESIGN §3.
 *
 *  - service component C_t: random 32 bytes, stored only sealed under the master key (control database);
 *  - tenant secret T_t: random 32 bytes, never stored in clear — wrapped to each data-capable account's
 *    public key, under a one-time activation key, and shown once as the recovery code;
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
   * `rotation` (the previous secret under the new data key, while records are re-encrypted).
   */
  kind: 'account' | 'activation' | 'grant' | 'link' | 'rotation';
  /**
   * Account id, grant id (for `grant`, and for `link`: the copy behind a grant's one-time access link,
   * wrapped under that link's key), or the SHA-256 of the activation key.
   */
  holder: string;
  wrapped: string;
  secret_version: number;
  created_at: string;
  created_by: string;
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

const componentAad = (tenantId: string) => `tenant-component|${tenantId}`;
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
    /** New keys for a new tenant. Returns the recovery code and a one-time activation key, each shown once. */
    async create(tenantId: string, by: string): Promise<{ recoveryCode: string; activationKey: string }> {
      const secret = randomBytes(32);
      const component = randomBytes(32);
      const activationKey = randomBytes(32);
      await store.control
        .insertInto('tenant_keys')
        .values({
          tenant_id: tenantId,
          sealed_component: await masterKey.seal(component, componentAad(tenantId)),
          secret_version: 1,
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
          wrapped: wrapWithKey(secret, activationKey, secretContext(tenantId, 1)),
          secret_version: 1,
          created_at: deps.clock.now().toISOString(),
          created_by: by,
        })
        .execute();
      return { recoveryCode: formatRecoveryCode(secret), activationKey: activationKey.toString('base64url') };
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
     * Replaces T_t by a new secret (handover, or after someone with a copy left): the new one is wrapped for
     * `keep` (accounts) and `grants`; the old one is kept, wrapped under the new data key, until the records
     * are re-encrypted (`finishRotation`), so an interrupted rotation can be resumed by anyone with the new
     * secret; every other copy of the old secret is deleted.
     */
    async rotate(tenantId: string, oldSecret: Uint8Array, opts: { by: string; keep: { id: string; publicKey: string }[]; grants: { id: string; publicKey: string }[] }) {
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
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('key_wraps').values(wrap('rotation', `v${from}`, wrapWithKey(oldSecret, dataKey, secretContext(tenantId, from)))).execute();
        for (const a of opts.keep) await trx.insertInto('key_wraps').values(wrap('account', a.id, wrapForPublicKey(secret, a.publicKey, secretContext(tenantId, to)))).execute();
        for (const g of opts.grants) await trx.insertInto('key_wraps').values(wrap('grant', g.id, wrapForPublicKey(secret, g.publicKey, secretContext(tenantId, to)))).execute();
      });
      await store.control.updateTable('tenant_keys').set({ secret_version: to, secret_check: checkOf(dataKey) }).where('tenant_id', '=', tenantId).where('secret_version', '=', from).execute();
      await db.deleteFrom('key_wraps').where('secret_version', '<', to).where('kind', '!=', 'rotation').execute();
      return { secret, from: { dataKey: tenantDataKey(oldSecret, component), version: from }, to: { dataKey, version: to } };
    },

    /** During a rotation: the previous secret's data key, from the rotation copy (to resume re-encryption). */
    async rotationInProgress(tenantId: string, dataKey: Buffer): Promise<{ dataKey: Buffer; version: number } | undefined> {
      const db = await store.tenantDb(tenantId);
      const w = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'rotation').executeTakeFirst();
      if (!w) return undefined;
      const version = Number(w.holder.slice(1));
      const oldSecret = unwrapWithKey(w.wrapped, dataKey, secretContext(tenantId, version));
      const r = await row(tenantId);
      return { dataKey: tenantDataKey(oldSecret, (await masterKey.open(r.sealed_component, componentAad(tenantId)))), version };
    },

    async finishRotation(tenantId: string): Promise<void> {
      const db = await store.tenantDb(tenantId);
      await db.deleteFrom('key_wraps').where('kind', '=', 'rotation').execute();
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

    /** T_t from the one-time activation key; the activation copy is deleted, so the key works once. */
    async redeemActivation(tenantId: string, activationKey: string): Promise<Buffer | undefined> {
      const db = await store.tenantDb(tenantId);
      const holder = sha256Hex(activationKey);
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'activation').where('holder', '=', holder).executeTakeFirst();
      if (!wrap) return undefined;
      const deleted = await db.deleteFrom('key_wraps').where('id', '=', wrap.id).executeTakeFirst();
      if (Number(deleted.numDeletedRows) !== 1) return undefined;
      return unwrapWithKey(wrap.wrapped, Buffer.from(activationKey, 'base64url'), secretContext(tenantId, wrap.secret_version));
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
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'account').where('holder', '=', accountId).orderBy('secret_version', 'desc').executeTakeFirst();
      if (!wrap) return undefined;
      return unwrapWithPrivateKey(wrap.wrapped, privateKey, secretContext(tenantId, wrap.secret_version));
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
      const wrap = await db.selectFrom('key_wraps').selectAll().where('kind', '=', 'grant').where('holder', '=', grantId).executeTakeFirst();
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

    /** Crypto-shredding: without C_t no copy of T_t, wherever it survived, opens anything any more. */
    async shred(tenantId: string): Promise<void> {
      await store.control.deleteFrom('tenant_keys').where('tenant_id', '=', tenantId).execute();
    },
  };
}

export type TenantKeys = ReturnType<typeof createTenantKeys>;

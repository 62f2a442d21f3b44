import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { aeadOpen, hkdf32, passwordKey, unwrapWithPrivateKey } from '../src/crypto/envelope.js';
import { secretContext, tenantDataKey } from '../src/crypto/tenant-keys.js';
import { buildApp } from '../src/http/app.js';
import { bearerLogin, engines, mailedKey, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

/**
 * Installer handover (S2.3) and rotation of the tenant secret: afterwards the customer's data user is the
 * only holder, every record is re-encrypted, and the installer's old copy of the key decrypts nothing.
 */
describe.each(engines)('handover and tenant secret rotation (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const tokens: Record<string, string> = {};
  const ids: Record<string, string> = {};
  let activationKey = '';
  const PASSWORDS = { setup: 'Einrichtung durch Monteur 1', owner: 'Eigentuemerin der Daten 2', colleague: 'Kollegin im Team drei 3' };
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const lines = (body: string) => body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    const tenant = (await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde mit Übergabe' })).json<{ id: string; initialKeys: { activationKey: string } }>();
    ids.tenant = tenant.id;
    activationKey = tenant.initialKeys.activationKey;
    const invite = async (by: string, who: keyof typeof PASSWORDS | 'admin', email: string, role: string, password: string) => {
      expect((await call(by, 'POST', '/api/v1/accounts', { email, role, tenantId: ids.tenant })).statusCode).toBe(201);
      expect((await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: password } })).statusCode).toBe(204);
      tokens[who] = await bearerLogin(app, email, password);
      ids[who] = (await call(who, 'GET', '/api/v1/auth/me')).json<{ accountId: string }>().accountId;
    };
    await invite('operator', 'admin', 'admin@uebergabe.test', 'admin', 'Verwaltung beim Auftrag 4');
    await invite('admin', 'setup', 'setup@partner.test', 'member', PASSWORDS.setup);
    await invite('admin', 'owner', 'owner@uebergabe.test', 'dpo', PASSWORDS.owner);
    await invite('admin', 'colleague', 'colleague@uebergabe.test', 'member', PASSWORDS.colleague);
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it("hands the tenant over: new secret for the owner only, records re-encrypted, the installer's old key useless", async () => {
    // The installer's set-up account unlocks the tenant, enters data and gives the colleague access.
    expect((await call('setup', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(204);
    for (let i = 0; i < 7; i++) expect((await call('setup', 'POST', '/api/v1/contacts', { name: `Kunde ${i}`, email: `kunde${i}@example.org` })).statusCode).toBe(201);
    expect((await call('setup', 'POST', '/api/v1/jobs', { customer_name: 'Kunde 0', address: 'Weg 1' })).statusCode).toBe(201);
    expect((await call('setup', 'POST', '/api/v1/keys/grant', { accountId: ids.colleague! })).statusCode).toBe(204);
    const db = await tenantDb();
    const before = await db.selectFrom('contacts').selectAll().orderBy('created_at').execute();
    const setupWrap = await db.selectFrom('key_wraps').selectAll().where('holder', '=', ids.setup!).executeTakeFirstOrThrow();
    const setupAccount = await core.storage.control.selectFrom('accounts').selectAll().where('id', '=', ids.setup!).executeTakeFirstOrThrow();

    expect((await call('admin', 'POST', `/api/v1/tenants/${ids.tenant}/handover`, { ownerAccountId: ids.owner })).statusCode).toBe(403); // holds no key
    const handover = await call('setup', 'POST', `/api/v1/tenants/${ids.tenant}/handover`, { ownerAccountId: ids.owner });
    expect(handover.statusCode).toBe(200);
    const result = lines(handover.body);
    expect(result.at(-1)).toEqual({ version: 2, reencrypted: 8, keptAccounts: 1, excluded: 2 });
    expect(result.slice(0, -1).every((l) => typeof l.reencrypted === 'number')).toBe(true);

    // Every record is under version 2, with new ciphertexts and new blind indexes.
    const after = await db.selectFrom('contacts').selectAll().orderBy('created_at').execute();
    expect(after.every((r) => r.key_version === 2)).toBe(true);
    expect(after.map((r) => r.name_ct)).not.toEqual(before.map((r) => r.name_ct));
    expect(after.map((r) => r.email_bidx)).not.toEqual(before.map((r) => r.email_bidx));
    // The installer's account is out: its sessions ended, and after a new login it has no data access.
    expect((await call('setup', 'GET', '/api/v1/contacts')).statusCode).toBe(401);
    tokens.setup = await bearerLogin(app, 'setup@partner.test', PASSWORDS.setup);
    expect((await call('setup', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: false });
    // The installer's copy from before the handover, opened with its private key, gives the old secret —
    // whose data key decrypts none of the re-encrypted records.
    const kek = await passwordKey(PASSWORDS.setup, Buffer.from(setupAccount.key_salt!, 'hex'), { memoryKib: 19456, iterations: 2, parallelism: 1 });
    const privateKey = aeadOpen(kek, Buffer.from(setupAccount.sealed_private_key!, 'base64url'), `account-key|${ids.setup}`);
    const oldSecret = unwrapWithPrivateKey(setupWrap.wrapped, privateKey, secretContext(ids.tenant!, 1));
    const sealed = await core.storage.control.selectFrom('tenant_keys').select('sealed_component').where('tenant_id', '=', ids.tenant!).executeTakeFirstOrThrow();
    const { loadOrCreateMasterKey } = await import('../src/crypto/master-key.js');
    const component = loadOrCreateMasterKey({ file: core.config.master_key.file, value: '' }).ring.open(sealed.sealed_component, `tenant-component|${ids.tenant}`);
    const oldFieldKey = hkdf32(tenantDataKey(oldSecret, component), 'tresor/field/v1');
    for (const row of after) {
      for (const version of [1, 2]) expect(() => aeadOpen(oldFieldKey, Buffer.from(row.name_ct, 'base64url'), `${ids.tenant}|contacts|${row.id}|name|v${version}`)).toThrow();
    }
    expect(await core.tenantKeys.openSecret(ids.tenant!, oldSecret)).toBeUndefined();

    // The owner reads everything, and gives the colleague access again.
    tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
    expect((await call('owner', 'GET', '/api/v1/contacts?email=kunde3%40example.org')).json<{ name: string }[]>().map((c) => c.name)).toEqual(['Kunde 3']);
    tokens.colleague = await bearerLogin(app, 'colleague@uebergabe.test', PASSWORDS.colleague);
    expect((await call('colleague', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    expect((await call('owner', 'POST', '/api/v1/keys/grant', { accountId: ids.colleague! })).statusCode).toBe(204);
    tokens.colleague = await bearerLogin(app, 'colleague@uebergabe.test', PASSWORDS.colleague);
    expect((await call('colleague', 'GET', '/api/v1/jobs')).json<{ customer_name: string }[]>().map((j) => j.customer_name)).toEqual(['Kunde 0']);
    const events = await (await core.ledgers.tenant(ids.tenant!)).query({ action: 'tenant.handover' });
    expect(events).toHaveLength(1);
  });

  it('resumes a rotation that stopped after the new secret was set but before the records were re-encrypted', async () => {
    // A rotation that "crashed" right after the key change: the secret moved on, the records did not.
    const ownerKey = (await core.identity.dataKeyOf(tokens.owner!))!;
    const secretOf = async () => {
      const session = await core.storage.control.selectFrom('accounts').select(['sealed_private_key', 'key_salt']).where('id', '=', ids.owner!).executeTakeFirstOrThrow();
      const kek = await passwordKey(PASSWORDS.owner, Buffer.from(session.key_salt!, 'hex'), { memoryKib: 19456, iterations: 2, parallelism: 1 });
      const pk = aeadOpen(kek, Buffer.from(session.sealed_private_key!, 'base64url'), `account-key|${ids.owner}`);
      return (await core.tenantKeys.unwrapForAccount(ids.tenant!, ids.owner!, pk))!;
    };
    const owner = await core.storage.control.selectFrom('accounts').select(['id', 'public_key']).where('id', '=', ids.owner!).executeTakeFirstOrThrow();
    await core.tenantKeys.rotate(ids.tenant!, await secretOf(), { by: 'test', keep: [{ id: owner.id, publicKey: owner.public_key! }], grants: [] });
    expect(ownerKey.keyVersion).toBe(2);
    tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
    expect((await call('owner', 'GET', '/api/v1/contacts')).statusCode).toBe(403); // old records do not open with the new key yet
    const resumed = await call('owner', 'POST', '/api/v1/keys/rotate/resume');
    expect(lines(resumed.body).at(-1)).toEqual({ reencrypted: 8 });
    expect((await call('owner', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(7);
    expect(lines((await call('owner', 'POST', '/api/v1/keys/rotate/resume')).body).at(-1)).toEqual({ reencrypted: 0 });
    const versions = (await (await tenantDb()).selectFrom('contacts').select('key_version').execute()).map((r) => r.key_version);
    expect(new Set(versions)).toEqual(new Set([3]));
  });

  async function tenantDb() {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', ids.tenant!).executeTakeFirstOrThrow();
    return core.storage.tenantDb({ tenantId: ids.tenant!, databaseName: row.database_name });
  }
});

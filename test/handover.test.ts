import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { aeadOpen, hkdf32, passwordKey, unwrapWithPrivateKey } from '../src/crypto/envelope.js';
import { newId } from '../src/crypto/random.js';
import { createTenantKeys, secretContext, tenantDataKey } from '../src/crypto/tenant-keys.js';
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
    // The tenant belongs to a reseller whose installer sets it up.
    const acceptAs = async (email: string, password: string) => {
      expect((await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: password } })).statusCode).toBe(204);
      return bearerLogin(app, email, password);
    };
    expect((await call('operator', 'POST', '/api/v1/resellers', { name: 'Partner Süd', adminLogin: 'chef@partner.test' })).statusCode).toBe(201);
    tokens.reseller = await acceptAs('chef@partner.test', 'Wiederverkauf im Sueden 5');
    expect((await call('reseller', 'POST', '/api/v1/accounts', { email: 'monteur@partner.test', role: 'installer' })).statusCode).toBe(201);
    tokens.installer = await acceptAs('monteur@partner.test', 'Montage beim Kunden 6');
    const tenant = (await call('reseller', 'POST', '/api/v1/tenants', { name: 'Kunde mit Übergabe' })).json<{ id: string; initialKeys: { activationKey: string } }>();
    ids.tenant = tenant.id;
    activationKey = tenant.initialKeys.activationKey;
    const invite = async (by: string, who: keyof typeof PASSWORDS | 'admin', email: string, role: string, password: string) => {
      expect((await call(by, 'POST', '/api/v1/accounts', { email, role, tenantId: ids.tenant })).statusCode).toBe(201);
      expect((await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: password } })).statusCode).toBe(204);
      tokens[who] = await bearerLogin(app, email, password);
      ids[who] = (await call(who, 'GET', '/api/v1/auth/me')).json<{ accountId: string }>().accountId;
    };
    await invite('installer', 'admin', 'admin@uebergabe.test', 'admin', 'Verwaltung beim Auftrag 4');
    await invite('installer', 'setup', 'setup@partner.test', 'member', PASSWORDS.setup);
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
    // Until the handover the reseller's installer administers the tenant.
    const installerRights = async () => [
      (await call('installer', 'GET', `/api/v1/tenants/${ids.tenant}`)).statusCode,
      (await call('installer', 'GET', `/api/v1/accounts?tenantId=${ids.tenant}`)).statusCode,
      (await call('installer', 'GET', `/api/v1/tenants/${ids.tenant}/password-policy`)).statusCode,
      (await call('installer', 'POST', '/api/v1/accounts', { email: `spaet-${Date.now()}@uebergabe.test`, role: 'member', tenantId: ids.tenant })).statusCode,
    ];
    expect(await installerRights()).toEqual([200, 200, 200, 201]);
    // The installer's tenant list holds its own reseller's tenants being set up, never anyone else's.
    const otherReseller = (await call('operator', 'POST', '/api/v1/resellers', { name: 'Partner Nord', adminLogin: 'chef@nord.test' })).json<{ id: string }>().id;
    const foreign = [
      (await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde des Betreibers' })).json<{ id: string }>().id,
      (await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde im Norden', resellerId: otherReseller })).json<{ id: string }>().id,
    ];
    const installerList = async () => (await call('installer', 'GET', '/api/v1/tenants')).json<{ id: string }[]>().map((x) => x.id);
    expect(await installerList()).toEqual([ids.tenant]);
    expect((await call('reseller', 'GET', '/api/v1/tenants')).json<{ id: string }[]>().map((x) => x.id)).toEqual([ids.tenant]);
    expect((await call('operator', 'GET', '/api/v1/tenants')).json<{ id: string }[]>().map((x) => x.id)).toEqual(expect.arrayContaining([ids.tenant, ...foreign]));
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
    // The installer's administration of the tenant ended with the handover; the reseller keeps its own.
    expect(await installerRights()).toEqual([404, 404, 404, 403]);
    expect(await installerList()).toEqual([]);
    expect((await call('reseller', 'GET', '/api/v1/tenants')).json<{ id: string }[]>().map((x) => x.id)).toEqual([ids.tenant]);
    expect((await call('reseller', 'GET', `/api/v1/accounts?tenantId=${ids.tenant}`)).statusCode).toBe(200);
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

    // The handover happens once: no data user can repeat it to push colleagues out.
    for (const who of ['owner', 'colleague']) {
      const again = await call(who, 'POST', `/api/v1/tenants/${ids.tenant}/handover`, { ownerAccountId: ids[who] });
      expect([again.statusCode, again.json<{ code: string; message: string }>()]).toEqual([409, expect.objectContaining({ code: 'CONFLICT', message: expect.stringMatching(/handed over already/) })]);
    }
    await expect(core.identity.rotateTenantSecret(tokens.colleague!, { only: ids.colleague!, reason: 'handover' }, () => undefined)).rejects.toThrow(/handed over already/);
    // Only the privacy officer takes colleagues' access away: a member cannot lock the owner out.
    const lockOut = await call('colleague', 'POST', '/api/v1/keys/rotate', { excludeAccountIds: [ids.owner] });
    expect([lockOut.statusCode, lockOut.json<{ message: string }>().message]).toEqual([403, expect.stringMatching(/privacy officer/)]);
    await expect(core.identity.rotateTenantSecret(tokens.colleague!, { exclude: [ids.owner!] }, () => undefined)).rejects.toThrow(/privacy officer/);
    expect((await call('owner', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true, rotationPending: false });
    expect(await (await core.ledgers.tenant(ids.tenant!)).query({ action: 'tenant.handover' })).toHaveLength(1);
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
    // The records still under the old secret stay readable meanwhile (the previous key, from the rotation copy).
    expect((await call('owner', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(7);
    const resumed = await call('owner', 'POST', '/api/v1/keys/rotate/resume');
    expect(lines(resumed.body).at(-1)).toEqual({ reencrypted: 8 });
    expect((await call('owner', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(7);
    expect(lines((await call('owner', 'POST', '/api/v1/keys/rotate/resume')).body).at(-1)).toEqual({ reencrypted: 0 });
    const versions = (await (await tenantDb()).selectFrom('contacts').select('key_version').execute()).map((r) => r.key_version);
    expect(new Set(versions)).toEqual(new Set([3]));
  });

  it('repeats a rotation safely after a crash between the tenant database and the control database', async () => {
    const db = await tenantDb();
    const secret = await accountSecret('owner');
    const owner = await core.storage.control.selectFrom('accounts').select(['id', 'public_key']).where('id', '=', ids.owner!).executeTakeFirstOrThrow();
    const before = (await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', ids.tenant!).executeTakeFirstOrThrow()).secret_version;
    // The process dies after the tenant database got the new copies, before the control database moved on.
    const control = core.storage.control;
    const crashing = new Proxy(control, {
      get(target, prop) {
        if (prop === 'updateTable') return () => {
          throw new Error('the process stopped between the two databases');
        };
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const dying = createTenantKeys({ store: { control: crashing, tenantDb: async () => db }, masterKey: core.masterKey, clock: { now: () => new Date() }, newId });
    await expect(dying.rotate(ids.tenant!, secret, { by: 'test', keep: [{ id: owner.id, publicKey: owner.public_key! }], grants: [], recoveryFor: [owner.id] })).rejects.toThrow(/between the two databases/);
    const leftovers = await db.selectFrom('key_wraps').selectAll().where('secret_version', '=', before + 1).execute();
    expect(leftovers.map((w) => w.kind).sort()).toEqual(['account', 'recovery', 'rotation']);
    // Nothing changed for the users: the copies of the version the control database knows are used.
    tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
    expect((await call('owner', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(7);
    expect((await call('owner', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ rotationPending: false });
    // Done again: one copy per holder, all of the new version, the leftovers gone.
    const again = await call('owner', 'POST', '/api/v1/keys/rotate', {});
    expect(lines(again.body).at(-1)).toMatchObject({ version: before + 1, reencrypted: 8 });
    const wraps = await db.selectFrom('key_wraps').selectAll().execute();
    expect(wraps.filter((w) => w.kind === 'account').map((w) => [w.holder, w.secret_version])).toEqual([[owner.id, before + 1]]);
    expect(wraps.some((w) => leftovers.some((l) => l.id === w.id))).toBe(false);
    expect((await call('owner', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(7);
    expect((await call('owner', 'POST', '/api/v1/keys/recovery-code')).json<{ recoveryCode: string }>().recoveryCode).toMatch(/^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
  });

  it('resumes a handover that crashed in the middle of the re-encryption batches: everything readable, the old key useless', async () => {
    // Enough records for several batches of 500.
    const csv = ['name,email,phone,address,company,notes', ...Array.from({ length: 1100 }, (_, i) => `Person ${i},person${i}@example.org,,,,Notiz ${i}`)].join('\n');
    const imported = await app.inject({ method: 'POST', url: '/api/v1/contacts/import', headers: { authorization: `Bearer ${tokens.owner}`, 'content-type': 'text/csv' }, payload: csv });
    expect(lines(imported.body).at(-1)).toEqual({ created: 1100, errors: [] });
    // The owner's personal book (its own key, wrapped under the tenant data key) goes through the rotation too.
    expect((await call('owner', 'POST', '/api/v1/contacts', { name: 'Privat Ottilie', book: 'personal' })).statusCode).toBe(201);
    // A second data user (in the installer's place) holds the secret and hands over to the owner.
    expect((await call('owner', 'POST', '/api/v1/keys/grant', { accountId: ids.colleague! })).statusCode).toBe(204);
    tokens.colleague = await bearerLogin(app, 'colleague@uebergabe.test', PASSWORDS.colleague);
    const oldSecret = await accountSecret('colleague');
    // Played as the set-up phase again: the tenant is not handed over yet.
    await core.storage.control.updateTable('tenants').set({ handed_over_at: null }).where('id', '=', ids.tenant!).execute();
    const from = (await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', ids.tenant!).executeTakeFirstOrThrow()).secret_version;
    let batches = 0;
    const crash = core.identity.rotateTenantSecret(tokens.colleague!, { only: ids.owner!, reason: 'handover' }, () => {
      // The process dies right after the first batch was committed.
      if (++batches === 1) throw new Error('the process died during the re-encryption');
    });
    await expect(crash).rejects.toThrow(/died during the re-encryption/);
    const db = await tenantDb();
    const versions = (await db.selectFrom('contacts').select('key_version').execute()).map((r) => r.key_version);
    expect(versions.filter((v) => v === from + 1).length).toBe(500);
    expect(versions.filter((v) => v === from).length).toBe(608);
    // The colleague is out already; the owner sees the interrupted rotation and resumes it.
    expect((await call('colleague', 'GET', '/api/v1/contacts')).statusCode).toBe(401);
    tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
    expect((await call('owner', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true, rotationPending: true, recoveryCodePending: true });
    // Both halves are readable while the rotation waits: one record of each version.
    const oldOne = (await db.selectFrom('contacts').select('id').where('key_version', '=', from).executeTakeFirstOrThrow()).id;
    const newOne = (await db.selectFrom('contacts').select('id').where('key_version', '=', from + 1).executeTakeFirstOrThrow()).id;
    for (const id of [oldOne, newOne]) expect((await call('owner', 'GET', `/api/v1/contacts/${id}`)).json()).toMatchObject({ id, name: expect.stringMatching(/^(Kunde|Person) \d+$/) });
    // A second rotation or handover now would re-encrypt only the newer half and delete the key of the
    // older one: refused until the interrupted rotation is resumed.
    const inProgress = /a rotation is still in progress: resume it first \(POST \/api\/v1\/keys\/rotate\/resume or tresor tenant handover --resume\)/;
    for (const [url, payload] of [['/api/v1/keys/rotate', {}], [`/api/v1/tenants/${ids.tenant}/handover`, { ownerAccountId: ids.owner }]] as const) {
      const refused = await call('owner', 'POST', url, payload);
      expect([refused.statusCode, refused.json<{ code: string; message: string }>()]).toEqual([409, expect.objectContaining({ code: 'CONFLICT', message: expect.stringMatching(inProgress) })]);
    }
    await expect(core.identity.rotateTenantSecret(tokens.owner!, {}, () => undefined)).rejects.toThrow(inProgress);
    expect(new Set((await db.selectFrom('contacts').select('key_version').execute()).map((r) => r.key_version))).toEqual(new Set([from, from + 1]));
    const resumed = await call('owner', 'POST', '/api/v1/keys/rotate/resume');
    expect(lines(resumed.body).at(-1)).toEqual({ reencrypted: 609 });
    expect((await call('owner', 'GET', '/api/v1/contacts?book=personal')).json<{ name: string }[]>().map((c) => c.name)).toEqual(['Privat Ottilie']);
    const bookKeys = await (db as unknown as Kysely<{ book_keys: { key_version: number } }>).selectFrom('book_keys').select('key_version').execute();
    expect(new Set(bookKeys.map((b) => b.key_version))).toEqual(new Set([from + 1])); // the book's key and the ledger's subject keys
    expect((await call('owner', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ rotationPending: false });
    const after = await db.selectFrom('contacts').selectAll().execute();
    expect(after).toHaveLength(1108);
    expect(after.every((r) => r.key_version === from + 1)).toBe(true);
    expect((await call('owner', 'GET', '/api/v1/contacts')).statusCode).toBe(200);
    expect((await call('owner', 'GET', '/api/v1/contacts?email=person1099%40example.org')).json<{ notes: string }[]>().map((c) => c.notes)).toEqual(['Notiz 1099']);
    // The colleague's old copy gives the old secret, whose data key opens no record.
    expect(await core.tenantKeys.openSecret(ids.tenant!, oldSecret)).toBeUndefined();
    const oldFieldKey = hkdf32(await core.tenantKeys.dataKey(ids.tenant!, oldSecret), 'tresor/field/v1');
    for (const row of after) {
      for (const version of [from, from + 1]) expect(() => aeadOpen(oldFieldKey, Buffer.from(row.name_ct, 'base64url'), `${ids.tenant}|contacts|${row.id}|name|v${version}`)).toThrow();
    }
    const wraps = await db.selectFrom('key_wraps').selectAll().execute();
    expect(wraps.filter((w) => w.kind !== 'recovery').map((w) => [w.kind, w.holder, w.secret_version])).toEqual([['account', ids.owner, from + 1]]);
  }, 180_000);

  it('lets the privacy officer, and only them, take a colleague\'s access away in a rotation', async () => {
    expect((await call('owner', 'POST', '/api/v1/keys/grant', { accountId: ids.colleague! })).statusCode).toBe(204);
    tokens.colleague = await bearerLogin(app, 'colleague@uebergabe.test', PASSWORDS.colleague);
    expect((await call('colleague', 'POST', '/api/v1/keys/rotate', { excludeAccountIds: [ids.owner] })).statusCode).toBe(403);
    expect((await call('owner', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true });
    const rotated = await call('owner', 'POST', '/api/v1/keys/rotate', { excludeAccountIds: [ids.colleague] });
    expect(lines(rotated.body).at(-1)).toMatchObject({ keptAccounts: 1, excluded: 1 });
    tokens.colleague = await bearerLogin(app, 'colleague@uebergabe.test', PASSWORDS.colleague);
    expect((await call('colleague', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: false });
    expect((await call('owner', 'GET', '/api/v1/contacts?email=person7%40example.org')).json<{ name: string }[]>().map((c) => c.name)).toEqual(['Person 7']);
  }, 120_000);

  it("finds a person's entries from before the handover and every rotation in the privacy officer's export (Art. 15)", async () => {
    // Kunde 3 was entered by the installer's set-up account under secret version 1, before the handover;
    // the secret was rotated several times since.
    const { secret_version: version } = await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', ids.tenant!).executeTakeFirstOrThrow();
    expect(version).toBeGreaterThanOrEqual(5);
    tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
    expect((await call('owner', 'GET', '/api/v1/contacts?email=kunde3%40example.org')).statusCode).toBe(200);
    const exported = await call('owner', 'GET', `/api/v1/ledger/export?email=${encodeURIComponent('KUNDE3@example.org')}`);
    expect(exported.statusCode, exported.body).toBe(200);
    const entries = exported.json<{ entries: { action: string; actor: string }[] }>().entries;
    expect(entries.filter((e) => e.action === 'record.create').map((e) => e.actor)).toEqual([`tenant:member:${ids.setup}`]);
    // Found by the owner's search right after the handover and by the one just now, and in every list since.
    expect(entries.filter((e) => e.action === 'record.search' && e.actor === `tenant:dpo:${ids.owner}`).length).toBeGreaterThanOrEqual(2);
    expect(entries.some((e) => e.action === 'record.list')).toBe(true);
    expect(exported.body).not.toMatch(/kunde3@|Kunde 3/i);
    // The subject keys are the ones of version 1, wrapped (not changed) at each rotation, under the current version.
    const db = (await tenantDb()) as unknown as Kysely<{ book_keys: { book: string; key_version: number } }>;
    const rows = await db.selectFrom('book_keys').select(['book', 'key_version']).where('book', 'like', 'ledger-subject:%').orderBy('book').execute();
    expect(rows).toEqual([
      { book: 'ledger-subject:email', key_version: version },
      { book: 'ledger-subject:name', key_version: version },
    ]);
  });

  // Several nodes share PostgreSQL; SQLite serves one node (two connections in one process would block the
  // event loop while one waits for the other's write lock), so this runs on PostgreSQL.
  it.skipIf(engine === 'sqlite')('lets only one of two nodes rotate at the same moment: the other is refused, and nothing is lost', async () => {
    // A second node on the same databases: its own process state, so only the databases can stop it.
    const second = await openTestCore(t);
    try {
      tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
      const { secret_version: before } = await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', ids.tenant!).executeTakeFirstOrThrow();
      const results = await Promise.allSettled([core, second].map((node) => node.identity.rotateTenantSecret(tokens.owner!, {}, () => undefined)));
      expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      const refused = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error;
      expect(refused.message).toMatch(/another rotation of the tenant secret finished first|not the current tenant secret|a rotation is still in progress/);
      const { secret_version: after } = await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', ids.tenant!).executeTakeFirstOrThrow();
      expect(after).toBe(before + 1); // one rotation, not two
      tokens.owner = await bearerLogin(app, 'owner@uebergabe.test', PASSWORDS.owner);
      expect((await call('owner', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true, rotationPending: false });
      const db = await tenantDb();
      expect(new Set((await db.selectFrom('contacts').select('key_version').execute()).map((r) => r.key_version))).toEqual(new Set([after]));
      expect((await call('owner', 'GET', '/api/v1/contacts?email=person42%40example.org')).json<{ name: string }[]>().map((c) => c.name)).toEqual(['Person 42']);
      const wraps = await db.selectFrom('key_wraps').selectAll().execute();
      expect(wraps.filter((w) => w.kind !== 'recovery').map((w) => [w.kind, w.holder, w.secret_version])).toEqual([['account', ids.owner, after]]);
    } finally {
      await second.close();
    }
  }, 180_000);

  /** The tenant secret from an account's own copy, opened with its password (as its owner can). */
  async function accountSecret(who: 'owner' | 'colleague') {
    const a = await core.storage.control.selectFrom('accounts').select(['sealed_private_key', 'key_salt']).where('id', '=', ids[who]!).executeTakeFirstOrThrow();
    const kek = await passwordKey(PASSWORDS[who], Buffer.from(a.key_salt!, 'hex'), { memoryKib: 19456, iterations: 2, parallelism: 1 });
    const pk = aeadOpen(kek, Buffer.from(a.sealed_private_key!, 'base64url'), `account-key|${ids[who]}`);
    return (await core.tenantKeys.unwrapForAccount(ids.tenant!, ids[who]!, pk))!;
  }

  async function tenantDb() {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', ids.tenant!).executeTakeFirstOrThrow();
    return core.storage.tenantDb({ tenantId: ids.tenant!, databaseName: row.database_name });
  }
});

import { copyFileSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { aeadOpen, hkdf32 } from '../src/crypto/envelope.js';
import { tenantDataKey } from '../src/crypto/tenant-keys.js';
import { buildApp } from '../src/http/app.js';
import { bearerLogin, engines, GOOD_PASSWORD, mailedKey, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

/**
 * B.1, the seeds' strongest promise: nobody but the customer's own data users reads the customer's
 * personal data — not the operator, not a reseller, not the tenant's admin, not someone holding every
 * database file and the master key. Each way in is tried here and must yield no personal field.
 */
const SECRET_VALUES = {
  name: 'Zacharias Quellmalz-Oberwinkler',
  email: 'z.quellmalz@beispiel-kunde.test',
  phone: '+49 30 98765432',
  address: 'Fliederweg 17, 12345 Musterstadt',
  notes: 'Allergie gegen Haselnuss',
};

describe.each(engines)('admin/data separation and encrypted address books (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const tokens: Record<string, string> = {};
  let tenantId = '';
  let initialKeys: { recoveryCode: string; activationKey: string };
  let contactId = '';
  const outbox = () => core.config.mail.outbox_dir;
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const invite = async (who: string, email: string, role: string, password: string) => {
    expect((await call(who, 'POST', '/api/v1/accounts', { email, role, tenantId })).statusCode).toBe(201);
    const accepted = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(outbox(), email), newPassword: password } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    return bearerLogin(app, email, password);
  };

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    const created = await call('operator', 'POST', '/api/v1/tenants', { name: 'Praxis Dr. Sommer' });
    expect(created.statusCode).toBe(201);
    ({ id: tenantId, initialKeys } = created.json<{ id: string; initialKeys: typeof initialKeys }>());
    expect(initialKeys.recoveryCode).toMatch(/^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
    tokens.admin = await invite('operator', 'admin@praxis.test', 'admin', 'Verwaltung Sommer 2026');
    tokens.anna = await invite('admin', 'anna@praxis.test', 'member', 'Sie arbeitet gern 2026');
    tokens.dpo = await invite('admin', 'dpo@praxis.test', 'dpo', 'Datenschutz zuerst 2026');
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('gives the first data user access only with the one-time activation key', async () => {
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toEqual({ dataAccess: false, waiting: [], colleagues: [], externals: [] });
    const before = await call('anna', 'POST', '/api/v1/contacts', { name: 'Niemand' });
    expect(before.statusCode).toBe(403);
    expect(before.json<{ message: string }>().message).toMatch(/no data access/);
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { activationKey: 'A'.repeat(43) })).statusCode).toBe(401);
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { activationKey: initialKeys.activationKey })).statusCode).toBe(204);
    expect((await call('dpo', 'POST', '/api/v1/keys/activate', { activationKey: initialKeys.activationKey })).statusCode).toBe(401); // used up
    // The admin is no data user at all.
    expect((await call('admin', 'POST', '/api/v1/keys/activate', { recoveryCode: initialKeys.recoveryCode })).statusCode).toBe(403);
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true, waiting: [{ login: 'dpo@praxis.test', role: 'dpo' }] });
  });

  it('stores contacts encrypted, finds them through blind indexes however they are typed', async () => {
    const created = await call('anna', 'POST', '/api/v1/contacts', { ...SECRET_VALUES, company: 'Sommer GmbH' });
    expect(created.statusCode, created.body).toBe(201);
    contactId = created.json<{ id: string }>().id;
    await call('anna', 'POST', '/api/v1/contacts', { name: 'Berta Beispiel', email: 'berta@beispiel-kunde.test', book: 'personal' });
    const byEmail = await call('anna', 'GET', `/api/v1/contacts?email=${encodeURIComponent('  Z.Quellmalz@Beispiel-Kunde.TEST ')}`);
    expect(byEmail.json<{ id: string; name: string }[]>().map((c) => c.name)).toEqual([SECRET_VALUES.name]);
    const byPhone = await call('anna', 'GET', `/api/v1/contacts?phone=${encodeURIComponent('0049 30 987 654 32')}`);
    expect(byPhone.json<{ id: string }[]>().map((c) => c.id)).toEqual([contactId]);
    const byName = await call('anna', 'GET', `/api/v1/contacts?name=${encodeURIComponent('zacharias   QUELLMALZ-oberwinkler')}`);
    expect(byName.json<unknown[]>()).toHaveLength(1);
    expect((await call('anna', 'GET', '/api/v1/contacts?email=nobody%40example.test')).json()).toEqual([]);
    const updated = await call('anna', 'PUT', `/api/v1/contacts/${contactId}`, { ...SECRET_VALUES, notes: 'Allergie gegen Haselnuss und Erdnuss' });
    expect(updated.json()).toMatchObject({ notes: 'Allergie gegen Haselnuss und Erdnuss' });
    expect((await call('anna', 'POST', '/api/v1/contacts', { name: 'X', email: 'not-an-address' })).json()).toMatchObject({ code: 'VALIDATION' });
  });

  it('imports CSV with progress and per-row errors, and exports CSV that imports again unchanged', async () => {
    const csv = [
      'name,email,phone,address,company,notes',
      'Carla Import,carla@import.test,+49 40 555 0101,"Hafenstraße 1, 20095 Hamburg",Import AG,"sagt ""hallo"""',
      'Dieter Import,not-an-address,,,,',
      'Emil Import,emil@import.test,,,,=HYPERLINK(1)',
      ',nameless@import.test,,,,',
    ].join('\r\n');
    const res = await app.inject({ method: 'POST', url: '/api/v1/contacts/import?book=personal', headers: { authorization: `Bearer ${tokens.anna}`, 'content-type': 'text/csv' }, payload: csv });
    expect(res.statusCode, res.body).toBe(200);
    const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toEqual({ done: 4, total: 4 });
    expect(lines.at(-1)).toEqual({
      created: 2,
      errors: [
        { line: 3, message: 'email must be an e-mail address such as name@example.org' },
        { line: 5, message: 'name must be 1 to 200 characters' },
      ],
    });
    const wrongHeader = await app.inject({ method: 'POST', url: '/api/v1/contacts/import', headers: { authorization: `Bearer ${tokens.anna}`, 'content-type': 'text/csv' }, payload: 'vorname,mail\nA,b' });
    expect(wrongHeader.statusCode).toBe(400);

    const exported = await app.inject({ method: 'GET', url: '/api/v1/contacts/export?format=csv', headers: { authorization: `Bearer ${tokens.anna}` } });
    expect(exported.headers['content-type']).toMatch(/^text\/csv/);
    expect(exported.body).toContain('"Hafenstraße 1, 20095 Hamburg"');
    expect(exported.body).toContain("'=HYPERLINK(1)"); // a spreadsheet will not run it
    const { parseCsv } = await import('../src/shared/csv.js');
    const rows = parseCsv(exported.body);
    expect(rows[0]).toEqual(['name', 'email', 'phone', 'address', 'company', 'notes', 'book', 'id']);
    const carla = rows.find((r) => r[0] === 'Carla Import')!;
    expect(carla.slice(0, 6)).toEqual(['Carla Import', 'carla@import.test', '+49 40 555 0101', 'Hafenstraße 1, 20095 Hamburg', 'Import AG', 'sagt "hallo"']);
    expect(rows.find((r) => r[0] === 'Emil Import')![5]).toBe('=HYPERLINK(1)');
    const json = await app.inject({ method: 'GET', url: '/api/v1/contacts/export?format=json', headers: { authorization: `Bearer ${tokens.anna}` } });
    expect(json.json<unknown[]>().length).toBe(rows.length - 1);
    // Clean up, so the later tests see only the two original contacts.
    for (const c of json.json<{ id: string; name: string }[]>().filter((c) => c.name.endsWith('Import'))) {
      expect((await call('anna', 'DELETE', `/api/v1/contacts/${c.id}`)).statusCode).toBe(204);
    }
  });

  it('lets a data user grant a colleague; the DPO finds a data subject in the ledger by e-mail (Art. 15)', async () => {
    const dpoId = (await call('anna', 'GET', '/api/v1/keys/status')).json<{ waiting: { id: string }[] }>().waiting[0]!.id;
    expect((await call('admin', 'POST', '/api/v1/keys/grant', { accountId: dpoId })).statusCode).toBe(403); // an admin has nothing to give
    expect((await call('anna', 'POST', '/api/v1/keys/grant', { accountId: dpoId })).statusCode).toBe(204);
    tokens.dpo = await bearerLogin(app, 'dpo@praxis.test', 'Datenschutz zuerst 2026');
    // The DPO searches every book, Anna's personal one too.
    expect((await call('dpo', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(2);
    const { subject } = (await call('dpo', 'GET', `/api/v1/privacy/subject-index?email=${encodeURIComponent(SECRET_VALUES.email.toUpperCase())}`)).json<{ subject: string }>();
    const entries = (await call('dpo', 'GET', `/api/v1/ledger/entries?subject=${subject}`)).json<{ entries: { action: string; resource: string }[] }>().entries;
    // Every read that returned the person names her too: the searches by e-mail, phone and name (and any
    // later test's), both exports of the address book, and the DPO's own list just now.
    const actions = entries.map((e) => e.action);
    expect(actions[0]).toBe('record.create');
    expect(new Set(actions)).toEqual(new Set(['record.create', 'record.search', 'record.update', 'record.export', 'record.list']));
    expect(actions.filter((a) => a === 'record.search').length).toBeGreaterThanOrEqual(3);
    expect(actions.filter((a) => a === 'record.export')).toHaveLength(2);
    expect(actions.at(-1)).toBe('record.list');
    expect(JSON.stringify(entries)).not.toContain(SECRET_VALUES.email);
    expect((await call('anna', 'GET', `/api/v1/privacy/subject-index?email=x%40y.test`)).statusCode).toBe(403); // the DPO's tool
  });

  it('refuses every administrator path to the data: operator, reseller-tier and tenant admin', async () => {
    for (const who of ['operator', 'admin']) {
      for (const [method, url] of [
        ['GET', '/api/v1/contacts'],
        ['GET', `/api/v1/contacts/${contactId}`],
        ['GET', `/api/v1/contacts?email=${encodeURIComponent(SECRET_VALUES.email)}`],
      ] as const) {
        const res = await call(who, method, url);
        expect(res.statusCode, `${who} ${url}`).toBe(403);
        expect(res.body).not.toContain('Quellmalz');
      }
    }
    // No wrapped copy of the tenant secret exists for anyone but the two data users.
    const holders = (await (await tenantDb()).selectFrom('key_wraps').select(['kind', 'holder']).execute()).map((w) => w.kind);
    expect(holders).toEqual(['account', 'account']);
  });

  it('binds each ciphertext to its row and field: a copied ciphertext does not open', async () => {
    const db = await tenantDb();
    const rows = await db.selectFrom('contacts').selectAll().orderBy('created_at').execute();
    const [a, b] = rows as [(typeof rows)[number], (typeof rows)[number]];
    await db.updateTable('contacts').set({ notes_ct: a.email_ct }).where('id', '=', a.id).execute(); // other field
    const swapped = await call('anna', 'GET', `/api/v1/contacts/${a.id}`);
    expect(swapped.statusCode).toBe(403);
    expect(swapped.body).not.toContain('Quellmalz');
    await db.updateTable('contacts').set({ notes_ct: a.notes_ct, name_ct: a.name_ct }).where('id', '=', b.id).execute(); // other row
    expect((await call('dpo', 'GET', `/api/v1/contacts/${b.id}`)).statusCode).toBe(403);
    await db.updateTable('contacts').set({ notes_ct: a.notes_ct }).where('id', '=', a.id).execute();
    await db.updateTable('contacts').set({ notes_ct: b.notes_ct, name_ct: b.name_ct }).where('id', '=', b.id).execute();
    expect((await call('anna', 'GET', `/api/v1/contacts/${a.id}`)).statusCode).toBe(200);
  });

  it('leaves nothing readable for someone with every database, every file and the master key', async () => {
    // 1. A byte search through everything on disk (and, on PostgreSQL, every row of every table).
    const haystack = [...filesUnder(t.dir).map((f) => readFileSync(f))];
    if (engine === 'postgres') haystack.push(Buffer.from(JSON.stringify(await dumpAll(core.storage.control as unknown as Kysely<unknown>))), Buffer.from(JSON.stringify(await dumpAll((await tenantDb()) as unknown as Kysely<unknown>))));
    // The search itself works: an account's login (not a customer's data) is there in clear.
    expect(haystack.some((bytes) => bytes.includes(Buffer.from('anna@praxis.test')))).toBe(true);
    for (const value of Object.values(SECRET_VALUES)) {
      for (const form of [value, value.toLowerCase(), value.replace(/\s/g, '')]) {
        expect(haystack.some((bytes) => bytes.includes(Buffer.from(form, 'utf8'))), `found "${form}"`).toBe(false);
      }
    }
    // 2. The master key opens the service component, but without the tenant secret that is half a key.
    const component = core.storage.control.selectFrom('tenant_keys').select('sealed_component').where('tenant_id', '=', tenantId);
    const sealed = (await component.executeTakeFirstOrThrow()).sealed_component;
    const { loadOrCreateMasterKey } = await import('../src/crypto/master-key.js');
    const ring = loadOrCreateMasterKey({ file: core.config.master_key.file, value: '' }).ring;
    const c = ring.open(sealed, `tenant-component|${tenantId}`);
    const row = await (await tenantDb()).selectFrom('contacts').selectAll().where('id', '=', contactId).executeTakeFirstOrThrow();
    for (const guess of [Buffer.alloc(32), c, Buffer.from(initialKeys.activationKey, 'base64url')]) {
      const key = hkdf32(tenantDataKey(guess, c), 'tresor/field/v1');
      expect(() => aeadOpen(key, Buffer.from(row.name_ct, 'base64url'), `${tenantId}|contacts|${contactId}|name|v1`)).toThrow();
    }
    // 3. Session rows hold the tenant secret only sealed under the session id, which the database never sees.
    const sessions = await core.storage.control.selectFrom('sessions').select(['id_hash', 'sealed_tenant_secret']).execute();
    expect(sessions.some((s) => s.sealed_tenant_secret !== null)).toBe(true);
    expect(JSON.stringify(sessions)).not.toContain(tokens.anna);
  });

  it('loses the key path with a forgotten password until a colleague grants it again', async () => {
    const annaId = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'anna@praxis.test')!.id;
    expect((await call('admin', 'POST', `/api/v1/accounts/${annaId}/reset`)).statusCode).toBe(200);
    const reset = await app.inject({ method: 'POST', url: '/api/v1/auth/reset', payload: { key: mailedKey(outbox(), 'anna@praxis.test', 'reset'), newPassword: GOOD_PASSWORD } });
    expect(reset.statusCode).toBe(204);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', GOOD_PASSWORD);
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: false });
    expect((await call('anna', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    expect((await call('dpo', 'POST', '/api/v1/keys/grant', { accountId: annaId })).statusCode).toBe(204);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', GOOD_PASSWORD);
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).json()).toMatchObject({ name: SECRET_VALUES.name });
    // A password change keeps the key path.
    const changed = await call('anna', 'POST', '/api/v1/auth/password', { currentPassword: GOOD_PASSWORD, newPassword: 'Neues Kennwort fuer sie 7' });
    tokens.anna = changed.json<{ sessionToken: string }>().sessionToken;
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).statusCode).toBe(200);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', 'Neues Kennwort fuer sie 7');
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).statusCode).toBe(200);
  });

  it('deletes a user together with their personal address book and their copy of the tenant secret', async () => {
    const annaId = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'anna@praxis.test')!.id;
    const before = (await call('dpo', 'GET', '/api/v1/contacts')).json<{ name: string; book: string }[]>();
    expect(before.map((c) => `${c.name}:${c.book}`).sort()).toEqual(['Berta Beispiel:personal', `${SECRET_VALUES.name}:shared`]);
    expect((await call('operator', 'DELETE', `/api/v1/accounts/${annaId}`)).statusCode).toBe(404); // not the operator's to manage
    const deleted = await call('admin', 'DELETE', `/api/v1/accounts/${annaId}`);
    expect(deleted.json()).toEqual({ accountId: annaId, personalRecordsDeleted: 1 });
    expect((await call('anna', 'GET', '/api/v1/auth/me')).statusCode).toBe(401);
    expect((await call('dpo', 'GET', '/api/v1/contacts')).json<{ name: string }[]>().map((c) => c.name)).toEqual([SECRET_VALUES.name]);
    const holders = (await (await tenantDb()).selectFrom('key_wraps').select('holder').execute()).map((w) => w.holder);
    expect(holders).not.toContain(annaId);
    const events = await (await core.ledgers.tenant(tenantId)).query({ action: 'account.delete' });
    expect(events[0]?.payload).toMatchObject({ details: { role: 'member', personalRecordsDeleted: 1 } });
  });

  it.runIf(engine === 'sqlite')('crypto-shreds on deletion: a copy of the tenant database taken before is unreadable afterwards', async () => {
    const db = await tenantDb();
    const wrap = await db.selectFrom('key_wraps').selectAll().executeTakeFirstOrThrow();
    const file = join(core.config.data_dir, 'tenants', readdirSync(join(core.config.data_dir, 'tenants')).find((f) => f.endsWith('.db'))!);
    copyFileSync(file, `${t.dir}/stolen-tenant.db`);
    expect((await call('operator', 'DELETE', `/api/v1/tenants/${tenantId}`)).statusCode).toBe(200);
    expect(await core.storage.control.selectFrom('tenant_keys').selectAll().where('tenant_id', '=', tenantId).execute()).toEqual([]);
    // Even with a tenant secret recovered from the copy (here: the recovery code), K_t needs the shredded C_t.
    await expect(core.tenantKeys.dataKey(tenantId, Buffer.alloc(32))).rejects.toThrow(/no keys/);
    expect(wrap.wrapped).toMatch(/^w1\./);
  });

  async function tenantDb() {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow();
    return core.storage.tenantDb({ tenantId, databaseName: row.database_name });
  }
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

async function dumpAll(db: Kysely<unknown>): Promise<unknown[]> {
  const tables = await sql<{ tablename: string }>`select tablename from pg_tables where schemaname = 'public'`.execute(db);
  const out: unknown[] = [];
  for (const { tablename } of tables.rows) out.push(...(await sql`select * from ${sql.table(tablename)}`.execute(db)).rows);
  return out;
}

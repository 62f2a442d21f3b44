import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { aeadOpen, hkdf32, passwordKey, unwrapWithKey } from '../src/crypto/envelope.js';
import { parseRecoveryCode, secretContext, tenantDataKey } from '../src/crypto/tenant-keys.js';
import { buildApp } from '../src/http/app.js';
import { SqliteDatabase } from '../src/storage/sqlite-driver.js';
import { encryptBytes, randomFileKey, toBase64Url } from '../src/shared-e2e/index.js';
import { tresor } from './cli-process.js';
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
/** Personal data that arrives another way: an address-book CSV import and a transfer's file. */
const IMPORTED_VALUES = { name: 'Wilhelmine Krausenbeck-Ortlieb', email: 'w.krausenbeck@import-kunde.test', notes: 'Herzschrittmacher seit 2019' };
const TRANSFER_VALUE = 'Befund Radiologie: Meniskusriss links, Patientin Ottilie Brandhuber-Zeisig';
const PASSWORDS = { anna: 'Sie arbeitet gern 2026', dpo: 'Datenschutz zuerst 2026' };

describe.each(engines)('admin/data separation and encrypted address books (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const tokens: Record<string, string> = {};
  let tenantId = '';
  /** Everything the tenant's creator (a reseller) was told at creation: the activation key, nothing else. */
  let creation: { id: string; initialKeys: { activationKey: string } } & Record<string, unknown>;
  let recoveryCode = '';
  /** The tenant database's key copies as a copy taken by the creator right after creation would hold them. */
  let wrapsAtCreation: { kind: string; holder: string; wrapped: string; secret_version: number }[] = [];
  let contactId = '';
  const outbox = () => core.config.mail.outbox_dir;
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const accept = async (email: string, password: string) => {
    const accepted = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(outbox(), email), newPassword: password } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    return bearerLogin(app, email, password);
  };
  const invite = async (who: string, email: string, role: string, password: string) => {
    expect((await call(who, 'POST', '/api/v1/accounts', { email, role, tenantId })).statusCode).toBe(201);
    return accept(email, password);
  };

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    // Every administrating tier: the operator, a reseller who creates the tenant, its installer, the tenant admin.
    expect((await call('operator', 'POST', '/api/v1/resellers', { name: 'Partner Nord', adminLogin: 'chef@partner-nord.test' })).statusCode).toBe(201);
    tokens.reseller = await accept('chef@partner-nord.test', 'Wiederverkauf im Sueden 1');
    expect((await call('reseller', 'POST', '/api/v1/accounts', { email: 'monteur@partner-nord.test', role: 'installer' })).statusCode).toBe(201);
    tokens.installer = await accept('monteur@partner-nord.test', 'Einrichtung vor Ort 2026');
    const created = await call('reseller', 'POST', '/api/v1/tenants', { name: 'Praxis Dr. Sommer' });
    expect(created.statusCode).toBe(201);
    creation = created.json();
    tenantId = creation.id;
    // B.1: the creator gets a one-time activation key and no recovery code.
    expect(Object.keys(creation.initialKeys)).toEqual(['activationKey']);
    wrapsAtCreation = await (await tenantDb()).selectFrom('key_wraps').select(['kind', 'holder', 'wrapped', 'secret_version']).execute();
    expect(wrapsAtCreation.map((w) => w.kind)).toEqual(['activation']);
    tokens.admin = await invite('reseller', 'admin@praxis.test', 'admin', 'Verwaltung Winter 2026');
    tokens.anna = await invite('admin', 'anna@praxis.test', 'member', PASSWORDS.anna);
    tokens.dpo = await invite('admin', 'dpo@praxis.test', 'dpo', PASSWORDS.dpo);
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('gives the first data user access only with the one-time activation key, and the recovery code only to them, once', async () => {
    const { activationKey } = creation.initialKeys;
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toEqual({ dataAccess: false, waiting: [], colleagues: [], externals: [] });
    const before = await call('anna', 'POST', '/api/v1/contacts', { name: 'Niemand' });
    expect(before.statusCode).toBe(403);
    expect(before.json<{ message: string }>().message).toMatch(/no data access/);
    // Administrators are no data users at all, not even with the activation key in hand.
    for (const who of ['operator', 'reseller', 'installer', 'admin']) {
      expect((await call(who, 'POST', '/api/v1/keys/activate', { activationKey })).statusCode, who).toBe(403);
    }
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { activationKey: 'A'.repeat(43) })).statusCode).toBe(401);
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(204);
    expect((await call('dpo', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(401); // used up
    // The activation replaced the secret behind the activation key: version 1 is one nobody else ever saw.
    expect((await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow()).secret_version).toBe(1);
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true, recoveryCodePending: true, waiting: [{ login: 'dpo@praxis.test', role: 'dpo' }] });
    for (const who of ['operator', 'reseller', 'installer', 'admin', 'dpo']) {
      expect((await call(who, 'POST', '/api/v1/keys/recovery-code')).statusCode, who).toBe(403);
    }
    const shown = await call('anna', 'POST', '/api/v1/keys/recovery-code');
    expect(shown.statusCode).toBe(200);
    recoveryCode = shown.json<{ recoveryCode: string }>().recoveryCode;
    expect(recoveryCode).toMatch(/^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
    const again = await call('anna', 'POST', '/api/v1/keys/recovery-code');
    expect(again.statusCode).toBe(404); // shown once
    expect(again.json<{ message: string }>().message).toMatch(/shown once/);
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ recoveryCodePending: false });
    expect(await core.tenantKeys.checkSecret(tenantId, parseRecoveryCode(recoveryCode)!)).toBe(true);
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

  it('removes blind-index false positives: with two rows forced by SQL onto the same index values, search returns only the true match', async () => {
    const db = await tenantDb();
    const zacharias = await db.selectFrom('contacts').selectAll().where('id', '=', contactId).executeTakeFirstOrThrow();
    const berta = await db.selectFrom('contacts').selectAll().where('id', '!=', contactId).executeTakeFirstOrThrow();
    await db.updateTable('contacts').set({ name_bidx: zacharias.name_bidx, phone_bidx: zacharias.phone_bidx, email_bidx: zacharias.email_bidx }).where('id', '=', berta.id).execute();
    // The collision is real: the index alone now points at both rows.
    for (const column of ['name_bidx', 'phone_bidx', 'email_bidx'] as const) {
      expect((await db.selectFrom('contacts').select('id').where(column, '=', zacharias[column]!).execute()).map((r) => r.id).sort()).toEqual([berta.id, contactId].sort());
    }
    // Search decrypts both candidates and keeps the one whose value really matches.
    const byName = await call('anna', 'GET', `/api/v1/contacts?name=${encodeURIComponent(SECRET_VALUES.name.toUpperCase())}`);
    expect(byName.json<{ id: string }[]>().map((c) => c.id)).toEqual([contactId]);
    const byPhone = await call('anna', 'GET', `/api/v1/contacts?phone=${encodeURIComponent('0049 30 98765432')}`);
    expect(byPhone.json<{ id: string }[]>().map((c) => c.id)).toEqual([contactId]);
    // Berta's own values no longer reach her row (the search goes through the index, not a scan) — unless the
    // two names' shortened indexes coincide by chance (they are short on purpose: k-anonymity), when her row
    // is still, rightly, found by her name.
    const sameByChance = berta.name_bidx === zacharias.name_bidx;
    const byOwnName = (await call('anna', 'GET', `/api/v1/contacts?name=${encodeURIComponent('Berta Beispiel')}`)).json<{ id: string }[]>();
    expect(byOwnName.map((c) => c.id)).toEqual(sameByChance ? [berta.id] : []);
    await db.updateTable('contacts').set({ name_bidx: berta.name_bidx, phone_bidx: berta.phone_bidx, email_bidx: berta.email_bidx }).where('id', '=', berta.id).execute();
    expect((await call('anna', 'GET', `/api/v1/contacts?name=${encodeURIComponent('berta beispiel')}`)).json<{ id: string }[]>().map((c) => c.id)).toEqual([berta.id]);
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

  it('refuses every administrator path to the data: operator, reseller, installer, tenant admin, and the CLI', async () => {
    for (const who of ['operator', 'reseller', 'installer', 'admin']) {
      for (const [method, url] of [
        ['GET', '/api/v1/contacts'],
        ['GET', `/api/v1/contacts/${contactId}`],
        ['GET', `/api/v1/contacts?email=${encodeURIComponent(SECRET_VALUES.email)}`],
        ['GET', '/api/v1/contacts/export?format=csv'],
        ['GET', '/api/v1/jobs'],
        ['POST', '/api/v1/keys/rotate'],
        ['POST', `/api/v1/tenants/${tenantId}/handover`],
      ] as const) {
        const res = await call(who, method, url, url.endsWith('/handover') ? { ownerAccountId: tenantId } : method === 'POST' ? {} : undefined);
        expect([401, 403, 404], `${who} ${method} ${url}: ${res.statusCode}`).toContain(res.statusCode);
        expect(res.body).not.toContain('Quellmalz');
      }
    }
    // The platform owner's CLI, with the data directory, the databases and the master key at hand.
    const cliEnv = { ...t.env, TRESOR_METRICS_ENABLED: 'false' };
    for (const args of [
      ['account', 'list', '--tenant', tenantId],
      ['ledger', 'export', '--tenant', tenantId, '--format', 'csv', '--out', join(t.dir, 'ledger-export.csv')],
      ['tenant', 'handover', '--tenant', tenantId, '--owner', 'anna@praxis.test', '--yes'],
    ]) {
      const run = tresor(['--json', ...args], { cwd: t.dir, env: cliEnv });
      const output = run.stdout + run.stderr + (args.includes('--out') ? readFileSync(args.at(-1)!, 'utf8') : '');
      for (const value of Object.values(SECRET_VALUES)) expect(output, args.join(' ')).not.toContain(value);
      if (args[1] === 'handover') expect(run.code, output).not.toBe(0); // needs a data user's session
      else expect(run.code, `${args.join(' ')}: ${output}`).toBe(0);
    }
    // No wrapped copy of the tenant secret exists for anyone but the two data users.
    const holders = (await (await tenantDb()).selectFrom('key_wraps').select(['kind', 'holder']).execute()).map((w) => w.kind);
    expect(holders).toEqual(['account', 'account']);
  }, 180_000);

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
    // Personal data that came in as an address-book CSV import and as a transfer's file is searched for too.
    const csv = `name,email,phone,address,company,notes\r\n${IMPORTED_VALUES.name},${IMPORTED_VALUES.email},,,,${IMPORTED_VALUES.notes}\r\n`;
    const imported = await app.inject({ method: 'POST', url: '/api/v1/contacts/import', headers: { authorization: `Bearer ${tokens.anna}`, 'content-type': 'text/csv' }, payload: csv });
    expect(imported.body.trim().split('\n').at(-1)).toBe('{"created":1,"errors":[]}');
    const transferId = await sendTransfer(Buffer.from(`${TRANSFER_VALUE}\n`.repeat(500)));

    // 1. A byte search through everything on disk: the data directory (databases, blobs, outbox) and keys.
    const haystack = filesUnder(t.dir).map((f) => readFileSync(f));
    expect(existsSync(join(core.config.data_dir, 'blobs', tenantId, transferId))).toBe(true);
    // On PostgreSQL: the server's own data files of the control and the tenant database, after a CHECKPOINT
    // has written every change out (readable when the server runs on this machine, as in CI and here);
    // otherwise a pg_dump of both databases.
    const source = engine === 'postgres' ? await postgresBytes(haystack) : 'sqlite files';
    // The search itself works: an account's login (not a customer's data) is there in clear.
    expect(haystack.some((bytes) => bytes.includes(Buffer.from('anna@praxis.test'))), source).toBe(true);
    for (const value of [...Object.values(SECRET_VALUES), ...Object.values(IMPORTED_VALUES), TRANSFER_VALUE.slice(0, 40), 'Ottilie Brandhuber']) {
      for (const form of [value, value.toLowerCase(), value.replace(/\s/g, '')]) {
        expect(haystack.some((bytes) => bytes.includes(Buffer.from(form, 'utf8'))), `found "${form}" in ${source}`).toBe(false);
      }
    }
    // 2. The master key opens the service component, but without the tenant secret that is half a key:
    // no guess an administrator could make opens a record (the real secret does, so the attack itself works).
    const { c, row } = await masterKeyAttack();
    const opens = (secret: Buffer) => {
      try {
        return aeadOpen(hkdf32(tenantDataKey(secret, c), 'tresor/field/v1'), Buffer.from(row.name_ct, 'base64url'), `${tenantId}|contacts|${contactId}|name|v${row.key_version}`).toString('utf8');
      } catch {
        return undefined;
      }
    };
    expect(opens(parseRecoveryCode(recoveryCode)!)).toBe(SECRET_VALUES.name);
    for (const guess of adminGuesses(c)) expect(opens(guess)).toBeUndefined();
    // 3. Session rows hold the tenant secret only sealed under the session id, which the database never sees.
    const sessions = await core.storage.control.selectFrom('sessions').select(['id_hash', 'sealed_tenant_secret']).execute();
    expect(sessions.some((s) => s.sealed_tenant_secret !== null)).toBe(true);
    expect(JSON.stringify(sessions)).not.toContain(tokens.anna);
    const mine = (await call('anna', 'GET', `/api/v1/contacts?email=${encodeURIComponent(IMPORTED_VALUES.email)}`)).json<{ id: string }[]>();
    expect((await call('anna', 'DELETE', `/api/v1/contacts/${mine[0]!.id}`)).statusCode).toBe(204);
  });

  it('B.1: the creation output, the master key and database copies from before and after the activation open no record', async () => {
    const { c, row } = await masterKeyAttack();
    const field = (secret: Buffer) => hkdf32(tenantDataKey(secret, c), 'tresor/field/v1');
    // The copy taken at creation holds the activation copy; the creator's activation key opens it …
    const activation = wrapsAtCreation.find((w) => w.kind === 'activation')!;
    const placeholder = unwrapWithKey(activation.wrapped, Buffer.from(creation.initialKeys.activationKey, 'base64url'), secretContext(tenantId, activation.secret_version));
    // … but that secret was replaced at the activation: it is not the tenant's secret and opens no record.
    expect(await core.tenantKeys.openSecret(tenantId, placeholder)).toBeUndefined();
    for (const version of [0, 1, 2]) {
      expect(() => aeadOpen(field(placeholder), Buffer.from(row.name_ct, 'base64url'), `${tenantId}|contacts|${contactId}|name|v${version}`)).toThrow();
    }
    // Today's copy holds no key the creator's output opens: every wrapped copy is tried with it.
    const now = await (await tenantDb()).selectFrom('key_wraps').selectAll().execute();
    expect(now.map((w) => w.kind).sort()).toEqual(['account', 'account']);
    for (const w of [...now, ...wrapsAtCreation]) {
      for (const version of [0, 1, 2]) {
        let opened: Buffer | undefined;
        try {
          opened = unwrapWithKey(w.wrapped, Buffer.from(creation.initialKeys.activationKey, 'base64url'), secretContext(tenantId, version));
        } catch {
          opened = undefined;
        }
        if (opened) expect(await core.tenantKeys.openSecret(tenantId, opened)).toBeUndefined();
      }
    }
    // Nothing in the creation output is the secret or the recovery code.
    expect(JSON.stringify(creation)).not.toContain(recoveryCode.replace(/-/g, '').slice(0, 12));
  });

  it('loses the key path with a forgotten password until a colleague grants it again', async () => {
    const annaId = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'anna@praxis.test')!.id;
    expect((await call('admin', 'POST', `/api/v1/accounts/${annaId}/reset`)).statusCode).toBe(200);
    const reset = await app.inject({ method: 'POST', url: '/api/v1/auth/reset', payload: { key: mailedKey(outbox(), 'anna@praxis.test', 'reset'), newPassword: GOOD_PASSWORD } });
    expect(reset.statusCode).toBe(204);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', GOOD_PASSWORD);
    expect((await call('anna', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: false });
    expect((await call('anna', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    // The customer's recovery code (kept offline since the activation) brings the key path back.
    const wrongCode = formatLike(recoveryCode);
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { recoveryCode: wrongCode })).statusCode).toBe(401);
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { recoveryCode: recoveryCode.toLowerCase().replace(/-/g, ' ') })).statusCode).toBe(204);
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).json()).toMatchObject({ name: SECRET_VALUES.name, notes: 'Allergie gegen Haselnuss und Erdnuss' });
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', GOOD_PASSWORD); // a new session opens her new copy
    expect((await call('anna', 'GET', `/api/v1/contacts?email=${encodeURIComponent(SECRET_VALUES.email)}`)).json<{ id: string }[]>().map((x) => x.id)).toEqual([contactId]);
    const recovered = await (await core.ledgers.tenant(tenantId)).query({ action: 'key.activate' });
    const via = (outcome: string) => recovered.filter((e) => e.outcome === outcome).map((e) => (e.payload as { details?: { via?: string } }).details?.via);
    expect(via('success')).toEqual(['activation-key', 'recovery-code']);
    expect(via('denied')).toHaveLength(3); // a made-up key, the used-up key, a wrong recovery code
    // Forgotten once more: this time a colleague with data access grants it again.
    expect((await call('admin', 'POST', `/api/v1/accounts/${annaId}/reset`)).statusCode).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/api/v1/auth/reset', payload: { key: mailedKey(outbox(), 'anna@praxis.test', 'reset'), newPassword: 'Wieder vergessen im Winter 9' } })).statusCode).toBe(204);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', 'Wieder vergessen im Winter 9');
    expect((await call('anna', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    expect((await call('dpo', 'POST', '/api/v1/keys/grant', { accountId: annaId })).statusCode).toBe(204);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', 'Wieder vergessen im Winter 9');
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).json()).toMatchObject({ name: SECRET_VALUES.name });
    // A password change keeps the key path.
    const changed = await call('anna', 'POST', '/api/v1/auth/password', { currentPassword: 'Wieder vergessen im Winter 9', newPassword: 'Neues Kennwort fuer sie 7' });
    tokens.anna = changed.json<{ sessionToken: string }>().sessionToken;
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).statusCode).toBe(200);
    tokens.anna = await bearerLogin(app, 'anna@praxis.test', 'Neues Kennwort fuer sie 7');
    expect((await call('anna', 'GET', `/api/v1/contacts/${contactId}`)).statusCode).toBe(200);
  });

  it('deletes a user together with their personal address book and their copy of the tenant secret', async () => {
    const annaId = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'anna@praxis.test')!.id;
    const before = (await call('dpo', 'GET', '/api/v1/contacts')).json<{ name: string; book: string }[]>();
    expect(before.map((c) => `${c.name}:${c.book}`).sort()).toEqual(['Berta Beispiel:personal', `${SECRET_VALUES.name}:shared`]);
    // B.7: the personal book has its own key, wrapped under K_t; its records are sealed under that key alone.
    const db = await tenantDb();
    const book = `personal:${annaId}`;
    const berta = await db.selectFrom('contacts').selectAll().where('book', '=', book).executeTakeFirstOrThrow();
    const bookWrap = await (db as unknown as Kysely<{ book_keys: { book: string; wrapped: string; key_version: number } }>).selectFrom('book_keys').selectAll().where('book', '=', book).executeTakeFirstOrThrow();
    const { dataKey } = (await core.identity.dataKeyOf(tokens.dpo!))!;
    const nameAad = `${tenantId}|contacts|${berta.id}|name|v${berta.key_version}`;
    expect(() => aeadOpen(hkdf32(dataKey, 'tresor/field/v1'), Buffer.from(berta.name_ct, 'base64url'), nameAad)).toThrow(); // not under K_t
    const bookKey = unwrapWithKey(bookWrap.wrapped, dataKey, `book-key|${tenantId}|${book}|v${bookWrap.key_version}`);
    expect(aeadOpen(hkdf32(bookKey, 'tresor/field/v1'), Buffer.from(berta.name_ct, 'base64url'), nameAad).toString('utf8')).toBe('Berta Beispiel');
    expect((await call('operator', 'DELETE', `/api/v1/accounts/${annaId}`)).statusCode).toBe(404); // not the operator's to manage
    const deleted = await call('admin', 'DELETE', `/api/v1/accounts/${annaId}`);
    expect(deleted.json()).toEqual({ accountId: annaId, personalRecordsDeleted: 1 });
    expect((await call('anna', 'GET', '/api/v1/auth/me')).statusCode).toBe(401);
    expect((await call('dpo', 'GET', '/api/v1/contacts')).json<{ name: string }[]>().map((c) => c.name)).toEqual([SECRET_VALUES.name]);
    const holders = (await (await tenantDb()).selectFrom('key_wraps').select('holder').execute()).map((w) => w.holder);
    expect(holders).not.toContain(annaId);
    // The book's key is destroyed with it: a copy of the record from before opens with nothing left.
    expect(await (db as unknown as Kysely<{ book_keys: { book: string } }>).selectFrom('book_keys').selectAll().where('book', '=', book).execute()).toEqual([]);
    const events = await (await core.ledgers.tenant(tenantId)).query({ action: 'account.delete' });
    expect(events[0]?.payload).toMatchObject({ details: { role: 'member', personalRecordsDeleted: 1 } });
  });

  it('crypto-shreds on deletion, first: a copy of the tenant database and blobs taken before opens nothing afterwards, even with the real tenant secret', async () => {
    const db = await tenantDb();
    const databaseName = (await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow()).database_name;
    // The thief's copy of the tenant database and its blobs, taken before the deletion.
    const stolen = await copyTenantDatabase(db, databaseName);
    cpSync(join(core.config.data_dir, 'blobs', tenantId), join(t.dir, 'stolen-blobs'), { recursive: true });
    // And the real tenant secret, got legitimately: the DPO's own copy, opened with her password.
    const dpo = await core.storage.control.selectFrom('accounts').selectAll().where('login', '=', 'dpo@praxis.test').executeTakeFirstOrThrow();
    const kek = await passwordKey(PASSWORDS.dpo, Buffer.from(dpo.key_salt!, 'hex'), { memoryKib: 19456, iterations: 2, parallelism: 1 });
    const privateKey = aeadOpen(kek, Buffer.from(dpo.sealed_private_key!, 'base64url'), `account-key|${dpo.id}`);
    const secret = (await core.tenantKeys.unwrapForAccount(tenantId, dpo.id, privateKey))!;
    const { loadOrCreateMasterKey } = await import('../src/crypto/master-key.js');
    const ring = () => loadOrCreateMasterKey({ file: core.config.master_key.file, value: '' }).ring;
    /** The attack: every value the control database holds sealed, opened as this tenant's C_t, then the copy's record. */
    const attack = async () => {
      const opened: string[] = [];
      const contact = stolen.rows('contacts').find((r) => r.id === contactId)!;
      for (const sealed of await sealedValuesOfControl()) {
        let c: Buffer;
        try {
          c = ring().open(sealed, `tenant-component|${tenantId}`);
        } catch {
          continue;
        }
        const field = hkdf32(tenantDataKey(secret, c), 'tresor/field/v1');
        opened.push(aeadOpen(field, Buffer.from(String(contact.name_ct), 'base64url'), `${tenantId}|contacts|${contactId}|name|v${String(contact.key_version)}`).toString('utf8'));
      }
      return opened;
    };
    expect(await attack()).toEqual([SECRET_VALUES.name]); // before the deletion the attack works: the test can fail
    expect(stolen.rows('key_wraps').length).toBeGreaterThan(0);

    // Shredding comes first: a deletion that fails right after it (the database cannot be dropped) has
    // already destroyed every key copy and C_t — without relying on the control row's ON DELETE CASCADE.
    const undo = await blockTenantDrop(databaseName);
    const failed = await call('operator', 'DELETE', `/api/v1/tenants/${tenantId}`);
    expect(failed.statusCode, failed.body).toBe(500);
    await undo();
    expect(await core.storage.control.selectFrom('tenants').select('id').where('id', '=', tenantId).executeTakeFirst()).toBeDefined();
    expect(await core.storage.control.selectFrom('tenant_keys').selectAll().where('tenant_id', '=', tenantId).execute()).toEqual([]);
    expect(await (await tenantDb()).selectFrom('key_wraps').selectAll().execute()).toEqual([]);
    expect(await attack()).toEqual([]);

    expect((await call('operator', 'DELETE', `/api/v1/tenants/${tenantId}`)).statusCode).toBe(200);
    // Control database + master key + the copy + the real secret: no sealed value opens as C_t, so no K_t.
    expect(await attack()).toEqual([]);
    await expect(core.tenantKeys.dataKey(tenantId, secret)).rejects.toThrow(/no keys/);
    expect(existsSync(join(t.dir, 'stolen-blobs'))).toBe(true);
  });

  /** A copy of the tenant database as a thief would take it: SQLite `VACUUM INTO` a file, PostgreSQL pg_dump. */
  async function copyTenantDatabase(db: Kysely<unknown> | Awaited<ReturnType<typeof tenantDb>>, databaseName: string): Promise<{ rows(table: string): Record<string, unknown>[] }> {
    if (engine === 'sqlite') {
      const file = join(t.dir, 'stolen-tenant.db');
      await sql`vacuum into ${file}`.execute(db as Kysely<unknown>);
      const copy = new SqliteDatabase(file, { readonly: true });
      const tables = new Map<string, Record<string, unknown>[]>();
      for (const table of ['contacts', 'key_wraps']) tables.set(table, copy.prepare(`select * from ${table}`).all() as Record<string, unknown>[]);
      copy.close();
      return { rows: (table) => tables.get(table) ?? [] };
    }
    const url = new URL(process.env.TRESOR_TEST_PG!);
    url.pathname = `/${databaseName}`;
    const dump = spawnSync('pg_dump', ['--data-only', '--dbname', url.toString()], { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    expect(dump.status, dump.stderr).toBe(0);
    return { rows: (table) => rowsOfDump(dump.stdout, table) };
  }

  /** Every value sealed under the master key in the control database (whatever its column). */
  async function sealedValuesOfControl(): Promise<string[]> {
    const rows = await core.storage.control.selectFrom('tenant_keys').select('sealed_component').execute();
    const all = rows.map((r) => r.sealed_component);
    const text = JSON.stringify(await dumpControl());
    for (const m of text.matchAll(/mk\d+\.[A-Za-z0-9_.-]+/g)) all.push(m[0]);
    return [...new Set(all)];
  }

  async function dumpControl(): Promise<unknown[]> {
    if (engine === 'postgres') return dumpAll(core.storage.control as unknown as Kysely<unknown>);
    const tables = await sql<{ name: string }>`select name from sqlite_master where type = 'table'`.execute(core.storage.control);
    const out: unknown[] = [];
    for (const { name } of tables.rows) out.push(...(await sql`select * from ${sql.table(name)}`.execute(core.storage.control)).rows);
    return out;
  }

  /**
   * Makes the next drop of the tenant database fail, to see what the deletion did before it: PostgreSQL
   * refuses to drop a template database; a SQLite file in an immutable (root) or read-only folder cannot
   * be removed. Returns the undo.
   */
  async function blockTenantDrop(databaseName: string): Promise<() => Promise<void>> {
    if (engine === 'postgres') {
      const client = new pg.Client({ connectionString: process.env.TRESOR_TEST_PG });
      await client.connect();
      await client.query(`alter database ${pg.escapeIdentifier(databaseName)} is_template true`);
      return async () => {
        await client.query(`alter database ${pg.escapeIdentifier(databaseName)} is_template false`);
        await client.end();
      };
    }
    const dir = join(core.config.data_dir, 'tenants');
    mkdirSync(dir, { recursive: true });
    if (process.getuid?.() === 0) {
      const set = spawnSync('chattr', ['+i', dir], { encoding: 'utf8' });
      expect(set.status, `chattr +i ${dir}: ${set.stderr}`).toBe(0);
      return async () => void spawnSync('chattr', ['-i', dir]);
    }
    const { chmodSync } = await import('node:fs');
    chmodSync(dir, 0o555);
    return async () => chmodSync(dir, 0o755);
  }

  /** Sends a level-1 transfer (the server wraps its file key under K_t) of `plain` to an outside address. */
  async function sendTransfer(plain: Buffer): Promise<string> {
    const fileKey = randomFileKey();
    const created = await call('anna', 'POST', '/api/v1/transfers', {
      subject: 'Unterlagen',
      level: 1,
      expiresAt: new Date(Date.now() + 3 * 86_400_000).toISOString(),
      recipients: ['empfang@extern.test'],
      files: [{ name: 'anlage.txt', size: plain.length, fileKey: toBase64Url(fileKey) }],
    });
    expect(created.statusCode, created.body).toBe(201);
    const tr = created.json<{ id: string; files: { id: string }[] }>();
    const cipher = Buffer.from(await encryptBytes(fileKey, `transfer:${tr.id}/file:${tr.files[0]!.id}`, plain));
    const put = await app.inject({ method: 'PUT', url: `/api/v1/transfers/${tr.id}/blobs/${tr.files[0]!.id}?offset=0`, headers: { authorization: `Bearer ${tokens.anna}`, 'content-type': 'application/octet-stream' }, payload: cipher });
    expect(put.statusCode, put.body).toBe(200);
    expect((await call('anna', 'POST', `/api/v1/transfers/${tr.id}/send`)).statusCode).toBe(200);
    return tr.id;
  }

  /** What the master key yields: the service component C_t, and a record's row to try keys on. */
  async function masterKeyAttack() {
    const sealed = (await core.storage.control.selectFrom('tenant_keys').select('sealed_component').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow()).sealed_component;
    const { loadOrCreateMasterKey } = await import('../src/crypto/master-key.js');
    const c = loadOrCreateMasterKey({ file: core.config.master_key.file, value: '' }).ring.open(sealed, `tenant-component|${tenantId}`);
    const row = await (await tenantDb()).selectFrom('contacts').selectAll().where('id', '=', contactId).executeTakeFirstOrThrow();
    return { c, row };
  }

  /** Every candidate for T_t the administrating side could hold: the creation output and what it opens. */
  function adminGuesses(c: Buffer): Buffer[] {
    const activationKey = Buffer.from(creation.initialKeys.activationKey, 'base64url');
    const activation = wrapsAtCreation.find((w) => w.kind === 'activation')!;
    const placeholder = unwrapWithKey(activation.wrapped, activationKey, secretContext(tenantId, activation.secret_version));
    const fromOutput = JSON.stringify(creation).match(/[A-Za-z0-9_-]{43}/g) ?? [];
    return [Buffer.alloc(32), c, activationKey, placeholder, ...fromOutput.map((v) => Buffer.from(v, 'base64url'))];
  }

  /** PostgreSQL: the raw data files of both databases (after a CHECKPOINT), or else a pg_dump of each. */
  async function postgresBytes(haystack: Buffer[]): Promise<string> {
    const client = new pg.Client({ connectionString: process.env.TRESOR_TEST_PG });
    await client.connect();
    try {
      const tenantName = (await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow()).database_name;
      const names = [t.pgDatabase!, tenantName];
      await client.query('checkpoint');
      const dataDir = (await client.query<{ setting: string }>("select setting from pg_settings where name = 'data_directory'")).rows[0]?.setting ?? '';
      const oids = (await client.query<{ oid: string }>('select oid::text from pg_database where datname = any($1)', [names])).rows.map((r) => r.oid);
      const dirs = oids.map((oid) => join(dataDir, 'base', oid));
      if (oids.length === 2 && dirs.every((d) => existsSync(d))) {
        for (const dir of dirs) haystack.push(...filesUnder(dir).map((f) => readFileSync(f)));
        return `PostgreSQL data files ${dirs.join(', ')}`;
      }
      for (const name of names) {
        const url = new URL(process.env.TRESOR_TEST_PG!);
        url.pathname = `/${name}`;
        const dump = spawnSync('pg_dump', ['--dbname', url.toString()], { encoding: 'buffer', timeout: 60_000 });
        expect(dump.status, dump.stderr.toString()).toBe(0);
        haystack.push(dump.stdout);
      }
      return 'pg_dump of the control and the tenant database';
    } finally {
      await client.end();
    }
  }

  async function tenantDb() {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow();
    return core.storage.tenantDb({ tenantId, databaseName: row.database_name });
  }
});

/** A well-formed recovery code that is not `code`: its first group changed. */
function formatLike(code: string): string {
  return `${code.startsWith('AAAA') ? 'BBBB' : 'AAAA'}${code.slice(4)}`;
}

/** The rows of one table in a pg_dump --data-only (COPY … FROM stdin blocks, tab-separated). */
function rowsOfDump(dump: string, table: string): Record<string, unknown>[] {
  const head = new RegExp(`^COPY public\\.${table} \\(([^)]*)\\) FROM stdin;$`, 'm').exec(dump);
  if (!head) return [];
  const columns = head[1]!.split(', ').map((c) => c.replace(/"/g, ''));
  const body = dump.slice(head.index + head[0].length + 1, dump.indexOf('\n\\.\n', head.index));
  return body === '' ? [] : body.split('\n').map((line) => Object.fromEntries(line.split('\t').map((v, i) => [columns[i]!, v === '\\N' ? null : v])));
}

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

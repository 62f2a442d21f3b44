import { Writable } from 'node:stream';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, openCore, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { tresor } from './cli-process.js';
import { bearerLogin, engines, GOOD_PASSWORD, mailedKey, makeTestEnv, readOutbox, type TestEnv } from './helpers.js';

/**
 * B.1 without trusting the tenant's creator: with a named first data user the activation key is mailed only
 * to that person and works only for their account. The creator (here the operator, who on a test machine
 * can even read the mail outbox) gets no key, and a data seat of its own cannot activate with a stolen one.
 */
const FIRST = 'leitung@kunde-nord.test';
/** The activation key in a mail to `email` (German or English template). */
function mailedActivationKey(outboxDir: string, email: string): string {
  for (const mail of readOutbox(outboxDir).filter((m) => m.to === email).reverse()) {
    const key = /(?:Aktivierungsschlüssel|Activation key): ([A-Za-z0-9_-]{43})/.exec(mail.text)?.[1];
    if (key) return key;
  }
  throw new Error(`no activation key mailed to ${email}`);
}

describe.each(engines)('a tenant with a named first data user (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const logLines: string[] = [];
  const tokens: Record<string, string> = {};
  let tenantId = '';
  let firstId = '';
  let creationBody = '';
  const outbox = () => core.config.mail.outbox_dir;
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const accept = async (email: string, password = GOOD_PASSWORD) => {
    const accepted = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(outbox(), email), newPassword: password } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    return bearerLogin(app, email, password);
  };
  const activationRows = async () => {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow();
    const db = await core.storage.tenantDb({ tenantId, databaseName: row.database_name });
    return db.selectFrom('key_wraps').selectAll().where('kind', '=', 'activation').execute();
  };
  const secretVersion = async () =>
    (await core.storage.control.selectFrom('tenant_keys').select('secret_version').where('tenant_id', '=', tenantId).executeTakeFirstOrThrow()).secret_version;

  beforeAll(async () => {
    t = makeTestEnv(engine);
    // Every log line of the server and the core, at the most verbose level, to search for the key.
    const log = pino({ level: 'trace' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) }));
    core = await openCore(t.config, { log });
    app = await buildApp(core, { logger: log });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('gives the creator no activation key: it goes by mail to the named first data user only', async () => {
    const created = await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde Nord', firstDataUser: { email: ` ${FIRST.toUpperCase()} `, language: 'de' } });
    expect(created.statusCode, created.body).toBe(201);
    creationBody = created.body;
    const body = created.json<{ id: string; initialKeys: Record<string, unknown>; firstDataUser: { accountId: string; login: string; role: string } }>();
    tenantId = body.id;
    firstId = body.firstDataUser.accountId;
    expect(body.initialKeys).toEqual({ activationKey: null, mailedTo: 'first-data-user' });
    expect(body.firstDataUser).toMatchObject({ login: FIRST, role: 'dpo' });
    const key = mailedActivationKey(outbox(), FIRST);
    // The key is in exactly one mail (to that person), never in the answer, a log line or a ledger entry.
    expect(readOutbox(outbox()).filter((m) => m.text.includes(key)).map((m) => m.to)).toEqual([FIRST]);
    expect(readOutbox(outbox()).filter((m) => m.to === FIRST).map((m) => m.subject)).toEqual([
      'Einladung zu Tresor: Kunde Nord',
      'Tresor: Ihr Aktivierungsschlüssel für Kunde Nord',
    ]);
    expect(creationBody).not.toContain(key);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join('\n')).not.toContain(key);
    const ledgerText = JSON.stringify([await core.ledgers.platform.query({}), await (await core.ledgers.tenant(tenantId)).query({})]);
    expect(ledgerText).not.toContain(key);
    expect(ledgerText).not.toContain(FIRST); // no address in the ledger either
    expect(ledgerText).toContain('"firstDataUser":true');
    // The activation copy names the account it is bound to.
    expect((await activationRows()).map((w) => w.bound_to)).toEqual([firstId]);
  });

  it("refuses the key from the creator's own data seat (403, recorded, not used up), and a tampered binding opens nothing", async () => {
    // A creator in bad faith: the operator invites a tenant admin of its own, who invites a member seat.
    expect((await call('operator', 'POST', '/api/v1/accounts', { email: 'sitz-admin@betreiber.test', role: 'admin', tenantId })).statusCode).toBe(201);
    tokens.admin = await accept('sitz-admin@betreiber.test');
    expect((await call('admin', 'POST', '/api/v1/accounts', { email: 'eigener-sitz@betreiber.test', role: 'member', tenantId })).statusCode).toBe(201);
    tokens.seat = await accept('eigener-sitz@betreiber.test');
    // The operator of a test machine can read the outbox, and so the key meant for the first data user.
    const stolen = mailedActivationKey(outbox(), FIRST);
    for (const who of ['operator', 'admin']) {
      expect((await call(who, 'POST', '/api/v1/keys/activate', { activationKey: stolen })).statusCode, who).toBe(403);
    }
    const refused = await call('seat', 'POST', '/api/v1/keys/activate', { activationKey: stolen });
    expect(refused.statusCode).toBe(403);
    expect(refused.json<{ message: string }>().message).toMatch(/this activation key belongs to the tenant's named first data user/);
    expect(refused.body).not.toContain(FIRST);
    // A made-up key is still just a wrong key.
    expect((await call('seat', 'POST', '/api/v1/keys/activate', { activationKey: 'B'.repeat(43) })).statusCode).toBe(401);
    // Not used up, nothing rotated, no data access for the seat.
    expect(await activationRows()).toHaveLength(1);
    expect(await secretVersion()).toBe(0);
    expect((await call('seat', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: false });
    const denied = (await (await core.ledgers.tenant(tenantId)).query({ action: 'key.activate' })).filter((e) => e.outcome === 'denied');
    expect(denied.map((e) => (e.payload as { details?: { reason?: string } }).details?.reason)).toEqual(['bound-to-first-data-user', undefined]);
    expect(JSON.stringify(denied)).not.toContain('betreiber.test');

    // Someone with write access to the tenant database moves the binding to the seat: the copy's AAD
    // names the first data user, so it opens for nobody (and still is not used up).
    const [wrap] = await activationRows();
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow();
    const db = await core.storage.tenantDb({ tenantId, databaseName: row.database_name });
    const seatId = (await core.storage.control.selectFrom('accounts').select('id').where('login', '=', 'eigener-sitz@betreiber.test').executeTakeFirstOrThrow()).id;
    await db.updateTable('key_wraps').set({ bound_to: seatId }).where('id', '=', wrap!.id).execute();
    expect((await call('seat', 'POST', '/api/v1/keys/activate', { activationKey: stolen })).statusCode).toBe(401);
    await db.updateTable('key_wraps').set({ bound_to: null }).where('id', '=', wrap!.id).execute();
    expect((await call('seat', 'POST', '/api/v1/keys/activate', { activationKey: stolen })).statusCode).toBe(401);
    await db.updateTable('key_wraps').set({ bound_to: firstId }).where('id', '=', wrap!.id).execute();
    expect(await secretVersion()).toBe(0);
  });

  it('lets the named first data user activate with the mailed key and shows the recovery code to them alone', async () => {
    tokens.first = await accept(FIRST);
    const key = mailedActivationKey(outbox(), FIRST);
    expect((await call('first', 'POST', '/api/v1/keys/activate', { activationKey: key })).statusCode).toBe(204);
    expect(await secretVersion()).toBe(1);
    expect(await activationRows()).toHaveLength(0);
    expect((await call('seat', 'POST', '/api/v1/keys/activate', { activationKey: key })).statusCode).toBe(401); // used up
    for (const who of ['seat', 'admin', 'operator']) expect((await call(who, 'POST', '/api/v1/keys/recovery-code')).statusCode, who).toBe(403);
    const shown = await call('first', 'POST', '/api/v1/keys/recovery-code');
    expect(shown.statusCode).toBe(200);
    expect(shown.json<{ recoveryCode: string }>().recoveryCode).toMatch(/^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
    // The seat gets data access only if the first data user grants it.
    expect((await call('first', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: true, waiting: [{ login: 'eigener-sitz@betreiber.test' }] });
    const success = (await (await core.ledgers.tenant(tenantId)).query({ action: 'key.activate' })).filter((e) => e.outcome === 'success');
    expect(success.map((e) => e.actor)).toEqual([expect.stringContaining(firstId)]);
  });

  it('refuses a bad first data user without leaving a tenant behind, and naming one later', async () => {
    const taken = await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde Doppelt', firstDataUser: { email: FIRST } });
    expect(taken.statusCode).toBe(409);
    expect(taken.body).not.toContain(FIRST);
    const wrongRole = await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde Falsch', firstDataUser: { email: 'x@kunde.test', role: 'admin' } });
    expect(wrongRole.statusCode).toBe(400);
    const notAddress = await call('operator', 'POST', '/api/v1/tenants', { name: 'Kunde Falsch', firstDataUser: { email: 'keine-adresse' } });
    expect(notAddress.statusCode).toBe(400);
    const names = (await call('operator', 'GET', '/api/v1/tenants')).json<{ name: string }[]>().map((x) => x.name);
    expect(names).toEqual(['Kunde Nord']);
    // The first data user is named at creation only: not for an existing tenant, whoever asks.
    await expect(
      core.identity.inviteFirstDataUser({ kind: 'system', name: 'cli' }, { tenantId, email: 'spaeter@kunde.test', role: 'dpo' }, () => core.tenantKeys.create(tenantId, 'test')),
    ).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('the CLI names the first data user and prints that the key was mailed, not the key', () => {
    const human = tresor(['tenant', 'create', '--name', 'Kunde Süd', '--first-data-user', 'chefin@kunde-sued.test', '--first-role', 'member', '--first-language', 'en'], { cwd: t.dir, env: t.env });
    expect(human.code, human.stderr).toBe(0);
    const key = mailedActivationKey(outbox(), 'chefin@kunde-sued.test');
    expect(human.stdout).toMatch(/first data user: chefin@kunde-sued\.test \(member\)/);
    expect(human.stdout).toMatch(/activation key: mailed to the first data user only/);
    expect(human.stdout + human.stderr).not.toContain(key);
    expect(readOutbox(outbox()).filter((m) => m.text.includes(key)).map((m) => m.subject)).toEqual(['Tresor: your activation key for Kunde Süd']);
    const json = tresor(['--json', 'tenant', 'create', '--name', 'Kunde West', '--first-data-user', 'leitung@kunde-west.test'], { cwd: t.dir, env: t.env });
    expect(json.code, json.stderr).toBe(0);
    const created = JSON.parse(json.stdout) as { initialKeys: unknown; firstDataUser: { role: string } };
    expect(created.initialKeys).toEqual({ activationKey: null, mailedTo: 'first-data-user' });
    expect(created.firstDataUser.role).toBe('dpo');
    expect(json.stdout).not.toContain(mailedActivationKey(outbox(), 'leitung@kunde-west.test'));
    const bad = tresor(['tenant', 'create', '--name', 'Kunde Ost', '--first-data-user', 'a@kunde-ost.test', '--first-role', 'admin'], { cwd: t.dir, env: t.env });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--first-role must be 'dpo' or 'member'/);
  });

  it('the first data user of a CLI-created tenant activates with the mailed key', async () => {
    const token = await accept('chefin@kunde-sued.test');
    const key = mailedActivationKey(outbox(), 'chefin@kunde-sued.test');
    const activated = await app.inject({ method: 'POST', url: '/api/v1/keys/activate', headers: { authorization: `Bearer ${token}` }, payload: { activationKey: key } });
    expect(activated.statusCode, activated.body).toBe(204);
  });
});

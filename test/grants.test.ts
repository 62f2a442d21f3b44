import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { bearerLogin, engines, fixedClock, mailedKey, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

/** Grants (S2.2): an external account reads a granted scope until the grant ends, also in a live session. */
describe.each(engines)('grants to external accounts (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const clock = fixedClock('2026-11-23T08:00:00.000Z');
  const tokens: Record<string, string> = {};
  const ids = { tenant: '', tech: '', a: '', b: '' };
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const invite = async (by: string, email: string, role: string, password: string) => {
    expect((await call(by, 'POST', '/api/v1/accounts', { email, role, tenantId: ids.tenant })).statusCode).toBe(201);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: password } });
    expect(res.statusCode, res.body).toBe(204);
  };

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t, clock);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    const tenant = (await call('operator', 'POST', '/api/v1/tenants', { name: 'Stadtwerke Süd' })).json<{ id: string; initialKeys: { activationKey: string } }>();
    ids.tenant = tenant.id;
    await invite('operator', 'admin@sw-sued.test', 'admin', 'Verwaltung Süd 2026 ok');
    tokens.admin = await bearerLogin(app, 'admin@sw-sued.test', 'Verwaltung Süd 2026 ok');
    await invite('admin', 'ina@sw-sued.test', 'member', 'Zählerstände sind wichtig');
    await invite('admin', 'tech@service.test', 'technician', 'Monteur unterwegs 2026');
    tokens.ina = await bearerLogin(app, 'ina@sw-sued.test', 'Zählerstände sind wichtig');
    expect((await call('ina', 'POST', '/api/v1/keys/activate', { activationKey: tenant.initialKeys.activationKey })).statusCode).toBe(204);
    ids.a = (await call('ina', 'POST', '/api/v1/contacts', { name: 'Kunde A', email: 'a@kunde.test' })).json<{ id: string }>().id;
    ids.b = (await call('ina', 'POST', '/api/v1/contacts', { name: 'Kunde B', email: 'b@kunde.test' })).json<{ id: string }>().id;
    ids.tech = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'tech@service.test')!.id;
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('gives a technician read access to one contact until the grant expires, then destroys the key copy', async () => {
    tokens.tech = await bearerLogin(app, 'tech@service.test', 'Monteur unterwegs 2026');
    expect((await call('tech', 'GET', '/api/v1/contacts')).statusCode).toBe(403); // no grant yet
    expect((await call('admin', 'POST', '/api/v1/grants', { granteeId: ids.tech, expiresAt: '2026-11-23T10:00:00.000Z' })).statusCode).toBe(403); // admins hold no key
    const grant = await call('ina', 'POST', '/api/v1/grants', { granteeId: ids.tech, recordIds: [ids.a], expiresAt: '2026-11-23T08:20:00.000Z' });
    expect(grant.statusCode, grant.body).toBe(201);
    const grantId = grant.json<{ id: string }>().id;
    expect((await call('ina', 'POST', '/api/v1/grants', { granteeId: ids.tech, expiresAt: '2026-11-22T10:00:00.000Z' })).statusCode).toBe(400); // in the past

    tokens.tech = await bearerLogin(app, 'tech@service.test', 'Monteur unterwegs 2026'); // the grant's copy opens at login
    expect((await call('tech', 'GET', '/api/v1/contacts')).json<{ name: string }[]>().map((c) => c.name)).toEqual(['Kunde A']);
    expect((await call('tech', 'GET', `/api/v1/contacts/${ids.a}`)).json()).toMatchObject({ name: 'Kunde A', email: 'a@kunde.test' });
    expect((await call('tech', 'GET', `/api/v1/contacts/${ids.b}`)).statusCode).toBe(404);
    expect((await call('tech', 'GET', '/api/v1/contacts?email=b%40kunde.test')).json()).toEqual([]);
    expect((await call('tech', 'PUT', `/api/v1/contacts/${ids.a}`, { name: 'Geändert' })).statusCode).toBe(403); // read only
    expect((await call('tech', 'POST', '/api/v1/contacts', { name: 'Neu' })).statusCode).toBe(403);
    expect((await call('tech', 'POST', '/api/v1/keys/activate', { recoveryCode: 'AAAA' })).statusCode).toBe(403);
    expect((await call('tech', 'GET', '/api/v1/grants')).json<{ id: string }[]>().map((g) => g.id)).toEqual([grantId]);

    // Twenty minutes later the grant has ended: the live session loses access at its next request.
    clock.set('2026-11-23T08:19:00.000Z');
    expect((await call('tech', 'GET', `/api/v1/contacts/${ids.a}`)).statusCode).toBe(200);
    clock.set('2026-11-23T08:20:01.000Z');
    expect((await call('tech', 'GET', `/api/v1/contacts/${ids.a}`)).statusCode).toBe(403);
    expect(await core.identity.expireGrants()).toBe(1);
    const wraps = await (await tenantDb()).selectFrom('key_wraps').select(['kind', 'holder']).where('kind', '=', 'grant').execute();
    expect(wraps).toEqual([]);
    const ledger = await core.ledgers.tenant(ids.tenant);
    expect((await ledger.query({ action: 'grant.' })).map((e) => e.action)).toEqual(['grant.create', 'grant.expire']);
    const reads = await ledger.query({ action: 'record.read', actor: ids.tech });
    expect(reads.length).toBeGreaterThanOrEqual(2);
    expect(reads[0]?.payload).toMatchObject({ details: { grants: [grantId] } });
  });

  it('ends access at once when a data user revokes the grant', async () => {
    tokens.ina = await bearerLogin(app, 'ina@sw-sued.test', 'Zählerstände sind wichtig');
    const grant = (await call('ina', 'POST', '/api/v1/grants', { granteeId: ids.tech, expiresAt: '2026-11-24T10:00:00.000Z' })).json<{ id: string }>();
    tokens.tech = await bearerLogin(app, 'tech@service.test', 'Monteur unterwegs 2026');
    expect((await call('tech', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(2); // the whole shared book
    expect((await call('ina', 'DELETE', `/api/v1/grants/${grant.id}`)).statusCode).toBe(204);
    expect((await call('tech', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    expect((await call('ina', 'DELETE', `/api/v1/grants/${grant.id}`)).statusCode).toBe(404);
  });

  it('keeps jobs as a second encrypted collection; a technician granted the jobs sees jobs, not the address book', async () => {
    tokens.ina = await bearerLogin(app, 'ina@sw-sued.test', 'Zählerstände sind wichtig');
    const job = await call('ina', 'POST', '/api/v1/jobs', {
      customer_name: 'Frau Käthe Zähler',
      address: 'Lindenallee 3, 79098 Freiburg',
      window_start: '2026-11-24T08:00Z',
      window_end: '2026-11-24T10:00Z',
      asset_id: 'Z-4711-0815',
      notes: 'Hund im Garten',
    });
    expect(job.statusCode, job.body).toBe(201);
    const jobId = job.json<{ id: string }>().id;
    expect((await call('ina', 'POST', '/api/v1/jobs', { customer_name: 'X', address: 'Y', window_start: 'morgen früh' })).json()).toMatchObject({
      code: 'VALIDATION',
      problems: ['window_start and window_end must be times such as 2026-12-01T08:00Z'],
    });
    expect((await call('ina', 'GET', '/api/v1/jobs?asset_id=z-4711-0815')).json<{ id: string }[]>().map((j) => j.id)).toEqual([jobId]);
    expect((await call('ina', 'GET', `/api/v1/jobs?customer_name=${encodeURIComponent('frau käthe   zähler')}`)).json<unknown[]>()).toHaveLength(1);
    const raw = await (await tenantDb()).selectFrom('jobs' as never).selectAll().execute();
    expect(JSON.stringify(raw)).not.toContain('Käthe');
    expect(JSON.stringify(raw)).toContain('2026-11-24T08:00Z'); // the appointment window is a plain field

    expect((await call('ina', 'POST', '/api/v1/grants', { granteeId: ids.tech, collection: 'jobs', recordIds: [jobId], expiresAt: '2026-11-24T12:00:00.000Z' })).statusCode).toBe(201);
    tokens.tech = await bearerLogin(app, 'tech@service.test', 'Monteur unterwegs 2026');
    expect((await call('tech', 'GET', `/api/v1/jobs/${jobId}`)).json()).toMatchObject({ customer_name: 'Frau Käthe Zähler', asset_id: 'Z-4711-0815' });
    expect((await call('tech', 'GET', '/api/v1/contacts')).statusCode).toBe(403); // the grant is for jobs
    expect((await call('tech', 'DELETE', `/api/v1/jobs/${jobId}`)).statusCode).toBe(403);
  });

  it('replaces a job with PUT: the new values are found, the old blind indexes are gone, grantees, admins and bad input are refused', async () => {
    tokens.ina = await bearerLogin(app, 'ina@sw-sued.test', 'Zählerstände sind wichtig');
    const [job] = (await call('ina', 'GET', '/api/v1/jobs?asset_id=Z-4711-0815')).json<{ id: string; createdAt: string }[]>();
    const jobId = job!.id;
    const replacement = { customer_name: 'Frau Käthe Zähler-Neumann', address: 'Lindenallee 5, 79098 Freiburg', window_start: '2026-11-25T08:00Z', window_end: '2026-11-25T09:30Z', asset_id: 'Z-4711-0816', notes: null };
    const put = await call('ina', 'PUT', `/api/v1/jobs/${jobId}`, replacement);
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()).toMatchObject({ ...replacement, id: jobId, book: 'shared', createdAt: job!.createdAt });
    expect((await call('ina', 'GET', `/api/v1/jobs/${jobId}`)).json()).toMatchObject({ ...replacement, id: jobId });
    expect((await call('ina', 'GET', '/api/v1/jobs?asset_id=Z-4711-0815')).json()).toEqual([]);
    expect((await call('ina', 'GET', `/api/v1/jobs?customer_name=${encodeURIComponent('Frau Käthe Zähler')}`)).json()).toEqual([]);
    expect((await call('ina', 'GET', '/api/v1/jobs?asset_id=z-4711-0816').then((r) => r.json<{ id: string }[]>())).map((j) => j.id)).toEqual([jobId]);
    expect((await call('ina', 'GET', `/api/v1/jobs?customer_name=${encodeURIComponent(' frau käthe zähler-NEUMANN')}`)).json<{ id: string }[]>().map((j) => j.id)).toEqual([jobId]);
    const raw = (await (await tenantDb()).selectFrom('jobs' as never).selectAll().where('id' as never, '=', jobId as never).executeTakeFirstOrThrow()) as Record<string, unknown>;
    expect(JSON.stringify(raw)).not.toMatch(/Neumann|Lindenallee 5|Hund/);
    expect(raw).toMatchObject({ window_start: '2026-11-25T08:00Z', notes_ct: null }); // the cleared note is gone, not kept encrypted

    const invalid = await call('ina', 'PUT', `/api/v1/jobs/${jobId}`, { ...replacement, window_end: 'nach dem Mittag' });
    expect(invalid.statusCode).toBe(400);
    expect(invalid.json()).toMatchObject({ code: 'VALIDATION', problems: ['window_start and window_end must be times such as 2026-12-01T08:00Z'] });
    const incomplete = await call('ina', 'PUT', `/api/v1/jobs/${jobId}`, { customer_name: 'Nur ein Name' });
    expect(incomplete.statusCode).toBe(400);
    expect(incomplete.json<{ message: string }>().message).toMatch(/address/);
    expect((await call('ina', 'PUT', '/api/v1/jobs/00000000-0000-4000-8000-000000000000', replacement)).statusCode).toBe(404);
    expect((await call('tech', 'PUT', `/api/v1/jobs/${jobId}`, { ...replacement, notes: 'vom Monteur' })).statusCode).toBe(403); // a grant reads only
    expect((await call('admin', 'PUT', `/api/v1/jobs/${jobId}`, replacement)).statusCode).toBe(403);
    expect((await call('ina', 'GET', `/api/v1/jobs/${jobId}`)).json()).toMatchObject({ ...replacement, id: jobId }); // unchanged by the refusals

    const updates = await (await core.ledgers.tenant(ids.tenant)).query({ action: 'record.update' });
    expect(updates.map((e) => e.resource).filter((r) => r.includes(jobId))).toHaveLength(1); // the refused attempts changed nothing
    expect(JSON.stringify(updates)).not.toMatch(/Neumann|Lindenallee/);
  });

  it('mails the grantee a one-time access link that opens the grant without a password, once, and never past the grant', async () => {
    clock.set('2026-11-23T09:00:00.000Z');
    tokens.ina = await bearerLogin(app, 'ina@sw-sued.test', 'Zählerstände sind wichtig');
    tokens.admin = await bearerLogin(app, 'admin@sw-sued.test', 'Verwaltung Süd 2026 ok');
    const created = await call('ina', 'POST', '/api/v1/grants', { granteeId: ids.tech, recordIds: [ids.b], expiresAt: '2026-11-23T12:00:00.000Z' });
    expect(created.statusCode, created.body).toBe(201);
    const grant = created.json<{ id: string }>();
    const byAdmin = await call('admin', 'POST', `/api/v1/grants/${grant.id}/link`, {});
    expect(byAdmin.statusCode, byAdmin.body).toBe(403); // no key, no link
    const sent = await call('ina', 'POST', `/api/v1/grants/${grant.id}/link`, {});
    expect(sent.statusCode, sent.body).toBe(201);
    expect(sent.json()).toEqual({ expiresAt: '2026-11-23T12:00:00.000Z' }); // capped at the grant's end
    expect(sent.body).not.toMatch(/key=/); // the link goes to the grantee's mailbox only
    const key = mailedKey(core.config.mail.outbox_dir, 'tech@service.test', 'access');

    const redeem = (k: string) => app.inject({ method: 'POST', url: '/api/v1/auth/access-link', payload: { key: k, mode: 'token' } });
    const first = await redeem(key);
    expect(first.statusCode, first.body).toBe(200);
    const session = first.json<{ sessionToken: string; expiresAt: string; grant: { id: string }; actor: { role: string } }>();
    expect(session.grant.id).toBe(grant.id);
    expect(session.expiresAt <= '2026-11-23T12:00:00.000Z').toBe(true);
    tokens.link = session.sessionToken;
    expect((await call('link', 'GET', `/api/v1/contacts/${ids.b}`)).json()).toMatchObject({ name: 'Kunde B' });
    expect((await call('link', 'GET', `/api/v1/contacts/${ids.a}`)).statusCode).toBe(404); // the grant's scope only
    expect((await call('link', 'PUT', `/api/v1/contacts/${ids.b}`, { name: 'X' })).statusCode).toBe(403);

    // Once only: a second use is refused and recorded; a made-up key gets the same answer.
    const second = await redeem(key);
    expect(second.statusCode).toBe(401);
    expect((await redeem('A'.repeat(43))).json<{ message: string }>().message).toBe(second.json<{ message: string }>().message);
    const ledger = await core.ledgers.tenant(ids.tenant);
    const linkEvents = (await ledger.query({ action: 'grant.' })).filter((e) => e.action.startsWith('grant.link'));
    expect(linkEvents.map((e) => `${e.action}:${e.outcome}`)).toEqual(['grant.link:success', 'grant.link.use:success']);
    const platform = await core.ledgers.platform.query({ action: 'onetime-key.reuse' });
    expect(platform.length).toBeGreaterThanOrEqual(1);

    // The link's own key copy is gone after use; a fresh link whose grant ends before it is used opens nothing.
    const linkWraps = async () => (await tenantDb()).selectFrom('key_wraps').select('holder').where('kind', '=', 'link').execute();
    expect(await linkWraps()).toEqual([]);
    expect((await call('ina', 'POST', `/api/v1/grants/${grant.id}/link`, { validMinutes: 30 })).json()).toEqual({ expiresAt: '2026-11-23T09:30:00.000Z' });
    expect(await linkWraps()).toEqual([{ holder: grant.id }]);
    const unused = mailedKey(core.config.mail.outbox_dir, 'tech@service.test', 'access');
    expect(unused).not.toBe(key);
    expect((await call('ina', 'DELETE', `/api/v1/grants/${grant.id}`)).statusCode).toBe(204);
    expect(await linkWraps()).toEqual([]); // revoking destroys the link's copy with the grantee's
    expect((await redeem(unused)).statusCode).toBe(401);
    expect((await call('link', 'GET', `/api/v1/contacts/${ids.b}`)).statusCode).toBe(403); // and ends the live link session's access
  });

  async function tenantDb() {
    const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', ids.tenant).executeTakeFirstOrThrow();
    return core.storage.tenantDb({ tenantId: ids.tenant, databaseName: row.database_name });
  }
});

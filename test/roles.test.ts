import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { bearerLogin, engines, fixedClock, mailedKey, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

/**
 * One policy for every decision (DESIGN §1): an installer, a control centre with a grant and an authority
 * without one log in over HTTP and try what their role must not do; each attempt is refused and changes nothing.
 */
describe.each(engines)('roles refused over HTTP (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const clock = fixedClock('2026-11-23T08:00:00.000Z');
  const tokens: Record<string, string> = {};
  const ids = { reseller: '', tenant: '', contactA: '', contactB: '', centre: '', authority: '', member: '', grant: '' };
  let activationKey = '';
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const accept = async (email: string, password: string) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: password } });
    expect(res.statusCode, res.body).toBe(204);
  };
  const invite = async (by: string, email: string, role: string, password: string, scope: object = { tenantId: ids.tenant }) => {
    const res = await call(by, 'POST', '/api/v1/accounts', { email, role, ...scope });
    expect(res.statusCode, res.body).toBe(201);
    await accept(email, password);
    return res.json<{ accountId: string }>().accountId;
  };

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t, clock);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    const reseller = await call('operator', 'POST', '/api/v1/resellers', { name: 'Partner Nord', adminLogin: 'chef@partner-nord.test' });
    expect(reseller.statusCode, reseller.body).toBe(201);
    ids.reseller = reseller.json<{ id: string }>().id;
    await accept('chef@partner-nord.test', 'Blauer Kran am Hafen 77');
    tokens.reseller = await bearerLogin(app, 'chef@partner-nord.test', 'Blauer Kran am Hafen 77');
    const tenant = await call('reseller', 'POST', '/api/v1/tenants', { name: 'Leitstelle Kreis' });
    expect(tenant.statusCode, tenant.body).toBe(201);
    ids.tenant = tenant.json<{ id: string }>().id;
    activationKey = tenant.json<{ initialKeys: { activationKey: string } }>().initialKeys.activationKey;
    await invite('reseller', 'monteur@partner-nord.test', 'installer', 'Kabeltrommel rollt 2026', { resellerId: ids.reseller });
    tokens.installer = await bearerLogin(app, 'monteur@partner-nord.test', 'Kabeltrommel rollt 2026');
    await invite('installer', 'admin@leitstelle.test', 'admin', 'Gelbe Akten im Schrank 9');
    tokens.admin = await bearerLogin(app, 'admin@leitstelle.test', 'Gelbe Akten im Schrank 9');
    ids.member = await invite('admin', 'disponent@leitstelle.test', 'member', 'Funkgerät rauscht leise 4');
    ids.centre = await invite('admin', 'zentrale@kreis.test', 'control-centre', 'Nachtschicht mit Kaffee 8');
    ids.authority = await invite('admin', 'amt@behoerde.test', 'authority', 'Stempel auf Formular 31b');
    tokens.member = await bearerLogin(app, 'disponent@leitstelle.test', 'Funkgerät rauscht leise 4');
    expect((await call('member', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(204);
    ids.contactA = (await call('member', 'POST', '/api/v1/contacts', { name: 'Anrufer A', email: 'a@anrufer.test' })).json<{ id: string }>().id;
    ids.contactB = (await call('member', 'POST', '/api/v1/contacts', { name: 'Anrufer B', email: 'b@anrufer.test' })).json<{ id: string }>().id;
    const grant = await call('member', 'POST', '/api/v1/grants', { granteeId: ids.centre, recordIds: [ids.contactA], expiresAt: '2026-11-23T12:00:00.000Z' });
    expect(grant.statusCode, grant.body).toBe(201);
    ids.grant = grant.json<{ id: string }>().id;
    tokens.centre = await bearerLogin(app, 'zentrale@kreis.test', 'Nachtschicht mit Kaffee 8');
    tokens.authority = await bearerLogin(app, 'amt@behoerde.test', 'Stempel auf Formular 31b');
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  const contactNames = async () => (await call('member', 'GET', '/api/v1/contacts')).json<{ name: string }[]>().map((c) => c.name).sort();

  it('refuses the installer data, tenant lifecycle, ledgers, grants, keys and roles beyond its tier', async () => {
    const tenant = `/api/v1/tenants/${ids.tenant}`;
    expect((await call('installer', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    expect((await call('installer', 'POST', '/api/v1/contacts', { name: 'Eingeschleust' })).statusCode).toBe(403);
    expect((await call('installer', 'GET', '/api/v1/privacy/subject-index?email=a%40anrufer.test')).statusCode).toBe(403);
    // The activation key must not make an installer a data user.
    expect((await call('installer', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(403);
    expect((await call('installer', 'POST', '/api/v1/grants', { granteeId: ids.centre, expiresAt: '2026-11-23T12:00:00.000Z' })).statusCode).toBe(403);
    expect((await call('installer', 'POST', '/api/v1/keys/grant', { accountId: ids.member })).statusCode).toBe(403);
    expect((await call('installer', 'POST', '/api/v1/tenants', { name: 'Eigener Mandant' })).statusCode).toBe(403);
    expect((await call('installer', 'POST', `${tenant}/suspend`)).statusCode).toBe(403);
    expect((await call('installer', 'DELETE', tenant)).statusCode).toBe(403);
    expect((await call('installer', 'GET', `/api/v1/ledger/checkpoint?tenantId=${ids.tenant}`)).statusCode).toBe(403);
    expect((await call('installer', 'POST', '/api/v1/accounts', { email: 'zweiter@partner-nord.test', role: 'reseller', resellerId: ids.reseller })).statusCode).toBe(403);
    expect((await call('installer', 'POST', '/api/v1/accounts', { email: 'extern@kreis.test', role: 'technician', tenantId: ids.tenant })).statusCode).toBe(403);
    expect((await call('installer', 'GET', '/api/v1/transfers')).statusCode).toBe(403);
    expect((await call('installer', 'GET', '/api/v1/e2e/key')).statusCode).not.toBe(200);
    // Nothing changed: the tenant is active, the contacts are the member's two.
    expect((await call('reseller', 'GET', tenant)).json()).toMatchObject({ status: 'active' });
    expect(await contactNames()).toEqual(['Anrufer A', 'Anrufer B']);
  });

  it('lets the control centre read its granted record only, and refuses writing, the privacy centre, grants, keys and administration', async () => {
    expect((await call('centre', 'GET', '/api/v1/contacts')).json<{ name: string }[]>().map((c) => c.name)).toEqual(['Anrufer A']);
    expect((await call('centre', 'GET', `/api/v1/contacts/${ids.contactB}`)).statusCode).toBe(404);
    expect((await call('centre', 'POST', '/api/v1/contacts', { name: 'Neu' })).statusCode).toBe(403);
    expect((await call('centre', 'PUT', `/api/v1/contacts/${ids.contactA}`, { name: 'Geändert' })).statusCode).toBe(403);
    expect((await call('centre', 'DELETE', `/api/v1/contacts/${ids.contactA}`)).statusCode).toBe(403);
    expect((await call('centre', 'GET', '/api/v1/privacy/subject-index?email=a%40anrufer.test')).statusCode).toBe(403);
    expect((await call('centre', 'POST', '/api/v1/grants', { granteeId: ids.authority, expiresAt: '2026-11-23T12:00:00.000Z' })).statusCode).toBe(403);
    expect((await call('centre', 'DELETE', `/api/v1/grants/${ids.grant}`)).statusCode).toBe(403);
    expect((await call('centre', 'POST', `/api/v1/grants/${ids.grant}/link`, {})).statusCode).toBe(403);
    expect((await call('centre', 'POST', '/api/v1/keys/grant', { accountId: ids.authority })).statusCode).toBe(403);
    expect((await call('centre', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(403);
    expect((await call('centre', 'POST', '/api/v1/keys/rotate', {})).statusCode).toBe(403);
    expect((await call('centre', 'POST', '/api/v1/transfers', { level: 1, expiresAt: '2026-11-24T08:00:00.000Z', recipients: ['x@y.test'], subject: 'x', files: [{ size: 1 }] })).statusCode).toBeGreaterThanOrEqual(400);
    expect((await call('centre', 'GET', '/api/v1/transfers')).statusCode).toBe(403);
    expect((await call('centre', 'GET', '/api/v1/accounts')).statusCode).toBe(404); // the tenant's administration is not theirs to see
    expect((await call('centre', 'POST', '/api/v1/accounts', { email: 'freund@kreis.test', role: 'authority', tenantId: ids.tenant })).statusCode).toBe(404);
    expect((await call('centre', 'PUT', `/api/v1/tenants/${ids.tenant}/password-policy`, { minLength: 12 })).statusCode).toBeGreaterThanOrEqual(403);
    expect((await call('centre', 'GET', `/api/v1/ledger/checkpoint?tenantId=${ids.tenant}`)).statusCode).toBeGreaterThanOrEqual(403);
    // The grant is intact, the contacts unchanged.
    expect((await call('centre', 'GET', '/api/v1/grants')).json<{ id: string }[]>().map((g) => g.id)).toEqual([ids.grant]);
    expect(await contactNames()).toEqual(['Anrufer A', 'Anrufer B']);
  });

  it("refuses the authority without a grant every record, and shows it no one else's grants", async () => {
    expect((await call('authority', 'GET', '/api/v1/contacts')).statusCode).toBe(403);
    expect((await call('authority', 'GET', `/api/v1/contacts/${ids.contactA}`)).statusCode).toBe(403);
    expect((await call('authority', 'GET', '/api/v1/grants')).json()).toEqual([]);
    expect((await call('authority', 'POST', '/api/v1/grants', { granteeId: ids.authority, expiresAt: '2026-11-23T12:00:00.000Z' })).statusCode).toBe(403);
    expect((await call('authority', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(403);
    expect((await call('authority', 'GET', '/api/v1/privacy/subject-index?email=a%40anrufer.test')).statusCode).toBe(403);
    expect((await call('authority', 'GET', '/api/v1/accounts')).statusCode).toBe(404);
    // A data user cannot hand an external account a full copy of the tenant secret either (a grant is the way).
    expect((await call('member', 'POST', '/api/v1/keys/grant', { accountId: ids.authority })).statusCode).toBe(409);
    expect((await call('authority', 'GET', '/api/v1/keys/status')).json()).toMatchObject({ dataAccess: false });
  });
});

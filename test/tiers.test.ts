import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { acceptMailedInvitation, bearerLogin, engines, GOOD_PASSWORD, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

describe.each(engines)('tier isolation over HTTP (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const token: Record<'operator' | 'a' | 'b', string> = { operator: '', a: '', b: '' };
  const ids = { resellerA: '', resellerB: '', tenantA: '', tenantB: '', tenantOperator: '' };

  const call = (who: keyof typeof token, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${token[who]}` }, ...(payload ? { payload } : {}) });

  const login = (login: string, password: string) => bearerLogin(app, login, password);

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    token.operator = await login(operator.login, operator.oneTimePassword);

    for (const [key, name] of [['a', 'Reseller A'], ['b', 'Reseller B']] as const) {
      const res = await call('operator', 'POST', '/api/v1/resellers', { name, adminLogin: `admin-${key}@example.test` });
      expect(res.statusCode).toBe(201);
      const body = res.json<{ reseller: { id: string } }>();
      expect(body).not.toHaveProperty('invitationLink');
      ids[key === 'a' ? 'resellerA' : 'resellerB'] = body.reseller.id;
      await acceptMailedInvitation(core, `admin-${key}@example.test`);
      token[key] = await login(`admin-${key}@example.test`, GOOD_PASSWORD);
    }
    const created = async (who: 'a' | 'b' | 'operator', name: string) => {
      const res = await call(who, 'POST', '/api/v1/tenants', { name });
      expect(res.statusCode).toBe(201);
      return res.json<{ id: string }>().id;
    };
    ids.tenantA = await created('a', 'Tenant of A');
    ids.tenantB = await created('b', 'Tenant of B');
    ids.tenantOperator = await created('operator', 'Direct tenant');
  });

  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('lets a reseller see only its own tenants', async () => {
    const res = await call('a', 'GET', '/api/v1/tenants');
    expect(res.statusCode).toBe(200);
    expect(res.json<{ id: string }[]>().map((x) => x.id)).toEqual([ids.tenantA]);
    const all = await call('operator', 'GET', '/api/v1/tenants');
    expect(all.json<{ id: string }[]>().map((x) => x.id).sort()).toEqual([ids.tenantA, ids.tenantB, ids.tenantOperator].sort());
  });

  it("answers every attempt on another reseller's or the operator's tenant exactly like a missing tenant", async () => {
    const missing = randomUUID();
    const attempts: ['GET' | 'POST' | 'PUT' | 'DELETE', string, object?][] = [
      ['GET', ''],
      ['POST', '/suspend'],
      ['POST', '/resume'],
      ['PUT', '/licence', { licenceEndsAt: '2020-01-01' }],
      ['DELETE', ''],
    ];
    for (const foreign of [ids.tenantB, ids.tenantOperator]) {
      for (const [method, suffix, body] of attempts) {
        const refused = await call('a', method, `/api/v1/tenants/${foreign}${suffix}`, body);
        const absent = await call('a', method, `/api/v1/tenants/${missing}${suffix}`, body);
        expect(refused.statusCode, `${method} ${suffix}`).toBe(404);
        const { requestId: _r1, ...refusedBody } = refused.json<Record<string, string>>();
        const { requestId: _r2, ...absentBody } = absent.json<Record<string, string>>();
        expect(refusedBody).toEqual(absentBody);
      }
    }
    // Nothing happened to the foreign tenants.
    const b = await call('operator', 'GET', `/api/v1/tenants/${ids.tenantB}`);
    expect(b.json()).toMatchObject({ status: 'active', licenceEndsAt: null });
  });

  it('keeps resellers away from reseller administration', async () => {
    expect((await call('a', 'POST', '/api/v1/resellers', { name: 'Sneaky', adminLogin: 'x@example.test' })).statusCode).toBe(403);
    expect((await call('a', 'GET', '/api/v1/resellers')).statusCode).toBe(403);
    expect((await call('a', 'GET', `/api/v1/resellers/${ids.resellerA}`)).statusCode).toBe(200);
    const other = await call('a', 'GET', `/api/v1/resellers/${ids.resellerB}`);
    const missing = await call('a', 'GET', `/api/v1/resellers/${randomUUID()}`);
    expect(other.statusCode).toBe(404);
    expect(other.json<{ message: string }>().message).toBe(missing.json<{ message: string }>().message);
  });

  it('creates a reseller\'s tenant under that reseller even if it names another', async () => {
    const res = await call('a', 'POST', '/api/v1/tenants', { name: 'Smuggled', resellerId: ids.resellerB });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ resellerId: ids.resellerA });
    const bList = await call('b', 'GET', '/api/v1/tenants');
    expect(bList.json<{ name: string }[]>().map((x) => x.name)).not.toContain('Smuggled');
  });

  it('lets a reseller manage its own tenant through its whole lifecycle', async () => {
    expect((await call('a', 'POST', `/api/v1/tenants/${ids.tenantA}/suspend`)).json()).toMatchObject({ status: 'suspended' });
    await expect(core.platform.assertTenantUsable(ids.tenantA)).rejects.toMatchObject({ code: 'SUSPENDED' });
    expect((await call('a', 'POST', `/api/v1/tenants/${ids.tenantA}/resume`)).json()).toMatchObject({ status: 'active' });
    await expect(core.platform.assertTenantUsable(ids.tenantA)).resolves.toMatchObject({ id: ids.tenantA });
    const licence = await call('a', 'PUT', `/api/v1/tenants/${ids.tenantA}/licence`, { licenceEndsAt: '2099-12-31' });
    expect(licence.json()).toMatchObject({ licenceEndsAt: '2099-12-31T23:59:59.999Z' });
  });

  it('refuses requests without a valid session', async () => {
    expect((await app.inject({ method: 'GET', url: '/api/v1/tenants' })).statusCode).toBe(401);
    const forged = await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { authorization: 'Bearer forged' } });
    expect(forged.statusCode).toBe(401);
    expect(forged.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    const wrong = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password: 'wrong-password' } });
    const unknown = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'nobody', password: 'wrong-password' } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json<{ message: string }>().message).toBe(unknown.json<{ message: string }>().message);
  });

  it('does not take a bearer session as a cookie (that would bypass the replay lock the other way round)', async () => {
    const cookie = `__Host-tresor_session=${token.a}`;
    const res = await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { cookie } });
    expect(res.statusCode).toBe(401);
  });

  it('sets a __Host- cookie that is Secure, HttpOnly and SameSite=Strict', async () => {
    const created = await call('operator', 'POST', '/api/v1/resellers', { name: 'Cookie Reseller', adminLogin: 'cookie@example.test' });
    expect(created.statusCode).toBe(201);
    await acceptMailedInvitation(core, 'cookie@example.test');
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'cookie@example.test', password: GOOD_PASSWORD } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).not.toHaveProperty('sessionToken');
    const setCookie = String(res.headers['set-cookie']);
    expect(setCookie).toMatch(/^__Host-tresor_session=[A-Za-z0-9_-]{43};/);
    expect(setCookie).toMatch(/; Path=\//);
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; Secure/);
    expect(setCookie).toMatch(/; SameSite=Strict/);
    expect(setCookie).not.toMatch(/Domain=/);
  });

  it('explains invalid input', async () => {
    const empty = await call('operator', 'POST', '/api/v1/tenants', { name: '' });
    expect(empty.statusCode).toBe(400);
    expect(empty.json<{ message: string }>().message).toMatch(/name/);
    const extra = await call('operator', 'POST', '/api/v1/tenants', { name: 'Okay name', isAdmin: true });
    expect(extra.statusCode).toBe(400);
    const badDate = await call('operator', 'PUT', `/api/v1/tenants/${ids.tenantA}/licence`, { licenceEndsAt: '2024-02-30' });
    expect(badDate.statusCode).toBe(400);
    expect(badDate.json<{ message: string }>().message).toContain('YYYY-MM-DD');
    const dup = await call('operator', 'POST', '/api/v1/tenants', { name: 'Tenant of A' });
    expect(dup.statusCode).toBe(409);
  });

  it('lets the operator delete any tenant and reports what was removed', async () => {
    const res = await call('operator', 'DELETE', `/api/v1/tenants/${ids.tenantB}`);
    expect(res.statusCode).toBe(200);
    const report = res.json<{ removed: string[]; reason: string }>();
    expect(report.reason).toBe('deleted-by-api');
    expect(report.removed.join(' ')).toMatch(engine === 'sqlite' ? /file .*\.db/ : /database .*_t_/);
    expect((await call('operator', 'GET', `/api/v1/tenants/${ids.tenantB}`)).statusCode).toBe(404);
  });
});

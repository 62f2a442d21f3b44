import type { FastifyInstance } from 'fastify';
import { Secret, TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { bearerLogin, engines, fixedClock, GOOD_PASSWORD, mailedKey, makeTestEnv, openTestCore, readOutbox, silentLog, type TestEnv } from './helpers.js';

/**
 * Tenant accounts end to end over HTTP: invitations by mail, the roles of DESIGN §1 decided by the
 * policy module, a tenant's own password policy (classes, history, maximum age, required second
 * factor), the failed-login notice, and events in the tenant's own ledger.
 */
describe.each(engines)('accounts of every tier (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const clock = fixedClock('2026-11-23T08:00:00.000Z');
  const tokens: Record<string, string> = {};
  const ids = { t1: '', t2: '' };
  const outbox = () => core.config.mail.outbox_dir;

  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const accept = (email: string, newPassword: string) =>
    app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(outbox(), email), newPassword } });
  const login = (login: string, password: string, otp?: string) =>
    app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login, password, mode: 'token', ...(otp ? { otp } : {}) } });
  /** Steps the clock past any brute-force delay the previous step caused. */
  const later = (seconds = 60) => clock.set(new Date(clock.now().getTime() + seconds * 1000).toISOString());

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t, clock);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    for (const [key, name] of [['t1', 'Stadtwerke Nord'], ['t2', 'Feuerwehr Süd']] as const) {
      const res = await call('operator', 'POST', '/api/v1/tenants', { name });
      ids[key] = res.json<{ id: string }>().id;
    }
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('invites a tenant admin by mail; the link works once and only with an acceptable password', async () => {
    const invited = await call('operator', 'POST', '/api/v1/accounts', { email: 'Admin@Nord.test', role: 'admin', tenantId: ids.t1 });
    expect(invited.statusCode, invited.body).toBe(201);
    expect(invited.body).not.toMatch(/key/i); // the key travels only in the mail
    const mail = readOutbox(outbox()).find((m) => m.to === 'admin@nord.test')!;
    expect(mail.subject).toBe('Einladung zu Tresor: Stadtwerke Nord');
    expect(mail.text).toMatch(/Rolle: admin/);
    expect(mail.text).toMatch(/https:\/\/localhost:8443\/app\/invite#key=[A-Za-z0-9_-]{43}/);
    const key = mailedKey(outbox(), 'admin@nord.test');
    const peek = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/peek', payload: { key } });
    expect(peek.json()).toEqual({ login: 'admin@nord.test', organisation: 'Stadtwerke Nord', role: 'admin' });
    // An invited account cannot log in before it has a password.
    expect((await login('admin@nord.test', 'anything at all 123')).statusCode).toBe(401);
    const weak = await accept('admin@nord.test', 'admin@nord.test 1');
    expect(weak.statusCode).toBe(400);
    expect(weak.json<{ problems: string[] }>().problems).toEqual(['password must not contain your login or e-mail address']);
    expect((await accept('admin@nord.test', GOOD_PASSWORD)).statusCode).toBe(204);
    const again = await accept('admin@nord.test', GOOD_PASSWORD);
    expect(again.statusCode).toBe(401);
    const reuse = await core.ledgers.platform.query({ action: 'onetime-key.reuse' });
    expect(reuse.map((e) => e.outcome)).toEqual(['denied']);
    later();
    tokens.admin = await bearerLogin(app, 'admin@nord.test', GOOD_PASSWORD);
    const me = await call('admin', 'GET', '/api/v1/auth/me');
    expect(me.json()).toMatchObject({ kind: 'tenant', role: 'admin', tenantId: ids.t1, pending: [] });
  });

  it('lets a tenant admin invite the roles of its own tenant, and nothing beyond it', async () => {
    for (const [email, role] of [
      ['member@nord.test', 'member'],
      ['dpo@nord.test', 'dpo'],
      ['tech@service.test', 'technician'],
    ] as const) {
      const res = await call('admin', 'POST', '/api/v1/accounts', { email, role, language: 'en' });
      expect(res.statusCode, res.body).toBe(201);
    }
    expect(readOutbox(outbox()).find((m) => m.to === 'tech@service.test')?.subject).toBe('Invitation to Tresor: Stadtwerke Nord');
    expect((await call('admin', 'POST', '/api/v1/accounts', { email: 'x@x.test', role: 'operator' })).statusCode).toBe(403);
    expect((await call('admin', 'POST', '/api/v1/accounts', { email: 'x@x.test', role: 'installer' })).statusCode).toBe(403);
    // Another tenant looks exactly like a missing one.
    const foreign = await call('admin', 'POST', '/api/v1/accounts', { email: 'x@x.test', role: 'member', tenantId: ids.t2 });
    const missing = await call('admin', 'POST', '/api/v1/accounts', { email: 'x@x.test', role: 'member', tenantId: '00000000-0000-4000-8000-000000000000' });
    expect(foreign.statusCode).toBe(404);
    expect(foreign.json<{ message: string }>().message).toBe(missing.json<{ message: string }>().message);
    expect((await call('admin', 'POST', '/api/v1/accounts', { email: 'member@nord.test', role: 'member' })).statusCode).toBe(409);
    // The operator hands out no data roles.
    expect((await call('operator', 'POST', '/api/v1/accounts', { email: 'm2@nord.test', role: 'member', tenantId: ids.t1 })).statusCode).toBe(403);

    const list = (await call('admin', 'GET', '/api/v1/accounts')).json<{ login: string; role: string; status: string }[]>();
    expect(list.map((a) => `${a.login}:${a.role}:${a.status}`)).toEqual([
      'admin@nord.test:admin:active',
      'member@nord.test:member:invited',
      'dpo@nord.test:dpo:invited',
      'tech@service.test:technician:invited',
    ]);
    expect((await call('admin', 'GET', `/api/v1/accounts?tenantId=${ids.t2}`)).statusCode).toBe(404);
    // No ledger, no tenant administration for an admin.
    expect((await call('admin', 'GET', '/api/v1/ledger/checkpoint')).statusCode).toBe(403);
    expect((await call('admin', 'POST', `/api/v1/tenants/${ids.t1}/suspend`)).statusCode).toBe(403);
  });

  it("applies the tenant's own password policy: classes, history and maximum age", async () => {
    const set = await call('admin', 'PUT', `/api/v1/tenants/${ids.t1}/password-policy`, {
      minLength: 14,
      requiredClasses: ['upper', 'digit'],
      historyCount: 2,
      maxAgeDays: 90,
      secondFactorRoles: ['dpo'],
    });
    expect(set.statusCode, set.body).toBe(200);
    expect((await call('admin', 'PUT', `/api/v1/tenants/${ids.t1}/password-policy`, { minLength: 8 })).statusCode).toBe(400);
    expect((await call('admin', 'PUT', `/api/v1/tenants/${ids.t2}/password-policy`, { minLength: 20 })).statusCode).toBe(404);
    const config = await (await core.ledgers.tenant(ids.t1)).query({ action: 'config.password-policy' });
    expect(config).toHaveLength(1);

    const noClasses = await accept('member@nord.test', 'lantern harbour meadow quiet');
    expect(noClasses.statusCode).toBe(400);
    expect(noClasses.json<{ problems: string[] }>().problems).toEqual([
      "password must contain an upper-case letter (your organisation's rule)",
      "password must contain a digit (your organisation's rule)",
    ]);
    expect((await accept('member@nord.test', 'Lantern harbour meadow 1')).statusCode).toBe(204);
    later();
    tokens.member = await bearerLogin(app, 'member@nord.test', 'Lantern harbour meadow 1');
    const policy = await call('member', 'GET', '/api/v1/auth/password-policy');
    expect(policy.json()).toMatchObject({ minLength: 14, historyCount: 2, maxAgeDays: 90 });
    const change = async (from: string, to: string) => {
      later();
      const res = await call('member', 'POST', '/api/v1/auth/password', { currentPassword: from, newPassword: to });
      if (res.statusCode === 200) tokens.member = res.json<{ sessionToken: string }>().sessionToken;
      return res;
    };
    expect((await change('Lantern harbour meadow 1', 'Copper kettle winter 22')).statusCode).toBe(200);
    const back = await change('Copper kettle winter 22', 'Lantern harbour meadow 1');
    expect(back.statusCode).toBe(400);
    expect(back.json<{ message: string }>().message).toMatch(/differ from your last 2 passwords/);
    expect((await change('Copper kettle winter 22', 'Violet river stone 333')).statusCode).toBe(200);

    // 91 days later the password has expired: the next login may only change it.
    clock.advanceDays(91);
    const expired = await login('member@nord.test', 'Violet river stone 333');
    expect(expired.json()).toMatchObject({ pending: ['password_change'] });
    const session = expired.json<{ sessionToken: string }>().sessionToken;
    const blocked = await app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: { authorization: `Bearer ${session}` } });
    expect(blocked.statusCode).toBe(403);
    expect(blocked.json()).toMatchObject({ code: 'ACTION_REQUIRED' });
    tokens.member = session;
    expect((await change('Violet river stone 333', 'Amber field crossing 4444')).json()).toMatchObject({ pending: [] });
    expect((await call('member', 'GET', '/api/v1/auth/sessions')).statusCode).toBe(200);
    // A member administers nothing.
    expect((await call('member', 'GET', '/api/v1/accounts')).json()).toEqual([]);
    expect((await call('member', 'PUT', `/api/v1/tenants/${ids.t1}/password-policy`, {})).statusCode).toBe(403);
    expect((await call('member', 'GET', '/api/v1/ledger/entries')).statusCode).toBe(403);
  });

  it('makes the DPO set up a second factor first, then lets it read its own ledger only', async () => {
    // The first invitation expired during the 91 days: the admin (logging in again) sends a new one.
    later();
    // The admin's password is past the tenant's 90 days as well: the login changes it on the way.
    tokens.admin = await bearerLogin(app, 'admin@nord.test', GOOD_PASSWORD, 'Rotated Harbour Key 2027');
    expect((await accept('dpo@nord.test', 'Privacy Officer North 2026')).statusCode).toBe(401);
    const dpoAccount = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'dpo@nord.test')!;
    expect((await call('admin', 'POST', `/api/v1/accounts/${dpoAccount.id}/reset`)).statusCode).toBe(200);
    expect((await accept('dpo@nord.test', 'Privacy Officer North 2026')).statusCode).toBe(204);
    later();
    const first = await login('dpo@nord.test', 'Privacy Officer North 2026');
    expect(first.json()).toMatchObject({ pending: ['second_factor_setup'] });
    tokens.dpo = first.json<{ sessionToken: string }>().sessionToken;
    expect((await call('dpo', 'GET', '/api/v1/ledger/checkpoint')).json()).toMatchObject({ code: 'ACTION_REQUIRED', pending: ['second_factor_setup'] });
    const setup = (await call('dpo', 'POST', '/api/v1/auth/totp/setup')).json<{ secret: string }>();
    const code = TOTP.generate({ secret: Secret.fromBase32(setup.secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: clock.now().getTime() });
    const enabled = await call('dpo', 'POST', '/api/v1/auth/totp/enable', { code });
    expect(enabled.statusCode, enabled.body).toBe(200);
    expect(enabled.json()).toMatchObject({ pending: [] });
    const old = tokens.dpo;
    tokens.dpo = enabled.json<{ sessionToken: string }>().sessionToken;
    expect(tokens.dpo).not.toBe(old); // a new session id after the privilege change
    expect((await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { authorization: `Bearer ${old}` } })).statusCode).toBe(401);
    const cp = await call('dpo', 'GET', '/api/v1/ledger/checkpoint');
    expect(cp.statusCode).toBe(200);
    expect(cp.json<{ origin: string }>().origin).toContain(`/tenant/${ids.t1}`);
    const entries = (await call('dpo', 'GET', '/api/v1/ledger/entries?action=auth.login')).json<{ entries: { actor: string; outcome: string }[] }>();
    expect(entries.entries.some((e) => e.actor.includes('member') && e.outcome === 'success')).toBe(true);
    expect((await call('dpo', 'GET', `/api/v1/ledger/checkpoint?tenantId=${ids.t2}`)).statusCode).toBe(404);
    // The platform ledger is not the DPO's.
    const platformCp = await core.ledgers.platform.query({ action: 'auth.login', actor: tokens.dpo });
    expect(platformCp).toEqual([]);
  });

  it('tells the account owner by mail after repeated failed logins, and a disabled account is out at once', async () => {
    for (let i = 0; i < 5; i++) {
      later(20 * 60);
      expect((await login('member@nord.test', `wrong guess ${i}`)).statusCode).toBe(401);
    }
    // In the language chosen at the invitation (English here); notices go out in the background.
    await core.identity.noticesSent();
    const notice = readOutbox(outbox()).find((m) => m.to === 'member@nord.test' && m.subject === 'Tresor: failed login attempts');
    expect(notice?.text).toMatch(/There were 5 failed login attempts/);
    // The owner is slowed down, not locked out: after the delay the right password works.
    later(20 * 60);
    const owner = await login('member@nord.test', 'Amber field crossing 4444');
    expect(owner.statusCode).toBe(200);
    tokens.member = owner.json<{ sessionToken: string }>().sessionToken;

    later();
    tokens.admin = await bearerLogin(app, 'admin@nord.test', 'Rotated Harbour Key 2027');
    tokens.operator = await bearerLogin(app, 'operator', GOOD_PASSWORD);
    const member = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; login: string }[]>().find((a) => a.login === 'member@nord.test')!;
    const foreignAdmin = await call('operator', 'POST', '/api/v1/accounts', { email: 'admin@sued.test', role: 'admin', tenantId: ids.t2 });
    expect(foreignAdmin.statusCode).toBe(201);
    const foreignId = foreignAdmin.json<{ accountId: string }>().accountId;
    expect((await call('admin', 'POST', `/api/v1/accounts/${foreignId}/disable`)).statusCode).toBe(404);
    const disabled = await call('admin', 'POST', `/api/v1/accounts/${member.id}/disable`);
    expect(disabled.statusCode).toBe(200);
    expect(disabled.json<{ sessionsEnded: number }>().sessionsEnded).toBeGreaterThanOrEqual(1);
    expect((await call('member', 'GET', '/api/v1/auth/me')).statusCode).toBe(401);
    // Tenant events are in the tenant's own ledger.
    const tenantLedger = await core.ledgers.tenant(ids.t1);
    expect((await tenantLedger.query({ action: 'account.disable' })).length).toBe(1);
    expect((await tenantLedger.verify()).ok).toBe(true);
  });
});

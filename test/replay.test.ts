import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { ensureFirstOperator, openCore, type Core } from '../src/core.js';
import { freePort } from './cli-process.js';
import { buildApp } from '../src/http/app.js';
import { acceptMailedInvitation, engines, fixedClock, GOOD_PASSWORD, makeTestEnv, openTestCore, readOutbox, silentLog, type TestEnv } from './helpers.js';

/**
 * Attacks on browser sessions: replayed requests (S2.6), cross-site requests (CSRF), a cookie session
 * used as a bearer token, and the forced change of a one-time password.
 */
describe.each(engines)('replay lock and forced password change (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  let operatorPassword: string;
  const clock = fixedClock('2026-11-23T08:00:00.000Z');
  const EMAIL = 'ops@partner.test';

  beforeEach(async () => {
    clock.set('2026-11-23T08:00:00.000Z');
    t = makeTestEnv(engine);
    core = await openTestCore(t, clock);
    app = await buildApp(core, { logger: silentLog });
    operatorPassword = (await ensureFirstOperator(core))!.oneTimePassword;
  });
  afterEach(async () => {
    await app.close();
    await core.close();
    await t.cleanup();
  });

  const cookieOf = (res: LightMyRequestResponse) => /__Host-tresor_session=([^;]+)/.exec(String(res.headers['set-cookie']))![1]!;
  const tokenOf = (res: LightMyRequestResponse) => res.headers['x-tresor-request-token'] as string | undefined;

  /** A reseller admin with an e-mail address, logged in through the browser flow. */
  const browserSession = async () => {
    await core.platform.createReseller({ kind: 'system', name: 'cli' }, { name: 'Partner', adminLogin: EMAIL });
    await acceptMailedInvitation(core, EMAIL);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: EMAIL, password: GOOD_PASSWORD } });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<{ requestToken: string; pending: string[] }>();
    expect(body.pending).toEqual([]);
    expect(body.requestToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(tokenOf(res)).toBe(body.requestToken);
    return { cookie: `__Host-tresor_session=${cookieOf(res)}`, requestToken: body.requestToken };
  };
  const createTenant = (cookie: string, name: string, token?: string, extra: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/api/v1/tenants', headers: { cookie, ...(token ? { 'x-tresor-request-token': token } : {}), ...extra }, payload: { name } });
  const tenantNames = async () => (await core.storage.control.selectFrom('tenants').select('name').execute()).map((r) => r.name);

  it('hands out a new request token with every response and accepts each one once', async () => {
    const s = await browserSession();
    const me = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { cookie: s.cookie } });
    expect(me.statusCode).toBe(200);
    expect(tokenOf(me)).toBe(s.requestToken); // a GET does not use the token up
    const first = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(first.statusCode, first.body).toBe(201);
    const next = tokenOf(first)!;
    expect(next).not.toBe(s.requestToken);
    const second = await createTenant(s.cookie, 'Kunde 2', next);
    expect(second.statusCode).toBe(201);
    expect(await tenantNames()).toEqual(expect.arrayContaining(['Kunde 1', 'Kunde 2']));
    // Only a hash of the session id and a counter are stored: no token can be read from the database.
    const rows = await core.storage.control.selectFrom('sessions').selectAll().execute();
    expect(JSON.stringify(rows)).not.toContain(next);
    expect(JSON.stringify(rows)).not.toContain(s.cookie.split('=')[1]);
  });

  it('locks the session when an earlier request is sent again, records it and tells the owner by mail', async () => {
    const s = await browserSession();
    const first = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(first.statusCode).toBe(201);
    await createTenant(s.cookie, 'Kunde 2', tokenOf(first));
    clock.set('2026-11-23T08:00:10.000Z');
    // The attacker replays the captured first request, cookie and token included.
    const replay = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(replay.statusCode).toBe(401);
    expect(replay.json()).toMatchObject({ code: 'SESSION_LOCKED' });
    // Every later request of that session is refused, also reads and also with a fresh token.
    const after = await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { cookie: s.cookie } });
    expect(after.statusCode).toBe(401);
    expect(after.json()).toMatchObject({ code: 'SESSION_LOCKED' });
    expect(await tenantNames()).toEqual(['Kunde 1', 'Kunde 2']);
    const events = await core.ledgers.platform.query({ action: 'auth.session.replay' });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ outcome: 'denied' });
    await core.identity.noticesSent(); // the notice is sent in the background
    const mail = readOutbox(core.config.mail.outbox_dir).find((m) => m.to === EMAIL && /Sitzung gesperrt/.test(m.subject));
    expect(mail?.text).toMatch(/erneut gesendet/);
    // Logging in again gives a new, working session.
    const relog = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: EMAIL, password: GOOD_PASSWORD } });
    expect(relog.statusCode).toBe(200);
  });

  it('still locks a replayed session with 401 SESSION_LOCKED when the mail relay fails', async () => {
    const s = await browserSession();
    // The same installation, now with a relay that refuses every connection.
    await app.close();
    await core.close();
    const config = loadConfig({ cwd: t.dir, env: { ...t.env, TRESOR_MAIL_TRANSPORT: 'smtp', TRESOR_MAIL_SMTP_URL: `smtp://127.0.0.1:${await freePort()}` } });
    core = await openCore(config, { log: silentLog, clock });
    app = await buildApp(core, { logger: silentLog });
    const first = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(first.statusCode, first.body).toBe(201);
    await createTenant(s.cookie, 'Kunde 2', tokenOf(first));
    clock.set('2026-11-23T08:00:10.000Z');
    const replay = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(replay.statusCode).toBe(401);
    expect(replay.json()).toMatchObject({ code: 'SESSION_LOCKED' });
    const after = await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { cookie: s.cookie } });
    expect(after.json()).toMatchObject({ code: 'SESSION_LOCKED' });
    expect(await core.ledgers.platform.query({ action: 'auth.session.replay' })).toHaveLength(1);
    await core.identity.noticesSent();
  });

  it('forgives the previous token once within 5 seconds (a second tab, a lost response), but not twice or later', async () => {
    const s = await browserSession();
    const first = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(first.statusCode).toBe(201);
    clock.set('2026-11-23T08:00:03.000Z');
    const tab2 = await createTenant(s.cookie, 'Kunde 2', s.requestToken);
    expect(tab2.statusCode, tab2.body).toBe(201);
    expect(tokenOf(tab2)).toBe(tokenOf(first)); // the current token, so both tabs continue with it
    const third = await createTenant(s.cookie, 'Kunde 3', s.requestToken);
    expect(third.statusCode).toBe(401);
    expect(third.json()).toMatchObject({ code: 'SESSION_LOCKED' });

    const s2 = await (async () => {
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: EMAIL, password: GOOD_PASSWORD } });
      return { cookie: `__Host-tresor_session=${cookieOf(res)}`, requestToken: res.json<{ requestToken: string }>().requestToken };
    })();
    const ok = await createTenant(s2.cookie, 'Kunde 4', s2.requestToken);
    expect(ok.statusCode).toBe(201);
    clock.set('2026-11-23T08:00:09.000Z'); // 6 s later: no grace any more
    const late = await createTenant(s2.cookie, 'Kunde 5', s2.requestToken);
    expect(late.statusCode).toBe(401);
    expect(await tenantNames()).not.toContain('Kunde 5');
  });

  it('refuses a state change without a valid token (a cross-site request) and changes nothing, without locking', async () => {
    const s = await browserSession();
    const missing = await createTenant(s.cookie, 'Forged 1');
    expect(missing.statusCode).toBe(403);
    expect(missing.json<{ message: string }>().message).toMatch(/request token/);
    const forged = await createTenant(s.cookie, 'Forged 2', 'A'.repeat(43));
    expect(forged.statusCode).toBe(403);
    // The old CSRF header alone is not enough any more.
    const header = await createTenant(s.cookie, 'Forged 3', undefined, { 'x-tresor-request': '1' });
    expect(header.statusCode).toBe(403);
    // A classic cross-site form post: urlencoded body, cookie attached, no token.
    const form = await app.inject({
      method: 'POST',
      url: '/api/v1/tenants',
      headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
      payload: 'name=Forged+4',
    });
    expect(form.statusCode).toBeGreaterThanOrEqual(400);
    expect(await tenantNames()).toEqual([]);
    // The user's own next request still works: probing does not lock the victim out.
    const ok = await createTenant(s.cookie, 'Kunde 1', s.requestToken);
    expect(ok.statusCode).toBe(201);
  });

  it('does not accept a browser session as a bearer token (which would skip the replay lock)', async () => {
    const s = await browserSession();
    const bearer = await app.inject({ method: 'POST', url: '/api/v1/tenants', headers: { authorization: `Bearer ${s.cookie.split('=')[1]}` }, payload: { name: 'Sneaky' } });
    expect(bearer.statusCode).toBe(401);
    expect(await tenantNames()).toEqual([]);
  });

  it('keeps a session with a one-time password to the password change, then issues a new session', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password: operatorPassword } });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ pending: string[]; requestToken: string }>();
    expect(body.pending).toEqual(['password_change']);
    const cookie = `__Host-tresor_session=${cookieOf(res)}`;
    const blocked = await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { cookie } });
    expect(blocked.statusCode).toBe(403);
    expect(blocked.json()).toMatchObject({ code: 'ACTION_REQUIRED', pending: ['password_change'] });
    const me = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { cookie } });
    expect(me.json()).toMatchObject({ kind: 'operator', pending: ['password_change'] });
    const changed = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/password',
      headers: { cookie, 'x-tresor-request-token': body.requestToken },
      payload: { currentPassword: operatorPassword, newPassword: GOOD_PASSWORD },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.json()).toMatchObject({ pending: [] });
    const fresh = `__Host-tresor_session=${cookieOf(changed)}`;
    expect(fresh).not.toBe(cookie);
    expect((await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { cookie } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/api/v1/tenants', headers: { cookie: fresh } })).statusCode).toBe(200);
    const created = await createTenant(fresh, 'Kunde 1', changed.json<{ requestToken: string }>().requestToken);
    expect(created.statusCode).toBe(201);
  });
});

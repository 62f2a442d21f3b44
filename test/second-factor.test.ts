import type { FastifyInstance } from 'fastify';
import { Secret, TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureFirstOperator, openCore, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { tresor } from './cli-process.js';
import { bearerLogin, engines, fixedClock, mailedKey, makeTestEnv, openTestCore, readOutbox, silentLog, type TestEnv } from './helpers.js';

/** Second-factor management: recovery codes renewed by their owner, a lost factor reset by an administrator. */
describe.each(engines)('second factor management (%s)', (engine) => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  const clock = fixedClock('2026-11-23T08:00:00.000Z');
  const tokens: Record<string, string> = {};
  const ids = { t1: '', t2: '', member: '', admin: '', secret: '' };
  const PASSWORDS: Record<string, string> = {
    'admin@eins.test': 'Leuchtturm am Deich 2026',
    'member@eins.test': 'Ruderboot im Nebel 2026',
    'admin@zwei.test': 'Windmühle dreht sich 77',
  };
  const call = (who: string, method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const later = (seconds = 31) => clock.set(new Date(clock.now().getTime() + seconds * 1000).toISOString());
  const code = () => TOTP.generate({ secret: Secret.fromBase32(ids.secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: clock.now().getTime() });
  const login = (email: string, otp?: string) =>
    app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: email, password: PASSWORDS[email], mode: 'token', ...(otp === undefined ? {} : { otp }) } });
  const invite = async (by: string, email: string, role: string, tenantId: string) => {
    const res = await call(by, 'POST', '/api/v1/accounts', { email, role, tenantId });
    expect(res.statusCode, res.body).toBe(201);
    const accepted = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(core.config.mail.outbox_dir, email), newPassword: PASSWORDS[email] } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    return res.json<{ accountId: string }>().accountId;
  };

  beforeAll(async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t, clock);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    ids.t1 = (await call('operator', 'POST', '/api/v1/tenants', { name: 'Werk Eins' })).json<{ id: string }>().id;
    ids.t2 = (await call('operator', 'POST', '/api/v1/tenants', { name: 'Werk Zwei' })).json<{ id: string }>().id;
    ids.admin = await invite('operator', 'admin@eins.test', 'admin', ids.t1);
    await invite('operator', 'admin@zwei.test', 'admin', ids.t2);
    tokens.admin = await bearerLogin(app, 'admin@eins.test', PASSWORDS['admin@eins.test']!);
    tokens.admin2 = await bearerLogin(app, 'admin@zwei.test', PASSWORDS['admin@zwei.test']!);
    ids.member = await invite('admin', 'member@eins.test', 'member', ids.t1);
    // The tenant requires a second factor of its members.
    expect((await call('admin', 'PUT', `/api/v1/tenants/${ids.t1}/password-policy`, { secondFactorRoles: ['member'] })).statusCode).toBe(200);
    tokens.member = (await login('member@eins.test')).json<{ sessionToken: string }>().sessionToken;
    ids.secret = (await call('member', 'POST', '/api/v1/auth/totp/setup')).json<{ secret: string }>().secret;
    const enabled = await call('member', 'POST', '/api/v1/auth/totp/enable', { code: code() });
    expect(enabled.statusCode, enabled.body).toBe(200);
    tokens.member = enabled.json<{ sessionToken: string }>().sessionToken;
    tokens.firstCodes = JSON.stringify(enabled.json<{ recoveryCodes: string[] }>().recoveryCodes);
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('renews the recovery codes only with a current code from the app; the old ones stop working', async () => {
    const oldCodes = JSON.parse(tokens.firstCodes!) as string[];
    // A stolen session alone is not enough: a wrong code, or a recovery code, is refused and recorded.
    expect((await call('member', 'POST', '/api/v1/auth/totp/recovery-codes', { code: '000000' })).statusCode).toBe(400);
    expect((await call('member', 'POST', '/api/v1/auth/totp/recovery-codes', { code: oldCodes[0] })).statusCode).toBe(400);
    later();
    const renewed = await call('member', 'POST', '/api/v1/auth/totp/recovery-codes', { code: code() });
    expect(renewed.statusCode, renewed.body).toBe(200);
    const newCodes = renewed.json<{ recoveryCodes: string[] }>().recoveryCodes;
    expect(newCodes).toHaveLength(10);
    expect(newCodes.some((c) => oldCodes.includes(c))).toBe(false);
    // The same code a second time (the same time step) does not work again.
    expect((await call('member', 'POST', '/api/v1/auth/totp/recovery-codes', { code: code() })).statusCode).toBe(400);
    later();
    expect((await login('member@eins.test', oldCodes[1])).statusCode).toBe(401);
    later();
    expect((await login('member@eins.test', newCodes[0])).statusCode).toBe(200);
    const ledger = await core.ledgers.tenant(ids.t1);
    expect((await ledger.query({ action: 'auth.second-factor.recovery-codes' })).map((e) => e.outcome)).toEqual(['failure', 'success', 'failure']);
    // An account without a second factor has nothing to renew.
    expect((await call('admin', 'POST', '/api/v1/auth/totp/recovery-codes', { code: '123456' })).statusCode).toBe(409);
  });

  it('throttles guesses of the 6-digit code like a login: repeated wrong codes get 429, and so does the right one meanwhile', async () => {
    later();
    // A stolen session must not be able to try all million codes.
    const wrong = () => String((Number(code()) + 1) % 1_000_000).padStart(6, '0');
    const renew = (c: string) => call('member', 'POST', '/api/v1/auth/totp/recovery-codes', { code: c });
    expect((await renew(wrong())).statusCode).toBe(400);
    const throttled = await renew(wrong());
    expect([throttled.statusCode, throttled.json<{ code: string }>().code]).toEqual([429, 'THROTTLED']);
    expect((await renew(code())).statusCode).toBe(429);
    // The wait doubles with each failure, as for the login (which shares the counter).
    later(2);
    expect((await renew(wrong())).statusCode).toBe(400);
    later(1);
    expect((await renew(wrong())).statusCode).toBe(429);
    expect((await login('member@eins.test', code())).statusCode).toBe(429);
    later(2);
    const renewed = await renew(code());
    expect(renewed.statusCode, renewed.body).toBe(200);
    // Success resets the account's counter.
    expect((await renew(wrong())).statusCode).toBe(400);
    later(2);
  });

  it('lets only an administrator of the right tier reset a lost factor; the sessions end and the owner is told', async () => {
    later();
    tokens.member = (await login('member@eins.test', code())).json<{ sessionToken: string }>().sessionToken;
    const reset = `/api/v1/accounts/${ids.member}/second-factor/reset`;
    // Another tenant's admin, the member itself, and the admin on itself are refused.
    expect((await call('admin2', 'POST', reset)).statusCode).toBe(404);
    expect((await call('member', 'POST', reset)).statusCode).toBe(404);
    expect((await call('admin', 'POST', `/api/v1/accounts/${ids.admin}/second-factor/reset`)).statusCode).toBe(409);
    expect((await call('member', 'GET', '/api/v1/auth/me')).statusCode).toBe(200); // nothing happened yet

    const done = await call('admin', 'POST', reset);
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json<{ accountId: string }>().accountId).toBe(ids.member);
    expect(done.json<{ sessionsEnded: number }>().sessionsEnded).toBeGreaterThanOrEqual(1);
    expect((await call('member', 'GET', '/api/v1/auth/me')).statusCode).toBe(401);
    expect((await call('admin', 'POST', reset)).statusCode).toBe(409); // nothing left to reset
    const listed = (await call('admin', 'GET', '/api/v1/accounts')).json<{ id: string; secondFactor: boolean }[]>();
    expect(listed.find((a) => a.id === ids.member)?.secondFactor).toBe(false);
    const events = await (await core.ledgers.tenant(ids.t1)).query({ action: 'account.second-factor.reset' });
    expect(events).toHaveLength(1);
    expect(JSON.stringify(events)).not.toContain('member@eins.test');
    await core.identity.noticesSent();
    expect(readOutbox(core.config.mail.outbox_dir).some((m) => m.to === 'member@eins.test' && /second factor reset|zweiter Faktor/.test(m.subject))).toBe(true);

    // The owner logs in with the password alone and must set up a new factor first (the tenant's rule).
    later();
    const back = await login('member@eins.test');
    expect(back.statusCode, back.body).toBe(200);
    expect(back.json()).toMatchObject({ pending: ['second_factor_setup'] });
  });

  it('resets a second factor from the local CLI: tresor account reset-2fa', async () => {
    later();
    tokens.member = (await login('member@eins.test')).json<{ sessionToken: string }>().sessionToken;
    ids.secret = (await call('member', 'POST', '/api/v1/auth/totp/setup')).json<{ secret: string }>().secret;
    expect((await call('member', 'POST', '/api/v1/auth/totp/enable', { code: code() })).statusCode).toBe(200);
    await app.close();
    await core.close();
    const cli = tresor(['--json', 'account', 'reset-2fa', '--login', 'member@eins.test'], { cwd: t.dir, env: t.env });
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ accountId: ids.member });
    const again = tresor(['account', 'reset-2fa', '--login', 'member@eins.test'], { cwd: t.dir, env: t.env });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/no second factor to reset/);
    core = await openCore(t.config, { log: silentLog, clock });
    app = await buildApp(core, { logger: silentLog });
    expect((await core.identity.listAccounts({ kind: 'system', name: 'cli' }, { tenantId: ids.t1 })).find((a) => a.id === ids.member)?.secondFactor).toBe(false);
    expect((await (await core.ledgers.tenant(ids.t1)).query({ action: 'account.second-factor.reset' })).length).toBe(2);
  });
});

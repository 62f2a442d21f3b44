import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { COMMON_PASSWORD_COUNT, passwordProblems } from '../src/identity/password-policy.js';
import { Secret, TOTP } from 'otpauth';
import { fixedClock, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

describe('password policy', () => {
  it('ships a list of at least 10,000 common passwords', () => {
    expect(COMMON_PASSWORD_COUNT).toBeGreaterThanOrEqual(10_000);
  });

  it('says exactly what to fix', () => {
    expect(passwordProblems('kd8#Lw', { login: 'a@b.example' })).toEqual(['password must be at least 12 characters long (it has 6)']);
    expect(passwordProblems('Password2026!', { login: 'a@b.example' })).toEqual([
      'password is on the list of commonly used passwords; choose a longer phrase of unrelated words',
    ]);
    expect(passwordProblems('qwertyuiop123', { login: 'a@b.example' })[0]).toMatch(/commonly used/);
    expect(passwordProblems('erika.mustermann-2026', { login: 'erika.mustermann@example.de' })).toEqual(['password must not contain your login or e-mail address']);
    expect(passwordProblems('x'.repeat(129), { login: 'a@b.example' })).toEqual(['password must be at most 128 characters long']);
  });

  it('accepts long phrases with no composition rules, counting characters not bytes', () => {
    expect(passwordProblems('korb lampe wiese fluss', { login: 'a@b.example' })).toEqual([]);
    expect(passwordProblems('äöüßäöüßäöüß', { login: 'a@b.example' })).toEqual([]);
    expect(passwordProblems('x'.repeat(64), { login: 'a@b.example' })).toEqual([]);
  });
});

describe('sessions and password change', () => {
  let t: TestEnv;
  let core: Core;
  let app: FastifyInstance;
  let password: string;
  const clock = fixedClock('2026-11-23T08:00:00.000Z');

  beforeEach(async () => {
    clock.set('2026-11-23T08:00:00.000Z');
    t = makeTestEnv('sqlite');
    core = await openTestCore(t, clock);
    app = await buildApp(core, { logger: silentLog });
    password = (await ensureFirstOperator(core))!.oneTimePassword;
    // These tests are about sessions: the forced first change of the one-time password is tested in replay.test.ts.
    await core.storage.control.updateTable('accounts').set({ must_change_password: 0 }).execute();
  });
  afterEach(async () => {
    await app.close();
    await core.close();
    await t.cleanup();
  });

  const login = async (pw = password) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password: pw, mode: 'token' } });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ sessionToken: string }>().sessionToken;
  };
  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const me = async (token: string) => (await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: as(token) })).statusCode;

  it('lists sessions, logs one out, and logs out everywhere', async () => {
    const a = await login();
    const b = await login();
    expect(a).not.toBe(b);
    const list = (await app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: as(a) })).json<{ ref: string; current: boolean }[]>();
    expect(list).toHaveLength(2);
    expect(list.filter((s) => s.current)).toHaveLength(1);
    expect(JSON.stringify(list)).not.toContain(a);
    const other = list.find((s) => !s.current)!;
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${other.ref}`, headers: as(a) })).statusCode).toBe(204);
    expect(await me(b)).toBe(401);
    expect(await me(a)).toBe(200);
    const c = await login();
    expect((await app.inject({ method: 'POST', url: '/api/v1/auth/sessions/logout-all', headers: as(a) })).statusCode).toBe(204);
    expect(await me(a)).toBe(401);
    expect(await me(c)).toBe(401);
  });

  it('ends idle sessions after 30 minutes and every session after 12 hours', async () => {
    const idle = await login();
    clock.set('2026-11-23T08:29:00.000Z');
    expect(await me(idle)).toBe(200);
    clock.set('2026-11-23T08:59:30.000Z');
    expect(await me(idle)).toBe(401);
    const busy = await login();
    for (let minutes = 20; minutes < 12 * 60; minutes += 20) {
      clock.set(new Date(Date.parse('2026-11-23T08:59:30.000Z') + minutes * 60_000).toISOString());
      expect(await me(busy)).toBe(200);
    }
    clock.set(new Date(Date.parse('2026-11-23T08:59:30.000Z') + 12 * 3600_000 + 1000).toISOString());
    expect(await me(busy)).toBe(401);
  });

  it('never accepts a session id planted before login (fixation)', async () => {
    const planted = 'A'.repeat(43);
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { cookie: `__Host-tresor_session=${planted}` }, payload: { login: 'operator', password } });
    expect(String(res.headers['set-cookie'])).not.toContain(planted);
    expect(await me(planted)).toBe(401);
  });

  it('changes the password only with the current one, by the policy, and ends every other session', async () => {
    const a = await login();
    const b = await login();
    const change = (token: string, currentPassword: string, newPassword: string) =>
      app.inject({ method: 'POST', url: '/api/v1/auth/password', headers: as(token), payload: { currentPassword, newPassword } });
    const wrong = await change(a, 'not-the-password', 'a long new pass phrase');
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json<{ message: string }>().message).toBe('the current password is not correct');
    clock.set('2026-11-23T08:00:02.000Z'); // past the 1 s slowdown the wrong guess caused
    const weak = await change(a, password, 'Password2026!');
    expect(weak.statusCode).toBe(400);
    expect(weak.json<{ message: string }>().message).toMatch(/commonly used/);
    // The same problems as stable codes, so that the web app can say them in German too.
    expect(weak.json<{ problemCodes: unknown }>().problemCodes).toEqual([{ code: 'common', params: {} }]);
    const short = await change(a, password, 'kurz');
    expect(short.json<{ problemCodes: unknown }>().problemCodes).toEqual([{ code: 'too-short', params: { min: 12, length: 4 } }]);
    const ok = await change(a, password, 'a long new pass phrase');
    expect(ok.statusCode).toBe(200);
    const fresh = ok.json<{ sessionToken: string }>().sessionToken;
    expect(fresh).not.toBe(a);
    expect(await me(a)).toBe(401);
    expect(await me(b)).toBe(401);
    expect(await me(fresh)).toBe(200);
    expect((await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password } })).statusCode).toBe(401);
    clock.set('2026-11-23T08:00:04.000Z');
    await login('a long new pass phrase');
  });

  it('resets a password with a one-time key exactly once; a second use fails and is recorded', async () => {
    const session = await login();
    const { key, expiresAt } = await core.identity.issuePasswordReset('operator', 60 * 60 * 1000);
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/); // 256 bits
    expect(expiresAt).toBe('2026-11-23T09:00:00.000Z');
    const stored = await core.storage.control.selectFrom('one_time_keys').selectAll().execute();
    expect(JSON.stringify(stored)).not.toContain(key); // only its hash is kept
    const reset = (k: string, newPassword: string) => app.inject({ method: 'POST', url: '/api/v1/auth/reset', payload: { key: k, newPassword } });
    const weak = await reset(key, 'password123!');
    expect(weak.statusCode).toBe(400); // a weak password does not spend the key
    expect((await reset(key, 'fresh lantern over quiet hills')).statusCode).toBe(204);
    expect(await me(session)).toBe(401); // every session ended
    const again = await reset(key, 'and once more with feeling');
    expect(again.statusCode).toBe(401);
    expect(again.json<{ message: string }>().message).toBe('this link is not valid (any more); ask for a new one');
    const forged = await reset('B'.repeat(43), 'and once more with feeling');
    expect(forged.json<{ message: string }>().message).toBe(again.json<{ message: string }>().message);
    await login('fresh lantern over quiet hills');
    const reuse = await core.storage.control.selectFrom('ledger_entries').select(['action', 'outcome']).where('action', '=', 'onetime-key.reuse').execute();
    expect(reuse).toEqual([{ action: 'onetime-key.reuse', outcome: 'denied' }]);
  });

  it('refuses an expired one-time key', async () => {
    const { key } = await core.identity.issuePasswordReset('operator', 60_000);
    clock.set('2026-11-23T08:01:01.000Z');
    expect((await app.inject({ method: 'POST', url: '/api/v1/auth/reset', payload: { key, newPassword: 'too late for this key' } })).statusCode).toBe(401);
  });

  it('requires a TOTP code once a second factor is active, accepts each code once, and takes recovery codes once', async () => {
    const session = await login();
    const setup = (await app.inject({ method: 'POST', url: '/api/v1/auth/totp/setup', headers: as(session) })).json<{ secret: string; uri: string }>();
    expect(setup.uri).toMatch(/^otpauth:\/\/totp\/.*secret=/);
    const stored = await core.storage.control.selectFrom('second_factors').select('sealed_secret').executeTakeFirstOrThrow();
    expect(stored.sealed_secret).not.toContain(setup.secret);
    const code = (at: string) => TOTP.generate({ secret: Secret.fromBase32(setup.secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: Date.parse(at) });
    const wrongEnable = await app.inject({ method: 'POST', url: '/api/v1/auth/totp/enable', headers: as(session), payload: { code: code('2026-11-23T07:00:00.000Z') } });
    expect(wrongEnable.statusCode).toBe(400);
    const enable = await app.inject({ method: 'POST', url: '/api/v1/auth/totp/enable', headers: as(session), payload: { code: code('2026-11-23T08:00:00.000Z') } });
    expect(enable.statusCode).toBe(200);
    const { recoveryCodes } = enable.json<{ recoveryCodes: string[] }>();
    expect(recoveryCodes).toHaveLength(10);

    const attempt = (otp?: string) => app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password, mode: 'token', ...(otp ? { otp } : {}) } });
    clock.set('2026-11-23T08:00:40.000Z');
    const missing = await attempt();
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toMatchObject({ code: 'SECOND_FACTOR_REQUIRED' });
    const current = code('2026-11-23T08:00:40.000Z');
    expect((await attempt(current)).statusCode).toBe(200);
    // The same code again (e.g. seen over a shoulder) is refused, and that failure slows the account down.
    expect((await attempt(current)).statusCode).toBe(401);
    clock.set('2026-11-23T08:01:10.000Z');
    expect((await attempt(recoveryCodes[0])).statusCode).toBe(200);
    clock.set('2026-11-23T08:01:20.000Z');
    expect((await attempt(recoveryCodes[0])).statusCode).toBe(401);
    clock.set('2026-11-23T08:01:40.000Z');
    expect((await attempt(code('2026-11-23T08:01:40.000Z'))).statusCode).toBe(200);
  });

  it('ends every session of an account when it is disabled, and refuses its logins', async () => {
    const a = await login();
    expect(await core.identity.setAccountStatus('operator', 'disabled')).toMatchObject({ sessionsEnded: 1 });
    expect(await me(a)).toBe(401);
    expect((await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password } })).statusCode).toBe(401);
    await core.identity.setAccountStatus('operator', 'active');
    clock.set('2026-11-23T08:00:02.000Z');
    await login();
  });

  it('upgrades a stored hash at the next login when the Argon2id parameters were raised', async () => {
    const before = (await core.storage.control.selectFrom('accounts').select('password_hash').executeTakeFirstOrThrow()).password_hash;
    expect(before).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    await app.close();
    await core.close();
    const raised = makeTestEnv('sqlite', { TRESOR_ARGON2_MEMORY_KIB: '24576', TRESOR_ARGON2_ITERATIONS: '3' });
    // Same data directory and master key, higher cost.
    const config = { ...raised.config, data_dir: t.config.data_dir, master_key: t.config.master_key };
    core = await (await import('../src/core.js')).openCore(config, { log: silentLog, clock });
    app = await buildApp(core, { logger: silentLog });
    await raised.cleanup();
    await login();
    const after = (await core.storage.control.selectFrom('accounts').select('password_hash').executeTakeFirstOrThrow()).password_hash;
    expect(after).toMatch(/^\$argon2id\$v=19\$m=24576,t=3,p=1\$/);
    await login(); // and the upgraded hash verifies
  });

  it('sends the security headers on every response', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.headers['strict-transport-security']).toMatch(/max-age=31536000; includeSubDomains/);
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.headers['content-security-policy']).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['permissions-policy']).toContain('camera=()');
    const error = await app.inject({ method: 'POST', url: '/api/v1/tenants', headers: { 'content-type': 'application/json' }, payload: '{"broken' });
    expect(error.statusCode).toBe(400);
    expect(error.body).not.toMatch(/at .*\.js|node_modules|stack/i);
  });
});

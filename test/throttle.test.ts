import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { ensureFirstOperator, openCore, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { delayAfter } from '../src/identity/index.js';
import { freePort, startServe, type ServeProcess } from './cli-process.js';
import { acceptMailedInvitation, dropPgInstallation, engines, fixedClock, GOOD_PASSWORD, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

describe('brute-force slowdown', () => {
  it('doubles the delay from 1 s up to 15 minutes', () => {
    expect([0, 1, 2, 3, 4, 10, 11, 30].map((n) => delayAfter(n))).toEqual([0, 1000, 2000, 4000, 8000, 512_000, 900_000, 900_000]);
    expect(delayAfter(10, 10)).toBe(0);
    expect(delayAfter(11, 10)).toBe(1000);
  });

  describe('through the HTTP API', () => {
    let t: TestEnv;
    let core: Core;
    let app: FastifyInstance;
    const clock = fixedClock('2026-11-23T10:00:00.000Z');
    afterEach(async () => {
      await app?.close();
      await core?.close();
      await t?.cleanup();
    });

    const attempt = (login: string, password: string, remoteAddress = '127.0.0.1') =>
      app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress, payload: { login, password, mode: 'token' } });

    it('makes the next attempt wait, before the password is even checked, and resets after success', async () => {
      t = makeTestEnv('sqlite');
      core = await openTestCore(t, clock);
      app = await buildApp(core, { logger: silentLog });
      const operator = (await ensureFirstOperator(core))!;

      expect((await attempt('operator', 'wrong-1')).statusCode).toBe(401);
      // Even the right password is refused while the delay runs: nothing is hashed.
      const waiting = await attempt('operator', operator.oneTimePassword);
      expect(waiting.statusCode).toBe(429);
      expect(waiting.headers['retry-after']).toBe('1');
      expect(waiting.json()).toMatchObject({ code: 'THROTTLED', message: 'too many failed logins; wait 1 seconds before trying again' });

      clock.set('2026-11-23T10:00:01.100Z');
      expect((await attempt('operator', 'wrong-2')).statusCode).toBe(401);
      clock.set('2026-11-23T10:00:02.200Z');
      expect((await attempt('operator', operator.oneTimePassword)).statusCode).toBe(429); // 2 s now
      clock.set('2026-11-23T10:00:03.200Z');
      expect((await attempt('operator', operator.oneTimePassword)).statusCode).toBe(200);
      // Success reset the account: the next failure waits 1 s again, not 4 s.
      expect((await attempt('operator', 'wrong-3')).statusCode).toBe(401);
      clock.set('2026-11-23T10:00:04.300Z');
      expect((await attempt('operator', operator.oneTimePassword)).statusCode).toBe(200);

      const throttled = await core.storage.control.selectFrom('ledger_entries').select(['action', 'outcome']).where('outcome', '=', 'denied').execute();
      expect(throttled).toHaveLength(2);
    });

    it('checks at most one of 20 parallel guesses for one account; the rest wait, and the owner gets in after the delay', async () => {
      t = makeTestEnv('sqlite');
      core = await openTestCore(t, clock);
      app = await buildApp(core, { logger: silentLog });
      const operator = (await ensureFirstOperator(core))!;
      clock.set('2026-11-23T13:00:00.000Z');
      // All at once, from 20 addresses: check and reservation are one step, so only one guess reaches the hasher.
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => attempt('operator', `parallel-guess-${i}`, `127.0.1.${i + 1}`)));
      const statuses = answers.map((a) => a.statusCode);
      expect(statuses.filter((s) => s === 401).length).toBeGreaterThanOrEqual(1);
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(2);
      expect(statuses.filter((s) => s === 429)).toHaveLength(20 - statuses.filter((s) => s === 401).length);
      for (const refused of answers.filter((a) => a.statusCode === 429)) expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      // Every checked password leaves one failure in the ledger, every refusal a "denied" entry.
      const entries = await core.storage.control.selectFrom('ledger_entries').select(['action', 'outcome']).where('action', '=', 'auth.login').execute();
      expect(entries.filter((e) => e.outcome === 'failure').length).toBe(statuses.filter((s) => s === 401).length);
      expect(entries.filter((e) => e.outcome === 'denied').length).toBe(statuses.filter((s) => s === 429).length);
      // Not a permanent lock-out of the victim: after the delay the right password works.
      clock.set('2026-11-23T13:00:05.000Z');
      expect((await attempt('operator', operator.oneTimePassword, '127.0.2.1')).statusCode).toBe(200);
      // And the slot is free again after a success, too.
      expect((await attempt('operator', 'one-more-wrong', '127.0.2.1')).statusCode).toBe(401);
    });

    it('lets one address check at most its 10 free failures at once when it sprays many accounts in parallel', async () => {
      t = makeTestEnv('sqlite');
      core = await openTestCore(t, clock);
      app = await buildApp(core, { logger: silentLog });
      clock.set('2026-11-23T14:00:00.000Z');
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => attempt(`spray${i}@example.test`, 'Winter2026!', '127.0.3.1')));
      const checked = answers.filter((a) => a.statusCode === 401).length;
      expect(checked).toBeGreaterThanOrEqual(1);
      expect(checked).toBeLessThanOrEqual(10);
      expect(answers.filter((a) => a.statusCode === 429)).toHaveLength(20 - checked);
    });

    it('treats unknown and known logins alike (no enumeration)', async () => {
      t = makeTestEnv('sqlite');
      core = await openTestCore(t, clock);
      app = await buildApp(core, { logger: silentLog });
      await ensureFirstOperator(core);
      clock.set('2026-11-23T12:00:00.000Z');
      const seen: string[] = [];
      for (const login of ['operator', 'nobody@example.test']) {
        for (const step of [0, 1]) {
          const res = await attempt(login, `wrong-${step}`, '127.0.0.9');
          const { requestId: _id, ...body } = res.json<Record<string, string>>();
          seen.push(`${login === 'operator' ? 'known' : 'unknown'}:${res.statusCode}:${JSON.stringify(body)}`);
        }
      }
      expect(seen.map((s) => s.replace(/^(known|unknown):/, ''))).toEqual([seen[0]!.replace(/^known:/, ''), seen[1]!.replace(/^known:/, ''), seen[0]!.replace(/^known:/, ''), seen[1]!.replace(/^known:/, '')]);
    });
  });
});

describe.each(engines)('a failing mail relay (%s)', (engine) => {
  let t: TestEnv;
  let core: Core | undefined;
  let app: FastifyInstance | undefined;
  const clock = fixedClock('2026-11-23T10:00:00.000Z');
  afterEach(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
  });

  it('changes nothing in the answer to a known login at the 5th failure (no enumeration), and is logged without the address', async () => {
    t = makeTestEnv(engine);
    // Set up with the outbox: a known account with an e-mail address (the owner who would be told).
    core = await openTestCore(t, clock);
    await core.platform.createReseller({ kind: 'system', name: 'cli' }, { name: 'Relay Partner', adminLogin: 'owner@relay.test' });
    await acceptMailedInvitation(core, 'owner@relay.test');
    await core.close();
    // Now with a relay that refuses every connection (a port nobody listens on).
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) }));
    const config = loadConfig({ cwd: t.dir, env: { ...t.env, TRESOR_MAIL_TRANSPORT: 'smtp', TRESOR_MAIL_SMTP_URL: `smtp://127.0.0.1:${await freePort()}` } });
    core = await openCore(config, { log, clock });
    app = await buildApp(core, { logger: silentLog });
    const answers: Record<'known' | 'unknown', string[]> = { known: [], unknown: [] };
    for (let i = 1; i <= 5; i++) {
      clock.set(new Date(Date.parse('2026-11-23T10:00:00.000Z') + i * 3_600_000).toISOString());
      for (const [who, login] of [['known', 'owner@relay.test'], ['unknown', 'nobody@relay.test']] as const) {
        const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: `127.0.4.${i}`, payload: { login, password: `wrong guess ${i}`, mode: 'token' } });
        const { requestId: _id, ...body } = res.json<Record<string, string>>();
        answers[who].push(`${res.statusCode} ${JSON.stringify(body)}`);
      }
    }
    expect(answers.known).toEqual(answers.unknown);
    expect(answers.known[4]).toMatch(/^401 /);
    // The notice for the 5th failure was tried in the background; its failure is logged, not the address.
    await core.identity.noticesSent();
    const warnings = lines.filter((l) => l.includes('security notice'));
    expect(warnings.length).toBe(1);
    expect(warnings.join('')).toContain('failed-logins');
    expect(lines.join('')).not.toContain('relay.test');
    // The owner still logs in with the right password.
    clock.set('2026-11-23T18:00:00.000Z');
    const owner = await app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: '127.0.4.9', payload: { login: 'owner@relay.test', password: GOOD_PASSWORD, mode: 'token' } });
    expect(owner.statusCode, owner.body).toBe(200);
  });
});

async function login(url: string, ca: Buffer, localAddress: string, body: object): Promise<number> {
  return (await loginWithRetry(url, ca, localAddress, body)).status;
}

/** The status and, for a 429, the seconds to wait (Retry-After). */
function loginWithRetry(url: string, ca: Buffer, localAddress: string, body: object): Promise<{ status: number; retryAfter: number }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = httpsRequest(`${url}/api/v1/auth/login`, { method: 'POST', ca, localAddress, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: Number(res.headers['retry-after'] ?? 0) }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

describe('brute force from 50 loopback addresses against a real server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-bf-'));
  let server: ServeProcess;
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('slows the attacked account down for every address, and an address for every account', async () => {
    server = await startServe({ cwd: dir, env: { TRESOR_SERVER_PORT: String(await freePort()), TRESOR_METRICS_ENABLED: 'false' } });
    const ca = readFileSync(join(dir, 'data', 'pki', 'ca.pem'));
    const password = /password: (\S+)/.exec(server.output())![1]!;
    const statuses: number[] = [];
    const started = Date.now();
    for (let i = 2; i < 52; i++) statuses.push(await login(server.url, ca, `127.0.0.${i}`, { login: 'operator', password: `guess-${i}` }));
    const elapsedSeconds = (Date.now() - started) / 1000;
    // The first guess is checked; every other address must wait for the account's delay. On a busy machine
    // the 50 TLS requests can outlast a delay: then at most one guess per doubling delay is checked.
    expect(statuses[0]).toBe(401);
    const checked = statuses.filter((s) => s === 401).length;
    expect(checked, statuses.join(',')).toBeLessThanOrEqual(1 + Math.ceil(Math.log2(elapsedSeconds + 1)));
    expect(statuses.filter((s) => s === 429)).toHaveLength(50 - checked);
    // The owner, from yet another address, is also only slowed down, not locked out for good: after the
    // delay the right password works (the refused attempts were not counted).
    let owner = { status: 429, retryAfter: 1 };
    for (let round = 0; round < 6 && owner.status === 429; round++) {
      await new Promise((r) => setTimeout(r, owner.retryAfter * 1000 + 100));
      owner = await loginWithRetry(server.url, ca, '127.0.0.200', { login: 'operator', password });
    }
    expect(owner.status).toBe(200);

    // One address spraying many accounts is slowed down after 10 failures.
    const spray: number[] = [];
    for (let i = 0; i < 12; i++) spray.push(await login(server.url, ca, '127.0.0.77', { login: `user${i}@example.test`, password: 'Winter2026!' }));
    expect(spray.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(spray[10]).toBe(401);
    expect(spray[11]).toBe(429);
  });
});

describe.runIf(process.env.TRESOR_TEST_PG)('two nodes on one PostgreSQL and one Redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-2nodes-'));
  const pgName = `tresor_test_${Math.random().toString(36).slice(2, 10)}`;
  const nodes: ServeProcess[] = [];
  afterAll(async () => {
    for (const node of nodes) await node.stop();
    await dropPgInstallation(pgName);
    rmSync(dir, { recursive: true, force: true });
  });

  it('shares the brute-force counters between nodes', async () => {
    const url = new URL(process.env.TRESOR_TEST_PG!);
    url.pathname = `/${pgName}`;
    const env = { TRESOR_DATABASE_URL: url.toString(), TRESOR_REDIS_URL: 'redis://127.0.0.1:6379', TRESOR_METRICS_ENABLED: 'false' };
    nodes.push(await startServe({ cwd: dir, env: { ...env, TRESOR_SERVER_PORT: String(await freePort()) } }));
    nodes.push(await startServe({ cwd: dir, env: { ...env, TRESOR_SERVER_PORT: String(await freePort()) } }));
    const ca = readFileSync(join(dir, 'data', 'pki', 'ca.pem'));
    const victim = `victim-${randomUUID()}@example.test`; // a fresh key in the shared Redis
    expect(await login(nodes[0]!.url, ca, '127.0.0.1', { login: victim, password: 'guess-1' })).toBe(401);
    expect(await login(nodes[1]!.url, ca, '127.0.0.3', { login: victim, password: 'guess-2' })).toBe(429);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await login(nodes[1]!.url, ca, '127.0.0.3', { login: victim, password: 'guess-3' })).toBe(401);
    expect(await login(nodes[0]!.url, ca, '127.0.0.4', { login: victim, password: 'guess-4' })).toBe(429);
  });

  it('checks at most one or two of 20 parallel guesses sent to both nodes (the reservation lives in Redis)', async () => {
    const ca = readFileSync(join(dir, 'data', 'pki', 'ca.pem'));
    const victim = `parallel-${randomUUID()}@example.test`;
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => login(nodes[i % 2]!.url, ca, `127.0.5.${i + 1}`, { login: victim, password: `guess-${i}` })),
    );
    const checked = statuses.filter((s) => s === 401).length;
    expect(checked).toBeGreaterThanOrEqual(1);
    expect(checked).toBeLessThanOrEqual(2);
    expect(statuses.filter((s) => s === 429)).toHaveLength(20 - checked);
  });
});

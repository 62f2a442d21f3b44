import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { delayAfter } from '../src/identity/index.js';
import { freePort, startServe, type ServeProcess } from './cli-process.js';
import { dropPgInstallation, fixedClock, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

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

function login(url: string, ca: Buffer, localAddress: string, body: object): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = httpsRequest(`${url}/api/v1/auth/login`, { method: 'POST', ca, localAddress, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
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
    for (let i = 2; i < 52; i++) statuses.push(await login(server.url, ca, `127.0.0.${i}`, { login: 'operator', password: `guess-${i}` }));
    // The first guess is checked; every other address must wait for the account's delay.
    expect(statuses[0]).toBe(401);
    expect(statuses.slice(1).every((s) => s === 429)).toBe(true);
    // The owner, from yet another address, is also only slowed down, not locked out for good: after the
    // delay the right password works (the delay here is 1 s: the 49 refused attempts were not counted).
    await new Promise((r) => setTimeout(r, 1100));
    expect(await login(server.url, ca, '127.0.0.200', { login: 'operator', password })).toBe(200);

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
});

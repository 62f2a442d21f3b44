import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureFirstOperator, type Core } from '../src/core.js';
import { buildApp } from '../src/http/app.js';
import { engines, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

/** What a client sees at the server's limits and failures: 503 with Retry-After, and a 500 without internals. */
describe.each(engines)('limits and failures over HTTP (%s)', (engine) => {
  let t: TestEnv | undefined;
  let core: Core | undefined;
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
    app = core = t = undefined;
  });

  it('answers 503 with Retry-After when more password hashes wait than allowed, and recovers', async () => {
    t = makeTestEnv(engine, { TRESOR_ARGON2_MAX_CONCURRENT: '1', TRESOR_ARGON2_MAX_QUEUED: '1' });
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    // Ten logins at once, each for another (unknown) account from another address: only hashing limits them.
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        app!.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: `127.0.6.${i + 1}`, payload: { login: `flood${i}@example.test`, password: 'Winter2026!', mode: 'token' } }),
      ),
    );
    const busy = answers.filter((a) => a.statusCode === 503);
    expect(busy.length).toBeGreaterThanOrEqual(1);
    expect(answers.filter((a) => a.statusCode === 401).length).toBeGreaterThanOrEqual(2); // one running, one waiting
    expect(answers.every((a) => a.statusCode === 401 || a.statusCode === 503)).toBe(true);
    for (const res of busy) {
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json()).toMatchObject({ code: 'BUSY', message: 'the server is busy checking passwords; try again in a moment' });
    }
    // A refused attempt is not counted as a failure, and its reservation is given back: the owner logs in.
    const owner = await app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: '127.0.6.100', payload: { login: 'operator', password: operator.oneTimePassword, mode: 'token' } });
    expect(owner.statusCode, owner.body).toBe(200);
  });

  it('answers an unexpected failure with a bare 500: request id, code and message, no stack or database text', async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    app = await buildApp(core, { logger: silentLog });
    const operator = (await ensureFirstOperator(core))!;
    // A real failure inside the server: the sessions table is gone, so the login cannot store its session.
    await core.storage.control.schema.dropTable('sessions').execute();
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password: operator.oneTimePassword, mode: 'token' } });
    expect(res.statusCode).toBe(500);
    const body = res.json<Record<string, string>>();
    expect(Object.keys(body).sort()).toEqual(['code', 'message', 'requestId']);
    expect(body.code).toBe('INTERNAL');
    expect(body.message).toBe(`something went wrong on the server; quote request id ${body.requestId} to your operator`);
    expect(res.body).not.toMatch(/sessions|sqlite|relation|\bat \S+ \(|\.ts:|\.js:|Error/i);
  });
});

import { describe, expect, it } from 'vitest';
import { ensureFirstOperator } from '../src/core.js';
import { buildApp, sharedSerializers } from '../src/http/app.js';
import { errorResponseSchema } from '../src/http/errors.js';
import { makeTestEnv, openTestCore, silentLog } from './helpers.js';

/**
 * Response serializers are shared between routes only when their schemas are the same: a serializer writes
 * only the fields its schema names, so one used for the wrong schema would drop fields or let others out.
 */
describe('shared response serializers', () => {
  const route = (schema: unknown, url = '/a') => ({ method: 'GET', url, httpStatus: '200', schema });

  it('builds one serializer per distinct schema and never lends one schema’s serializer to another', () => {
    const compile = sharedSerializers()(undefined, {});
    const narrow = { type: 'object', properties: { id: { type: 'string' } } };
    const wide = { type: 'object', properties: { id: { type: 'string' }, email: { type: 'string' } } };
    const first = compile(route(errorResponseSchema, '/a'));
    expect(compile(route(structuredClone(errorResponseSchema), '/b'))).toBe(first); // the same schema, another route
    const narrowSerializer = compile(route(narrow));
    const wideSerializer = compile(route(wide));
    expect(wideSerializer).not.toBe(narrowSerializer);
    const data = { id: 'x1', email: 'someone@example.test', secret: 'never' };
    expect(JSON.parse(narrowSerializer(data))).toEqual({ id: 'x1' });
    expect(JSON.parse(wideSerializer(data))).toEqual({ id: 'x1', email: 'someone@example.test' });
    // A schema that differs only in what it requires or allows is another schema.
    const strict = compile(route({ ...narrow, required: ['id'] }));
    expect(strict).not.toBe(narrowSerializer);
    expect(() => strict({})).toThrow(/id/);
  });

  it('the running server’s answers keep every field of their schemas', async () => {
    const t = makeTestEnv('sqlite');
    const core = await openTestCore(t);
    const app = await buildApp(core, { logger: silentLog });
    try {
      const operator = (await ensureFirstOperator(core))!;
      // Two routes' refusals through the shared error serializer.
      for (const [method, url] of [['GET', '/api/v1/auth/sessions'], ['POST', '/api/v1/auth/logout']] as const) {
        const refused = await app.inject({ method, url });
        expect(refused.statusCode).toBe(401);
        expect(Object.keys(refused.json()).sort()).toEqual(['code', 'message', 'requestId']);
      }
      // The error schema's fields all still arrive: a first password change to one with problems.
      const login = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login: 'operator', password: operator.oneTimePassword, mode: 'token' } });
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/auth/password',
        headers: { authorization: `Bearer ${login.json<{ sessionToken: string }>().sessionToken}` },
        payload: { currentPassword: operator.oneTimePassword, newPassword: 'password1234' },
      });
      expect(res.statusCode, res.body).toBe(400);
      const body = res.json() as Record<string, unknown>;
      expect(body).toMatchObject({ code: 'VALIDATION' });
      expect(typeof body['requestId']).toBe('string');
      expect(Array.isArray(body['problems'])).toBe(true);
      expect(Array.isArray(body['problemCodes'])).toBe(true);
    } finally {
      await app.close();
      await core.close();
      await t.cleanup();
    }
  });
});

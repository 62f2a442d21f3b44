import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { actorOf, SESSION_COOKIE, sessionTokenOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import type { IdentityService } from './identity.service.js';

const actorSchema = {
  type: 'object',
  properties: {
    kind: { type: 'string' },
    accountId: { type: 'string' },
    resellerId: { type: 'string' },
  },
  required: ['kind'],
} as const;

export function registerIdentityRoutes(app: FastifyInstance, deps: { identity: IdentityService; authenticate: preHandlerAsyncHookHandler }): void {
  const { identity } = deps;

  app.post<{ Body: { login: string; password: string; mode?: 'cookie' | 'token' } }>('/api/v1/auth/login', {
    schema: {
      tags: ['auth'],
      summary: 'Log in. mode=cookie (browsers) sets a __Host- session cookie; mode=token (scripts) returns a bearer token',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          login: { type: 'string', minLength: 1, maxLength: 254 },
          password: { type: 'string', minLength: 1, maxLength: 1024 },
          mode: { type: 'string', enum: ['cookie', 'token'], default: 'cookie' },
        },
        required: ['login', 'password'],
      },
      response: {
        200: {
          type: 'object',
          properties: { actor: actorSchema, expiresAt: { type: 'string' }, sessionToken: { type: 'string' } },
          required: ['actor', 'expiresAt'],
        },
        400: errorResponseSchema,
        401: errorResponseSchema,
        429: errorResponseSchema,
      },
    },
    handler: async (request, reply) => {
      const session = await identity.login(request.body.login, request.body.password, request.ip);
      if (request.body.mode === 'token') {
        return { actor: session.actor, expiresAt: session.expiresAt, sessionToken: session.sessionToken };
      }
      void reply.setCookie(SESSION_COOKIE, session.sessionToken, {
        path: '/',
        secure: true,
        httpOnly: true,
        sameSite: 'strict',
        expires: new Date(session.expiresAt),
      });
      return { actor: session.actor, expiresAt: session.expiresAt };
    },
  });

  app.post('/api/v1/auth/logout', {
    preHandler: deps.authenticate,
    schema: { tags: ['auth'], summary: 'End the current session', response: { 204: { type: 'null' }, 401: errorResponseSchema } },
    handler: async (request, reply) => {
      const session = sessionTokenOf(request);
      if (session) await identity.logout(session.token);
      void reply.clearCookie(SESSION_COOKIE, { path: '/', secure: true, httpOnly: true, sameSite: 'strict' });
      return reply.status(204).send();
    },
  });

  app.get('/api/v1/auth/me', {
    preHandler: deps.authenticate,
    schema: { tags: ['auth'], summary: 'Who am I', response: { 200: actorSchema, 401: errorResponseSchema } },
    handler: async (request) => actorOf(request),
  });
}

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

  app.post<{ Body: { login: string; password: string; otp?: string; mode?: 'cookie' | 'token' } }>('/api/v1/auth/login', {
    schema: {
      tags: ['auth'],
      summary: 'Log in. mode=cookie (browsers) sets a __Host- session cookie; mode=token (scripts) returns a bearer token',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          login: { type: 'string', minLength: 1, maxLength: 254 },
          password: { type: 'string', minLength: 1, maxLength: 1024 },
          otp: { type: 'string', maxLength: 32, description: 'TOTP code or recovery code, when a second factor is active' },
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
      const session = await identity.login(request.body.login, request.body.password, request.ip, request.body.otp);
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

  const sessionSchema = {
    type: 'object',
    properties: {
      ref: { type: 'string' },
      createdAt: { type: 'string' },
      lastSeenAt: { type: 'string' },
      expiresAt: { type: 'string' },
      current: { type: 'boolean' },
    },
    required: ['ref', 'createdAt', 'lastSeenAt', 'expiresAt', 'current'],
  } as const;
  const tokenOf = (request: Parameters<typeof sessionTokenOf>[0]) => sessionTokenOf(request)!.token;

  app.get('/api/v1/auth/sessions', {
    preHandler: deps.authenticate,
    schema: { tags: ['auth'], summary: 'Your sessions (this one is marked current)', response: { 200: { type: 'array', items: sessionSchema }, 401: errorResponseSchema } },
    handler: async (request) => identity.listSessions(tokenOf(request)),
  });

  app.delete<{ Params: { ref: string } }>('/api/v1/auth/sessions/:ref', {
    preHandler: deps.authenticate,
    schema: {
      tags: ['auth'],
      summary: 'Log one of your sessions out',
      params: { type: 'object', properties: { ref: { type: 'string', pattern: '^[0-9a-f]{16}$' } }, required: ['ref'] },
      response: { 204: { type: 'null' }, 401: errorResponseSchema, 404: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.endSession(tokenOf(request), request.params.ref);
      return reply.status(204).send();
    },
  });

  app.post('/api/v1/auth/sessions/logout-all', {
    preHandler: deps.authenticate,
    schema: { tags: ['auth'], summary: 'Log out everywhere (every session of your account, this one too)', response: { 204: { type: 'null' }, 401: errorResponseSchema } },
    handler: async (request, reply) => {
      await identity.endAllSessions(tokenOf(request));
      void reply.clearCookie(SESSION_COOKIE, { path: '/', secure: true, httpOnly: true, sameSite: 'strict' });
      return reply.status(204).send();
    },
  });

  app.post<{ Body: { currentPassword: string; newPassword: string } }>('/api/v1/auth/password', {
    preHandler: deps.authenticate,
    schema: {
      tags: ['auth'],
      summary: 'Change your password (needs the current one); every session ends and a new one starts',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { currentPassword: { type: 'string', minLength: 1, maxLength: 1024 }, newPassword: { type: 'string', minLength: 1, maxLength: 1024 } },
        required: ['currentPassword', 'newPassword'],
      },
      response: {
        200: { type: 'object', properties: { expiresAt: { type: 'string' }, sessionToken: { type: 'string' } }, required: ['expiresAt'] },
        400: errorResponseSchema,
        401: errorResponseSchema,
        409: errorResponseSchema,
        429: errorResponseSchema,
      },
    },
    handler: async (request, reply) => {
      const via = sessionTokenOf(request)!;
      const session = await identity.changePassword(via.token, request.body.currentPassword, request.body.newPassword, request.ip);
      if (via.via === 'bearer') return { expiresAt: session.expiresAt, sessionToken: session.sessionToken };
      void reply.setCookie(SESSION_COOKIE, session.sessionToken, { path: '/', secure: true, httpOnly: true, sameSite: 'strict', expires: new Date(session.expiresAt) });
      return { expiresAt: session.expiresAt };
    },
  });

  app.post<{ Body: { key: string; newPassword: string } }>('/api/v1/auth/reset', {
    schema: {
      tags: ['auth'],
      summary: 'Set a new password with a one-time reset key (from `tresor account reset-link`)',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { key: { type: 'string', minLength: 43, maxLength: 43, pattern: '^[A-Za-z0-9_-]+$' }, newPassword: { type: 'string', minLength: 1, maxLength: 1024 } },
        required: ['key', 'newPassword'],
      },
      response: { 204: { type: 'null' }, 400: errorResponseSchema, 401: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.resetPassword(request.body.key, request.body.newPassword);
      return reply.status(204).send();
    },
  });

  app.post('/api/v1/auth/totp/setup', {
    preHandler: deps.authenticate,
    schema: {
      tags: ['auth'],
      summary: 'Start TOTP set-up: a secret and an otpauth:// URI for an authenticator app',
      response: { 200: { type: 'object', properties: { secret: { type: 'string' }, uri: { type: 'string' } }, required: ['secret', 'uri'] }, 401: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request) => identity.setupTotp(tokenOf(request)),
  });

  app.post<{ Body: { code: string } }>('/api/v1/auth/totp/enable', {
    preHandler: deps.authenticate,
    schema: {
      tags: ['auth'],
      summary: 'Activate TOTP with a current code; returns ten recovery codes, shown once',
      body: { type: 'object', additionalProperties: false, properties: { code: { type: 'string', pattern: '^[0-9]{6}$' } }, required: ['code'] },
      response: {
        200: { type: 'object', properties: { recoveryCodes: { type: 'array', items: { type: 'string' } } }, required: ['recoveryCodes'] },
        400: errorResponseSchema,
        401: errorResponseSchema,
        409: errorResponseSchema,
      },
    },
    handler: async (request) => ({ recoveryCodes: await identity.enableTotp(tokenOf(request), request.body.code) }),
  });

  app.get('/api/v1/auth/me', {
    preHandler: deps.authenticate,
    schema: { tags: ['auth'], summary: 'Who am I', response: { 200: actorSchema, 401: errorResponseSchema } },
    handler: async (request) => actorOf(request),
  });
}

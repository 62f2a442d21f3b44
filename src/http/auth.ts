import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Actor } from '../access/index.js';
import type { IdentityService } from '../identity/index.js';
import { REQUEST_TOKEN_FIELD, REQUEST_TOKEN_HEADER } from '../identity/request-tokens.js';
import { ActionRequiredError, UnauthenticatedError, ValidationError } from '../shared/errors.js';

export const SESSION_COOKIE = '__Host-tresor_session';
export { REQUEST_TOKEN_HEADER };

/** Routes a session may use while a password change or a second-factor set-up is pending. */
const ALLOWED_WHILE_PENDING = new Set([
  '/api/v1/auth/me',
  '/api/v1/auth/logout',
  '/api/v1/auth/password',
  '/api/v1/auth/password-policy',
  '/api/v1/auth/totp/setup',
  '/api/v1/auth/totp/enable',
]);

declare module 'fastify' {
  interface FastifyRequest {
    actor?: Actor;
    /** Cookie sessions: the request token the next state-changing request must carry. */
    nextRequestToken?: string | undefined;
    /** The request token of an HTML form (hidden field `_requestToken`), taken out of the body. */
    formRequestToken?: string | undefined;
  }
}

export function sessionTokenOf(request: FastifyRequest): { token: string; via: 'token' | 'cookie' } | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return { token: header.slice(7).trim(), via: 'token' };
  const cookie = request.cookies[SESSION_COOKIE];
  return cookie ? { token: cookie, via: 'cookie' } : undefined;
}

/**
 * preHandler for every authenticated route: resolves the session or answers 401; applies the replay
 * lock to state-changing requests of browser (cookie) sessions, which is also their CSRF protection;
 * and keeps a session with a pending password change or second-factor set-up to those routes.
 */
export function requireActor(identity: Pick<IdentityService, 'resolveSession' | 'useRequestToken'>) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const session = sessionTokenOf(request);
    if (!session) throw new UnauthenticatedError();
    const resolved = await identity.resolveSession(session.token, session.via);
    if (resolved.kind === 'cookie') {
      if (['GET', 'HEAD'].includes(request.method)) {
        if (resolved.requestToken) request.nextRequestToken = resolved.requestToken;
      } else {
        // The header (API, the web app) or the hidden field of a plain HTML form: both are checked alike.
        const header = request.headers[REQUEST_TOKEN_HEADER];
        const presented = typeof header === 'string' ? header : request.formRequestToken;
        request.nextRequestToken = await identity.useRequestToken(session.token, presented, request.ip);
      }
    }
    if (resolved.pending.length > 0 && !ALLOWED_WHILE_PENDING.has(request.routeOptions.url ?? '')) {
      throw new ActionRequiredError(resolved.pending);
    }
    request.actor = resolved.actor;
  };
}

const FORM = 'application/x-www-form-urlencoded';

/**
 * HTML forms (S2.6: "hidden field for forms"): urlencoded bodies are parsed, but only for routes that
 * need a session, where the replay lock checks their `_requestToken` field; every other route (the login
 * above all: no login CSRF) refuses a form. Register before the routes: it looks at each route as it is
 * added, to see whether `authenticate` guards it.
 */
export function registerFormRequestToken(app: FastifyInstance, authenticate: unknown): void {
  const guarded = new Set<string>();
  app.addHook('onRoute', (route) => {
    const handlers = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
    if (handlers.includes(authenticate as (typeof handlers)[number])) {
      for (const method of Array.isArray(route.method) ? route.method : [route.method]) guarded.add(`${method} ${route.url}`);
    }
  });
  app.addContentTypeParser(FORM, { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.addHook('preValidation', async (request) => {
    if (!(request.headers['content-type'] ?? '').toLowerCase().startsWith(FORM)) return;
    if (!guarded.has(`${request.method} ${request.routeOptions.url ?? ''}`)) {
      throw new ValidationError('this endpoint takes JSON (content-type: application/json), not an HTML form');
    }
    const body = request.body as Record<string, unknown> | undefined;
    if (body && typeof body === 'object' && REQUEST_TOKEN_FIELD in body) {
      const value = body[REQUEST_TOKEN_FIELD];
      request.formRequestToken = typeof value === 'string' ? value : undefined;
      delete body[REQUEST_TOKEN_FIELD];
    }
  });
}

/** Hands the next request token to the browser on every response of a cookie session. */
export function registerRequestTokenHeader(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.nextRequestToken) void reply.header(REQUEST_TOKEN_HEADER, request.nextRequestToken);
    return payload;
  });
}

export function actorOf(request: FastifyRequest): Actor {
  if (!request.actor) throw new UnauthenticatedError();
  return request.actor;
}

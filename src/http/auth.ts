import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Actor } from '../access/index.js';
import type { IdentityService } from '../identity/index.js';
import { REQUEST_TOKEN_HEADER } from '../identity/request-tokens.js';
import { ActionRequiredError, UnauthenticatedError } from '../shared/errors.js';

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
        const presented = request.headers[REQUEST_TOKEN_HEADER];
        request.nextRequestToken = await identity.useRequestToken(session.token, typeof presented === 'string' ? presented : undefined, request.ip);
      }
    }
    if (resolved.pending.length > 0 && !ALLOWED_WHILE_PENDING.has(request.routeOptions.url ?? '')) {
      throw new ActionRequiredError(resolved.pending);
    }
    request.actor = resolved.actor;
  };
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

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Actor } from '../access/index.js';
import type { IdentityService } from '../identity/index.js';
import { UnauthenticatedError, ForbiddenError } from '../shared/errors.js';

export const SESSION_COOKIE = '__Host-tresor_session';
/** Cookie-authenticated state changes must carry this header; a cross-site form cannot set it. */
export const CSRF_HEADER = 'x-tresor-request';

declare module 'fastify' {
  interface FastifyRequest {
    actor?: Actor;
  }
}

export function sessionTokenOf(request: FastifyRequest): { token: string; via: 'bearer' | 'cookie' } | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return { token: header.slice(7).trim(), via: 'bearer' };
  const cookie = request.cookies[SESSION_COOKIE];
  return cookie ? { token: cookie, via: 'cookie' } : undefined;
}

/** preHandler for every authenticated route: resolves the actor or answers 401. */
export function requireActor(identity: Pick<IdentityService, 'authenticate'>) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const session = sessionTokenOf(request);
    if (!session) throw new UnauthenticatedError();
    if (session.via === 'cookie' && !['GET', 'HEAD'].includes(request.method) && request.headers[CSRF_HEADER] !== '1') {
      throw new ForbiddenError(`state-changing requests with a session cookie need the header ${CSRF_HEADER}: 1`);
    }
    request.actor = await identity.authenticate(session.token);
  };
}

export function actorOf(request: FastifyRequest): Actor {
  if (!request.actor) throw new UnauthenticatedError();
  return request.actor;
}

import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../crypto/random.js';

/**
 * The replay lock of browser sessions (S2.6), which is also their CSRF protection.
 *
 * Every state-changing request of a cookie session must carry the request token handed out with the
 * previous response. Token n of a session is HMAC-SHA-256(session id, "tresor/request-token/v1|n"): the
 * server stores only the counter n next to the session id's hash, so a copy of the database yields no
 * token, and any node of a cluster can compute the current token from the cookie it receives.
 *
 *  - the current token: accepted; the counter moves on and the response carries token n+1;
 *  - the token just before it, within `GRACE_MS` and only once: accepted without moving on — a second
 *    tab or a response lost on the way must not lock anyone out;
 *  - any other token this session used before: a replayed request. The session is locked at once;
 *  - a missing or never-issued token (e.g. a cross-site form post): refused, nothing happens.
 */
export const REQUEST_TOKEN_HEADER = 'x-tresor-request-token';
export const GRACE_MS = 5_000;
/** How far back a presented token is recognised as an earlier one of this session. */
const LOOKBACK = 1_000;

export function requestTokenFor(sessionToken: string, counter: number): string {
  return createHmac('sha256', sessionToken).update(`tresor/request-token/v1|${counter}`).digest('base64url');
}

export type RequestTokenVerdict =
  | { kind: 'current' }
  | { kind: 'previous' }
  | { kind: 'replayed' }
  | { kind: 'invalid' };

/** Classifies a presented token against a session's counter (pure; the caller applies the verdict). */
export function classifyRequestToken(sessionToken: string, counter: number, presented: string | undefined): RequestTokenVerdict {
  if (presented === undefined || !/^[A-Za-z0-9_-]{43}$/.test(presented)) return { kind: 'invalid' };
  if (constantTimeEqual(presented, requestTokenFor(sessionToken, counter))) return { kind: 'current' };
  if (counter > 0 && constantTimeEqual(presented, requestTokenFor(sessionToken, counter - 1))) return { kind: 'previous' };
  for (let n = counter - 2; n >= 0 && n >= counter - LOOKBACK; n--) {
    if (constantTimeEqual(presented, requestTokenFor(sessionToken, n))) return { kind: 'replayed' };
  }
  return { kind: 'invalid' };
}

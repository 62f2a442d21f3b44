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
 *  - any earlier token this session was issued: a replayed request. The session is locked at once;
 *  - a missing or never-issued token (e.g. a cross-site form post): refused, nothing happens.
 *
 * A token names its counter (`<HMAC>.<n in base 36>`), so that any earlier token of the session is
 * recognised with one HMAC, however long ago it was issued, and no forged token costs more than one.
 * Browsers send it in the header `x-tresor-request-token`; a plain HTML form sends it in the hidden field
 * `_requestToken` of an urlencoded body.
 */
export const REQUEST_TOKEN_HEADER = 'x-tresor-request-token';
export const REQUEST_TOKEN_FIELD = '_requestToken';
export const GRACE_MS = 5_000;
const TOKEN = /^([A-Za-z0-9_-]{43})\.([0-9a-z]{1,11})$/;

export function requestTokenFor(sessionToken: string, counter: number): string {
  return `${createHmac('sha256', sessionToken).update(`tresor/request-token/v1|${counter}`).digest('base64url')}.${counter.toString(36)}`;
}

export type RequestTokenVerdict =
  | { kind: 'current' }
  | { kind: 'previous' }
  | { kind: 'replayed' }
  | { kind: 'invalid' };

/** Classifies a presented token against a session's counter (pure; the caller applies the verdict). */
export function classifyRequestToken(sessionToken: string, counter: number, presented: string | undefined): RequestTokenVerdict {
  const match = presented === undefined ? null : TOKEN.exec(presented);
  if (!match) return { kind: 'invalid' };
  const n = parseInt(match[2]!, 36);
  // Only a token the server issued to this session counts; its MAC is checked in constant time.
  if (!Number.isSafeInteger(n) || n > counter || !constantTimeEqual(presented!, requestTokenFor(sessionToken, n))) return { kind: 'invalid' };
  if (n === counter) return { kind: 'current' };
  if (n === counter - 1) return { kind: 'previous' };
  return { kind: 'replayed' };
}

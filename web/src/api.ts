/**
 * The one way the web app talks to Tresor: same-origin JSON over fetch with the session cookie. Every
 * response may carry the request token for the next state-changing request (the replay lock, S2.6);
 * this module keeps it and sends it back. Errors become `ApiError` with the server's code and message.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
    readonly pending?: string[],
    /** VALIDATION of a password: stable codes with parameters, translated by the page (i18n `problem.<code>`). */
    readonly problemCodes?: { code: string; params: Record<string, string | number> }[],
    /** The server's `details` for the client (e.g. `received` of an upload, `state` of a transfer). */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const TOKEN_HEADER = 'x-tresor-request-token';
let requestToken: string | undefined;
const listeners = new Set<(error: ApiError) => void>();

/** Called for errors every page must react to alike (a locked session, a pending action). */
export function onApiError(listener: (error: ApiError) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function setRequestToken(token: string | undefined): void {
  if (token) requestToken = token;
}

export const currentRequestToken = () => requestToken;

export async function api<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && requestToken) headers[TOKEN_HEADER] = requestToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  setRequestToken(response.headers.get(TOKEN_HEADER) ?? undefined);
  const text = await response.text();
  const parsed: unknown = text === '' ? undefined : JSON.parse(text);
  if (!response.ok) {
    const e = (parsed ?? {}) as { code?: string; message?: string; pending?: string[]; problemCodes?: { code: string; params: Record<string, string | number> }[]; details?: Record<string, unknown> };
    const retry = Number(response.headers.get('retry-after') ?? NaN);
    const error = new ApiError(response.status, e.code ?? 'ERROR', e.message ?? response.statusText, Number.isFinite(retry) ? retry : undefined, e.pending, e.problemCodes, e.details);
    for (const listener of listeners) listener(error);
    throw error;
  }
  return parsed as T;
}

export interface Me {
  kind: string;
  accountId?: string;
  tenantId?: string;
  role?: string;
  pending: string[];
}

/** Who is logged in (and a fresh request token), or undefined. */
export async function whoAmI(): Promise<Me | undefined> {
  try {
    return await api<Me>('GET', '/api/v1/auth/me');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return undefined;
    throw error;
  }
}

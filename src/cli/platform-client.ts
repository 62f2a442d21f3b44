import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { AccountRole, Actor } from '../access/index.js';
import type { AccountView, IdentityService, InviteInput } from '../identity/identity.service.js';
import type { PasswordPolicy } from '../identity/password-policy.js';
import type { PlatformService } from '../platform/index.js';
import type { CreatedTenant, DeletionReport, FirstDataUserInput, ResellerView, TenantView } from '../platform/index.js';
import { DomainError, type ErrorCode } from '../shared/errors.js';

/** What the CLI's reseller and tenant commands need: served locally (operator) or over the HTTP API (any tier). */
export interface PlatformClient {
  /** `invitationLink` only in local mode (the platform owner's terminal); remotely it goes only into the mail. */
  createReseller(input: { name: string; adminLogin: string }): Promise<{ reseller: ResellerView; adminLogin: string; invitationExpiresAt: string; invitationLink?: string }>;
  inviteAccount(input: InviteInput): Promise<{ accountId: string; login: string; role: AccountRole; expiresAt: string; link?: string; mail?: string }>;
  listAccounts(scope: { tenantId?: string; resellerId?: string }): Promise<AccountView[]>;
  setAccountStatus(ref: string, status: 'active' | 'disabled'): Promise<{ accountId: string; sessionsEnded: number }>;
  resetSecondFactor(ref: string): Promise<{ accountId: string; sessionsEnded: number }>;
  tenantPolicy(tenantId: string): Promise<PasswordPolicy>;
  setTenantPolicy(tenantId: string, policy: Partial<PasswordPolicy>): Promise<PasswordPolicy>;
  listResellers(): Promise<ResellerView[]>;
  getReseller(id: string): Promise<ResellerView>;
  createTenant(input: { name: string; resellerId?: string | null; licenceEndsAt?: string | null; firstDataUser?: FirstDataUserInput }): Promise<CreatedTenant>;
  listTenants(): Promise<TenantView[]>;
  getTenant(id: string): Promise<TenantView>;
  suspendTenant(id: string): Promise<TenantView>;
  resumeTenant(id: string): Promise<TenantView>;
  setLicence(id: string, licenceEndsAt: string | null): Promise<TenantView>;
  deleteTenant(id: string): Promise<DeletionReport>;
}

/** Local mode: whoever holds the data directory and master key acts as the platform owner. */
export function localPlatformClient(platform: PlatformService, identity: IdentityService): PlatformClient {
  const actor: Actor = { kind: 'system', name: 'cli' };
  return {
    createReseller: (input) => platform.createReseller(actor, input),
    inviteAccount: (input) => identity.invite(actor, input),
    listAccounts: (scope) => identity.listAccounts(actor, scope),
    setAccountStatus: (ref, status) => identity.setAccountStatus(ref, status, actor),
    resetSecondFactor: (ref) => identity.resetSecondFactor(actor, ref),
    tenantPolicy: (tenantId) => identity.tenantPolicy(actor, tenantId),
    setTenantPolicy: (tenantId, policy) => identity.setTenantPolicy(actor, tenantId, policy),
    listResellers: () => platform.listResellers(actor),
    getReseller: (id) => platform.getReseller(actor, id),
    createTenant: (input) => platform.createTenant(actor, input),
    listTenants: () => platform.listTenants(actor),
    getTenant: (id) => platform.getTenant(actor, id),
    suspendTenant: (id) => platform.suspendTenant(actor, id),
    resumeTenant: (id) => platform.resumeTenant(actor, id),
    setLicence: (id, end) => platform.setLicence(actor, id, end),
    deleteTenant: (id) => platform.deleteTenant(actor, id, 'deleted-by-command'),
  };
}

export interface RemoteOptions {
  url: string;
  token?: string | undefined;
  caFile?: string | undefined;
}

/** Calls the HTTP API over TLS; the server's `{ code, message }` errors come back as DomainErrors. */
export async function callApi<T>(opts: RemoteOptions, method: string, path: string, body?: unknown): Promise<T> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const target = new URL(path, opts.url);
  if (target.protocol !== 'https:') throw new DomainError('VALIDATION', `--url must be an https:// URL, not ${target.protocol}`);
  return new Promise<T>((resolve, reject) => {
    const req = request(
      target,
      {
        method,
        ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}),
        headers: {
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const parsed = text === '' ? undefined : (JSON.parse(text) as unknown);
          if ((res.statusCode ?? 500) >= 400) {
            const error = parsed as { code?: string; message?: string } | undefined;
            const code = (error?.code ?? 'INTERNAL') as ErrorCode;
            reject(new DomainError(code, error?.message ?? `server answered ${res.statusCode}`));
          } else {
            resolve(parsed as T);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * Calls an endpoint that answers long work with JSON lines (progress, then the result or `{ "error" }`):
 * each line goes to `onLine` as it arrives; resolves with the last line, rejects on `{ error }`.
 */
export async function callApiLines<T>(opts: RemoteOptions, method: string, path: string, body: unknown, onLine: (line: Record<string, unknown>) => void): Promise<T> {
  const payload = Buffer.from(JSON.stringify(body));
  const target = new URL(path, opts.url);
  if (target.protocol !== 'https:') throw new DomainError('VALIDATION', `--url must be an https:// URL, not ${target.protocol}`);
  return new Promise<T>((resolve, reject) => {
    const req = request(
      target,
      {
        method,
        ...(opts.caFile ? { ca: readFileSync(opts.caFile) } : {}),
        headers: { accept: 'application/x-ndjson', 'content-type': 'application/json', 'content-length': payload.length, ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      },
      (res) => {
        let buffered = '';
        let last: Record<string, unknown> | undefined;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let newline;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const text = buffered.slice(0, newline);
            buffered = buffered.slice(newline + 1);
            if (text.trim() === '') continue;
            last = JSON.parse(text) as Record<string, unknown>;
            if ((res.statusCode ?? 500) < 400 && typeof last.error !== 'string') onLine(last);
          }
        });
        res.on('end', () => {
          if (buffered.trim() !== '') last = JSON.parse(buffered) as Record<string, unknown>;
          if ((res.statusCode ?? 500) >= 400) {
            reject(new DomainError(((last?.code as string | undefined) ?? 'INTERNAL') as ErrorCode, (last?.message as string | undefined) ?? `server answered ${res.statusCode}`));
          } else if (typeof last?.error === 'string') {
            reject(new DomainError('CONFLICT', `${last.error} (the work stopped: continue it with 'tresor tenant handover --tenant <id> --resume' or POST /api/v1/keys/rotate/resume, as a data user holding the new secret)`));
          } else resolve(last as T);
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export function remotePlatformClient(opts: RemoteOptions): PlatformClient {
  const call = <T>(method: string, path: string, body?: unknown) => callApi<T>(opts, method, path, body);
  const tenant = (id: string) => `/api/v1/tenants/${encodeURIComponent(id)}`;
  return {
    createReseller: (input) => call('POST', '/api/v1/resellers', input),
    inviteAccount: (input) => call('POST', '/api/v1/accounts', input),
    listAccounts: (scope) => call('GET', `/api/v1/accounts?${new URLSearchParams(scope as Record<string, string>).toString()}`),
    setAccountStatus: async (ref, status) => {
      const id = /^[0-9a-f-]{36}$/.test(ref) ? ref : (await call<AccountView[]>('GET', '/api/v1/accounts')).find((a) => a.login === ref.trim().toLowerCase())?.id;
      if (!id) throw new DomainError('NOT_FOUND', 'account not found');
      return call('POST', `/api/v1/accounts/${id}/${status === 'disabled' ? 'disable' : 'enable'}`);
    },
    resetSecondFactor: async (ref) => {
      const id = /^[0-9a-f-]{36}$/.test(ref) ? ref : (await call<AccountView[]>('GET', '/api/v1/accounts')).find((a) => a.login === ref.trim().toLowerCase())?.id;
      if (!id) throw new DomainError('NOT_FOUND', 'account not found');
      return call('POST', `/api/v1/accounts/${id}/second-factor/reset`);
    },
    tenantPolicy: (tenantId) => call('GET', `${tenant(tenantId)}/password-policy`),
    setTenantPolicy: (tenantId, policy) => call('PUT', `${tenant(tenantId)}/password-policy`, policy),
    listResellers: () => call('GET', '/api/v1/resellers'),
    getReseller: (id) => call('GET', `/api/v1/resellers/${encodeURIComponent(id)}`),
    createTenant: (input) => call('POST', '/api/v1/tenants', input),
    listTenants: () => call('GET', '/api/v1/tenants'),
    getTenant: (id) => call('GET', tenant(id)),
    suspendTenant: (id) => call('POST', `${tenant(id)}/suspend`),
    resumeTenant: (id) => call('POST', `${tenant(id)}/resume`),
    setLicence: (id, licenceEndsAt) => call('PUT', `${tenant(id)}/licence`, { licenceEndsAt }),
    deleteTenant: (id) => call('DELETE', tenant(id)),
  };
}

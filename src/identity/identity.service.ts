import { authorize, DATA_ROLES, isAllowed, TENANT_ROLES, type AccountRole, type Actor, type ExternalRole, type TenantRole } from '../access/index.js';
import { ledgerActor, type JsonValue, type Ledger, type LedgerEvent } from '../ledger/index.js';
import { newId, randomPassword, randomToken, sha256Hex } from '../crypto/random.js';
import {
  ConflictError,
  DomainError,
  ForbiddenError,
  NotFoundError,
  SessionLockedError,
  UnauthenticatedError,
  ValidationError,
  type PendingAction,
} from '../shared/errors.js';
import { assertAcceptablePassword, parseTenantPolicy, passwordRefusal, passwordExpired, PLATFORM_PASSWORD_POLICY, type PasswordPolicy } from './password-policy.js';
import type { AccountTier, ControlDb } from '../storage/index.js';
import type { PasswordHasher } from './passwords.js';
import type { LoginAttempt, LoginThrottle } from './throttle.js';
import { createOneTimeKeys, OneTimeKeyError } from './one-time-keys.js';
import { createSecondFactors, SecondFactorRequiredError } from './second-factor.js';
import type { CipherService } from '../crypto/cipher-service.js';
import type { Mailer, MailOutcome } from '../mail/mailer.js';
import { renderMail, type MailLanguage, type MailTemplate } from '../mail/templates.js';
import { classifyRequestToken, GRACE_MS, requestTokenFor } from './request-tokens.js';
import { aeadOpen, aeadSeal, generateAccountKeyPair, KeyError, passwordKey, unwrapWithKey, wrapWithKey } from '../crypto/envelope.js';
import { parseRecoveryCode, type TenantKeys } from '../crypto/tenant-keys.js';
import { grantView, type GrantTable, type GrantView } from './grants.js';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { randomBytes, timingSafeEqual } from 'node:crypto';

export interface Clock {
  now(): Date;
}

export type SessionKind = 'cookie' | 'token';

export interface NewSession {
  sessionToken: string;
  expiresAt: string;
  actor: Actor;
  pending: PendingAction[];
  /** Cookie sessions: the token the first state-changing request must carry (replay lock). */
  requestToken?: string;
}

/** A resolved session: who acts, what is pending, and (cookie sessions) the current request token. */
export interface ResolvedSession {
  actor: Actor;
  pending: PendingAction[];
  kind: SessionKind;
  requestToken?: string;
}

export interface AccountView {
  id: string;
  login: string;
  role: AccountRole;
  status: 'active' | 'disabled' | 'invited';
  tenantId: string | null;
  resellerId: string | null;
  secondFactor: boolean;
  createdAt: string;
}

export interface InviteInput {
  email: string;
  role: AccountRole;
  tenantId?: string | null | undefined;
  resellerId?: string | null | undefined;
  language?: MailLanguage | undefined;
}

/** Number of failed logins after which the account owner is told by mail (and again at each multiple). */
export /** An access link for a grantee works for at most a day (and never past its grant). */
const ACCESS_LINK_TTL_MS = 24 * 60 * 60 * 1000;
const FAILED_LOGIN_NOTICE_THRESHOLD = 5;
/** Security notices waiting for the relay; beyond this they are dropped (and logged) instead of piling up. */
const MAX_QUEUED_NOTICES = 1_000;
export const INVITATION_TTL_MS = 7 * 24 * 60 * 60 * 1000;
export const RESET_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * Accounts of every tier with server-side sessions: login with brute-force slowdown and a second
 * factor, invitations by mail, password policies per tenant, forced changes, and the replay lock of
 * browser sessions.
 */
/** A rotation of the tenant secret: `exclude` loses access (dpo only); `only` keeps one account (handover). */
export interface RotationOptions {
  exclude?: string[] | undefined;
  only?: string | undefined;
  reason?: 'handover' | 'rotation';
}

export interface IdentityService {
  /** Creates an account with a one-time password that is returned once and must be changed (the first operator). */
  createAccount(input: { login: string; tier: 'operator' | 'reseller'; resellerId: string | null }): Promise<{ accountId: string; oneTimePassword: string }>;
  hasOperator(): Promise<boolean>;
  /** Invites an account by mail: a one-time link to set its password. `link` is for the local CLI only. */
  invite(by: Actor, input: InviteInput): Promise<{ accountId: string; login: string; role: AccountRole; expiresAt: string; link: string; mail: MailOutcome | 'none' }>;
  /**
   * At tenant creation only (the tenant has neither keys nor accounts yet): invites the tenant's named first
   * data user and mails them, and only them, the activation key that `issueActivationKey` makes bound to
   * their new account. The key and the invitation link are never returned.
   */
  inviteFirstDataUser(
    by: Actor,
    input: { tenantId: string; email: string; role: 'member' | 'dpo'; language?: MailLanguage | undefined },
    issueActivationKey: (accountId: string) => Promise<{ activationKey: string }>,
  ): Promise<{ accountId: string; login: string; role: 'member' | 'dpo'; expiresAt: string }>;
  /** What an invitation key is for, without using it up. */
  peekInvitation(key: string): Promise<{ login: string; organisation: string; role: AccountRole }>;
  acceptInvitation(key: string, newPassword: string): Promise<void>;
  listAccounts(by: Actor, scope: { tenantId?: string | undefined; resellerId?: string | undefined }): Promise<AccountView[]>;
  /** `source` is the client address; attempts are slowed down per account and per source. */
  login(login: string, password: string, source: string, otp?: string, kind?: SessionKind): Promise<NewSession>;
  setupTotp(sessionToken: string): Promise<{ secret: string; uri: string }>;
  /** Activates TOTP; returns ten recovery codes, shown once, and a new session (a privilege change). */
  enableTotp(sessionToken: string, code: string): Promise<{ recoveryCodes: string[]; session: Omit<NewSession, 'actor'> }>;
  authenticate(sessionToken: string): Promise<Actor>;
  /** Resolves a session presented `via` a cookie or a bearer header; a cookie session is never a bearer token. */
  resolveSession(sessionToken: string, via: SessionKind): Promise<ResolvedSession>;
  /** The replay lock: checks the request token of a state-changing request; returns the token for the next one. */
  useRequestToken(sessionToken: string, presented: string | undefined, source: string): Promise<string>;
  logout(sessionToken: string): Promise<void>;
  listSessions(sessionToken: string): Promise<{ ref: string; createdAt: string; lastSeenAt: string; expiresAt: string; current: boolean }[]>;
  endSession(sessionToken: string, ref: string): Promise<void>;
  endAllSessions(sessionToken: string): Promise<number>;
  /** Needs the current password; ends every session and returns a new one (a new id after a privilege change). */
  changePassword(sessionToken: string, currentPassword: string, newPassword: string, source: string): Promise<Omit<NewSession, 'actor'>>;
  /**
   * An administrator of the right tier removes an account's second factor (a lost phone): its sessions end,
   * the owner is told by mail and sets up a new factor at the next login if the policy requires one.
   */
  resetSecondFactor(by: Actor, ref: string): Promise<{ accountId: string; sessionsEnded: number }>;
  /** Ten new recovery codes for the caller, replacing all earlier ones; needs a current code from the app. */
  regenerateRecoveryCodes(sessionToken: string, code: string, source: string): Promise<string[]>;
  /** The password policy that applies to the caller (for forms that explain the rules). */
  policyFor(sessionToken: string): Promise<PasswordPolicy>;
  tenantPolicy(by: Actor, tenantId: string): Promise<PasswordPolicy>;
  setTenantPolicy(by: Actor, tenantId: string, input: Partial<PasswordPolicy>): Promise<PasswordPolicy>;
  /** Deletes an account with its sessions, its copy of the tenant secret and its personal address book. */
  deleteAccount(by: Actor, ref: string): Promise<{ accountId: string; personalRecordsDeleted: number }>;
  /** Disables or re-enables an account; disabling ends all its sessions at once. */
  setAccountStatus(login: string, status: 'active' | 'disabled', by?: Actor): Promise<{ accountId: string; sessionsEnded: number }>;
  /** A one-time password-reset key, valid for `ttlMs`, usable once, mailed to the account; for an account still invited, a new invitation. */
  issuePasswordReset(login: string, ttlMs?: number, by?: Actor): Promise<{ key: string; expiresAt: string; mail: MailOutcome | 'none' }>;
  resetPassword(key: string, newPassword: string): Promise<void>;
  /**
   * The tenant data key K_t while a data user with a copy of the tenant secret acts, or an external account
   * within an active grant (then with the grant's scope); undefined otherwise.
   */
  dataKeyOf(sessionToken: string): Promise<{ tenantId: string; dataKey: Buffer; keyVersion: number; grants?: { id: string; collection: string; recordIds: string[] | null }[]; previous?: { dataKey: Buffer; version: number } } | undefined>;
  /**
   * Replaces the tenant secret (S2.3): records are re-encrypted under the new one, resumably, with progress;
   * the data users and active grants keep access except `exclude`; every other copy of the old secret
   * (in a database copy, in an excluded account, in a session) opens nothing any more.
   */
  rotateTenantSecret(sessionToken: string, opts: RotationOptions, progress: (done: number) => void): Promise<{ version: number; reencrypted: number; keptAccounts: number; excluded: number }>;
  /** Refuses (before any streaming starts) a rotation or handover that `rotateTenantSecret` would refuse. */
  checkRotation(sessionToken: string, opts: RotationOptions): Promise<void>;
  /** Continues an interrupted rotation (any data user holding the new secret). */
  resumeRotation(sessionToken: string, progress: (done: number) => void): Promise<{ reencrypted: number }>;
  /**
   * The tenant's recovery code, once, for the data user who is owed it: after their first activation, a
   * rotation they ran, or as the owner after a handover. Nobody on the administrating side ever gets it.
   */
  takeRecoveryCode(sessionToken: string): Promise<{ recoveryCode: string }>;
  /** A data user grants an external account read access to a collection (or chosen records of it) until `expiresAt`. */
  createGrant(sessionToken: string, input: { granteeId: string; collection?: string | undefined; recordIds?: string[] | undefined; expiresAt: string }): Promise<GrantView>;
  /** Grants of the caller's tenant (data users), or the caller's own (external accounts). */
  listGrants(sessionToken: string): Promise<GrantView[]>;
  revokeGrant(sessionToken: string, grantId: string): Promise<void>;
  /**
   * Mails the grantee a one-time access link to the grant: it opens a session limited to the grant without
   * the grantee's password. It works once, until `expiresAt` (at most 24 hours, never past the grant).
   */
  sendAccessLink(sessionToken: string, grantId: string, ttlMs?: number): Promise<{ expiresAt: string; mail: MailOutcome | 'none' }>;
  /** Redeems an access link: a new session of the grantee holding the grant's copy of the tenant secret. */
  redeemAccessLink(key: string, source: string, kind: SessionKind): Promise<{ sessionToken: string; expiresAt: string; actor: Actor; grant: GrantView; requestToken?: string }>;
  /** Ends expired grants of every tenant: their copies of the tenant secret are destroyed (scheduler). */
  expireGrants(): Promise<number>;
  /** Data access for this session and account from the tenant's one-time activation key or its recovery code. */
  activateDataAccess(sessionToken: string, code: { activationKey?: string | undefined; recoveryCode?: string | undefined }): Promise<void>;
  /** A data user gives a colleague (a data-capable account of the same tenant) a copy of the tenant secret. */
  grantDataAccess(sessionToken: string, accountId: string): Promise<void>;
  /** Whether this session has data access, and which data-capable accounts of the tenant still wait for it. */
  /**
   * Whether this session has data access; for a data user holding the secret also the colleagues still
   * waiting for it, every data user of the tenant (a handover's possible owners) and the external accounts
   * that can be given a grant.
   */
  dataAccessStatus(sessionToken: string): Promise<{ dataAccess: boolean; waiting: AccountBrief[]; colleagues: AccountBrief[]; externals: AccountBrief[]; recoveryCodePending?: boolean; rotationPending?: boolean }>;
  /** Login name, language and tier of an account (for other modules' mails and checks). */
  accountInfo(accountId: string): Promise<{ id: string; login: string; language: 'de' | 'en' | null; tier: string; status: string } | undefined>;
  /** The active account whose login is this e-mail address. */
  accountByLogin(email: string): Promise<{ id: string; login: string; language: 'de' | 'en' | null } | undefined>;
  /**
   * Salt and Argon2id parameters of the account's login hash, so that a browser can show that another
   * secret (the SecuPass key) differs from the password without sending either (docs/transfers.md).
   */
  loginHashParams(accountId: string): Promise<{ salt: string; memoryKib: number; iterations: number; parallelism: number; hashLength: number }>;
  /** Constant-time: is `rawHash` (Argon2id with `loginHashParams`) the account's login hash? */
  matchesLoginHash(accountId: string, rawHash: Uint8Array): Promise<boolean>;
  /**
   * A free guest account for a transfer's recipient (S4.2): invites the address (the invitation is the
   * e-mail verification). An invited guest gets a new invitation; an existing account nothing but a hint.
   */
  registerGuest(email: string, tenantId: string, language: 'de' | 'en' | null): Promise<'invited' | 'exists'>;
  /** Resolves when the security notices so far have been handed to the mail queue (shutdown waits for it). */
  noticesSent(): Promise<void>;
}

/** ASVS 5.0 §7.3: absolute and idle timeouts, enforced on the server. */
export const SESSION_ABSOLUTE_MS = 12 * 60 * 60 * 1000;
export const SESSION_IDLE_MS = 30 * 60 * 1000;
/** last_seen_at is written at most this often, not on every request. */
const TOUCH_EVERY_MS = 60 * 1000;

const tierOf = (role: AccountRole): AccountTier => {
  if (role === 'operator' || role === 'reseller' || role === 'installer' || role === 'guest') return role;
  if (TENANT_ROLES.includes(role as TenantRole)) return 'tenant';
  return 'external';
};

const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/u;
const SYSTEM: LedgerEvent['actor'] = { tier: 'system', role: 'identity', id: 'identity' };

/** What login and every session lookup read of an account (joined with its tenant and reseller). */
/** The parts of an Argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`, unpadded base64). */
function parsePhc(phc: string): { m: number; t: number; p: number; salt: Buffer; hash: Buffer } {
  const match = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(phc);
  if (!match) throw new Error('a stored password hash is not an Argon2id PHC string');
  return { m: Number(match[1]), t: Number(match[2]), p: Number(match[3]), salt: Buffer.from(match[4]!, 'base64'), hash: Buffer.from(match[5]!, 'base64') };
}

export interface AccountBrief {
  id: string;
  login: string;
  role: string;
}

const ACCOUNT_COLUMNS = [
  'a.id',
  'a.login',
  'a.tier',
  'a.role',
  'a.reseller_id',
  'a.tenant_id',
  'a.language',
  'a.status',
  'a.password_hash',
  'a.must_change_password',
  'a.password_changed_at',
  'a.public_key',
  'a.sealed_private_key',
  'a.key_salt',
  't.status as tenant_status',
  'r.status as reseller_status',
] as const;

interface AccountRow {
  id: string;
  login: string;
  tier: AccountTier;
  role: string;
  reseller_id: string | null;
  tenant_id: string | null;
  language: 'de' | 'en' | null;
}

export function createIdentityService(deps: {
  control: ControlDb;
  hasher: PasswordHasher;
  clock: Clock;
  ledger: Pick<Ledger, 'append'>;
  /** Events of tenant accounts go into that tenant's ledger. */
  tenantLedger: (tenantId: string) => Promise<Pick<Ledger, 'append'>>;
  throttle: LoginThrottle;
  masterKey: CipherService;
  issuer: string;
  mailer: Mailer;
  publicUrl: string;
  defaultLanguage: MailLanguage;
  tenantKeys: TenantKeys;
  /** The tenant databases (grants live beside the tenant's data). */
  tenantDb: (tenantId: string) => Promise<Kysely<{ grants: GrantTable }>>;
  /** Re-encrypts every record of a tenant from one data key to the next (the records module). */
  reencryptRecords?: (tenantId: string, from: { dataKey: Buffer; version: number }, to: { dataKey: Buffer; version: number }, progress: (done: number) => void) => Promise<number>;
  /** Called when an account is deleted, so that the records module removes its personal book. */
  onAccountDeleted?: (tenantId: string, accountId: string) => Promise<number>;
  /** Argon2id cost of the password-derived key that seals a data user's private key. */
  keyDerivation: { memoryKib: number; iterations: number; parallelism: number };
  /** Where failed background mails are reported (never with an address: that is personal data). */
  log?: Pick<Logger, 'warn'>;
}): IdentityService {
  const { control, hasher, clock, throttle } = deps;
  const oneTimeKeys = createOneTimeKeys({ db: control, ledger: deps.ledger, clock });
  const secondFactors = createSecondFactors({ db: control, masterKey: deps.masterKey, clock, issuer: deps.issuer });
  const normaliseLogin = (login: string) => login.normalize('NFC').trim().toLowerCase();
  const nowIso = () => clock.now().toISOString();

  const ledgerOf = async (tenantId: string | null) => (tenantId ? deps.tenantLedger(tenantId) : deps.ledger);
  const record = async (tenantId: string | null, event: LedgerEvent) => (await ledgerOf(tenantId)).append(event);

  /**
   * Mail to an account: 'sent', or 'queued' when the relay did not take it at once (the mail module keeps
   * it sealed and retries); a relay failure never undoes the action. 'none': the account has no address.
   */
  const mailTo = async (account: Pick<AccountRow, 'login' | 'language'>, template: MailTemplate): Promise<MailOutcome | 'none'> => {
    if (!account.login.includes('@')) return 'none'; // the first operator has no address
    const { subject, text } = renderMail(template, account.language ?? deps.defaultLanguage);
    return deps.mailer.send({ to: account.login, subject, text, kind: template.kind });
  };

  /**
   * Security notices (failed logins, a locked session) are handed to the mail queue one after another in
   * the background: neither storing them nor a slow or failing relay changes the answer or its timing,
   * which would otherwise tell an attacker that a login exists. What the relay does not take stays in the
   * durable queue; a failure is logged by template and error code only.
   */
  let noticeQueue: Promise<void> = Promise.resolve();
  let queuedNotices = 0;
  const notify = (account: Pick<AccountRow, 'login' | 'language'>, template: MailTemplate): void => {
    if (queuedNotices >= MAX_QUEUED_NOTICES) {
      deps.log?.warn({ mail: template.kind }, 'security notice dropped: the mail queue is full (is the relay down?)');
      return;
    }
    queuedNotices++;
    noticeQueue = noticeQueue
      .then(async () => {
        if ((await mailTo(account, template)) === 'queued') deps.log?.warn({ mail: template.kind }, 'a security notice was not taken by the relay at once; it waits in the mail queue');
      })
      .catch((error: unknown) => {
        const code = typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : 'unknown';
        deps.log?.warn({ mail: template.kind, code }, 'a security notice could not be sent');
      })
      .finally(() => {
        queuedNotices--;
      });
  };

  const actorOf = (a: AccountRow): Actor => {
    switch (a.tier) {
      case 'operator':
        return { kind: 'operator', accountId: a.id };
      case 'reseller':
        return { kind: 'reseller', accountId: a.id, resellerId: a.reseller_id ?? '' };
      case 'installer':
        return { kind: 'installer', accountId: a.id, resellerId: a.reseller_id ?? '' };
      case 'tenant':
        return { kind: 'tenant', accountId: a.id, tenantId: a.tenant_id ?? '', role: a.role as TenantRole };
      case 'external':
        return { kind: 'external', accountId: a.id, tenantId: a.tenant_id ?? '', role: a.role as ExternalRole };
      case 'guest':
        return { kind: 'guest', accountId: a.id, tenantId: a.tenant_id ?? '' };
    }
  };

  const policyOfTenant = async (tenantId: string | null): Promise<PasswordPolicy> => {
    if (!tenantId) return { ...PLATFORM_PASSWORD_POLICY };
    const row = await control.selectFrom('tenant_policies').select('policy').where('tenant_id', '=', tenantId).executeTakeFirst();
    return row ? (JSON.parse(row.policy) as PasswordPolicy) : { ...PLATFORM_PASSWORD_POLICY };
  };

  /** Policy checks plus the history rule (earlier hashes are verified one by one: bounded by historyCount ≤ 24). */
  const assertNewPassword = async (account: { id: string; login: string; tenant_id: string | null; reseller_id: string | null }, password: string, policy: PasswordPolicy) => {
    // The organisation's name is a context word the password must not contain.
    const organisation = account.tenant_id
      ? (await control.selectFrom('tenants').select('name').where('id', '=', account.tenant_id).executeTakeFirst())?.name
      : account.reseller_id
        ? (await control.selectFrom('resellers').select('name').where('id', '=', account.reseller_id).executeTakeFirst())?.name
        : undefined;
    assertAcceptablePassword(password, { login: account.login, organisation }, policy);
    if (policy.historyCount === 0) return;
    const earlier = await control
      .selectFrom('password_history')
      .select('password_hash')
      .where('account_id', '=', account.id)
      .orderBy('created_at', 'desc')
      .limit(policy.historyCount)
      .execute();
    for (const row of earlier) {
      if (await hasher.verify(row.password_hash, password)) {
        throw passwordRefusal([{ code: 'in-history', params: { count: policy.historyCount }, message: `password must differ from your last ${policy.historyCount} passwords (your organisation's rule)` }]);
      }
    }
  };

  const storePassword = async (accountId: string, password: string) => {
    const hash = await hasher.hash(password);
    const now = nowIso();
    await control.transaction().execute(async (trx) => {
      await trx.updateTable('accounts').set({ password_hash: hash, must_change_password: 0, password_changed_at: now }).where('id', '=', accountId).execute();
      await trx.insertInto('password_history').values({ account_id: accountId, password_hash: hash, created_at: now }).execute();
      // Keep at most the longest history a policy can ask for.
      const keep = await trx.selectFrom('password_history').select('created_at').where('account_id', '=', accountId).orderBy('created_at', 'desc').limit(1).offset(23).executeTakeFirst();
      if (keep) await trx.deleteFrom('password_history').where('account_id', '=', accountId).where('created_at', '<', keep.created_at).execute();
    });
  };

  /** Resolves a session token, enforcing the idle and absolute timeouts; only the token's hash is stored. */
  const sessionOf = async (sessionToken: string) => {
    const idHash = sha256Hex(sessionToken);
    const row = await control
      .selectFrom('sessions as s')
      .innerJoin('accounts as a', 'a.id', 's.account_id')
      .leftJoin('tenants as t', 't.id', 'a.tenant_id')
      .leftJoin('resellers as r', 'r.id', 'a.reseller_id')
      .select([
        ...ACCOUNT_COLUMNS,
        's.expires_at',
        's.last_seen_at',
        's.kind',
        's.request_counter',
        's.grace_until',
        's.grace_used',
        's.locked_at',
        's.pending',
        's.sealed_tenant_secret',
      ])
      .where('s.id_hash', '=', idHash)
      .executeTakeFirst();
    const now = clock.now();
    const idleSince = row ? now.getTime() - new Date(row.last_seen_at).getTime() : 0;
    if (row?.locked_at) throw new SessionLockedError();
    const usable = row && row.status === 'active' && row.tenant_status !== 'suspended' && row.reseller_status !== 'suspended';
    if (!row || !usable || row.expires_at <= now.toISOString() || idleSince > SESSION_IDLE_MS) {
      if (row) await control.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
      throw new UnauthenticatedError('your session has ended or is not valid; log in again');
    }
    if (idleSince > TOUCH_EVERY_MS) {
      await control.updateTable('sessions').set({ last_seen_at: now.toISOString() }).where('id_hash', '=', idHash).execute();
    }
    return { ...row, idHash, pendingList: (row.pending === '' ? [] : row.pending.split(',')) as PendingAction[] };
  };

  /** An account that exists but cannot log in until its invitation is accepted (no usable password). */
  const insertInvitedAccount = async (a: { login: string; tier: AccountTier; role: AccountRole; resellerId: string | null; tenantId: string | null; language: 'de' | 'en' | null }) => {
    const id = newId();
    await control
      .insertInto('accounts')
      .values({
        id,
        login: a.login,
        tier: a.tier,
        role: a.role,
        reseller_id: a.resellerId,
        tenant_id: a.tenantId,
        password_hash: await hasher.hash(randomToken(32)),
        must_change_password: 0,
        password_changed_at: null,
        status: 'invited',
        language: a.language,
        created_at: nowIso(),
      })
      .execute();
    return id;
  };
  /** Mails a one-time invitation link (7 days); accepting it sets the password and activates the account. */
  const sendInvitation = async (account: { id: string; login: string; language: 'de' | 'en' | null }, organisation: string, role: string) => {
    const { key, expiresAt } = await oneTimeKeys.issue('invite', account.id, INVITATION_TTL_MS);
    const link = `${deps.publicUrl}/app/invite#key=${key}`;
    const mail = await mailTo({ login: account.login, language: account.language }, { kind: 'invitation', link, expiresAt, organisation, role });
    return { link, expiresAt, mail };
  };

  const pendingFor = async (account: { id: string; role: string; tenant_id: string | null; must_change_password: number; password_changed_at: string | null }) => {
    const policy = await policyOfTenant(account.tenant_id);
    const pending: PendingAction[] = [];
    if (account.must_change_password === 1 || passwordExpired(policy, account.password_changed_at, clock.now())) pending.push('password_change');
    if (policy.secondFactorRoles.includes(account.role as AccountRole) && !(await secondFactors.isEnabled(account.id))) pending.push('second_factor_setup');
    return pending;
  };

  /** An external account's grants that have neither ended nor expired, the longest-running first. */
  const activeGrantsOf = async (tenantId: string, accountId: string) => {
    const db = await deps.tenantDb(tenantId);
    return db
      .selectFrom('grants')
      .selectAll()
      .where('grantee_id', '=', accountId)
      .where('ended_at', 'is', null)
      .where('expires_at', '>', nowIso())
      .orderBy('expires_at', 'desc')
      .execute();
  };

  /** Seals a new key pair for a data-capable account under a key derived from its password. */
  const sealKeyPair = async (accountId: string, password: string, privateKey?: Buffer) => {
    const pair = privateKey ? undefined : generateAccountKeyPair();
    const salt = randomBytes(16);
    const kek = await hasher.run(() => passwordKey(password, salt, deps.keyDerivation)); // under the same limit as every hash
    const sealed = aeadSeal(kek, privateKey ?? pair!.privateKey, `account-key|${accountId}`).toString('base64url');
    await control
      .updateTable('accounts')
      .set({ sealed_private_key: sealed, key_salt: salt.toString('hex'), ...(pair ? { public_key: pair.publicKey } : {}) })
      .where('id', '=', accountId)
      .execute();
  };
  const openPrivateKey = async (account: { id: string; sealed_private_key: string | null; key_salt: string | null }, password: string) => {
    if (!account.sealed_private_key || !account.key_salt) return undefined;
    const kek = await hasher.run(() => passwordKey(password, Buffer.from(account.key_salt!, 'hex'), deps.keyDerivation));
    return aeadOpen(kek, Buffer.from(account.sealed_private_key, 'base64url'), `account-key|${account.id}`);
  };
  const sessionContext = (idHash: string) => `session-secret|${idHash}`;
  /** T_t for the session, sealed under a key derived from the session id, which only the client holds. */
  const sealForSession = (sessionToken: string, secret: Uint8Array) => wrapWithKey(secret, Buffer.from(sessionToken, 'utf8'), sessionContext(sha256Hex(sessionToken)));
  const secretOfSession = (sessionToken: string, s: { sealed_tenant_secret: string | null }) =>
    s.sealed_tenant_secret ? unwrapWithKey(s.sealed_tenant_secret, Buffer.from(sessionToken, 'utf8'), sessionContext(sha256Hex(sessionToken))) : undefined;

  const startSession = async (accountId: string, kind: SessionKind, pending: PendingAction[], tenantSecret?: Uint8Array) => {
    const sessionToken = randomToken(32);
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + SESSION_ABSOLUTE_MS).toISOString();
    await control
      .insertInto('sessions')
      .values({
        id_hash: sha256Hex(sessionToken),
        account_id: accountId,
        created_at: now.toISOString(),
        expires_at: expiresAt,
        last_seen_at: now.toISOString(),
        kind,
        request_counter: 0,
        grace_until: null,
        grace_used: 0,
        locked_at: null,
        pending: pending.join(','),
        sealed_tenant_secret: tenantSecret ? sealForSession(sessionToken, tenantSecret) : null,
      })
      .execute();
    return { sessionToken, expiresAt, pending, ...(kind === 'cookie' ? { requestToken: requestTokenFor(sessionToken, 0) } : {}) };
  };

  /** Looks up the tenant or reseller an invitation or policy is about, for the policy decision. */
  const tenantScope = async (tenantId: string) => {
    const tenant = await control.selectFrom('tenants').select(['id', 'name', 'reseller_id', 'status', 'handed_over_at']).where('id', '=', tenantId).executeTakeFirst();
    if (!tenant) throw new NotFoundError('tenant', { id: tenantId });
    return { ...tenant, handedOver: (tenant.handed_over_at ?? null) !== null };
  };

  /** By id (a UUID) or by login. */
  const accountByLogin = async (ref: string) => {
    const isId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(ref);
    const account = await control.selectFrom('accounts').selectAll().where(isId ? 'id' : 'login', '=', isId ? ref : normaliseLogin(ref)).executeTakeFirst();
    if (!account) throw new NotFoundError('account');
    return account;
  };

  /** Tenants whose secret this process is replacing right now: a second rotation waits for the first. */
  const rotating = new Set<string>();
  /**
   * Whether `me` may start this rotation now. A rotation only re-encrypts the records under the newest
   * version and then deletes the older copy, so one started while another is unfinished would leave the
   * records still under the oldest version unreadable for good.
   */
  const assertRotationAllowed = async (me: AccountRow, opts: RotationOptions) => {
    if (!me.tenant_id || !isAllowed(actorOf(me), 'key.rotate', { type: 'data', tenantId: me.tenant_id })) throw new ForbiddenError('only a data user with data access can rotate the tenant secret');
    const tenantId = me.tenant_id;
    if ((opts.exclude?.length ?? 0) > 0 && !isAllowed(actorOf(me), 'key.exclude', { type: 'data', tenantId })) {
      throw new ForbiddenError("only the privacy officer (dpo) can take colleagues' data access away in a rotation: ask them, or rotate without excludeAccountIds");
    }
    if (rotating.has(tenantId) || (await deps.tenantKeys.rotationPending(tenantId))) {
      throw new ConflictError('a rotation is still in progress: resume it first (POST /api/v1/keys/rotate/resume or tresor tenant handover --resume)');
    }
    if (opts.reason === 'handover') {
      const tenant = await control.selectFrom('tenants').select('handed_over_at').where('id', '=', tenantId).executeTakeFirst();
      if ((tenant?.handed_over_at ?? null) !== null) throw new ConflictError('this tenant was handed over already, and a handover happens once: to take access away from someone, the privacy officer rotates the tenant secret (POST /api/v1/keys/rotate)');
    }
  };
  /** An account the actor may manage; any other (or a missing one) is "not found", so nothing is revealed. */
  const manageable = async (by: Actor, ref: string, action: 'account.manage' | 'account.reset-second-factor' = 'account.manage') => {
    const account = await accountByLogin(ref);
    const tenant = account.tenant_id ? await tenantScope(account.tenant_id) : undefined;
    const resource = { type: 'accounts' as const, role: account.role as AccountRole, tenantId: account.tenant_id, resellerId: tenant ? tenant.reseller_id : account.reseller_id, handedOver: tenant?.handedOver ?? false };
    if (!isAllowed(by, action, resource)) throw new NotFoundError('account');
    return account;
  };

  return {
    async createAccount(input) {
      const login = normaliseLogin(input.login);
      const existing = await control.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirst();
      if (existing) throw new ConflictError(`an account with the login '${login}' exists already; choose another login`);
      const oneTimePassword = randomPassword(24);
      const accountId = newId();
      await control
        .insertInto('accounts')
        .values({
          id: accountId,
          login,
          tier: input.tier,
          role: input.tier,
          reseller_id: input.resellerId,
          tenant_id: null,
          password_hash: await hasher.hash(oneTimePassword),
          must_change_password: 1,
          password_changed_at: nowIso(),
          status: 'active',
          language: null,
          created_at: nowIso(),
        })
        .execute();
      await deps.ledger.append({ actor: SYSTEM, action: 'account.create', resource: { type: 'account', id: accountId }, outcome: 'success', details: { tier: input.tier } });
      return { accountId, oneTimePassword };
    },

    async hasOperator() {
      const row = await control.selectFrom('accounts').select('id').where('tier', '=', 'operator').executeTakeFirst();
      return row !== undefined;
    },

    async invite(by, input) {
      const role = input.role;
      const tier = tierOf(role);
      const email = normaliseLogin(input.email);
      if (email.length > 254 || !EMAIL.test(email)) throw new ValidationError('email must be an e-mail address such as name@example.org');
      let tenantId: string | null = null;
      let resellerId: string | null = null;
      let organisation = 'Tresor';
      if (tier === 'tenant' || tier === 'external' || tier === 'guest') {
        tenantId = input.tenantId ?? ('tenantId' in by ? by.tenantId : null);
        if (!tenantId) throw new ValidationError(`an account with the role '${role}' belongs to a tenant: name it (tenantId / --tenant)`);
        const tenant = await tenantScope(tenantId);
        authorize(by, 'account.invite', { type: 'accounts', role, tenantId, resellerId: tenant.reseller_id, handedOver: tenant.handedOver });
        organisation = tenant.name;
      } else if (tier === 'reseller' || tier === 'installer') {
        resellerId = input.resellerId ?? ('resellerId' in by ? by.resellerId : null);
        authorize(by, 'account.invite', { type: 'accounts', role, tenantId: null, resellerId });
        if (!resellerId) throw new ValidationError(`an account with the role '${role}' belongs to a reseller: name it (resellerId / --reseller)`);
        const reseller = await control.selectFrom('resellers').select('name').where('id', '=', resellerId).executeTakeFirst();
        if (!reseller) throw new NotFoundError('reseller', { id: resellerId });
        organisation = reseller.name;
      } else {
        authorize(by, 'account.invite', { type: 'accounts', role, tenantId: null, resellerId: null });
      }
      const existing = await control.selectFrom('accounts').select('id').where('login', '=', email).executeTakeFirst();
      if (existing) throw new ConflictError('an account with this e-mail address exists already');
      const language = input.language ?? null;
      const accountId = await insertInvitedAccount({ login: email, tier, role, resellerId, tenantId, language });
      const { link, expiresAt, mail } = await sendInvitation({ id: accountId, login: email, language }, organisation, role);
      await record(tenantId, { actor: ledgerActor(by), action: 'account.invite', resource: { type: 'account', id: accountId }, outcome: 'success', details: { role } });
      return { accountId, login: email, role, expiresAt, link, mail };
    },

    async inviteFirstDataUser(by, input, issueActivationKey) {
      // The creator of the tenant, and only while the tenant is being created: no keys and no accounts yet.
      authorize(by, 'tenant.create', { type: 'platform' });
      const tenant = await tenantScope(input.tenantId);
      authorize(by, 'tenant.read', { type: 'tenant', tenantId: tenant.id, resellerId: tenant.reseller_id, handedOver: tenant.handedOver });
      const hasKeys = await control.selectFrom('tenant_keys').select('tenant_id').where('tenant_id', '=', tenant.id).executeTakeFirst();
      const hasAccounts = await control.selectFrom('accounts').select('id').where('tenant_id', '=', tenant.id).executeTakeFirst();
      if (hasKeys || hasAccounts) throw new ConflictError('a first data user can only be named when the tenant is created');
      if (input.role !== 'member' && input.role !== 'dpo') throw new ValidationError("the first data user's role must be 'dpo' or 'member'");
      const email = normaliseLogin(input.email);
      if (email.length > 254 || !EMAIL.test(email)) throw new ValidationError('the first data user must be an e-mail address such as name@example.org');
      if (await control.selectFrom('accounts').select('id').where('login', '=', email).executeTakeFirst()) {
        throw new ConflictError('an account with the first data user\'s e-mail address exists already; name another address');
      }
      const language = input.language ?? null;
      const accountId = await insertInvitedAccount({ login: email, tier: 'tenant', role: input.role, resellerId: null, tenantId: tenant.id, language });
      const { activationKey } = await issueActivationKey(accountId);
      const { expiresAt } = await sendInvitation({ id: accountId, login: email, language }, tenant.name, input.role);
      // The key goes nowhere else: not into the answer, a log or the ledger.
      await mailTo({ login: email, language }, { kind: 'activation-key', activationKey, organisation: tenant.name, appUrl: `${deps.publicUrl}/app/contacts` });
      await record(tenant.id, {
        actor: ledgerActor(by),
        action: 'account.invite',
        resource: { type: 'account', id: accountId },
        outcome: 'success',
        details: { role: input.role, firstDataUser: true },
      });
      return { accountId, login: email, role: input.role, expiresAt };
    },

    async peekInvitation(key) {
      const subject = await oneTimeKeys.peek(key, 'invite');
      const account = subject
        ? await control
            .selectFrom('accounts as a')
            .leftJoin('tenants as t', 't.id', 'a.tenant_id')
            .leftJoin('resellers as r', 'r.id', 'a.reseller_id')
            .select(['a.login', 'a.role', 'a.status', 't.name as tenant_name', 'r.name as reseller_name'])
            .where('a.id', '=', subject)
            .executeTakeFirst()
        : undefined;
      if (!account || account.status !== 'invited') throw new OneTimeKeyError();
      return { login: account.login, role: account.role as AccountRole, organisation: account.tenant_name ?? account.reseller_name ?? 'Tresor' };
    },

    async acceptInvitation(key, newPassword) {
      const subject = await oneTimeKeys.peek(key, 'invite');
      const account = subject ? await control.selectFrom('accounts').selectAll().where('id', '=', subject).executeTakeFirst() : undefined;
      if (!account || account.status !== 'invited') {
        await oneTimeKeys.consume(key, 'invite'); // records the refused use, then throws
        throw new OneTimeKeyError();
      }
      // Check first, so that a refused password does not use the key up.
      await assertNewPassword(account, newPassword, await policyOfTenant(account.tenant_id));
      await oneTimeKeys.consume(key, 'invite');
      await storePassword(account.id, newPassword);
      // Data users get a key pair; a colleague with data access (or the activation key) gives them the tenant secret.
      if (DATA_ROLES.includes(account.role as AccountRole)) await sealKeyPair(account.id, newPassword);
      await control.updateTable('accounts').set({ status: 'active' }).where('id', '=', account.id).execute();
      await record(account.tenant_id, {
        actor: { tier: 'anonymous', role: 'key-holder', id: account.id },
        action: 'account.activate',
        resource: { type: 'account', id: account.id },
        outcome: 'success',
      });
    },

    async listAccounts(by, scope) {
      let query = control.selectFrom('accounts as a').leftJoin('second_factors as f', 'f.account_id', 'a.id').select(['a.id', 'a.login', 'a.role', 'a.status', 'a.tenant_id', 'a.reseller_id', 'a.created_at', 'f.enabled_at']);
      let tenantReseller: string | null = null;
      let handedOver = false;
      if (scope.tenantId !== undefined) {
        const tenant = await tenantScope(scope.tenantId);
        tenantReseller = tenant.reseller_id;
        handedOver = tenant.handedOver;
        query = query.where('a.tenant_id', '=', scope.tenantId);
      } else if (scope.resellerId !== undefined) {
        query = query.where('a.reseller_id', '=', scope.resellerId);
      } else if ('tenantId' in by) {
        return this.listAccounts(by, { tenantId: by.tenantId });
      } else if (by.kind === 'reseller' || by.kind === 'installer') {
        return this.listAccounts(by, { resellerId: by.resellerId });
      } else {
        query = query.where('a.tenant_id', 'is', null).where('a.reseller_id', 'is', null);
      }
      const rows = await query.orderBy('a.created_at').execute();
      const visible = rows.filter((r) => {
        const resource = { type: 'accounts' as const, role: r.role as AccountRole, tenantId: r.tenant_id, resellerId: r.tenant_id ? tenantReseller : r.reseller_id, handedOver };
        try {
          authorize(by, 'account.list', resource);
          return true;
        } catch {
          return false;
        }
      });
      if (scope.tenantId !== undefined && visible.length === 0) {
        // Say "not found" for a foreign tenant, an empty list for one's own.
        authorize(by, 'tenant.read', { type: 'tenant', tenantId: scope.tenantId, resellerId: tenantReseller, handedOver });
      }
      return visible.map((r) => ({
        id: r.id,
        login: r.login,
        role: r.role as AccountRole,
        status: r.status,
        tenantId: r.tenant_id,
        resellerId: r.reseller_id,
        secondFactor: Boolean(r.enabled_at),
        createdAt: r.created_at,
      }));
    },

    async login(loginInput, password, source, otp, kind = 'token') {
      let attempt: LoginAttempt;
      try {
        // Check and reserve in one step: parallel guesses for one account cannot all reach the hasher.
        attempt = await throttle.reserve(loginInput, source);
      } catch (error) {
        await deps.ledger.append({ actor: { tier: 'anonymous', role: 'anonymous', id: 'unknown' }, action: 'auth.login', resource: { type: 'account' }, outcome: 'denied', source, details: { reason: 'throttled' } });
        throw error;
      }
      let account;
      try {
        account = await control
          .selectFrom('accounts as a')
          .leftJoin('resellers as r', 'r.id', 'a.reseller_id')
          .leftJoin('tenants as t', 't.id', 'a.tenant_id')
          .select(ACCOUNT_COLUMNS)
          .where('a.login', '=', normaliseLogin(loginInput))
          .executeTakeFirst();
        // Unknown accounts cost the same work and get the same answer as a wrong password.
        const ok = account ? await hasher.verify(account.password_hash, password) : await hasher.verifyDummy(password);
        const usable = account && account.status === 'active' && account.reseller_status !== 'suspended' && account.tenant_status !== 'suspended';
        if (!account || !ok || !usable) {
          const { accountFailures } = await attempt.failed();
          // The login name may be an e-mail address: only a known account's id is recorded.
          await record(account?.tenant_id ?? null, {
            actor: { tier: 'anonymous', role: 'anonymous', id: account?.id ?? 'unknown' },
            action: 'auth.login',
            resource: { type: 'account', id: account?.id },
            outcome: 'failure',
            source,
            details: { accountFailures },
          });
          if (account && accountFailures > 0 && accountFailures % FAILED_LOGIN_NOTICE_THRESHOLD === 0) {
            // Tell the owner (not the attacker): the account stays usable for them after the delay.
            notify(account, { kind: 'failed-logins', failures: accountFailures, time: nowIso() });
          }
          throw new UnauthenticatedError('login failed: wrong login or password');
        }
        if (await secondFactors.isEnabled(account.id)) {
          if (otp === undefined || otp === '') throw new SecondFactorRequiredError();
          if (!(await secondFactors.verify(account.id, otp))) {
            await attempt.failed();
            await record(account.tenant_id, { actor: { tier: 'anonymous', role: 'anonymous', id: account.id }, action: 'auth.second-factor', resource: { type: 'account', id: account.id }, outcome: 'failure', source });
            throw new UnauthenticatedError('login failed: the code is not valid (each code works once)');
          }
        }
        await attempt.succeeded();
      } finally {
        await attempt.release();
      }
      if (hasher.needsRehash(account.password_hash)) {
        // Parameters were raised since this hash was made: upgrade it now that the password is at hand.
        await control.updateTable('accounts').set({ password_hash: await hasher.hash(password) }).where('id', '=', account.id).execute();
      }
      // A data user's private key opens its copy of the tenant secret, held (sealed) for this session only.
      let tenantSecret: Buffer | undefined;
      if (account.tenant_id && DATA_ROLES.includes(account.role as AccountRole)) {
        const privateKey = await openPrivateKey(account, password);
        if (privateKey && account.tier === 'external') {
          // An external account reaches data only through an active grant.
          for (const grant of await activeGrantsOf(account.tenant_id, account.id)) {
            tenantSecret = await deps.tenantKeys.unwrapForGrant(account.tenant_id, grant.id, privateKey).catch(() => undefined);
            if (tenantSecret) break;
          }
        } else if (privateKey) {
          tenantSecret = await deps.tenantKeys.unwrapForAccount(account.tenant_id, account.id, privateKey).catch(() => undefined);
        }
      }
      // Always a fresh random session id at login: a planted id (session fixation) is never reused.
      const session = await startSession(account.id, kind, await pendingFor(account), tenantSecret);
      const actor = actorOf(account);
      await record(account.tenant_id, { actor: ledgerActor(actor), action: 'auth.login', resource: { type: 'account', id: account.id }, outcome: 'success', source, details: { kind } });
      return { ...session, actor };
    },

    async authenticate(sessionToken) {
      return actorOf(await sessionOf(sessionToken));
    },

    async resolveSession(sessionToken, via) {
      const s = await sessionOf(sessionToken);
      // A cookie session used as a bearer token would skip the replay lock: refused like an unknown one.
      if (s.kind !== via) throw new UnauthenticatedError('your session has ended or is not valid; log in again');
      return {
        actor: actorOf(s),
        pending: s.pendingList,
        kind: s.kind,
        ...(s.kind === 'cookie' ? { requestToken: requestTokenFor(sessionToken, s.request_counter) } : {}),
      };
    },

    async useRequestToken(sessionToken, presented, source) {
      const s = await sessionOf(sessionToken);
      const verdict = classifyRequestToken(sessionToken, s.request_counter, presented);
      const now = clock.now();
      if (verdict.kind === 'current') {
        const advanced = await control
          .updateTable('sessions')
          .set({ request_counter: s.request_counter + 1, grace_until: new Date(now.getTime() + GRACE_MS).toISOString(), grace_used: 0 })
          .where('id_hash', '=', s.idHash)
          .where('request_counter', '=', s.request_counter)
          .executeTakeFirst();
        if (Number(advanced.numUpdatedRows) === 1) return requestTokenFor(sessionToken, s.request_counter + 1);
        // A parallel request with the same token moved the counter first: this one is now "previous".
        return this.useRequestToken(sessionToken, presented, source);
      }
      if (verdict.kind === 'previous' && s.grace_used === 0 && s.grace_until !== null && s.grace_until >= now.toISOString()) {
        const graced = await control
          .updateTable('sessions')
          .set({ grace_used: 1 })
          .where('id_hash', '=', s.idHash)
          .where('request_counter', '=', s.request_counter)
          .where('grace_used', '=', 0)
          .executeTakeFirst();
        if (Number(graced.numUpdatedRows) === 1) return requestTokenFor(sessionToken, s.request_counter);
      }
      if (verdict.kind === 'invalid') {
        throw new ForbiddenError('this request needs the request token of the previous response (header x-tresor-request-token, or the form field _requestToken); reload the page');
      }
      // A token this session used before: somebody sends a copy of an earlier request. Lock at once.
      await control.updateTable('sessions').set({ locked_at: now.toISOString() }).where('id_hash', '=', s.idHash).execute();
      await record(s.tenant_id, { actor: ledgerActor(actorOf(s)), action: 'auth.session.replay', resource: { type: 'session', id: s.idHash.slice(0, 16) }, outcome: 'denied', source });
      notify(s, { kind: 'session-locked', time: now.toISOString() });
      throw new SessionLockedError();
    },

    async logout(sessionToken) {
      await control.deleteFrom('sessions').where('id_hash', '=', sha256Hex(sessionToken)).execute();
    },

    async listSessions(sessionToken) {
      const me = await sessionOf(sessionToken);
      const rows = await control.selectFrom('sessions').selectAll().where('account_id', '=', me.id).orderBy('created_at').execute();
      const now = nowIso();
      return rows
        .filter((r) => r.expires_at > now && r.locked_at === null)
        .map((r) => ({ ref: r.id_hash.slice(0, 16), createdAt: r.created_at, lastSeenAt: r.last_seen_at, expiresAt: r.expires_at, current: r.id_hash === me.idHash }));
    },

    async endSession(sessionToken, ref) {
      const me = await sessionOf(sessionToken);
      if (!/^[0-9a-f]{16}$/.test(ref)) throw new NotFoundError('session');
      const rows = await control.selectFrom('sessions').select('id_hash').where('account_id', '=', me.id).execute();
      const target = rows.find((r) => r.id_hash.startsWith(ref));
      if (!target) throw new NotFoundError('session');
      await control.deleteFrom('sessions').where('id_hash', '=', target.id_hash).where('account_id', '=', me.id).execute();
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.session.end', resource: { type: 'session', id: ref }, outcome: 'success' });
    },

    async endAllSessions(sessionToken) {
      const me = await sessionOf(sessionToken);
      const result = await control.deleteFrom('sessions').where('account_id', '=', me.id).executeTakeFirst();
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.session.end-all', resource: { type: 'account', id: me.id }, outcome: 'success' });
      return Number(result.numDeletedRows);
    },

    async setupTotp(sessionToken) {
      const me = await sessionOf(sessionToken);
      return secondFactors.setup(me.id, me.login);
    },

    async enableTotp(sessionToken, code) {
      const me = await sessionOf(sessionToken);
      const recoveryCodes = await secondFactors.enable(me.id, code);
      // A privilege change: the session id changes, and the pending set-up is done.
      await control.deleteFrom('sessions').where('id_hash', '=', me.idHash).execute();
      const session = await startSession(me.id, me.kind, me.pendingList.filter((p) => p !== 'second_factor_setup'), secretOfSession(sessionToken, me));
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.second-factor.enable', resource: { type: 'account', id: me.id }, outcome: 'success' });
      return { recoveryCodes, session };
    },

    async resetSecondFactor(by, ref) {
      const account = await manageable(by, ref, 'account.reset-second-factor');
      // A stolen session must not be able to strip its own account's second factor.
      if ('accountId' in by && by.accountId === account.id) throw new ConflictError('you cannot reset your own second factor; ask another administrator');
      if (!(await secondFactors.remove(account.id))) throw new ConflictError('this account has no second factor to reset');
      const ended = await control.deleteFrom('sessions').where('account_id', '=', account.id).executeTakeFirst();
      await record(account.tenant_id, { actor: ledgerActor(by), action: 'account.second-factor.reset', resource: { type: 'account', id: account.id }, outcome: 'success' });
      notify(account, { kind: 'second-factor-reset', time: nowIso() });
      return { accountId: account.id, sessionsEnded: Number(ended.numDeletedRows) };
    },

    async regenerateRecoveryCodes(sessionToken, code, source) {
      const me = await sessionOf(sessionToken);
      if (!(await secondFactors.isEnabled(me.id))) throw new ConflictError('set up a second factor first (POST /api/v1/auth/totp/setup)');
      // Proof that the caller holds the authenticator, not only the session; each code works once. A
      // 6-digit code is guessable, so a stolen session gets the login's brute-force throttle here too.
      const attempt = await throttle.reserve(me.login, source);
      try {
        if (!/^\d{6}$/.test(code.trim()) || !(await secondFactors.verify(me.id, code))) {
          await attempt.failed();
          await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.second-factor.recovery-codes', resource: { type: 'account', id: me.id }, outcome: 'failure', source });
          throw new ValidationError('that code is not valid; enter the current 6-digit code from your authenticator app');
        }
        await attempt.succeeded();
      } finally {
        await attempt.release();
      }
      const codes = await secondFactors.regenerateRecoveryCodes(me.id);
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.second-factor.recovery-codes', resource: { type: 'account', id: me.id }, outcome: 'success' });
      return codes;
    },

    async policyFor(sessionToken) {
      const me = await sessionOf(sessionToken);
      return policyOfTenant(me.tenant_id);
    },

    async tenantPolicy(by, tenantId) {
      const tenant = await tenantScope(tenantId);
      authorize(by, 'policy.read', { type: 'tenant', tenantId, resellerId: tenant.reseller_id, handedOver: tenant.handedOver });
      return policyOfTenant(tenantId);
    },

    async setTenantPolicy(by, tenantId, input) {
      const tenant = await tenantScope(tenantId);
      authorize(by, 'policy.write', { type: 'tenant', tenantId, resellerId: tenant.reseller_id, handedOver: tenant.handedOver });
      const policy = parseTenantPolicy(input);
      const json = JSON.stringify(policy);
      const updated = await control.updateTable('tenant_policies').set({ policy: json, updated_at: nowIso() }).where('tenant_id', '=', tenantId).executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) await control.insertInto('tenant_policies').values({ tenant_id: tenantId, policy: json, updated_at: nowIso() }).execute();
      // Configuration change: the policy is settings, not personal data, so it goes into the payload whole.
      await record(tenantId, {
        actor: ledgerActor(by),
        action: 'config.password-policy',
        resource: { type: 'tenant', id: tenantId },
        outcome: 'success',
        details: JSON.parse(json) as Record<string, JsonValue>,
      });
      return policy;
    },

    async deleteAccount(by, ref) {
      const account = await manageable(by, ref);
      if ('accountId' in by && by.accountId === account.id) throw new ConflictError('you cannot delete your own account; ask another administrator');
      let personalRecordsDeleted = 0;
      if (account.tenant_id) {
        await deps.tenantKeys.dropAccountCopy(account.tenant_id, account.id);
        personalRecordsDeleted = (await deps.onAccountDeleted?.(account.tenant_id, account.id)) ?? 0;
      }
      await control.deleteFrom('sessions').where('account_id', '=', account.id).execute();
      await control.deleteFrom('accounts').where('id', '=', account.id).execute();
      await record(account.tenant_id, {
        actor: ledgerActor(by),
        action: 'account.delete',
        resource: { type: 'account', id: account.id },
        outcome: 'success',
        details: { role: account.role, personalRecordsDeleted },
      });
      return { accountId: account.id, personalRecordsDeleted };
    },

    async setAccountStatus(loginInput, status, by = { kind: 'system', name: 'cli' }) {
      const account = await manageable(by, loginInput);
      if (account.status === 'invited' && status === 'active') throw new ConflictError('this account has not accepted its invitation yet');
      await control.updateTable('accounts').set({ status }).where('id', '=', account.id).execute();
      const ended = status === 'disabled' ? await control.deleteFrom('sessions').where('account_id', '=', account.id).executeTakeFirst() : undefined;
      await record(account.tenant_id, {
        actor: ledgerActor(by),
        action: status === 'disabled' ? 'account.disable' : 'account.enable',
        resource: { type: 'account', id: account.id },
        outcome: 'success',
      });
      return { accountId: account.id, sessionsEnded: Number(ended?.numDeletedRows ?? 0) };
    },

    async issuePasswordReset(loginInput, ttlMs = RESET_TTL_MS, by = { kind: 'system', name: 'cli' }) {
      const account = await manageable(by, loginInput);
      if (account.status === 'invited') {
        // Not yet accepted: send the invitation again, with a new key (the old one stays valid until it expires).
        const issued = await oneTimeKeys.issue('invite', account.id, INVITATION_TTL_MS);
        const organisation = account.tenant_id ? (await tenantScope(account.tenant_id)).name : 'Tresor';
        const mail = await mailTo(account, { kind: 'invitation', link: `${deps.publicUrl}/app/invite#key=${issued.key}`, expiresAt: issued.expiresAt, organisation, role: account.role });
        return { ...issued, mail };
      }
      const issued = await oneTimeKeys.issue('password-reset', account.id, ttlMs);
      const mail = await mailTo(account, { kind: 'password-reset', link: `${deps.publicUrl}/app/reset#key=${issued.key}`, expiresAt: issued.expiresAt });
      return { ...issued, mail };
    },

    async resetPassword(key, newPassword) {
      const subject = await oneTimeKeys.peek(key, 'password-reset');
      const account = subject ? await control.selectFrom('accounts').selectAll().where('id', '=', subject).executeTakeFirst() : undefined;
      if (!account) {
        await oneTimeKeys.consume(key, 'password-reset'); // records the refused use, then throws
        throw new OneTimeKeyError();
      }
      await assertNewPassword(account, newPassword, await policyOfTenant(account.tenant_id));
      await oneTimeKeys.consume(key, 'password-reset');
      await storePassword(account.id, newPassword);
      if (DATA_ROLES.includes(account.role as AccountRole)) {
        // The old private key was sealed under the forgotten password: it is gone, and with it this
        // account's copy of the tenant secret. A colleague with data access grants it again (B.1).
        await sealKeyPair(account.id, newPassword);
        if (account.tenant_id) await deps.tenantKeys.dropAccountCopy(account.tenant_id, account.id);
      }
      await control.deleteFrom('sessions').where('account_id', '=', account.id).execute();
      await record(account.tenant_id, { actor: { tier: 'anonymous', role: 'key-holder', id: account.id }, action: 'auth.password.reset', resource: { type: 'account', id: account.id }, outcome: 'success' });
    },

    async dataKeyOf(sessionToken) {
      const me = await sessionOf(sessionToken);
      const secret = secretOfSession(sessionToken, me);
      if (!secret || !me.tenant_id) return undefined;
      const opened = await deps.tenantKeys.openSecret(me.tenant_id, secret);
      if (!opened) {
        // The tenant secret was rotated since this session began: its copy is worthless; log in again.
        await control.updateTable('sessions').set({ sealed_tenant_secret: null }).where('id_hash', '=', me.idHash).execute();
        return undefined;
      }
      if (me.tier === 'external') {
        // Checked on every request: an expired or revoked grant ends access in a live session as well.
        const grants = await activeGrantsOf(me.tenant_id, me.id);
        if (grants.length === 0) {
          await control.updateTable('sessions').set({ sealed_tenant_secret: null }).where('id_hash', '=', me.idHash).execute();
          return undefined;
        }
        return { tenantId: me.tenant_id, dataKey: opened.dataKey, keyVersion: opened.version, grants: grants.map(grantView).map((g) => ({ id: g.id, collection: g.collection, recordIds: g.recordIds })) };
      }
      // During a rotation the records not re-encrypted yet stay readable with the previous key (from the
      // rotation copy, which only the new secret opens).
      const previous = await deps.tenantKeys.previousKey(me.tenant_id, opened.dataKey, opened.version);
      return { tenantId: me.tenant_id, dataKey: opened.dataKey, keyVersion: opened.version, ...(previous ? { previous } : {}) };
    },

    async checkRotation(sessionToken, opts) {
      await assertRotationAllowed(await sessionOf(sessionToken), opts);
    },

    async rotateTenantSecret(sessionToken, opts, progress) {
      const me = await sessionOf(sessionToken);
      const secret = secretOfSession(sessionToken, me);
      if (!secret) throw new ForbiddenError('only a data user with data access can rotate the tenant secret');
      await assertRotationAllowed(me, opts); // the policy, a rotation still running, a handover done already
      const tenantId = me.tenant_id!;
      rotating.add(tenantId);
      try {
        const accounts = await control
          .selectFrom('accounts')
          .select(['id', 'public_key'])
          .where('tenant_id', '=', tenantId)
          .where('status', '=', 'active')
          .where('role', 'in', ['member', 'dpo'])
          .where('public_key', 'is not', null)
          .execute();
        const excluded = new Set(opts.exclude ?? []);
        if (opts.only !== undefined) {
          if (!accounts.some((a) => a.id === opts.only)) throw new NotFoundError('account');
          for (const a of accounts) if (a.id !== opts.only) excluded.add(a.id);
        }
        // Only those who hold the secret now keep it (and a handover's owner gets it): a rotation must not
        // hand it back to someone who lost it (an installer's seat after the handover, a reset password).
        const holders = new Set(await deps.tenantKeys.accountHolders(tenantId));
        const keep = accounts.filter((a) => a.id === opts.only || (!excluded.has(a.id) && holders.has(a.id))).map((a) => ({ id: a.id, publicKey: a.public_key! }));
        if (keep.length === 0) throw new ConflictError('after the rotation nobody would hold the tenant secret: keep at least one data user');
        const db = await deps.tenantDb(tenantId);
        const active = await db.selectFrom('grants').select(['id', 'grantee_id']).where('ended_at', 'is', null).where('expires_at', '>', nowIso()).execute();
        const grantees = active.length === 0 ? [] : await control.selectFrom('accounts').select(['id', 'public_key']).where('id', 'in', active.map((g) => g.grantee_id)).execute();
        const grants = active.flatMap((g) => {
          const key = grantees.find((a) => a.id === g.grantee_id)?.public_key;
          return key ? [{ id: g.id, publicKey: key }] : [];
        });
        // The new recovery code is owed to the caller if they keep access, else to the owner (handover) or
        // to every kept data user; it is shown once, in their own session (takeRecoveryCode).
        const recoveryFor = !excluded.has(me.id) ? [me.id] : opts.only !== undefined ? [opts.only] : keep.map((a) => a.id);
        const rotated = await deps.tenantKeys.rotate(tenantId, secret, { by: me.id, keep, grants, recoveryFor });
        if (opts.reason === 'handover') await control.updateTable('tenants').set({ handed_over_at: nowIso() }).where('id', '=', tenantId).execute();
        await record(tenantId, {
          actor: ledgerActor(actorOf(me)),
          action: opts.reason === 'handover' ? 'tenant.handover' : 'key.rotate-tenant-secret',
          resource: { type: 'tenant', id: tenantId },
          outcome: 'success',
          details: { version: rotated.to.version, keptAccounts: keep.length, excluded: excluded.size, grants: grants.length, ...(opts.only ? { owner: opts.only } : {}) },
        });
        // Every session of the tenant holds the old secret now; the caller continues with the new one if kept.
        const tenantAccounts = (await control.selectFrom('accounts').select('id').where('tenant_id', '=', tenantId).execute()).map((a) => a.id);
        await control.updateTable('sessions').set({ sealed_tenant_secret: null }).where('account_id', 'in', tenantAccounts).execute();
        if (!excluded.has(me.id)) await control.updateTable('sessions').set({ sealed_tenant_secret: sealForSession(sessionToken, rotated.secret) }).where('id_hash', '=', me.idHash).execute();
        if (excluded.size > 0) await control.deleteFrom('sessions').where('account_id', 'in', [...excluded]).execute();
        const reencrypted = (await deps.reencryptRecords?.(tenantId, rotated.from, rotated.to, progress)) ?? 0;
        await deps.tenantKeys.finishRotation(tenantId);
        await record(tenantId, { actor: ledgerActor(actorOf(me)), action: 'key.rotation-finished', resource: { type: 'tenant', id: tenantId }, outcome: 'success', details: { reencrypted } });
        return { version: rotated.to.version, reencrypted, keptAccounts: keep.length, excluded: excluded.size };
      } finally {
        rotating.delete(tenantId);
      }
    },

    async resumeRotation(sessionToken, progress) {
      const key = await this.dataKeyOf(sessionToken);
      if (!key || key.grants) throw new ForbiddenError('only a data user holding the new tenant secret can resume a rotation');
      const from = await deps.tenantKeys.rotationInProgress(key.tenantId, key.dataKey);
      if (!from) return { reencrypted: 0 };
      const reencrypted = (await deps.reencryptRecords?.(key.tenantId, from, { dataKey: key.dataKey, version: key.keyVersion }, progress)) ?? 0;
      await deps.tenantKeys.finishRotation(key.tenantId);
      const me = await sessionOf(sessionToken);
      await record(key.tenantId, { actor: ledgerActor(actorOf(me)), action: 'key.rotation-finished', resource: { type: 'tenant', id: key.tenantId }, outcome: 'success', details: { reencrypted, resumed: true } });
      return { reencrypted };
    },

    async takeRecoveryCode(sessionToken) {
      const me = await sessionOf(sessionToken);
      const secret = secretOfSession(sessionToken, me);
      if (!secret || !me.tenant_id || !isAllowed(actorOf(me), 'key.recovery-code', { type: 'data', tenantId: me.tenant_id })) {
        throw new ForbiddenError('only a data user with data access can see a recovery code owed to them');
      }
      const recoveryCode = await deps.tenantKeys.takeRecoveryCode(me.tenant_id, me.id, secret);
      if (!recoveryCode) throw new DomainError('NOT_FOUND', 'no recovery code is waiting for you: it is shown once, to the data user who activated or renewed the tenant secret; for a new one, rotate the secret (POST /api/v1/keys/rotate)');
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'key.recovery-code.show', resource: { type: 'account', id: me.id }, outcome: 'success' });
      return { recoveryCode };
    },

    async createGrant(sessionToken, input) {
      const me = await sessionOf(sessionToken);
      const secret = secretOfSession(sessionToken, me);
      if (!me.tenant_id || !isAllowed(actorOf(me), 'grant.create', { type: 'data', tenantId: me.tenant_id }) || !secret) throw new ForbiddenError('only a data user with data access can grant access');
      const grantee = await control.selectFrom('accounts').select(['id', 'role', 'tier', 'status', 'public_key', 'tenant_id']).where('id', '=', input.granteeId).executeTakeFirst();
      if (!grantee || grantee.tenant_id !== me.tenant_id) throw new NotFoundError('account');
      if (grantee.tier !== 'external') throw new ConflictError(`grants are for external accounts (technician, control-centre, authority), not for a ${grantee.role}`);
      if (grantee.status !== 'active' || !grantee.public_key) throw new ConflictError('this account has not accepted its invitation yet');
      const expires = new Date(input.expiresAt);
      const now = clock.now();
      if (!Number.isFinite(expires.getTime()) || expires <= now || expires.getTime() - now.getTime() > 366 * 24 * 60 * 60 * 1000) {
        throw new ValidationError('expiresAt must be a time in the future, at most a year ahead');
      }
      const db = await deps.tenantDb(me.tenant_id);
      const row: GrantTable = {
        id: newId(),
        grantee_id: grantee.id,
        collection: input.collection ?? 'contacts',
        record_ids: input.recordIds ? JSON.stringify([...new Set(input.recordIds)]) : null,
        expires_at: expires.toISOString(),
        created_by: me.id,
        created_at: now.toISOString(),
        ended_at: null,
        end_reason: null,
      };
      await db.insertInto('grants').values(row).execute();
      await deps.tenantKeys.wrapForGrant(me.tenant_id, secret, row.id, grantee.public_key, me.id);
      await record(me.tenant_id, {
        actor: ledgerActor(actorOf(me)),
        action: 'grant.create',
        resource: { type: 'grant', id: row.id },
        outcome: 'success',
        details: { grantee: grantee.id, collection: row.collection, scope: input.recordIds ? 'records' : 'collection', records: input.recordIds?.length ?? null, expiresAt: row.expires_at },
      });
      return grantView(row);
    },

    async listGrants(sessionToken) {
      const me = await sessionOf(sessionToken);
      if (!me.tenant_id || !isAllowed(actorOf(me), 'grant.list', { type: 'data', tenantId: me.tenant_id })) throw new ForbiddenError('grants are for data users and external accounts');
      const db = await deps.tenantDb(me.tenant_id);
      let q = db.selectFrom('grants').selectAll().orderBy('created_at');
      // Who cannot give grants sees only the grants given to it.
      if (!isAllowed(actorOf(me), 'grant.create', { type: 'data', tenantId: me.tenant_id })) q = q.where('grantee_id', '=', me.id);
      return (await q.execute()).map(grantView);
    },

    async revokeGrant(sessionToken, grantId) {
      const me = await sessionOf(sessionToken);
      if (!me.tenant_id || !isAllowed(actorOf(me), 'grant.revoke', { type: 'data', tenantId: me.tenant_id })) throw new ForbiddenError('only a data user can revoke a grant');
      const db = await deps.tenantDb(me.tenant_id);
      const updated = await db.updateTable('grants').set({ ended_at: nowIso(), end_reason: 'revoked' }).where('id', '=', grantId).where('ended_at', 'is', null).executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) throw new NotFoundError('grant');
      await deps.tenantKeys.dropGrantCopy(me.tenant_id, grantId);
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'grant.revoke', resource: { type: 'grant', id: grantId }, outcome: 'success' });
    },

    async sendAccessLink(sessionToken, grantId, ttlMs = ACCESS_LINK_TTL_MS) {
      const me = await sessionOf(sessionToken);
      const secret = secretOfSession(sessionToken, me);
      if (!me.tenant_id || !isAllowed(actorOf(me), 'grant.create', { type: 'data', tenantId: me.tenant_id }) || !secret) throw new ForbiddenError('only a data user with data access can send an access link');
      const db = await deps.tenantDb(me.tenant_id);
      const grant = await db.selectFrom('grants').selectAll().where('id', '=', grantId).where('ended_at', 'is', null).where('expires_at', '>', nowIso()).executeTakeFirst();
      if (!grant) throw new NotFoundError('grant');
      const grantee = await control.selectFrom('accounts').select(['id', 'login', 'language', 'status']).where('id', '=', grant.grantee_id).executeTakeFirst();
      if (!grantee || grantee.status !== 'active') throw new ConflictError('the grantee account is not active');
      const tenant = await control.selectFrom('tenants').select('name').where('id', '=', me.tenant_id).executeTakeFirstOrThrow();
      const ttl = Math.min(Math.max(ttlMs, 60_000), ACCESS_LINK_TTL_MS, new Date(grant.expires_at).getTime() - clock.now().getTime());
      const issued = await oneTimeKeys.issue('external-access', grantee.id, ttl);
      await deps.tenantKeys.wrapForLink(me.tenant_id, secret, grant.id, Buffer.from(issued.key, 'base64url'), me.id);
      const mail = await mailTo(grantee, { kind: 'access-link', link: `${deps.publicUrl}/app/access#key=${issued.key}`, expiresAt: issued.expiresAt, organisation: tenant.name, grantEndsAt: grant.expires_at });
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'grant.link', resource: { type: 'grant', id: grant.id }, outcome: 'success', details: { grantee: grantee.id, expiresAt: issued.expiresAt } });
      return { expiresAt: issued.expiresAt, mail };
    },

    async redeemAccessLink(key, source, kind) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(key)) throw new OneTimeKeyError();
      const granteeId = await oneTimeKeys.consume(key, 'external-access'); // once only; a second use is recorded and refused
      const account = await control
        .selectFrom('accounts as a')
        .leftJoin('resellers as r', 'r.id', 'a.reseller_id')
        .leftJoin('tenants as t', 't.id', 'a.tenant_id')
        .select(ACCOUNT_COLUMNS)
        .where('a.id', '=', granteeId)
        .executeTakeFirst();
      if (!account || account.tier !== 'external' || !account.tenant_id || account.status !== 'active' || account.tenant_status === 'suspended') throw new OneTimeKeyError();
      const grants = await activeGrantsOf(account.tenant_id, account.id);
      const opened = await deps.tenantKeys.redeemLink(account.tenant_id, grants.map((g) => g.id), Buffer.from(key, 'base64url'));
      const grant = grants.find((g) => g.id === opened?.grantId);
      if (!opened || !grant) {
        await record(account.tenant_id, { actor: { tier: 'anonymous', role: 'key-holder', id: account.id }, action: 'grant.link.use', resource: { type: 'account', id: account.id }, outcome: 'denied', source, details: { reason: 'grant ended' } });
        throw new OneTimeKeyError();
      }
      const session = await startSession(account.id, kind, [], opened.secret);
      // The session ends with the grant at the latest (dataKeyOf checks the grant on every request, too).
      const expiresAt = grant.expires_at < session.expiresAt ? grant.expires_at : session.expiresAt;
      await control.updateTable('sessions').set({ expires_at: expiresAt }).where('id_hash', '=', sha256Hex(session.sessionToken)).execute();
      const actor = actorOf(account);
      await record(account.tenant_id, { actor: ledgerActor(actor), action: 'grant.link.use', resource: { type: 'grant', id: grant.id }, outcome: 'success', source, details: { kind } });
      return { ...session, expiresAt, actor, grant: grantView(grant) };
    },

    async expireGrants() {
      const tenants = await control.selectFrom('tenants').select('id').execute();
      let ended = 0;
      for (const t of tenants) {
        const db = await deps.tenantDb(t.id);
        const expired = await db.selectFrom('grants').select('id').where('ended_at', 'is', null).where('expires_at', '<=', nowIso()).execute();
        for (const g of expired) {
          await db.updateTable('grants').set({ ended_at: nowIso(), end_reason: 'expired' }).where('id', '=', g.id).execute();
          const destroyed = await deps.tenantKeys.dropGrantCopy(t.id, g.id);
          await record(t.id, { actor: { tier: 'system', role: 'scheduler', id: 'scheduler' }, action: 'grant.expire', resource: { type: 'grant', id: g.id }, outcome: 'success', details: { keyCopiesDestroyed: destroyed } });
          ended++;
        }
      }
      return ended;
    },

    async activateDataAccess(sessionToken, code) {
      const me = await sessionOf(sessionToken);
      if (!me.tenant_id || !isAllowed(actorOf(me), 'key.activate', { type: 'data', tenantId: me.tenant_id }) || !me.public_key) {
        throw new ForbiddenError('only a data user of a tenant (member, dpo) can be given data access');
      }
      let secret: Buffer | undefined;
      if (code.activationKey) {
        const opened = /^[A-Za-z0-9_-]{43}$/.test(code.activationKey) ? await deps.tenantKeys.openActivation(me.tenant_id, code.activationKey, me.id) : undefined;
        if (opened && 'refused' in opened) {
          // B.1: a key bound to the named first data user opens for nobody else, however they got it (the
          // creator's own data seat, a colleague). The key stays unused for its owner.
          await record(me.tenant_id, {
            actor: ledgerActor(actorOf(me)),
            action: 'key.activate',
            resource: { type: 'tenant', id: me.tenant_id },
            outcome: 'denied',
            details: { reason: 'bound-to-first-data-user' },
          });
          throw new ForbiddenError("this activation key belongs to the tenant's named first data user: only they can enter it; ask them to grant you data access");
        }
        secret = opened?.secret;
      } else if (code.recoveryCode) {
        const parsed = parseRecoveryCode(code.recoveryCode);
        secret = parsed && (await deps.tenantKeys.checkSecret(me.tenant_id, parsed)) ? parsed : undefined;
      }
      if (!secret) {
        await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'key.activate', resource: { type: 'tenant', id: me.tenant_id }, outcome: 'denied' });
        throw new OneTimeKeyError();
      }
      if (code.activationKey) {
        // B.1: whoever created the tenant saw the activation key, and with a database copy it opens the
        // secret behind it. So that secret is replaced now, before any data exists under it: the new one is
        // wrapped for this data user alone, and its recovery code is owed to them (shown once). The rotation
        // deletes the activation copy; of two activations at once, the second fails (ConflictError).
        const rotated = await deps.tenantKeys.rotate(me.tenant_id, secret, { by: me.id, keep: [{ id: me.id, publicKey: me.public_key }], grants: [], recoveryFor: [me.id] });
        await deps.reencryptRecords?.(me.tenant_id, rotated.from, rotated.to, () => undefined);
        await deps.tenantKeys.finishRotation(me.tenant_id);
        secret = rotated.secret;
      } else {
        await deps.tenantKeys.wrapForAccount(me.tenant_id, secret, { id: me.id, publicKey: me.public_key }, me.id);
      }
      await control.updateTable('sessions').set({ sealed_tenant_secret: sealForSession(sessionToken, secret) }).where('id_hash', '=', me.idHash).execute();
      await record(me.tenant_id, {
        actor: ledgerActor(actorOf(me)),
        action: 'key.activate',
        resource: { type: 'account', id: me.id },
        outcome: 'success',
        details: { via: code.activationKey ? 'activation-key' : 'recovery-code' },
      });
    },

    async grantDataAccess(sessionToken, accountId) {
      const me = await sessionOf(sessionToken);
      const secret = secretOfSession(sessionToken, me);
      if (!me.tenant_id || !isAllowed(actorOf(me), 'key.grant', { type: 'data', tenantId: me.tenant_id }) || !secret) throw new ForbiddenError('only a data user with data access can give it to a colleague');
      const target = await control.selectFrom('accounts').select(['id', 'login', 'tier', 'role', 'reseller_id', 'status', 'public_key', 'tenant_id', 'language']).where('id', '=', accountId).executeTakeFirst();
      if (!target || target.tenant_id !== me.tenant_id) throw new NotFoundError('account');
      // Only who may hold the tenant secret itself gets a copy (the policy's key.activate).
      if (!isAllowed(actorOf(target), 'key.activate', { type: 'data', tenantId: me.tenant_id })) {
        throw new ConflictError(`a ${target.role} gets no copy of the tenant secret; external accounts get grants on a scope`);
      }
      if (target.status !== 'active' || !target.public_key) throw new ConflictError('this account has not accepted its invitation yet');
      await deps.tenantKeys.wrapForAccount(me.tenant_id, secret, { id: target.id, publicKey: target.public_key }, me.id);
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'key.grant', resource: { type: 'account', id: target.id }, outcome: 'success' });
    },

    async dataAccessStatus(sessionToken) {
      const me = await sessionOf(sessionToken);
      let dataAccess = me.sealed_tenant_secret !== null;
      // A grantee's copy is worth something only while one of its grants is active.
      if (dataAccess && me.tier === 'external' && me.tenant_id) dataAccess = (await activeGrantsOf(me.tenant_id, me.id)).length > 0;
      if (!me.tenant_id || !dataAccess || me.tier !== 'tenant') return { dataAccess, waiting: [], colleagues: [], externals: [] };
      const recoveryCodePending = await deps.tenantKeys.owesRecoveryCode(me.tenant_id, me.id);
      const rotationPending = await deps.tenantKeys.rotationPending(me.tenant_id);
      const candidates = await control
        .selectFrom('accounts')
        .select(['id', 'login', 'role', 'tier'])
        .where('tenant_id', '=', me.tenant_id)
        .where('status', '=', 'active')
        .where('role', 'in', ['member', 'dpo', 'technician', 'control-centre', 'authority'])
        .where('public_key', 'is not', null)
        .orderBy('login')
        .execute();
      const brief = (c: (typeof candidates)[number]): AccountBrief => ({ id: c.id, login: c.login, role: c.role });
      const colleagues = candidates.filter((c) => c.tier === 'tenant').map(brief);
      const waiting = [];
      for (const c of colleagues) if (!(await deps.tenantKeys.hasAccountCopy(me.tenant_id, c.id))) waiting.push(c);
      return { dataAccess, waiting, colleagues, externals: candidates.filter((c) => c.tier === 'external').map(brief), recoveryCodePending, rotationPending };
    },

    async accountInfo(accountId) {
      const a = await control.selectFrom('accounts').select(['id', 'login', 'language', 'tier', 'status']).where('id', '=', accountId).executeTakeFirst();
      return a ? { id: a.id, login: a.login, language: a.language, tier: a.tier, status: a.status } : undefined;
    },

    async accountByLogin(email) {
      const a = await control.selectFrom('accounts').select(['id', 'login', 'language']).where('login', '=', normaliseLogin(email)).where('status', '=', 'active').executeTakeFirst();
      return a ? { id: a.id, login: a.login, language: a.language } : undefined;
    },

    async loginHashParams(accountId) {
      const a = await control.selectFrom('accounts').select('password_hash').where('id', '=', accountId).executeTakeFirstOrThrow();
      const phc = parsePhc(a.password_hash);
      return { salt: phc.salt.toString('base64'), memoryKib: phc.m, iterations: phc.t, parallelism: phc.p, hashLength: phc.hash.length };
    },

    async matchesLoginHash(accountId, rawHash) {
      const a = await control.selectFrom('accounts').select('password_hash').where('id', '=', accountId).executeTakeFirstOrThrow();
      const stored = parsePhc(a.password_hash).hash;
      return stored.length === rawHash.length && timingSafeEqual(stored, Buffer.from(rawHash));
    },

    async registerGuest(email, tenantId, language) {
      const login = normaliseLogin(email);
      const existing = await control.selectFrom('accounts').select(['id', 'status', 'tier', 'language']).where('login', '=', login).executeTakeFirst();
      const tenant = await control.selectFrom('tenants').select('name').where('id', '=', tenantId).executeTakeFirstOrThrow();
      if (existing && !(existing.status === 'invited' && existing.tier === 'guest')) return 'exists';
      const accountId = existing?.id ?? (await insertInvitedAccount({ login, tier: 'guest', role: 'guest', resellerId: null, tenantId, language }));
      await sendInvitation({ id: accountId, login, language: existing?.language ?? language }, tenant.name, 'guest');
      await record(tenantId, { actor: { tier: 'anonymous', role: 'link-holder', id: accountId }, action: 'account.guest.register', resource: { type: 'account', id: accountId }, outcome: 'success' });
      return 'invited';
    },

    noticesSent() {
      return noticeQueue;
    },

    async changePassword(sessionToken, currentPassword, newPassword, source) {
      const me = await sessionOf(sessionToken);
      const attempt = await throttle.reserve(me.login, source);
      try {
        if (!(await hasher.verify(me.password_hash, currentPassword))) {
          await attempt.failed();
          await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.password.change', resource: { type: 'account', id: me.id }, outcome: 'failure', source });
          throw new UnauthenticatedError('the current password is not correct');
        }
      } finally {
        await attempt.release();
      }
      if (currentPassword === newPassword) throw new ConflictError('the new password must differ from the current one');
      await assertNewPassword(me, newPassword, await policyOfTenant(me.tenant_id));
      // The private key is sealed again under the new password: the key path survives a change (not a reset).
      const privateKey = await openPrivateKey(me, currentPassword);
      const secret = secretOfSession(sessionToken, me);
      await storePassword(me.id, newPassword);
      if (privateKey) await sealKeyPair(me.id, newPassword, privateKey);
      // Every other session (possibly an attacker's) ends; the caller continues in a new session.
      await control.deleteFrom('sessions').where('account_id', '=', me.id).execute();
      const session = await startSession(me.id, me.kind, me.pendingList.filter((p) => p !== 'password_change'), secret);
      await record(me.tenant_id, { actor: ledgerActor(actorOf(me)), action: 'auth.password.change', resource: { type: 'account', id: me.id }, outcome: 'success', source });
      return session;
    },
  };
}

import type { Actor } from '../access/index.js';
import { ledgerActor, type Ledger } from '../ledger/index.js';
import { newId, randomPassword, randomToken, sha256Hex } from '../crypto/random.js';
import { ConflictError, NotFoundError, UnauthenticatedError } from '../shared/errors.js';
import { assertAcceptablePassword } from './password-policy.js';
import type { ControlDb } from '../storage/index.js';
import type { PasswordHasher } from './passwords.js';
import type { LoginThrottle } from './throttle.js';
import { createOneTimeKeys, OneTimeKeyError } from './one-time-keys.js';
import { createSecondFactors, SecondFactorRequiredError } from './second-factor.js';
import type { MasterKeyRing } from '../crypto/master-key.js';

export interface Clock {
  now(): Date;
}

/**
 * Operator and reseller accounts in the control database, with server-side sessions.
 * The identity issue extends this with tenant accounts, policies, throttling and replay locking.
 */
export interface IdentityService {
  /** Creates an account with a one-time password that is returned once and must be changed. */
  createAccount(input: { login: string; tier: 'operator' | 'reseller'; resellerId: string | null }): Promise<{
    accountId: string;
    oneTimePassword: string;
  }>;
  hasOperator(): Promise<boolean>;
  /** `source` is the client address; attempts are slowed down per account and per source. */
  login(login: string, password: string, source: string, otp?: string): Promise<{ sessionToken: string; expiresAt: string; actor: Actor }>;
  /** Starts TOTP enrolment for the caller: the secret and an otpauth:// URI for the authenticator app. */
  setupTotp(sessionToken: string): Promise<{ secret: string; uri: string }>;
  /** Activates TOTP with a current code; returns ten recovery codes, shown once. */
  enableTotp(sessionToken: string, code: string): Promise<string[]>;
  authenticate(sessionToken: string): Promise<Actor>;
  logout(sessionToken: string): Promise<void>;
  /** The caller's sessions; `ref` names a session without revealing its token. */
  listSessions(sessionToken: string): Promise<{ ref: string; createdAt: string; lastSeenAt: string; expiresAt: string; current: boolean }[]>;
  endSession(sessionToken: string, ref: string): Promise<void>;
  /** "Log out everywhere": ends every session of the caller's account, this one included. */
  endAllSessions(sessionToken: string): Promise<number>;
  /** Needs the current password; ends every session and returns a new one (a new id after a privilege change). */
  changePassword(sessionToken: string, currentPassword: string, newPassword: string, source: string): Promise<{ sessionToken: string; expiresAt: string }>;
  /** Disables or re-enables an account (operator task); disabling ends all its sessions at once. */
  setAccountStatus(login: string, status: 'active' | 'disabled'): Promise<{ accountId: string; sessionsEnded: number }>;
  /** A one-time password-reset key for an account (operator task); valid for `ttlMs`, usable once. */
  issuePasswordReset(login: string, ttlMs?: number): Promise<{ key: string; expiresAt: string }>;
  /** Sets a new password with a reset key; every session of the account ends. */
  resetPassword(key: string, newPassword: string): Promise<void>;
}

/** ASVS 5.0 §7.3: absolute and idle timeouts, enforced on the server. */
export const SESSION_ABSOLUTE_MS = 12 * 60 * 60 * 1000;
export const SESSION_IDLE_MS = 30 * 60 * 1000;
/** last_seen_at is written at most this often, not on every request. */
const TOUCH_EVERY_MS = 60 * 1000;

export function createIdentityService(deps: {
  control: ControlDb;
  hasher: PasswordHasher;
  clock: Clock;
  ledger: Pick<Ledger, 'append'>;
  throttle: LoginThrottle;
  masterKey: MasterKeyRing;
  issuer: string;
}): IdentityService {
  const { control, hasher, clock, ledger, throttle } = deps;
  const oneTimeKeys = createOneTimeKeys({ db: control, ledger, clock });
  const secondFactors = createSecondFactors({ db: control, masterKey: deps.masterKey, clock, issuer: deps.issuer });
  const normaliseLogin = (login: string) => login.normalize('NFC').trim().toLowerCase();

  const actorOf = (account: { id: string; tier: 'operator' | 'reseller'; reseller_id: string | null }): Actor =>
    account.tier === 'operator'
      ? { kind: 'operator', accountId: account.id }
      : { kind: 'reseller', accountId: account.id, resellerId: account.reseller_id ?? '' };

  /** Resolves a session token, enforcing the idle and absolute timeouts; only the token's hash is stored. */
  const sessionOf = async (sessionToken: string) => {
    const idHash = sha256Hex(sessionToken);
    const row = await control
      .selectFrom('sessions as s')
      .innerJoin('accounts as a', 'a.id', 's.account_id')
      .select(['a.id', 'a.login', 'a.tier', 'a.reseller_id', 'a.status', 'a.password_hash', 's.expires_at', 's.last_seen_at'])
      .where('s.id_hash', '=', idHash)
      .executeTakeFirst();
    const now = clock.now();
    const idleSince = row ? now.getTime() - new Date(row.last_seen_at).getTime() : 0;
    if (!row || row.status !== 'active' || row.expires_at <= now.toISOString() || idleSince > SESSION_IDLE_MS) {
      if (row) await control.deleteFrom('sessions').where('id_hash', '=', idHash).execute();
      throw new UnauthenticatedError('your session has ended or is not valid; log in again');
    }
    if (idleSince > TOUCH_EVERY_MS) {
      await control.updateTable('sessions').set({ last_seen_at: now.toISOString() }).where('id_hash', '=', idHash).execute();
    }
    return { ...row, idHash };
  };

  const startSession = async (accountId: string) => {
    const sessionToken = randomToken(32);
    const now = clock.now();
    const expiresAt = new Date(now.getTime() + SESSION_ABSOLUTE_MS).toISOString();
    await control
      .insertInto('sessions')
      .values({ id_hash: sha256Hex(sessionToken), account_id: accountId, created_at: now.toISOString(), expires_at: expiresAt, last_seen_at: now.toISOString() })
      .execute();
    return { sessionToken, expiresAt };
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
          reseller_id: input.resellerId,
          password_hash: await hasher.hash(oneTimePassword),
          must_change_password: 1,
          status: 'active',
          created_at: clock.now().toISOString(),
        })
        .execute();
      await ledger.append({
        actor: { tier: 'system', role: 'identity', id: 'identity' },
        action: 'account.create',
        resource: { type: 'account', id: accountId },
        outcome: 'success',
        details: { tier: input.tier },
      });
      return { accountId, oneTimePassword };
    },

    async hasOperator() {
      const row = await control.selectFrom('accounts').select('id').where('tier', '=', 'operator').executeTakeFirst();
      return row !== undefined;
    },

    async login(loginInput, password, source, otp) {
      try {
        await throttle.check(loginInput, source);
      } catch (error) {
        await ledger.append({
          actor: { tier: 'anonymous', role: 'anonymous', id: 'unknown' },
          action: 'auth.login',
          resource: { type: 'account' },
          outcome: 'denied',
          source,
          details: { reason: 'throttled' },
        });
        throw error;
      }
      const account = await control
        .selectFrom('accounts as a')
        .leftJoin('resellers as r', 'r.id', 'a.reseller_id')
        .select(['a.id', 'a.tier', 'a.reseller_id', 'a.password_hash', 'a.status', 'r.status as reseller_status'])
        .where('a.login', '=', normaliseLogin(loginInput))
        .executeTakeFirst();
      // Unknown accounts cost the same work and get the same answer as a wrong password.
      const ok = account ? await hasher.verify(account.password_hash, password) : await hasher.verifyDummy(password);
      if (!account || !ok || account.status !== 'active' || account.reseller_status === 'suspended') {
        const { accountFailures } = await throttle.failed(loginInput, source);
        // The login name may be an e-mail address: only a known account's id is recorded.
        await ledger.append({
          actor: { tier: 'anonymous', role: 'anonymous', id: account?.id ?? 'unknown' },
          action: 'auth.login',
          resource: { type: 'account', id: account?.id },
          outcome: 'failure',
          source,
          details: { accountFailures },
        });
        throw new UnauthenticatedError('login failed: wrong login or password');
      }
      if (await secondFactors.isEnabled(account.id)) {
        if (otp === undefined || otp === '') throw new SecondFactorRequiredError();
        if (!(await secondFactors.verify(account.id, otp))) {
          await throttle.failed(loginInput, source);
          await ledger.append({ actor: { tier: 'anonymous', role: 'anonymous', id: account.id }, action: 'auth.second-factor', resource: { type: 'account', id: account.id }, outcome: 'failure', source });
          throw new UnauthenticatedError('login failed: the code is not valid (each code works once)');
        }
      }
      await throttle.succeeded(loginInput);
      if (hasher.needsRehash(account.password_hash)) {
        // Parameters were raised since this hash was made: upgrade it now that the password is at hand.
        await control.updateTable('accounts').set({ password_hash: await hasher.hash(password) }).where('id', '=', account.id).execute();
      }
      // Always a fresh random session id at login: a planted id (session fixation) is never reused.
      const { sessionToken, expiresAt } = await startSession(account.id);
      const actor = actorOf(account);
      await ledger.append({ actor: ledgerActor(actor), action: 'auth.login', resource: { type: 'account', id: account.id }, outcome: 'success', source });
      return { sessionToken, expiresAt, actor };
    },

    async authenticate(sessionToken) {
      return actorOf(await sessionOf(sessionToken));
    },

    async logout(sessionToken) {
      await control.deleteFrom('sessions').where('id_hash', '=', sha256Hex(sessionToken)).execute();
    },

    async listSessions(sessionToken) {
      const me = await sessionOf(sessionToken);
      const rows = await control.selectFrom('sessions').selectAll().where('account_id', '=', me.id).orderBy('created_at').execute();
      const now = clock.now().toISOString();
      return rows
        .filter((r) => r.expires_at > now)
        .map((r) => ({ ref: r.id_hash.slice(0, 16), createdAt: r.created_at, lastSeenAt: r.last_seen_at, expiresAt: r.expires_at, current: r.id_hash === me.idHash }));
    },

    async endSession(sessionToken, ref) {
      const me = await sessionOf(sessionToken);
      if (!/^[0-9a-f]{16}$/.test(ref)) throw new NotFoundError('session');
      const rows = await control.selectFrom('sessions').select('id_hash').where('account_id', '=', me.id).execute();
      const target = rows.find((r) => r.id_hash.startsWith(ref));
      if (!target) throw new NotFoundError('session');
      await control.deleteFrom('sessions').where('id_hash', '=', target.id_hash).where('account_id', '=', me.id).execute();
      await ledger.append({ actor: ledgerActor(actorOf(me)), action: 'auth.session.end', resource: { type: 'session', id: ref }, outcome: 'success' });
    },

    async endAllSessions(sessionToken) {
      const me = await sessionOf(sessionToken);
      const result = await control.deleteFrom('sessions').where('account_id', '=', me.id).executeTakeFirst();
      await ledger.append({ actor: ledgerActor(actorOf(me)), action: 'auth.session.end-all', resource: { type: 'account', id: me.id }, outcome: 'success' });
      return Number(result.numDeletedRows);
    },

    async setupTotp(sessionToken) {
      const me = await sessionOf(sessionToken);
      return secondFactors.setup(me.id, me.login);
    },

    async enableTotp(sessionToken, code) {
      const me = await sessionOf(sessionToken);
      const codes = await secondFactors.enable(me.id, code);
      await ledger.append({ actor: ledgerActor(actorOf(me)), action: 'auth.second-factor.enable', resource: { type: 'account', id: me.id }, outcome: 'success' });
      return codes;
    },

    async setAccountStatus(loginInput, status) {
      const account = await control.selectFrom('accounts').select('id').where('login', '=', normaliseLogin(loginInput)).executeTakeFirst();
      if (!account) throw new NotFoundError('account');
      await control.updateTable('accounts').set({ status }).where('id', '=', account.id).execute();
      const ended = status === 'disabled' ? await control.deleteFrom('sessions').where('account_id', '=', account.id).executeTakeFirst() : undefined;
      await ledger.append({
        actor: { tier: 'system', role: 'cli', id: 'cli' },
        action: status === 'disabled' ? 'account.disable' : 'account.enable',
        resource: { type: 'account', id: account.id },
        outcome: 'success',
      });
      return { accountId: account.id, sessionsEnded: Number(ended?.numDeletedRows ?? 0) };
    },

    async issuePasswordReset(loginInput, ttlMs = 24 * 60 * 60 * 1000) {
      const account = await control.selectFrom('accounts').select('id').where('login', '=', normaliseLogin(loginInput)).executeTakeFirst();
      if (!account) throw new NotFoundError('account');
      return oneTimeKeys.issue('password-reset', account.id, ttlMs);
    },

    async resetPassword(key, newPassword) {
      const subject = await oneTimeKeys.peek(key, 'password-reset');
      const account = subject ? await control.selectFrom('accounts').select(['id', 'login']).where('id', '=', subject).executeTakeFirst() : undefined;
      if (!account) {
        await oneTimeKeys.consume(key, 'password-reset'); // records the refused use, then throws
        throw new OneTimeKeyError();
      }
      assertAcceptablePassword(newPassword, { login: account.login });
      await oneTimeKeys.consume(key, 'password-reset');
      await control.updateTable('accounts').set({ password_hash: await hasher.hash(newPassword), must_change_password: 0 }).where('id', '=', account.id).execute();
      await control.deleteFrom('sessions').where('account_id', '=', account.id).execute();
      await ledger.append({ actor: { tier: 'anonymous', role: 'key-holder', id: account.id }, action: 'auth.password.reset', resource: { type: 'account', id: account.id }, outcome: 'success' });
    },

    async changePassword(sessionToken, currentPassword, newPassword, source) {
      const me = await sessionOf(sessionToken);
      await throttle.check(me.login, source);
      if (!(await hasher.verify(me.password_hash, currentPassword))) {
        await throttle.failed(me.login, source);
        await ledger.append({ actor: ledgerActor(actorOf(me)), action: 'auth.password.change', resource: { type: 'account', id: me.id }, outcome: 'failure', source });
        throw new UnauthenticatedError('the current password is not correct');
      }
      assertAcceptablePassword(newPassword, { login: me.login });
      if (currentPassword === newPassword) throw new ConflictError('the new password must differ from the current one');
      await control
        .updateTable('accounts')
        .set({ password_hash: await hasher.hash(newPassword), must_change_password: 0 })
        .where('id', '=', me.id)
        .execute();
      // Every other session (possibly an attacker's) ends; the caller continues in a new session.
      await control.deleteFrom('sessions').where('account_id', '=', me.id).execute();
      const session = await startSession(me.id);
      await ledger.append({ actor: ledgerActor(actorOf(me)), action: 'auth.password.change', resource: { type: 'account', id: me.id }, outcome: 'success', source });
      return session;
    },
  };
}

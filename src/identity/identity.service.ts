import type { Actor } from '../access/index.js';
import { ledgerActor, type Ledger } from '../ledger/index.js';
import { newId, randomPassword, randomToken, sha256Hex } from '../crypto/random.js';
import { ConflictError, UnauthenticatedError } from '../shared/errors.js';
import type { ControlDb } from '../storage/index.js';
import type { PasswordHasher } from './passwords.js';
import type { LoginThrottle } from './throttle.js';

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
  login(login: string, password: string, source: string): Promise<{ sessionToken: string; expiresAt: string; actor: Actor }>;
  authenticate(sessionToken: string): Promise<Actor>;
  logout(sessionToken: string): Promise<void>;
}

const SESSION_ABSOLUTE_MS = 12 * 60 * 60 * 1000;

export function createIdentityService(deps: {
  control: ControlDb;
  hasher: PasswordHasher;
  clock: Clock;
  ledger: Pick<Ledger, 'append'>;
  throttle: LoginThrottle;
}): IdentityService {
  const { control, hasher, clock, ledger, throttle } = deps;
  const normaliseLogin = (login: string) => login.normalize('NFC').trim().toLowerCase();

  const actorOf = (account: { id: string; tier: 'operator' | 'reseller'; reseller_id: string | null }): Actor =>
    account.tier === 'operator'
      ? { kind: 'operator', accountId: account.id }
      : { kind: 'reseller', accountId: account.id, resellerId: account.reseller_id ?? '' };

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

    async login(loginInput, password, source) {
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
      await throttle.succeeded(loginInput);
      const sessionToken = randomToken(32);
      const now = clock.now();
      const expiresAt = new Date(now.getTime() + SESSION_ABSOLUTE_MS).toISOString();
      await control
        .insertInto('sessions')
        .values({
          id_hash: sha256Hex(sessionToken),
          account_id: account.id,
          created_at: now.toISOString(),
          expires_at: expiresAt,
          last_seen_at: now.toISOString(),
        })
        .execute();
      const actor = actorOf(account);
      await ledger.append({ actor: ledgerActor(actor), action: 'auth.login', resource: { type: 'account', id: account.id }, outcome: 'success', source });
      return { sessionToken, expiresAt, actor };
    },

    async authenticate(sessionToken) {
      // Only the hash of the token is stored, so the lookup by hash is not a timing oracle on the token.
      const row = await control
        .selectFrom('sessions as s')
        .innerJoin('accounts as a', 'a.id', 's.account_id')
        .select(['a.id', 'a.tier', 'a.reseller_id', 'a.status', 's.expires_at'])
        .where('s.id_hash', '=', sha256Hex(sessionToken))
        .executeTakeFirst();
      if (!row || row.status !== 'active' || row.expires_at <= clock.now().toISOString()) {
        throw new UnauthenticatedError('your session has ended or is not valid; log in again');
      }
      return actorOf(row);
    },

    async logout(sessionToken) {
      await control.deleteFrom('sessions').where('id_hash', '=', sha256Hex(sessionToken)).execute();
    },
  };
}

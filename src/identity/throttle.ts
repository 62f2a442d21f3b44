import { Redis } from 'ioredis';
import { sha256Hex } from '../crypto/random.js';
import { DomainError } from '../shared/errors.js';

/**
 * Brute-force slowdown (S2.5, ASVS 5.0 §6.3.1, Keycloak-style): after failures, the next attempt for the
 * same account or from the same source must wait a delay that doubles with each failure (1 s, 2 s, 4 s …,
 * at most 15 min). The wait is enforced before the password is checked, so a flood costs no hashing.
 * A success resets the account's counter; counters expire 12 h after the last failure. Accounts are keyed
 * by a hash of the login as typed, so known and unknown logins behave the same (no enumeration).
 */
export interface AttemptState {
  failures: number;
  lastFailureAt: number;
}

export interface AttemptStore {
  get(key: string): Promise<AttemptState | undefined>;
  recordFailure(key: string, now: number): Promise<AttemptState>;
  reset(key: string): Promise<void>;
  close(): Promise<void>;
}

export const COUNTER_TTL_MS = 12 * 60 * 60 * 1000;
const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 15 * 60 * 1000;
/** Failures from one address before it is slowed down too: offices share NAT addresses. */
const FREE_FAILURES_PER_SOURCE = 10;

export class ThrottledError extends DomainError {
  constructor(readonly retryAfterSeconds: number) {
    super('THROTTLED', `too many failed logins; wait ${retryAfterSeconds} seconds before trying again`, { retryAfterSeconds });
  }
}

export function delayAfter(failures: number, freeFailures = 0): number {
  const counted = failures - freeFailures;
  if (counted <= 0) return 0;
  return Math.min(BASE_DELAY_MS * 2 ** Math.min(counted - 1, 30), MAX_DELAY_MS);
}

export function createMemoryAttemptStore(clock: { now(): Date }): AttemptStore {
  const entries = new Map<string, AttemptState>();
  const live = (key: string) => {
    const state = entries.get(key);
    if (state && clock.now().getTime() - state.lastFailureAt > COUNTER_TTL_MS) {
      entries.delete(key);
      return undefined;
    }
    return state;
  };
  return {
    get: (key) => Promise.resolve(live(key)),
    recordFailure(key, now) {
      const state = { failures: (live(key)?.failures ?? 0) + 1, lastFailureAt: now };
      entries.set(key, state);
      // Bound memory under a flood of distinct keys: drop the oldest.
      if (entries.size > 100_000) entries.delete(entries.keys().next().value!);
      return Promise.resolve(state);
    },
    reset(key) {
      entries.delete(key);
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  };
}

/** Shared counters for several nodes: a hash per key with a 12 h expiry, updated atomically. */
export function createRedisAttemptStore(url: string): AttemptStore {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true });
  redis.on('error', () => undefined); // surfaced by the failing command instead
  const k = (key: string) => `tresor:attempts:${key}`;
  return {
    async get(key) {
      const raw = await redis.hmget(k(key), 'failures', 'last');
      if (raw[0] === null || raw[1] === null) return undefined;
      return { failures: Number(raw[0]), lastFailureAt: Number(raw[1]) };
    },
    async recordFailure(key, now) {
      const result = await redis
        .multi()
        .hincrby(k(key), 'failures', 1)
        .hset(k(key), 'last', String(now))
        .pexpire(k(key), COUNTER_TTL_MS)
        .exec();
      const failures = Number(result?.[0]?.[1] ?? 1);
      return { failures, lastFailureAt: now };
    },
    async reset(key) {
      await redis.del(k(key));
    },
    async close() {
      await redis.quit().catch(() => undefined);
    },
  };
}

export interface LoginThrottle {
  /** Throws ThrottledError if the account or the source must still wait. */
  check(login: string, source: string): Promise<void>;
  failed(login: string, source: string): Promise<{ accountFailures: number }>;
  succeeded(login: string): Promise<void>;
}

export function createLoginThrottle(store: AttemptStore, clock: { now(): Date }): LoginThrottle {
  const accountKey = (login: string) => `acct:${sha256Hex(login.normalize('NFC').trim().toLowerCase())}`;
  const sourceKey = (source: string) => `src:${source}`;
  const waitFor = (state: AttemptState | undefined, free: number) =>
    state ? state.lastFailureAt + delayAfter(state.failures, free) - clock.now().getTime() : 0;
  return {
    async check(login, source) {
      const [account, origin] = await Promise.all([store.get(accountKey(login)), store.get(sourceKey(source))]);
      const wait = Math.max(waitFor(account, 0), waitFor(origin, FREE_FAILURES_PER_SOURCE));
      if (wait > 0) throw new ThrottledError(Math.ceil(wait / 1000));
    },
    async failed(login, source) {
      const now = clock.now().getTime();
      const [account] = await Promise.all([store.recordFailure(accountKey(login), now), store.recordFailure(sourceKey(source), now)]);
      return { accountFailures: account.failures };
    },
    async succeeded(login) {
      await store.reset(accountKey(login));
    },
  };
}

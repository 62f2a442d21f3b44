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
  /**
   * Check and reserve in one atomic step: 0 when an in-flight slot was taken for `key`, otherwise the
   * milliseconds to wait (the delay still runs, or all in-flight slots are taken). A key with `free`
   * failures left before its delay starts may have that many attempts in flight, at least one.
   */
  reserve(key: string, now: number, free: number): Promise<number>;
  /** Gives back an in-flight slot taken by `reserve`. */
  release(key: string): Promise<void>;
  recordFailure(key: string, now: number): Promise<AttemptState>;
  reset(key: string): Promise<void>;
  close(): Promise<void>;
}

export const COUNTER_TTL_MS = 12 * 60 * 60 * 1000;
const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 15 * 60 * 1000;
/** Failures from one address before it is slowed down too: offices share NAT addresses. */
const FREE_FAILURES_PER_SOURCE = 10;
/**
 * An in-flight slot left behind (a node died between reserve and release) frees itself after this time,
 * so the owner is never locked out for good.
 */
export const IN_FLIGHT_TTL_MS = 60_000;
/** What a caller waits when every slot is in flight: the running check is over by then. */
const BUSY_WAIT_MS = 1_000;

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

/** How many attempts may run at once for a key: the free failures left, at least one. */
const slotsFor = (failures: number, free: number) => Math.max(1, free - failures);

export function createMemoryAttemptStore(clock: { now(): Date }): AttemptStore {
  const entries = new Map<string, AttemptState>();
  const inFlight = new Map<string, { count: number; until: number }>();
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
    // Synchronous from the read to the write: no other request runs in between (one event loop).
    reserve(key, now, free) {
      const state = live(key);
      const wait = state ? state.lastFailureAt + delayAfter(state.failures, free) - now : 0;
      if (wait > 0) return Promise.resolve(wait);
      let slot = inFlight.get(key);
      if (slot && slot.until <= now) slot = undefined;
      if (slot && slot.count >= slotsFor(state?.failures ?? 0, free)) return Promise.resolve(BUSY_WAIT_MS);
      inFlight.set(key, { count: (slot?.count ?? 0) + 1, until: now + IN_FLIGHT_TTL_MS });
      if (inFlight.size > 100_000) inFlight.delete(inFlight.keys().next().value!);
      return Promise.resolve(0);
    },
    release(key) {
      const slot = inFlight.get(key);
      if (slot && slot.count > 1) slot.count--;
      else inFlight.delete(key);
      return Promise.resolve();
    },
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

/**
 * Check and reserve for several nodes, atomic inside Redis (a script runs alone): KEYS[1] the counter
 * hash, KEYS[2] the in-flight count; ARGV now, free failures, base delay, max delay, in-flight TTL, busy wait.
 */
const RESERVE_SCRIPT = `
local state = redis.call('HMGET', KEYS[1], 'failures', 'last')
local failures = tonumber(state[1]) or 0
local last = tonumber(state[2]) or 0
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local counted = failures - free
if counted > 0 then
  local delay = math.min(tonumber(ARGV[3]) * 2 ^ math.min(counted - 1, 30), tonumber(ARGV[4]))
  local wait = last + delay - now
  if wait > 0 then return math.ceil(wait) end
end
local slots = math.max(1, free - failures)
local running = tonumber(redis.call('GET', KEYS[2])) or 0
if running >= slots then return tonumber(ARGV[6]) end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 0
`;
const RELEASE_SCRIPT = `
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
`;

/** Shared counters for several nodes: a hash per key with a 12 h expiry, updated atomically. */
export function createRedisAttemptStore(url: string): AttemptStore {
  const redis = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true });
  redis.on('error', () => undefined); // surfaced by the failing command instead
  const k = (key: string) => `tresor:attempts:${key}`;
  const flight = (key: string) => `tresor:inflight:${key}`;
  return {
    async get(key) {
      const raw = await redis.hmget(k(key), 'failures', 'last');
      if (raw[0] === null || raw[1] === null) return undefined;
      return { failures: Number(raw[0]), lastFailureAt: Number(raw[1]) };
    },
    async reserve(key, now, free) {
      const wait = await redis.eval(RESERVE_SCRIPT, 2, k(key), flight(key), now, free, BASE_DELAY_MS, MAX_DELAY_MS, IN_FLIGHT_TTL_MS, BUSY_WAIT_MS);
      return Number(wait);
    },
    async release(key) {
      await redis.eval(RELEASE_SCRIPT, 1, flight(key));
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

/** One reserved login attempt: exactly one of `failed` or `succeeded`, or `release` (always safe, in a finally). */
export interface LoginAttempt {
  /** Counts the failure for account and source, then frees the slots. */
  failed(): Promise<{ accountFailures: number }>;
  /** Resets the account's counter, then frees the slots. */
  succeeded(): Promise<void>;
  /** Frees the slots without counting anything (the check did not end in a verdict); a no-op after the others. */
  release(): Promise<void>;
}

export interface LoginThrottle {
  /**
   * Checks and reserves atomically, before the password is checked: throws ThrottledError while the
   * account or the source must wait, or while another attempt for the same account is still being
   * checked (so parallel guesses cannot all reach the hasher before the first failure is counted).
   */
  reserve(login: string, source: string): Promise<LoginAttempt>;
}

export function createLoginThrottle(store: AttemptStore, clock: { now(): Date }): LoginThrottle {
  const accountKey = (login: string) => `acct:${sha256Hex(login.normalize('NFC').trim().toLowerCase())}`;
  const sourceKey = (source: string) => `src:${source}`;
  return {
    async reserve(login, source) {
      const account = accountKey(login);
      const origin = sourceKey(source);
      const now = clock.now().getTime();
      const accountWait = await store.reserve(account, now, 0);
      if (accountWait > 0) throw new ThrottledError(Math.ceil(accountWait / 1000));
      let originWait: number;
      try {
        originWait = await store.reserve(origin, now, FREE_FAILURES_PER_SOURCE);
      } catch (error) {
        await store.release(account);
        throw error;
      }
      if (originWait > 0) {
        await store.release(account);
        throw new ThrottledError(Math.ceil(originWait / 1000));
      }
      let open = true;
      const release = async () => {
        if (!open) return;
        open = false;
        await Promise.all([store.release(account), store.release(origin)]);
      };
      return {
        async failed() {
          // Counted before the slots are freed: the next reservation sees this failure.
          const at = clock.now().getTime();
          const [state] = await Promise.all([store.recordFailure(account, at), store.recordFailure(origin, at)]).finally(release);
          return { accountFailures: state.failures };
        },
        async succeeded() {
          await store.reset(account).finally(release);
        },
        release,
      };
    },
  };
}

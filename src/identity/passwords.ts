import { hash, parseOptions, verify, type Options } from '@node-rs/argon2';
import { DomainError } from '../shared/errors.js';

export interface Argon2Params {
  memoryKib: number;
  iterations: number;
  parallelism: number;
}

/** Argon2id per OWASP ASVS 5.0 §6.2 / RFC 9106; at most `maxConcurrent` hashes run at once. */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(storedHash: string, password: string): Promise<boolean>;
  /** True when a stored hash was made with weaker parameters than configured now (rehash at next login). */
  needsRehash(storedHash: string): boolean;
  /** Spends the same work as a real verification, for unknown accounts (no enumeration by timing). */
  verifyDummy(password: string): Promise<false>;
  /** Runs other Argon2 work (the password-derived key of an account) under the same limit. */
  run<T>(work: () => Promise<T>): Promise<T>;
  /** Hashes running now, waiting now, and the most that ever ran at once (for metrics and tests). */
  load(): { running: number; queued: number; peakRunning: number };
}

/** Too many password hashes are waiting: the caller should try again shortly (503 with Retry-After). */
export class HashQueueFullError extends DomainError {
  constructor() {
    super('BUSY', 'the server is busy checking passwords; try again in a moment', { retryAfterSeconds: 1 });
  }
}

// `Algorithm` is a const enum in the typings; 2 = Argon2id.
const ARGON2ID = 2 as NonNullable<Options['algorithm']>;

/**
 * At most `maxConcurrent` Argon2 computations at once (each takes `memoryKib`), at most `maxQueued`
 * waiting: a login flood can neither exhaust memory nor queue without bound (issue 4, item 2).
 */
export function createHashLimiter(limits: { maxConcurrent: number; maxQueued: number }) {
  let running = 0;
  let peakRunning = 0;
  const waiting: (() => void)[] = [];
  return {
    async run<T>(work: () => Promise<T>): Promise<T> {
      if (running >= limits.maxConcurrent) {
        if (waiting.length >= limits.maxQueued) throw new HashQueueFullError();
        await new Promise<void>((resolve) => waiting.push(resolve));
      }
      running++;
      peakRunning = Math.max(peakRunning, running);
      try {
        return await work();
      } finally {
        running--;
        waiting.shift()?.();
      }
    },
    load: () => ({ running, queued: waiting.length, peakRunning }),
  };
}

export function createPasswordHasher(params: Argon2Params, limits: { maxConcurrent: number; maxQueued: number } = { maxConcurrent: 2, maxQueued: 1_000 }): PasswordHasher {
  const options: Options = {
    algorithm: ARGON2ID,
    memoryCost: params.memoryKib,
    timeCost: params.iterations,
    parallelism: params.parallelism,
  };
  const limiter = createHashLimiter(limits);
  const limited = limiter.run;
  let dummyHash: Promise<string> | undefined;
  return {
    hash: (password) => limited(() => hash(password, options)),
    verify: (storedHash, password) => limited(() => verify(storedHash, password)),
    needsRehash(storedHash) {
      try {
        const used = parseOptions(storedHash);
        return used.algorithm !== ARGON2ID || used.memoryCost < params.memoryKib || used.timeCost < params.iterations || used.parallelism < params.parallelism;
      } catch {
        return true;
      }
    },
    async verifyDummy(password) {
      dummyHash ??= hash('tresor-dummy-password-for-timing', options);
      const stored = await dummyHash;
      await limited(() => verify(stored, password));
      return false;
    },
    run: limited,
    load: limiter.load,
  };
}

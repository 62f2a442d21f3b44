import { hash, parseOptions, verify, type Options } from '@node-rs/argon2';

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
}

// `Algorithm` is a const enum in the typings; 2 = Argon2id.
const ARGON2ID = 2 as NonNullable<Options['algorithm']>;

export function createPasswordHasher(params: Argon2Params, maxConcurrent = 2): PasswordHasher {
  const options: Options = {
    algorithm: ARGON2ID,
    memoryCost: params.memoryKib,
    timeCost: params.iterations,
    parallelism: params.parallelism,
  };
  let running = 0;
  const waiting: (() => void)[] = [];
  const limited = async <T>(work: () => Promise<T>): Promise<T> => {
    if (running >= maxConcurrent) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await work();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
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
  };
}

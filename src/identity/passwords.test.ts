import { describe, expect, it } from 'vitest';
import { passwordKey } from '../crypto/envelope.js';
import { createHashLimiter, createPasswordHasher, HashQueueFullError } from './passwords.js';

// Small Argon2id parameters: these tests are about how many run at once, not about their cost.
const PARAMS = { memoryKib: 1024, iterations: 1, parallelism: 1 };

describe('bounded Argon2 work', () => {
  it('never runs more than maxConcurrent hashes and password-derived keys at once', async () => {
    const hasher = createPasswordHasher(PARAMS, { maxConcurrent: 2, maxQueued: 100 });
    let active = 0;
    let mostAtOnce = 0;
    // Observed from outside the limiter: the password-derived key of an account goes through `run`.
    const derive = (i: number) =>
      hasher.run(async () => {
        active++;
        mostAtOnce = Math.max(mostAtOnce, active);
        try {
          return await passwordKey(`password ${i}`, Buffer.alloc(16, i), PARAMS);
        } finally {
          active--;
        }
      });
    const stored = await hasher.hash('a stored password');
    const results = await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => derive(i)),
      ...Array.from({ length: 6 }, (_, i) => hasher.verify(stored, i === 0 ? 'a stored password' : `guess ${i}`)),
      ...Array.from({ length: 4 }, (_, i) => hasher.hash(`new password ${i}`)),
    ]);
    expect(results).toHaveLength(16);
    expect(results[6]).toBe(true);
    expect(mostAtOnce).toBeLessThanOrEqual(2);
    expect(hasher.load().peakRunning).toBe(2); // the limit was reached, and never passed
    expect(hasher.load()).toMatchObject({ running: 0, queued: 0 });
  });

  it('refuses work beyond the queue at once (503 upstream) and finishes what it accepted', async () => {
    const limiter = createHashLimiter({ maxConcurrent: 1, maxQueued: 2 });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const accepted = [limiter.run(() => gate.then(() => 'first')), limiter.run(async () => 'second'), limiter.run(async () => 'third')];
    await expect(limiter.run(async () => 'fourth')).rejects.toBeInstanceOf(HashQueueFullError);
    await expect(limiter.run(async () => 'fifth')).rejects.toMatchObject({ code: 'BUSY', details: { retryAfterSeconds: 1 } });
    expect(limiter.load()).toMatchObject({ running: 1, queued: 2 });
    release();
    expect(await Promise.all(accepted)).toEqual(['first', 'second', 'third']);
    expect(await limiter.run(async () => 'later')).toBe('later'); // room again
  });
});

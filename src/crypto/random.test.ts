import { describe, expect, it } from 'vitest';
import { pooledRandomBytes } from './random.js';

describe('pooled random bytes', () => {
  it('hands out fresh copies that never repeat, across pool refills', () => {
    const seen = new Set<string>();
    const values: Buffer[] = [];
    for (let i = 0; i < 2000; i++) values.push(pooledRandomBytes(16)); // 32,000 bytes: eight refills
    for (const v of values) {
      expect(v).toHaveLength(16);
      seen.add(v.toString('hex'));
    }
    expect(seen.size).toBe(values.length);
    // A copy, not a view of the pool: changing one value changes no other.
    const [a, b] = [pooledRandomBytes(12), pooledRandomBytes(12)];
    const before = b.toString('hex');
    a.fill(0);
    expect(b.toString('hex')).toBe(before);
  });

  it('refuses sizes it is not for', () => {
    for (const n of [0, -1, 1.5, 257]) expect(() => pooledRandomBytes(n)).toThrow(RangeError);
  });
});

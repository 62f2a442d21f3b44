import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { blindIndexBits, DEFAULT_EXPECTED_ROWS, LEGACY_BLIND_INDEX_BITS, MAX_EXPECTED_ROWS, MIN_EXPECTED_ROWS } from './collection.js';

/** CipherSweet's rule for a blind index of L bits over R rows: 2 ≤ R / 2^L < √R. */
const ruleHolds = (rows: number, bits: number) => rows / 2 ** bits >= 2 && rows / 2 ** bits < Math.sqrt(rows);

describe('blind-index length from the expected row count (CipherSweet rule)', () => {
  it('keeps 2 ≤ expected coincidences < √rows for every allowed row count, with the longest such length', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_EXPECTED_ROWS, max: MAX_EXPECTED_ROWS }), (rows) => {
        const bits = blindIndexBits(rows);
        expect(Number.isInteger(bits) && bits >= 1 && bits <= 32).toBe(true);
        expect(ruleHolds(rows, bits), `R=${rows} L=${bits}`).toBe(true);
        // One bit more would let an index value point at a single person (fewer than 2 expected coincidences).
        expect(rows / 2 ** (bits + 1)).toBeLessThan(2);
      }),
      { numRuns: 2000 },
    );
  });

  it('checks the rule at the edges: every power of two and its neighbours', () => {
    for (let k = 3; k <= 31; k++) {
      for (const rows of [2 ** k - 1, 2 ** k, 2 ** k + 1].filter((r) => r >= MIN_EXPECTED_ROWS && r <= MAX_EXPECTED_ROWS)) {
        expect(ruleHolds(rows, blindIndexBits(rows)), `R=${rows}`).toBe(true);
      }
    }
  });

  it('never shortens the index as the expected row count grows', () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_EXPECTED_ROWS, max: MAX_EXPECTED_ROWS }), fc.integer({ min: MIN_EXPECTED_ROWS, max: MAX_EXPECTED_ROWS }), (a, b) => {
        const [small, large] = a <= b ? [a, b] : [b, a];
        expect(blindIndexBits(small)).toBeLessThanOrEqual(blindIndexBits(large));
      }),
    );
  });

  it('gives the lengths documented in docs/keys.md', () => {
    expect([8, 15, 16, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000].map(blindIndexBits)).toEqual([2, 2, 3, 5, 8, 12, 15, 18, 22]);
    expect(blindIndexBits(DEFAULT_EXPECTED_ROWS)).toBe(8);
    // The fixed length used before plans: right for 65,536 to 131,071 rows under the longest-length choice.
    expect(blindIndexBits(65_536)).toBe(LEGACY_BLIND_INDEX_BITS);
  });

  it('refuses row counts for which no length satisfies the rule, and non-numbers, saying what to enter', () => {
    // Below 8 rows: L = 1 gives R/2 ≥ √R for R ≥ 4, and L = 0 is no index.
    for (let rows = 2; rows < MIN_EXPECTED_ROWS; rows++) expect([1, 2, 3].some((bits) => ruleHolds(rows, bits))).toBe(false);
    for (const bad of [0, 7, -1000, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX_EXPECTED_ROWS + 1]) {
      expect(() => blindIndexBits(bad)).toThrow(/expectedRows must be a whole number from 8 to 2147483647/);
    }
  });
});

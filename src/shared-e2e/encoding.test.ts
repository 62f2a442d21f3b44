import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { constantTimeEqual, fromBase64Url, fromHex, toBase64Url, toHex } from './encoding.js';
import { E2eError } from './errors.js';

describe('encoding', () => {
  it('base64url and hex agree with Node Buffer and round trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const b64 = toBase64Url(bytes);
        expect(b64).toBe(Buffer.from(bytes).toString('base64url'));
        expect(fromBase64Url(b64)).toEqual(bytes);
        expect(toHex(bytes)).toBe(Buffer.from(bytes).toString('hex'));
        expect(fromHex(toHex(bytes))).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it('base64url decoding is strict', () => {
    for (const bad of ['A', 'AB==', 'AB+/', 'A B', 'AB=', 'AR', 'AAB']) expect(() => fromBase64Url(bad), bad).toThrow(E2eError);
    expect(fromBase64Url('AA')).toEqual(Uint8Array.of(0));
    expect(() => fromHex('abc')).toThrow(E2eError);
    expect(() => fromHex('zz')).toThrow(E2eError);
  });

  it('constantTimeEqual', () => {
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1))).toBe(false);
  });
});

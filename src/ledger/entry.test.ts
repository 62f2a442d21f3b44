import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CanonicalJsonError,
  EntryFormatError,
  canonicalJson,
  canonicalJsonBytes,
  commitPayload,
  decodeEntry,
  encodeEntry,
  entryLeafHash,
  parseCanonicalJson,
  payloadCommitment,
  verifyPayloadCommitment,
  type LedgerEntry,
} from './entry.js';
import { leafHash } from './merkle.js';

/** Rebuilds every object with its keys in an order chosen by `order` (as own data properties, even "__proto__"). */
function reorderKeys(value: unknown, order: () => number): unknown {
  if (Array.isArray(value)) return value.map((v) => reorderKeys(v, order));
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    for (let i = entries.length - 1; i > 0; i--) {
      const j = order() % (i + 1);
      [entries[i], entries[j]] = [entries[j]!, entries[i]!];
    }
    return Object.fromEntries(entries.map(([k, v]) => [k, reorderKeys(v, order)]));
  }
  return value;
}

const json = fc.jsonValue({ stringUnit: 'grapheme', maxDepth: 4 });

describe('canonicalJson', () => {
  it('sorts keys by UTF-16 code units, writes no whitespace and ECMAScript numbers (RFC 8785 examples)', () => {
    expect(canonicalJson({ b: 2, a: 1, c: { z: [3, { y: 1, x: 2 }], a: null } })).toBe(
      '{"a":1,"b":2,"c":{"a":null,"z":[3,{"x":2,"y":1}]}}',
    );
    // RFC 8785 §3.2.3 sorting example: code-unit order, so "\u20ac" (U+20AC) sorts before "\ud83d\ude00".
    expect(canonicalJson({ '\u20ac': 1, '\ud83d\ude00': 2, '\r': 3, '1': 4, '\u0080': 5, 'ö': 6 })).toBe(
      '{"\\r":3,"1":4,"\u0080":5,"ö":6,"\u20ac":1,"\ud83d\ude00":2}',
    );
    expect(canonicalJson([1e21, 1e-7, 0.1, -0, 333333333.33333329, 4.5, 2 ** 53])).toBe(
      '[1e+21,1e-7,0.1,0,333333333.3333333,4.5,9007199254740992]',
    );
    expect(canonicalJson('a"b\\c\u0007\n€')).toBe('"a\\"b\\\\c\\u0007\\n€"');
    expect(canonicalJsonBytes({ é: 'ü' }).toString('hex')).toBe(Buffer.from('{"é":"ü"}', 'utf8').toString('hex'));
    expect(canonicalJson(Object.create(null, { k: { value: true, enumerable: true } }))).toBe('{"k":true}');
  });

  it.each([
    ['NaN', NaN],
    ['Infinity', { a: [Infinity] }],
    ['-Infinity', -Infinity],
    ['undefined', undefined],
    ['an undefined member', { a: undefined }],
    ['a function', { f: () => 1 }],
    ['a bigint', 1n],
    ['a symbol', Symbol('s')],
    ['a Date', new Date(0)],
    ['a Map', new Map()],
    ['a Buffer', Buffer.from('x')],
    ['a class instance', new (class Thing {})()],
    ['a sparse array', [1, , 3]],
    ['a lone surrogate', 'x\ud800'],
    ['a lone surrogate key', { '\udc00': 1 }],
    ['symbol keys', { [Symbol('k')]: 1 }],
  ])('refuses %s', (_, value) => {
    expect(() => canonicalJson(value)).toThrow(CanonicalJsonError);
  });

  it('refuses cycles and excessive depth, naming the path', () => {
    const cyclic: Record<string, unknown> = { a: { b: [] } };
    ((cyclic['a'] as Record<string, unknown[]>)['b'] as unknown[]).push(cyclic);
    expect(() => canonicalJson(cyclic)).toThrow(/\$\.a\.b\[0\] refers back to itself/);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(() => canonicalJson(deep)).toThrow(/nested deeper/);
    // A shared (non-cyclic) reference is fine.
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });

  it('property: stable under key reordering', () => {
    fc.assert(
      fc.property(json, fc.array(fc.nat(), { minLength: 1 }), (value, seeds) => {
        let i = 0;
        const order = (): number => seeds[i++ % seeds.length]!;
        expect(canonicalJson(reorderKeys(value, order))).toBe(canonicalJson(value));
      }),
    );
  });

  it('property: canonical output is JSON that parses back to the same canonical form, and is accepted as canonical', () => {
    fc.assert(
      fc.property(json, (value) => {
        const text = canonicalJson(value);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        expect(canonicalJson(parseCanonicalJson(Buffer.from(text, 'utf8')))).toBe(text);
        expect(text).not.toMatch(/^\s|\s$/);
      }),
    );
  });

  it('property: a pretty-printed or reordered non-canonical form is refused by parseCanonicalJson', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1 }), json, { minKeys: 2 }), (value) => {
        const pretty = JSON.stringify(value, null, 1);
        expect(() => parseCanonicalJson(Buffer.from(pretty, 'utf8'))).toThrow(CanonicalJsonError);
        const keys = Object.keys(value).sort().reverse();
        const reversed = `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
        expect(() => parseCanonicalJson(Buffer.from(reversed, 'utf8'))).toThrow(CanonicalJsonError);
      }),
    );
  });

  it('parseCanonicalJson refuses invalid UTF-8, duplicate keys and non-shortest numbers', () => {
    expect(() => parseCanonicalJson(Buffer.from([0x22, 0xc3, 0x28, 0x22]))).toThrow(/UTF-8/);
    expect(() => parseCanonicalJson(Buffer.from('{"a":1,"a":1}'))).toThrow(/not canonical/);
    expect(() => parseCanonicalJson(Buffer.from('1.0'))).toThrow(/not canonical/);
    expect(() => parseCanonicalJson(Buffer.from('1E3'))).toThrow(/not canonical/);
    expect(() => parseCanonicalJson(Buffer.from('"\\u0061"'))).toThrow(/not canonical/);
    expect(() => parseCanonicalJson(Buffer.from('{'))).toThrow(/not JSON/);
    expect(parseCanonicalJson(Buffer.from('{"a":[1,"x",null,true]}'))).toEqual({ a: [1, 'x', null, true] });
  });
});

describe('payload commitments', () => {
  const payload = { recordId: 'r-42', fields: ['email', 'iban'], count: 2 };

  it('is SHA-256(salt || canonical JSON) and verifies regardless of key order', () => {
    const { salt, commitment } = commitPayload(payload);
    expect(salt).toHaveLength(16);
    const expected = createHash('sha256').update(salt).update('{"count":2,"fields":["email","iban"],"recordId":"r-42"}');
    expect(commitment.equals(expected.digest())).toBe(true);
    expect(verifyPayloadCommitment({ count: 2, recordId: 'r-42', fields: ['email', 'iban'] }, salt, commitment)).toBe(true);
  });

  it('fails for a changed payload, another salt, a truncated commitment or a payload that is not JSON', () => {
    const { salt, commitment } = commitPayload(payload);
    expect(verifyPayloadCommitment({ ...payload, count: 3 }, salt, commitment)).toBe(false);
    expect(verifyPayloadCommitment({ ...payload, fields: ['iban', 'email'] }, salt, commitment)).toBe(false);
    expect(verifyPayloadCommitment(payload, commitPayload(payload).salt, commitment)).toBe(false);
    expect(verifyPayloadCommitment(payload, salt, commitment.subarray(0, 31))).toBe(false);
    expect(verifyPayloadCommitment(NaN, salt, commitment)).toBe(false);
    expect(() => payloadCommitment(payload, Buffer.alloc(8))).toThrow(/16 bytes/);
  });

  it('the same payload under two salts gives unlinkable commitments', () => {
    expect(commitPayload(payload).commitment.equals(commitPayload(payload).commitment)).toBe(false);
  });
});

describe('entries', () => {
  const base: LedgerEntry = {
    seq: 7,
    time: '2025-01-31T12:00:00.000Z',
    tenant: 'tenant-3f1c',
    actor: 'account:8a0e',
    action: 'record.read',
    resource: 'record:r-42',
    outcome: 'success',
    payloadCommitment: Buffer.alloc(32, 0xab),
  };

  it('encodes as canonical JSON with a version and base64 commitment', () => {
    expect(encodeEntry(base).toString('utf8')).toBe(
      '{"action":"record.read","actor":"account:8a0e","outcome":"success",' +
        `"payloadCommitment":"${Buffer.alloc(32, 0xab).toString('base64')}","resource":"record:r-42",` +
        '"seq":7,"tenant":"tenant-3f1c","time":"2025-01-31T12:00:00.000Z","v":1}',
    );
    const { tenant: _omit, ...platform } = base;
    expect(encodeEntry(platform).toString('utf8')).not.toContain('tenant');
    expect(entryLeafHash(base).equals(leafHash(encodeEntry(base)))).toBe(true);
  });

  const entryArb: fc.Arbitrary<LedgerEntry> = fc
    .record(
      {
        seq: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        time: fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }),
        tenant: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
        actor: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
        action: fc.string({ minLength: 1, maxLength: 40 }),
        resource: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
        outcome: fc.constantFrom('success', 'failure', 'denied'),
        payloadCommitment: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      },
      { requiredKeys: ['seq', 'time', 'actor', 'action', 'resource', 'outcome', 'payloadCommitment'] },
    )
    .map((r) => ({ ...r, time: r.time.toISOString(), payloadCommitment: Buffer.from(r.payloadCommitment) }));

  it('property: decodeEntry(encodeEntry(e)) is e, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(entryArb, (entry) => {
        const bytes = encodeEntry(entry);
        const decoded = decodeEntry(bytes);
        expect(decoded).toEqual(entry);
        expect(encodeEntry(decoded).equals(bytes)).toBe(true);
      }),
    );
  });

  it('property: any single-byte change to an encoded entry is refused or decodes to a different entry', () => {
    fc.assert(
      fc.property(entryArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (entry, at, delta) => {
        const bytes = encodeEntry(entry);
        const changed = Buffer.from(bytes);
        const i = at % changed.length;
        changed[i] = (changed[i]! + delta) % 256;
        let decoded: LedgerEntry | undefined;
        try {
          decoded = decodeEntry(changed);
        } catch (error) {
          expect(error).toBeInstanceOf(EntryFormatError);
          return;
        }
        expect(encodeEntry(decoded).equals(bytes)).toBe(false);
      }),
    );
  });

  const reencode = (mutate: (o: Record<string, unknown>) => void): Buffer => {
    const o = JSON.parse(encodeEntry(base).toString('utf8')) as Record<string, unknown>;
    mutate(o);
    return canonicalJsonBytes(o);
  };

  it.each<[string, Buffer | string, RegExp]>([
    ['whitespace', encodeEntry(base).toString('utf8').replace(',', ', '), /not canonical/],
    ['an unknown field', reencode((o) => (o['extra'] = 1)), /unknown fields extra/],
    ['a missing field', reencode((o) => delete o['actor']), /missing actor/],
    ['another version', reencode((o) => (o['v'] = 2)), /version 2/],
    ['a negative seq', reencode((o) => (o['seq'] = -1)), /seq/],
    ['a fractional seq', reencode((o) => (o['seq'] = 1.5)), /seq/],
    ['a string seq', reencode((o) => (o['seq'] = '7')), /seq/],
    ['a time without milliseconds', reencode((o) => (o['time'] = '2025-01-31T12:00:00Z')), /time/],
    ['a time with an offset', reencode((o) => (o['time'] = '2025-01-31T12:00:00.000+01:00')), /time/],
    ['an impossible date', reencode((o) => (o['time'] = '2025-02-30T12:00:00.000Z')), /time/],
    ['an unknown outcome', reencode((o) => (o['outcome'] = 'maybe')), /outcome/],
    ['an empty actor', reencode((o) => (o['actor'] = '')), /actor/],
    ['an overlong resource', reencode((o) => (o['resource'] = 'x'.repeat(513))), /resource/],
    ['a null tenant', reencode((o) => (o['tenant'] = null)), /tenant/],
    ['a short commitment', reencode((o) => (o['payloadCommitment'] = Buffer.alloc(31).toString('base64'))), /payloadCommitment/],
    ['a hex commitment', reencode((o) => (o['payloadCommitment'] = 'ab'.repeat(32))), /payloadCommitment/],
    ['a non-canonical base64 commitment', reencode((o) => (o['payloadCommitment'] = `${'A'.repeat(42)}B=`)), /canonical base64/],
    ['an array', '[]', /JSON object/],
    ['invalid UTF-8', Buffer.from([0xff]), /UTF-8/],
  ])('decodeEntry refuses %s', (_, input, message) => {
    const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
    expect(() => decodeEntry(bytes)).toThrow(EntryFormatError);
    expect(() => decodeEntry(bytes)).toThrow(message);
  });

  it('encodeEntry refuses invalid fields with a message naming them', () => {
    expect(() => encodeEntry({ ...base, time: 'yesterday' })).toThrow(/time must be ISO 8601/);
    expect(() => encodeEntry({ ...base, seq: -1 })).toThrow(/seq/);
    expect(() => encodeEntry({ ...base, payloadCommitment: Buffer.alloc(16) })).toThrow(/32 bytes/);
    expect(() => encodeEntry({ ...base, actor: 'a\ud800' })).toThrow(/surrogate/);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBundle, encodeBundle } from './bundle.js';

describe('level-4 bundle', () => {
  it('gives back the message and the names it was made of, whatever characters they hold', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.array(fc.string({ unit: 'grapheme', minLength: 1 }), { maxLength: 8 }), (message, names) => {
        expect(decodeBundle(encodeBundle(message, names))).toEqual({ message, names });
      }),
    );
  });

  it('takes a missing message as empty and a name that is no string as missing', () => {
    const bytes = (text: string) => new TextEncoder().encode(text);
    expect(decodeBundle(bytes('{"names":["a.pdf",7,null,"b.txt"]}'))).toEqual({ message: '', names: ['a.pdf', null, null, 'b.txt'] });
    expect(decodeBundle(bytes('{"message":"Hallo"}'))).toEqual({ message: 'Hallo', names: [] });
  });

  it('refuses anything but a UTF-8 JSON object with BAD_INPUT', () => {
    for (const bad of [new TextEncoder().encode('[]'), new TextEncoder().encode('"text"'), new TextEncoder().encode('{"message":'), new TextEncoder().encode('null'), Uint8Array.of(0x7b, 0xff, 0x7d)]) {
      expect(() => decodeBundle(bad)).toThrow(expect.objectContaining({ name: 'E2eError', code: 'BAD_INPUT' }));
    }
  });
});

/**
 * The Node engine and transforms (./node.ts) must produce and accept exactly the bytes of the WebCrypto
 * path: the same vectors, either side decrypting the other, and the same refusals of altered input.
 */
import { readFileSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, sha256, toHex } from './encoding.js';
import { E2eError } from './errors.js';
import { decryptTransform, encryptTransform, nodeAead } from './node.js';
import { decryptBytes, encryptBytes, encryptBytesWithSalt, HEADER_SIZE, RECORD_SIZE, randomFileKey, TAG_SIZE } from './records.js';

const ERS = RECORD_SIZE + TAG_SIZE;
const CONTEXT = 'transfer:7f3a/file:1';
const V = JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8')) as {
  content: { name: string; fileKey: string; salt: string; context: string; plaintext?: string; plaintextLength?: number; ciphertextSha256: string }[];
};

/** Runs `data` (cut into `sizes`, cycled) through a Node transform and collects the output. */
async function through(transform: NodeJS.ReadWriteStream, data: Uint8Array, sizes: readonly number[] = [65536]): Promise<Uint8Array> {
  const pieces: Buffer[] = [];
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length] ?? 1);
    pieces.push(Buffer.from(data.subarray(offset, offset + size)));
    offset += size;
  }
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(pieces),
    transform,
    new Writable({
      write(chunk: Buffer, _e, done) {
        out.push(chunk);
        done();
      },
    }),
  );
  return new Uint8Array(Buffer.concat(out));
}

const random = (n: number) => new Uint8Array(Buffer.concat([Buffer.alloc(0), ...Array.from({ length: Math.ceil(n / 65536) }, () => crypto.getRandomValues(new Uint8Array(65536)))]).subarray(0, n));

async function expectCode(promise: Promise<unknown>, ...codes: string[]) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(E2eError);
  expect(codes).toContain((error as E2eError).code);
}

describe('Node engine: same bytes as WebCrypto', () => {
  it.each(V.content.map((v) => [v.name, v] as const))('vector: %s', async (_name, v) => {
    const plaintext = v.plaintext !== undefined ? fromHex(v.plaintext) : Uint8Array.from({ length: v.plaintextLength ?? 0 }, (_, i) => i % 251);
    const ct = await encryptBytesWithSalt(fromHex(v.fileKey), v.context, plaintext, fromHex(v.salt), { aead: nodeAead });
    expect(toHex(await sha256(ct))).toBe(v.ciphertextSha256);
    expect(toHex(await decryptBytes(fromHex(v.fileKey), v.context, ct, { aead: nodeAead }))).toBe(toHex(plaintext));
  });

  it('each side decrypts what the other encrypted, in any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(0, 1, RECORD_SIZE - 1, RECORD_SIZE, RECORD_SIZE + 1, 3 * RECORD_SIZE + 17),
        fc.array(fc.integer({ min: 1, max: 3 * ERS }), { minLength: 1, maxLength: 4 }),
        async (size, sizes) => {
          const key = randomFileKey();
          const plain = random(size);
          const byNode = await through(encryptTransform(key, CONTEXT), plain, sizes);
          expect(Buffer.from(await decryptBytes(key, CONTEXT, byNode)).equals(Buffer.from(plain))).toBe(true);
          const byWeb = await encryptBytes(key, CONTEXT, plain);
          expect(Buffer.from(await through(decryptTransform(key, CONTEXT), byWeb, sizes)).equals(Buffer.from(plain))).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('Node transforms refuse altered input', () => {
  const key = randomFileKey();
  const plain = random(3 * RECORD_SIZE + 100);
  const made = encryptBytes(key, CONTEXT, plain);

  it('a flipped bit in a record is TAMPERED, and no plaintext of that record is released', async () => {
    const ct = new Uint8Array(await made);
    ct[HEADER_SIZE + ERS + 5]! ^= 1;
    const released: Buffer[] = [];
    const t = decryptTransform(key, CONTEXT);
    t.on('data', (c: Buffer) => released.push(c));
    await expectCode(pipeline(Readable.from([Buffer.from(ct)]), t), 'TAMPERED');
    expect(Buffer.concat(released).length).toBe(RECORD_SIZE); // only the first, intact record
  });

  it('truncation at a record boundary is TRUNCATED; inside a record it fails too', async () => {
    const ct = await made;
    await expectCode(through(decryptTransform(key, CONTEXT), ct.subarray(0, HEADER_SIZE + 2 * ERS)), 'TRUNCATED');
    await expectCode(through(decryptTransform(key, CONTEXT), ct.subarray(0, HEADER_SIZE + 2 * ERS + 9)), 'TRUNCATED', 'TAMPERED');
  });

  it('swapped records are TAMPERED', async () => {
    const ct = new Uint8Array(await made);
    const first = ct.slice(HEADER_SIZE, HEADER_SIZE + ERS);
    ct.copyWithin(HEADER_SIZE, HEADER_SIZE + ERS, HEADER_SIZE + 2 * ERS);
    ct.set(first, HEADER_SIZE + ERS);
    await expectCode(through(decryptTransform(key, CONTEXT), ct), 'TAMPERED');
  });

  it('another key or another context is WRONG_KEY before any record is opened', async () => {
    const ct = await made;
    await expectCode(through(decryptTransform(randomFileKey(), CONTEXT), ct), 'WRONG_KEY');
    await expectCode(through(decryptTransform(key, 'transfer:7f3a/file:2'), ct), 'WRONG_KEY');
  });
});

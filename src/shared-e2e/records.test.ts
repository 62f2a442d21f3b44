import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { E2eError, type E2eErrorCode } from './errors.js';
import {
  ciphertextSize,
  createHeader,
  decryptBytes,
  decryptStream,
  encryptBytes,
  encryptStream,
  encryptStreamWithHeader,
  HEADER_SIZE,
  plaintextSize,
  RECORD_SIZE,
  randomFileKey,
  TAG_SIZE,
} from './records.js';

const RS = RECORD_SIZE;
const ERS = RS + TAG_SIZE;
const CONTEXT = 'transfer:7f3a/file:1';

function randomData(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

/** A stream of `data` cut into chunks of the given sizes (cycled); a size 0 yields an empty chunk. */
function chunked(data: Uint8Array, sizes: readonly number[]): ReadableStream<Uint8Array> {
  let offset = 0;
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= data.length) {
        controller.close();
        return;
      }
      const size = sizes[i++ % sizes.length] ?? 1;
      controller.enqueue(data.slice(offset, offset + size));
      offset += size;
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    length += value.length;
  }
  const out = new Uint8Array(length);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Fast byte equality (vitest's deep equality walks typed arrays element by element, slowly). */
function expectSame(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  for (let i = 0; i < actual.length; i++) diff |= (actual[i] ?? 0) ^ (expected[i] ?? 0);
  expect(diff, 'bytes differ').toBe(0);
}

async function expectCode(promise: Promise<unknown>, ...codes: E2eErrorCode[]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected an E2eError').toBeInstanceOf(E2eError);
  expect(codes).toContain((error as E2eError).code);
}

/** Decrypts both ways (bytes, and a stream in 1000-byte chunks) and expects the same error both times. */
async function expectRejected(key: Uint8Array, context: string, ct: Uint8Array, ...codes: E2eErrorCode[]): Promise<void> {
  await expectCode(decryptBytes(key, context, ct), ...codes);
  await expectCode(readAll(decryptStream(key, context, chunked(ct, [1000]))), ...codes);
}

function records(ct: Uint8Array): { header: Uint8Array; records: Uint8Array[] } {
  const out: Uint8Array[] = [];
  for (let o = HEADER_SIZE; o < ct.length; o += ERS) out.push(ct.slice(o, Math.min(ct.length, o + ERS)));
  return { header: ct.slice(0, HEADER_SIZE), records: out };
}

function join(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

describe('sizes', () => {
  it('ciphertextSize is exact and plaintextSize inverts it', async () => {
    const key = randomFileKey();
    for (const n of [0, 1, 15, 16, RS - 1, RS, RS + 1, 2 * RS, 3 * RS + 5]) {
      const ct = await encryptBytes(key, CONTEXT, randomData(n));
      expect(ct.length, `size ${n}`).toBe(ciphertextSize(n));
      expect(plaintextSize(ct.length)).toBe(n);
    }
    expect(ciphertextSize(0)).toBe(HEADER_SIZE + TAG_SIZE);
    expect(ciphertextSize(RS)).toBe(HEADER_SIZE + RS + 2 * TAG_SIZE); // a full record, then an empty final one
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (n) => plaintextSize(ciphertextSize(n)) === n),
      { numRuns: 500 },
    );
    for (const bad of [0, HEADER_SIZE, HEADER_SIZE + TAG_SIZE - 1, HEADER_SIZE + ERS, HEADER_SIZE + ERS + 15]) {
      expect(() => plaintextSize(bad)).toThrow(E2eError);
    }
    expect(() => ciphertextSize(-1)).toThrow(E2eError);
    expect(() => ciphertextSize(1.5)).toThrow(E2eError);
  });
});

describe('round trip', () => {
  const sizes = [0, 1, RS - 1, RS, RS + 1, 3 * RS + 5];

  it.each(sizes)('%i bytes through bytes and streams', async (n) => {
    const key = randomFileKey();
    const data = randomData(n);
    const ct = await encryptBytes(key, CONTEXT, data);
    expectSame(await decryptBytes(key, CONTEXT, ct), data);
    const streamed = await readAll(encryptStream(key, CONTEXT, chunked(data, [RS])));
    expect(streamed.length).toBe(ciphertextSize(n));
    expectSame(await decryptBytes(key, CONTEXT, streamed), data);
    expectSame(await readAll(decryptStream(key, CONTEXT, chunked(ct, [ERS]))), data);
  });

  it('random sizes and random chunkings on both sides (fast-check)', async () => {
    const key = randomFileKey();
    // Chunk sizes are cycled; mostly large ones, with some tiny (and empty) ones to hit every boundary.
    const chunkSizes = fc.array(
      fc.oneof({ arbitrary: fc.integer({ min: 0, max: 40 }), weight: 1 }, { arbitrary: fc.integer({ min: 41, max: 2 * ERS }), weight: 4 }),
      { minLength: 1, maxLength: 12 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constantFrom(...sizes), fc.integer({ min: 0, max: 3 * RS + 5 })),
        chunkSizes,
        chunkSizes,
        async (n, inChunks, outChunks) => {
          // Chunk sizes of 0 (empty chunks) are allowed, but a stream of only empty chunks would never end.
          const inSizes = inChunks.some((s) => s > 0) ? inChunks : [1];
          const outSizes = outChunks.some((s) => s > 0) ? outChunks : [1];
          const data = randomData(n);
          const ct = await readAll(encryptStream(key, CONTEXT, chunked(data, inSizes)));
          expect(ct.length).toBe(ciphertextSize(n));
          const back = await readAll(decryptStream(key, CONTEXT, chunked(ct, outSizes)));
          expectSame(back, data);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('1-byte chunks and 1 MiB chunks', async () => {
    const key = randomFileKey();
    const small = randomData(300);
    const smallCt = await readAll(encryptStream(key, CONTEXT, chunked(small, [1])));
    expectSame(await readAll(decryptStream(key, CONTEXT, chunked(smallCt, [1]))), small);
    // Single bytes around the record boundaries of a multi-record file.
    const data = randomData(2 * RS + 3);
    const ct = await readAll(encryptStream(key, CONTEXT, chunked(data, [RS - 2, 1, 1, 1, 1])));
    expectSame(await readAll(decryptStream(key, CONTEXT, chunked(ct, [HEADER_SIZE - 1, 1, 1, ERS - 3, 1, 1, 1, 1]))), data);
    const big = randomData(1024 * 1024 + 7);
    const bigCt = await readAll(encryptStream(key, CONTEXT, chunked(big, [1024 * 1024])));
    expectSame(await readAll(decryptStream(key, CONTEXT, chunked(bigCt, [1024 * 1024]))), big);
  });

  it('uses a fresh salt per encryption: the same input never gives the same ciphertext', async () => {
    const key = randomFileKey();
    const data = randomData(100);
    const a = await encryptBytes(key, CONTEXT, data);
    const b = await encryptBytes(key, CONTEXT, data);
    expect(a).not.toEqual(b);
  });
});

describe('encrypting again under an earlier header (resumed uploads)', () => {
  it('gives the earlier ciphertext byte for byte, in any chunking', async () => {
    const key = randomFileKey();
    for (const n of [0, 5, RS, 3 * RS + 5]) {
      const data = randomData(n);
      const first = await readAll(encryptStream(key, CONTEXT, chunked(data, [RS])));
      const again = await readAll(encryptStreamWithHeader(key, CONTEXT, chunked(data, [777, 1, RS]), first.subarray(0, HEADER_SIZE)));
      expectSame(again, first);
    }
  });

  it('a header made beforehand (createHeader) encrypts as encryptStream would, with a fresh salt each time', async () => {
    const key = randomFileKey();
    const data = randomData(RS + 9);
    const h1 = await createHeader(key, CONTEXT);
    const h2 = await createHeader(key, CONTEXT);
    expect(h1.length).toBe(HEADER_SIZE);
    expect(Buffer.from(h1).equals(Buffer.from(h2))).toBe(false);
    const ct = await readAll(encryptStreamWithHeader(key, CONTEXT, chunked(data, [RS]), h1));
    expectSame(ct.subarray(0, HEADER_SIZE), h1);
    expect(ct.length).toBe(ciphertextSize(data.length));
    expectSame(await decryptBytes(key, CONTEXT, ct), data);
  });

  it('refuses another key, another context, an altered header; another file gives other records', async () => {
    const key = randomFileKey();
    const data = randomData(2 * RS);
    const header = (await readAll(encryptStream(key, CONTEXT, chunked(data, [RS])))).slice(0, HEADER_SIZE);
    await expectCode(readAll(encryptStreamWithHeader(randomFileKey(), CONTEXT, chunked(data, [RS]), header)), 'WRONG_KEY');
    await expectCode(readAll(encryptStreamWithHeader(key, `${CONTEXT}x`, chunked(data, [RS]), header)), 'WRONG_KEY');
    for (const at of [0, 4, 6, HEADER_SIZE - 1]) {
      const altered = header.slice();
      altered[at]! ^= 1;
      await expectCode(readAll(encryptStreamWithHeader(key, CONTEXT, chunked(data, [RS]), altered)), 'BAD_HEADER', 'WRONG_KEY');
    }
    expect(() => encryptStreamWithHeader(key, CONTEXT, chunked(data, [RS]), header.subarray(1))).toThrow(E2eError);
    // The same header over a changed file: the records differ from the changed byte's record on (which is
    // why the web app compares the pieces the server holds before it goes on).
    const changed = data.slice();
    changed[RS + 3]! ^= 1;
    const a = await readAll(encryptStreamWithHeader(key, CONTEXT, chunked(data, [RS]), header));
    const b = await readAll(encryptStreamWithHeader(key, CONTEXT, chunked(changed, [RS]), header));
    expectSame(b.subarray(0, HEADER_SIZE + ERS), a.subarray(0, HEADER_SIZE + ERS));
    expect(Buffer.from(b.subarray(HEADER_SIZE + ERS)).equals(Buffer.from(a.subarray(HEADER_SIZE + ERS)))).toBe(false);
  });
});

describe('attacks on the record format', () => {
  const key = randomFileKey();
  const data = randomData(2 * RS + 100); // two full records and a final one of 100 bytes
  const ctPromise = encryptBytes(key, CONTEXT, data);

  it('dropping final records at a record boundary is TRUNCATED', async () => {
    const ct = await ctPromise;
    await expectRejected(key, CONTEXT, ct.slice(0, HEADER_SIZE + 2 * ERS), 'TRUNCATED');
    await expectRejected(key, CONTEXT, ct.slice(0, HEADER_SIZE + ERS), 'TRUNCATED');
    await expectRejected(key, CONTEXT, ct.slice(0, HEADER_SIZE), 'TRUNCATED');
    await expectRejected(key, CONTEXT, ct.slice(0, HEADER_SIZE - 1), 'TRUNCATED');
    await expectRejected(key, CONTEXT, new Uint8Array(0), 'TRUNCATED');
  });

  it('dropping the empty final record of a file of whole records is TRUNCATED', async () => {
    const whole = randomData(2 * RS);
    const ct = await encryptBytes(key, CONTEXT, whole);
    expect(ct.length).toBe(HEADER_SIZE + 2 * ERS + TAG_SIZE);
    await expectRejected(key, CONTEXT, ct.slice(0, HEADER_SIZE + 2 * ERS), 'TRUNCATED');
  });

  it('cutting the ciphertext anywhere fails', async () => {
    const ct = await ctPromise;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: ct.length - 1 }), async (cut) => {
        await expectCode(decryptBytes(key, CONTEXT, ct.slice(0, cut)), 'TRUNCATED', 'TAMPERED');
      }),
      { numRuns: 40 },
    );
  });

  it('swapped, duplicated or reordered records are TAMPERED', async () => {
    const { header, records: r } = records(await ctPromise);
    const [r0, r1, r2] = r as [Uint8Array, Uint8Array, Uint8Array];
    await expectRejected(key, CONTEXT, join(header, r1, r0, r2), 'TAMPERED');
    await expectRejected(key, CONTEXT, join(header, r0, r0, r2), 'TAMPERED');
    await expectRejected(key, CONTEXT, join(header, r0, r1, r1, r2), 'TAMPERED');
    await expectRejected(key, CONTEXT, join(header, r1, r2), 'TAMPERED');
    // The final record moved up: it would be read as a (short) final record at index 1.
    await expectRejected(key, CONTEXT, join(header, r0, r2), 'TAMPERED');
  });

  it('a record from another file under the same key is TAMPERED (other context, or same context and other salt)', async () => {
    const { header, records: r } = records(await ctPromise);
    const otherContext = records(await encryptBytes(key, 'transfer:9999/file:1', randomData(2 * RS + 100)));
    const sameContext = records(await encryptBytes(key, CONTEXT, randomData(2 * RS + 100)));
    for (const other of [otherContext, sameContext]) {
      for (let i = 0; i < 3; i++) {
        const spliced = r.map((rec, j) => (j === i ? (other.records[i] ?? rec) : rec));
        await expectRejected(key, CONTEXT, join(header, ...spliced), 'TAMPERED');
      }
      // Another file's header in front of our records: a valid header, but not for these records.
      await expectRejected(key, CONTEXT, join(other.header, ...r), other === otherContext ? 'WRONG_KEY' : 'TAMPERED');
    }
  });

  it('moving a file into another transfer (other context) is WRONG_KEY', async () => {
    await expectRejected(key, 'transfer:9999/file:1', await ctPromise, 'WRONG_KEY');
    await expectRejected(key, `${CONTEXT} `, await ctPromise, 'WRONG_KEY');
  });

  it('a wrong key is WRONG_KEY', async () => {
    await expectRejected(randomFileKey(), CONTEXT, await ctPromise, 'WRONG_KEY');
  });

  it('a flipped byte in the header fails with the field it hits', async () => {
    const ct = await ctPromise;
    const flip = (i: number) => {
      const c = ct.slice();
      c[i] = (c[i] ?? 0) ^ 0x01;
      return c;
    };
    for (let i = 0; i < 9; i++) await expectRejected(key, CONTEXT, flip(i), 'BAD_HEADER'); // magic, version, record size
    for (let i = 9; i < HEADER_SIZE; i++) await expectCode(decryptBytes(key, CONTEXT, flip(i)), 'WRONG_KEY'); // salt, commitment
  });

  it('a flipped bit in any record body or tag is TAMPERED', async () => {
    const ct = await ctPromise;
    const positions = [HEADER_SIZE, HEADER_SIZE + RS - 1, HEADER_SIZE + RS, HEADER_SIZE + ERS - 1, HEADER_SIZE + ERS + 5, ct.length - TAG_SIZE - 1, ct.length - TAG_SIZE, ct.length - 1];
    for (const i of positions) {
      const c = ct.slice();
      c[i] = (c[i] ?? 0) ^ 0x80;
      await expectRejected(key, CONTEXT, c, 'TAMPERED');
    }
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: HEADER_SIZE, max: ct.length - 1 }), fc.integer({ min: 0, max: 7 }), async (i, bit) => {
        const c = ct.slice();
        c[i] = (c[i] ?? 0) ^ (1 << bit);
        await expectCode(decryptBytes(key, CONTEXT, c), 'TAMPERED');
      }),
      { numRuns: 30 },
    );
  });

  it('bytes appended after the final record are TAMPERED', async () => {
    const ct = await ctPromise;
    for (const garbage of [randomData(1), randomData(16), randomData(ERS - 100 - TAG_SIZE), randomData(ERS), randomData(ERS + 17)]) {
      await expectRejected(key, CONTEXT, join(ct, garbage), 'TAMPERED');
    }
    const { header, records: r } = records(ct);
    await expectRejected(key, CONTEXT, join(header, ...r, r[2] ?? new Uint8Array()), 'TAMPERED');
    // Even an empty file: garbage after its only (final) record.
    const empty = await encryptBytes(key, CONTEXT, new Uint8Array(0));
    await expectRejected(key, CONTEXT, join(empty, randomData(3)), 'TAMPERED');
  });

  it('the stream errors out with the E2eError and releases nothing of an altered record', async () => {
    const ct = (await ctPromise).slice();
    ct[HEADER_SIZE + ERS + 10] = (ct[HEADER_SIZE + ERS + 10] ?? 0) ^ 1; // record 1
    const reader = decryptStream(key, CONTEXT, chunked(ct, [4096])).getReader();
    const first = await reader.read();
    expectSame(first.value ?? new Uint8Array(0), data.slice(0, RS)); // record 0 is intact and authentic
    await expect(reader.read()).rejects.toMatchObject({ name: 'E2eError', code: 'TAMPERED' });
  });

  it('rejects bad arguments', async () => {
    expect(() => encryptStream(new Uint8Array(31), CONTEXT, chunked(new Uint8Array(1), [1]))).toThrow(E2eError);
    expect(() => decryptStream(new Uint8Array(33), CONTEXT, chunked(new Uint8Array(1), [1]))).toThrow(E2eError);
    await expectCode(encryptBytes(new Uint8Array(16), CONTEXT, new Uint8Array(1)), 'BAD_INPUT');
    const notBytes = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue('text' as unknown as Uint8Array);
        c.close();
      },
    });
    await expectCode(readAll(encryptStream(key, CONTEXT, notBytes)), 'BAD_INPUT');
  });
});

describe('constant memory', () => {
  it('streams 64 MiB through encrypt and decrypt with bounded heap growth', async () => {
    const TOTAL = 64 * 1024 * 1024;
    const CHUNK = 1024 * 1024;
    let produced = 0;
    // Chunk k is filled with the byte k & 255, so the output can be checked without keeping the input.
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (produced >= TOTAL) {
          controller.close();
          return;
        }
        controller.enqueue(new Uint8Array(CHUNK).fill((produced / CHUNK) & 255));
        produced += CHUNK;
      },
    });
    const key = randomFileKey();
    const before = process.memoryUsage();
    let maxHeapGrowth = 0;
    let maxBufferGrowth = 0;
    let received = 0;
    const reader = decryptStream(key, CONTEXT, encryptStream(key, CONTEXT, source)).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (let i = 0; i < value.length; i += 4093) {
        if (value[i] !== (Math.floor((received + i) / CHUNK) & 255)) throw new Error(`wrong byte at ${received + i}`);
      }
      received += value.length;
      const now = process.memoryUsage();
      maxHeapGrowth = Math.max(maxHeapGrowth, now.heapUsed - before.heapUsed);
      maxBufferGrowth = Math.max(maxBufferGrowth, now.arrayBuffers - before.arrayBuffers);
    }
    expect(received).toBe(TOTAL);
    expect(maxHeapGrowth).toBeLessThan(32 * 1024 * 1024);
    // ArrayBuffers live outside the heap: bound them too, loosely, since unreferenced ones are only
    // freed when the collector runs. Holding the file would mean ≥ 64 MiB here (128 MiB for both sides).
    expect(maxBufferGrowth).toBeLessThan(56 * 1024 * 1024);
  });
});

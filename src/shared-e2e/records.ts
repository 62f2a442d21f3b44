/**
 * The record format of encrypted files (docs/e2e-format.md §2–§3), modelled on RFC 8188 and
 * timvisee/send's ece.js: a 57-byte header, then AES-256-GCM records of 65536 plaintext bytes.
 *
 * One code path serves streams and byte arrays: `Sealer` and `Opener` take input in any chunking
 * and hold at most one record, so memory stays constant whatever the file size.
 */
import { E2eError } from './errors.js';
import {
  ab,
  type Bytes,
  checkBytes,
  concat,
  constantTimeEqual,
  hkdf,
  importAesGcmKey,
  randomBytes,
  readU32be,
  u32be,
  utf8,
  type WebCryptoKey,
} from './encoding.js';

/** Plaintext bytes per record; every record but the final one holds exactly this many. */
export const RECORD_SIZE = 65536;
/** AES-GCM tag length in bytes. */
export const TAG_SIZE = 16;
/** Bytes of a file key. */
export const FILE_KEY_SIZE = 32;
/** Bytes of the header salt. */
export const SALT_SIZE = 16;
/** Bytes of the key commitment in the header. */
export const COMMITMENT_SIZE = 32;
/** "TRSE": Tresor end-to-end encrypted. */
export const MAGIC = Uint8Array.of(0x54, 0x52, 0x53, 0x45);
export const FORMAT_VERSION = 1;
/** magic (4) ‖ version (1) ‖ record size (4) ‖ salt (16) ‖ commitment (32). */
export const HEADER_SIZE = MAGIC.length + 1 + 4 + SALT_SIZE + COMMITMENT_SIZE;
/** Where the salt starts in the header (after magic, version and record size). */
const SALT_OFFSET = MAGIC.length + 1 + 4;
/** Records are counted in 32 bits: at most 2^32 records (256 TiB) per file. */
export const MAX_RECORDS = 2 ** 32;

const NONCE_SIZE = 12;
const ENCRYPTED_RECORD_SIZE = RECORD_SIZE + TAG_SIZE;
const INFO_CONTENT = 'tresor-e2e/v1 content';
const INFO_NONCE = 'tresor-e2e/v1 nonce';
const INFO_COMMIT = 'tresor-e2e/v1 commit';
const AAD_NOT_FINAL = Uint8Array.of(0x00);
const AAD_FINAL = Uint8Array.of(0x01);

/** A fresh random 256-bit file key. */
export function randomFileKey(): Uint8Array {
  return randomBytes(FILE_KEY_SIZE);
}

/** Exact size of the ciphertext of `plainSize` plaintext bytes. */
export function ciphertextSize(plainSize: number): number {
  if (!Number.isSafeInteger(plainSize) || plainSize < 0) throw new E2eError('BAD_INPUT', 'plainSize must be a non-negative safe integer');
  const records = Math.floor(plainSize / RECORD_SIZE) + 1;
  if (records > MAX_RECORDS) throw new E2eError('TOO_LARGE', 'file too large for the record counter');
  return HEADER_SIZE + plainSize + records * TAG_SIZE;
}

/** Inverse of `ciphertextSize`; throws BAD_INPUT for a size no ciphertext can have. */
export function plaintextSize(cipherSize: number): number {
  if (!Number.isSafeInteger(cipherSize) || cipherSize < HEADER_SIZE + TAG_SIZE) {
    throw new E2eError('BAD_INPUT', 'not a possible ciphertext size');
  }
  const body = cipherSize - HEADER_SIZE;
  const full = Math.floor(body / ENCRYPTED_RECORD_SIZE);
  const last = body - full * ENCRYPTED_RECORD_SIZE;
  if (last < TAG_SIZE) throw new E2eError('BAD_INPUT', 'not a possible ciphertext size');
  return full * RECORD_SIZE + (last - TAG_SIZE);
}

/**
 * AES-256-GCM over one record under the content key. The format fixes the algorithm; the engine is
 * exchangeable: WebCrypto by default (browsers), Node's `crypto` where it is faster (see ./node.ts).
 * Both produce the same bytes (tested). `open` throws on a failed tag.
 */
export interface RecordAead {
  seal(iv: Bytes, additionalData: Bytes, plaintext: Uint8Array): Bytes | Promise<Bytes>;
  open(iv: Bytes, additionalData: Bytes, ciphertext: Uint8Array): Bytes | Promise<Bytes>;
}
/** Makes a `RecordAead` for a 32-byte content key; the caller wipes `rawKey` afterwards. */
export type RecordAeadFactory = (rawKey: Uint8Array, usage: 'encrypt' | 'decrypt') => Promise<RecordAead>;
/** Engine choice for the stream and byte functions. */
export interface RecordOptions {
  aead?: RecordAeadFactory | undefined;
}

/** The default engine: WebCrypto with a non-extractable key. */
export const webCryptoAead: RecordAeadFactory = async (rawKey, usage) => {
  const key: WebCryptoKey = await importAesGcmKey(rawKey, [usage]);
  return {
    async seal(iv, additionalData, plaintext) {
      return new Uint8Array(await globalThis.crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData, tagLength: 128 }, key, ab(plaintext)));
    },
    async open(iv, additionalData, ciphertext) {
      return new Uint8Array(await globalThis.crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData, tagLength: 128 }, key, ab(ciphertext)));
    },
  };
};

interface RecordKeys {
  readonly aead: RecordAead;
  readonly nonceBase: Bytes;
  readonly commitment: Bytes;
}

/** Derivations of §3: content key, nonce base and key commitment from (fileKey, salt, context). */
export async function deriveRecordKeys(
  fileKey: Uint8Array,
  salt: Uint8Array,
  context: string,
  usage: 'encrypt' | 'decrypt',
  aead: RecordAeadFactory = webCryptoAead,
): Promise<RecordKeys & { rawKey: Bytes }> {
  const ctx = utf8(context);
  const [rawKey, nonceBase, commitment] = await Promise.all([
    hkdf(fileKey, salt, concat(utf8(INFO_CONTENT), ctx), 32),
    hkdf(fileKey, salt, concat(utf8(INFO_NONCE), ctx), NONCE_SIZE),
    hkdf(fileKey, salt, concat(utf8(INFO_COMMIT), ctx), COMMITMENT_SIZE),
  ]);
  return { aead: await aead(rawKey, usage), rawKey, nonceBase, commitment };
}

/** nonce_i = nonceBase XOR (i as a 96-bit big-endian integer); i < 2^32. */
function recordNonce(nonceBase: Uint8Array, index: number): Bytes {
  const nonce = new Uint8Array(nonceBase);
  const counter = u32be(index);
  for (let j = 0; j < 4; j++) nonce[NONCE_SIZE - 4 + j] = (nonce[NONCE_SIZE - 4 + j] ?? 0) ^ (counter[j] ?? 0);
  return nonce;
}

function checkArgs(fileKey: unknown, context: unknown): void {
  checkBytes(fileKey, FILE_KEY_SIZE, 'fileKey');
  if (typeof context !== 'string') throw new E2eError('BAD_INPUT', 'context must be a string');
}

function buildHeader(salt: Uint8Array, commitment: Uint8Array): Bytes {
  return concat(MAGIC, Uint8Array.of(FORMAT_VERSION), u32be(RECORD_SIZE), salt, commitment);
}

/** Encrypts plaintext pushed in any chunking into header + records. */
export class Sealer {
  private readonly buffer = new Uint8Array(RECORD_SIZE);
  private fill = 0;
  private index = 0;

  private constructor(
    private readonly keys: RecordKeys,
    readonly header: Bytes,
  ) {}

  static async create(fileKey: Uint8Array, context: string, salt: Uint8Array = randomBytes(SALT_SIZE), aead?: RecordAeadFactory): Promise<Sealer> {
    checkArgs(fileKey, context);
    checkBytes(salt, SALT_SIZE, 'salt');
    const { rawKey, ...keys } = await deriveRecordKeys(fileKey, salt, context, 'encrypt', aead);
    rawKey.fill(0); // only the engine's key is kept
    return new Sealer(keys, buildHeader(salt, keys.commitment));
  }

  /**
   * A sealer under the salt of an existing `header` (from `createHeader`, or of an earlier encryption):
   * BAD_HEADER for another format or version, WRONG_KEY when the key or context did not make it.
   */
  static async forHeader(fileKey: Uint8Array, context: string, header: Uint8Array, aead?: RecordAeadFactory): Promise<Sealer> {
    checkBytes(header, HEADER_SIZE, 'header');
    const sealer = await Sealer.create(fileKey, context, header.slice(SALT_OFFSET, SALT_OFFSET + SALT_SIZE), aead);
    if (!constantTimeEqual(sealer.header.subarray(0, SALT_OFFSET), header.subarray(0, SALT_OFFSET))) throw new E2eError('BAD_HEADER', 'not the header of a Tresor end-to-end encrypted file of this version');
    if (!constantTimeEqual(sealer.header, header)) throw new E2eError('WRONG_KEY', 'wrong file key or context for this header');
    return sealer;
  }

  private async seal(plaintext: Uint8Array, final: boolean): Promise<Bytes> {
    if (this.index >= MAX_RECORDS) throw new E2eError('TOO_LARGE', 'file too large for the record counter');
    const iv = recordNonce(this.keys.nonceBase, this.index++);
    return this.keys.aead.seal(iv, final ? AAD_FINAL : AAD_NOT_FINAL, plaintext);
  }

  /** Consumes `chunk`; calls `emit` for each completed (non-final) record. */
  async push(chunk: Uint8Array, emit: (record: Bytes) => void): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.fill === 0 && chunk.length - offset >= RECORD_SIZE) {
        // A whole record straight from the input, without a copy into the buffer.
        emit(await this.seal(chunk.subarray(offset, offset + RECORD_SIZE), false));
        offset += RECORD_SIZE;
        continue;
      }
      const take = Math.min(RECORD_SIZE - this.fill, chunk.length - offset);
      this.buffer.set(chunk.subarray(offset, offset + take), this.fill);
      this.fill += take;
      offset += take;
      // A full buffer is never the final record: the final record holds 0..RECORD_SIZE-1 bytes.
      if (this.fill === RECORD_SIZE) {
        emit(await this.seal(this.buffer, false));
        this.fill = 0;
      }
    }
  }

  /** Seals the final record (0..RECORD_SIZE-1 bytes). */
  finish(): Promise<Bytes> {
    return this.seal(this.buffer.subarray(0, this.fill), true);
  }
}

/** Decrypts header + records pushed in any chunking; emits each record's plaintext once authenticated. */
export class Opener {
  private readonly header = new Uint8Array(HEADER_SIZE);
  private headerFill = 0;
  private keys: RecordKeys | undefined;
  private readonly buffer = new Uint8Array(ENCRYPTED_RECORD_SIZE);
  private fill = 0;
  private index = 0;

  private readonly fileKey: Uint8Array;

  constructor(
    fileKey: Uint8Array,
    private readonly context: string,
    private readonly aead: RecordAeadFactory = webCryptoAead,
  ) {
    checkArgs(fileKey, context);
    this.fileKey = new Uint8Array(fileKey);
  }

  private async readHeader(): Promise<RecordKeys> {
    const h = this.header;
    if (!constantTimeEqual(h.subarray(0, MAGIC.length), MAGIC)) throw new E2eError('BAD_HEADER', 'not a Tresor end-to-end encrypted file (bad magic)');
    if (h[MAGIC.length] !== FORMAT_VERSION) throw new E2eError('BAD_HEADER', `unsupported format version ${h[MAGIC.length] ?? -1}`);
    const rs = readU32be(h, MAGIC.length + 1);
    if (rs !== RECORD_SIZE) throw new E2eError('BAD_HEADER', `unsupported record size ${rs}`);
    const salt = h.slice(SALT_OFFSET, SALT_OFFSET + SALT_SIZE);
    const { rawKey, ...keys } = await deriveRecordKeys(this.fileKey, salt, this.context, 'decrypt', this.aead);
    rawKey.fill(0); // only the engine's key is kept
    this.fileKey.fill(0); // our copy; not needed after the header
    if (!constantTimeEqual(keys.commitment, h.subarray(SALT_OFFSET + SALT_SIZE))) {
      throw new E2eError('WRONG_KEY', 'wrong file key or context (or the header was altered)');
    }
    return keys;
  }

  private async open(keys: RecordKeys, record: Uint8Array, final: boolean): Promise<Bytes> {
    if (this.index >= MAX_RECORDS) throw new E2eError('TOO_LARGE', 'file too large for the record counter');
    const iv = recordNonce(keys.nonceBase, this.index++);
    try {
      return await keys.aead.open(iv, final ? AAD_FINAL : AAD_NOT_FINAL, record);
    } catch {
      throw new E2eError('TAMPERED', `record ${this.index - 1} failed authentication: the ciphertext was altered, reordered or spliced`);
    }
  }

  async push(chunk: Uint8Array, emit: (plaintext: Bytes) => void): Promise<void> {
    let offset = 0;
    if (this.keys === undefined) {
      const take = Math.min(HEADER_SIZE - this.headerFill, chunk.length);
      this.header.set(chunk.subarray(0, take), this.headerFill);
      this.headerFill += take;
      offset = take;
      if (this.headerFill < HEADER_SIZE) return;
      this.keys = await this.readHeader();
    }
    const keys = this.keys;
    while (offset < chunk.length) {
      const take = Math.min(ENCRYPTED_RECORD_SIZE - this.fill, chunk.length - offset);
      this.buffer.set(chunk.subarray(offset, offset + take), this.fill);
      this.fill += take;
      offset += take;
      // A full-length record is never final (the final record is shorter), so it can be opened now.
      if (this.fill === ENCRYPTED_RECORD_SIZE) {
        emit(await this.open(keys, this.buffer, false));
        this.fill = 0;
      }
    }
  }

  /** Opens the final record; the input has ended. */
  async finish(): Promise<Bytes> {
    if (this.keys === undefined) throw new E2eError('TRUNCATED', 'the ciphertext ends inside the header');
    if (this.fill === 0) throw new E2eError('TRUNCATED', 'the ciphertext ends without its final record');
    if (this.fill < TAG_SIZE) throw new E2eError('TRUNCATED', 'the ciphertext ends inside a record');
    return this.open(this.keys, this.buffer.subarray(0, this.fill), true);
  }
}

function asChunk(chunk: unknown): Uint8Array {
  if (!(chunk instanceof Uint8Array)) throw new E2eError('BAD_INPUT', 'stream chunks must be Uint8Array');
  return chunk;
}

/** Encrypts a stream of plaintext in any chunking; the result is header + records (§2). */
export function encryptStream(fileKey: Uint8Array, context: string, input: ReadableStream<Uint8Array>, options: RecordOptions = {}): ReadableStream<Uint8Array> {
  return encryptStreamWithSalt(fileKey, context, input, undefined, options);
}

/** @internal For the test vectors only: a fixed salt makes the output deterministic. Never use a salt twice. */
export function encryptStreamWithSalt(
  fileKey: Uint8Array,
  context: string,
  input: ReadableStream<Uint8Array>,
  salt: Uint8Array | undefined,
  options: RecordOptions = {},
): ReadableStream<Uint8Array> {
  return sealStream(fileKey, context, input, salt, undefined, options);
}

/**
 * A fresh header (random salt, key commitment) for `encryptStreamWithHeader`: for an encryption that may
 * have to be made again after an interruption, the header is chosen first and kept with a record of the
 * plaintext it is used for.
 */
export async function createHeader(fileKey: Uint8Array, context: string, options: RecordOptions = {}): Promise<Uint8Array> {
  checkArgs(fileKey, context);
  return (await Sealer.create(fileKey, context, undefined, options.aead)).header;
}

/**
 * Encrypts `input` under the salt of `header` (from `createHeader`, or of an earlier encryption with the
 * same key and context): for the same input the output is byte for byte the same, so an upload cut off
 * after n bytes goes on at byte n from a fresh start (after a page reload, say). The header must be one
 * that key made (its key commitment is checked first: WRONG_KEY otherwise). The same nonces encrypt the
 * input each time, so a header must only ever be used for one plaintext: the caller keeps a record of it
 * (the web app stores the plaintext's digests with the header, encrypted, and checks a file chosen again
 * against them before it encrypts anything).
 */
export function encryptStreamWithHeader(fileKey: Uint8Array, context: string, input: ReadableStream<Uint8Array>, header: Uint8Array, options: RecordOptions = {}): ReadableStream<Uint8Array> {
  checkBytes(header, HEADER_SIZE, 'header');
  return sealStream(fileKey, context, input, undefined, header, options);
}

function sealStream(
  fileKey: Uint8Array,
  context: string,
  input: ReadableStream<Uint8Array>,
  salt: Uint8Array | undefined,
  header: Uint8Array | undefined,
  options: RecordOptions,
): ReadableStream<Uint8Array> {
  checkArgs(fileKey, context);
  const key = new Uint8Array(fileKey);
  let sealer: Sealer | undefined;
  const transform = new TransformStream<Uint8Array, Uint8Array>({
    async start(controller) {
      try {
        sealer = header ? await Sealer.forHeader(key, context, header, options.aead) : await Sealer.create(key, context, salt, options.aead);
      } finally {
        key.fill(0);
      }
      controller.enqueue(sealer.header);
    },
    async transform(chunk, controller) {
      await sealer?.push(asChunk(chunk), (r) => controller.enqueue(r));
    },
    async flush(controller) {
      if (sealer) controller.enqueue(await sealer.finish());
    },
  });
  return input.pipeThrough(transform);
}

/**
 * Decrypts a stream made by `encryptStream`. Each record's plaintext is released only after it
 * authenticated; truncation is detected only when the input ends, so a consumer must treat the
 * output as provisional until the stream closes without error (§7).
 */
export function decryptStream(fileKey: Uint8Array, context: string, input: ReadableStream<Uint8Array>, options: RecordOptions = {}): ReadableStream<Uint8Array> {
  const opener = new Opener(fileKey, context, options.aead);
  const transform = new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      await opener.push(asChunk(chunk), (p) => {
        if (p.length > 0) controller.enqueue(p);
      });
    },
    async flush(controller) {
      const last = await opener.finish();
      if (last.length > 0) controller.enqueue(last);
    },
  });
  return input.pipeThrough(transform);
}

/** Encrypts a small byte array (e.g. a message text) in the same record format. */
export function encryptBytes(fileKey: Uint8Array, context: string, plaintext: Uint8Array, options: RecordOptions = {}): Promise<Uint8Array> {
  return encryptBytesWithSalt(fileKey, context, plaintext, undefined, options);
}

/** @internal For the test vectors only: a fixed salt makes the output deterministic. Never use a salt twice. */
export async function encryptBytesWithSalt(fileKey: Uint8Array, context: string, plaintext: Uint8Array, salt: Uint8Array | undefined, options: RecordOptions = {}): Promise<Uint8Array> {
  checkArgs(fileKey, context);
  if (!(plaintext instanceof Uint8Array)) throw new E2eError('BAD_INPUT', 'plaintext must be a Uint8Array');
  const sealer = await Sealer.create(fileKey, context, salt, options.aead);
  const parts: Uint8Array[] = [sealer.header];
  await sealer.push(plaintext, (r) => parts.push(r));
  parts.push(await sealer.finish());
  return concat(...parts);
}

/** Decrypts the output of `encryptBytes` (or of `encryptStream`, held in memory). */
export async function decryptBytes(fileKey: Uint8Array, context: string, ciphertext: Uint8Array, options: RecordOptions = {}): Promise<Uint8Array> {
  checkArgs(fileKey, context);
  if (!(ciphertext instanceof Uint8Array)) throw new E2eError('BAD_INPUT', 'ciphertext must be a Uint8Array');
  const opener = new Opener(fileKey, context, options.aead);
  const parts: Uint8Array[] = [];
  await opener.push(ciphertext, (p) => parts.push(p));
  parts.push(await opener.finish());
  return concat(...parts);
}

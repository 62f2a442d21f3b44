/**
 * Byte helpers that run unchanged in browsers and Node (no Buffer, no node: imports).
 */
import { E2eError } from './errors.js';

/** A Uint8Array backed by a plain ArrayBuffer: what WebCrypto's BufferSource accepts. */
export type Bytes = Uint8Array<ArrayBuffer>;

/**
 * WebCrypto's key types, named without relying on the DOM lib (Node's types have no global
 * `CryptoKey`), so the module type-checks under both the server and the browser configuration.
 */
export type WebCryptoKey = Awaited<ReturnType<typeof globalThis.crypto.subtle.importKey>>;
export interface WebCryptoKeyPair {
  readonly publicKey: WebCryptoKey;
  readonly privateKey: WebCryptoKey;
}

const encoder = new TextEncoder();

export function utf8(text: string): Bytes {
  return encoder.encode(text) as Bytes;
}

/** Returns `u` itself when it is ArrayBuffer-backed, else a copy that is. */
export function ab(u: Uint8Array): Bytes {
  return u.buffer instanceof ArrayBuffer ? (u as Bytes) : new Uint8Array(u);
}

export function concat(...parts: readonly Uint8Array[]): Bytes {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function u32be(n: number): Bytes {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

export function readU32be(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, false);
}

/** Compares two byte strings without an early exit on the first difference. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

const HEX = '0123456789abcdef';

export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += (HEX[b >> 4] ?? '') + (HEX[b & 15] ?? '');
  return out;
}

export function fromHex(hex: string): Bytes {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new E2eError('BAD_INPUT', 'not a hex string');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64URL_INDEX: Record<string, number> = Object.fromEntries([...B64URL].map((c, i) => [c, i]));

/** RFC 4648 §5 base64url without padding. */
export function toBase64Url(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += (B64URL[(n >> 18) & 63] ?? '') + (B64URL[(n >> 12) & 63] ?? '') + (B64URL[(n >> 6) & 63] ?? '') + (B64URL[n & 63] ?? '');
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = (bytes[i] ?? 0) << 16;
    out += (B64URL[(n >> 18) & 63] ?? '') + (B64URL[(n >> 12) & 63] ?? '');
  } else if (rest === 2) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8);
    out += (B64URL[(n >> 18) & 63] ?? '') + (B64URL[(n >> 12) & 63] ?? '') + (B64URL[(n >> 6) & 63] ?? '');
  }
  return out;
}

/**
 * Strict base64url decoding: the URL-safe alphabet only, no padding, no whitespace, and the unused
 * low bits of the last character must be zero (so every byte string has exactly one encoding).
 */
export function fromBase64Url(text: string): Bytes {
  if (text.length % 4 === 1) throw new E2eError('BAD_INPUT', 'not base64url: impossible length');
  const values: number[] = [];
  for (const c of text) {
    const v = B64URL_INDEX[c];
    if (v === undefined) throw new E2eError('BAD_INPUT', 'not base64url: character outside the URL-safe alphabet');
    values.push(v);
  }
  const out = new Uint8Array(Math.floor((values.length * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 3 < values.length; i += 4) {
    const n = ((values[i] ?? 0) << 18) | ((values[i + 1] ?? 0) << 12) | ((values[i + 2] ?? 0) << 6) | (values[i + 3] ?? 0);
    out[o++] = (n >> 16) & 255;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  const rest = values.length - i;
  if (rest === 2) {
    const n = ((values[i] ?? 0) << 18) | ((values[i + 1] ?? 0) << 12);
    if ((n & 0xffff) !== 0) throw new E2eError('BAD_INPUT', 'not base64url: non-canonical final character');
    out[o++] = (n >> 16) & 255;
  } else if (rest === 3) {
    const n = ((values[i] ?? 0) << 18) | ((values[i + 1] ?? 0) << 12) | ((values[i + 2] ?? 0) << 6);
    if ((n & 0xff) !== 0) throw new E2eError('BAD_INPUT', 'not base64url: non-canonical final character');
    out[o++] = (n >> 16) & 255;
    out[o++] = (n >> 8) & 255;
  }
  return out;
}

/** Cryptographically secure random bytes (crypto.getRandomValues caps one call at 65536 bytes). */
export function randomBytes(length: number): Bytes {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(length, i + 65536)));
  return out;
}

export function sha256(data: Uint8Array): Promise<Bytes> {
  return globalThis.crypto.subtle.digest('SHA-256', ab(data)).then((d) => new Uint8Array(d));
}

/** HKDF-SHA-256 (RFC 5869) through WebCrypto: `length` bytes of OKM. */
export async function hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Bytes> {
  const key = await globalThis.crypto.subtle.importKey('raw', ab(ikm), 'HKDF', false, ['deriveBits']);
  const bits = await globalThis.crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: ab(salt), info: ab(info) }, key, length * 8);
  return new Uint8Array(bits);
}

export function importAesGcmKey(raw: Uint8Array, usages: ('encrypt' | 'decrypt')[]): Promise<WebCryptoKey> {
  return globalThis.crypto.subtle.importKey('raw', ab(raw), { name: 'AES-GCM', length: 256 }, false, usages);
}

export function checkBytes(value: unknown, length: number, what: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new E2eError('BAD_INPUT', `${what} must be a Uint8Array of ${length} bytes`);
  }
  return value;
}

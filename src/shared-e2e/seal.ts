/**
 * Sealing a private key under the user's SecuPass (docs/e2e-format.md §6): Argon2id (RFC 9106,
 * @noble/hashes, since WebCrypto has none) derives an AES-256-GCM key; the parameters and salt are
 * stored in the sealed blob and authenticated as associated data.
 */
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { E2eError } from './errors.js';
import { ab, type Bytes, checkBytes, concat, fromBase64Url, importAesGcmKey, randomBytes, readU32be, toBase64Url, u32be, utf8, type WebCryptoKey } from './encoding.js';
import { type E2ePrivateKey, ECDH_PUBLIC_SIZE, exportEcdhScalar, MLKEM_SEED_SIZE, privateKeyFromParts } from './keys.js';

export interface Argon2Params {
  /** Memory in KiB. */
  readonly m: number;
  /** Passes. */
  readonly t: number;
  /** Lanes. */
  readonly p: number;
}

/** OWASP's first Argon2id recommendation: 19 MiB, 2 passes, 1 lane. */
export const DEFAULT_ARGON2_PARAMS: Argon2Params = Object.freeze({ m: 19456, t: 2, p: 1 });
/**
 * The floor: m ≥ 7168 KiB and m·t ≥ 35840 KiB-passes. It admits every Argon2id configuration OWASP
 * recommends (46 MiB/1, 19 MiB/2, 12 MiB/3, 9 MiB/4, 7 MiB/5) and nothing cheaper.
 */
export const ARGON2_FLOOR = Object.freeze({ minM: 7168, minMTimesT: 35840 });
/** The ceiling, so a hostile blob cannot make a browser spend unbounded memory or time. */
export const ARGON2_CEILING = Object.freeze({ maxM: 262144, maxT: 16, maxP: 16 });

export interface SealOptions {
  readonly m?: number;
  readonly t?: number;
  readonly p?: number;
  /** Accepts parameters below the floor. For tests only: such a blob is cheap to brute-force. */
  readonly allowWeakParamsForTests?: boolean;
}

export interface OpenOptions {
  /** Accepts a blob whose parameters are below the floor. For tests only. */
  readonly allowWeakParamsForTests?: boolean;
}

/** "TRSK": Tresor sealed key. */
const SEALED_MAGIC = Uint8Array.of(0x54, 0x52, 0x53, 0x4b);
export const SEALED_VERSION = 1;
const SALT_SIZE = 16;
const NONCE_SIZE = 12;
/** magic (4) ‖ version (1) ‖ m (4) ‖ t (4) ‖ p (4) ‖ salt (16) ‖ nonce (12). */
const SEALED_HEADER_SIZE = 4 + 1 + 12 + SALT_SIZE + NONCE_SIZE;
/** d (32) ‖ ECDH public point (65) ‖ ML-KEM seed (64). */
const MATERIAL_SIZE = 32 + ECDH_PUBLIC_SIZE + MLKEM_SEED_SIZE;
export const SEALED_SIZE = SEALED_HEADER_SIZE + MATERIAL_SIZE + 16;

function checkParams(params: Argon2Params, allowWeak: boolean): void {
  const { m, t, p } = params;
  if (![m, t, p].every((v) => Number.isSafeInteger(v) && v >= 1)) throw new E2eError('WEAK_PARAMS', 'Argon2id parameters must be positive integers');
  if (m < 8 * p) throw new E2eError('WEAK_PARAMS', 'Argon2id needs m ≥ 8·p');
  if (m > ARGON2_CEILING.maxM || t > ARGON2_CEILING.maxT || p > ARGON2_CEILING.maxP) {
    throw new E2eError('WEAK_PARAMS', 'Argon2id parameters above the ceiling (m ≤ 256 MiB, t ≤ 16, p ≤ 16)');
  }
  if (!allowWeak && (m < ARGON2_FLOOR.minM || m * t < ARGON2_FLOOR.minMTimesT)) {
    throw new E2eError('WEAK_PARAMS', 'Argon2id parameters below the floor (m ≥ 7168 KiB and m·t ≥ 35840)');
  }
}

function secupassBytes(secupass: unknown): Bytes {
  if (typeof secupass !== 'string' || secupass.length === 0) throw new E2eError('BAD_INPUT', 'the SecuPass must be a non-empty string');
  // NFC, so that the same SecuPass typed on different systems gives the same bytes.
  return utf8(secupass.normalize('NFC'));
}

async function deriveSealKey(secupass: Bytes, salt: Uint8Array, params: Argon2Params, usage: 'encrypt' | 'decrypt'): Promise<WebCryptoKey> {
  let raw: Uint8Array;
  try {
    raw = await argon2idAsync(secupass, salt, { m: params.m, t: params.t, p: params.p, dkLen: 32, version: 0x13 });
  } catch {
    throw new E2eError('WEAK_PARAMS', 'Argon2id refused these parameters');
  } finally {
    secupass.fill(0);
  }
  const key = await importAesGcmKey(raw, [usage]);
  raw.fill(0);
  return key;
}

/** Seals `privateKey` under `secupass`; returns the base64url form of the layout in §6. */
export function sealPrivateKey(privateKey: E2ePrivateKey, secupass: string, params?: SealOptions): Promise<string> {
  return sealPrivateKeyWith(privateKey, secupass, params, undefined);
}

/** @internal Fixed salt and nonce for the test vectors only. */
export async function sealPrivateKeyWith(
  privateKey: E2ePrivateKey,
  secupass: string,
  options: SealOptions | undefined,
  fixed: { salt: Uint8Array; nonce: Uint8Array } | undefined,
): Promise<string> {
  const params: Argon2Params = {
    m: options?.m ?? DEFAULT_ARGON2_PARAMS.m,
    t: options?.t ?? DEFAULT_ARGON2_PARAMS.t,
    p: options?.p ?? DEFAULT_ARGON2_PARAMS.p,
  };
  checkParams(params, options?.allowWeakParamsForTests === true);
  const password = secupassBytes(secupass);
  const salt = fixed ? checkBytes(fixed.salt, SALT_SIZE, 'salt') : randomBytes(SALT_SIZE);
  const nonce = fixed ? checkBytes(fixed.nonce, NONCE_SIZE, 'nonce') : randomBytes(NONCE_SIZE);
  const header = concat(SEALED_MAGIC, Uint8Array.of(SEALED_VERSION), u32be(params.m), u32be(params.t), u32be(params.p), salt, nonce);
  const d = await exportEcdhScalar(privateKey);
  const material = concat(d, privateKey.publicKey.ecdh, privateKey.mlkemSeed);
  d.fill(0);
  checkBytes(material, MATERIAL_SIZE, 'private key material');
  const key = await deriveSealKey(password, salt, params, 'encrypt');
  const sealed = await globalThis.crypto.subtle.encrypt({ name: 'AES-GCM', iv: ab(nonce), additionalData: header, tagLength: 128 }, key, material);
  material.fill(0);
  return toBase64Url(concat(header, new Uint8Array(sealed)));
}

/** The Argon2id parameters stored in a sealed key, e.g. to decide whether to re-seal with stronger ones. */
export function sealedKeyParams(sealed: string | Uint8Array): Argon2Params {
  const bytes = parseSealed(sealed);
  return { m: readU32be(bytes, 5), t: readU32be(bytes, 9), p: readU32be(bytes, 13) };
}

function parseSealed(sealed: string | Uint8Array): Uint8Array {
  const bytes = typeof sealed === 'string' ? fromBase64Url(sealed) : sealed;
  if (!(bytes instanceof Uint8Array) || bytes.length < 5) throw new E2eError('BAD_HEADER', 'not a sealed private key');
  for (let i = 0; i < 4; i++) if (bytes[i] !== SEALED_MAGIC[i]) throw new E2eError('BAD_HEADER', 'not a sealed private key (bad magic)');
  if (bytes[4] !== SEALED_VERSION) throw new E2eError('BAD_HEADER', `unsupported sealed-key version ${bytes[4] ?? -1}`);
  if (bytes.length !== SEALED_SIZE) throw new E2eError('BAD_HEADER', `a sealed key has ${SEALED_SIZE} bytes, not ${bytes.length}`);
  return bytes;
}

/** Opens a sealed private key; a wrong SecuPass (or an altered blob) gives E2eError('WRONG_KEY'). */
export async function openPrivateKey(sealed: string | Uint8Array, secupass: string, options?: OpenOptions): Promise<E2ePrivateKey> {
  const bytes = parseSealed(sealed);
  const params = sealedKeyParams(bytes);
  checkParams(params, options?.allowWeakParamsForTests === true);
  const password = secupassBytes(secupass);
  const header = bytes.slice(0, SEALED_HEADER_SIZE);
  const salt = header.slice(17, 17 + SALT_SIZE);
  const nonce = header.slice(17 + SALT_SIZE);
  const key = await deriveSealKey(password, salt, params, 'decrypt');
  let material: Bytes;
  try {
    material = new Uint8Array(
      await globalThis.crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: header, tagLength: 128 }, key, bytes.slice(SEALED_HEADER_SIZE)),
    );
  } catch {
    throw new E2eError('WRONG_KEY', 'wrong SecuPass (or the sealed key was altered)');
  }
  try {
    return await privateKeyFromParts(material.subarray(0, 32), material.subarray(32, 32 + ECDH_PUBLIC_SIZE), material.subarray(32 + ECDH_PUBLIC_SIZE));
  } finally {
    material.fill(0);
  }
}

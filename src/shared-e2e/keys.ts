/**
 * Hybrid recipient key pairs: ECDH P-256 (WebCrypto) + ML-KEM-768 (FIPS 203, @noble/post-quantum).
 * Layouts in docs/e2e-format.md §4.
 */
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { E2eError } from './errors.js';
import { ab, type Bytes, checkBytes, concat, constantTimeEqual, fromBase64Url, randomBytes, sha256, toBase64Url, toHex, type WebCryptoKey } from './encoding.js';

export const PUBLIC_KEY_VERSION = 1;
/** Uncompressed SEC 1 point: 0x04 ‖ X (32) ‖ Y (32). */
export const ECDH_PUBLIC_SIZE = 65;
export const MLKEM_PUBLIC_SIZE = 1184;
export const MLKEM_SEED_SIZE = 64;
export const MLKEM_CIPHERTEXT_SIZE = 1088;
/** version (1) ‖ ECDH public (65) ‖ ML-KEM-768 encapsulation key (1184). */
export const PUBLIC_KEY_SIZE = 1 + ECDH_PUBLIC_SIZE + MLKEM_PUBLIC_SIZE;

const ECDH_ALGORITHM = { name: 'ECDH', namedCurve: 'P-256' } as const;

export interface E2ePublicKey {
  /** Uncompressed P-256 point, 65 bytes. */
  readonly ecdh: Uint8Array;
  /** ML-KEM-768 encapsulation key, 1184 bytes. */
  readonly mlkem: Uint8Array;
}

export interface E2ePrivateKey {
  readonly publicKey: E2ePublicKey;
  /** The ECDH private key (extractable, so that it can be sealed again under a new SecuPass). */
  readonly ecdh: WebCryptoKey;
  /** The 64-byte ML-KEM seed d ‖ z (FIPS 203 §7.1), from which the decapsulation key is expanded. */
  readonly mlkemSeed: Uint8Array;
  /** The expanded ML-KEM-768 decapsulation key, 2400 bytes. */
  readonly mlkemSecretKey: Uint8Array;
}

export interface E2eKeyPair {
  readonly publicKey: E2ePublicKey;
  readonly privateKey: E2ePrivateKey;
}

/** A fresh hybrid key pair. */
export async function generateKeyPair(): Promise<E2eKeyPair> {
  const ecdh = await globalThis.crypto.subtle.generateKey(ECDH_ALGORITHM, true, ['deriveBits']);
  const ecdhPublic = new Uint8Array(await globalThis.crypto.subtle.exportKey('raw', ecdh.publicKey));
  const mlkemSeed = randomBytes(MLKEM_SEED_SIZE);
  const mlkem = ml_kem768.keygen(mlkemSeed);
  const publicKey: E2ePublicKey = { ecdh: ecdhPublic, mlkem: new Uint8Array(mlkem.publicKey) };
  return { publicKey, privateKey: { publicKey, ecdh: ecdh.privateKey, mlkemSeed, mlkemSecretKey: new Uint8Array(mlkem.secretKey) } };
}

/**
 * Rebuilds a private key from its components (used when opening a sealed key): checks that the
 * ECDH scalar belongs to the stored point and expands the ML-KEM seed.
 */
export async function privateKeyFromParts(ecdhD: Uint8Array, ecdhPublic: Uint8Array, mlkemSeed: Uint8Array): Promise<E2ePrivateKey> {
  checkBytes(ecdhD, 32, 'ECDH private scalar');
  checkBytes(mlkemSeed, MLKEM_SEED_SIZE, 'ML-KEM seed');
  const xy = checkEcdhPoint(ecdhPublic);
  let ecdh: WebCryptoKey;
  try {
    ecdh = await globalThis.crypto.subtle.importKey(
      'jwk',
      { kty: 'EC', crv: 'P-256', d: toBase64Url(ecdhD), x: toBase64Url(xy.x), y: toBase64Url(xy.y), ext: true },
      ECDH_ALGORITHM,
      true,
      ['deriveBits'],
    );
  } catch {
    throw new E2eError('BAD_KEY', 'the ECDH private key is invalid');
  }
  // Not every WebCrypto checks on import that d belongs to (x, y): check that ECDH with a throw-away
  // key agrees whichever side computes it.
  const probe = await globalThis.crypto.subtle.generateKey(ECDH_ALGORITHM, false, ['deriveBits']);
  const ours = await ecdhSharedSecret(ecdh, probe.publicKey);
  const theirs = await ecdhSharedSecret(probe.privateKey, await importEcdhPublic(ecdhPublic));
  if (!constantTimeEqual(ours, theirs)) throw new E2eError('BAD_KEY', 'the ECDH private key does not match its public key');
  const mlkem = ml_kem768.keygen(mlkemSeed);
  const publicKey: E2ePublicKey = { ecdh: new Uint8Array(ecdhPublic), mlkem: new Uint8Array(mlkem.publicKey) };
  return { publicKey, ecdh, mlkemSeed: new Uint8Array(mlkemSeed), mlkemSecretKey: new Uint8Array(mlkem.secretKey) };
}

/** The raw ECDH private scalar d (32 bytes) of a private key. */
export async function exportEcdhScalar(privateKey: E2ePrivateKey): Promise<Bytes> {
  let jwk: { d?: string };
  try {
    jwk = await globalThis.crypto.subtle.exportKey('jwk', privateKey.ecdh);
  } catch {
    throw new E2eError('BAD_KEY', 'the ECDH private key is not extractable');
  }
  if (typeof jwk.d !== 'string') throw new E2eError('BAD_KEY', 'the ECDH private key cannot be exported');
  return checkBytes(fromBase64Url(jwk.d), 32, 'ECDH private scalar') as Bytes;
}

function checkEcdhPoint(point: Uint8Array): { x: Uint8Array; y: Uint8Array } {
  if (!(point instanceof Uint8Array) || point.length !== ECDH_PUBLIC_SIZE || point[0] !== 0x04) {
    throw new E2eError('BAD_KEY', 'the ECDH public key must be an uncompressed P-256 point');
  }
  return { x: point.subarray(1, 33), y: point.subarray(33, 65) };
}

/** Imports an ECDH P-256 public point; WebCrypto rejects points not on the curve. */
export async function importEcdhPublic(point: Uint8Array): Promise<WebCryptoKey> {
  checkEcdhPoint(point);
  try {
    return await globalThis.crypto.subtle.importKey('raw', ab(point), ECDH_ALGORITHM, true, []);
  } catch {
    throw new E2eError('BAD_KEY', 'the ECDH public key is not a valid P-256 point');
  }
}

/** ECDH P-256: the 32-byte X coordinate of the shared point. */
export async function ecdhSharedSecret(privateKey: WebCryptoKey, publicKey: WebCryptoKey): Promise<Bytes> {
  const bits = await globalThis.crypto.subtle.deriveBits({ name: 'ECDH', public: publicKey }, privateKey, 256);
  return new Uint8Array(bits);
}

/** Binary encoding: version (1) ‖ ECDH point (65) ‖ ML-KEM-768 key (1184) = 1250 bytes. */
export function publicKeyToBytes(publicKey: E2ePublicKey): Bytes {
  checkEcdhPoint(publicKey.ecdh);
  checkBytes(publicKey.mlkem, MLKEM_PUBLIC_SIZE, 'ML-KEM public key');
  return concat(Uint8Array.of(PUBLIC_KEY_VERSION), publicKey.ecdh, publicKey.mlkem);
}

/** The base64url (no padding) form of `publicKeyToBytes`. */
export function encodePublicKey(publicKey: E2ePublicKey): string {
  return toBase64Url(publicKeyToBytes(publicKey));
}

/**
 * Parses and fully validates a public key (binary or base64url): version, lengths, the ECDH point
 * is on the curve, and the ML-KEM key passes the FIPS 203 §7.2 modulus check.
 */
export async function decodePublicKey(encoded: string | Uint8Array): Promise<E2ePublicKey> {
  const bytes = typeof encoded === 'string' ? fromBase64Url(encoded) : encoded;
  if (!(bytes instanceof Uint8Array) || bytes.length < 1) throw new E2eError('BAD_KEY', 'empty public key');
  if (bytes[0] !== PUBLIC_KEY_VERSION) throw new E2eError('BAD_HEADER', `unsupported public key version ${bytes[0] ?? -1}`);
  if (bytes.length !== PUBLIC_KEY_SIZE) throw new E2eError('BAD_KEY', `a public key has ${PUBLIC_KEY_SIZE} bytes, not ${bytes.length}`);
  const publicKey: E2ePublicKey = { ecdh: bytes.slice(1, 1 + ECDH_PUBLIC_SIZE), mlkem: bytes.slice(1 + ECDH_PUBLIC_SIZE) };
  await importEcdhPublic(publicKey.ecdh);
  checkMlkemPublic(publicKey.mlkem);
  return publicKey;
}

/** FIPS 203 §7.2 input check on an encapsulation key (noble runs it inside encapsulate). */
function checkMlkemPublic(mlkem: Uint8Array): void {
  try {
    ml_kem768.encapsulate(mlkem);
  } catch {
    throw new E2eError('BAD_KEY', 'the ML-KEM-768 public key fails the FIPS 203 input check');
  }
}

/** SHA-256 over `publicKeyToBytes(publicKey)`: 32 bytes. */
export function fingerprintBytes(publicKey: E2ePublicKey): Promise<Bytes> {
  return sha256(publicKeyToBytes(publicKey));
}

/**
 * The fingerprint for people and links: the full SHA-256 (256 bits) as 16 groups of 4 lowercase
 * hex digits joined by '-', e.g. `3f1c-09ab-…` (79 characters, URL-safe).
 */
export async function fingerprint(publicKey: E2ePublicKey): Promise<string> {
  const hex = toHex(await fingerprintBytes(publicKey));
  return hex.match(/.{4}/g)?.join('-') ?? hex;
}

/**
 * Whether `publicKey` has the fingerprint `expected` (as printed by `fingerprint`; case, spaces and
 * '-' are ignored). All 64 hex digits are required: a shortened fingerprint never matches.
 */
export async function fingerprintMatches(publicKey: E2ePublicKey, expected: string): Promise<boolean> {
  const canonical = canonicalFingerprint(expected);
  if (canonical === undefined) return false;
  return constantTimeEqual(new TextEncoder().encode(await fingerprint(publicKey)), new TextEncoder().encode(canonical));
}

/**
 * A fingerprint as people read it out and type it (any case; the groups joined by '-', spaces or nothing)
 * in the form `fingerprint` prints, or undefined when it is not exactly 64 hex digits.
 */
export function canonicalFingerprint(text: string): string | undefined {
  const hex = text.toLowerCase().replace(/[\s-]/g, '');
  return /^[0-9a-f]{64}$/.test(hex) ? hex.match(/.{4}/g)!.join('-') : undefined;
}

/** A public key the server names for someone a file key is to be wrapped for ('sender' or a recipient's id), with the fingerprint it states. */
export interface OfferedKey {
  holder: string;
  publicKey: string;
  fingerprint: string;
}
/** The recipients the server names a key for, as offered keys (the holder is the recipient's id). */
export function recipientKeys(recipients: readonly { id: string; publicKey?: string | undefined; fingerprint?: string | undefined }[]): OfferedKey[] {
  return recipients.flatMap((r) => (r.publicKey && r.fingerprint ? [{ holder: r.id, publicKey: r.publicKey, fingerprint: r.fingerprint }] : []));
}
/** An offered key that has the fingerprint stated for it: decoded, with its fingerprint as computed here. */
export interface CheckedKey {
  holder: string;
  publicKey: E2ePublicKey;
  fingerprint: string;
}

/**
 * Checks every key offered before anything is encrypted for one of them: each is decoded and validated,
 * its fingerprint computed here and compared with the one the server states (never taken on trust).
 * Answers the checked keys, or the first holder whose key does not have its stated fingerprint.
 */
export async function checkOfferedKeys(offered: readonly OfferedKey[]): Promise<{ keys: CheckedKey[] } | { mismatch: string }> {
  const keys: CheckedKey[] = [];
  for (const o of offered) {
    const publicKey = await decodePublicKey(o.publicKey);
    if (!(await fingerprintMatches(publicKey, o.fingerprint))) return { mismatch: o.holder };
    keys.push({ holder: o.holder, publicKey, fingerprint: await fingerprint(publicKey) });
  }
  return { keys };
}

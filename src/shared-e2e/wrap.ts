/**
 * Hybrid wrapping of a file key to a recipient (docs/e2e-format.md §5): ephemeral-static ECDH P-256
 * and ML-KEM-768, combined by HKDF-SHA-256 over both shared secrets, salted with the hash of a
 * transcript that binds both ciphertexts, the recipient's key and the caller's context.
 */
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { E2eError } from './errors.js';
import { ab, type Bytes, checkBytes, concat, hkdf, importAesGcmKey, sha256, utf8, type WebCryptoKey, type WebCryptoKeyPair } from './encoding.js';
import {
  ECDH_PUBLIC_SIZE,
  type E2ePrivateKey,
  type E2ePublicKey,
  ecdhSharedSecret,
  fingerprintBytes,
  importEcdhPublic,
  MLKEM_CIPHERTEXT_SIZE,
} from './keys.js';
import { FILE_KEY_SIZE } from './records.js';

export const WRAP_VERSION = 1;
const WRAPPED_KEY_CIPHERTEXT_SIZE = FILE_KEY_SIZE + 16;
/** version (1) ‖ ephemeral ECDH point (65) ‖ ML-KEM-768 ciphertext (1088) ‖ AES-GCM(file key) ‖ tag (48) = 1202. */
export const WRAPPED_KEY_SIZE = 1 + ECDH_PUBLIC_SIZE + MLKEM_CIPHERTEXT_SIZE + WRAPPED_KEY_CIPHERTEXT_SIZE;
const INFO_WRAP = 'tresor-e2e/v1 wrap';
const INFO_WRAP_NONCE = 'tresor-e2e/v1 wrap nonce';

/** transcript = version ‖ ephemeral ECDH point ‖ ML-KEM ciphertext ‖ SHA-256(recipient public key) ‖ UTF-8(context). */
export function wrapTranscript(ephemeralPublic: Uint8Array, mlkemCiphertext: Uint8Array, recipientFingerprint: Uint8Array, context: string): Bytes {
  return concat(Uint8Array.of(WRAP_VERSION), ephemeralPublic, mlkemCiphertext, recipientFingerprint, utf8(context));
}

/**
 * KEK = HKDF-SHA-256(ikm = ecdhSecret ‖ mlkemSecret, salt = transcriptHash, info "tresor-e2e/v1 wrap", 32);
 * nonce = the same with info "tresor-e2e/v1 wrap nonce", 12 bytes.
 */
export async function deriveWrapKeys(ecdhSecret: Uint8Array, mlkemSecret: Uint8Array, transcriptHash: Uint8Array): Promise<{ kek: Bytes; nonce: Bytes }> {
  checkBytes(ecdhSecret, 32, 'ECDH shared secret');
  checkBytes(mlkemSecret, 32, 'ML-KEM shared secret');
  const ikm = concat(ecdhSecret, mlkemSecret);
  const [kek, nonce] = await Promise.all([hkdf(ikm, transcriptHash, utf8(INFO_WRAP), 32), hkdf(ikm, transcriptHash, utf8(INFO_WRAP_NONCE), 12)]);
  ikm.fill(0);
  return { kek, nonce };
}

function checkContext(context: unknown): void {
  if (typeof context !== 'string') throw new E2eError('BAD_INPUT', 'context must be a string');
}

/** Wraps `fileKey` so that only the holder of `recipient`'s private key can unwrap it, for `context` only. */
export async function wrapFileKey(fileKey: Uint8Array, recipient: E2ePublicKey, context: string): Promise<Uint8Array> {
  return wrapFileKeyWith(fileKey, recipient, context, undefined);
}

/** @internal Fixed randomness (an ephemeral ECDH key pair, the 32-byte ML-KEM message) for the test vectors only. */
export async function wrapFileKeyWith(
  fileKey: Uint8Array,
  recipient: E2ePublicKey,
  context: string,
  fixed: { ephemeral: WebCryptoKeyPair; mlkemMessage: Uint8Array } | undefined,
): Promise<Uint8Array> {
  checkBytes(fileKey, FILE_KEY_SIZE, 'fileKey');
  checkContext(context);
  const recipientEcdh = await importEcdhPublic(recipient.ecdh);
  const ephemeral = fixed?.ephemeral ?? (await globalThis.crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']));
  const ephemeralPublic = new Uint8Array(await globalThis.crypto.subtle.exportKey('raw', ephemeral.publicKey));
  const ecdhSecret = await ecdhSharedSecret(ephemeral.privateKey, recipientEcdh);
  let encapsulation: { cipherText: Uint8Array; sharedSecret: Uint8Array };
  try {
    encapsulation = fixed ? ml_kem768.encapsulate(recipient.mlkem, fixed.mlkemMessage) : ml_kem768.encapsulate(recipient.mlkem);
  } catch {
    throw new E2eError('BAD_KEY', 'the recipient ML-KEM-768 public key is invalid');
  }
  const mlkemCiphertext = new Uint8Array(encapsulation.cipherText);
  const mlkemSecret = new Uint8Array(encapsulation.sharedSecret);
  const transcriptHash = await sha256(wrapTranscript(ephemeralPublic, mlkemCiphertext, await fingerprintBytes(recipient), context));
  const { kek, nonce } = await deriveWrapKeys(ecdhSecret, mlkemSecret, transcriptHash);
  ecdhSecret.fill(0);
  mlkemSecret.fill(0);
  const key = await importAesGcmKey(kek, ['encrypt']);
  kek.fill(0);
  const sealed = await globalThis.crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: transcriptHash, tagLength: 128 }, key, ab(fileKey));
  return concat(Uint8Array.of(WRAP_VERSION), ephemeralPublic, mlkemCiphertext, new Uint8Array(sealed));
}

/** Inverts `wrapFileKey`; a wrong recipient, another context or any altered byte gives an E2eError. */
export async function unwrapFileKey(wrapped: Uint8Array, recipient: E2ePrivateKey, context: string): Promise<Uint8Array> {
  checkContext(context);
  if (!(wrapped instanceof Uint8Array) || wrapped.length < 1) throw new E2eError('BAD_INPUT', 'wrapped must be a Uint8Array');
  if (wrapped[0] !== WRAP_VERSION) throw new E2eError('BAD_HEADER', `unsupported wrapped-key version ${wrapped[0] ?? -1}`);
  if (wrapped.length !== WRAPPED_KEY_SIZE) throw new E2eError('BAD_INPUT', `a wrapped key has ${WRAPPED_KEY_SIZE} bytes, not ${wrapped.length}`);
  const ephemeralPublic = wrapped.slice(1, 1 + ECDH_PUBLIC_SIZE);
  const mlkemCiphertext = wrapped.slice(1 + ECDH_PUBLIC_SIZE, 1 + ECDH_PUBLIC_SIZE + MLKEM_CIPHERTEXT_SIZE);
  const sealed = wrapped.slice(1 + ECDH_PUBLIC_SIZE + MLKEM_CIPHERTEXT_SIZE);
  let ephemeral: WebCryptoKey;
  try {
    ephemeral = await importEcdhPublic(ephemeralPublic);
  } catch {
    throw new E2eError('TAMPERED', 'the ephemeral ECDH key of the wrapped key is invalid: the wrapped key was altered');
  }
  const ecdhSecret = await ecdhSharedSecret(recipient.ecdh, ephemeral);
  // ML-KEM decapsulation never fails on a well-sized ciphertext (implicit rejection): a wrong
  // ciphertext gives a pseudo-random secret, and so a KEK that fails the AES-GCM check below.
  let mlkemSecret: Uint8Array;
  try {
    mlkemSecret = new Uint8Array(ml_kem768.decapsulate(mlkemCiphertext, recipient.mlkemSecretKey));
  } catch {
    throw new E2eError('BAD_KEY', 'the ML-KEM-768 private key is malformed');
  }
  const transcriptHash = await sha256(wrapTranscript(ephemeralPublic, mlkemCiphertext, await fingerprintBytes(recipient.publicKey), context));
  const { kek, nonce } = await deriveWrapKeys(ecdhSecret, mlkemSecret, transcriptHash);
  ecdhSecret.fill(0);
  mlkemSecret.fill(0);
  const key = await importAesGcmKey(kek, ['decrypt']);
  kek.fill(0);
  try {
    const fileKey = await globalThis.crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: transcriptHash, tagLength: 128 }, key, sealed);
    return new Uint8Array(fileKey);
  } catch {
    throw new E2eError('WRONG_KEY', 'the wrapped key is not for this recipient or this context, or it was altered');
  }
}

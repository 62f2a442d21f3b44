/**
 * Tresor end-to-end encryption for file transfers. Isomorphic: runs unchanged in browsers and in
 * Node ≥ 20.19, using only WebCrypto, Web Streams and the audited @noble libraries.
 * The format is specified in docs/e2e-format.md; test vectors in src/shared-e2e/vectors.json.
 */
export { type Bundle, decodeBundle, encodeBundle } from './bundle.js';
export { E2eError, type E2eErrorCode } from './errors.js';
export { MANIFEST_PIECE, manifestMatches, sealManifest } from './manifest.js';
export { fromBase64Url, fromHex, toBase64Url, toHex } from './encoding.js';
export {
  ciphertextSize,
  createHeader,
  decryptBytes,
  decryptStream,
  encryptBytes,
  encryptStream,
  encryptStreamWithHeader,
  FILE_KEY_SIZE,
  HEADER_SIZE,
  plaintextSize,
  RECORD_SIZE,
  randomFileKey,
  TAG_SIZE,
} from './records.js';
export {
  canonicalFingerprint,
  type CheckedKey,
  checkOfferedKeys,
  decodePublicKey,
  type E2eKeyPair,
  type E2ePrivateKey,
  type E2ePublicKey,
  encodePublicKey,
  fingerprint,
  fingerprintBytes,
  fingerprintMatches,
  generateKeyPair,
  type OfferedKey,
  PUBLIC_KEY_SIZE,
  publicKeyToBytes,
  recipientKeys,
} from './keys.js';
export { unwrapFileKey, WRAPPED_KEY_SIZE, wrapFileKey } from './wrap.js';
export {
  ARGON2_CEILING,
  ARGON2_FLOOR,
  type Argon2Params,
  DEFAULT_ARGON2_PARAMS,
  type OpenOptions,
  openPrivateKey,
  type SealOptions,
  sealedKeyParams,
  sealPrivateKey,
} from './seal.js';

import { createCipheriv, createDecipheriv, createHmac, diffieHellman, generateKeyPairSync, hkdfSync, createPublicKey, createPrivateKey } from 'node:crypto';
import { pooledRandomBytes } from './random.js';
import { hashRaw } from '@node-rs/argon2';
import { DomainError } from '../shared/errors.js';

/**
 * The building blocks of the key hierarchy (DESIGN §3), all from node:crypto and @node-rs/argon2:
 * AES-256-GCM with a bound context (AAD), HKDF-SHA-256, ECDH P-256 key wrapping (ephemeral-static,
 * ECIES-style), password-derived keys with Argon2id, and HMAC-SHA-256 blind indexes.
 */

export class KeyError extends DomainError {
  constructor(message = 'a key or ciphertext does not fit: it was changed, copied to another place, or belongs to another key') {
    super('FORBIDDEN', message);
  }
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** AES-256-GCM: iv ‖ ciphertext ‖ tag; the AAD binds where the value belongs, so a copied ciphertext fails. */
/** Nonces come from the CSPRNG pool (`pooledRandomBytes`): one `randomBytes` call per field costs more than the field's AES-GCM. */
const freshNonce = (): Buffer => pooledRandomBytes(IV_BYTES);

export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, aad: string): Buffer {
  const iv = freshNonce();
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

export function aeadOpen(key: Uint8Array, sealed: Uint8Array, aad: string): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new KeyError('a ciphertext is truncated');
  const box = Buffer.from(sealed);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, box.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(box.subarray(box.length - TAG_BYTES));
    return Buffer.concat([decipher.update(box.subarray(IV_BYTES, box.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw new KeyError();
  }
}

/** HKDF-SHA-256 to 32 bytes (RFC 5869). */
export function hkdf32(ikm: Uint8Array, info: string, salt: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'utf8'), 32));
}

export interface AccountKeyPair {
  /** SubjectPublicKeyInfo DER, base64. */
  publicKey: string;
  /** PKCS#8 DER. */
  privateKey: Buffer;
}

export function generateAccountKeyPair(): AccountKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'der' }),
  };
}

const WRAP_FORMAT = 'w1';

/**
 * Wraps a secret for the holder of a P-256 public key: a fresh ephemeral key pair, ECDH, HKDF over the
 * shared secret (salted with both public keys, bound to `context`), AES-256-GCM. Only the private key
 * opens it; `context` (e.g. "tenant-secret|<tenant>|<version>") must match when opening.
 */
export function wrapForPublicKey(secret: Uint8Array, recipientPublicKey: string, context: string): string {
  const recipient = createPublicKey({ key: Buffer.from(recipientPublicKey, 'base64'), format: 'der', type: 'spki' });
  const ephemeral = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ephemeralPublic = ephemeral.publicKey.export({ type: 'spki', format: 'der' });
  const shared = diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient });
  const key = hkdf32(shared, `tresor/wrap/v1|${context}`, Buffer.concat([ephemeralPublic, Buffer.from(recipientPublicKey, 'base64')]));
  return `${WRAP_FORMAT}.${ephemeralPublic.toString('base64url')}.${aeadSeal(key, secret, context).toString('base64url')}`;
}

export function unwrapWithPrivateKey(wrapped: string, privateKeyPkcs8: Uint8Array, context: string): Buffer {
  const [format, ephemeralB64, sealedB64] = wrapped.split('.');
  if (format !== WRAP_FORMAT || !ephemeralB64 || !sealedB64) throw new KeyError('a wrapped key has an unknown format');
  const privateKey = createPrivateKey({ key: Buffer.from(privateKeyPkcs8), format: 'der', type: 'pkcs8' });
  const ephemeralPublic = Buffer.from(ephemeralB64, 'base64url');
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey: createPublicKey({ key: ephemeralPublic, format: 'der', type: 'spki' }) });
  } catch {
    throw new KeyError();
  }
  const ownPublic = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const key = hkdf32(shared, `tresor/wrap/v1|${context}`, Buffer.concat([ephemeralPublic, ownPublic]));
  return aeadOpen(key, Buffer.from(sealedB64, 'base64url'), context);
}

/** Wraps under a symmetric key (an activation key, a session key): AES-256-GCM under HKDF(key, context). */
export function wrapWithKey(secret: Uint8Array, key: Uint8Array, context: string): string {
  return aeadSeal(hkdf32(key, `tresor/keywrap/v1|${context}`), secret, context).toString('base64url');
}

export function unwrapWithKey(wrapped: string, key: Uint8Array, context: string): Buffer {
  return aeadOpen(hkdf32(key, `tresor/keywrap/v1|${context}`), Buffer.from(wrapped, 'base64url'), context);
}

/** A key derived from a password with Argon2id (the raw 32-byte output), for sealing an account's private key. */
export async function passwordKey(password: string, salt: Uint8Array, params: { memoryKib: number; iterations: number; parallelism: number }): Promise<Buffer> {
  return hashRaw(password, {
    algorithm: 2 as never, // Argon2id
    memoryCost: params.memoryKib,
    timeCost: params.iterations,
    parallelism: params.parallelism,
    outputLen: 32,
    salt: Buffer.from(salt),
  });
}

// ---- Blind indexes ------------------------------------------------------------------------------

export type IndexKind = 'email' | 'phone' | 'text';

/**
 * Normalises a value before it is indexed, so that equal things match: Unicode NFC, case folded,
 * whitespace collapsed; e-mail addresses trimmed and lower-cased; phone numbers reduced to digits with a
 * leading + (a national 0 is kept: we cannot know the country).
 */
export function normaliseForIndex(kind: IndexKind, value: string): string {
  const text = value.normalize('NFC').trim();
  switch (kind) {
    case 'email':
      return text.toLowerCase();
    case 'phone': {
      const plus = text.startsWith('+') || text.startsWith('00');
      const digits = text.replace(/\D/g, '').replace(/^00/, '');
      return plus ? `+${digits}` : digits;
    }
    case 'text':
      return text.toLowerCase().replace(/\s+/gu, ' ');
  }
}

/**
 * Blind index: HMAC-SHA-256 under a per-field key, truncated to `bytes`. Lengths follow CipherSweet's rule
 * (see docs/keys.md): enough bits that coincidences stay few, few enough that the index alone does not
 * pin a value down; false positives are removed by decrypting the candidates.
 */
export function blindIndex(fieldKey: Uint8Array, kind: IndexKind, value: string, bytes: number): string {
  return createHmac('sha256', fieldKey).update(normaliseForIndex(kind, value), 'utf8').digest().subarray(0, bytes).toString('hex');
}

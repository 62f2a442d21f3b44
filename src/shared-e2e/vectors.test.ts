/**
 * Checks the implementation against the fixed vectors in vectors.json (docs/e2e-format.md §9).
 * The vectors were also checked by an independent implementation on node:crypto (OpenSSL) and
 * @node-rs/argon2; see the spec.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromBase64Url, fromHex, sha256, toHex, toBase64Url } from './encoding.js';
import { fingerprint, fingerprintBytes, privateKeyFromParts, publicKeyToBytes } from './keys.js';
import { decryptBytes, deriveRecordKeys, encryptBytesWithSalt } from './records.js';
import { openPrivateKey, sealPrivateKeyWith } from './seal.js';
import { deriveWrapKeys, unwrapFileKey, wrapFileKeyWith, wrapTranscript } from './wrap.js';

interface ContentVector {
  name: string;
  fileKey: string;
  salt: string;
  context: string;
  plaintext?: string;
  plaintextLength?: number;
  contentKey: string;
  nonceBase: string;
  commitment: string;
  header: string;
  ciphertextLength: number;
  ciphertextSha256: string;
  ciphertext?: string;
  finalRecord?: string;
}

const V = JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8')) as {
  content: ContentVector[];
  wrapKdf: Record<'ecdhSecret' | 'mlkemSecret' | 'ephemeralPublic' | 'mlkemCiphertext' | 'recipientFingerprint' | 'context' | 'transcriptHash' | 'kek' | 'nonce', string>;
  wrap: Record<
    | 'recipientEcdhD'
    | 'recipientMlkemSeed'
    | 'recipientPublicKey'
    | 'recipientFingerprint'
    | 'recipientFingerprintBytes'
    | 'ephemeralEcdhD'
    | 'ephemeralEcdhPublic'
    | 'mlkemMessage'
    | 'fileKey'
    | 'context'
    | 'wrapped',
    string
  >;
  sealedKey: { secupass: string; m: number; t: number; p: number; salt: string; nonce: string; sealedBase64Url: string };
};

const ECDH = { name: 'ECDH', namedCurve: 'P-256' } as const;

async function ecdhPairFromD(d: Uint8Array, point: Uint8Array) {
  const jwk = { kty: 'EC', crv: 'P-256', x: toBase64Url(point.subarray(1, 33)), y: toBase64Url(point.subarray(33)), ext: true };
  return {
    privateKey: await crypto.subtle.importKey('jwk', { ...jwk, d: toBase64Url(d) }, ECDH, false, ['deriveBits']),
    publicKey: await crypto.subtle.importKey('jwk', jwk, ECDH, true, []),
  };
}

describe('test vectors', () => {
  it.each(V.content.map((v) => [v.name, v] as const))('content: %s', async (_name, v) => {
    const fileKey = fromHex(v.fileKey);
    const derived = await deriveRecordKeys(fileKey, fromHex(v.salt), v.context, 'encrypt');
    expect(toHex(derived.rawKey)).toBe(v.contentKey);
    expect(toHex(derived.nonceBase)).toBe(v.nonceBase);
    expect(toHex(derived.commitment)).toBe(v.commitment);
    const plaintext = v.plaintext !== undefined ? fromHex(v.plaintext) : Uint8Array.from({ length: v.plaintextLength ?? 0 }, (_, i) => i % 251);
    const ct = await encryptBytesWithSalt(fileKey, v.context, plaintext, fromHex(v.salt));
    expect(ct.length).toBe(v.ciphertextLength);
    expect(toHex(ct.subarray(0, v.header.length / 2))).toBe(v.header);
    expect(toHex(await sha256(ct))).toBe(v.ciphertextSha256);
    if (v.ciphertext !== undefined) expect(toHex(ct)).toBe(v.ciphertext);
    if (v.finalRecord !== undefined) expect(toHex(ct.subarray(ct.length - v.finalRecord.length / 2))).toBe(v.finalRecord);
    expect(toHex(await decryptBytes(fileKey, v.context, ct))).toBe(toHex(plaintext));
  });

  it('wrap KEK derivation from fixed shared secrets', async () => {
    const k = V.wrapKdf;
    const transcriptHash = await sha256(wrapTranscript(fromHex(k.ephemeralPublic), fromHex(k.mlkemCiphertext), fromHex(k.recipientFingerprint), k.context));
    expect(toHex(transcriptHash)).toBe(k.transcriptHash);
    const { kek, nonce } = await deriveWrapKeys(fromHex(k.ecdhSecret), fromHex(k.mlkemSecret), transcriptHash);
    expect(toHex(kek)).toBe(k.kek);
    expect(toHex(nonce)).toBe(k.nonce);
  });

  it('a complete wrap with fixed randomness, and its unwrap', async () => {
    const w = V.wrap;
    const recipientPublic = fromHex(w.recipientPublicKey);
    const recipient = await privateKeyFromParts(fromHex(w.recipientEcdhD), recipientPublic.subarray(1, 66), fromHex(w.recipientMlkemSeed));
    expect(toHex(publicKeyToBytes(recipient.publicKey))).toBe(w.recipientPublicKey);
    expect(await fingerprint(recipient.publicKey)).toBe(w.recipientFingerprint);
    expect(toHex(await fingerprintBytes(recipient.publicKey))).toBe(w.recipientFingerprintBytes);
    const ephemeral = await ecdhPairFromD(fromHex(w.ephemeralEcdhD), fromHex(w.ephemeralEcdhPublic));
    const wrapped = await wrapFileKeyWith(fromHex(w.fileKey), recipient.publicKey, w.context, { ephemeral, mlkemMessage: fromHex(w.mlkemMessage) });
    expect(toHex(wrapped)).toBe(w.wrapped);
    expect(toHex(await unwrapFileKey(fromHex(w.wrapped), recipient, w.context))).toBe(w.fileKey);
  });

  it('a sealed private key with fixed salt and nonce (test-only Argon2id parameters)', async () => {
    const s = V.sealedKey;
    const w = V.wrap;
    const recipient = await privateKeyFromParts(fromHex(w.recipientEcdhD), fromHex(w.recipientPublicKey).subarray(1, 66), fromHex(w.recipientMlkemSeed));
    const sealed = await sealPrivateKeyWith(recipient, s.secupass, { m: s.m, t: s.t, p: s.p, allowWeakParamsForTests: true }, { salt: fromHex(s.salt), nonce: fromHex(s.nonce) });
    expect(sealed).toBe(s.sealedBase64Url);
    const opened = await openPrivateKey(fromBase64Url(s.sealedBase64Url), s.secupass, { allowWeakParamsForTests: true });
    expect(toHex(publicKeyToBytes(opened.publicKey))).toBe(w.recipientPublicKey);
  });
});

import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromBase64Url, sha256, toBase64Url } from './encoding.js';
import { E2eError, type E2eErrorCode } from './errors.js';
import {
  canonicalFingerprint,
  checkOfferedKeys,
  decodePublicKey,
  ecdhSharedSecret,
  encodePublicKey,
  fingerprint,
  fingerprintBytes,
  fingerprintMatches,
  generateKeyPair,
  importEcdhPublic,
  PUBLIC_KEY_SIZE,
  publicKeyToBytes,
} from './keys.js';
import { randomFileKey } from './records.js';
import { deriveWrapKeys, unwrapFileKey, WRAPPED_KEY_SIZE, wrapFileKey, wrapTranscript } from './wrap.js';

const CONTEXT = 'transfer:7f3a';

async function expectCode(promise: Promise<unknown>, ...codes: E2eErrorCode[]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected an E2eError').toBeInstanceOf(E2eError);
  expect(codes).toContain((error as E2eError).code);
}

const alice = await generateKeyPair();
const bob = await generateKeyPair();

describe('public keys', () => {
  it('encode and decode round trip, in binary and base64url', async () => {
    const encoded = encodePublicKey(alice.publicKey);
    expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(fromBase64Url(encoded).length).toBe(PUBLIC_KEY_SIZE);
    const decoded = await decodePublicKey(encoded);
    expect(decoded.ecdh).toEqual(alice.publicKey.ecdh);
    expect(decoded.mlkem).toEqual(alice.publicKey.mlkem);
    expect(await decodePublicKey(publicKeyToBytes(alice.publicKey))).toEqual(decoded);
  });

  it('refuses malformed public keys', async () => {
    const bytes = publicKeyToBytes(alice.publicKey);
    await expectCode(decodePublicKey(bytes.slice(0, -1)), 'BAD_KEY');
    await expectCode(decodePublicKey(new Uint8Array([...bytes, 0])), 'BAD_KEY');
    const version = bytes.slice();
    version[0] = 2;
    await expectCode(decodePublicKey(version), 'BAD_HEADER');
    const offCurve = bytes.slice();
    offCurve[40] = (offCurve[40] ?? 0) ^ 1; // Y no longer fits X
    await expectCode(decodePublicKey(offCurve), 'BAD_KEY');
    const compressed = bytes.slice();
    compressed[1] = 0x02;
    await expectCode(decodePublicKey(compressed), 'BAD_KEY');
    const badModulus = bytes.slice();
    badModulus[66] = 0xff; // first ML-KEM coefficient ≥ q = 3329 fails the FIPS 203 modulus check
    badModulus[67] = 0xff;
    await expectCode(decodePublicKey(badModulus), 'BAD_KEY');
    await expectCode(decodePublicKey('not*base64'), 'BAD_INPUT');
  });

  it('the fingerprint is SHA-256 of the encoding, 16 groups of 4 hex digits', async () => {
    const fp = await fingerprint(alice.publicKey);
    expect(fp).toMatch(/^[0-9a-f]{4}(-[0-9a-f]{4}){15}$/);
    expect(fp.replaceAll('-', '')).toBe(Buffer.from(await sha256(publicKeyToBytes(alice.publicKey))).toString('hex'));
    expect(await fingerprintBytes(alice.publicKey)).toEqual(await sha256(publicKeyToBytes(alice.publicKey)));
    expect(await fingerprintMatches(alice.publicKey, fp)).toBe(true);
    expect(await fingerprintMatches(alice.publicKey, fp.toUpperCase().replaceAll('-', ' '))).toBe(true);
    expect(await fingerprintMatches(bob.publicKey, fp)).toBe(false);
    expect(await fingerprintMatches(alice.publicKey, fp.slice(0, 39))).toBe(false); // shortened: refused
    // As typed by someone who heard it read out: one form, whatever the case and separators.
    expect(canonicalFingerprint(` ${fp.toUpperCase().replaceAll('-', ' ')} `)).toBe(fp);
    expect(canonicalFingerprint(fp.replaceAll('-', ''))).toBe(fp);
    expect(canonicalFingerprint(fp.slice(0, 74))).toBeUndefined();
    expect(canonicalFingerprint(`${fp}-0000`)).toBeUndefined();
    expect(canonicalFingerprint(fp.replace(/[0-9a-f]$/, 'g'))).toBeUndefined();
    expect(await fingerprint(bob.publicKey)).not.toBe(fp);
  });
  it('checks offered keys against their stated fingerprints: a key swapped under the right fingerprint names its holder', async () => {
    const [aliceFp, bobFp] = [await fingerprint(alice.publicKey), await fingerprint(bob.publicKey)];
    const offered = [
      { holder: 'sender', publicKey: encodePublicKey(alice.publicKey), fingerprint: aliceFp.toUpperCase() },
      { holder: 'r-1', publicKey: encodePublicKey(bob.publicKey), fingerprint: bobFp },
    ];
    const checked = await checkOfferedKeys(offered);
    expect(checked).toEqual({ keys: [{ holder: 'sender', publicKey: alice.publicKey, fingerprint: aliceFp }, { holder: 'r-1', publicKey: bob.publicKey, fingerprint: bobFp }] });
    expect(await checkOfferedKeys([offered[0]!, { ...offered[1]!, publicKey: encodePublicKey(alice.publicKey) }])).toEqual({ mismatch: 'r-1' });
    expect(await checkOfferedKeys([{ ...offered[0]!, fingerprint: aliceFp.slice(0, 39) }])).toEqual({ mismatch: 'sender' });
    await expectCode(checkOfferedKeys([{ ...offered[0]!, publicKey: encodePublicKey(alice.publicKey).slice(0, 40) }]), 'BAD_KEY');
  });
});

describe('wrapping a file key', () => {
  it('round trips for the recipient and context', async () => {
    const fileKey = randomFileKey();
    const wrapped = await wrapFileKey(fileKey, bob.publicKey, CONTEXT);
    expect(wrapped.length).toBe(WRAPPED_KEY_SIZE);
    expect(await unwrapFileKey(wrapped, bob.privateKey, CONTEXT)).toEqual(fileKey);
    // Randomized: wrapping twice gives different bytes.
    expect(await wrapFileKey(fileKey, bob.publicKey, CONTEXT)).not.toEqual(wrapped);
  });

  it('another recipient cannot unwrap it', async () => {
    const wrapped = await wrapFileKey(randomFileKey(), bob.publicKey, CONTEXT);
    await expectCode(unwrapFileKey(wrapped, alice.privateKey, CONTEXT), 'WRONG_KEY');
  });

  it('a changed context fails', async () => {
    const wrapped = await wrapFileKey(randomFileKey(), bob.publicKey, CONTEXT);
    await expectCode(unwrapFileKey(wrapped, bob.privateKey, 'transfer:7f3b'), 'WRONG_KEY');
    await expectCode(unwrapFileKey(wrapped, bob.privateKey, ''), 'WRONG_KEY');
  });

  it('a flipped byte in any part fails', async () => {
    const wrapped = await wrapFileKey(randomFileKey(), bob.publicKey, CONTEXT);
    const parts = { version: [0], ephemeral: [1, 2, 33, 65], mlkem: [66, 600, 1153], sealedKey: [1154, 1185, 1186, 1201] };
    for (const [part, positions] of Object.entries(parts)) {
      for (const i of positions) {
        const w = wrapped.slice();
        w[i] = (w[i] ?? 0) ^ 0x01;
        const error = await unwrapFileKey(w, bob.privateKey, CONTEXT).then(() => undefined, (e: unknown) => e);
        expect(error, `${part} byte ${i}`).toBeInstanceOf(E2eError);
      }
    }
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: WRAPPED_KEY_SIZE - 1 }), fc.integer({ min: 1, max: 255 }), async (i, x) => {
        const w = wrapped.slice();
        w[i] = (w[i] ?? 0) ^ x;
        await expectCode(unwrapFileKey(w, bob.privateKey, CONTEXT), 'WRONG_KEY', 'TAMPERED', 'BAD_HEADER');
      }),
      { numRuns: 40 },
    );
    await expectCode(unwrapFileKey(wrapped.slice(0, -1), bob.privateKey, CONTEXT), 'BAD_INPUT');
    await expectCode(unwrapFileKey(new Uint8Array([...wrapped, 0]), bob.privateKey, CONTEXT), 'BAD_INPUT');
  });

  it('replacing the ML-KEM ciphertext by a fresh encapsulation to the same key fails', async () => {
    const wrapped = await wrapFileKey(randomFileKey(), bob.publicKey, CONTEXT);
    const { cipherText } = ml_kem768.encapsulate(bob.publicKey.mlkem);
    const w = wrapped.slice();
    w.set(cipherText, 66);
    await expectCode(unwrapFileKey(w, bob.privateKey, CONTEXT), 'WRONG_KEY');
  });

  it('breaking ECDH alone does not give the KEK: the ML-KEM secret is needed too', async () => {
    // Model an attacker who can solve ECDH (a quantum computer): they learn the ECDH secret and the
    // whole wrapped key, but not the ML-KEM shared secret.
    const fileKey = randomFileKey();
    const wrapped = await wrapFileKey(fileKey, bob.publicKey, CONTEXT);
    const ephemeralPublic = wrapped.slice(1, 66);
    const mlkemCiphertext = wrapped.slice(66, 1154);
    const ecdhSecret = await ecdhSharedSecret(bob.privateKey.ecdh, await importEcdhPublic(ephemeralPublic));
    const transcriptHash = await sha256(wrapTranscript(ephemeralPublic, mlkemCiphertext, await fingerprintBytes(bob.publicKey), CONTEXT));
    const open = async (mlkemSecret: Uint8Array) => {
      const { kek, nonce } = await deriveWrapKeys(ecdhSecret, mlkemSecret, transcriptHash);
      const key = await crypto.subtle.importKey('raw', kek, 'AES-GCM', false, ['decrypt']);
      return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: transcriptHash }, key, wrapped.slice(1154)));
    };
    // With the true ML-KEM secret (the recipient's view) the derivation opens it: the model is right ...
    expect(await open(ml_kem768.decapsulate(mlkemCiphertext, bob.privateKey.mlkemSecretKey))).toEqual(fileKey);
    // ... and with anything else the attacker can compute it does not.
    await expect(open(new Uint8Array(32))).rejects.toThrow();
    await expect(open(ml_kem768.encapsulate(bob.publicKey.mlkem).sharedSecret)).rejects.toThrow();
  });

  it('is bound to the recipient key: the same ciphertexts under another fingerprint give another KEK', async () => {
    const ecdh = crypto.getRandomValues(new Uint8Array(32));
    const kem = crypto.getRandomValues(new Uint8Array(32));
    const t1 = await sha256(wrapTranscript(new Uint8Array(65), new Uint8Array(1088), await fingerprintBytes(alice.publicKey), CONTEXT));
    const t2 = await sha256(wrapTranscript(new Uint8Array(65), new Uint8Array(1088), await fingerprintBytes(bob.publicKey), CONTEXT));
    expect((await deriveWrapKeys(ecdh, kem, t1)).kek).not.toEqual((await deriveWrapKeys(ecdh, kem, t2)).kek);
  });

  it('refuses bad arguments', async () => {
    await expectCode(wrapFileKey(new Uint8Array(16), bob.publicKey, CONTEXT), 'BAD_INPUT');
    await expectCode(wrapFileKey(randomFileKey(), { ecdh: new Uint8Array(65), mlkem: bob.publicKey.mlkem }, CONTEXT), 'BAD_KEY');
    await expectCode(unwrapFileKey(new Uint8Array(0), bob.privateKey, CONTEXT), 'BAD_INPUT');
    expect(toBase64Url(new Uint8Array(0))).toBe('');
  });
});

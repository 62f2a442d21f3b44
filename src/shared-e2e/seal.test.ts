import { describe, expect, it } from 'vitest';
import { fromBase64Url, toBase64Url } from './encoding.js';
import { E2eError, type E2eErrorCode } from './errors.js';
import { generateKeyPair } from './keys.js';
import { randomFileKey } from './records.js';
import { DEFAULT_ARGON2_PARAMS, openPrivateKey, SEALED_SIZE, sealedKeyParams, sealPrivateKey } from './seal.js';
import { unwrapFileKey, wrapFileKey } from './wrap.js';

const WEAK = { m: 64, t: 1, p: 1, allowWeakParamsForTests: true } as const;
const OPEN_WEAK = { allowWeakParamsForTests: true } as const;

async function expectCode(promise: Promise<unknown>, ...codes: E2eErrorCode[]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected an E2eError').toBeInstanceOf(E2eError);
  expect(codes).toContain((error as E2eError).code);
}

const pair = await generateKeyPair();

describe('sealing the private key under the SecuPass', () => {
  it('the right SecuPass opens it, and the opened key unwraps', async () => {
    const sealed = await sealPrivateKey(pair.privateKey, 'correct horse battery staple', WEAK);
    expect(fromBase64Url(sealed).length).toBe(SEALED_SIZE);
    expect(sealedKeyParams(sealed)).toEqual({ m: 64, t: 1, p: 1 });
    const opened = await openPrivateKey(sealed, 'correct horse battery staple', OPEN_WEAK);
    expect(opened.publicKey).toEqual(pair.publicKey);
    expect(opened.mlkemSeed).toEqual(pair.privateKey.mlkemSeed);
    const fileKey = randomFileKey();
    expect(await unwrapFileKey(await wrapFileKey(fileKey, pair.publicKey, 'ctx'), opened, 'ctx')).toEqual(fileKey);
    // The opened key can be sealed again (a SecuPass change).
    const resealed = await sealPrivateKey(opened, 'new secupass', WEAK);
    expect((await openPrivateKey(resealed, 'new secupass', OPEN_WEAK)).publicKey).toEqual(pair.publicKey);
  });

  it('a wrong SecuPass is WRONG_KEY', async () => {
    const sealed = await sealPrivateKey(pair.privateKey, 'correct horse battery staple', WEAK);
    await expectCode(openPrivateKey(sealed, 'correct horse battery stapler', OPEN_WEAK), 'WRONG_KEY');
    await expectCode(openPrivateKey(sealed, 'Correct horse battery staple', OPEN_WEAK), 'WRONG_KEY');
  });

  it('the SecuPass is NFC-normalized: composed and decomposed umlauts are the same SecuPass', async () => {
    const sealed = await sealPrivateKey(pair.privateKey, 'Gr\u00fc\u00dfe', WEAK);
    expect((await openPrivateKey(sealed, 'Gru\u0308\u00dfe', OPEN_WEAK)).publicKey).toEqual(pair.publicKey);
  });

  it('any altered byte fails (parameters, salt, nonce, ciphertext)', async () => {
    const bytes = fromBase64Url(await sealPrivateKey(pair.privateKey, 'pw', WEAK));
    for (const i of [0, 4, 8, 12, 16, 17, 32, 33, 44, 45, 100, bytes.length - 1]) {
      const b = bytes.slice();
      b[i] = (b[i] ?? 0) ^ 0x01;
      await expectCode(openPrivateKey(toBase64Url(b), 'pw', OPEN_WEAK), 'BAD_HEADER', 'WRONG_KEY', 'WEAK_PARAMS');
    }
    await expectCode(openPrivateKey(bytes.slice(0, -1), 'pw', OPEN_WEAK), 'BAD_HEADER');
  });

  it('refuses parameters below the floor unless explicitly allowed for tests', async () => {
    await expectCode(sealPrivateKey(pair.privateKey, 'pw', { m: 64, t: 1, p: 1 }), 'WEAK_PARAMS');
    await expectCode(sealPrivateKey(pair.privateKey, 'pw', { m: 19456, t: 1 }), 'WEAK_PARAMS');
    const weak = await sealPrivateKey(pair.privateKey, 'pw', WEAK);
    await expectCode(openPrivateKey(weak, 'pw'), 'WEAK_PARAMS');
    // Absurd parameters (a hostile blob trying to exhaust the browser) are refused even for tests.
    const b = fromBase64Url(weak);
    b.set([0x40, 0, 0, 0], 5); // m = 1 TiB
    await expectCode(openPrivateKey(b, 'pw', OPEN_WEAK), 'WEAK_PARAMS');
    await expectCode(sealPrivateKey(pair.privateKey, 'pw', { t: 17 }), 'WEAK_PARAMS');
    await expectCode(sealPrivateKey(pair.privateKey, '', WEAK), 'BAD_INPUT');
  });

  it('works with the default parameters (m = 19456 KiB, t = 2, p = 1)', async () => {
    const sealed = await sealPrivateKey(pair.privateKey, 'correct horse battery staple');
    expect(sealedKeyParams(sealed)).toEqual(DEFAULT_ARGON2_PARAMS);
    expect((await openPrivateKey(sealed, 'correct horse battery staple')).publicKey).toEqual(pair.publicKey);
  });
});

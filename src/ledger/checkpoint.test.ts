import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CheckpointFormatError,
  checkpointBody,
  createCheckpoint,
  formatCheckpoint,
  formatVerifierKey,
  generateLedgerKeyPair,
  ledgerKeyId,
  parseCheckpoint,
  verifyCheckpointSignature,
  type Checkpoint,
} from './checkpoint.js';
import { MerkleTree, leafHash } from './merkle.js';

const keys = generateLedgerKeyPair();
const otherKeys = generateLedgerKeyPair();
const ORIGIN = 'tresor.example/ledger/tenant-3f1c';
const tree = new MerkleTree(Array.from({ length: 11 }, (_, i) => leafHash(Buffer.from(`e${i}`))));
const TIME = new Date('2025-01-31T12:00:00.000Z');
const checkpoint = createCheckpoint({
  origin: ORIGIN,
  treeSize: tree.size,
  rootHash: tree.root(),
  time: TIME,
  privateKeyPem: keys.privateKeyPem,
});
const text = formatCheckpoint(checkpoint);

const tmp = mkdtempSync(join(tmpdir(), 'tresor-checkpoint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Replaces one body line of the checkpoint text, keeping the original signature lines. */
function withBodyLine(index: number, line: string): string {
  const [body, signatures] = text.split('\n\n') as [string, string];
  const lines = body.split('\n');
  lines[index] = line;
  return `${lines.join('\n')}\n\n${signatures}`;
}

describe('ledger keys', () => {
  it('are ECDSA P-256 in PEM (SPKI public, PKCS#8 private)', () => {
    expect(keys.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect(keys.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(createPublicKey(keys.publicKeyPem).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('key id is the first four bytes of SHA-256(SPKI DER), checked against the openssl CLI', () => {
    const pub = join(tmp, 'pub.pem');
    writeFileSync(pub, keys.publicKeyPem);
    const der = execFileSync('openssl', ['pkey', '-pubin', '-in', pub, '-outform', 'DER']);
    const expected = createHash('sha256').update(der).digest().readUInt32BE(0);
    expect(ledgerKeyId(keys.publicKeyPem)).toBe(expected);
    expect(checkpoint.signatures[0]!.keyId).toBe(expected);
  });

  it('formats the verifier key as <name>+<key id hex>+base64(0x02 || SPKI DER), as transparency-dev reads it', () => {
    const vkey = formatVerifierKey(ORIGIN, keys.publicKeyPem);
    // Split on the first two '+' only (Go's strings.SplitN(key, "+", 3)): base64 may contain '+'.
    const first = vkey.indexOf('+');
    const second = vkey.indexOf('+', first + 1);
    const [name, id, material] = [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
    expect(name).toBe(ORIGIN);
    expect(id).toBe(ledgerKeyId(keys.publicKeyPem).toString(16).padStart(8, '0'));
    const bytes = Buffer.from(material, 'base64');
    expect(bytes[0]).toBe(0x02);
    const spki = createPublicKey(keys.publicKeyPem).export({ type: 'spki', format: 'der' });
    expect(bytes.subarray(1).equals(spki)).toBe(true);
    expect(() => formatVerifierKey('has space', keys.publicKeyPem)).toThrow(/key name/);
  });
});

describe('checkpoint format', () => {
  it('is origin, size, base64 root, time line, blank line, em-dash signature line', () => {
    const lines = text.split('\n');
    expect(lines.slice(0, 5)).toEqual([
      ORIGIN,
      '11',
      tree.root().toString('base64'),
      'time 2025-01-31T12:00:00.000Z',
      '',
    ]);
    expect(lines[5]).toMatch(new RegExp(`^\u2014 ${ORIGIN.replace(/[.]/g, '\\.')} [A-Za-z0-9+/]+={0,2}$`));
    expect(lines[6]).toBe('');
    expect(lines).toHaveLength(7);
    const sig = Buffer.from(lines[5]!.split(' ')[2]!, 'base64');
    expect(sig.readUInt32BE(0)).toBe(ledgerKeyId(keys.publicKeyPem));
    expect(sig[4]).toBe(0x30); // ASN.1 DER SEQUENCE
  });

  it('round-trips through parseCheckpoint', () => {
    const parsed = parseCheckpoint(text);
    expect(parsed.origin).toBe(ORIGIN);
    expect(parsed.treeSize).toBe(11);
    expect(Buffer.from(parsed.rootHash).equals(tree.root())).toBe(true);
    expect(parsed.time.toISOString()).toBe(TIME.toISOString());
    expect(parsed.signatures).toHaveLength(1);
    expect(formatCheckpoint(parsed)).toBe(text);
  });

  it('the signature verifies with the openssl CLI over exactly the note text', () => {
    const body = join(tmp, 'body.txt');
    const sig = join(tmp, 'sig.der');
    const pub = join(tmp, 'pub2.pem');
    writeFileSync(body, checkpointBody(checkpoint));
    writeFileSync(sig, checkpoint.signatures[0]!.signature);
    writeFileSync(pub, keys.publicKeyPem);
    const out = execFileSync('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sig, body], { encoding: 'utf8' });
    expect(out.trim()).toBe('Verified OK');
  });

  it('property: any valid fields round-trip', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9.\-/]{1,40}$/),
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.date({ min: new Date('0000-01-01T00:00:00.000Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }),
        (origin, treeSize, root, time) => {
          const cp = createCheckpoint({ origin, treeSize, rootHash: root, time, privateKeyPem: keys.privateKeyPem });
          const formatted = formatCheckpoint(cp);
          const parsed = parseCheckpoint(formatted);
          expect(parsed.treeSize).toBe(treeSize);
          expect(parsed.time.getTime()).toBe(time.getTime());
          expect(formatCheckpoint(parsed)).toBe(formatted);
          expect(verifyCheckpointSignature(formatted, keys.publicKeyPem)).toBe(true);
        },
      ),
      { numRuns: 50 },
    );
  });

  const valid = text;
  const [validBody, validSignatures] = valid.split('\n\n') as [string, string];
  it.each<[string, string, RegExp]>([
    ['no trailing newline', valid.slice(0, -1), /end with a newline/],
    ['CRLF line endings', valid.replace(/\n/g, '\r\n'), /control character U\+000D/],
    ['a tab', withBodyLine(0, `${ORIGIN}\tx`), /control character U\+0009/],
    ['no blank line', valid.replace('\n\n', '\n'), /no empty line/],
    ['no signatures', `${validBody}\n\n`, /no signature lines/],
    ['an empty origin', withBodyLine(0, ''), /empty line/],
    ['an origin with a space', withBodyLine(0, 'a b'), /origin/],
    ['an origin with a plus', withBodyLine(0, 'a+b'), /origin/],
    ['a leading zero in the size', withBodyLine(1, '011'), /decimal/],
    ['a signed size', withBodyLine(1, '+11'), /decimal/],
    ['a negative size', withBodyLine(1, '-1'), /decimal/],
    ['a hex size', withBodyLine(1, '0xb'), /decimal/],
    ['a size beyond 2^53', withBodyLine(1, '9007199254740993'), /larger than/],
    ['a short root', withBodyLine(2, Buffer.alloc(31).toString('base64')), /31 bytes/],
    ['an unpadded root', withBodyLine(2, tree.root().toString('base64').replace('=', '')), /base64/],
    ['a base64url root', withBodyLine(2, Buffer.alloc(32, 0xfb).toString('base64url') + '='), /base64/],
    ['a non-canonical base64 root', withBodyLine(2, `${'A'.repeat(42)}B=`), /canonical/],
    ['a missing time line', valid.replace(/time [^\n]*\n/, ''), /exactly one "time" line/],
    ['two time lines', valid.replace(/(time [^\n]*\n)/, '$1$1'), /exactly one "time" line/],
    ['an unknown extension line', valid.replace(/(time [^\n]*\n)/, '$1extra\n'), /unknown extension line/],
    ['a time without milliseconds', withBodyLine(3, 'time 2025-01-31T12:00:00Z'), /time must be/],
    ['a local time', withBodyLine(3, 'time 2025-01-31T12:00:00.000+01:00'), /time must be/],
    ['an impossible date', withBodyLine(3, 'time 2025-02-30T12:00:00.000Z'), /time must be/],
    ['a hyphen instead of the em dash', valid.replace('\u2014', '-'), /em dash/],
    ['a signature line with three fields', valid.replace(/\n$/, ' extra\n'), /"— <key name> <base64>"/],
    ['a key name with a plus', valid.replace(`\u2014 ${ORIGIN}`, '\u2014 a+b'), /key name/],
    ['a too-short signature', `${validBody}\n\n\u2014 ${ORIGIN} AAAA\n`, /too short/],
    ['a lone surrogate', withBodyLine(0, 'a\ud800'), /UTF-8/],
    ['an oversized note', `${validBody}\n\n${validSignatures.repeat(2000)}`, /larger than/],
    ['too many signatures', `${validBody}\n\n${validSignatures.repeat(65)}`, /more than 64 signatures/],
  ])('parseCheckpoint refuses %s', (_, input, message) => {
    expect(() => parseCheckpoint(input)).toThrow(CheckpointFormatError);
    expect(() => parseCheckpoint(input)).toThrow(message);
  });

  it('parseCheckpoint accepts up to 64 signatures and ignores unknown keys when verifying', () => {
    const foreign = createCheckpoint({ ...checkpoint, keyName: 'witness.example/w1', privateKeyPem: otherKeys.privateKeyPem });
    const many: Checkpoint = { ...checkpoint, signatures: [...Array(63).fill(foreign.signatures[0]), checkpoint.signatures[0]!] };
    expect(verifyCheckpointSignature(formatCheckpoint(many), keys.publicKeyPem)).toBe(true);
  });
});

describe('checkpoint signatures: attacks', () => {
  it('a genuine checkpoint verifies, as text and as an object', () => {
    expect(verifyCheckpointSignature(text, keys.publicKeyPem)).toBe(true);
    expect(verifyCheckpointSignature(checkpoint, keys.publicKeyPem)).toBe(true);
  });

  it.each([
    ['a changed size', withBodyLine(1, '12')],
    ['a smaller size', withBodyLine(1, '10')],
    ['a changed root', withBodyLine(2, tree.root(10).toString('base64'))],
    ['a changed time', withBodyLine(3, 'time 2025-01-31T12:00:00.001Z')],
    ['a changed origin', withBodyLine(0, 'tresor.example/ledger/tenant-ffff')],
  ])('fails for %s (signature kept)', (_, tampered) => {
    expect(verifyCheckpointSignature(tampered, keys.publicKeyPem)).toBe(false);
  });

  it('fails when fields of a parsed checkpoint object are changed', () => {
    expect(verifyCheckpointSignature({ ...checkpoint, treeSize: 12 }, keys.publicKeyPem)).toBe(false);
    expect(verifyCheckpointSignature({ ...checkpoint, rootHash: tree.root(10) }, keys.publicKeyPem)).toBe(false);
    expect(verifyCheckpointSignature({ ...checkpoint, time: new Date(TIME.getTime() + 1000) }, keys.publicKeyPem)).toBe(false);
    expect(verifyCheckpointSignature({ ...checkpoint, treeSize: -1 }, keys.publicKeyPem)).toBe(false);
  });

  it('fails for a checkpoint signed by another key, even under our key name and key id', () => {
    const forged = createCheckpoint({ ...checkpoint, privateKeyPem: otherKeys.privateKeyPem });
    expect(verifyCheckpointSignature(forged, keys.publicKeyPem)).toBe(false);
    const withOurId: Checkpoint = {
      ...forged,
      signatures: [{ ...forged.signatures[0]!, keyId: ledgerKeyId(keys.publicKeyPem) }],
    };
    expect(verifyCheckpointSignature(formatCheckpoint(withOurId), keys.publicKeyPem)).toBe(false);
    // And our genuine checkpoint does not verify under the other key.
    expect(verifyCheckpointSignature(text, otherKeys.publicKeyPem)).toBe(false);
  });

  it('fails when a second signature under our name and id does not verify (c2sp signed-note: reject the note)', () => {
    const bogus = { ...checkpoint.signatures[0]!, signature: Buffer.from(checkpoint.signatures[0]!.signature).fill(1, 10, 12) };
    const doubled: Checkpoint = { ...checkpoint, signatures: [checkpoint.signatures[0]!, bogus] };
    expect(verifyCheckpointSignature(formatCheckpoint(doubled), keys.publicKeyPem)).toBe(false);
  });

  it('fails under another expected key name, and for an IEEE P1363 signature where DER is required', () => {
    expect(verifyCheckpointSignature(text, keys.publicKeyPem, { keyName: 'someone.else' })).toBe(false);
    const p1363 = sign('sha256', Buffer.from(checkpointBody(checkpoint)), {
      key: createPrivateKey(keys.privateKeyPem),
      dsaEncoding: 'ieee-p1363',
    });
    const asP1363: Checkpoint = { ...checkpoint, signatures: [{ ...checkpoint.signatures[0]!, signature: p1363 }] };
    expect(verifyCheckpointSignature(asP1363, keys.publicKeyPem)).toBe(false);
  });

  it('property: any single-character change to the text is refused by the parser or fails verification', () => {
    fc.assert(
      fc.property(fc.nat({ max: text.length - 1 }), fc.integer({ min: 1, max: 0x7e }), (at, delta) => {
        const code = text.charCodeAt(at);
        const replacement = String.fromCharCode(code === 0x2014 ? 0x2013 : ((code - 0x20 + delta) % 0x5f) + 0x20);
        const tampered = text.slice(0, at) + replacement + text.slice(at + 1);
        if (tampered === text) return;
        let parsed: Checkpoint;
        try {
          parsed = parseCheckpoint(tampered);
        } catch (error) {
          expect(error).toBeInstanceOf(CheckpointFormatError);
          return;
        }
        expect(verifyCheckpointSignature(parsed, keys.publicKeyPem)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses keys that are not ECDSA P-256', () => {
    const ed = generateKeyPairSync('ed25519', {
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    const p384 = generateKeyPairSync('ec', {
      namedCurve: 'P-384',
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    expect(() => createCheckpoint({ ...checkpoint, privateKeyPem: ed.privateKey })).toThrow(/P-256/);
    expect(() => createCheckpoint({ ...checkpoint, privateKeyPem: p384.privateKey })).toThrow(/P-256/);
    expect(() => createCheckpoint({ ...checkpoint, privateKeyPem: 'not a key' })).toThrow(/PEM/);
    expect(() => verifyCheckpointSignature(text, ed.publicKey)).toThrow(/P-256/);
  });

  it('createCheckpoint refuses invalid fields', () => {
    const input = { ...checkpoint, privateKeyPem: keys.privateKeyPem };
    expect(() => createCheckpoint({ ...input, treeSize: 1.5 })).toThrow(/treeSize/);
    expect(() => createCheckpoint({ ...input, rootHash: Buffer.alloc(20) })).toThrow(/rootHash/);
    expect(() => createCheckpoint({ ...input, time: new Date(NaN) })).toThrow(/time/);
    expect(() => createCheckpoint({ ...input, time: new Date('+010000-01-01T00:00:00Z') })).toThrow(/time/);
    expect(() => createCheckpoint({ ...input, origin: 'with space' })).toThrow(/origin/);
    expect(() => formatCheckpoint({ ...checkpoint, signatures: [] })).toThrow(/at least one signature/);
  });
});

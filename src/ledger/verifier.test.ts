import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createCheckpoint, formatCheckpoint, generateLedgerKeyPair } from './checkpoint.js';
import { commitPayload, encodeEntry, type LedgerEntry } from './entry.js';
import { MerkleTree, leafHash, verifyInclusion } from './merkle.js';
import {
  verifyCheckpoint,
  verifyCheckpointConsistency,
  verifyConsistencyProof,
  verifyEntryInCheckpoint,
  verifyInclusionProof,
  verifyPayload,
  type InclusionProofJson,
} from './verifier.js';

const here = dirname(fileURLToPath(import.meta.url));
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const ORIGIN = 'tresor.example/ledger/tenant-3f1c';
const keys = generateLedgerKeyPair();
const otherKeys = generateLedgerKeyPair();

// A small ledger of real entries with payload commitments.
const payloads = Array.from({ length: 21 }, (_, i) => ({ recordId: `r-${i}`, fields: ['email'], n: i }));
const commitments = payloads.map((p) => commitPayload(p));
const entries: LedgerEntry[] = payloads.map((_, seq) => ({
  seq,
  time: new Date(Date.UTC(2025, 0, 1, 0, 0, seq)).toISOString(),
  tenant: 'tenant-3f1c',
  actor: 'account:8a0e',
  action: 'record.read',
  resource: `record:r-${seq}`,
  outcome: 'success',
  payloadCommitment: commitments[seq]!.commitment,
}));
const entryBytes = entries.map(encodeEntry);
const tree = new MerkleTree(entryBytes.map(leafHash));
const checkpointAt = (size: number, privateKeyPem = keys.privateKeyPem): string =>
  formatCheckpoint(
    createCheckpoint({
      origin: ORIGIN,
      treeSize: size,
      rootHash: tree.root(size),
      time: new Date('2025-02-01T00:00:00.000Z'),
      privateKeyPem,
    }),
  );
const checkpoint = checkpointAt(21);

/** What the server would hand a customer: plain JSON, through a JSON round trip. */
function inclusionJson(index: number, size = tree.size, withEntry = true): InclusionProofJson {
  const proof = {
    ...(withEntry ? { entry: b64(entryBytes[index]!) } : { leafHash: b64(tree.leafHash(index)) }),
    index,
    treeSize: size,
    proof: tree.inclusionProof(index, size).map(b64),
    rootHash: b64(tree.root(size)),
  };
  return JSON.parse(JSON.stringify(proof)) as InclusionProofJson;
}

describe('verifyInclusionProof', () => {
  it('accepts a genuine proof given the entry, the leaf hash, or both', () => {
    for (let i = 0; i < tree.size; i++) {
      expect(verifyInclusionProof(inclusionJson(i))).toMatchObject({ valid: true });
      expect(verifyInclusionProof(inclusionJson(i, tree.size, false))).toMatchObject({ valid: true });
    }
    const both = { ...inclusionJson(3), leafHash: b64(tree.leafHash(3)) };
    expect(verifyInclusionProof(both).valid).toBe(true);
  });

  it.each<[string, (p: Record<string, unknown>) => void, RegExp]>([
    ['a changed entry', (p) => (p['entry'] = b64(encodeEntry({ ...entries[5]!, outcome: 'failure' }))), /leads to root .* changed/],
    ['an entry moved to another index', (p) => (p['entry'] = b64(entryBytes[6]!)), /seq 6 but the proof is for index 5/],
    ['a leafHash that is not the entry hash', (p) => (p['leafHash'] = b64(tree.leafHash(6))), /not the hash of entry/],
    ['a wrong index', (p) => (p['index'] = 4), /seq 5 but the proof is for index 4/],
    ['a wrong root', (p) => (p['rootHash'] = b64(tree.root(20))), /leads to root/],
    ['a flipped proof element', (p) => ((p['proof'] as string[])[1] = b64(Buffer.alloc(32, 7))), /leads to root/],
    ['a dropped proof element', (p) => (p['proof'] as string[]).pop(), /fewer elements/],
    ['an extra proof element', (p) => (p['proof'] as string[]).push(b64(Buffer.alloc(32))), /more elements/],
    ['an index outside the tree', (p) => ((p['index'] = 21), delete p['entry'], (p['leafHash'] = b64(tree.leafHash(5)))), /not inside/],
    ['no entry or leaf hash', (p) => delete p['entry'], /give the entry/],
    ['a proof that is not an array', (p) => (p['proof'] = 'abc'), /array/],
    ['a short proof element', (p) => ((p['proof'] as string[])[0] = b64(Buffer.alloc(31))), /31 bytes/],
    ['hex instead of base64', (p) => (p['rootHash'] = tree.root().toString('hex')), /48 bytes, expected 32/],
    ['a string index', (p) => (p['index'] = '5'), /index/],
    ['a fractional size', (p) => (p['treeSize'] = 20.5), /treeSize/],
  ])('rejects %s with a reason', (_, mutate, reason) => {
    const proof = inclusionJson(5) as unknown as Record<string, unknown>;
    mutate(proof);
    const verdict = verifyInclusionProof(proof);
    expect(verdict.valid).toBe(false);
    expect(verdict.reason).toMatch(reason);
  });

  it('never throws on garbage', () => {
    fc.assert(
      fc.property(fc.anything(), (input) => {
        expect(verifyInclusionProof(input).valid).toBe(false);
        expect(verifyConsistencyProof(input).valid).toBe(false);
      }),
    );
  });

  it('property: agrees with merkle.verifyInclusion on genuine and corrupted proofs', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 21 }).chain((size) => fc.tuple(fc.constant(size), fc.nat({ max: size - 1 }))),
        fc.nat({ max: 40 }),
        ([size, index], corruption) => {
          const proof = tree.inclusionProof(index, size);
          if (corruption < proof.length) proof[corruption] = Buffer.alloc(32, corruption);
          const json = { leafHash: b64(tree.leafHash(index)), index, treeSize: size, proof: proof.map(b64), rootHash: b64(tree.root(size)) };
          expect(verifyInclusionProof(json).valid).toBe(verifyInclusion(tree.leafHash(index), index, size, proof, tree.root(size)));
        },
      ),
    );
  });
});

describe('verifyConsistencyProof', () => {
  const json = (m: number, n: number) => ({
    oldSize: m,
    newSize: n,
    oldRootHash: b64(tree.root(m)),
    newRootHash: b64(tree.root(n)),
    proof: tree.consistencyProof(m, n).map(b64),
  });

  it('accepts genuine proofs for every pair of sizes', () => {
    for (let n = 0; n <= tree.size; n++) {
      for (let m = 0; m <= n; m++) expect(verifyConsistencyProof(json(m, n)), `${m}->${n}`).toMatchObject({ valid: true });
    }
  });

  it('names truncation, forks and rewritten history', () => {
    expect(verifyConsistencyProof({ ...json(10, 21), oldSize: 21, newSize: 10 }).reason).toMatch(/truncated/);
    expect(verifyConsistencyProof({ ...json(10, 10), newRootHash: b64(tree.root(11)) }).reason).toMatch(/forked/);
    const rewritten = new MerkleTree([...entryBytes.slice(0, 3), Buffer.from('forged'), ...entryBytes.slice(4)].map(leafHash));
    const forged = { ...json(10, 21), newRootHash: b64(rewritten.root()), proof: rewritten.consistencyProof(10).map(b64) };
    expect(verifyConsistencyProof(forged)).toMatchObject({ valid: false, reason: expect.stringMatching(/changed, dropped, inserted or reordered/) });
  });
});

describe('checkpoints', () => {
  it('verifyCheckpoint returns the signed fields', () => {
    expect(verifyCheckpoint(checkpoint, keys.publicKeyPem)).toEqual({
      valid: true,
      reason: expect.stringContaining('signed by the ledger key'),
      checkpoint: { origin: ORIGIN, treeSize: 21, rootHash: b64(tree.root()), time: '2025-02-01T00:00:00.000Z' },
    });
  });

  it.each([
    ['a changed size', checkpoint.replace('\n21\n', '\n20\n'), /does not verify/],
    ['a changed root', checkpoint.replace(b64(tree.root()), b64(tree.root(20))), /does not verify/],
    ['a changed time', checkpoint.replace('2025-02-01T00:00:00.000Z', '2025-02-01T00:00:01.000Z'), /does not verify/],
    ['another key', checkpointAt(21, otherKeys.privateKeyPem), /no signature by key/],
    ['garbage', 'hello\n', /no signature lines/],
  ])('rejects %s', (_, text, reason) => {
    const verdict = verifyCheckpoint(text, keys.publicKeyPem);
    expect(verdict.valid).toBe(false);
    expect(verdict.reason).toMatch(reason);
    expect(verdict.checkpoint).toBeUndefined();
  });

  it('rejects an unusable public key without throwing', () => {
    expect(verifyCheckpoint(checkpoint, 'nonsense').reason).toMatch(/PEM/);
  });

  it('verifyEntryInCheckpoint ties the proof to the signed size and root', () => {
    expect(verifyEntryInCheckpoint(inclusionJson(7), checkpoint, keys.publicKeyPem).valid).toBe(true);
    const { rootHash: _, ...withoutRoot } = inclusionJson(7);
    expect(verifyEntryInCheckpoint(withoutRoot, checkpoint, keys.publicKeyPem).valid).toBe(true);
    expect(verifyEntryInCheckpoint(inclusionJson(7, 20), checkpoint, keys.publicKeyPem).reason).toMatch(/tree size 20/);
    // A proof for an older tree relabelled with the checkpoint's size (the shapes match for leaf 0 of 20 vs 21)
    // is still caught, because the root must be the signed one.
    const relabelled = { ...inclusionJson(0, 20), treeSize: 21 };
    expect(verifyEntryInCheckpoint(relabelled, checkpoint, keys.publicKeyPem).valid).toBe(false);
    expect(verifyEntryInCheckpoint({ ...relabelled, rootHash: undefined }, checkpoint, keys.publicKeyPem).valid).toBe(false);
    expect(verifyEntryInCheckpoint(inclusionJson(7), checkpoint, otherKeys.publicKeyPem).valid).toBe(false);
  });

  it('verifyCheckpointConsistency accepts a grown log and refuses a truncated or rewritten one', () => {
    const old = checkpointAt(13);
    const proof = tree.consistencyProof(13).map(b64);
    expect(verifyCheckpointConsistency(old, checkpoint, proof, keys.publicKeyPem).valid).toBe(true);
    expect(verifyCheckpointConsistency(checkpoint, old, [], keys.publicKeyPem).reason).toMatch(/truncated/);
    expect(verifyCheckpointConsistency(old, checkpoint, proof.slice(1), keys.publicKeyPem).valid).toBe(false);
  });
});

describe('verifyPayload', () => {
  it('accepts the committed payload in any key order and refuses any other payload or salt', () => {
    const entry = b64(entryBytes[4]!);
    const salt = b64(commitments[4]!.salt);
    expect(verifyPayload(entry, { n: 4, fields: ['email'], recordId: 'r-4' }, salt).valid).toBe(true);
    expect(verifyPayload(entry, { ...payloads[4], n: 5 }, salt).valid).toBe(false);
    expect(verifyPayload(entry, payloads[4], b64(commitments[5]!.salt)).valid).toBe(false);
    expect(verifyPayload(entry, payloads[4], b64(Buffer.alloc(8))).reason).toMatch(/16/);
    expect(verifyPayload(b64(Buffer.from('not json')), payloads[4], salt).valid).toBe(false);
  });
});

describe('standalone', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tresor-verifier-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('imports nothing but node:crypto', () => {
    const source = readFileSync(join(here, 'verifier.ts'), 'utf8');
    const imports = [...source.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1]);
    expect(imports).toEqual(['node:crypto']);
    expect(source).not.toMatch(/\bimport\(|\brequire\(/);
  });

  it('copied alone into an empty directory, compiles and verifies a real checkpoint and proof', () => {
    copyFileSync(join(here, 'verifier.ts'), join(tmp, 'verifier.ts'));
    const repo = resolve(here, '../..');
    execFileSync(
      join(repo, 'node_modules/.bin/tsc'),
      [
        '--ignoreConfig', '--module', 'esnext', '--moduleResolution', 'bundler', '--target', 'es2022',
        '--strict', '--exactOptionalPropertyTypes', '--noUncheckedIndexedAccess', '--skipLibCheck',
        '--typeRoots', join(repo, 'node_modules/@types'), '--types', 'node',
        '--outDir', join(tmp, 'out'), join(tmp, 'verifier.ts'),
      ],
      { cwd: tmp, stdio: 'pipe' },
    );
    writeFileSync(join(tmp, 'out/package.json'), '{"type":"module"}');
    writeFileSync(
      join(tmp, 'out/check.js'),
      `import { readFileSync } from 'node:fs';
       import { verifyEntryInCheckpoint } from './verifier.js';
       const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
       const good = verifyEntryInCheckpoint(input.proof, input.checkpoint, input.publicKeyPem);
       const bad = verifyEntryInCheckpoint({ ...input.proof, index: 2 }, input.checkpoint, input.publicKeyPem);
       process.stdout.write(JSON.stringify({ good, bad }));`,
    );
    writeFileSync(join(tmp, 'input.json'), JSON.stringify({ proof: inclusionJson(9), checkpoint, publicKeyPem: keys.publicKeyPem }));
    const out = JSON.parse(execFileSync(process.execPath, [join(tmp, 'out/check.js'), join(tmp, 'input.json')], { cwd: tmp, encoding: 'utf8' })) as {
      good: { valid: boolean };
      bad: { valid: boolean };
    };
    expect(out.good.valid).toBe(true);
    expect(out.bad.valid).toBe(false);
  });
});

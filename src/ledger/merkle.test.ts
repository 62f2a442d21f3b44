import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MerkleAccumulator,
  MerkleTree,
  auditLeafHashes,
  consistencyProof,
  consistencyProofPlan,
  emptyRootHash,
  inclusionProof,
  inclusionProofPlan,
  leafHash,
  nodeHash,
  rootHash,
  rootHashPlan,
  verifyConsistency,
  verifyInclusion,
  type NodeId,
} from './merkle.js';

// Reference vectors of Certificate Transparency / trillian (github.com/transparency-dev/merkle v0.0.2:
// testonly/constants.go, rfc6962/rfc6962_test.go, proof/verify_test.go, testonly/reference_test.go,
// compact/range_test.go).
const hd = (hex: string): Buffer => Buffer.from(hex, 'hex');
const CT_LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map(hd);
const CT_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(hd);
const CT_LEAF_HASHES = CT_LEAVES.map(leafHash);

/** testonly/reference_test.go TestRefInclusionProof, 0-based index. */
const INCLUSION_VECTORS: { index: number; size: number; proof: string[] }[] = [
  { index: 0, size: 1, proof: [] },
  { index: 0, size: 2, proof: ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7'] },
  { index: 1, size: 2, proof: ['6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d'] },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 1,
    size: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

/** proof/verify_test.go consistencyProofs. */
const CONSISTENCY_VECTORS: { oldSize: number; newSize: number; proof: string[] }[] = [
  { oldSize: 1, newSize: 1, proof: [] },
  {
    oldSize: 1,
    newSize: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    oldSize: 6,
    newSize: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    oldSize: 2,
    newSize: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
  {
    oldSize: 6,
    newSize: 7,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

/** compact/range_test.go TestGetRootHashGolden: leaf i is the two bytes [i & 0xff, (i >> 8) & 0xff]. */
const GOLDEN_ROOTS: [number, string][] = [
  [10, 'VjWMPSYNtCuCNlF/RLnQy6HcwSk6CIipfxm+hettA+4='],
  [15, 'j4SulYmocFuxdeyp12xXCIgK6PekBcxzAIj4zbQzNEI='],
  [16, 'c+4Uc6BCMOZf/v3NZK1kqTUJe+bBoFtOhP+P3SayKRE='],
  [100, 'dUh9hYH88p0CMoHkdr1wC2szbhcLAXOejWpINIooKUY='],
  [255, 'SmdsuKUqiod3RX2jyF2M6JnbdE4QuTwwipfAowI4/i0='],
  [256, 'qFI0t/tZ1MdOYgyPpPzHFiZVw86koScXy9q3FU5casA='],
  [1000, 'RXrgb8xHd55Y48FbfotJwCbV82Kx22LZfEbmBGAvwlQ='],
  [4095, 'cWRFdQhPcjn9WyBXE/r1f04ejxIm5lvg40DEpRBVS0w='],
  [4096, '6uU/phfHg1n/GksYT6TO9aN8EauMCCJRl3dIK0HDs2M='],
  [10000, 'VZcav65F9haHVRk3wre2axFoBXRNeUh/1d9d5FQfxIg='],
  [65535, 'iPuVYJhP6SEE4gUFp8qbafd2rYv9YTCDYqAxCj8HdLM='],
];

// ---------------------------------------------------------------------------------------------------------
// A second, independent implementation: RFC 9162 §2.1 written out literally, recursion over array slices,
// its own hashing. Nothing from merkle.ts except the inputs.
// ---------------------------------------------------------------------------------------------------------
const refSha = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const refK = (n: number): number => 2 ** Math.floor(Math.log2(n - 1));
function refMth(d: readonly Buffer[]): Buffer {
  if (d.length === 0) return refSha();
  if (d.length === 1) return d[0]!;
  const k = refK(d.length);
  return refSha(Buffer.of(1), refMth(d.slice(0, k)), refMth(d.slice(k)));
}
function refPath(m: number, d: readonly Buffer[]): Buffer[] {
  if (d.length === 1) return [];
  const k = refK(d.length);
  return m < k ? [...refPath(m, d.slice(0, k)), refMth(d.slice(k))] : [...refPath(m - k, d.slice(k)), refMth(d.slice(0, k))];
}
function refSubproof(m: number, d: readonly Buffer[], b: boolean): Buffer[] {
  const n = d.length;
  if (m === n) return b ? [] : [refMth(d)];
  const k = refK(n);
  return m <= k
    ? [...refSubproof(m, d.slice(0, k), b), refMth(d.slice(k))]
    : [...refSubproof(m - k, d.slice(k), false), refMth(d.slice(0, k))];
}
const refProof = (m: number, d: readonly Buffer[]): Buffer[] => refSubproof(m, d, true);

const syntheticLeaves = (n: number, salt = ''): Buffer[] =>
  Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`${salt}entry-${i}`)));
const hexes = (list: readonly Buffer[]): string[] => list.map((b) => b.toString('hex'));
const flip = (b: Buffer, bit = 3): Buffer => {
  const copy = Buffer.from(b);
  copy[0] = copy[0]! ^ (1 << bit);
  return copy;
};
const SOME_HASH = hd('abacaba000000000000000000000000000000000000000000060061e00123456');

describe('RFC 9162 hashing', () => {
  it('matches the RFC 6962 hasher vectors', () => {
    expect(emptyRootHash().toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(leafHash(Buffer.alloc(0)).toString('hex')).toBe(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    );
    expect(leafHash(Buffer.from('L123456')).toString('hex')).toBe(
      '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56',
    );
    expect(nodeHash(Buffer.from('N123'), Buffer.from('N456')).toString('hex')).toBe(
      'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb',
    );
  });

  it('separates leaves from nodes: a leaf whose bytes are two child hashes does not hash like the node', () => {
    const [a, b] = [CT_LEAF_HASHES[0]!, CT_LEAF_HASHES[1]!];
    expect(leafHash(Buffer.concat([a, b])).equals(nodeHash(a, b))).toBe(false);
  });

  it('nodeHash agrees on the fast 32-byte path and the general path', () => {
    const a = SOME_HASH;
    const b = CT_LEAF_HASHES[3]!;
    expect(nodeHash(a, b).equals(refSha(Buffer.of(1), a, b))).toBe(true);
    // A view into a larger buffer must hash its own bytes only.
    const big = Buffer.concat([Buffer.alloc(7, 9), a, Buffer.alloc(5, 1)]);
    expect(nodeHash(big.subarray(7, 39), b).equals(nodeHash(a, b))).toBe(true);
  });
});

describe('tree roots over the CT test leaves', () => {
  it.each(CT_ROOTS.map((root, size) => [size, root] as const))('size %i', (size, expected) => {
    const leaves = CT_LEAF_HASHES.slice(0, size);
    expect(rootHash(leaves).toString('hex')).toBe(expected.toString('hex'));
    expect(new MerkleTree(leaves).root().toString('hex')).toBe(expected.toString('hex'));
    expect(refMth(leaves).toString('hex')).toBe(expected.toString('hex'));
  });

  it('MerkleTree gives every past root', () => {
    const tree = new MerkleTree(CT_LEAF_HASHES);
    CT_ROOTS.forEach((root, size) => expect(tree.root(size).equals(root)).toBe(true));
  });

  it.each(GOLDEN_ROOTS)('accumulator root at size %i matches the compact-range golden value', (size, expected) => {
    const accumulator = new MerkleAccumulator();
    for (let i = 0; i < size; i++) accumulator.append(leafHash(Buffer.of(i & 0xff, (i >> 8) & 0xff)));
    expect(accumulator.root().toString('base64')).toBe(expected);
  });
});

describe('inclusion proofs', () => {
  it.each(INCLUSION_VECTORS)('vector: index $index in size $size', ({ index, size, proof }) => {
    const leaves = CT_LEAF_HASHES.slice(0, size);
    expect(hexes(inclusionProof(leaves, index))).toEqual(proof);
    expect(hexes(new MerkleTree(CT_LEAF_HASHES).inclusionProof(index, size))).toEqual(proof);
    expect(verifyInclusion(leaves[index]!, index, size, proof.map(hd), CT_ROOTS[size]!)).toBe(true);
  });

  it('for all sizes 1..64 and all indices: equal to the reference, verifies, and every corruption fails', () => {
    const leaves = syntheticLeaves(64);
    const tree = new MerkleTree(leaves);
    for (let size = 1; size <= 64; size++) {
      const prefix = leaves.slice(0, size);
      const root = refMth(prefix);
      expect(tree.root(size).equals(root)).toBe(true);
      for (let index = 0; index < size; index++) {
        const proof = inclusionProof(prefix, index);
        expect(hexes(proof)).toEqual(hexes(refPath(index, prefix)));
        expect(hexes(tree.inclusionProof(index, size))).toEqual(hexes(proof));
        const leaf = prefix[index]!;
        expect(verifyInclusion(leaf, index, size, proof, root)).toBe(true);

        // proof/verify_test.go corruptInclusionProof, plus a few more.
        const probes: [number, number, Buffer, Buffer[], Buffer][] = [
          [index - 1, size, leaf, proof, root],
          [index + 1, size, leaf, proof, root],
          [index ^ 2, size, leaf, proof, root],
          [index, size * 2, leaf, proof, root],
          [index, Math.floor(size / 2), leaf, proof, root],
          [index, size, leafHash(Buffer.from('WrongLeaf')), proof, root],
          [index, size, leaf, proof, emptyRootHash()],
          [index, size, leaf, proof, SOME_HASH],
          [index, size, leaf, [...proof, root], root],
          [index, size, leaf, [root, ...proof], root],
          [index, size, leaf, [...proof, Buffer.alloc(0)], root],
          [index, size, leaf, proof, root.subarray(0, 31)],
        ];
        proof.forEach((_, i) => probes.push([index, size, leaf, proof.map((p, j) => (i === j ? flip(p) : p)), root]));
        if (proof.length > 0) probes.push([index, size, leaf, proof.slice(0, -1), root]);
        if (proof.length > 1) probes.push([index, size, leaf, [proof[0]!, SOME_HASH, ...proof.slice(1)], root]);
        for (const [i, n, l, p, r] of probes) {
          if (i === index && n === size && l === leaf && p === proof && r === root) continue;
          expect(verifyInclusion(l, i, n, p, r), `index ${index} size ${size} probe ${i},${n}`).toBe(false);
        }
      }
    }
  });

  it('property: random trees up to 3000 leaves agree with the reference and verify', () => {
    const leaves = syntheticLeaves(3000, 'p');
    const tree = new MerkleTree(leaves);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }).chain((size) => fc.tuple(fc.constant(size), fc.nat({ max: size - 1 }))),
        ([size, index]) => {
          const proof = tree.inclusionProof(index, size);
          const root = tree.root(size);
          expect(hexes(proof)).toEqual(hexes(refPath(index, leaves.slice(0, size))));
          expect(verifyInclusion(leaves[index]!, index, size, proof, root)).toBe(true);
          expect(verifyInclusion(leaves[index]!, index, size * 2, proof, root)).toBe(false);
          expect(verifyInclusion(leafHash(Buffer.from('other')), index, size, proof, root)).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('does not by itself bind the tree size: that is what the signed checkpoint is for', () => {
    // RFC 9162 proofs authenticate a leaf against a root. For leaf 0 the paths of sizes 73 and 74 have the
    // same shape, so the size-73 proof also "verifies" as size 74 against the size-73 root. A verifier must
    // take size and root together from a signed checkpoint (verifier.ts verifyEntryInCheckpoint does).
    const leaves = syntheticLeaves(74, 's');
    const tree = new MerkleTree(leaves);
    expect(verifyInclusion(leaves[0]!, 0, 74, tree.inclusionProof(0, 73), tree.root(73))).toBe(true);
    expect(verifyInclusion(leaves[0]!, 0, 74, tree.inclusionProof(0, 73), tree.root(74))).toBe(false);
  });

  it('rejects out-of-range requests', () => {
    expect(() => inclusionProof(CT_LEAF_HASHES, 8)).toThrow(RangeError);
    expect(() => inclusionProof([], 0)).toThrow(RangeError);
    expect(() => inclusionProofPlan(-1, 4)).toThrow(RangeError);
    expect(() => inclusionProofPlan(0.5, 4)).toThrow(RangeError);
    expect(verifyInclusion(CT_LEAF_HASHES[0]!, 0, 0, [], emptyRootHash())).toBe(false);
    expect(verifyInclusion(CT_LEAF_HASHES[0]!, 1, 1, [], CT_LEAF_HASHES[0]!)).toBe(false);
    expect(verifyInclusion(CT_LEAF_HASHES[0]!, 0, 1, [], CT_LEAF_HASHES[0]!)).toBe(true);
    expect(verifyInclusion(Buffer.alloc(0), 0, 1, [], Buffer.alloc(0))).toBe(false);
  });
});

describe('consistency proofs', () => {
  it.each(CONSISTENCY_VECTORS)('vector: $oldSize -> $newSize', ({ oldSize, newSize, proof }) => {
    const leaves = CT_LEAF_HASHES.slice(0, newSize);
    expect(hexes(consistencyProof(leaves, oldSize))).toEqual(proof);
    expect(hexes(new MerkleTree(CT_LEAF_HASHES).consistencyProof(oldSize, newSize))).toEqual(proof);
    expect(verifyConsistency(oldSize, newSize, CT_ROOTS[oldSize]!, CT_ROOTS[newSize]!, proof.map(hd))).toBe(true);
  });

  it('for all 1 <= m <= n <= 64: equal to the reference, verifies, and every corruption fails', () => {
    const leaves = syntheticLeaves(64);
    const tree = new MerkleTree(leaves);
    const roots = Array.from({ length: 65 }, (_, n) => refMth(leaves.slice(0, n)));
    for (let n = 1; n <= 64; n++) {
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(leaves.slice(0, n), m);
        expect(hexes(proof)).toEqual(m === n ? [] : hexes(refProof(m, leaves.slice(0, n))));
        expect(hexes(tree.consistencyProof(m, n))).toEqual(hexes(proof));
        expect(verifyConsistency(m, n, roots[m]!, roots[n]!, proof)).toBe(true);

        const wrong: [number, number, Buffer, Buffer, Buffer[]][] = [
          [m, n, SOME_HASH, roots[n]!, proof],
          [m, n, roots[m]!, SOME_HASH, proof],
          [m, n, roots[n]!, roots[m]!, proof],
          // proof/verify_test.go corruptConsistencyProof's size changes. (Sizes are not bound by the proof
          // alone when the tree shape along the path is the same; the signed checkpoint binds them.)
          [m - 1, n, roots[m]!, roots[n]!, proof],
          [m + 1, n, roots[m]!, roots[n]!, proof],
          [m ^ 2, n, roots[m]!, roots[n]!, proof],
          [m, n * 2, roots[m]!, roots[n]!, proof],
          [m, Math.floor(n / 2), roots[m]!, roots[n]!, proof],
          [n, m, roots[n]!, roots[m]!, proof],
          [m, n, roots[m]!, roots[n]!, [...proof, SOME_HASH]],
          [m, n, roots[m]!, roots[n]!, [SOME_HASH, ...proof]],
        ];
        proof.forEach((_, i) => wrong.push([m, n, roots[m]!, roots[n]!, proof.map((p, j) => (i === j ? flip(p, 0) : p))]));
        if (proof.length > 0) wrong.push([m, n, roots[m]!, roots[n]!, proof.slice(0, -1)]);
        for (const [a, b, ra, rb, p] of wrong) {
          // Some probes name a genuinely consistent pair (e.g. equal roots when m === n); skip those.
          const genuine = a >= 0 && b <= 64 && a <= b && roots[a]!.equals(ra) && roots[b]!.equals(rb) &&
            hexes(p).join() === hexes(a === b || a === 0 ? [] : refProof(a, leaves.slice(0, b))).join();
          if (genuine) continue;
          expect(verifyConsistency(a, b, ra, rb, p), `${m}->${n} probe ${a}->${b}`).toBe(false);
        }
      }
    }
  });

  it('property: random size pairs up to 3000 leaves agree with the reference and verify', () => {
    const leaves = syntheticLeaves(3000, 'c');
    const tree = new MerkleTree(leaves);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n))),
        ([m, n]) => {
          const proof = tree.consistencyProof(m, n);
          if (m < n) expect(hexes(proof)).toEqual(hexes(refProof(m, leaves.slice(0, n))));
          expect(verifyConsistency(m, n, tree.root(m), tree.root(n), proof)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('handles the empty old tree and refuses a shrinking tree', () => {
    const root = CT_ROOTS[8]!;
    expect(consistencyProof(CT_LEAF_HASHES, 0)).toEqual([]);
    expect(verifyConsistency(0, 8, emptyRootHash(), root, [])).toBe(true);
    expect(verifyConsistency(0, 8, SOME_HASH, root, [])).toBe(false);
    expect(verifyConsistency(0, 8, emptyRootHash(), root, [SOME_HASH])).toBe(false);
    expect(verifyConsistency(0, 0, emptyRootHash(), emptyRootHash(), [])).toBe(true);
    expect(() => consistencyProofPlan(5, 4)).toThrow(RangeError);
    expect(verifyConsistency(8, 4, root, CT_ROOTS[4]!, [])).toBe(false);
  });
});

describe('attacks on a ledger of 37 entries with a recorded root', () => {
  const SIZE = 37;
  const leaves = syntheticLeaves(SIZE, 'ledger');
  const tree = new MerkleTree(leaves);
  const checkpoint = { treeSize: SIZE, rootHash: tree.root() };
  const entryAt = (i: number): Buffer => Buffer.from(`ledgerentry-${i}`);

  it('a changed leaf: root differs, its old proof fails, its new leaf hash fails against the recorded root', () => {
    const tampered = [...leaves];
    tampered[12] = leafHash(Buffer.from('ledgerentry-12 (edited)'));
    expect(rootHash(tampered).equals(checkpoint.rootHash)).toBe(false);
    expect(verifyInclusion(tampered[12]!, 12, SIZE, tree.inclusionProof(12), checkpoint.rootHash)).toBe(false);
    expect(verifyInclusion(tampered[12]!, 12, SIZE, inclusionProof(tampered, 12), checkpoint.rootHash)).toBe(false);
    expect(auditLeafHashes(tampered, [checkpoint]).findings).toMatchObject([{ kind: 'root-mismatch', treeSize: SIZE }]);
    expect(leafHash(entryAt(12)).equals(leaves[12]!)).toBe(true);
  });

  it('a swapped pair of leaves: root differs and each leaf fails at the other position', () => {
    const swapped = [...leaves];
    [swapped[4], swapped[5]] = [swapped[5]!, swapped[4]!];
    expect(rootHash(swapped).equals(checkpoint.rootHash)).toBe(false);
    expect(verifyInclusion(leaves[4]!, 5, SIZE, tree.inclusionProof(5), checkpoint.rootHash)).toBe(false);
    expect(verifyInclusion(leaves[4]!, 5, SIZE, inclusionProof(swapped, 5), checkpoint.rootHash)).toBe(false);
    expect(auditLeafHashes(swapped, [checkpoint]).ok).toBe(false);
  });

  it('an inserted leaf: the grown tree is not consistent with the recorded root', () => {
    const inserted = [...leaves.slice(0, 20), leafHash(Buffer.from('forged')), ...leaves.slice(20)];
    const grown = new MerkleTree(inserted);
    expect(verifyConsistency(SIZE, grown.size, checkpoint.rootHash, grown.root(), grown.consistencyProof(SIZE))).toBe(false);
    expect(grown.root(SIZE).equals(checkpoint.rootHash)).toBe(false);
    expect(auditLeafHashes(inserted, [checkpoint]).findings).toMatchObject([{ kind: 'root-mismatch' }]);
  });

  it('a dropped leaf, hidden by appending another: not consistent with the recorded root', () => {
    const dropped = [...leaves.slice(0, 9), ...leaves.slice(10), leafHash(Buffer.from('filler'))];
    expect(dropped).toHaveLength(SIZE);
    const other = new MerkleTree(dropped);
    expect(other.root().equals(checkpoint.rootHash)).toBe(false);
    const more = new MerkleTree([...dropped, ...syntheticLeaves(5, 'later')]);
    expect(verifyConsistency(SIZE, more.size, checkpoint.rootHash, more.root(), more.consistencyProof(SIZE))).toBe(false);
  });

  it('a truncated tree: no consistency proof can reach back, and the audit reports truncation', () => {
    const truncated = leaves.slice(0, 30);
    const short = new MerkleTree(truncated);
    expect(verifyConsistency(SIZE, 30, checkpoint.rootHash, short.root(), [])).toBe(false);
    expect(verifyConsistency(SIZE, 30, checkpoint.rootHash, short.root(), short.consistencyProof(20))).toBe(false);
    expect(auditLeafHashes(truncated, [checkpoint]).findings).toEqual([
      { kind: 'truncated', treeSize: SIZE, actualSize: 30 },
    ]);
  });

  it('a wrong proof element fails, for inclusion and consistency', () => {
    const proof = tree.inclusionProof(17);
    for (let i = 0; i < proof.length; i++) {
      const wrong = proof.map((p, j) => (j === i ? flip(p, 7) : p));
      expect(verifyInclusion(leaves[17]!, 17, SIZE, wrong, checkpoint.rootHash)).toBe(false);
    }
    const later = new MerkleTree([...leaves, ...syntheticLeaves(9, 'x')]);
    const consistency = later.consistencyProof(SIZE);
    for (let i = 0; i < consistency.length; i++) {
      const wrong = consistency.map((p, j) => (j === i ? flip(p, 7) : p));
      expect(verifyConsistency(SIZE, later.size, checkpoint.rootHash, later.root(), wrong)).toBe(false);
    }
    expect(verifyConsistency(SIZE, later.size, checkpoint.rootHash, later.root(), consistency)).toBe(true);
  });

  it('the untouched ledger passes the audit at several checkpoints', () => {
    const expected = [0, 1, 16, 20, SIZE].map((n) => ({ treeSize: n, rootHash: tree.root(n) }));
    const result = auditLeafHashes(leaves, expected);
    expect(result).toMatchObject({ ok: true, treeSize: SIZE, findings: [] });
    expect(result.rootHash.equals(checkpoint.rootHash)).toBe(true);
  });
});

describe('MerkleAccumulator', () => {
  it('reports exactly the perfect subtrees, which reproduce every root, proof and restore point', () => {
    const leaves = syntheticLeaves(100, 'acc');
    const stored = new Map<string, Buffer>();
    const key = (n: NodeId): string => `${n.level}/${n.index}`;
    const accumulator = new MerkleAccumulator();
    leaves.forEach((leaf, i) => {
      const reported: NodeId[] = [];
      accumulator.append(leaf, (node, hash) => {
        reported.push(node);
        stored.set(key(node), hash);
      });
      // Leaf i completes one subtree per trailing 1-bit of i, plus the leaf itself.
      let trailingOnes = 0;
      for (let x = i; x % 2 === 1; x = (x - 1) / 2) trailingOnes++;
      expect(reported).toHaveLength(1 + trailingOnes);
      expect(accumulator.root().equals(refMth(leaves.slice(0, i + 1)))).toBe(true);
    });
    const fetch = (n: NodeId): Buffer => stored.get(key(n))!;
    for (let size = 1; size <= 100; size++) {
      const state = rootHashPlan(size).map(fetch);
      const resumed = MerkleAccumulator.restore(size, state);
      expect(resumed.root().equals(refMth(leaves.slice(0, size)))).toBe(true);
      for (const leaf of leaves.slice(size)) resumed.append(leaf);
      expect(resumed.root().equals(accumulator.root())).toBe(true);
    }
    expect(accumulator.state().hashes).toHaveLength(rootHashPlan(100).length);
    expect(accumulator.clone().root().equals(accumulator.root())).toBe(true);
    expect(emptyRootHash().equals(new MerkleAccumulator().root())).toBe(true);
  });

  it('refuses malformed input', () => {
    expect(() => new MerkleAccumulator().append(Buffer.alloc(31))).toThrow(RangeError);
    expect(() => MerkleAccumulator.restore(3, [SOME_HASH])).toThrow(RangeError);
    expect(() => new MerkleTree(CT_LEAF_HASHES).root(9)).toThrow(RangeError);
  });
});

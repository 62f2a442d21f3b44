/**
 * RFC 9162 §2.1 Merkle tree hashing, proofs and verification, with no storage attached.
 *
 * Two ways to build proofs:
 * - from a plain array of leaf hashes (`inclusionProof`, `consistencyProof`): simple, O(n) hashing per call;
 * - from stored hashes of perfect subtrees (`inclusionProofPlan` / `consistencyProofPlan` + `assembleProof`, or
 *   the in-memory `MerkleTree`): O(log n) node reads and hashes per call. A storage layer keeps the nodes that
 *   `MerkleAccumulator.append` reports, fetches the node ids a plan names, and assembles the proof.
 *
 * Sizes and indices are JavaScript numbers; everything works up to Number.MAX_SAFE_INTEGER, so no bitwise
 * operators (which truncate to 32 bits) are used on them.
 */
import { createHash, hash as oneShotHash, timingSafeEqual } from 'node:crypto';

export const HASH_SIZE = 32;

// RFC 9162 §2.1.1: domain separation between leaves and interior nodes.
const LEAF_PREFIX = 0x00;
const NODE_PREFIX = 0x01;

const LEAF_PREFIX_BYTES = Buffer.of(LEAF_PREFIX);
const NODE_PREFIX_BYTES = Buffer.of(NODE_PREFIX);

/** Scratch buffer for the common node case (two 32-byte children); crypto.hash copies its input. */
const nodeScratch = Buffer.alloc(1 + 2 * HASH_SIZE);
nodeScratch[0] = NODE_PREFIX;

/** RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)). */
export function leafHash(entry: Uint8Array): Buffer {
  // One-shot hashing of a copy is about a third faster than a streaming Hash object for entry-sized inputs.
  return oneShotHash('sha256', Buffer.concat([LEAF_PREFIX_BYTES, entry]), 'buffer');
}

/** RFC 9162 §2.1.1: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length === HASH_SIZE && right.length === HASH_SIZE) {
    nodeScratch.set(left, 1);
    nodeScratch.set(right, 1 + HASH_SIZE);
    return oneShotHash('sha256', nodeScratch, 'buffer');
  }
  return createHash('sha256').update(NODE_PREFIX_BYTES).update(left).update(right).digest();
}

/** RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string. */
export function emptyRootHash(): Buffer {
  return createHash('sha256').digest();
}

// ---------------------------------------------------------------------------------------------------------
// Perfect subtrees and proof plans
// ---------------------------------------------------------------------------------------------------------

/**
 * A perfect (complete) subtree: the 2^level leaves [index·2^level, (index+1)·2^level). Level 0 nodes are the
 * leaf hashes themselves. Its hash never changes once the tree has grown past its last leaf.
 */
export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/**
 * How to build a proof from perfect-subtree hashes: one entry per proof element. Each element is the MTH of a
 * range of leaves, given as the perfect subtrees that tile the range left to right; the element's hash is
 * their right fold (`foldSubtrees`). Most elements are a single perfect subtree.
 */
export type ProofPlan = readonly (readonly NodeId[])[];

function assertSize(value: number, name: string, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be a safe integer >= ${min}, got ${String(value)}`);
  }
}

/** Largest power of two strictly smaller than n (n >= 2): the split point k of RFC 9162 §2.1.1. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Largest power of two <= n (n >= 1). */
function largestPowerOfTwoAtMost(n: number): number {
  let k = 1;
  while (k * 2 <= n) k *= 2;
  return k;
}

function log2Exact(powerOfTwo: number): number {
  let level = 0;
  for (let p = powerOfTwo; p > 1; p /= 2) level++;
  return level;
}

/**
 * The perfect subtrees tiling [begin, end), largest first. Every range that RFC 9162's recursion visits starts
 * at a multiple of a power of two at least as large as the range, so the greedy tiling is also the RFC's split,
 * and MTH(D[begin:end]) is the right fold of these subtrees' hashes.
 */
export function rangeNodes(begin: number, end: number): NodeId[] {
  assertSize(begin, 'begin', 0);
  assertSize(end, 'end', begin);
  const nodes: NodeId[] = [];
  let at = begin;
  while (at < end) {
    const width = largestPowerOfTwoAtMost(end - at);
    if (at % width !== 0) throw new RangeError(`range [${begin}, ${end}) is not aligned to RFC 9162 subtrees`);
    nodes.push({ level: log2Exact(width), index: at / width });
    at += width;
  }
  return nodes;
}

/** The perfect subtrees whose right fold is the root of the tree of this size (also a MerkleAccumulator's state). */
export function rootHashPlan(treeSize: number): NodeId[] {
  assertSize(treeSize, 'treeSize', 0);
  return rangeNodes(0, treeSize);
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]), as subtree ids. Elements are ordered leaf to root, as the RFC lists them. */
export function inclusionProofPlan(index: number, treeSize: number): NodeId[][] {
  assertSize(treeSize, 'treeSize', 1);
  assertSize(index, 'index', 0);
  if (index >= treeSize) throw new RangeError(`index ${index} is outside a tree of size ${treeSize}`);
  const siblingsRootFirst: NodeId[][] = [];
  let begin = 0;
  let end = treeSize;
  while (end - begin > 1) {
    const k = splitPoint(end - begin);
    if (index < begin + k) {
      siblingsRootFirst.push(rangeNodes(begin + k, end));
      end = begin + k;
    } else {
      siblingsRootFirst.push(rangeNodes(begin, begin + k));
      begin += k;
    }
  }
  return siblingsRootFirst.reverse();
}

/**
 * RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), as subtree ids. Empty for oldSize 0 and for
 * oldSize === newSize (nothing to prove).
 */
export function consistencyProofPlan(oldSize: number, newSize: number): NodeId[][] {
  assertSize(newSize, 'newSize', 0);
  assertSize(oldSize, 'oldSize', 0);
  if (oldSize > newSize) throw new RangeError(`oldSize ${oldSize} is larger than newSize ${newSize}`);
  if (oldSize === 0 || oldSize === newSize) return [];
  // Walk down SUBPROOF, collecting the appended MTH(...) terms root first; `oldEnd` is m as an absolute position.
  const siblingsRootFirst: NodeId[][] = [];
  let begin = 0;
  let end = newSize;
  let wholeTreeSoFar = true; // SUBPROOF's flag b
  while (oldSize !== end) {
    const k = splitPoint(end - begin);
    if (oldSize <= begin + k) {
      siblingsRootFirst.push(rangeNodes(begin + k, end));
      end = begin + k;
    } else {
      siblingsRootFirst.push(rangeNodes(begin, begin + k));
      begin += k;
      wholeTreeSoFar = false;
    }
  }
  // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}.
  const base = wholeTreeSoFar ? [] : [rangeNodes(begin, end)];
  return [...base, ...siblingsRootFirst.reverse()];
}

/** MTH of a range from the hashes of the perfect subtrees tiling it (left to right): the right fold. */
export function foldSubtrees(hashes: readonly Uint8Array[]): Buffer {
  const last = hashes[hashes.length - 1];
  if (last === undefined) throw new RangeError('cannot fold an empty list of subtree hashes');
  let acc: Buffer = Buffer.from(last);
  for (let i = hashes.length - 2; i >= 0; i--) acc = nodeHash(hashes[i]!, acc);
  return acc;
}

/** Turns a plan into proof hashes, reading each perfect subtree hash through `hashOf`. */
export function assembleProof(plan: ProofPlan, hashOf: (node: NodeId) => Uint8Array): Buffer[] {
  return plan.map((element) => foldSubtrees(element.map(hashOf)));
}

// ---------------------------------------------------------------------------------------------------------
// Incremental root: the compact range [0, n)
// ---------------------------------------------------------------------------------------------------------

/**
 * Appends leaf hashes one at a time and keeps only the roots of the O(log n) perfect subtrees that tile
 * [0, size) (a "compact range"). `root()` is available at any size. `append` reports every perfect subtree
 * completed by the new leaf (the leaf itself at level 0 first), so a storage layer can keep those nodes and
 * build O(log n) proofs later.
 */
export class MerkleAccumulator {
  #size = 0;
  /** Roots of the perfect subtrees tiling [0, size), largest (leftmost) first. */
  readonly #stack: Buffer[] = [];

  /** Resumes from stored state: `hashes` are the nodes named by `rootHashPlan(size)`, in that order. */
  static restore(size: number, hashes: readonly Uint8Array[]): MerkleAccumulator {
    const plan = rootHashPlan(size);
    if (hashes.length !== plan.length) {
      throw new RangeError(`a tree of size ${size} needs ${plan.length} subtree hashes, got ${hashes.length}`);
    }
    const accumulator = new MerkleAccumulator();
    for (const h of hashes) {
      if (h.length !== HASH_SIZE) throw new RangeError(`subtree hashes must be ${HASH_SIZE} bytes`);
      accumulator.#stack.push(Buffer.from(h));
    }
    accumulator.#size = size;
    return accumulator;
  }

  get size(): number {
    return this.#size;
  }

  append(leaf: Uint8Array, onNode?: (node: NodeId, hash: Buffer) => void): void {
    if (leaf.length !== HASH_SIZE) throw new RangeError(`leaf hashes must be ${HASH_SIZE} bytes, got ${leaf.length}`);
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new RangeError('tree is full');
    let hash: Buffer = Buffer.from(leaf);
    let level = 0;
    let index = this.#size;
    onNode?.({ level, index }, hash);
    // An odd index at a level means its left sibling is complete and on top of the stack.
    while (index % 2 === 1) {
      hash = nodeHash(this.#stack.pop()!, hash);
      level++;
      index = (index - 1) / 2;
      onNode?.({ level, index }, hash);
    }
    this.#stack.push(hash);
    this.#size++;
  }

  root(): Buffer {
    return this.#stack.length === 0 ? emptyRootHash() : foldSubtrees(this.#stack);
  }

  /** The current state, in `rootHashPlan(size)` order, for `restore`. */
  state(): { size: number; hashes: Buffer[] } {
    return { size: this.#size, hashes: this.#stack.map((h) => Buffer.from(h)) };
  }

  clone(): MerkleAccumulator {
    return MerkleAccumulator.restore(this.#size, this.#stack);
  }
}

// ---------------------------------------------------------------------------------------------------------
// In-memory tree with every perfect subtree kept: O(log n) roots and proofs at any past size
// ---------------------------------------------------------------------------------------------------------

/** Growable packed array of 32-byte hashes (one Buffer object per hash would cost several times the memory). */
class HashColumn {
  #bytes = Buffer.alloc(HASH_SIZE * 16);
  length = 0;

  push(hash: Uint8Array): void {
    if ((this.length + 1) * HASH_SIZE > this.#bytes.length) {
      const grown = Buffer.alloc(this.#bytes.length * 2);
      this.#bytes.copy(grown);
      this.#bytes = grown;
    }
    this.#bytes.set(hash, this.length * HASH_SIZE);
    this.length++;
  }

  at(index: number): Buffer {
    return this.#bytes.subarray(index * HASH_SIZE, (index + 1) * HASH_SIZE);
  }
}

export class MerkleTree {
  readonly #accumulator = new MerkleAccumulator();
  /** #levels[level] holds every completed perfect subtree at that level, in index order. */
  readonly #levels: HashColumn[] = [];

  constructor(leafHashes: Iterable<Uint8Array> = []) {
    for (const h of leafHashes) this.append(h);
  }

  get size(): number {
    return this.#accumulator.size;
  }

  append(leaf: Uint8Array): void {
    this.#accumulator.append(leaf, ({ level }, hash) => {
      (this.#levels[level] ??= new HashColumn()).push(hash);
    });
  }

  /** Hash of a completed perfect subtree (a copy). */
  subtreeHash(node: NodeId): Buffer {
    const column = this.#levels[node.level];
    if (column === undefined || !Number.isSafeInteger(node.index) || node.index < 0 || node.index >= column.length) {
      throw new RangeError(`subtree (level ${node.level}, index ${node.index}) is not complete in this tree`);
    }
    return Buffer.from(column.at(node.index));
  }

  leafHash(index: number): Buffer {
    return this.subtreeHash({ level: 0, index });
  }

  root(treeSize: number = this.size): Buffer {
    this.#assertWithin(treeSize);
    if (treeSize === this.size) return this.#accumulator.root();
    if (treeSize === 0) return emptyRootHash();
    return foldSubtrees(rootHashPlan(treeSize).map((n) => this.subtreeHash(n)));
  }

  inclusionProof(index: number, treeSize: number = this.size): Buffer[] {
    this.#assertWithin(treeSize);
    return assembleProof(inclusionProofPlan(index, treeSize), (n) => this.subtreeHash(n));
  }

  consistencyProof(oldSize: number, newSize: number = this.size): Buffer[] {
    this.#assertWithin(newSize);
    return assembleProof(consistencyProofPlan(oldSize, newSize), (n) => this.subtreeHash(n));
  }

  #assertWithin(treeSize: number): void {
    assertSize(treeSize, 'treeSize', 0);
    if (treeSize > this.size) throw new RangeError(`treeSize ${treeSize} is beyond the tree's size ${this.size}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Array API: the RFC functions over a list of leaf hashes
// ---------------------------------------------------------------------------------------------------------

/** RFC 9162 §2.1.1 MTH(D[n]) over leaf hashes. */
export function rootHash(leafHashes: readonly Uint8Array[]): Buffer {
  const accumulator = new MerkleAccumulator();
  for (const h of leafHashes) accumulator.append(h);
  return accumulator.root();
}

/** Hash of a perfect subtree computed straight from the leaves: O(2^level) hashes. */
function subtreeFromLeaves(leafHashes: readonly Uint8Array[]): (node: NodeId) => Uint8Array {
  const compute = (level: number, index: number): Uint8Array => {
    if (level === 0) {
      const leaf = leafHashes[index];
      if (leaf === undefined) throw new RangeError(`no leaf at index ${index}`);
      return leaf;
    }
    return nodeHash(compute(level - 1, 2 * index), compute(level - 1, 2 * index + 1));
  };
  return ({ level, index }) => compute(level, index);
}

/** RFC 9162 §2.1.3.1 PATH(index, D[n]) for the tree made of all `leafHashes`. */
export function inclusionProof(leafHashes: readonly Uint8Array[], index: number): Buffer[] {
  return assembleProof(inclusionProofPlan(index, leafHashes.length), subtreeFromLeaves(leafHashes));
}

/** RFC 9162 §2.1.4.1 PROOF(oldSize, D[n]) for the tree made of all `leafHashes`. */
export function consistencyProof(leafHashes: readonly Uint8Array[], oldSize: number): Buffer[] {
  return assembleProof(consistencyProofPlan(oldSize, leafHashes.length), subtreeFromLeaves(leafHashes));
}

// ---------------------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------------------

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_SIZE;
}

function hashesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const isOdd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);

/** RFC 9162 §2.1.3.2. False for any malformed input (wrong hash sizes, index outside the tree, bad length). */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isHash(leaf) || !isHash(root) || !proof.every(isHash)) return false;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(treeSize) || index < 0 || index >= treeSize) {
    return false;
  }
  let fn = index;
  let sn = treeSize - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && hashesEqual(r, root);
}

/**
 * RFC 9162 §2.1.4.2, plus the edge cases the RFC leaves to the caller: equal sizes need an empty proof and equal
 * roots; an empty old tree needs an empty proof and the empty-tree root; a shrinking tree never verifies.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isHash(oldRoot) || !isHash(newRoot) || !proof.every(isHash)) return false;
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize) || oldSize < 0 || oldSize > newSize) {
    return false;
  }
  if (oldSize === newSize) return proof.length === 0 && hashesEqual(oldRoot, newRoot);
  if (oldSize === 0) return proof.length === 0 && hashesEqual(oldRoot, emptyRootHash());
  // Step 1: an empty path fails.
  if (proof.length === 0) return false;
  // Step 2: if the old size is a power of two, the old root is the first node of the path.
  const path = largestPowerOfTwoAtMost(oldSize) === oldSize ? [oldRoot, ...proof] : [...proof];
  // Step 3.
  let fn = oldSize - 1;
  let sn = newSize - 1;
  // Step 4.
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // Step 5.
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  // Step 6.
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  // Step 7.
  return sn === 0 && hashesEqual(fr, oldRoot) && hashesEqual(sr, newRoot);
}

// ---------------------------------------------------------------------------------------------------------
// Streaming audit against checkpoints
// ---------------------------------------------------------------------------------------------------------

export interface ExpectedRoot {
  readonly treeSize: number;
  readonly rootHash: Uint8Array;
}

export type AuditFinding =
  | { readonly kind: 'root-mismatch'; readonly treeSize: number; readonly expected: Buffer; readonly actual: Buffer }
  | { readonly kind: 'truncated'; readonly treeSize: number; readonly actualSize: number };

export interface AuditResult {
  readonly ok: boolean;
  readonly treeSize: number;
  readonly rootHash: Buffer;
  /** Every checkpoint the leaves disagree with, in ascending tree size. */
  readonly findings: readonly AuditFinding[];
}

/**
 * Streams leaf hashes through a MerkleAccumulator and compares the root at each expected size (e.g. every
 * signed checkpoint). A changed, missing, inserted or reordered leaf before a checkpoint's size changes that
 * checkpoint's root; a tree with fewer leaves than a checkpoint is reported as truncated.
 */
export function auditLeafHashes(leafHashes: Iterable<Uint8Array>, expected: readonly ExpectedRoot[]): AuditResult {
  for (const e of expected) assertSize(e.treeSize, 'expected treeSize', 0);
  const pending = [...expected].sort((a, b) => a.treeSize - b.treeSize);
  const findings: AuditFinding[] = [];
  const accumulator = new MerkleAccumulator();
  let next = 0;
  const checkAtCurrentSize = (): void => {
    while (next < pending.length && pending[next]!.treeSize === accumulator.size) {
      const want = pending[next]!;
      const actual = accumulator.root();
      if (!isHash(want.rootHash) || !hashesEqual(actual, want.rootHash)) {
        findings.push({ kind: 'root-mismatch', treeSize: want.treeSize, expected: Buffer.from(want.rootHash), actual });
      }
      next++;
    }
  };
  checkAtCurrentSize();
  for (const leaf of leafHashes) {
    accumulator.append(leaf);
    checkAtCurrentSize();
  }
  for (; next < pending.length; next++) {
    findings.push({ kind: 'truncated', treeSize: pending[next]!.treeSize, actualSize: accumulator.size });
  }
  return { ok: findings.length === 0, treeSize: accumulator.size, rootHash: accumulator.root(), findings };
}

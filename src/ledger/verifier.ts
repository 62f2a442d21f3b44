/**
 * Tresor ledger verifier — standalone.
 *
 * Copy this single file into your own project to check what a Tresor server hands you, without trusting or
 * installing Tresor: it imports only Node's built-in `node:crypto` (Node 18 or later) and uses only erasable
 * TypeScript syntax, so it runs under tsc, tsx or `node --experimental-strip-types`.
 *
 * What it checks (every function returns `{ valid, reason }` and never throws on bad input):
 * - `verifyCheckpoint(text, publicKeyPem)`: a signed checkpoint (c2sp.org/tlog-checkpoint) by the ledger key:
 *   ECDSA P-256 / SHA-256, DER signature, key id = SHA-256(SPKI DER)[:4] (c2sp.org/signed-note type 0x02);
 * - `verifyInclusionProof(json)`: an entry (or its leaf hash) is leaf `index` of the tree with `rootHash`
 *   (RFC 9162 §2.1.3.2);
 * - `verifyEntryInCheckpoint(json, checkpointText, publicKeyPem)`: both of the above, and that the proof is for
 *   the checkpoint's size and root;
 * - `verifyConsistencyProof(json)` and `verifyCheckpointConsistency(...)`: a later tree extends an earlier one
 *   without changing, dropping or reordering anything (RFC 9162 §2.1.4.2);
 * - `verifyPayload(entry, payload, salt)`: a payload you were given is the one the entry committed to.
 *
 * All hashes, entries, salts and proof elements are standard base64 strings.
 */
import { createHash, createPublicKey, timingSafeEqual, verify, type KeyObject } from 'node:crypto';

export interface Verdict {
  readonly valid: boolean;
  readonly reason: string;
}

export interface InclusionProofJson {
  /** base64 of SHA-256(0x00 || entry). Give this or `entry` (or both, which must agree). */
  readonly leafHash?: string;
  /** base64 of the entry's leaf bytes. */
  readonly entry?: string;
  readonly index: number;
  readonly treeSize: number;
  readonly proof: readonly string[];
  readonly rootHash: string;
}

export interface ConsistencyProofJson {
  readonly oldSize: number;
  readonly newSize: number;
  readonly oldRootHash: string;
  readonly newRootHash: string;
  readonly proof: readonly string[];
}

export interface CheckpointSummary {
  readonly origin: string;
  readonly treeSize: number;
  /** base64 */
  readonly rootHash: string;
  /** ISO 8601 UTC */
  readonly time: string;
}

export interface CheckpointVerdict extends Verdict {
  /** Present only when valid. */
  readonly checkpoint?: CheckpointSummary;
}

const HASH_SIZE = 32;

const ok = (reason: string): Verdict => ({ valid: true, reason });
const bad = (reason: string): Verdict => ({ valid: false, reason });

// --------------------------------------------------------------------------------------------------------
// Small helpers
// --------------------------------------------------------------------------------------------------------

function decodeBase64(value: unknown, what: string): Buffer | string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    return `${what} is not a standard base64 string`;
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) return `${what} is not canonical base64`;
  return bytes;
}

function decodeHash(value: unknown, what: string): Buffer | string {
  const bytes = decodeBase64(value, what);
  if (typeof bytes === 'string') return bytes;
  return bytes.length === HASH_SIZE ? bytes : `${what} is ${bytes.length} bytes, expected ${HASH_SIZE}`;
}

function decodeHashList(value: unknown, what: string): Buffer[] | string {
  if (!Array.isArray(value)) return `${what} must be an array of base64 hashes`;
  if (value.length > 64) return `${what} has ${value.length} elements; no proof needs more than 64`;
  const out: Buffer[] = [];
  for (let i = 0; i < value.length; i++) {
    const h = decodeHash(value[i], `${what}[${i}]`);
    if (typeof h === 'string') return h;
    out.push(h);
  }
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
// RFC 9162 §2.1.1
const hashLeaf = (entry: Uint8Array): Buffer => sha256(Buffer.of(0x00), entry);
const hashChildren = (left: Uint8Array, right: Uint8Array): Buffer => sha256(Buffer.of(0x01), left, right);
const sameHash = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && timingSafeEqual(a, b);
const isOdd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);
const isPowerOfTwo = (n: number): boolean => {
  let p = 1;
  while (p < n) p *= 2;
  return p === n;
};
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// --------------------------------------------------------------------------------------------------------
// Merkle proofs, RFC 9162
// --------------------------------------------------------------------------------------------------------

/** RFC 9162 §2.1.3.2 up to the final comparison: the root the proof leads to, or why it cannot lead anywhere. */
function rootFromInclusionProof(leaf: Buffer, index: number, treeSize: number, proof: Buffer[]): Buffer | string {
  if (index >= treeSize) return `index ${index} is not inside a tree of size ${treeSize}`;
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return `proof has more elements than a tree of size ${treeSize} needs for index ${index}`;
    if (isOdd(fn) || fn === sn) {
      r = hashChildren(p, r);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) return `proof has fewer elements than a tree of size ${treeSize} needs for index ${index}`;
  return r;
}

/** The Tresor entry's own `seq` must name the leaf index it is proved at (only checked for Tresor entries). */
function entrySeqMismatch(entry: Buffer, index: number): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(entry));
  } catch {
    return undefined;
  }
  if (isRecord(json) && json['v'] === 1 && typeof json['seq'] === 'number' && json['seq'] !== index) {
    return `entry says seq ${json['seq']} but the proof is for index ${index}`;
  }
  return undefined;
}

export function verifyInclusionProof(input: unknown): Verdict {
  if (!isRecord(input)) return bad('inclusion proof must be a JSON object');
  const { index, treeSize } = input;
  if (!isSize(index)) return bad('index must be a non-negative integer');
  if (!isSize(treeSize) || treeSize === 0) return bad('treeSize must be a positive integer');
  const proof = decodeHashList(input['proof'], 'proof');
  if (typeof proof === 'string') return bad(proof);
  const root = decodeHash(input['rootHash'], 'rootHash');
  if (typeof root === 'string') return bad(root);

  let leaf: Buffer | undefined;
  if (input['entry'] !== undefined) {
    const entry = decodeBase64(input['entry'], 'entry');
    if (typeof entry === 'string') return bad(entry);
    const mismatch = entrySeqMismatch(entry, index);
    if (mismatch !== undefined) return bad(mismatch);
    leaf = hashLeaf(entry);
  }
  if (input['leafHash'] !== undefined) {
    const given = decodeHash(input['leafHash'], 'leafHash');
    if (typeof given === 'string') return bad(given);
    if (leaf !== undefined && !sameHash(leaf, given)) return bad('leafHash is not the hash of entry');
    leaf = given;
  }
  if (leaf === undefined) return bad('give the entry or its leafHash');

  const computed = rootFromInclusionProof(leaf, index, treeSize, proof);
  if (typeof computed === 'string') return bad(computed);
  if (!sameHash(computed, root)) {
    return bad(`proof leads to root ${hex(computed)}, not to ${hex(root)}: the entry or the proof was changed`);
  }
  return ok(`leaf ${index} is in the tree of size ${treeSize} with root ${hex(root)}`);
}

export function verifyConsistencyProof(input: unknown): Verdict {
  if (!isRecord(input)) return bad('consistency proof must be a JSON object');
  const { oldSize, newSize } = input;
  if (!isSize(oldSize) || !isSize(newSize)) return bad('oldSize and newSize must be non-negative integers');
  const proof = decodeHashList(input['proof'], 'proof');
  if (typeof proof === 'string') return bad(proof);
  const oldRoot = decodeHash(input['oldRootHash'], 'oldRootHash');
  if (typeof oldRoot === 'string') return bad(oldRoot);
  const newRoot = decodeHash(input['newRootHash'], 'newRootHash');
  if (typeof newRoot === 'string') return bad(newRoot);

  if (oldSize > newSize) return bad(`the tree shrank from ${oldSize} to ${newSize} entries (truncated)`);
  if (oldSize === newSize) {
    if (proof.length !== 0) return bad('trees of equal size need an empty proof');
    return sameHash(oldRoot, newRoot)
      ? ok(`both trees are the same tree of size ${newSize}`)
      : bad(`two different roots for the same size ${newSize}: the log forked or was rewritten`);
  }
  if (oldSize === 0) {
    if (proof.length !== 0) return bad('growing from an empty tree needs an empty proof');
    return sameHash(oldRoot, sha256())
      ? ok(`every tree extends the empty tree`)
      : bad('oldRootHash is not the root of an empty tree');
  }
  // RFC 9162 §2.1.4.2
  if (proof.length === 0) return bad('proof is empty');
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : proof;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return bad('proof has more elements than these sizes need');
    if (isOdd(fn) || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) return bad('proof has fewer elements than these sizes need');
  if (!sameHash(fr, oldRoot)) {
    return bad(`the first ${oldSize} entries of the new tree differ from the old tree: an entry was changed, dropped, inserted or reordered`);
  }
  if (!sameHash(sr, newRoot)) return bad('proof does not lead to newRootHash');
  return ok(`the tree of size ${newSize} extends the tree of size ${oldSize}`);
}

// --------------------------------------------------------------------------------------------------------
// Checkpoints, c2sp.org/tlog-checkpoint + c2sp.org/signed-note
// --------------------------------------------------------------------------------------------------------

interface ParsedCheckpoint {
  readonly summary: CheckpointSummary;
  readonly rootHash: Buffer;
  readonly signedText: Buffer;
  readonly signatures: readonly { keyName: string; keyId: number; signature: Buffer }[];
}

const NAME = /^[^\s+]+$/u;

function parseCheckpointText(text: unknown): ParsedCheckpoint | string {
  if (typeof text !== 'string') return 'checkpoint must be text';
  if (text.length > 64 * 1024) return 'checkpoint is larger than 64 KiB';
  if (/[\u0000-\u0009\u000B-\u001F]/.test(text)) return 'checkpoint contains a control character other than newline';
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)) {
    return 'checkpoint is not valid UTF-8';
  }
  if (!text.endsWith('\n')) return 'checkpoint must end with a newline';
  const separator = text.lastIndexOf('\n\n');
  if (separator < 0 || separator + 2 === text.length) return 'checkpoint has no signature lines';
  const body = text.slice(0, separator + 1);
  const lines = text.slice(0, separator).split('\n');
  if (lines.length !== 4 || lines.some((l) => l.length === 0)) {
    return 'checkpoint text must be exactly: origin, tree size, root hash, time line';
  }
  const [origin, sizeLine, rootLine, timeLine] = lines as [string, string, string, string];
  if (!NAME.test(origin)) return 'checkpoint origin must be non-empty without spaces or "+"';
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    return 'checkpoint tree size is not a canonical decimal number';
  }
  const rootHash = decodeHash(rootLine, 'checkpoint root hash');
  if (typeof rootHash === 'string') return rootHash;
  const time = timeLine.startsWith('time ') ? timeLine.slice(5) : '';
  const ms = Date.parse(time);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(time) || !Number.isFinite(ms) || new Date(ms).toISOString() !== time) {
    return 'checkpoint fourth line must be "time <ISO 8601 UTC>", e.g. time 2025-01-31T12:00:00.000Z';
  }
  const signatures: { keyName: string; keyId: number; signature: Buffer }[] = [];
  const signatureLines = text.slice(separator + 2, -1).split('\n');
  if (signatureLines.length > 64) return 'checkpoint has more than 64 signatures';
  for (const line of signatureLines) {
    const match = /^\u2014 ([^\s+]+) (\S+)$/u.exec(line);
    if (!match) return `malformed signature line ${JSON.stringify(line)}`;
    const bytes = decodeBase64(match[2], 'signature');
    if (typeof bytes === 'string') return bytes;
    if (bytes.length < 5) return 'signature is too short';
    signatures.push({ keyName: match[1]!, keyId: bytes.readUInt32BE(0), signature: bytes.subarray(4) });
  }
  return {
    summary: { origin, treeSize: Number(sizeLine), rootHash: rootLine, time },
    rootHash,
    signedText: Buffer.from(body, 'utf8'),
    signatures,
  };
}

function ledgerPublicKey(publicKeyPem: unknown): KeyObject | string {
  let key: KeyObject;
  try {
    key = createPublicKey(publicKeyPem as string);
  } catch {
    return 'public key is not a PEM public key';
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    return 'public key is not an ECDSA P-256 key';
  }
  return key;
}

function checkSignature(parsed: ParsedCheckpoint, key: KeyObject, keyName: string): Verdict {
  // c2sp.org/signed-note type 0x02: key id = SHA-256(SPKI DER)[:4]; signatures by other keys are ignored.
  const keyId = sha256(key.export({ type: 'spki', format: 'der' })).readUInt32BE(0);
  const ours = parsed.signatures.filter((s) => s.keyName === keyName && s.keyId === keyId);
  if (ours.length === 0) {
    return bad(`checkpoint carries no signature by key ${keyName} (key id ${keyId.toString(16).padStart(8, '0')})`);
  }
  for (const s of ours) {
    let good = false;
    try {
      good = verify('sha256', parsed.signedText, { key, dsaEncoding: 'der' }, s.signature);
    } catch {
      good = false;
    }
    if (!good) return bad('checkpoint signature does not verify: the checkpoint was changed or signed by another key');
  }
  return ok('checkpoint signature verifies');
}

export function verifyCheckpoint(
  text: string,
  publicKeyPem: string,
  options: { readonly keyName?: string } = {},
): CheckpointVerdict {
  const key = ledgerPublicKey(publicKeyPem);
  if (typeof key === 'string') return bad(key);
  const parsed = parseCheckpointText(text);
  if (typeof parsed === 'string') return bad(parsed);
  const signature = checkSignature(parsed, key, options.keyName ?? parsed.summary.origin);
  if (!signature.valid) return signature;
  const { origin, treeSize, time } = parsed.summary;
  return {
    valid: true,
    reason: `checkpoint for ${origin} at size ${treeSize}, ${time}, is signed by the ledger key`,
    checkpoint: parsed.summary,
  };
}

export function verifyEntryInCheckpoint(
  proof: unknown,
  checkpointText: string,
  publicKeyPem: string,
  options: { readonly keyName?: string } = {},
): Verdict {
  const checkpoint = verifyCheckpoint(checkpointText, publicKeyPem, options);
  if (!checkpoint.valid || checkpoint.checkpoint === undefined) return bad(checkpoint.reason);
  if (!isRecord(proof)) return bad('inclusion proof must be a JSON object');
  const { treeSize, rootHash } = checkpoint.checkpoint;
  if (proof['treeSize'] !== treeSize) {
    return bad(`proof is for tree size ${String(proof['treeSize'])}, the checkpoint is for ${treeSize}`);
  }
  if (proof['rootHash'] !== undefined && proof['rootHash'] !== rootHash) {
    return bad('proof names a different root hash than the checkpoint');
  }
  const inclusion = verifyInclusionProof({ ...proof, rootHash });
  return inclusion.valid ? ok(`${inclusion.reason}, as signed in the checkpoint`) : inclusion;
}

/** Both checkpoints signed by the ledger key, and the newer tree extends the older one. */
export function verifyCheckpointConsistency(
  oldCheckpointText: string,
  newCheckpointText: string,
  proof: readonly string[],
  publicKeyPem: string,
  options: { readonly keyName?: string } = {},
): Verdict {
  const older = verifyCheckpoint(oldCheckpointText, publicKeyPem, options);
  if (!older.checkpoint) return bad(`old checkpoint: ${older.reason}`);
  const newer = verifyCheckpoint(newCheckpointText, publicKeyPem, options);
  if (!newer.checkpoint) return bad(`new checkpoint: ${newer.reason}`);
  if (older.checkpoint.origin !== newer.checkpoint.origin) return bad('the checkpoints are for different logs');
  return verifyConsistencyProof({
    oldSize: older.checkpoint.treeSize,
    newSize: newer.checkpoint.treeSize,
    oldRootHash: older.checkpoint.rootHash,
    newRootHash: newer.checkpoint.rootHash,
    proof,
  });
}

// --------------------------------------------------------------------------------------------------------
// Payloads
// --------------------------------------------------------------------------------------------------------

/** Canonical JSON as Tresor writes it: sorted keys, no whitespace, ECMAScript numbers (RFC 8785 compatible). */
function canonicalJson(value: unknown, depth = 0): string {
  if (depth > 64) throw new Error('payload is nested too deeply');
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('payload contains a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v, depth + 1)).join(',')}]`;
  if (isRecord(value)) {
    const members = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k], depth + 1)}`);
    return `{${members.join(',')}}`;
  }
  throw new Error('payload is not JSON');
}

/** The payload (as parsed JSON) and its base64 salt match the commitment inside the base64 entry. */
export function verifyPayload(entry: string, payload: unknown, salt: string): Verdict {
  const entryBytes = decodeBase64(entry, 'entry');
  if (typeof entryBytes === 'string') return bad(entryBytes);
  const saltBytes = decodeBase64(salt, 'salt');
  if (typeof saltBytes === 'string') return bad(saltBytes);
  if (saltBytes.length !== 16) return bad(`salt is ${saltBytes.length} bytes, expected 16`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(entryBytes));
  } catch {
    return bad('entry is not a Tresor JSON entry');
  }
  if (!isRecord(parsed) || parsed['v'] !== 1) return bad('entry is not a version 1 Tresor entry');
  const committed = decodeHash(parsed['payloadCommitment'], 'entry payloadCommitment');
  if (typeof committed === 'string') return bad(committed);
  let canonical: string;
  try {
    canonical = canonicalJson(payload);
  } catch (error) {
    return bad((error as Error).message);
  }
  return sameHash(sha256(saltBytes, Buffer.from(canonical, 'utf8')), committed)
    ? ok('payload matches the entry')
    : bad('payload or salt does not match the commitment in the entry');
}

/**
 * The per-entry half of `ledger.verify()`: checks stored rows one position after the other (canonical
 * form, leaf hash, payload commitment) and yields their leaf hashes. The other half (folding the tree,
 * checking checkpoints, the witness and truncation) stays in `ledger.service.ts`.
 *
 * The same checker runs on the main thread for small ledgers and in worker threads for large ones
 * (`verify-worker.ts`), so both paths name exactly the same first finding.
 */
import { hash as oneShotHash } from 'node:crypto';
import { decodeEntry, ENTRY_OUTCOMES, ENTRY_VERSION, PAYLOAD_SALT_BYTES, verifyPayloadCommitment, type JsonValue } from './entry.js';
import { HASH_SIZE } from './merkle.js';

export type VerifyFindingKind =
  | 'missing-entry'
  | 'inserted-entry'
  | 'reordered-entry'
  | 'changed-entry'
  | 'changed-payload'
  | 'rewritten-before-checkpoint'
  | 'truncated'
  | 'bad-checkpoint-signature'
  | 'witness-mismatch';

export interface VerifyFinding {
  kind: VerifyFindingKind;
  seq?: number;
  treeSize?: number;
  message: string;
}

/**
 * One stored entry joined with its payload row (salt and payload null once retention removed it), as an
 * array in the column order of `rangeSql`: both drivers hand rows over as arrays for less work per row.
 */
export type VerifyRow = [
  seq: number,
  time: string,
  actor: string,
  action: string,
  resource: string,
  outcome: string,
  entry: string,
  leafHash: string,
  salt: string | null,
  payload: string | null,
];

/** SQLite, parameterised: the rows of positions [from, to) in order, with their payloads (a rowid range scan). */
export const rangeSql = 'select e.seq, e.time, e.actor, e.action, e.resource, e.outcome, e.entry, e.leaf_hash, p.salt, p.payload ' +
  'from ledger_entries e left join ledger_payloads p on p.seq = e.seq where e.seq >= ? and e.seq < ? order by e.seq';

/**
 * PostgreSQL, parameterised: the next `limit` rows from position `from` on, in order, with their payloads.
 * No upper bound in the SQL (the caller drops rows past its range): with one, and statistics not yet
 * updated after a large fill, the planner sorts the whole rest of the range for every page.
 */
export const pagePgSql =
  'select e.seq, e.time, e.actor, e.action, e.resource, e.outcome, e.entry, e.leaf_hash, p.salt, p.payload ' +
  'from ledger_entries e left join ledger_payloads p on p.seq = e.seq where e.seq >= $1 order by e.seq limit $2';

/** The first stored position at or after `from` (and before `to`), to name the gap after a range's last row. */
export const nextSeqSql = (placeholder: (n: number) => string) =>
  `select min(seq) as next from ledger_entries where seq >= ${placeholder(1)} and seq < ${placeholder(2)}`;

/**
 * What a checked run of consecutive positions gives back: `count` leaf hashes (32 bytes each, in order),
 * which of them had a payload checked, and why it stopped early, if it did: a finding at position
 * `from + count` (`payloadChecked`: its payload was checked before the entry failed), or `end` when
 * the stored entries end at `from + count`.
 */
export interface RangeResult {
  count: number;
  leaves: Uint8Array;
  payloadsChecked: Uint8Array;
  stop?: { finding: VerifyFinding; payloadChecked: 0 | 1 } | 'end';
}

const LEAF_PREFIX = Buffer.of(0x00); // RFC 9162 §2.1.1
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SURROGATE = /[\uD800-\uDFFF]/;
const sha256Once = (data: Buffer) => oneShotHash('sha256', data, 'buffer') as unknown as Buffer;

/**
 * SHA-256 of `bytes ‖ UTF-8(text)` through one reused buffer: a million entries otherwise leave millions
 * of short-lived buffers to the GC.
 */
class ScratchHasher {
  #buffer = Buffer.allocUnsafe(8192);
  #room(bytes: number) {
    if (bytes > this.#buffer.length) this.#buffer = Buffer.allocUnsafe(Math.max(bytes, this.#buffer.length * 2));
    return this.#buffer;
  }
  /** `prefix` as bytes. */
  hash(prefix: Uint8Array, text: string): Buffer {
    const buffer = this.#room(prefix.length + text.length * 3); // a UTF-16 unit is at most 3 UTF-8 bytes
    buffer.set(prefix, 0);
    const written = buffer.write(text, prefix.length, 'utf8');
    return sha256Once(buffer.subarray(0, prefix.length + written));
  }
  /** `prefixHex` as hex (a payload's salt); undefined when it is not `bytes` bytes of hex. */
  hashHexPrefixed(prefixHex: string, bytes: number, text: string): Buffer | undefined {
    if (prefixHex.length !== bytes * 2 || !/^[0-9a-f]*$/i.test(prefixHex)) return undefined;
    const buffer = this.#room(bytes + text.length * 3);
    buffer.write(prefixHex, 0, 'hex');
    const written = buffer.write(text, bytes, 'utf8');
    return sha256Once(buffer.subarray(0, bytes + written));
  }
}

/**
 * The entry text a row must hold if nothing was changed: its columns in canonical form (RFC 8785
 * member order) around its payload commitment. Returns the commitment, or undefined when the text is
 * anything else (then the strict decoder looks at it).
 */
function canonicalFromColumns(row: VerifyRow, seq: number, tenantJson: string): Buffer | undefined {
  const [, time, actor, action, resource, outcome, text] = row;
  const prefix = `{"action":${JSON.stringify(action)},"actor":${JSON.stringify(actor)},"outcome":${JSON.stringify(outcome)},"payloadCommitment":"`;
  const suffix = `","resource":${JSON.stringify(resource)},"seq":${seq},${tenantJson}"time":${JSON.stringify(time)},"v":${ENTRY_VERSION}}`;
  if (text.length !== prefix.length + 44 + suffix.length || !text.startsWith(prefix) || !text.endsWith(suffix)) return undefined;
  if (!(ENTRY_OUTCOMES as readonly string[]).includes(outcome) || !ISO_TIME.test(time)) return undefined;
  if (SURROGATE.test(text)) return undefined; // surrogates: let the strict decoder judge (text = prefix ‖ base64 ‖ suffix)
  const commitment = text.slice(prefix.length, prefix.length + 44);
  const bytes = Buffer.from(commitment, 'base64');
  return bytes.length === 32 && bytes.toString('base64') === commitment ? bytes : undefined;
}

/**
 * Checks rows position by position, starting at `from`. `check` answers the row's leaf hash, or the
 * first finding (after which nothing later can be trusted, so the caller stops).
 */
export class EntryChecker {
  /** The tenant member of the entry text (empty in the platform ledger), built once. */
  readonly #tenantJson: string;
  readonly #hasher = new ScratchHasher();
  /** The position the next row must hold. */
  at: number;
  /** Whether the last `check` checked a payload (counted even when that payload then failed). */
  payloadChecked: 0 | 1 = 0;

  constructor(tenantId: string | undefined, from: number) {
    this.#tenantJson = tenantId === undefined ? '' : `"tenant":${JSON.stringify(tenantId)},`;
    this.at = from;
  }

  /** The finding for a gap: position `at` is empty and `nextSeq` is the next stored entry. */
  missing(nextSeq: number): VerifyFinding {
    return { kind: 'missing-entry', seq: this.at, message: `entry ${this.at} is missing (the next stored entry is ${nextSeq})` };
  }

  check(row: VerifyRow): Buffer | VerifyFinding {
    const at = this.at;
    const [seq, time, actor, action, resource, outcome, entry, leafHash, salt, payload] = row;
    this.payloadChecked = 0;
    if (seq > at) return this.missing(seq);
    // Fast path: the stored entry is exactly the canonical form of its own columns at this position.
    // Anything else goes through the strict decoder, which also names what is wrong.
    let leaf: Buffer;
    let commitment: Uint8Array;
    const quick = canonicalFromColumns(row, at, this.#tenantJson);
    if (quick !== undefined) {
      leaf = this.#hasher.hash(LEAF_PREFIX, entry);
      if (leaf.toString('hex') !== leafHash) return { kind: 'changed-entry', seq: at, message: `entry ${at} was changed after it was written` };
      commitment = quick;
    } else {
      let decoded;
      try {
        decoded = decodeEntry(Buffer.from(entry, 'utf8'));
      } catch {
        return { kind: 'changed-entry', seq: at, message: `entry ${at} is not a well-formed ledger entry any more` };
      }
      if (decoded.seq !== at) {
        return { kind: decoded.seq > at ? 'reordered-entry' : 'inserted-entry', seq: at, message: `position ${at} holds the entry written as number ${decoded.seq}` };
      }
      leaf = this.#hasher.hash(LEAF_PREFIX, entry);
      const columnsMatch = time === decoded.time && actor === decoded.actor && action === decoded.action && resource === decoded.resource && outcome === decoded.outcome;
      if (leaf.toString('hex') !== leafHash || !columnsMatch) return { kind: 'changed-entry', seq: at, message: `entry ${at} was changed after it was written` };
      commitment = decoded.payloadCommitment;
    }
    if (payload !== null && salt !== null) {
      this.payloadChecked = 1;
      if (!this.#payloadMatches(payload, salt, commitment)) {
        return { kind: 'changed-payload', seq: at, message: `the payload of entry ${at} was changed after it was written` };
      }
    }
    this.at = at + 1;
    return leaf;
  }

  /** Hash the stored (canonical) text directly; older rows stored otherwise are canonicalised first. */
  #payloadMatches(payload: string, saltHex: string, commitment: Uint8Array): boolean {
    if (this.#hasher.hashHexPrefixed(saltHex, PAYLOAD_SALT_BYTES, payload)?.equals(commitment)) return true;
    try {
      return verifyPayloadCommitment(JSON.parse(payload) as JsonValue, Buffer.from(saltHex, 'hex'), commitment);
    } catch {
      return false;
    }
  }
}

/**
 * Collects the leaves of one run of positions into one buffer (which a worker can hand over without a
 * copy) and ends the run at the first finding.
 */
export class RangeCollector {
  readonly #checker: EntryChecker;
  #leaves: Uint8Array;
  #flags: Uint8Array;
  count = 0;
  stop: RangeResult['stop'];

  constructor(checker: EntryChecker, expected: number) {
    this.#checker = checker;
    this.#leaves = new Uint8Array(Math.max(1, expected) * HASH_SIZE);
    this.#flags = new Uint8Array(Math.max(1, expected));
  }

  /** False once the run has stopped (a finding): later rows must not be looked at. */
  add(row: VerifyRow): boolean {
    const result = this.#checker.check(row);
    if (!(result instanceof Uint8Array)) {
      this.stop = { finding: result, payloadChecked: this.#checker.payloadChecked };
      return false;
    }
    if (this.count === this.#flags.length) this.#grow();
    this.#leaves.set(result, this.count * HASH_SIZE);
    this.#flags[this.count] = this.#checker.payloadChecked;
    this.count++;
    return true;
  }

  #grow() {
    const leaves = new Uint8Array(this.#leaves.length * 2);
    leaves.set(this.#leaves);
    this.#leaves = leaves;
    const flags = new Uint8Array(this.#flags.length * 2);
    flags.set(this.#flags);
    this.#flags = flags;
  }

  result(): RangeResult {
    return {
      count: this.count,
      leaves: this.#leaves.subarray(0, this.count * HASH_SIZE),
      payloadsChecked: this.#flags.subarray(0, this.count),
      ...(this.stop === undefined ? {} : { stop: this.stop }),
    };
  }
}

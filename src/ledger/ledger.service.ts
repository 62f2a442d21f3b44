import { sql, type Kysely, type Transaction } from 'kysely';
import type { CipherService } from '../crypto/cipher-service.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
import { createCheckpoint, formatCheckpoint, generateLedgerKeyPair, parseCheckpoint, verifyCheckpointSignature } from './checkpoint.js';
import type { DatabaseLocation } from '../storage/storage.js';
import { currentEventSource } from './event-source.js';
import { commitPayload, encodeEntry, type EntryOutcome, type JsonValue } from './entry.js';
import type { LedgerSchema } from './ledger.migrations.js';
import {
  assembleProof,
  consistencyProofPlan,
  HASH_SIZE,
  inclusionProofPlan,
  leafHash,
  MerkleAccumulator,
  verifyConsistency,
  type NodeId,
} from './merkle.js';
import { DEFAULT_VERIFY_THREADS, verifyInWorkers, type VerifyThreads } from './verify-parallel.js';
import { EntryChecker, RangeCollector, type RangeResult, type VerifyFinding } from './verify-range.js';

export type { VerifyFinding, VerifyFindingKind } from './verify-range.js';
export type { VerifyThreads } from './verify-parallel.js';

/**
 * The one event interface every module uses (issue: tamper-evident ledger). Names people only by id or
 * blind index; `details` and `source` go into the payload, which expires under retention while the
 * leaf (which commits to a salted hash of it) stays.
 */
export interface LedgerEvent {
  actor: { id: string; role: string; tier: 'platform' | 'reseller' | 'tenant' | 'external' | 'system' | 'anonymous' };
  action: string;
  resource: { type: string; id?: string | undefined; blindIndexes?: readonly string[] | undefined };
  outcome: EntryOutcome;
  /** Source address of the request; personal data under the GDPR, so it lives in the expiring payload. */
  source?: string | undefined;
  details?: Record<string, JsonValue> | undefined;
  /** Overrides the ledger's payload retention (default: `ledger.retention_days`, `technical.*` events `ledger.technical_retention_days`). */
  retentionDays?: number | undefined;
}

export interface StoredCheckpoint {
  treeSize: number;
  rootHash: string;
  time: string;
  text: string;
}

export interface VerifyReport {
  ok: boolean;
  origin: string;
  treeSize: number;
  rootHash: string;
  checkpointsChecked: number;
  payloadsChecked: number;
  witness?: { treeSize: number; consistent: boolean };
  /** The first problem found (verification stops there: later entries cannot be trusted). */
  findings: VerifyFinding[];
}

export interface EntryWithProof {
  seq: number;
  entry: string;
  leafHash: string;
  payload: JsonValue | null;
  salt: string | null;
  treeSize: number;
  proof: string[];
  checkpoint: string;
}

export interface LedgerFilter {
  /** ISO 8601 times, inclusive start, exclusive end. */
  from?: string | undefined;
  to?: string | undefined;
  /** Exact actor as written in entries (`tier:role:id`) or just the account id. */
  actor?: string | undefined;
  /** Action, or a prefix ending in `.` (e.g. `billing.`). */
  action?: string | undefined;
  /** Blind index(es) of a data subject (e-mail and/or name): the right of access, Art. 15 GDPR. Any of them matches. */
  subject?: string | readonly string[] | undefined;
  limit?: number | undefined;
}

export interface ExportedEntry {
  seq: number;
  time: string;
  actor: string;
  action: string;
  resource: string;
  outcome: string;
  payload: JsonValue | null;
  /** base64 of the leaf bytes, so each entry can be checked against the checkpoint with a proof. */
  entry: string;
}

export type Ledger = ReturnType<typeof createLedger>;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const DAY_MS = 86_400_000;
const BATCH = 5_000;

/** The head row stores the compact range (the O(log n) subtree roots), so appends need not read the tree. */
const restoreHead = (head: { tree_size: number; compact_range: string }) =>
  MerkleAccumulator.restore(head.tree_size, (JSON.parse(head.compact_range) as string[]).map((h) => Buffer.from(h, 'hex')));

const encodeActor = (a: LedgerEvent['actor']) => `${a.tier}:${a.role}:${a.id}`;
const encodeResource = (r: LedgerEvent['resource']) =>
  `${r.type}:${r.id ?? '-'}${r.blindIndexes && r.blindIndexes.length > 0 ? `#bidx=${[...r.blindIndexes].sort().join(',')}` : ''}`;

/** The master-key context of a ledger's signing key. */
export const ledgerKeyAad = (tenantId: string | undefined) => `ledger-key|${tenantId ? `tenant/${tenantId}` : 'platform'}`;

/**
 * One append-only Merkle ledger in one database (the control database's platform ledger, or a tenant's).
 * Appends take the head row's lock (FOR UPDATE on PostgreSQL; SQLite serialises writers), so several
 * nodes get one gap-free order.
 */
export function createLedger(deps: {
  db: Kysely<LedgerSchema>;
  origin: string;
  tenantId?: string | undefined;
  masterKey: CipherService;
  retentionDays: number;
  /** The shorter retention class of technical events (`technical.*`); default: `retentionDays`. */
  technicalRetentionDays?: number | undefined;
  clock: { now(): Date };
  /** Where worker threads open this ledger's database to verify a large ledger in parallel (else one thread). */
  location?: (() => Promise<DatabaseLocation>) | undefined;
}) {
  const { db, origin, masterKey, clock } = deps;
  // Bound to the ledger, not to its origin text (which follows server.public_url and may change).
  const keyAad = ledgerKeyAad(deps.tenantId);
  const legacyKeyAad = `ledger-key|${origin}`;

  const nodeHashes = async (ids: readonly NodeId[]): Promise<Map<string, Buffer>> => {
    const found = new Map<string, Buffer>();
    if (ids.length === 0) return found;
    // Proof plans are O(log n) nodes; one query per level keeps the SQL plain.
    const byLevel = new Map<number, number[]>();
    for (const id of ids) byLevel.set(id.level, [...(byLevel.get(id.level) ?? []), id.index]);
    for (const [level, idxs] of byLevel) {
      const rows = await db.selectFrom('ledger_nodes').select(['idx', 'hash']).where('level', '=', level).where('idx', 'in', idxs).execute();
      for (const row of rows) found.set(`${level}/${row.idx}`, Buffer.from(row.hash, 'hex'));
    }
    return found;
  };

  const proofFrom = async (plan: NodeId[][]): Promise<Buffer[]> => {
    const hashes = await nodeHashes(plan.flat());
    return assembleProof(plan, (node) => {
      const hash = hashes.get(`${node.level}/${node.index}`);
      if (!hash) throw new Error(`ledger node ${node.level}/${node.index} is missing`);
      return hash;
    });
  };

  const signingKey = async (): Promise<{ publicKeyPem: string; privateKeyPem: string }> => {
    const row = await db.selectFrom('ledger_keys').selectAll().orderBy('id', 'desc').executeTakeFirst();
    if (row) {
      let privateKeyPem: string;
      try {
        privateKeyPem = (await masterKey.open(row.sealed_private_key, keyAad)).toString('utf8');
      } catch {
        // Keys sealed before the context was the ledger id (sealed again by `tresor keys rotate-master`).
        privateKeyPem = (await masterKey.open(row.sealed_private_key, legacyKeyAad)).toString('utf8');
      }
      return { publicKeyPem: row.public_key, privateKeyPem };
    }
    const pair = generateLedgerKeyPair();
    await db
      .insertInto('ledger_keys')
      .values({
        id: 1,
        public_key: pair.publicKeyPem,
        sealed_private_key: await masterKey.seal(Buffer.from(pair.privateKeyPem), keyAad),
        created_at: clock.now().toISOString(),
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    return signingKey();
  };

  const latestCheckpoint = async (): Promise<StoredCheckpoint | undefined> => {
    const row = await db.selectFrom('ledger_checkpoints').selectAll().orderBy('tree_size', 'desc').executeTakeFirst();
    return row ? { treeSize: row.tree_size, rootHash: row.root_hash, time: row.time, text: row.note } : undefined;
  };

  /** The checked entries of positions [0, end) on this thread, a batch at a time (small ledgers; see verify). */
  async function* checkedRanges(end: number): AsyncGenerator<RangeResult> {
    const checker = new EntryChecker(deps.tenantId, 0);
    let next = 0;
    while (next < end) {
      const rows = await db
        .selectFrom('ledger_entries as e')
        .leftJoin('ledger_payloads as p', 'p.seq', 'e.seq')
        .select(['e.seq', 'e.time', 'e.actor', 'e.action', 'e.resource', 'e.outcome', 'e.entry', 'e.leaf_hash', 'p.salt', 'p.payload'])
        .where('e.seq', '>=', next)
        .orderBy('e.seq')
        .limit(BATCH) // no upper bound in SQL: see pagePgSql; rows past `end` are dropped here
        .execute();
      if (rows.length === 0 || rows[0]!.seq >= end) return;
      const collector = new RangeCollector(checker, rows.length);
      for (const r of rows) if (r.seq >= end || !collector.add([r.seq, r.time, r.actor, r.action, r.resource, r.outcome, r.entry, r.leaf_hash, r.salt, r.payload])) break;
      yield collector.result();
      if (collector.stop !== undefined) return;
      next = rows[rows.length - 1]!.seq + 1;
    }
  }

  return {
    origin,

    /**
     * Appends events in one transaction; resolves only once they are committed (durable before
     * acknowledged). `within` runs in the same transaction first: the change an event records (say, a
     * record written to the same tenant database) and its entry then commit together or not at all.
     */
    async append(events: LedgerEvent | readonly LedgerEvent[], within?: (trx: Transaction<unknown>) => Promise<unknown>): Promise<number[]> {
      const list = Array.isArray(events) ? (events as readonly LedgerEvent[]) : [events as LedgerEvent];
      if (list.length === 0) return [];
      const requestSource = currentEventSource() ?? null; // the request this append happens in, if any
      return db.transaction().execute(async (trx) => {
        // A no-op write first: it takes the head row's lock on PostgreSQL and SQLite's write lock before
        // anything is read, so concurrent writers (other nodes, the CLI) queue instead of racing.
        await trx.updateTable('ledger_head').set({ tree_size: sql<number>`tree_size` }).where('id', '=', 1).execute();
        if (within) await within(trx as unknown as Transaction<unknown>);
        const head = await trx.selectFrom('ledger_head').select(['tree_size', 'compact_range']).where('id', '=', 1).executeTakeFirstOrThrow();
        const accumulator = restoreHead(head);
        const now = clock.now();
        const entries: LedgerSchema['ledger_entries'][] = [];
        const payloads: LedgerSchema['ledger_payloads'][] = [];
        const nodes: LedgerSchema['ledger_nodes'][] = [];
        for (const event of list) {
          const seq = accumulator.size;
          const payload: Record<string, JsonValue> = { details: event.details ?? {}, source: event.source ?? requestSource };
          const { salt, commitment, canonical } = commitPayload(payload);
          const entry = {
            seq,
            time: now.toISOString(),
            ...(deps.tenantId ? { tenant: deps.tenantId } : {}),
            actor: encodeActor(event.actor),
            action: event.action,
            resource: encodeResource(event.resource),
            outcome: event.outcome,
            payloadCommitment: commitment,
          };
          const bytes = encodeEntry(entry);
          const leaf = leafHash(bytes);
          accumulator.append(leaf, (node, hash) => nodes.push({ level: node.level, idx: node.index, hash: hex(hash) }));
          entries.push({
            seq,
            time: entry.time,
            actor: entry.actor,
            action: entry.action,
            resource: entry.resource,
            outcome: entry.outcome,
            entry: bytes.toString('utf8'),
            leaf_hash: hex(leaf),
          });
          const retention = event.retentionDays ?? (event.action.startsWith('technical.') ? (deps.technicalRetentionDays ?? deps.retentionDays) : deps.retentionDays);
          payloads.push({
            seq,
            salt: hex(salt),
            // Canonical, so that verify can hash the stored text as it is (see verify).
            payload: canonical,
            expires_at: new Date(now.getTime() + retention * DAY_MS).toISOString(),
          });
        }
        // Chunked multi-row inserts stay under SQLite's and PostgreSQL's bound-parameter limits.
        for (let i = 0; i < entries.length; i += 500) await trx.insertInto('ledger_entries').values(entries.slice(i, i + 500)).execute();
        for (let i = 0; i < payloads.length; i += 500) await trx.insertInto('ledger_payloads').values(payloads.slice(i, i + 500)).execute();
        for (let i = 0; i < nodes.length; i += 1000) await trx.insertInto('ledger_nodes').values(nodes.slice(i, i + 1000)).execute();
        const state = accumulator.state();
        await trx
          .updateTable('ledger_head')
          .set({ tree_size: state.size, compact_range: JSON.stringify(state.hashes.map(hex)) })
          .where('id', '=', 1)
          .execute();
        return entries.map((e) => e.seq);
      });
    },

    async head(): Promise<{ treeSize: number; rootHash: string }> {
      const head = await db.selectFrom('ledger_head').select(['tree_size', 'compact_range']).where('id', '=', 1).executeTakeFirstOrThrow();
      const acc = restoreHead(head);
      return { treeSize: head.tree_size, rootHash: hex(acc.root()) };
    },

    async publicKey(): Promise<string> {
      return (await signingKey()).publicKeyPem;
    },

    latestCheckpoint,

    /** Signs and stores a checkpoint of the current head if the tree grew since the last one. */
    async checkpoint(): Promise<StoredCheckpoint> {
      const key = await signingKey();
      const head = await this.head();
      const last = await latestCheckpoint();
      if (last && last.treeSize === head.treeSize) return last;
      const time = clock.now();
      const text = formatCheckpoint(
        createCheckpoint({ origin, treeSize: head.treeSize, rootHash: Buffer.from(head.rootHash, 'hex'), time, privateKeyPem: key.privateKeyPem }),
      );
      await db
        .insertInto('ledger_checkpoints')
        .values({ tree_size: head.treeSize, root_hash: head.rootHash, time: time.toISOString(), note: text })
        .onConflict((oc) => oc.column('tree_size').doNothing())
        .execute();
      return (await latestCheckpoint())!;
    },

    /** An entry with its payload (if not expired) and its inclusion proof against the latest checkpoint. */
    async entryWithProof(seq: number): Promise<EntryWithProof> {
      let checkpoint = await latestCheckpoint();
      const row = await db.selectFrom('ledger_entries').select(['seq', 'entry', 'leaf_hash']).where('seq', '=', seq).executeTakeFirst();
      // An entry newer than the last checkpoint gets one written now ("on demand"), so it can be proved.
      if (row && (!checkpoint || seq >= checkpoint.treeSize)) checkpoint = await this.checkpoint();
      if (!row || !checkpoint || seq >= checkpoint.treeSize) {
        throw new NotFoundError('ledger entry covered by a checkpoint', { seq });
      }
      const payload = await db.selectFrom('ledger_payloads').select(['payload', 'salt']).where('seq', '=', seq).executeTakeFirst();
      const proof = await proofFrom(inclusionProofPlan(seq, checkpoint.treeSize));
      return {
        seq,
        entry: Buffer.from(row.entry, 'utf8').toString('base64'),
        leafHash: row.leaf_hash,
        payload: payload ? (JSON.parse(payload.payload) as JsonValue) : null,
        salt: payload ? Buffer.from(payload.salt, 'hex').toString('base64') : null,
        treeSize: checkpoint.treeSize,
        proof: proof.map((p) => p.toString('base64')),
        checkpoint: checkpoint.text,
      };
    },

    /** RFC 9162 consistency proof between two tree sizes. */
    async consistencyProof(oldSize: number, newSize: number): Promise<string[]> {
      const head = await this.head();
      if (!(Number.isSafeInteger(oldSize) && Number.isSafeInteger(newSize) && 0 <= oldSize && oldSize <= newSize && newSize <= head.treeSize)) {
        throw new ValidationError(`sizes must satisfy 0 <= from <= to <= ${head.treeSize}`);
      }
      return (await proofFrom(consistencyProofPlan(oldSize, newSize))).map((p) => p.toString('base64'));
    },

    /**
     * Entries matching a filter, in ledger order, with their payloads while retained: the first `limit`
     * (default 100,000), or with `newest` the last `limit` (still returned in ledger order).
     */
    async query(filter: LedgerFilter, coveredBy?: number, opts: { newest?: boolean } = {}): Promise<ExportedEntry[]> {
      let q = db
        .selectFrom('ledger_entries as e')
        .leftJoin('ledger_payloads as p', 'p.seq', 'e.seq')
        .select(['e.seq', 'e.time', 'e.actor', 'e.action', 'e.resource', 'e.outcome', 'e.entry', 'p.payload']);
      if (filter.from) q = q.where('e.time', '>=', filter.from);
      if (filter.to) q = q.where('e.time', '<', filter.to);
      for (const [name, value] of [['actor', filter.actor], ['action', filter.action]] as const) {
        if (value !== undefined && !/^[A-Za-z0-9:._@-]{1,512}$/.test(value)) {
          throw new ValidationError(`${name} filter may contain only letters, digits and : . _ @ -`);
        }
      }
      // LIKE with '_' escaped, so the database does all the filtering and LIMIT is exact.
      const like = (column: 'e.actor' | 'e.action' | 'e.resource', pattern: string) => sql<boolean>`${sql.ref(column)} like ${pattern} escape '!'`;
      const literal = (text: string) => text.replace(/[!%_]/g, (c) => `!${c}`);
      if (filter.actor) {
        const actor = filter.actor;
        q = q.where((eb) => eb.or([eb('e.actor', '=', actor), like('e.actor', `%:${literal(actor)}`)]));
      }
      if (filter.action) q = filter.action.endsWith('.') ? q.where(like('e.action', `${literal(filter.action)}%`)) : q.where('e.action', '=', filter.action);
      const subjects = filter.subject === undefined ? [] : typeof filter.subject === 'string' ? [filter.subject] : [...filter.subject];
      if (filter.subject !== undefined) {
        if (subjects.length === 0 || subjects.length > 8 || subjects.some((s) => !/^[A-Za-z0-9_-]{8,128}$/.test(s))) {
          throw new ValidationError('subject must be one to eight blind indexes (8 to 128 letters, digits, - or _ each)');
        }
        // The blind indexes of an entry are kept sorted after "#bidx=", separated by commas.
        q = q.where((eb) =>
          eb.or(
            subjects.flatMap((subject) => {
              const s = literal(subject);
              return [like('e.resource', `%#bidx=${s}`), like('e.resource', `%#bidx=${s},%`), like('e.resource', `%,${s},%`), like('e.resource', `%,${s}`)];
            }),
          ),
        );
      }
      if (coveredBy !== undefined) q = q.where('e.seq', '<', coveredBy);
      const limit = Math.min(filter.limit ?? 100_000, 1_000_000);
      const rows = await q.orderBy('e.seq', opts.newest ? 'desc' : 'asc').limit(limit).execute();
      if (opts.newest) rows.reverse();
      return rows.map((r) => ({
        seq: r.seq,
        time: r.time,
        actor: r.actor,
        action: r.action,
        resource: r.resource,
        outcome: r.outcome,
        payload: r.payload === null ? null : (JSON.parse(r.payload) as JsonValue),
        entry: Buffer.from(r.entry, 'utf8').toString('base64'),
      }));
    },

    /** An export for auditors and the DPO: a fresh signed checkpoint and every matching entry it covers. */
    async export(filter: LedgerFilter, by: LedgerEvent['actor'] = { tier: 'system', role: 'cli', id: 'cli' }) {
      // The export itself is recorded first, so the checkpoint below covers it too.
      await this.append({
        actor: by,
        action: 'ledger.export',
        resource: { type: 'ledger', id: deps.tenantId ?? 'platform', blindIndexes: filter.subject === undefined ? undefined : typeof filter.subject === 'string' ? [filter.subject] : filter.subject },
        outcome: 'success',
        details: { from: filter.from ?? null, to: filter.to ?? null, actor: filter.actor ?? null, action: filter.action ?? null },
      });
      const checkpoint = await this.checkpoint();
      const entries = await this.query(filter, checkpoint.treeSize);
      return { origin, checkpoint: checkpoint.text, publicKey: await this.publicKey(), filter, entries };
    },

    /** Deletes payloads whose retention ended; the leaves (and so the tree) stay. */
    async expirePayloads(): Promise<number> {
      const result = await db.deleteFrom('ledger_payloads').where('expires_at', '<', clock.now().toISOString()).executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    /**
     * Rebuilds the tree from the stored entries and reports the first changed, missing, inserted or
     * reordered entry, a changed payload, a truncated tree, a checkpoint whose signed root no longer
     * matches, and (with `witness`) whether the tree is consistent with a checkpoint kept outside.
     */
    async verify(
      opts: {
        witness?: string;
        threads?: VerifyThreads;
        /** Called with the entries checked so far and the number to check: at the start, after each range, and once `done`. */
        onProgress?: (checked: number, total: number, done: boolean) => void;
      } = {},
    ): Promise<VerifyReport> {
      const key = await signingKey();
      // Checkpoints before the head (a checkpoint never covers more than the head had when it was written),
      // and the head with the last stored position in one statement: entries appended while this runs lie
      // beyond both and are left for the next verification instead of counting as inserted.
      const checkpoints = await db.selectFrom('ledger_checkpoints').selectAll().orderBy('tree_size').execute();
      const head = await db
        .selectFrom('ledger_head')
        .select((eb) => ['tree_size', eb.selectFrom('ledger_entries').select((e) => e.fn.max('seq').as('last')).as('last_seq')])
        .where('id', '=', 1)
        .executeTakeFirstOrThrow();
      const end = head.last_seq === null || head.last_seq === undefined ? 0 : Number(head.last_seq) + 1;
      const findings: VerifyFinding[] = [];
      for (const cp of checkpoints) {
        let valid = false;
        try {
          const parsed = parseCheckpoint(cp.note);
          valid = verifyCheckpointSignature(parsed, key.publicKeyPem) && parsed.treeSize === cp.tree_size && hex(parsed.rootHash) === cp.root_hash && parsed.origin === origin;
        } catch {
          valid = false;
        }
        if (!valid) {
          findings.push({ kind: 'bad-checkpoint-signature', treeSize: cp.tree_size, message: `checkpoint at size ${cp.tree_size} is not validly signed by this ledger's key` });
          break;
        }
      }
      let witness: { treeSize: number; rootHash: Buffer } | undefined;
      if (opts.witness !== undefined) {
        const parsed = parseCheckpoint(opts.witness);
        if (parsed.origin !== origin) throw new ValidationError(`the witness checkpoint is for '${parsed.origin}', not for '${origin}'`);
        if (!verifyCheckpointSignature(parsed, key.publicKeyPem)) {
          throw new ValidationError("the witness checkpoint's signature does not verify with this ledger's key");
        }
        witness = { treeSize: parsed.treeSize, rootHash: Buffer.from(parsed.rootHash) };
      }
      const expected = new Map(checkpoints.map((c) => [c.tree_size, c.root_hash]));
      const accumulator = new MerkleAccumulator();
      let witnessResult: { treeSize: number; consistent: boolean } | undefined;
      let payloadsChecked = 0;
      const checkRootsAt = (size: number) => {
        const root = expected.get(size);
        if (root !== undefined && hex(accumulator.root()) !== root && findings.length === 0) {
          findings.push({ kind: 'rewritten-before-checkpoint', treeSize: size, message: `the entries before size ${size} no longer match the signed checkpoint: something before it was changed, removed, inserted or reordered` });
        }
        if (witness && size === witness.treeSize) {
          witnessResult = { treeSize: size, consistent: accumulator.root().equals(witness.rootHash) };
        }
      };
      checkRootsAt(0);
      opts.onProgress?.(0, end, false);
      if (findings.length === 0) {
        const threads = opts.threads ?? DEFAULT_VERIFY_THREADS;
        const parallel = threads.workers > 0 && end >= threads.minEntries && deps.location !== undefined;
        const ranges = parallel
          ? verifyInWorkers({ location: await deps.location!(), tenantId: deps.tenantId, end, workers: threads.workers, rangeSize: threads.rangeSize })
          : checkedRanges(end);
        fold: for await (const range of ranges) {
          for (let i = 0; i < range.count; i++) {
            accumulator.append(range.leaves.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
            payloadsChecked += range.payloadsChecked[i]!;
            checkRootsAt(accumulator.size);
            if (findings.length > 0) break fold;
          }
          if (range.stop !== undefined) {
            if (range.stop !== 'end') {
              payloadsChecked += range.stop.payloadChecked;
              findings.push(range.stop.finding);
            }
            break;
          }
          opts.onProgress?.(accumulator.size, end, false);
        }
      }
      const size = accumulator.size;
      opts.onProgress?.(size, end, true);
      if (findings.length === 0) {
        const lastCheckpoint = checkpoints.at(-1);
        if (head.tree_size > size || (lastCheckpoint && lastCheckpoint.tree_size > size)) {
          const claimed = Math.max(head.tree_size, lastCheckpoint?.tree_size ?? 0);
          findings.push({ kind: 'truncated', treeSize: size, message: `the tree has ${size} entries but ${claimed} were recorded: it was truncated` });
        } else if (head.tree_size < size) {
          findings.push({ kind: 'inserted-entry', seq: head.tree_size, message: `entries after ${head.tree_size - 1} were added outside the ledger` });
        }
      }
      if (witness && findings.length === 0) {
        if (witness.treeSize > size) {
          witnessResult = { treeSize: witness.treeSize, consistent: false };
        } else if (witnessResult === undefined) {
          witnessResult = { treeSize: witness.treeSize, consistent: false };
        }
        if (witnessResult.consistent && witness.treeSize <= size && witness.treeSize > 0) {
          // Also prove it the way an outside party would: an RFC 9162 consistency proof from stored nodes.
          const proof = await proofFrom(consistencyProofPlan(witness.treeSize, size));
          witnessResult.consistent = verifyConsistency(witness.treeSize, size, witness.rootHash, accumulator.root(), proof);
        }
        if (!witnessResult.consistent) {
          findings.push({ kind: 'witness-mismatch', treeSize: witness.treeSize, message: `the ledger is not consistent with the witness checkpoint at size ${witness.treeSize}: history before it was rewritten or cut` });
        }
      }
      return {
        ok: findings.length === 0,
        origin,
        treeSize: size,
        rootHash: hex(accumulator.root()),
        checkpointsChecked: checkpoints.length,
        payloadsChecked,
        ...(witnessResult ? { witness: witnessResult } : {}),
        findings,
      };
    },
  };
}

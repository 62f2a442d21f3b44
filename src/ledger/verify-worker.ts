/**
 * A worker thread of `ledger.verify()` for large ledgers (see `verify-parallel.ts`): opens the ledger's
 * database itself (SQLite: a read-only connection to the file; PostgreSQL: the ledger's own connection
 * settings), checks the ranges of positions it is sent with the same `EntryChecker` as the main thread,
 * and answers each with its leaf hashes in one transferable buffer. The main thread folds the tree.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type pg from 'pg';
import type { DatabaseLocation } from '../storage/storage.js';
import { EntryChecker, nextSeqSql, pagePgSql, RangeCollector, rangeSql, type RangeResult, type VerifyRow } from './verify-range.js';

export interface VerifyWorkerData {
  location: DatabaseLocation;
  tenantId: string | undefined;
  /** One past the last stored position when verification started: later rows are not looked at. */
  end: number;
}
export type ToVerifyWorker = { type: 'range'; id: number; from: number; to: number } | { type: 'close' };
export type FromVerifyWorker = { type: 'range'; id: number; result: RangeResult };

/** Rows per PostgreSQL round trip; the next page is requested before this one is checked. */
const PG_PAGE = 5_000;

interface RangeReader {
  /** Calls `take` for the rows of [from, to) in order until it answers false. */
  rows(from: number, to: number, take: (row: VerifyRow) => boolean): Promise<void>;
  /** The first stored position in [from, to), if any. */
  nextSeq(from: number, to: number): Promise<number | null>;
  close(): Promise<void>;
}

// Each worker loads only its engine's driver (a worker starts faster without the other one).
async function sqliteReader(file: string): Promise<RangeReader> {
  const { SqliteDatabase } = await import('../storage/sqlite-driver.js');
  const database = new SqliteDatabase(file, { readonly: true, fileMustExist: true });
  database.pragma('busy_timeout = 5000');
  const range = database.prepare(rangeSql).raw(true);
  const next = database.prepare(nextSeqSql(() => '?'));
  return {
    rows(from, to, take) {
      for (const row of range.iterate(from, to) as IterableIterator<VerifyRow>) if (!take(row)) break;
      return Promise.resolve();
    },
    nextSeq: (from, to) => Promise.resolve((next.get(from, to) as { next: number | null }).next),
    close() {
      database.close();
      return Promise.resolve();
    },
  };
}

async function postgresReader(url: string): Promise<RangeReader> {
  const { default: driver } = await import('pg');
  const client = new driver.Client({ connectionString: url });
  // A dropped connection surfaces as the failing query's error; the event itself carries connection details.
  client.on('error', () => undefined);
  await client.connect();
  const page = (from: number, to: number): Promise<pg.QueryArrayResult<VerifyRow>> =>
    client.query<VerifyRow>({ name: 'tresor-verify-page', text: pagePgSql, values: [from, Math.min(PG_PAGE, to - from)], rowMode: 'array' });
  return {
    async rows(from, to, take) {
      let cursor = from;
      let pending: Promise<pg.QueryArrayResult<VerifyRow>> | undefined = page(cursor, to);
      try {
        while (pending) {
          const asked = Math.min(PG_PAGE, to - cursor);
          const { rows }: pg.QueryArrayResult<VerifyRow> = await pending;
          const last = rows[rows.length - 1]?.[0];
          // A full page that ends inside the range may have more behind it: ask for that now, so the
          // server reads it while this page is hashed.
          pending = undefined;
          if (rows.length === asked && last !== undefined && last + 1 < to) {
            cursor = last + 1;
            pending = page(cursor, to);
          }
          // Rows past the range (there were gaps) belong to the next range.
          for (const row of rows) if (row[0] >= to || !take(row)) return;
        }
      } finally {
        await pending?.catch(() => undefined);
      }
    },
    async nextSeq(from, to) {
      const { rows } = await client.query<{ next: number | null }>({ text: nextSeqSql((n) => `$${n}`), values: [from, to] });
      return rows[0]?.next ?? null;
    },
    close: () => client.end(),
  };
}

async function checkRange(reader: RangeReader, data: VerifyWorkerData, from: number, to: number): Promise<RangeResult> {
  const checker = new EntryChecker(data.tenantId, from);
  const collector = new RangeCollector(checker, to - from);
  await reader.rows(from, to, (row) => collector.add(row));
  if (collector.stop === undefined && checker.at < to) {
    // The range ran out early: a gap (named by the next stored entry, as a sequential scan would) or the end.
    const next = await reader.nextSeq(checker.at, data.end);
    collector.stop = next === null ? 'end' : { finding: checker.missing(Number(next)), payloadChecked: 0 };
  }
  return collector.result();
}

if (parentPort) {
  const port = parentPort;
  const data = workerData as VerifyWorkerData;
  const ready = data.location.engine === 'sqlite' ? sqliteReader(data.location.file) : postgresReader(data.location.url);
  // Messages are handled one after the other (the main thread sends a range only to an idle worker).
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (message: ToVerifyWorker) => {
    queue = queue.then(async () => {
      const reader = await ready;
      if (message.type === 'close') {
        await reader.close();
        port.close();
        return;
      }
      const result = await checkRange(reader, data, message.from, message.to);
      const reply: FromVerifyWorker = { type: 'range', id: message.id, result };
      port.postMessage(reply, [result.leaves.buffer as ArrayBuffer, result.payloadsChecked.buffer as ArrayBuffer]);
    }).catch((error: unknown) => {
      // Thrown outside the promise: the thread ends and the main thread gets the error ('error' event).
      process.nextTick(() => {
        throw error;
      });
    });
  });
}

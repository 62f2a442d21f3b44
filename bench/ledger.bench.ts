/**
 * Ledger benchmark (issue 3): appends per second, single and batched, against plain inserts of rows of
 * the same size into the same engine in the same run; time to verify N entries (default 1,000,000)
 * against hashing N leaves with raw SHA-256; inclusion and consistency proof sizes and latencies; peak RSS.
 *
 *   npm run bench:ledger -- [--entries 1000000] [--single 2000] [--rounds 3] [--workers N] [--postgres-only]
 *   TRESOR_BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres npm run bench:ledger   (also PostgreSQL)
 *
 * Appends and verification run `--rounds` times (worker threads, one thread, raw SHA-256 baseline in each round), each
 * with its wall time, the process's CPU time (all threads) and the 1-minute load average before it: on a
 * shared machine the wall time alone says little.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { openCore } from '../src/core.js';
import type { LedgerEvent, VerifyThreads } from '../src/ledger/index.js';
import { DEFAULT_VERIFY_THREADS } from '../src/ledger/verify-parallel.js';
import { latencies, option, perSecond, round, rssSampler, table, timed } from './lib.js';

const ENTRIES = option('entries', 1_000_000);
const SINGLE = option('single', 2_000);
const ROUNDS = option('rounds', 3);
const WORKERS: VerifyThreads = { ...DEFAULT_VERIFY_THREADS, workers: option('workers', DEFAULT_VERIFY_THREADS.workers) };
const ONE_THREAD: VerifyThreads = { ...DEFAULT_VERIFY_THREADS, workers: 0 };
const BATCH = 1_000;

/** Wall and CPU time (every thread of the process) of one run, with the load average before it. */
async function measured<T>(work: () => Promise<T>): Promise<{ ms: number; cpuMs: number; load: number; value: T }> {
  const load = loadavg()[0]!;
  const cpu = process.cpuUsage();
  const { ms, value } = await timed(work);
  const used = process.cpuUsage(cpu);
  return { ms, cpuMs: (used.user + used.system) / 1000, load, value };
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
};
const spread = (values: number[]) => `${round(Math.min(...values) / 1000, 2)}–${round(Math.max(...values) / 1000, 2)}`;

const event = (n: number): LedgerEvent => ({
  actor: { tier: 'tenant', role: 'member', id: '6f1c2a8e-0d3b-4f5e-9a7c-1b2d3e4f5a6b' },
  action: 'record.read',
  resource: { type: 'contact', id: `c-${n}`, blindIndexes: ['a1b2c3d4e5f6'] },
  outcome: 'success',
  source: '127.0.0.1',
  details: { n },
});

async function run(engine: 'sqlite' | 'postgres') {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-bench-'));
  const pgName = `tresor_bench_${Math.random().toString(36).slice(2, 10)}`;
  const env: Record<string, string> = { TRESOR_DATA_DIR: join(dir, 'data'), TRESOR_MASTER_KEY_FILE: join(dir, 'master.key'), TRESOR_LOG_LEVEL: 'silent' };
  if (engine === 'postgres') {
    const url = new URL(process.env.TRESOR_BENCH_PG!);
    url.pathname = `/${pgName}`;
    env.TRESOR_DATABASE_URL = url.toString();
  }
  const core = await openCore(loadConfig({ cwd: dir, env }), { log: pino({ level: 'silent' }) });
  const memory = rssSampler();
  try {
    const ledger = core.ledgers.platform;
    const db = core.storage.control as unknown as Kysely<{ bench_plain: { id: number; body: string } }>;
    await sql`CREATE TABLE bench_plain (id integer PRIMARY KEY, body text NOT NULL)`.execute(db);
    // A row as large as a ledger leaf plus its payload row.
    const body = JSON.stringify({ ...event(0), salt: randomUUID(), hash: 'x'.repeat(64) });
    let id = 0;

    // The four append measures, `--rounds` times in turn: per row the median rate, its spread, CPU and load.
    type Sample = Awaited<ReturnType<typeof measured>>;
    const samples: Sample[][] = [[], [], [], []];
    for (let r = 0; r < ROUNDS; r++) {
      samples[0]!.push(
        await measured(async () => {
          for (let i = 0; i < SINGLE; i++) await db.insertInto('bench_plain').values({ id: id++, body }).execute();
        }),
      );
      samples[1]!.push(
        await measured(async () => {
          for (let i = 0; i < SINGLE; i++) await ledger.append(event(i));
        }),
      );
      samples[2]!.push(
        await measured(async () => {
          for (let done = 0; done < SINGLE * 10; done += BATCH) {
            await db.transaction().execute(async (trx) => {
              await trx.insertInto('bench_plain').values(Array.from({ length: BATCH }, () => ({ id: id++, body }))).execute();
            });
          }
        }),
      );
      samples[3]!.push(
        await measured(async () => {
          for (let done = 0; done < SINGLE * 10; done += BATCH) await ledger.append(Array.from({ length: BATCH }, (_, k) => event(done + k)));
        }),
      );
    }
    const rate = (what: string, rows: number, list: Sample[]) => {
      const rates = list.map((m) => perSecond(rows, m.ms));
      return {
        what,
        rows,
        'median per second': median(rates),
        'min–max per second': `${Math.min(...rates)}–${Math.max(...rates)}`,
        'median CPU s': round(median(list.map((m) => m.cpuMs)) / 1000, 2),
        'load avg min–max': `${round(Math.min(...list.map((m) => m.load)), 2)}–${round(Math.max(...list.map((m) => m.load)), 2)}`,
      };
    };
    const synchronous = engine === 'sqlite' ? String((await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(db)).rows[0]?.synchronous) : '-';
    table(`${engine}: appends per second, ${ROUNDS} rounds${engine === 'sqlite' ? ` (PRAGMA synchronous = ${synchronous}: 1 NORMAL, 2 FULL)` : ''}`, [
      rate('plain insert, one row per statement (baseline)', SINGLE, samples[0]!),
      rate('ledger.append, one event per call', SINGLE, samples[1]!),
      rate(`plain insert, ${BATCH} rows per transaction (baseline)`, SINGLE * 10, samples[2]!),
      rate(`ledger.append, ${BATCH} events per call`, SINGLE * 10, samples[3]!),
    ]);

    // Fill up to ENTRIES, then verify the whole tree.
    const already = (await ledger.head()).treeSize;
    const fill = await timed(async () => {
      for (let n = already; n < ENTRIES; n += BATCH) {
        await ledger.append(Array.from({ length: Math.min(BATCH, ENTRIES - n) }, (_, k) => event(n + k)));
        if ((n / BATCH) % 100 === 0) process.stderr.write(`\r  filling ${engine}: ${n.toLocaleString('en')} / ${ENTRIES.toLocaleString('en')}`);
      }
    });
    process.stderr.write('\n');
    await ledger.checkpoint();
    const size = (await ledger.head()).treeSize;
    const leaf = Buffer.alloc(200, 1);
    const runs: Record<'workers' | 'one' | 'raw', Awaited<ReturnType<typeof measured>>[]> = { workers: [], one: [], raw: [] };
    const rounds: Record<string, string | number>[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const inWorkers = await measured(() => ledger.verify({ threads: WORKERS }));
      const oneThread = await measured(() => ledger.verify({ threads: ONE_THREAD }));
      const rawHash = await measured(async () => {
        for (let i = 0; i < size; i++) createHash('sha256').update(Buffer.from([0])).update(leaf).digest();
      });
      if (!inWorkers.value.ok || !oneThread.value.ok) throw new Error(`verification of the untouched ledger failed in round ${r}`);
      runs.workers.push(inWorkers);
      runs.one.push(oneThread);
      runs.raw.push(rawHash);
      for (const [what, m] of [[`ledger.verify(), ${WORKERS.workers} worker threads`, inWorkers], ['ledger.verify(), one thread', oneThread], ['raw SHA-256 baseline', rawHash]] as const) {
        rounds.push({ round: r, what, 'wall s': round(m.ms / 1000, 2), 'CPU s': round(m.cpuMs / 1000, 2), 'load avg (1 min) before': round(m.load, 2) });
      }
    }
    table(`${engine}: verifying ${size.toLocaleString('en')} entries, each round`, rounds);
    const summary = (what: string, list: Awaited<ReturnType<typeof measured>>[]) => ({
      what,
      'median wall s': round(median(list.map((m) => m.ms)) / 1000, 2),
      'wall s min–max': spread(list.map((m) => m.ms)),
      'median CPU s': round(median(list.map((m) => m.cpuMs)) / 1000, 2),
      'CPU s min–max': spread(list.map((m) => m.cpuMs)),
      'load avg min–max': `${round(Math.min(...list.map((m) => m.load)), 2)}–${round(Math.max(...list.map((m) => m.load)), 2)}`,
    });
    table(`${engine}: verifying ${size.toLocaleString('en')} entries, ${ROUNDS} rounds (fill: ${round(fill.ms / 1000, 2)} s, ${perSecond(size - already, fill.ms)} entries/s)`, [
      summary(`ledger.verify() in ${WORKERS.workers} worker threads (rebuild tree, check every entry, payload and checkpoint)`, runs.workers),
      summary('ledger.verify() on one thread (the same checks)', runs.one),
      summary('raw SHA-256 over as many 200-byte leaves (baseline)', runs.raw),
    ]);

    const inclusion: number[] = [];
    let inclusionHashes = 0;
    for (let i = 0; i < 500; i++) {
      const seq = Math.floor(Math.random() * size);
      const t = await timed(() => ledger.entryWithProof(seq));
      inclusion.push(t.ms);
      inclusionHashes = Math.max(inclusionHashes, t.value.proof.length);
    }
    const consistency: number[] = [];
    let consistencyHashes = 0;
    for (let i = 0; i < 500; i++) {
      const oldSize = 1 + Math.floor(Math.random() * (size - 1));
      const t = await timed(() => ledger.consistencyProof(oldSize, size));
      consistency.push(t.ms);
      consistencyHashes = Math.max(consistencyHashes, t.value.length);
    }
    const li = latencies(inclusion);
    const lc = latencies(consistency);
    table(`${engine}: proofs at tree size ${size.toLocaleString('en')} (500 random each)`, [
      { proof: 'inclusion (entry + proof)', 'max hashes': inclusionHashes, 'max bytes': inclusionHashes * 32, 'p50 ms': round(li.p50, 2), 'p95 ms': round(li.p95, 2), 'p99 ms': round(li.p99, 2) },
      { proof: 'consistency', 'max hashes': consistencyHashes, 'max bytes': consistencyHashes * 32, 'p50 ms': round(lc.p50, 2), 'p95 ms': round(lc.p95, 2), 'p99 ms': round(lc.p99, 2) },
    ]);
  } finally {
    const mem = memory.stop();
    table(`${engine}: memory`, [{ 'peak RSS (sampled) MiB': mem.peakRssMiB, 'max RSS (kernel) MiB': mem.maxRssMiB }]);
    await core.close();
    rmSync(dir, { recursive: true, force: true });
    if (engine === 'postgres') {
      const client = new pg.Client({ connectionString: process.env.TRESOR_BENCH_PG });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${pgName} WITH (FORCE)`);
      await client.end();
    }
  }
}

process.stdout.write(`# Ledger benchmark — node ${process.version}, ${new Date().toISOString()}, load average ${loadavg().map((l) => round(l, 2)).join(' ')}\n`);
// --postgres-only: skip SQLite (with TRESOR_BENCH_PG), to measure one engine at a time on a busy machine.
if (!process.argv.includes('--postgres-only')) await run('sqlite');
if (process.env.TRESOR_BENCH_PG) await run('postgres');

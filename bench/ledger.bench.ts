/**
 * Ledger benchmark (issue 3): appends per second, single and batched, against plain inserts of rows of
 * the same size into the same engine in the same run; time to verify N entries (default 1,000,000)
 * against hashing N leaves with raw SHA-256; inclusion and consistency proof sizes and latencies; peak RSS.
 *
 *   npm run bench:ledger -- [--entries 1000000] [--single 2000]
 *   TRESOR_BENCH_PG=postgres://postgres@127.0.0.1:5432/postgres npm run bench:ledger   (also PostgreSQL)
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { openCore } from '../src/core.js';
import type { LedgerEvent } from '../src/ledger/index.js';
import { latencies, option, perSecond, round, rssSampler, table, timed } from './lib.js';

const ENTRIES = option('entries', 1_000_000);
const SINGLE = option('single', 2_000);
const BATCH = 1_000;

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

    const plainSingle = await timed(async () => {
      for (let i = 0; i < SINGLE; i++) await db.insertInto('bench_plain').values({ id: id++, body }).execute();
    });
    const plainBatched = await timed(async () => {
      for (let done = 0; done < SINGLE * 10; done += BATCH) {
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('bench_plain').values(Array.from({ length: BATCH }, () => ({ id: id++, body }))).execute();
        });
      }
    });
    const single = await timed(async () => {
      for (let i = 0; i < SINGLE; i++) await ledger.append(event(i));
    });
    const batched = await timed(async () => {
      for (let done = 0; done < SINGLE * 10; done += BATCH) await ledger.append(Array.from({ length: BATCH }, (_, k) => event(done + k)));
    });
    table(`${engine}: appends per second`, [
      { what: 'plain insert, one row per statement (baseline)', rows: SINGLE, 'per second': perSecond(SINGLE, plainSingle.ms) },
      { what: 'ledger.append, one event per call', rows: SINGLE, 'per second': perSecond(SINGLE, single.ms) },
      { what: `plain insert, ${BATCH} rows per transaction (baseline)`, rows: SINGLE * 10, 'per second': perSecond(SINGLE * 10, plainBatched.ms) },
      { what: `ledger.append, ${BATCH} events per call`, rows: SINGLE * 10, 'per second': perSecond(SINGLE * 10, batched.ms) },
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
    const verify = await timed(() => ledger.verify());
    const leaf = Buffer.alloc(200, 1);
    const rawHash = await timed(async () => {
      for (let i = 0; i < size; i++) createHash('sha256').update(Buffer.from([0])).update(leaf).digest();
    });
    table(`${engine}: verifying ${size.toLocaleString('en')} entries`, [
      { what: `fill with batched appends (${BATCH}/call)`, seconds: round(fill.ms / 1000, 2), 'entries per second': perSecond(size - already, fill.ms), result: '-' },
      { what: 'ledger.verify() (rebuild tree, check every payload and checkpoint)', seconds: round(verify.ms / 1000, 2), 'entries per second': perSecond(size, verify.ms), result: verify.value.ok ? 'ok' : 'FAILED' },
      { what: 'raw SHA-256 over as many 200-byte leaves (baseline)', seconds: round(rawHash.ms / 1000, 2), 'entries per second': perSecond(size, rawHash.ms), result: '-' },
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

process.stdout.write(`# Ledger benchmark — node ${process.version}, ${new Date().toISOString()}\n`);
await run('sqlite');
if (process.env.TRESOR_BENCH_PG) await run('postgres');

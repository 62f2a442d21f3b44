/**
 * Records benchmark (issue 5): contacts written and read per second with field encryption and blind
 * indexes against the same rows in clear, same engine, same run (goal: ratio ≥ 0.7 on SQLite); and the
 * latency of an exact-match search through the blind index at 1,000,000 contacts (goal: median < 20 ms).
 *
 *   npm run bench:records -- [--rows 20000] [--search-rows 1000000] [--queries 200]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { openCore } from '../src/core.js';
import { parseCsv } from '../src/shared/csv.js';
import type { DataSession } from '../src/records/index.js';
import { latencies, option, perSecond, round, rssSampler, table, timed } from './lib.js';

const ROWS = option('rows', 20_000);
const SEARCH_ROWS = option('search-rows', 1_000_000);
const QUERIES = option('queries', 200);

const csvOf = (from: number, count: number) =>
  ['name,email,phone,address,company,notes']
    .concat(Array.from({ length: count }, (_, k) => {
      const n = from + k;
      return `Person ${n},person${n}@example.org,+49 30 ${String(1_000_000 + n)},"Musterweg ${n % 200}, 10115 Berlin",Firma ${n % 97},Notiz ${n}`;
    }))
    .join('\n');

const dir = mkdtempSync(join(tmpdir(), 'tresor-bench-records-'));
const core = await openCore(loadConfig({ cwd: dir, env: { TRESOR_DATA_DIR: join(dir, 'data'), TRESOR_MASTER_KEY_FILE: join(dir, 'master.key'), TRESOR_LOG_LEVEL: 'silent' } }), { log: pino({ level: 'silent' }) });
const memory = rssSampler();
process.stdout.write(`# Records benchmark — node ${process.version}, ${new Date().toISOString()}\n`);
try {
  const tenant = await core.platform.createTenant({ kind: 'system', name: 'cli' }, { name: 'Bench Tenant' });
  const secret = (await core.tenantKeys.redeemActivation(tenant.id, tenant.initialKeys.activationKey!))!;
  const session: DataSession = { actor: { kind: 'tenant', accountId: 'bench', tenantId: tenant.id, role: 'member' }, tenantId: tenant.id, dataKey: await core.tenantKeys.dataKey(tenant.id, secret), keyVersion: 1 };
  const row = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow();
  const db = (await core.storage.tenantDb({ tenantId: tenant.id, databaseName: row.database_name })) as unknown as Kysely<{ contacts_clear: Record<string, string | null> }>;
  const ledger = await core.ledgers.tenant(tenant.id);
  // The tenant plans its blind indexes for the size the search part reaches (docs/keys.md): 18 bits at 1,000,000.
  await core.collections.contacts.setExpectedRows(session.actor, tenant.id, SEARCH_ROWS);
  await sql`CREATE TABLE contacts_clear (id varchar(36) PRIMARY KEY, book varchar(64), name text, email text, phone text, address text, company text, notes text, created_at varchar(32), updated_at varchar(32))`.execute(db);
  for (const f of ['name', 'email', 'phone']) await sql`CREATE INDEX ${sql.raw(`clear_${f}`)} ON contacts_clear (${sql.raw(f)})`.execute(db);

  // Writes: the same CSV through the encrypted import, and parsed + inserted in clear (with the same ledger entries).
  const csv = csvOf(0, ROWS);
  const encryptedWrite = await timed(() => core.collections.contacts.importCsv(session, 'shared', csv, () => undefined));
  const clearWrite = await timed(async () => {
    const rows = parseCsv(csvOf(ROWS, ROWS)).slice(1);
    for (let i = 0; i < rows.length; i += 500) {
      const now = new Date().toISOString();
      const batch = rows.slice(i, i + 500).map((r) => ({ id: randomUUID(), book: 'shared', name: r[0]!, email: r[1]!, phone: r[2]!, address: r[3]!, company: r[4]!, notes: r[5]!, created_at: now, updated_at: now }));
      // Like the service: the rows and their ledger entries in one transaction.
      await ledger.append(
        batch.map((b) => ({ actor: { tier: 'tenant' as const, role: 'member', id: 'bench' }, action: 'record.import', resource: { type: 'contact', id: b.id }, outcome: 'success' as const })),
        async (trx) => {
          for (let j = 0; j < batch.length; j += 100) await (trx as unknown as typeof db).insertInto('contacts_clear').values(batch.slice(j, j + 100)).execute();
        },
      );
    }
  });
  const encryptedRead = await timed(() => core.collections.contacts.exportAll(session));
  const clearRead = await timed(() => db.selectFrom('contacts_clear').selectAll().execute());

  // One record at a time, as the API does it: each write and each read is also a ledger entry. The
  // encrypted and the clear runs alternate in rounds (the machine's load changes within seconds), and the
  // ratio reported is the median of the rounds' ratios.
  const SINGLE = Math.min(ROWS, 2_000);
  const ROUNDS = 5;
  const PER_ROUND = Math.ceil(SINGLE / ROUNDS);
  const event = (id: string, action: string) => ({ actor: { tier: 'tenant' as const, role: 'member', id: 'bench' }, action, resource: { type: 'contact', id }, outcome: 'success' as const });
  const ids: string[] = [];
  const clearIds: string[] = [];
  const runs = { encryptedCreate: [] as number[], clearCreate: [] as number[], encryptedGet: [] as number[], clearGet: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    const from = r * PER_ROUND;
    runs.encryptedCreate.push((await timed(async () => {
      for (let i = from; i < from + PER_ROUND; i++) ids.push((await core.collections.contacts.create(session, 'shared', { name: `Einzel ${i}`, email: `einzel${i}@example.org`, phone: '+49 30 555', address: 'Weg 1', notes: 'Notiz' })).id);
    })).ms);
    runs.clearCreate.push((await timed(async () => {
      for (let i = from; i < from + PER_ROUND; i++) {
        const now = new Date().toISOString();
        // Random UUIDs like the service's: sequential ids would make the baseline's index inserts cheaper.
        const clearRow = { id: randomUUID(), book: 'shared', name: `Einzel ${i}`, email: `einzel${i}@example.org`, phone: '+49 30 555', address: 'Weg 1', company: null, notes: 'Notiz', created_at: now, updated_at: now };
        clearIds.push(clearRow.id);
        await ledger.append(event(clearRow.id, 'record.create'), (trx) => (trx as unknown as typeof db).insertInto('contacts_clear').values(clearRow).execute());
      }
    })).ms);
  }
  for (let r = 0; r < ROUNDS; r++) {
    const from = r * PER_ROUND;
    runs.encryptedGet.push((await timed(async () => {
      for (let i = from; i < from + PER_ROUND; i++) await core.collections.contacts.get(session, ids[i]!);
    })).ms);
    runs.clearGet.push((await timed(async () => {
      for (let i = from; i < from + PER_ROUND; i++) {
        await db.selectFrom('contacts_clear').selectAll().where('id', '=', clearIds[i]!).executeTakeFirstOrThrow();
        await ledger.append(event(clearIds[i]!, 'record.read'));
      }
    })).ms);
  }
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const medianRatio = (clear: number[], encrypted: number[]) => round([...clear.map((c, k) => c / encrypted[k]!)].sort((a, b) => a - b)[Math.floor(clear.length / 2)]!, 2);
  const encryptedCreate = { ms: total(runs.encryptedCreate) };
  const clearCreate = { ms: total(runs.clearCreate) };
  const encryptedGet = { ms: total(runs.encryptedGet) };
  const clearGet = { ms: total(runs.clearGet) };
  table(`contacts (SQLite): one at a time through the service, ${(ROUNDS * PER_ROUND).toLocaleString('en')} each in ${ROUNDS} alternating rounds (ratio: median of the rounds); bulk ${ROWS.toLocaleString('en')} rows`, [
    { what: 'create one (encrypt 5 fields, 3 blind indexes, insert + ledger entry in one transaction)', 'rows per second': perSecond(ROUNDS * PER_ROUND, encryptedCreate.ms), 'ratio to clear': medianRatio(runs.clearCreate, runs.encryptedCreate) },
    { what: 'insert one in clear + ledger entry, one transaction (baseline)', 'rows per second': perSecond(ROUNDS * PER_ROUND, clearCreate.ms), 'ratio to clear': 1 },
    { what: 'read one (select, decrypt 5 fields, ledger entry)', 'rows per second': perSecond(ROUNDS * PER_ROUND, encryptedGet.ms), 'ratio to clear': medianRatio(runs.clearGet, runs.encryptedGet) },
    { what: 'select one in clear + ledger entry (baseline)', 'rows per second': perSecond(ROUNDS * PER_ROUND, clearGet.ms), 'ratio to clear': 1 },
    { what: 'bulk write: CSV import, encrypted (batches of 500, ledger entry per row)', 'rows per second': perSecond(ROWS, encryptedWrite.ms), 'ratio to clear': round(clearWrite.ms / encryptedWrite.ms, 2) },
    { what: 'bulk write: same rows in clear, same batches and ledger entries (baseline)', 'rows per second': perSecond(ROWS, clearWrite.ms), 'ratio to clear': 1 },
    { what: 'bulk read: export all, decrypted (one ledger entry)', 'rows per second': perSecond(ROWS, encryptedRead.ms), 'ratio to clear': round(clearRead.ms / encryptedRead.ms, 2) },
    { what: 'bulk read: select all in clear (baseline)', 'rows per second': perSecond(ROWS, clearRead.ms), 'ratio to clear': 1 },
  ]);

  // Search at SEARCH_ROWS contacts: fill with the encrypted import in chunks, then exact-match queries.
  const fill = await timed(async () => {
    for (let n = ROWS; n < SEARCH_ROWS; n += 50_000) {
      await core.collections.contacts.importCsv(session, 'shared', csvOf(n, Math.min(50_000, SEARCH_ROWS - n)), () => undefined);
      process.stderr.write(`\r  filling: ${Math.min(n + 50_000, SEARCH_ROWS).toLocaleString('en')} / ${SEARCH_ROWS.toLocaleString('en')}`);
    }
  });
  process.stderr.write('\n');
  const byEmail: number[] = [];
  const byPhone: number[] = [];
  let found = 0;
  for (let q = 0; q < QUERIES; q++) {
    const n = Math.floor(Math.random() * SEARCH_ROWS);
    const e = await timed(() => core.collections.contacts.search(session, { email: `PERSON${n}@example.org ` }));
    byEmail.push(e.ms);
    found += e.value.length;
    byPhone.push((await timed(() => core.collections.contacts.search(session, { phone: `0049 30 ${1_000_000 + n}` }))).ms);
  }
  const clearSearch: number[] = [];
  for (let q = 0; q < QUERIES; q++) {
    const n = Math.floor(Math.random() * ROWS) + ROWS;
    clearSearch.push((await timed(() => db.selectFrom('contacts_clear').selectAll().where('email', '=', `person${n}@example.org`).execute())).ms);
  }
  const le = latencies(byEmail);
  const lp = latencies(byPhone);
  const lc = latencies(clearSearch);
  table(`exact-match search at ${SEARCH_ROWS.toLocaleString('en')} encrypted contacts (${QUERIES} random queries; fill took ${round(fill.ms / 1000)} s)`, [
    { query: 'by e-mail (blind index, candidates decrypted, ledger entry)', 'p50 ms': round(le.p50, 2), 'p95 ms': round(le.p95, 2), 'p99 ms': round(le.p99, 2), found: `${found}/${QUERIES}` },
    { query: 'by phone, typed differently', 'p50 ms': round(lp.p50, 2), 'p95 ms': round(lp.p95, 2), 'p99 ms': round(lp.p99, 2), found: '-' },
    { query: `clear e-mail column with an index, ${ROWS.toLocaleString('en')} rows (baseline)`, 'p50 ms': round(lc.p50, 2), 'p95 ms': round(lc.p95, 2), 'p99 ms': round(lc.p99, 2), found: '-' },
  ]);
} finally {
  const mem = memory.stop();
  table('memory', [{ 'peak RSS (sampled) MiB': mem.peakRssMiB, 'max RSS (kernel) MiB': mem.maxRssMiB }]);
  await core.close();
  rmSync(dir, { recursive: true, force: true });
}

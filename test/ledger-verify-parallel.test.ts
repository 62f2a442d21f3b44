import { join } from 'node:path';
import type { Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { Actor } from '../src/access/index.js';
import type { Core } from '../src/core.js';
import { createLedger, leafHash, type Ledger, type LedgerEvent, type VerifyReport, type VerifyThreads } from '../src/ledger/index.js';
import type { LedgerSchema } from '../src/ledger/ledger.migrations.js';
import type { DatabaseLocation } from '../src/storage/index.js';
import { tresor } from './cli-process.js';
import { engines, makeTestEnv, openTestCore, type TestEnv } from './helpers.js';

/**
 * `ledger.verify()` of large ledgers checks entries in worker threads. These tests force that path on small
 * ledgers (ranges of 7 positions, so tampered rows, gaps and checkpoints fall at, across and inside range
 * boundaries) and demand the very report the one-thread path gives, for every kind of tampering.
 */
const system: Actor = { kind: 'system', name: 'cli' };
const ONE_THREAD: VerifyThreads = { workers: 0, rangeSize: 5_000, minEntries: 0 };
const WORKERS: VerifyThreads = { workers: 3, rangeSize: 7, minEntries: 0 };
/** Many verifications, or 50,000 entries: minutes on a busy 2-core machine. */
const HEAVY_TEST_MS = 300_000;
const event = (i: number): LedgerEvent => ({
  actor: { tier: 'tenant', role: 'member', id: `account-${i % 3}` },
  action: i % 2 ? 'record.read' : 'record.update',
  resource: { type: 'contact', id: `contact-${i}`, blindIndexes: [`bidx-000${i % 5}`] },
  outcome: 'success',
  source: '192.0.2.10',
  details: { fields: i },
});

type Raw = Kysely<LedgerSchema>;

describe.each(engines)('ledger verification in worker threads (%s)', (engine) => {
  let t: TestEnv | undefined;
  let core: Core | undefined;
  afterEach(async () => {
    await core?.close();
    await t?.cleanup();
    core = t = undefined;
  });

  /** A tenant ledger of 60 entries with signed checkpoints at 10, 20 and 60, plus raw access to its tables. */
  async function seeded() {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    const tenant = await core.platform.createTenant(system, { name: 'Parallel GmbH' });
    const ledger = await core.ledgers.tenant(tenant.id);
    const base = (await ledger.head()).treeSize;
    for (let i = 0; i < 10 - base; i++) await ledger.append(event(i));
    await ledger.checkpoint();
    await ledger.append(Array.from({ length: 10 }, (_, i) => event(100 + i)));
    await ledger.checkpoint();
    await ledger.append(Array.from({ length: 40 }, (_, i) => event(200 + i)));
    await ledger.checkpoint();
    const place = { tenantId: tenant.id, databaseName: (await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow()).database_name };
    const raw = (await core.storage.tenantDb(place)) as unknown as Raw;
    return { tenant, ledger, raw, place };
  }

  /** Both paths, which must agree to the last field; returns the report. */
  async function bothPaths(ledger: Ledger, witness?: string): Promise<VerifyReport> {
    const sequential = await ledger.verify({ threads: ONE_THREAD, ...(witness ? { witness } : {}) });
    const parallel = await ledger.verify({ threads: WORKERS, ...(witness ? { witness } : {}) });
    expect(parallel).toEqual(sequential);
    return parallel;
  }

  const entryRow = (raw: Raw, seq: number) => raw.selectFrom('ledger_entries').selectAll().where('seq', '=', seq).executeTakeFirstOrThrow();

  it('gives the same report as one thread for an untouched ledger and for each kind of tampering', async () => {
    const { ledger, raw } = await seeded();
    expect(await bothPaths(ledger)).toMatchObject({ ok: true, treeSize: 60, checkpointsChecked: 3, payloadsChecked: 60, findings: [] });

    // Each case tampers, checks both paths, then puts the rows back as they were.
    const cases: { name: string; tamper: () => Promise<() => Promise<void>>; finding: Record<string, unknown> }[] = [
      {
        name: 'changed entry inside a range',
        finding: { kind: 'changed-entry', seq: 30 },
        tamper: async () => {
          const row = await entryRow(raw, 30);
          await raw.updateTable('ledger_entries').set({ entry: row.entry.replace('record.', 'recorX.') }).where('seq', '=', 30).execute();
          return async () => void (await raw.updateTable('ledger_entries').set({ entry: row.entry }).where('seq', '=', 30).execute());
        },
      },
      {
        name: 'entry rewritten with its leaf hash (caught by the checkpoint at 20)',
        finding: { kind: 'rewritten-before-checkpoint', treeSize: 20 },
        tamper: async () => {
          const row = await entryRow(raw, 12);
          const forged = row.entry.replace('"outcome":"success"', '"outcome":"failure"');
          await raw.updateTable('ledger_entries').set({ entry: forged, outcome: 'failure', leaf_hash: leafHash(Buffer.from(forged)).toString('hex') }).where('seq', '=', 12).execute();
          return async () => void (await raw.updateTable('ledger_entries').set(row).where('seq', '=', 12).execute());
        },
      },
      ...[7, 16, 20].map((seq) => ({
        name: `deleted entry ${seq}`,
        finding: { kind: 'missing-entry', seq, message: `entry ${seq} is missing (the next stored entry is ${seq + 1})` },
        tamper: async () => {
          const row = await entryRow(raw, seq);
          await raw.deleteFrom('ledger_entries').where('seq', '=', seq).execute();
          return async () => void (await raw.insertInto('ledger_entries').values(row).execute());
        },
      })),
      {
        name: 'whole ranges deleted (positions 13 to 29)',
        finding: { kind: 'missing-entry', seq: 13, message: 'entry 13 is missing (the next stored entry is 30)' },
        tamper: async () => {
          const rows = await raw.selectFrom('ledger_entries').selectAll().where('seq', '>=', 13).where('seq', '<', 30).execute();
          await raw.deleteFrom('ledger_entries').where('seq', '>=', 13).where('seq', '<', 30).execute();
          return async () => void (await raw.insertInto('ledger_entries').values(rows).execute());
        },
      },
      {
        name: 'inserted entry after the last',
        finding: { kind: 'inserted-entry', seq: 60 },
        tamper: async () => {
          await raw.insertInto('ledger_entries').values({ ...(await entryRow(raw, 59)), seq: 60 }).execute();
          return async () => void (await raw.deleteFrom('ledger_entries').where('seq', '=', 60).execute());
        },
      },
      {
        name: 'two entries swapped across a range boundary',
        finding: { kind: 'reordered-entry', seq: 27 },
        tamper: async () => {
          const [a, b] = [await entryRow(raw, 27), await entryRow(raw, 28)];
          await raw.updateTable('ledger_entries').set({ ...b, seq: 27 }).where('seq', '=', 27).execute();
          await raw.updateTable('ledger_entries').set({ ...a, seq: 28 }).where('seq', '=', 28).execute();
          return async () => {
            await raw.updateTable('ledger_entries').set(a).where('seq', '=', 27).execute();
            await raw.updateTable('ledger_entries').set(b).where('seq', '=', 28).execute();
          };
        },
      },
      {
        name: 'an entry copied over the next one',
        finding: { kind: 'inserted-entry', seq: 41 },
        tamper: async () => {
          const [a, b] = [await entryRow(raw, 40), await entryRow(raw, 41)];
          await raw.updateTable('ledger_entries').set({ ...a, seq: 41 }).where('seq', '=', 41).execute();
          return async () => void (await raw.updateTable('ledger_entries').set(b).where('seq', '=', 41).execute());
        },
      },
      {
        name: 'truncated tree',
        finding: { kind: 'truncated', treeSize: 45 },
        tamper: async () => {
          const rows = await raw.selectFrom('ledger_entries').selectAll().where('seq', '>=', 45).execute();
          await raw.deleteFrom('ledger_entries').where('seq', '>=', 45).execute();
          return async () => void (await raw.insertInto('ledger_entries').values(rows).execute());
        },
      },
      {
        name: 'changed payload',
        finding: { kind: 'changed-payload', seq: 33 },
        tamper: async () => {
          const row = await raw.selectFrom('ledger_payloads').selectAll().where('seq', '=', 33).executeTakeFirstOrThrow();
          await raw.updateTable('ledger_payloads').set({ payload: JSON.stringify({ details: { fields: 999 }, source: '192.0.2.10' }) }).where('seq', '=', 33).execute();
          return async () => void (await raw.updateTable('ledger_payloads').set(row).where('seq', '=', 33).execute());
        },
      },
      {
        name: 'checkpoint note no longer signed',
        finding: { kind: 'bad-checkpoint-signature', treeSize: 20 },
        tamper: async () => {
          const row = await raw.selectFrom('ledger_checkpoints').selectAll().where('tree_size', '=', 20).executeTakeFirstOrThrow();
          await raw.updateTable('ledger_checkpoints').set({ note: row.note.replace('\n20\n', '\n19\n') }).where('tree_size', '=', 20).execute();
          return async () => void (await raw.updateTable('ledger_checkpoints').set(row).where('tree_size', '=', 20).execute());
        },
      },
    ];
    for (const c of cases) {
      const restore = await c.tamper();
      const report = await bothPaths(ledger);
      expect(report.findings, c.name).toHaveLength(1);
      expect(report.findings[0], c.name).toMatchObject(c.finding);
      expect(report.ok, c.name).toBe(false);
      await restore();
    }
    expect(await bothPaths(ledger)).toMatchObject({ ok: true, treeSize: 60, payloadsChecked: 60 }); // all restored

    // Expired payloads (retention) and an older, non-canonical payload form still verify.
    const payload = await raw.selectFrom('ledger_payloads').selectAll().where('seq', '=', 4).executeTakeFirstOrThrow();
    const parsed = JSON.parse(payload.payload) as Record<string, unknown>;
    await raw.updateTable('ledger_payloads').set({ payload: JSON.stringify({ source: parsed.source, details: parsed.details }, null, 1) }).where('seq', '=', 4).execute();
    await raw.deleteFrom('ledger_payloads').where('seq', '>=', 10).where('seq', '<', 25).execute();
    expect(await bothPaths(ledger)).toMatchObject({ ok: true, treeSize: 60, payloadsChecked: 45 });
  }, HEAVY_TEST_MS);

  it('gives the same witness result as one thread: consistent, and a complete rewrite caught', async () => {
    const { ledger, raw } = await seeded();
    const witness = (await ledger.latestCheckpoint())!.text;
    await ledger.append(Array.from({ length: 5 }, (_, i) => event(300 + i)));
    expect(await bothPaths(ledger, witness)).toMatchObject({ ok: true, treeSize: 65, witness: { treeSize: 60, consistent: true } });
    // Rewrite entry 2 with a fresh leaf hash and drop the checkpoints: only the witness can tell.
    const row = await entryRow(raw, 2);
    const forged = row.entry.replace('"outcome":"success"', '"outcome":"denied"');
    await raw.updateTable('ledger_entries').set({ entry: forged, outcome: 'denied', leaf_hash: leafHash(Buffer.from(forged)).toString('hex') }).where('seq', '=', 2).execute();
    await raw.deleteFrom('ledger_checkpoints').execute();
    expect(await bothPaths(ledger, witness)).toMatchObject({ ok: false, findings: [{ kind: 'witness-mismatch', treeSize: 60 }] });
  });

  it('does not count entries appended while it runs as inserted, on either path', async () => {
    const { ledger } = await seeded();
    for (const threads of [ONE_THREAD, WORKERS]) {
      const before = (await ledger.head()).treeSize;
      const verifying = ledger.verify({ threads });
      const appends = Array.from({ length: 20 }, (_, i) => ledger.append(event(400 + i)));
      const [report] = await Promise.all([verifying, ...appends]);
      expect(report.findings).toEqual([]);
      expect(report.treeSize).toBeGreaterThanOrEqual(before);
      expect((await ledger.verify({ threads })).treeSize).toBe(before + 20);
    }
  });

  it('fails with a clear error, and no secret in it, when a worker cannot open the database', async () => {
    const { ledger, raw, place } = await seeded();
    const real = await core!.storage.locate(place);
    const broken: DatabaseLocation =
      real.engine === 'sqlite' ? { engine: 'sqlite', file: join(t!.dir, 'no-such-dir', 'tenant.db') } : { engine: 'postgres', url: Object.assign(new URL(real.url), { pathname: '/tresor_no_such_database' }).toString() };
    const elsewhere = createLedger({
      db: raw,
      origin: ledger.origin,
      tenantId: place.tenantId,
      masterKey: core!.masterKey,
      retentionDays: 90,
      clock: core!.clock,
      location: () => Promise.resolve(broken),
    });
    const error = await elsewhere.verify({ threads: WORKERS }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(/^a ledger verification worker thread failed: .*(unable to open database file|does not exist)/);
    if (real.engine === 'postgres') {
      const password = new URL(real.url).password;
      expect(password.length).toBeGreaterThan(10);
      expect(error!.message).not.toContain(password);
      expect(error!.stack ?? '').not.toContain(password);
    }
    expect((await elsewhere.verify({ threads: ONE_THREAD })).ok).toBe(true); // the one-thread path needs no location
  });

  it('verifies 50,000 entries with worker threads from the built CLI, names a deleted entry (exit 9), progress on stderr only without --json', async () => {
    const { tenant, ledger, raw } = await seeded();
    for (let n = 60; n < 50_000; n += 1_000) await ledger.append(Array.from({ length: Math.min(1_000, 50_000 - n) }, (_, i) => event(n + i)));
    await ledger.checkpoint();
    const ok = tresor(['--json', 'ledger', 'verify', '--tenant', tenant.id], { cwd: t!.dir, env: t!.env });
    expect(ok.code, ok.stderr).toBe(0);
    // --json: stdout is exactly the report, and no progress lines anywhere.
    expect(JSON.parse(ok.stdout)).toMatchObject([{ ok: true, treeSize: 50_000, payloadsChecked: 50_000, checkpointsChecked: 4 }]);
    expect(ok.stderr).not.toMatch(/entries checked/);
    await raw.deleteFrom('ledger_entries').where('seq', '=', 31_234).execute();
    const bad = tresor(['ledger', 'verify', '--tenant', tenant.id], { cwd: t!.dir, env: t!.env });
    expect(bad.code, bad.stderr).toBe(9);
    expect(bad.stdout).toMatch(/FAIL .*: 31234 entries.*\n\s+missing-entry: entry 31234 is missing \(the next stored entry is 31235\)/);
    // Without --json, progress goes to stderr (first, at most once a second, last) and never to stdout.
    expect(bad.stderr).toMatch(new RegExp(`^verifying tenant ${tenant.id}: 0 / 50,000 entries checked$`, 'm'));
    expect(bad.stderr).toMatch(new RegExp(`^verifying tenant ${tenant.id}: 31,234 / 50,000 entries checked$`, 'm'));
    expect(bad.stdout).not.toMatch(/entries checked/);
    expect(await ledger.verify({ threads: ONE_THREAD })).toEqual(await ledger.verify({ threads: { workers: 2, rangeSize: 10_000, minEntries: 0 } }));
  }, HEAVY_TEST_MS);
});

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../src/access/index.js';
import { ensureFirstOperator, openCore, type Core } from '../src/core.js';
import { loadConfig } from '../src/config/index.js';
import { ledgerSubjectIndex, type DataSession } from '../src/records/index.js';
import { buildApp } from '../src/http/app.js';
import { startServer, type RunningServer } from '../src/http/server.js';
import { encryptBytes, randomFileKey, toBase64Url } from '../src/shared-e2e/index.js';
import { billingReport, leafHash, MerkleAccumulator, standaloneVerifier, toCsv, type Ledger, type LedgerEvent } from '../src/ledger/index.js';
import type { LedgerSchema } from '../src/ledger/ledger.migrations.js';
import { freePort, tresor, tresorAsync } from './cli-process.js';
import { bearerLogin, engines, fixedClock, GOOD_PASSWORD, mailedKey, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';

const system: Actor = { kind: 'system', name: 'cli' };
const event = (i: number): LedgerEvent => ({
  actor: { tier: 'tenant', role: 'member', id: `account-${i % 3}` },
  action: i % 2 ? 'record.read' : 'record.update',
  resource: { type: 'contact', id: `contact-${i}`, blindIndexes: [`bidx-000${i % 5}`] },
  outcome: 'success',
  source: '192.0.2.10',
  details: { fields: i },
});

describe.each(engines)('tamper-evident ledger (%s)', (engine) => {
  let t: TestEnv | undefined;
  let core: Core | undefined;
  let app: FastifyInstance | undefined;
  afterEach(async () => {
    await app?.close();
    await core?.close();
    await t?.cleanup();
    app = core = t = undefined;
  });

  /** A tenant ledger with 20 entries and signed checkpoints at 10 and 20, plus raw access to its tables. */
  async function seeded() {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    const tenant = await core.platform.createTenant(system, { name: 'Ledger GmbH' });
    const ledger = await core.ledgers.tenant(tenant.id);
    const base = (await ledger.head()).treeSize; // tenant.create is already recorded
    for (let i = 0; i < 10 - base; i++) await ledger.append(event(i));
    await ledger.checkpoint();
    await ledger.append(Array.from({ length: 10 }, (_, i) => event(100 + i)));
    await ledger.checkpoint();
    const { database_name } = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow();
    const raw = (await core.storage.tenantDb({ tenantId: tenant.id, databaseName: database_name })) as unknown as Kysely<LedgerSchema>;
    return { tenant, ledger, raw };
  }

  const firstFinding = async (ledger: Ledger, witness?: string) => (await ledger.verify(witness ? { witness } : {})).findings[0];

  it('verifies an untouched ledger and records platform and tenant events', async () => {
    const { ledger, tenant } = await seeded();
    const report = await ledger.verify();
    expect(report).toMatchObject({ ok: true, treeSize: 20, checkpointsChecked: 2, payloadsChecked: 20, findings: [] });
    const actions = await core!.storage.control.selectFrom('ledger_entries').select(['action', 'outcome', 'resource']).execute();
    expect(actions).toEqual(expect.arrayContaining([{ action: 'tenant.create', outcome: 'success', resource: `tenant:${tenant.id}` }]));
    expect((await core!.ledgers.platform.verify()).ok).toBe(true);
    // The newest entries, in ledger order, straight from the database (ORDER BY seq DESC LIMIT n).
    expect((await ledger.query({ limit: 5 }, undefined, { newest: true })).map((e) => e.seq)).toEqual([15, 16, 17, 18, 19]);
    const byActor = (await ledger.query({ actor: 'account-1' })).map((e) => e.seq);
    expect(byActor.length).toBeGreaterThan(3);
    expect((await ledger.query({ limit: 3, actor: 'account-1' }, undefined, { newest: true })).map((e) => e.seq)).toEqual(byActor.slice(-3));
  });

  it('detects a changed entry', async () => {
    const { ledger, raw } = await seeded();
    const row = await raw.selectFrom('ledger_entries').select('entry').where('seq', '=', 7).executeTakeFirstOrThrow();
    await raw.updateTable('ledger_entries').set({ entry: row.entry.replace('record.', 'recorX.') }).where('seq', '=', 7).execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'changed-entry', seq: 7 });
  });

  it('detects an entry rewritten together with its leaf hash, by the signed checkpoint', async () => {
    const { ledger, raw } = await seeded();
    const row = await raw.selectFrom('ledger_entries').select('entry').where('seq', '=', 12).executeTakeFirstOrThrow();
    const forged = row.entry.replace('"outcome":"success"', '"outcome":"failure"');
    await raw
      .updateTable('ledger_entries')
      .set({ entry: forged, outcome: 'failure', leaf_hash: leafHash(Buffer.from(forged)).toString('hex') })
      .where('seq', '=', 12)
      .execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'rewritten-before-checkpoint', treeSize: 20 });
  });

  it('detects a deleted entry', async () => {
    const { ledger, raw } = await seeded();
    await raw.deleteFrom('ledger_entries').where('seq', '=', 5).execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'missing-entry', seq: 5 });
  });

  it('detects an inserted entry', async () => {
    const { ledger, raw } = await seeded();
    const last = await raw.selectFrom('ledger_entries').selectAll().where('seq', '=', 19).executeTakeFirstOrThrow();
    await raw.insertInto('ledger_entries').values({ ...last, seq: 20 }).execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'inserted-entry', seq: 20 });
  });

  it('detects an entry inserted in the middle of the tree, with every later entry and payload moved up one place', async () => {
    const { ledger, raw } = await seeded();
    // The attacker makes room at 10 (highest first, so no key collides), then writes a well-formed entry
    // there with a correct leaf hash and payload, and fixes the head's size.
    for (let seq = 19; seq >= 10; seq--) {
      await raw.updateTable('ledger_entries').set({ seq: seq + 1 }).where('seq', '=', seq).execute();
      await raw.updateTable('ledger_payloads').set({ seq: seq + 1 }).where('seq', '=', seq).execute();
    }
    const model = await raw.selectFrom('ledger_entries').selectAll().where('seq', '=', 9).executeTakeFirstOrThrow();
    const forged = model.entry.replace('"seq":9,', '"seq":10,').replace('"outcome":"success"', '"outcome":"denied"');
    await raw.insertInto('ledger_entries').values({ ...model, seq: 10, outcome: 'denied', entry: forged, leaf_hash: leafHash(Buffer.from(forged)).toString('hex') }).execute();
    await raw.updateTable('ledger_head').set({ tree_size: 21 }).execute();
    // Position 10 looks fine on its own; position 11 then holds the entry written as number 10.
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'inserted-entry', seq: 11 });
  });

  it('writes technical.migration, technical.start and technical.stop to the platform ledger', async () => {
    t = makeTestEnv(engine, { TRESOR_SERVER_PORT: String(await freePort()), TRESOR_METRICS_ENABLED: 'false' });
    const server = await startServer(t.config, silentLog, () => undefined);
    await server.stop();
    core = await openTestCore(t);
    const technical = (await core.ledgers.platform.query({ action: 'technical.' })).map((e) => ({ action: e.action, actor: e.actor, details: (e.payload as { details: Record<string, unknown> }).details }));
    expect(technical).toEqual([
      { action: 'technical.migration', actor: 'system:migrate:migrate', details: { applied: expect.any(Number) } },
      { action: 'technical.start', actor: 'system:server:server', details: { configSha256: expect.stringMatching(/^[0-9a-f]{64}$/) } },
      { action: 'technical.stop', actor: 'system:server:server', details: {} },
    ]);
    expect(technical[0]!.details.applied).toBeGreaterThan(0);
    expect((await core.ledgers.platform.verify()).ok).toBe(true);
  });

  it('writes record.delete and record.export with the data subjects, and key.rotate-master from the CLI', async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    const tenant = await core.platform.createTenant(system, { name: 'Ereignis GmbH' });
    const s: DataSession = { actor: { kind: 'tenant', accountId: 'member-1', tenantId: tenant.id, role: 'member' }, tenantId: tenant.id, dataKey: Buffer.alloc(32, 9), keyVersion: 1 };
    const kept = await core.collections.contacts.create(s, 'shared', { name: 'Bleibt Hier', email: 'bleibt@example.org' });
    const gone = await core.collections.contacts.create(s, 'shared', { name: 'Geht Weg', email: 'geht@example.org' });
    await core.collections.contacts.remove(s, gone.id);
    expect(await core.collections.contacts.exportAll(s)).toHaveLength(1);
    const ledger = await core.ledgers.tenant(tenant.id);
    const [deleted] = await ledger.query({ action: 'record.delete' });
    expect(deleted).toMatchObject({ actor: 'tenant:member:member-1', outcome: 'success' });
    expect(deleted!.resource).toMatch(new RegExp(`^contacts:${gone.id}#bidx=[0-9a-f]{32},[0-9a-f]{32}$`));
    const subject = ledgerSubjectIndex(await core.subjectKeys.keysOf(s), 'email', 'GEHT@example.org');
    expect(deleted!.resource).toContain(subject);
    const [exported] = await ledger.query({ action: 'record.export' });
    expect(exported!.payload).toMatchObject({ details: { records: 1 } });
    expect(exported!.resource).toContain(ledgerSubjectIndex(await core.subjectKeys.keysOf(s), 'name', kept.name!));
    expect(exported!.resource).not.toContain(subject); // deleted before the export
    expect(JSON.stringify(await ledger.query({}))).not.toMatch(/bleibt@|geht@|Bleibt Hier|Geht Weg/);
    await core.close();
    core = undefined;

    const rotated = tresor(['keys', 'rotate-master'], { cwd: t.dir, env: t.env });
    expect(rotated.code, rotated.stderr).toBe(0);
    core = await openTestCore(t);
    const rotation = await core.ledgers.platform.query({ action: 'key.rotate-master' });
    expect(rotation).toHaveLength(1);
    expect(rotation[0]).toMatchObject({ actor: 'system:cli:cli', resource: 'master-key:2', outcome: 'success' });
    expect((rotation[0]!.payload as { details: { resealed: number } }).details.resealed).toBeGreaterThan(0);
    expect((await core.ledgers.platform.verify()).ok).toBe(true);
  });

  it('detects two reordered entries', async () => {
    const { ledger, raw } = await seeded();
    const a = await raw.selectFrom('ledger_entries').selectAll().where('seq', '=', 3).executeTakeFirstOrThrow();
    const b = await raw.selectFrom('ledger_entries').selectAll().where('seq', '=', 4).executeTakeFirstOrThrow();
    await raw.updateTable('ledger_entries').set({ ...b, seq: 3 }).where('seq', '=', 3).execute();
    await raw.updateTable('ledger_entries').set({ ...a, seq: 4 }).where('seq', '=', 4).execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'reordered-entry', seq: 3 });
  });

  it('detects a truncated tree', async () => {
    const { ledger, raw } = await seeded();
    await raw.deleteFrom('ledger_entries').where('seq', '>=', 15).execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'truncated', treeSize: 15 });
  });

  it('detects a changed payload, and still verifies once payloads expire', async () => {
    const { ledger, raw } = await seeded();
    await raw.updateTable('ledger_payloads').set({ payload: JSON.stringify({ details: { fields: 999 }, source: '192.0.2.10' }) }).where('seq', '=', 9).execute();
    expect(await firstFinding(ledger)).toMatchObject({ kind: 'changed-payload', seq: 9 });
    await raw.deleteFrom('ledger_payloads').execute(); // what retention does
    const report = await ledger.verify();
    expect(report).toMatchObject({ ok: true, payloadsChecked: 0, treeSize: 20 });
  });

  it('stores payloads canonically and still accepts an equivalent older, non-canonical form', async () => {
    const { ledger, raw } = await seeded();
    const row = await raw.selectFrom('ledger_payloads').selectAll().where('seq', '=', 4).executeTakeFirstOrThrow();
    const parsed = JSON.parse(row.payload) as Record<string, unknown>;
    expect(row.payload).toBe(JSON.stringify(Object.fromEntries(Object.keys(parsed).sort().map((k) => [k, parsed[k]])))); // sorted keys
    // Rows written before payloads were stored canonically: same content, other key order and spacing.
    await raw.updateTable('ledger_payloads').set({ payload: JSON.stringify({ source: parsed.source, details: parsed.details }, null, 1) }).where('seq', '=', 4).execute();
    expect((await ledger.verify()).ok).toBe(true);
  });

  it('catches a complete, consistent rewrite only through the outside witness', async () => {
    const { ledger, raw } = await seeded();
    const witness = (await ledger.checkpoint()).text;
    // The attacker rewrites entry 2, rebuilds every hash, node and the head, and removes all checkpoints.
    const rows = await raw.selectFrom('ledger_entries').selectAll().orderBy('seq').execute();
    rows[2]!.entry = rows[2]!.entry.replace('"outcome":"success"', '"outcome":"denied"');
    rows[2]!.outcome = 'denied';
    const acc = new MerkleAccumulator();
    await raw.deleteFrom('ledger_nodes').execute();
    await raw.deleteFrom('ledger_checkpoints').execute();
    for (const row of rows) {
      const leaf = leafHash(Buffer.from(row.entry));
      row.leaf_hash = leaf.toString('hex');
      await raw.updateTable('ledger_entries').set(row).where('seq', '=', row.seq).execute();
      const nodes: { level: number; idx: number; hash: string }[] = [];
      acc.append(leaf, (n, h) => nodes.push({ level: n.level, idx: n.index, hash: h.toString('hex') }));
      await raw.insertInto('ledger_nodes').values(nodes).execute();
    }
    const state = acc.state();
    await raw.updateTable('ledger_head').set({ tree_size: state.size, compact_range: JSON.stringify(state.hashes.map((h) => h.toString('hex'))) }).execute();
    expect((await ledger.verify()).ok).toBe(true); // nothing inside the database can tell
    expect(await firstFinding(ledger, witness)).toMatchObject({ kind: 'witness-mismatch', treeSize: 20 });
  });

  it('serves entries with inclusion proofs and consistency proofs that the standalone verifier accepts', async () => {
    const { tenant, ledger } = await seeded();
    app = await buildApp(core!, { logger: silentLog });
    const operator = (await ensureFirstOperator(core!))!;
    const headers = { authorization: `Bearer ${await bearerLogin(app, operator.login, operator.oneTimePassword)}` };
    const cp = (await app.inject({ method: 'GET', url: `/api/v1/ledger/checkpoint?tenantId=${tenant.id}`, headers })).json<{ checkpoint: string; publicKey: string; treeSize: number }>();
    expect(cp.treeSize).toBe(20);
    for (const seq of [0, 7, 19]) {
      const res = await app.inject({ method: 'GET', url: `/api/v1/ledger/entries/${seq}?tenantId=${tenant.id}`, headers });
      expect(res.statusCode).toBe(200);
      const body = res.json<{ entry: string; proof: string[]; treeSize: number }>();
      const proof = { entry: body.entry, index: seq, treeSize: body.treeSize, proof: body.proof };
      expect(standaloneVerifier.verifyEntryInCheckpoint(proof, cp.checkpoint, cp.publicKey).valid).toBe(true);
      // A forged entry does not verify.
      const forged = Buffer.from(Buffer.from(body.entry, 'base64').toString().replace('success', 'failure')).toString('base64');
      expect(standaloneVerifier.verifyEntryInCheckpoint({ ...proof, entry: forged }, cp.checkpoint, cp.publicKey).valid).toBe(false);
    }
    const oldCp = await core!.storage.tenantDb({ tenantId: tenant.id, databaseName: (await core!.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow()).database_name });
    const first = await (oldCp as unknown as Kysely<LedgerSchema>).selectFrom('ledger_checkpoints').select('note').where('tree_size', '=', 10).executeTakeFirstOrThrow();
    const consistency = await app.inject({ method: 'GET', url: `/api/v1/ledger/consistency?tenantId=${tenant.id}&from=10&to=20`, headers });
    const { proof } = consistency.json<{ proof: string[] }>();
    expect(standaloneVerifier.verifyCheckpointConsistency(first.note, cp.checkpoint, proof, cp.publicKey).valid).toBe(true);
    expect(standaloneVerifier.verifyCheckpointConsistency(first.note, cp.checkpoint, proof.slice(1), cp.publicKey).valid).toBe(false);
    // Out of range and unauthenticated requests are refused clearly.
    expect((await app.inject({ method: 'GET', url: `/api/v1/ledger/consistency?tenantId=${tenant.id}&from=10&to=99`, headers })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: `/api/v1/ledger/checkpoint` })).statusCode).toBe(401);
    expect(ledger.origin).toContain(tenant.id);

    const listed = await app.inject({ method: 'GET', url: `/api/v1/ledger/entries?tenantId=${tenant.id}&actor=account-1&limit=3`, headers });
    expect(listed.statusCode).toBe(200);
    const entries = listed.json<{ entries: { seq: number; actor: string; payload: unknown }[] }>().entries;
    expect(entries).toHaveLength(3);
    // The platform sees a tenant's entries and their details, never its users' source addresses.
    expect(entries.map((e) => e.payload)).toEqual(entries.map(() => ({ details: expect.objectContaining({ fields: expect.any(Number) }) })));
    expect(listed.body).not.toContain('192.0.2.10');
    const one = await app.inject({ method: 'GET', url: `/api/v1/ledger/entries/${entries[0]!.seq}?tenantId=${tenant.id}`, headers });
    expect(one.json()).toMatchObject({ payload: null, salt: null, payloadWithheld: true });
    await expect((await core!.ledgers.tenant(tenant.id)).query({ actor: 'account-1' }).then((all) => JSON.stringify(all))).resolves.toContain('192.0.2.10'); // kept for the tenant's DPO
    expect(entries.every((e) => e.actor === 'tenant:member:account-1')).toBe(true);
    expect(entries.map((e) => e.seq)).toEqual([...entries.map((e) => e.seq)].sort((a, b) => a - b));
    const verified = await app.inject({ method: 'POST', url: `/api/v1/ledger/verify?tenantId=${tenant.id}`, headers });
    expect(verified.json()).toMatchObject({ ok: true, treeSize: 20, findings: [] });
    const raw = (await core!.storage.tenantDb({ tenantId: tenant.id, databaseName: (await core!.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow()).database_name })) as unknown as Kysely<LedgerSchema>;
    await raw.deleteFrom('ledger_entries').where('seq', '=', 11).execute();
    const failed = await app.inject({ method: 'POST', url: `/api/v1/ledger/verify?tenantId=${tenant.id}`, headers });
    expect(failed.json()).toMatchObject({ ok: false, findings: [{ kind: 'missing-entry', seq: 11 }] });
  });

  it('commits a change and the event that records it together, or neither', async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    const tenant = await core.platform.createTenant(system, { name: 'Atomar GmbH' });
    const s: DataSession = { actor: { kind: 'tenant', accountId: 'a', tenantId: tenant.id, role: 'member' }, tenantId: tenant.id, dataKey: Buffer.alloc(32, 7), keyVersion: 1 };
    const ledger = await core.ledgers.tenant(tenant.id);
    const size = (await ledger.head()).treeSize;
    const created = await core.collections.contacts.create(s, 'shared', { name: 'Beide oder keins' });
    expect((await ledger.head()).treeSize).toBe(size + 1);
    // The change fails (a duplicate id): its event is not written either.
    await expect(ledger.append(event(1), (trx) => (trx as unknown as Kysely<{ contacts: { id: string } }>).insertInto('contacts').values({ id: created.id } as never).execute())).rejects.toThrow();
    expect((await ledger.head()).treeSize).toBe(size + 1);
    // The event cannot be written (here: it is not valid): the change is rolled back with it.
    await expect(
      ledger.append({ ...event(2), action: '' }, (trx) => (trx as unknown as Kysely<{ contacts: Record<string, unknown> }>).deleteFrom('contacts').where('id', '=', created.id).execute()),
    ).rejects.toThrow();
    expect((await core.collections.contacts.get(s, created.id)).name).toBe('Beide oder keins');
    expect((await ledger.verify()).ok).toBe(true);
  });

  it('keeps the checkpoint origin a ledger was created with when server.public_url changes', async () => {
    t = makeTestEnv(engine, { TRESOR_SERVER_PUBLIC_URL: 'https://tresor-alt.example:8443' });
    core = await openTestCore(t);
    const tenant = await core.platform.createTenant(system, { name: 'Ursprung GmbH' });
    const before = { platform: core.ledgers.platform.origin, tenant: (await core.ledgers.tenant(tenant.id)).origin };
    expect(before.tenant).toBe(`tresor-alt.example:8443/tresor/tenant/${tenant.id}`);
    const witness = await (await core.ledgers.tenant(tenant.id)).checkpoint();
    await core.close();
    core = await openCore(loadConfig({ cwd: t.dir, env: { ...t.env, TRESOR_SERVER_PUBLIC_URL: 'https://tresor-neu.example' } }), { log: silentLog });
    expect(core.ledgers.platform.origin).toBe(before.platform);
    const ledger = await core.ledgers.tenant(tenant.id);
    expect(ledger.origin).toBe(before.tenant);
    expect((await ledger.verify({ witness: witness.text })).ok).toBe(true); // an old witness checkpoint still matches
  });

  it('gives concurrent appends one gap-free order', async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    // On PostgreSQL a second core is a second node with its own connections. Embedded SQLite is one node:
    // its writers share one connection (a second connection in the same process would block the event loop).
    const second = engine === 'postgres' ? await openTestCore(t) : core;
    try {
      const before = (await core.ledgers.platform.head()).treeSize;
      const seqs = (
        await Promise.all(
          Array.from({ length: 40 }, (_, i) => (i % 2 ? second : core!).ledgers.platform.append([event(i), event(i + 1000)])),
        )
      ).flat();
      expect(seqs.sort((a, b) => a - b)).toEqual(Array.from({ length: 80 }, (_, i) => before + i));
      expect((await core.ledgers.platform.verify()).ok).toBe(true);
    } finally {
      if (second !== core) await second.close();
    }
  });

  it('exports a checkpoint for a witness and verifies against it from the CLI (exit 9 on tampering)', async () => {
    const { tenant, raw } = await seeded();
    const env = t!.env;
    const exported = tresor(['ledger', 'checkpoint', '--tenant', tenant.id, '--export'], { cwd: t!.dir, env });
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(new RegExp(`^\\S+/tresor/tenant/${tenant.id}\\n20\\n[A-Za-z0-9+/]{43}=\\ntime \\S+\\n\\n— `));
    const witnessFile = join(t!.dir, 'witness.txt');
    writeFileSync(witnessFile, exported.stdout);
    const ok = tresor(['ledger', 'verify', '--tenant', tenant.id, '--witness', witnessFile], { cwd: t!.dir, env });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^OK .* 20 entries, 2 checkpoints.*witness at size 20 consistent/m);
    await raw.deleteFrom('ledger_entries').where('seq', '=', 4).execute();
    const bad = tresor(['ledger', 'verify', '--all'], { cwd: t!.dir, env });
    expect(bad.code).toBe(9);
    expect(bad.stdout).toMatch(/FAIL .*\n\s+missing-entry: entry 4 is missing/);
  });

  it('exports by actor, action, period and data subject, each with the checkpoint that covers it', async () => {
    const { ledger, tenant } = await seeded();
    const byActor = await ledger.export({ actor: 'account-1' });
    expect(byActor.entries.length).toBeGreaterThan(0);
    expect(byActor.entries.every((e) => e.actor === 'tenant:member:account-1')).toBe(true);
    const bySubject = await ledger.export({ subject: 'bidx-0003' });
    expect(bySubject.entries.map((e) => e.resource).every((r) => r.endsWith('#bidx=bidx-0003'))).toBe(true);
    // Four events about the subject, and the export itself, which is recorded before the checkpoint.
    expect(bySubject.entries).toHaveLength(5);
    expect(bySubject.entries.at(-1)).toMatchObject({ action: 'ledger.export', actor: 'system:cli:cli' });
    const byAction = await ledger.export({ action: 'tenant.' });
    expect(byAction.entries.map((e) => e.action)).toEqual(['tenant.create']);
    const empty = await ledger.export({ from: '2000-01-01T00:00:00.000Z', to: '2000-02-01T00:00:00.000Z' });
    expect(empty.entries).toEqual([]);
    // The checkpoint covers every exported entry, and it verifies with the published key.
    const size = Number(byActor.checkpoint.split('\n')[1]);
    expect(byActor.entries.every((e) => e.seq < size)).toBe(true);
    expect(standaloneVerifier.verifyCheckpoint(byActor.checkpoint, byActor.publicKey).valid).toBe(true);
    expect(byActor.entries[0]!.payload).toMatchObject({ source: '192.0.2.10' });
    await expect(ledger.export({ actor: "x' or 1=1 --" })).rejects.toMatchObject({ code: 'VALIDATION' });
    await expect(ledger.export({ subject: '%' })).rejects.toMatchObject({ code: 'VALIDATION' });
    // '_' is no wildcard: account_1 is not account-1, and bidx_0003 is not bidx-0003.
    expect((await ledger.export({ actor: 'account_1' })).entries).toEqual([]);
    expect((await ledger.export({ subject: 'bidx_0003' })).entries.map((e) => e.action)).toEqual(['ledger.export']);

    const out = join(t!.dir, 'export.csv');
    const cli = tresor(['ledger', 'export', '--tenant', tenant.id, '--subject', 'bidx-0003', '--format', 'csv', '--out', out], { cwd: t!.dir, env: t!.env });
    expect(cli.code, cli.stderr).toBe(0);
    const csv = readFileSync(out, 'utf8').trim().split('\r\n');
    expect(csv[0]).toBe('seq,time,actor,action,resource,outcome,payload,entry');
    expect(csv).toHaveLength(7); // header, four events, two exports
    expect(readFileSync(`${out}.checkpoint`, 'utf8')).toMatch(/^\S+\/tresor\/tenant\//);
  });

  it('expires technical payloads after ledger.technical_retention_days and the rest after ledger.retention_days, through the scheduler, and still verifies', async () => {
    const clock = fixedClock('2026-11-02T08:00:00.000Z');
    t = makeTestEnv(engine, { TRESOR_SERVER_PORT: String(await freePort()), TRESOR_METRICS_ENABLED: 'false', TRESOR_LEDGER_TECHNICAL_RETENTION_DAYS: '3' });
    const server = await startServer(t.config, silentLog, () => undefined, { clock });
    try {
      const ledger = server.core.ledgers.platform;
      await ledger.append({ actor: { tier: 'system', role: 'alarm', id: 'smtp' }, action: 'technical.alarm.delivery', resource: { type: 'route', id: 'r1' }, outcome: 'success', source: '192.0.2.25' });
      await ledger.append({ ...event(1), action: 'tenant.suspend' });
      await ledger.append({ ...event(2), action: 'billing.usage', retentionDays: 3650 });
      const kept = async () => Object.fromEntries((await ledger.query({})).map((e) => [e.action, e.payload !== null]));
      expect(await kept()).toMatchObject({ 'technical.migration': true, 'technical.start': true, 'technical.alarm.delivery': true, 'tenant.suspend': true, 'billing.usage': true });
      clock.advanceDays(2);
      await server.runJob('ledger-payload-retention');
      expect(await kept()).toMatchObject({ 'technical.start': true, 'technical.alarm.delivery': true });
      clock.advanceDays(2); // day 4: past the technical class (3 days), within the default 90
      await server.runJob('ledger-payload-retention');
      expect(await kept()).toEqual({ 'technical.migration': false, 'technical.start': false, 'technical.alarm.delivery': false, 'account.create': true, 'tenant.suspend': true, 'billing.usage': true });
      expect((await ledger.verify()).ok).toBe(true);
      clock.advanceDays(87); // day 91
      await server.runJob('ledger-payload-retention');
      expect(await kept()).toEqual({ 'technical.migration': false, 'technical.start': false, 'technical.alarm.delivery': false, 'account.create': false, 'tenant.suspend': false, 'billing.usage': true });
      const report = await ledger.verify();
      expect(report).toMatchObject({ ok: true, payloadsChecked: 1, findings: [] });
    } finally {
      await server.stop();
    }
  });

  it('makes every commit durable before it is acknowledged: synchronous=FULL on SQLite, synchronous_commit=on on PostgreSQL', async () => {
    t = makeTestEnv(engine);
    if (engine === 'postgres') {
      // Even a server (database) whose default says otherwise does not weaken Tresor's commits.
      core = await openTestCore(t);
      await core.close();
      const admin = new pg.Client({ connectionString: process.env.TRESOR_TEST_PG });
      await admin.connect();
      try {
        await admin.query(`alter database ${pg.escapeIdentifier(t.pgDatabase!)} set synchronous_commit = off`);
      } finally {
        await admin.end();
      }
    }
    core = await openTestCore(t);
    const tenant = await core.platform.createTenant(system, { name: 'Dauerhaft GmbH' });
    const { database_name } = await core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow();
    const tenantDb = await core.storage.tenantDb({ tenantId: tenant.id, databaseName: database_name });
    for (const db of [core.storage.control, tenantDb] as Kysely<unknown>[]) {
      if (engine === 'sqlite') {
        const { rows } = await sql<{ synchronous: number }>`pragma synchronous`.execute(db);
        expect(rows).toEqual([{ synchronous: 2 }]); // 2 = FULL
      } else {
        const { rows } = await sql<{ synchronous_commit: string }>`show synchronous_commit`.execute(db);
        expect(rows).toEqual([{ synchronous_commit: 'on' }]);
      }
    }
  });

  it('neutralises spreadsheet formulas and quotes in CSV', () => {
    expect(toCsv(['a', 'b'], [['=HYPERLINK("x")', 'plain'], ['-1', 'a,b']])).toBe('a,b\r\n"\'=HYPERLINK(""x"")",plain\r\n\'-1,"a,b"\r\n');
  });

  it('counts API calls about a tenant as billing events and sums them per month', async () => {
    const { tenant, ledger } = await seeded();
    app = await buildApp(core!, { logger: silentLog });
    const operator = (await ensureFirstOperator(core!))!;
    const headers = { authorization: `Bearer ${await bearerLogin(app, operator.login, operator.oneTimePassword)}` };
    for (let i = 0; i < 3; i++) expect((await app.inject({ method: 'GET', url: `/api/v1/tenants/${tenant.id}`, headers })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: `/api/v1/tenants/${tenant.id}` })).statusCode).toBe(401); // not billed
    expect(await core!.billing.flush()).toBe(1);
    const month = new Date().toISOString().slice(0, 7);
    const report = await billingReport(ledger, month);
    expect(report.totals.apiCalls).toBe(3);
    expect(report.totals.bytesTransferred).toBe(0); // bytes are a transfer's payload, counted by the transfer service
    const cli = tresor(['--json', 'billing', 'report', '--tenant', tenant.id, '--month', month], { cwd: t!.dir, env: t!.env });
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ tenantId: tenant.id, events: 1, totals: { apiCalls: 3 } });
    expect(tresor(['billing', 'report', '--tenant', tenant.id, '--month', '2026-13'], { cwd: t!.dir, env: t!.env }).code).toBe(6);
  });
});

/**
 * The ledger through a real `tresor serve` (TLS, scheduler running) with a tenant's own data users: what
 * their calls are billed, the DPO's Art. 15 export by e-mail address and by name (HTTP and the CLI in
 * remote mode), and that every read of a person's data, lists and exports included, names that person.
 */
describe.each(engines)('ledger with a tenant and its data users, over TLS (%s)', (engine) => {
  let t: TestEnv;
  let server: RunningServer;
  let tenantId = '';
  const printed: string[] = [];
  const tokens: Record<string, string> = {};
  const PERSON = { name: 'Henrike Vogelsang-Apitz', email: 'h.vogelsang@beispiel-patient.test', phone: '+49 30 1234567' };
  const call = (who: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: object | Buffer | string, headers: Record<string, string> = {}) =>
    server.app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}`, ...headers }, ...(payload ? { payload } : {}) });
  const outbox = () => server.core.config.mail.outbox_dir;
  const invite = async (who: string, email: string, role: string) => {
    expect((await call(who, 'POST', '/api/v1/accounts', { email, role, tenantId })).statusCode).toBe(201);
    const accepted = await server.app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(outbox(), email), newPassword: GOOD_PASSWORD } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    return bearerLogin(server.app, email, GOOD_PASSWORD);
  };
  const tenantLedger = () => server.core.ledgers.tenant(tenantId);
  const month = () => new Date().toISOString().slice(0, 7);

  beforeAll(async () => {
    t = makeTestEnv(engine, { TRESOR_SERVER_PORT: String(await freePort()), TRESOR_METRICS_ENABLED: 'false' });
    server = await startServer(t.config, silentLog, (line) => printed.push(line));
    const password = /password: (\S+)/.exec(printed.join('\n'))![1]!;
    tokens.operator = await bearerLogin(server.app, 'operator', password);
    const created = await call('operator', 'POST', '/api/v1/tenants', { name: 'Praxis Vogelsang' });
    expect(created.statusCode).toBe(201);
    const { id, initialKeys } = created.json<{ id: string; initialKeys: { activationKey: string } }>();
    tenantId = id;
    tokens.admin = await invite('operator', 'admin@vogelsang.test', 'admin');
    tokens.anna = await invite('admin', 'anna@vogelsang.test', 'member');
    tokens.dpo = await invite('admin', 'dpo@vogelsang.test', 'dpo');
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { activationKey: initialKeys.activationKey })).statusCode).toBe(204);
    const dpoId = (await call('anna', 'GET', '/api/v1/keys/status')).json<{ waiting: { id: string }[] }>().waiting[0]!.id;
    expect((await call('anna', 'POST', '/api/v1/keys/grant', { accountId: dpoId })).statusCode).toBe(204);
    tokens.dpo = await bearerLogin(server.app, 'dpo@vogelsang.test', GOOD_PASSWORD); // a new session holds the key
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await t?.cleanup();
  });

  it("bills a tenant's own data users' calls, the bytes of its transfers and the records it stores", async () => {
    await server.core.billing.flush();
    const before = await billingReport(await tenantLedger(), month());
    let calls = 0;
    const billed = async (res: ReturnType<typeof call>, status: number) => {
      const answered = await res;
      expect(answered.statusCode, answered.body).toBe(status);
      calls++;
      return answered;
    };
    await billed(call('anna', 'POST', '/api/v1/contacts', PERSON), 201);
    await billed(call('anna', 'POST', '/api/v1/contacts', { name: 'Zweiter Kontakt', email: 'zwei@beispiel-patient.test' }), 201);
    await billed(call('anna', 'GET', '/api/v1/contacts'), 200);
    await billed(call('dpo', 'GET', '/api/v1/ledger/entries?limit=5'), 200);
    await billed(call('admin', 'GET', `/api/v1/tenants/${tenantId}`), 200);
    expect((await call('anna', 'GET', '/api/v1/ledger/entries')).statusCode).toBe(403); // refused: not billed
    // A transfer: its payload bytes are billed once (not again as the HTTP body that carried them).
    const fileKey = randomFileKey();
    const plain = Buffer.from('Befundbericht '.repeat(5000));
    const made = await billed(
      call('anna', 'POST', '/api/v1/transfers', {
        subject: 'Befund',
        level: 1,
        expiresAt: new Date(Date.now() + 2 * 86_400_000).toISOString(),
        recipients: ['empfang@beispiel-patient.test'],
        files: [{ name: 'befund.txt', size: plain.length, fileKey: toBase64Url(fileKey) }],
      }),
      201,
    );
    const c = made.json<{ id: string; files: { id: string }[] }>();
    const cipher = Buffer.from(await encryptBytes(fileKey, `transfer:${c.id}/file:${c.files[0]!.id}`, plain));
    await billed(call('anna', 'PUT', `/api/v1/transfers/${c.id}/blobs/${c.files[0]!.id}?offset=0`, cipher, { 'content-type': 'application/octet-stream' }), 200);
    expect(await server.core.billing.flush()).toBeGreaterThanOrEqual(1);
    const after = await billingReport(await tenantLedger(), month());
    expect(after.totals.apiCalls - before.totals.apiCalls).toBe(calls);
    expect(after.totals.bytesTransferred - before.totals.bytesTransferred).toBe(cipher.length);
    expect(after.totals.recordsStored).toBe(2);
    // The CLI reads the same figures from the ledger.
    const cli = tresor(['--json', 'billing', 'report', '--tenant', tenantId, '--month', month()], { cwd: t.dir, env: t.env });
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ tenantId, totals: after.totals });
  });

  it('names every data subject of a list, a search and an export in the ledger, in bounded entries', async () => {
    const rows = ['name,email', ...Array.from({ length: 30 }, (_, i) => `Person ${i},person${i}@beispiel-patient.test`)].join('\r\n');
    expect((await call('anna', 'POST', '/api/v1/contacts/import', rows, { 'content-type': 'text/csv' })).statusCode).toBe(200);
    const ledger = await tenantLedger();
    const from = (await ledger.head()).treeSize;
    expect((await call('anna', 'GET', '/api/v1/contacts')).json<unknown[]>()).toHaveLength(32);
    expect((await call('anna', 'GET', `/api/v1/contacts?phone=${encodeURIComponent('0049 30 123 4567')}`)).json<unknown[]>()).toHaveLength(1);
    expect((await call('anna', 'GET', '/api/v1/contacts/export?format=json')).statusCode).toBe(200);
    const written = (await ledger.query({ action: 'record.' })).filter((e) => e.seq >= from);
    const list = written.filter((e) => e.action === 'record.list');
    // 32 contacts with a name and an e-mail address: 64 subjects, 15 to an entry.
    expect(list).toHaveLength(Math.ceil(64 / 15));
    expect(written.filter((e) => e.action === 'record.export')).toHaveLength(Math.ceil(64 / 15));
    expect(written.every((e) => e.resource.length <= 512)).toBe(true);
    expect(list.map((e) => (e.payload as { details: { part: number; parts: number } }).details)).toEqual(list.map((_, i) => expect.objectContaining({ part: i + 1, parts: list.length, results: 32 })));
    const subjects = list.flatMap((e) => e.resource.split('#bidx=')[1]!.split(','));
    expect(new Set(subjects).size).toBe(64);
    // The search by phone found the person: the entry names her by both pseudonyms.
    const { subject: byEmail } = (await call('dpo', 'GET', `/api/v1/privacy/subject-index?email=${encodeURIComponent(PERSON.email)}`)).json<{ subject: string }>();
    const { subject: byName } = (await call('dpo', 'GET', `/api/v1/privacy/subject-index?name=${encodeURIComponent(PERSON.name)}`)).json<{ subject: string }>();
    const search = written.find((e) => e.action === 'record.search')!;
    expect(search.resource).toContain(byEmail);
    expect(search.resource).toContain(byName);
    expect(JSON.stringify(written)).not.toContain(PERSON.email);
    expect((await ledger.verify()).ok).toBe(true);
  });

  it("exports the entries about one person for the DPO by e-mail address and by name (Art. 15), with the covering checkpoint", async () => {
    const byEmail = await call('dpo', 'GET', `/api/v1/ledger/export?email=${encodeURIComponent(PERSON.email.toUpperCase())}`);
    expect(byEmail.statusCode, byEmail.body).toBe(200);
    const body = byEmail.json<{ checkpoint: string; publicKey: string; filter: { subject: string[] }; entries: { seq: number; action: string; resource: string; entry: string }[] }>();
    const actions = body.entries.map((e) => e.action);
    // Her creation, the list and the search that returned her, the export of the address book, and this export.
    for (const action of ['record.create', 'record.list', 'record.search', 'record.export']) expect(actions).toContain(action);
    expect(actions.at(-1)).toBe('ledger.export');
    expect(byEmail.body).not.toContain(PERSON.email);
    expect(byEmail.body).not.toContain(PERSON.email.toUpperCase());
    expect(standaloneVerifier.verifyCheckpoint(body.checkpoint, body.publicKey).valid).toBe(true);
    const size = Number(body.checkpoint.split('\n')[1]);
    expect(body.entries.every((e) => e.seq < size)).toBe(true);
    // Another person's entries are not in it.
    const other = (await call('dpo', 'GET', `/api/v1/privacy/subject-index?email=${encodeURIComponent('zwei@beispiel-patient.test')}`)).json<{ subject: string }>().subject;
    expect(body.entries.filter((e) => e.action === 'record.create').every((e) => !e.resource.includes(other))).toBe(true);

    const byName = await call('dpo', 'GET', `/api/v1/ledger/export?format=csv&name=${encodeURIComponent('  henrike VOGELSANG-apitz ')}`);
    expect(byName.statusCode, byName.body).toBe(200);
    expect(byName.headers['content-type']).toMatch(/^text\/csv/);
    const csv = byName.body.trim().split('\r\n');
    expect(csv[0]).toBe('seq,time,actor,action,resource,outcome,payload,entry');
    expect(csv.some((line) => line.includes(',record.create,'))).toBe(true);
    expect(byName.body).not.toContain('Vogelsang');
    const checkpoint = Buffer.from(String(byName.headers['x-tresor-checkpoint']), 'base64').toString('utf8');
    expect(standaloneVerifier.verifyCheckpoint(checkpoint, body.publicKey).valid).toBe(true);
    // The export is in the ledger, naming the person by pseudonym only.
    const recorded = (await (await tenantLedger()).query({ action: 'ledger.export' })).at(-1)!;
    expect(recorded.actor).toMatch(/^tenant:dpo:/);
    expect(JSON.stringify(recorded)).not.toMatch(/vogelsang/i);
  });

  it('refuses the export to everyone but the DPO (tenant ledger) and the operator (platform ledger)', async () => {
    for (const who of ['anna', 'admin']) expect((await call(who, 'GET', '/api/v1/ledger/export')).statusCode, who).toBe(403);
    expect((await call('anna', 'GET', `/api/v1/ledger/export?email=${encodeURIComponent(PERSON.email)}`)).statusCode).toBe(403);
    expect([403, 404]).toContain((await call('operator', 'GET', `/api/v1/ledger/export?tenantId=${tenantId}`)).statusCode);
    expect((await call('operator', 'GET', `/api/v1/ledger/export?email=${encodeURIComponent(PERSON.email)}`)).statusCode).toBe(403); // no data key
    const platform = await call('operator', 'GET', '/api/v1/ledger/export?action=tenant.');
    expect(platform.statusCode).toBe(200);
    expect(platform.json<{ entries: { action: string }[] }>().entries.map((e) => e.action)).toContain('tenant.create');
    expect((await call('dpo', 'GET', '/api/v1/ledger/export?tenantId=00000000-0000-4000-8000-000000000000')).statusCode).toBe(404);
    const both = await call('dpo', 'GET', `/api/v1/ledger/export?subject=abcdefgh12&email=${encodeURIComponent(PERSON.email)}`);
    expect(both.statusCode).toBe(400);
    expect(both.json<{ message: string }>().message).toMatch(/either as subject/);
    expect((await call('dpo', 'GET', "/api/v1/ledger/export?actor=x'%20or%201=1")).statusCode).toBe(400);
  });

  it('exports by e-mail address and by name from the CLI through the server, and says why not locally', async () => {
    const remote = { TRESOR_URL: server.url, TRESOR_TOKEN: tokens.dpo!, TRESOR_CACERT: server.caCertPath! };
    const out = join(t.dir, 'art15.csv');
    const byEmail = await tresorAsync(['ledger', 'export', '--email', PERSON.email, '--format', 'csv', '--out', out], { cwd: t.dir, env: { ...t.env, ...remote } });
    expect(byEmail.code, byEmail.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toContain(',record.create,');
    expect(readFileSync(`${out}.checkpoint`, 'utf8')).toMatch(new RegExp(`/tresor/tenant/${tenantId}\\n\\d+\\n`));
    const byName = await tresorAsync(['ledger', 'export', '--name', PERSON.name], { cwd: t.dir, env: { ...t.env, ...remote } });
    expect(byName.code, byName.stderr).toBe(0);
    const json = JSON.parse(byName.stdout) as { entries: { action: string }[] };
    expect(json.entries.map((e) => e.action)).toContain('record.search');
    expect(byName.stdout).not.toContain(PERSON.name);
    const local = tresor(['ledger', 'export', '--tenant', tenantId, '--email', PERSON.email], { cwd: t.dir, env: t.env });
    expect(local.code).toBe(6);
    expect(local.stderr).toMatch(/data key.*the local operator does not have.*as the tenant's DPO/);
  });

  it("names a transfer's recipients by pseudonym, so the DPO's export by e-mail address finds what was sent to them", async () => {
    const recipients = Array.from({ length: 20 }, (_, i) => `empfaenger${i}@beispiel-patient.test`);
    const made = await call('anna', 'POST', '/api/v1/transfers', {
      subject: 'Rundschreiben',
      level: 1,
      expiresAt: new Date(Date.now() + 2 * 86_400_000).toISOString(),
      recipients,
      files: [{ name: 'brief.txt', size: 10, fileKey: toBase64Url(randomFileKey()) }],
    });
    expect(made.statusCode, made.body).toBe(201);
    const transferId = made.json<{ id: string }>().id;
    const entries = (await (await tenantLedger()).query({ action: 'transfer.' })).filter((e) => e.resource.startsWith(`transfer:${transferId}`));
    expect(entries.map((e) => e.action)).toEqual(['transfer.create', 'transfer.recipients']); // 14 + 6 pseudonyms
    expect(entries.every((e) => e.resource.length <= 512)).toBe(true);
    expect(JSON.stringify(entries)).not.toContain('empfaenger');
    for (const email of [recipients[0]!, recipients[19]!.toUpperCase()]) {
      const exported = (await call('dpo', 'GET', `/api/v1/ledger/export?email=${encodeURIComponent(email)}&action=transfer.`)).json<{ entries: { resource: string }[] }>();
      expect(exported.entries.filter((e) => e.resource.startsWith(`transfer:${transferId}`))).toHaveLength(1);
    }
  });

  it('lists the newest entries, not the oldest, when more match than the limit', async () => {
    const ledger = await tenantLedger();
    const all = await ledger.query({ action: 'record.' });
    expect(all.length).toBeGreaterThan(5);
    const res = await call('dpo', 'GET', '/api/v1/ledger/entries?action=record.&limit=5');
    expect(res.json<{ entries: { seq: number }[] }>().entries.map((e) => e.seq)).toEqual(all.slice(-5).map((e) => e.seq));
    // The tenant's DPO sees where the calls came from; the operator reading the same tenant ledger does not.
    const sources = (body: string) => JSON.parse(body).entries.map((e: { payload: { source?: unknown } | null }) => e.payload?.source);
    expect(sources(res.body), res.body).toContain('127.0.0.1');
    const asOperator = await call('operator', 'GET', `/api/v1/ledger/entries?tenantId=${tenantId}&action=record.&limit=5`);
    expect(asOperator.statusCode).toBe(200);
    expect(sources(asOperator.body)).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });
});

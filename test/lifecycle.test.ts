import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { Actor } from '../src/access/index.js';
import type { Core } from '../src/core.js';
import { loadOrCreateMasterKey } from '../src/crypto/master-key.js';
import { engines, fixedClock, makeTestEnv, openTestCore, type TestEnv } from './helpers.js';

const system: Actor = { kind: 'system', name: 'scheduler' };

async function pgDatabaseExists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: process.env.TRESOR_TEST_PG });
  await client.connect();
  try {
    return (await client.query('select 1 from pg_database where datname = $1', [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}

describe.each(engines)('tenant storage and lifecycle (%s)', (engine) => {
  let t: TestEnv | undefined;
  let core: Core | undefined;
  afterEach(async () => {
    await core?.close();
    await t?.cleanup();
    core = undefined;
    t = undefined;
  });

  it('gives every tenant its own database, migrated', async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    const a = await core.platform.createTenant(system, { name: 'Alpha GmbH' });
    const b = await core.platform.createTenant(system, { name: 'Beta AG' });
    const rows = await core.storage.control.selectFrom('tenants').select(['id', 'database_name']).execute();
    const dbA = rows.find((r) => r.id === a.id)!.database_name;
    const dbB = rows.find((r) => r.id === b.id)!.database_name;
    expect(dbA).not.toBe(dbB);
    const tenantA = await core.storage.tenantDb({ tenantId: a.id, databaseName: dbA });
    const tenantB = await core.storage.tenantDb({ tenantId: b.id, databaseName: dbB });
    await tenantA.insertInto('tenant_meta').values({ key: 'marker', value: 'only-in-a' }).execute();
    expect(await tenantB.selectFrom('tenant_meta').selectAll().execute()).toEqual([]);
    if (engine === 'sqlite') {
      expect(existsSync(join(t.config.data_dir, 'tenants', `${dbA}.db`))).toBe(true);
      const journal = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(tenantA);
      expect(journal.rows[0]?.journal_mode).toBe('wal');
      const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(tenantA);
      expect(fk.rows[0]?.foreign_keys).toBe(1);
    } else {
      expect(await pgDatabaseExists(dbA)).toBe(true);
    }
  });

  it('deletes a tenant completely once its licence ended and the grace period passed', async () => {
    t = makeTestEnv(engine, { TRESOR_LIFECYCLE_DELETION_GRACE_DAYS: '30' });
    const clock = fixedClock('2026-01-10T12:00:00.000Z');
    core = await openTestCore(t, clock);
    const tenant = await core.platform.createTenant(system, { name: 'Expiring KG', licenceEndsAt: '2026-01-15' });
    const keeper = await core.platform.createTenant(system, { name: 'Keeper eG' });
    const { database_name: dbName } = await core.storage.control
      .selectFrom('tenants').select('database_name').where('id', '=', tenant.id).executeTakeFirstOrThrow();
    const blobDir = join(t.config.data_dir, 'blobs', tenant.id);
    writeFileSync(join(blobDir, 'some-blob'), 'ciphertext');

    // Within the licence and within the grace period: nothing happens.
    expect(await core.platform.deleteExpiredTenants()).toEqual([]);
    clock.set('2026-02-14T00:00:00.000Z');
    expect(await core.platform.deleteExpiredTenants()).toEqual([]);
    // A tenant whose licence ended is refused even during the grace period.
    await expect(core.platform.assertTenantUsable(tenant.id)).rejects.toMatchObject({ code: 'SUSPENDED' });

    clock.set('2026-02-15T00:00:00.000Z');
    const reports = await core.platform.deleteExpiredTenants();
    expect(reports).toHaveLength(1);
    const report = reports[0]!;
    expect(report).toMatchObject({ tenantId: tenant.id, reason: 'licence-expired', licenceEndedAt: '2026-01-15T23:59:59.999Z' });
    expect(report.removed).toContain(`folder ${blobDir}`);
    expect(existsSync(blobDir)).toBe(false);
    if (engine === 'sqlite') {
      expect(report.removed.some((r) => r.startsWith('file ') && r.endsWith(`${dbName}.db`))).toBe(true);
      expect(existsSync(join(t.config.data_dir, 'tenants', `${dbName}.db`))).toBe(false);
    } else {
      expect(report.removed).toEqual(expect.arrayContaining([`database ${dbName}`, `role ${dbName}`]));
      expect(await pgDatabaseExists(dbName)).toBe(false);
    }
    await expect(core.platform.getTenant(system, tenant.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await core.platform.listDeletionReports()).toEqual([report]);
    // The other tenant is untouched.
    await expect(core.platform.getTenant(system, keeper.id)).resolves.toMatchObject({ status: 'active' });
  });

  it.runIf(engine === 'postgres')("keeps tenant A's role out of tenant B's database and the control database", async () => {
    t = makeTestEnv(engine);
    core = await openTestCore(t);
    const a = await core.platform.createTenant(system, { name: 'Role A' });
    const b = await core.platform.createTenant(system, { name: 'Role B' });
    const ring = loadOrCreateMasterKey({ file: t.config.master_key.file, value: '' }).ring;
    const creds = await core.storage.control
      .selectFrom('tenant_db_credentials as c')
      .innerJoin('tenants as t', 't.id', 'c.tenant_id')
      .select(['c.tenant_id', 'c.role_name', 'c.sealed_password', 't.database_name'])
      .execute();
    const credA = creds.find((c) => c.tenant_id === a.id)!;
    const dbB = creds.find((c) => c.tenant_id === b.id)!.database_name;
    const passwordA = ring.open(credA.sealed_password, `tenant-db-password|${a.id}`).toString();
    const connectAs = async (database: string) => {
      const url = new URL(process.env.TRESOR_TEST_PG!);
      url.username = credA.role_name;
      url.password = passwordA;
      url.pathname = `/${database}`;
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      await client.end();
    };
    await expect(connectAs(credA.database_name)).resolves.toBeUndefined();
    await expect(connectAs(dbB)).rejects.toThrow(/permission denied for database/);
    await expect(connectAs(t.pgDatabase!)).rejects.toThrow(/permission denied for database/);
    // The password is stored only sealed under the master key.
    expect(credA.sealed_password).not.toContain(passwordA);
  });
});

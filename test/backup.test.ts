import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupJob, createBackup, listBackups, pruneBackups } from '../src/ops/backup.js';
import { engines, fixedClock, makeTestEnv, openTestCore, silentLog, type TestEnv } from './helpers.js';
import { tresor } from './cli-process.js';

/**
 * Backups (S1.3) through the real CLI on both engines: a backup holds every database and blob with a
 * manifest, a damaged backup is refused and restores nothing, a restore brings back exactly the state of
 * the backup (also after a tenant's PostgreSQL database and role were lost), moves the replaced data aside,
 * and both are ledger events; old backups are pruned and the scheduler writes one when it is due.
 */
describe.each(engines)('backups (%s)', (engine) => {
  let t: TestEnv;
  const run = (...args: string[]) => tresor(args, { cwd: t.dir, env: t.env });
  const json = <T>(...args: string[]): T => {
    const r = run('--json', ...args);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as T;
  };
  const tenantNames = () => json<{ name: string }[]>('tenant', 'list').map((x) => x.name).sort();

  beforeAll(() => {
    t = makeTestEnv(engine);
  });
  afterAll(async () => {
    await t.cleanup();
  });

  it('backs up, refuses a damaged backup, and restores exactly the backed-up state', () => {
    expect(run('init').code).toBe(0);
    const first = json<{ id: string }>('tenant', 'create', '--name', 'Stadtwerke Musterstadt');
    const blobDir = join(t.config.data_dir, 'blobs', first.id);
    mkdirSync(blobDir, { recursive: true });
    const blob = Buffer.from('ciphertext of a file, as the transfers module stores it');
    writeFileSync(join(blobDir, 'file-1.bin'), blob);

    const backup = json<{ id: string; path: string; tenants: number; files: number; linked: number }>('backup', 'create');
    expect(backup.tenants).toBe(1);
    expect(backup.files).toBe(3); // control database, tenant database, one blob
    expect(statSync(backup.path).mode & 0o777).toBe(0o700);
    const manifest = JSON.parse(readFileSync(join(backup.path, 'manifest.json'), 'utf8')) as { files: { path: string }[] };
    expect(manifest.files.map((f) => f.path)).toContain(`blobs/${first.id}/file-1.bin`);
    expect(readdirSync(backup.path)).not.toContain('keys'); // never the master key
    expect(json<{ id: string }[]>('backup', 'list').map((b) => b.id)).toEqual([backup.id]);
    expect(json<{ ok: boolean }>('backup', 'verify', backup.id).ok).toBe(true);

    // After the backup: another tenant, and the blob changes.
    json('tenant', 'create', '--name', 'Später angelegt');
    writeFileSync(join(blobDir, 'file-1.bin'), 'changed after the backup');
    expect(tenantNames()).toEqual(['Später angelegt', 'Stadtwerke Musterstadt']);

    // A damaged backup: verify names the file, restore refuses and changes nothing.
    const blobCopy = join(backup.path, 'blobs', first.id, 'file-1.bin');
    const original = readFileSync(blobCopy);
    writeFileSync(blobCopy, Buffer.concat([original.subarray(0, -1), Buffer.from('X')]));
    const damaged = run('backup', 'verify', backup.id);
    expect(damaged.code).toBe(6);
    expect(damaged.stderr).toContain(`blobs/${first.id}/file-1.bin was changed after it was written`);
    const refused = run('backup', 'restore', backup.id, '--yes');
    expect(refused.code).toBe(6);
    expect(tenantNames()).toEqual(['Später angelegt', 'Stadtwerke Musterstadt']);
    expect(readdirSync(t.config.data_dir).some((n) => n.startsWith('pre-restore-'))).toBe(false);
    writeFileSync(blobCopy, original);

    // A manifest changed to match a changed file, or to point a tenant database elsewhere: its seal refuses it.
    const manifestFile = join(backup.path, 'manifest.json');
    const sealedManifest = readFileSync(manifestFile, 'utf8');
    const forged = JSON.parse(sealedManifest) as { tenants: { databaseName: string }[] };
    forged.tenants[0]!.databaseName = '../../elsewhere';
    writeFileSync(manifestFile, JSON.stringify(forged));
    const forgedRestore = run('backup', 'restore', backup.id, '--yes');
    expect(forgedRestore.code).toBe(6);
    expect(forgedRestore.stderr).toContain('the backup manifest was changed after it was written');
    expect(tenantNames()).toEqual(['Später angelegt', 'Stadtwerke Musterstadt']);
    writeFileSync(manifestFile, sealedManifest);

    // Without --yes and without a terminal nothing happens.
    expect(run('backup', 'restore', backup.id).code).toBe(6);
    expect(tenantNames()).toHaveLength(2);

    const restored = json<{ id: string; asideDir: string }>('backup', 'restore', backup.id, '--yes');
    expect(restored.id).toBe(backup.id);
    expect(tenantNames()).toEqual(['Stadtwerke Musterstadt']);
    expect(readFileSync(join(blobDir, 'file-1.bin'))).toEqual(blob);
    // The replaced data is kept aside, not deleted.
    expect(readFileSync(join(restored.asideDir, 'blobs', first.id, 'file-1.bin'), 'utf8')).toBe('changed after the backup');
    expect(existsSync(join(restored.asideDir, engine === 'sqlite' ? 'control.db' : 'databases/control.dump'))).toBe(true);

    // Every ledger still verifies, and the restore is recorded in the platform ledger.
    const verified = json<{ ok: boolean }[]>('ledger', 'verify', '--all');
    expect(verified.length).toBe(2);
    expect(verified.every((r) => r.ok)).toBe(true);
    const events = json<{ entries: { action: string; outcome: string }[] }>('ledger', 'export', '--action', 'technical.');
    expect(events.entries.filter((e) => e.action === 'technical.restore')).toEqual([expect.objectContaining({ outcome: 'success' })]);
  }, 300_000); // some twenty CLI processes

  it('deletes a tenant again when a backup from before its deletion is restored: its keys stay shredded (B.7)', () => {
    const doomed = json<{ id: string }>('tenant', 'create', '--name', 'Wird gelöscht');
    const backup = json<{ id: string }>('backup', 'create');
    json('tenant', 'delete', doomed.id, '--yes');
    const restored = json<{ reshredded: string[] }>('backup', 'restore', backup.id, '--yes');
    expect(restored.reshredded).toEqual([doomed.id]);
    expect(tenantNames()).toEqual(['Stadtwerke Musterstadt']);
    expect(json<{ ok: boolean }[]>('ledger', 'verify', '--all').every((r) => r.ok)).toBe(true);
  }, 300_000);

  it.runIf(engine === 'postgres')('restores a tenant whose PostgreSQL database and role were lost', async () => {
    const tenant = json<{ id: string }[]>('tenant', 'list')[0]!;
    const backup = json<{ id: string }>('backup', 'create');
    const control = new pg.Client({ connectionString: t.env.TRESOR_DATABASE_URL });
    await control.connect();
    const { rows } = await control.query<{ database_name: string }>('select database_name from tenants where id = $1', [tenant.id]);
    await control.end();
    const name = rows[0]!.database_name;
    const admin = new pg.Client({ connectionString: process.env.TRESOR_TEST_PG });
    await admin.connect();
    try {
      await admin.query(`drop database ${pg.escapeIdentifier(name)} with (force)`);
      await admin.query(`drop role ${pg.escapeIdentifier(name)}`);
      expect(run('ledger', 'verify', '--tenant', tenant.id).code).not.toBe(0);
      json('backup', 'restore', backup.id, '--yes');
      const role = await admin.query('select rolcanlogin from pg_roles where rolname = $1', [name]);
      expect(role.rows).toEqual([{ rolcanlogin: true }]);
    } finally {
      await admin.end();
    }
    expect(json<{ ok: boolean }[]>('ledger', 'verify', '--tenant', tenant.id).every((r) => r.ok)).toBe(true);
  }, 300_000);

  it('links unchanged blobs, prunes old backups, and backs up from the scheduler when one is due', async () => {
    const clock = fixedClock('2027-03-01T08:00:00.000Z');
    const env = makeTestEnv(engine);
    const core = await openTestCore(env, clock);
    try {
      const tenant = await core.platform.createTenant({ kind: 'system', name: 'cli' }, { name: 'Kunde' });
      const blobDir = join(core.config.data_dir, 'blobs', tenant.id);
      mkdirSync(blobDir, { recursive: true });
      writeFileSync(join(blobDir, 'a.bin'), 'unchanged');
      await core.ledgers.platform.append({ actor: { tier: 'system', role: 'test', id: 'test' }, action: 'technical.start', resource: { type: 'server', id: 'x' }, outcome: 'success' });

      const job = backupJob(core, silentLog)!;
      expect(job.name).toBe('backup');
      clock.set('2027-03-01T20:00:00.000Z');
      await job.run();
      expect(listBackups(core.config.backup.dir)).toHaveLength(0); // not due: 12 h after installation
      clock.set('2027-03-02T09:00:00.000Z');
      await job.run();
      const [scheduled] = listBackups(core.config.backup.dir);
      expect(scheduled?.createdAt).toBe('2027-03-02T09:00:00.000Z');

      clock.set('2027-03-05T09:00:00.000Z');
      const second = await createBackup(core);
      expect(second.linked).toBe(1);
      const inode = (id: string) => statSync(join(core.config.backup.dir, `tresor-backup-${id}`, 'blobs', tenant.id, 'a.bin')).ino;
      expect(inode(second.id)).toBe(inode(scheduled!.id));

      clock.set('2027-03-12T09:00:00.000Z');
      const third = await createBackup(core);
      expect(pruneBackups(core.config.backup.dir, 7, clock.now())).toEqual([scheduled!.id]);
      expect(listBackups(core.config.backup.dir).map((b) => b.id)).toEqual([third.id, second.id]);

      const actions = (await core.ledgers.platform.query({ action: 'technical.backup' })).map((e) => e.outcome);
      expect(actions).toEqual(['success', 'success', 'success']);
    } finally {
      await core.close();
      await env.cleanup();
    }
  });
});

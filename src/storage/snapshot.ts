import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, copyFileSync, rmSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { CipherService } from '../crypto/cipher-service.js';
import { scramVerifier } from '../crypto/scram.js';
import type { Storage, TenantLocation } from './storage.js';

/**
 * Consistent copies of the control database and every tenant database, and putting them back
 * (`tresor backup`, S1.3). SQLite: `VACUUM INTO` (a transactionally consistent copy of a live database).
 * PostgreSQL: `pg_dump --format=custom` of each database, restored with `pg_restore --clean`.
 * Files are named relative to the backup folder: `databases/control.<ext>`, `databases/tenants/<name>.<ext>`.
 */

const fileOf = (engine: Storage['engine'], name: 'control' | TenantLocation) => {
  const ext = engine === 'sqlite' ? 'db' : 'dump';
  return name === 'control' ? `databases/control.${ext}` : `databases/tenants/${name.databaseName}.${ext}`;
};

/** Environment for pg_dump / pg_restore: credentials go through PG* variables, never the command line. */
function pgEnv(databaseUrl: string, database: string): NodeJS.ProcessEnv {
  const url = new URL(databaseUrl);
  return {
    ...process.env,
    PGHOST: decodeURIComponent(url.hostname.replace(/^\[|\]$/g, '')) || 'localhost',
    PGPORT: url.port || '5432',
    PGUSER: decodeURIComponent(url.username) || process.env.PGUSER || 'postgres',
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: database,
    PGCONNECT_TIMEOUT: '10',
  };
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 4000) stderr += chunk.toString();
    });
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === 'ENOENT' ? `${command} was not found: install the PostgreSQL client tools (Debian: apt-get install postgresql-client)` : `${command} could not start: ${error.message}`)),
    );
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`))));
  });
}

/** Writes a consistent copy of every database into `target`; returns the relative file names. */
export async function snapshotDatabases(storage: Storage, opts: { databaseUrl: string; tenants: TenantLocation[]; target: string }): Promise<string[]> {
  mkdirSync(join(opts.target, 'databases', 'tenants'), { recursive: true, mode: 0o700 });
  const files: string[] = [];
  const copy = async (name: 'control' | TenantLocation, db: Kysely<unknown>) => {
    const relative = fileOf(storage.engine, name);
    const file = join(opts.target, relative);
    if (storage.engine === 'sqlite') {
      await sql`vacuum into ${file}`.execute(db);
    } else {
      const database = name === 'control' ? decodeURIComponent(new URL(opts.databaseUrl).pathname.slice(1)) : name.databaseName;
      await run('pg_dump', ['--format=custom', '--file', file], pgEnv(opts.databaseUrl, database));
    }
    chmodSync(file, 0o600);
    files.push(relative);
  };
  await copy('control', storage.control as Kysely<unknown>);
  for (const tenant of opts.tenants) await copy(tenant, (await storage.tenantDb(tenant)) as Kysely<unknown>);
  return files;
}

/**
 * Puts the databases of a backup back. SQLite: the current files are moved into `asideDir` first (nothing
 * is deleted). PostgreSQL: every database and tenant role is created if missing, then restored with
 * `pg_restore --clean`; tenant role passwords come from the restored control database, opened with the
 * master key.
 */
export async function restoreDatabases(opts: {
  engine: Storage['engine'];
  dataDir: string;
  databaseUrl: string;
  source: string;
  tenants: TenantLocation[];
  asideDir: string;
  masterKey: CipherService;
}): Promise<void> {
  if (opts.engine === 'sqlite') {
    // Every current database file goes aside, also those of tenants created after the backup.
    const tenantsDir = join(opts.dataDir, 'tenants');
    for (const suffix of ['', '-wal', '-shm']) {
      const live = join(opts.dataDir, `control.db${suffix}`);
      if (existsSync(live)) renameSync(live, join(opts.asideDir, `control.db${suffix}`));
    }
    if (existsSync(tenantsDir)) renameSync(tenantsDir, join(opts.asideDir, 'tenants'));
    mkdirSync(tenantsDir, { recursive: true, mode: 0o700 });
    const put = (relative: string, live: string) => {
      copyFileSync(join(opts.source, relative), live);
      chmodSync(live, 0o600);
    };
    put(fileOf('sqlite', 'control'), join(opts.dataDir, 'control.db'));
    for (const tenant of opts.tenants) put(fileOf('sqlite', tenant), join(tenantsDir, `${tenant.databaseName}.db`));
    return;
  }
  const controlUrl = new URL(opts.databaseUrl);
  const controlName = decodeURIComponent(controlUrl.pathname.slice(1));
  const adminUrl = new URL(controlUrl);
  adminUrl.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  try {
    const ensureDatabase = async (name: string, owner?: string) => {
      const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [name]);
      if (rowCount === 0) await admin.query(`create database ${pg.escapeIdentifier(name)}${owner ? ` owner ${pg.escapeIdentifier(owner)}` : ''}`);
    };
    // Nothing is lost: each database as it is now goes into asideDir first (pg_dump), as SQLite files are moved there.
    mkdirSync(join(opts.asideDir, 'databases', 'tenants'), { recursive: true, mode: 0o700 });
    const { rows: existing } = await admin.query<{ datname: string }>('select datname from pg_database where datname = $1 or datname = any($2)', [controlName, opts.tenants.map((t) => t.databaseName)]);
    for (const { datname } of existing) {
      const target = datname === controlName ? join(opts.asideDir, 'databases', 'control.dump') : join(opts.asideDir, 'databases', 'tenants', `${datname}.dump`);
      await run('pg_dump', ['--format=custom', '--file', target], pgEnv(opts.databaseUrl, datname));
      chmodSync(target, 0o600);
    }
    await ensureDatabase(controlName);
    await run('pg_restore', ['--clean', '--if-exists', '--exit-on-error', '--single-transaction', '--dbname', controlName, join(opts.source, fileOf('postgres', 'control'))], pgEnv(opts.databaseUrl, controlName));
    await admin.query(`revoke connect on database ${pg.escapeIdentifier(controlName)} from public`);
    const control = new pg.Client({ connectionString: controlUrl.toString() });
    await control.connect();
    try {
      for (const tenant of opts.tenants) {
        const { rows } = await control.query<{ role_name: string; sealed_password: string }>('select role_name, sealed_password from tenant_db_credentials where tenant_id = $1', [tenant.tenantId]);
        const cred = rows[0];
        if (!cred) throw new Error(`the backup has no database credentials for tenant ${tenant.tenantId}`);
        const password = (await opts.masterKey.open(cred.sealed_password, `tenant-db-password|${tenant.tenantId}`)).toString('utf8');
        if (!/^[A-Za-z0-9]+$/.test(password)) throw new Error(`the database password of tenant ${tenant.tenantId} has an unexpected form`);
        const { rowCount } = await admin.query('select 1 from pg_roles where rolname = $1', [cred.role_name]);
        // The password as it was when the backup was taken, so the restored control database opens the tenant's.
        const verb = rowCount === 0 ? 'create' : 'alter';
        // A SCRAM verifier, not the password: nothing readable reaches PostgreSQL's statement log.
        await admin.query(`${verb} role ${pg.escapeIdentifier(cred.role_name)} login password '${scramVerifier(password)}'`);
        await ensureDatabase(tenant.databaseName, cred.role_name);
        await admin.query(`revoke all on database ${pg.escapeIdentifier(tenant.databaseName)} from public`);
        await run('pg_restore', ['--clean', '--if-exists', '--exit-on-error', '--single-transaction', '--dbname', tenant.databaseName, join(opts.source, fileOf('postgres', tenant))], pgEnv(opts.databaseUrl, tenant.databaseName));
      }
    } finally {
      await control.end();
    }
  } finally {
    await admin.end();
  }
}

/** Removes a folder made by a backup that did not finish. */
export function discard(folder: string): void {
  rmSync(folder, { recursive: true, force: true });
}

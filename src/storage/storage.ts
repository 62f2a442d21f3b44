import { chmodSync, closeSync, existsSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteDatabase, withStatementCache } from './sqlite-driver.js';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Migration } from 'kysely';
import pg from 'pg';
import type { CipherService } from '../crypto/cipher-service.js';
import { randomPassword } from '../crypto/random.js';
import { scramVerifier } from '../crypto/scram.js';
import { controlMigrations } from './migrations/control.js';
import { tenantMigrations } from './migrations/tenant.js';
import type { ControlDb, ControlSchema, Engine, TenantDb, TenantSchema } from './schema.js';

export interface StorageOptions {
  dataDir: string;
  /** '' = embedded SQLite under dataDir; otherwise postgres://… naming the control database. */
  databaseUrl: string;
  poolMax: number;
  masterKey: CipherService;
}

/**
 * How another thread of this process opens one of the databases itself (ledger verification in worker
 * threads): the SQLite file, or the PostgreSQL URL with the credentials of that database's own role.
 * Holds a password on PostgreSQL: hand it to a worker, never to a log or an error.
 */
export type DatabaseLocation = { engine: 'sqlite'; file: string } | { engine: 'postgres'; url: string };

/** Where a tenant's database lives, as remembered in the control database. */
export interface TenantLocation {
  tenantId: string;
  databaseName: string;
}

export interface Storage {
  readonly engine: Engine;
  readonly control: ControlDb;
  /** Human-readable place of the control database (file path, or host/db without credentials). */
  readonly controlLocation: string;
  /** The name a new tenant's database gets (file stem on SQLite, database and role name on PostgreSQL). */
  databaseNameFor(tenantId: string): string;
  migrateControl(): Promise<string[]>;
  /** Creates the tenant's own database (file, or PostgreSQL database plus a role that can connect only to it). */
  provisionTenant(tenant: TenantLocation): Promise<void>;
  tenantDb(tenant: TenantLocation): Promise<TenantDb>;
  /** The control database (no tenant) or a tenant's database, for a worker thread to open on its own. */
  locate(tenant?: TenantLocation): Promise<DatabaseLocation>;
  migrateTenant(tenant: TenantLocation): Promise<string[]>;
  /** Removes the tenant's database and role for good; returns what was removed, for the deletion report. */
  dropTenant(tenant: TenantLocation): Promise<string[]>;
  /** For tests and the health check: can the control database answer? */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function tenantDatabaseName(controlName: string, tenantId: string): string {
  const suffix = `_t_${tenantId.replace(/-/g, '').slice(0, 20)}`;
  return `${controlName.slice(0, 63 - suffix.length)}${suffix}`.toLowerCase();
}

async function migrate(db: Kysely<unknown>, migrations: Record<string, Migration>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** ping and close, the same on both engines: the control connection plus every open tenant connection. */
function lifecycleOf(control: Kysely<ControlSchema>, open: Map<string, Kysely<TenantSchema>>): Pick<Storage, 'ping' | 'close'> {
  return {
    async ping() {
      await sql`select 1`.execute(control);
    },
    async close() {
      for (const db of open.values()) await db.destroy();
      open.clear();
      await control.destroy();
    },
  };
}

export async function openStorage(opts: StorageOptions): Promise<Storage> {
  return opts.databaseUrl === '' ? openSqliteStorage(opts) : openPostgresStorage(opts);
}

// ---------------------------------------------------------------------------------------------
// SQLite: one file for the control database and one file per tenant under data/tenants/.

function openSqliteFile<T>(file: string): Kysely<T> {
  if (!existsSync(file)) {
    // Create the file ourselves so it is private from the first byte.
    closeSync(openSync(file, 'a', 0o600));
  }
  chmodSync(file, 0o600);
  const database = new SqliteDatabase(file);
  database.pragma('journal_mode = WAL');
  database.pragma('foreign_keys = ON');
  database.pragma('busy_timeout = 5000');
  // An event is durable before the action it records is acknowledged (docs/ledger.md): in WAL mode
  // NORMAL may lose the last commits on power loss; FULL syncs the WAL at every commit.
  database.pragma('synchronous = FULL');
  return new Kysely<T>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) });
}

function openSqliteStorage(opts: StorageOptions): Storage {
  const tenantsDir = join(opts.dataDir, 'tenants');
  mkdirSync(tenantsDir, { recursive: true, mode: 0o700 });
  const controlFile = join(opts.dataDir, 'control.db');
  const control = openSqliteFile<ControlSchema>(controlFile);
  const open = new Map<string, Kysely<TenantSchema>>();
  const fileOf = (t: TenantLocation) => join(tenantsDir, `${t.databaseName}.db`);

  const tenantDb = (t: TenantLocation): Promise<TenantDb> => {
    let db = open.get(t.databaseName);
    if (!db) {
      db = openSqliteFile<TenantSchema>(fileOf(t));
      open.set(t.databaseName, db);
    }
    return Promise.resolve(db);
  };

  return {
    engine: 'sqlite',
    control,
    controlLocation: controlFile,
    databaseNameFor: (tenantId) => tenantDatabaseName('tenant', tenantId),
    migrateControl: () => migrate(control as Kysely<unknown>, controlMigrations),
    async provisionTenant(t) {
      const db = await tenantDb(t);
      await migrate(db as Kysely<unknown>, tenantMigrations);
    },
    tenantDb,
    locate: (t) => Promise.resolve({ engine: 'sqlite', file: t ? fileOf(t) : controlFile }),
    async migrateTenant(t) {
      if (!existsSync(fileOf(t))) throw new Error(`tenant database file for ${t.tenantId} is missing`);
      return migrate((await tenantDb(t)) as Kysely<unknown>, tenantMigrations);
    },
    async dropTenant(t) {
      const db = open.get(t.databaseName);
      open.delete(t.databaseName);
      await db?.destroy();
      const removed: string[] = [];
      for (const suffix of ['', '-wal', '-shm']) {
        const file = fileOf(t) + suffix;
        if (existsSync(file)) {
          rmSync(file);
          removed.push(`file ${file}`);
        }
      }
      return removed;
    },
    ...lifecycleOf(control, open),
  };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a control database plus one database per tenant, each owned by a role of its own
// that can connect to nothing else (CONNECT is revoked from PUBLIC on every Tresor database).

function pgPool(url: URL, max: number): pg.Pool {
  // synchronous_commit=on for Tresor's sessions, whatever the server's default: a commit (and so a ledger
  // entry) is flushed to the WAL on disk before it is acknowledged (docs/ledger.md).
  const pool = new pg.Pool({ connectionString: url.toString(), max, idleTimeoutMillis: 30_000, options: '-c synchronous_commit=on' });
  // An idle client can be cut off by the server (restart, or a tenant database dropped WITH (FORCE));
  // without a listener that would crash the process. The pool discards the client; the next query
  // opens a new connection or fails with its own error. The error object carries the connection
  // password, so it is deliberately not logged.
  pool.on('error', () => undefined);
  return pool;
}

async function ensureControlDatabase(url: URL): Promise<void> {
  const name = decodeURIComponent(url.pathname.slice(1));
  const adminUrl = new URL(url);
  adminUrl.pathname = '/postgres';
  const client = new pg.Client({ connectionString: adminUrl.toString() });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (rowCount === 0) await client.query(`create database ${pg.escapeIdentifier(name)}`);
  } catch (error) {
    // Another node may have created it at the same moment.
    if ((error as { code?: string }).code !== '42P04' && (error as { code?: string }).code !== '23505') throw error;
  } finally {
    await client.end();
  }
}

async function openPostgresStorage(opts: StorageOptions): Promise<Storage> {
  const controlUrl = new URL(opts.databaseUrl);
  const controlName = decodeURIComponent(controlUrl.pathname.slice(1));
  if (!/^[A-Za-z0-9_]{1,40}$/.test(controlName)) {
    throw new Error('database.url must name the control database (letters, digits, _; at most 40 characters)');
  }
  await ensureControlDatabase(controlUrl);
  const control = new Kysely<ControlSchema>({ dialect: new PostgresDialect({ pool: pgPool(controlUrl, opts.poolMax) }) });
  const open = new Map<string, Kysely<TenantSchema>>();
  const aad = (t: TenantLocation) => `tenant-db-password|${t.tenantId}`;

  const tenantUrl = async (t: TenantLocation): Promise<URL> => {
    const cred = await control
      .selectFrom('tenant_db_credentials')
      .select(['role_name', 'sealed_password'])
      .where('tenant_id', '=', t.tenantId)
      .executeTakeFirst();
    if (!cred) throw new Error(`no database credentials recorded for tenant ${t.tenantId}`);
    const url = new URL(controlUrl);
    url.username = cred.role_name;
    url.password = (await opts.masterKey.open(cred.sealed_password, aad(t))).toString('utf8');
    url.pathname = `/${t.databaseName}`;
    return url;
  };

  const tenantDb = async (t: TenantLocation): Promise<TenantDb> => {
    let db = open.get(t.databaseName);
    if (!db) {
      db = new Kysely<TenantSchema>({
        dialect: new PostgresDialect({ pool: pgPool(await tenantUrl(t), Math.min(4, opts.poolMax)) }),
      });
      open.set(t.databaseName, db);
    }
    return db;
  };

  const closeTenant = async (t: TenantLocation) => {
    const db = open.get(t.databaseName);
    open.delete(t.databaseName);
    await db?.destroy();
  };

  return {
    engine: 'postgres',
    control,
    controlLocation: `postgresql://${controlUrl.host}/${controlName}`,
    databaseNameFor: (tenantId) => tenantDatabaseName(controlName, tenantId),
    async migrateControl() {
      const applied = await migrate(control as Kysely<unknown>, controlMigrations);
      // Only roles granted explicitly may connect to the control database.
      await sql`revoke connect on database ${sql.id(controlName)} from public`.execute(control).catch(() => undefined);
      return applied;
    },
    async provisionTenant(t) {
      const role = t.databaseName;
      // Only characters [A-Za-z0-9] in the password, so the literal below cannot break out.
      const password = randomPassword(32);
      // A SCRAM-SHA-256 verifier instead of the password, so that no statement log holds the password.
      await sql`create role ${sql.id(role)} login password ${sql.lit(scramVerifier(password))}`.execute(control);
      await control
        .insertInto('tenant_db_credentials')
        .values({ tenant_id: t.tenantId, role_name: role, sealed_password: await opts.masterKey.seal(Buffer.from(password), aad(t)) })
        .execute();
      await sql`create database ${sql.id(t.databaseName)} owner ${sql.id(role)}`.execute(control);
      await sql`revoke all on database ${sql.id(t.databaseName)} from public`.execute(control);
      await migrate((await tenantDb(t)) as Kysely<unknown>, tenantMigrations);
    },
    tenantDb,
    locate: async (t) => ({ engine: 'postgres', url: (t ? await tenantUrl(t) : controlUrl).toString() }),
    async migrateTenant(t) {
      return migrate((await tenantDb(t)) as Kysely<unknown>, tenantMigrations);
    },
    async dropTenant(t) {
      await closeTenant(t);
      const removed: string[] = [];
      const exists = await sql<{ n: number }>`select 1 as n from pg_database where datname = ${t.databaseName}`.execute(control);
      if (exists.rows.length > 0) {
        await sql`drop database if exists ${sql.id(t.databaseName)} with (force)`.execute(control);
        removed.push(`database ${t.databaseName}`);
      }
      const roleExists = await sql<{ n: number }>`select 1 as n from pg_roles where rolname = ${t.databaseName}`.execute(control);
      if (roleExists.rows.length > 0) {
        await sql`drop role if exists ${sql.id(t.databaseName)}`.execute(control);
        removed.push(`role ${t.databaseName}`);
      }
      await control.deleteFrom('tenant_db_credentials').where('tenant_id', '=', t.tenantId).execute();
      return removed;
    },
    ...lifecycleOf(control, open),
  };
}


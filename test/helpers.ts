import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig, type TresorConfig } from '../src/config/index.js';
import { openCore, type Core } from '../src/core.js';
import type { Clock } from '../src/identity/index.js';

export type EngineName = 'sqlite' | 'postgres';

/** SQLite always; PostgreSQL when TRESOR_TEST_PG names a server (CI sets it). */
export const engines: EngineName[] = process.env.TRESOR_TEST_PG ? ['sqlite', 'postgres'] : ['sqlite'];

export const silentLog = pino({ level: 'silent' });

export interface TestEnv {
  dir: string;
  env: Record<string, string>;
  config: Readonly<TresorConfig>;
  /** Control database name on PostgreSQL. */
  pgDatabase?: string;
  cleanup(): Promise<void>;
}

/** A temporary data directory (and on PostgreSQL a fresh control database) with fast-enough defaults. */
export function makeTestEnv(engine: EngineName, extra: Record<string, string> = {}): TestEnv {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-test-'));
  const env: Record<string, string> = {
    TRESOR_DATA_DIR: join(dir, 'data'),
    TRESOR_MASTER_KEY_FILE: join(dir, 'keys', 'master.key'),
    TRESOR_SERVER_PORT: '8443',
    TRESOR_LOG_LEVEL: 'silent',
    ...extra,
  };
  let pgDatabase: string | undefined;
  if (engine === 'postgres') {
    const url = new URL(process.env.TRESOR_TEST_PG!);
    pgDatabase = `tresor_test_${Math.random().toString(36).slice(2, 10)}`;
    url.pathname = `/${pgDatabase}`;
    env.TRESOR_DATABASE_URL = url.toString();
  }
  const config = loadConfig({ cwd: dir, env });
  return {
    dir,
    env,
    config,
    ...(pgDatabase ? { pgDatabase } : {}),
    async cleanup() {
      if (pgDatabase) await dropPgInstallation(pgDatabase);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Removes a test installation's control database, tenant databases and tenant roles. */
export async function dropPgInstallation(controlName: string): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.TRESOR_TEST_PG });
  await client.connect();
  try {
    const dbs = await client.query<{ datname: string }>('select datname from pg_database where datname like $1', [`${controlName}%`]);
    for (const { datname } of dbs.rows) await client.query(`drop database if exists ${pg.escapeIdentifier(datname)} with (force)`);
    const roles = await client.query<{ rolname: string }>('select rolname from pg_roles where rolname like $1', [`${controlName}%`]);
    for (const { rolname } of roles.rows) await client.query(`drop role if exists ${pg.escapeIdentifier(rolname)}`);
  } finally {
    await client.end();
  }
}

export function fixedClock(start: string): Clock & { set(iso: string): void; advanceDays(days: number): void } {
  let now = new Date(start);
  return {
    now: () => new Date(now),
    set(iso) {
      now = new Date(iso);
    },
    advanceDays(days) {
      now = new Date(now.getTime() + days * 86_400_000);
    },
  };
}

export async function openTestCore(t: TestEnv, clock?: Clock): Promise<Core> {
  return openCore(t.config, { log: silentLog, ...(clock ? { clock } : {}) });
}

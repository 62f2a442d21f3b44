import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
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

/** A password every policy in the tests accepts (long, not common, all four character classes). */
export const GOOD_PASSWORD = 'Quiet-Lantern-Harbor-7-Meadow';

export interface SentMail {
  file: string;
  to: string;
  subject: string;
  text: string;
}

/** The .eml files in an outbox folder, oldest first, with headers and (quoted-printable) bodies decoded. */
export function readOutbox(dir: string): SentMail[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((file) => {
      const raw = readFileSync(join(dir, file), 'utf8');
      const split = raw.indexOf('\n\n');
      const head = raw.slice(0, split).replace(/\n[ \t]+/g, ' ');
      const header = (name: string) => new RegExp(`^${name}: (.*)$`, 'mi').exec(head)?.[1] ?? '';
      let body = raw.slice(split + 2);
      const encoding = header('Content-Transfer-Encoding').toLowerCase();
      if (encoding === 'quoted-printable') {
        body = Buffer.from(body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
      } else if (encoding === 'base64') {
        body = Buffer.from(body, 'base64').toString('utf8');
      }
      // RFC 2047 §6.2: white space between two adjacent encoded words is not part of the text.
      const subject = header('Subject').replace(/\?=\s+=\?/g, '?==?').replace(/=\?utf-8\?Q\?(.*?)\?=/gi, (_m, q: string) =>
        Buffer.from(q.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8'),
      );
      return { file, to: header('To'), subject, text: body };
    });
}

/** The one-time key of the newest invitation (or reset) link mailed to `email`. */
export function mailedKey(outboxDir: string, email: string, kind: 'invite' | 'reset' | 'access' = 'invite'): string {
  const mails = readOutbox(outboxDir).filter((m) => m.to === email);
  for (const mail of mails.reverse()) {
    const key = new RegExp(`/app/${kind}#key=([A-Za-z0-9_-]{43})`).exec(mail.text)?.[1];
    if (key) return key;
  }
  throw new Error(`no ${kind} mail to ${email} in ${outboxDir}`);
}

/** Accepts the invitation mailed to `email` with GOOD_PASSWORD (or the given one). */
export async function acceptMailedInvitation(core: Core, email: string, password = GOOD_PASSWORD): Promise<void> {
  await core.identity.acceptInvitation(mailedKey(core.config.mail.outbox_dir, email), password);
}

/** Logs in over HTTP for a bearer token; a forced first change of a one-time password is done on the way. */
export async function bearerLogin(app: FastifyInstance, login: string, password: string, newPassword = GOOD_PASSWORD): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { login, password, mode: 'token' } });
  if (res.statusCode !== 200) throw new Error(`login of ${login} failed: ${res.statusCode} ${res.body}`);
  const body = res.json<{ sessionToken: string; pending: string[] }>();
  if (!body.pending.includes('password_change')) return body.sessionToken;
  const changed = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/password',
    headers: { authorization: `Bearer ${body.sessionToken}` },
    payload: { currentPassword: password, newPassword },
  });
  if (changed.statusCode !== 200) throw new Error(`password change of ${login} failed: ${changed.statusCode} ${changed.body}`);
  return changed.json<{ sessionToken: string }>().sessionToken;
}

/** The newest transfer link mailed to `email`: `{ link, recipientId, secret, fingerprint? }`. */
export function mailedTransferLink(outboxDir: string, email: string): { link: string; recipientId: string; secret: string; fingerprint?: string } {
  const mails = readOutbox(outboxDir).filter((m) => m.to === email);
  for (const mail of mails.reverse()) {
    const m = /(https:\/\/\S+\/app\/r\/([0-9a-f-]{36})#s=([A-Za-z0-9_-]{43})(?:&fp=([0-9a-f-]+))?)/.exec(mail.text);
    if (m) return { link: m[1]!, recipientId: m[2]!, secret: m[3]!, ...(m[4] ? { fingerprint: m[4] } : {}) };
  }
  throw new Error(`no transfer link mailed to ${email} in ${outboxDir}`);
}

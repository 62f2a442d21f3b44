import { createHash, timingSafeEqual } from 'node:crypto';
import { createReadStream, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import type { Logger } from 'pino';
import type { Core } from '../core.js';
import type { TresorConfig } from '../config/index.js';
import type { CipherService } from '../crypto/cipher-service.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
import { discard, restoreDatabases, snapshotDatabases } from '../storage/snapshot.js';
import type { TenantLocation } from '../storage/index.js';
import type { ScheduledJob } from './scheduler.js';
import { shreddedTenants } from './shred-list.js';

/**
 * Backups (S1.3): a folder per backup under `backup.dir` holding a consistent copy of every database,
 * the encrypted blobs, and `manifest.json` with the SHA-256 of each file. Everything in it is as
 * encrypted as the live data; the master key is NOT in it (keep it apart, as the live one). Blobs that
 * did not change since the previous backup are hard links to it, so frequent backups cost little.
 * A backup is written into `.partial-<id>` and renamed when complete: a folder named `tresor-backup-…`
 * is always whole. Taking and restoring one are ledger events (`technical.backup`, `technical.restore`).
 */

export const MANIFEST_FORMAT = 'tresor-backup/1';

export interface ManifestFile {
  path: string;
  bytes: number;
  sha256: string;
  /** Blobs only: the live file's modification time, to recognise an unchanged blob next time. */
  mtimeMs?: number;
}

export interface BackupManifest {
  format: typeof MANIFEST_FORMAT;
  id: string;
  createdAt: string;
  engine: 'sqlite' | 'postgres';
  tenants: TenantLocation[];
  files: ManifestFile[];
  /**
   * SHA-256 of the manifest without this field, sealed under the master key (AES-256-GCM, AAD
   * `backup-manifest|<id>`): nobody without the master key can change a backup's manifest unnoticed.
   */
  seal?: string;
}

const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DATABASE_NAME = /^[a-z0-9_]{1,63}$/;
const sealAad = (id: string) => `backup-manifest|${id}`;
const manifestDigest = (manifest: BackupManifest) => {
  const { seal: _seal, ...rest } = manifest;
  return createHash('sha256').update(JSON.stringify(rest)).digest();
};
const databaseFiles = (manifest: Pick<BackupManifest, 'engine' | 'tenants'>) => {
  const ext = manifest.engine === 'sqlite' ? 'db' : 'dump';
  return [`databases/control.${ext}`, ...manifest.tenants.map((t) => `databases/tenants/${t.databaseName}.${ext}`)];
};

export interface BackupSummary {
  id: string;
  path: string;
  createdAt: string;
  tenants: number;
  files: number;
  bytes: number;
  /** Blob files taken over from the previous backup as hard links (unchanged). */
  linked: number;
}

const PREFIX = 'tresor-backup-';
const idFor = (time: Date) => time.toISOString().replace(/[:.]/g, '-');

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...walk(full));
    else if (entry.isFile()) found.push(full);
  }
  return found;
}

/** Complete backups in `dir`, newest first. */
export function listBackups(dir: string): BackupManifest[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.startsWith(PREFIX) && existsSync(join(dir, name, 'manifest.json')))
    .map((name) => readManifest(join(dir, name)))
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

function readManifest(folder: string): BackupManifest {
  const file = join(folder, 'manifest.json');
  if (!existsSync(file)) throw new NotFoundError(`${folder} is not a Tresor backup: it has no manifest.json`);
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as BackupManifest;
  } catch {
    throw new ValidationError(`${file} is not valid JSON: the backup is damaged`);
  }
  if (manifest.format !== MANIFEST_FORMAT || !Array.isArray(manifest.files) || !Array.isArray(manifest.tenants)) {
    throw new ValidationError(`${file} is not a ${MANIFEST_FORMAT} manifest`);
  }
  return manifest;
}

/** Resolves a backup given as a folder path or as an id inside `dir`. */
export function backupFolder(dir: string, idOrPath: string): string {
  if (existsSync(join(idOrPath, 'manifest.json'))) return idOrPath;
  const named = join(dir, idOrPath.startsWith(PREFIX) ? idOrPath : PREFIX + idOrPath);
  if (existsSync(join(named, 'manifest.json'))) return named;
  throw new NotFoundError(`no backup '${idOrPath}' (neither a folder with a manifest.json nor a backup in ${dir}); list them with: tresor backup list`);
}

/**
 * Checks every file of a backup against its manifest; throws naming the first file that is missing,
 * has another size, or another SHA-256.
 */
export async function verifyBackup(folder: string, masterKey: Pick<CipherService, 'open'>, onProgress?: (done: number, total: number) => void): Promise<BackupManifest> {
  const manifest = readManifest(folder);
  if (typeof manifest.seal !== 'string') throw new ValidationError('the backup manifest carries no seal: it was not written by this version of Tresor or was changed');
  let sealed: Buffer;
  try {
    sealed = await masterKey.open(manifest.seal, sealAad(manifest.id));
  } catch {
    throw new ValidationError("the backup manifest's seal does not open with this master key: the manifest was changed, or the backup belongs to another installation or master key");
  }
  const digest = manifestDigest(manifest);
  if (sealed.length !== digest.length || !timingSafeEqual(sealed, digest)) throw new ValidationError('the backup manifest was changed after it was written');
  for (const tenant of manifest.tenants) {
    if (!TENANT_ID.test(tenant.tenantId) || !DATABASE_NAME.test(tenant.databaseName)) throw new ValidationError('the backup manifest names a tenant database of an unexpected form');
  }
  const listed = new Set(manifest.files.map((f) => f.path));
  const missing = databaseFiles(manifest).find((path) => !listed.has(path));
  if (missing !== undefined) throw new ValidationError(`the backup manifest does not list ${missing}`);
  let done = 0;
  for (const entry of manifest.files) {
    if (entry.path.split('/').includes('..') || entry.path.startsWith('/')) throw new ValidationError(`the manifest names a file outside the backup: ${entry.path}`);
    const file = join(folder, ...entry.path.split('/'));
    if (!existsSync(file)) throw new ValidationError(`the backup is damaged: ${entry.path} is missing`);
    if (statSync(file).size !== entry.bytes) throw new ValidationError(`the backup is damaged: ${entry.path} has another size than when it was written`);
    if ((await sha256File(file)) !== entry.sha256) throw new ValidationError(`the backup is damaged: ${entry.path} was changed after it was written`);
    onProgress?.(++done, manifest.files.length);
  }
  return manifest;
}

export async function createBackup(core: Pick<Core, 'config' | 'storage' | 'ledgers' | 'clock' | 'masterKey'>, opts: { actor?: string } = {}): Promise<BackupSummary> {
  const { config, storage } = core;
  const dir = config.backup.dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const createdAt = core.clock.now();
  const id = idFor(createdAt);
  const partial = join(dir, `.partial-${id}`);
  const final = join(dir, PREFIX + id);
  if (existsSync(final)) throw new ValidationError(`a backup ${id} exists already`);
  const previous = listBackups(dir)[0];
  const previousBlobs = new Map((previous?.files ?? []).filter((f) => f.mtimeMs !== undefined).map((f) => [f.path, f]));
  const tenants = (await storage.control.selectFrom('tenants').select(['id', 'database_name']).orderBy('created_at').execute()).map((t) => ({ tenantId: t.id, databaseName: t.database_name }));
  try {
    const files: ManifestFile[] = [];
    for (const path of await snapshotDatabases(storage, { databaseUrl: config.database.url, tenants, target: partial })) {
      const file = join(partial, ...path.split('/'));
      files.push({ path, bytes: statSync(file).size, sha256: await sha256File(file) });
    }
    let linked = 0;
    const blobRoot = join(config.data_dir, 'blobs');
    for (const live of walk(blobRoot)) {
      const path = ['blobs', ...relative(blobRoot, live).split(sep)].join('/');
      const target = join(partial, ...path.split('/'));
      mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
      const stat = statSync(live);
      const before = previousBlobs.get(path);
      const previousCopy = previous ? join(dir, PREFIX + previous.id, ...path.split('/')) : '';
      if (before && before.bytes === stat.size && before.mtimeMs === stat.mtimeMs && existsSync(previousCopy)) {
        linkSync(previousCopy, target);
        files.push({ ...before });
        linked++;
        continue;
      }
      copyFileSync(live, target);
      chmodSync(target, 0o600);
      files.push({ path, bytes: stat.size, sha256: await sha256File(target), mtimeMs: stat.mtimeMs });
    }
    const manifest: BackupManifest = { format: MANIFEST_FORMAT, id, createdAt: createdAt.toISOString(), engine: storage.engine, tenants, files };
    manifest.seal = await core.masterKey.seal(manifestDigest(manifest), sealAad(id));
    writeFileSync(join(partial, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
    renameSync(partial, final);
    const summary: BackupSummary = { id, path: final, createdAt: manifest.createdAt, tenants: tenants.length, files: files.length, bytes: files.reduce((n, f) => n + f.bytes, 0), linked };
    await core.ledgers.platform.append({
      actor: { tier: 'system', role: opts.actor ?? 'scheduler', id: opts.actor ?? 'scheduler' },
      action: 'technical.backup',
      resource: { type: 'backup', id },
      outcome: 'success',
      details: { tenants: summary.tenants, files: summary.files, bytes: summary.bytes, linked },
    });
    return summary;
  } catch (error) {
    discard(partial);
    await core.ledgers.platform
      .append({ actor: { tier: 'system', role: opts.actor ?? 'scheduler', id: opts.actor ?? 'scheduler' }, action: 'technical.backup', resource: { type: 'backup', id }, outcome: 'failure' })
      .catch(() => undefined);
    throw error;
  }
}

/** Removes complete backups older than `keepDays` (the newest one always stays); returns their ids. */
export function pruneBackups(dir: string, keepDays: number, now: Date): string[] {
  const cutoff = now.getTime() - keepDays * 86_400_000;
  const removed: string[] = [];
  for (const old of listBackups(dir).slice(1)) {
    if (new Date(old.createdAt).getTime() < cutoff) {
      discard(join(dir, PREFIX + old.id));
      removed.push(old.id);
    }
  }
  return removed;
}

/**
 * Puts a backup back into a stopped installation: verifies every file first (a damaged backup restores
 * nothing), moves the current SQLite files and blobs aside into `<data_dir>/pre-restore-<time>/`
 * (PostgreSQL databases are restored in place), copies the backup in. The caller records the restore in
 * the ledger once the restored installation is open (`recordRestore`).
 */
export async function restoreBackup(
  config: Readonly<TresorConfig>,
  masterKey: CipherService,
  folder: string,
  opts: { now: Date; onProgress?: (step: string) => void },
): Promise<{ manifest: BackupManifest; asideDir: string }> {
  const engine = config.database.url === '' ? 'sqlite' : 'postgres';
  opts.onProgress?.('checking every file of the backup against its manifest');
  const manifest = await verifyBackup(folder, masterKey);
  if (manifest.engine !== engine) throw new ValidationError(`the backup was taken on ${manifest.engine}, but this installation runs on ${engine}`);
  const asideDir = join(config.data_dir, `pre-restore-${idFor(opts.now)}`);
  mkdirSync(asideDir, { recursive: true, mode: 0o700 });
  opts.onProgress?.('restoring the databases');
  await restoreDatabases({ engine, dataDir: config.data_dir, databaseUrl: config.database.url, source: folder, tenants: manifest.tenants, asideDir, masterKey });
  opts.onProgress?.('restoring the blobs');
  const blobRoot = join(config.data_dir, 'blobs');
  if (existsSync(blobRoot)) renameSync(blobRoot, join(asideDir, 'blobs'));
  mkdirSync(blobRoot, { recursive: true, mode: 0o700 });
  for (const tenant of manifest.tenants) mkdirSync(join(blobRoot, tenant.tenantId), { recursive: true, mode: 0o700 });
  for (const entry of manifest.files.filter((f) => f.path.startsWith('blobs/'))) {
    const target = join(config.data_dir, ...entry.path.split('/'));
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    copyFileSync(join(folder, ...entry.path.split('/')), target);
    chmodSync(target, 0o600);
  }
  return { manifest, asideDir };
}

/**
 * After a restore: tenants deleted (and shredded) since the backup was taken are deleted again — their keys
 * must not come back with it (B.7) — and the restore is recorded in the platform ledger.
 */
export async function finishRestore(core: Pick<Core, 'ledgers' | 'platform' | 'config'>, manifest: BackupManifest, actor: 'cli' | 'scheduler'): Promise<{ reshredded: string[] }> {
  const shredded = shreddedTenants(core.config.data_dir);
  const reshredded: string[] = [];
  for (const tenant of manifest.tenants) {
    if (shredded[tenant.tenantId] === undefined) continue;
    await core.platform.deleteTenant({ kind: 'system', name: actor }, tenant.tenantId, 'deleted-by-command');
    reshredded.push(tenant.tenantId);
  }
  await core.ledgers.platform.append({
    actor: { tier: 'system', role: actor, id: actor },
    action: 'technical.restore',
    resource: { type: 'backup', id: manifest.id },
    outcome: 'success',
    details: { createdAt: manifest.createdAt, tenants: manifest.tenants.length, files: manifest.files.length, reshredded: reshredded.length },
  });
  return { reshredded };
}

/**
 * The scheduler's backup job: a backup when the newest one (or, before the first, the installation's
 * first ledger entry) is `backup.interval_hours` old, then old ones are pruned. Off with interval 0.
 */
export function backupJob(core: Pick<Core, 'config' | 'storage' | 'ledgers' | 'clock' | 'masterKey'>, log: Pick<Logger, 'info' | 'error'>): ScheduledJob | undefined {
  const { interval_hours: hours, keep_days: keepDays, dir } = core.config.backup;
  if (hours === 0) return undefined;
  const intervalMs = hours * 3_600_000;
  return {
    name: 'backup',
    intervalMs: Math.min(intervalMs, 600_000),
    run: async () => {
      const now = core.clock.now().getTime();
      const newest = listBackups(dir)[0];
      let since = newest ? new Date(newest.createdAt).getTime() : undefined;
      if (since === undefined) {
        const first = await core.storage.control.selectFrom('ledger_entries').select('time').orderBy('seq').limit(1).executeTakeFirst();
        since = first ? new Date(first.time).getTime() : now;
      }
      if (now - since < intervalMs) return;
      const summary = await createBackup(core);
      const pruned = pruneBackups(dir, keepDays, core.clock.now());
      log.info({ backup: summary.id, files: summary.files, bytes: summary.bytes, linked: summary.linked, pruned: pruned.length }, 'backup written');
    },
  };
}

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DomainError } from '../shared/errors.js';

/**
 * What `tresor upload` keeps on this machine while an upload through a "request files" link is unsent, so
 * that the same command run again goes on after the process ended (a closed laptop, a lost connection):
 * the draft's id and, per file, its name, size and file key. At levels 3/4 those keys exist nowhere else
 * (the server has only what they encrypt), so the file is the outsider's own, readable by its owner only
 * (0600 in a 0700 folder, as ssh keeps keys), and deleted once the upload is sent or given up. The link's
 * secret is not kept: the command is given the link again.
 */
export interface KeptUpload {
  version: 1;
  requestId: string;
  transferId: string;
  level: 1 | 2 | 3 | 4;
  /** The requester's recipient id in the draft (the holder of the wraps at levels 3/4). */
  recipientId: string | undefined;
  files: { id: string; name: string; size: number; key: string }[];
  bundle?: { id: string; key: string } | undefined;
  createdAt: string;
}

/** `$XDG_STATE_HOME/tresor/uploads`, else `~/.local/state/tresor/uploads`. */
export function keptUploadsDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_STATE_HOME && env.XDG_STATE_HOME.startsWith('/') ? env.XDG_STATE_HOME : join(env.HOME || homedir(), '.local', 'state');
  return join(base, 'tresor', 'uploads');
}

const fileOf = (dir: string, requestId: string) => {
  if (!/^[0-9a-f-]{36}$/.test(requestId)) throw new DomainError('VALIDATION', 'not a request id');
  return join(dir, `${requestId}.json`);
};

const isKept = (x: unknown): x is KeptUpload => {
  const k = x as KeptUpload;
  const b64 = (v: unknown) => typeof v === 'string' && /^[A-Za-z0-9_-]{43}$/.test(v);
  return (
    typeof k === 'object' && k !== null && k.version === 1 && typeof k.requestId === 'string' && typeof k.transferId === 'string' && [1, 2, 3, 4].includes(k.level) &&
    (k.recipientId === undefined || typeof k.recipientId === 'string') && Array.isArray(k.files) &&
    k.files.every((f) => typeof f.id === 'string' && typeof f.name === 'string' && Number.isSafeInteger(f.size) && b64(f.key)) &&
    (k.bundle === undefined || (typeof k.bundle.id === 'string' && b64(k.bundle.key)))
  );
};

/** Ours alone: no one else's file or folder (uid) and nothing others may read. */
function checkOwn(path: string, s: { uid: number; mode: number }, what: 'file' | 'folder') {
  const uid = process.getuid?.();
  if (uid !== undefined && s.uid !== uid) throw new DomainError('CONFLICT', `${path} is not your ${what} (owner ${s.uid}): refusing to keep or read file keys there`);
  if (what === 'file' && (s.mode & 0o077) !== 0) throw new DomainError('CONFLICT', `${path} holds file keys but others may read it (mode ${(s.mode & 0o777).toString(8)}): delete it or make it 600`);
}

/** The folder, made if missing: a real folder (not a link to one) of ours, 0700. */
async function ownFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const s = await lstat(dir);
  if (!s.isDirectory()) throw new DomainError('CONFLICT', `${dir} is not a folder (a symbolic link?): refusing to keep file keys there`);
  checkOwn(dir, s, 'folder');
  if ((s.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

/** The unsent upload kept for this link, if any. A file others may read, or one that is not ours, is refused. */
export async function readKeptUpload(dir: string, requestId: string): Promise<KeptUpload | undefined> {
  const path = fileOf(dir, requestId);
  let text: string;
  try {
    // Not through a symbolic link; what is checked is the file that is read.
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const s = await handle.stat();
      if (!s.isFile()) throw new DomainError('CONFLICT', `${path} is not a file: delete it to start over`);
      checkOwn(path, s, 'file');
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new DomainError('CONFLICT', `${path} is a symbolic link: refusing to read file keys through it`);
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isKept(parsed) || parsed.requestId !== requestId) throw new DomainError('CONFLICT', `${path} is not a kept upload of this link: delete it to start over`);
  return parsed;
}

/**
 * Writes the kept upload: a new file of a random name (created, never reused: 0600 from the start), synced,
 * then renamed over the old one and the folder synced, so that after a crash or power loss the file is the
 * old one or the new one, never empty.
 */
export async function keepUpload(dir: string, kept: KeptUpload): Promise<void> {
  await ownFolder(dir);
  const path = fileOf(dir, kept.requestId);
  const temporary = `${path}.${randomBytes(8).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(JSON.stringify(kept));
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  await rename(temporary, path);
  const folder = await open(dir, 'r');
  await folder.sync().finally(() => folder.close());
}

/** Forgets the kept upload (sent, or given up), with any temporary file a crash left of it. */
export async function forgetUpload(dir: string, requestId: string): Promise<void> {
  const path = fileOf(dir, requestId);
  await rm(path, { force: true });
  const prefix = `${requestId}.json.`;
  for (const name of await readdir(dir).catch(() => [] as string[])) if (name.startsWith(prefix) && name.endsWith('.tmp')) await rm(join(dir, name), { force: true });
}

/**
 * One `tresor upload` per link at a time on this machine: a lock file with the process id, created
 * exclusively; one left by a process that is gone is taken over. Returns the release.
 */
export async function lockUpload(dir: string, requestId: string): Promise<() => Promise<void>> {
  await ownFolder(dir);
  const path = `${fileOf(dir, requestId)}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx', mode: 0o600 });
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
    }
    const pid = Number(await readFile(path, 'utf8').catch(() => ''));
    if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) throw new DomainError('CONFLICT', `another tresor upload with this link is running (process ${pid}); wait for it, or delete ${path} if it is not`);
    await rm(path, { force: true });
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

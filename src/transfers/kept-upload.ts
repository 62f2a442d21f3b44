import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
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

/** The unsent upload kept for this link, if any. A file others can read, or one that is not ours, is refused. */
export async function readKeptUpload(dir: string, requestId: string): Promise<KeptUpload | undefined> {
  const path = fileOf(dir, requestId);
  let text: string;
  try {
    const s = await stat(path);
    if ((s.mode & 0o077) !== 0) throw new DomainError('CONFLICT', `${path} holds file keys but others may read it (mode ${(s.mode & 0o777).toString(8)}): delete it or make it 600`);
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
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

/** Writes the kept upload (a temporary file renamed over the old one: never half written). */
export async function keepUpload(dir: string, kept: KeptUpload): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const path = fileOf(dir, kept.requestId);
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(kept), { mode: 0o600, flag: 'w' });
  await rename(temporary, path);
}

/** Forgets the kept upload (sent, or given up). */
export async function forgetUpload(dir: string, requestId: string): Promise<void> {
  await rm(fileOf(dir, requestId), { force: true });
}

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { DomainError } from '../shared/errors.js';

/**
 * The master key ring: versioned 256-bit keys that only the cipher service holds (DESIGN §3).
 * Stored as a JSON file with mode 0600, deliberately outside the data directory so that a copy of
 * the data directory alone decrypts nothing.
 */
export interface MasterKeyRing {
  /** The version new values are sealed with. */
  readonly currentVersion: number;
  /** Every version this ring can open. */
  readonly versions: readonly number[];
  /** AES-256-GCM seal; the output carries the key version, the AAD binds the context. */
  seal(plaintext: Uint8Array, aad: string): string;
  open(sealed: string, aad: string): Buffer;
}

interface MasterKeyFile {
  format: 'tresor-master-key/v1';
  current: number;
  keys: Record<string, string>;
}

export interface LoadedMasterKey {
  ring: MasterKeyRing;
  created: boolean;
}

/** Loads the master key from `value` (base64) if given, else from `file`, creating the file if missing. */
export function loadOrCreateMasterKey(opts: { file: string; value: string }): LoadedMasterKey {
  if (opts.value !== '') {
    const key = Buffer.from(opts.value, 'base64');
    if (key.length !== 32) {
      throw new DomainError('CONFIG_INVALID', 'master_key.value must be the base64 encoding of exactly 32 bytes', {
        key: 'master_key.value',
      });
    }
    return { ring: createMasterKeyRing({ 1: key }, 1), created: false };
  }
  if (!existsSync(opts.file)) {
    mkdirSync(dirname(opts.file), { recursive: true, mode: 0o700 });
    const content: MasterKeyFile = {
      format: 'tresor-master-key/v1',
      current: 1,
      keys: { '1': randomBytes(32).toString('base64') },
    };
    writeFileSync(opts.file, JSON.stringify(content, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(opts.file, 0o600);
    return { ring: fileBackedRing(opts.file), created: true };
  }
  return { ring: fileBackedRing(opts.file), created: false };
}

/**
 * A ring that follows its file: when `tresor keys rotate-master` adds a version (or `retire-master` drops
 * one) while servers run, each server picks the change up at its next seal or open — no restart needed.
 */
function fileBackedRing(file: string): MasterKeyRing {
  let ring = parseMasterKeyFile(file);
  let seen = statSync(file).mtimeMs;
  const fresh = () => {
    const mtime = statSync(file).mtimeMs;
    if (mtime !== seen) {
      ring = parseMasterKeyFile(file);
      seen = mtime;
    }
    return ring;
  };
  return {
    get currentVersion() {
      return fresh().currentVersion;
    },
    get versions() {
      return fresh().versions;
    },
    seal: (plaintext, aad) => fresh().seal(plaintext, aad),
    open: (sealed, aad) => fresh().open(sealed, aad),
  };
}

/** Adds a new random key version to the file and makes it current; older versions still open. */
export function addMasterKeyVersion(file: string): number {
  const content = readKeyFile(file);
  const next = Math.max(...Object.keys(content.keys).map(Number)) + 1;
  content.keys[String(next)] = randomBytes(32).toString('base64');
  content.current = next;
  writeKeyFile(file, content);
  return next;
}

/** Removes a version that nothing uses any more (the caller checks); the current version cannot go. */
export function retireMasterKeyVersion(file: string, version: number): void {
  const content = readKeyFile(file);
  if (version === content.current) throw new DomainError('CONFLICT', `version ${version} is the current master key version; rotate first`);
  if (!content.keys[String(version)]) throw new DomainError('NOT_FOUND', `master key version ${version} is not in ${file}`);
  delete content.keys[String(version)];
  writeKeyFile(file, content);
}

function readKeyFile(file: string): MasterKeyFile {
  parseMasterKeyFile(file); // validates
  return JSON.parse(readFileSync(file, 'utf8')) as MasterKeyFile;
}

/** Writes beside the file and renames, so a crash never leaves half a key file. */
function writeKeyFile(file: string, content: MasterKeyFile): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(content, null, 2) + '\n', { mode: 0o600 });
  renameSync(temp, file);
}

function parseMasterKeyFile(file: string): MasterKeyRing {
  let parsed: MasterKeyFile;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as MasterKeyFile;
  } catch {
    throw new DomainError('CONFIG_INVALID', `master key file ${file} is not readable JSON; restore it from your key backup`);
  }
  if (parsed.format !== 'tresor-master-key/v1' || typeof parsed.keys !== 'object') {
    throw new DomainError('CONFIG_INVALID', `master key file ${file} has an unknown format`);
  }
  const keys: Record<number, Buffer> = {};
  for (const [version, b64] of Object.entries(parsed.keys)) {
    const key = Buffer.from(b64, 'base64');
    if (key.length !== 32) throw new DomainError('CONFIG_INVALID', `master key version ${version} in ${file} is not 32 bytes`);
    keys[Number(version)] = key;
  }
  return createMasterKeyRing(keys, parsed.current);
}

const SEAL_PREFIX = 'mk';

export function createMasterKeyRing(keys: Record<number, Buffer>, currentVersion: number): MasterKeyRing {
  if (!keys[currentVersion]) throw new DomainError('CONFIG_INVALID', `master key version ${currentVersion} is missing`);
  return {
    currentVersion,
    versions: Object.keys(keys).map(Number).sort((a, b) => a - b),
    seal(plaintext, aad) {
      const key = keys[currentVersion]!;
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(`${SEAL_PREFIX}${currentVersion}|${aad}`));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return `${SEAL_PREFIX}${currentVersion}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
    },
    open(sealed, aad) {
      const match = /^mk(\d+)\.([A-Za-z0-9_-]+)$/.exec(sealed);
      const key = match ? keys[Number(match[1])] : undefined;
      if (!match || !key) throw new DomainError('VALIDATION', 'sealed value has an unknown format or key version');
      const raw = Buffer.from(match[2]!, 'base64url');
      if (raw.length < 28) throw new DomainError('VALIDATION', 'sealed value is truncated');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(`${SEAL_PREFIX}${match[1]}|${aad}`));
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
    },
  };
}

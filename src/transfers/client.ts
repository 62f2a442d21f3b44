import { createReadStream, createWriteStream, openAsBlob } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { Agent, request, type RequestOptions } from 'node:https';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pipeline as pipelineStreams, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { hashRaw } from '@node-rs/argon2';
import {
  canonicalFingerprint,
  type CheckedKey,
  checkOfferedKeys,
  ciphertextSize,
  createHeader,
  decodeBundle,
  decodePublicKey,
  decryptBytes,
  encodeBundle,
  encodePublicKey,
  encryptBytes,
  fingerprintMatches,
  generateKeyPair,
  MANIFEST_PIECE,
  manifestMatches,
  type OfferedKey,
  openPrivateKey,
  randomFileKey,
  recipientKeys,
  sealManifest,
  sealPrivateKey,
  toBase64Url,
  fromBase64Url,
  unwrapFileKey,
  wrapFileKey,
  type E2ePrivateKey,
} from '../shared-e2e/index.js';
import { decryptTransform, encryptTransform } from '../shared-e2e/node.js';
import { DomainError, type ErrorCode } from '../shared/errors.js';
import { forgetUpload, keepUpload, type KeptUpload, lockUpload, readKeptUpload } from './kept-upload.js';
import type { MailCounts } from './mail-notices.js';

/**
 * The Node side of the secure exchange, for `tresor send`, `tresor receive` and `tresor secupass`: the
 * same end-to-end format and API as the web app (docs/transfers.md), so either side can talk to the other.
 */
export interface TransferRemote {
  url: string;
  token?: string | undefined;
  caFile?: string | undefined;
}

const fileContext = (transferId: string, fileId: string) => `transfer:${transferId}/file:${fileId}`;

/** One kept-alive connection pool per server and CA: no TLS handshake per uploaded piece. */
const agents = new Map<string, Agent>();
const agentFor = (remote: TransferRemote) => {
  const id = `${new URL(remote.url).origin}|${remote.caFile ?? ''}`;
  let agent = agents.get(id);
  if (!agent) agents.set(id, (agent = new Agent({ keepAlive: true, maxSockets: 4, ...(remote.caFile ? { ca: readFileSync(remote.caFile) } : {}) })));
  return agent;
};
/** Closes the kept-alive connections (a CLI command ends faster). */
export function closeConnections(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}

/** A request body streamed as it comes (chunked), for uploads of any size in constant memory. */
const isStream = (body: unknown): body is AsyncIterable<Uint8Array> => typeof body === 'object' && body !== null && !(body instanceof Uint8Array) && Symbol.asyncIterator in body;

/** One HTTPS call; JSON in and out unless `body` is bytes or a stream; a response stream when `stream` is set. */
export async function call<T>(remote: TransferRemote, method: string, path: string, body?: unknown, opts: { stream?: boolean; headers?: Record<string, string> } = {}): Promise<T> {
  const target = new URL(path, remote.url);
  if (target.protocol !== 'https:') throw new DomainError('VALIDATION', `the server URL must be https://, not ${target.protocol}`);
  const streamed = isStream(body) ? body : undefined;
  const raw = body instanceof Uint8Array;
  const payload = body === undefined || streamed ? undefined : raw ? (body as Uint8Array) : Buffer.from(JSON.stringify(body));
  const options: RequestOptions = {
    method,
    agent: agentFor(remote),
    headers: {
      accept: 'application/json',
      ...(payload ? { 'content-type': raw ? 'application/octet-stream' : 'application/json', 'content-length': payload.length } : {}),
      ...(streamed ? { 'content-type': 'application/octet-stream' } : {}),
      ...(remote.token ? { authorization: `Bearer ${remote.token}` } : {}),
      ...opts.headers,
    },
  };
  return new Promise<T>((resolve, reject) => {
    const req = request(target, options, (res) => {
      const status = res.statusCode ?? 500;
      if (opts.stream && status < 400) return resolve(res as unknown as T);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        if (status >= 400) {
          const e = (parsed ?? {}) as { code?: string; message?: string; details?: Record<string, unknown> };
          reject(new DomainError((e.code ?? 'VALIDATION') as ErrorCode, e.message ?? `server answered ${status}`, { client: e.details ?? {} }));
        } else resolve(parsed as T);
        // An answer before the whole body went (a refusal): stop sending.
        if (streamed && !req.writableFinished) req.destroy();
      });
    });
    req.on('error', reject);
    if (streamed) pipeline(Readable.from(streamed), req).catch(reject);
    else req.end(payload);
  });
}

/** An upload through a "request files" link instead of the caller's own session. */
export interface RequestVia {
  requestId: string;
  secret: string;
}
/** A request link as the uploader holds it: with the requester's key fingerprint it names (levels 3/4). */
type Via = RequestVia & { fingerprint?: string | undefined };
/** An upload through a link as `tresor upload` keeps it between runs (see kept-upload.ts). */
export interface Draft {
  transferId: string;
  recipientId: string | undefined;
  files: { id: string; name: string; size: number; key: Uint8Array }[];
  bundle?: { id: string; key: Uint8Array };
}
const transferBase = (via: RequestVia | undefined) => (via ? `/api/v1/u/${via.requestId}/transfers` : '/api/v1/transfers');

/**
 * Ciphertext kept after it went out, so that after a broken connection the upload goes on from what the
 * server holds without encrypting anything twice (a second encryption of a changed file under the same
 * nonces would break AES-GCM). What the server loses beyond this (never on a working server: it keeps
 * what reached it) means starting the transfer again.
 */
const REPLAY_BYTES = 32 * 1024 * 1024;
const PROGRESS_EVERY = 8 * 1024 * 1024;

/**
 * Uploads one encrypted stream in a single streamed request (no round trip per piece); when the
 * connection breaks, it asks the server how much arrived and goes on from there, at most 5 times.
 */
export async function uploadStream(remote: TransferRemote, transferId: string, fileId: string, cipher: AsyncIterable<Uint8Array>, onProgress: (bytes: number) => void, via?: RequestVia, start = 0) {
  const path = `${transferBase(via)}/${transferId}/blobs/${fileId}`;
  const headers = via ? { 'x-tresor-request-secret': via.secret } : {};
  const source = cipher[Symbol.asyncIterator]();
  const kept: Uint8Array[] = [];
  let keptFrom = start; // byte offset of kept[0] (`cipher` gives the bytes from `start` on)
  let keptBytes = 0;
  let produced = start;
  let ended = false;
  let reported = start;
  let attempt = 0;
  /** The stream itself failed (the file unreadable, a refused check): final, unlike a broken connection. */
  let failed: { error: unknown } | undefined;
  // Pulls are chained: a pull of a broken attempt that is still under way lands in `kept` before a
  // new attempt looks at it, so no chunk is skipped or sent twice.
  let tail: Promise<unknown> = Promise.resolve();
  const pull = (): Promise<Uint8Array | undefined> => {
    const next = tail.then(async () => {
      if (ended) return undefined;
      const step = await source.next().catch((error: unknown) => {
        failed = { error };
        throw error;
      });
      if (step.done) {
        ended = true;
        return undefined;
      }
      const chunk = step.value;
      kept.push(chunk);
      keptBytes += chunk.length;
      produced += chunk.length;
      while (kept.length > 1 && keptBytes - kept[0]!.length >= REPLAY_BYTES) {
        const dropped = kept.shift()!;
        keptBytes -= dropped.length;
        keptFrom += dropped.length;
      }
      if (produced - reported >= PROGRESS_EVERY) onProgress((reported = produced));
      return chunk;
    });
    tail = next.catch(() => undefined);
    return next;
  };
  /** The stream from `offset`: first what is kept and the server lacks, then new ciphertext. */
  async function* from(offset: number): AsyncGenerator<Uint8Array> {
    const mine = ++attempt;
    await tail;
    let position = keptFrom;
    for (const chunk of kept.slice()) {
      const end = position + chunk.length;
      if (end > offset) yield chunk.subarray(Math.max(0, offset - position));
      position = end;
    }
    while (mine === attempt) {
      const chunk = await pull();
      if (chunk === undefined) return;
      yield chunk;
    }
  }
  /** What the server holds: the count a refusal names, its status answer, or (through a request link) an empty append's answer. */
  const held = async (error: unknown): Promise<number> => {
    const named = error instanceof DomainError ? (error.details.client as { received?: unknown } | undefined)?.received : undefined;
    if (typeof named === 'number') return named;
    if (!via) return (await call<{ received: number }>(remote, 'GET', `${path}/status`)).received;
    try {
      return (await call<{ received: number }>(remote, 'PUT', `${path}?offset=0`, new Uint8Array(0), { headers })).received;
    } catch (refusal) {
      const count = refusal instanceof DomainError ? (refusal.details.client as { received?: unknown } | undefined)?.received : undefined;
      if (typeof count === 'number') return count;
      throw refusal;
    }
  };
  let offset = start;
  for (let failures = 0; ; ) {
    try {
      offset = (await call<{ received: number }>(remote, 'PUT', `${path}?offset=${offset}`, from(offset), { headers })).received;
      if (ended && offset === produced) break;
      throw new DomainError('CONFLICT', `the server holds ${offset} bytes, ${produced} were sent`, { client: { received: offset } });
    } catch (error) {
      if (failed) throw failed.error;
      // A refusal other than "go on from byte n" (no access, gone, too long) is final.
      if (error instanceof DomainError && error.code !== 'CONFLICT') throw error;
      if (++failures > 5) throw error;
      const received = await held(error);
      if (received < keptFrom || received > produced) {
        throw new DomainError('CONFLICT', `the upload cannot go on: the server holds ${received} bytes, but only bytes ${keptFrom} to ${produced} can be sent again; send the transfer anew`);
      }
      offset = received;
    }
  }
  onProgress(offset);
}

async function myPrivateKey(remote: TransferRemote, secupass: string): Promise<{ privateKey: E2ePrivateKey; fingerprint: string; publicKey: string }> {
  let key: { publicKey: string; fingerprint: string; sealedPrivateKey: string };
  try {
    key = await call(remote, 'GET', '/api/v1/e2e/key');
  } catch (error) {
    if (error instanceof DomainError && error.code === 'NOT_FOUND') throw new DomainError('NOT_FOUND', 'you have no SecuPass key yet: create one with `tresor secupass init`');
    throw error;
  }
  try {
    return { privateKey: await openPrivateKey(key.sealedPrivateKey, secupass), fingerprint: key.fingerprint, publicKey: key.publicKey };
  } catch {
    throw new DomainError('UNAUTHENTICATED', 'the SecuPass key is not right');
  }
}

/** Creates (or resets) the caller's SecuPass key pair; the key must differ from the login password. */
export async function initSecupass(remote: TransferRemote, secupass: string): Promise<{ fingerprint: string; reset: boolean; pendingApprovals: number }> {
  const salt = await call<{ salt: string; memoryKib: number; iterations: number; parallelism: number; hashLength: number }>(remote, 'GET', '/api/v1/e2e/login-salt');
  const check = await hashRaw(secupass, { salt: Buffer.from(salt.salt, 'base64'), memoryCost: salt.memoryKib, timeCost: salt.iterations, parallelism: salt.parallelism, outputLen: salt.hashLength, algorithm: 2 as never });
  const pair = await generateKeyPair();
  return call(remote, 'PUT', '/api/v1/e2e/key', { publicKey: encodePublicKey(pair.publicKey), sealedPrivateKey: await sealPrivateKey(pair.privateKey, secupass), loginCheck: Buffer.from(check).toString('base64') });
}

export interface SendInput {
  to: string[];
  subject: string;
  message?: string | undefined;
  level: 1 | 2 | 3 | 4;
  expiresAt: string;
  downloadLimit?: number | undefined;
  files: string[];
  secupass?: string | undefined;
}

interface Created {
  id: string;
  files: { id: string; name: string | null; size: number; cipherSize: number }[];
  bundleId?: string;
  recipients: { id: string; email: string; publicKey?: string; fingerprint?: string }[];
  sender?: { publicKey: string; fingerprint: string };
}

/** A file to send as it is on disk now: what `unchanged` compares with after it went up. */
const localFile = async (path: string) => {
  const s = await stat(path);
  return { path, name: basename(path), size: s.size, mtimeMs: s.mtimeMs };
};
/** A file written to while it was read would arrive mixed (and its manifest would not describe it). */
async function unchanged(f: { path: string; name: string; size: number; mtimeMs: number }) {
  const now = await stat(f.path);
  if (now.size !== f.size || now.mtimeMs !== f.mtimeMs) throw new DomainError('CONFLICT', `${f.name} changed while it was being sent`);
}

/** The keys the server names (see checkOfferedKeys); through a link, the requester's key must also be the link's. */
async function checkedHolders(offered: OfferedKey[], via?: { fingerprint?: string | undefined }): Promise<CheckedKey[]> {
  const checked = await checkOfferedKeys(offered);
  if ('mismatch' in checked) throw new DomainError('CONFLICT', `the key offered for ${checked.mismatch} does not have the fingerprint the server states: refusing to encrypt for it`);
  for (const k of checked.keys) {
    if (via && k.holder !== 'sender' && k.fingerprint !== via.fingerprint) throw new DomainError('CONFLICT', `the requester's key offered (${k.fingerprint}) is not the one the link names: refusing to encrypt for it`);
  }
  return checked.keys;
}
/** Wraps every key for each holder and stores the wraps. */
async function storeWraps(remote: TransferRemote, base: string, transferId: string, keys: { fileId: string; key: Uint8Array }[], holders: CheckedKey[], via?: RequestVia) {
  if (holders.length === 0) return;
  const wraps: { fileId: string; holder: string; fingerprint: string; wrapped: string }[] = [];
  for (const h of holders) for (const k of keys) wraps.push({ fileId: k.fileId, holder: h.holder, fingerprint: h.fingerprint, wrapped: toBase64Url(await wrapFileKey(k.key, h.publicKey, fileContext(transferId, k.fileId))) });
  await call(remote, 'POST', `${base}/${transferId}/wraps`, via ? { secret: via.secret, wraps: wraps.map(({ holder, ...w }) => ({ ...w, recipientId: holder })) } : { wraps });
}

/**
 * A fresh header for a file's encryption, stored first with its manifest (docs/e2e-format.md §3.0): the
 * header may then be used again for this file's plaintext only, after an interruption.
 */
async function newUploadHeader(remote: TransferRemote, transferId: string, fileId: string, fileKey: Uint8Array, path: string, via?: RequestVia): Promise<Uint8Array> {
  const context = fileContext(transferId, fileId);
  const header = await createHeader(fileKey, context);
  const manifest = await sealManifest(fileKey, context, header, await openAsBlob(path));
  await call(remote, 'PUT', `${transferBase(via)}/${transferId}/blobs/${fileId}/manifest`, { ...(via ? { secret: via.secret } : {}), manifest: toBase64Url(manifest) });
  return header;
}

/**
 * The ciphertext from byte `received` on: the bytes before are compared, per MANIFEST_PIECE, with the
 * SHA-256 the server gives for what it holds (a file that matched its manifest while the server's bytes
 * differ is refused, nothing goes up).
 */
async function* afterHeld(cipher: AsyncIterable<Uint8Array>, received: number, pieces: readonly string[]): AsyncGenerator<Uint8Array> {
  let position = 0;
  let hash = createHash('sha256');
  const check = (upTo: number) => {
    const index = Math.ceil(upTo / MANIFEST_PIECE) - 1;
    if (hash.digest('hex') !== pieces[index]) throw new DomainError('CONFLICT', `the bytes the server holds (up to ${upTo}) are not what this file encrypts to: refusing to go on`);
    hash = createHash('sha256');
  };
  for await (const chunk of cipher) {
    let at = 0;
    while (at < chunk.length && position < received) {
      const take = Math.min(chunk.length - at, received - position, MANIFEST_PIECE - (position % MANIFEST_PIECE));
      hash.update(chunk.subarray(at, at + take));
      at += take;
      position += take;
      if (position % MANIFEST_PIECE === 0 || position === received) check(position);
    }
    if (at < chunk.length) {
      position += chunk.length - at;
      yield at === 0 ? chunk : chunk.subarray(at);
    }
  }
}

type HeldFile = { id: string; kind: 'file' | 'bundle'; name?: string | null; size: number; cipherSize: number; received: number; header?: string; pieces: string[]; manifest?: string; content?: string; fileKey?: string };
interface ResumeAnswer {
  id: string;
  level: 1 | 2 | 3 | 4;
  files: HeldFile[];
  recipients: { id: string; email: string; fingerprint?: string; publicKey?: string }[];
}
type Sent = MailCounts & { id: string; recipients?: { email: string; state: string; keyState: string }[] };

/** The files of an unsent transfer that still lack bytes; refused when the upload cannot go on from them. */
function stillOpen(files: HeldFile[], cannot: (why: string) => Error): HeldFile[] {
  const open = files.filter((f) => f.received < f.cipherSize);
  if (open.some((f) => f.kind === 'bundle')) throw cannot('its encrypted message was not uploaded completely');
  if (open.some((f) => f.received > 0 && (f.header === undefined || f.manifest === undefined))) throw cannot('a file was uploaded without a manifest');
  return open;
}

type Planned = { f: HeldFile; local: Awaited<ReturnType<typeof localFile>> };
/**
 * Each open file matched with one of `paths` by name and size; each file with bytes on the server must be
 * the one its manifest describes (the whole file: it is encrypted again under the same header). All is
 * checked before anything goes up, so a refusal leaves the server as it was.
 */
async function matchRest(transferId: string, all: HeldFile[], open: HeldFile[], label: (f: HeldFile) => { name: string | null; shown: string }, keyOf: (fileId: string) => Uint8Array, paths: string[], cannot: (why: string) => Error): Promise<Planned[]> {
  const chosen = await Promise.all(paths.map(localFile));
  const take = (f: HeldFile) => {
    const { name } = label(f);
    const at = chosen.findIndex((c) => c.size === f.size && (name === null || c.name === name));
    return at < 0 ? undefined : chosen.splice(at, 1)[0];
  };
  const plan = open.map((f) => ({ f, local: take(f) }));
  const missing = plan.filter((p) => !p.local).map((p) => `${label(p.f).shown} (${p.f.size} bytes)`);
  if (missing.length > 0) throw new DomainError('VALIDATION', `give these files again: ${missing.join(', ')}`);
  // The files that arrived whole may be given again (they are not uploaded twice); any other file given is
  // not part of this transfer and would silently stay behind: refused.
  for (const f of all) if (f.kind === 'file' && !open.includes(f)) take(f);
  if (chosen.length > 0) throw new DomainError('VALIDATION', `not part of the interrupted transfer: ${chosen.map((c) => `${c.name} (${c.size} bytes)`).join(', ')}; send these separately`);
  const planned = plan as Planned[];
  for (const p of planned) if (p.f.cipherSize !== ciphertextSize(p.local.size)) throw cannot('the server states another encrypted size');
  for (const p of planned) {
    if (p.f.received === 0) continue;
    if (!(await manifestMatches(keyOf(p.f.id), fileContext(transferId, p.f.id), fromBase64Url(p.f.manifest!), fromBase64Url(p.f.header!), await openAsBlob(p.local.path)))) {
      throw new DomainError('CONFLICT', `${p.local.name} is not the file whose upload was interrupted (its content differs); nothing was changed`);
    }
  }
  return planned;
}

/** Uploads what the server lacks of each planned file: from its header on, or anew under a new header and manifest. */
async function uploadRest(remote: TransferRemote, transferId: string, plan: Planned[], keyOf: (fileId: string) => Uint8Array, onProgress: (line: string) => void, via?: RequestVia) {
  for (const p of plan) {
    const context = fileContext(transferId, p.f.id);
    const key = keyOf(p.f.id);
    const header = p.f.received > 0 ? fromBase64Url(p.f.header!) : await newUploadHeader(remote, transferId, p.f.id, key, p.local.path, via);
    const cipher = pipelineStreams(createReadStream(p.local.path, { highWaterMark: 1024 * 1024 }), encryptTransform(key, context, header), () => undefined);
    await uploadStream(remote, transferId, p.f.id, afterHeld(cipher, p.f.received, p.f.pieces), (n) => onProgress(`${p.local.name}: ${n} / ${p.f.cipherSize} bytes`), via, p.f.received);
    await unchanged(p.local);
  }
}

/**
 * Goes on with an unsent transfer of the caller's (`tresor send` cut off, or a web upload): the same files
 * again, matched by name and size and checked (`matchRest`); only the rest goes up. At levels 3/4 the file
 * keys come from the sender's own wraps (the SecuPass), and a file not started gets a new key (a wrap
 * proves nothing about who chose the key; `secupass` is asked for only there). Then the wraps and the
 * send, as `sendTransfer`.
 */
export async function resumeTransfer(remote: TransferRemote, transferId: string, paths: string[], secupass: () => Promise<string>, onProgress: (line: string) => void = () => undefined) {
  const state = await call<ResumeAnswer>(remote, 'GET', `/api/v1/transfers/${transferId}/resume?pieceSize=${MANIFEST_PIECE}`);
  const cannot = (why: string) => new DomainError('CONFLICT', `transfer ${transferId} cannot be continued (${why}); withdraw it and send the files again`);
  const open = stillOpen(state.files, cannot);
  const keys = new Map<string, Uint8Array>();
  const keyOf = (fileId: string) => keys.get(fileId)!;
  try {
    let names: (string | null)[] = [];
    let own: Awaited<ReturnType<typeof myPrivateKey>> | undefined;
    if (state.level >= 3) {
      own = await myPrivateKey(remote, await secupass());
      const mine = await call<{ fileId: string; wrapped: string; fingerprint: string }[]>(remote, 'GET', `/api/v1/transfers/${transferId}/sender-wraps`);
      for (const f of state.files) {
        const w = mine.find((x) => x.fileId === f.id);
        if (!w || w.fingerprint !== own.fingerprint) throw cannot('a file key is not wrapped for your current key');
        keys.set(f.id, await unwrapFileKey(fromBase64Url(w.wrapped), own.privateKey, fileContext(transferId, f.id)));
      }
      const bundle = state.files.find((f) => f.kind === 'bundle');
      if (bundle) {
        if (bundle.content === undefined) throw cannot('its encrypted message is missing');
        names = decodeBundle(await decryptBytes(keyOf(bundle.id), fileContext(transferId, bundle.id), fromBase64Url(bundle.content))).names;
      }
    } else {
      for (const f of state.files) {
        if (!f.fileKey) throw cannot('a file key is missing');
        keys.set(f.id, fromBase64Url(f.fileKey));
      }
    }
    const files = state.files.filter((f) => f.kind === 'file');
    const label = (f: HeldFile) => {
      const name = f.name ?? names[files.indexOf(f)] ?? null;
      return { name, shown: name ?? `file ${files.indexOf(f) + 1}` };
    };
    const plan = await matchRest(transferId, state.files, open, label, keyOf, paths, cannot);
    const holders = own ? await checkedHolders(recipientKeys(state.recipients)) : [];
    if (own) {
      const fresh = plan.filter((p) => p.f.received === 0).map((p) => {
        keyOf(p.f.id).fill(0);
        const key = randomFileKey();
        keys.set(p.f.id, key);
        return { fileId: p.f.id, key };
      });
      await storeWraps(remote, '/api/v1/transfers', transferId, fresh, await checkedHolders([{ holder: 'sender', publicKey: own.publicKey, fingerprint: own.fingerprint }]));
    }
    await uploadRest(remote, transferId, plan, keyOf, onProgress);
    if (own) await storeWraps(remote, '/api/v1/transfers', transferId, state.files.map((f) => ({ fileId: f.id, key: keyOf(f.id) })), holders);
    return await call<Sent>(remote, 'POST', `/api/v1/transfers/${transferId}/send`);
  } finally {
    for (const k of keys.values()) k.fill(0);
  }
}

/**
 * Encrypts and uploads the files, wraps the keys (levels 3/4) and sends: the caller's own transfer, or
 * (with `via`) an upload through a "request files" link, to the requester alone.
 */
export async function sendTransfer(remote: TransferRemote, input: SendInput, onProgress: (line: string) => void = () => undefined, via?: Via & { from: string; keep?: ((draft: Draft) => Promise<void>) | undefined }) {
  const e2e = input.level >= 3;
  if (e2e && !via && !input.secupass) throw new DomainError('VALIDATION', 'levels 3 and 4 need your SecuPass key (TRESOR_SECUPASS or the prompt)');
  const own = e2e && !via ? await myPrivateKey(remote, input.secupass!) : undefined;
  const files = await Promise.all(input.files.map(async (path) => ({ ...(await localFile(path)), key: randomFileKey() })));
  const bundleKey = randomFileKey();
  const bundleText = input.level === 4 ? encodeBundle(input.message ?? '', files.map((f) => f.name)) : undefined;
  const base = transferBase(via);
  const secret = via ? { secret: via.secret } : {};
  const common = {
    subject: input.subject,
    ...(input.level <= 3 && input.message ? { message: input.message } : {}),
    files: files.map((f) => ({ ...(input.level === 4 ? {} : { name: f.name }), size: f.size, ...(e2e ? {} : { fileKey: toBase64Url(f.key) }) })),
    ...(bundleText ? { bundle: { size: bundleText.length } } : {}),
  };
  const created = await call<Created>(
    remote,
    'POST',
    base,
    via ? { ...secret, from: via.from, ...common } : { ...common, level: input.level, expiresAt: input.expiresAt, ...(input.downloadLimit ? { downloadLimit: input.downloadLimit } : {}), recipients: input.to },
  );
  const keys = [...files.map((f, i) => ({ fileId: created.files[i]!.id, key: f.key })), ...(created.bundleId ? [{ fileId: created.bundleId, key: bundleKey }] : [])];
  /** The draft withdrawn (its own route through a link), when it could never be sent as it is. */
  const giveUp = async (error: unknown): Promise<never> => {
    await (via ? call(remote, 'POST', `${base}/${created.id}/withdraw`, secret) : call(remote, 'DELETE', `${base}/${created.id}`)).catch(() => undefined);
    throw error;
  };
  // Every key is checked before a byte goes up: a refusal leaves nothing half sent, and a draft that could
  // only ever be sent to the refused key is withdrawn.
  const holders = e2e ? await checkedHolders([...(own ? [{ holder: 'sender', publicKey: own.publicKey, fingerprint: own.fingerprint }] : []), ...recipientKeys(created.recipients)], via).catch(giveUp) : [];
  const wrap = (to: CheckedKey[]) => storeWraps(remote, base, created.id, keys, to, via);
  // Through a link: what it takes to go on after this process ends is kept first (the keys exist nowhere
  // else); a draft that cannot be kept is not uploaded.
  await via
    ?.keep?.({
      transferId: created.id,
      recipientId: created.recipients[0]?.id,
      files: files.map((f, i) => ({ id: created.files[i]!.id, name: f.name, size: f.size, key: f.key })),
      ...(created.bundleId ? { bundle: { id: created.bundleId, key: bundleKey } } : {}),
    })
    .catch(giveUp);
  try {
    // The sender's own wraps and the level-4 bundle go first: after an interruption the SecuPass opens the
    // file keys again, and the bundle (message and names) is never the part missing.
    if (own) await wrap(holders.filter((h) => h.holder === 'sender'));
    if (bundleText && created.bundleId) {
      const sealed = await encryptBytes(bundleKey, fileContext(created.id, created.bundleId), bundleText);
      await call(remote, 'PUT', `${base}/${created.id}/blobs/${created.bundleId}?offset=0`, sealed, { headers: via ? { 'x-tresor-request-secret': via.secret } : {} });
    }
    for (const [i, f] of files.entries()) {
      const fileId = created.files[i]!.id;
      const context = fileContext(created.id, fileId);
      // A header chosen first and stored with the file's manifest, so that `tresor transfer resume`, `tresor
      // upload` run again or the web app can go on after this process ends.
      const header = await newUploadHeader(remote, created.id, fileId, f.key, f.path, via);
      const cipher = pipelineStreams(createReadStream(f.path, { highWaterMark: 1024 * 1024 }), encryptTransform(f.key, context, header), () => undefined);
      await uploadStream(remote, created.id, fileId, cipher, (n) => onProgress(`${f.name}: ${n} / ${created.files[i]!.cipherSize} bytes`), via);
      await unchanged(f);
    }
    if (e2e) await wrap(holders.filter((h) => h.holder !== 'sender'));
  } catch (error) {
    if (via || !(error instanceof Error)) throw error;
    throw Object.assign(error, { message: `${error.message} — transfer ${created.id} was not sent; go on with \`tresor transfer resume ${created.id} <the same files>\` or withdraw it` });
  }
  return call<Sent>(remote, 'POST', `${base}/${created.id}/send`, via ? secret : undefined);
}

/** Parses an upload link: `<url>/app/upload/<requestId>#s=<secret>[&fp=<fingerprint>]`. */
export function parseRequestLink(link: string): { base: string; requestId: string; secret: string; fingerprint?: string } {
  const url = (() => {
    try {
      return new URL(link);
    } catch {
      throw new DomainError('VALIDATION', 'the link must be the full https://…/app/upload/…#s=… link');
    }
  })();
  const match = /^\/app\/upload\/([0-9a-f-]{36})$/.exec(url.pathname);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const secret = fragment.get('s');
  if (!match || !secret) throw new DomainError('VALIDATION', 'the link must be the full https://…/app/upload/…#s=… link');
  const fp = fragment.get('fp');
  return { base: url.origin, requestId: match[1]!, secret, ...(fp ? { fingerprint: fp } : {}) };
}

/**
 * Goes on with an upload through a link that `tresor upload` kept on this machine: the same files again,
 * matched by the kept names and sizes and checked against what arrived (`matchRest`); the file keys are
 * the kept ones (the server never had them at levels 3/4), the requester's key is checked against the
 * link's fingerprint again. Then the wraps (levels 3/4) and the send.
 */
async function resumeUpload(server: TransferRemote, via: Via, requester: { publicKey?: string; fingerprint?: string }, kept: KeptUpload, paths: string[], onProgress: (line: string) => void) {
  const base = transferBase(via);
  const cannot = (why: string) => new DomainError('CONFLICT', `the interrupted upload cannot be continued (${why}); add --restart to send the files anew`);
  const state = await call<{ id: string; level: number; files: HeldFile[] }>(server, 'POST', `${base}/${kept.transferId}/resume`, { secret: via.secret, pieceSize: MANIFEST_PIECE });
  const keys = new Map<string, Uint8Array>([...kept.files.map((f) => [f.id, fromBase64Url(f.key)] as const), ...(kept.bundle ? [[kept.bundle.id, fromBase64Url(kept.bundle.key)] as const] : [])]);
  try {
    const known = (f: HeldFile) => (f.kind === 'bundle' ? kept.bundle?.id === f.id : kept.files.some((k) => k.id === f.id && k.size === f.size));
    if (state.level !== kept.level || state.files.length !== keys.size || !state.files.every(known)) throw cannot('the server describes another upload than the one kept here');
    const open = stillOpen(state.files, cannot);
    const keyOf = (fileId: string) => keys.get(fileId)!;
    const label = (f: HeldFile) => {
      const name = kept.files.find((k) => k.id === f.id)!.name;
      return { name, shown: name };
    };
    const plan = await matchRest(kept.transferId, state.files, open, label, keyOf, paths, cannot);
    if (kept.level >= 3 && (!kept.recipientId || !requester.publicKey || !requester.fingerprint)) throw cannot('the requester has no key to encrypt for');
    const holders = kept.level >= 3 ? await checkedHolders([{ holder: kept.recipientId!, publicKey: requester.publicKey!, fingerprint: requester.fingerprint! }], via) : [];
    onProgress(`going on with the upload kept since ${kept.createdAt}: ${plan.length} of ${kept.files.length} file(s) still to upload`);
    await uploadRest(server, kept.transferId, plan, keyOf, onProgress, via);
    if (holders.length > 0) await storeWraps(server, base, kept.transferId, [...keys].map(([fileId, key]) => ({ fileId, key })), holders, via);
    return await call<Sent>(server, 'POST', `${base}/${kept.transferId}/send`, { secret: via.secret });
  } finally {
    for (const k of keys.values()) k.fill(0);
  }
}

/** The answer of a kept upload's draft that is gone for good: sent already, or withdrawn, expired, deleted. */
const draftGone = (error: unknown): 'sent' | 'gone' | undefined => {
  if (!(error instanceof DomainError)) return undefined;
  if (error.code === 'NOT_FOUND') return 'gone';
  const state = error.code === 'CONFLICT' ? (error.details.client as { state?: unknown } | undefined)?.state : undefined;
  return state === 'sent' ? 'sent' : state === 'expired' ? 'gone' : undefined;
};

/**
 * Sends files through someone's "request files" link (no account needed). With `keptIn` (a folder of this
 * machine, see kept-upload.ts) an interrupted upload is kept there and the same command run again goes
 * on with it; `restart` gives the kept one up (its bytes are deleted on the server) and starts anew.
 */
export async function uploadToRequest(
  remote: Omit<TransferRemote, 'url'> & { url?: string | undefined },
  link: string,
  input: { from: string; subject: string; message?: string | undefined; files: string[] },
  onProgress: (line: string) => void = () => undefined,
  opts: { keptIn?: string | undefined; restart?: boolean | undefined } = {},
) {
  const parsed = parseRequestLink(link);
  const dir = opts.keptIn;
  const release = dir ? await lockUpload(dir, parsed.requestId) : undefined;
  try {
    return await uploadThrough(remote, parsed, input, onProgress, dir, opts.restart === true);
  } finally {
    await release?.();
  }
}

async function uploadThrough(
  remote: Omit<TransferRemote, 'url'> & { url?: string | undefined },
  parsed: ReturnType<typeof parseRequestLink>,
  input: { from: string; subject: string; message?: string | undefined; files: string[] },
  onProgress: (line: string) => void,
  dir: string | undefined,
  restart: boolean,
) {
  const server: TransferRemote = { caFile: remote.caFile, url: remote.url ?? parsed.base };
  const kept = dir ? await readKeptUpload(dir, parsed.requestId) : undefined;
  let info: { level: 1 | 2 | 3 | 4; requester: string; publicKey?: string; fingerprint?: string };
  try {
    info = await call(server, 'POST', `/api/v1/u/${parsed.requestId}/open`, { secret: parsed.secret });
  } catch (error) {
    // The link no longer works (expired, closed, or never this one): what was kept for it can never go on.
    if (dir && kept && error instanceof DomainError && error.code === 'NOT_FOUND') {
      await forgetUpload(dir, parsed.requestId);
      error.message += ' — the upload kept for this link on this machine was deleted';
    }
    throw error;
  }
  if (info.level >= 3 && (!parsed.fingerprint || info.fingerprint !== parsed.fingerprint)) {
    throw new DomainError('CONFLICT', `the requester's key (${info.fingerprint ?? 'none'}) is not the one the link names: refusing to encrypt for it`);
  }
  const via: Via = { requestId: parsed.requestId, secret: parsed.secret, fingerprint: parsed.fingerprint };
  const done = (id: string, extra: { alreadySent?: boolean } = {}) => ({ id, requester: info.requester, level: info.level, ...extra });
  const hint = (error: unknown) => {
    if (error instanceof Error) error.message += ' — the upload is kept on this machine: run the same command again to go on (only what is missing goes up), or add --restart to start over';
    return error;
  };
  /** The kept upload turned out to be sent already (the command ended between the send and forgetting it). */
  const sentAlready = async (transferId: string) => {
    await forgetUpload(dir!, parsed.requestId);
    onProgress(`the upload kept here was sent already (${transferId}); nothing more was sent`);
    return done(transferId, { alreadySent: true });
  };
  if (dir && kept && restart) {
    const gone = await call(server, 'POST', `/api/v1/u/${parsed.requestId}/transfers/${kept.transferId}/withdraw`, { secret: parsed.secret }).then(
      () => undefined,
      (error: unknown) => draftGone(error) ?? Promise.reject(error),
    );
    if (gone === 'sent') return sentAlready(kept.transferId);
    await forgetUpload(dir, parsed.requestId);
    onProgress('the interrupted upload was given up (what had arrived is deleted); sending anew');
  } else if (dir && kept) {
    try {
      const sent = await resumeUpload(server, via, info, kept, input.files, onProgress);
      await forgetUpload(dir, parsed.requestId);
      return done(sent.id);
    } catch (error) {
      const gone = draftGone(error);
      if (!gone) throw hint(error);
      if (gone === 'sent') return sentAlready(kept.transferId);
      await forgetUpload(dir, parsed.requestId);
      onProgress('the upload kept here is gone from the server (given up or expired); sending anew');
    }
  }
  let keptNow = false;
  const keep = dir
    ? async (d: Draft) => {
        await keepUpload(dir, {
          version: 1,
          requestId: parsed.requestId,
          transferId: d.transferId,
          level: info.level,
          recipientId: d.recipientId,
          files: d.files.map((f) => ({ id: f.id, name: f.name, size: f.size, key: toBase64Url(f.key) })),
          ...(d.bundle ? { bundle: { id: d.bundle.id, key: toBase64Url(d.bundle.key) } } : {}),
          createdAt: new Date().toISOString(),
        });
        keptNow = true;
      }
    : undefined;
  let sent: Sent;
  try {
    sent = await sendTransfer(server, { to: [], subject: input.subject, message: input.message, level: info.level, expiresAt: '', files: input.files }, onProgress, { ...via, from: input.from, keep });
  } catch (error) {
    throw keptNow ? hint(error) : error;
  }
  if (dir) await forgetUpload(dir, parsed.requestId);
  return done(sent.id);
}

/** One recipient of one of your transfers, found by the address it was sent to (as `tresor transfer list` shows it). */
async function recipientOf(remote: TransferRemote, transferId: string, recipientEmail: string) {
  const list = await call<{ id: string; recipients: { id: string; email: string; keyState: string; pendingFingerprint: string | null }[] }[]>(remote, 'GET', '/api/v1/transfers');
  const r = list.find((x) => x.id === transferId)?.recipients.find((x) => x.email === recipientEmail.trim().toLowerCase());
  if (!r) throw new DomainError('NOT_FOUND', 'no such transfer or recipient');
  return r;
}

/** Mails one recipient of a sent transfer a new link (the earlier one stops opening): what became of the mail. */
export async function notifyAgain(remote: TransferRemote, transferId: string, recipientEmail: string): Promise<MailCounts> {
  const r = await recipientOf(remote, transferId, recipientEmail);
  return call<MailCounts>(remote, 'POST', `/api/v1/transfers/${transferId}/recipients/${r.id}/notify`);
}

/** Approves a recipient's new key: re-wraps every file key of the transfer for it. */
export async function approveKey(remote: TransferRemote, transferId: string, recipientEmail: string, typedFingerprint: string, secupass: string) {
  // As read out by the recipient: case, spaces and dashes do not matter, all 64 digits do.
  const expectedFingerprint = canonicalFingerprint(typedFingerprint);
  if (expectedFingerprint === undefined) throw new DomainError('VALIDATION', 'a fingerprint has 64 hex digits in 16 groups of 4, as `tresor secupass` prints it (case, spaces and dashes do not matter)');
  const r = await recipientOf(remote, transferId, recipientEmail);
  if (r.keyState !== 'approval-needed' || r.pendingFingerprint !== expectedFingerprint) throw new DomainError('CONFLICT', `the recipient's key waiting for approval has the fingerprint ${r.pendingFingerprint ?? '(none)'}, not ${expectedFingerprint}`);
  const { keys } = await call<{ keys: Record<string, { publicKey: string; fingerprint: string } | null> }>(remote, 'POST', '/api/v1/e2e/keys', { emails: [r.email] });
  const theirs = keys[r.email];
  if (!theirs) throw new DomainError('NOT_FOUND', 'the recipient has no key');
  const publicKey = await decodePublicKey(theirs.publicKey);
  if (!(await fingerprintMatches(publicKey, expectedFingerprint))) throw new DomainError('CONFLICT', 'the key the server offers does not have the fingerprint you approved: refusing');
  const own = await myPrivateKey(remote, secupass);
  const mine = await call<{ fileId: string; wrapped: string }[]>(remote, 'GET', `/api/v1/transfers/${transferId}/sender-wraps`);
  const wraps = [];
  for (const w of mine) {
    const fileKey = await unwrapFileKey(fromBase64Url(w.wrapped), own.privateKey, fileContext(transferId, w.fileId));
    wraps.push({ fileId: w.fileId, wrapped: toBase64Url(await wrapFileKey(fileKey, publicKey, fileContext(transferId, w.fileId))) });
  }
  await call(remote, 'POST', `/api/v1/transfers/${transferId}/recipients/${r.id}/approve`, { fingerprint: expectedFingerprint, wraps });
}

/** Parses a recipient link: `<url>/app/r/<recipientId>#s=<secret>[&fp=<fingerprint>]`. */
export function parseTransferLink(link: string): { base: string; recipientId: string; secret: string; fingerprint?: string } {
  let url: URL;
  try {
    url = new URL(link);
  } catch {
    throw new DomainError('VALIDATION', 'the link must be the full https://…/app/r/…#s=… link from the mail');
  }
  const match = /^\/app\/r\/([0-9a-f-]{36})$/.exec(url.pathname);
  const fragment = new URLSearchParams(url.hash.slice(1));
  const secret = fragment.get('s');
  if (!match || !secret) throw new DomainError('VALIDATION', 'the link must be the full https://…/app/r/…#s=… link from the mail');
  const fp = fragment.get('fp');
  return { base: url.origin, recipientId: match[1]!, secret, ...(fp ? { fingerprint: fp } : {}) };
}

interface Opened {
  transferId: string;
  level: number;
  subject: string;
  message: string | null;
  sender: string;
  files: { id: string; name: string | null; size: number; wrapped?: string; fingerprint?: string }[];
  bundle?: { id: string; wrapped?: string; fingerprint?: string };
  keyState: string;
  downloadToken: string;
}

/** A file name from the sender, made safe for the local file system (no path, no control characters). */
const safeName = (name: string, fallback: string) => {
  const cleaned = basename(name.replace(/[\u0000-\u001f\\/]/g, '_')).replace(/^\.+/, '_').slice(0, 200);
  return cleaned === '' ? fallback : cleaned;
};

/** Opens a link and saves every file into `outDir` (written under a temporary name, renamed when complete). */
export async function receiveTransfer(remote: Omit<TransferRemote, 'url'> & { url?: string | undefined }, link: string, opts: { outDir: string; email?: string | undefined; secupass?: string | undefined }, onProgress: (line: string) => void = () => undefined) {
  const parsed = parseTransferLink(link);
  const server: TransferRemote = { ...remote, url: remote.url ?? parsed.base };
  const opened = await call<Opened>(server, 'POST', `/api/v1/r/${parsed.recipientId}/open`, { secret: parsed.secret, ...(opts.email ? { email: opts.email } : {}) });
  let privateKey: E2ePrivateKey | undefined;
  let names = opened.files.map((f) => f.name);
  let message = opened.message;
  const keyFor = async (file: { id: string; wrapped?: string; fingerprint?: string }) => {
    if (!file.wrapped || !privateKey) throw new DomainError('CONFLICT', 'no key for this file yet');
    return unwrapFileKey(fromBase64Url(file.wrapped), privateKey, fileContext(opened.transferId, file.id));
  };
  if (opened.level >= 3) {
    if (opened.keyState === 'none') throw new DomainError('CONFLICT', 'this transfer is end-to-end encrypted: create your SecuPass key (`tresor secupass init`), then the sender approves it');
    if (opened.keyState !== 'ok') throw new DomainError('CONFLICT', 'your key waits for the sender\'s approval; you get a mail when the files can be opened');
    if (!opts.secupass) throw new DomainError('VALIDATION', 'this transfer is end-to-end encrypted: give your SecuPass key (TRESOR_SECUPASS or the prompt)');
    const own = await myPrivateKey(server, opts.secupass);
    // The key must be the one the sender used: the link's fingerprint, or a newer key the sender approved.
    // (A key other than the link's is fine only when the sender approved it: then the wraps are for it.)
    const wrappedFor = opened.files[0]?.fingerprint;
    if (wrappedFor !== own.fingerprint) {
      throw new DomainError('CONFLICT', `the files are not wrapped for your key ${own.fingerprint}${parsed.fingerprint ? ` (the link expects ${parsed.fingerprint})` : ''}: refusing`);
    }
    privateKey = own.privateKey;
    if (opened.bundle) {
      const res = await call<Readable>(server, 'GET', `/api/v1/r/${parsed.recipientId}/files/${opened.bundle.id}?token=${opened.downloadToken}`, undefined, { stream: true });
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const bundle = decodeBundle(await decryptBytes(await keyFor(opened.bundle), fileContext(opened.transferId, opened.bundle.id), new Uint8Array(Buffer.concat(chunks))));
      message = bundle.message;
      names = bundle.names;
    }
  }
  await mkdir(opts.outDir, { recursive: true });
  const saved: { name: string; path: string; size: number }[] = [];
  for (const [i, f] of opened.files.entries()) {
    const name = safeName(names[i] ?? `file-${i + 1}`, `file-${i + 1}`);
    const path = join(opts.outDir, name);
    const partial = `${path}.part`;
    // Levels 1/2 too are fetched as stored ciphertext with their file key and decrypted here, so the server
    // runs AES once (TLS) instead of twice; the plaintext route stays for clients without the e2e format.
    const res = await call<Readable & { headers: Record<string, string | string[] | undefined> }>(server, 'GET', `/api/v1/r/${parsed.recipientId}/files/${f.id}?token=${opened.downloadToken}${opened.level >= 3 ? '' : '&encrypted=true'}`, undefined, { stream: true });
    try {
      let key: Uint8Array;
      if (opened.level >= 3) key = await keyFor(f);
      else {
        const sent = res.headers['x-tresor-file-key'];
        if (typeof sent !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(sent)) throw new DomainError('CONFLICT', `${name}: the server sent no file key`);
        key = new Uint8Array(Buffer.from(sent, 'base64url'));
      }
      await pipeline(res, decryptTransform(key, fileContext(opened.transferId, f.id)), createWriteStream(partial, { mode: 0o600 }));
      key.fill(0);
      const size = (await stat(partial)).size;
      if (size !== f.size) throw new DomainError('CONFLICT', `${name}: received ${size} bytes, expected ${f.size}`);
      await rename(partial, path);
      saved.push({ name, path, size });
      onProgress(`${name}: ${size} bytes`);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }
  return { transferId: opened.transferId, level: opened.level, subject: opened.subject, sender: opened.sender, message, files: saved };
}

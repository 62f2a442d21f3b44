/**
 * The browser side of the secure exchange (docs/transfers.md): API types, the chunked and resumable
 * upload of ciphertext, the SecuPass key (created, sealed and opened only here), and downloads that the
 * service worker (sw.ts) decrypts as they stream. Every byte of a file is encrypted before it leaves the
 * browser with the isomorphic module of docs/e2e-format.md.
 */
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { api, ApiError } from './api.js';
import { rememberToken, requestTokenHeader } from './records.js';
import {
  ciphertextSize,
  createHeader,
  decryptBytes,
  encodePublicKey,
  encryptBytes,
  encryptStreamWithHeader,
  fingerprint,
  fromBase64Url,
  generateKeyPair,
  MANIFEST_PIECE,
  manifestMatches,
  openPrivateKey,
  sealManifest,
  sealPrivateKey,
  toBase64Url,
  toHex,
  type E2ePrivateKey,
} from '../../src/shared-e2e/index.js';

// ---- API shapes -------------------------------------------------------------------------------------

export type Level = 1 | 2 | 3 | 4;
export type KeyState = 'none' | 'ok' | 'pending-key' | 'approval-needed';

export interface CreatedTransfer {
  id: string;
  files: { id: string; name: string | null; size: number; cipherSize: number }[];
  bundleId?: string;
  recipients: { id: string; email: string; publicKey?: string; fingerprint?: string }[];
}

export interface SentRecipient {
  id: string;
  email: string;
  state: 'draft' | 'notified' | 'opened' | 'downloaded';
  downloads: number;
  keyState: KeyState;
  pendingFingerprint?: string | null;
}

export interface SentTransfer {
  id: string;
  subject: string;
  level: Level;
  createdAt: string;
  expiresAt: string;
  sentAt: string | null;
  withdrawnAt: string | null;
  downloadLimit: number | null;
  /** Uploaded through a "request files" link: who says they sent it. */
  from: string | null;
  /** Whether you sent it (a DPO's list holds the whole tenant's). */
  mine?: boolean;
  files: { id: string; name: string | null; size: number; cipherSize: number; received: number }[];
  recipients: SentRecipient[];
}

/** GET /api/v1/transfers/:id/resume: what an unsent transfer holds, to go on with it from a fresh start. */
export interface ResumeState {
  id: string;
  level: Level;
  files: { id: string; kind: 'file' | 'bundle'; name?: string | null; size: number; cipherSize: number; received: number; header?: string; pieces: string[]; manifest?: string; content?: string; fileKey?: string }[];
  recipients: { id: string; email: string; fingerprint?: string; publicKey?: string }[];
}

export interface OpenedFile {
  id: string;
  name: string | null;
  size: number;
  cipherSize: number;
  wrapped?: string;
  fingerprint?: string;
}

export interface OpenedTransfer {
  transferId: string;
  level: Level;
  subject: string;
  message: string | null;
  sender: string;
  expiresAt: string;
  downloadsLeft: number | null;
  files: OpenedFile[];
  bundle?: { id: string; cipherSize: number; wrapped?: string; fingerprint?: string };
  keyState: KeyState;
  downloadToken: string;
}

export interface OwnKey {
  publicKey: string;
  fingerprint: string;
  sealedPrivateKey: string;
  createdAt: string;
}

/** The context string of a file (and of its wrapped key), the same for every level and client. */
export const fileContext = (transferId: string, fileId: string) => `transfer:${transferId}/file:${fileId}`;

export const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

export function formatSize(bytes: number, language: 'de' | 'en'): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 ? 0 : value < 10 ? 1 : 0;
  return `${value.toLocaleString(language === 'de' ? 'de-DE' : 'en-GB', { maximumFractionDigits: digits, minimumFractionDigits: digits })} ${units[unit]}`;
}

// ---- upload: ciphertext in 8 MiB pieces, resumable -----------------------------------------------------

/** Bytes per upload request. */
export const UPLOAD_CHUNK = MANIFEST_PIECE;
const RETRIES = 4;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function errorOf(response: Response): Promise<ApiError & { received?: number }> {
  const body = (await response.json().catch(() => ({}))) as { code?: string; message?: string; details?: { received?: number } };
  return Object.assign(new ApiError(response.status, body.code ?? 'ERROR', body.message ?? response.statusText), body.details?.received !== undefined ? { received: body.details.received } : {});
}

/**
 * PUTs one piece of ciphertext at `base`. A piece that fails (network, 5xx, or the server holding a
 * different count) is resumed from the byte count the server reports (GET …/status), up to a few times.
 */
/** Where pieces go: the sender's own transfer (session), or an upload through a "request files" link (its secret). */
export interface UploadVia {
  requestId: string;
  secret: string;
}

async function putPiece(transferId: string, fileId: string, base: number, piece: Blob, via?: UploadVia, from = 0): Promise<void> {
  let start = from;
  for (let attempt = 0; ; attempt++) {
    let failure: unknown;
    try {
      const url = via ? `/api/v1/u/${via.requestId}/transfers/${transferId}/blobs/${fileId}` : `/api/v1/transfers/${transferId}/blobs/${fileId}`;
      const response = await fetch(`${url}?offset=${base + start}`, {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/octet-stream', ...(via ? { 'x-tresor-request-secret': via.secret } : requestTokenHeader()) },
        body: start === 0 ? piece : piece.slice(start),
      });
      if (!via) rememberToken(response);
      if (response.ok) return;
      failure = await errorOf(response);
      // An upload through a request link learns where to go on from the refusal itself.
      const received = (failure as ApiError & { received?: number }).received;
      if (via && response.status === 409 && typeof received === 'number') {
        if (received < base || received > base + piece.size) throw new Error(`upload out of step: the server holds ${received} bytes`);
        if (received === base + piece.size) return;
        start = received - base;
        continue;
      }
      // A refusal that a retry cannot mend (not allowed, not found, too large, a locked session).
      if (response.status !== 409 && response.status < 500) throw failure;
    } catch (error) {
      if (error instanceof ApiError && error.status !== 409 && error.status < 500) throw error;
      failure = error;
    }
    if (attempt >= RETRIES) throw failure instanceof Error ? failure : new Error(String(failure));
    await sleep(300 * (attempt + 1));
    if (via) continue; // (no status call for a link holder: the next refusal says where to go on)
    const { received } = await api<{ received: number; cipherSize: number }>('GET', `/api/v1/transfers/${transferId}/blobs/${fileId}/status`);
    if (received < base || received > base + piece.size) throw new Error(`upload out of step: the server holds ${received} bytes`);
    if (received === base + piece.size) return;
    start = received - base;
  }
}

// ---- the digest list of a file, for uploads that go on after a page reload ---------------------------

/**
 * A fresh header for a file's encryption, stored first with what it is bound to (the manifest of
 * docs/e2e-format.md §3.0, encrypted under the file key): call before the file's first byte, then encrypt
 * with `encryptStreamWithHeader`. One header, one plaintext: AES-GCM must never see two under one nonce.
 */
export async function newUploadHeader(transferId: string, fileId: string, fileKey: Uint8Array, file: Blob, via?: UploadVia): Promise<Uint8Array> {
  const context = fileContext(transferId, fileId);
  const header = await createHeader(fileKey, context);
  const manifest = toBase64Url(await sealManifest(fileKey, context, header, file));
  if (via) await api('PUT', `/api/v1/u/${via.requestId}/transfers/${transferId}/blobs/${fileId}/manifest`, { secret: via.secret, manifest });
  else await api('PUT', `/api/v1/transfers/${transferId}/blobs/${fileId}/manifest`, { manifest });
  return header;
}

/**
 * Whether the stored manifest names `header` and `file` gives its digests (false also for a manifest that
 * does not open under the key: the server cannot make one up).
 */
export async function sameAsManifest(transferId: string, fileId: string, fileKey: Uint8Array, manifest: string, header: Uint8Array, file: Blob): Promise<boolean> {
  let sealed: Uint8Array;
  try {
    sealed = fromBase64Url(manifest);
  } catch {
    return false;
  }
  return manifestMatches(fileKey, fileContext(transferId, fileId), sealed, header, file);
}

/** What the server holds of a file already (GET …/resume): its bytes so far and a SHA-256 (hex) per `UPLOAD_CHUNK` of them. */
export interface Arrived {
  received: number;
  pieces: string[];
}

/** Bytes the server holds of a file are not what the stream gives for them. */
export class HeldBytesDifferError extends Error {}

/**
 * Reads an (encrypted) stream and uploads it in pieces of `UPLOAD_CHUNK` bytes; the next piece is
 * encrypted while the last one travels, so at most two pieces are held: memory stays constant whatever
 * the file size. Pieces go as Blobs, not as the bytes themselves: Chromium hands a Blob to its network
 * process in large shared-memory pieces, while an ArrayBuffer body is copied through slowly (measured:
 * 8 MiB in 250–450 ms as bytes, about 50 ms as a Blob). With `arrived`, the pieces the server holds are
 * compared with the stream's instead of sent (HeldBytesDifferError if one differs), and the upload goes on
 * where the server's bytes end.
 */
export async function uploadStream(
  transferId: string,
  fileId: string,
  cipher: ReadableStream<Uint8Array>,
  cipherSize: number,
  onProgress: (sent: number) => void,
  via?: UploadVia,
  arrived?: Arrived,
): Promise<void> {
  const reader = cipher.getReader();
  const piece = new Uint8Array(Math.max(1, Math.min(UPLOAD_CHUNK, cipherSize)));
  let pending: Uint8Array = new Uint8Array(0);
  let sent = 0;
  let ended = false;
  let inFlight: Promise<void> | undefined;
  try {
    while (!ended || pending.length > 0) {
      let fill = 0;
      while (fill < piece.length) {
        if (pending.length === 0) {
          if (ended) break;
          const next = await reader.read();
          if (next.done) {
            ended = true;
            break;
          }
          pending = next.value;
        }
        const take = Math.min(piece.length - fill, pending.length);
        piece.set(pending.subarray(0, take), fill);
        fill += take;
        pending = pending.subarray(take);
      }
      if (fill === 0) break;
      if (sent + fill > cipherSize) throw new Error('the encrypted file is larger than announced');
      // Going on after a fresh start: the server holds this piece (or its beginning) already. It must be
      // exactly what the file gives again, or the rest would be spliced onto another file's beginning.
      let from = 0;
      if (arrived && sent < arrived.received) {
        const held = Math.min(fill, arrived.received - sent);
        const expected = arrived.pieces[sent / piece.length];
        if (expected === undefined || toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', piece.subarray(0, held)))) !== expected) throw new HeldBytesDifferError(`bytes ${sent}–${sent + held} differ from those uploaded`);
        if (held === fill) {
          sent += fill;
          onProgress(sent);
          continue;
        }
        from = held;
      }
      // The Blob holds its own copy: `piece` is free to take the next piece while this one is sent.
      const blob = new Blob([piece.subarray(0, fill)]);
      await inFlight;
      const base = sent;
      sent += fill;
      inFlight = putPiece(transferId, fileId, base, blob, via, from).then(() => onProgress(base + fill));
      inFlight.catch(() => undefined); // handled: the next await (or the one after the loop) throws it
    }
    await inFlight;
  } finally {
    await inFlight?.catch(() => undefined);
    reader.releaseLock();
  }
  if (sent !== cipherSize) throw new Error(`the encrypted file has ${sent} bytes, not ${cipherSize}`);
}

// ---- going on with a draft from a fresh start (the sender's page, or an outsider's through a request link) --

/** A file of a draft as the server reports it for going on (GET …/resume, or POST …/resume through a link). */
export type ResumeFile = ResumeState['files'][number];

export interface ResumePlan {
  f: ResumeFile;
  /** Its place among the draft's files (not counting the level-4 bundle). */
  index: number;
  file: File;
}

/**
 * Whether a draft's open uploads cannot be continued at all: the level-4 bundle (message and names) cannot
 * be made again, nor can a header cut short or a file without its digest list; and a ciphertext size that
 * is not the one of the file's size is no upload this format made.
 */
export const cannotGoOn = (open: ResumeFile[]) =>
  open.some((f) => f.kind === 'bundle' || f.cipherSize !== ciphertextSize(f.size) || (f.received > 0 && (f.header === undefined || f.manifest === undefined)));

/**
 * Which chosen file goes on with which unfinished upload: by name and size, so two files of one size
 * chosen in another order each go on under their own name (a file whose name is not known: by size).
 * `missing` lists the uploads no chosen file fits.
 */
export function matchChosen(open: ResumeFile[], files: ResumeFile[], nameOf: (f: ResumeFile, index: number) => string | null, chosen: File[]): { plan: ResumePlan[]; missing: { f: ResumeFile; index: number }[] } {
  const left = [...chosen];
  const plan: ResumePlan[] = [];
  const missing: { f: ResumeFile; index: number }[] = [];
  for (const f of open) {
    const index = files.indexOf(f);
    const name = nameOf(f, index);
    const at = left.findIndex((c) => c.size === f.size && (name === null || c.name === name));
    if (at < 0) missing.push({ f, index });
    else plan.push({ f, index, file: left.splice(at, 1)[0]! });
  }
  return { plan, missing };
}

/**
 * The first planned file with bytes on the server that is not the one its header was used for (its
 * manifest), or undefined. Checked before anything goes up: the same key and nonces encrypt the file
 * again, and another file would give the server two plaintexts under one nonce for what it received but
 * says it did not. A refusal leaves the server as it was.
 */
export async function firstChanged(transferId: string, plan: ResumePlan[], keys: Map<string, Uint8Array>): Promise<ResumePlan | undefined> {
  for (const p of plan) {
    if (p.f.received === 0) continue;
    if (p.f.header === undefined || p.f.manifest === undefined) return p;
    if (!(await sameAsManifest(transferId, p.f.id, keys.get(p.f.id)!, p.f.manifest, fromBase64Url(p.f.header), p.file))) return p;
  }
  return undefined;
}

/**
 * Uploads the rest of each planned file: where bytes arrived, encrypted again under the stored header (the
 * same bytes again, compared with what the server holds: HeldBytesDifferError if they differ); where none
 * did, under a fresh header (new salt, new nonces) stored with its manifest first.
 */
export async function uploadRest(transferId: string, plan: ResumePlan[], keys: Map<string, Uint8Array>, onProgress: (item: number, sent: number) => void, via?: UploadVia): Promise<void> {
  for (const [i, p] of plan.entries()) {
    const context = fileContext(transferId, p.f.id);
    const key = keys.get(p.f.id)!;
    const header = p.f.received > 0 ? fromBase64Url(p.f.header!) : await newUploadHeader(transferId, p.f.id, key, p.file, via);
    const arrived = p.f.received > 0 ? { received: p.f.received, pieces: p.f.pieces } : undefined;
    await uploadStream(transferId, p.f.id, encryptStreamWithHeader(key, context, p.file.stream(), header), p.f.cipherSize, (sent) => onProgress(i, sent), via, arrived);
  }
}

// ---- SecuPass ------------------------------------------------------------------------------------------

export async function ownKey(): Promise<OwnKey | undefined> {
  try {
    return await api<OwnKey>('GET', '/api/v1/e2e/key');
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return undefined;
    throw error;
  }
}

const base64 = (bytes: Uint8Array) => btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(''));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/**
 * Argon2id of the SecuPass with the salt and parameters of the login hash: the server compares it with
 * the stored hash to refuse a SecuPass equal to the password, without ever seeing either.
 */
export async function loginCheck(secupass: string): Promise<string> {
  const p = await api<{ salt: string; memoryKib: number; iterations: number; parallelism: number; hashLength?: number }>('GET', '/api/v1/e2e/login-salt');
  const raw = await argon2idAsync(new TextEncoder().encode(secupass), fromBase64(p.salt), { m: p.memoryKib, t: p.iterations, p: p.parallelism, dkLen: p.hashLength ?? 32, asyncTick: 20 });
  return base64(raw);
}

export type KeyStage = 'check' | 'generate' | 'seal' | 'store';

/** Creates (or resets) the account's key pair: the private key leaves the browser only sealed under the SecuPass. */
export async function createSecuPassKey(secupass: string, onStage: (stage: KeyStage) => void): Promise<{ fingerprint: string; reset: boolean; pendingApprovals: number }> {
  onStage('check');
  const check = await loginCheck(secupass);
  onStage('generate');
  const pair = await generateKeyPair();
  onStage('seal');
  const sealedPrivateKey = await sealPrivateKey(pair.privateKey, secupass);
  onStage('store');
  const own = await fingerprint(pair.publicKey);
  const result = await api<{ fingerprint: string; reset: boolean; pendingApprovals: number }>('PUT', '/api/v1/e2e/key', { publicKey: encodePublicKey(pair.publicKey), sealedPrivateKey, loginCheck: check });
  if (result.fingerprint.toLowerCase() !== own) throw new Error('the server reports another fingerprint than the key just created');
  return { ...result, fingerprint: own };
}

/** Opens the account's sealed private key with the SecuPass; checks it belongs to the published public key. */
export async function openOwnKey(secupass: string): Promise<{ privateKey: E2ePrivateKey; fingerprint: string }> {
  const key = await ownKey();
  if (!key) throw new ApiError(404, 'NOT_FOUND', 'no SecuPass key');
  const privateKey = await openPrivateKey(key.sealedPrivateKey, secupass);
  if (encodePublicKey(privateKey.publicKey) !== key.publicKey) throw new Error('the sealed key does not belong to the published public key');
  return { privateKey, fingerprint: await fingerprint(privateKey.publicKey) };
}

// ---- return after login (recipient links) -------------------------------------------------------------

const RETURN_KEY = 'tresor.transfer-return';

/** Keeps a recipient link (path and fragment values) for this tab, to come back after login or registration. */
export function rememberReturn(path: string, secret: string, fp: string | undefined): void {
  sessionStorage.setItem(RETURN_KEY, JSON.stringify({ path, s: secret, ...(fp ? { fp } : {}) }));
}

export function returnPath(): string | undefined {
  try {
    const saved = JSON.parse(sessionStorage.getItem(RETURN_KEY) ?? 'null') as { path?: string } | null;
    return typeof saved?.path === 'string' && saved.path.startsWith('/app/r/') ? saved.path : undefined;
  } catch {
    return undefined;
  }
}

/** The saved link values for `path`, removed from storage once taken. */
export function takeReturn(path: string): { s: string; fp?: string } | undefined {
  try {
    const saved = JSON.parse(sessionStorage.getItem(RETURN_KEY) ?? 'null') as { path?: string; s?: string; fp?: string } | null;
    if (saved?.path !== path || typeof saved.s !== 'string') return undefined;
    sessionStorage.removeItem(RETURN_KEY);
    return { s: saved.s, ...(typeof saved.fp === 'string' ? { fp: saved.fp } : {}) };
  } catch {
    return undefined;
  }
}

// ---- downloads decrypted by the service worker -------------------------------------------------------

let registration: Promise<ServiceWorkerRegistration> | undefined;

async function activeWorker(): Promise<ServiceWorker> {
  if (!('serviceWorker' in navigator)) throw new Error('no service worker');
  registration ??= navigator.serviceWorker.register('/sw.js', { scope: '/app/' }).then(() => navigator.serviceWorker.ready);
  let ready: ServiceWorkerRegistration;
  try {
    ready = await registration;
  } catch (error) {
    registration = undefined; // try again at the next download
    throw error;
  }
  if (!ready.active) throw new Error('the service worker is not active');
  return ready.active;
}

/** Registers the service worker early (it must be active before the first download). */
export function prepareServiceWorker(): Promise<unknown> {
  return activeWorker();
}

export type DownloadState = { state: 'started' } | { state: 'done'; bytes: number } | { state: 'error'; message: string };

/**
 * Hands the file key to the service worker and lets a hidden frame open the worker's one-time URL: the
 * worker fetches the ciphertext, decrypts it record by record and answers as an attachment, so the file
 * never sits whole in memory.
 */
export async function downloadThroughWorker(job: { url: string; fileKey: Uint8Array | 'from-response'; context: string; name: string; size: number }, onState: (state: DownloadState) => void): Promise<void> {
  const worker = await activeWorker();
  const id = toBase64Url(crypto.getRandomValues(new Uint8Array(18)));
  const channel = new MessageChannel();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the service worker did not answer')), 10_000);
    channel.port1.onmessage = (event: MessageEvent<{ state: string; bytes?: number; message?: string }>) => {
      const data = event.data;
      if (data.state === 'ready') {
        clearTimeout(timer);
        resolve();
      } else if (data.state === 'started') onState({ state: 'started' });
      else if (data.state === 'done') onState({ state: 'done', bytes: data.bytes ?? 0 });
      else if (data.state === 'error') onState({ state: 'error', message: data.message ?? 'error' });
    };
    const key = job.fileKey === 'from-response' ? { keyFromResponse: true } : { fileKey: job.fileKey };
    worker.postMessage({ type: 'tresor-download', id, url: job.url, ...key, context: job.context, name: job.name, size: job.size }, [channel.port2]);
  });
  const frame = document.createElement('iframe');
  frame.className = 'download-frame';
  frame.setAttribute('aria-hidden', 'true');
  frame.tabIndex = -1;
  frame.src = `/app/sw-download/${id}`;
  document.body.appendChild(frame);
  // The frame only starts the download; it is removed long after the browser took the response over.
  setTimeout(() => frame.remove(), 10 * 60_000);
}

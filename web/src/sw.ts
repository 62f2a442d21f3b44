/**
 * Tresor's service worker (scope /app/): it only answers its own one-time download URLs
 * (/app/sw-download/<id>) by fetching a transfer file's ciphertext and decrypting it record by record
 * (docs/e2e-format.md) as it streams, as an attachment. Every other request goes to the network untouched
 * (no respondWith). The file key arrives by postMessage from the page and is forgotten after use.
 *
 * Built as its own classic script at /sw.js (web/vite.config.ts). Typed with local minimal interfaces,
 * since the web app's configuration uses the DOM library, not the WebWorker one.
 */
import { decryptStream, fromBase64Url, plaintextSize } from '../../src/shared-e2e/index.js';

interface ExtendableEventLike extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface FetchEventLike extends Event {
  readonly request: Request;
  respondWith(response: Promise<Response> | Response): void;
}
interface MessageEventLike extends Event {
  readonly data: unknown;
  readonly origin: string;
  readonly ports: readonly MessagePort[];
}
interface WorkerScope {
  readonly location: Location;
  readonly clients: { claim(): Promise<void> };
  skipWaiting(): Promise<void>;
  addEventListener(type: 'install' | 'activate', listener: (event: ExtendableEventLike) => void): void;
  addEventListener(type: 'fetch', listener: (event: FetchEventLike) => void): void;
  addEventListener(type: 'message', listener: (event: MessageEventLike) => void): void;
}

const scope = self as unknown as WorkerScope;
const PREFIX = '/app/sw-download/';
/** A job not fetched within this time is dropped with its key. */
const JOB_TTL_MS = 60_000;

interface Job {
  url: string;
  /** Levels 3/4: the key the page opened. Levels 1/2: none here; it comes with the ciphertext (x-tresor-file-key). */
  fileKey: Uint8Array | undefined;
  context: string;
  name: string;
  size: number;
  port: MessagePort;
}
const jobs = new Map<string, Job>();

scope.addEventListener('install', (event) => event.waitUntil(scope.skipWaiting()));
scope.addEventListener('activate', (event) => event.waitUntil(scope.clients.claim()));

function parseJob(data: unknown, port: MessagePort | undefined): { id: string; job: Job } | undefined {
  if (!port || typeof data !== 'object' || data === null) return undefined;
  const d = data as Record<string, unknown>;
  if (d.type !== 'tresor-download' || typeof d.id !== 'string' || !/^[A-Za-z0-9_-]{16,64}$/.test(d.id)) return undefined;
  if (typeof d.url !== 'string' || typeof d.context !== 'string' || typeof d.name !== 'string' || typeof d.size !== 'number') return undefined;
  const keyFromResponse = d.fileKey === undefined && d.keyFromResponse === true;
  if (!keyFromResponse && (!(d.fileKey instanceof Uint8Array) || d.fileKey.length !== 32)) return undefined;
  // Only the transfer API of this origin: the worker fetches nothing else on a page's behalf.
  const url = new URL(d.url, scope.location.origin);
  if (url.origin !== scope.location.origin || !url.pathname.startsWith('/api/v1/r/')) return undefined;
  return { id: d.id, job: { url: url.pathname + url.search, fileKey: keyFromResponse ? undefined : (d.fileKey as Uint8Array), context: d.context, name: d.name, size: d.size, port } };
}

scope.addEventListener('message', (event) => {
  if (event.origin !== '' && event.origin !== scope.location.origin) return;
  const parsed = parseJob(event.data, event.ports[0]);
  if (!parsed) return;
  jobs.set(parsed.id, parsed.job);
  setTimeout(() => {
    const job = jobs.get(parsed.id);
    if (job === parsed.job) {
      jobs.delete(parsed.id);
      job.fileKey?.fill(0);
    }
  }, JOB_TTL_MS);
  parsed.job.port.postMessage({ state: 'ready' });
});

scope.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== scope.location.origin || !url.pathname.startsWith(PREFIX) || event.request.method !== 'GET') return; // to the network
  const id = url.pathname.slice(PREFIX.length);
  const job = jobs.get(id);
  jobs.delete(id); // one use
  event.respondWith(job ? serve(job) : new Response('This download link has expired. / Dieser Download-Link ist abgelaufen.', { status: 410, headers: { 'content-type': 'text/plain; charset=utf-8' } }));
});

/** `attachment` with an ASCII fallback and the UTF-8 name (RFC 6266 / 8187). */
function disposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_') || 'download';
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

async function serve(job: Job): Promise<Response> {
  const { port } = job;
  let response: Response;
  try {
    response = await fetch(job.url, { credentials: 'same-origin', cache: 'no-store' });
  } catch (error) {
    port.postMessage({ state: 'error', message: error instanceof Error ? error.message : String(error) });
    return new Response(null, { status: 502 });
  }
  if (!response.ok || !response.body) {
    const body = (await response.json().catch(() => ({}))) as { message?: string };
    port.postMessage({ state: 'error', message: body.message ?? `HTTP ${response.status}` });
    return new Response(null, { status: response.status });
  }
  const length = Number(response.headers.get('content-length') ?? NaN);
  let plainLength: number | undefined;
  try {
    plainLength = Number.isFinite(length) ? plaintextSize(length) : undefined;
  } catch {
    plainLength = undefined;
  }
  let fileKey = job.fileKey;
  if (!fileKey) {
    const sent = response.headers.get('x-tresor-file-key') ?? '';
    fileKey = /^[A-Za-z0-9_-]{43}$/.test(sent) ? fromBase64Url(sent) : undefined;
    if (!fileKey || fileKey.length !== 32) {
      void response.body.cancel();
      port.postMessage({ state: 'error', message: 'the server sent no file key' });
      return new Response(null, { status: 502 });
    }
  }
  const reader = decryptStream(fileKey, job.context, response.body).getReader();
  fileKey.fill(0); // decryptStream keeps its own copy until it has read the header
  let bytes = 0;
  port.postMessage({ state: 'started' });
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await reader.read();
        if (next.done) {
          controller.close();
          port.postMessage({ state: 'done', bytes });
          return;
        }
        bytes += next.value.length;
        controller.enqueue(next.value);
      } catch (error) {
        // The browser's download fails (and keeps no complete file): the whole file is authentic only
        // when the stream ends without error.
        port.postMessage({ state: 'error', message: error instanceof Error ? error.message : String(error) });
        controller.error(error);
      }
    },
    cancel(reason) {
      void reader.cancel(reason);
    },
  });
  const headers: Record<string, string> = {
    'content-type': 'application/octet-stream',
    'content-disposition': disposition(job.name),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  };
  if (plainLength !== undefined) headers['content-length'] = String(plainLength);
  return new Response(body, { status: 200, headers });
}

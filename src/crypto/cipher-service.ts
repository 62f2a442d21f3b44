import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { DomainError } from '../shared/errors.js';
import type { MasterKeyRing } from './master-key.js';

/**
 * The cipher service (DESIGN §3): the only holder of the master key. It seals and opens the values that
 * live under the master key (tenant service components, TOTP secrets, database role passwords, ledger
 * signing keys), each bound to a context (AAD). In-process by default; as its own process
 * (`tresor cipher-service`) it listens on a Unix socket (mode 0600), and servers set `cipher.url =
 * "unix:///path/to/cipher.sock"`: then no server process ever holds the master key.
 */
export interface CipherService {
  readonly where: 'in-process' | string;
  seal(plaintext: Uint8Array, aad: string): Promise<string>;
  open(sealed: string, aad: string): Promise<Buffer>;
  /** The master key versions: the current one seals, all listed ones open. */
  versions(): Promise<{ current: number; versions: number[] }>;
  close(): void;
}

export function localCipherService(ring: MasterKeyRing): CipherService {
  return {
    where: 'in-process',
    seal: async (plaintext, aad) => ring.seal(plaintext, aad),
    open: async (sealed, aad) => ring.open(sealed, aad),
    versions: async () => ({ current: ring.currentVersion, versions: [...ring.versions] }),
    close: () => undefined,
  };
}

export class CipherServiceError extends DomainError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

const MAX_BODY = 64 * 1024;

/** Serves a key ring on a Unix socket that only the owner can reach. */
export async function startCipherServiceServer(ring: MasterKeyRing, socketPath: string): Promise<Server> {
  if (existsSync(socketPath)) rmSync(socketPath); // a stale socket from a previous run
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        if (req.method === 'GET' && req.url === '/v1/versions') return reply(200, { current: ring.currentVersion, versions: ring.versions });
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { plaintext?: unknown; sealed?: unknown; aad?: unknown };
        if (typeof body.aad !== 'string' || body.aad.length > 512) return reply(400, { message: 'aad must be a string of at most 512 characters' });
        if (req.method === 'POST' && req.url === '/v1/seal' && typeof body.plaintext === 'string') {
          return reply(200, { sealed: ring.seal(Buffer.from(body.plaintext, 'base64'), body.aad) });
        }
        if (req.method === 'POST' && req.url === '/v1/open' && typeof body.sealed === 'string') {
          try {
            return reply(200, { plaintext: ring.open(body.sealed, body.aad).toString('base64') });
          } catch {
            return reply(422, { message: 'the sealed value does not open in this context' });
          }
        }
        return reply(404, { message: 'unknown request' });
      } catch {
        return reply(400, { message: 'the request is not valid JSON' });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}

/** The client side: `unix:///path/to/cipher.sock`. */
export function remoteCipherService(url: string): CipherService {
  const parsed = new URL(url);
  if (parsed.protocol !== 'unix:' || parsed.pathname === '') throw new DomainError('CONFIG_INVALID', `cipher.url must look like unix:///path/to/cipher.sock, not ${url}`);
  const socketPath = decodeURIComponent(parsed.pathname);
  const call = <T>(method: 'GET' | 'POST', path: string, body?: unknown) =>
    new Promise<T>((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request({ socketPath, path, method, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const parsedBody = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as T & { message?: string };
          if ((res.statusCode ?? 500) >= 400) reject(new CipherServiceError(`cipher service: ${parsedBody.message ?? res.statusCode}`));
          else resolve(parsedBody);
        });
      });
      req.on('error', (error) => reject(new DomainError('CONFIG_INVALID', `the cipher service at ${socketPath} is not reachable (${(error as NodeJS.ErrnoException).code ?? error.message}); start it with: tresor cipher-service --socket ${socketPath}`)));
      req.end(payload);
    });
  return {
    where: socketPath,
    seal: async (plaintext, aad) => (await call<{ sealed: string }>('POST', '/v1/seal', { plaintext: Buffer.from(plaintext).toString('base64'), aad })).sealed,
    open: async (sealed, aad) => Buffer.from((await call<{ plaintext: string }>('POST', '/v1/open', { sealed, aad })).plaintext, 'base64'),
    versions: () => call('GET', '/v1/versions'),
    close: () => undefined,
  };
}

import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type RequestOptions, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tlsProfile } from '../http/tls.js';
import { DomainError } from '../shared/errors.js';
import type { MasterKeyRing } from './master-key.js';

/**
 * The cipher service (DESIGN §3): the only holder of the master key. It seals and opens the values that
 * live under the master key (tenant service components, TOTP secrets, database role passwords, ledger
 * signing keys), each bound to a context (AAD). In-process by default; as its own process
 * (`tresor cipher-service`) it listens on a Unix socket (mode 0600) for servers on the same host, or on a
 * TCP port with mutual TLS (a private CA; only holders of its client certificate are served) for servers
 * on other hosts. Servers set `cipher.url` to `unix:///path/to/cipher.sock` or `https://host:port`: then
 * no server process ever holds the master key.
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

/** Answers one request of the cipher service protocol (JSON over HTTP, the same on both transports). */
function handleCipherRequest(ring: MasterKeyRing, req: IncomingMessage, res: ServerResponse): void {
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
}

/** Serves a key ring on a Unix socket that only the owner can reach. */
export async function startCipherServiceServer(ring: MasterKeyRing, socketPath: string): Promise<Server> {
  if (existsSync(socketPath)) rmSync(socketPath); // a stale socket from a previous run
  const server = createServer((req, res) => handleCipherRequest(ring, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}

export interface MutualTlsFiles {
  caCertPath: string;
  certPath: string;
  keyPath: string;
}

/**
 * Serves a key ring over mutual TLS (the BSI TR-02102-2 profile of the web server): the handshake fails
 * for a client without a certificate from the service's own CA with extended key usage clientAuth.
 */
export async function startMutualTlsCipherServer(
  ring: MasterKeyRing,
  listen: { host: string; port: number },
  files: MutualTlsFiles,
): Promise<Server & { port: number }> {
  const server = createHttpsServer(
    {
      ...tlsProfile(),
      cert: readFileSync(files.certPath),
      key: readFileSync(files.keyPath),
      ca: readFileSync(files.caCertPath),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => handleCipherRequest(ring, req, res),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}

export interface RemoteCipherOptions {
  /** For https:// URLs: the service's CA, and the client certificate and key it issued. */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** The client side: `unix:///path/to/cipher.sock`, or `https://host:port` with a client certificate. */
export function remoteCipherService(url: string, options: RemoteCipherOptions = {}): CipherService {
  const parsed = new URL(url);
  let target: RequestOptions;
  let send: typeof request;
  let startHint: string;
  let where: string;
  let agent: HttpsAgent | undefined;
  if (parsed.protocol === 'unix:' && parsed.pathname !== '') {
    const socketPath = decodeURIComponent(parsed.pathname);
    target = { socketPath };
    send = request;
    where = socketPath;
    startHint = `tresor cipher-service --socket ${socketPath}`;
  } else if (parsed.protocol === 'https:' && parsed.hostname !== '' && parsed.pathname === '/') {
    const missing = (['caFile', 'certFile', 'keyFile'] as const).filter((name) => (options[name] ?? '') === '');
    if (missing.length > 0) {
      throw new DomainError('CONFIG_INVALID', 'cipher.url is https://…: set cipher.ca_file, cipher.cert_file and cipher.key_file to the files `tresor cipher-service --listen` printed');
    }
    const read = (file: string, what: string) => {
      try {
        return readFileSync(file);
      } catch {
        throw new DomainError('CONFIG_INVALID', `cannot read the cipher service ${what} ${file}`);
      }
    };
    agent = new HttpsAgent({
      keepAlive: true,
      ca: read(options.caFile!, 'CA certificate (cipher.ca_file)'),
      cert: read(options.certFile!, 'client certificate (cipher.cert_file)'),
      key: read(options.keyFile!, 'client key (cipher.key_file)'),
      minVersion: 'TLSv1.2',
    });
    target = { host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(parsed.port || 443), agent };
    send = httpsRequest as unknown as typeof request;
    where = parsed.host;
    startHint = `tresor cipher-service --listen ${parsed.host}`;
  } else {
    throw new DomainError('CONFIG_INVALID', `cipher.url must look like unix:///path/to/cipher.sock or https://host:port, not ${url}`);
  }
  const call = <T>(method: 'GET' | 'POST', path: string, body?: unknown) =>
    new Promise<T>((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = send({ ...target, path, method, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            const parsedBody = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as T & { message?: string };
            if ((res.statusCode ?? 500) >= 400) reject(new CipherServiceError(`cipher service: ${parsedBody.message ?? res.statusCode}`));
            else resolve(parsedBody);
          } catch {
            reject(new CipherServiceError('cipher service: the answer is not valid JSON'));
          }
        });
      });
      req.on('error', (error) =>
        reject(new DomainError('CONFIG_INVALID', `the cipher service at ${where} is not reachable (${(error as NodeJS.ErrnoException).code ?? error.message}); start it with: ${startHint}`)),
      );
      req.end(payload);
    });
  return {
    where,
    seal: async (plaintext, aad) => (await call<{ sealed: string }>('POST', '/v1/seal', { plaintext: Buffer.from(plaintext).toString('base64'), aad })).sealed,
    open: async (sealed, aad) => Buffer.from((await call<{ plaintext: string }>('POST', '/v1/open', { sealed, aad })).plaintext, 'base64'),
    versions: () => call('GET', '/v1/versions'),
    close: () => agent?.destroy(),
  };
}

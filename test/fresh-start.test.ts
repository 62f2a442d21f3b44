import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalPki } from '../src/crypto/pki.js';
import { freePort, startServe, type ServeProcess } from './cli-process.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(url: string, ca: Buffer, init: { method?: string; body?: object } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = init.body ? JSON.stringify(init.body) : undefined;
    const req = httpsRequest(url, {
      ca,
      method: init.method ?? 'GET',
      headers: payload ? { 'content-type': 'application/json' } : {},
    }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * The README's promise: a fresh directory, `tresor serve` (what `npm start` runs), and a working HTTPS
 * server with a local CA, a master key, a control database and a first operator whose password is
 * printed once. A second start reuses everything and prints no password.
 */
describe('fresh start of the real CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-fresh-'));
  let server: ServeProcess;
  let ca: Buffer;
  let caPath: string;
  let password: string;
  let redirectPort: number;
  let env: Record<string, string>;

  beforeAll(async () => {
    redirectPort = await freePort();
    env = {
      TRESOR_SERVER_PORT: String(await freePort()),
      TRESOR_SERVER_HTTP_REDIRECT_PORT: String(redirectPort),
      TRESOR_METRICS_PORT: String(await freePort()),
      TRESOR_ARGON2_MEMORY_KIB: '19456',
    };
    // As `npm start` and the `tresor` command run it: through the file's first line and its node flags.
    server = await startServe({ cwd: dir, env, asCommand: true });
    const out = server.output();
    caPath = /Local CA certificate: (\S+)/.exec(out)![1]!;
    password = /password: (\S+)/.exec(out)![1]!;
    ca = readFileSync(caPath);
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the data directory, a private master key outside it, the control database and the CA', () => {
    expect(caPath).toBe(join(dir, 'data', 'pki', 'ca.pem'));
    expect(statSync(join(dir, 'data')).isDirectory()).toBe(true);
    expect(statSync(join(dir, 'keys', 'master.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'data', 'control.db')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'data', 'pki', 'server-key.pem')).mode & 0o777).toBe(0o600);
  });

  it('serves /healthz over TLS trusted through the printed CA, with HSTS', async () => {
    const res = await get(`${server.url}/healthz`, ca);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
    expect(res.headers['strict-transport-security']).toMatch(/max-age=31536000/);
    expect((await get(`${server.url}/readyz`, ca)).status).toBe(200);
    // The same with curl, as the README tells users to do.
    const curl = spawnSync('curl', ['-sS', '--cacert', caPath, `${server.url}/healthz`], { encoding: 'utf8', timeout: 20_000 });
    expect(curl.stdout).toBe('{"status":"ok"}');
  });

  it('speaks only the BSI TLS profile on its real port (openssl s_client)', () => {
    const { port } = new URL(server.url);
    const sClient = (...args: string[]) =>
      spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', caPath, ...args], {
        input: '',
        encoding: 'utf8',
        timeout: 20_000,
      });
    const tls13 = sClient('-tls1_3');
    expect(tls13.stdout).toMatch(/New, TLSv1\.3, Cipher is TLS_AES_256_GCM_SHA384/);
    expect(tls13.stdout).toMatch(/Verification: OK|Verify return code: 0 \(ok\)/);
    const chacha = sClient('-tls1_3', '-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256');
    expect(chacha.status).not.toBe(0);
    expect(chacha.stderr).toMatch(/alert handshake failure|alert number 40/);
    const cbc = sClient('-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA');
    expect(cbc.status).not.toBe(0);
    const tls11 = sClient('-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0');
    expect(tls11.status).not.toBe(0);
    expect(tls11.stderr).toMatch(/protocol version|alert number 70/);
  });

  it('is refused by a client that does not trust the CA', async () => {
    await expect(get(`${server.url}/healthz`, Buffer.from(''))).rejects.toThrow(/certificate/);
  });

  it('lets the first operator log in with the printed password', async () => {
    const res = await get(`${server.url}/api/v1/auth/login`, ca, { method: 'POST', body: { login: 'operator', password, mode: 'token' } });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ actor: { kind: 'operator' } });
  });

  it('redirects the plain-HTTP port to HTTPS and serves nothing there', async () => {
    const res = await new Promise<Reply>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: redirectPort, path: '/api/v1/tenants?x=1' }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(308);
    expect(res.headers.location).toBe(`${server.url}/api/v1/tenants?x=1`);
    expect(res.body).toBe('');
  });

  it('publishes the OpenAPI document and Prometheus metrics on the loopback listener', async () => {
    const openapi = JSON.parse((await get(`${server.url}/api/openapi.json`, ca)).body) as { openapi: string; paths: Record<string, unknown> };
    expect(openapi.openapi).toMatch(/^3\./);
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/api/v1/tenants', '/api/v1/tenants/{tenantId}', '/api/v1/resellers']));
    const metricsUrl = /Metrics: (\S+)/.exec(server.output())![1]!;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:/);
    const metrics = await new Promise<string>((resolve, reject) => {
      httpRequest(metricsUrl, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve(body));
      }).on('error', reject).end();
    });
    expect(metrics).toMatch(/tresor_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
    // The young generation stays as small as on Node 20 (2 x 16 MiB; Node 24 would take 2 x 64 MiB on a
    // large machine and hold it idle): the flag on the CLI's first line reached the server's node.
    const newSpace = Number(/tresor_nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/.exec(metrics)?.[1]);
    expect(newSpace).toBeGreaterThan(0);
    expect(newSpace).toBeLessThanOrEqual(32 * 1024 * 1024);
  });

  it('never writes the password or the session token into its log output', async () => {
    const login = await get(`${server.url}/api/v1/auth/login`, ca, { method: 'POST', body: { login: 'operator', password, mode: 'token' } });
    const token = (JSON.parse(login.body) as { sessionToken: string }).sessionToken;
    await get(`${server.url}/api/v1/tenants`, ca);
    const out = server.output();
    expect(out.split(password).length - 1).toBe(1); // only the one-time banner line
    expect(out).not.toContain(token);
  });

  it('reuses everything on a second start and prints no password', async () => {
    const caBefore = readFileSync(caPath, 'utf8');
    const keyBefore = readFileSync(join(dir, 'keys', 'master.key'), 'utf8');
    expect(await server.stop()).toBe(0);
    server = await startServe({ cwd: dir, env });
    expect(server.output()).not.toMatch(/password:/);
    expect(readFileSync(caPath, 'utf8')).toBe(caBefore);
    expect(readFileSync(join(dir, 'keys', 'master.key'), 'utf8')).toBe(keyBefore);
    const res = await get(`${server.url}/api/v1/auth/login`, ca, { method: 'POST', body: { login: 'operator', password, mode: 'token' } });
    expect(res.status).toBe(200);
  });
});

describe('serving with the operator\'s own certificate', () => {
  it('uses the configured certificate and key and creates no local CA', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tresor-owncert-'));
    try {
      const own = await ensureLocalPki(join(dir, 'own-pki'), ['tresor.example.test']);
      const server = await startServe({
        cwd: dir,
        env: {
          TRESOR_SERVER_PORT: String(await freePort()),
          TRESOR_METRICS_ENABLED: 'false',
          TRESOR_TLS_CERT_FILE: own.certPath,
          TRESOR_TLS_KEY_FILE: own.keyPath,
        },
      });
      try {
        expect(server.output()).not.toMatch(/Local CA certificate/);
        expect(existsSync(join(dir, 'data', 'pki'))).toBe(false);
        const { port } = new URL(server.url);
        const peer = await new Promise<{ subjectaltname: string; issuer: string }>((resolve, reject) => {
          const req = httpsRequest({ host: '127.0.0.1', port, path: '/healthz', servername: 'tresor.example.test', ca: readFileSync(own.caCertPath) }, (res) => {
            const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
            res.resume();
            resolve({ subjectaltname: cert.subjectaltname ?? '', issuer: String(cert.issuer.CN ?? '') });
          });
          req.on('error', reject);
          req.end();
        });
        expect(peer.subjectaltname).toContain('DNS:tresor.example.test');
        expect(readFileSync(own.caCertPath, 'utf8')).toContain('BEGIN CERTIFICATE');
        expect(peer.issuer).toMatch(/^Tresor local CA/);
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

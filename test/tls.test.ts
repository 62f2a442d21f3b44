import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, get as httpsGet, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalPki, type PkiFiles } from '../src/crypto/pki.js';
import { tlsKeyExchangeGroups, tlsServerOptions, TLS_PROFILE_DESCRIPTION } from '../src/http/tls.js';

// Every handshake goes through the real `openssl s_client`. The servers run in this process, so the
// client is spawned asynchronously: spawnSync would block the event loop the servers answer on.

interface Outcome {
  status: number | null;
  output: string;
  protocol: string | undefined;
  cipher: string | undefined;
  tempKey: string | undefined;
  verified: boolean;
}

function run(command: string, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // stdin is /dev/null: s_client sees EOF right after the handshake and exits.
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, output }));
  });
}

async function handshake(port: number, caFile: string, args: string[]): Promise<Outcome> {
  const { status, output } = await run('openssl', [
    's_client',
    '-connect',
    `127.0.0.1:${port}`,
    '-servername',
    'localhost',
    '-CAfile',
    caFile,
    // A certificate that does not verify (chain or host name) aborts the handshake.
    '-verify_return_error',
    '-verify_hostname',
    'localhost',
    '-brief',
    ...args,
  ]);
  const field = (name: string) => new RegExp(`^${name}: (.+)$`, 'm').exec(output)?.[1]?.trim();
  return {
    status,
    output,
    protocol: field('Protocol version'),
    cipher: field('Ciphersuite'),
    tempKey: field('Server Temp Key'),
    verified: field('Verification') === 'OK',
  };
}

const HANDSHAKE_FAILURE = 'SSL alert number 40'; // RFC 8446 §6.2 handshake_failure, sent by the server
const PROTOCOL_VERSION = 'SSL alert number 70'; // RFC 8446 §6.2 protocol_version, sent by the server

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/**
 * A server opened up to everything this OpenSSL can do, choosing in the client's order: proves that a
 * client the profile refuses could connect, and that an order the profile imposes is not the default.
 */
function permissiveOptions(cert: Buffer, key: Buffer) {
  return {
    cert,
    key,
    minVersion: 'TLSv1' as const,
    // Node's TLS server sets SSL_OP_CIPHER_SERVER_PREFERENCE unless told otherwise.
    honorCipherOrder: false,
    ciphers: 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256:ALL:@SECLEVEL=0',
  };
}

const answer200 = (_req: IncomingMessage, res: ServerResponse) => res.writeHead(200).end('ok');

let dir: string;
let pki: PkiFiles & { createdCa: boolean; createdCert: boolean };
let profilePort: number;
let permissivePort: number;
let profileRsaPort: number;
let permissiveRsaPort: number;
let rsaCertPath: string;
const servers: Server[] = [];

async function startServer(options: Parameters<typeof createServer>[0]): Promise<number> {
  const server = createServer(options, answer200);
  servers.push(server);
  return listen(server);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tresor-tls-'));
  pki = await ensureLocalPki(join(dir, 'pki'), ['tresor.test']);
  profilePort = await startServer(tlsServerOptions(pki));
  permissivePort = await startServer(permissiveOptions(await readFile(pki.certPath), await readFile(pki.keyPath)));

  // An operator-supplied RSA certificate: the only way to see that static RSA key exchange is refused by
  // the profile and not merely impossible with an ECDSA key.
  rsaCertPath = join(dir, 'rsa.pem');
  const rsaKeyPath = join(dir, 'rsa-key.pem');
  const made = await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:3072', '-nodes', '-keyout', rsaKeyPath, '-out', rsaCertPath,
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '2',
  ]);
  expect(made.status, made.output).toBe(0);
  profileRsaPort = await startServer(tlsServerOptions({ certPath: rsaCertPath, keyPath: rsaKeyPath }));
  permissiveRsaPort = await startServer(permissiveOptions(await readFile(rsaCertPath), await readFile(rsaKeyPath)));
});

afterAll(async () => {
  await Promise.all(servers.map(close));
  await rm(dir, { recursive: true, force: true });
});

describe('TLS profile (BSI TR-02102-2) against openssl s_client', () => {
  it.each([
    ['TLS_AES_256_GCM_SHA384'],
    ['TLS_AES_128_GCM_SHA256'],
  ])('TLS 1.3 with %s succeeds and the certificate verifies against the local CA', async (suite) => {
    const outcome = await handshake(profilePort, pki.caCertPath, ['-tls1_3', '-ciphersuites', suite]);
    expect(outcome.status, outcome.output).toBe(0);
    expect(outcome.protocol).toBe('TLSv1.3');
    expect(outcome.cipher).toBe(suite);
    expect(outcome.verified).toBe(true);
  });

  it.each([
    ['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-AES256-GCM-SHA384'],
    ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES128-GCM-SHA256'],
  ])('TLS 1.2 with %s succeeds', async (suite, expected) => {
    const outcome = await handshake(profilePort, pki.caCertPath, ['-tls1_2', '-cipher', suite]);
    expect(outcome.status, outcome.output).toBe(0);
    expect(outcome.protocol).toBe('TLSv1.2');
    expect(outcome.cipher).toBe(expected);
    expect(outcome.verified).toBe(true);
  });

  it('a default client gets TLS 1.3 with AES-256-GCM and a NIST curve (no X25519)', async () => {
    const outcome = await handshake(profilePort, pki.caCertPath, []);
    expect(outcome.status, outcome.output).toBe(0);
    expect(outcome.protocol).toBe('TLSv1.3');
    expect(outcome.cipher).toBe('TLS_AES_256_GCM_SHA384');
    // s_client sends an X25519 key share first; the server asks for its own first choice instead.
    expect(outcome.tempKey).toMatch(/^ECDH, secp384r1, 384 bits$/);
  });

  // Each refused client is first shown to work against a permissive server with the same certificate,
  // so the failure is the profile's refusal and not the client's own configuration; the alert number
  // shows the server sent the refusal.
  it.each([
    ['TLS 1.3 with only ChaCha20-Poly1305', ['-tls1_3', '-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256'], HANDSHAKE_FAILURE],
    ['TLS 1.3 with only AES-128-CCM', ['-tls1_3', '-ciphersuites', 'TLS_AES_128_CCM_SHA256'], HANDSHAKE_FAILURE],
    ['TLS 1.2 CBC suite ECDHE-ECDSA-AES128-SHA256', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA256'], HANDSHAKE_FAILURE],
    ['TLS 1.2 CBC suite ECDHE-ECDSA-AES256-SHA', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA'], HANDSHAKE_FAILURE],
    ['TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305', ['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'], HANDSHAKE_FAILURE],
    // OpenSSL 3 clients refuse TLS 1.0/1.1 themselves at the default security level; SECLEVEL=0 makes
    // them try, so only the server can say no.
    ['TLS 1.0', ['-tls1', '-cipher', 'DEFAULT@SECLEVEL=0'], PROTOCOL_VERSION],
    ['TLS 1.1', ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], PROTOCOL_VERSION],
    ['TLS 1.3 with only X25519', ['-tls1_3', '-groups', 'X25519'], HANDSHAKE_FAILURE],
    ['TLS 1.2 with SHA-224 signatures only', ['-tls1_2', '-sigalgs', 'ECDSA+SHA224'], HANDSHAKE_FAILURE],
    ['TLS 1.2 with SHA-1 signatures only', ['-tls1_2', '-sigalgs', 'ECDSA+SHA1', '-cipher', 'DEFAULT@SECLEVEL=0'], HANDSHAKE_FAILURE],
  ])('refuses %s', async (_name, args, alert) => {
    const control = await handshake(permissivePort, pki.caCertPath, args);
    expect(control.status, control.output).toBe(0);
    expect(control.protocol).toMatch(/^TLSv1(\.[123])?$/);

    const outcome = await handshake(profilePort, pki.caCertPath, args);
    expect(outcome.status, outcome.output).not.toBe(0);
    expect(outcome.protocol).toBeUndefined();
    expect(outcome.output).toContain(alert);
  });

  it.each([
    ['TLS 1.3', ['-tls1_3']],
    ['TLS 1.2', ['-tls1_2']],
  ])('%s with -groups P-256 negotiates P-256', async (_name, args) => {
    const outcome = await handshake(profilePort, pki.caCertPath, [...args, '-groups', 'P-256']);
    expect(outcome.status, outcome.output).toBe(0);
    expect(outcome.protocol).toBe(args[0] === '-tls1_3' ? 'TLSv1.3' : 'TLSv1.2');
    expect(outcome.tempKey).toBe('ECDH, prime256v1, 256 bits');
  });

  it('the server order decides: suite and group follow the server, not the client', async () => {
    const args = ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384', '-groups', 'P-256:P-384'];
    const control = await handshake(permissivePort, pki.caCertPath, args);
    expect([control.cipher, control.tempKey]).toEqual(['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDH, prime256v1, 256 bits']);
    const outcome = await handshake(profilePort, pki.caCertPath, args);
    expect([outcome.cipher, outcome.tempKey]).toEqual(['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDH, secp384r1, 384 bits']);

    const tls13 = ['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384'];
    expect((await handshake(permissivePort, pki.caCertPath, tls13)).cipher).toBe('TLS_AES_128_GCM_SHA256');
    expect((await handshake(profilePort, pki.caCertPath, tls13)).cipher).toBe('TLS_AES_256_GCM_SHA384');
  });

  it('with an RSA certificate: ECDHE-RSA with AES-GCM succeeds, RSA key exchange is refused', async () => {
    const ecdhe = await handshake(profileRsaPort, rsaCertPath, ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
    expect(ecdhe.status, ecdhe.output).toBe(0);
    expect([ecdhe.protocol, ecdhe.cipher, ecdhe.verified]).toEqual(['TLSv1.2', 'ECDHE-RSA-AES128-GCM-SHA256', true]);

    const staticRsa = ['-tls1_2', '-cipher', 'AES256-GCM-SHA384'];
    const control = await handshake(permissiveRsaPort, rsaCertPath, staticRsa);
    expect([control.status, control.cipher]).toEqual([0, 'AES256-GCM-SHA384']);
    const refused = await handshake(profileRsaPort, rsaCertPath, staticRsa);
    expect(refused.status, refused.output).not.toBe(0);
    expect(refused.output).toContain(HANDSHAKE_FAILURE);

    // TLS 1.2 binds an ECDSA certificate's curve to the client's groups (RFC 8422 §5.1), so X25519-only
    // key exchange is tried with the RSA certificate, where only the group can be the obstacle.
    const x25519 = ['-tls1_2', '-groups', 'X25519'];
    const x25519Control = await handshake(permissiveRsaPort, rsaCertPath, x25519);
    expect([x25519Control.status, x25519Control.tempKey]).toEqual([0, 'X25519, 253 bits']);
    const x25519Refused = await handshake(profileRsaPort, rsaCertPath, x25519);
    expect(x25519Refused.status, x25519Refused.output).not.toBe(0);
    expect(x25519Refused.output).toContain(HANDSHAKE_FAILURE);

    const tls13 = await handshake(profileRsaPort, rsaCertPath, ['-tls1_3']);
    expect([tls13.protocol, tls13.cipher]).toEqual(['TLSv1.3', 'TLS_AES_256_GCM_SHA384']);
    expect(tls13.output).toMatch(/^Signature type: RSA-PSS$/m);
  });

  it('refuses TLS 1.2 renegotiation (the permissive server allows it)', async () => {
    const renegotiate = (port: number) =>
      new Promise<string>((resolve) => {
        const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: [caPem], maxVersion: 'TLSv1.2' }, () => {
          socket.renegotiate({ rejectUnauthorized: true }, (error) => {
            socket.destroy();
            resolve(error ? error.message : 'renegotiated');
          });
        });
        socket.on('error', (error) => resolve(error.message));
      });
    const caPem = await readFile(pki.caCertPath);
    expect(await renegotiate(permissivePort)).toBe('renegotiated');
    expect(await renegotiate(profilePort)).toMatch(/no renegotiation/);
  });

  it('brainpool curves: offered where OpenSSL knows them, and negotiated in TLS 1.2 with a brainpool certificate', async () => {
    const groups = tlsKeyExchangeGroups();
    expect(groups.slice(0, 2)).toEqual(['P-384', 'P-256']);
    expect(groups).not.toContain('X25519');
    if (!groups.includes('brainpoolP256r1')) return; // this OpenSSL has no brainpool groups

    // TLS 1.2 (RFC 8422) ties the certificate's curve to the client's supported groups, so a client that
    // offers only brainpool needs a brainpool certificate.
    const certPath = join(dir, 'bp.pem');
    const keyPath = join(dir, 'bp-key.pem');
    const made = await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:brainpoolP256r1', '-nodes', '-keyout', keyPath,
      '-out', certPath, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '2',
    ]);
    expect(made.status, made.output).toBe(0);
    const port = await startServer(tlsServerOptions({ certPath, keyPath }));
    const outcome = await handshake(port, certPath, ['-tls1_2', '-groups', 'brainpoolP256r1']);
    expect(outcome.status, outcome.output).toBe(0);
    expect([outcome.protocol, outcome.tempKey]).toEqual(['TLSv1.2', 'ECDH, brainpoolP256r1, 256 bits']);
  });

  it('serves HTTP 200 over TLS 1.3 to a Node client that trusts only the local CA', async () => {
    const ca = await readFile(pki.caCertPath);
    const { status, protocol, cipher } = await new Promise<{ status: number | undefined; protocol: string | null; cipher: string }>(
      (resolve, reject) => {
        const request = httpsGet({ host: '127.0.0.1', port: profilePort, servername: 'localhost', ca, path: '/' }, (res) => {
          const socket = res.socket as TLSSocket;
          resolve({ status: res.statusCode, protocol: socket.getProtocol(), cipher: socket.getCipher().standardName });
          res.resume();
        });
        request.on('error', reject);
      },
    );
    expect([status, protocol, cipher]).toEqual([200, 'TLSv1.3', 'TLS_AES_256_GCM_SHA384']);
  });

  it('describes itself for logs', () => {
    expect(TLS_PROFILE_DESCRIPTION).toMatch(/TR-02102-2/);
    expect(TLS_PROFILE_DESCRIPTION).toMatch(/TLS 1\.2\/1\.3/);
  });
});

describe('local PKI', () => {
  it('creates CA and server certificate once, then reuses both unchanged', async () => {
    expect([pki.createdCa, pki.createdCert]).toEqual([true, true]);
    const before = await Promise.all([pki.caCertPath, pki.certPath, pki.keyPath].map((path) => readFile(path, 'utf8')));
    const again = await ensureLocalPki(join(dir, 'pki'), ['tresor.test']);
    expect([again.createdCa, again.createdCert]).toEqual([false, false]);
    expect(again.caCertPath).toBe(pki.caCertPath);
    const after = await Promise.all([again.caCertPath, again.certPath, again.keyPath].map((path) => readFile(path, 'utf8')));
    expect(after).toEqual(before);
  });

  it('writes private keys 0600, certificates 0644 and the directory 0700', async () => {
    const mode = async (path: string) => (await stat(path)).mode & 0o777;
    expect(await mode(join(dir, 'pki'))).toBe(0o700);
    expect(await mode(join(dir, 'pki', 'ca-key.pem'))).toBe(0o600);
    expect(await mode(pki.keyPath)).toBe(0o600);
    expect(await mode(pki.caCertPath)).toBe(0o644);
    expect(await mode(pki.certPath)).toBe(0o644);
    expect(await readFile(pki.keyPath, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it('the server certificate verifies with openssl verify for TLS server use, and not against another CA', async () => {
    const verify = (caFile: string, hostname: string) =>
      run('openssl', ['verify', '-CAfile', caFile, '-purpose', 'sslserver', '-verify_hostname', hostname, pki.certPath]);
    const ok = await verify(pki.caCertPath, 'tresor.test');
    expect(ok.status, ok.output).toBe(0);
    expect(ok.output).toContain(`${pki.certPath}: OK`);
    expect((await verify(pki.caCertPath, 'other.test')).status).not.toBe(0);

    const otherPki = await ensureLocalPki(join(dir, 'other-pki'), []);
    expect((await verify(otherPki.caCertPath, 'tresor.test')).status).not.toBe(0);
  });

  it('re-issues the server certificate from the same CA when the host names change', async () => {
    const pkiDir = join(dir, 'rename-pki');
    const first = await ensureLocalPki(pkiDir, ['old.example.org']);
    const caBefore = await readFile(first.caCertPath, 'utf8');
    const certBefore = await readFile(first.certPath, 'utf8');

    const second = await ensureLocalPki(pkiDir, ['old.example.org', 'new.example.org']);
    expect([second.createdCa, second.createdCert]).toEqual([false, true]);
    expect(await readFile(second.caCertPath, 'utf8')).toBe(caBefore);
    const certAfter = await readFile(second.certPath, 'utf8');
    expect(certAfter).not.toBe(certBefore);
    expect(new X509Certificate(certAfter).subjectAltName).toBe(
      'DNS:old.example.org, DNS:new.example.org, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    const verified = await run('openssl', ['verify', '-CAfile', second.caCertPath, '-verify_hostname', 'new.example.org', second.certPath]);
    expect(verified.status, verified.output).toBe(0);

    // A name that is already covered does not cause a new certificate.
    const third = await ensureLocalPki(pkiDir, ['new.example.org']);
    expect(third.createdCert).toBe(false);
  });
});

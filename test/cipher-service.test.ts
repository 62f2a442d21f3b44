import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { remoteCipherService } from '../src/crypto/cipher-service.js';
import { freePort, startCli, startServe, tresor, type ServeProcess } from './cli-process.js';

/**
 * The cipher service as its own process: the server and the CLI reach the master key only through its Unix
 * socket, and never read the key file themselves.
 */
describe('tresor cipher-service over a Unix socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-cipher-'));
  const socket = join(dir, 'keys', 'cipher.sock');
  const processes: ServeProcess[] = [];
  afterAll(async () => {
    for (const p of processes) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the master key to the server and the CLI, which never touch the key file', async () => {
    const port = String(await freePort());
    const local = { TRESOR_SERVER_PORT: port, TRESOR_METRICS_ENABLED: 'false' };
    expect(tresor(['init'], { cwd: dir, env: local }).code).toBe(0); // creates keys/master.key and the databases
    const service = await startCli(['cipher-service', '--socket', socket], { cwd: dir, env: local, ready: /Cipher service listening/ });
    processes.push(service);
    expect(statSync(socket).mode & 0o777).toBe(0o600);

    // The rest of the installation knows only the socket; the key file path they are given does not exist.
    const remote = { ...local, TRESOR_CIPHER_URL: `unix://${socket}`, TRESOR_MASTER_KEY_FILE: join(dir, 'nowhere', 'master.key') };
    const created = tresor(['--json', 'tenant', 'create', '--name', 'Kunde über Socket'], { cwd: dir, env: remote });
    expect(created.code, created.stderr).toBe(0);
    expect(tresor(['ledger', 'verify', '--all'], { cwd: dir, env: remote }).code).toBe(0);
    const server = await startServe({ cwd: dir, env: remote });
    processes.push(server);
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
    expect(tresor(['keys', 'rotate-master'], { cwd: dir, env: remote }).code).toBe(6); // only on the key's host

    // Values bound to one context do not open in another, and the service says so without a stack trace.
    const client = remoteCipherService(`unix://${socket}`);
    const sealed = await client.seal(Buffer.from('geheim'), 'tenant-component|a');
    expect((await client.open(sealed, 'tenant-component|a')).toString()).toBe('geheim');
    await expect(client.open(sealed, 'tenant-component|b')).rejects.toThrow(/does not open in this context/);
    expect(await client.versions()).toEqual({ current: 1, versions: [1] });

    // Without the cipher service, nothing that needs the master key works, and the error says what to do.
    await service.stop();
    const without = tresor(['tenant', 'create', '--name', 'Noch ein Kunde'], { cwd: dir, env: remote });
    expect(without.code).not.toBe(0);
    expect(without.stderr).toMatch(/cipher service .* is not reachable .*tresor cipher-service --socket/);
    const tenants = JSON.parse(tresor(['--json', 'tenant', 'list'], { cwd: dir, env: local }).stdout) as { name: string }[];
    expect(tenants.map((t) => t.name)).toEqual(['Kunde über Socket']); // nothing half-made was left behind
  }, 240_000); // several CLI and server processes; minutes on a shared, loaded machine
});

/**
 * The cipher service on another host: mutual TLS with its own CA. Only the client certificate it issued
 * gets an answer; a client without a certificate, with the service's own server certificate, or with a
 * certificate of the web server's CA is refused in the handshake. Real clients: curl and openssl.
 */
describe('tresor cipher-service over mutual TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-cipher-mtls-'));
  const processes: ServeProcess[] = [];
  afterAll(async () => {
    for (const p of processes) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves only the holders of its client certificate', async () => {
    const local = { TRESOR_SERVER_PORT: String(await freePort()), TRESOR_METRICS_ENABLED: 'false' };
    expect(tresor(['init'], { cwd: dir, env: local }).code).toBe(0);
    const cipherPort = await freePort();
    const service = await startCli(['cipher-service', '--listen', `127.0.0.1:${cipherPort}`], { cwd: dir, env: local, ready: /Cipher service listening/ });
    processes.push(service);
    await new Promise((r) => setTimeout(r, 300)); // let the remaining lines arrive
    const printed = service.output();
    const file = (key: string) => new RegExp(`cipher\\.${key} = "([^"]+)"`).exec(printed)?.[1] ?? '';
    const files = { ca: file('ca_file'), cert: file('cert_file'), key: file('key_file') };
    expect(printed).toContain(`cipher.url = "https://127.0.0.1:${cipherPort}"`);
    expect(statSync(files.key).mode & 0o777).toBe(0o600);
    const url = `https://127.0.0.1:${cipherPort}/v1/versions`;

    const curl = (...args: string[]) => spawnSync('curl', ['-sS', '--max-time', '10', '--cacert', files.ca, ...args, url], { encoding: 'utf8' });
    const good = curl('--cert', files.cert, '--key', files.key);
    expect(good.status, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toEqual({ current: 1, versions: [1] });
    // No client certificate: the handshake fails, nothing is answered.
    const none = curl();
    expect(none.status).not.toBe(0);
    expect(none.stdout).toBe('');
    // The service's own server certificate is from the right CA but not for client authentication.
    const pkiDir = join(files.ca, '..');
    const serverAsClient = curl('--cert', join(pkiDir, 'server.pem'), '--key', join(pkiDir, 'server-key.pem'));
    expect(serverAsClient.status).not.toBe(0);
    expect(serverAsClient.stdout).toBe('');
    // A certificate of the web server's local CA is no key to the cipher service either.
    const webPki = join(dir, 'data', 'pki');
    const served = await startServe({ cwd: dir, env: local }); // creates data/pki
    processes.push(served);
    const foreign = curl('--cert', join(webPki, 'server.pem'), '--key', join(webPki, 'server-key.pem'));
    expect(foreign.status).not.toBe(0);
    await served.stop();
    // openssl s_client sees the server demand a certificate and the handshake end in an alert without one.
    const s = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${cipherPort}`, '-CAfile', files.ca, '-verify_return_error', '-ign_eof'], { input: 'GET /v1/versions HTTP/1.0\r\n\r\n', encoding: 'utf8', timeout: 15_000 });
    expect(`${s.stdout}${s.stderr}`).toMatch(/alert certificate required/i);
    expect(s.stdout).not.toContain('"versions"');

    // A client that does not trust the service's CA refuses to talk to it (no key material goes to an impostor).
    const impostor = remoteCipherService(`https://127.0.0.1:${cipherPort}`, { caFile: join(webPki, 'ca.pem'), certFile: files.cert, keyFile: files.key });
    await expect(impostor.versions()).rejects.toThrow(/not reachable/);
    impostor.close();
    expect(() => remoteCipherService(`https://127.0.0.1:${cipherPort}`)).toThrow(/cipher\.ca_file, cipher\.cert_file and cipher\.key_file/);

    // The whole installation runs through it, with the key file nowhere in reach.
    const remote = {
      ...local,
      TRESOR_CIPHER_URL: `https://127.0.0.1:${cipherPort}`,
      TRESOR_CIPHER_CA_FILE: files.ca,
      TRESOR_CIPHER_CERT_FILE: files.cert,
      TRESOR_CIPHER_KEY_FILE: files.key,
      TRESOR_MASTER_KEY_FILE: join(dir, 'nowhere', 'master.key'),
    };
    const created = tresor(['--json', 'tenant', 'create', '--name', 'Kunde über mTLS'], { cwd: dir, env: remote });
    expect(created.code, created.stderr).toBe(0);
    expect(tresor(['ledger', 'verify', '--all'], { cwd: dir, env: remote }).code).toBe(0);
    const server = await startServe({ cwd: dir, env: remote });
    processes.push(server);
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
    const client = remoteCipherService(`https://127.0.0.1:${cipherPort}`, { caFile: files.ca, certFile: files.cert, keyFile: files.key });
    const sealed = await client.seal(Buffer.from('geheim'), 'ctx|a');
    expect((await client.open(sealed, 'ctx|a')).toString()).toBe('geheim');
    await expect(client.open(sealed, 'ctx|b')).rejects.toThrow(/does not open in this context/);
    client.close();
  }, 240_000);
});

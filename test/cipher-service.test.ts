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
  });
});

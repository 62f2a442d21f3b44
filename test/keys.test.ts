import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteDatabase } from '../src/storage/sqlite-driver.js';
import { freePort, startServe, tresor, type ServeProcess } from './cli-process.js';

/** Master key rotation through the real CLI while a server keeps running on the same data. */
describe('tresor keys rotate-master / retire-master', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-keys-'));
  let server: ServeProcess | undefined;
  let initPassword = '';
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  let port = 0;
  // The CLI and the server share one configuration (same port, so the same public URL and ledger origin).
  const run = (...args: string[]) => tresor(args, { cwd: dir, env: { TRESOR_METRICS_ENABLED: 'false', TRESOR_SERVER_PORT: String(port) } });
  const status = () => JSON.parse(run('--json', 'keys', 'status').stdout) as { version: string; current: string; 'sealed values': string }[];

  it('seals everything again under a new version without stopping the server, then retires the old one', async () => {
    port = await freePort();
    const init = run('--json', 'init');
    expect(init.code).toBe(0);
    initPassword = (JSON.parse(init.stdout) as { operator: { oneTimePassword: string } }).operator.oneTimePassword;
    expect(run('tenant', 'create', '--name', 'Kunde Eins').code).toBe(0);
    expect(run('ledger', 'checkpoint').code).toBe(0); // the platform and tenant ledger keys exist now
    server = await startServe({ cwd: dir, env: { TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' } });
    const before = status();
    expect(before).toEqual([{ version: '1', current: 'yes', 'sealed values': expect.any(String) }]);
    const sealed = Number(before[0]!['sealed values']);
    expect(sealed).toBeGreaterThanOrEqual(2); // the tenant's service component and the platform ledger key

    expect(run('keys', 'retire-master', '--key-version', '1').code).toBe(5); // still in use, and current
    const rotated = run('keys', 'rotate-master');
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toMatch(/Added master key version 2/);
    const after = status();
    expect(after.map((r) => [r.version, r.current])).toEqual([['1', ''], ['2', 'yes']]);
    expect(after[0]!['sealed values']).toBe('0');
    expect(Number(after[1]!['sealed values'])).toBeGreaterThanOrEqual(sealed); // the running server may have added one
    expect(JSON.parse(run('--json', 'keys', 'rotate-master', '--resume').stdout).results.every((r: { resealed: number }) => r.resealed === 0)).toBe(true);
    expect(run('keys', 'retire-master', '--key-version', '1').code).toBe(0);
    const file = JSON.parse(readFileSync(join(dir, 'keys', 'master.key'), 'utf8')) as { current: number; keys: Record<string, string> };
    expect(file.current).toBe(2);
    expect(Object.keys(file.keys)).toEqual(['2']);

    // Everything still opens: ledgers sign and verify, and the running server signs with the re-sealed key.
    expect(run('ledger', 'verify', '--all').code).toBe(0);
    expect(run('tenant', 'create', '--name', 'Kunde Zwei').code).toBe(0);
    const ca = readFileSync(join(dir, 'data', 'pki', 'ca.pem'));
    // The server loaded the key file before the rotation; it follows the file and opens v2-sealed keys.
    const login = await api(`${server.url}/api/v1/auth/login`, ca, 'POST', { login: 'operator', password: initPassword, mode: 'token' });
    expect(login.status, JSON.stringify(login.body) + server.output().slice(-3000)).toBe(200);
    const changed = await api(`${server.url}/api/v1/auth/password`, ca, 'POST', { currentPassword: initPassword, newPassword: 'Rotation ohne Pause 2026' }, login.body.sessionToken);
    const token = changed.body.sessionToken as string;
    const checkpoint = await api(`${server.url}/api/v1/ledger/checkpoint`, ca, 'GET', undefined, token);
    expect(checkpoint.status, JSON.stringify(checkpoint.body)).toBe(200);
    expect(checkpoint.body.checkpoint).toMatch(/\/tresor\/platform\n/);
  }, 300_000);

  it('continues an interrupted rotation with --resume: part sealed under the new version, the rest after, counted per version', () => {
    const dir2 = mkdtempSync(join(tmpdir(), 'tresor-keys-resume-'));
    try {
      const run2 = (...args: string[]) => tresor(args, { cwd: dir2, env: { TRESOR_METRICS_ENABLED: 'false' } });
      const counts = () => Object.fromEntries((JSON.parse(run2('--json', 'keys', 'status').stdout) as { version: string; 'sealed values': string }[]).map((r) => [r.version, Number(r['sealed values'])]));
      expect(run2('--json', 'init').code).toBe(0);
      const tenants = ['Kunde Alpha', 'Kunde Beta'].map((name) => (JSON.parse(run2('--json', 'tenant', 'create', '--name', name).stdout) as { id: string }).id);
      expect(run2('ledger', 'checkpoint').code).toBe(0);
      for (const id of tenants) expect(run2('ledger', 'checkpoint', '--tenant', id).code).toBe(0); // a sealed ledger key in each tenant database
      const total = counts()['1']!;
      expect(total).toBe(5); // two service components, the platform ledger key, two tenant ledger keys

      // The second tenant's sealed ledger key cannot be opened for a moment (as if that database failed):
      // the rotation stops there, after everything before it was sealed again.
      const tenantsDir = join(dir2, 'data', 'tenants');
      const second = new SqliteDatabase(join(tenantsDir, readdirSync(tenantsDir).find((f) => f.endsWith('.db') && f.includes(tenants[1]!.replace(/-/g, '').slice(0, 20)))!));
      const original = second.prepare('select id, sealed_private_key as sealed from ledger_keys').get() as { id: string; sealed: string };
      expect(original.sealed).toMatch(/^mk1\./);
      second.prepare('update ledger_keys set sealed_private_key = ? where id = ?').run(`${original.sealed.slice(0, -8)}AAAAAAAA`, original.id);
      let stopped: ReturnType<typeof run2>;
      try {
        stopped = run2('keys', 'rotate-master');
      } finally {
        second.prepare('update ledger_keys set sealed_private_key = ? where id = ?').run(original.sealed, original.id);
        second.close();
      }
      expect(stopped.code, stopped.stderr).not.toBe(0);
      expect(stopped.stderr).toMatch(/Added master key version 2/);
      expect(counts()).toEqual({ '1': 1, '2': total - 1 }); // only the second tenant's ledger key is left behind
      expect(run2('keys', 'retire-master', '--key-version', '1').code).toBe(5); // still in use

      // --resume adds no version and seals only what is left.
      const resumed = run2('--json', 'keys', 'rotate-master', '--resume');
      expect(resumed.code, resumed.stderr).toBe(0);
      const results = (JSON.parse(resumed.stdout) as { version: number; results: { database: string; resealed: number; current: number }[] });
      expect(results.version).toBe(2);
      expect(results.results.reduce((n, r) => n + r.resealed, 0)).toBe(1);
      expect(results.results.find((r) => r.database === `tenant ${tenants[1]}`)).toMatchObject({ resealed: 1, current: 0 });
      expect(counts()).toEqual({ '1': 0, '2': total });
      expect(run2('keys', 'retire-master', '--key-version', '1').code).toBe(0);
      expect(counts()).toEqual({ '2': total });
      expect(run2('ledger', 'verify', '--all').code).toBe(0); // every sealed key still opens
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
  }, 300_000);
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function api(url: string, ca: Buffer, method: string, body?: object, token?: string): Promise<{ status: number; body: any }> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const payload = body ? JSON.stringify(body) : undefined;
    const headers: Record<string, string> = { ...(payload ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) };
    const req = request(url, { ca, method, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

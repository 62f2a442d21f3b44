import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropPgInstallation, engines, GOOD_PASSWORD, mailedKey } from './helpers.js';
import { freePort, startServe, tresor, type ServeProcess } from './cli-process.js';

interface Tenant {
  id: string;
  name: string;
  status: string;
  resellerId: string | null;
  licenceEndsAt: string | null;
}

describe.each(engines)('the tresor CLI (%s)', (engine) => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-cli-'));
  const pgName = `tresor_test_${Math.random().toString(36).slice(2, 10)}`;
  const env: Record<string, string> = {};
  const run = (...args: string[]) => tresor(args, { cwd: dir, env });
  const json = <T>(...args: string[]): T => {
    const r = run('--json', ...args);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(() => {
    if (engine === 'postgres') {
      const url = new URL(process.env.TRESOR_TEST_PG!);
      url.pathname = `/${pgName}`;
      env.TRESOR_DATABASE_URL = url.toString();
    }
  });
  afterAll(async () => {
    if (engine === 'postgres') await dropPgInstallation(pgName);
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints help for every command', () => {
    for (const cmd of [[], ['init'], ['serve'], ['migrate'], ['config', 'print'], ['login'], ['account', 'reset-link'], ['account', 'disable'], ['account', 'enable'], ['ledger', 'verify'], ['ledger', 'checkpoint'], ['ledger', 'export'], ['billing', 'report'], ['reseller', 'create'], ['reseller', 'list'], ['reseller', 'show'],
      ['tenant', 'create'], ['tenant', 'list'], ['tenant', 'show'], ['tenant', 'suspend'], ['tenant', 'resume'], ['tenant', 'set-licence'], ['tenant', 'delete'],
      ['tenant', 'policy', 'show'], ['tenant', 'policy', 'set'], ['account', 'invite'], ['account', 'list'], ['keys', 'status'], ['keys', 'rotate-master'], ['keys', 'retire-master'], ['backup', 'create'], ['backup', 'list'], ['backup', 'verify'], ['backup', 'restore']]) {
      const r = run(...cmd, '--help');
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: tresor/);
    }
    expect(run('tenant', 'explode').code).toBe(2);
  });

  it('initialises once, prints the operator password once, and migrates idempotently', () => {
    const first = json<{ operator: { login: string; oneTimePassword: string } | null; caCertPath: string }>('init');
    expect(first.operator?.login).toBe('operator');
    expect(first.operator?.oneTimePassword).toMatch(/^[A-Za-z0-9]{24}$/);
    expect(existsSync(first.caCertPath)).toBe(true);
    const second = json<{ operator: null }>('init');
    expect(second.operator).toBeNull();
    expect(json<{ applied: string[] }>('migrate').applied).toEqual([]);
  });

  it('manages the tenant lifecycle with --json output and meaningful exit codes', () => {
    const tenant = json<Tenant>('tenant', 'create', '--name', 'Stadtwerke Musterstadt', '--licence-end', '2030-06-30');
    expect(tenant).toMatchObject({ status: 'active', resellerId: null, licenceEndsAt: '2030-06-30T23:59:59.999Z' });
    expect(json<Tenant[]>('tenant', 'list').map((t) => t.id)).toContain(tenant.id);
    expect(json<Tenant>('tenant', 'show', tenant.id).name).toBe('Stadtwerke Musterstadt');
    expect(json<Tenant>('tenant', 'suspend', tenant.id).status).toBe('suspended');
    expect(json<Tenant>('tenant', 'resume', tenant.id).status).toBe('active');
    expect(json<Tenant>('tenant', 'set-licence', tenant.id, 'none').licenceEndsAt).toBeNull();

    const human = run('tenant', 'list');
    expect(human.stdout).toMatch(/^ID\s+NAME\s+STATUS/m);

    expect(run('tenant', 'show', '00000000-0000-4000-8000-000000000000').code).toBe(3);
    const dup = run('tenant', 'create', '--name', 'Stadtwerke Musterstadt');
    expect(dup.code).toBe(5);
    expect(dup.stderr).toMatch(/exists already/);
    const badDate = run('tenant', 'set-licence', tenant.id, '31.12.2030');
    expect(badDate.code).toBe(6);
    expect(badDate.stderr).toMatch(/YYYY-MM-DD/);

    // Without --yes and without a terminal, nothing is deleted.
    const refused = run('tenant', 'delete', tenant.id);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toMatch(/--yes/);
    expect(json<Tenant>('tenant', 'show', tenant.id).id).toBe(tenant.id);

    const report = json<{ removed: string[]; reason: string }>('tenant', 'delete', tenant.id, '--yes');
    expect(report.reason).toBe('deleted-by-command');
    expect(report.removed.length).toBeGreaterThanOrEqual(2);
    expect(run('tenant', 'show', tenant.id).code).toBe(3);
  });

  it('explains a bad configuration and exits with 7', () => {
    const r = tresor(['tenant', 'list'], { cwd: dir, env: { ...env, TRESOR_SERVER_PORT: 'eighty' } });
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/server\.port/);
    expect(r.stderr).toMatch(/TRESOR_SERVER_PORT/);
    expect(r.stderr).toMatch(/eighty/);
  });

  it('prints the effective configuration with secrets masked', () => {
    const r = tresor(['config', 'print'], { cwd: dir, env: { ...env, TRESOR_REDIS_URL: 'redis://:s3cret-redis@127.0.0.1:6379' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/port = 8443/);
    expect(r.stdout).not.toContain('s3cret-redis');
    expect(r.stdout).toContain('127.0.0.1:6379');
  });

  describe('remote mode as a reseller', () => {
    let server: ServeProcess;
    const remoteEnv: Record<string, string> = {};
    beforeAll(async () => {
      const port = await freePort();
      server = await startServe({ cwd: dir, env: { ...env, TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' } });
      remoteEnv.TRESOR_URL = server.url;
      remoteEnv.TRESOR_CACERT = join(dir, 'data', 'pki', 'ca.pem');
    });
    afterAll(async () => {
      await server?.stop();
    });

    it('logs in and sees and manages only its own tenants', () => {
      const resA = json<{ reseller: { id: string }; invitationLink: string }>('reseller', 'create', '--name', 'Partner Nord', '--admin-login', 'nord@example.test');
      const resB = json<{ reseller: { id: string } }>('reseller', 'create', '--name', 'Partner Süd', '--admin-login', 'sued@example.test');
      const foreign = json<Tenant>('tenant', 'create', '--name', 'Kunde Süd', '--reseller', resB.reseller.id);

      // The invited admin sets a password with the one-time key of the link, here with curl.
      const key = /#key=([A-Za-z0-9_-]{43})$/.exec(resA.invitationLink)![1]!;
      const accept = (password: string) =>
        spawnSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', remoteEnv.TRESOR_CACERT!, '-H', 'content-type: application/json', '-d', JSON.stringify({ key, newPassword: password }), `${server.url}/api/v1/auth/invitation/accept`], { encoding: 'utf8' }).stdout;
      expect(accept('short')).toBe('400'); // refused by the policy; the key stays usable
      expect(accept(GOOD_PASSWORD)).toBe('204');
      expect(accept(GOOD_PASSWORD)).toBe('401'); // used up

      const login = tresor(['--json', 'login', '--login', 'nord@example.test'], {
        cwd: dir,
        env: { ...remoteEnv, TRESOR_PASSWORD: GOOD_PASSWORD },
      });
      expect(login.code, login.stderr).toBe(0);
      const token = (JSON.parse(login.stdout) as { sessionToken: string }).sessionToken;
      const asNord = (...args: string[]) => tresor(['--json', ...args], { cwd: dir, env: { ...remoteEnv, TRESOR_TOKEN: token } });

      const own = asNord('tenant', 'create', '--name', 'Kunde Nord');
      expect(own.code, own.stderr).toBe(0);
      expect((JSON.parse(own.stdout) as Tenant).resellerId).toBe(resA.reseller.id);
      const list = JSON.parse(asNord('tenant', 'list').stdout) as Tenant[];
      expect(list.map((t) => t.name)).toEqual(['Kunde Nord']);
      expect(asNord('tenant', 'show', foreign.id).code).toBe(3);
      expect(asNord('tenant', 'delete', foreign.id, '--yes').code).toBe(3);
      expect(asNord('reseller', 'list').code).toBe(4);
      // A reseller invites its customer's first admin, but never a data role (member, dpo).
      const ownId = (JSON.parse(own.stdout) as Tenant).id;
      const invited = asNord('account', 'invite', '--email', 'admin@kunde-nord.test', '--role', 'admin', '--tenant', ownId);
      expect(invited.code, invited.stderr).toBe(0);
      expect(invited.stdout).not.toContain('#key=');
      expect(asNord('account', 'invite', '--email', 'member@kunde-nord.test', '--role', 'member', '--tenant', ownId).code).toBe(4);
      expect(asNord('account', 'invite', '--email', 'x@kunde-sued.test', '--role', 'admin', '--tenant', foreign.id).code).toBe(3);
      expect(json<Tenant>('tenant', 'show', foreign.id).status).toBe('active');

      const badLogin = tresor(['login', '--login', 'nord@example.test'], { cwd: dir, env: { ...remoteEnv, TRESOR_PASSWORD: 'wrong' } });
      expect(badLogin.code).toBe(4);
      expect(readFileSync(join(dir, 'data', 'pki', 'ca.pem'), 'utf8')).toMatch(/BEGIN CERTIFICATE/);
    });

    it('hands a tenant over with `tresor tenant handover`, showing progress; the installer keeps no access', () => {
      const curl = (token: string | undefined, method: string, path: string, body?: unknown) => {
        const r = spawnSync(
          'curl',
          ['-sS', '-X', method, '-w', '\n%{http_code}', '--cacert', remoteEnv.TRESOR_CACERT!, ...(token ? ['-H', `authorization: Bearer ${token}`] : []), ...(body === undefined ? [] : ['-H', 'content-type: application/json', '-d', JSON.stringify(body)]), `${server.url}${path}`],
          { encoding: 'utf8' },
        ).stdout;
        const status = Number(r.slice(r.lastIndexOf('\n') + 1));
        const text = r.slice(0, r.lastIndexOf('\n'));
        return { status, body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown> & Record<number, unknown>) };
      };
      const outbox = join(dir, 'data', 'outbox');
      const login = (email: string) => (JSON.parse(tresor(['--json', 'login', '--login', email], { cwd: dir, env: { ...remoteEnv, TRESOR_PASSWORD: GOOD_PASSWORD } }).stdout) as { sessionToken: string }).sessionToken;
      const tenant = json<Tenant & { initialKeys: { activationKey: string } }>('tenant', 'create', '--name', 'Kunde mit Übergabe');
      json('account', 'invite', '--email', 'admin@uebergabe-cli.test', '--role', 'admin', '--tenant', tenant.id);
      expect(curl(undefined, 'POST', '/api/v1/auth/invitation/accept', { key: mailedKey(outbox, 'admin@uebergabe-cli.test'), newPassword: GOOD_PASSWORD }).status).toBe(204);
      const admin = login('admin@uebergabe-cli.test');
      for (const email of ['setup@partner-cli.test', 'owner@uebergabe-cli.test']) {
        expect(curl(admin, 'POST', '/api/v1/accounts', { email, role: 'member' }).status).toBe(201);
        expect(curl(undefined, 'POST', '/api/v1/auth/invitation/accept', { key: mailedKey(outbox, email), newPassword: GOOD_PASSWORD }).status).toBe(204);
      }
      const setup = login('setup@partner-cli.test');
      expect(curl(setup, 'POST', '/api/v1/keys/activate', { activationKey: tenant.initialKeys.activationKey }).status).toBe(204);
      for (let i = 0; i < 3; i++) expect(curl(setup, 'POST', '/api/v1/contacts', { name: `Kundin ${i}` }).status).toBe(201);

      const asSetup = (...args: string[]) => tresor(args, { cwd: dir, env: { ...remoteEnv, TRESOR_TOKEN: setup } });
      expect(tresor(['tenant', 'handover', '--tenant', tenant.id, '--owner', 'owner@uebergabe-cli.test', '--yes'], { cwd: dir, env: {} }).code).toBe(6); // no key locally
      expect(asSetup('tenant', 'handover', '--tenant', tenant.id, '--owner', 'nobody@uebergabe-cli.test', '--yes').code).toBe(3);
      expect(tresor(['tenant', 'handover', '--tenant', tenant.id, '--owner', 'owner@uebergabe-cli.test', '--yes'], { cwd: dir, env: { ...remoteEnv, TRESOR_TOKEN: admin } }).code).toBe(4); // an admin holds no key
      const handed = asSetup('tenant', 'handover', '--tenant', tenant.id, '--owner', 'owner@uebergabe-cli.test', '--yes');
      expect(handed.code, handed.stderr).toBe(0);
      expect(handed.stderr).toContain('re-encrypted 3 records');
      expect(handed.stdout).toMatch(/Handed over to owner@uebergabe-cli\.test: tenant secret version 2, 3 records re-encrypted/);

      expect(curl(setup, 'GET', '/api/v1/contacts').status).toBe(401); // the installer's sessions ended
      const setupAgain = login('setup@partner-cli.test');
      expect(curl(setupAgain, 'GET', '/api/v1/keys/status').body).toMatchObject({ dataAccess: false });
      const owner = login('owner@uebergabe-cli.test');
      const contacts = curl(owner, 'GET', '/api/v1/contacts');
      expect(contacts.status).toBe(200);
      expect(Object.values(contacts.body!).map((c) => (c as { name: string }).name).sort()).toEqual(['Kundin 0', 'Kundin 1', 'Kundin 2']);
    });
  });
});

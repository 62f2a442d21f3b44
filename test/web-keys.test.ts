import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import { openCore } from '../src/core.js';
import { parseRecoveryCode } from '../src/crypto/tenant-keys.js';
import { launchBrowser, watchedPage } from './browser.js';
import { freePort, startServe, tresor, type ServeProcess } from './cli-process.js';
import { silentLog } from './helpers.js';

/**
 * The tenant secret in the web app and the CLI, against a real `tresor serve` and Debian's Chromium: the
 * recovery code shown once to the data user who activated the tenant (never to its creator), what a
 * password reset costs and how the recovery code repairs it, and resuming an interrupted rotation from the
 * handover page and with `tresor tenant handover --resume`.
 */
describe('tenant secret in the web app and the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-web-keys-'));
  let server: ServeProcess;
  let browser: Browser;
  let port = 0;
  const env = () => ({ TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' });
  const cli = (...args: string[]) => tresor(['--json', ...args], { cwd: dir, env: env() });
  let tenantId = '';
  let recoveryCode = '';
  const MEMBER = 'anna@praxis-keys.test';
  let password = 'Sorgfalt mit Daten 2026';

  beforeAll(async () => {
    port = await freePort();
    server = await startServe({ cwd: dir, env: env() });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const login = async (page: Awaited<ReturnType<typeof watchedPage>>['page']) => {
    await page.goto(`${server.url}/app/login`);
    await page.getByLabel('Login or e-mail address').fill(MEMBER);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Address book' }).waitFor();
  };

  it('shows the recovery code once to the data user who activated; a reset loses access until the code is entered', async () => {
    const created = cli('tenant', 'create', '--name', 'Praxis Schluessel');
    expect(created.code, created.stderr).toBe(0);
    const tenant = JSON.parse(created.stdout) as { id: string; initialKeys: Record<string, string> };
    tenantId = tenant.id;
    expect(Object.keys(tenant.initialKeys)).toEqual(['activationKey']); // the creator gets no recovery code
    const invited = cli('account', 'invite', '--email', MEMBER, '--role', 'member', '--tenant', tenantId, '--language', 'en');
    expect(invited.code, invited.stderr).toBe(0);

    const member = await watchedPage(browser, 'en-GB');
    const { page } = member;
    await page.goto((JSON.parse(invited.stdout) as { link: string }).link);
    await page.getByLabel('New password', { exact: true }).fill(password);
    await page.getByLabel('Repeat the new password').fill(password);
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByRole('link', { name: 'Log in' }).waitFor();
    await login(page);
    await page.getByText(/After a forgotten password was reset, access is gone until someone grants it again or you enter the recovery code/).waitFor();
    await page.getByLabel('Activation key').fill(tenant.initialKeys.activationKey!);
    await page.getByRole('button', { name: 'Unlock data access' }).click();
    await page.getByText(/recovery code is waiting for you/).waitFor();
    await page.getByRole('button', { name: 'Show the recovery code now' }).click();
    recoveryCode = (await page.getByTestId('recovery-code').textContent()) ?? '';
    expect(recoveryCode).toMatch(/^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
    const addForm = page.getByRole('form', { name: 'Add contact' });
    await addForm.getByLabel('Name').fill('Erika Mustermann');
    await addForm.getByRole('button', { name: 'Add contact' }).click();
    await page.getByRole('cell', { name: 'Erika Mustermann', exact: true }).waitFor();
    await page.reload();
    await page.getByRole('cell', { name: 'Erika Mustermann', exact: true }).waitFor();
    expect(await page.getByText(/recovery code is waiting for you/).count()).toBe(0); // shown once

    // The password is forgotten: the reset page says what it costs; the recovery code brings access back.
    const reset = cli('account', 'reset-link', '--login', MEMBER);
    expect(reset.code, reset.stderr).toBe(0);
    await page.goto((JSON.parse(reset.stdout) as { link: string }).link);
    await page.getByText(/After the reset you have no data access until a colleague who has access grants it to you again or you enter your tenant's recovery code/).waitFor();
    password = 'Neues Passwort nach Reset 7';
    await page.getByLabel('New password', { exact: true }).fill(password);
    await page.getByLabel('Repeat the new password').fill(password);
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByRole('link', { name: 'Log in' }).waitFor();
    await login(page);
    await page.getByText(/This session has no data access/).waitFor();
    await page.getByLabel('or recovery code').fill(recoveryCode);
    await page.getByRole('button', { name: 'Unlock data access' }).click();
    await page.getByRole('cell', { name: 'Erika Mustermann', exact: true }).waitFor();
    expect(await member.problems()).toEqual([]);
  });

  it('resumes an interrupted rotation from the handover page and with tresor tenant handover --resume', async () => {
    // A rotation that stopped after the key change, before the records were re-encrypted (as after a crash),
    // made with the data directory like the CLI does, from the customer's own recovery code.
    const core = await openCore(loadConfig({ cwd: dir, env: env() }), { log: silentLog });
    let secret = parseRecoveryCode(recoveryCode)!;
    const interrupt = async () => {
      const member = await core.storage.control.selectFrom('accounts').select(['id', 'public_key']).where('login', '=', MEMBER).executeTakeFirstOrThrow();
      secret = (await core.tenantKeys.rotate(tenantId, secret, { by: 'test', keep: [{ id: member.id, publicKey: member.public_key! }], grants: [] })).secret;
      expect(await core.tenantKeys.rotationPending(tenantId)).toBe(true);
    };
    try {
      await interrupt();
      const { page, problems } = await watchedPage(browser, 'en-GB');
      await login(page);
      await page.goto(`${server.url}/app/grants`);
      await page.getByText('A renewal of the tenant secret was interrupted: not every record is re-encrypted yet.').waitFor();
      await page.getByRole('button', { name: 'Resume re-encryption' }).click();
      await page.getByText('Resumed: 1 records re-encrypted.').waitFor();
      expect(await core.tenantKeys.rotationPending(tenantId)).toBe(false);
      await page.goto(`${server.url}/app/contacts`);
      await page.getByRole('cell', { name: 'Erika Mustermann', exact: true }).waitFor();
      expect(await problems()).toEqual([]);

      await interrupt();
      const remote = { ...env(), TRESOR_URL: server.url, TRESOR_CACERT: join(dir, 'data', 'pki', 'ca.pem') };
      const token = tresor(['--json', 'login', '--login', MEMBER], { cwd: dir, env: { ...remote, TRESOR_PASSWORD: password } });
      expect(token.code, token.stderr).toBe(0);
      const asMember = (...args: string[]) => tresor(args, { cwd: dir, env: { ...remote, TRESOR_TOKEN: (JSON.parse(token.stdout) as { sessionToken: string }).sessionToken } });
      const resumed = asMember('tenant', 'handover', '--tenant', tenantId, '--resume');
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stderr).toContain('re-encrypted 1 records');
      expect(resumed.stdout).toMatch(/Resumed: 1 records re-encrypted/);
      expect(asMember('tenant', 'handover', '--tenant', tenantId, '--resume').stdout).toMatch(/nothing to do/);
      expect(await core.tenantKeys.rotationPending(tenantId)).toBe(false);
      const versions = await (await core.storage.tenantDb({ tenantId, databaseName: core.storage.databaseNameFor(tenantId) })).selectFrom('contacts').select('key_version').execute();
      expect(versions.map((v) => v.key_version)).toEqual([3]);
      // Without --owner and without --resume the command says what it needs.
      const neither = asMember('tenant', 'handover', '--tenant', tenantId);
      expect(neither.code).not.toBe(0);
      expect(neither.stderr).toMatch(/--owner <login>, or continue an interrupted handover with --resume/);
    } finally {
      await core.close();
    }
  });
});

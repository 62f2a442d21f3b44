import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, screenshot, watchedPage } from './browser.js';
import { freePort, startServe, type ServeProcess } from './cli-process.js';
import { readOutbox } from './helpers.js';

/**
 * The operator creates a tenant in the web app with a named first data user: the page says the key was
 * mailed to that person and shows no key; without a name it shows the key once (the old way).
 */
describe('creating a tenant with a first data user in Chromium', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-web-first-'));
  let server: ServeProcess;
  let browser: Browser;
  const NEW_PASSWORD = 'Browser Lantern Harbor 2026';

  beforeAll(async () => {
    const port = await freePort();
    server = await startServe({ cwd: dir, env: { TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' } });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows "mailed to the first data user" instead of the key, in English and German', async () => {
    const operatorPassword = /password: (\S+)/.exec(server.output())![1]!;
    const { page, problems } = await watchedPage(browser, 'en-GB');
    await page.goto(`${server.url}/app/login`);
    await page.getByLabel('Login or e-mail address').fill('operator');
    await page.getByLabel('Password', { exact: true }).fill(operatorPassword);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByLabel('Current password').fill(operatorPassword);
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('Repeat the new password').fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    await page.goto(`${server.url}/app/users`);
    await page.getByRole('heading', { name: 'New tenant' }).waitFor();

    await page.getByLabel('Tenant name').fill('Praxis im Browser');
    await page.getByLabel('First data user (e-mail address)').fill('leitung@praxis-browser.test');
    await page.getByLabel("First data user's role").selectOption('member');
    await page.getByRole('button', { name: 'Create tenant' }).click();
    await page.getByText('Tenant Praxis im Browser created. The activation key was mailed to the first data user (leitung@praxis-browser.test) only').waitFor();
    await screenshot(page, 'tenant-first-data-user');
    const mails = readOutbox(join(dir, 'data', 'outbox')).filter((m) => m.to === 'leitung@praxis-browser.test');
    const key = /(?:Aktivierungsschlüssel|Activation key): ([A-Za-z0-9_-]{43})/.exec(mails.map((m) => m.text).join('\n'))?.[1];
    expect(key).toBeDefined();
    expect(await page.content()).not.toContain(key!);
    expect(await page.locator('#tenant-activation-key').count()).toBe(0);

    // Without a name: the key is shown once, as before.
    await page.getByRole('button', { name: 'Switch language' }).click();
    await page.getByRole('heading', { name: 'Neuer Mandant' }).waitFor();
    await page.getByLabel('Name des Mandanten').fill('Praxis ohne Namen');
    await page.getByRole('button', { name: 'Mandanten anlegen' }).click();
    await page.getByText('Mandant Praxis ohne Namen angelegt. Geben Sie diesen Aktivierungsschlüssel').waitFor();
    expect(await page.locator('#tenant-activation-key').textContent()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await problems()).toEqual([]);
  });
});

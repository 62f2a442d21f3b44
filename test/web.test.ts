import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret, TOTP } from 'otpauth';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, screenshot, watchedPage } from './browser.js';
import { freePort, startServe, tresor, type ServeProcess } from './cli-process.js';
import { mailedKey } from './helpers.js';

describe('web app texts', () => {
  it('has the same keys in German and English', async () => {
    // Imported by path at run time: the web app is type-checked with its own (DOM) configuration.
    const { dictionaries } = (await import('../web/src/i18n.js' as string)) as { dictionaries: Record<'de' | 'en', Record<string, string>> };
    expect(Object.keys(dictionaries.de).sort()).toEqual(Object.keys(dictionaries.en).sort());
    for (const [key, text] of Object.entries(dictionaries.de)) expect(text.length, key).toBeGreaterThan(0);
  });
});

/**
 * The web app in a real browser (Debian's Chromium through playwright-core) against a real `tresor
 * serve`: first login with the forced password change, the ledger view with a proof checked in the
 * browser and "verify now", German and English, sessions, a second factor, and an invitation link.
 * Every page runs under the server's strict CSP; any violation fails the test.
 */
describe('web app in Chromium', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-web-'));
  let server: ServeProcess;
  let browser: Browser;
  let port = 0;
  let operatorPassword = '';
  const NEW_PASSWORD = 'Browser Lantern Harbor 2026';
  const env = () => ({ TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' });

  beforeAll(async () => {
    port = await freePort();
    server = await startServe({ cwd: dir, env: env() });
    operatorPassword = /password: (\S+)/.exec(server.output())![1]!;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('logs in, forces the password change, shows the ledger with a verified proof, in English and German', async () => {
    const { page, problems } = await watchedPage(browser, 'en-GB');
    await page.goto(server.url + '/');
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    expect(page.url()).toBe(`${server.url}/app/login`);
    await screenshot(page, 'login');
    await page.getByLabel('Login or e-mail address').fill('operator');
    await page.getByLabel('Password', { exact: true }).fill('wrong password 123');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Login failed' }).waitFor();
    await page.waitForTimeout(1100); // past the 1 s slowdown the wrong guess caused
    await page.getByLabel('Password', { exact: true }).fill(operatorPassword);
    await page.getByRole('button', { name: 'Log in' }).click();

    await page.getByText('You must set a new password before you continue.').waitFor();
    await screenshot(page, 'password-forced');
    await page.getByLabel('Current password').fill(operatorPassword);
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('Repeat the new password').fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();

    await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    await page.getByLabel('Action (e.g. auth. or record.read)').fill('auth.');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByRole('cell', { name: 'auth.password.change' }).waitFor();
    const opens = page.getByRole('button', { name: /^Open \d+$/ });
    expect(await opens.count()).toBeGreaterThanOrEqual(2);
    await opens.last().click(); // the newest: proved against a checkpoint written on demand
    await page.getByText('Proof valid: the entry is in the signed tree.').waitFor();
    await page.getByRole('button', { name: 'Close' }).click();
    await opens.first().click();
    await page.getByText('Proof valid: the entry is in the signed tree.').waitFor();
    await page.getByRole('button', { name: 'Verify now' }).click();
    await page.getByText(/^✓ Verified: \d+ entries/).waitFor();
    await screenshot(page, 'ledger');

    await page.getByRole('button', { name: 'Switch language' }).click();
    await page.getByRole('heading', { name: 'Manipulationssicheres Protokoll' }).waitFor();
    expect(await page.evaluate<string>('document.documentElement.lang')).toBe('de');
    await page.getByRole('button', { name: 'Jetzt prüfen' }).click();
    await page.getByText(/Geprüft: \d+ Einträge/).waitFor();
    await screenshot(page, 'ledger-de');
    await page.getByRole('button', { name: 'Sprache wechseln' }).click();
    await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    expect(await problems()).toEqual([]);
  });

  it('lists sessions and logs out everywhere; sets up TOTP and then needs a code at login', async () => {
    const { page, problems } = await watchedPage(browser, 'en-GB');
    const login = async (otp?: string) => {
      await page.goto(`${server.url}/app/login`);
      await page.getByLabel('Login or e-mail address').fill('operator');
      await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
      await page.getByRole('button', { name: 'Log in' }).click();
      if (otp) {
        await page.getByLabel(/Code from your authenticator app/).fill(otp);
        await page.getByRole('button', { name: 'Log in' }).click();
      }
      await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    };
    await login();
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('heading', { name: 'Your sessions' }).waitFor();
    await page.getByText('(this session)').waitFor();
    await screenshot(page, 'sessions');

    await page.getByRole('link', { name: 'Second factor' }).click();
    await page.getByRole('button', { name: 'Start set-up' }).click();
    const secret = (await page.locator('#totp-secret').textContent())!;
    const code = TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
    await page.getByLabel('Current 6-digit code').fill(code);
    await page.getByRole('button', { name: 'Activate' }).click();
    const codes = page.getByRole('list', { name: /recovery codes/ }).getByRole('listitem');
    await codes.first().waitFor();
    expect(await codes.count()).toBe(10);
    const recovery = (await codes.first().textContent())!;
    await screenshot(page, 'totp-codes');
    await page.getByRole('button', { name: 'I have saved the codes' }).click();
    await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();

    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('button', { name: 'Log out everywhere' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    await login(recovery); // a recovery code works once instead of the (already used) TOTP code
    expect(await problems()).toEqual([]);
  });

  it('accepts an invitation from the link in the mail and logs the new reseller admin in', async () => {
    const created = tresor(['--json', 'reseller', 'create', '--name', 'Partner Nord', '--admin-login', 'nord@partner.test'], { cwd: dir, env: env() });
    expect(created.code, created.stderr).toBe(0);
    const link = (JSON.parse(created.stdout) as { invitationLink: string }).invitationLink;
    expect(link).toMatch(new RegExp(`^https://localhost:${port}/app/invite#key=`));
    const mail = readFileSync(join(dir, 'data', 'outbox', (await import('node:fs')).readdirSync(join(dir, 'data', 'outbox'))[0]!), 'utf8');
    expect(mail).toMatch(/Einladung zu Tresor: Partner Nord/);

    const { page, problems } = await watchedPage(browser, 'de-DE');
    await page.goto(link.replace('https://localhost', 'https://127.0.0.1'));
    await page.getByRole('heading', { name: 'Einladung annehmen' }).waitFor();
    expect(page.url()).not.toContain('key='); // the key leaves the address bar at once
    await page.getByText('Einladung für nord@partner.test (Partner Nord, Rolle: reseller)').waitFor();
    await page.getByLabel('Neues Passwort', { exact: true }).fill('kurz');
    await page.getByLabel('Neues Passwort wiederholen').fill('kurz');
    await page.getByRole('button', { name: 'Passwort festlegen' }).click();
    await page.getByRole('alert').filter({ hasText: 'at least 12 characters' }).waitFor();
    await page.getByLabel('Neues Passwort', { exact: true }).fill('Sommerwiese Laterne 2026');
    await page.getByLabel('Neues Passwort wiederholen').fill('Sommerwiese Laterne 2026');
    await page.getByRole('button', { name: 'Passwort festlegen' }).click();
    await page.getByText('Ihr Konto ist bereit.').waitFor();
    await screenshot(page, 'invitation');
    await page.getByRole('link', { name: 'Anmelden' }).click();
    await page.getByLabel('Anmeldename oder E-Mail-Adresse').fill('nord@partner.test');
    await page.getByLabel('Passwort', { exact: true }).fill('Sommerwiese Laterne 2026');
    await page.getByRole('button', { name: 'Anmelden' }).click();
    await page.getByRole('heading', { name: 'Manipulationssicheres Protokoll' }).waitFor();
    expect(await problems()).toEqual([]);
  });

  it('keeps admins to user pages; a member unlocks data access with the activation key and works with the address book', async () => {
    const tenant = JSON.parse(tresor(['--json', 'tenant', 'create', '--name', 'Praxis Web'], { cwd: dir, env: env() }).stdout) as { id: string; initialKeys: { activationKey: string } };
    const invited = tresor(['--json', 'account', 'invite', '--email', 'admin@praxis-web.test', '--role', 'admin', '--tenant', tenant.id, '--language', 'en'], { cwd: dir, env: env() });
    expect(invited.code, invited.stderr).toBe(0);
    const adminLink = (JSON.parse(invited.stdout) as { link: string }).link;

    const admin = await watchedPage(browser, 'en-GB');
    const acceptAndLogin = async (page: typeof admin.page, link: string, login: string, password: string) => {
      await page.goto(link);
      await page.getByLabel('New password', { exact: true }).fill(password);
      await page.getByLabel('Repeat the new password').fill(password);
      await page.getByRole('button', { name: 'Set password' }).click();
      await page.getByRole('link', { name: 'Log in' }).click();
      await page.getByLabel('Login or e-mail address').fill(login);
      await page.getByLabel('Password', { exact: true }).fill(password);
      await page.getByRole('button', { name: 'Log in' }).click();
    };
    await acceptAndLogin(admin.page, adminLink, 'admin@praxis-web.test', 'Verwaltung der Praxis 2026');
    await admin.page.getByRole('heading', { name: 'Users' }).waitFor();
    await admin.page.getByText('Administrators manage users and settings but see no personal data.').waitFor();
    expect(await admin.page.getByRole('link', { name: 'Address book' }).count()).toBe(0);
    await admin.page.goto(`${server.url}/app/contacts`);
    await admin.page.getByRole('heading', { name: 'Users' }).waitFor(); // no data page for an admin
    await admin.page.getByLabel('E-mail address').fill('member@praxis-web.test');
    await admin.page.getByLabel('Role').selectOption('member');
    await admin.page.getByRole('button', { name: 'Invite' }).click();
    await admin.page.getByText('Invitation sent to member@praxis-web.test.').waitFor();
    await admin.page.getByRole('cell', { name: 'member@praxis-web.test' }).waitFor();
    await screenshot(admin.page, 'users');
    expect(await admin.problems()).toEqual([]);

    const member = await watchedPage(browser, 'en-GB');
    const memberLink = `${server.url}/app/invite#key=${mailedKey(join(dir, 'data', 'outbox'), 'member@praxis-web.test')}`;
    await acceptAndLogin(member.page, memberLink, 'member@praxis-web.test', 'Sorgfalt mit Daten 2026');
    await member.page.getByRole('heading', { name: 'Address book' }).waitFor();
    await member.page.getByText(/This session has no data access/).waitFor();
    await member.page.getByLabel('Activation key').fill(tenant.initialKeys.activationKey);
    await member.page.getByRole('button', { name: 'Unlock data access' }).click();
    const addForm = member.page.getByRole('form', { name: 'Add contact' });
    await addForm.getByLabel('Name').fill('Erika Mustermann');
    await addForm.getByLabel('E-mail').fill('erika@example.org');
    await addForm.getByLabel('Phone').fill('+49 30 1234567');
    await addForm.getByRole('button', { name: 'Add contact' }).click();
    await member.page.getByRole('cell', { name: 'Erika Mustermann', exact: true }).waitFor();
    const search = member.page.getByRole('form', { name: 'Search' });
    await search.getByLabel('E-mail').fill('  ERIKA@example.org ');
    await search.getByRole('button', { name: 'Search' }).click();
    await member.page.getByRole('cell', { name: 'erika@example.org', exact: true }).waitFor();
    await search.getByLabel('E-mail').fill('');
    await member.page.getByLabel(/CSV file/).setInputFiles({
      name: 'kontakte.csv',
      mimeType: 'text/csv',
      buffer: Buffer.from('name,email,phone\r\nHans Import,hans@example.org,0049 30 111\r\nKaputt,keine-adresse,\r\nGrete Import,,\r\n'),
    });
    await member.page.getByText('2 contacts imported, 1 lines with errors.').waitFor();
    await member.page.getByText('Line 3: email must be an e-mail address such as name@example.org').waitFor();
    expect(await member.page.locator('#import-progress').getAttribute('value')).toBe('3');
    await member.page.getByRole('cell', { name: 'Grete Import', exact: true }).waitFor();
    await screenshot(member.page, 'contacts');
    expect(await member.problems()).toEqual([]);
  });
});

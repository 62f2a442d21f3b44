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
  type Watched = Awaited<ReturnType<typeof watchedPage>>;
  /** What the address-book test leaves for the next one: the tenant's admin and member pages. */
  const praxis: { admin?: Watched; member?: Watched; acceptAndLogin?: (page: Watched['page'], link: string, login: string, password: string) => Promise<void> } = {};

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
    await page.locator('html[lang="de"]').waitFor({ state: 'attached' }); // set right after the render that shows German
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
    // The server's problem code, in the page's language (not the server's English message).
    await page.getByRole('alert').filter({ hasText: 'Das Passwort muss mindestens 12 Zeichen lang sein (es hat 4).' }).waitFor();
    expect(await page.getByRole('alert').textContent()).not.toMatch(/at least/);
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
    await acceptAndLogin(admin.page, adminLink, 'admin@praxis-web.test', 'Verwaltung am Empfang 2026');
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
    Object.assign(praxis, { admin, member, acceptAndLogin });
  });

  it('keeps jobs, grants a technician chosen jobs with a one-time access link, revokes, and hands the tenant over', async () => {
    const { admin, member, acceptAndLogin } = praxis as Required<typeof praxis>;
    // The admin invites a technician and the customer's future owner.
    await admin.page.goto(`${server.url}/app/users`);
    for (const [email, role] of [['technik@service-web.test', 'technician'], ['chefin@praxis-web.test', 'member']] as const) {
      await admin.page.getByLabel('E-mail address').fill(email);
      await admin.page.getByLabel('Role').selectOption(role);
      await admin.page.getByRole('button', { name: 'Invite' }).click();
      await admin.page.getByText(`Invitation sent to ${email}.`).waitFor();
    }
    const outbox = join(dir, 'data', 'outbox');
    const tech = await watchedPage(browser, 'de-DE');
    await tech.page.goto(`${server.url}/app/invite#key=${mailedKey(outbox, 'technik@service-web.test')}`);
    await tech.page.getByLabel('Neues Passwort', { exact: true }).fill('Monteur mit Leiter 2026');
    await tech.page.getByLabel('Neues Passwort wiederholen').fill('Monteur mit Leiter 2026');
    await tech.page.getByRole('button', { name: 'Passwort festlegen' }).click();
    await tech.page.getByRole('status').waitFor();
    const owner = await watchedPage(browser, 'en-GB');
    await acceptAndLogin(owner.page, `${server.url}/app/invite#key=${mailedKey(outbox, 'chefin@praxis-web.test')}`, 'chefin@praxis-web.test', 'Der Laden gehört mir 2026');
    await owner.page.getByText(/This session has no data access/).waitFor();

    // Jobs: the second encrypted collection, with appointment times entered in local time.
    await member.page.getByRole('link', { name: 'Jobs' }).click();
    await member.page.getByRole('heading', { name: 'Jobs' }).waitFor();
    const addJob = member.page.getByRole('form', { name: 'Add job' });
    for (const [customer, asset] of [['Frau Käthe Zähler', 'Z-4711'], ['Herr Otto Ablesung', 'Z-0815']] as const) {
      await addJob.getByLabel('Customer').fill(customer);
      await addJob.getByLabel('Address').fill('Lindenallee 3, 79098 Freiburg');
      await addJob.getByLabel('Appointment from').fill('2026-12-01T08:00');
      await addJob.getByLabel('Appointment until').fill('2026-12-01T10:00');
      await addJob.getByLabel('Meter/asset id').fill(asset);
      await addJob.getByRole('button', { name: 'Add job' }).click();
      await member.page.getByRole('cell', { name: customer, exact: true }).waitFor();
    }
    const jobSearch = member.page.getByRole('form', { name: 'Search' });
    await jobSearch.getByLabel('Meter/asset id').fill('z-0815');
    await jobSearch.getByRole('button', { name: 'Search' }).click();
    await member.page.getByRole('cell', { name: 'Frau Käthe Zähler', exact: true }).waitFor({ state: 'detached' });
    await member.page.getByRole('cell', { name: 'Herr Otto Ablesung', exact: true }).waitFor();
    await screenshot(member.page, 'jobs');

    // A grant of one job to the technician, then a one-time access link by mail.
    await member.page.getByRole('link', { name: 'Grants' }).click();
    const form = member.page.getByRole('form', { name: 'New grant' });
    await form.getByLabel('Grantee').selectOption({ label: 'technik@service-web.test (technician)' });
    await form.getByLabel('Area').selectOption('jobs');
    await form.getByLabel('Herr Otto Ablesung').check();
    await form.getByRole('button', { name: 'Grant' }).click();
    await member.page.getByText('The grant was created.').waitFor();
    await member.page.getByRole('cell', { name: 'chosen entries: 1' }).waitFor();
    await member.page.getByRole('button', { name: 'Send access link' }).click();
    await member.page.getByText('A one-time access link was sent to technik@service-web.test.').waitFor();
    await screenshot(member.page, 'grants');

    const accessLink = `${server.url}/app/access#key=${mailedKey(outbox, 'technik@service-web.test', 'access')}`;
    await tech.page.goto(accessLink);
    await tech.page.getByRole('heading', { name: 'Aufträge' }).waitFor();
    await tech.page.getByRole('cell', { name: 'Herr Otto Ablesung', exact: true }).waitFor();
    expect(await tech.page.getByRole('cell', { name: 'Frau Käthe Zähler' }).count()).toBe(0); // only the granted job
    expect(await tech.page.getByRole('button', { name: /Löschen/ }).count()).toBe(0); // read only
    expect(await tech.page.getByRole('button', { name: /Bearbeiten/ }).count()).toBe(0);
    expect(await tech.page.getByRole('link', { name: 'Freigaben' }).count()).toBe(0);
    await screenshot(tech.page, 'access-link');
    // The link works once: opened again (another browser), it is refused.
    const again = await watchedPage(browser, 'de-DE');
    await again.page.goto(accessLink);
    await again.page.getByText(/Dieser Zugangslink ist ungültig, abgelaufen oder wurde schon benutzt/).waitFor();

    // Revoked: the technician's open page loses the data at its next request.
    await member.page.getByRole('button', { name: 'Revoke' }).click();
    await member.page.getByText('The grant is revoked; access ends at once.').waitFor();
    await tech.page.reload();
    await tech.page.getByText('Für Ihr Konto gibt es gerade keine aktive Freigabe.').waitFor();

    // Handover: the member (here in the installer's place) makes the new colleague the owner.
    await member.page.getByRole('link', { name: 'Address book' }).click();
    await member.page.getByRole('button', { name: 'Grant access' }).waitFor(); // the owner waits for data access
    await member.page.getByRole('link', { name: 'Grants' }).click();
    const handover = member.page.getByRole('form', { name: 'Hand over to the customer' });
    await handover.getByLabel('New owner').selectOption({ label: 'chefin@praxis-web.test (member)' });
    await handover.getByRole('button', { name: 'Hand over' }).click();
    await member.page.getByText(/Handed over: key version 2, \d+ records re-encrypted/).waitFor();
    await screenshot(member.page, 'handover');
    await owner.page.reload(); // the owner's copy of the new secret opens at the next login
    await owner.page.getByRole('button', { name: 'Log out' }).click();
    await owner.page.getByLabel('Login or e-mail address').fill('chefin@praxis-web.test');
    await owner.page.getByLabel('Password', { exact: true }).fill('Der Laden gehört mir 2026');
    await owner.page.getByRole('button', { name: 'Log in' }).click();
    await owner.page.getByRole('cell', { name: 'Erika Mustermann', exact: true }).waitFor();
    await member.page.getByRole('link', { name: 'Address book' }).click();
    // The handover ended the member's sessions: the app notices the refused request and goes to the login.
    await member.page.getByText(/This session has no data access|your session has ended/).or(member.page.getByRole('heading', { name: 'Log in' })).first().waitFor();
    expect((await member.page.request.get(`${server.url}/api/v1/keys/status`)).status()).toBe(401);

    for (const p of [admin, member, tech, owner, again]) expect(await p.problems()).toEqual([]);
  });
});

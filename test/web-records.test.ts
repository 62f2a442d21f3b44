import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page, Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../src/shared/csv.js';
import { launchBrowser, screenshot, watchedPage } from './browser.js';
import { freePort, startServe, tresor, type ServeProcess } from './cli-process.js';

type Language = 'de' | 'en';
type Texts = Record<string, string>;

/**
 * The address book and jobs pages in a real browser (Debian's Chromium through playwright-core) against a
 * real `tresor serve`, for a tenant member with data access: create, edit, search as people type
 * (case, spaces, e-mail and phone written differently), delete, CSV import with its progress bar and
 * per-line errors, and CSV export caught as a download — once in English and once in German. The texts
 * come from the web app's own dictionaries, so both languages are checked key for key. The browser runs
 * in Europe/Berlin, so appointment times typed in local time must reach the server as UTC and come back
 * into the edit form as the same local time. Every page runs under the server's strict CSP; any
 * violation or console error fails the test.
 */
describe('address book and jobs pages in Chromium', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-web-records-'));
  let server: ServeProcess;
  let browser: Browser;
  let port = 0;
  let dictionaries: Record<Language, Texts>;
  const MEMBER = 'daten@records-web.test';
  const PASSWORD = 'Akten sorgfältig führen 2026';
  const env = () => ({ TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' });
  const locale = (language: Language) => (language === 'en' ? 'en-GB' : 'de-DE');
  const open = (language: Language) => watchedPage(browser, locale(language), { timezoneId: 'Europe/Berlin' });

  /** A text of the web app in one language, with its {placeholders} filled in. */
  const text = (language: Language, key: string, vars: Record<string, string | number> = {}) => {
    const found = dictionaries[language][key];
    if (found === undefined) throw new Error(`no text ${key} in ${language}`);
    return found.replace(/\{(\w+)\}/g, (_m, name: string) => String(vars[name]));
  };

  const login = async (page: Page, language: Language) => {
    const t = (key: string) => text(language, key);
    await page.goto(`${server.url}/app/login`);
    await page.getByLabel(t('login.login')).fill(MEMBER);
    await page.getByLabel(t('login.password'), { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: t('login.submit') }).click();
    await page.getByRole('heading', { name: t('contacts.title') }).waitFor();
  };

  /** Clicks the search button and returns what the server answered (the list the page then shows). */
  const searchFor = async (page: Page, language: Language, path: 'contacts' | 'jobs', values: Record<string, string>) => {
    const form = page.getByRole('form', { name: text(language, 'contacts.search') });
    for (const [field, value] of Object.entries(values)) await form.getByLabel(text(language, `${path}.${field}`), { exact: true }).fill(value);
    const [response] = await Promise.all([
      page.waitForResponse((r: Response) => r.request().method() === 'GET' && new URL(r.url()).pathname === `/api/v1/${path}`),
      form.getByRole('button', { name: text(language, 'contacts.search') }).click(),
    ]);
    expect(response.status()).toBe(200);
    return (await response.json()) as Record<string, string | null>[];
  };

  const exported = async (page: Page, language: Language, file: string) => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: text(language, 'contacts.export') }).click()]);
    expect(download.suggestedFilename()).toBe(file);
    return parseCsv(readFileSync((await download.path())!, 'utf8'));
  };

  beforeAll(async () => {
    ({ dictionaries } = (await import('../web/src/i18n.js' as string)) as { dictionaries: Record<Language, Texts> });
    port = await freePort();
    server = await startServe({ cwd: dir, env: env() });
    browser = await launchBrowser();
    const created = tresor(['--json', 'tenant', 'create', '--name', 'Records Web'], { cwd: dir, env: env() });
    expect(created.code, created.stderr).toBe(0);
    const tenant = JSON.parse(created.stdout) as { id: string; initialKeys: { activationKey: string } };
    const invited = tresor(['--json', 'account', 'invite', '--email', MEMBER, '--role', 'member', '--tenant', tenant.id, '--language', 'en'], { cwd: dir, env: env() });
    expect(invited.code, invited.stderr).toBe(0);

    // The member sets a password and unlocks data access once; both runs below log in with it.
    const { page, problems } = await open('en');
    await page.goto((JSON.parse(invited.stdout) as { link: string }).link);
    await page.getByLabel(text('en', 'password.new'), { exact: true }).fill(PASSWORD);
    await page.getByLabel(text('en', 'password.repeat')).fill(PASSWORD);
    await page.getByRole('button', { name: text('en', 'invite.submit') }).click();
    await page.getByText(text('en', 'invite.done')).waitFor();
    await login(page, 'en');
    await page.getByText(text('en', 'contacts.noAccess')).waitFor();
    await page.getByLabel(text('en', 'contacts.activationKey')).fill(tenant.initialKeys.activationKey);
    await page.getByRole('button', { name: text('en', 'contacts.activate') }).click();
    await page.getByRole('form', { name: text('en', 'contacts.add') }).waitFor();
    expect(await problems()).toEqual([]);
    await page.context().close();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const language of ['en', 'de'] as const) {
    it(`works with the address book: create, search however typed, edit, delete, import, export (${language})`, async () => {
      const t = (key: string, vars?: Record<string, string | number>) => text(language, key, vars);
      const tag = language === 'en' ? 'eins' : 'zwei';
      const phoneDigits = language === 'en' ? '1111111' : '2222222';
      const anna = { name: `Anna Beispiel ${tag}`, email: `anna.${tag}@example.org`, phone: `+49 30 ${phoneDigits}`, address: 'Lindenallee 3, 79098 Freiburg' };
      const bernd = { name: `Bernd Anders ${tag}`, email: `bernd.${tag}@example.org`, phone: `+49 40 ${phoneDigits}` };
      const { page, problems } = await open(language);
      await login(page, language);

      const add = page.getByRole('form', { name: t('contacts.add') });
      for (const person of [anna, bernd]) {
        for (const [field, value] of Object.entries(person)) await add.getByLabel(t(`contacts.${field}`), { exact: true }).fill(value);
        await add.getByRole('button', { name: t('contacts.add') }).click();
        await page.getByRole('cell', { name: person.name, exact: true }).waitFor();
      }

      // Exact-match search through the blind indexes, typed the way people type.
      const only = async (values: Record<string, string>, expected: string[]) => {
        const found = await searchFor(page, language, 'contacts', { name: '', email: '', phone: '', ...values });
        expect(found.map((r) => r.name)).toEqual(expected);
        for (const name of expected) await page.getByRole('cell', { name, exact: true }).waitFor();
        if (expected.length === 0) await page.getByText(t('contacts.none')).waitFor();
        else expect(await page.locator('tbody tr').count()).toBe(expected.length);
      };
      await only({ name: `  ${anna.name.toUpperCase().replace(' ', '   ')} ` }, [anna.name]);
      await only({ email: ` ${anna.email.toUpperCase()}  ` }, [anna.name]);
      await only({ phone: `0049 (30) ${phoneDigits.slice(0, 3)}-${phoneDigits.slice(3)}` }, [anna.name]);
      await only({ email: `nobody.${tag}@example.org` }, []);
      await only({ name: bernd.name.toLowerCase(), phone: `+49 (40) ${phoneDigits}` }, [bernd.name]);

      // Edit: the form comes filled in, with the focus in it; the server's check says what to fix.
      const everything = async () => (await searchFor(page, language, 'contacts', { name: '', email: '', phone: '' })).map((r) => r.name);
      expect(await everything()).toEqual(expect.arrayContaining([anna.name, bernd.name]));
      await page.getByRole('button', { name: `${t('records.edit')}: ${anna.name}` }).click();
      const edit = page.getByRole('form', { name: t('contacts.edit') });
      expect(await edit.getByLabel(t('contacts.name'), { exact: true }).inputValue()).toBe(anna.name);
      expect(await edit.getByLabel(t('contacts.email'), { exact: true }).inputValue()).toBe(anna.email);
      expect(await edit.getByLabel(t('contacts.address'), { exact: true }).inputValue()).toBe(anna.address);
      // The form takes the focus in the next animation frame: wait for it (bounded) instead of reading it at once.
      await expect.poll(() => page.evaluate<string>('document.activeElement ? document.activeElement.id : ""'), { timeout: 5_000 }).toBe('edit-name');
      await edit.getByLabel(t('contacts.email'), { exact: true }).fill('keine-adresse');
      await edit.getByRole('button', { name: t('records.save') }).click();
      await page.getByRole('alert').filter({ hasText: 'email must be an e-mail address such as name@example.org' }).waitFor();
      const renamed = { name: `Anna Geändert ${tag}`, email: `anna.neu.${tag}@example.org`, phone: `+49 89 ${phoneDigits}` };
      for (const [field, value] of Object.entries(renamed)) await edit.getByLabel(t(`contacts.${field}`), { exact: true }).fill(value);
      await edit.getByLabel(t('contacts.company'), { exact: true }).fill(`Beispiel GmbH ${tag}`);
      await edit.getByRole('button', { name: t('records.save') }).click();
      await page.getByText(t('records.saved')).waitFor();
      await edit.waitFor({ state: 'detached' });
      await page.getByRole('cell', { name: renamed.email, exact: true }).waitFor();
      await page.getByRole('cell', { name: `Beispiel GmbH ${tag}`, exact: true }).waitFor();
      await only({ email: anna.email }, []); // the old values' blind indexes are gone with them
      await only({ phone: anna.phone }, []);
      await only({ email: renamed.email.toUpperCase() }, [renamed.name]);
      await only({ phone: `0049 89 ${phoneDigits}` }, [renamed.name]);
      // Cancel leaves the record as it is.
      await page.getByRole('button', { name: `${t('records.edit')}: ${renamed.name}` }).click();
      await edit.getByLabel(t('contacts.name'), { exact: true }).fill('Nicht gespeichert');
      await edit.getByRole('button', { name: t('records.cancel') }).click();
      await edit.waitFor({ state: 'detached' });
      await only({ name: renamed.name }, [renamed.name]);
      await only({ name: 'Nicht gespeichert' }, []);
      await screenshot(page, `records-contacts-edit-${language}`);

      // Delete, in a second session of the same member while the first one edits the record: saving then
      // says the entry is gone instead of failing silently, and the list is reloaded without it.
      await only({ name: bernd.name }, [bernd.name]);
      await page.getByRole('button', { name: `${t('records.edit')}: ${bernd.name}` }).click();
      await edit.getByLabel(t('contacts.notes'), { exact: true }).fill('zu spät');
      const other = await open(language);
      await login(other.page, language);
      await other.page.getByRole('button', { name: `${t('contacts.delete')}: ${bernd.name}` }).click();
      await other.page.getByRole('cell', { name: bernd.name, exact: true }).waitFor({ state: 'detached' });
      expect(await other.problems()).toEqual([]);
      await other.page.context().close();
      await edit.getByRole('button', { name: t('records.save') }).click();
      await page.getByRole('alert').filter({ hasText: t('records.gone') }).waitFor();
      await page.getByRole('cell', { name: bernd.name, exact: true }).waitFor({ state: 'detached' });
      await edit.waitFor({ state: 'detached' });
      await only({ email: bernd.email }, []);

      // Import: the progress bar fills, each bad line is named with what to fix, the good ones arrive.
      expect(await everything()).toEqual(expect.arrayContaining([renamed.name]));
      await page.getByLabel(t('contacts.importFile')).setInputFiles({
        name: 'kontakte.csv',
        mimeType: 'text/csv',
        buffer: Buffer.from(`name,email,phone,notes\r\nCarla Import ${tag},carla.${tag}@example.org,+49 40 5550101,"sagt ""hallo"""\r\nKaputt ${tag},keine-adresse,,\r\n,ohne.name@example.org,,\r\nDieter Import ${tag},,,\r\n`),
      });
      await page.getByText(t('contacts.importDone', { created: 2, errors: 2 })).waitFor();
      await page.getByText(t('contacts.importLine', { line: 3, message: 'email must be an e-mail address such as name@example.org' })).waitFor();
      await page.getByText(t('contacts.importLine', { line: 4, message: 'name must be 1 to 200 characters' })).waitFor();
      const progress = page.getByRole('progressbar');
      expect(await progress.getAttribute('max')).toBe('4');
      expect(await progress.getAttribute('value')).toBe('4');
      await page.getByRole('cell', { name: `Carla Import ${tag}`, exact: true }).waitFor();
      await page.getByRole('cell', { name: `Dieter Import ${tag}`, exact: true }).waitFor();
      expect(await page.getByRole('cell', { name: `Kaputt ${tag}` }).count()).toBe(0);
      await only({ email: ` CARLA.${tag.toUpperCase()}@example.org` }, [`Carla Import ${tag}`]);
      await screenshot(page, `records-contacts-import-${language}`);

      // Export: the file the browser saves holds every visible record, decrypted, and nothing deleted.
      const rows = await exported(page, language, 'contacts.csv');
      expect(rows[0]).toEqual(['name', 'email', 'phone', 'address', 'company', 'notes', 'book', 'id']);
      const byName = (name: string) => rows.find((r) => r[0] === name);
      expect(byName(renamed.name)?.slice(0, 7)).toEqual([renamed.name, renamed.email, renamed.phone, anna.address, `Beispiel GmbH ${tag}`, '', 'shared']);
      expect(byName(`Carla Import ${tag}`)?.slice(0, 6)).toEqual([`Carla Import ${tag}`, `carla.${tag}@example.org`, '+49 40 5550101', '', '', 'sagt "hallo"']);
      expect(byName(`Dieter Import ${tag}`)).toBeDefined();
      expect(byName(bernd.name)).toBeUndefined();
      expect(byName(anna.name)).toBeUndefined();
      expect(await problems()).toEqual([]);
      await page.context().close();
    });

    it(`works with jobs: create, search however typed, edit with local times, delete, import, export (${language})`, async () => {
      const t = (key: string, vars?: Record<string, string | number>) => text(language, key, vars);
      const tag = language === 'en' ? 'Eins' : 'Zwei';
      const first = { customer_name: `Frau Käthe Zähler ${tag}`, address: 'Lindenallee 3, 79098 Freiburg', window_start: '2026-12-01T08:00', window_end: '2026-12-01T10:00', asset_id: `Z-4711-${tag}`, notes: 'Hund im Garten' };
      const second = { customer_name: `Herr Otto Ablesung ${tag}`, address: 'Am Markt 1, 79098 Freiburg', window_start: '2026-12-02T13:30', window_end: '2026-12-02T14:00', asset_id: `Z-0815-${tag}` };
      const { page, problems } = await open(language);
      await login(page, language);
      await page.getByRole('link', { name: t('nav.jobs') }).click();
      await page.getByRole('heading', { name: t('jobs.title') }).waitFor();

      const add = page.getByRole('form', { name: t('jobs.add') });
      for (const job of [first, second]) {
        for (const [field, value] of Object.entries(job)) await add.getByLabel(t(`jobs.${field}`), { exact: true }).fill(value);
        await add.getByRole('button', { name: t('jobs.add') }).click();
        await page.getByRole('cell', { name: job.customer_name, exact: true }).waitFor();
      }

      const only = async (values: Record<string, string>, expected: string[]) => {
        const found = await searchFor(page, language, 'jobs', { customer_name: '', asset_id: '', ...values });
        expect(found.map((r) => r.customer_name)).toEqual(expected);
        for (const name of expected) await page.getByRole('cell', { name, exact: true }).waitFor();
        if (expected.length === 0) await page.getByText(t('jobs.none')).waitFor();
        else expect(await page.locator('tbody tr').count()).toBe(expected.length);
        return found;
      };
      const [stored] = await only({ customer_name: `  frau   KÄTHE zähler ${tag.toLowerCase()} ` }, [first.customer_name]);
      expect(stored).toMatchObject({ window_start: '2026-12-01T07:00:00.000Z', window_end: '2026-12-01T09:00:00.000Z' }); // Berlin in winter: UTC+1
      await only({ asset_id: second.asset_id.toLowerCase() }, [second.customer_name]);
      await only({ asset_id: `Z-9999-${tag}` }, []);

      // Edit: the stored UTC times come back as the local times that were typed.
      await only({ customer_name: first.customer_name }, [first.customer_name]);
      await page.getByRole('button', { name: `${t('records.edit')}: ${first.customer_name}` }).click();
      const edit = page.getByRole('form', { name: t('jobs.edit') });
      for (const [field, value] of Object.entries(first)) expect(await edit.getByLabel(t(`jobs.${field}`), { exact: true }).inputValue(), field).toBe(value);
      await edit.getByLabel(t('jobs.asset_id'), { exact: true }).fill('X'.repeat(101));
      await edit.getByRole('button', { name: t('records.save') }).click();
      await page.getByRole('alert').filter({ hasText: /asset_id/ }).waitFor();
      const moved = { window_start: '2026-12-01T09:00', window_end: '2026-12-01T11:30', asset_id: `Z-4712-${tag}`, notes: 'Hund im Haus' };
      for (const [field, value] of Object.entries(moved)) await edit.getByLabel(t(`jobs.${field}`), { exact: true }).fill(value);
      await edit.getByRole('button', { name: t('records.save') }).click();
      await page.getByText(t('records.saved')).waitFor();
      await page.getByRole('cell', { name: 'Hund im Haus', exact: true }).waitFor();
      await only({ asset_id: first.asset_id }, []);
      const [updated] = await only({ asset_id: ` ${moved.asset_id.toLowerCase()}` }, [first.customer_name]);
      expect(updated).toMatchObject({ window_start: '2026-12-01T08:00:00.000Z', window_end: '2026-12-01T10:30:00.000Z', notes: 'Hund im Haus', address: first.address });
      await screenshot(page, `records-jobs-edit-${language}`);

      // Delete, in a second session first: the page still showing the job then says it is gone.
      await only({ customer_name: second.customer_name }, [second.customer_name]);
      const other = await open(language);
      await login(other.page, language);
      await other.page.getByRole('link', { name: t('nav.jobs') }).click();
      await other.page.getByRole('button', { name: `${t('contacts.delete')}: ${second.customer_name}` }).click();
      await other.page.getByRole('cell', { name: second.customer_name, exact: true }).waitFor({ state: 'detached' });
      expect(await other.problems()).toEqual([]);
      await other.page.context().close();
      await page.getByRole('button', { name: `${t('contacts.delete')}: ${second.customer_name}` }).click();
      await page.getByRole('alert').filter({ hasText: t('records.gone') }).waitFor();
      await page.getByRole('cell', { name: second.customer_name, exact: true }).waitFor({ state: 'detached' });
      await only({ asset_id: second.asset_id }, []);

      // Import with a bad appointment time (the list shows everything again first), then export.
      expect((await searchFor(page, language, 'jobs', { customer_name: '', asset_id: '' })).map((r) => r.customer_name)).toEqual(expect.arrayContaining([first.customer_name]));
      await page.getByLabel(t('jobs.importFile')).setInputFiles({
        name: 'auftraege.csv',
        mimeType: 'text/csv',
        buffer: Buffer.from(
          `customer_name,address,window_start,window_end,asset_id\r\nImport Kunde A ${tag},Weg 1,2026-12-03T08:00Z,2026-12-03T09:00Z,I-1-${tag}\r\nImport Kunde B ${tag},Weg 2,morgen früh,,\r\nImport Kunde C ${tag},Weg 3,,,I-3-${tag}\r\n`,
        ),
      });
      await page.getByText(t('jobs.importDone', { created: 2, errors: 1 })).waitFor();
      await page.getByText(t('contacts.importLine', { line: 3, message: 'window_start and window_end must be times such as 2026-12-01T08:00Z' })).waitFor();
      expect(await page.getByRole('progressbar').getAttribute('value')).toBe('3');
      await page.getByRole('cell', { name: `Import Kunde C ${tag}`, exact: true }).waitFor();
      await only({ asset_id: `i-1-${tag.toLowerCase()}` }, [`Import Kunde A ${tag}`]);
      await screenshot(page, `records-jobs-import-${language}`);

      const rows = await exported(page, language, 'jobs.csv');
      expect(rows[0]).toEqual(['customer_name', 'address', 'window_start', 'window_end', 'asset_id', 'notes', 'book', 'id']);
      const byName = (name: string) => rows.find((r) => r[0] === name);
      expect(byName(first.customer_name)?.slice(0, 6)).toEqual([first.customer_name, first.address, '2026-12-01T08:00:00.000Z', '2026-12-01T10:30:00.000Z', moved.asset_id, 'Hund im Haus']);
      expect(byName(`Import Kunde A ${tag}`)?.slice(2, 5)).toEqual(['2026-12-03T08:00Z', '2026-12-03T09:00Z', `I-1-${tag}`]);
      expect(byName(`Import Kunde B ${tag}`)).toBeUndefined();
      expect(byName(second.customer_name)).toBeUndefined();
      expect(await problems()).toEqual([]);
      await page.context().close();
    });
  }
});

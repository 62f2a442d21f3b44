import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret, TOTP } from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD_PROBLEM_CODES } from '../src/identity/password-policy.js';
import { launchBrowser, watchedPage } from './browser.js';
import { freePort, startServe, tresor, type ServeProcess } from './cli-process.js';

/** axe-core's browser build, run in the page through the DevTools protocol (so the strict CSP stays on). */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/** The serious and critical WCAG 2.1 A/AA violations axe finds on the page as it is now. */
async function seriousViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate<AxeViolation[]>(`
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }, resultTypes: ['violations'] })
      .then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) })))
  `);
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${JSON.stringify(v.nodes.map((n) => n.target))}`);
}

describe('identity pages in the web app: texts for every password problem', () => {
  it('has a German and an English text for every problem code the server sends', async () => {
    const { dictionaries } = (await import('../web/src/i18n.js' as string)) as { dictionaries: Record<'de' | 'en', Record<string, string>> };
    for (const code of PASSWORD_PROBLEM_CODES) {
      expect(dictionaries.de[`problem.${code}`], code).toBeTruthy();
      expect(dictionaries.en[`problem.${code}`], code).toBeTruthy();
    }
  });
});

/**
 * Accessibility and the session pages in a real browser (Debian's Chromium) against a real `tresor serve`:
 * axe-core finds no serious or critical violation on the login, password-change, second-factor set-up,
 * sessions, invitation and locked-session pages; a login with the keyboard alone; logging out one other
 * session; and the page a replayed request leads to.
 */
describe('identity pages in Chromium: accessibility and sessions', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-web-identity-'));
  let server: ServeProcess;
  let browser: Browser;
  let port = 0;
  let operatorPassword = '';
  const PASSWORD = 'Zugängliche Seiten für alle 2026';
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

  const fillLogin = async (page: Page, password: string, language: 'en' | 'de' = 'en') => {
    await page.goto(`${server.url}/app/login`);
    await page.getByLabel(language === 'en' ? 'Login or e-mail address' : 'Anmeldename oder E-Mail-Adresse').fill('operator');
    await page.getByLabel(language === 'en' ? 'Password' : 'Passwort', { exact: true }).fill(password);
    await page.getByRole('button', { name: language === 'en' ? 'Log in' : 'Anmelden' }).click();
  };

  it('has no serious or critical accessibility violation on the login, password, second-factor, sessions and invitation pages', async () => {
    const { page, problems } = await watchedPage(browser, 'en-GB');
    await page.goto(`${server.url}/app/login`);
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    expect(await seriousViolations(page), 'login').toEqual([]);
    // With an error shown, too.
    await fillLogin(page, 'not the password 1');
    await page.getByRole('alert').filter({ hasText: 'Login failed' }).waitFor();
    expect(await seriousViolations(page), 'login with error').toEqual([]);

    await page.waitForTimeout(1100); // past the 1 s slowdown the wrong guess caused
    await fillLogin(page, operatorPassword);
    await page.getByText('You must set a new password before you continue.').waitFor();
    expect(await seriousViolations(page), 'forced password change').toEqual([]);
    await page.getByLabel('Current password').fill(operatorPassword);
    await page.getByLabel('New password', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Repeat the new password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();

    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByText('(this session)').waitFor();
    expect(await seriousViolations(page), 'sessions').toEqual([]);

    await page.getByRole('link', { name: 'Second factor' }).click();
    await page.getByRole('button', { name: 'Start set-up' }).click();
    await page.locator('#totp-secret').waitFor();
    expect(await seriousViolations(page), 'second-factor set-up').toEqual([]);

    await page.getByRole('link', { name: 'Password' }).click();
    await page.getByRole('heading', { name: 'Change password' }).waitFor();
    expect(await seriousViolations(page), 'password change').toEqual([]);
    expect(await problems()).toEqual([]); // axe ran without bending the CSP

    const created = tresor(['--json', 'reseller', 'create', '--name', 'Barrierefrei GmbH', '--admin-login', 'zugang@barrierefrei.test'], { cwd: dir, env: env() });
    expect(created.code, created.stderr).toBe(0);
    const link = (JSON.parse(created.stdout) as { invitationLink: string }).invitationLink.replace('https://localhost', 'https://127.0.0.1');
    const invited = await watchedPage(browser, 'de-DE');
    await invited.page.goto(link);
    await invited.page.getByRole('heading', { name: 'Einladung annehmen' }).waitFor();
    await invited.page.getByText(/Einladung für zugang@barrierefrei.test/).waitFor();
    expect(await seriousViolations(invited.page), 'invitation').toEqual([]);
    expect(await invited.problems()).toEqual([]);
  });

  it('logs in with the keyboard alone', async () => {
    const { page, problems } = await watchedPage(browser, 'en-GB');
    await page.goto(`${server.url}/app/login`);
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    // Tab from the top of the page until the login field has the focus (bounded: a handful of links come first).
    let reached = false;
    for (let i = 0; i < 15 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate<boolean>("document.activeElement?.id === 'login'");
    }
    expect(reached).toBe(true);
    await page.keyboard.type('operator');
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string>('document.activeElement?.id')).toBe('password');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    // The heading of the new page takes the focus, so a screen reader announces where one is.
    // (Preact runs the effect that moves the focus after the paint: wait for it, bounded.)
    await expect.poll(() => page.evaluate<string>('document.activeElement?.id'), { timeout: 5_000 }).toBe('page-title');
    expect(await problems()).toEqual([]);
  });

  it('logs out one other session from the sessions page; that browser is back at the login', async () => {
    const first = await watchedPage(browser, 'en-GB');
    const second = await watchedPage(browser, 'en-GB');
    for (const p of [first.page, second.page]) {
      await fillLogin(p, PASSWORD);
      await p.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    }
    await first.page.getByRole('link', { name: 'Sessions' }).click();
    await first.page.getByText('(this session)').waitFor();
    const rows = first.page.getByRole('row');
    const others = first.page.getByRole('table').getByRole('button', { name: 'Log out' });
    const before = await others.count();
    expect(before).toBeGreaterThanOrEqual(1);
    const rowCount = await rows.count();
    await others.last().click(); // the newest session: the second browser's
    // Waits through locators: a string given to waitForFunction is polled with eval in the page, which
    // the strict CSP refuses whenever the first check does not already succeed.
    await rows.nth(rowCount - 1).waitFor({ state: 'detached' });
    expect(await rows.count()).toBe(rowCount - 1);
    expect(await first.page.getByText('(this session)').count()).toBe(1); // the first browser stays in

    await second.page.getByRole('link', { name: 'Sessions' }).click();
    await second.page.getByRole('heading', { name: 'Log in' }).waitFor();
    await first.page.reload();
    await first.page.getByText('(this session)').waitFor();
    expect(await first.problems()).toEqual([]);
  });

  it('shows the locked-session page after a replayed request, in German, and the session stays locked', async () => {
    const { page, problems } = await watchedPage(browser, 'de-DE');
    await fillLogin(page, PASSWORD, 'de');
    await page.getByRole('heading', { name: 'Manipulationssicheres Protokoll' }).waitFor();
    // Someone sends a copy of an earlier request of this browser session (cookie and request token).
    const statuses = await page.evaluate<number[]>(`(async () => {
      const token = (await fetch('/api/v1/auth/me')).headers.get('x-tresor-request-token');
      const post = (t) => fetch('/api/v1/auth/totp/setup', { method: 'POST', headers: { 'x-tresor-request-token': t } });
      const first = await post(token);
      const second = await post(first.headers.get('x-tresor-request-token'));
      const replay = await post(token);
      return [first.status, second.status, replay.status];
    })()`);
    expect(statuses).toEqual([200, 200, 401]);
    await page.getByRole('link', { name: 'Sitzungen' }).click();
    await page.getByRole('heading', { name: 'Sitzung gesperrt' }).waitFor();
    await page.getByRole('alert').filter({ hasText: 'frühere Anfrage erneut gesendet' }).waitFor();
    expect(await seriousViolations(page), 'locked session').toEqual([]);
    // Locked for good: even a fresh page load of a protected page does not get back in.
    await page.goto(`${server.url}/app/sessions`);
    await page.getByRole('heading', { name: /Anmelden|Sitzung gesperrt/ }).waitFor();
    expect(await page.getByText('(diese Sitzung)').count()).toBe(0);
    const locked = await page.evaluate<number>("fetch('/api/v1/auth/sessions').then((r) => r.status)");
    expect(locked).toBe(401);
    expect(await problems()).toEqual([]);
  });
});

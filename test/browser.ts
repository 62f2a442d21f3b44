import { mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's Chromium, headless; never a downloaded browser. */
export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * A page that records every CSP violation (the server's policy allows no inline script or style) and
 * every console error; `problems()` returns them.
 */
export async function watchedPage(browser: Browser, locale: string, options: { timezoneId?: string } = {}): Promise<{ page: Page; problems(): Promise<string[]> }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, locale, ...options });
  const page = await context.newPage();
  const console: string[] = [];
  page.on('console', (message) => {
    // Refused requests (4xx) are part of the tests; failed loads are caught below as server errors.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) console.push(message.text());
  });
  page.on('response', (response) => {
    if (response.status() >= 500) console.push(`${response.status()} ${response.url()}`);
  });
  page.on('pageerror', (error) => console.push(error.message));
  // As a string: this runs in the page, not in Node.
  await page.addInitScript(`
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
  `);
  return {
    page,
    async problems() {
      const csp = await page.evaluate<string[]>('window.__csp || []').catch(() => [] as string[]);
      return [...csp.map((c) => `CSP: ${c}`), ...console];
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

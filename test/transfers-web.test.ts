import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, request, type APIRequestContext, type Browser, type Download, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, screenshot, watchedPage } from './browser.js';
import { cuttingProxy, freePort, startServe, tresor, tresorAsync, type ServeProcess } from './cli-process.js';
import { mailedKey, readOutbox } from './helpers.js';
import { decodePublicKey, decryptBytes, encodePublicKey, fingerprint, generateKeyPair, randomFileKey, toBase64Url, wrapFileKey } from '../src/shared-e2e/index.js';

/** The newest transfer link mailed to `email`, as recipient id, secret and (levels 3/4) fingerprint. */
function transferLink(outbox: string, email: string, after = 0): { recipientId: string; secret: string; fp?: string } {
  const mails = readOutbox(outbox).filter((m) => m.to === email);
  for (const mail of mails.slice(after).reverse()) {
    const m = /\/app\/r\/([0-9a-f-]{36})#s=([A-Za-z0-9_-]{43})(?:&fp=([0-9a-f-]+))?/.exec(mail.text);
    if (m) return { recipientId: m[1]!, secret: m[2]!, ...(m[3] ? { fp: m[3] } : {}) };
  }
  throw new Error(`no transfer link mailed to ${email}`);
}

/** Every file below `dir`. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

/** A text file of about `size` bytes, with a line that marks it. */
const textFile = (marker: string, size: number) => {
  const line = Buffer.from(`${marker}: Erika Mustermann, IBAN DE02 1203 0000 0000 2020 51, Gehalt 4711 EUR. Äöü ß.\n`);
  return Buffer.concat(Array.from({ length: Math.ceil(size / line.length) }, () => line)).subarray(0, size);
};

const bytesOf = async (download: Download) => {
  expect(await download.failure()).toBeNull();
  return readFileSync((await download.path())!);
};

/**
 * The secure-exchange pages in Chromium against a real `tresor serve`: a member sends at levels 1–4 from
 * /app/transfers (files encrypted in the browser, uploaded in pieces), recipients open their links in a
 * second browser context: level 1 with the address, level 2 after registering a guest account, levels
 * 3–4 with a SecuPass key the sender approves, decrypted by the service worker as it downloads. Withdrawal
 * and a key reset too. Every page runs under the strict CSP; any violation or console error fails.
 */
describe('secure transfers in Chromium', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-transfers-web-'));
  const outbox = join(dir, 'data', 'outbox');
  let server: ServeProcess;
  let browser: Browser;
  let http: APIRequestContext;
  let port = 0;
  const env = () => ({ TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false' });
  let tenantId = '';
  /** Who decrypted each download of the tenant so far, from its ledger (the local CLI reads it). */
  const decryptedBy = () =>
    (JSON.parse(tresor(['ledger', 'export', '--tenant', tenantId, '--action', 'transfer.download'], { cwd: dir, env: env() }).stdout) as { entries: { outcome: string; payload: { details?: { decryptedBy?: string } } | null }[] }).entries
      .filter((e) => e.outcome === 'success')
      .map((e) => e.payload?.details?.decryptedBy);
  type Watched = Awaited<ReturnType<typeof watchedPage>>;
  let sender: Watched;
  let guest: Watched;
  const SENDER = 'anna@praxis-transfer.test';
  const SENDER_PASSWORD = 'Sicher senden im Herbst 26';
  const SENDER_SECUPASS = 'Mein eigener Schlüssel für Dateien';
  const GUEST = 'gast@extern-transfer.test';
  const GUEST_PASSWORD = 'Wanderer am Gartenzaun 2026';
  const GUEST_SECUPASS = 'Blauer Vogel über dem See';
  const GUEST_SECUPASS_2 = 'Roter Drache unter der Brücke';
  const state: { level3?: { recipientId: string; secret: string }; level4?: { recipientId: string; secret: string; fp?: string }; level1?: { recipientId: string; secret: string } } = {};
  /**
   * Mails to the guest saying that a sender approved the key and the files can be opened now: in English,
   * the guest account's language (it was registered from a transfer composed on the sender's English page).
   */
  const approvalMails = () => readOutbox(outbox).filter((m) => m.to === GUEST && m.subject === 'Tresor: your files can be opened now');
  const linkUrl = (l: { recipientId: string; secret: string; fp?: string }) => `${server.url}/app/r/${l.recipientId}#s=${l.secret}${l.fp ? `&fp=${l.fp}` : ''}`;
  /** The request id and secret of a "request files" link. */
  const uploadLinkParts = (l: string) => ({ requestId: /\/app\/upload\/([0-9a-f-]{36})/.exec(l)![1]!, secret: /#s=([A-Za-z0-9_-]{43})/.exec(l)![1]! });
  /** Opens a level-1 link in a fresh browser context with `email` and downloads `name` through the service worker; its bytes. */
  const level1Download = async (link: { recipientId: string; secret: string }, email: string, name: string) => {
    const recipient = await watchedPage(browser, 'en-GB');
    await recipient.page.goto(linkUrl(link));
    await recipient.page.getByLabel('Your e-mail address', { exact: true }).fill(email);
    await recipient.page.getByRole('button', { name: 'Open' }).click();
    await recipient.page.getByText('Your browser decrypts the files as they download').waitFor();
    const [download] = await Promise.all([recipient.page.waitForEvent('download'), recipient.page.getByRole('link', { name: `Download ${name}` }).click()]);
    const bytes = await bytesOf(download);
    expect(await recipient.problems()).toEqual([]);
    return bytes;
  };
  /** The environment for `tresor` as a client of the test server, and a session token for it. */
  const cliEnvOf = () => ({ ...env(), TRESOR_URL: server.url, TRESOR_CACERT: join(dir, 'data', 'pki', 'ca.pem') });
  const cliLogin = (login: string, password: string) => (JSON.parse(tresor(['--json', 'login', '--login', login], { cwd: dir, env: { ...cliEnvOf(), TRESOR_PASSWORD: password } }).stdout) as { sessionToken: string }).sessionToken;

  beforeAll(async () => {
    port = await freePort();
    server = await startServe({ cwd: dir, env: env() });
    // As launchBrowser(), but trusting the test server's self-signed certificate at the browser level:
    // Chromium registers no service worker from an origin with a certificate error, and the per-context
    // ignoreHTTPSErrors does not lift that. A real installation has a valid certificate.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--ignore-certificate-errors'] });
    http = await request.newContext({ baseURL: server.url, ignoreHTTPSErrors: true });
    const tenant = JSON.parse(tresor(['--json', 'tenant', 'create', '--name', 'Praxis Transfer'], { cwd: dir, env: env() }).stdout) as { id: string; initialKeys: { activationKey: string } };
    tenantId = tenant.id;
    const invited = tresor(['--json', 'account', 'invite', '--email', SENDER, '--role', 'member', '--tenant', tenant.id, '--language', 'en'], { cwd: dir, env: env() });
    expect(invited.code, invited.stderr).toBe(0);
    const key = /#key=([A-Za-z0-9_-]+)/.exec((JSON.parse(invited.stdout) as { link: string }).link)![1]!;
    expect((await http.post('/api/v1/auth/invitation/accept', { data: { key, newPassword: SENDER_PASSWORD } })).status()).toBe(204);
    const login = await http.post('/api/v1/auth/login', { data: { login: SENDER, password: SENDER_PASSWORD, mode: 'token' } });
    const token = ((await login.json()) as { sessionToken: string }).sessionToken;
    const activated = await http.post('/api/v1/keys/activate', { data: { activationKey: tenant.initialKeys.activationKey }, headers: { authorization: `Bearer ${token}` } });
    expect(activated.status(), await activated.text()).toBe(204);

    sender = await watchedPage(browser, 'en-GB');
    await sender.page.goto(`${server.url}/app/login`);
    await sender.page.getByLabel('Login or e-mail address').fill(SENDER);
    await sender.page.getByLabel('Password', { exact: true }).fill(SENDER_PASSWORD);
    await sender.page.getByRole('button', { name: 'Log in' }).click();
    await sender.page.getByRole('heading', { name: 'Address book' }).waitFor();
    guest = await watchedPage(browser, 'de-DE');
  });
  afterEach(async (context) => {
    // What the pages showed when a step failed.
    if (context.task.result?.state === 'fail') {
      if (sender) await screenshot(sender.page, 'failed-transfers-sender').catch(() => undefined);
      if (guest) await screenshot(guest.page, 'failed-transfers-recipient').catch(() => undefined);
    }
  });
  afterAll(async () => {
    await http?.dispose();
    await browser?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Fills the compose form and sends; waits for the confirmation. */
  /** The web app's upload piece. */
  const PIECE = 8 * 1024 * 1024;
  /**
   * Fills the compose form and sends; waits for the confirmation. With `lostFrom`, the connection is lost
   * for good at that byte of a file (every upload request from there fails) and it waits for the error.
   */
  const send = async (page: Page, opts: { to: string; subject: string; message: string; level: 1 | 2 | 3 | 4; files: { name: string; buffer: Buffer }[]; shot?: string; lostFrom?: number }) => {
    await page.getByRole('link', { name: 'Transfers' }).click();
    await page.getByRole('heading', { name: 'Secure transfers' }).waitFor();
    const form = page.getByRole('form', { name: 'New transfer' });
    await form.getByLabel('Recipients (e-mail addresses)').fill(opts.to);
    await form.getByLabel('Subject', { exact: true }).fill(opts.subject);
    await form.getByLabel('Message', { exact: true }).fill(opts.message);
    await form.getByLabel(`Level ${opts.level} –`).check();
    await form.getByLabel('Files', { exact: true }).setInputFiles(opts.files.map((f) => ({ name: f.name, mimeType: 'application/octet-stream', buffer: f.buffer })));
    if (opts.shot) await screenshot(page, opts.shot);
    if (opts.lostFrom === undefined) {
      await form.getByRole('button', { name: 'Encrypt and send' }).click();
      await page.getByText(/^Sent to 1 recipient\(s\)\./).waitFor({ timeout: 30_000 });
      return;
    }
    const lost = (url: URL) => url.pathname.includes('/blobs/') && Number(url.searchParams.get('offset') ?? 0) >= opts.lostFrom!;
    await page.route(lost, (route) => route.abort('connectionreset'));
    await form.getByRole('button', { name: 'Encrypt and send' }).click();
    await page.getByRole('alert').waitFor({ timeout: 60_000 });
    await page.unroute(lost);
  };

  it('level 1: the recipient enters the address (a wrong one is refused) and downloads the file unchanged', async () => {
    const report = textFile('Befund Stufe 1', 300 * 1024);
    const mailsBefore = readOutbox(outbox).length;
    await send(sender.page, {
      to: 'lena@extern-transfer.test',
      subject: 'Befund Stufe eins',
      message: 'Hallo Lena,\nanbei der Befund.',
      level: 1,
      files: [
        { name: 'befund.txt', buffer: report },
        { name: 'bild.bin', buffer: randomBytes(100 * 1024) },
      ],
      shot: 'transfer-compose',
    });
    expect(readOutbox(outbox).length).toBeGreaterThan(mailsBefore);
    const card = sender.page.getByRole('article', { name: 'Befund Stufe eins' });
    await card.getByRole('cell', { name: 'lena@extern-transfer.test', exact: true }).waitFor();
    await card.getByRole('cell', { name: 'notified' }).waitFor();
    await screenshot(sender.page, 'transfers-sent');

    const link = transferLink(outbox, 'lena@extern-transfer.test');
    state.level1 = link;
    const lena = await watchedPage(browser, 'en-GB');
    await lena.page.goto(linkUrl(link));
    await lena.page.getByRole('heading', { name: 'Files for you' }).waitFor();
    expect(lena.page.url()).toBe(`${server.url}/app/r/${link.recipientId}`); // the secret leaves the address bar
    await lena.page.getByLabel('Your e-mail address', { exact: true }).fill('someone-else@extern-transfer.test');
    await lena.page.getByRole('button', { name: 'Open' }).click();
    await lena.page.getByRole('alert').filter({ hasText: 'This address does not match this link.' }).waitFor();
    await lena.page.getByLabel('Your e-mail address', { exact: true }).fill('Lena@Extern-Transfer.test');
    await lena.page.getByRole('button', { name: 'Open' }).click();
    await lena.page.getByRole('heading', { name: 'Befund Stufe eins' }).waitFor();
    await lena.page.getByText('anbei der Befund.').waitFor();
    await lena.page.getByText(`From ${SENDER}`).waitFor();
    // Once the service worker is active, the page says the browser decrypts (before that the link is
    // the server's plain download, which the ledger would name).
    await lena.page.getByText('Your browser decrypts the files as they download').waitFor();
    await screenshot(lena.page, 'transfer-receive-level1');
    const [download] = await Promise.all([lena.page.waitForEvent('download'), lena.page.getByRole('link', { name: 'Download befund.txt' }).click()]);
    expect(download.suggestedFilename()).toBe('befund.txt');
    expect((await bytesOf(download)).equals(report)).toBe(true);
    // The service worker fetched the stored ciphertext with its key and decrypted it: the server did not.
    expect(decryptedBy()).toEqual(['recipient']);
    await sender.page.reload();
    await sender.page.getByRole('article', { name: 'Befund Stufe eins' }).getByRole('cell', { name: 'downloaded' }).waitFor();
    // Lena lost the mail: "Send link again" mails her a new link; the earlier one no longer opens, the new one does.
    await card.getByRole('button', { name: 'Send link again to lena@extern-transfer.test (the earlier link then stops opening)' }).click();
    await sender.page.getByText('A new link was sent to lena@extern-transfer.test; the earlier link no longer opens.').waitFor();
    const fresh = transferLink(outbox, 'lena@extern-transfer.test');
    expect(fresh.secret).not.toBe(link.secret);
    state.level1 = fresh;
    await lena.page.goto(linkUrl(link));
    await lena.page.getByRole('alert').filter({ hasText: 'This link is not valid, has expired or was withdrawn.' }).waitFor();
    await lena.page.goto(linkUrl(fresh));
    await lena.page.getByLabel('Your e-mail address', { exact: true }).fill('lena@extern-transfer.test');
    await lena.page.getByRole('button', { name: 'Open' }).click();
    await lena.page.getByRole('heading', { name: 'Befund Stufe eins' }).waitFor();
    expect(await lena.problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  });

  it('level 2: no download without a login; the recipient registers a guest account from the link, logs in, comes back and downloads', async () => {
    const contract = textFile('Vertrag Stufe 2', 200 * 1024);
    // The first upload request is lost on the way: the page asks the server how much arrived and resumes.
    let uploads = 0;
    const isUpload = (url: URL) => url.pathname.includes('/blobs/') && url.searchParams.has('offset');
    await sender.page.route(isUpload, (route) => (uploads++ === 0 ? route.abort('connectionreset') : route.continue()));
    await send(sender.page, { to: GUEST, subject: 'Vertrag Stufe zwei', message: 'Bitte unterschreiben.', level: 2, files: [{ name: 'vertrag.txt', buffer: contract }] });
    await sender.page.unroute(isUpload);
    expect(uploads).toBe(2);
    const link = transferLink(outbox, GUEST);
    // Without a session the link alone opens nothing.
    const anonymous = await http.post(`/api/v1/r/${link.recipientId}/open`, { data: { secret: link.secret } });
    expect(anonymous.status()).toBe(401);
    expect(await anonymous.json()).toMatchObject({ code: 'UNAUTHENTICATED', details: { login: true } });

    const { page, problems } = guest;
    await page.goto(linkUrl(link));
    await page.getByRole('heading', { name: 'Dateien für Sie' }).waitFor();
    await page.getByText(/legen Sie ein kostenloses Gastkonto an/).waitFor();
    await screenshot(page, 'transfer-receive-login');
    await page.getByRole('button', { name: 'Gastkonto anlegen' }).click();
    await page.getByText('Bitte sehen Sie in Ihr Postfach').waitFor();
    await screenshot(page, 'transfer-guest-registered');
    // The invitation (the e-mail check) in the same tab; after the login the link page comes back.
    await page.goto(`${server.url}/app/invite#key=${mailedKey(outbox, GUEST)}`);
    await page.getByLabel('Neues Passwort', { exact: true }).fill(GUEST_PASSWORD);
    await page.getByLabel('Neues Passwort wiederholen').fill(GUEST_PASSWORD);
    await screenshot(page, 'transfer-guest-registration');
    await page.getByRole('button', { name: 'Passwort festlegen' }).click();
    await page.getByRole('link', { name: 'Anmelden' }).click();
    await page.getByLabel('Anmeldename oder E-Mail-Adresse').fill(GUEST);
    await page.getByLabel('Passwort', { exact: true }).fill(GUEST_PASSWORD);
    await page.getByRole('button', { name: 'Anmelden' }).click();
    await page.getByRole('heading', { name: 'Vertrag Stufe zwei' }).waitFor();
    expect(page.url()).toBe(`${server.url}/app/r/${link.recipientId}`);
    await page.getByText('Bitte unterschreiben.').waitFor();
    await screenshot(page, 'transfer-receive-level2');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'vertrag.txt herunterladen' }).click()]);
    expect((await bytesOf(download)).equals(contract)).toBe(true);
    expect(await problems()).toEqual([]);
  });

  it('level 3: the recipient creates a SecuPass key, the sender approves its fingerprint, the service worker decrypts the download', async () => {
    // The sender first needs a key of their own: the compose page offers it for levels 3 and 4.
    await sender.page.getByRole('link', { name: 'Transfers' }).click();
    await sender.page.getByRole('form', { name: 'New transfer' }).getByLabel('Level 3 –').check();
    await sender.page.getByText('Levels 3 and 4 need your own SecuPass key. Create it below.').waitFor();
    const create = sender.page.getByRole('form', { name: 'Create your SecuPass key' });
    await create.getByLabel('SecuPass', { exact: true }).fill(SENDER_PASSWORD);
    await create.getByLabel('Repeat the SecuPass').fill(SENDER_PASSWORD);
    await create.getByRole('button', { name: 'Create key' }).click();
    await sender.page.getByRole('alert').filter({ hasText: 'The SecuPass must not be your login password.' }).waitFor({ timeout: 30_000 });
    await create.getByLabel('SecuPass', { exact: true }).fill(SENDER_SECUPASS);
    await create.getByLabel('Repeat the SecuPass').fill(SENDER_SECUPASS);
    await screenshot(sender.page, 'secupass-create');
    await create.getByRole('button', { name: 'Create key' }).click();
    await create.waitFor({ state: 'detached', timeout: 30_000 });

    const big = textFile('Gehaltsliste Stufe 3', 3 * 1024 * 1024 + 12_345); // crosses many 64 KiB records
    await send(sender.page, { to: GUEST, subject: 'Gehaltsliste Stufe drei', message: 'Vertraulich.', level: 3, files: [{ name: 'gehaltsliste.txt', buffer: big }] });
    await sender.page.getByText(/1 recipient\(s\) have no SecuPass key yet/).waitFor();
    const link = transferLink(outbox, GUEST);
    expect(link.fp).toBeUndefined(); // the guest had no key when it was sent
    state.level3 = link;
    // At rest: ciphertext only.
    const blobs = filesUnder(join(dir, 'data', 'blobs'));
    const bigBlob = blobs.find((f) => statSync(f).size > 3 * 1024 * 1024);
    expect(bigBlob).toBeDefined();
    const atRest = readFileSync(bigBlob!);
    expect(atRest.subarray(0, 4).toString()).toBe('TRSE');
    expect(atRest.includes(Buffer.from('Gehaltsliste Stufe 3'))).toBe(false);
    for (const f of blobs) expect(readFileSync(f).includes(Buffer.from('Erika Mustermann'))).toBe(false);

    const { page, problems } = guest;
    await page.goto(linkUrl(link));
    await page.getByRole('heading', { name: 'Gehaltsliste Stufe drei' }).waitFor();
    const setup = page.getByRole('form', { name: 'SecuPass-Schlüssel anlegen' });
    await setup.getByLabel('SecuPass', { exact: true }).fill(GUEST_SECUPASS);
    await setup.getByLabel('SecuPass wiederholen').fill(GUEST_SECUPASS);
    await setup.getByRole('button', { name: 'Schlüssel anlegen' }).click();
    await page.getByText(/Ihr Schlüssel wartet auf die Bestätigung/).waitFor({ timeout: 30_000 });
    await screenshot(page, 'transfer-receive-waiting');
    await page.getByRole('link', { name: 'SecuPass' }).click();
    const guestFingerprint = (await page.locator('code.fingerprint').textContent())!;
    expect(guestFingerprint).toMatch(/^[0-9a-f]{4}(-[0-9a-f]{4}){15}$/);
    await screenshot(page, 'secupass');

    await sender.page.reload();
    const card = sender.page.getByRole('article', { name: 'Gehaltsliste Stufe drei' });
    await card.getByText('new key – needs your approval').waitFor();
    expect((await card.locator('code.fingerprint').textContent())!).toBe(guestFingerprint);
    await card.getByRole('button', { name: 'Approve key' }).click();
    await card.getByLabel('Your SecuPass').fill('not my secupass at all');
    await card.getByRole('button', { name: 'Approve', exact: true }).click();
    await sender.page.getByRole('alert').filter({ hasText: 'The SecuPass is wrong.' }).waitFor({ timeout: 30_000 });
    await card.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await screenshot(sender.page, 'transfer-approve');
    expect(approvalMails()).toHaveLength(0); // nothing yet, not even for the wrong SecuPass above
    await card.getByRole('button', { name: 'Approve', exact: true }).click();
    await sender.page.getByText(`The new key of ${GUEST} is approved.`).waitFor({ timeout: 30_000 });
    // The recipient (not the sender) is told that the files can be opened now.
    expect(approvalMails()).toHaveLength(1);
    expect(approvalMails()[0]!.text).toContain(`${SENDER} approved your SecuPass key.`);
    await card.getByRole('cell', { name: 'fine' }).waitFor();

    await page.goto(linkUrl(link));
    const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    const button = page.getByRole('button', { name: 'gehaltsliste.txt herunterladen' });
    await button.waitFor({ timeout: 30_000 });
    await screenshot(page, 'transfer-receive-level3');
    const [download] = await Promise.all([page.waitForEvent('download'), button.click()]);
    expect(download.suggestedFilename()).toBe('gehaltsliste.txt');
    const got = await bytesOf(download);
    expect(got.length).toBe(big.length);
    expect(got.equals(big)).toBe(true);
    await page.getByText('vollständig und unverändert').waitFor();
    // It went through the service worker: the page is controlled by /sw.js.
    expect(await page.evaluate('navigator.serviceWorker.controller?.scriptURL')).toBe(`${server.url}/sw.js`);
    expect(await problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  }, 120_000); // two Argon2id key derivations in the browser and a 3 MiB file: slow on a loaded machine

  it('level 4: the message and the file names are readable only after the SecuPass', async () => {
    const note = textFile('Notiz Stufe 4', 150 * 1024);
    await send(sender.page, {
      to: GUEST,
      subject: 'Unterlagen Stufe vier',
      message: 'Die geheime Nachricht steht nur im Bündel.',
      level: 4,
      files: [
        { name: 'geheim-notiz.txt', buffer: note },
        { name: 'anhang.bin', buffer: randomBytes(50_000) },
      ],
    });
    const card = sender.page.getByRole('article', { name: 'Unterlagen Stufe vier' });
    await card.getByText(/2 file\(s\), .* \(names end-to-end encrypted\)/).waitFor();
    const link = transferLink(outbox, GUEST);
    expect(link.fp).toMatch(/^[0-9a-f-]{79}$/); // the guest's key was known: the link names it
    state.level4 = link;

    const { page, problems } = guest;
    await page.goto(linkUrl(link));
    await page.getByRole('heading', { name: 'Unterlagen Stufe vier' }).waitFor();
    await page.getByText('Die Nachricht ist Ende-zu-Ende-verschlüsselt').waitFor();
    expect(await page.getByText('Die geheime Nachricht').count()).toBe(0);
    expect(await page.getByText('geheim-notiz.txt').count()).toBe(0);
    await page.getByRole('cell', { name: 'Datei 1' }).waitFor();
    await screenshot(page, 'transfer-receive-level4-locked');
    const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill('falsch falsch falsch');
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    await page.getByRole('alert').filter({ hasText: 'Der SecuPass ist falsch' }).waitFor({ timeout: 30_000 });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    await page.getByText('Die geheime Nachricht steht nur im Bündel.').waitFor({ timeout: 30_000 });
    await page.getByRole('cell', { name: 'geheim-notiz.txt', exact: true }).waitFor();
    await screenshot(page, 'transfer-receive-level4');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'geheim-notiz.txt herunterladen' }).click()]);
    expect(download.suggestedFilename()).toBe('geheim-notiz.txt');
    expect((await bytesOf(download)).equals(note)).toBe(true);
    expect(await problems()).toEqual([]);
  });

  it('a key reset makes earlier transfers unreadable until the sender approves the new key', async () => {
    const { page, problems } = guest;
    await page.goto(`${server.url}/app/secupass`);
    await page.getByRole('button', { name: 'Schlüssel zurücksetzen …' }).click();
    const reset = page.getByRole('form', { name: 'SecuPass-Schlüssel zurücksetzen' });
    await reset.getByText(/Achtung: Beim Zurücksetzen wird Ihr bisheriger Schlüssel gelöscht/).waitFor();
    await reset.getByLabel('SecuPass', { exact: true }).fill(GUEST_SECUPASS_2);
    await reset.getByLabel('SecuPass wiederholen').fill(GUEST_SECUPASS_2);
    await screenshot(page, 'secupass-reset');
    await reset.getByRole('button', { name: 'Schlüssel zurücksetzen' }).click();
    await page.getByText(/Ihr neuer Schlüssel ist angelegt\. 2 Übertragung\(en\) warten/).waitFor({ timeout: 30_000 });

    // The level-4 transfer: its link names the old key; the data waits for the sender.
    await page.goto(linkUrl(state.level4!));
    await page.getByText(/Ihr Schlüssel wartet auf die Bestätigung/).waitFor();
    expect(await page.getByRole('form', { name: 'Mit SecuPass entsperren' }).count()).toBe(0);

    await sender.page.reload();
    const card = sender.page.getByRole('article', { name: 'Unterlagen Stufe vier' });
    await card.getByText('new key – needs your approval').waitFor();
    await card.getByRole('button', { name: 'Approve key' }).click();
    await card.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await card.getByRole('button', { name: 'Approve', exact: true }).click();
    await sender.page.getByText(`The new key of ${GUEST} is approved.`).waitFor({ timeout: 30_000 });
    expect(approvalMails()).toHaveLength(2); // the first approval (level 3) and this one

    // Now the new key opens it, although the link still names the old one: the sender approved the new key.
    await page.goto(linkUrl(state.level4!));
    const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS_2);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    await page.getByText('Die geheime Nachricht steht nur im Bündel.').waitFor({ timeout: 30_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'anhang.bin herunterladen' }).click()]);
    expect((await bytesOf(download)).length).toBe(50_000);
    // The level-3 transfer is still waiting for its approval.
    await page.goto(linkUrl(state.level3!));
    await page.getByText(/Ihr Schlüssel wartet auf die Bestätigung/).waitFor();
    expect(await problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  });

  it('withdrawal: the recipient link fails at once', async () => {
    await sender.page.getByRole('link', { name: 'Transfers' }).click();
    await sender.page.getByRole('button', { name: 'Withdraw “Befund Stufe eins”' }).click();
    await sender.page.getByText('“Befund Stufe eins” was withdrawn; its files are deleted.').waitFor();
    await screenshot(sender.page, 'transfers-withdrawn');
    const lena = await watchedPage(browser, 'en-GB');
    await lena.page.goto(linkUrl(state.level1!));
    await lena.page.getByRole('alert').filter({ hasText: 'This link is not valid, has expired or was withdrawn.' }).waitFor();
    expect(await lena.problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  });

  it('interoperates with the CLI both ways (level 3), and an expired link fails', async () => {
    const cliEnv = cliEnvOf();
    const senderToken = cliLogin(SENDER, SENDER_PASSWORD);
    const guestToken = cliLogin(GUEST, GUEST_PASSWORD);

    // Sent with `tresor send`, opened and decrypted in the browser (service worker).
    const fromCli = textFile('Vom Terminal', 700 * 1024);
    const cliFile = join(dir, 'vom-terminal.txt');
    writeFileSync(cliFile, fromCli);
    const sent = tresor(['send', '--to', GUEST, '--subject', 'Aus dem Terminal', '--level', '3', cliFile], { cwd: dir, env: { ...cliEnv, TRESOR_TOKEN: senderToken, TRESOR_SECUPASS: SENDER_SECUPASS } });
    expect(sent.code, sent.stderr).toBe(0);
    const cliLink = transferLink(outbox, GUEST);
    expect(cliLink.fp).toMatch(/^[0-9a-f-]{79}$/);
    const { page, problems } = guest;
    await page.goto(linkUrl(cliLink));
    await page.getByRole('heading', { name: 'Aus dem Terminal' }).waitFor();
    const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS_2);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'vom-terminal.txt herunterladen' }).click({ timeout: 30_000 })]);
    expect((await bytesOf(download)).equals(fromCli)).toBe(true);

    // Sent in the browser, received with `tresor receive`.
    const fromBrowser = textFile('Aus dem Browser', 500 * 1024);
    await send(sender.page, { to: GUEST, subject: 'Aus dem Browser', message: 'Für die Kommandozeile.', level: 3, files: [{ name: 'aus-dem-browser.txt', buffer: fromBrowser }] });
    const browserLink = transferLink(outbox, GUEST);
    const out = join(dir, 'received');
    const received = tresor(['--json', 'receive', linkUrl(browserLink), '--out', out], { cwd: dir, env: { ...cliEnv, TRESOR_TOKEN: guestToken, TRESOR_SECUPASS: GUEST_SECUPASS_2 } });
    expect(received.code, received.stderr).toBe(0);
    expect(JSON.parse(received.stdout)).toMatchObject({ subject: 'Aus dem Browser', message: 'Für die Kommandozeile.', level: 3 });
    expect(readFileSync(join(out, 'aus-dem-browser.txt')).equals(fromBrowser)).toBe(true);

    // Expiry: a transfer that ends in a few seconds; then its link opens nothing.
    const soon = tresor(['send', '--to', 'kurz@extern-transfer.test', '--subject', 'Nur kurz', '--level', '1', '--expires', '0.00005', cliFile], { cwd: dir, env: { ...cliEnv, TRESOR_TOKEN: senderToken } });
    expect(soon.code, soon.stderr).toBe(0);
    const soonLink = transferLink(outbox, 'kurz@extern-transfer.test');
    await new Promise((r) => setTimeout(r, 5_000));
    const late = await watchedPage(browser, 'en-GB');
    await late.page.goto(linkUrl(soonLink));
    await late.page.getByRole('alert').filter({ hasText: 'This link is not valid, has expired or was withdrawn.' }).waitFor();
    await screenshot(late.page, 'transfer-link-expired');
    expect(await problems()).toEqual([]);
    expect(await late.problems()).toEqual([]);
  }, 120_000);

  it('"request files": the member mails an upload link; an outsider encrypts for the member\'s key and sends; the member opens it', async () => {
    await sender.page.getByRole('link', { name: 'Transfers' }).click();
    const form = sender.page.getByRole('form', { name: 'New request' });
    await form.getByLabel('Security level').selectOption('3');
    await form.getByLabel('Message to the sender').fill('Bitte die Unterlagen zur Steuer.');
    await form.getByLabel(/E-mail address \(optional/).fill('einreicher@extern-transfer.test');
    await form.getByRole('button', { name: 'Create link' }).click();
    await sender.page.getByText('The link is ready.', { exact: false }).waitFor();
    await screenshot(sender.page, 'file-request-created');
    const mail = readOutbox(outbox).filter((m) => m.to === 'einreicher@extern-transfer.test').at(-1)!;
    const uploadLink = /(https:\/\/\S+\/app\/upload\/[0-9a-f-]{36}#s=[A-Za-z0-9_-]{43}&fp=[0-9a-f-]+)/.exec(mail.text)![1]!;

    const outsider = await watchedPage(browser, 'de-DE');
    await outsider.page.goto(uploadLink);
    await outsider.page.getByText(/bittet Sie um Dateien \(Sicherheitsstufe 3\)/).waitFor();
    await outsider.page.getByText('Bitte die Unterlagen zur Steuer.').waitFor();
    const papers = textFile('Steuerunterlagen', 400 * 1024);
    await outsider.page.getByLabel('Ihre E-Mail-Adresse').fill('einreicher@extern-transfer.test');
    await outsider.page.getByLabel('Betreff').fill('Steuer 2025');
    await outsider.page.getByLabel('Dateien', { exact: true }).setInputFiles([{ name: 'steuer.txt', mimeType: 'text/plain', buffer: papers }]);
    await screenshot(outsider.page, 'file-request-upload');
    await outsider.page.getByRole('button', { name: 'Verschlüsseln und senden' }).click();
    await outsider.page.getByText(`Gesendet. ${SENDER} wird benachrichtigt.`).waitFor({ timeout: 30_000 });

    // The member got a recipient link like any other; the upload is in the list with its sender.
    const link = transferLink(outbox, SENDER);
    await sender.page.goto(linkUrl(link));
    await sender.page.getByRole('heading', { name: 'Steuer 2025' }).waitFor();
    const unlock = sender.page.getByRole('form', { name: 'Unlock with your SecuPass' });
    await unlock.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await unlock.getByRole('button', { name: 'Unlock' }).click();
    const [download] = await Promise.all([sender.page.waitForEvent('download'), sender.page.getByRole('button', { name: 'Download steuer.txt' }).click({ timeout: 30_000 })]);
    expect((await bytesOf(download)).equals(papers)).toBe(true);
    for (const f of filesUnder(join(dir, 'data', 'blobs'))) expect(readFileSync(f).includes(Buffer.from('Steuerunterlagen: Erika'))).toBe(false);
    expect(await outsider.problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  }, 120_000);

  it('a key swapped by the server is refused by the browser: on the upload page against the link\'s fingerprint, and when composing against the fingerprint the server itself names', async () => {
    // The server is made to lie by rewriting its answers in the browser's network layer: another key pair's
    // public key where the requester's (or a recipient's) key should be.
    const other = await generateKeyPair();
    const otherKey = encodePublicKey(other.publicKey);
    const otherFingerprint = await fingerprint(other.publicKey);
    const login = await http.post('/api/v1/auth/login', { data: { login: SENDER, password: SENDER_PASSWORD, mode: 'token' } });
    const auth = { authorization: `Bearer ${((await login.json()) as { sessionToken: string }).sessionToken}` };
    const made = await http.post('/api/v1/file-requests', { data: { level: 3, expiresAt: new Date(Date.now() + 86_400_000).toISOString() }, headers: auth });
    expect(made.status(), await made.text()).toBe(201);
    const { id: requestId, link: uploadLink } = (await made.json()) as { id: string; link: string };
    expect(uploadLink).toMatch(/&fp=[0-9a-f-]+$/);

    // 1. The upload page: the server offers another key (with that key's own, consistent fingerprint).
    const outsider = await watchedPage(browser, 'en-GB');
    await outsider.page.route('**/api/v1/u/*/open', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as Record<string, unknown>;
      await route.fulfill({ response, json: { ...body, publicKey: otherKey, fingerprint: otherFingerprint } });
    });
    await outsider.page.goto(uploadLink);
    await outsider.page.getByText(/asks you for files \(security level 3\)/).waitFor();
    await outsider.page.getByLabel('Your e-mail address').fill('mallory-opfer@extern-transfer.test');
    await outsider.page.getByLabel('Subject').fill('Nicht für fremde Schlüssel');
    await outsider.page.getByLabel('Files', { exact: true }).setInputFiles([{ name: 'geheim.txt', mimeType: 'text/plain', buffer: textFile('Geheim', 10_000) }]);
    await outsider.page.getByRole('button', { name: 'Encrypt and send' }).click();
    await outsider.page.getByRole('alert').filter({ hasText: 'The key offered is not the one the link names. For your safety nothing is sent.' }).waitFor({ timeout: 30_000 });
    await screenshot(outsider.page, 'file-request-swapped-key');
    // Nothing reached the server: the request has no upload.
    const requests = (await (await http.get('/api/v1/file-requests', { headers: auth })).json()) as { id: string; uploads: number }[];
    expect(requests.find((r) => r.id === requestId)?.uploads).toBe(0);

    // 2. Composing: the server names the recipient's real fingerprint but hands over another public key.
    await sender.page.route('**/api/v1/transfers', async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      const response = await route.fetch();
      const body = (await response.json()) as { recipients: { publicKey?: string }[] };
      await route.fulfill({ response, json: { ...body, recipients: body.recipients.map((r) => (r.publicKey ? { ...r, publicKey: otherKey } : r)) } });
    });
    try {
      const mailsBefore = readOutbox(outbox).filter((m) => m.to === GUEST).length;
      await sender.page.getByRole('link', { name: 'Transfers' }).click();
      const form = sender.page.getByRole('form', { name: 'New transfer' });
      await form.getByLabel('Recipients (e-mail addresses)').fill(GUEST);
      await form.getByLabel('Subject', { exact: true }).fill('Untergeschobener Schlüssel');
      await form.getByLabel(`Level 3 –`).check();
      await form.getByLabel('Files', { exact: true }).setInputFiles([{ name: 'lohn.txt', mimeType: 'text/plain', buffer: textFile('Lohn', 10_000) }]);
      await form.getByRole('button', { name: 'Encrypt and send' }).click();
      await sender.page.getByRole('alert').filter({ hasText: 'The key offered does not have the expected fingerprint. Stopped.' }).waitFor({ timeout: 30_000 });
      // Not sent: the guest got no mail for it, and the empty transfer is gone from the sent list.
      expect(readOutbox(outbox).filter((m) => m.to === GUEST).length).toBe(mailsBefore);
      const list = (await (await http.get('/api/v1/transfers', { headers: auth })).json()) as { subject: string }[];
      expect(list.map((x) => x.subject)).not.toContain('Untergeschobener Schlüssel');
      expect(list.map((x) => x.subject)).toContain('Gehaltsliste Stufe drei');
    } finally {
      await sender.page.unroute('**/api/v1/transfers');
    }
    expect(await outsider.problems()).toEqual([]);
  }, 120_000);

  it("a wrap for a foreign key slipped into the link's answer is refused by the recipient's browser", async () => {
    // The server (or whoever rewrites its answers) hands the guest file keys wrapped for another key pair:
    // the level-4 link names the guest's old key, the wraps name neither it nor the guest's current key.
    const other = await generateKeyPair();
    const otherFingerprint = await fingerprint(other.publicKey);
    const foreignWrap = async (transferId: string, fileId: string) => toBase64Url(await wrapFileKey(randomFileKey(), other.publicKey, `transfer:${transferId}/file:${fileId}`));
    const { page, problems } = guest;
    let rewritten = 0;
    await page.route('**/api/v1/r/*/open', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { transferId: string; files: { id: string }[]; bundle?: { id: string } };
      const files = [];
      for (const f of body.files) files.push({ ...f, fingerprint: otherFingerprint, wrapped: await foreignWrap(body.transferId, f.id) });
      const bundle = body.bundle ? { ...body.bundle, fingerprint: otherFingerprint, wrapped: await foreignWrap(body.transferId, body.bundle.id) } : undefined;
      rewritten++;
      await route.fulfill({ response, json: { ...body, files, ...(bundle ? { bundle } : {}) } });
    });
    try {
      await page.goto(linkUrl(state.level4!));
      await page.getByRole('heading', { name: 'Unterlagen Stufe vier' }).waitFor();
      const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
      await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS_2);
      await unlock.getByRole('button', { name: 'Entsperren' }).click();
      await page.getByRole('alert').filter({ hasText: 'Warnung: Der angebotene Schlüssel ist nicht der, den die Absenderin oder der Absender verwendet hat. Die Dateien werden nicht geöffnet.' }).waitFor({ timeout: 30_000 });
      await screenshot(page, 'transfer-receive-key-mismatch');
      expect(rewritten).toBeGreaterThan(0);
      expect(await page.getByText('Die geheime Nachricht steht nur im Bündel.').count()).toBe(0);
      expect(await page.getByRole('button', { name: /herunterladen$/ }).count()).toBe(0);
    } finally {
      await page.unroute('**/api/v1/r/*/open');
    }
    // The same link and SecuPass without the rewrite: it opens (the refusal above came from the foreign wraps).
    await page.goto(linkUrl(state.level4!));
    const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS_2);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    await page.getByText('Die geheime Nachricht steht nur im Bündel.').waitFor({ timeout: 30_000 });
    expect(await problems()).toEqual([]);
  }, 120_000);

  it('interoperates with the CLI both ways at level 4: message and file names end to end', async () => {
    const cliEnv = cliEnvOf();
    const senderToken = cliLogin(SENDER, SENDER_PASSWORD);
    const guestToken = cliLogin(GUEST, GUEST_PASSWORD);

    // Sent with `tresor send --level 4`: the browser decrypts the bundle (message and names) and the file.
    const fromCli = textFile('Stufe vier vom Terminal', 600 * 1024);
    const cliFile = join(dir, 'stufe-vier-terminal.txt');
    writeFileSync(cliFile, fromCli);
    const sent = tresor(['send', '--to', GUEST, '--subject', 'Stufe vier aus dem Terminal', '--message', 'Nachricht nur im Bündel, vom Terminal.', '--level', '4', cliFile], {
      cwd: dir,
      env: { ...cliEnv, TRESOR_TOKEN: senderToken, TRESOR_SECUPASS: SENDER_SECUPASS },
    });
    expect(sent.code, sent.stderr).toBe(0);
    const cliLink = transferLink(outbox, GUEST);
    expect(cliLink.fp).toMatch(/^[0-9a-f-]{79}$/);
    const { page, problems } = guest;
    await page.goto(linkUrl(cliLink));
    await page.getByRole('heading', { name: 'Stufe vier aus dem Terminal' }).waitFor();
    expect(await page.getByText('Nachricht nur im Bündel').count()).toBe(0);
    expect(await page.getByText('stufe-vier-terminal.txt').count()).toBe(0);
    const unlock = page.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS_2);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    await page.getByText('Nachricht nur im Bündel, vom Terminal.').waitFor({ timeout: 30_000 });
    await page.getByRole('cell', { name: 'stufe-vier-terminal.txt', exact: true }).waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'stufe-vier-terminal.txt herunterladen' }).click({ timeout: 30_000 })]);
    expect(download.suggestedFilename()).toBe('stufe-vier-terminal.txt');
    expect((await bytesOf(download)).equals(fromCli)).toBe(true);

    // Sent in the browser at level 4, received with `tresor receive`: the CLI opens the bundle too.
    const fromBrowser = textFile('Stufe vier aus dem Browser', 400 * 1024);
    await send(sender.page, { to: GUEST, subject: 'Stufe vier aus dem Browser', message: 'Geheime Zeilen für die Kommandozeile.', level: 4, files: [{ name: 'stufe-vier-browser.txt', buffer: fromBrowser }] });
    const browserLink = transferLink(outbox, GUEST);
    const out = join(dir, 'received-level4');
    const received = tresor(['--json', 'receive', linkUrl(browserLink), '--out', out], { cwd: dir, env: { ...cliEnv, TRESOR_TOKEN: guestToken, TRESOR_SECUPASS: GUEST_SECUPASS_2 } });
    expect(received.code, received.stderr).toBe(0);
    expect(JSON.parse(received.stdout)).toMatchObject({ subject: 'Stufe vier aus dem Browser', message: 'Geheime Zeilen für die Kommandozeile.', level: 4, files: [expect.objectContaining({ name: 'stufe-vier-browser.txt' })] });
    expect(readFileSync(join(out, 'stufe-vier-browser.txt')).equals(fromBrowser)).toBe(true);
    // Neither the message nor a name reached the server in clear.
    for (const f of filesUnder(join(dir, 'data', 'blobs'))) {
      const bytes = readFileSync(f);
      for (const clear of ['Geheime Zeilen', 'Nachricht nur im Bündel', 'stufe-vier-browser.txt', 'Stufe vier aus dem Browser:']) expect(bytes.includes(Buffer.from(clear))).toBe(false);
    }
    expect(await problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  }, 180_000);

  it('an upload cut off in the middle goes on after a page reload: the same file is checked against what arrived, another one is refused', async () => {
    const photo = randomBytes(2 * PIECE + 123_457);
    const small = textFile('Begleitschreiben', 40_000);
    const later = textFile('Kurzbefund', 20_000); // its upload never starts before the cut
    const addendum = textFile('Nachtrag', 20_000); // nor this one, of the same size: told apart by name
    const page = sender.page;
    // The connection is lost for good after the first piece of the big file: every later piece fails.
    await send(page, {
      to: GUEST,
      subject: 'Röntgenbilder Stufe vier',
      message: 'Die Bilder vom Dienstag.',
      level: 4,
      files: [
        { name: 'begleitschreiben.txt', buffer: small },
        { name: 'roentgen.bin', buffer: photo },
        { name: 'kurzbefund.txt', buffer: later },
        { name: 'nachtrag.txt', buffer: addendum },
      ],
      lostFrom: PIECE,
    });

    // A fresh page: the draft says what arrived and offers to go on.
    await page.reload();
    const card = page.getByRole('article', { name: 'Röntgenbilder Stufe vier' });
    await card.getByText('Not sent yet: the upload was interrupted.').waitFor();
    // The server also lost the end of what it had (a crash before the data reached the disk): the upload
    // then goes on from the middle of a piece.
    const transferDir = readdirSync(join(dir, 'data', 'blobs', tenantId)).map((d) => join(dir, 'data', 'blobs', tenantId, d)).find((d) => readdirSync(d).some((f) => statSync(join(d, f)).size === PIECE))!;
    const blob = join(transferDir, readdirSync(transferDir).find((f) => statSync(join(transferDir, f)).size === PIECE)!);
    truncateSync(blob, PIECE - 5000);

    // The server hands the page its own choice of file key for the file not started yet (anyone with the
    // sender's public key can wrap one): the page must not encrypt anything new under it.
    let resumeState: { id: string; files: { id: string; received: number }[] } | undefined;
    const serverKey = randomFileKey();
    await page.route('**/resume?*', async (route) => {
      const response = await route.fetch();
      resumeState = (await response.json()) as typeof resumeState;
      await route.fulfill({ response });
    });
    await page.route('**/sender-wraps', async (route) => {
      const response = await route.fetch();
      const wraps = (await response.json()) as { fileId: string; wrapped: string; fingerprint: string }[];
      const notStarted = resumeState!.files[2]!.id;
      const own = (await (await page.request.get(`${server.url}/api/v1/e2e/key`)).json()) as { publicKey: string };
      const swapped = toBase64Url(await wrapFileKey(serverKey, await decodePublicKey(own.publicKey), `transfer:${resumeState!.id}/file:${notStarted}`));
      await route.fulfill({ response, json: wraps.map((w) => (w.fileId === notStarted ? { ...w, wrapped: swapped } : w)) });
    });
    await card.getByRole('button', { name: 'Continue “Röntgenbilder Stufe vier”' }).click();
    const resume = card.getByRole('form', { name: 'Continue “Röntgenbilder Stufe vier”' });
    // A file left out is asked for by its name (level 4: read from the bundle with the SecuPass).
    await resume.getByLabel('The same files again').setInputFiles([
      { name: 'roentgen.bin', mimeType: 'application/octet-stream', buffer: photo },
      { name: 'kurzbefund.txt', mimeType: 'text/plain', buffer: later },
    ]);
    await resume.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await resume.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByRole('alert').filter({ hasText: 'Please choose these files again: nachtrag.txt (' }).waitFor({ timeout: 60_000 });
    // Another file of the same size is refused, and nothing changes on the server: even one that differs
    // only in its last byte, far behind what arrived (encrypted again under the same nonces, it would hand
    // the server two plaintexts under one nonce for bytes it may have seen).
    const other = Buffer.from(photo);
    other[photo.length - 1] = other[photo.length - 1]! ^ 1;
    await resume.getByLabel('The same files again').setInputFiles([
      { name: 'roentgen.bin', mimeType: 'application/octet-stream', buffer: other },
      { name: 'kurzbefund.txt', mimeType: 'text/plain', buffer: later },
      { name: 'nachtrag.txt', mimeType: 'text/plain', buffer: addendum },
    ]);
    await resume.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await resume.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByRole('alert').filter({ hasText: 'is not the file whose upload was interrupted' }).waitFor({ timeout: 60_000 });
    expect(statSync(blob).size).toBe(PIECE - 5000);
    await resume.getByLabel('The same files again').setInputFiles([
      // The two files of one size in the other order: each must still go on under its own name.
      { name: 'nachtrag.txt', mimeType: 'text/plain', buffer: addendum },
      { name: 'kurzbefund.txt', mimeType: 'text/plain', buffer: later },
      { name: 'roentgen.bin', mimeType: 'application/octet-stream', buffer: photo },
    ]);
    await resume.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await screenshot(page, 'transfer-resume');
    await resume.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByText(/^Sent to 1 recipient\(s\)\./).waitFor({ timeout: 60_000 });
    await page.unroute('**/resume?*');
    await page.unroute('**/sender-wraps');
    expect(statSync(blob).size).toBeGreaterThan(2 * PIECE);
    expect(resumeState!.files[2]!.received).toBe(0);
    const laterBlob = readFileSync(join(transferDir, resumeState!.files[2]!.id));
    await expect(decryptBytes(serverKey, `transfer:${resumeState!.id}/file:${resumeState!.files[2]!.id}`, laterBlob)).rejects.toThrow(/wrong file key/);

    // The recipient gets the file whole and unaltered.
    const link = transferLink(outbox, GUEST);
    const { page: guestPage, problems } = guest;
    await guestPage.goto(linkUrl(link));
    const unlock = guestPage.getByRole('form', { name: 'Mit SecuPass entsperren' });
    await unlock.getByLabel('Ihr SecuPass').fill(GUEST_SECUPASS_2);
    await unlock.getByRole('button', { name: 'Entsperren' }).click();
    await guestPage.getByText('Die Bilder vom Dienstag.').waitFor({ timeout: 30_000 });
    const [download] = await Promise.all([guestPage.waitForEvent('download'), guestPage.getByRole('button', { name: 'roentgen.bin herunterladen' }).click()]);
    expect((await bytesOf(download)).equals(photo)).toBe(true);
    const [download3] = await Promise.all([guestPage.waitForEvent('download'), guestPage.getByRole('button', { name: 'kurzbefund.txt herunterladen' }).click()]);
    expect((await bytesOf(download3)).equals(later)).toBe(true);
    const [download4] = await Promise.all([guestPage.waitForEvent('download'), guestPage.getByRole('button', { name: 'nachtrag.txt herunterladen' }).click()]);
    expect((await bytesOf(download4)).equals(addendum)).toBe(true);
    expect(await problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  }, 180_000);
  it('level 1: a reloaded page goes on with the file key the server keeps; a file of another name is asked for again', async () => {
    const scan = randomBytes(PIECE + 77_777);
    const page = sender.page;
    await send(page, { to: 'max@extern-transfer.test', subject: 'Scan Stufe eins, unterbrochen', message: '', level: 1, files: [{ name: 'scan.bin', buffer: scan }], lostFrom: PIECE });

    await page.reload();
    const card = page.getByRole('article', { name: 'Scan Stufe eins, unterbrochen' });
    await card.getByText(/scan\.bin: 8(\.0)? MiB of 8(\.1)? MiB arrived/).waitFor();
    await card.getByRole('button', { name: 'Continue “Scan Stufe eins, unterbrochen”' }).click();
    const resume = card.getByRole('form', { name: 'Continue “Scan Stufe eins, unterbrochen”' });
    expect(await resume.getByLabel('Your SecuPass').count()).toBe(0); // levels 1/2: the server keeps the key
    await resume.getByLabel('The same files again').setInputFiles([{ name: 'scan-kopie.bin', mimeType: 'application/octet-stream', buffer: scan }]);
    await resume.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByRole('alert').filter({ hasText: /Please choose these files again: scan\.bin/ }).waitFor();
    await resume.getByLabel('The same files again').setInputFiles([{ name: 'scan.bin', mimeType: 'application/octet-stream', buffer: scan }]);
    await resume.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByText(/^Sent to 1 recipient\(s\)\./).waitFor({ timeout: 60_000 });

    expect((await level1Download(transferLink(outbox, 'max@extern-transfer.test'), 'max@extern-transfer.test', 'scan.bin')).equals(scan)).toBe(true);
    expect(await sender.problems()).toEqual([]);
  }, 120_000);

  it('a draft goes on in the other client at level 4: cut off in the browser and finished with tresor transfer resume, cut off in tresor send and finished in the browser', async () => {
    const cliEnv = cliEnvOf();
    const asSender = { ...cliEnv, TRESOR_TOKEN: cliLogin(SENDER, SENDER_PASSWORD), TRESOR_SECUPASS: SENDER_SECUPASS };
    const asGuest = { ...cliEnv, TRESOR_TOKEN: cliLogin(GUEST, GUEST_PASSWORD), TRESOR_SECUPASS: GUEST_SECUPASS_2 };
    const folder = join(dir, 'drafts');
    mkdirSync(folder, { recursive: true });
    const scan = randomBytes(2 * PIECE + 4321);
    const letter = textFile('Anschreiben zum Entwurf', 30_000);
    writeFileSync(join(folder, 'mrt.bin'), scan);
    writeFileSync(join(folder, 'anschreiben.txt'), letter);
    const files = [{ name: 'mrt.bin', buffer: scan }, { name: 'anschreiben.txt', buffer: letter }];
    const receivedBy = (subject: string, message: string, out: string) => {
      const got = tresor(['--json', 'receive', linkUrl(transferLink(outbox, GUEST)), '--out', join(dir, out)], { cwd: dir, env: asGuest });
      expect(got.code, got.stderr).toBe(0);
      expect(JSON.parse(got.stdout)).toMatchObject({ subject, message, level: 4 });
      expect(readFileSync(join(dir, out, 'mrt.bin')).equals(scan)).toBe(true);
      expect(readFileSync(join(dir, out, 'anschreiben.txt')).equals(letter)).toBe(true);
    };

    // Browser → terminal: the page loses the connection after the first piece of the scan; the sender
    // finds the draft with tresor transfer list and gives the files again (in another order). The CLI reads
    // the names from the page's level-4 bundle and checks the part that arrived against the page's manifest.
    await send(sender.page, { to: GUEST, subject: 'Entwurf aus dem Browser', message: 'Weiter im Terminal.', level: 4, files, lostFrom: PIECE });
    const listed = tresor(['--json', 'transfer', 'list'], { cwd: dir, env: asSender });
    expect(listed.code, listed.stderr).toBe(0);
    const draftId = (JSON.parse(listed.stdout) as { id: string; subject: string }[]).find((t) => t.subject === 'Entwurf aus dem Browser')!.id;
    /** The sizes of a transfer's blobs on the server: what arrived of each file (and the bundle). */
    const held = (id: string) => readdirSync(join(dir, 'data', 'blobs', tenantId, id)).map((f) => statSync(join(dir, 'data', 'blobs', tenantId, id, f)).size);
    expect(held(draftId)).toContain(PIECE); // the scan's first piece: the CLI checks it, then sends the rest
    const resumed = tresor(['transfer', 'resume', draftId, join(folder, 'anschreiben.txt'), join(folder, 'mrt.bin')], { cwd: dir, env: asSender });
    expect(resumed.code, resumed.stderr).toBe(0);
    receivedBy('Entwurf aus dem Browser', 'Weiter im Terminal.', 'draft-from-browser');

    // Terminal → browser: tresor send loses the network for good after 12 MiB; the page finds the draft
    // (names from the CLI's bundle) and checks what arrived against its own encryption under the CLI's header.
    const proxy = await cuttingProxy(port, (_sent, total) => (total > 12 * 1024 * 1024 ? 'dead' : 'go'));
    let cut;
    try {
      cut = await tresorAsync(['send', '--to', GUEST, '--subject', 'Entwurf aus dem Terminal', '--message', 'Weiter im Browser.', '--level', '4', join(folder, 'mrt.bin'), join(folder, 'anschreiben.txt')], { cwd: dir, env: { ...asSender, TRESOR_URL: proxy.url } });
    } finally {
      await proxy.close();
    }
    expect(cut.code).not.toBe(0);
    const cutId = /transfer ([0-9a-f-]{36}) was not sent; go on with `tresor transfer resume/.exec(cut.stderr)?.[1];
    expect(cutId, cut.stderr).toBeDefined();
    const partOfScan = () => held(cutId!).some((n) => n > PIECE && n < scan.length); // the page checks that part
    for (let i = 0; i < 100 && !partOfScan(); i++) await new Promise((r) => setTimeout(r, 50)); // the server finishes the broken request
    expect(partOfScan()).toBe(true);
    const page = sender.page;
    await page.reload();
    const card = page.getByRole('article', { name: 'Entwurf aus dem Terminal' });
    await card.getByText('Not sent yet: the upload was interrupted.').waitFor();
    await card.getByRole('button', { name: 'Continue “Entwurf aus dem Terminal”' }).click();
    const resume = card.getByRole('form', { name: 'Continue “Entwurf aus dem Terminal”' });
    await resume.getByLabel('The same files again').setInputFiles(files.map((f) => ({ name: f.name, mimeType: 'application/octet-stream', buffer: f.buffer })));
    await resume.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await resume.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByText(/^Sent to 1 recipient\(s\)\./).waitFor({ timeout: 60_000 });
    receivedBy('Entwurf aus dem Terminal', 'Weiter im Browser.', 'draft-from-terminal');
    expect(await sender.problems()).toEqual([]);
  }, 180_000);

  /** A "request files" link made on the member's page, at `level`. */
  const requestLink = async (level: 1 | 2 | 3 | 4, message: string) => {
    await sender.page.getByRole('link', { name: 'Transfers' }).click();
    const form = sender.page.getByRole('form', { name: 'New request' });
    await form.getByLabel('Security level').selectOption(String(level));
    await form.getByLabel('Message to the sender').fill(message);
    await form.getByRole('button', { name: 'Create link' }).click();
    await sender.page.getByText('The link is ready.', { exact: false }).waitFor();
    return sender.page.getByLabel('Upload link').inputValue();
  };
  /** An outsider fills the upload page and loses the connection for good at byte `lostFrom` of a file. */
  const uploadCutOff = async (page: Page, opts: { subject: string; message: string; files: { name: string; buffer: Buffer }[]; lostFrom: number }) => {
    await page.getByLabel('Your e-mail address').fill('einreicher@extern-transfer.test');
    await page.getByLabel('Subject').fill(opts.subject);
    await page.getByLabel('Message', { exact: true }).fill(opts.message);
    await page.getByLabel('Files', { exact: true }).setInputFiles(opts.files.map((f) => ({ name: f.name, mimeType: 'application/octet-stream', buffer: f.buffer })));
    const lost = (url: URL) => url.pathname.includes('/blobs/') && Number(url.searchParams.get('offset') ?? 0) >= opts.lostFrom;
    await page.route(lost, (route) => route.abort('connectionreset'));
    await page.getByRole('button', { name: 'Encrypt and send' }).click();
    await page.getByRole('alert').waitFor({ timeout: 60_000 });
    await page.unroute(lost);
  };

  it('"request files" at level 4: an outsider\'s upload cut off goes on after a reload of the tab, with the keys and names only that tab kept; another file is refused', async () => {
    const scan = randomBytes(2 * PIECE + 4321);
    const letter = textFile('Anschreiben', 30_000);
    const uploadLink = await requestLink(4, 'Bitte das MRT hochladen.');
    const outsider = await watchedPage(browser, 'en-GB');
    const page = outsider.page;
    await page.goto(uploadLink);
    await page.getByText(/asks you for files \(security level 4\)/).waitFor();
    await uploadCutOff(page, { subject: 'MRT über den Link', message: 'Nur für Sie lesbar.', files: [{ name: 'anschreiben.txt', buffer: letter }, { name: 'mrt.bin', buffer: scan }], lostFrom: PIECE });

    // The tab reloaded (the link's secret is no longer in the address bar): the page offers to go on.
    let answer: { id: string; files: Record<string, unknown>[] } | undefined;
    await page.route('**/api/v1/u/*/transfers/*/resume', async (route) => {
      const response = await route.fetch();
      answer = (await response.json()) as typeof answer;
      await route.fulfill({ response });
    });
    await page.reload();
    const goOn = page.getByRole('form', { name: 'Continue an interrupted upload' });
    await goOn.getByText('Uploading “MRT über den Link” in this tab was interrupted.', { exact: false }).waitFor();
    await screenshot(page, 'file-request-resume');
    // The file not chosen again is asked for by the name this tab kept (level 4: the server has no names).
    await goOn.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByRole('alert').filter({ hasText: 'Please choose these files again: mrt.bin (' }).waitFor();
    // What the server answers a link holder holds no names and no keys: only what arrived.
    expect(answer!.files.length).toBe(3); // the bundle and two files
    for (const f of answer!.files) {
      expect(f).not.toHaveProperty('name');
      expect(f).not.toHaveProperty('fileKey');
    }
    const open = answer!.files.find((f) => (f.received as number) > 0 && (f.received as number) < (f.cipherSize as number))!;
    expect(open.received).toBe(PIECE);
    const blob = join(dir, 'data', 'blobs', tenantId, answer!.id, open.id as string);
    expect(statSync(blob).size).toBe(PIECE);

    // Another file of that name and size (its last byte, far behind what arrived, differs) is refused
    // before anything goes up.
    const other = Buffer.from(scan);
    other[scan.length - 1] = other[scan.length - 1]! ^ 1;
    await goOn.getByLabel('The same files again').setInputFiles([{ name: 'mrt.bin', mimeType: 'application/octet-stream', buffer: other }]);
    await goOn.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByRole('alert').filter({ hasText: '“mrt.bin (' }).filter({ hasText: 'is not the file whose upload was interrupted' }).waitFor({ timeout: 60_000 });
    expect(statSync(blob).size).toBe(PIECE);

    // Without the link's secret, or through another link (its own id and secret), the draft is not found.
    const otherLink = await requestLink(4, 'Eine andere Anforderung.');
    for (const via of [{ ...uploadLinkParts(uploadLink), secret: toBase64Url(randomBytes(32)) }, uploadLinkParts(otherLink)]) {
      const refused = await http.post(`/api/v1/u/${via.requestId}/transfers/${answer!.id}/resume`, { data: { secret: via.secret, pieceSize: PIECE } });
      expect(refused.status()).toBe(404);
      expect(await refused.text()).not.toContain('received');
    }

    await goOn.getByLabel('The same files again').setInputFiles([{ name: 'mrt.bin', mimeType: 'application/octet-stream', buffer: scan }]);
    await goOn.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByText(`Sent. ${SENDER} is notified.`).waitFor({ timeout: 60_000 });
    await page.unroute('**/api/v1/u/*/transfers/*/resume');
    // The tab forgets the keys once sent: a reload shows the empty form.
    expect(await page.evaluate<string>(`sessionStorage.getItem(${JSON.stringify(`tresor.upload.${uploadLinkParts(uploadLink).requestId}`)}) ?? ''`)).not.toContain('pending');
    await page.reload();
    await page.getByRole('form', { name: 'Send files securely' }).waitFor();

    // The member reads message, names and both files with the SecuPass, byte for byte.
    const link = transferLink(outbox, SENDER);
    await sender.page.goto(linkUrl(link));
    const unlock = sender.page.getByRole('form', { name: 'Unlock with your SecuPass' });
    await unlock.getByLabel('Your SecuPass').fill(SENDER_SECUPASS);
    await unlock.getByRole('button', { name: 'Unlock' }).click();
    await sender.page.getByText('Nur für Sie lesbar.').waitFor({ timeout: 30_000 });
    const [download] = await Promise.all([sender.page.waitForEvent('download'), sender.page.getByRole('button', { name: 'Download mrt.bin' }).click()]);
    expect((await bytesOf(download)).equals(scan)).toBe(true);
    const [download2] = await Promise.all([sender.page.waitForEvent('download'), sender.page.getByRole('button', { name: 'Download anschreiben.txt' }).click()]);
    expect((await bytesOf(download2)).equals(letter)).toBe(true);
    expect(await outsider.problems()).toEqual([]);
    expect(await sender.problems()).toEqual([]);
  }, 180_000);

  it('"request files" at level 1: an upload cut off goes on in the same tab without choosing the files again; one given up after a reload is deleted at once', async () => {
    const scan = randomBytes(PIECE + 999);
    const uploadLink = await requestLink(1, 'Bitte den Scan.');
    const { requestId, secret } = uploadLinkParts(uploadLink);
    const outsider = await watchedPage(browser, 'en-GB');
    const page = outsider.page;
    await page.goto(uploadLink);
    // Cut off, then continued at once in the same tab: the files chosen a moment ago are still there.
    await uploadCutOff(page, { subject: 'Scan, gleich weiter', message: '', files: [{ name: 'scan.bin', buffer: scan }], lostFrom: PIECE });
    const goOn = page.getByRole('form', { name: 'Continue an interrupted upload' });
    await goOn.getByText('Without a new choice the files you chose a moment ago are used.', { exact: false }).waitFor();
    await goOn.getByRole('button', { name: 'Check and continue sending' }).click();
    await page.getByText(`Sent. ${SENDER} is notified.`).waitFor({ timeout: 60_000 });
    expect((await level1Download(transferLink(outbox, SENDER), SENDER, 'scan.bin')).equals(scan)).toBe(true);

    // Cut off again (the link opened anew in the tab), the tab reloaded, and the upload given up.
    /** The link opened anew in the tab and an upload cut off: the id of the draft it made. */
    const cutAgain = async (subject: string) => {
      await page.goto('about:blank');
      await page.goto(uploadLink);
      let made = '';
      await page.route(`**/api/v1/u/${requestId}/transfers`, async (route) => {
        const response = await route.fetch();
        made = ((await response.json()) as { id: string }).id;
        await route.fulfill({ response });
      });
      await uploadCutOff(page, { subject, message: '', files: [{ name: 'scan.bin', buffer: scan }], lostFrom: PIECE });
      await page.unroute(`**/api/v1/u/${requestId}/transfers`);
      return made;
    };
    const draftId = await cutAgain('Scan, abgebrochen');
    expect(statSync(join(dir, 'data', 'blobs', tenantId, draftId)).isDirectory()).toBe(true);
    await page.reload();
    await goOn.getByText('Uploading “Scan, abgebrochen” in this tab was interrupted.', { exact: false }).waitFor();
    await goOn.getByRole('button', { name: 'Discard and start over' }).click();
    await page.getByRole('form', { name: 'Send files securely' }).waitFor();
    // The draft is gone with its bytes, and says so to anyone who asks after it; the ledger has it.
    expect(readdirSync(join(dir, 'data', 'blobs', tenantId))).not.toContain(draftId);
    expect((await http.post(`/api/v1/u/${requestId}/transfers/${draftId}/resume`, { data: { secret, pieceSize: PIECE } })).status()).toBe(404);
    const withdrawn = tresor(['ledger', 'export', '--tenant', tenantId, '--action', 'transfer.withdraw'], { cwd: dir, env: env() }).stdout;
    expect(withdrawn).toContain(draftId);
    // The form works as before: the same file goes whole this time.
    await page.getByLabel('Your e-mail address').fill('einreicher@extern-transfer.test');
    await page.getByLabel('Subject').fill('Scan, neu');
    await page.getByLabel('Files', { exact: true }).setInputFiles([{ name: 'scan.bin', mimeType: 'application/octet-stream', buffer: scan }]);
    await page.getByRole('button', { name: 'Encrypt and send' }).click();
    await page.getByText(`Sent. ${SENDER} is notified.`).waitFor({ timeout: 60_000 });

    // Cut off once more. A mistyped link opened in the tab does not open, and what the tab began stays (a
    // reload still offers it); the link opened with another fingerprint starts afresh, and the draft begun
    // before (whose keys the tab forgets now) is given up at once instead of waiting on the server to expire.
    const third = join(dir, 'data', 'blobs', tenantId, await cutAgain('Scan, dritter Versuch'));
    expect(statSync(third).isDirectory()).toBe(true);
    const page0 = uploadLink.slice(0, uploadLink.indexOf('#'));
    await page.goto('about:blank');
    await page.goto(`${page0}#s=${'A'.repeat(43)}`);
    await page.getByText('This link is not valid, has expired or was closed.').waitFor();
    await page.goto('about:blank');
    await page.goto(page0);
    await goOn.getByText('Uploading “Scan, dritter Versuch” in this tab was interrupted.', { exact: false }).waitFor();
    expect(statSync(third).isDirectory()).toBe(true);
    await page.goto('about:blank');
    await page.goto(`${uploadLink}&fp=0000-0000`);
    await page.getByRole('form', { name: 'Send files securely' }).waitFor();
    await expect.poll(() => existsSync(third), { timeout: 10_000 }).toBe(false);
    expect(await goOn.count()).toBe(0);
    expect(await outsider.problems()).toEqual([]);
  }, 180_000);
});

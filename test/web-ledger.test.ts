import { readFileSync } from 'node:fs';
import type { Kysely } from 'kysely';
import type { Browser, Download, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../src/http/server.js';
import type { LedgerSchema } from '../src/ledger/ledger.migrations.js';
import { createCheckpoint, formatCheckpoint, generateLedgerKeyPair, standaloneVerifier } from '../src/ledger/index.js';
import { launchBrowser, screenshot, watchedPage } from './browser.js';
import { freePort } from './cli-process.js';
import { bearerLogin, GOOD_PASSWORD, mailedKey, makeTestEnv, silentLog, type TestEnv } from './helpers.js';

/**
 * The ledger view of a tenant's privacy officer in a real browser (Debian's Chromium) against a real
 * server over TLS: filters by period, actor, action and data subject (by e-mail address and by name, never
 * a raw blind index), an entry with its inclusion proof checked in the browser, exports as JSON and CSV with
 * the covering checkpoint, and "verify now" — fine first, then failing after the database was tampered
 * with directly. In English and in German, under the server's strict CSP.
 */
describe('ledger view for the DPO in Chromium', () => {
  let t: TestEnv;
  let server: RunningServer;
  let browser: Browser;
  let tenantId = '';
  let annaId = '';
  const tokens: Record<string, string> = {};
  const PERSON = { name: 'Friederike Nachtigall-Brem', email: 'f.nachtigall@beispiel-patient.test' };
  const call = (who: string, method: 'GET' | 'POST', url: string, payload?: object) =>
    server.app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const invite = async (who: string, email: string, role: string) => {
    expect((await call(who, 'POST', '/api/v1/accounts', { email, role, tenantId })).statusCode).toBe(201);
    const accepted = await server.app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: mailedKey(server.core.config.mail.outbox_dir, email), newPassword: GOOD_PASSWORD } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    return bearerLogin(server.app, email, GOOD_PASSWORD);
  };
  const rawLedger = async () => {
    const { database_name } = await server.core.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirstOrThrow();
    return (await server.core.storage.tenantDb({ tenantId, databaseName: database_name })) as unknown as Kysely<LedgerSchema>;
  };

  beforeAll(async () => {
    t = makeTestEnv('sqlite', { TRESOR_SERVER_PORT: String(await freePort()), TRESOR_METRICS_ENABLED: 'false' });
    const printed: string[] = [];
    server = await startServer(t.config, silentLog, (line) => printed.push(line));
    tokens.operator = await bearerLogin(server.app, 'operator', /password: (\S+)/.exec(printed.join('\n'))![1]!);
    const created = (await call('operator', 'POST', '/api/v1/tenants', { name: 'Praxis Nachtigall' })).json<{ id: string; initialKeys: { activationKey: string } }>();
    tenantId = created.id;
    tokens.admin = await invite('operator', 'admin@nachtigall.test', 'admin');
    tokens.anna = await invite('admin', 'anna@nachtigall.test', 'member');
    tokens.dpo = await invite('admin', 'dpo@nachtigall.test', 'dpo');
    expect((await call('anna', 'POST', '/api/v1/keys/activate', { activationKey: created.initialKeys.activationKey })).statusCode).toBe(204);
    const status = (await call('anna', 'GET', '/api/v1/keys/status')).json<{ waiting: { id: string }[] }>();
    expect((await call('anna', 'POST', '/api/v1/keys/grant', { accountId: status.waiting[0]!.id })).statusCode).toBe(204);
    annaId = (await call('anna', 'GET', '/api/v1/auth/me')).json<{ accountId: string }>().accountId;
    expect((await call('anna', 'POST', '/api/v1/contacts', PERSON)).statusCode).toBe(201);
    expect((await call('anna', 'POST', '/api/v1/contacts', { name: 'Jemand Anderes', email: 'anders@beispiel-patient.test' })).statusCode).toBe(201);
    expect((await call('anna', 'GET', `/api/v1/contacts?name=${encodeURIComponent(PERSON.name)}`)).statusCode).toBe(200);
    browser = await launchBrowser();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    await t?.cleanup();
  });

  it('checks checkpoint signatures in the browser code as the server writes them, and refuses changed ones', async () => {
    // Imported by path: the web app is type-checked with its own (DOM) configuration; Node has WebCrypto.
    const { verifyCheckpointSignature } = (await import('../web/src/proof.js' as string)) as { verifyCheckpointSignature(checkpoint: string, publicKeyPem: string): Promise<boolean> };
    const keys = generateLedgerKeyPair();
    const other = generateLedgerKeyPair();
    const note = formatCheckpoint(createCheckpoint({ origin: 'tresor.example/tresor/tenant/x', treeSize: 42, rootHash: Buffer.alloc(32, 7), time: new Date('2026-11-30T10:00:00.000Z'), privateKeyPem: keys.privateKeyPem }));
    expect(await verifyCheckpointSignature(note, keys.publicKeyPem)).toBe(true);
    expect(await verifyCheckpointSignature(note, other.publicKeyPem)).toBe(false); // another ledger's key
    expect(await verifyCheckpointSignature(note.replace('\n42\n', '\n43\n'), keys.publicKeyPem)).toBe(false); // another size
    expect(await verifyCheckpointSignature(note.replace('2026-11-30', '2026-11-29'), keys.publicKeyPem)).toBe(false); // another time
    const [body, signature] = note.split('\n\n') as [string, string];
    const flipped = signature.replace(/([A-Za-z0-9+/]{20})([A-Za-z0-9+/])/, (_m, head: string, c: string) => head + (c === 'A' ? 'B' : 'A'));
    expect(await verifyCheckpointSignature(`${body}\n\n${flipped}`, keys.publicKeyPem)).toBe(false); // a changed signature
    expect(await verifyCheckpointSignature(`${body}\n\n${signature.replace('— tresor.example', '— other.example')}`, keys.publicKeyPem)).toBe(false); // named for another origin
    expect(await verifyCheckpointSignature(body + '\n', keys.publicKeyPem)).toBe(false); // no signature
    expect(await verifyCheckpointSignature(note, 'not a key')).toBe(false);
  });

  const logIn = async (page: Page, texts: { login: string; password: string; submit: string; nav: string; title: string }) => {
    await page.goto(`${server.url}/app/login`);
    await page.getByLabel(texts.login).fill('dpo@nachtigall.test');
    await page.getByLabel(texts.password, { exact: true }).fill(GOOD_PASSWORD);
    await page.getByRole('button', { name: texts.submit }).click();
    await page.getByRole('link', { name: texts.nav, exact: true }).click();
    await page.getByRole('heading', { name: texts.title }).waitFor();
  };
  const rows = (page: Page) => page.locator('tbody tr');
  /**
   * Applies the filter and waits until the page has shown the answer: the page asks for the entries, shows
   * them, and only then asks for the latest checkpoint.
   */
  const filtered = async (page: Page, button: string) => {
    const shown = page.waitForResponse((r) => r.url().includes('/api/v1/ledger/checkpoint'));
    await page.getByRole('button', { name: button, exact: true }).click();
    await shown;
  };

  it('filters by period, actor, action and data subject, opens a proof, exports, and verifies — in English', async () => {
    const { page, problems } = await watchedPage(browser, 'en-GB');
    await logIn(page, { login: 'Login or e-mail address', password: 'Password', submit: 'Log in', nav: 'Ledger', title: 'Tamper-evident ledger' });
    await expect(page.getByLabel('Data subject: e-mail address').count()).resolves.toBe(1);

    await page.getByLabel('Action (e.g. auth. or record.read)').fill('record.create');
    await filtered(page, 'Filter');
    await page.getByRole('cell', { name: 'record.create' }).first().waitFor();
    expect(await rows(page).count()).toBe(2);

    // By data subject, as the DPO types it: her two pseudonyms are looked up by the server.
    await page.getByLabel('Action (e.g. auth. or record.read)').fill('record.');
    await page.getByLabel('Data subject: e-mail address').fill(PERSON.email.toUpperCase());
    await filtered(page, 'Filter');
    const bySubject = await page.locator('tbody td:nth-child(4)').allTextContents();
    // Her creation, Anna's search that found her, and the list the DPO's own start page just showed —
    // not the other contact's creation.
    expect(bySubject).toEqual(['record.create', 'record.search', 'record.list']);
    await page.getByLabel('Data subject: e-mail address').fill('');
    await page.getByLabel('Data subject: name').fill('friederike NACHTIGALL-brem');
    await filtered(page, 'Filter');
    expect(await page.locator('tbody td:nth-child(4)').allTextContents()).toEqual(['record.create', 'record.search', 'record.list']);
    await page.getByLabel('Data subject: name').fill('');

    // By actor: Anna's account id; the DPO's own entries drop out.
    await page.getByLabel('Action (e.g. auth. or record.read)').fill('');
    await page.getByLabel('Actor (account id)').fill(annaId);
    await filtered(page, 'Filter');
    const actors = await page.locator('tbody td:nth-child(3)').allTextContents();
    expect(actors.length).toBeGreaterThan(3);
    expect(actors.every((a) => a.endsWith(`:${annaId}`))).toBe(true);

    // By period: nothing in a past month, everything since yesterday.
    await page.getByLabel('From', { exact: true }).fill('2020-01-01T00:00');
    await page.getByLabel('To', { exact: true }).fill('2020-02-01T00:00');
    await filtered(page, 'Filter');
    await page.getByText('No entries.').waitFor();
    await page.getByLabel('To', { exact: true }).fill('');
    await filtered(page, 'Filter');
    expect(await rows(page).count()).toBe(actors.length);
    await page.getByLabel('Actor (account id)').fill('');
    await page.getByLabel('From', { exact: true }).fill('');
    await filtered(page, 'Filter');

    // An entry with its inclusion proof, checked here in the browser against the signed checkpoint.
    await page.getByRole('button', { name: /^Open \d+$/ }).first().click();
    await page.getByText('Proof valid: the entry is in the signed tree.').waitFor();
    await page.getByText("Checkpoint signature valid (ECDSA P-256, this ledger's key), checked in your browser.").waitFor();
    await page.getByRole('button', { name: 'Close' }).click();

    // Exports with the checkpoint that covers them: JSON, then CSV with the checkpoint beside it.
    await page.getByLabel('Data subject: e-mail address').fill(PERSON.email);
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    await page.getByRole('button', { name: 'Export (JSON)' }).click();
    await page.getByText(/^\d+ entries exported with the signed checkpoint that covers them/).waitFor();
    await page.getByRole('button', { name: 'Export (CSV)' }).click();
    await expect.poll(() => downloads.length, { timeout: 10_000 }).toBe(3);
    expect(downloads.map((d) => d.suggestedFilename().replace(/\d{4}-\d\d-\d\d/, 'DAY'))).toEqual(['ledger-export-DAY.json', 'ledger-export-DAY.csv', 'ledger-export-DAY.csv.checkpoint']);
    const json = JSON.parse(readFileSync((await downloads[0]!.path())!, 'utf8')) as { checkpoint: string; publicKey: string; entries: { action: string }[] };
    expect(json.entries.map((e) => e.action)).toEqual(['record.create', 'record.search', 'record.list', 'ledger.export']);
    expect(standaloneVerifier.verifyCheckpoint(json.checkpoint, json.publicKey).valid).toBe(true);
    const csv = readFileSync((await downloads[1]!.path())!, 'utf8');
    expect(csv.split('\r\n')[0]).toBe('seq,time,actor,action,resource,outcome,payload,entry');
    expect(csv).not.toContain(PERSON.email);
    expect(standaloneVerifier.verifyCheckpoint(readFileSync((await downloads[2]!.path())!, 'utf8'), json.publicKey).valid).toBe(true);

    await page.getByRole('button', { name: 'Verify now' }).click();
    await page.getByText(/^✓ Verified: \d+ entries, \d+ checkpoints, nothing changed\./).waitFor();
    await screenshot(page, 'ledger-dpo');
    expect(await problems()).toEqual([]);
    await page.context().close();
  });

  it('shows a direct change of the database as a failed verification — in German and in English', async () => {
    const de = await watchedPage(browser, 'de-DE');
    await logIn(de.page, { login: 'Anmeldename oder E-Mail-Adresse', password: 'Passwort', submit: 'Anmelden', nav: 'Protokoll', title: 'Manipulationssicheres Protokoll' });
    await de.page.getByLabel('Betroffene Person: E-Mail-Adresse').waitFor();
    await de.page.getByRole('button', { name: 'Jetzt prüfen' }).click();
    await de.page.getByText(/^✓ Geprüft: \d+ Einträge/).waitFor();

    // Someone with access to the database file rewrites one entry (Anna's creation of the contact).
    const raw = await rawLedger();
    const target = await raw.selectFrom('ledger_entries').select(['seq', 'entry']).where('action', '=', 'record.create').orderBy('seq').executeTakeFirstOrThrow();
    await raw.updateTable('ledger_entries').set({ entry: target.entry.replace('"outcome":"success"', '"outcome":"failure"') }).where('seq', '=', target.seq).execute();

    await de.page.getByRole('button', { name: 'Jetzt prüfen' }).click();
    const alarm = de.page.getByRole('alert').filter({ hasText: 'Prüfung fehlgeschlagen:' });
    await alarm.waitFor();
    expect(await alarm.textContent()).toContain(`entry ${target.seq} was changed after it was written`);
    await screenshot(de.page, 'ledger-dpo-tampered-de');
    expect(await de.problems()).toEqual([]);

    // A signed checkpoint rewritten in the database (its time line): the browser's own check of the
    // signature says so when an entry is opened.
    await (await server.core.ledgers.tenant(tenantId)).checkpoint();
    const latest = await raw.selectFrom('ledger_checkpoints').select(['tree_size', 'note']).orderBy('tree_size', 'desc').executeTakeFirstOrThrow();
    await raw.updateTable('ledger_checkpoints').set({ note: latest.note.replace(/time (\d{4})/, (_m, year: string) => `time ${Number(year) - 1}`) }).where('tree_size', '=', latest.tree_size).execute();
    await de.page.getByRole('button', { name: /^Öffnen \d+$/ }).first().click();
    await de.page.getByText('Beweis gültig: der Eintrag ist im signierten Baum enthalten.').waitFor(); // the root is untouched
    await de.page.getByText(/^✗ Signatur des Kontrollpunkts UNGÜLTIG/).waitFor();
    await de.page.getByRole('button', { name: 'Schließen' }).click();

    await de.page.getByRole('button', { name: 'Sprache wechseln' }).click();
    await de.page.getByRole('heading', { name: 'Tamper-evident ledger' }).waitFor();
    await de.page.getByRole('button', { name: 'Verify now' }).click();
    await de.page.getByRole('alert').filter({ hasText: 'Verification failed:' }).waitFor();
    expect(await de.problems()).toEqual([]);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createMailer } from '../src/mail/mailer.js';
import { renderMail, type MailTemplate } from '../src/mail/templates.js';
import { readOutbox, silentLog } from './helpers.js';

/**
 * The mails of the secure exchange (S4.2: German and English): every transfer template renders in both
 * languages, each text entirely in its language, and survives the trip through the .eml outbox. That a
 * recipient with an English account gets the English mail is tested in test/transfers.test.ts.
 */
describe('transfer mails in German and English', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-transfer-mails-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const link = 'https://tresor.example.test/app/r/1b4e28ba-2d11-4b2a-9d0e-0c6a6f6b8a11#s=AAAA';
  const expiresAt = '2026-11-30T08:00:00.000Z';

  /** Each template with the words that must (and must not) appear in each language. */
  const cases: { name: string; template: MailTemplate; de: RegExp[]; en: RegExp[] }[] = [
    {
      name: 'notification, level 1',
      template: { kind: 'transfer-notification', link, sender: 'anna@kanzlei.test', organisation: 'Kanzlei Süd', subject: 'Lohnabrechnung', level: 1, files: 2, expiresAt },
      de: [/hat Ihnen 2 Datei\(en\) über Tresor geschickt, Sicherheitsstufe 1/, /geben Sie Ihre E-Mail-Adresse ein/, /Verfügbar bis 30\. November 2026/, /^Kanzlei Süd: Lohnabrechnung \(Tresor\)$/],
      en: [/sent you 2 file\(s\) through Tresor, security level 1/, /enter the e-mail address this message was sent to/, /Available until 30 November 2026/, /^Kanzlei Süd: Lohnabrechnung \(Tresor\)$/],
    },
    {
      name: 'notification, level 2',
      template: { kind: 'transfer-notification', link, sender: 'anna@kanzlei.test', organisation: 'Kanzlei Süd', subject: 'Vertrag', level: 2, files: 1, expiresAt },
      de: [/kostenloses Gastkonto/, /Sicherheitsstufe 2/],
      en: [/create a free guest account/, /security level 2/],
    },
    {
      name: 'notification, level 3 (no subject in the mail)',
      template: { kind: 'transfer-notification', link, sender: 'anna@kanzlei.test', organisation: 'Kanzlei Süd', subject: 'Geheimer Befund', level: 3, files: 1, expiresAt },
      de: [/^Kanzlei Süd: vertrauliche Dateien \(Tresor\)$/, /Ende-zu-Ende-verschlüsselt/, /SecuPass-Schlüssel/],
      en: [/^Kanzlei Süd: confidential files \(Tresor\)$/, /end-to-end encrypted/, /SecuPass key/],
    },
    {
      name: 'file request',
      template: { kind: 'file-request', link, requester: 'anna@kanzlei.test', organisation: 'Kanzlei Süd', level: 3, expiresAt },
      de: [/Bitte senden Sie uns Ihre Unterlagen/, /bittet Sie, Dateien sicher über Tresor zu senden \(Sicherheitsstufe 3\)/, /Der Link gilt bis 30\. November 2026/],
      en: [/please send us your documents/, /asks you to send files securely through Tresor \(security level 3\)/, /The link works until 30 November 2026/],
    },
    {
      name: 'downloaded (to the sender)',
      template: { kind: 'transfer-downloaded', subject: 'Lohnabrechnung', recipient: 'mandant@example.org', time: expiresAt },
      de: [/„Lohnabrechnung“ wurde heruntergeladen/, /am 30\. November 2026 um 08:00 UTC heruntergeladen/],
      en: [/"Lohnabrechnung" was downloaded/, /downloaded the files of your transfer "Lohnabrechnung" at 30 November 2026 at 08:00 UTC/],
    },
    {
      name: 'key pending (to the sender)',
      template: { kind: 'transfer-key-pending', subject: 'Befund', recipient: 'gast@example.org', fingerprint: 'ab12-cd34' },
      de: [/neuer Schlüssel von gast@example\.org wartet auf Ihre Freigabe/, /Fingerabdruck: ab12-cd34/, /unter „Übertragungen“ frei/],
      en: [/a new key of gast@example\.org awaits your approval/, /Fingerprint: ab12-cd34/, /approve it in Tresor under "Transfers"/],
    },
    {
      name: 'key approved (to the recipient)',
      template: { kind: 'transfer-key-approved', subject: 'Befund', sender: 'anna@kanzlei.test' },
      de: [/^Tresor: Ihre Dateien lassen sich jetzt öffnen$/, /anna@kanzlei\.test hat Ihren SecuPass-Schlüssel freigegeben/],
      en: [/^Tresor: your files can be opened now$/, /anna@kanzlei\.test approved your SecuPass key/],
    },
  ];
  /** Words that give German away in an English mail, and English in a German one. */
  const GERMAN = /\b(Sie|Ihre?n?|Datei|Dateien|über|bis|wurde|hat)\b|[äöüß]/u;
  const ENGLISH = /\b(you|your|the|files?|until|was|has)\b/u;

  for (const c of cases) {
    it(`${c.name}: German and English`, () => {
      const de = renderMail(c.template, 'de');
      const en = renderMail(c.template, 'en');
      for (const pattern of c.de) expect(pattern.test(de.subject) || new RegExp(pattern.source, 'mu').test(de.text), `${pattern} in the German mail`).toBe(true);
      for (const pattern of c.en) expect(pattern.test(en.subject) || new RegExp(pattern.source, 'mu').test(en.text), `${pattern} in the English mail`).toBe(true);
      // Apart from names, addresses and links, each mail is in one language only.
      const strip = (s: string) => s.replace(/\S+@\S+|https:\/\/\S+|Kanzlei Süd|Lohnabrechnung|Vertrag|Geheimer Befund|Befund|SecuPass/g, '');
      expect(strip(en.subject + '\n' + en.text)).not.toMatch(GERMAN);
      expect(strip(de.subject + '\n' + de.text)).not.toMatch(ENGLISH);
    });
  }

  it('both languages arrive intact through the .eml outbox (umlauts, quotes, the link)', async () => {
    const mailer = createMailer({ transport: 'outbox', outbox_dir: dir, smtp_url: '', smtp_ca_file: '', from: 'Tresor <tresor@example.test>', language: 'de' }, silentLog);
    for (const c of cases) {
      for (const language of ['de', 'en'] as const) {
        const rendered = renderMail(c.template, language);
        await mailer.send({ to: `${language}@example.test`, ...rendered });
      }
    }
    const mails = readOutbox(dir);
    expect(mails).toHaveLength(cases.length * 2);
    for (const [i, c] of cases.entries()) {
      for (const [j, language] of (['de', 'en'] as const).entries()) {
        const mail = mails[i * 2 + j]!;
        const rendered = renderMail(c.template, language);
        expect(mail.to).toBe(`${language}@example.test`);
        expect(mail.subject).toBe(rendered.subject);
        expect(mail.text.replace(/\r\n/g, '\n').trimEnd()).toBe(rendered.text);
      }
    }
  });
});

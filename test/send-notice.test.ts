import { describe, expect, it } from 'vitest';

// The web app's modules are typed with the DOM (web/tsconfig.json): loaded here without their types.
type Translate = (language: 'de' | 'en', key: string, vars?: Record<string, string | number>) => string;
type Notice = (t: (key: string, vars?: Record<string, string | number>) => string, answer: { mailsQueued?: number; mailsRejected?: number; mailsFailed?: number }, count: number, pendingKeys: number) => string;
const { translate } = (await import('../web/src/i18n.js' as string)) as { translate: Translate };
type Notified = (t: (key: string, vars?: Record<string, string | number>) => string, answer: { mailsQueued?: number; mailsRejected?: number; mailsFailed?: number }, email: string) => string;
const { sentNotice, notifiedNotice } = (await import('../web/src/send-notice.js' as string)) as { sentNotice: Notice; notifiedNotice: Notified };
const inLanguage = (language: 'de' | 'en') => (key: string, vars?: Record<string, string | number>) => translate(language, key, vars);

/** The sender's notice after "send" names every notification that did not go out at once, in both languages. */
describe('the notice after a send', () => {
  it('says only "sent" when every mail went', () => {
    expect(sentNotice(inLanguage('en'), {}, 2, 0)).toBe('Sent to 2 recipient(s).');
  });
  it('adds keys still to come and queued, refused and failed notifications (en, de)', () => {
    const answer = { mailsQueued: 1, mailsRejected: 2, mailsFailed: 3 };
    expect(sentNotice(inLanguage('en'), answer, 6, 1)).toBe(
      'Sent to 6 recipient(s). 1 recipient(s) have no SecuPass key yet; you approve it here once they have made it. 1 notification(s) wait in the mail queue and are retried. The mail server refused 2 address(es) for good: those recipients got no link. 3 notification(s) could not be sent (a fault of this server, noted in the ledger): send those recipients the link again.',
    );
    const de = sentNotice(inLanguage('de'), answer, 6, 0);
    expect(de).toContain('3 Benachrichtigung(en) konnten nicht versandt werden');
    expect(de).toContain('2 Adresse(n) hat der Mailserver endgültig abgelehnt');
    expect(de).toContain('1 Benachrichtigung(en) warten in der Mail-Warteschlange');
  });
});

/** The notice after "send link again": the new link, or why its mail did not go — the same sentences the CLI prints. */
describe('the notice after sending a link again', () => {
  it('names the new link, and a mail that waits, was refused or failed (en, de)', () => {
    expect(notifiedNotice(inLanguage('en'), {}, 'erika@example.org')).toBe('A new link was sent to erika@example.org; the earlier link no longer opens.');
    expect(notifiedNotice(inLanguage('en'), { mailsQueued: 1 }, 'erika@example.org')).toBe(
      'A new link was sent to erika@example.org; the earlier link no longer opens. 1 notification(s) wait in the mail queue and are retried.',
    );
    expect(notifiedNotice(inLanguage('en'), { mailsRejected: 1 }, 'erika@example.org')).toBe('The mail server refused 1 address(es) for good: those recipients got no link.');
    expect(notifiedNotice(inLanguage('de'), {}, 'erika@example.org')).toBe('erika@example.org wurde ein neuer Link gesendet; der frühere Link öffnet nicht mehr.');
    expect(notifiedNotice(inLanguage('de'), { mailsFailed: 1 }, 'erika@example.org')).toContain('Senden Sie diesen Empfängern den Link erneut');
  });
});

describe('placeholders', () => {
  it('fills only the values given, never inherited ones', async () => {
    const { fillIn } = await import('../src/transfers/mail-notices.js');
    expect(fillIn('{count} for {email}; {constructor} {toString}', { count: 2, email: 'a@example.org' })).toBe('2 for a@example.org; {constructor} {toString}');
  });
});

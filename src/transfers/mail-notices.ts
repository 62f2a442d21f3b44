/**
 * What a sender is told about notifications that did not go out at once, after "send" and after "send the
 * link again". One text for both clients: the web app puts these keys into its German and English
 * dictionaries, the CLI prints the English ones. Pure (no DOM, no Node): the web app bundles it.
 */
export const MAIL_NOTICE_TEXTS = {
  de: {
    'transfers.mailsQueued': '{count} Benachrichtigung(en) warten in der Mail-Warteschlange und werden erneut versucht.',
    'transfers.mailsRejected': '{count} Adresse(n) hat der Mailserver endgültig abgelehnt: Diese Empfänger haben keinen Link erhalten.',
    'transfers.mailsFailed': '{count} Benachrichtigung(en) konnten nicht versandt werden (ein Fehler dieses Servers, im Protokoll vermerkt): Senden Sie diesen Empfängern den Link erneut.',
    'transfers.notifiedAgain': '{email} wurde ein neuer Link gesendet; der frühere Link öffnet nicht mehr.',
  },
  en: {
    'transfers.mailsQueued': '{count} notification(s) wait in the mail queue and are retried.',
    'transfers.mailsRejected': 'The mail server refused {count} address(es) for good: those recipients got no link.',
    'transfers.mailsFailed': '{count} notification(s) could not be sent (a fault of this server, noted in the ledger): send those recipients the link again.',
    'transfers.notifiedAgain': 'A new link was sent to {email}; the earlier link no longer opens.',
  },
} as const;

export type MailNoticeKey = keyof (typeof MAIL_NOTICE_TEXTS)['en'];

/** How many notifications the relay did not take at once (only non-zero counts are present in an answer). */
export interface MailCounts {
  mailsQueued?: number;
  mailsRejected?: number;
  mailsFailed?: number;
}

/** The sentences for the counts of an answer, in order: queued, refused, failed; none when every mail went. */
export function mailNotices(text: (key: MailNoticeKey, vars: Record<string, string | number>) => string, counts: MailCounts): string[] {
  const parts: string[] = [];
  for (const [key, n] of [['transfers.mailsQueued', counts.mailsQueued], ['transfers.mailsRejected', counts.mailsRejected], ['transfers.mailsFailed', counts.mailsFailed]] as const) if (n) parts.push(text(key, { count: n }));
  return parts;
}

/**
 * After "send the link again": that a new link went out (unless its mail was refused or not handed over),
 * then what became of the mail.
 */
export function notifiedAgainNotices(text: (key: MailNoticeKey, vars: Record<string, string | number>) => string, counts: MailCounts, email: string): string[] {
  return [...(counts.mailsFailed || counts.mailsRejected ? [] : [text('transfers.notifiedAgain', { email })]), ...mailNotices(text, counts)];
}

/** A text with its `{name}` placeholders filled in (the web app's `translate` does the same for its dictionaries). */
export const fillIn = (text: string, vars: Record<string, string | number>) => text.replace(/\{(\w+)\}/g, (whole, name: string) => (Object.hasOwn(vars, name) ? String(vars[name]) : whole));

/** The English texts, for the CLI. */
export const inEnglish = (key: MailNoticeKey, vars: Record<string, string | number>) => fillIn(MAIL_NOTICE_TEXTS.en[key], vars);

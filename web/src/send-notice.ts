import { mailNotices, notifiedAgainNotices, type MailCounts } from '../../src/transfers/mail-notices.js';
import type { TextKey } from './i18n.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;

/** What the server says about a send's notifications (POST …/send), as the sender reads it after "sent". */
export type SendAnswer = MailCounts;

/** The notice after a send: to how many, whose key is still to come, and any notification that did not go out at once. */
export function sentNotice(t: T, answer: SendAnswer, count: number, pendingKeys: number): string {
  const parts = [t('transfers.sent', { count })];
  if (pendingKeys > 0) parts.push(t('transfers.sentPending', { count: pendingKeys }));
  return [...parts, ...mailNotices(t, answer)].join(' ');
}

/** The notice after "send link again" (POST …/recipients/{rid}/notify): the new link, and whether its mail went. */
export function notifiedNotice(t: T, answer: MailCounts, email: string): string {
  return notifiedAgainNotices(t, answer, email).join(' ');
}

import type { TextKey } from './i18n.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;

/** What the server says about a send's notifications (POST …/send), as the sender reads it after "sent". */
export interface SendAnswer {
  mailsQueued?: number;
  mailsRejected?: number;
  mailsFailed?: number;
}

/** The notice after a send: to how many, whose key is still to come, and any notification that did not go out at once. */
export function sentNotice(t: T, answer: SendAnswer, count: number, pendingKeys: number): string {
  const parts = [t('transfers.sent', { count })];
  if (pendingKeys > 0) parts.push(t('transfers.sentPending', { count: pendingKeys }));
  for (const [key, n] of [['transfers.mailsQueued', answer.mailsQueued], ['transfers.mailsRejected', answer.mailsRejected], ['transfers.mailsFailed', answer.mailsFailed]] as const) if (n) parts.push(t(key, { count: n }));
  return parts.join(' ');
}

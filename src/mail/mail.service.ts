import type { Logger } from 'pino';
import { authorize, type Actor } from '../access/index.js';
import type { CipherService } from '../crypto/cipher-service.js';
import type { Ledger } from '../ledger/index.js';
import type { MailQueueRepo } from './mail.repo.js';
import type { MailQueueTable } from './mail.migrations.js';
import type { MailOutcome, Mailer, MailTransport, OutgoingMail } from './mailer.js';

/** First retry a minute after a failure, doubling up to an hour between attempts. */
export const FIRST_RETRY_MS = 60_000;
export const MAX_RETRY_MS = 60 * 60_000;
/** A message the relay has not taken within this time is given up (and `mail.failed` written to the ledger). */
export const GIVE_UP_AFTER_MS = 24 * 60 * 60_000;
/** While one node delivers a row, others leave it alone this long (longer than the transport's timeouts). */
const LEASE_MS = 5 * 60_000;
/** How long a caller waits for the first attempt before answering "queued" (the attempt goes on). */
const FIRST_ATTEMPT_WAIT_MS = 10_000;
const BATCH = 100;

export interface QueuedMailView {
  id: string;
  kind: string;
  attempts: number;
  nextAttemptAt: string;
  createdAt: string;
  lastErrorCode: string | null;
}

export interface MailService extends Mailer {
  /** Delivers every due message once (the scheduler job `mail-queue`). */
  deliverDue(): Promise<{ sent: number; queued: number; failed: number }>;
  /** The queue for the operator: ids, attempts and error codes, never addresses. */
  queue(by: Actor): Promise<QueuedMailView[]>;
  /** Makes every message waiting for its backoff due now and delivers what is due (`tresor mail retry`). */
  retryAll(by: Actor): Promise<{ sent: number; queued: number; failed: number }>;
  /** Resolves when first attempts still running in the background have finished. */
  settled(): Promise<void>;
}

/** Delay before the attempt after `attempts` failed ones: 1 min, 2, 4 … capped at 1 h. */
export const retryDelayMs = (attempts: number): number => Math.min(FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1), MAX_RETRY_MS);

/**
 * A stable code for a failed delivery. Relay replies and error messages may quote the recipient, so only
 * the transport's error code and the SMTP reply code are kept.
 */
export function mailErrorCode(error: unknown): string {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; responseCode?: unknown };
  const code = typeof e.code === 'string' && /^[A-Z][A-Z0-9_]{0,30}$/.test(e.code) ? e.code : 'UNKNOWN';
  return typeof e.responseCode === 'number' && Number.isInteger(e.responseCode) && e.responseCode >= 200 && e.responseCode < 600 ? `${code}_${e.responseCode}` : code;
}

const sealContext = (id: string) => `mail-queue|${id}`;

/**
 * A refusal of the recipient itself (RFC 5321 550, 551, 553, 554 to RCPT TO: no such mailbox, not local, name not allowed, refused; 552, a full
 * mailbox, may clear) is
 * final; everything else — connection, TLS, login, 4xx, a 5xx to the message — may pass once the relay or its
 * configuration is fixed, and is retried.
 */
export function isPermanentRejection(code: string): boolean {
  return /^EENVELOPE_55[0134]$/.test(code);
}

/**
 * Outbound mail that never fails the action and is not lost (README "Mail"). With the SMTP transport each
 * message is first stored sealed in `mail_queue`, then tried at once; when the relay takes it the row goes,
 * otherwise it stays with a backoff and the scheduler tries again until the relay takes it or 24 hours
 * have passed: then the row goes and `mail.failed` (template and error code, no address) is written to
 * the platform ledger. The outbox transport writes its file at once: nothing to queue.
 */
export function createMailService(deps: {
  transport: MailTransport;
  /** True for the SMTP transport: messages go through the durable queue. */
  durable: boolean;
  repo: MailQueueRepo;
  masterKey: Pick<CipherService, 'seal' | 'open'>;
  ledger: Pick<Ledger, 'append'>;
  clock: { now(): Date };
  newId: () => string;
  /** Logs carry the message id, template and error code only. */
  log: Pick<Logger, 'info' | 'warn'>;
  firstAttemptWaitMs?: number;
}): MailService {
  const { repo, clock } = deps;
  const at = (ms: number) => new Date(clock.now().getTime() + ms).toISOString();
  const inFlight = new Set<Promise<unknown>>();

  const giveUp = async (row: Pick<MailQueueTable, 'id' | 'kind' | 'attempts'>, code: string) => {
    await repo.remove(row.id);
    deps.log.warn({ mailId: row.id, mail: row.kind, code, attempts: row.attempts }, isPermanentRejection(code) ? 'mail given up: the relay refused the recipient for good' : 'mail given up: the relay did not take it within 24 hours');
    await deps.ledger.append({
      actor: { tier: 'system', role: 'mailer', id: 'mail-queue' },
      action: 'mail.failed',
      resource: { type: 'mail', id: row.id },
      outcome: 'failure',
      details: { kind: row.kind, code, attempts: row.attempts },
    });
  };

  /** One attempt at a row this node holds; afterwards the row is gone (sent, given up) or waits for its backoff. */
  const attempt = async (row: MailQueueTable, mail: OutgoingMail): Promise<MailOutcome | 'failed'> => {
    try {
      await deps.transport.send(mail);
    } catch (error) {
      const code = mailErrorCode(error);
      const attempts = row.attempts + 1;
      if (isPermanentRejection(code)) {
        // The recipient's mailbox does not exist or refuses mail: asking again for a day changes nothing.
        await giveUp({ ...row, attempts }, code);
        return 'rejected';
      }
      if (clock.now().getTime() - new Date(row.created_at).getTime() >= GIVE_UP_AFTER_MS) {
        await giveUp({ ...row, attempts }, code);
        return 'failed';
      }
      await repo.failed(row.id, { attempts, next_attempt_at: at(retryDelayMs(attempts)), last_error_code: code });
      deps.log.warn({ mailId: row.id, mail: row.kind, code, attempts }, 'mail not accepted by the relay; queued for another attempt');
      return 'queued';
    }
    await repo.remove(row.id);
    return 'sent';
  };

  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };

  const deliverDue = async () => {
    const counts = { sent: 0, queued: 0, failed: 0 };
    const seen = new Set<string>();
    for (;;) {
      const rows = (await repo.due(clock.now().toISOString(), BATCH)).filter((r) => !seen.has(r.id));
      if (rows.length === 0) return counts;
      for (const row of rows) {
        seen.add(row.id);
        if (!(await repo.claim(row.id, row.next_attempt_at, at(LEASE_MS)))) continue; // another node has it
        let mail: OutgoingMail;
        try {
          mail = JSON.parse((await deps.masterKey.open(row.sealed_message, sealContext(row.id))).toString('utf8')) as OutgoingMail;
        } catch {
          // Sealed under a master key version that is gone, or changed: it can never be sent.
          await giveUp({ ...row, attempts: row.attempts }, 'UNREADABLE');
          counts.failed++;
          continue;
        }
        const outcome = await track(attempt(row, mail));
        counts[outcome === 'rejected' ? 'failed' : outcome]++; // a refused recipient is given up, like an expired one
      }
    }
  };

  return {
    async send({ kind, ...mail }) {
      if (!deps.durable) {
        await deps.transport.send(mail);
        return 'sent';
      }
      const now = clock.now().toISOString();
      const row: MailQueueTable = {
        id: deps.newId(),
        kind,
        sealed_message: '',
        attempts: 0,
        // Leased by this node for its first attempt; should this process die, the scheduler takes it over.
        next_attempt_at: at(LEASE_MS),
        created_at: now,
        last_error_code: null,
      };
      row.sealed_message = await deps.masterKey.seal(Buffer.from(JSON.stringify(mail), 'utf8'), sealContext(row.id));
      await repo.insert(row);
      const first = track(
        attempt(row, mail).catch((error: unknown) => {
          // The database failed after the attempt: the row stays and the scheduler takes it up after its lease.
          deps.log.warn({ mailId: row.id, mail: kind, code: mailErrorCode(error) }, 'mail queue could not record an attempt');
          return 'queued' as const;
        }),
      );
      let timer: NodeJS.Timeout | undefined;
      const waited = await Promise.race([first, new Promise<'queued'>((resolve) => (timer = setTimeout(() => resolve('queued'), deps.firstAttemptWaitMs ?? FIRST_ATTEMPT_WAIT_MS)))]);
      clearTimeout(timer);
      return waited === 'sent' || waited === 'rejected' ? waited : 'queued';
    },
    deliverDue,
    async queue(by) {
      authorize(by, 'mail.queue.read', { type: 'platform' });
      return (await repo.list()).map((r) => ({ id: r.id, kind: r.kind, attempts: Number(r.attempts), nextAttemptAt: r.next_attempt_at, createdAt: r.created_at, lastErrorCode: r.last_error_code }));
    },
    async retryAll(by) {
      authorize(by, 'mail.queue.retry', { type: 'platform' });
      await repo.makeDue(clock.now().toISOString());
      return deliverDue();
    },
    async settled() {
      await Promise.allSettled([...inFlight]);
    },
    close() {
      deps.transport.close();
    },
  };
}

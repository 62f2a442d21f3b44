import type { Logger } from 'pino';
import type { Core } from '../core.js';
import type { ScheduledJob } from './scheduler.js';

/**
 * Expired and withdrawn transfers: blobs and key material go (docs/transfers.md, S4 "expiry and deletion"),
 * and expired "request files" links lose their keys. A function of its own so that a test runs exactly
 * what the scheduler of `tresor serve` runs.
 */
export function transferExpiryJob(core: Pick<Core, 'storage' | 'transfers'>, log: Pick<Logger, 'info' | 'warn'>): ScheduledJob {
  return {
    name: 'transfer-expiry',
    intervalMs: 60_000,
    run: async () => {
      const tenants = await core.storage.control.selectFrom('tenants').select('id').execute();
      const purged = await core.transfers.expire(
        tenants.map((t) => t.id),
        // The tenant id and the kind of error only: a message may quote stored values.
        (tenantId, error) => log.warn({ tenantId, error: error instanceof Error ? error.name : typeof error, code: (error as { code?: unknown } | null)?.code }, 'transfer expiry failed for one tenant; the others went on, and it is tried again at the next run'),
      );
      if (purged > 0) log.info({ purged }, 'transfers expired');
    },
  };
}

/**
 * The outbound mail queue (src/mail/mail.service.ts): every due message is tried once more; after 24 hours
 * one is given up and `mail.failed` written to the platform ledger. Counts only in the log, never addresses.
 */
export function mailQueueJob(core: Pick<Core, 'mail'>, log: Pick<Logger, 'info' | 'warn'>): ScheduledJob {
  return {
    name: 'mail-queue',
    intervalMs: 60_000,
    run: async () => {
      const { sent, queued, failed } = await core.mail.deliverDue();
      if (sent + queued + failed > 0) log.info({ sent, queued, failed }, 'mail queue delivered');
    },
  };
}

import type { JsonValue } from './entry.js';
import type { Ledger } from './ledger.service.js';

/** Billing events are kept ten years (§ 257 HGB, § 147 AO), unlike the 90-day default for payloads. */
export const BILLING_RETENTION_DAYS = 3650;

export interface BillingTotals {
  apiCalls: number;
  bytesTransferred: number;
  recordsStored: number;
}

/**
 * Counts billable use per tenant in memory and writes it to the tenant's ledger as `billing.usage`
 * events when flushed (by the scheduler, and when the server stops):
 * - `apiCalls` and `bytesTransferred` are sums since the last flush (a delta per event);
 * - `recordsStored` is a count taken at the flush (a snapshot per event): for every tenant that was
 *   active since the last flush, and for every tenant once a UTC day, so that a quiet month still shows
 *   what it stored.
 */
export function createBillingMeter(deps: {
  tenantLedger(tenantId: string): Promise<Pick<Ledger, 'append'>>;
  /** Records the tenant keeps now (all collections); needs no key: rows are counted, not read. */
  recordsStored?(tenantId: string): Promise<number>;
  /** Every tenant there is, for the daily snapshot of records stored. */
  tenantIds?(): Promise<string[]>;
  clock?: { now(): Date };
}) {
  let pending = new Map<string, Omit<BillingTotals, 'recordsStored'>>();
  const lastSnapshotDay = new Map<string, string>();
  // One flush at a time: a flush that starts while another still writes waits for it, so when a flush
  // returns, everything counted before it was called is in the ledger (the scheduler and a stop, or a
  // caller that reads the report next, never see a half-written batch of the other).
  let running: Promise<unknown> = Promise.resolve();
  return {
    count(tenantId: string, usage: Partial<Omit<BillingTotals, 'recordsStored'>>) {
      const totals = pending.get(tenantId) ?? { apiCalls: 0, bytesTransferred: 0 };
      totals.apiCalls += usage.apiCalls ?? 0;
      totals.bytesTransferred += usage.bytesTransferred ?? 0;
      pending.set(tenantId, totals);
    },
    /** Writes one `billing.usage` event per tenant with something to report; returns how many were written. */
    flush(): Promise<number> {
      const next = running.catch(() => undefined).then(() => writeBatch());
      running = next;
      return next;
    },
  };

  async function writeBatch(): Promise<number> {
      const batch = pending;
      pending = new Map();
      const today = (deps.clock?.now() ?? new Date()).toISOString().slice(0, 10);
      const tenants = new Set(batch.keys());
      if (deps.recordsStored && deps.tenantIds) {
        for (const tenantId of await deps.tenantIds().catch(() => [] as string[])) if (lastSnapshotDay.get(tenantId) !== today) tenants.add(tenantId);
      }
      let written = 0;
      for (const tenantId of tenants) {
        const usage = batch.get(tenantId) ?? { apiCalls: 0, bytesTransferred: 0 };
        const ledger = await deps.tenantLedger(tenantId).catch(() => undefined); // tenant deleted meanwhile
        if (!ledger) continue;
        const recordsStored = deps.recordsStored ? await deps.recordsStored(tenantId).catch(() => undefined) : undefined;
        await ledger.append({
          actor: { tier: 'system', role: 'billing', id: 'billing' },
          action: 'billing.usage',
          resource: { type: 'tenant', id: tenantId },
          outcome: 'success',
          details: { ...usage, ...(recordsStored !== undefined ? { recordsStored } : {}) },
          retentionDays: BILLING_RETENTION_DAYS,
        });
        if (recordsStored !== undefined) lastSnapshotDay.set(tenantId, today);
        written++;
      }
      return written;
  }
}

/**
 * Sums the billing events of one month (`YYYY-MM`, UTC) in a tenant's ledger: API calls and bytes
 * transferred are added up; records stored is the highest count seen in the month (the snapshots are
 * counts, not changes).
 */
export async function billingReport(ledger: Pick<Ledger, 'query'>, month: string) {
  const match = /^(\d{4})-(\d{2})$/.exec(month);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 12) throw new Error(`month '${month}' is not YYYY-MM`);
  const from = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1));
  const to = new Date(Date.UTC(Number(match[1]), Number(match[2]), 1));
  const entries = await ledger.query({ from: from.toISOString(), to: to.toISOString(), action: 'billing.', limit: 1_000_000 });
  const totals: BillingTotals = { apiCalls: 0, bytesTransferred: 0, recordsStored: 0 };
  let withoutPayload = 0;
  for (const entry of entries) {
    const details = (entry.payload as { details?: Record<string, JsonValue> } | null)?.details;
    if (!details) {
      withoutPayload++;
      continue;
    }
    const number = (key: keyof BillingTotals) => {
      const value = details[key];
      return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
    };
    totals.apiCalls += number('apiCalls');
    totals.bytesTransferred += number('bytesTransferred');
    totals.recordsStored = Math.max(totals.recordsStored, number('recordsStored'));
  }
  return { month, from: from.toISOString(), to: to.toISOString(), events: entries.length, eventsWithoutPayload: withoutPayload, totals };
}

export { toCsv } from '../shared/csv.js';

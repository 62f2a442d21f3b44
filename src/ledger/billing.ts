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
 * Counts billable API calls per tenant in memory and writes them to the tenant's ledger as
 * `billing.usage` events when flushed (by the scheduler, and when the server stops).
 */
export function createBillingMeter(deps: { tenantLedger(tenantId: string): Promise<Pick<Ledger, 'append'>> }) {
  let pending = new Map<string, BillingTotals>();
  return {
    count(tenantId: string, usage: Partial<BillingTotals>) {
      const totals = pending.get(tenantId) ?? { apiCalls: 0, bytesTransferred: 0, recordsStored: 0 };
      totals.apiCalls += usage.apiCalls ?? 0;
      totals.bytesTransferred += usage.bytesTransferred ?? 0;
      totals.recordsStored += usage.recordsStored ?? 0;
      pending.set(tenantId, totals);
    },
    async flush(): Promise<number> {
      const batch = pending;
      pending = new Map();
      for (const [tenantId, totals] of batch) {
        const ledger = await deps.tenantLedger(tenantId).catch(() => undefined); // tenant deleted meanwhile
        await ledger?.append({
          actor: { tier: 'system', role: 'billing', id: 'billing' },
          action: 'billing.usage',
          resource: { type: 'tenant', id: tenantId },
          outcome: 'success',
          details: { ...totals },
          retentionDays: BILLING_RETENTION_DAYS,
        });
      }
      return batch.size;
    },
  };
}

/** Sums the billing events of one month (`YYYY-MM`, UTC) in a tenant's ledger. */
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
    for (const key of Object.keys(totals) as (keyof BillingTotals)[]) {
      const value = details[key];
      if (typeof value === 'number' && Number.isFinite(value)) totals[key] += value;
    }
  }
  return { month, from: from.toISOString(), to: to.toISOString(), events: entries.length, eventsWithoutPayload: withoutPayload, totals };
}

export { toCsv } from '../shared/csv.js';

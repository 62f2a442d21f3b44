import { describe, expect, it } from 'vitest';
import { createBillingMeter } from './billing.js';

describe('billing meter', () => {
  it('lets a flush return only when everything counted before it is written, also while another flush still writes', async () => {
    const written: { apiCalls: number }[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let first = true;
    const meter = createBillingMeter({
      tenantLedger: async () => ({
        append: async (events) => {
          const event = events as { details?: unknown };
          if (first) {
            first = false;
            await gate; // the scheduler's flush is slow to write
          }
          written.push(event.details as { apiCalls: number });
          return [];
        },
      }),
    });
    meter.count('t1', { apiCalls: 5 });
    const scheduled = meter.flush();
    await new Promise((resolve) => setTimeout(resolve, 0)); // it has taken its batch and is writing
    meter.count('t1', { apiCalls: 2 });
    let done = false;
    const mine = meter.flush().then((n) => ((done = true), n));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(done).toBe(false); // waits for the slower flush before it
    release();
    expect(await mine).toBe(1);
    expect(await scheduled).toBe(1);
    expect(written.map((d) => d.apiCalls)).toEqual([5, 2]);
  });

  it('keeps flushing after a flush failed', async () => {
    let fail = true;
    const seen: number[] = [];
    const meter = createBillingMeter({
      tenantLedger: async () => ({
        append: async (events) => {
          const event = events as { details?: unknown };
          if (fail) {
            fail = false;
            throw new Error('database away');
          }
          seen.push((event.details as { apiCalls: number }).apiCalls);
          return [];
        },
      }),
    });
    meter.count('t1', { apiCalls: 1 });
    await expect(meter.flush()).rejects.toThrow('database away');
    meter.count('t1', { apiCalls: 3 });
    expect(await meter.flush()).toBe(1);
    expect(seen).toEqual([3]);
  });
});

import { describe, expect, it } from 'vitest';
import { isAllowed, type Actor } from '../access/index.js';
import { isPermanentRejection, mailErrorCode, retryDelayMs } from './mail.service.js';

describe('outbound mail queue rules', () => {
  it('backs off 1, 2, 4 … minutes, never more than an hour', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map((n) => retryDelayMs(n) / 60_000)).toEqual([1, 2, 4, 8, 16, 32, 60, 60, 60]);
  });

  it('keeps an error code and the SMTP reply code, never a message (relay replies quote addresses)', () => {
    expect(mailErrorCode(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:25'), { code: 'ECONNECTION' }))).toBe('ECONNECTION');
    expect(mailErrorCode(Object.assign(new Error('550 5.1.1 <anna@example.org>: Recipient address rejected'), { code: 'EENVELOPE', responseCode: 550 }))).toBe('EENVELOPE_550');
    expect(mailErrorCode({ code: 'anna@example.org' })).toBe('UNKNOWN');
    expect(mailErrorCode(new Error('anna@example.org'))).toBe('UNKNOWN');
    expect(mailErrorCode(undefined)).toBe('UNKNOWN');
  });

  it('gives up at once only when the relay refuses the recipient for good (55x to RCPT TO)', () => {
    for (const code of ['EENVELOPE_550', 'EENVELOPE_551', 'EENVELOPE_553', 'EENVELOPE_554']) expect(isPermanentRejection(code), code).toBe(true);
    // A full mailbox, a relay that is down, a bad login or a refused message may pass later: retried.
    for (const code of ['EENVELOPE_450', 'EENVELOPE_452', 'EENVELOPE_552', 'ECONNECTION', 'EAUTH_535', 'EMESSAGE_554', 'ETLS', 'UNKNOWN']) expect(isPermanentRejection(code), code).toBe(false);
  });

  it('shows the queue to the platform owner only (deny by default)', () => {
    const platform = { type: 'platform' } as const;
    const allowed: Actor[] = [{ kind: 'operator', accountId: 'o' }, { kind: 'system', name: 'cli' }];
    const refused: Actor[] = [
      { kind: 'reseller', accountId: 'r', resellerId: 'r1' },
      { kind: 'installer', accountId: 'i', resellerId: 'r1' },
      { kind: 'tenant', accountId: 'a', tenantId: 't', role: 'admin' },
      { kind: 'tenant', accountId: 'd', tenantId: 't', role: 'dpo' },
      { kind: 'external', accountId: 'x', tenantId: 't', role: 'technician' },
      { kind: 'guest', accountId: 'g', tenantId: 't' },
    ];
    for (const action of ['mail.queue.read', 'mail.queue.retry'] as const) {
      for (const actor of allowed) expect(isAllowed(actor, action, platform)).toBe(true);
      for (const actor of refused) expect(isAllowed(actor, action, platform)).toBe(false);
      expect(isAllowed({ kind: 'operator', accountId: 'o' }, action, { type: 'tenant', tenantId: 't', resellerId: null })).toBe(false);
    }
  });
});

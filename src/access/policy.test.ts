import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NotFoundError, ForbiddenError } from '../shared/errors.js';
import { authorize, isAllowed, type Actor, type PlatformAction } from './policy.js';

const actions: PlatformAction[] = [
  'reseller.create', 'reseller.list', 'reseller.read', 'tenant.create', 'tenant.list', 'tenant.read',
  'tenant.suspend', 'tenant.resume', 'tenant.set-licence', 'tenant.delete', 'ledger.read', 'ledger.export',
];

describe('access policy', () => {
  const reseller: Actor = { kind: 'reseller', accountId: 'a1', resellerId: 'r1' };

  it('lets a reseller act only on its own tenants', () => {
    expect(isAllowed(reseller, 'tenant.suspend', { type: 'tenant', tenantId: 't', resellerId: 'r1' })).toBe(true);
    expect(isAllowed(reseller, 'tenant.suspend', { type: 'tenant', tenantId: 't', resellerId: 'r2' })).toBe(false);
    expect(isAllowed(reseller, 'tenant.read', { type: 'tenant', tenantId: 't', resellerId: null })).toBe(false);
  });

  it("lets a reseller read its own tenants' ledgers but not the platform ledger", () => {
    expect(isAllowed(reseller, 'ledger.read', { type: 'tenant', tenantId: 't', resellerId: 'r1' })).toBe(true);
    expect(isAllowed(reseller, 'ledger.read', { type: 'tenant', tenantId: 't', resellerId: 'r2' })).toBe(false);
    expect(isAllowed(reseller, 'ledger.read', { type: 'platform' })).toBe(false);
  });

  it("leaves a tenant ledger's export to the tenant's DPO and the platform ledger's to the operator", () => {
    const tenantLedger = { type: 'tenant', tenantId: 't', resellerId: 'r1' } as const;
    const operator: Actor = { kind: 'operator', accountId: 'o' };
    expect(isAllowed({ kind: 'tenant', accountId: 'd', tenantId: 't', role: 'dpo' }, 'ledger.export', tenantLedger)).toBe(true);
    expect(isAllowed({ kind: 'tenant', accountId: 'd', tenantId: 'u', role: 'dpo' }, 'ledger.export', tenantLedger)).toBe(false);
    for (const role of ['admin', 'member'] as const) expect(isAllowed({ kind: 'tenant', accountId: 'x', tenantId: 't', role }, 'ledger.export', tenantLedger)).toBe(false);
    expect(isAllowed(reseller, 'ledger.export', tenantLedger)).toBe(false);
    expect(isAllowed(operator, 'ledger.export', tenantLedger)).toBe(false);
    expect(isAllowed(operator, 'ledger.export', { type: 'platform' })).toBe(true);
    expect(isAllowed({ kind: 'tenant', accountId: 'd', tenantId: 't', role: 'dpo' }, 'ledger.export', { type: 'platform' })).toBe(false);
  });

  it('never lets a reseller create resellers or list them', () => {
    expect(() => authorize(reseller, 'reseller.create', { type: 'platform' })).toThrow(ForbiddenError);
    expect(isAllowed(reseller, 'reseller.list', { type: 'platform' })).toBe(false);
  });

  it('answers a foreign tenant exactly like a missing one', () => {
    const attempt = () => authorize(reseller, 'tenant.delete', { type: 'tenant', tenantId: 'x', resellerId: 'r2' });
    expect(attempt).toThrow(NotFoundError);
    expect(attempt).toThrow('tenant not found');
  });

  it('refuses every action on any resource owned by another reseller (property)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...actions), fc.uuid(), fc.string({ minLength: 1 }), (action, tenantId, other) => {
        fc.pre(other !== 'r1');
        expect(isAllowed(reseller, action, { type: 'tenant', tenantId, resellerId: other })).toBe(false);
        expect(isAllowed(reseller, action, { type: 'reseller', resellerId: other })).toBe(false);
      }),
    );
  });
});

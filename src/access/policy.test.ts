import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NotFoundError, ForbiddenError } from '../shared/errors.js';
import { ACCOUNT_ROLES, authorize, authorizeData, DATA_ACTIONS, isAllowed, type AccountRole, type Actor, type DataAction, type PlatformAction, type Resource } from './policy.js';

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

describe('the decision table: every role × every action (DESIGN §1, deny by default)', () => {
  const actors: Record<AccountRole, Actor> = {
    operator: { kind: 'operator', accountId: 'op' },
    reseller: { kind: 'reseller', accountId: 're', resellerId: 'r1' },
    installer: { kind: 'installer', accountId: 'in', resellerId: 'r1' },
    admin: { kind: 'tenant', accountId: 'ad', tenantId: 't1', role: 'admin' },
    member: { kind: 'tenant', accountId: 'me', tenantId: 't1', role: 'member' },
    dpo: { kind: 'tenant', accountId: 'dp', tenantId: 't1', role: 'dpo' },
    technician: { kind: 'external', accountId: 'te', tenantId: 't1', role: 'technician' },
    'control-centre': { kind: 'external', accountId: 'cc', tenantId: 't1', role: 'control-centre' },
    authority: { kind: 'external', accountId: 'au', tenantId: 't1', role: 'authority' },
    guest: { kind: 'guest', accountId: 'gu', tenantId: 't1' },
  };
  const tenant1: Resource = { type: 'tenant', tenantId: 't1', resellerId: 'r1' };
  const admins1: Resource = { type: 'accounts', role: 'admin', tenantId: 't1', resellerId: 'r1' };
  const data1: Resource = { type: 'data', tenantId: 't1' };
  const tenantStaff: AccountRole[] = ['admin', 'member', 'dpo'];
  const externals: AccountRole[] = ['technician', 'control-centre', 'authority'];
  /** For each action: the resource within the actor's own reach, and exactly the roles allowed there. */
  const table: [PlatformAction | DataAction, Resource, AccountRole[]][] = [
    ['reseller.create', { type: 'platform' }, ['operator']],
    ['reseller.list', { type: 'platform' }, ['operator']],
    ['reseller.read', { type: 'reseller', resellerId: 'r1' }, ['operator', 'reseller', 'installer']],
    ['tenant.create', { type: 'platform' }, ['operator', 'reseller']],
    ['tenant.list', { type: 'platform' }, ['operator', 'reseller', 'installer']],
    ['tenant.read', tenant1, ['operator', 'reseller', 'installer', ...tenantStaff]],
    ['tenant.suspend', tenant1, ['operator', 'reseller']],
    ['tenant.resume', tenant1, ['operator', 'reseller']],
    ['tenant.set-licence', tenant1, ['operator', 'reseller']],
    ['tenant.delete', tenant1, ['operator', 'reseller']],
    ['ledger.read', tenant1, ['operator', 'reseller', 'dpo']],
    ['account.invite', admins1, ['operator', 'reseller', 'installer', 'admin']],
    ['account.list', admins1, ['operator', 'reseller', 'installer', 'admin']],
    ['account.manage', admins1, ['operator', 'reseller', 'installer', 'admin']],
    ['account.reset-second-factor', admins1, ['operator', 'reseller', 'installer', 'admin']],
    ['policy.read', tenant1, ['operator', 'reseller', 'installer', ...tenantStaff]],
    ['policy.write', tenant1, ['operator', 'reseller', 'installer', 'admin']],
    ['records.write', data1, ['member', 'dpo']],
    ['records.read', data1, ['member', 'dpo']],
    ['records.read-granted', data1, externals],
    ['records.read-all-books', data1, ['dpo']],
    ['privacy.search', data1, ['dpo']],
    ['transfer.send', data1, ['member', 'dpo']],
    ['transfer.manage-any', data1, ['dpo']],
    ['e2e-key.own', data1, [...tenantStaff, ...externals, 'guest']],
    ['grant.create', data1, ['member', 'dpo']],
    ['grant.revoke', data1, ['member', 'dpo']],
    ['grant.list', data1, ['member', 'dpo', ...externals]],
    ['key.activate', data1, ['member', 'dpo']],
    ['key.grant', data1, ['member', 'dpo']],
    ['key.rotate', data1, ['member', 'dpo']],
    ['key.exclude', data1, ['dpo']],
    ['key.recovery-code', data1, ['member', 'dpo']],
    ['index-plan.read', data1, ['admin', 'member', 'dpo']],
    ['index-plan.write', data1, ['member', 'dpo']],
  ];

  it('covers every action', () => {
    expect(table.map(([a]) => a).filter((a) => (DATA_ACTIONS as readonly string[]).includes(a)).sort()).toEqual([...DATA_ACTIONS].sort());
    expect(ACCOUNT_ROLES).toHaveLength(10);
  });

  it.each(table)('%s: exactly the listed roles', (action, resource, allowed) => {
    const verdicts = Object.fromEntries(ACCOUNT_ROLES.map((role) => [role, isAllowed(actors[role], action, resource)]));
    expect(verdicts).toEqual(Object.fromEntries(ACCOUNT_ROLES.map((role) => [role, allowed.includes(role)])));
  });

  it("gives no role any data right in another tenant's data, and no administration right on data", () => {
    for (const role of ACCOUNT_ROLES) {
      for (const action of DATA_ACTIONS) {
        expect(isAllowed(actors[role], action, { type: 'data', tenantId: 't2' }), `${role} ${action}`).toBe(false);
        expect(isAllowed(actors[role], action, tenant1), `${role} ${action} on a tenant`).toBe(false);
      }
      expect(isAllowed(actors[role], 'tenant.read', data1)).toBe(false);
    }
    // The local CLI administers everything but holds no key path to data either.
    for (const action of DATA_ACTIONS) expect(isAllowed({ kind: 'system', name: 'cli' }, action, data1)).toBe(false);
  });

  it('refuses a data action with a message that says who may', () => {
    expect(() => authorizeData(actors.admin, 'records.read', 't1', 'contacts are for the data users of a tenant')).toThrow('contacts are for the data users of a tenant');
    expect(() => authorizeData(actors.member, 'records.read', 't1')).not.toThrow();
  });
});

import { ForbiddenError, NotFoundError } from '../shared/errors.js';

/**
 * The one policy module (DESIGN §1): every route and CLI command asks `authorize` before it acts.
 * Deny by default: an action that is not listed for an actor's kind is refused.
 */
export type TenantRole = 'admin' | 'member' | 'dpo';
export type ExternalRole = 'technician' | 'control-centre' | 'authority';
/** Every role an account can hold, across the tiers. */
export type AccountRole = 'operator' | 'reseller' | 'installer' | TenantRole | ExternalRole | 'guest';

export const TENANT_ROLES: readonly TenantRole[] = ['admin', 'member', 'dpo'];
export const EXTERNAL_ROLES: readonly ExternalRole[] = ['technician', 'control-centre', 'authority'];
/** Roles that work with personal data and so hold a key pair and (once granted) a copy of the tenant secret. */
export const DATA_ROLES: readonly AccountRole[] = ['member', 'dpo', 'technician', 'control-centre', 'authority'];
export const ACCOUNT_ROLES: readonly AccountRole[] = ['operator', 'reseller', 'installer', ...TENANT_ROLES, ...EXTERNAL_ROLES, 'guest'];

export type Actor =
  | { kind: 'operator'; accountId: string }
  | { kind: 'reseller'; accountId: string; resellerId: string }
  /** Reseller staff who set a tenant up until its handover. */
  | { kind: 'installer'; accountId: string; resellerId: string }
  | { kind: 'tenant'; accountId: string; tenantId: string; role: TenantRole }
  | { kind: 'external'; accountId: string; tenantId: string; role: ExternalRole }
  | { kind: 'guest'; accountId: string; tenantId: string }
  /** The local CLI (whoever holds the data directory and master key is the platform owner) and the scheduler. */
  | { kind: 'system'; name: 'cli' | 'scheduler' };

export type PlatformAction =
  | 'reseller.create'
  | 'reseller.list'
  | 'reseller.read'
  | 'tenant.create'
  | 'tenant.list'
  | 'tenant.read'
  | 'tenant.suspend'
  | 'tenant.resume'
  | 'tenant.set-licence'
  | 'tenant.delete'
  /** Ledger entries, proofs and checkpoints: ids and hashes only, never personal data. */
  | 'ledger.read'
  /** Accounts of a tier: invite one with a given role, list them, disable/enable/reset them. */
  | 'account.invite'
  | 'account.list'
  | 'account.manage'
  /** A tenant's password and second-factor policy. */
  | 'policy.read'
  | 'policy.write';

/** What the action is about: a reseller, or a tenant with the reseller that owns it (null = the operator's own). */
export type Resource =
  | { type: 'platform' }
  | { type: 'reseller'; resellerId: string }
  | { type: 'tenant'; tenantId: string; resellerId: string | null; handedOver?: boolean }
  /** Accounts with `role` at the platform (no tenant, no reseller), of a reseller, or of a tenant. */
  | { type: 'accounts'; role: AccountRole; resellerId: string | null; tenantId: string | null; handedOver?: boolean };

const RESELLER_TENANT_ACTIONS: ReadonlySet<PlatformAction> = new Set([
  'tenant.create',
  'tenant.list',
  'tenant.read',
  'tenant.suspend',
  'tenant.resume',
  'tenant.set-licence',
  'tenant.delete',
  'policy.read',
  'policy.write',
]);

const ACCOUNT_ACTIONS: ReadonlySet<PlatformAction> = new Set(['account.invite', 'account.list', 'account.manage']);

/** Which roles each administering kind may hand out (DESIGN §1); data roles only from inside the tenant. */
const GRANTABLE: Record<'operator' | 'reseller' | 'installer' | 'tenant-admin', ReadonlySet<AccountRole>> = {
  operator: new Set(['operator', 'reseller', 'installer', 'admin']),
  reseller: new Set(['reseller', 'installer', 'admin']),
  installer: new Set(['admin', 'member', 'dpo']),
  'tenant-admin': new Set(['admin', 'member', 'dpo', ...EXTERNAL_ROLES]),
};

const isOwnTenant = (actor: { tenantId: string }, resource: Resource) =>
  (resource.type === 'tenant' || resource.type === 'accounts') && resource.tenantId === actor.tenantId;

export function isAllowed(actor: Actor, action: PlatformAction, resource: Resource): boolean {
  switch (actor.kind) {
    case 'system':
      // The local CLI and the scheduler run with the data directory and master key at hand.
      return true;
    case 'operator':
      // The platform owner administers every tier, but never tenant data (that is not a PlatformAction)
      // and never hands out data roles: those come from inside the tenant.
      if (resource.type === 'accounts') return GRANTABLE.operator.has(resource.role) && (resource.role !== 'admin' || resource.tenantId !== null);
      return true;
    case 'reseller':
    case 'installer': {
      // An installer sets a tenant up until its handover (S2.3); afterwards only the reseller administers it.
      if (actor.kind === 'installer' && (resource.type === 'tenant' || resource.type === 'accounts') && resource.handedOver === true) return false;
      if (resource.type === 'accounts') {
        if (!ACCOUNT_ACTIONS.has(action) || resource.resellerId !== actor.resellerId) return false;
        return GRANTABLE[actor.kind].has(resource.role) && (resource.tenantId !== null) === TENANT_ROLES.includes(resource.role as TenantRole);
      }
      if (action === 'reseller.read') return resource.type === 'reseller' && resource.resellerId === actor.resellerId;
      if (action === 'ledger.read') return actor.kind === 'reseller' && resource.type === 'tenant' && resource.resellerId === actor.resellerId;
      if (!RESELLER_TENANT_ACTIONS.has(action)) return false;
      // Installers set tenants up; creating, suspending, licensing and deleting stay with the reseller.
      if (actor.kind === 'installer' && !['tenant.list', 'tenant.read', 'policy.read', 'policy.write'].includes(action)) return false;
      if (resource.type === 'platform') return action === 'tenant.list' || (actor.kind === 'reseller' && action === 'tenant.create');
      return resource.type === 'tenant' && resource.resellerId === actor.resellerId;
    }
    case 'tenant':
      if (!isOwnTenant(actor, resource)) return false;
      if (action === 'tenant.read' || action === 'policy.read') return true;
      if (actor.role === 'admin') {
        if (action === 'policy.write') return true;
        if (resource.type === 'accounts') return ACCOUNT_ACTIONS.has(action) && GRANTABLE['tenant-admin'].has(resource.role);
        return false;
      }
      // The privacy officer reads the tenant's ledger (ids and blind indexes only); members work with data.
      return actor.role === 'dpo' && action === 'ledger.read' && resource.type === 'tenant';
    case 'external':
    case 'guest':
      // Their rights are grants on data (issue: split-key encryption), never administration.
      return false;
    default:
      return false;
  }
}

/**
 * Throws unless allowed. A refusal on a concrete reseller or tenant is answered exactly like a missing
 * one, so that probing another tier reveals nothing about what exists there.
 */
export function authorize(actor: Actor, action: PlatformAction, resource: Resource): void {
  if (isAllowed(actor, action, resource)) return;
  if (resource.type === 'tenant') {
    // Inside one's own tenant a refusal may say so; anywhere else it looks like a missing tenant.
    if (action !== 'tenant.read' && isAllowed(actor, 'tenant.read', resource)) throw new ForbiddenError();
    throw new NotFoundError('tenant', { id: resource.tenantId });
  }
  if (resource.type === 'reseller') throw new NotFoundError('reseller', { id: resource.resellerId });
  if (resource.type === 'accounts' && resource.tenantId !== null && !canSeeTenant(actor, resource.tenantId, resource.resellerId)) {
    throw new NotFoundError('tenant', { id: resource.tenantId });
  }
  throw new ForbiddenError();
}

/** Whether the actor may know that the tenant exists (so a refusal there may say "forbidden"). */
function canSeeTenant(actor: Actor, tenantId: string, resellerId: string | null): boolean {
  return isAllowed(actor, 'tenant.read', { type: 'tenant', tenantId, resellerId });
}

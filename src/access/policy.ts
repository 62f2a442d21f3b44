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
  /** An export of ledger entries with their payloads (Art. 15, audits): the tenant's DPO, or the operator for the platform ledger. */
  | 'ledger.export'
  /** Accounts of a tier: invite one with a given role, list them, disable/enable/reset them. */
  | 'account.invite'
  | 'account.list'
  | 'account.manage'
  /** Remove an account's second factor (lost phone): the owner sets up a new one at the next login. */
  | 'account.reset-second-factor'
  /** A tenant's password and second-factor policy. */
  | 'policy.read'
  | 'policy.write'
  /** The outbound mail queue: ids, attempts and error codes (never addresses); retry now. The platform owner only. */
  | 'mail.queue.read'
  | 'mail.queue.retry';

/**
 * Work with a tenant's personal data. The policy says who may try; whether the session holds the tenant
 * secret (the key path, DESIGN §3) and, for external accounts, an active grant is checked where the data is.
 */
export type DataAction =
  /** Create, change and delete records (address book, jobs) in the shared and one's own personal book. */
  | 'records.write'
  /** Read records of the shared book and one's own personal book. */
  | 'records.read'
  /** Read only what an active grant covers (external accounts). */
  | 'records.read-granted'
  /** Read every personal book of the tenant (the privacy officer answers data-subject requests). */
  | 'records.read-all-books'
  /** The privacy centre: the ledger pseudonym of a data subject, exports and erasure. */
  | 'privacy.search'
  /** Send transfers and manage one's own. */
  | 'transfer.send'
  /** See and manage every transfer of the tenant, not only one's own. */
  | 'transfer.manage-any'
  /** Hold an end-to-end (SecuPass) key pair to receive transfers. */
  | 'e2e-key.own'
  /** Give an external account a grant on a scope, or end one. */
  | 'grant.create'
  | 'grant.revoke'
  /** See grants: a data user those of the tenant, an external account its own. */
  | 'grant.list'
  /** Become a holder of the tenant secret (activation key, recovery code) or give a colleague a copy. */
  | 'key.activate'
  | 'key.grant'
  /** Replace the tenant secret (rotation, handover). */
  | 'key.rotate'
  /** Leave named colleagues out of a rotation, i.e. take their data access away (the privacy officer's call). */
  | 'key.exclude'
  /** See the recovery code of the tenant secret owed to oneself (after an activation, rotation or handover). */
  | 'key.recovery-code'
  /**
   * The blind-index plan of a collection (expected rows, hence index length): seen by the tenant's admin,
   * changed only by its data users, since the length trades search speed against what an index reveals.
   */
  | 'index-plan.read'
  | 'index-plan.write';

export const DATA_ACTIONS: readonly DataAction[] = [
  'records.write',
  'records.read',
  'records.read-granted',
  'records.read-all-books',
  'privacy.search',
  'transfer.send',
  'transfer.manage-any',
  'e2e-key.own',
  'grant.create',
  'grant.revoke',
  'grant.list',
  'key.activate',
  'key.grant',
  'key.rotate',
  'key.exclude',
  'key.recovery-code',
  'index-plan.read',
  'index-plan.write',
];

/** What the action is about: a reseller, or a tenant with the reseller that owns it (null = the operator's own). */
export type Resource =
  | { type: 'platform' }
  | { type: 'reseller'; resellerId: string }
  | { type: 'tenant'; tenantId: string; resellerId: string | null; handedOver?: boolean }
  /** Accounts with `role` at the platform (no tenant, no reseller), of a reseller, or of a tenant. */
  | { type: 'accounts'; role: AccountRole; resellerId: string | null; tenantId: string | null; handedOver?: boolean }
  /** The personal data of one tenant. */
  | { type: 'data'; tenantId: string };

/** A member's data actions; the privacy officer has these and more. */
const MEMBER_DATA: readonly DataAction[] = [
  'records.write',
  'records.read',
  'transfer.send',
  'e2e-key.own',
  'grant.create',
  'grant.revoke',
  'grant.list',
  'key.activate',
  'key.grant',
  'key.rotate',
  'key.recovery-code',
  'index-plan.read',
  'index-plan.write',
];
/** External accounts read only what a grant gives them. */
const EXTERNAL_DATA: readonly DataAction[] = ['records.read-granted', 'grant.list', 'e2e-key.own'];

/** Which data actions each role of a tenant has (DESIGN §1); every role not named here has none. */
const DATA_RIGHTS: Partial<Record<AccountRole, ReadonlySet<DataAction>>> = {
  member: new Set(MEMBER_DATA),
  dpo: new Set([...MEMBER_DATA, 'records.read-all-books', 'privacy.search', 'transfer.manage-any', 'key.exclude']),
  // A tenant admin administers but never reads data (B.1); a SecuPass key lets it receive transfers.
  admin: new Set(['e2e-key.own', 'index-plan.read']),
  technician: new Set(EXTERNAL_DATA),
  'control-centre': new Set(EXTERNAL_DATA),
  authority: new Set(EXTERNAL_DATA),
  guest: new Set(['e2e-key.own']),
};

const isDataAction = (action: PlatformAction | DataAction): action is DataAction => (DATA_ACTIONS as readonly string[]).includes(action);

/** The data rights of an actor on one tenant's data: none outside its own tenant, none for other tiers. */
function dataAllowed(actor: Actor, action: DataAction, resource: Resource): boolean {
  if (resource.type !== 'data') return false;
  let role: AccountRole;
  switch (actor.kind) {
    case 'tenant':
    case 'external':
      role = actor.role;
      break;
    case 'guest':
      role = 'guest';
      break;
    default:
      // Operators, resellers, installers and the local CLI hold no key path to any tenant's data.
      return false;
  }
  return actor.tenantId === resource.tenantId && (DATA_RIGHTS[role]?.has(action) ?? false);
}

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

const ACCOUNT_ACTIONS: ReadonlySet<PlatformAction> = new Set(['account.invite', 'account.list', 'account.manage', 'account.reset-second-factor']);

/** Which roles each administering kind may hand out (DESIGN §1); data roles only from inside the tenant. */
const GRANTABLE: Record<'operator' | 'reseller' | 'installer' | 'tenant-admin', ReadonlySet<AccountRole>> = {
  operator: new Set(['operator', 'reseller', 'installer', 'admin']),
  reseller: new Set(['reseller', 'installer', 'admin']),
  installer: new Set(['admin', 'member', 'dpo']),
  'tenant-admin': new Set(['admin', 'member', 'dpo', ...EXTERNAL_ROLES]),
};

const isOwnTenant = (actor: { tenantId: string }, resource: Resource) =>
  (resource.type === 'tenant' || resource.type === 'accounts') && resource.tenantId === actor.tenantId;

export function isAllowed(actor: Actor, action: PlatformAction | DataAction, resource: Resource): boolean {
  if (isDataAction(action)) return dataAllowed(actor, action, resource);
  // Administration never applies to data, and data rights never to administration.
  if (resource.type === 'data') return false;
  switch (actor.kind) {
    case 'system':
      // The local CLI and the scheduler run with the data directory and master key at hand.
      return true;
    case 'operator':
      // The platform owner administers every tier, but never tenant data (that is not a PlatformAction)
      // and never hands out data roles: those come from inside the tenant.
      if (resource.type === 'accounts') return GRANTABLE.operator.has(resource.role) && (resource.role !== 'admin' || resource.tenantId !== null);
      // A tenant's ledger is exported by the tenant's own privacy officer, not by the platform.
      if (action === 'ledger.export') return resource.type === 'platform';
      if (action === 'mail.queue.read' || action === 'mail.queue.retry') return resource.type === 'platform';
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
      return actor.role === 'dpo' && (action === 'ledger.read' || action === 'ledger.export') && resource.type === 'tenant';
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

/**
 * Throws ForbiddenError (with `message`, which says who may) unless the actor may do the data action in the
 * tenant. Data of another tenant is refused the same way: the caller's session names its own tenant only.
 */
export function authorizeData(actor: Actor, action: DataAction, tenantId: string, message?: string): void {
  if (!isAllowed(actor, action, { type: 'data', tenantId })) throw new ForbiddenError(message);
}

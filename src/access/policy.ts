import { ForbiddenError, NotFoundError } from '../shared/errors.js';

/**
 * The one policy module (DESIGN §1): every route and CLI command asks `authorize` before it acts.
 * Deny by default: an action that is not listed for an actor's kind is refused.
 */
export type Actor =
  | { kind: 'operator'; accountId: string }
  | { kind: 'reseller'; accountId: string; resellerId: string }
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
  | 'ledger.read';

/** What the action is about: a reseller, or a tenant with the reseller that owns it (null = the operator's own). */
export type Resource =
  | { type: 'platform' }
  | { type: 'reseller'; resellerId: string }
  | { type: 'tenant'; tenantId: string; resellerId: string | null };

const RESELLER_TENANT_ACTIONS: ReadonlySet<PlatformAction> = new Set([
  'tenant.create',
  'tenant.list',
  'tenant.read',
  'tenant.suspend',
  'tenant.resume',
  'tenant.set-licence',
  'tenant.delete',
]);

export function isAllowed(actor: Actor, action: PlatformAction, resource: Resource): boolean {
  switch (actor.kind) {
    case 'system':
    case 'operator':
      // The platform owner administers every tier, but never tenant data (that is not a PlatformAction).
      return true;
    case 'reseller':
      if (action === 'reseller.read') return resource.type === 'reseller' && resource.resellerId === actor.resellerId;
      if (action === 'ledger.read') return resource.type === 'tenant' && resource.resellerId === actor.resellerId;
      if (!RESELLER_TENANT_ACTIONS.has(action)) return false;
      if (resource.type === 'platform') return action === 'tenant.list' || action === 'tenant.create';
      return resource.type === 'tenant' && resource.resellerId === actor.resellerId;
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
  if (resource.type === 'tenant') throw new NotFoundError('tenant', { id: resource.tenantId });
  if (resource.type === 'reseller') throw new NotFoundError('reseller', { id: resource.resellerId });
  throw new ForbiddenError();
}

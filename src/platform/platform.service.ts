import { authorize, type Actor, type PlatformAction } from '../access/index.js';
import { ledgerActor, type Ledgers, type LedgerEvent } from '../ledger/index.js';
import { newId } from '../crypto/random.js';
import type { Clock, IdentityService } from '../identity/index.js';
import type { TenantKeys } from '../crypto/tenant-keys.js';
import { ConflictError, NotFoundError, SuspendedError, ValidationError, DomainError } from '../shared/errors.js';
import type { Storage, TenantLocation } from '../storage/index.js';
import type { PlatformRepo } from './platform.repo.js';
import type { CreatedTenant, InitialKeys, DeletionReason, DeletionReport, FirstDataUserInput, ResellerView, TenantView } from './platform.types.js';

/** The tenant's folder of encrypted blobs; removed with the tenant. */
export interface BlobFolders {
  create(tenantId: string): Promise<void>;
  remove(tenantId: string): Promise<string[]>;
}

export interface PlatformDeps {
  repo: PlatformRepo;
  storage: Pick<Storage, 'provisionTenant' | 'dropTenant' | 'databaseNameFor'>;
  blobs: BlobFolders;
  identity: Pick<IdentityService, 'invite' | 'inviteFirstDataUser'>;
  ledgers: Pick<Ledgers, 'platform' | 'tenant'>;
  tenantKeys: Pick<TenantKeys, 'create' | 'shred'>;
  clock: Clock;
  /** Days between the licence end and the tenant's deletion. */
  deletionGraceDays: number;
  /** Remembers a shredded tenant outside the databases, so that restoring an older backup shreds it again. */
  rememberShredded?: (tenantId: string) => void;
}

const DAY_MS = 24 * 60 * 60 * 1000;

function cleanName(what: string, raw: string): string {
  const name = raw.normalize('NFC').trim();
  if (name.length < 2 || name.length > 200) throw new ValidationError(`${what} name must be 2 to 200 characters long`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new ValidationError(`${what} name must not contain control characters`);
  return name;
}

/** Accepts `YYYY-MM-DD` (the licence runs through that day, UTC) or a full ISO 8601 time; null clears it. */
export function parseLicenceEnd(input: string | null): string | null {
  if (input === null || input === '') return null;
  if (/^\d{4}-\d{2}-\d{2}$/.test(input)) {
    const day = new Date(`${input}T00:00:00.000Z`);
    if (Number.isNaN(day.getTime()) || day.toISOString().slice(0, 10) !== input) {
      throw new ValidationError(`licence end '${input}' is not a calendar date; use YYYY-MM-DD`);
    }
    return new Date(day.getTime() + DAY_MS - 1).toISOString();
  }
  const time = new Date(input);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(input) || Number.isNaN(time.getTime())) {
    throw new ValidationError(`licence end '${input}' is not a date; use YYYY-MM-DD or an ISO 8601 time`);
  }
  return time.toISOString();
}

export type PlatformService = ReturnType<typeof createPlatformService>;

export function createPlatformService(deps: PlatformDeps) {
  const { repo, storage, blobs, identity, clock, ledgers } = deps;

  /** Records a platform event; awaited, so it is durable before the action is acknowledged. */
  const record = (actor: Actor, action: string, resource: LedgerEvent['resource'], outcome: LedgerEvent['outcome'] = 'success', details?: LedgerEvent['details']) =>
    ledgers.platform.append({ actor: ledgerActor(actor), action, resource, outcome, ...(details ? { details } : {}) });

  /** Loads a tenant and checks the policy; a tenant outside the actor's tier is reported as missing. */
  const loadTenant = async (actor: Actor, action: PlatformAction, tenantId: string) => {
    const found = await repo.findTenantById(tenantId);
    try {
      if (!found) throw new NotFoundError('tenant', { id: tenantId });
      authorize(actor, action, { type: 'tenant', tenantId, resellerId: found.view.resellerId, handedOver: found.handedOver });
    } catch (error) {
      // Refusals and probes for other tiers' tenants are security events.
      await record(actor, action, { type: 'tenant', id: tenantId }, 'denied');
      throw error;
    }
    return found!;
  };

  const destroyTenant = async (
    tenant: { view: TenantView; databaseName: string },
    reason: DeletionReason,
  ): Promise<DeletionReport> => {
    const location: TenantLocation = { tenantId: tenant.view.id, databaseName: tenant.databaseName };
    // Crypto-shredding first: without the service component no surviving copy of the data opens.
    await deps.tenantKeys.shred(tenant.view.id);
    deps.rememberShredded?.(tenant.view.id);
    const removed = [...(await storage.dropTenant(location)), ...(await blobs.remove(tenant.view.id))];
    await repo.deleteTenantRow(tenant.view.id);
    const report: DeletionReport = {
      id: newId(),
      tenantId: tenant.view.id,
      tenantName: tenant.view.name,
      resellerId: tenant.view.resellerId,
      reason,
      licenceEndedAt: tenant.view.licenceEndsAt,
      deletedAt: clock.now().toISOString(),
      removed,
    };
    await repo.insertDeletionReport(report);
    await ledgers.platform.append({
      actor: { tier: 'system', role: reason, id: reason },
      action: 'tenant.delete',
      resource: { type: 'tenant', id: tenant.view.id },
      outcome: 'success',
      details: { reportId: report.id, removed: removed.length },
    });
    return report;
  };

  return {
    async createReseller(actor: Actor, input: { name: string; adminLogin: string }) {
      authorize(actor, 'reseller.create', { type: 'platform' });
      const name = cleanName('reseller', input.name);
      if (await repo.findResellerByName(name)) throw new ConflictError(`a reseller named '${name}' exists already`);
      const reseller = await repo.insertReseller({
        id: newId(),
        name,
        status: 'active',
        created_at: clock.now().toISOString(),
      });
      await record(actor, 'reseller.create', { type: 'reseller', id: reseller.id });
      // The reseller's first admin is invited by mail: a one-time link to set a password.
      const admin = await identity.invite(actor, { email: input.adminLogin, role: 'reseller', resellerId: reseller.id });
      return { reseller, adminLogin: admin.login, invitationExpiresAt: admin.expiresAt, invitationLink: admin.link };
    },

    async listResellers(actor: Actor): Promise<ResellerView[]> {
      authorize(actor, 'reseller.list', { type: 'platform' });
      return repo.listResellers();
    },

    async getReseller(actor: Actor, resellerId: string): Promise<ResellerView> {
      authorize(actor, 'reseller.read', { type: 'reseller', resellerId });
      const reseller = await repo.findResellerById(resellerId);
      if (!reseller) throw new NotFoundError('reseller', { id: resellerId });
      return reseller;
    },

    async createTenant(
      actor: Actor,
      input: {
        name: string;
        resellerId?: string | null | undefined;
        licenceEndsAt?: string | null | undefined;
        firstDataUser?: FirstDataUserInput | null | undefined;
      },
    ): Promise<CreatedTenant> {
      authorize(actor, 'tenant.create', { type: 'platform' });
      // A reseller always creates for itself; the operator may name a reseller or keep the tenant direct.
      const resellerId = actor.kind === 'reseller' ? actor.resellerId : (input.resellerId ?? null);
      if (actor.kind !== 'reseller' && resellerId !== null && !(await repo.findResellerById(resellerId))) {
        throw new NotFoundError('reseller', { id: resellerId });
      }
      const name = cleanName('tenant', input.name);
      if (await repo.findTenantByName(name)) throw new ConflictError(`a tenant named '${name}' exists already`);
      const firstDataUser = input.firstDataUser ?? null; // checked by identity.inviteFirstDataUser (a refusal undoes the tenant)
      const id = newId();
      const now = clock.now().toISOString();
      const databaseName = storage.databaseNameFor(id);
      const tenant = await repo.insertTenant({
        id,
        name,
        reseller_id: resellerId,
        status: 'active',
        licence_ends_at: parseLicenceEnd(input.licenceEndsAt ?? null),
        database_name: databaseName,
        created_at: now,
        updated_at: now,
      });
      const by = ledgerActor(actor).id;
      let created: InitialKeys;
      try {
        await storage.provisionTenant({ tenantId: id, databaseName });
        await blobs.create(id);
        if (firstDataUser) {
          // B.1 without trusting the creator: the activation key is bound to the named first data user and
          // mailed only to them, so neither the creator nor a data seat of the creator's can activate.
          const invited = await identity.inviteFirstDataUser(
            actor,
            { tenantId: id, email: firstDataUser.email, role: firstDataUser.role ?? 'dpo', language: firstDataUser.language },
            (accountId) => deps.tenantKeys.create(id, by, { boundTo: accountId }),
          );
          created = {
            initialKeys: { activationKey: null, mailedTo: 'first-data-user' },
            firstDataUser: { accountId: invited.accountId, login: invited.login, role: invited.role, invitationExpiresAt: invited.expiresAt },
          };
        } else {
          // The tenant's keys: only a one-time activation key, for the customer's first data user (B.1: its
          // secret is replaced at the activation, so the creator never holds a working key). Whoever the
          // creator hands it to activates: use firstDataUser where the creator must not be trusted.
          created = { initialKeys: await deps.tenantKeys.create(id, by) };
        }
      } catch (error) {
        // Leave nothing half-made behind: no row without a database, no database without a row (the
        // first data user's account goes with the row).
        await deps.tenantKeys.shred(id).catch(() => undefined);
        await storage.dropTenant({ tenantId: id, databaseName }).catch(() => undefined);
        await blobs.remove(id).catch(() => undefined);
        await repo.deleteTenantRow(id);
        throw error;
      }
      await record(actor, 'tenant.create', { type: 'tenant', id }, 'success', { resellerId, firstDataUserNamed: firstDataUser !== null });
      await (await ledgers.tenant(id)).append({
        actor: ledgerActor(actor),
        action: 'tenant.create',
        resource: { type: 'tenant', id },
        outcome: 'success',
        details: { firstDataUserNamed: firstDataUser !== null },
      });
      return { ...tenant, ...created };
    },

    async listTenants(actor: Actor): Promise<TenantView[]> {
      authorize(actor, 'tenant.list', { type: 'platform' });
      // An installer sees its own reseller's tenants until their handover, as the policy lets it read them.
      if (actor.kind === 'installer') return repo.listTenants(actor.resellerId, { notHandedOver: true });
      if (actor.kind === 'reseller') return repo.listTenants(actor.resellerId);
      // Only the operator and the local CLI reach this point (the policy refuses everyone else).
      return repo.listTenants(undefined);
    },

    async getTenant(actor: Actor, tenantId: string): Promise<TenantView> {
      return (await loadTenant(actor, 'tenant.read', tenantId)).view;
    },

    async suspendTenant(actor: Actor, tenantId: string): Promise<TenantView> {
      const { view } = await loadTenant(actor, 'tenant.suspend', tenantId);
      const updatedAt = clock.now().toISOString();
      await repo.updateTenant(tenantId, { status: 'suspended', updated_at: updatedAt });
      await record(actor, 'tenant.suspend', { type: 'tenant', id: tenantId });
      return { ...view, status: 'suspended', updatedAt };
    },

    async resumeTenant(actor: Actor, tenantId: string): Promise<TenantView> {
      const { view } = await loadTenant(actor, 'tenant.resume', tenantId);
      const updatedAt = clock.now().toISOString();
      await repo.updateTenant(tenantId, { status: 'active', updated_at: updatedAt });
      await record(actor, 'tenant.resume', { type: 'tenant', id: tenantId });
      return { ...view, status: 'active', updatedAt };
    },

    async setLicence(actor: Actor, tenantId: string, licenceEnd: string | null): Promise<TenantView> {
      const { view } = await loadTenant(actor, 'tenant.set-licence', tenantId);
      const licenceEndsAt = parseLicenceEnd(licenceEnd);
      const updatedAt = clock.now().toISOString();
      await repo.updateTenant(tenantId, { licence_ends_at: licenceEndsAt, updated_at: updatedAt });
      await record(actor, 'tenant.set-licence', { type: 'tenant', id: tenantId }, 'success', { licenceEndsAt });
      return { ...view, licenceEndsAt, updatedAt };
    },

    async deleteTenant(actor: Actor, tenantId: string, reason: DeletionReason): Promise<DeletionReport> {
      const tenant = await loadTenant(actor, 'tenant.delete', tenantId);
      return destroyTenant(tenant, reason);
    },

    /** Scheduler job: deletes every tenant whose licence ended more than the grace period ago. */
    async deleteExpiredTenants(): Promise<DeletionReport[]> {
      const cutoff = new Date(clock.now().getTime() - deps.deletionGraceDays * DAY_MS).toISOString();
      const reports: DeletionReport[] = [];
      for (const tenant of await repo.listLicenceExpiredBefore(cutoff)) {
        reports.push(await destroyTenant(tenant, 'licence-expired'));
      }
      return reports;
    },

    /**
     * The gate every tenant-scoped request passes (tenant users, partner clients): refused while the
     * tenant is suspended or its licence has ended.
     */
    async assertTenantUsable(tenantId: string): Promise<TenantView> {
      const found = await repo.findTenantById(tenantId);
      if (!found) throw new NotFoundError('tenant', { id: tenantId });
      if (found.view.status === 'suspended') throw new SuspendedError();
      if (found.view.licenceEndsAt !== null && found.view.licenceEndsAt < clock.now().toISOString()) {
        throw new DomainError(
          'SUSPENDED',
          `this tenant's licence ended on ${found.view.licenceEndsAt.slice(0, 10)}; ask your reseller or the operator to renew it`,
        );
      }
      return found.view;
    },

    listDeletionReports: () => repo.listDeletionReports(),

    /** The ledger an actor asks for: the platform's (operator) or a tenant's (operator, or its reseller). */
    async ledgerFor(actor: Actor, requested: string | undefined, action: 'ledger.read' | 'ledger.export' = 'ledger.read') {
      // Tenant-tier actors (the DPO) have one ledger: their tenant's.
      const tenantId = requested ?? ('tenantId' in actor ? actor.tenantId : undefined);
      if (tenantId === undefined) {
        authorize(actor, action, { type: 'platform' });
        return ledgers.platform;
      }
      await loadTenant(actor, action, tenantId);
      return ledgers.tenant(tenantId);
    },
  };
}

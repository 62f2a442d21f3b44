import type { Kysely } from 'kysely';
import type { Actor } from '../access/index.js';
import type { CipherService } from '../crypto/cipher-service.js';
import type { Storage } from '../storage/index.js';
import { createLedger, type Ledger, type LedgerEvent } from './ledger.service.js';
import type { LedgerSchema } from './ledger.migrations.js';

/** The platform ledger (control database) and one ledger per tenant (in the tenant's own database). */
export interface Ledgers {
  platform: Ledger;
  tenant(tenantId: string): Promise<Ledger>;
  /** Every ledger there is, for the checkpoint and retention jobs and `tresor ledger verify --all`. */
  all(): Promise<{ name: string; ledger: Ledger }[]>;
}

/** The origin stored in the ledger, or `wanted` stored now (the first opening pins it). */
async function pinnedOrigin(db: Kysely<LedgerSchema>, wanted: string): Promise<string> {
  try {
    await db.updateTable('ledger_head').set({ origin: wanted }).where('id', '=', 1).where('origin', 'is', null).execute();
    return (await db.selectFrom('ledger_head').select('origin').where('id', '=', 1).executeTakeFirstOrThrow()).origin ?? wanted;
  } catch {
    return wanted; // not migrated yet (a command that opens the store without migrating)
  }
}

export async function createLedgers(deps: {
  storage: Storage;
  masterKey: CipherService;
  publicUrl: string;
  retentionDays: number;
  technicalRetentionDays?: number;
  clock: { now(): Date };
}): Promise<Ledgers> {
  const host = new URL(deps.publicUrl).host;
  const common = { masterKey: deps.masterKey, retentionDays: deps.retentionDays, technicalRetentionDays: deps.technicalRetentionDays, clock: deps.clock };
  const control = deps.storage.control as unknown as Kysely<LedgerSchema>;
  const platform = createLedger({ ...common, db: control, origin: await pinnedOrigin(control, `${host}/tresor/platform`), location: () => deps.storage.locate() });
  // One ledger object per tenant and process (tenant ids are never reused, so nothing goes stale).
  const cache = new Map<string, Promise<Ledger>>();
  const open = async (tenantId: string) => {
    const row = await deps.storage.control.selectFrom('tenants').select('database_name').where('id', '=', tenantId).executeTakeFirst();
    if (!row) throw new Error(`tenant ${tenantId} has no database`);
    const place = { tenantId, databaseName: row.database_name };
    const db = (await deps.storage.tenantDb(place)) as unknown as Kysely<LedgerSchema>;
    return createLedger({ ...common, db, origin: await pinnedOrigin(db, `${host}/tresor/tenant/${tenantId}`), tenantId, location: () => deps.storage.locate(place) });
  };
  const tenant = (tenantId: string) => {
    let ledger = cache.get(tenantId);
    if (!ledger) {
      ledger = open(tenantId);
      cache.set(tenantId, ledger);
      ledger.catch(() => cache.delete(tenantId));
    }
    return ledger;
  };
  return {
    platform,
    tenant,
    async all() {
      const tenants = await deps.storage.control.selectFrom('tenants').select('id').orderBy('created_at').execute();
      return [{ name: 'platform', ledger: platform }, ...(await Promise.all(tenants.map(async (t) => ({ name: `tenant ${t.id}`, ledger: await tenant(t.id) }))))];
    },
  };
}

/** How an actor appears in a ledger entry: ids and roles only. */
export function ledgerActor(actor: Actor): LedgerEvent['actor'] {
  switch (actor.kind) {
    case 'operator':
      return { tier: 'platform', role: 'operator', id: actor.accountId };
    case 'reseller':
      return { tier: 'reseller', role: `reseller-admin@${actor.resellerId}`, id: actor.accountId };
    case 'installer':
      return { tier: 'reseller', role: `installer@${actor.resellerId}`, id: actor.accountId };
    case 'tenant':
      return { tier: 'tenant', role: actor.role, id: actor.accountId };
    case 'external':
      return { tier: 'external', role: actor.role, id: actor.accountId };
    case 'guest':
      return { tier: 'external', role: 'guest', id: actor.accountId };
    case 'system':
      return { tier: 'system', role: actor.name, id: actor.name };
  }
}

import type { ControlDb, TenantTable, ResellerTable } from '../storage/index.js';
import type { DeletionReport, ResellerView, TenantView } from './platform.types.js';

const toTenant = (row: TenantTable): TenantView => ({
  id: row.id,
  name: row.name,
  resellerId: row.reseller_id,
  status: row.status,
  licenceEndsAt: row.licence_ends_at,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
});

const toReseller = (row: ResellerTable): ResellerView => ({
  id: row.id,
  name: row.name,
  status: row.status,
  createdAt: row.created_at,
});

export type PlatformRepo = ReturnType<typeof createPlatformRepo>;

/** The only code that touches the platform tables (resellers, tenants, deletion_reports). */
export function createPlatformRepo(db: ControlDb) {
  return {
    async insertReseller(row: ResellerTable) {
      await db.insertInto('resellers').values(row).execute();
      return toReseller(row);
    },
    async findResellerById(id: string) {
      const row = await db.selectFrom('resellers').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? toReseller(row) : undefined;
    },
    async findResellerByName(name: string) {
      const row = await db.selectFrom('resellers').selectAll().where('name', '=', name).executeTakeFirst();
      return row ? toReseller(row) : undefined;
    },
    async listResellers() {
      const rows = await db.selectFrom('resellers').selectAll().orderBy('created_at').orderBy('id').execute();
      return rows.map(toReseller);
    },
    async insertTenant(row: TenantTable) {
      await db.insertInto('tenants').values(row).execute();
      return toTenant(row);
    },
    async findTenantById(id: string) {
      const row = await db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? { view: toTenant(row), databaseName: row.database_name, handedOver: (row.handed_over_at ?? null) !== null } : undefined;
    },
    async findTenantByName(name: string) {
      const row = await db.selectFrom('tenants').selectAll().where('name', '=', name).executeTakeFirst();
      return row ? toTenant(row) : undefined;
    },
    /**
     * resellerId undefined = all tenants; null = the operator's direct tenants; a string = that reseller's.
     * `notHandedOver`: only tenants still being set up (what an installer administers, S2.3).
     */
    async listTenants(resellerId: string | null | undefined, opts: { notHandedOver?: boolean } = {}) {
      let query = db.selectFrom('tenants').selectAll();
      if (resellerId === null) query = query.where('reseller_id', 'is', null);
      else if (resellerId !== undefined) query = query.where('reseller_id', '=', resellerId);
      if (opts.notHandedOver === true) query = query.where('handed_over_at', 'is', null);
      const rows = await query.orderBy('created_at').orderBy('id').execute();
      return rows.map(toTenant);
    },
    async updateTenant(id: string, patch: Partial<Pick<TenantTable, 'status' | 'licence_ends_at'>> & { updated_at: string }) {
      await db.updateTable('tenants').set(patch).where('id', '=', id).execute();
    },
    async deleteTenantRow(id: string) {
      await db.deleteFrom('tenants').where('id', '=', id).execute();
    },
    /** Tenants whose licence ended before `cutoff` (ISO time). */
    async listLicenceExpiredBefore(cutoff: string) {
      const rows = await db
        .selectFrom('tenants')
        .selectAll()
        .where('licence_ends_at', 'is not', null)
        .where('licence_ends_at', '<', cutoff)
        .execute();
      return rows.map((row) => ({ view: toTenant(row), databaseName: row.database_name }));
    },
    async insertDeletionReport(report: DeletionReport) {
      await db
        .insertInto('deletion_reports')
        .values({
          id: report.id,
          tenant_id: report.tenantId,
          reason: report.reason,
          report: JSON.stringify(report),
          created_at: report.deletedAt,
        })
        .execute();
    },
    async listDeletionReports() {
      const rows = await db.selectFrom('deletion_reports').select('report').orderBy('created_at').execute();
      return rows.map((row) => JSON.parse(row.report) as DeletionReport);
    },
  };
}

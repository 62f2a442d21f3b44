export interface ResellerView {
  id: string;
  name: string;
  status: 'active' | 'suspended';
  createdAt: string;
}

export interface TenantView {
  id: string;
  name: string;
  resellerId: string | null;
  status: 'active' | 'suspended';
  licenceEndsAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export type DeletionReason = 'licence-expired' | 'deleted-by-command' | 'deleted-by-api';

/** What was destroyed when a tenant was deleted: kept in the control database after the tenant is gone. */
export interface DeletionReport {
  id: string;
  tenantId: string;
  tenantName: string;
  resellerId: string | null;
  reason: DeletionReason;
  licenceEndedAt: string | null;
  deletedAt: string;
  removed: string[];
}

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

/** The tenant's named first data user (B.1): the only account its activation key works for. */
export interface FirstDataUserInput {
  email: string;
  /** Default `dpo`. */
  role?: 'member' | 'dpo' | undefined;
  language?: 'de' | 'en' | undefined;
}

/**
 * What the creator of a tenant learns. Without a named first data user: the one-time activation key, to
 * hand on. With one: no key at all (it was mailed to that user and works only for their account).
 */
export type InitialKeys =
  | { initialKeys: { activationKey: string; mailedTo?: undefined }; firstDataUser?: undefined }
  | {
      initialKeys: { activationKey: null; mailedTo: 'first-data-user' };
      firstDataUser: { accountId: string; login: string; role: 'member' | 'dpo'; invitationExpiresAt: string };
    };
export type CreatedTenant = TenantView & InitialKeys;

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

import type { ColumnType } from 'kysely';
/**
 * Kysely table types. Each module owns its tables; this file only gathers the types so that one
 * Kysely instance can be typed. Times are ISO 8601 strings (UTC) on both engines, so that no
 * dialect-specific date handling leaks into repositories.
 */
import type { Kysely } from 'kysely';
import type { LedgerSchema } from '../ledger/ledger.migrations.js';
import type { PasswordHistoryTable, TenantPolicyTable } from '../identity/accounts.migrations.js';
import type { KeyWrapTable, TenantKeyTable } from '../crypto/tenant-keys.js';
import type { ContactTable } from '../records/contacts.js';
import type { GrantTable } from '../identity/grants.js';
import type { OneTimeKeyTable } from '../identity/one-time-keys.js';
import type { RecoveryCodeTable, SecondFactorTable } from '../identity/second-factor.js';
import type { MailSchema } from '../mail/mail.migrations.js';

export interface ResellerTable {
  id: string;
  name: string;
  status: 'active' | 'suspended';
  created_at: string;
}

export interface TenantTable {
  id: string;
  name: string;
  reseller_id: string | null;
  status: 'active' | 'suspended';
  licence_ends_at: string | null;
  database_name: string;
  created_at: string;
  updated_at: string;
}

/** PostgreSQL only: the per-tenant role and its password, sealed under the master key. */
export interface TenantDbCredentialTable {
  tenant_id: string;
  role_name: string;
  sealed_password: string;
}

export type AccountTier = 'operator' | 'reseller' | 'installer' | 'tenant' | 'external' | 'guest';

export interface AccountTable {
  id: string;
  /** Normalised (NFC, trimmed, lower case); an e-mail address for every account but the first operator. */
  login: string;
  tier: AccountTier;
  /** One of `AccountRole` (src/access). */
  role: string;
  reseller_id: string | null;
  tenant_id: string | null;
  password_hash: string;
  must_change_password: number;
  password_changed_at: string | null;
  status: 'active' | 'disabled' | 'invited';
  language: 'de' | 'en' | null;
  /** Data-capable accounts: ECDH P-256 public key (SPKI, base64) and the private key sealed under a password-derived key. */
  public_key: string | null;
  sealed_private_key: string | null;
  key_salt: string | null;
  created_at: string;
}

export interface SessionTable {
  id_hash: string;
  account_id: string;
  created_at: string;
  expires_at: string;
  last_seen_at: string;
  kind: 'cookie' | 'token';
  request_counter: number;
  grace_until: string | null;
  grace_used: number;
  locked_at: string | null;
  /** Comma-separated `PendingAction`s; empty when the session may do everything its actor may. */
  pending: string;
  /** The tenant secret while a data user acts, sealed under a key derived from the session id (held only by the client). */
  sealed_tenant_secret: string | null;
}

export interface DeletionReportTable {
  id: string;
  tenant_id: string;
  reason: 'licence-expired' | 'deleted-by-command' | 'deleted-by-api';
  report: string;
  created_at: string;
}

export interface ControlSchema extends LedgerSchema, MailSchema {
  resellers: ResellerTable;
  /** `handed_over_at`: set by the installer handover; from then on installers no longer administer the tenant. */
  tenants: TenantTable & { handed_over_at: ColumnType<string | null, string | null | undefined, string | null> };
  tenant_db_credentials: TenantDbCredentialTable;
  accounts: AccountTable;
  sessions: SessionTable;
  deletion_reports: DeletionReportTable;
  one_time_keys: OneTimeKeyTable;
  second_factors: SecondFactorTable;
  recovery_codes: RecoveryCodeTable;
  password_history: PasswordHistoryTable;
  tenant_policies: TenantPolicyTable;
  tenant_keys: TenantKeyTable;
}

export interface TenantMetaTable {
  key: string;
  value: string;
}

export interface TenantSchema extends LedgerSchema {
  tenant_meta: TenantMetaTable;
  key_wraps: KeyWrapTable;
  contacts: ContactTable;
  grants: GrantTable;
}

export type ControlDb = Kysely<ControlSchema>;
export type TenantDb = Kysely<TenantSchema>;
export type Engine = 'sqlite' | 'postgres';

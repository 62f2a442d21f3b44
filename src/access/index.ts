export {
  authorize,
  isAllowed,
  ACCOUNT_ROLES,
  DATA_ROLES,
  EXTERNAL_ROLES,
  TENANT_ROLES,
  type AccountRole,
  type Actor,
  type ExternalRole,
  type PlatformAction,
  type Resource,
  type TenantRole,
} from './policy.js';

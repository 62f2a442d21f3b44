export { openStorage, tenantDatabaseName, type Storage, type StorageOptions, type TenantLocation } from './storage.js';
export type * from './schema.js';

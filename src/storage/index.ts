export { openStorage, tenantDatabaseName, type Storage, type StorageOptions, type TenantLocation, type DatabaseLocation } from './storage.js';
export type * from './schema.js';

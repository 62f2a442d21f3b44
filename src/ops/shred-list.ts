import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Tenants whose keys were shredded (B.7), kept as `<data_dir>/shredded-tenants.json` — beside the databases,
 * never inside a backup — so that a restore of a backup taken before a deletion shreds those tenants again
 * instead of bringing their data back. Ids and times only.
 */
const fileOf = (dataDir: string) => join(dataDir, 'shredded-tenants.json');

export function shreddedTenants(dataDir: string): Record<string, string> {
  const file = fileOf(dataDir);
  if (!existsSync(file)) return {};
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${file} is not a JSON object of tenant ids`);
  return parsed as Record<string, string>;
}

export function rememberShredded(dataDir: string, tenantId: string, at: Date): void {
  const list = { ...shreddedTenants(dataDir), [tenantId]: at.toISOString() };
  const file = fileOf(dataDir);
  writeFileSync(`${file}.new`, JSON.stringify(list, null, 2) + '\n', { mode: 0o600 });
  renameSync(`${file}.new`, file);
}

import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobFolders } from './platform.service.js';

/** One folder of encrypted blobs per tenant under `<data_dir>/blobs/`. */
export function createBlobFolders(dataDir: string): BlobFolders {
  const folderOf = (tenantId: string) => {
    if (!/^[0-9a-f-]{36}$/.test(tenantId)) throw new Error('tenant id has an unexpected form');
    return join(dataDir, 'blobs', tenantId);
  };
  return {
    async create(tenantId) {
      await mkdir(folderOf(tenantId), { recursive: true, mode: 0o700 });
    },
    async remove(tenantId) {
      const folder = folderOf(tenantId);
      if (!existsSync(folder)) return [];
      await rm(folder, { recursive: true, force: true });
      return [`folder ${folder}`];
    },
  };
}

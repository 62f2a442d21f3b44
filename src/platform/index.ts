export { createPlatformService, parseLicenceEnd, type PlatformService, type BlobFolders } from './platform.service.js';
export { createPlatformRepo, type PlatformRepo } from './platform.repo.js';
export { createBlobFolders } from './blob-folders.js';
export type * from './platform.types.js';

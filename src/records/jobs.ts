import type { Migration } from 'kysely';
import { collectionMigration, type CollectionSpec } from './collection.js';

/**
 * Jobs (a utility's or a service firm's work orders): the customer, where, when, which meter or asset,
 * and free text. Shared by the tenant's data users; a grant can give a technician chosen jobs.
 */
const WINDOW = { test: (v: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{3})?)?Z?$/.test(v) && Number.isFinite(Date.parse(v)), message: 'window_start and window_end must be times such as 2026-12-01T08:00Z' };

export const jobsSpec: CollectionSpec = {
  table: 'jobs',
  books: false,
  fields: {
    customer_name: { class: 'searchable', index: 'text', required: true, maxLength: 200 },
    address: { class: 'personal', required: true, maxLength: 500 },
    window_start: { class: 'plain', maxLength: 32, check: WINDOW },
    window_end: { class: 'plain', maxLength: 32, check: WINDOW },
    asset_id: { class: 'searchable', index: 'text', maxLength: 100 },
    notes: { class: 'personal', maxLength: 2000 },
  },
  subject: [{ field: 'customer_name', kind: 'name' }],
};

export const jobsMigration: Migration = collectionMigration(jobsSpec);

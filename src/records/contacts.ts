import type { Migration } from 'kysely';
import { collectionMigration, type CollectionSpec } from './collection.js';

/**
 * Address books: one personal book per user plus the tenant's shared book. Name, e-mail and phone are
 * searchable; address and notes are encrypted only; the company is plain (not personal data).
 */
export const EMAIL_CHECK = { test: (v: string) => v.length <= 254 && /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/u.test(v), message: 'email must be an e-mail address such as name@example.org' };
export const PHONE_CHECK = { test: (v: string) => /^[+\d][\d\s()/.-]{2,30}$/.test(v), message: 'phone must be a phone number such as +49 30 1234567' };

export const contactsSpec: CollectionSpec = {
  table: 'contacts',
  books: true,
  fields: {
    name: { class: 'searchable', index: 'text', required: true, maxLength: 200 },
    email: { class: 'searchable', index: 'email', maxLength: 254, check: EMAIL_CHECK },
    phone: { class: 'searchable', index: 'phone', maxLength: 40, check: PHONE_CHECK },
    address: { class: 'personal', maxLength: 2000 },
    company: { class: 'plain', maxLength: 200 },
    notes: { class: 'personal', maxLength: 2000 },
  },
  subject: [
    { field: 'email', kind: 'email' },
    { field: 'name', kind: 'name' },
  ],
};

export const CSV_COLUMNS = Object.keys(contactsSpec.fields);

export const contactsMigration: Migration = collectionMigration(contactsSpec);

/** The stored shape (for tests and tools that look at the raw table). */
export interface ContactTable {
  id: string;
  book: string;
  key_version: number;
  name_ct: string;
  email_ct: string | null;
  phone_ct: string | null;
  address_ct: string | null;
  notes_ct: string | null;
  company: string | null;
  name_bidx: string;
  email_bidx: string | null;
  phone_bidx: string | null;
  created_at: string;
  updated_at: string;
}

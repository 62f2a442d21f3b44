import type { Kysely, Migration } from 'kysely';
import type { Actor } from '../access/index.js';
import { aeadOpen, aeadSeal, blindIndex, hkdf32, normaliseForIndex, type IndexKind } from '../crypto/envelope.js';
import { newId } from '../crypto/random.js';
import { ledgerActor, type Ledger } from '../ledger/index.js';
import { ForbiddenError, NotFoundError, ValidationError } from '../shared/errors.js';
import { parseCsv } from '../shared/csv.js';

/**
 * Address books (S1, B.1): contacts whose personal fields are encrypted with the tenant data key K_t,
 * each under AES-256-GCM with the AAD tenant ‖ table ‖ record id ‖ field ‖ key version, so that a
 * ciphertext copied to another row or field does not open. Searchable fields also get a blind index:
 * HMAC-SHA-256 under a per-field key derived from K_t, truncated to BLIND_INDEX_BITS (see docs/keys.md)
 * so that an index value alone does not single a person out; candidates are decrypted and compared.
 *
 * Books: `shared` (every data user of the tenant) and `personal` (one per user). The DPO searches all.
 */
export interface ContactTable {
  id: string;
  book: string;
  key_version: number;
  name_ct: string;
  email_ct: string | null;
  phone_ct: string | null;
  address_ct: string | null;
  notes_ct: string | null;
  /** Plain field: a company name is not personal data. */
  company: string | null;
  name_bidx: string;
  email_bidx: string | null;
  phone_bidx: string | null;
  created_at: string;
  updated_at: string;
}

export const contactsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('contacts')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('book', 'varchar(64)', (c) => c.notNull())
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('name_ct', 'text', (c) => c.notNull())
      .addColumn('email_ct', 'text')
      .addColumn('phone_ct', 'text')
      .addColumn('address_ct', 'text')
      .addColumn('notes_ct', 'text')
      .addColumn('company', 'varchar(200)')
      .addColumn('name_bidx', 'varchar(16)', (c) => c.notNull())
      .addColumn('email_bidx', 'varchar(16)')
      .addColumn('phone_bidx', 'varchar(16)')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .execute();
    for (const field of ['name', 'email', 'phone']) {
      await db.schema.createIndex(`contacts_${field}_bidx`).on('contacts').columns([`${field}_bidx`, 'book']).execute();
    }
  },
};

/**
 * CipherSweet's rule for a blind index of `bits` over R rows: the expected number of coincidences per
 * value, R / 2^bits, should be at least 2 (an index value never points at one person) and below √R
 * (a search still narrows things down). 15 bits fits 65,536 ≤ R < 1,073,741,824 contacts per tenant; a
 * tenant with 100,000 contacts sees about 3 candidates per search, decrypted and compared.
 */
export const BLIND_INDEX_BITS = 15;

export interface ContactInput {
  name: string;
  email?: string | null | undefined;
  phone?: string | null | undefined;
  address?: string | null | undefined;
  company?: string | null | undefined;
  notes?: string | null | undefined;
}

export interface Contact {
  id: string;
  book: 'shared' | 'personal';
  name: string;
  email: string | null;
  phone: string | null;
  address: string | null;
  company: string | null;
  notes: string | null;
  createdAt: string;
  updatedAt: string;
}

const PERSONAL = ['name', 'email', 'phone', 'address', 'notes'] as const;
type PersonalField = (typeof PERSONAL)[number];
const SEARCHABLE: Record<'name' | 'email' | 'phone', IndexKind> = { name: 'text', email: 'email', phone: 'phone' };
const KEY_VERSION = 1;
export const CSV_COLUMNS = ['name', 'email', 'phone', 'address', 'company', 'notes'] as const;
const IMPORT_BATCH = 500;
const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/u;

/** A truncated blind index as 4 hex digits (the top BLIND_INDEX_BITS bits of the HMAC, the rest zero). */
function truncatedIndex(key: Buffer, kind: IndexKind, value: string): string {
  const full = Buffer.from(blindIndex(key, kind, value, 4), 'hex').readUInt32BE(0);
  const kept = (full >>> (32 - BLIND_INDEX_BITS)) << (32 - BLIND_INDEX_BITS);
  return (kept >>> 0).toString(16).padStart(8, '0').slice(0, 4);
}

/** The data subject index of the ledger: full-length (no coincidences), so an Art. 15 export finds exactly one person. */
const LEDGER_SUBJECT_INFO = 'bidx/ledger-subject/email';
export function ledgerSubjectIndex(dataKey: Buffer, email: string): string {
  return blindIndex(hkdf32(dataKey, LEDGER_SUBJECT_INFO), 'email', email, 16);
}

export interface DataSession {
  actor: Actor;
  tenantId: string;
  dataKey: Buffer;
  /** External accounts act within a grant: the shared book, or only the listed contacts; read only. */
  grant?: { id: string; contactIds: string[] | null } | undefined;
}

function validate(input: ContactInput): void {
  const problems: string[] = [];
  if (typeof input.name !== 'string' || input.name.trim() === '' || input.name.length > 200) problems.push('name must be 1 to 200 characters');
  if (input.email && (input.email.length > 254 || !EMAIL.test(input.email.trim()))) problems.push('email must be an e-mail address such as name@example.org');
  if (input.phone && !/^[+\d][\d\s()/.-]{2,30}$/.test(input.phone.trim())) problems.push('phone must be a phone number such as +49 30 1234567');
  for (const field of ['address', 'notes', 'company'] as const) {
    const value = input[field];
    if (value && value.length > 2000) problems.push(`${field} must be at most 2000 characters`);
  }
  if (problems.length > 0) throw new ValidationError(problems.join('; '), { problems });
}

export function createContacts(deps: { tenantDb: (tenantId: string) => Promise<Kysely<{ contacts: ContactTable }>>; tenantLedger: (tenantId: string) => Promise<Pick<Ledger, 'append'>>; clock: { now(): Date } }) {
  // Keys derived from K_t once per data session (HKDF per field and row would cost more than the AES).
  const derived = new WeakMap<Buffer, Map<string, Buffer>>();
  const derive = (s: DataSession, info: string) => {
    let keys = derived.get(s.dataKey);
    if (!keys) derived.set(s.dataKey, (keys = new Map()));
    let key = keys.get(info);
    if (!key) keys.set(info, (key = hkdf32(s.dataKey, info)));
    return key;
  };
  const fieldKey = (s: DataSession) => derive(s, 'tresor/field/v1');
  const indexKey = (s: DataSession, field: string) => derive(s, `bidx/contacts.${field}`);
  const subjectIndex = (s: DataSession, email: string) => blindIndex(derive(s, LEDGER_SUBJECT_INFO), 'email', email, 16);
  const aad = (s: DataSession, id: string, field: string, version: number) => `${s.tenantId}|contacts|${id}|${field}|v${version}`;
  const seal = (s: DataSession, id: string, field: PersonalField, value: string | null | undefined) =>
    value === null || value === undefined || value === '' ? null : aeadSeal(fieldKey(s), Buffer.from(value, 'utf8'), aad(s, id, field, KEY_VERSION)).toString('base64url');
  const open = (s: DataSession, row: ContactTable, field: PersonalField) => {
    const ct = row[`${field}_ct`];
    return ct === null ? null : aeadOpen(fieldKey(s), Buffer.from(ct, 'base64url'), aad(s, row.id, field, row.key_version)).toString('utf8');
  };
  const index = (s: DataSession, field: keyof typeof SEARCHABLE, value: string | null | undefined) =>
    value === null || value === undefined || value === '' ? null : truncatedIndex(indexKey(s, field), SEARCHABLE[field], value);

  const accountOf = (s: DataSession) => {
    const a = s.actor;
    if (a.kind !== 'tenant' || (a.role !== 'member' && a.role !== 'dpo') || a.tenantId !== s.tenantId) {
      throw new ForbiddenError('address books are for the data users of a tenant');
    }
    return a;
  };
  /** What a session may read: books, and for a grantee the granted contacts only. */
  const readScope = (s: DataSession): { books: string[] | 'all'; ids: string[] | null } => {
    if (s.actor.kind === 'external' && s.grant && s.actor.tenantId === s.tenantId) return { books: ['shared'], ids: s.grant.contactIds };
    const a = accountOf(s);
    return { books: a.role === 'dpo' ? 'all' : ['shared', `personal:${a.accountId}`], ids: null };
  };
  const personalBook = (s: DataSession) => `personal:${accountOf(s).accountId}`;
  const visibleBooks = (s: DataSession): string[] | 'all' => readScope(s).books;
  const view = (s: DataSession, row: ContactTable): Contact => ({
    id: row.id,
    book: row.book === 'shared' ? 'shared' : 'personal',
    name: open(s, row, 'name')!,
    email: open(s, row, 'email'),
    phone: open(s, row, 'phone'),
    address: open(s, row, 'address'),
    company: row.company,
    notes: open(s, row, 'notes'),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });
  const record = async (s: DataSession, action: string, id: string, emailForSubject?: string | null) =>
    (await deps.tenantLedger(s.tenantId)).append({
      actor: ledgerActor(s.actor),
      action,
      resource: { type: 'contact', id, ...(emailForSubject ? { blindIndexes: [subjectIndex(s, emailForSubject)] } : {}) },
      outcome: 'success',
      ...(s.grant ? { details: { grant: s.grant.id } } : {}),
    });
  const load = async (s: DataSession, id: string) => {
    const db = await deps.tenantDb(s.tenantId);
    const row = await db.selectFrom('contacts').selectAll().where('id', '=', id).executeTakeFirst();
    const { books, ids } = readScope(s);
    if (!row || (books !== 'all' && !books.includes(row.book)) || (ids !== null && !ids.includes(row.id))) throw new NotFoundError('contact');
    return { db, row };
  };
  const columns = (s: DataSession, id: string, input: ContactInput) => ({
    name_ct: seal(s, id, 'name', input.name.trim())!,
    email_ct: seal(s, id, 'email', input.email?.trim()),
    phone_ct: seal(s, id, 'phone', input.phone?.trim()),
    address_ct: seal(s, id, 'address', input.address),
    notes_ct: seal(s, id, 'notes', input.notes),
    company: input.company?.trim() || null,
    name_bidx: index(s, 'name', input.name)!,
    email_bidx: index(s, 'email', input.email),
    phone_bidx: index(s, 'phone', input.phone),
  });

  return {
    async create(s: DataSession, book: 'shared' | 'personal', input: ContactInput): Promise<Contact> {
      accountOf(s);
      validate(input);
      const id = newId();
      const now = deps.clock.now().toISOString();
      const row: ContactTable = { id, book: book === 'shared' ? 'shared' : personalBook(s), key_version: KEY_VERSION, ...columns(s, id, input), created_at: now, updated_at: now };
      const db = await deps.tenantDb(s.tenantId);
      await db.insertInto('contacts').values(row).execute();
      await record(s, 'record.create', id, input.email);
      return view(s, row);
    },

    async get(s: DataSession, id: string): Promise<Contact> {
      const { row } = await load(s, id);
      const contact = view(s, row);
      await record(s, 'record.read', id, contact.email);
      return contact;
    },

    async update(s: DataSession, id: string, input: ContactInput): Promise<Contact> {
      accountOf(s); // data users only: a grant gives read access
      validate(input);
      const { db, row } = await load(s, id);
      const updated: ContactTable = { ...row, key_version: KEY_VERSION, ...columns(s, id, input), updated_at: deps.clock.now().toISOString() };
      await db.updateTable('contacts').set(updated).where('id', '=', id).execute();
      await record(s, 'record.update', id, input.email);
      return view(s, updated);
    },

    async remove(s: DataSession, id: string): Promise<void> {
      accountOf(s);
      const { db, row } = await load(s, id);
      const email = open(s, row, 'email');
      await db.deleteFrom('contacts').where('id', '=', id).execute();
      await record(s, 'record.delete', id, email);
    },

    /**
     * Imports contacts from CSV (header row: name, email, phone, address, company, notes; only name is
     * required). Each bad row is reported with its line and what to fix and is skipped; the good rows are
     * stored. `progress` is called as rows are done.
     */
    async importCsv(s: DataSession, book: 'shared' | 'personal', text: string, progress: (done: number, total: number) => void): Promise<{ created: number; errors: { line: number; message: string }[] }> {
      accountOf(s);
      let rows: string[][];
      try {
        rows = parseCsv(text);
      } catch (error) {
        throw new ValidationError(`the file is not valid CSV: ${(error as Error).message}`);
      }
      const header = (rows.shift() ?? []).map((h) => h.trim().toLowerCase());
      const unknown = header.filter((h) => !(CSV_COLUMNS as readonly string[]).includes(h));
      if (!header.includes('name') || unknown.length > 0) {
        throw new ValidationError(`the first line must name the columns: name (required), ${CSV_COLUMNS.slice(1).join(', ')}${unknown.length > 0 ? `; unknown: ${unknown.join(', ')}` : ''}`);
      }
      const errors: { line: number; message: string }[] = [];
      const db = await deps.tenantDb(s.tenantId);
      const ledger = await deps.tenantLedger(s.tenantId);
      let created = 0;
      for (let start = 0; start < rows.length; start += IMPORT_BATCH) {
        const batch: ContactTable[] = [];
        const emails: (string | null | undefined)[] = [];
        rows.slice(start, start + IMPORT_BATCH).forEach((cells, k) => {
          const line = start + k + 2;
          const input = Object.fromEntries(header.map((h, c) => [h, (cells[c] ?? '').trim() || null])) as unknown as ContactInput;
          try {
            validate(input);
          } catch (error) {
            errors.push({ line, message: (error as Error).message });
            return;
          }
          const id = newId();
          const now = deps.clock.now().toISOString();
          batch.push({ id, book: book === 'shared' ? 'shared' : personalBook(s), key_version: KEY_VERSION, ...columns(s, id, input), created_at: now, updated_at: now });
          emails.push(input.email);
        });
        if (batch.length > 0) {
          await db.transaction().execute(async (trx) => {
            for (let i = 0; i < batch.length; i += 100) await trx.insertInto('contacts').values(batch.slice(i, i + 100)).execute();
          });
          await ledger.append(
            batch.map((row, i) => ({
              actor: ledgerActor(s.actor),
              action: 'record.import',
              resource: { type: 'contact', id: row.id, ...(emails[i] ? { blindIndexes: [subjectIndex(s, emails[i])] } : {}) },
              outcome: 'success' as const,
            })),
          );
          created += batch.length;
        }
        progress(Math.min(start + IMPORT_BATCH, rows.length), rows.length);
      }
      return { created, errors };
    },

    /** Every visible contact, decrypted, for an export (one ledger entry names the count). */
    async exportAll(s: DataSession): Promise<Contact[]> {
      const db = await deps.tenantDb(s.tenantId);
      const { books, ids } = readScope(s);
      let q = db.selectFrom('contacts').selectAll();
      if (books !== 'all') q = q.where('book', 'in', books);
      if (ids !== null) q = ids.length > 0 ? q.where('id', 'in', ids) : q.where('id', '=', '');
      const found = (await q.orderBy('created_at').execute()).map((r) => view(s, r));
      await (await deps.tenantLedger(s.tenantId)).append({ actor: ledgerActor(s.actor), action: 'record.export', resource: { type: 'contacts' }, outcome: 'success', details: { records: found.length } });
      return found;
    },

    /** Deletes a user's personal address book (the user is being deleted); needs no key: ciphertext only. */
    async deletePersonalBook(tenantId: string, accountId: string): Promise<number> {
      const db = await deps.tenantDb(tenantId);
      const result = await db.deleteFrom('contacts').where('book', '=', `personal:${accountId}`).executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    /** Lists the visible books, or finds exact matches (after normalisation) through the blind indexes. */
    async search(s: DataSession, query: { book?: 'shared' | 'personal' | undefined; name?: string | undefined; email?: string | undefined; phone?: string | undefined; limit?: number | undefined }): Promise<Contact[]> {
      const db = await deps.tenantDb(s.tenantId);
      let q = db.selectFrom('contacts').selectAll();
      const { books, ids } = readScope(s);
      if (query.book) q = q.where('book', '=', query.book === 'shared' ? 'shared' : personalBook(s));
      else if (books !== 'all') q = q.where('book', 'in', books);
      if (ids !== null) q = ids.length > 0 ? q.where('id', 'in', ids) : q.where('id', '=', '');
      const wanted = (['name', 'email', 'phone'] as const).filter((f) => query[f]);
      for (const field of wanted) q = q.where(`${field}_bidx`, '=', index(s, field, query[field])!);
      const rows = await q.orderBy('created_at').limit(Math.min(query.limit ?? 500, 5000)).execute();
      // Blind indexes coincide on purpose: decrypt the candidates and keep exact matches only.
      const found = rows
        .map((r) => view(s, r))
        .filter((c) => wanted.every((f) => c[f] !== null && normaliseForIndex(SEARCHABLE[f], c[f]) === normaliseForIndex(SEARCHABLE[f], query[f]!)));
      const action = wanted.length > 0 ? 'record.search' : 'record.list';
      await (await deps.tenantLedger(s.tenantId)).append({
        actor: ledgerActor(s.actor),
        action,
        resource: { type: 'contacts', ...(query.email ? { blindIndexes: [subjectIndex(s, query.email)] } : {}) },
        outcome: 'success',
        details: { results: found.length },
      });
      return found;
    },
  };
}

export type Contacts = ReturnType<typeof createContacts>;

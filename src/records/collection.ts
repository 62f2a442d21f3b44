import { randomBytes } from 'node:crypto';
import type { Kysely, Migration } from 'kysely';
import { authorizeData, isAllowed, type Actor } from '../access/index.js';
import { aeadOpen, aeadSeal, blindIndex, hkdf32, KeyError, normaliseForIndex, unwrapWithKey, wrapWithKey, type IndexKind } from '../crypto/envelope.js';
import { newId } from '../crypto/random.js';
import { ledgerActor, MAX_ENTRY_FIELD_LENGTH, type Ledger } from '../ledger/index.js';
import { ForbiddenError, NotFoundError, ValidationError } from '../shared/errors.js';
import { parseCsv } from '../shared/csv.js';
import { ledgerSubjectIndex, type SubjectKeys, type SubjectKeyStore } from './subject-keys.js';

/**
 * Encrypted collections of personal data (S1, B.1), one definition per collection (address books, jobs).
 * Personal fields are sealed with the tenant data key K_t, each under AES-256-GCM with the AAD
 * tenant ‖ table ‖ record id ‖ field ‖ key version, so a ciphertext copied to another row or field does not
 * open. Searchable personal fields also get a blind index: HMAC-SHA-256 under a per-field key derived from
 * K_t, truncated to a length planned from the collection's expected row count (`blindIndexBits`,
 * docs/keys.md), so an index value alone does not single a person out; candidates are decrypted and
 * compared. Plain fields are stored as they are.
 */
export type FieldClass = 'personal' | 'searchable' | 'plain';

export interface FieldSpec {
  class: FieldClass;
  /** How a searchable field is normalised before indexing. */
  index?: IndexKind;
  required?: boolean;
  maxLength: number;
  /** A check with the message that says what to fix. */
  check?: { test: (value: string) => boolean; message: string };
}

export interface CollectionSpec {
  /** Table name, also part of every AAD and index key. */
  table: string;
  fields: Record<string, FieldSpec>;
  /** Personal and shared books (address books); a collection without books is shared by the tenant. */
  books: boolean;
  /** Fields that name the data subject in the ledger (full-length pseudonym, Art. 15). */
  subject: { field: string; kind: 'email' | 'name' }[];
}

/**
 * CipherSweet's rule for a blind index of L bits over R rows: the expected number of coincidences per
 * value, C = R / 2^L, must satisfy 2 ≤ C < √R — at least 2, so an index value never points at exactly one
 * person, and below √R, so a search still narrows things down. Tresor takes the longest L that keeps
 * C ≥ 2: L = ⌊log2 R⌋ − 1, so 2 ≤ C < 4, which is below √R for every R ≥ 8 (for 8 ≤ R < 16, C = R/4 < √R;
 * from 16 on, √R ≥ 4). Below 8 rows no length satisfies the rule. docs/keys.md has the numbers.
 */
export const MIN_EXPECTED_ROWS = 8;
export const MAX_EXPECTED_ROWS = 2 ** 31 - 1;
/** What a tenant gets until it says otherwise: a small organisation's address book or job list. */
export const DEFAULT_EXPECTED_ROWS = 1000;
/** The fixed length used before lengths were planned; tenant databases migrated with rows keep it for their key version. */
export const LEGACY_BLIND_INDEX_BITS = 15;

export function blindIndexBits(expectedRows: number): number {
  if (!Number.isSafeInteger(expectedRows) || expectedRows < MIN_EXPECTED_ROWS || expectedRows > MAX_EXPECTED_ROWS) {
    throw new ValidationError(`expectedRows must be a whole number from ${MIN_EXPECTED_ROWS} to ${MAX_EXPECTED_ROWS}: the number of records the collection is expected to hold`);
  }
  return 31 - Math.clz32(expectedRows) - 1; // ⌊log2 R⌋ − 1, exact in integers
}

/** tenant_meta keys: the wanted row count per collection (a tenant setting) and the length each key version's index was built with. */
const expectedRowsKey = (table: string) => `records.expected-rows.${table}`;
const plannedBitsKey = (table: string, version: number) => `records.bidx-bits.${table}.v${version}`;

/**
 * Records the length of the indexes that already exist: tenant databases from before planned lengths were
 * built with LEGACY_BLIND_INDEX_BITS for every key version they hold, so their search keeps working.
 */
export function blindIndexPlanMigration(specs: CollectionSpec[]): Migration {
  return {
    async up(db: Kysely<any>) { // eslint-disable-line @typescript-eslint/no-explicit-any -- the collections' tables
      for (const spec of specs) {
        const versions = await db.selectFrom(spec.table).select('key_version').distinct().execute();
        for (const { key_version } of versions as { key_version: number }[]) {
          await db.insertInto('tenant_meta').values({ key: plannedBitsKey(spec.table, Number(key_version)), value: String(LEGACY_BLIND_INDEX_BITS) }).execute();
        }
      }
    },
  };
}

const IMPORT_BATCH = 500;

export type RecordInput = Record<string, string | null | undefined>;
export type RecordView = Record<string, string | null> & { id: string; book: 'shared' | 'personal'; createdAt: string; updatedAt: string };

export interface DataSession {
  actor: Actor;
  tenantId: string;
  dataKey: Buffer;
  /** The tenant secret's version that `dataKey` belongs to: part of every AAD, stored with each record. */
  keyVersion: number;
  /** External accounts act within their active grants: each one collection, maybe only listed records; read only. */
  grants?: { id: string; collection: string; recordIds: string[] | null }[] | undefined;
  /** While a rotation of the tenant secret runs: the previous data key, to read records not re-encrypted yet. */
  previous?: { dataKey: Buffer; version: number } | undefined;
}

/**
 * B.7: each personal address book has its own key P_b, stored only wrapped under the tenant data key
 * (`book_keys`, one row per book, the secret version it is wrapped under). A personal record's fields are
 * sealed under a key derived from P_b; deleting the user destroys P_b with the book.
 */
export const bookKeysMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('book_keys')
      .addColumn('book', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('wrapped', 'text', (c) => c.notNull())
      .addColumn('key_version', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .execute();
  },
};

const bookKeyContext = (tenantId: string, book: string, version: number) => `book-key|${tenantId}|${book}|v${version}`;

/** Table and indexes for a collection: `<field>_ct` for personal fields, `<field>_bidx` beside searchable ones. */
export function collectionMigration(spec: CollectionSpec): Migration {
  return {
    async up(db: Kysely<unknown>) {
      let table = db.schema
        .createTable(spec.table)
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('book', 'varchar(64)', (c) => c.notNull())
        .addColumn('key_version', 'integer', (c) => c.notNull());
      for (const [name, field] of Object.entries(spec.fields)) {
        if (field.class === 'plain') table = table.addColumn(name, 'varchar(2000)');
        else table = table.addColumn(`${name}_ct`, 'text', (c) => (field.required ? c.notNull() : c));
        if (field.class === 'searchable') table = table.addColumn(`${name}_bidx`, 'varchar(16)', (c) => (field.required ? c.notNull() : c));
      }
      await table.addColumn('created_at', 'varchar(32)', (c) => c.notNull()).addColumn('updated_at', 'varchar(32)', (c) => c.notNull()).execute();
      for (const [name, field] of Object.entries(spec.fields)) {
        if (field.class === 'searchable') await db.schema.createIndex(`${spec.table}_${name}_bidx`).on(spec.table).columns([`${name}_bidx`, 'book']).execute();
      }
    },
  };
}

type Row = Record<string, string | number | null>;

export function createCollection(
  spec: CollectionSpec,
  deps: { tenantDb: (tenantId: string) => Promise<Kysely<any>>; tenantLedger: (tenantId: string) => Promise<Pick<Ledger, 'append'>>; clock: { now(): Date }; subjectKeys: Pick<SubjectKeyStore, 'keysOf'> }, // eslint-disable-line @typescript-eslint/no-explicit-any -- one module for differently shaped tables
) {
  const fields = Object.entries(spec.fields);
  const searchable = fields.filter(([, f]) => f.class === 'searchable').map(([name]) => name);
  const columns = fields.map(([name]) => name);

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
  // Personal books (B.7): the field key comes from the book's own key; loaded per session before use.
  const bookKeys = new WeakMap<Buffer, Map<string, Buffer>>();
  const isPersonal = (book: unknown): book is string => spec.books === true && typeof book === 'string' && book.startsWith('personal:');
  /** Makes the keys of these books available to `fieldKeyOf` for this session; `create` makes a missing one. */
  const loadBookKeys = async (s: DataSession, books: unknown[], create = false): Promise<void> => {
    const wanted = [...new Set(books.filter(isPersonal))];
    if (wanted.length === 0) return;
    let cache = bookKeys.get(s.dataKey);
    if (!cache) bookKeys.set(s.dataKey, (cache = new Map()));
    const missing = wanted.filter((b) => !cache!.has(b));
    if (missing.length === 0) return;
    const db = (await deps.tenantDb(s.tenantId)) as Kysely<any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- book_keys is this module's table
    const rows = (await db.selectFrom('book_keys').selectAll().where('book', 'in', missing).execute()) as { book: string; wrapped: string; key_version: number }[];
    for (const r of rows) {
      // During a rotation a book key may still be wrapped under the previous data key.
      const dataKey = r.key_version === s.keyVersion ? s.dataKey : s.previous && r.key_version === s.previous.version ? s.previous.dataKey : undefined;
      if (dataKey) cache.set(r.book, unwrapWithKey(r.wrapped, dataKey, bookKeyContext(s.tenantId, r.book, r.key_version)));
    }
    if (!create) return;
    for (const book of missing.filter((b) => !cache!.has(b))) {
      const key = randomBytes(32);
      await db
        .insertInto('book_keys')
        .values({ book, wrapped: wrapWithKey(key, s.dataKey, bookKeyContext(s.tenantId, book, s.keyVersion)), key_version: s.keyVersion, created_at: deps.clock.now().toISOString() })
        .onConflict((oc) => oc.column('book').doNothing())
        .execute();
      const stored = (await db.selectFrom('book_keys').selectAll().where('book', '=', book).executeTakeFirstOrThrow()) as { wrapped: string; key_version: number };
      cache.set(book, unwrapWithKey(stored.wrapped, s.dataKey, bookKeyContext(s.tenantId, book, stored.key_version)));
    }
  };
  /** The field key for a record of `book`: its book key's (personal books), else the tenant's. */
  const fieldKeyOf = (s: DataSession, book: unknown): Buffer => {
    if (!isPersonal(book)) return fieldKey(s);
    const key = bookKeys.get(s.dataKey)?.get(book);
    if (!key) throw new KeyError('the key of this personal address book is missing (its owner was deleted)');
    return hkdf32(key, 'tresor/field/v1');
  };
  const aad = (s: DataSession, id: string, field: string, version: number) => `${s.tenantId}|${spec.table}|${id}|${field}|v${version}`;
  const empty = (v: string | null | undefined): v is null | undefined | '' => v === null || v === undefined || v.trim() === '';
  /** The first `bits` bits of the HMAC, as hex (the last hex digit's unused low bits are zero). */
  const index = (s: DataSession, bits: number, field: string, value: string | null | undefined) => {
    if (empty(value)) return null;
    const full = Buffer.from(blindIndex(derive(s, `bidx/${spec.table}.${field}`), spec.fields[field]!.index ?? 'text', value, 4), 'hex').readUInt32BE(0);
    const kept = (full >>> (32 - bits)) << (32 - bits);
    return (kept >>> 0).toString(16).padStart(8, '0').slice(0, Math.ceil(bits / 4));
  };

  /**
   * The index length of a key version: fixed when the version's first record is written or searched (from
   * the tenant's expected row count at that moment) and never changed afterwards, so search always uses the
   * length the index was built with. A new length takes effect with the next key version, whose rotation
   * re-indexes every record. Plans never change, so they are cached.
   */
  const plans = new Map<string, number>();
  const expectedRowsOf = async (db: Kysely<any>) => { // eslint-disable-line @typescript-eslint/no-explicit-any -- tenant database
    const row = (await db.selectFrom('tenant_meta').select('value').where('key', '=', expectedRowsKey(spec.table)).executeTakeFirst()) as { value: string } | undefined;
    return row ? Number(row.value) : DEFAULT_EXPECTED_ROWS;
  };
  const indexBits = async (tenantId: string, version: number): Promise<number> => {
    const cacheKey = `${tenantId}|${version}`;
    const cached = plans.get(cacheKey);
    if (cached !== undefined) return cached;
    const db = await deps.tenantDb(tenantId);
    const planned = () => db.selectFrom('tenant_meta').select('value').where('key', '=', plannedBitsKey(spec.table, version)).executeTakeFirst() as Promise<{ value: string } | undefined>;
    let row = await planned();
    if (!row) {
      const bits = blindIndexBits(await expectedRowsOf(db));
      // Two nodes may plan at once: the first one wins and both read what was stored.
      await db.insertInto('tenant_meta').values({ key: plannedBitsKey(spec.table, version), value: String(bits) }).onConflict((oc: any) => oc.column('key').doNothing()).execute(); // eslint-disable-line @typescript-eslint/no-explicit-any -- Kysely's builder over an untyped database
      row = await planned();
    }
    const bits = Number(row!.value);
    plans.set(cacheKey, bits);
    return bits;
  };
  // The ledger's subject keys of a session, loaded by `withSubjects` before any event is built.
  const subjectKeysOf = new WeakMap<Buffer, SubjectKeys>();
  const withSubjects = async (s: DataSession): Promise<void> => {
    if (!subjectKeysOf.has(s.dataKey)) subjectKeysOf.set(s.dataKey, await deps.subjectKeys.keysOf(s));
  };
  const subjects = (s: DataSession, input: RecordInput) => {
    const keys = subjectKeysOf.get(s.dataKey);
    if (!keys) throw new Error('the ledger subject keys of this session were not loaded');
    return spec.subject.flatMap(({ field, kind }) => (empty(input[field]) ? [] : [ledgerSubjectIndex(keys, kind, input[field]!)]));
  };

  const validate = (input: RecordInput) => {
    const problems: string[] = [];
    const unknown = Object.keys(input).filter((k) => !columns.includes(k));
    if (unknown.length > 0) problems.push(`unknown fields: ${unknown.join(', ')} (known: ${columns.join(', ')})`);
    for (const [name, f] of fields) {
      const value = input[name];
      if (empty(value)) {
        if (f.required) problems.push(`${name} must be 1 to ${f.maxLength} characters`);
        continue;
      }
      if (typeof value !== 'string' || value.length > f.maxLength) problems.push(`${name} must be at most ${f.maxLength} characters`);
      else if (f.check && !f.check.test(value.trim())) problems.push(f.check.message);
    }
    if (problems.length > 0) throw new ValidationError(problems.join('; '), { problems });
  };

  /** The data users of the tenant (member, dpo) may write; grantees only read within their grant. */
  const dataUser = (s: DataSession, action: 'records.write' | 'records.read' = 'records.write') => {
    const a = s.actor;
    authorizeData(a, action, s.tenantId, `${spec.table} are for the data users of a tenant`);
    if (a.kind !== 'tenant') throw new ForbiddenError(`${spec.table} are for the data users of a tenant`); // narrows the type; the policy decided
    return a;
  };
  const readScope = (s: DataSession): { books: string[] | 'all'; ids: string[] | null } => {
    if (isAllowed(s.actor, 'records.read-granted', { type: 'data', tenantId: s.tenantId })) {
      // The union of the grantee's active grants on this collection; none: the same refusal as for anyone.
      const grants = (s.grants ?? []).filter((g) => g.collection === spec.table);
      if (grants.length > 0) return { books: ['shared'], ids: grants.some((g) => g.recordIds === null) ? null : [...new Set(grants.flatMap((g) => g.recordIds ?? []))] };
    }
    const a = dataUser(s, 'records.read');
    const allBooks = isAllowed(a, 'records.read-all-books', { type: 'data', tenantId: s.tenantId });
    return { books: allBooks || !spec.books ? 'all' : ['shared', `personal:${a.accountId}`], ids: null };
  };
  /** The index plan is a tenant setting: its admin may see it, its data users see and change it (policy). */
  const planner = (actor: Actor, tenantId: string, action: 'index-plan.read' | 'index-plan.write') =>
    authorizeData(actor, action, tenantId, action === 'index-plan.read' ? `the blind-index plan of ${spec.table} is shown to the tenant's admin and data users` : `the blind-index plan of ${spec.table} is changed by the tenant's data users (member or dpo)`);
  const bookOf = (s: DataSession, book: 'shared' | 'personal') => (book === 'personal' && spec.books ? `personal:${dataUser(s).accountId}` : 'shared');

  const toRow = (s: DataSession, bits: number, id: string, input: RecordInput, book: unknown): Row => {
    const row: Row = { key_version: s.keyVersion };
    const key = fieldKeyOf(s, book);
    for (const [name, f] of fields) {
      const value = empty(input[name]) ? null : input[name]!.trim();
      if (f.class === 'plain') row[name] = value;
      else row[`${name}_ct`] = value === null ? null : aeadSeal(key, Buffer.from(value, 'utf8'), aad(s, id, name, s.keyVersion)).toString('base64url');
      if (f.class === 'searchable') row[`${name}_bidx`] = index(s, bits, name, value);
    }
    return row;
  };
  /** The view of a row just written from `input`: the values in clear are at hand, nothing to decrypt. */
  const viewOfInput = (row: Row, input: RecordInput): RecordView => {
    const out: Record<string, string | null> = {};
    for (const [name] of fields) out[name] = empty(input[name]) ? null : input[name]!.trim();
    return { ...out, id: row.id as string, book: row.book === 'shared' ? 'shared' : 'personal', createdAt: row.created_at as string, updatedAt: row.updated_at as string };
  };
  const view = (s: DataSession, row: Row): RecordView => {
    const out: Record<string, string | null> = {};
    for (const [name, f] of fields) {
      if (f.class === 'plain') out[name] = (row[name] as string | null) ?? null;
      else {
        const ct = row[`${name}_ct`] as string | null;
        // A record still under the previous secret (a rotation is running) is read with the previous key;
        // a personal record with its book's key, or, written before book keys existed, with the tenant's.
        const tenantKey = s.previous && row.key_version === s.previous.version && row.key_version !== s.keyVersion ? fieldKey({ ...s, dataKey: s.previous.dataKey }) : fieldKey(s);
        const sealed = ct === null ? null : Buffer.from(ct, 'base64url');
        const context = aad(s, row.id as string, name, row.key_version as number);
        if (sealed === null) out[name] = null;
        else if (!isPersonal(row.book)) out[name] = aeadOpen(tenantKey, sealed, context).toString('utf8');
        else {
          try {
            out[name] = aeadOpen(fieldKeyOf(s, row.book), sealed, context).toString('utf8');
          } catch (error) {
            if (bookKeys.get(s.dataKey)?.has(row.book as string) !== true) throw error;
            out[name] = aeadOpen(tenantKey, sealed, context).toString('utf8'); // before B.7
          }
        }
      }
    }
    return { ...out, id: row.id as string, book: row.book === 'shared' ? 'shared' : 'personal', createdAt: row.created_at as string, updatedAt: row.updated_at as string };
  };
  const event = (s: DataSession, action: string, id: string | undefined, input?: RecordInput, details?: Record<string, number>) => {
    const blindIndexes = input ? subjects(s, input) : [];
    return {
    actor: ledgerActor(s.actor),
    action,
    resource: { type: spec.table, ...(id ? { id } : {}), ...(blindIndexes.length > 0 ? { blindIndexes } : {}) },
    outcome: 'success' as const,
    ...(s.grants || details ? { details: { ...(s.grants ? { grants: s.grants.filter((g) => g.collection === spec.table).map((g) => g.id) } : {}), ...details } } : {}),
    };
  };
  /**
   * The events of a read of many records at once (list, search, export): the blind indexes of every data
   * subject among them (and of the subject searched for), a bounded number per entry, so that an Art. 15
   * export by subject finds every read of that person's data. Chunked because an entry's resource field is
   * bounded (MAX_ENTRY_FIELD_LENGTH); all chunks are appended in one transaction.
   */
  const perEntry = Math.floor((MAX_ENTRY_FIELD_LENGTH - `${spec.table}:-#bidx=`.length + 1) / 33); // 32 hex digits and a comma each
  const readEvents = (s: DataSession, action: string, found: readonly RecordView[], searched: RecordInput | undefined, details: Record<string, number>) => {
    const all = [...new Set([...(searched ? subjects(s, searched) : []), ...found.flatMap((r) => subjects(s, r))])].sort();
    const parts = Math.max(1, Math.ceil(all.length / perEntry));
    return Array.from({ length: parts }, (_, i) => {
      const base = event(s, action, undefined, undefined, { ...details, ...(parts > 1 ? { part: i + 1, parts } : {}) });
      const blindIndexes = all.slice(i * perEntry, (i + 1) * perEntry);
      return { ...base, resource: { type: spec.table, ...(blindIndexes.length > 0 ? { blindIndexes } : {}) } };
    });
  };
  /**
   * Records the event; `write` (the change it records) runs in the same transaction of the tenant
   * database, so a record and its ledger entry are committed together or not at all.
   */
  const record = async (s: DataSession, action: string, id: string, input?: RecordInput, write?: (trx: Kysely<any>) => Promise<unknown>) => { // eslint-disable-line @typescript-eslint/no-explicit-any -- the collection's table
    await withSubjects(s);
    return (await deps.tenantLedger(s.tenantId)).append(event(s, action, id, input), write as ((trx: unknown) => Promise<unknown>) | undefined);
  };
  const load = async (s: DataSession, id: string) => {
    const db = await deps.tenantDb(s.tenantId);
    const row = (await db.selectFrom(spec.table).selectAll().where('id', '=', id).executeTakeFirst()) as Row | undefined;
    const { books, ids } = readScope(s);
    if (!row || (books !== 'all' && !books.includes(row.book as string)) || (ids !== null && !ids.includes(id))) throw new NotFoundError(spec.table === 'contacts' ? 'contact' : spec.table.replace(/s$/, ''));
    return { db, row };
  };
  const scoped = (s: DataSession, q: any) => { // eslint-disable-line @typescript-eslint/no-explicit-any -- a Kysely select over the collection's table
    const { books, ids } = readScope(s);
    if (books !== 'all') q = q.where('book', 'in', books);
    if (ids !== null) q = ids.length > 0 ? q.where('id', 'in', ids) : q.where('id', '=', '');
    return q;
  };

  return {
    spec,

    async create(s: DataSession, book: 'shared' | 'personal', input: RecordInput): Promise<RecordView> {
      dataUser(s);
      validate(input);
      const id = newId();
      const now = deps.clock.now().toISOString();
      await loadBookKeys(s, [bookOf(s, book)], true);
      const row: Row = { id, book: bookOf(s, book), ...toRow(s, await indexBits(s.tenantId, s.keyVersion), id, input, bookOf(s, book)), created_at: now, updated_at: now };
      await record(s, 'record.create', id, input, (trx) => trx.insertInto(spec.table).values(row).execute());
      return viewOfInput(row, input);
    },

    async get(s: DataSession, id: string): Promise<RecordView> {
      const { row } = await load(s, id);
      await loadBookKeys(s, [row.book]);
      const found = view(s, row);
      await record(s, 'record.read', id, found);
      return found;
    },

    async update(s: DataSession, id: string, input: RecordInput): Promise<RecordView> {
      dataUser(s); // a grant gives read access only
      validate(input);
      const { row } = await load(s, id);
      await loadBookKeys(s, [row.book], true);
      const updated: Row = { ...row, ...toRow(s, await indexBits(s.tenantId, s.keyVersion), id, input, row.book), updated_at: deps.clock.now().toISOString() };
      await record(s, 'record.update', id, input, (trx) => trx.updateTable(spec.table).set(updated).where('id', '=', id).execute());
      return viewOfInput(updated, input);
    },

    async remove(s: DataSession, id: string): Promise<void> {
      dataUser(s);
      const { row } = await load(s, id);
      await loadBookKeys(s, [row.book]);
      const old = view(s, row);
      await record(s, 'record.delete', id, old, (trx) => trx.deleteFrom(spec.table).where('id', '=', id).execute());
    },

    /** Lists what the session may see, or finds exact matches (after normalisation) through the blind indexes. */
    async search(s: DataSession, query: Record<string, string | number | undefined>): Promise<RecordView[]> {
      let q = scoped(s, (await deps.tenantDb(s.tenantId)).selectFrom(spec.table).selectAll());
      if (query.book === 'shared' || query.book === 'personal') q = q.where('book', '=', bookOf(s, query.book));
      const wanted = searchable.filter((f) => typeof query[f] === 'string' && query[f] !== '');
      const bits = wanted.length > 0 ? await indexBits(s.tenantId, s.keyVersion) : 0;
      for (const field of wanted) q = q.where(`${field}_bidx`, '=', index(s, bits, field, query[field] as string));
      const limit = Math.min(typeof query.limit === 'number' ? query.limit : 500, 5000);
      const rows = (await q.orderBy('created_at').limit(limit).execute()) as Row[];
      await loadBookKeys(s, rows.map((r) => r.book));
      // Blind indexes coincide on purpose: decrypt the candidates and keep exact matches only.
      const norm = (f: string, v: string) => normaliseForIndex(spec.fields[f]!.index ?? 'text', v);
      const found = rows.map((r) => view(s, r)).filter((r) => wanted.every((f) => r[f] !== null && norm(f, r[f]!) === norm(f, query[f] as string)));
      const subjectQuery = Object.fromEntries(spec.subject.map(({ field }) => [field, typeof query[field] === 'string' ? (query[field] as string) : null]));
      await withSubjects(s);
      await (await deps.tenantLedger(s.tenantId)).append(readEvents(s, wanted.length > 0 ? 'record.search' : 'record.list', found, subjectQuery, { results: found.length }));
      return found;
    },

    /**
     * Imports CSV (header row names the fields; the required ones must be there). Each bad row is
     * reported with its line and what to fix and is skipped; `progress` is called as rows are done.
     */
    async importCsv(s: DataSession, book: 'shared' | 'personal', text: string, progress: (done: number, total: number) => void): Promise<{ created: number; errors: { line: number; message: string }[] }> {
      dataUser(s);
      let rows: string[][];
      try {
        rows = parseCsv(text);
      } catch (error) {
        throw new ValidationError(`the file is not valid CSV: ${(error as Error).message}`);
      }
      const header = (rows.shift() ?? []).map((h) => h.trim().toLowerCase());
      const unknown = header.filter((h) => !columns.includes(h));
      const missing = fields.filter(([name, f]) => f.required && !header.includes(name)).map(([name]) => name);
      if (missing.length > 0 || unknown.length > 0) {
        throw new ValidationError(`the first line must name the columns: ${columns.join(', ')}${missing.length > 0 ? `; missing: ${missing.join(', ')}` : ''}${unknown.length > 0 ? `; unknown: ${unknown.join(', ')}` : ''}`);
      }
      const errors: { line: number; message: string }[] = [];
      const ledger = await deps.tenantLedger(s.tenantId);
      await loadBookKeys(s, [bookOf(s, book)], true);
      await withSubjects(s);
      const bits = await indexBits(s.tenantId, s.keyVersion);
      let created = 0;
      for (let start = 0; start < rows.length; start += IMPORT_BATCH) {
        const batch: { row: Row; input: RecordInput }[] = [];
        rows.slice(start, start + IMPORT_BATCH).forEach((cells, k) => {
          const input: RecordInput = Object.fromEntries(header.map((h, c) => [h, (cells[c] ?? '').trim() || null]));
          try {
            validate(input);
          } catch (error) {
            errors.push({ line: start + k + 2, message: (error as Error).message });
            return;
          }
          const id = newId();
          const now = deps.clock.now().toISOString();
          batch.push({ row: { id, book: bookOf(s, book), ...toRow(s, bits, id, input, bookOf(s, book)), created_at: now, updated_at: now }, input });
        });
        if (batch.length > 0) {
          // The batch and its ledger entries in one transaction.
          await ledger.append(
            batch.map((b) => event(s, 'record.import', b.row.id as string, b.input)),
            async (trx) => {
              for (let i = 0; i < batch.length; i += 100) await (trx as Kysely<any>).insertInto(spec.table).values(batch.slice(i, i + 100).map((b) => b.row)).execute(); // eslint-disable-line @typescript-eslint/no-explicit-any -- the collection's table
            },
          );
          created += batch.length;
        }
        progress(Math.min(start + IMPORT_BATCH, rows.length), rows.length);
      }
      return { created, errors };
    },

    /** Every record the session may see, decrypted, for an export (the ledger names the count and every data subject). */
    async exportAll(s: DataSession): Promise<RecordView[]> {
      const rows = (await scoped(s, (await deps.tenantDb(s.tenantId)).selectFrom(spec.table).selectAll()).orderBy('created_at').execute()) as Row[];
      await loadBookKeys(s, rows.map((r) => r.book));
      const found = rows.map((r) => view(s, r));
      await withSubjects(s);
      await (await deps.tenantLedger(s.tenantId)).append(readEvents(s, 'record.export', found, undefined, { records: found.length }));
      return found;
    },

    /**
     * Re-encrypts every record still under the `from` key (rotation of the tenant secret): decrypted with
     * the old data key, sealed and blind-indexed again with the new one. Resumable: each batch only takes
     * records still at the old version, and each row is replaced only if it is still at that version.
     */
    async reencrypt(tenantId: string, from: { dataKey: Buffer; version: number }, to: { dataKey: Buffer; version: number }, progress: (done: number) => void): Promise<number> {
      const system: Actor = { kind: 'system', name: 'cli' };
      const old: DataSession = { actor: system, tenantId, dataKey: from.dataKey, keyVersion: from.version };
      const next: DataSession = { actor: system, tenantId, dataKey: to.dataKey, keyVersion: to.version };
      const db = await deps.tenantDb(tenantId);
      if (spec.books) {
        // The book keys themselves stay; each is wrapped again under the new data key (resumable: by version).
        const wraps = (await (db as Kysely<any>).selectFrom('book_keys').selectAll().where('key_version', '=', from.version).execute()) as { book: string; wrapped: string }[]; // eslint-disable-line @typescript-eslint/no-explicit-any -- this module's table
        for (const w of wraps) {
          const key = unwrapWithKey(w.wrapped, from.dataKey, bookKeyContext(tenantId, w.book, from.version));
          await (db as Kysely<any>).updateTable('book_keys').set({ wrapped: wrapWithKey(key, to.dataKey, bookKeyContext(tenantId, w.book, to.version)), key_version: to.version }).where('book', '=', w.book).where('key_version', '=', from.version).execute(); // eslint-disable-line @typescript-eslint/no-explicit-any -- this module's table
        }
      }
      const both: DataSession = { ...next, previous: from };
      const bits = await indexBits(tenantId, to.version); // the new version's plan: the tenant's current expected row count
      let done = 0;
      for (;;) {
        const rows = (await db.selectFrom(spec.table).selectAll().where('key_version', '=', from.version).limit(IMPORT_BATCH).execute()) as Row[];
        if (rows.length === 0) return done;
        await loadBookKeys(both, rows.map((r) => r.book));
        const booksOfOld = bookKeys.get(both.dataKey);
        if (booksOfOld) bookKeys.set(old.dataKey, booksOfOld); // the same book keys under either data key
        await db.transaction().execute(async (trx) => {
          for (const row of rows) {
            const plain = view(old, row);
            const input: RecordInput = Object.fromEntries(columns.map((c) => [c, plain[c] ?? null]));
            await trx.updateTable(spec.table).set(toRow(next, bits, row.id as string, input, row.book)).where('id', '=', row.id).where('key_version', '=', from.version).execute();
          }
        });
        done += rows.length;
        progress(done);
      }
    },

    /**
     * The blind-index plan of this collection: the tenant's expected row count, the length a new key
     * version will get from it, and the length each existing key version's index was built with.
     */
    async indexPlan(actor: Actor, tenantId: string): Promise<{ collection: string; expectedRows: number; nextBits: number; built: { keyVersion: number; bits: number }[] }> {
      planner(actor, tenantId, 'index-plan.read');
      const db = await deps.tenantDb(tenantId);
      const expectedRows = await expectedRowsOf(db);
      const prefix = plannedBitsKey(spec.table, 0).replace(/0$/, '');
      const rows = (await db.selectFrom('tenant_meta').select(['key', 'value']).where('key', 'like', `${prefix}%`).execute()) as { key: string; value: string }[];
      const built = rows.map((r) => ({ keyVersion: Number(r.key.slice(prefix.length)), bits: Number(r.value) })).sort((a, b) => a.keyVersion - b.keyVersion);
      return { collection: spec.table, expectedRows, nextBits: blindIndexBits(expectedRows), built };
    },

    /**
     * Sets the tenant's expected row count (a count, no personal data: the tenant's admin may set it too).
     * Existing indexes keep their length; the next rotation of the tenant secret re-indexes with the new one.
     */
    async setExpectedRows(actor: Actor, tenantId: string, expectedRows: number): Promise<{ collection: string; expectedRows: number; nextBits: number }> {
      planner(actor, tenantId, 'index-plan.write');
      const nextBits = blindIndexBits(expectedRows);
      await (await deps.tenantLedger(tenantId)).append(
        { actor: ledgerActor(actor), action: 'record.index-plan', resource: { type: spec.table }, outcome: 'success', details: { expectedRows, nextBits } },
        async (trx) => {
          await (trx as Kysely<any>) // eslint-disable-line @typescript-eslint/no-explicit-any -- tenant database
            .insertInto('tenant_meta')
            .values({ key: expectedRowsKey(spec.table), value: String(expectedRows) })
            .onConflict((oc: any) => oc.column('key').doUpdateSet({ value: String(expectedRows) })) // eslint-disable-line @typescript-eslint/no-explicit-any -- Kysely's builder over an untyped database
            .execute();
        },
      );
      return { collection: spec.table, expectedRows, nextBits };
    },

    /** Deletes a user's personal book (the user is being deleted); needs no key: ciphertext only. */
    async deletePersonalBook(tenantId: string, accountId: string): Promise<number> {
      if (!spec.books) return 0;
      const db = await deps.tenantDb(tenantId);
      // The book's own key goes first (B.7): whatever of the book survives opens nothing any more.
      await (db as Kysely<any>).deleteFrom('book_keys').where('book', '=', `personal:${accountId}`).execute(); // eslint-disable-line @typescript-eslint/no-explicit-any -- this module's table
      return Number((await db.deleteFrom(spec.table).where('book', '=', `personal:${accountId}`).executeTakeFirst()).numDeletedRows);
    },
  };
}

export type Collection = ReturnType<typeof createCollection>;

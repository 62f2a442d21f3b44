import { createHash, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { blindIndex, hkdf32, unwrapWithKey, wrapWithKey } from '../crypto/envelope.js';

/**
 * The keys of the ledger's data-subject pseudonyms (Art. 15), one per kind (e-mail address, name).
 *
 * They must outlive the tenant data key: an export by person has to find the entries written before the
 * last rotation of the tenant secret or the installer's handover as well, so the pseudonym cannot be keyed
 * with K_t itself. Each subject key is stored once per tenant, wrapped under K_t in `book_keys` (rows
 * `ledger-subject:<kind>`), and re-wrapped — never changed — when the contacts collection re-encrypts at a
 * rotation. A tenant's first data session creates them as HKDF(K_t, "bidx/ledger-subject/<kind>") of the
 * key in use then: exactly the key the ledger used before subject keys were stored, so entries written
 * since the last rotation keep their pseudonyms, and two nodes that create them at once create the same key.
 */
export type SubjectKind = 'email' | 'name';
export type SubjectKeys = Readonly<Record<SubjectKind, Buffer>>;
export const SUBJECT_KINDS: readonly SubjectKind[] = ['email', 'name'];

/** What a subject key is read with: the session's data key, and during a rotation the previous one. */
export interface SubjectKeySession {
  tenantId: string;
  dataKey: Buffer;
  keyVersion: number;
  previous?: { dataKey: Buffer; version: number } | undefined;
}

const rowOf = (kind: SubjectKind) => `ledger-subject:${kind}`;
const contextOf = (tenantId: string, kind: SubjectKind, version: number) => `book-key|${tenantId}|${rowOf(kind)}|v${version}`;

/** The pseudonym of a data subject in the ledger: full length (16 bytes), so an export finds exactly one person. */
export function ledgerSubjectIndex(keys: SubjectKeys, kind: SubjectKind, value: string): string {
  return blindIndex(keys[kind], kind === 'email' ? 'email' : 'text', value, 16);
}

export function createSubjectKeys(deps: { tenantDb: (tenantId: string) => Promise<Kysely<any>>; clock: { now(): Date } }) { // eslint-disable-line @typescript-eslint/no-explicit-any -- book_keys belongs to the records module
  // Cached per tenant and key version; a cached entry is only handed to a session holding the same data key.
  const cache = new Map<string, { check: Buffer; keys: SubjectKeys }>();
  const checkOf = (dataKey: Buffer) => createHash('sha256').update('tresor/subject-key-cache|').update(dataKey).digest();

  async function load(s: SubjectKeySession): Promise<SubjectKeys> {
    const db = await deps.tenantDb(s.tenantId);
    const read = async () =>
      (await db.selectFrom('book_keys').select(['book', 'wrapped', 'key_version']).where('book', 'in', SUBJECT_KINDS.map(rowOf)).execute()) as { book: string; wrapped: string; key_version: number }[];
    let rows = await read();
    const missing = SUBJECT_KINDS.filter((kind) => !rows.some((r) => r.book === rowOf(kind)));
    if (missing.length > 0) {
      // During a rotation the pseudonyms so far were keyed with the previous data key: keep those.
      const seed = s.previous?.dataKey ?? s.dataKey;
      for (const kind of missing) {
        const key = hkdf32(seed, `bidx/ledger-subject/${kind}`);
        await db
          .insertInto('book_keys')
          .values({ book: rowOf(kind), wrapped: wrapWithKey(key, s.dataKey, contextOf(s.tenantId, kind, s.keyVersion)), key_version: s.keyVersion, created_at: deps.clock.now().toISOString() })
          .onConflict((oc: any) => oc.column('book').doNothing()) // eslint-disable-line @typescript-eslint/no-explicit-any -- Kysely's builder over an untyped database
          .execute();
      }
      rows = await read();
    }
    const keys = {} as Record<SubjectKind, Buffer>;
    for (const kind of SUBJECT_KINDS) {
      const row = rows.find((r) => r.book === rowOf(kind))!;
      const dataKey = row.key_version === s.keyVersion ? s.dataKey : s.previous && row.key_version === s.previous.version ? s.previous.dataKey : undefined;
      if (!dataKey) throw new Error(`the ledger subject key is wrapped under key version ${row.key_version}, this session holds version ${s.keyVersion}`);
      keys[kind] = unwrapWithKey(row.wrapped, dataKey, contextOf(s.tenantId, kind, row.key_version));
    }
    return keys;
  }

  return {
    /** The tenant's subject keys for a data session (created at the tenant's first use). */
    async keysOf(s: SubjectKeySession): Promise<SubjectKeys> {
      const id = `${s.tenantId}|${s.keyVersion}|${s.previous?.version ?? ''}`;
      const check = checkOf(s.dataKey);
      const hit = cache.get(id);
      if (hit && timingSafeEqual(hit.check, check)) return hit.keys;
      const keys = await load(s);
      if (cache.size > 10_000) cache.clear();
      cache.set(id, { check, keys });
      return keys;
    },
  };
}

export type SubjectKeyStore = ReturnType<typeof createSubjectKeys>;

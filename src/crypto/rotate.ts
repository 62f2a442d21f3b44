import type { Kysely } from 'kysely';
import type { CipherService } from './cipher-service.js';

/**
 * Everything sealed under the master key, table by table, so that `tresor keys rotate-master` can seal
 * it again under the current version (resumably: a value already under the current version is skipped,
 * and each value is replaced on its own, only if nobody changed it meanwhile) and `retire-master` can
 * prove that an old version is no longer used before it is dropped.
 */
export interface SealedColumn {
  /** Where it is, for progress messages: "control" or "tenant <id>". */
  database: string;
  db: Kysely<any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- one loop over differently typed tables
  table: string;
  key: string;
  column: string;
  aad(row: Record<string, unknown>): string;
  /** Older contexts a value may still be sealed under; it is sealed again under `aad`. */
  legacyAad?(row: Record<string, unknown>): string;
}

async function openAny(ring: CipherService, c: SealedColumn, sealed: string, row: Record<string, unknown>): Promise<Buffer> {
  try {
    return await ring.open(sealed, c.aad(row));
  } catch (error) {
    if (!c.legacyAad) throw error;
    return ring.open(sealed, c.legacyAad(row));
  }
}

const tryOpen = async (ring: CipherService, sealed: string, aad: string) => {
  try {
    await ring.open(sealed, aad);
    return true;
  } catch {
    return false;
  }
};

const versionOf = (sealed: string) => Number(/^mk(\d+)\./.exec(sealed)?.[1] ?? NaN);

export async function resealColumn(ring: CipherService, c: SealedColumn): Promise<{ resealed: number; current: number }> {
  const { current } = await ring.versions();
  const rows = (await c.db.selectFrom(c.table).select([c.key, c.column]).execute()) as Record<string, unknown>[];
  let resealed = 0;
  let already = 0;
  for (const row of rows) {
    const sealed = row[c.column];
    if (typeof sealed !== 'string') continue;
    const plain = await openAny(ring, c, sealed, row);
    if (versionOf(sealed) === current && (await tryOpen(ring, sealed, c.aad(row)))) {
      already++;
      continue;
    }
    const again = await ring.seal(plain, c.aad(row));
    const result = await c.db.updateTable(c.table).set({ [c.column]: again }).where(c.key, '=', row[c.key]).where(c.column, '=', sealed).executeTakeFirst();
    resealed += Number(result.numUpdatedRows);
  }
  return { resealed, current: already };
}

/** How many sealed values use each master key version. */
export async function countVersions(columns: readonly SealedColumn[]): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const c of columns) {
    const rows = (await c.db.selectFrom(c.table).select([c.column]).execute()) as Record<string, unknown>[];
    for (const row of rows) {
      const sealed = row[c.column];
      if (typeof sealed === 'string') counts.set(versionOf(sealed), (counts.get(versionOf(sealed)) ?? 0) + 1);
    }
  }
  return counts;
}

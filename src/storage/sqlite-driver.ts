import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * better-sqlite3 12 (Node's raw ObjectWrap) aborts on Node ≥ 24.19 when a statement is garbage
 * collected; 13 (Node-API) fixes that but needs Node ≥ 22. Both are installed (12 under the alias
 * `better-sqlite3-node20`), and the one that fits the running Node is loaded.
 */
const require = createRequire(import.meta.url);
const nodeMajor = Number(process.versions.node.split('.')[0]);

export const SqliteDatabase = (nodeMajor >= 22 ? require('better-sqlite3') : require('better-sqlite3-node20')) as typeof BetterSqlite3;
export type SqliteDatabase = BetterSqlite3.Database;

/**
 * The database as Kysely's SQLite dialect sees it, with prepared statements kept for reuse: Kysely asks
 * for `prepare(sql)` on every query, and preparing costs more than running a small insert. Kysely runs
 * one query at a time on its single SQLite connection (a stream holds it until done), so a statement is
 * never used twice at once. The cache is bounded; the least recently used statement goes first.
 */
export function withStatementCache(database: SqliteDatabase, max = 512): { close(): void; prepare(sql: string): BetterSqlite3.Statement } {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => {
      cache.clear();
      database.close();
    },
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (statement) {
        cache.delete(sql); // re-inserted below: the Map's order is the recency order
      } else {
        statement = database.prepare(sql);
        if (cache.size >= max) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, statement);
      return statement;
    },
  };
}

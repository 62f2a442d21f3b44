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

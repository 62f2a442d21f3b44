import { Transform } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Files stream through the server in pieces, each a buffer of its own: Node allocates one per TLS record
 * that arrives (16 KiB) and one per piece read from disk. Each dies at once, but V8 frees it only when its
 * young generation fills — rarely, as streaming allocates few JavaScript objects — or when dead buffers pass
 * its external-memory limit (64 MiB). So every large file left the server holding some 60 MiB of dead
 * buffers, more than its whole live heap (bench/RESULTS.md, "2026-12-03 21:06 UTC").
 *
 * Every {@link STEP} bytes streamed (all transfers together) one young-generation collection (a scavenge:
 * the live young objects are few; 0.2–5 ms measured) frees them. For that the buffers in flight
 * must die young: the transfer streams queue at most about 3 MiB, so a buffer does not live through two
 * collections and move to the old generation, which only a full collection frees.
 */
export const STEP = 16 * 1024 * 1024;

type Collect = (options: { type: 'minor' }) => void;
let collect: Collect | null | undefined;

/** V8's collector function: `gc` when node runs with --expose-gc, else taken as Jest's leak detector takes it. */
function collector(): Collect | null {
  if (collect !== undefined) return collect;
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return (collect = exposed as Collect);
  try {
    // The flag makes V8 install `gc` in contexts made from now on: one new context hands it over, and the
    // flag goes off again, so no other context (and no code of ours or of a library) sees a global `gc`.
    setFlagsFromString('--expose-gc');
    const taken: unknown = runInNewContext('gc');
    collect = typeof taken === 'function' ? (taken as Collect) : null;
  } catch {
    collect = null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return collect;
}

let since = 0;
let collections = 0;

/** Counts bytes a transfer stream moved; every {@link STEP} bytes the young generation is collected. */
export function streamed(bytes: number): void {
  since += bytes;
  if (since < STEP) return;
  since = 0;
  const gc = collector();
  if (!gc) return;
  gc({ type: 'minor' });
  collections++;
}

/** How many collections {@link streamed} has run in this process (for tests and diagnostics). */
export const streamedCollections = () => collections;

/** A pass-through stream that counts what goes through it with {@link streamed}. */
export const countStreamed = () =>
  new Transform({
    transform(chunk: Buffer, _encoding, done) {
      streamed(chunk.length);
      done(null, chunk);
    },
  });

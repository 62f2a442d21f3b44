/**
 * Checks the entries of a large ledger in worker threads (`verify-worker.ts`): positions [0, end) are cut
 * into ranges, each idle worker gets the next range, and the results come back in ledger order for the
 * main thread to fold into the tree. A range that stops (a finding, or the end of the entries) ends the
 * dispatch: nothing after it can be trusted, so nothing after it is checked.
 */
import { existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { DatabaseLocation } from '../storage/storage.js';
import type { RangeResult } from './verify-range.js';
import type { FromVerifyWorker, ToVerifyWorker, VerifyWorkerData } from './verify-worker.js';

export interface VerifyThreads {
  /** Worker threads; 0 checks every entry on the calling thread. */
  workers: number;
  /** Positions per range handed to a worker. */
  rangeSize: number;
  /** Ledgers with fewer entries are checked on the calling thread (starting workers costs more than it saves). */
  minEntries: number;
}

/**
 * Defaults measured with bench/ledger.bench.ts (bench/RESULTS.md): one worker per core, but at most 4 (the
 * main thread folds the tree and hashes checkpoints meanwhile, and each worker holds a database connection).
 */
export const DEFAULT_VERIFY_THREADS: VerifyThreads = {
  workers: Math.max(1, Math.min(4, availableParallelism())),
  rangeSize: 20_000,
  minEntries: 50_000,
};

/** The logic files a worker runs; from the TypeScript sources (vitest) their build must be current. */
const WORKER_MODULES = ['verify-worker', 'verify-range', 'entry', 'merkle'];

/**
 * The worker's script. From dist/ (the server, the CLI, the benchmarks) it sits beside this file. From the
 * TypeScript sources (vitest) there is no JavaScript beside this file, and Node 20 cannot run TypeScript
 * in a worker, so the build under dist/ runs instead — refused when older than the sources.
 */
export function verifyWorkerScript(here = import.meta.url): URL {
  if (here.endsWith('.js')) return new URL('./verify-worker.js', here);
  const built = new URL('../../dist/ledger/', here);
  for (const name of WORKER_MODULES) {
    const source = fileURLToPath(new URL(`./${name}.ts`, here));
    const output = fileURLToPath(new URL(`${name}.js`, built));
    if (!existsSync(output) || statSync(output).mtimeMs < statSync(source).mtimeMs) {
      throw new Error(
        `verifying a large ledger from the TypeScript sources runs its worker threads from dist/ledger/, but ${output} is missing or older than ${source}: run \`npm run build:server\` first`,
      );
    }
  }
  return new URL('verify-worker.js', built);
}

/**
 * The checked ranges of [0, end), in ledger order. Stop consuming at any time: the workers are closed
 * when the generator returns (or throws, when a worker fails).
 */
export async function* verifyInWorkers(opts: {
  location: DatabaseLocation;
  tenantId: string | undefined;
  end: number;
  workers: number;
  rangeSize: number;
}): AsyncGenerator<RangeResult> {
  const { end, rangeSize } = opts;
  const ranges = Math.ceil(end / rangeSize);
  if (ranges === 0) return;
  const script = verifyWorkerScript();
  const workerData: VerifyWorkerData = { location: opts.location, tenantId: opts.tenantId, end };
  const count = Math.max(1, Math.min(opts.workers, ranges));
  // Results waiting for their turn are bounded: a worker gets a new range only within this window.
  const window = count * 4;
  const results = new Map<number, RangeResult>();
  const idle: Worker[] = [];
  const workers: { worker: Worker; exited: Promise<void> }[] = [];
  let dispatched = 0;
  let consumed = 0;
  let stopAt = Number.POSITIVE_INFINITY;
  let closing = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const dispatch = (worker: Worker) => {
    if (closing || dispatched >= ranges || dispatched > stopAt || dispatched >= consumed + window) {
      idle.push(worker);
      return;
    }
    const id = dispatched++;
    const message: ToVerifyWorker = { type: 'range', id, from: id * rangeSize, to: Math.min(end, (id + 1) * rangeSize) };
    worker.postMessage(message);
  };
  const fail = (error: Error) => {
    failure ??= error;
    notify();
  };

  try {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(script, { workerData });
      const exited = new Promise<void>((resolve) =>
        worker.once('exit', (code) => {
          if (!closing && code !== 0) fail(new Error(`a ledger verification worker thread stopped unexpectedly (exit code ${code})`));
          resolve();
        }),
      );
      worker.on('error', (error: Error) => fail(new Error(`a ledger verification worker thread failed: ${error.message}`)));
      worker.on('message', (message: FromVerifyWorker) => {
        results.set(message.id, message.result);
        if (message.result.stop !== undefined) stopAt = Math.min(stopAt, message.id);
        dispatch(worker);
        notify();
      });
      workers.push({ worker, exited });
      dispatch(worker);
    }
    for (let k = 0; k < ranges; k++) {
      consumed = k;
      while (idle.length > 0 && dispatched < ranges && dispatched <= stopAt && dispatched < consumed + window) dispatch(idle.pop()!);
      let result: RangeResult | undefined;
      while ((result = results.get(k)) === undefined) {
        if (failure) throw failure;
        await new Promise<void>((resolve) => (wake = resolve));
      }
      results.delete(k);
      yield result;
      if (result.stop !== undefined) return;
    }
  } finally {
    closing = true;
    // A busy worker finishes its range first (its message queue is in order), then closes its connection.
    for (const { worker } of workers) worker.postMessage({ type: 'close' } satisfies ToVerifyWorker);
    await Promise.all(workers.map((w) => w.exited));
  }
}

import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyWorkerScript } from './verify-parallel.js';

describe('the worker script of parallel ledger verification', () => {
  let root: string | undefined;
  afterEach(() => {
    if (root) rmSync(root, { recursive: true, force: true });
    root = undefined;
  });

  it('runs beside the built module, and from the sources only a build that is not older than them', () => {
    expect(verifyWorkerScript('file:///opt/tresor/dist/ledger/verify-parallel.js').href).toBe('file:///opt/tresor/dist/ledger/verify-worker.js');

    root = mkdtempSync(join(tmpdir(), 'tresor-worker-script-'));
    mkdirSync(join(root, 'src', 'ledger'), { recursive: true });
    mkdirSync(join(root, 'dist', 'ledger'), { recursive: true });
    const names = ['verify-worker', 'verify-range', 'entry', 'merkle'];
    for (const name of names) writeFileSync(join(root, 'src', 'ledger', `${name}.ts`), '');
    const here = pathToFileURL(join(root, 'src', 'ledger', 'verify-parallel.ts')).href;

    // No build at all: refused, naming the file and the command that fixes it.
    expect(() => verifyWorkerScript(here)).toThrow(/dist\/ledger\/verify-worker\.js is missing or older than .*src\/ledger\/verify-worker\.ts: run `npm run build:server` first/);

    const then = new Date(Date.now() - 60_000);
    const later = new Date(Date.now() + 60_000);
    for (const name of names) {
      writeFileSync(join(root, 'dist', 'ledger', `${name}.js`), '');
      utimesSync(join(root, 'dist', 'ledger', `${name}.js`), later, later);
    }
    expect(verifyWorkerScript(here).href).toBe(pathToFileURL(join(root, 'dist', 'ledger', 'verify-worker.js')).href);

    // One stale output (its source changed after the build) is enough to refuse.
    utimesSync(join(root, 'dist', 'ledger', 'entry.js'), then, then);
    expect(() => verifyWorkerScript(here)).toThrow(/entry\.js is missing or older than .*entry\.ts/);
  });
});

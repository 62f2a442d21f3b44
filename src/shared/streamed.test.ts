import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { countStreamed, STEP, streamedCollections } from './streamed.js';

const MIB = 1024 * 1024;

/** Streams `total` bytes in fresh 64 KiB buffers (as a download's disk reads are) and returns the peak of live + dead ArrayBuffer memory. */
async function streamFresh(total: number, through: () => NodeJS.ReadWriteStream[]): Promise<number> {
  let peak = 0;
  const source = Readable.from(
    (function* () {
      for (let sent = 0; sent < total; sent += 64 * 1024) yield Buffer.allocUnsafeSlow(64 * 1024).fill(1);
    })(),
  );
  const sink = new Writable({
    write(_chunk, _encoding, done) {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
      done();
    },
  });
  await pipeline([source, ...through(), sink]);
  return peak / MIB;
}

describe('young-generation collection while files stream', () => {
  it('collects once every STEP bytes streamed, and the dead buffers of a long stream stay far below what V8 lets pile up', async () => {
    const before = streamedCollections();
    const total = 16 * STEP; // 256 MiB
    const counted = await streamFresh(total, () => [countStreamed()]);
    expect(streamedCollections() - before).toBe(16);
    // Without the collections V8 waits for its external-memory limit (64 MiB of dead buffers) or a full young
    // generation; with them, at most a step's worth (16 MiB) plus what was already there lies dead.
    const uncounted = await streamFresh(total, () => []);
    expect(counted, `peak with collections ${counted.toFixed(1)} MiB, without ${uncounted.toFixed(1)} MiB`).toBeLessThan(uncounted);
    expect(counted).toBeLessThan(48);
  });

  it('takes V8\'s collector without leaving a global gc behind, here or in contexts made afterwards', async () => {
    const hadGc = 'gc' in globalThis; // a node started with --expose-gc has one of its own
    await streamFresh(STEP, () => [countStreamed()]);
    expect('gc' in globalThis).toBe(hadGc);
    expect(runInNewContext('typeof gc')).toBe('undefined');
  });
});

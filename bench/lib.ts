/** Small helpers shared by the benchmarks: timing, percentiles, peak memory, a plain table. */
import { performance } from 'node:perf_hooks';

export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await work();
  return { ms: performance.now() - start, value };
}

export function percentile(sortedMs: readonly number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN;
  const index = Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1);
  return sortedMs[Math.max(0, index)]!;
}

export function latencies(samplesMs: number[]): { p50: number; p95: number; p99: number; max: number } {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? Number.NaN };
}

/** Samples RSS every 20 ms; `maxRSS` from the kernel covers what sampling misses. */
export function rssSampler(): { stop(): { peakRssMiB: number; maxRssMiB: number } } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      return { peakRssMiB: round(peak / 2 ** 20), maxRssMiB: round(process.resourceUsage().maxRSS / 1024) };
    },
  };
}

export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
export const perSecond = (count: number, ms: number) => Math.round((count / ms) * 1000);

export function table(title: string, rows: Record<string, string | number>[]): void {
  process.stdout.write(`\n## ${title}\n\n`);
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]!);
  process.stdout.write(`| ${columns.join(' | ')} |\n|${columns.map(() => '---').join('|')}|\n`);
  for (const row of rows) process.stdout.write(`| ${columns.map((c) => String(row[c] ?? '')).join(' | ')} |\n`);
}

/** `--name value` from argv, with a default. */
export function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

/**
 * Login benchmark (issue 4): logins per second at the default Argon2id cost through the identity
 * service, against raw @node-rs/argon2 verifications at the same parameters in the same run; and peak
 * memory while 1,000 login attempts arrive at once (half right, half wrong, from 1,000 addresses).
 *
 *   npm run bench:login -- [--logins 40] [--burst 1000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hash, verify, Algorithm } from '@node-rs/argon2';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { openCore } from '../src/core.js';
import { DomainError } from '../src/shared/errors.js';
import { latencies, option, perSecond, round, rssSampler, table, timed } from './lib.js';

const LOGINS = option('logins', 40);
const BURST = option('burst', 1_000);
const PASSWORD = 'Quiet-Lantern-Harbor-7-Meadow';

const dir = mkdtempSync(join(tmpdir(), 'tresor-bench-login-'));
const config = loadConfig({ cwd: dir, env: { TRESOR_DATA_DIR: join(dir, 'data'), TRESOR_MASTER_KEY_FILE: join(dir, 'master.key'), TRESOR_LOG_LEVEL: 'silent' } });
const core = await openCore(config, { log: pino({ level: 'silent' }) });
process.stdout.write(`# Login benchmark — node ${process.version}, ${new Date().toISOString()}\n`);
process.stdout.write(`Argon2id m=${config.argon2.memory_kib} KiB, t=${config.argon2.iterations}, p=${config.argon2.parallelism}\n`);
try {
  const { oneTimePassword } = await core.identity.createAccount({ login: 'bench', tier: 'operator', resellerId: null });
  const params = { algorithm: Algorithm.Argon2id, memoryCost: config.argon2.memory_kib, timeCost: config.argon2.iterations, parallelism: config.argon2.parallelism };
  const stored = await hash(PASSWORD, params);

  const raw: number[] = [];
  const rawTotal = await timed(async () => {
    for (let i = 0; i < LOGINS; i++) raw.push((await timed(() => verify(stored, PASSWORD))).ms);
  });
  const rawParallel = await timed(() => Promise.all(Array.from({ length: LOGINS }, () => verify(stored, PASSWORD))));
  const service: number[] = [];
  const serviceTotal = await timed(async () => {
    for (let i = 0; i < LOGINS; i++) service.push((await timed(() => core.identity.login('bench', oneTimePassword, `127.0.1.${i % 250}`))).ms);
  });
  const serviceParallel = await timed(() => Promise.all(Array.from({ length: LOGINS }, (_, i) => core.identity.login('bench', oneTimePassword, `127.0.2.${i % 250}`))));
  const lr = latencies(raw);
  const ls = latencies(service);
  table('logins per second', [
    { what: 'raw argon2 verify, one after another (baseline)', n: LOGINS, 'per second': perSecond(LOGINS, rawTotal.ms), 'p50 ms': round(lr.p50), 'p99 ms': round(lr.p99) },
    { what: 'raw argon2 verify, all at once (baseline: every core)', n: LOGINS, 'per second': perSecond(LOGINS, rawParallel.ms), 'p50 ms': '-', 'p99 ms': '-' },
    { what: 'identity.login (throttle, hash, session, ledger), one after another', n: LOGINS, 'per second': perSecond(LOGINS, serviceTotal.ms), 'p50 ms': round(ls.p50), 'p99 ms': round(ls.p99) },
    { what: 'identity.login, all at once (at most 2 hashes run at a time)', n: LOGINS, 'per second': perSecond(LOGINS, serviceParallel.ms), 'p50 ms': '-', 'p99 ms': '-' },
  ]);

  // User enumeration by timing: a wrong password for a known account vs. any password for an unknown one.
  const ENUM = option('enum', 100);
  const known: string[] = [];
  for (let i = 0; i < ENUM; i++) known.push((await core.identity.createAccount({ login: `known${i}`, tier: 'operator', resellerId: null })) && `known${i}`);
  const timeFailure = async (login: string, source: string) => {
    const t = await timed(() => core.identity.login(login, 'wrong password 123', source).catch(() => undefined));
    return t.ms;
  };
  const knownMs: number[] = [];
  const unknownMs: number[] = [];
  for (let i = 0; i < ENUM; i++) {
    knownMs.push(await timeFailure(known[i]!, `127.0.3.${i}`));
    unknownMs.push(await timeFailure(`unknown${i}@example.test`, `127.0.4.${i}`));
  }
  const lk = latencies(knownMs);
  const lu = latencies(unknownMs);
  table('user enumeration by timing (failed logins, interleaved)', [
    { account: 'known, wrong password', n: ENUM, 'p50 ms': round(lk.p50, 2), 'p95 ms': round(lk.p95, 2), 'max ms': round(lk.max, 2) },
    { account: 'unknown (dummy hash)', n: ENUM, 'p50 ms': round(lu.p50, 2), 'p95 ms': round(lu.p95, 2), 'max ms': round(lu.max, 2) },
  ]);

  // 1,000 attempts at once: half with the right password, half with a wrong one, each from its own address.
  const before = process.memoryUsage().rss;
  const memory = rssSampler();
  const outcomes = new Map<string, number>();
  const burst = await timed(() =>
    Promise.all(
      Array.from({ length: BURST }, async (_, i) => {
        const source = `127.${10 + Math.floor(i / 250)}.${i % 250}.1`;
        try {
          await core.identity.login(i % 2 === 0 ? 'bench' : `nobody${i}@example.test`, i % 2 === 0 ? oneTimePassword : 'wrong password 123', source);
          outcomes.set('ok', (outcomes.get('ok') ?? 0) + 1);
        } catch (error) {
          const code = error instanceof DomainError ? error.code : 'error';
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
        }
      }),
    ),
  );
  const mem = memory.stop();
  table(`${BURST} login attempts at once`, [
    {
      seconds: round(burst.ms / 1000, 2),
      'attempts per second': perSecond(BURST, burst.ms),
      outcomes: [...outcomes].map(([k, v]) => `${k}: ${v}`).join(', '),
      'RSS before MiB': round(before / 2 ** 20),
      'peak RSS MiB': mem.peakRssMiB,
      'Argon2 memory if all ran at once MiB': round((BURST * config.argon2.memory_kib) / 1024),
    },
  ]);
} finally {
  await core.close();
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Transfers benchmark (issue 6): a real `tresor serve` in its own process. The server-throughput rows use
 * curl as the client (next to a bare Node HTTPS route in this process with the same client); the end-to-end
 * rows run the sender and recipient in this process with the same code as `tresor send` / `tresor receive`.
 *
 *  - upload+store and download throughput of one large file (default 1 GiB) at level 1 (the server
 *    decrypts on the way out) and level 3 (end-to-end: the client decrypts), against raw AES-256-GCM over
 *    the same bytes in this process (goal: ratio ≥ 0.5);
 *  - the server's peak RSS while a 16 MiB and a 2 GiB file go up and down (goal: flat, < 200 MiB), in the
 *    server that ran the rows before and again in a restarted one;
 *  - encryption throughput of the e2e module in headless Chromium, against raw WebCrypto AES-GCM there.
 *
 *   npm run bench:transfers -- [--size-mib 1024] [--big-mib 2048] [--browser-mib 256] [--rounds 3] [--only web|server]
 */
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, request } from 'node:https';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import { call, receiveTransfer, sendTransfer } from '../src/transfers/client.js';
import { ciphertextSize, randomFileKey, toBase64Url } from '../src/shared-e2e/index.js';
import { encryptTransform } from '../src/shared-e2e/node.js';
import { pipeline } from 'node:stream/promises';
import { option, round, table, timed } from './lib.js';

const SIZE_MIB = option('size-mib', 1024);
const BIG_MIB = option('big-mib', 2048);
const BROWSER_MIB = option('browser-mib', 256);
const ROUNDS = option('rounds', 3);
const WEB_MIB = option('web-mib', 1024);
/** \`--only web\`: just the web app end to end (e.g. with --web-mib 4096); \`--only server\`: just the server throughput table. */
const ONLY = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const PASSWORD = 'Messlauf Passwort 2026 ok'; // must not contain a part of the address ("bench")

const dir = mkdtempSync(join(tmpdir(), 'tresor-bench-transfers-'));
const port = 20_000 + Math.floor(Math.random() * 20_000);
const env = { ...process.env, TRESOR_SERVER_PORT: String(port), TRESOR_METRICS_ENABLED: 'false', TRESOR_LOG_LEVEL: 'warn', HOME: dir };
const url = `https://localhost:${port}`;
const ca = join(dir, 'data', 'pki', 'ca.pem');

const tresor = (args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: dir, env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tresor ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const api = <T>(method: string, path: string, body?: unknown, token?: string) =>
  new Promise<T>((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(new URL(path, url), { method, ca: readFileSync(ca), headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => ((res.statusCode ?? 500) >= 400 ? reject(new Error(`${method} ${path}: ${res.statusCode} ${Buffer.concat(chunks).toString()}`)) : resolve((chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined) as T)));
    });
    req.on('error', reject);
    req.end(payload);
  });
const mailedKey = (email: string) => {
  const outbox = join(dir, 'data', 'outbox');
  for (const f of readdirSync(outbox).sort().reverse()) {
    const text = readFileSync(join(outbox, f), 'utf8').replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    if (!text.includes(`To: ${email}`)) continue;
    const key = /\/app\/invite#key=([A-Za-z0-9_-]{43})/.exec(text)?.[1];
    if (key) return key;
  }
  throw new Error(`no invitation for ${email}`);
};
const mailedLink = (email: string) => {
  const outbox = join(dir, 'data', 'outbox');
  for (const f of readdirSync(outbox).sort().reverse()) {
    const text = readFileSync(join(outbox, f), 'utf8').replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    if (!text.includes(`To: ${email}`)) continue;
    const link = /(https:\/\/\S+\/app\/r\/[0-9a-f-]{36}#s=[A-Za-z0-9_-]{43}(?:&fp=[0-9a-f-]+)?)/.exec(text)?.[1];
    if (link) return link;
  }
  throw new Error(`no transfer link for ${email}`);
};

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Writes `mib` MiB of random bytes (1 MiB pieces, never all in memory). */
async function makeFile(path: string, mib: number) {
  const out = createWriteStream(path);
  const piece = randomBytes(1024 * 1024);
  for (let i = 0; i < mib; i++) if (!out.write(piece)) await new Promise<void>((r) => out.once('drain', () => r()));
  await new Promise<void>((r) => out.end(() => r()));
}

/**
 * Raw AES-256-GCM over as many bytes as the file holds, 64 KiB at a time, from memory (the baseline: no
 * records, no network, no disk). Not read from the file: this VM keeps only about 1.5 GiB of page cache,
 * so after each upload the file is partly evicted and a read would measure the disk (310-520 MiB/s)
 * instead of the cipher (1,000-1,200).
 */
const AES_SOURCE = randomBytes(64 * 1024 * 1024);
async function rawAesGcm(bytes: number) {
  const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
  for (let done = 0; done < bytes; ) {
    for (let at = 0; at < AES_SOURCE.length && done < bytes; at += 64 * 1024, done += 64 * 1024) cipher.update(AES_SOURCE.subarray(at, at + 64 * 1024));
    await new Promise((resolve) => setImmediate(resolve)); // as a stream would: the event loop turns between batches
  }
  cipher.final();
}

/** Copies a file to a new file on the same disk and syncs it: what storing costs without network or server. */
async function diskWrite(path: string, to: string) {
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), createWriteStream(to, { highWaterMark: 4 * 1024 * 1024 }));
  const handle = await open(to, 'r');
  await handle.sync().finally(() => handle.close());
}

/** A process's resident memory now, in MiB (from /proc). */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
/** The server's RSS, sampled from /proc every 25 ms while `work` runs. */
async function serverPeakRss<T>(pid: number, work: () => Promise<T>): Promise<{ value: T; peakMiB: number }> {
  const rss = () => rssMiB(pid);
  let peak = rss();
  const timer = setInterval(() => (peak = Math.max(peak, rss())), 25);
  try {
    return { value: await work(), peakMiB: round(Math.max(peak, rss())) };
  } finally {
    clearInterval(timer);
  }
}

process.stdout.write(`# Transfers benchmark — node ${process.version}, ${new Date().toISOString()}\n`);
tresor(['init']);
// BENCH_PROFILE_DIR=/some/dir writes a CPU profile of the server there (to see where its time goes).
// BENCH_SERVER_FLAGS="--max-semi-space-size=2" gives the server's node these flags instead of the ones on
// the tresor command's first line (not this process's).
const serverFlags = [
  ...(process.env.BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : []),
  ...(process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter(Boolean),
];
/**
 * Starts `tresor serve` on the benchmark's data directory and waits until it listens: as `npm start` and the
 * `tresor` command run it (through the file's first line, on this process's node), or with the flags above.
 */
async function startServer() {
  const child =
    serverFlags.length > 0
      ? spawn(process.execPath, [...serverFlags, CLI, 'serve'], { cwd: dir, env })
      : spawn(CLI, ['serve'], { cwd: dir, env: { ...env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` } });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 30_000);
    child.stdout.on('data', () => out.includes('Tresor is running') && (clearTimeout(timer), resolve()));
  });
  return child;
}
let server: ReturnType<typeof spawn> | undefined;
// However the benchmark ends (an error, Ctrl-C, its output cut off), the server does not outlive it: a
// server left running would take CPU from every later measurement.
process.on('exit', () => server?.kill('SIGKILL'));
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE'] as const) process.on(signal, () => process.exit(130));
const stopServer = async () => {
  const s = server!;
  if (s.exitCode === null) {
    s.kill('SIGTERM');
    await new Promise((r) => s.once('exit', r));
  }
};
try {
  server = await startServer();
  // A tenant with a member who holds data access, and a recipient with a guest-like member account.
  const tenant = JSON.parse(tresor(['--json', 'tenant', 'create', '--name', 'Bench Transfers'])) as { id: string; initialKeys: { activationKey: string } };
  tresor(['account', 'invite', '--email', 'admin@bench.test', '--role', 'admin', '--tenant', tenant.id]);
  await api('POST', '/api/v1/auth/invitation/accept', { key: mailedKey('admin@bench.test'), newPassword: PASSWORD });
  const login = async (email: string) => (await api<{ sessionToken: string }>('POST', '/api/v1/auth/login', { login: email, password: PASSWORD, mode: 'token' })).sessionToken;
  const admin = await login('admin@bench.test');
  for (const email of ['sender@bench.test', 'recipient@bench.test']) {
    await api('POST', '/api/v1/accounts', { email, role: 'member' }, admin);
    await api('POST', '/api/v1/auth/invitation/accept', { key: mailedKey(email), newPassword: PASSWORD });
  }
  const sender = { url, token: await login('sender@bench.test'), caFile: ca };
  const recipient = { url, token: await login('recipient@bench.test'), caFile: ca };
  await api('POST', '/api/v1/keys/activate', { activationKey: tenant.initialKeys.activationKey }, sender.token);
  const { initSecupass } = await import('../src/transfers/client.js');
  await initSecupass(sender, 'Sender SecuPass 1');
  await initSecupass(recipient, 'Recipient SecuPass 2');

  const mbps = (ms: number, mib = SIZE_MIB) => round((mib / ms) * 1000);
  const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
  /** Sends `path` and receives it as the CLI does; `around` wraps each half (e.g. to sample the server's memory). */
  const run = async (path: string, level: 1 | 3, out: string, around: <T>(half: () => Promise<T>) => Promise<T> = (half) => half()) => {
    const up = await around(() => timed(() => sendTransfer(sender, { to: ['recipient@bench.test'], subject: 'bench', level, expiresAt, files: [path], secupass: 'Sender SecuPass 1' })));
    const link = mailedLink('recipient@bench.test');
    const down = await around(() => timed(() => receiveTransfer(recipient, link, { outDir: out, email: 'recipient@bench.test', secupass: 'Recipient SecuPass 2' })));
    // What arrived is what was sent (hashed as streams: no file is held in memory).
    const [sentHash, gotHash] = await Promise.all([sha256Of(path), sha256Of(down.value.files[0]!.path)]);
    if (sentHash !== gotHash) throw new Error(`the received file differs from the sent one (${path})`);
    rmSync(out, { recursive: true, force: true });
    return { upMs: up.ms, downMs: down.ms };
  };

  if (ONLY !== 'web') {
  // Throughput of the server: ciphertext made beforehand (the sender's work is not the server's), then
  // uploaded and stored, downloaded as it is (levels 3/4, and levels 1/2 as the web app and CLI fetch them: the
  // stored ciphertext with its file key) and downloaded decrypted by the server (levels 1/2 through the plain link).
  // The client is curl (OpenSSL, its own process): a Node client in this process receives TLS in 16 KiB pieces
  // and tops out near the server's speed itself (measured: a bare Node HTTPS route took a 1 GiB body at
  // 410-600 MiB/s from a Node client, 840-930 MiB/s from curl), so it would measure itself, not the server.
  const file = join(dir, 'file.bin');
  await makeFile(file, SIZE_MIB);
  const linkParts = (link: string) => { const m = /\/app\/r\/([0-9a-f-]{36})#s=([A-Za-z0-9_-]{43})/.exec(link)!; return { recipientId: m[1]!, secret: m[2]! }; };
  const headerFile = join(dir, 'curl-headers');
  /** Runs curl against the server (or the bare route); resolves with the bytes it received. */
  const curl = (args: string[], token?: string) => {
    if (token) writeFileSync(headerFile, `authorization: Bearer ${token}\n`, { mode: 0o600 });
    return new Promise<number>((resolve, reject) => {
      const child = spawn('curl', ['-sS', '--fail', '--cacert', ca, '-o', '/dev/null', '-w', '%{size_download}', ...(token ? ['-H', `@${headerFile}`] : []), ...args]);
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`curl ${args.at(-1)}: exit ${code} ${err}`))));
    });
  };
  const upload = (token: string, path: string, target: string) => curl(['-T', path, '-H', 'content-type: application/octet-stream', '-H', 'Expect:', target], token);
  const fetchFile = async (recipientId: string, secret: string, expected: number, email?: string, encrypted = false) => {
    const opened = await call<{ downloadToken: string; files: { id: string }[] }>(recipient, 'POST', `/api/v1/r/${recipientId}/open`, { secret, ...(email ? { email } : {}) });
    const got = await curl([`${url}/api/v1/r/${recipientId}/files/${opened.files[0]!.id}?token=${opened.downloadToken}${encrypted ? '&encrypted=true' : ''}`], recipient.token);
    if (got !== expected) throw new Error(`downloaded ${got} bytes instead of ${expected}`);
  };
  // Third baseline: a bare Node HTTPS route in this process with the server's certificate, no framework,
  // no storage: it drops an uploaded body and sends a file from disk. What TLS and HTTP in Node cost here.
  const pki = join(dir, 'data', 'pki');
  const bare = createHttpsServer({ key: readFileSync(join(pki, 'server-key.pem')), cert: readFileSync(join(pki, 'server.pem')) }, (req, res) => {
    if (req.method === 'PUT') {
      req.on('data', () => undefined);
      req.on('end', () => res.end('{}'));
    } else {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SIZE_MIB * 1024 * 1024) });
      createReadStream(file, { highWaterMark: 1024 * 1024 }).pipe(res);
    }
  });
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', () => resolve()));
  const bareUrl = `https://localhost:${(bare.address() as { port: number }).port}`;
  type Op = 'store' | 'asIs' | 'decrypted' | 'stored12' | 'bareUp' | 'bareDown';
  const samples: Record<'raw' | 'disk' | Op, number[]> = { raw: [], disk: [], store: [], asIs: [], decrypted: [], stored12: [], bareUp: [], bareDown: [] };
  // Each measurement starts with no dirty pages left to write back from the one before (\`sync\`), so the
  // kernel's writeback of an earlier file does not slow the next one down. The baseline is measured before
  // every operation, and its fastest run is what the operations are compared with: the strictest reading
  // (this shared machine's speed drifts by 2x within minutes, so pairing single runs made ratios swing).
  const quiet = () => spawnSync('sync');
  const measure = async (what: Op, work: () => Promise<unknown>) => {
    quiet();
    const raw = await timed(() => rawAesGcm(SIZE_MIB * 1024 * 1024));
    samples.raw.push(raw.ms);
    if (what === 'store') {
      // The disk's own speed for a new file of this size, right before the upload (the copy is deleted first).
      const copy = join(dir, 'disk-copy.bin');
      quiet();
      const disk = await timed(() => diskWrite(file, copy));
      rmSync(copy);
      samples.disk.push(disk.ms);
    }
    quiet();
    const op = await timed(work);
    samples[what].push(op.ms);
    if (process.env.BENCH_VERBOSE) process.stderr.write(`${what}: raw ${mbps(raw.ms)} MiB/s${what === 'store' ? `, disk ${mbps(samples.disk.at(-1)!)} MiB/s` : ''}, op ${mbps(op.ms)} MiB/s\n`);
  };
  // A level-3 transfer whose ciphertext the server hands out as it is.
  await run(file, 3, join(dir, 'out-warm'));
  const level3 = linkParts(mailedLink('recipient@bench.test'));
  const cipherSize = ciphertextSize(SIZE_MIB * 1024 * 1024);
  for (let round = 0; round < ROUNDS; round++) {
    const fileKey = randomFileKey();
    const created = await call<{ id: string; files: { id: string }[] }>(sender, 'POST', '/api/v1/transfers', {
      subject: 'bench', level: 1, expiresAt: new Date(Date.now() + 86_400_000).toISOString(), recipients: ['recipient@bench.test'],
      files: [{ name: 'file.bin', size: SIZE_MIB * 1024 * 1024, fileKey: toBase64Url(fileKey) }],
    });
    const cipherFile = join(dir, 'file.tresor');
    await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), encryptTransform(fileKey, `transfer:${created.id}/file:${created.files[0]!.id}`), createWriteStream(cipherFile));
    await measure('bareUp', () => upload(sender.token, file, `${bareUrl}/`));
    await measure('store', () => upload(sender.token, cipherFile, `${url}/api/v1/transfers/${created.id}/blobs/${created.files[0]!.id}?offset=0`));
    rmSync(cipherFile);
    await call(sender, 'POST', `/api/v1/transfers/${created.id}/send`); // refused unless every byte was stored
    const level1 = linkParts(mailedLink('recipient@bench.test'));
    await measure('bareDown', async () => {
      if ((await curl([`${bareUrl}/`])) !== SIZE_MIB * 1024 * 1024) throw new Error('the bare route sent too little');
    });
    await measure('decrypted', () => fetchFile(level1.recipientId, level1.secret, SIZE_MIB * 1024 * 1024, 'recipient@bench.test'));
    await measure('stored12', () => fetchFile(level1.recipientId, level1.secret, cipherSize, 'recipient@bench.test', true));
    await measure('asIs', () => fetchFile(level3.recipientId, level3.secret, cipherSize));
  }
  await new Promise((resolve) => bare.close(resolve));
  // End to end as \`tresor send\` / \`tresor receive\` do it: the sender's and recipient's crypto included.
  const serverOnly = ONLY === 'server';
  const e2eRaw = await timed(() => rawAesGcm(SIZE_MIB * 1024 * 1024));
  const l1 = serverOnly ? { upMs: NaN, downMs: NaN } : await run(file, 1, join(dir, 'out1'));
  const l3 = serverOnly ? { upMs: NaN, downMs: NaN } : await run(file, 3, join(dir, 'out3'));
  const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };
  const rawMs = Math.min(...samples.raw);
  const row = (what: string, xs: number[], versus = rawMs) => ({
    what,
    'MiB/s (median)': mbps(median(xs)),
    ratio: round(versus / median(xs), 2),
    'per run': xs.map((ms) => round(versus / ms, 2)).join(', '),
  });
  /** A baseline's row: its speed per run instead of ratios. */
  const baseline = (what: string, xs: number[]) => ({ ...row(what, xs), 'per run': xs.map((ms) => mbps(ms)).join(', ') + ' MiB/s' });
  table(`${SIZE_MIB} MiB file through the server (loopback, TLS 1.3, client curl), against raw AES-256-GCM in this process — ${ROUNDS} runs each`, [
    { what: 'raw AES-256-GCM over as many bytes from memory, 64 KiB pieces (baseline: its fastest run)', 'MiB/s (median)': mbps(rawMs), ratio: 1, 'per run': samples.raw.map((ms) => mbps(ms)).join(', ') + ' MiB/s' },
    baseline('disk: copy the file to a new file + fsync, no network (second baseline)', samples.disk),
    baseline('bare Node HTTPS route in this process: curl uploads, the body is dropped (third baseline)', samples.bareUp),
    baseline('bare Node HTTPS route in this process: curl downloads the file (third baseline)', samples.bareDown),
    row('server: upload + store (curl, one streamed request over TLS, to disk, synced as it arrives and at the end)', samples.store),
    { ...row('    the same against the disk baseline', samples.store, median(samples.disk)), 'MiB/s (median)': '' },
    row('server: download levels 3/4 (ciphertext from disk over TLS)', samples.asIs),
    row('server: download levels 1/2 as the web app and tresor receive fetch them (stored ciphertext + file key over TLS)', samples.stored12),
    row('server: download levels 1/2 decrypted on the fly (the plain link, for other clients)', samples.decrypted),
  ]);
  if (!serverOnly) table(`${SIZE_MIB} MiB file end to end, as \`tresor send\` / \`tresor receive\` do it (one run each; baseline ${mbps(e2eRaw.ms)} MiB/s just before)`, [
    { what: 'level 1 send: read + encrypt (e2e records) + upload + store', 'MiB/s': mbps(l1.upMs), ratio: round(e2eRaw.ms / l1.upMs, 2) },
    { what: 'level 1 receive: TLS + recipient decrypts + write file', 'MiB/s': mbps(l1.downMs), ratio: round(e2eRaw.ms / l1.downMs, 2) },
    { what: 'level 3 send: + hybrid key wraps', 'MiB/s': mbps(l3.upMs), ratio: round(e2eRaw.ms / l3.upMs, 2) },
    { what: 'level 3 receive: TLS + recipient decrypts + write file', 'MiB/s': mbps(l3.downMs), ratio: round(e2eRaw.ms / l3.downMs, 2) },
  ]);
  rmSync(file);

  // The server's memory for a small and a large file, next to what it holds idle: first in the server that
  // ran everything above (what a long-running server keeps), then in a freshly started one (what the files
  // themselves take).
  const rows: Record<string, string | number>[] = [];
  for (const fresh of serverOnly ? [] : [false, true]) {
    if (fresh) {
      await stopServer();
      server = await startServer();
      // Started, then a few small requests (logins, the SecuPass keys' Argon2id) before the idle figure.
      await makeFile(join(dir, 'warm.bin'), 1);
      await run(join(dir, 'warm.bin'), 1, join(dir, 'warm'));
      rmSync(join(dir, 'warm.bin'));
    }
    const when = fresh ? 'restarted server' : 'after the runs above';
    rows.push({ file: `(idle, ${when})`, 'server peak RSS MiB (up + level-1 download)': round(rssMiB(server!.pid!)), 'peak up / down': '-', 'up MiB/s': '-', 'down MiB/s': '-' });
    for (const mib of [16, BIG_MIB]) {
      const path = join(dir, `size-${mib}.bin`);
      await makeFile(path, mib);
      // The peak of each half apart: what the upload takes and what the download takes.
      const peaks: number[] = [];
      const measured = await run(path, 1, join(dir, `rss-${mib}`), async (half) => {
        // BENCH_TRACE=1: when each half starts and ends (to line up with a memory log of the server).
        if (process.env.BENCH_TRACE) process.stderr.write(`${new Date().toISOString()} ${mib} MiB ${when}: ${peaks.length === 0 ? 'upload' : 'download'} starts\n`);
        const m = await serverPeakRss(server!.pid!, half);
        if (process.env.BENCH_TRACE) process.stderr.write(`${new Date().toISOString()} ends, peak ${m.peakMiB} MiB\n`);
        peaks.push(m.peakMiB);
        return m.value;
      });
      rows.push({ file: `${mib} MiB, ${when}`, 'server peak RSS MiB (up + level-1 download)': Math.max(...peaks), 'peak up / down': peaks.join(' / '), 'up MiB/s': mbps((measured.upMs * SIZE_MIB) / mib), 'down MiB/s': mbps((measured.downMs * SIZE_MIB) / mib) });
      rmSync(path);
    }
  }
  if (!serverOnly) table('server memory: constant in the file size (goal < 200 MiB)', rows);

  }

  // The web app end to end in headless Chromium: the sender's page encrypts a file of WEB_MIB MiB read
  // from disk and uploads it (level 3), the recipient's page unlocks with the SecuPass and the service
  // worker decrypts the download as it streams to disk. Time, both sides' memory, and the bytes compared.
  if (ONLY !== 'server') {
    const webFile = join(dir, 'web.bin');
    await makeFile(webFile, WEB_MIB);
    const sentHash = await sha256Of(webFile);
    // The browser trusts the local CA's certificate only through this flag; a service worker needs a
    // certificate without errors (the per-context ignoreHTTPSErrors is not enough for it).
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--ignore-certificate-errors'] });
    const chromiumRss = () => {
      let mib = 0;
      for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
        try {
          if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('chromium')) continue;
          mib += rssMiB(Number(pid));
        } catch {
          // the process ended meanwhile
        }
      }
      return mib;
    };
    const peaks = async <T>(work: () => Promise<T>) => {
      let browserPeak = chromiumRss();
      const measured = await serverPeakRss(server!.pid!, async () => {
        const timer = setInterval(() => (browserPeak = Math.max(browserPeak, chromiumRss())), 250);
        try {
          return await timed(work);
        } finally {
          clearInterval(timer);
        }
      });
      return { ms: measured.value.ms, value: measured.value.value, serverMiB: measured.peakMiB, browserMiB: round(browserPeak) };
    };
    try {
      const loggedIn = async (email: string) => {
        const context = await browser.newContext({ locale: 'en-GB', acceptDownloads: true });
        const page = await context.newPage();
        await page.goto(`${url}/app/login`);
        await page.getByLabel('Login or e-mail address').fill(email);
        await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
        await page.getByRole('button', { name: 'Log in' }).click();
        await page.getByRole('link', { name: 'Transfers' }).waitFor();
        return page;
      };
      const senderPage = await loggedIn('sender@bench.test');
      const recipientPage = await loggedIn('recipient@bench.test');
      const idleBrowser = round(chromiumRss());
      await senderPage.getByRole('link', { name: 'Transfers' }).click();
      const form = senderPage.getByRole('form', { name: 'New transfer' });
      await form.getByLabel('Recipients (e-mail addresses)').fill('recipient@bench.test');
      await form.getByLabel('Subject', { exact: true }).fill('web bench');
      await form.getByLabel('Level 3 –').check();
      await form.getByLabel('Files', { exact: true }).setInputFiles(webFile); // a path: Chromium reads the file itself
      const up = await peaks(async () => {
        await form.getByRole('button', { name: 'Encrypt and send' }).click();
        await senderPage.getByText(/^Sent to 1 recipient\(s\)\./).waitFor({ timeout: 60 * 60_000 });
      });
      const link = mailedLink('recipient@bench.test');
      if (!link.includes('&fp=')) throw new Error('the level-3 link carries no key fingerprint');
      await recipientPage.goto(link);
      const unlock = recipientPage.getByRole('form', { name: 'Unlock with your SecuPass' });
      await unlock.getByLabel('Your SecuPass').fill('Recipient SecuPass 2');
      await unlock.getByRole('button', { name: 'Unlock' }).click();
      const button = recipientPage.getByRole('button', { name: 'Download web.bin' });
      await button.waitFor({ timeout: 60_000 });
      const down = await peaks(async () => {
        const [download] = await Promise.all([recipientPage.waitForEvent('download', { timeout: 60 * 60_000 }), button.click()]);
        const path = await download.path(); // resolves when the download is complete
        if ((await download.failure()) !== null) throw new Error(`download failed: ${await download.failure()}`);
        const gotHash = await sha256Of(path);
        await download.delete();
        return gotHash;
      });
      await recipientPage.getByText('complete and unaltered').waitFor({ timeout: 60_000 });
      if (down.value !== sentHash) throw new Error('the file the browser saved differs from the one sent');
      table(`the web app end to end in headless Chromium, level 3, one ${WEB_MIB} MiB file (browser idle: ${idleBrowser} MiB RSS, all its processes)`, [
        { what: 'sender page: read, encrypt (e2e records), upload 8 MiB pieces, wrap, send', 'MiB/s': mbps(up.ms, WEB_MIB), 'seconds': round(up.ms / 1000), 'browser peak RSS MiB': up.browserMiB, 'server peak RSS MiB': up.serverMiB },
        { what: 'recipient page: service worker fetches, decrypts, streams to disk (hash checked: identical)', 'MiB/s': mbps(down.ms, WEB_MIB), 'seconds': round(down.ms / 1000), 'browser peak RSS MiB': down.browserMiB, 'server peak RSS MiB': down.serverMiB },
      ]);
    } finally {
      await browser.close();
      rmSync(webFile, { force: true });
    }
  }

  // The browser: the same module bundled, in headless Chromium.
  if (ONLY !== 'server') {
  const bundled = await build({
    configFile: false,
    logLevel: 'silent',
    build: { write: false, lib: { entry: fileURLToPath(new URL('../../src/shared-e2e/index.ts', import.meta.url)), name: 'TresorE2e', formats: ['iife'] }, minify: true },
  });
  const code = (Array.isArray(bundled) ? bundled[0]! : (bundled as { output: { code?: string }[] })).output[0]!.code!;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    // An https page of the server is a secure context (WebCrypto); the bundle is added as a script (CSP bypassed for that).
    const context = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${url}/healthz`);
    await page.addScriptTag({ content: code });
    const result = await page.evaluate(async (mib: number) => {
      const e2e = (globalThis as unknown as { TresorE2e: typeof import('../src/shared-e2e/index.js') }).TresorE2e;
      const piece = new Uint8Array(1024 * 1024);
      crypto.getRandomValues(piece.subarray(0, 65536));
      const source = () => {
        let sent = 0;
        return new ReadableStream<Uint8Array>({ pull(c) { if (sent++ < mib) c.enqueue(piece); else c.close(); } });
      };
      const t0 = performance.now();
      const reader = e2e.encryptStream(e2e.randomFileKey(), 'bench', source()).getReader();
      let bytes = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        bytes += value.length;
      }
      const e2eMs = performance.now() - t0;
      const key = await crypto.subtle.importKey('raw', crypto.getRandomValues(new Uint8Array(32)), 'AES-GCM', false, ['encrypt']);
      const t1 = performance.now();
      for (let i = 0; i < mib * 16; i++) await crypto.subtle.encrypt({ name: 'AES-GCM', iv: crypto.getRandomValues(new Uint8Array(12)) }, key, piece.subarray(0, 65536));
      const rawMs = performance.now() - t1;
      return { e2eMs, rawMs, bytes };
    }, BROWSER_MIB);
    table(`encryption in headless Chromium, ${BROWSER_MIB} MiB`, [
      { what: 'raw WebCrypto AES-GCM, 64 KiB at a time (baseline)', 'MiB/s': round((BROWSER_MIB / result.rawMs) * 1000), ratio: 1 },
      { what: 'e2e encryptStream (records, nonces, AAD, header)', 'MiB/s': round((BROWSER_MIB / result.e2eMs) * 1000), ratio: round(result.rawMs / result.e2eMs, 2) },
    ]);
  } finally {
    await browser.close();
  }
  }
} finally {
  if (server) await stopServer();
  rmSync(dir, { recursive: true, force: true });
}

import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { delimiter, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** Runs the built `tresor` CLI to completion (npm test builds it first). */
export function tresor(args: string[], opts: { cwd: string; env?: Record<string, string>; input?: string }) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: opts.cwd, ...opts.env },
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  url: string;
  stop(): Promise<number | null>;
}

/**
 * Starts `tresor serve` and waits until it prints its URL. A port chosen earlier with `freePort` can be taken
 * in the meantime (by any outgoing connection on this machine, which gets an ephemeral port from the same
 * range): then the server is started on a fresh port, written into `opts.env` for what the test does next.
 */
/**
 * `asCommand`: the built file is run as `npm start` and the `tresor` command run it, through its first line
 * (`env` finds the `node` this test runs on), so the node flags there apply.
 */
export async function startServe(opts: { cwd: string; env: Record<string, string>; asCommand?: boolean }): Promise<ServeProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startServeOnce(opts);
    } catch (error) {
      if (attempt >= 3 || !opts.env.TRESOR_SERVER_PORT || !/listen EADDRINUSE/.test(String(error))) throw error;
      opts.env.TRESOR_SERVER_PORT = String(await freePort());
    }
  }
}

async function startServeOnce(opts: { cwd: string; env: Record<string, string>; asCommand?: boolean }): Promise<ServeProcess> {
  const child = spawn(opts.asCommand ? CLI : process.execPath, opts.asCommand ? ['serve'] : [CLI, 'serve'], {
    cwd: opts.cwd,
    env: { PATH: opts.asCommand ? `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` : (process.env.PATH ?? ''), HOME: opts.cwd, ...opts.env },
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in time:\n${output}`)), 30_000);
    const check = () => {
      const match = /Tresor is running at (https:\/\/\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        // Give the banner lines that follow a moment to arrive.
        setTimeout(() => resolve(match[1]!), 200);
      }
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
  return {
    child,
    output: () => output,
    url,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}

/** Starts any long-running `tresor` command and waits until its output matches `ready`. */
export async function startCli(args: string[], opts: { cwd: string; env: Record<string, string>; ready: RegExp }): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { PATH: process.env.PATH ?? '', HOME: opts.cwd, ...opts.env } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tresor ${args.join(' ')} did not get ready:\n${output}`)), 30_000);
    child.stdout.on('data', () => {
      if (opts.ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tresor ${args.join(' ')} exited with ${code}:\n${output}`));
    });
  });
  return {
    child,
    output: () => output,
    url: '',
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}

/** Runs the built `tresor` CLI without blocking the event loop (for tests that serve something meanwhile). */
export function tresorAsync(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { PATH: process.env.PATH ?? '', HOME: opts.cwd, ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.once('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr }))));
}

/**
 * A TCP proxy in front of the server (TLS passes through it untouched). `verdict` sees the bytes sent
 * towards the server on this connection and in all: 'go' passes the chunk on, 'cut' kills this connection,
 * 'dead' kills every connection and refuses all later ones.
 */
export async function cuttingProxy(target: number, verdict: (sent: number, total: number) => 'go' | 'cut' | 'dead') {
  let total = 0;
  let dead = false;
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  // The client's side dies at once; the server gets every byte passed on before the cut (still queued in
  // this proxy perhaps), then the connection ends in the middle of the body.
  const kill = ([client, upstream]: [Socket, Socket]) => {
    upstream.end(() => upstream.destroy());
    client.destroy();
  };
  const proxy: Server = createServer((client) => {
    if (dead) return void client.destroy();
    const upstream = connect(target, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    sockets.add(client).add(upstream);
    pairs.add(pair);
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      total += chunk.length;
      const v = verdict(sent, total);
      if (v === 'go') return void upstream.write(chunk);
      if (v === 'dead') dead = true;
      for (const p of v === 'dead' ? pairs : [pair]) kill(p);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('end', () => b.end());
      a.on('error', () => b.destroy());
      a.on('close', () => b.writableEnded || b.destroy()); // an ended side finishes its flush first
    }
    upstream.on('close', () => pairs.delete(pair));
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `https://localhost:${(proxy.address() as { port: number }).port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

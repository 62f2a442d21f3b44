
import { createServer as createHttpServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { renderConfig, type TresorConfig } from '../config/index.js';
import { ensureFirstOperator, openCore, type Core } from '../core.js';
import type { Clock } from '../identity/index.js';
import { ensureLocalPki } from '../crypto/pki.js';
import { sha256Hex } from '../crypto/random.js';
import { mailQueueJob, transferExpiryJob } from '../ops/jobs.js';
import { backupJob } from '../ops/backup.js';
import { startScheduler } from '../ops/scheduler.js';
import { buildApp } from './app.js';
import { tlsServerOptions } from './tls.js';

export interface RunningServer {
  core: Core;
  app: FastifyInstance;
  /** The URL the server answers on (real port, also when configured as 0). */
  url: string;
  metricsUrl: string | undefined;
  redirectPort: number | undefined;
  caCertPath: string | undefined;
  /** Runs one scheduled job now (as its timer would) and waits for it. */
  runJob(name: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `tresor serve`: opens storage (running migrations), creates the first operator, the local PKI if no
 * certificate is configured, then serves HTTPS, the optional redirect port, the metrics listener and
 * the scheduler. `print` receives the lines meant for the person who started the server.
 */
export async function startServer(config: Readonly<TresorConfig>, log: Logger, print: (line: string) => void, opts: { clock?: Clock } = {}): Promise<RunningServer> {
  const core = await openCore(config, { log, ...(opts.clock ? { clock: opts.clock } : {}) });
  const stops: (() => Promise<void>)[] = [() => core.close()];
  const stop = async () => {
    for (const fn of stops.reverse()) await fn().catch((error: unknown) => log.error({ err: error }, 'error while stopping'));
  };
  try {
    let caCertPath: string | undefined;
    let tlsFiles: { certPath: string; keyPath: string };
    if (config.tls.cert_file === '') {
      const pki = await ensureLocalPki(join(config.data_dir, 'pki'), [...config.tls.hostnames]);
      caCertPath = pki.caCertPath;
      tlsFiles = pki;
      if (pki.createdCa) log.info('created a local certificate authority');
    } else {
      tlsFiles = { certPath: config.tls.cert_file, keyPath: config.tls.key_file };
    }

    const metrics = config.metrics.enabled ? new Registry() : undefined;
    const app = await buildApp(core, { logger: log, https: tlsServerOptions(tlsFiles), ...(metrics ? { metrics } : {}) });
    stops.push(() => app.close());
    await app.listen({ host: config.server.host, port: config.server.port });
    const port = (app.server.address() as { port: number }).port;
    const publicUrl = new URL(config.server.public_url);
    // With port 0 (tests) or the default URL, report the port actually bound.
    if (config.server.port === 0 || publicUrl.port === String(config.server.port)) publicUrl.port = String(port);
    const url = publicUrl.origin;

    let redirectPort: number | undefined;
    if (config.server.http_redirect_port !== 0) {
      const redirect = await listen(
        createHttpServer((req, res) => {
          // Redirect only: nothing is served in clear text.
          const target = new URL(req.url ?? '/', url);
          res.writeHead(308, { location: target.toString(), 'content-length': '0' }).end();
        }),
        config.server.host,
        config.server.http_redirect_port,
      );
      redirectPort = (redirect.address() as { port: number }).port;
      stops.push(() => closeServer(redirect));
    }

    let metricsUrl: string | undefined;
    if (metrics) {
      const metricsServer = await listen(
        createHttpServer((req, res) => {
          if (req.url !== '/metrics') return void res.writeHead(404).end();
          metrics
            .metrics()
            .then((body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body))
            .catch(() => res.writeHead(500).end());
        }),
        config.metrics.host,
        config.metrics.port,
      );
      metricsUrl = `http://${config.metrics.host}:${(metricsServer.address() as { port: number }).port}/metrics`;
      stops.push(() => closeServer(metricsServer));
    }

    const scheduler = startScheduler(
      [
        {
          name: 'tenant-licence-expiry',
          intervalMs: config.lifecycle.scheduler_interval_seconds * 1000,
          run: async () => {
            for (const report of await core.platform.deleteExpiredTenants()) {
              log.warn({ tenantId: report.tenantId, reportId: report.id, removed: report.removed.length }, 'tenant deleted after licence end and grace period');
              print(`Deleted tenant ${report.tenantId} (licence ended ${report.licenceEndedAt ?? '?'}); report ${report.id}: ${report.removed.join(', ')}`);
            }
          },
        },
        {
          name: 'ledger-checkpoints',
          intervalMs: config.ledger.checkpoint_interval_seconds * 1000,
          run: async () => {
            for (const { ledger } of await core.ledgers.all()) await ledger.checkpoint();
          },
        },
        {
          // Grants end on the minute: the copy of the key goes, and data routes check each request anyway.
          name: 'grant-expiry',
          intervalMs: 60_000,
          run: async () => {
            const ended = await core.identity.expireGrants();
            if (ended > 0) log.info({ ended }, 'grants expired');
          },
        },
        transferExpiryJob(core, log),
        mailQueueJob(core, log),
        ...[backupJob(core, log)].filter((job) => job !== undefined),
        {
          name: 'billing-flush',
          intervalMs: 60_000,
          run: async () => {
            await core.billing.flush();
          },
        },
        {
          name: 'ledger-payload-retention',
          intervalMs: 3_600_000,
          run: async () => {
            for (const { ledger } of await core.ledgers.all()) await ledger.expirePayloads();
          },
        },
      ],
      log,
    );
    stops.splice(1, 0, () => scheduler.stop());

    const operator = await ensureFirstOperator(core);
    const technical = (action: string, details?: Record<string, string>) =>
      core.ledgers.platform.append({
        actor: { tier: 'system', role: 'server', id: 'server' },
        action,
        resource: { type: 'server', id: url },
        outcome: 'success',
        ...(details ? { details } : {}),
      });
    // A configuration change shows up as a new hash of the effective (secrets-masked) configuration.
    await technical('technical.start', { configSha256: sha256Hex(renderConfig(config, 'json')) });
    stops.splice(1, 0, async () => {
      await core.billing.flush();
      await technical('technical.stop');
    });
    print(`Tresor is running at ${url}`);
    if (caCertPath) {
      print(`Local CA certificate: ${caCertPath}`);
      print(`  try: curl --cacert ${caCertPath} ${url}/healthz`);
    }
    if (metricsUrl) print(`Metrics: ${metricsUrl}`);
    if (operator) {
      print('');
      print('First operator account created. This password is shown only once; change it at first login:');
      print(`  login:    ${operator.login}`);
      print(`  password: ${operator.oneTimePassword}`);
      print('');
    }
    log.info({ url, migrations: core.appliedMigrations.length }, 'tresor started');
    return { core, app, url, metricsUrl, redirectPort, caCertPath, runJob: (name) => scheduler.runNow(name), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

function listen(server: Server, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}


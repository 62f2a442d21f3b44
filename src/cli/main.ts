#!/usr/bin/env -S node --max-semi-space-size=16
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { Command, CommanderError, Option } from 'commander';
import { loadConfig, renderConfig, type TresorConfig } from '../config/index.js';
import { ensureFirstOperator, migrateEverything, openCore, sealedColumns, type Core } from '../core.js';
import { addMasterKeyVersion, loadOrCreateMasterKey, retireMasterKeyVersion } from '../crypto/master-key.js';
import { localCipherService, remoteCipherService, startCipherServiceServer, startMutualTlsCipherServer, type CipherService } from '../crypto/cipher-service.js';
import { countVersions, resealColumn } from '../crypto/rotate.js';
import { backupFolder, createBackup, finishRestore, listBackups, pruneBackups, restoreBackup, verifyBackup } from '../ops/backup.js';
import { ensureLocalPki, ensureMutualTlsPki } from '../crypto/pki.js';
import { startServer } from '../http/server.js';
import { billingReport, EXPORT_CSV_COLUMNS, exportCsvRow, toCsv, type ExportedEntry, type VerifyReport } from '../ledger/index.js';
import { createLogger } from '../ops/logger.js';
import type { DeletionReport, ResellerView, TenantView } from '../platform/index.js';
import { DomainError, type ErrorCode } from '../shared/errors.js';
import { ACCOUNT_ROLES, type AccountRole } from '../access/index.js';
import { CHARACTER_CLASSES, POLICY_ROLES, type CharacterClass, type PasswordPolicy } from '../identity/password-policy.js';
import { approveKey, closeConnections, initSecupass, notifyAgain, receiveTransfer, resumeTransfer, sendTransfer, uploadToRequest } from '../transfers/client.js';
import { inEnglish, mailNotices, notifiedAgainNotices } from '../transfers/mail-notices.js';
import { keptUploadsDir } from '../transfers/kept-upload.js';
import { callApi, callApiLines, localPlatformClient, remotePlatformClient, type PlatformClient } from './platform-client.js';
import { dirname, join } from 'node:path';

/** Exit codes, documented in the README: scripts can tell failures apart. */
export const EXIT: Record<ErrorCode | 'OK' | 'INTERNAL' | 'USAGE' | 'LEDGER_TAMPERED', number> = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  FORBIDDEN: 4,
  UNAUTHENTICATED: 4,
  CONFLICT: 5,
  VALIDATION: 6,
  POLICY_VIOLATION: 6,
  CONFIG_INVALID: 7,
  SUSPENDED: 8,
  LEDGER_TAMPERED: 9,
  THROTTLED: 10,
  BUSY: 10,
  SECOND_FACTOR_REQUIRED: 4,
  SESSION_LOCKED: 4,
  ACTION_REQUIRED: 4,
};

interface GlobalOptions {
  config?: string;
  json?: boolean;
  url?: string;
  token?: string;
  cacert?: string;
}

const out = (line: string): void => void process.stdout.write(`${line}\n`);
const err = (line: string): void => void process.stderr.write(`${line}\n`);

function config(program: Command): Readonly<TresorConfig> {
  const opts = program.opts<GlobalOptions>();
  return loadConfig({ cwd: process.cwd(), file: opts.config, env: process.env });
}

/** CLI logs go to stderr so that stdout stays clean for --json. */
const cliLogger = (cfg: Readonly<TresorConfig>) => createLogger(cfg.log.level === 'info' ? 'warn' : cfg.log.level, process.stderr as never);

/** Opens the local core (running pending migrations) for one command and closes it afterwards. */
async function withCore<T>(program: Command, work: (core: Core, cfg: Readonly<TresorConfig>) => Promise<T>): Promise<T> {
  const cfg = config(program);
  const core = await openCore(cfg, { log: cliLogger(cfg) });
  try {
    return await work(core, cfg);
  } finally {
    await core.close();
  }
}

/** Runs `work` with a platform client: over HTTP when --url/TRESOR_URL is given, else locally as the platform owner. */
async function withPlatform<T>(program: Command, work: (client: PlatformClient) => Promise<T>): Promise<T> {
  const opts = program.opts<GlobalOptions>();
  if (opts.url) {
    if (!opts.token) throw new DomainError('UNAUTHENTICATED', 'remote mode needs a token: run `tresor login` and set TRESOR_TOKEN, or pass --token');
    return work(remotePlatformClient({ url: opts.url, token: opts.token, caFile: opts.cacert }));
  }
  return withCore(program, (core) => work(localPlatformClient(core.platform, core.identity)));
}

function emit(program: Command, value: unknown, human: () => void): void {
  if (program.opts<GlobalOptions>().json) out(JSON.stringify(value, null, 2));
  else human();
}

function table(rows: Record<string, string>[]): void {
  if (rows.length === 0) return out('(none)');
  const keys = Object.keys(rows[0]!);
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => (r[k] ?? '').length)));
  out(keys.map((k, i) => k.toUpperCase().padEnd(widths[i]!)).join('  '));
  for (const row of rows) out(keys.map((k, i) => (row[k] ?? '').padEnd(widths[i]!)).join('  ').trimEnd());
}

const tenantRow = (t: TenantView) => ({
  id: t.id,
  name: t.name,
  status: t.status,
  reseller: t.resellerId ?? '(operator)',
  licence_ends: t.licenceEndsAt ?? '-',
});
const resellerRow = (r: ResellerView) => ({ id: r.id, name: r.name, status: r.status, created: r.createdAt });

function printReport(report: DeletionReport): void {
  out(`Deleted tenant ${report.tenantName} (${report.tenantId}); report ${report.id}`);
  for (const item of report.removed) out(`  removed ${item}`);
}

/** The cipher service without opening the data: a missing master key file is an error, never a new key. */
function cipherServiceOf(cfg: Readonly<TresorConfig>): CipherService {
  if (cfg.cipher.url !== '') return remoteCipherService(cfg.cipher.url, { caFile: cfg.cipher.ca_file, certFile: cfg.cipher.cert_file, keyFile: cfg.cipher.key_file });
  if (cfg.master_key.value === '' && !existsSync(cfg.master_key.file)) {
    throw new DomainError('VALIDATION', `the master key file ${cfg.master_key.file} is missing: put back the master key the backup was taken with (it is never part of a backup)`);
  }
  return localCipherService(loadOrCreateMasterKey({ file: cfg.master_key.file, value: cfg.master_key.value }).ring);
}

async function confirm(question: string): Promise<string> {
  if (!process.stdin.isTTY) return '';
  return (await ask(question)).trim();
}

export function buildCli(): Command {
  const program = new Command('tresor')
    .description('Tresor: receive, keep and pass on sensitive personal data')
    .version('0.1.0')
    .option('-c, --config <file>', 'configuration file (default: ./tresor.toml, or $TRESOR_CONFIG)')
    .option('--json', 'print machine-readable JSON on stdout')
    .addOption(new Option('--url <url>', 'act through the HTTP API of this server instead of the local data directory').env('TRESOR_URL'))
    .addOption(new Option('--token <token>', 'bearer token from `tresor login` (remote mode)').env('TRESOR_TOKEN'))
    .addOption(new Option('--cacert <file>', 'CA certificate to trust for --url (e.g. data/pki/ca.pem)').env('TRESOR_CACERT'))
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('init')
    .description('create the data directory, master key, local CA and certificate, control database and first operator; then exit')
    .action(async () => {
      await withCore(program, async (core, cfg) => {
      const pki = cfg.tls.cert_file === '' ? await ensureLocalPki(join(cfg.data_dir, 'pki'), [...cfg.tls.hostnames]) : undefined;
      const operator = await ensureFirstOperator(core);
      emit(program, { dataDir: cfg.data_dir, caCertPath: pki?.caCertPath ?? null, operator: operator ?? null }, () => {
        out(`Data directory: ${cfg.data_dir}`);
        if (pki) out(`Local CA certificate: ${pki.caCertPath}`);
        if (operator) {
          out('First operator account created. This password is shown only once:');
          out(`  login:    ${operator.login}`);
          out(`  password: ${operator.oneTimePassword}`);
        } else out('Already initialised; nothing to do.');
      });
      });
    });

  program
    .command('serve')
    .description('run the server (HTTPS API, redirect port, metrics listener, scheduler)')
    .action(async () => {
      const cfg = config(program);
      const log = createLogger(cfg.log.level);
      const server = await startServer(cfg, log, out);
      await new Promise<void>((resolve) => {
        const shutdown = () => {
          log.info('stopping');
          void server.stop().then(resolve);
        };
        process.once('SIGINT', shutdown);
        process.once('SIGTERM', shutdown);
      });
    });

  program
    .command('cipher-service')
    .description('run the cipher service on its own: it alone holds the master key; servers reach it through cipher.url (a Unix socket, or mutual TLS)')
    .option('--socket <path>', 'Unix socket to listen on (mode 0600); default: cipher.sock beside the master key file')
    .option('--listen <host:port>', 'listen on TCP with mutual TLS instead: a private CA in <key dir>/cipher-tls issues the server and the client certificate')
    .option('--hostname <names>', 'with --listen: comma-separated names servers use to reach this host (added to the certificate)', '')
    .action(async (opts: { socket?: string; listen?: string; hostname: string }) => {
      const cfg = config(program);
      if (cfg.cipher.url !== '') throw new DomainError('VALIDATION', 'cipher.url is set: the cipher service itself uses the master key directly; unset cipher.url for this command');
      if (opts.socket !== undefined && opts.listen !== undefined) throw new DomainError('VALIDATION', 'use either --socket or --listen, not both');
      const key = loadOrCreateMasterKey({ file: cfg.master_key.file, value: cfg.master_key.value });
      let server: { close(callback: () => void): unknown };
      if (opts.listen !== undefined) {
        const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(opts.listen);
        const port = Number(match?.[3]);
        if (match === null || port < 0 || port > 65535) throw new DomainError('VALIDATION', `--listen must be host:port, e.g. 127.0.0.1:8444 or [::1]:8444, not ${opts.listen}`);
        const host = match[1] ?? match[2]!;
        const dir = join(dirname(cfg.master_key.file), 'cipher-tls');
        const names = [host, ...opts.hostname.split(',').map((n) => n.trim()).filter((n) => n !== '')].filter((n) => n !== '0.0.0.0' && n !== '::');
        const pki = await ensureMutualTlsPki(dir, names);
        const tls = await startMutualTlsCipherServer(key.ring, { host, port }, pki);
        server = tls;
        const shown = host.includes(':') ? `[${host}]` : host;
        out(`Cipher service listening on ${shown}:${tls.port} (mutual TLS; only clients with a certificate from ${pki.caCertPath})`);
        out(`  servers: cipher.url = "https://${shown}:${tls.port}"`);
        out(`           cipher.ca_file = "${pki.caCertPath}"`);
        out(`           cipher.cert_file = "${pki.clientCertPath}"`);
        out(`           cipher.key_file = "${pki.clientKeyPath}"   (copy it to the server hosts with mode 0600)`);
      } else {
        const socketPath = opts.socket ?? join(dirname(cfg.master_key.file), 'cipher.sock');
        server = await startCipherServiceServer(key.ring, socketPath);
        out(`Cipher service listening on ${socketPath}`);
        out(`  servers: cipher.url = "unix://${socketPath}" (TRESOR_CIPHER_URL=unix://${socketPath})`);
      }
      await new Promise<void>((resolve) => {
        const shutdown = () => server.close(() => resolve());
        process.once('SIGINT', shutdown);
        process.once('SIGTERM', shutdown);
      });
    });

  program
    .command('migrate')
    .description('apply pending forward-only migrations to the control database and every tenant database')
    .action(async () => {
      const cfg = config(program);
      const core = await openCore(cfg, { log: cliLogger(cfg), migrate: false });
      try {
        const applied = await migrateEverything(core.storage);
        emit(program, { applied }, () => out(applied.length === 0 ? 'Everything is up to date.' : applied.map((m) => `applied ${m}`).join('\n')));
      } finally {
        await core.close();
      }
    });

  const configCmd = program.command('config').description('show the configuration');
  configCmd
    .command('print')
    .description('print the effective configuration (file + TRESOR_* environment), secrets masked')
    .addOption(new Option('--format <format>', 'output format').choices(['toml', 'json']).default('toml'))
    .action((opts: { format: 'toml' | 'json' }) => {
      const cfg = config(program);
      out(renderConfig(cfg, program.opts<GlobalOptions>().json ? 'json' : opts.format).trimEnd());
    });

  program
    .command('login')
    .description('log in to a server (with --url) and print a bearer token for TRESOR_TOKEN; the password is read from TRESOR_PASSWORD or the terminal')
    .requiredOption('--login <login>', 'account login')
    .action(async (opts: { login: string }) => {
      const global = program.opts<GlobalOptions>();
      if (!global.url) throw new DomainError('VALIDATION', 'login needs --url (or TRESOR_URL) naming the server');
      const password = process.env.TRESOR_PASSWORD ?? (await ask('Password: '));
      const server = { url: global.url, caFile: global.cacert };
      let result = await callApi<{ sessionToken: string; expiresAt: string; pending: string[] }>(server, 'POST', '/api/v1/auth/login', {
        login: opts.login,
        password,
        mode: 'token',
      });
      if (result.pending.includes('password_change')) {
        // A one-time or expired password: nothing else works until it is changed.
        err('You must set a new password before you continue.');
        const newPassword = process.env.TRESOR_NEW_PASSWORD ?? (await ask('New password: '));
        result = await callApi({ ...server, token: result.sessionToken }, 'POST', '/api/v1/auth/password', { currentPassword: password, newPassword });
      }
      if (result.pending.includes('second_factor_setup')) err('Your organisation requires a second factor: set it up in the web app before you continue.');
      emit(program, result, () => {
        out(`export TRESOR_URL=${global.url}`);
        out(`export TRESOR_TOKEN=${result.sessionToken}`);
        out(`# valid until ${result.expiresAt}`);
      });
    });

  // ---- secure exchange (docs/transfers.md): the same format and API as the web app ----------------------
  const remoteOf = (needsLogin: boolean) => {
    const global = program.opts<GlobalOptions>();
    if (!global.url) throw new DomainError('VALIDATION', 'this command talks to a server: set TRESOR_URL (or --url) and log in with `tresor login`');
    if (needsLogin && !global.token) throw new DomainError('UNAUTHENTICATED', 'log in first: `tresor login --login <you>` and set TRESOR_TOKEN');
    return { url: global.url, token: global.token, caFile: global.cacert };
  };
  const secupassOf = async () => process.env.TRESOR_SECUPASS ?? (await ask('SecuPass key: '));
  const secupass = program.command('secupass').description('your SecuPass key pair for end-to-end encrypted transfers (levels 3 and 4)');
  secupass
    .command('init')
    .description('create your key pair (or, with --reset, replace it: data sent for the old key becomes unreadable until each sender approves the new one); the SecuPass key comes from TRESOR_SECUPASS or the terminal and must differ from your login password')
    .option('--reset', 'replace an existing key')
    .action(async (opts: { reset?: boolean }) => {
      const remote = remoteOf(true);
      const exists = await callApi(remote, 'GET', '/api/v1/e2e/key').then(() => true, () => false);
      if (exists && !opts.reset) throw new DomainError('CONFLICT', 'you have a SecuPass key already; --reset replaces it (data sent for the old key then waits for each sender\'s approval)');
      const result = await initSecupass(remote, await secupassOf());
      emit(program, result, () => {
        out(`SecuPass key ${result.reset ? 'reset' : 'created'}. Fingerprint: ${result.fingerprint}`);
        if (result.reset) out(`${result.pendingApprovals} transfer(s) now wait for their sender to approve the new key.`);
      });
    });

  const reportSent = (sent: Awaited<ReturnType<typeof sendTransfer>>) =>
    emit(program, sent, () => {
      out(`Sent transfer ${sent.id}:`);
      for (const r of sent.recipients ?? []) out(`  ${r.email}: ${r.state}${r.keyState === 'pending-key' ? ' (no SecuPass key yet: you approve it when they create one)' : ''}`);
      for (const line of mailNotices(inEnglish, sent)) out(line);
      if (sent.mailsFailed || sent.mailsRejected) out(`A new link for one of them: tresor transfer notify ${sent.id} --recipient <address>`);
    });
  program
    .command('send')
    .description('send files through Tresor at security level 1–4 (remote mode, logged in as a data user); files are encrypted here before upload')
    .requiredOption('--to <emails>', 'recipient e-mail addresses, comma-separated')
    .requiredOption('--subject <text>', 'subject')
    .option('--message <text>', 'message')
    .addOption(new Option('--level <n>', 'security level: 1 link + address, 2 + guest login, 3 files end-to-end, 4 files and message end-to-end').choices(['1', '2', '3', '4']).default('2'))
    .option('--expires <days>', 'days until the transfer is deleted', '7')
    .option('--limit <n>', 'downloads per file and recipient')
    .argument('<files...>', 'files to send')
    .action(async (files: string[], opts: { to: string; subject: string; message?: string; level: string; expires: string; limit?: string }) => {
      const remote = remoteOf(true);
      const level = Number(opts.level) as 1 | 2 | 3 | 4;
      const days = Number(opts.expires);
      if (!Number.isFinite(days) || days <= 0 || days > 90) throw new DomainError('VALIDATION', '--expires must be 1 to 90 days');
      const sent = await sendTransfer(
        remote,
        {
          to: opts.to.split(',').map((e) => e.trim()).filter((e) => e !== ''),
          subject: opts.subject,
          message: opts.message,
          level,
          expiresAt: new Date(Date.now() + days * 86_400_000).toISOString(),
          downloadLimit: opts.limit ? Number(opts.limit) : undefined,
          files,
          secupass: level >= 3 ? await secupassOf() : undefined,
        },
        (line) => program.opts<GlobalOptions>().json || err(line),
      );
      reportSent(sent);
    });

  program
    .command('receive')
    .description('open a transfer link from a notification mail and save its files (levels 2–4: logged in as the recipient; 3–4: with your SecuPass key)')
    .argument('<link>', 'the https://…/app/r/…#s=… link')
    .option('--email <address>', 'level 1: the address the transfer was sent to')
    .option('--out <dir>', 'folder for the files', '.')
    .action(async (link: string, opts: { email?: string; out: string }) => {
      const global = program.opts<GlobalOptions>();
      const remote = { url: global.url, token: global.token, caFile: global.cacert };
      let received: Awaited<ReturnType<typeof receiveTransfer>>;
      try {
        received = await receiveTransfer(remote, link, { outDir: opts.out, email: opts.email, secupass: process.env.TRESOR_SECUPASS }, (line) => global.json || err(line));
      } catch (error) {
        if (error instanceof DomainError && error.message.includes('SecuPass key (TRESOR_SECUPASS')) {
          received = await receiveTransfer(remote, link, { outDir: opts.out, email: opts.email, secupass: await secupassOf() });
        } else throw error;
      }
      emit(program, received, () => {
        out(`${received.subject} — from ${received.sender} (level ${received.level})`);
        if (received.message) out(received.message);
        for (const f of received.files) out(`saved ${f.path} (${f.size} bytes)`);
      });
    });

  program
    .command('upload')
    .description('send files through someone\'s "request files" link (no account needed); they are encrypted here first')
    .argument('<link>', 'the https://…/app/upload/…#s=… link')
    .requiredOption('--from <email>', 'your e-mail address')
    .requiredOption('--subject <text>', 'subject')
    .option('--message <text>', 'message')
    .option('--restart', 'give up an interrupted upload kept for this link and send anew')
    .argument('<files...>', 'files to send')
    .addHelpText(
      'after',
      `\nAn upload cut off (a lost connection, the command stopped) is kept in ${keptUploadsDir()} (readable by you only,\ndeleted once sent): run the same command with the same files again and only what is missing goes up.`,
    )
    .action(async (link: string, files: string[], opts: { from: string; subject: string; message?: string; restart?: boolean }) => {
      const global = program.opts<GlobalOptions>();
      const sent = await uploadToRequest({ url: global.url, caFile: global.cacert }, link, { from: opts.from, subject: opts.subject, message: opts.message, files }, (line) => global.json || err(line), { keptIn: keptUploadsDir(), restart: opts.restart });
      emit(program, sent, () => out(sent.alreadySent ? `Sent already to ${sent.requester} (level ${sent.level}).` : `Sent to ${sent.requester} (level ${sent.level}).`));
    });

  const transfer = program.command('transfer').description('your sent transfers');
  transfer
    .command('list')
    .description('your transfers with each recipient\'s state')
    .action(async () => {
      const list = await callApi<{ id: string; subject: string; level: number; expiresAt: string; recipients: { email: string; state: string; keyState: string; pendingFingerprint: string | null }[] }[]>(remoteOf(true), 'GET', '/api/v1/transfers');
      emit(program, list, () =>
        table(list.flatMap((t) => t.recipients.map((r) => ({ id: t.id, subject: t.subject, level: String(t.level), recipient: r.email, state: r.state, key: r.keyState === 'approval-needed' ? `approve ${r.pendingFingerprint}` : r.keyState })))),
      );
    });
  transfer
    .command('approve')
    .description("approve a recipient's new SecuPass key after comparing its fingerprint with them (re-wraps the file keys here)")
    .argument('<transfer-id>', 'transfer id')
    .requiredOption('--recipient <email>', 'recipient address')
    .requiredOption('--fingerprint <fp>', 'the fingerprint the recipient read out to you (all 64 hex digits; case, spaces and dashes do not matter)')
    .action(async (id: string, opts: { recipient: string; fingerprint: string }) => {
      await approveKey(remoteOf(true), id, opts.recipient, opts.fingerprint, await secupassOf());
      emit(program, { approved: true }, () => out(`Approved: ${opts.recipient} can open the transfer now.`));
    });
  transfer
    .command('request')
    .description('ask someone for files: prints an upload link (and mails it with --email); levels 3/4 encrypt for your SecuPass key')
    .addOption(new Option('--level <n>', 'security level for the upload').choices(['1', '2', '3', '4']).default('2'))
    .option('--email <address>', 'mail the link to this address')
    .option('--message <text>', 'what you ask for')
    .option('--expires <days>', 'days the link works', '14')
    .action(async (opts: { level: string; email?: string; message?: string; expires: string }) => {
      const days = Number(opts.expires);
      if (!Number.isFinite(days) || days <= 0 || days > 90) throw new DomainError('VALIDATION', '--expires must be 1 to 90 days');
      const made = await callApi<{ id: string; link: string; expiresAt: string }>(remoteOf(true), 'POST', '/api/v1/file-requests', {
        level: Number(opts.level),
        expiresAt: new Date(Date.now() + days * 86_400_000).toISOString(),
        ...(opts.email ? { email: opts.email } : {}),
        ...(opts.message ? { message: opts.message } : {}),
      });
      emit(program, made, () => {
        out(`Upload link (valid until ${made.expiresAt}${opts.email ? `, mailed to ${opts.email}` : ''}):`);
        out(made.link);
      });
    });
  transfer
    .command('resume')
    .description('go on with a transfer whose upload was interrupted (by `tresor send` or in the browser): give the same files again; only what is missing goes up, then it is sent')
    .argument('<transfer-id>', 'transfer id (printed when the upload broke off; `tresor transfer list` shows it)')
    .argument('<files...>', 'the same files (matched by name and size; each is checked against what was uploaded)')
    .action(async (id: string, files: string[]) => {
      const sent = await resumeTransfer(remoteOf(true), id, files, secupassOf, (line) => program.opts<GlobalOptions>().json || err(line));
      reportSent(sent);
    });
  transfer
    .command('notify')
    .description('mail one recipient of a sent transfer a new link (a notification that did not arrive or got lost); the earlier link stops opening')
    .argument('<transfer-id>', 'transfer id')
    .requiredOption('--recipient <email>', 'recipient address')
    .action(async (id: string, opts: { recipient: string }) => {
      const answer = await notifyAgain(remoteOf(true), id, opts.recipient);
      emit(program, { notified: opts.recipient, ...answer }, () => notifiedAgainNotices(inEnglish, answer, opts.recipient).forEach((line) => out(line)));
    });
  transfer
    .command('withdraw')
    .description('withdraw a transfer: its files and keys are deleted at once')
    .argument('<transfer-id>', 'transfer id')
    .action(async (id: string) => {
      await callApi(remoteOf(true), 'DELETE', `/api/v1/transfers/${id}`);
      emit(program, { withdrawn: id }, () => out(`Withdrawn: ${id}`));
    });

  const account = program.command('account').description('accounts of every tier: invite, list, disable, enable, reset');
  account
    .command('invite')
    .description('invite an account by e-mail: a one-time link to set its password (valid 7 days)')
    .requiredOption('--email <address>', 'e-mail address (the login)')
    .addOption(new Option('--role <role>', 'role of the account').choices(ACCOUNT_ROLES.filter((r) => r !== 'guest')).makeOptionMandatory())
    .option('--tenant <id>', 'tenant of a tenant or external account (admin, member, dpo, technician, control-centre, authority)')
    .option('--reseller <id>', 'reseller of a reseller or installer account')
    .addOption(new Option('--language <lang>', 'language of the invitation mail').choices(['de', 'en']))
    .action(async (opts: { email: string; role: AccountRole; tenant?: string; reseller?: string; language?: 'de' | 'en' }) => {
      const invited = await withPlatform(program, (c) =>
        c.inviteAccount({ email: opts.email, role: opts.role, tenantId: opts.tenant, resellerId: opts.reseller, language: opts.language }),
      );
      emit(program, invited, () => {
        out(`Invited ${invited.login} as ${invited.role} (account ${invited.accountId}); the invitation mail is valid until ${invited.expiresAt}`);
        if (invited.link) out(`  link (shown once): ${invited.link}`);
        if (invited.mail === 'queued') out('  the mail relay did not take the invitation yet: it waits in the queue and is retried (tresor mail queue)');
        if (invited.mail === 'rejected') out('  the mail relay refused this address for good (no such mailbox): check the address; nothing was sent');
      });
    });
  account
    .command('list')
    .description('list the accounts you administer (of a tenant with --tenant, of a reseller with --reseller)')
    .option('--tenant <id>', 'tenant id')
    .option('--reseller <id>', 'reseller id')
    .action(async (opts: { tenant?: string; reseller?: string }) => {
      const list = await withPlatform(program, (c) => c.listAccounts({ ...(opts.tenant ? { tenantId: opts.tenant } : {}), ...(opts.reseller ? { resellerId: opts.reseller } : {}) }));
      emit(program, list, () => table(list.map((a) => ({ id: a.id, login: a.login, role: a.role, status: a.status, '2fa': a.secondFactor ? 'yes' : 'no', created: a.createdAt }))));
    });
  for (const [name, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    account
      .command(name)
      .description(name === 'disable' ? 'disable an account: it cannot log in, and all its sessions end at once' : 'enable a disabled account again')
      .requiredOption('--login <login>', 'account login (or id)')
      .action(async (opts: { login: string }) => {
        const result = await withPlatform(program, (c) => c.setAccountStatus(opts.login, status));
        emit(program, { ...result, status }, () => out(`Account ${opts.login} is ${status}${result.sessionsEnded ? `; ${result.sessionsEnded} sessions ended` : ''}`));
      });
  }
  account
    .command('reset-2fa')
    .description("remove an account's second factor (a lost phone): its sessions end, the owner is told by mail and sets up a new one")
    .requiredOption('--login <login>', 'account login (or id)')
    .action(async (opts: { login: string }) => {
      const result = await withPlatform(program, (c) => c.resetSecondFactor(opts.login));
      emit(program, result, () => out(`Second factor of ${opts.login} removed${result.sessionsEnded ? `; ${result.sessionsEnded} sessions ended` : ''}`));
    });
  account
    .command('reset-link')
    .description('issue a one-time password-reset link for an account (valid 24 h, usable once); hand it over on a trusted channel')
    .requiredOption('--login <login>', 'account login')
    .action(async (opts: { login: string }) => {
      await withCore(program, async (core, cfg) => {
      const { key, expiresAt } = await core.identity.issuePasswordReset(opts.login);
      const link = `${cfg.server.public_url}/app/reset#key=${key}`;
      emit(program, { link, key, expiresAt }, () => {
        out(`One-time reset link for ${opts.login} (valid until ${expiresAt}, shown once):`);
        out(`  ${link}`);
        out(`  or: curl --cacert data/pki/ca.pem ${cfg.server.public_url}/api/v1/auth/reset -H 'content-type: application/json' -d '{"key":"${key}","newPassword":"…"}'`);
      });
      });
    });

  const reseller = program.command('reseller').description('manage resellers (operator)');
  reseller
    .command('create')
    .description('create a reseller and invite its first admin by e-mail (the link is also printed once)')
    .requiredOption('--name <name>', 'reseller name')
    .requiredOption('--admin-login <login>', 'login (e-mail) of the reseller admin')
    .action(async (opts: { name: string; adminLogin: string }) => {
      const created = await withPlatform(program, (c) => c.createReseller({ name: opts.name, adminLogin: opts.adminLogin }));
      emit(program, created, () => {
        out(`Created reseller ${created.reseller.name} (${created.reseller.id})`);
        out(`  admin login:  ${created.adminLogin} (invited by mail; valid until ${created.invitationExpiresAt})`);
        if (created.invitationLink) out(`  link (shown once): ${created.invitationLink}`);
      });
    });
  reseller
    .command('list')
    .description('list resellers')
    .action(async () => {
      const list = await withPlatform(program, (c) => c.listResellers());
      emit(program, list, () => table(list.map(resellerRow)));
    });
  reseller
    .command('show')
    .description('show one reseller')
    .argument('<id>', 'reseller id')
    .action(async (id: string) => {
      const r = await withPlatform(program, (c) => c.getReseller(id));
      emit(program, r, () => table([resellerRow(r)]));
    });

  const tenant = program.command('tenant').description('manage tenants (operator, or a reseller for its own tenants via --url)');
  tenant
    .command('create')
    .description('create a tenant with its own database; name its first data user so that only they receive the activation key')
    .requiredOption('--name <name>', 'tenant (customer) name')
    .option('--reseller <id>', 'reseller that manages the tenant (operator only; default: the operator itself)')
    .option('--licence-end <date>', 'licence end, YYYY-MM-DD')
    .option('--first-data-user <email>', "the customer's first data user: invited by mail, and the only one who gets the activation key (recommended)")
    .option('--first-role <role>', 'role of the first data user: dpo or member', 'dpo')
    .option('--first-language <language>', "language of the first data user's mails: de or en")
    .action(async (opts: { name: string; reseller?: string; licenceEnd?: string; firstDataUser?: string; firstRole: string; firstLanguage?: string }) => {
      if (opts.firstRole !== 'dpo' && opts.firstRole !== 'member') throw new DomainError('VALIDATION', "--first-role must be 'dpo' or 'member'");
      if (opts.firstLanguage !== undefined && opts.firstLanguage !== 'de' && opts.firstLanguage !== 'en') throw new DomainError('VALIDATION', "--first-language must be 'de' or 'en'");
      const firstRole: 'dpo' | 'member' = opts.firstRole;
      const firstLanguage: 'de' | 'en' | undefined = opts.firstLanguage;
      const t = await withPlatform(program, (c) =>
        c.createTenant({
          name: opts.name,
          resellerId: opts.reseller ?? null,
          licenceEndsAt: opts.licenceEnd ?? null,
          ...(opts.firstDataUser ? { firstDataUser: { email: opts.firstDataUser, role: firstRole, ...(firstLanguage ? { language: firstLanguage } : {}) } } : {}),
        }),
      );
      emit(program, t, () => {
        out(`Created tenant ${t.name} (${t.id})`);
        if (t.firstDataUser) {
          out(`  first data user: ${t.firstDataUser.login} (${t.firstDataUser.role}), invited by mail until ${t.firstDataUser.invitationExpiresAt}`);
          out('  activation key: mailed to the first data user only; it works only for their account. Nobody else is shown it.');
          return;
        }
        out("Hand this to the customer's first data user; it is shown only now and not stored anywhere:");
        out(`  activation key (entered once): ${t.initialKeys.activationKey}`);
        out('The activation renews the tenant secret, so this key opens nothing afterwards; the recovery code is shown only to that data user.');
        out('Whoever enters the key first holds the tenant secret: to keep it from yourself, name the data user (--first-data-user).');
      });
    });
  tenant
    .command('list')
    .description('list the tenants you manage')
    .action(async () => {
      const list = await withPlatform(program, (c) => c.listTenants());
      emit(program, list, () => table(list.map(tenantRow)));
    });
  tenant
    .command('show')
    .description('show one tenant')
    .argument('<id>', 'tenant id')
    .action(async (id: string) => {
      const t = await withPlatform(program, (c) => c.getTenant(id));
      emit(program, t, () => table([tenantRow(t)]));
    });
  tenant
    .command('suspend')
    .description("suspend a tenant: its users and partner clients are refused until it is resumed")
    .argument('<id>', 'tenant id')
    .action(async (id: string) => {
      const t = await withPlatform(program, (c) => c.suspendTenant(id));
      emit(program, t, () => out(`Suspended tenant ${t.name} (${t.id})`));
    });
  tenant
    .command('resume')
    .description('resume a suspended tenant')
    .argument('<id>', 'tenant id')
    .action(async (id: string) => {
      const t = await withPlatform(program, (c) => c.resumeTenant(id));
      emit(program, t, () => out(`Resumed tenant ${t.name} (${t.id})`));
    });
  tenant
    .command('set-licence')
    .description('set the licence end (YYYY-MM-DD) or "none"; after the end plus the grace period the tenant is deleted')
    .argument('<id>', 'tenant id')
    .argument('<end>', 'YYYY-MM-DD, an ISO 8601 time, or none')
    .action(async (id: string, end: string) => {
      const t = await withPlatform(program, (c) => c.setLicence(id, end === 'none' ? null : end));
      emit(program, t, () => out(`Licence of ${t.name} now ends ${t.licenceEndsAt ?? 'never'}`));
    });
  tenant
    .command('delete')
    .description('delete a tenant completely and at once: database (or file), role, blobs; prints the deletion report')
    .argument('<id>', 'tenant id')
    .option('-y, --yes', 'do not ask for confirmation (for scripts)')
    .action(async (id: string, opts: { yes?: boolean }) => {
      const report = await withPlatform(program, async (c) => {
        if (!opts.yes) {
          const t = await c.getTenant(id);
          const answer = await confirm(`Delete tenant "${t.name}" and all its data for good? Type its name to confirm: `);
          if (answer !== t.name) throw new DomainError('VALIDATION', 'not confirmed; nothing was deleted (use --yes in scripts)');
        }
        return c.deleteTenant(id);
      });
      emit(program, report, () => printReport(report));
    });

  tenant
    .command('handover')
    .description(
      "installer handover (S2.3): make the customer's data user the owner. The tenant secret is renewed and wrapped for the owner alone (and active grants), every record is re-encrypted with progress, and your access ends. Remote mode, logged in as the data user who set the tenant up",
    )
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--owner <login>', "the customer's data user (login or account id) who becomes the owner")
    .option('--resume', 'continue an interrupted handover or rotation: re-encrypt the records still under the old secret (logged in as a data user holding the new one, e.g. the owner)')
    .option('-y, --yes', 'do not ask for confirmation (for scripts)')
    .action(async (opts: { tenant: string; owner?: string; resume?: boolean; yes?: boolean }) => {
      const global = program.opts<GlobalOptions>();
      if (!global.url || !global.token) {
        throw new DomainError('VALIDATION', 'the handover needs the tenant secret, which only a logged-in data user holds: set TRESOR_URL, run `tresor login` as the installer and set TRESOR_TOKEN');
      }
      const remote = { url: global.url, token: global.token, caFile: global.cacert };
      const status = await callApi<{ dataAccess: boolean; colleagues: { id: string; login: string }[]; rotationPending?: boolean }>(remote, 'GET', '/api/v1/keys/status');
      if (opts.resume) {
        if (!status.dataAccess) throw new DomainError('FORBIDDEN', 'this session has no data access: log in as a data user who holds the new tenant secret (after a handover: the owner) and set TRESOR_TOKEN');
        const resumed = await callApiLines<{ reencrypted: number }>(remote, 'POST', '/api/v1/keys/rotate/resume', {}, (line) => {
          if (!global.json && typeof line.reencrypted === 'number') process.stderr.write(`\rre-encrypted ${line.reencrypted} records`);
        });
        if (!global.json) process.stderr.write('\n');
        emit(program, { ...resumed, tenant: opts.tenant, wasPending: status.rotationPending === true }, () =>
          out(status.rotationPending ? `Resumed: ${resumed.reencrypted} records re-encrypted; the old tenant secret opens nothing any more.` : 'No interrupted rotation: nothing to do.'),
        );
        return;
      }
      if (!opts.owner) throw new DomainError('VALIDATION', 'name the new owner with --owner <login>, or continue an interrupted handover with --resume');
      if (!status.dataAccess) throw new DomainError('FORBIDDEN', 'this session has no data access: only a data user holding the tenant secret can hand the tenant over');
      const ownerName = opts.owner;
      const wanted = ownerName.trim().toLowerCase();
      const owner = status.colleagues.find((c) => c.id === wanted || c.login === wanted);
      if (!owner) throw new DomainError('NOT_FOUND', `no data user "${ownerName}" with a key pair in this tenant: the owner must have accepted the invitation first`);
      if (!opts.yes) {
        const answer = await confirm(`Hand tenant ${opts.tenant} over to ${owner.login}? Your own access ends. Type "handover" to confirm: `);
        if (answer !== 'handover') throw new DomainError('VALIDATION', 'not confirmed; nothing was changed (use --yes in scripts)');
      }
      const result = await callApiLines<{ version: number; reencrypted: number; keptAccounts: number }>(
        remote,
        'POST',
        `/api/v1/tenants/${encodeURIComponent(opts.tenant)}/handover`,
        { ownerAccountId: owner.id },
        (line) => {
          if (!global.json && typeof line.reencrypted === 'number') process.stderr.write(`\rre-encrypted ${line.reencrypted} records`);
        },
      );
      if (!global.json) process.stderr.write('\n');
      emit(program, { ...result, owner: owner.login }, () => {
        out(`Handed over to ${owner.login}: tenant secret version ${result.version}, ${result.reencrypted} records re-encrypted.`);
        out('Your copy of the key is gone; the owner gives colleagues data access (web app: address book → "Grant access").');
      });
    });

  const policy = tenant.command('policy').description("a tenant's password and second-factor policy (tenant admin, installer, reseller, operator)");
  const printPolicy = (p: PasswordPolicy) =>
    table([
      {
        'min length': String(p.minLength),
        classes: p.requiredClasses.join(',') || '-',
        'max age (days)': p.maxAgeDays === null ? '-' : String(p.maxAgeDays),
        history: String(p.historyCount),
        '2FA roles': p.secondFactorRoles.join(',') || '-',
      },
    ]);
  policy
    .command('show')
    .argument('<id>', 'tenant id')
    .description('show the policy')
    .action(async (id: string) => {
      const p = await withPlatform(program, (c) => c.tenantPolicy(id));
      emit(program, p, () => printPolicy(p));
    });
  const list = (value: string) => (value === '' || value === 'none' ? [] : value.split(',').map((v) => v.trim()));
  policy
    .command('set')
    .argument('<id>', 'tenant id')
    .description('replace the policy: options not given fall back to the platform default (NIST: 12 characters, no classes, no expiry)')
    .option('--min-length <n>', 'minimum length, 12 to 64', Number)
    .option('--classes <list>', `required character classes, comma-separated: ${CHARACTER_CLASSES.join(',')} (or none)`, list)
    .option('--max-age-days <n>', 'days after which a password must be changed (1 to 3650)', Number)
    .option('--history <n>', 'number of earlier passwords refused (0 to 24)', Number)
    .option('--require-2fa <roles>', `roles that must use a second factor, comma-separated: ${POLICY_ROLES.join(',')} (or none)`, list)
    .action(async (id: string, opts: { minLength?: number; classes?: string[]; maxAgeDays?: number; history?: number; require2fa?: string[] }) => {
      const input: Partial<PasswordPolicy> = {
        ...(opts.minLength !== undefined ? { minLength: opts.minLength } : {}),
        ...(opts.classes ? { requiredClasses: opts.classes as CharacterClass[] } : {}),
        ...(opts.maxAgeDays !== undefined ? { maxAgeDays: opts.maxAgeDays } : {}),
        ...(opts.history !== undefined ? { historyCount: opts.history } : {}),
        ...(opts.require2fa ? { secondFactorRoles: opts.require2fa as AccountRole[] } : {}),
      };
      const p = await withPlatform(program, (c) => c.setTenantPolicy(id, input));
      emit(program, p, () => printPolicy(p));
    });

  const backup = program.command('backup').description('backups of every database and blob (local, platform owner; S1.3): create, list, verify, restore');
  backup
    .command('create')
    .description('write a backup now into backup.dir (consistent copies of the databases, the encrypted blobs, a manifest of SHA-256 sums); old ones beyond backup.keep_days are pruned')
    .action(async () => {
      await withCore(program, async (core, cfg) => {
        err(`Writing a backup into ${cfg.backup.dir} …`);
        const summary = await createBackup(core, { actor: 'cli' });
        const pruned = pruneBackups(cfg.backup.dir, cfg.backup.keep_days, core.clock.now());
        emit(program, { ...summary, pruned }, () => {
          out(`Backup ${summary.id}: ${summary.tenants} tenants, ${summary.files} files (${summary.linked} unchanged blobs linked), ${summary.bytes} bytes`);
          out(`  ${summary.path}`);
          if (pruned.length > 0) out(`Pruned backups older than ${cfg.backup.keep_days} days: ${pruned.join(', ')}`);
          out(`The master key is not in it: keep ${cfg.master_key.file} backed up apart.`);
        });
      });
    });
  backup
    .command('list')
    .description('the complete backups in backup.dir, newest first')
    .action(() => {
      const cfg = config(program);
      const rows = listBackups(cfg.backup.dir).map((m) => ({ id: m.id, created: m.createdAt, engine: m.engine, tenants: String(m.tenants.length), files: String(m.files.length), bytes: String(m.files.reduce((n, f) => n + f.bytes, 0)) }));
      emit(program, rows, () => (rows.length === 0 ? out(`No backups in ${cfg.backup.dir}.`) : table(rows)));
    });
  backup
    .command('verify')
    .description('check every file of a backup against its manifest (exit 6 and the first damaged file otherwise)')
    .argument('<backup>', 'a backup id from `tresor backup list`, or the path of a backup folder')
    .action(async (which: string) => {
      const cfg = config(program);
      const folder = backupFolder(cfg.backup.dir, which);
      const masterKey = cipherServiceOf(cfg);
      const manifest = await verifyBackup(folder, masterKey).finally(() => masterKey.close());
      emit(program, { id: manifest.id, ok: true, files: manifest.files.length }, () => out(`OK ${manifest.id}: all ${manifest.files.length} files match the manifest`));
    });
  backup
    .command('restore')
    .description('put a backup back, with the server stopped: checks every file first, moves the current database files and blobs aside into <data_dir>/pre-restore-<time>/ (PostgreSQL: restored in place), then records the restore in the ledger')
    .argument('<backup>', 'a backup id from `tresor backup list`, or the path of a backup folder')
    .option('-y, --yes', 'do not ask for confirmation (for scripts)')
    .action(async (which: string, opts: { yes?: boolean }) => {
      const cfg = config(program);
      const folder = backupFolder(cfg.backup.dir, which);
      if (!opts.yes) {
        const answer = await confirm(`Stop every tresor server first. Replace the current data with backup ${which}? Type "restore" to confirm: `);
        if (answer !== 'restore') throw new DomainError('VALIDATION', 'not confirmed; nothing was restored (use --yes in scripts)');
      }
      const masterKey = cipherServiceOf(cfg);
      const { manifest, asideDir } = await restoreBackup(cfg, masterKey, folder, { now: new Date(), onProgress: (step) => err(`  ${step} …`) });
      masterKey.close();
      const { reshredded } = await withCore(program, (core) => finishRestore(core, manifest, 'cli'));
      emit(program, { id: manifest.id, createdAt: manifest.createdAt, tenants: manifest.tenants.length, asideDir, reshredded }, () => {
        out(`Restored backup ${manifest.id} (taken ${manifest.createdAt}, ${manifest.tenants.length} tenants).`);
        out(`The data it replaced is in ${asideDir}${cfg.database.url === '' ? '' : ' (PostgreSQL: a pg_dump of each database as it was)'}.`);
        if (reshredded.length > 0) out(`Deleted again, as they had been since the backup (their keys stay shredded): ${reshredded.join(', ')}`);
      });
    });

  const mail = program.command('mail').description('the outbound mail queue (local, platform owner): mails the SMTP relay has not taken yet');
  mail
    .command('queue')
    .description('list the waiting mails: id, template, attempts, next attempt, last error code (never an address)')
    .action(async () => {
      await withCore(program, async (core) => {
        const queued = await core.mail.queue({ kind: 'system', name: 'cli' });
        emit(program, queued, () =>
          table(queued.map((m) => ({ id: m.id, kind: m.kind, attempts: String(m.attempts), 'next attempt': m.nextAttemptAt, 'last error': m.lastErrorCode ?? '-', queued: m.createdAt }))),
        );
      });
    });
  mail
    .command('retry')
    .description('try every waiting mail now instead of at its next attempt (after fixing the relay)')
    .action(async () => {
      await withCore(program, async (core) => {
        const result = await core.mail.retryAll({ kind: 'system', name: 'cli' });
        emit(program, result, () => out(`Sent ${result.sent}, still queued ${result.queued}, given up ${result.failed}`));
      });
    });

  const keys = program.command('keys').description('the master key (local, platform owner)');
  keys
    .command('status')
    .description('master key versions and how many sealed values use each')
    .action(async () => {
      await withCore(program, async (core) => {
        const counts = await countVersions(await sealedColumns(core));
        const { current, versions } = await core.masterKey.versions();
        const rows = versions.map((v) => ({ version: String(v), current: v === current ? 'yes' : '', 'sealed values': String(counts.get(v) ?? 0) }));
        emit(program, rows, () => table(rows));
      });
    });
  keys
    .command('rotate-master')
    .description('add a new master key version and seal every value again under it; resumable (--resume continues without adding a version), no downtime: running servers pick the new version up')
    .option('--resume', 'continue an interrupted rotation instead of adding another version')
    .action(async (opts: { resume?: boolean }) => {
      const cfg = config(program);
      if (cfg.master_key.value !== '') throw new DomainError('VALIDATION', 'the master key comes from master_key.value: rotate by adding a version to a key file (master_key.file) instead');
      if (cfg.cipher.url !== '') throw new DomainError('VALIDATION', 'the master key lives with the cipher service (cipher.url): run `tresor keys rotate-master` on that host, without cipher.url');
      const version = opts.resume ? undefined : addMasterKeyVersion(cfg.master_key.file);
      await withCore(program, async (core) => {
        if (version !== undefined) err(`Added master key version ${version} to ${cfg.master_key.file}; sealing every value again under it.`);
        const results = [];
        for (const column of await sealedColumns(core)) {
          const r = await resealColumn(core.masterKey, column);
          err(`  ${column.database}: ${column.table}.${column.column}: ${r.resealed} sealed again, ${r.current} already current`);
          results.push({ database: column.database, table: column.table, ...r });
        }
        const { current } = await core.masterKey.versions();
        await core.ledgers.platform.append({ actor: { tier: 'system', role: 'cli', id: 'cli' }, action: 'key.rotate-master', resource: { type: 'master-key', id: String(current) }, outcome: 'success', details: { resealed: results.reduce((n, r) => n + r.resealed, 0) } });
        emit(program, { version: current, results }, () => out(`Every sealed value is under master key version ${current}. Retire old versions with: tresor keys retire-master --key-version <n>`));
      });
    });
  keys
    .command('retire-master')
    .description('remove an old master key version from the key file, once no sealed value uses it')
    .requiredOption('--key-version <n>', 'the version to remove', Number)
    .action(async (opts: { keyVersion: number }) => {
      const cfg = config(program);
      await withCore(program, async (core) => {
        const used = (await countVersions(await sealedColumns(core))).get(opts.keyVersion) ?? 0;
        if (used > 0) throw new DomainError('CONFLICT', `${used} sealed values still use master key version ${opts.keyVersion}: run tresor keys rotate-master --resume first`);
        retireMasterKeyVersion(cfg.master_key.file, opts.keyVersion);
        await core.ledgers.platform.append({ actor: { tier: 'system', role: 'cli', id: 'cli' }, action: 'key.retire-master', resource: { type: 'master-key', id: String(opts.keyVersion) }, outcome: 'success' });
        emit(program, { retired: opts.keyVersion }, () => out(`Master key version ${opts.keyVersion} removed; back up ${cfg.master_key.file} again.`));
      });
    });

  const ledger = program.command('ledger').description('tamper-evident ledgers: checkpoints, verification and exports (local, operator; export also through the server)');
  const pickLedger = async (core: Core, tenant: string | undefined) =>
    tenant ? core.ledgers.tenant((await core.platform.getTenant({ kind: 'system', name: 'cli' }, tenant)).id) : core.ledgers.platform;
  ledger
    .command('checkpoint')
    .description('write a signed checkpoint of the ledger now (if it grew) and show it')
    .option('--tenant <id>', "the tenant's ledger instead of the platform ledger")
    .option('--export', 'print only the checkpoint in C2SP text form, for an outside witness to keep')
    .action(async (opts: { tenant?: string; export?: boolean }) => {
      await withCore(program, async (core, cfg) => {
      const l = await pickLedger(core, opts.tenant);
      const cp = await l.checkpoint();
      if (opts.export) return void process.stdout.write(cp.text);
      emit(program, { ...cp, publicKey: await l.publicKey() }, () => {
        out(`Checkpoint of ${l.origin}: size ${cp.treeSize}, root ${cp.rootHash}, ${cp.time}`);
        out('');
        process.stdout.write(cp.text);
      });
      });
    });
  ledger
    .command('verify')
    .description('rebuild the tree(s) and report the first changed, missing, inserted or reordered entry or a truncation; exit 9 on a finding')
    .option('--tenant <id>', "verify this tenant's ledger (default: the platform ledger)")
    .option('--all', 'verify the platform ledger and every tenant ledger')
    .option('--witness <file>', 'a checkpoint kept outside (from `ledger checkpoint --export`): prove nothing before it was rewritten')
    .action(async (opts: { tenant?: string; all?: boolean; witness?: string }) => {
      await withCore(program, async (core, cfg) => {
      const witness = opts.witness ? readFileSync(opts.witness, 'utf8') : undefined;
      const targets = opts.all ? await core.ledgers.all() : [{ name: opts.tenant ? `tenant ${opts.tenant}` : 'platform', ledger: await pickLedger(core, opts.tenant) }];
      const reports: (VerifyReport & { name: string })[] = [];
      for (const target of targets) {
        // Long runs show progress on stderr, at most once a second (and first and last); never in --json mode.
        let shown = { at: 0, checked: -1 };
        const onProgress = (checked: number, total: number, done: boolean) => {
          const now = Date.now();
          if (checked === shown.checked || (checked !== 0 && !done && now - shown.at < 1000)) return;
          shown = { at: now, checked };
          err(`verifying ${target.name}: ${checked.toLocaleString('en')} / ${total.toLocaleString('en')} entries checked`);
        };
        const json = program.opts<GlobalOptions>().json === true;
        reports.push({ name: target.name, ...(await target.ledger.verify({ ...(witness !== undefined ? { witness } : {}), ...(json ? {} : { onProgress }) })) });
      }
      emit(program, reports, () => {
        for (const r of reports) {
          out(`${r.ok ? 'OK  ' : 'FAIL'} ${r.origin}: ${r.treeSize} entries, ${r.checkpointsChecked} checkpoints, ${r.payloadsChecked} payloads checked${r.witness ? `, witness at size ${r.witness.treeSize} ${r.witness.consistent ? 'consistent' : 'INCONSISTENT'}` : ''}`);
          for (const f of r.findings) out(`     ${f.kind}: ${f.message}`);
        }
      });
      if (reports.some((r) => !r.ok)) process.exitCode = EXIT.LEDGER_TAMPERED;
      });
    });

  ledger
    .command('export')
    .description(
      'export entries (JSON or CSV) with the signed checkpoint that covers them, for auditors and the DPO; with --url (remote mode) through the server as the logged-in DPO or operator, which also finds a data subject by --email or --name',
    )
    .option('--tenant <id>', "the tenant's ledger (default: the platform ledger; a DPO gets its tenant's)")
    .option('--from <time>', 'start, ISO 8601 (inclusive)')
    .option('--to <time>', 'end, ISO 8601 (exclusive)')
    .option('--actor <id>', 'only this actor (account id or tier:role:id)')
    .option('--action <action>', 'only this action, or a prefix ending in "." (e.g. auth.)')
    .option('--subject <blind-index>', "only entries about this data subject's blind index (Art. 15 GDPR)")
    .option('--email <address>', 'only entries about the data subject with this e-mail address (remote mode, as the DPO)')
    .option('--name <name>', 'only entries about the data subject with this name (remote mode, as the DPO)')
    .addOption(new Option('--format <format>', 'output format').choices(['json', 'csv']).default('json'))
    .option('--out <file>', 'write to FILE (CSV: the checkpoint goes to FILE.checkpoint)')
    .action(async (opts: { tenant?: string; from?: string; to?: string; actor?: string; action?: string; subject?: string; email?: string; name?: string; format: 'json' | 'csv'; out?: string }) => {
      if (opts.format === 'csv' && !opts.out) throw new DomainError('VALIDATION', 'CSV export needs --out FILE (the checkpoint is written next to it)');
      const global = program.opts<GlobalOptions>();
      const bySubjectInClear = opts.email !== undefined || opts.name !== undefined;
      type Exported = { origin: string; checkpoint: string; entries: ExportedEntry[] };
      let result: Exported;
      if (global.url) {
        if (!global.token) throw new DomainError('UNAUTHENTICATED', 'remote mode needs a token: run `tresor login` as the DPO (or operator) and set TRESOR_TOKEN, or pass --token');
        const query = new URLSearchParams({ format: 'json' });
        for (const key of ['tenant', 'from', 'to', 'actor', 'action', 'subject', 'email', 'name'] as const) {
          const value = opts[key];
          if (value !== undefined) query.set(key === 'tenant' ? 'tenantId' : key, value);
        }
        result = await callApi<Exported>({ url: global.url, token: global.token, caFile: global.cacert }, 'GET', `/api/v1/ledger/export?${query.toString()}`);
      } else {
        if (bySubjectInClear) {
          throw new DomainError(
            'VALIDATION',
            "--email and --name need the tenant's data key, which the local operator does not have: run the export through the server as the tenant's DPO (TRESOR_URL=https://… TRESOR_TOKEN=… from `tresor login`), or pass --subject with the blind index from the privacy centre",
          );
        }
        result = await withCore(program, async (core) => (await pickLedger(core, opts.tenant)).export({ from: opts.from, to: opts.to, actor: opts.actor, action: opts.action, subject: opts.subject }));
      }
      if (opts.format === 'json') {
        const text = JSON.stringify(result, null, 2) + '\n';
        if (opts.out) writeFileSync(opts.out, text, { mode: 0o600 });
        else process.stdout.write(text);
      } else {
        writeFileSync(opts.out!, toCsv(EXPORT_CSV_COLUMNS, result.entries.map(exportCsvRow)), { mode: 0o600 });
        writeFileSync(`${opts.out!}.checkpoint`, result.checkpoint, { mode: 0o600 });
      }
      if (opts.out) process.stderr.write(`exported ${result.entries.length} entries of ${result.origin} to ${opts.out}\n`);
    });

  program
    .command('billing')
    .description('billing figures from the ledgers')
    .command('report')
    .description("sum a tenant's billing events for one month")
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--month <YYYY-MM>', 'month, UTC')
    .action(async (opts: { tenant: string; month: string }) => {
      await withCore(program, async (core, cfg) => {
      if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(opts.month)) throw new DomainError('VALIDATION', `--month '${opts.month}' must be YYYY-MM, e.g. 2026-11`);
      const report = { tenantId: opts.tenant, ...(await billingReport(await pickLedger(core, opts.tenant), opts.month)) };
      emit(program, report, () => {
        out(`Billing for tenant ${report.tenantId}, ${report.month}: ${report.events} events`);
        out(`  API calls:          ${report.totals.apiCalls}`);
        out(`  bytes transferred:  ${report.totals.bytesTransferred}`);
        out(`  records stored:     ${report.totals.recordsStored}`);
        if (report.eventsWithoutPayload > 0) out(`  (${report.eventsWithoutPayload} events had no payload left)`);
      });
      });
    });

  return program;
}

async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

export async function runCli(argv: string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    const json = program.opts<GlobalOptions>().json;
    if (error instanceof DomainError) {
      if (json) process.stderr.write(`${JSON.stringify({ code: error.code, message: error.message })}\n`);
      else process.stderr.write(`tresor: ${error.message}\n`);
      return EXIT[error.code] ?? EXIT.INTERNAL;
    }
    const message = (error as { code?: string }).code === 'ECONNREFUSED' ? 'cannot reach the server (connection refused)' : String((error as Error).message ?? error);
    process.stderr.write(`tresor: unexpected error: ${message}\n`);
    return EXIT.INTERNAL;
  } finally {
    closeConnections();
  }
}

process.exitCode = await runCli(process.argv);

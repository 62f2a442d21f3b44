import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type TresorConfig } from '../src/config/index.js';
import { ensureFirstOperator, openCore, type Core } from '../src/core.js';
import { ensureLocalPki } from '../src/crypto/pki.js';
import { buildApp } from '../src/http/app.js';
import { mailQueueJob } from '../src/ops/jobs.js';
import { encryptBytes, randomFileKey, toBase64Url } from '../src/shared-e2e/index.js';
import { freePort, tresor } from './cli-process.js';
import { bearerLogin, engines, fixedClock, GOOD_PASSWORD, makeTestEnv, silentLog, type TestEnv } from './helpers.js';

const ADMIN = 'queue-admin@nord.test';
const LATE = 'too-late@nord.test';

/** The text of a received message: quoted-printable soft breaks and escapes undone. */
const bodyOf = (raw: string) =>
  Buffer.from(raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');

/** Every file under a folder (databases, WAL files, blobs), for a search of its raw bytes. */
const filesUnder = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });

/**
 * The durable outbound mail queue against a real SMTP relay on loopback (STARTTLS with a local CA, a
 * login): while the relay is down an invitation answers 201 and waits sealed in the control database;
 * once the relay is up the scheduler job delivers it and its link works. A message the relay never takes
 * is given up after 24 hours with `mail.failed` in the platform ledger (no address), and the queue
 * survives a restart.
 */
describe.each(engines)('outbound mail queue with the relay down and up again (%s)', (engine) => {
  let t: TestEnv;
  let config: Readonly<TresorConfig>;
  let core: Core;
  let app: FastifyInstance;
  let relayPort: number;
  let relayPki: Awaited<ReturnType<typeof ensureLocalPki>>;
  let relay: SMTPServer | undefined;
  const received: string[] = [];
  const logLines: string[] = [];
  const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) }));
  const clock = fixedClock('2026-11-30T08:00:00.000Z');
  const tokens: Record<string, string> = {};
  let tenantId = '';
  let activationKey = '';
  const later = (ms: number) => clock.set(new Date(clock.now().getTime() + ms).toISOString());
  const call = (who: string, method: 'GET' | 'POST', url: string, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload ? { payload } : {}) });
  const rows = () => core.storage.control.selectFrom('mail_queue').selectAll().orderBy('created_at').execute();
  const runJob = () => mailQueueJob(core, log).run();

  const relayUp = async () => {
    const server = new SMTPServer({
      key: readFileSync(relayPki.keyPath),
      cert: readFileSync(relayPki.certPath),
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth(auth, _session, callback) {
        if (auth.username === 'tresor' && auth.password === 'relay-secret') callback(null, { user: auth.username });
        else callback(new Error('invalid login'));
      },
      onRcptTo(address, _session, callback) {
        // A mailbox that does not exist: refused for good.
        if (address.address.startsWith('nobody-here@')) callback(Object.assign(new Error('5.1.1 mailbox unavailable'), { responseCode: 550 }));
        else callback();
      },
      onData(stream, _session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          received.push(Buffer.concat(chunks).toString('utf8'));
          callback();
        });
      },
      logger: false,
    });
    await new Promise<void>((resolve) => server.listen(relayPort, '127.0.0.1', () => resolve()));
    relay = server;
  };
  const relayDown = async () => {
    const server = relay;
    relay = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  /** The one-time key of the newest link of `kind` the relay received for `to`. */
  const receivedKey = (to: string, kind: 'invite' | 'reset' | 'access') => {
    for (const raw of [...received].reverse()) {
      if (!new RegExp(`^To: ${to.replace(/[.]/g, '\\.')}`, 'm').test(raw)) continue;
      const key = new RegExp(`/app/${kind}#key=([A-Za-z0-9_-]{43})`).exec(bodyOf(raw))?.[1];
      if (key) return key;
    }
    throw new Error(`the relay received no ${kind} link for ${to}`);
  };
  const open = async () => {
    core = await openCore(config, { log, clock });
    app = await buildApp(core, { logger: silentLog });
  };
  const close = async () => {
    await app.close();
    await core.close();
  };

  beforeAll(async () => {
    relayPort = await freePort(); // nobody listens here yet: the relay is down
    t = makeTestEnv(engine);
    relayPki = await ensureLocalPki(join(t.dir, 'relay-pki'), ['localhost']);
    config = loadConfig({
      cwd: t.dir,
      env: { ...t.env, TRESOR_MAIL_TRANSPORT: 'smtp', TRESOR_MAIL_SMTP_URL: `smtp://tresor:relay-secret@localhost:${relayPort}`, TRESOR_MAIL_SMTP_CA_FILE: relayPki.caCertPath },
    });
    await open();
    const operator = (await ensureFirstOperator(core))!;
    tokens.operator = await bearerLogin(app, operator.login, operator.oneTimePassword);
    const tenant = await call('operator', 'POST', '/api/v1/tenants', { name: 'Stadtwerke Queue' });
    expect(tenant.statusCode, tenant.body).toBe(201);
    ({ id: tenantId, initialKeys: { activationKey } } = tenant.json<{ id: string; initialKeys: { activationKey: string } }>());
  });
  afterAll(async () => {
    await app?.close();
    await core?.close();
    await relayDown();
    await t?.cleanup();
  });

  it('answers an invitation with 201 while the relay is down and keeps the mail sealed in the queue', async () => {
    const invited = await call('operator', 'POST', '/api/v1/accounts', { email: ADMIN, role: 'admin', tenantId });
    expect(invited.statusCode, invited.body).toBe(201);
    expect(invited.json()).toMatchObject({ login: ADMIN, role: 'admin', mail: 'queued' });
    const account = await core.storage.control.selectFrom('accounts').select(['status']).where('login', '=', ADMIN).executeTakeFirst();
    expect(account).toEqual({ status: 'invited' });

    const [row, ...more] = await rows();
    expect(more).toHaveLength(0);
    expect(row).toMatchObject({ kind: 'invitation', attempts: 1, last_error_code: expect.stringMatching(/^[A-Z][A-Z0-9_]*$/) });
    expect(row!.next_attempt_at).toBe(new Date(clock.now().getTime() + 60_000).toISOString()); // first retry after a minute
    // Only the master key opens it, and only as this row: the id is bound into the context.
    const message = JSON.parse((await core.masterKey.open(row!.sealed_message, `mail-queue|${row!.id}`)).toString('utf8')) as { to: string; text: string };
    expect(message.to).toBe(ADMIN);
    const key = /\/app\/invite#key=([A-Za-z0-9_-]{43})/.exec(message.text)![1]!;
    await expect(core.masterKey.open(row!.sealed_message, 'mail-queue|00000000-0000-4000-8000-000000000000')).rejects.toThrow();
    // The raw bytes of the row (the sealed value decoded too) hold neither the address nor the key.
    const raw = engine === 'postgres'
      ? (await (await import('kysely')).sql<{ raw: string }>`select t::text as raw from mail_queue t`.execute(core.storage.control)).rows.map((r) => r.raw).join('\n')
      : JSON.stringify(row);
    expect(raw).toContain(row!.id);
    const sealedBytes = Buffer.concat(row!.sealed_message.split('.').map((part) => Buffer.from(part, 'base64url')));
    for (const secret of [ADMIN, 'queue-admin', key]) {
      expect(raw).not.toContain(secret);
      expect(sealedBytes.includes(Buffer.from(secret))).toBe(false);
    }
    // Nowhere in the data directory either (the SQLite files, their WAL): the key lives only in the sealed mail.
    for (const file of filesUnder(config.data_dir)) expect(readFileSync(file).includes(Buffer.from(key)), file).toBe(false);
  });

  it('tries again only when due, backing off 1, 2, 4 … minutes', async () => {
    await runJob();
    expect((await rows())[0]!.attempts).toBe(1); // not due yet
    later(60_000);
    await runJob();
    const [row] = await rows();
    expect(row!.attempts).toBe(2);
    expect(row!.next_attempt_at).toBe(new Date(clock.now().getTime() + 120_000).toISOString());
  });

  it('lists the queue for the operator (no addresses) and nobody else', async () => {
    const listed = await call('operator', 'GET', '/api/v1/mail/queue');
    expect(listed.statusCode, listed.body).toBe(200);
    expect(listed.json()).toEqual([expect.objectContaining({ kind: 'invitation', attempts: 2, lastErrorCode: expect.any(String) })]);
    expect(listed.body).not.toContain('nord.test');
    expect((await app.inject({ method: 'GET', url: '/api/v1/mail/queue' })).statusCode).toBe(401);
  });

  it('delivers through the relay once it is up; the invitation link in the received mail works', async () => {
    await relayUp();
    later(120_000);
    await runJob();
    expect(await rows()).toEqual([]);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatch(new RegExp(`^To: ${ADMIN.replace('.', '\\.')}`, 'm'));
    const accepted = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: receivedKey(ADMIN, 'invite'), newPassword: GOOD_PASSWORD } });
    expect(accepted.statusCode, accepted.body).toBe(204);
    later(60_000);
    tokens.admin = await bearerLogin(app, ADMIN, GOOD_PASSWORD);
    const me = await call('admin', 'GET', '/api/v1/auth/me');
    expect(me.json()).toMatchObject({ kind: 'tenant', role: 'admin', tenantId });
    // The tenant admin may not see the platform's mail queue.
    expect((await call('admin', 'GET', '/api/v1/mail/queue')).statusCode).toBe(403);
    // With the relay up, a mail goes out at once and nothing is queued.
    const member = await call('admin', 'POST', '/api/v1/accounts', { email: 'member@nord.test', role: 'member' });
    expect(member.statusCode, member.body).toBe(201);
    expect(member.json()).not.toHaveProperty('mail'); // the answer is as it always was
    expect(await rows()).toEqual([]);
  });

  it('answers an access link (201) and a transfer (200) while the relay is down; both mails arrive later and work', async () => {
    // With the relay up: the member invited above and a technician join; the member activates data access.
    const join = async (by: string, email: string, role: string, password: string) => {
      if (by) expect((await call(by, 'POST', '/api/v1/accounts', { email, role })).statusCode).toBe(201);
      const accepted = await app.inject({ method: 'POST', url: '/api/v1/auth/invitation/accept', payload: { key: receivedKey(email, 'invite'), newPassword: password } });
      expect(accepted.statusCode, accepted.body).toBe(204);
    };
    await join('', 'member@nord.test', 'member', 'Zählerstände sind wichtig');
    await join('admin', 'tech@service.test', 'technician', 'Monteur unterwegs 2026');
    tokens.member = await bearerLogin(app, 'member@nord.test', 'Zählerstände sind wichtig');
    expect((await call('member', 'POST', '/api/v1/keys/activate', { activationKey })).statusCode).toBe(204);
    const { id: techId } = await core.storage.control.selectFrom('accounts').select('id').where('login', '=', 'tech@service.test').executeTakeFirstOrThrow();
    const grant = await call('member', 'POST', '/api/v1/grants', { granteeId: techId, expiresAt: new Date(clock.now().getTime() + 4 * 3_600_000).toISOString() });
    expect(grant.statusCode, grant.body).toBe(201);
    const fileKey = randomFileKey();
    const PLAIN = Buffer.from('Zählerstand 4711: 12345 kWh');
    const created = await call('member', 'POST', '/api/v1/transfers', {
      subject: 'Zählerstand',
      level: 1,
      expiresAt: new Date(clock.now().getTime() + 3 * 86_400_000).toISOString(),
      recipients: ['kunde@example.org'],
      files: [{ name: 'stand.txt', size: PLAIN.length, fileKey: toBase64Url(fileKey) }],
    });
    expect(created.statusCode, created.body).toBe(201);
    const c = created.json<{ id: string; files: { id: string }[] }>();
    const cipher = Buffer.from(await encryptBytes(fileKey, `transfer:${c.id}/file:${c.files[0]!.id}`, PLAIN));
    const put = await app.inject({ method: 'PUT', url: `/api/v1/transfers/${c.id}/blobs/${c.files[0]!.id}?offset=0`, headers: { authorization: `Bearer ${tokens.member}`, 'content-type': 'application/octet-stream' }, payload: cipher });
    expect(put.statusCode, put.body).toBe(200);

    await relayDown();
    const link = await call('member', 'POST', `/api/v1/grants/${grant.json<{ id: string }>().id}/link`, {});
    expect(link.statusCode, link.body).toBe(201);
    expect(link.json()).toMatchObject({ expiresAt: expect.any(String), mail: 'queued' });
    const sent = await call('member', 'POST', `/api/v1/transfers/${c.id}/send`);
    expect(sent.statusCode, sent.body).toBe(200);
    expect(sent.json()).toMatchObject({ id: c.id, sentAt: expect.any(String), mailsQueued: 1 });
    expect((await rows()).map((r) => r.kind).sort()).toEqual(['access-link', 'transfer-notification']);

    await relayUp();
    later(60_000);
    await runJob();
    expect(await rows()).toEqual([]);
    const redeemed = await app.inject({ method: 'POST', url: '/api/v1/auth/access-link', payload: { key: receivedKey('tech@service.test', 'access'), mode: 'token' } });
    expect(redeemed.statusCode, redeemed.body).toBe(200);
    const mail = bodyOf([...received].reverse().find((raw) => /^To: kunde@example\.org/m.test(raw))!);
    const [, recipientId, secret] = /\/app\/r\/([0-9a-f-]{36})#s=([A-Za-z0-9_-]{43})/.exec(mail)!;
    const opened = await app.inject({ method: 'POST', url: `/api/v1/r/${recipientId}/open`, payload: { secret, email: 'kunde@example.org' } });
    expect(opened.statusCode, opened.body).toBe(200);
    expect(opened.json()).toMatchObject({ subject: 'Zählerstand' });
  });

  it('gives up after 24 hours: the row goes and mail.failed (template and code, no address) is in the platform ledger', async () => {
    await relayDown();
    const invited = await call('operator', 'POST', '/api/v1/accounts', { email: LATE, role: 'admin', tenantId });
    expect(invited.statusCode, invited.body).toBe(201);
    expect(invited.json()).toMatchObject({ mail: 'queued' });
    later(23 * 3_600_000);
    await runJob();
    expect(await rows()).toHaveLength(1); // still within the day: kept
    expect(await core.ledgers.platform.query({ action: 'mail.failed' })).toEqual([]);
    later(2 * 3_600_000);
    await runJob();
    expect(await rows()).toEqual([]);
    const failed = await core.ledgers.platform.query({ action: 'mail.failed' });
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ outcome: 'failure', payload: expect.objectContaining({ details: expect.objectContaining({ kind: 'invitation', code: expect.stringMatching(/^[A-Z]/) }) }) });
    expect(JSON.stringify(failed)).not.toContain('too-late');
  });

  it('keeps the queue over a restart; a password reset queued before it goes out after it and works', async () => {
    // A day went by: the sessions ended.
    tokens.operator = await bearerLogin(app, 'operator', GOOD_PASSWORD);
    const { id: adminId } = await core.storage.control.selectFrom('accounts').select('id').where('login', '=', ADMIN).executeTakeFirstOrThrow();
    const reset = await call('operator', 'POST', `/api/v1/accounts/${adminId}/reset`);
    expect(reset.statusCode, reset.body).toBe(200);
    expect(reset.json()).toMatchObject({ expiresAt: expect.any(String), mail: 'queued' });
    const [queued] = await rows();
    expect(queued).toMatchObject({ kind: 'password-reset', attempts: 1 });
    await close();

    // The CLI sees the queue from the data directory, without addresses.
    const listed = tresor(['mail', 'queue', '--json'], { cwd: t.dir, env: { ...t.env, TRESOR_MAIL_TRANSPORT: 'smtp', TRESOR_MAIL_SMTP_URL: config.mail.smtp_url, TRESOR_MAIL_SMTP_CA_FILE: relayPki.caCertPath } });
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ id: queued!.id, kind: 'password-reset', attempts: 1 })]);
    expect(listed.stdout + listed.stderr).not.toContain('nord.test');

    await open();
    expect(await core.mail.queue({ kind: 'system', name: 'cli' })).toEqual([expect.objectContaining({ id: queued!.id, kind: 'password-reset' })]);
    await relayUp();
    // `tresor mail retry` does not wait for the backoff (here through the function it calls).
    expect(await core.mail.retryAll({ kind: 'system', name: 'cli' })).toEqual({ sent: 1, queued: 0, failed: 0 });
    expect(await rows()).toEqual([]);
    later(60_000);
    const done = await app.inject({ method: 'POST', url: '/api/v1/auth/reset', payload: { key: receivedKey(ADMIN, 'reset'), newPassword: `${GOOD_PASSWORD}-2` } });
    expect(done.statusCode, done.body).toBe(204);
    later(60_000);
    expect(await bearerLogin(app, ADMIN, `${GOOD_PASSWORD}-2`)).toEqual(expect.any(String));
  });

  it('gives up at once when the relay refuses the address for good, and says so in the answer', async () => {
    if (!relay) await relayUp();
    const before = received.length;
    const invited = await call('operator', 'POST', '/api/v1/accounts', { email: 'nobody-here@nord.test', role: 'admin', tenantId });
    expect(invited.statusCode, invited.body).toBe(201);
    expect(invited.json()).toMatchObject({ mail: 'rejected' });
    expect(await rows()).toEqual([]); // nothing left to retry
    expect(received.length).toBe(before);
    const failed = await core.ledgers.platform.query({ action: 'mail.failed' });
    expect(failed.at(-1)).toMatchObject({ payload: expect.objectContaining({ details: expect.objectContaining({ kind: 'invitation', code: 'EENVELOPE_550', attempts: 1 }) }) });
    expect(JSON.stringify(failed)).not.toContain('nobody-here');
  });

  it('sends nothing from a row whose sealed message was moved from another row: it does not open there and is given up', async () => {
    const before = received.length;
    const moved = await core.masterKey.seal(Buffer.from(JSON.stringify({ to: 'victim@nord.test', subject: 's', text: 't' })), 'mail-queue|11111111-1111-4111-8111-111111111111');
    const id = '22222222-2222-4222-8222-222222222222';
    const now = clock.now().toISOString();
    await core.storage.control.insertInto('mail_queue').values({ id, kind: 'password-reset', sealed_message: moved, attempts: 0, next_attempt_at: now, created_at: now, last_error_code: null }).execute();
    expect(await core.mail.deliverDue()).toEqual({ sent: 0, queued: 0, failed: 1 });
    expect(await rows()).toEqual([]);
    expect(received.length).toBe(before);
    const failed = await core.ledgers.platform.query({ action: 'mail.failed' });
    expect(failed.at(-1)).toMatchObject({ payload: expect.objectContaining({ details: expect.objectContaining({ kind: 'password-reset', code: 'UNREADABLE' }) }) });
  });

  it('never logged an address or a message body', () => {
    const all = logLines.join('');
    expect(all).toContain('mail not accepted by the relay');
    for (const address of ['nord.test', 'service.test', 'example.org']) expect(all).not.toContain(address);
    expect(all).not.toMatch(/#key=|#s=|Zählerstand/);
  });
});

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalPki } from '../src/crypto/pki.js';
import { createMailer } from '../src/mail/mailer.js';
import { readOutbox, silentLog } from './helpers.js';

/** Outbound mail: the .eml outbox of a local run, and a real SMTP relay over loopback with TLS required. */
describe('outbound mail', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tresor-mail-'));
  let pki: Awaited<ReturnType<typeof ensureLocalPki>>;
  const received: { secure: boolean; user: string | undefined; raw: string }[] = [];
  const servers: SMTPServer[] = [];

  /** A relay on 127.0.0.1 that wants a login and records each message with whether TLS was on. */
  const relay = async (options: Partial<SMTPServerOptions>): Promise<number> => {
    const server = new SMTPServer({
      key: readFileSync(pki.keyPath),
      cert: readFileSync(pki.certPath),
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth(auth, _session, callback) {
        if (auth.username === 'tresor' && auth.password === 'relay-secret') callback(null, { user: auth.username });
        else callback(new Error('invalid login'));
      },
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          received.push({ secure: session.secure, user: session.user as string | undefined, raw: Buffer.concat(chunks).toString('utf8') });
          callback();
        });
      },
      logger: false,
      ...options,
    });
    servers.push(server);
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.server.address() as { port: number }).port)));
  };

  const config = (over: Partial<Parameters<typeof createMailer>[0]>) => ({
    transport: 'smtp' as const,
    outbox_dir: join(dir, 'outbox'),
    smtp_url: '',
    smtp_ca_file: pki.caCertPath,
    from: 'Tresor <tresor@example.test>',
    language: 'de' as const,
    ...over,
  });

  beforeAll(async () => {
    pki = await ensureLocalPki(join(dir, 'pki'), ['localhost']);
  });
  afterAll(async () => {
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes .eml files (mode 0600) into the outbox by default', async () => {
    const mailer = createMailer(config({ transport: 'outbox' }), silentLog);
    await mailer.send({ to: 'anna@example.test', subject: 'Grüße', text: 'Hallo Anna' });
    const [mail] = readOutbox(join(dir, 'outbox'));
    expect(mail).toMatchObject({ to: 'anna@example.test', subject: 'Grüße', text: expect.stringContaining('Hallo Anna') });
    expect(statSync(join(dir, 'outbox', mail!.file)).mode & 0o777).toBe(0o600);
  });

  it('sends through a relay with STARTTLS and a login, checking the relay certificate', async () => {
    const port = await relay({});
    const mailer = createMailer(config({ smtp_url: `smtp://tresor:relay-secret@localhost:${port}` }), silentLog);
    await mailer.send({ to: 'ben@example.test', subject: 'Invitation', text: 'link inside' });
    mailer.close();
    expect(received.at(-1)).toMatchObject({ secure: true, user: 'tresor' });
    expect(received.at(-1)!.raw).toMatch(/^To: ben@example.test/m);
  });

  it('sends through a relay with implicit TLS (smtps://)', async () => {
    const port = await relay({ secure: true });
    const mailer = createMailer(config({ smtp_url: `smtps://tresor:relay-secret@localhost:${port}` }), silentLog);
    await mailer.send({ to: 'cem@example.test', subject: 'Notice', text: 'text' });
    mailer.close();
    expect(received.at(-1)).toMatchObject({ secure: true, user: 'tresor' });
  });

  it('refuses a relay that offers no TLS, and one whose certificate it cannot verify: nothing is sent in clear', async () => {
    const before = received.length;
    const plain = await relay({ disabledCommands: ['STARTTLS'], allowInsecureAuth: true });
    const noTls = createMailer(config({ smtp_url: `smtp://tresor:relay-secret@localhost:${plain}` }), silentLog);
    await expect(noTls.send({ to: 'dora@example.test', subject: 's', text: 't' })).rejects.toThrow();
    noTls.close();
    const port = await relay({});
    const untrusted = createMailer(config({ smtp_url: `smtp://tresor:relay-secret@localhost:${port}`, smtp_ca_file: '' }), silentLog);
    await expect(untrusted.send({ to: 'dora@example.test', subject: 's', text: 't' })).rejects.toThrow(/certificate/);
    untrusted.close();
    expect(received.length).toBe(before);
  });
});

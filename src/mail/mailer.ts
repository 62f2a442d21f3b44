import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import type { TresorConfig } from '../config/index.js';
import { newId } from '../crypto/random.js';

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
}

/** One way out: the outbox folder or the relay. Rejects when the relay refuses or cannot be reached. */
export interface MailTransport {
  /** Resolves once the mail is in the outbox folder or accepted by the relay. */
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

/** What became of a mail handed to the outbound mail service. */
/** 'rejected': the relay refused the recipient for good (SMTP 55x to RCPT TO); nothing is retried. */
export type MailOutcome = 'sent' | 'queued' | 'rejected';

/**
 * Outbound mail as the other modules see it (src/mail/mail.service.ts): `send` never fails because of the
 * relay. With the SMTP transport a message the relay does not take at once stays sealed in the durable
 * queue and is retried by the scheduler; the outbox transport writes the file at once.
 */
export interface Mailer {
  /** `kind` is the template (for the queue and the ledger; never the address). */
  send(mail: OutgoingMail & { kind: string }): Promise<MailOutcome>;
  close(): void;
}

/**
 * Outbound mail through nodemailer. The default transport writes each message as an `.eml` file
 * (mode 0600) into `mail.outbox_dir`, so a local run shows what would be sent; `smtp` sends through a
 * relay with TLS required (implicit TLS for smtps://, STARTTLS for smtp://). Logs name the message
 * id only: recipients are personal data.
 */
export function createMailer(config: Readonly<TresorConfig['mail']>, log: Pick<Logger, 'info' | 'warn'>): MailTransport {
  const smtp = config.transport === 'smtp';
  const transporter: Transporter = smtp
    ? nodemailer.createTransport({
        url: config.smtp_url,
        requireTLS: true,
        // Bounded, so that a hanging relay frees a delivery attempt well within the queue's lease.
        connectionTimeout: 30_000,
        greetingTimeout: 30_000,
        socketTimeout: 60_000,
        tls: {
          minVersion: 'TLSv1.2',
          ...(config.smtp_ca_file !== '' ? { ca: readFileSync(config.smtp_ca_file) } : {}),
        },
      } as Parameters<typeof nodemailer.createTransport>[0])
    : nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    async send(mail) {
      const info = (await transporter.sendMail({ from: config.from, to: mail.to, subject: mail.subject, text: mail.text })) as {
        messageId: string;
        message?: Buffer;
      };
      if (!smtp) {
        mkdirSync(config.outbox_dir, { recursive: true, mode: 0o700 });
        const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${newId()}.eml`;
        const temp = join(config.outbox_dir, `.${name}.tmp`);
        writeFileSync(temp, info.message ?? Buffer.alloc(0), { mode: 0o600 });
        renameSync(temp, join(config.outbox_dir, name));
      }
      log.info({ messageId: info.messageId, transport: config.transport }, 'mail sent');
    },
    close() {
      transporter.close();
    },
  };
}

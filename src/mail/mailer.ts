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

export interface Mailer {
  /** Resolves once the mail is in the outbox folder or accepted by the relay. */
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

/**
 * Outbound mail through nodemailer. The default transport writes each message as an `.eml` file
 * (mode 0600) into `mail.outbox_dir`, so a local run shows what would be sent; `smtp` sends through a
 * relay with TLS required (implicit TLS for smtps://, STARTTLS for smtp://). Logs name the message
 * id only: recipients are personal data.
 */
export function createMailer(config: Readonly<TresorConfig['mail']>, log: Pick<Logger, 'info' | 'warn'>): Mailer {
  const smtp = config.transport === 'smtp';
  const transporter: Transporter = smtp
    ? nodemailer.createTransport({
        url: config.smtp_url,
        requireTLS: true,
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

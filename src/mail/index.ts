export { createMailer, type Mailer, type MailOutcome, type MailTransport, type OutgoingMail } from './mailer.js';
export { createMailService, mailErrorCode, retryDelayMs, GIVE_UP_AFTER_MS, type MailService, type QueuedMailView } from './mail.service.js';
export { createMailQueueRepo, type MailQueueRepo } from './mail.repo.js';
export { mailQueueMigration, type MailQueueTable, type MailSchema } from './mail.migrations.js';
export { registerMailRoutes } from './mail.routes.js';

import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { actorOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import type { MailService } from './mail.service.js';

const queuedMail = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    kind: { type: 'string' },
    attempts: { type: 'integer' },
    nextAttemptAt: { type: 'string' },
    createdAt: { type: 'string' },
    lastErrorCode: { type: ['string', 'null'] },
  },
  required: ['id', 'kind', 'attempts', 'nextAttemptAt', 'createdAt', 'lastErrorCode'],
} as const;
const errors = { 401: errorResponseSchema, 403: errorResponseSchema };

/** The outbound mail queue for the platform operator (the policy decides; nobody else). */
export function registerMailRoutes(app: FastifyInstance, deps: { mail: MailService; authenticate: preHandlerAsyncHookHandler }): void {
  app.get('/api/v1/mail/queue', {
    preHandler: deps.authenticate,
    schema: {
      tags: ['mail'],
      summary: 'Mails waiting for the relay: id, template, attempts, next attempt, last error code (never an address)',
      response: { 200: { type: 'array', items: queuedMail }, ...errors },
    },
    handler: async (request) => deps.mail.queue(actorOf(request)),
  });
}

import type { FastifyError, FastifyInstance } from 'fastify';
import { DomainError, type ErrorCode } from '../shared/errors.js';

const STATUS: Record<ErrorCode, number> = {
  NOT_FOUND: 404,
  FORBIDDEN: 403,
  UNAUTHENTICATED: 401,
  CONFLICT: 409,
  VALIDATION: 400,
  POLICY_VIOLATION: 422,
  SUSPENDED: 403,
  CONFIG_INVALID: 500,
  THROTTLED: 429,
  SECOND_FACTOR_REQUIRED: 401,
  SESSION_LOCKED: 401,
  ACTION_REQUIRED: 403,
  BUSY: 503,
};

export const errorResponseSchema = {
  type: 'object',
  properties: {
    requestId: { type: 'string' },
    code: { type: 'string' },
    message: { type: 'string' },
    problems: { type: 'array', items: { type: 'string' }, description: 'VALIDATION of a password: each thing to fix' },
    problemCodes: {
      type: 'array',
      description: 'VALIDATION of a password: the same problems as stable codes with parameters, for clients that translate them',
      items: {
        type: 'object',
        properties: { code: { type: 'string' }, params: { type: 'object', additionalProperties: { anyOf: [{ type: 'string' }, { type: 'number' }] } } },
        required: ['code', 'params'],
      },
    },
    pending: { type: 'array', items: { type: 'string' }, description: 'ACTION_REQUIRED: what the session must do first' },
    details: {
      type: 'object',
      description: 'facts the client needs to go on: `login` (log in as the recipient first), `email` (enter the address the transfer was sent to), `received` (bytes of an upload so far), `state` (a draft that cannot change any more: `sent` or `expired`)',
      properties: { login: { type: 'boolean' }, email: { type: 'boolean' }, received: { type: 'integer' }, state: { type: 'string', enum: ['sent', 'expired'] } },
    },
  },
  required: ['requestId', 'code', 'message'],
} as const;

/**
 * One mapping from domain errors to `{ requestId, code, message }`. Database, crypto and unknown
 * errors become a generic 500 that carries only the request id, so nothing internal leaks.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | DomainError | Error, request, reply) => {
    if (error instanceof DomainError) {
      const retryAfter = error.details['retryAfterSeconds'];
      if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
      // Only these detail lists (and the `client` object) are meant for the client; other details stay on the server.
      const { problems, problemCodes, pending, client } = error.details;
      return reply.status(STATUS[error.code]).send({
        requestId: request.id,
        code: error.code,
        message: error.message,
        ...(Array.isArray(problems) ? { problems } : {}),
        ...(Array.isArray(problemCodes) ? { problemCodes } : {}),
        ...(Array.isArray(pending) ? { pending } : {}),
        ...(client !== null && typeof client === 'object' ? { details: client } : {}),
      });
    }
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) {
      return reply.status(400).send({
        requestId: request.id,
        code: 'VALIDATION',
        message: `request ${fastifyError.validationContext ?? ''} is invalid: ${fastifyError.message}`.replace('  ', ' '),
      });
    }
    if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      return reply.status(fastifyError.statusCode).send({
        requestId: request.id,
        code: fastifyError.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST',
        message: fastifyError.message,
      });
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.status(500).send({
      requestId: request.id,
      code: 'INTERNAL',
      message: `something went wrong on the server; quote request id ${request.id} to your operator`,
    });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ requestId: request.id, code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
}

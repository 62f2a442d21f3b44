import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import type { Actor } from '../access/index.js';
import { actorOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import type { Ledger } from './ledger.service.js';

const scope = {
  type: 'object',
  additionalProperties: false,
  properties: { tenantId: { type: 'string', format: 'uuid', description: "a tenant's ledger; omit for the platform ledger" } },
} as const;
const errors = { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema };

/** Read-only ledger endpoints: checkpoints, entries with inclusion proofs, consistency proofs. */
export function registerLedgerRoutes(
  app: FastifyInstance,
  deps: { ledgerFor(actor: Actor, tenantId: string | undefined): Promise<Ledger>; authenticate: preHandlerAsyncHookHandler },
): void {
  const secured = { preHandler: deps.authenticate };

  app.get<{ Querystring: { tenantId?: string } }>('/api/v1/ledger/checkpoint', {
    ...secured,
    schema: {
      tags: ['ledger'],
      summary: 'The latest signed checkpoint (C2SP text) and the public key that verifies it',
      querystring: scope,
      response: {
        200: {
          type: 'object',
          properties: { origin: { type: 'string' }, checkpoint: { type: 'string' }, treeSize: { type: 'integer' }, publicKey: { type: 'string' } },
          required: ['origin', 'checkpoint', 'treeSize', 'publicKey'],
        },
        ...errors,
      },
    },
    handler: async (request) => {
      const ledger = await deps.ledgerFor(actorOf(request), request.query.tenantId);
      const cp = (await ledger.latestCheckpoint()) ?? (await ledger.checkpoint());
      return { origin: ledger.origin, checkpoint: cp.text, treeSize: cp.treeSize, publicKey: await ledger.publicKey() };
    },
  });

  app.get<{ Params: { seq: number }; Querystring: { tenantId?: string } }>('/api/v1/ledger/entries/:seq', {
    ...secured,
    schema: {
      tags: ['ledger'],
      summary: 'One entry with its payload (unless expired) and its RFC 9162 inclusion proof against the latest checkpoint',
      params: { type: 'object', properties: { seq: { type: 'integer', minimum: 0 } }, required: ['seq'] },
      querystring: scope,
      response: {
        200: {
          type: 'object',
          properties: {
            seq: { type: 'integer' },
            entry: { type: 'string', description: 'base64 of the canonical entry bytes' },
            leafHash: { type: 'string' },
            payload: {},
            salt: { type: ['string', 'null'] },
            treeSize: { type: 'integer' },
            proof: { type: 'array', items: { type: 'string' } },
            checkpoint: { type: 'string' },
          },
          required: ['seq', 'entry', 'leafHash', 'treeSize', 'proof', 'checkpoint'],
        },
        ...errors,
      },
    },
    handler: async (request) => (await deps.ledgerFor(actorOf(request), request.query.tenantId)).entryWithProof(request.params.seq),
  });

  app.get<{ Querystring: { tenantId?: string; from: number; to: number } }>('/api/v1/ledger/consistency', {
    ...secured,
    schema: {
      tags: ['ledger'],
      summary: 'RFC 9162 consistency proof between two tree sizes',
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { ...scope.properties, from: { type: 'integer', minimum: 0 }, to: { type: 'integer', minimum: 0 } },
        required: ['from', 'to'],
      },
      response: {
        200: {
          type: 'object',
          properties: { from: { type: 'integer' }, to: { type: 'integer' }, proof: { type: 'array', items: { type: 'string' } } },
          required: ['from', 'to', 'proof'],
        },
        ...errors,
      },
    },
    handler: async (request) => {
      const { from, to, tenantId } = request.query;
      const ledger = await deps.ledgerFor(actorOf(request), tenantId);
      return { from, to, proof: await ledger.consistencyProof(from, to) };
    },
  });
}

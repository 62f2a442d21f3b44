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

  app.get<{ Querystring: { tenantId?: string; from?: string; to?: string; actor?: string; action?: string; subject?: string; limit?: number } }>(
    '/api/v1/ledger/entries',
    {
      ...secured,
      schema: {
        tags: ['ledger'],
        summary: 'Entries matching a filter (period, actor, action, data subject blind index), newest last',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...scope.properties,
            from: { type: 'string', format: 'date-time' },
            to: { type: 'string', format: 'date-time' },
            actor: { type: 'string', maxLength: 512 },
            action: { type: 'string', maxLength: 512 },
            subject: { type: 'string', maxLength: 128 },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              origin: { type: 'string' },
              entries: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    seq: { type: 'integer' },
                    time: { type: 'string' },
                    actor: { type: 'string' },
                    action: { type: 'string' },
                    resource: { type: 'string' },
                    outcome: { type: 'string' },
                    payload: {},
                  },
                  required: ['seq', 'time', 'actor', 'action', 'resource', 'outcome'],
                },
              },
            },
            required: ['origin', 'entries'],
          },
          ...errors,
        },
      },
    },
    async (request) => {
      const { tenantId, ...filter } = request.query;
      const ledger = await deps.ledgerFor(actorOf(request), tenantId);
      const all = await ledger.query({ ...filter, limit: undefined });
      // The newest `limit` entries, in ledger order.
      return { origin: ledger.origin, entries: all.slice(-(filter.limit ?? 200)) };
    },
  );

  app.post<{ Querystring: { tenantId?: string } }>('/api/v1/ledger/verify', {
    ...secured,
    schema: {
      tags: ['ledger'],
      summary: 'Rebuild the tree now and report the first problem found, with the latest checkpoint',
      querystring: scope,
      response: {
        200: {
          type: 'object',
          properties: {
            ok: { type: 'boolean' },
            origin: { type: 'string' },
            treeSize: { type: 'integer' },
            rootHash: { type: 'string' },
            checkpointsChecked: { type: 'integer' },
            payloadsChecked: { type: 'integer' },
            checkpoint: { type: ['string', 'null'] },
            findings: {
              type: 'array',
              items: {
                type: 'object',
                properties: { kind: { type: 'string' }, seq: { type: 'integer' }, treeSize: { type: 'integer' }, message: { type: 'string' } },
                required: ['kind', 'message'],
              },
            },
          },
          required: ['ok', 'origin', 'treeSize', 'rootHash', 'findings', 'checkpoint'],
        },
        ...errors,
      },
    },
    handler: async (request) => {
      const ledger = await deps.ledgerFor(actorOf(request), request.query.tenantId);
      const report = await ledger.verify();
      return { ...report, checkpoint: (await ledger.latestCheckpoint())?.text ?? null };
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

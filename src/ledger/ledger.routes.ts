import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import type { Actor } from '../access/index.js';
import { actorOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import { toCsv } from '../shared/csv.js';
import { ValidationError } from '../shared/errors.js';
import type { ExportedEntry, Ledger } from './ledger.service.js';
import { ledgerActor } from './ledgers.js';

const scope = {
  type: 'object',
  additionalProperties: false,
  properties: { tenantId: { type: 'string', format: 'uuid', description: "a tenant's ledger; omit for the platform ledger" } },
} as const;
const errors = { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema };
/** An export answers at most this many entries; more must be exported in parts (by period). */
const EXPORT_LIMIT = 100_000;
const exportedEntrySchema = {
  type: 'object',
  properties: {
    seq: { type: 'integer' },
    time: { type: 'string' },
    actor: { type: 'string' },
    action: { type: 'string' },
    resource: { type: 'string' },
    outcome: { type: 'string' },
    payload: {},
    entry: { type: 'string', description: 'base64 of the canonical entry bytes (the leaf)' },
  },
  required: ['seq', 'time', 'actor', 'action', 'resource', 'outcome', 'payload', 'entry'],
} as const;
/** The CSV form of an export (the CLI writes the same columns). */
export const EXPORT_CSV_COLUMNS = ['seq', 'time', 'actor', 'action', 'resource', 'outcome', 'payload', 'entry'];
export const exportCsvRow = (e: ExportedEntry) => [e.seq, e.time, e.actor, e.action, e.resource, e.outcome, e.payload === null ? null : JSON.stringify(e.payload), e.entry];

/** Read-only ledger endpoints: checkpoints, entries with inclusion proofs, consistency proofs. */
export function registerLedgerRoutes(
  app: FastifyInstance,
  deps: {
    ledgerFor(actor: Actor, tenantId: string | undefined, action?: 'ledger.read' | 'ledger.export'): Promise<Ledger>;
    /** The ledger pseudonyms of a data subject by e-mail and/or name: needs the DPO's data session (Art. 15). */
    subjectIndexes(request: FastifyRequest, subject: { email?: string | undefined; name?: string | undefined }): Promise<string[]>;
    authenticate: preHandlerAsyncHookHandler;
  },
): void {
  const secured = { preHandler: deps.authenticate };
  /**
   * A tenant's ledger read by the platform (operator, reseller): the entries, but not the source addresses
   * in their payloads — those are the tenant's users' IP addresses, personal data that only the tenant's own
   * privacy officer sees. The details (ids and counts, never personal data) stay.
   */
  const readsForeignTenant = (actor: Actor, tenantId: string | undefined) => tenantId !== undefined && actor.kind !== 'tenant' && actor.kind !== 'system';
  const withoutSource = <T extends { payload?: unknown }>(entry: T): T => {
    if (typeof entry.payload !== 'object' || entry.payload === null || !('source' in entry.payload)) return entry;
    const { source: _withheld, ...rest } = entry.payload as Record<string, unknown>;
    return { ...entry, payload: rest };
  };
  /**
   * The data subject filter: a blind index as given, or the blind indexes of an e-mail address and/or name.
   * The clear value goes no further than here: filters, responses and ledger entries carry blind indexes only.
   */
  const subjectFilter = async (request: FastifyRequest, q: { subject?: string | undefined; email?: string | undefined; name?: string | undefined }) => {
    if (q.subject !== undefined && (q.email !== undefined || q.name !== undefined)) {
      throw new ValidationError('give the data subject either as subject (a blind index) or as email and/or name, not both');
    }
    if (q.email !== undefined || q.name !== undefined) return deps.subjectIndexes(request, { email: q.email, name: q.name });
    return q.subject !== undefined ? [q.subject] : undefined;
  };

  app.get<{
    Querystring: { tenantId?: string; format?: 'json' | 'csv'; from?: string; to?: string; actor?: string; action?: string; subject?: string; email?: string; name?: string };
  }>('/api/v1/ledger/export', {
    ...secured,
    schema: {
      tags: ['ledger'],
      summary:
        "Export entries (period, actor, action, data subject) with their payloads and the signed checkpoint that covers them: the tenant's DPO for its ledger (a subject also by e-mail or name, Art. 15), the operator for the platform ledger",
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          ...scope.properties,
          format: { type: 'string', enum: ['json', 'csv'], default: 'json' },
          from: { type: 'string', format: 'date-time' },
          to: { type: 'string', format: 'date-time' },
          actor: { type: 'string', maxLength: 512 },
          action: { type: 'string', maxLength: 512 },
          subject: { type: 'string', maxLength: 128, description: 'a blind index from /api/v1/privacy/subject-index' },
          email: { type: 'string', minLength: 3, maxLength: 254, description: "the data subject's e-mail address (DPO with data access)" },
          name: { type: 'string', minLength: 1, maxLength: 200, description: "the data subject's name (DPO with data access)" },
        },
      },
      response: {
        200: {
          description: 'JSON: { origin, checkpoint, publicKey, filter, entries }; CSV: the entries, the checkpoint base64 in the x-tresor-checkpoint header',
          type: 'object',
          properties: {
            origin: { type: 'string' },
            checkpoint: { type: 'string' },
            publicKey: { type: 'string' },
            filter: {
              type: 'object',
              properties: { from: { type: 'string' }, to: { type: 'string' }, actor: { type: 'string' }, action: { type: 'string' }, subject: { type: 'array', items: { type: 'string' } } },
            },
            entries: { type: 'array', items: exportedEntrySchema },
          },
          required: ['origin', 'checkpoint', 'publicKey', 'filter', 'entries'],
        },
        ...errors,
      },
    },
    handler: async (request, reply) => {
      const { tenantId, format = 'json', email, name, subject, ...rest } = request.query;
      const actor = actorOf(request);
      const ledger = await deps.ledgerFor(actor, tenantId, 'ledger.export');
      const subjects = await subjectFilter(request, { subject, email, name });
      const filter = { ...rest, ...(subjects ? { subject: subjects } : {}) };
      const result = await ledger.export({ ...filter, limit: EXPORT_LIMIT + 1 }, ledgerActor(actor));
      if (result.entries.length > EXPORT_LIMIT) throw new ValidationError(`more than ${EXPORT_LIMIT} entries match: narrow the period (from, to) and export it in parts`);
      const day = new Date().toISOString().slice(0, 10);
      void reply.header('content-disposition', `attachment; filename="ledger-${day}.${format}"`);
      if (format === 'csv') {
        void reply.header('x-tresor-checkpoint', Buffer.from(result.checkpoint, 'utf8').toString('base64'));
        return reply.type('text/csv; charset=utf-8').send(toCsv(EXPORT_CSV_COLUMNS, result.entries.map(exportCsvRow)));
      }
      return { origin: result.origin, checkpoint: result.checkpoint, publicKey: result.publicKey, filter, entries: result.entries };
    },
  });

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

  app.get<{ Querystring: { tenantId?: string; from?: string; to?: string; actor?: string; action?: string; subject?: string; email?: string; name?: string; limit?: number } }>(
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
            email: { type: 'string', minLength: 3, maxLength: 254, description: "the data subject's e-mail address (DPO with data access)" },
            name: { type: 'string', minLength: 1, maxLength: 200, description: "the data subject's name (DPO with data access)" },
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
      const { tenantId, email, name, subject, ...filter } = request.query;
      const ledger = await deps.ledgerFor(actorOf(request), tenantId);
      const subjects = await subjectFilter(request, { subject, email, name });
      // The newest `limit` entries, in ledger order.
      const entries = await ledger.query({ ...filter, ...(subjects ? { subject: subjects } : {}), limit: filter.limit ?? 200 }, undefined, { newest: true });
      return { origin: ledger.origin, entries: readsForeignTenant(actorOf(request), tenantId) ? entries.map(withoutSource) : entries };
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
            payloadWithheld: { type: 'boolean', description: "true when the platform reads a tenant's entry: its payload holds the tenant's users' addresses" },
            treeSize: { type: 'integer' },
            proof: { type: 'array', items: { type: 'string' } },
            checkpoint: { type: 'string' },
          },
          required: ['seq', 'entry', 'leafHash', 'treeSize', 'proof', 'checkpoint'],
        },
        ...errors,
      },
    },
    handler: async (request) => {
      const found = await (await deps.ledgerFor(actorOf(request), request.query.tenantId)).entryWithProof(request.params.seq);
      // The payload is withheld whole from the platform (its commitment could not be checked without the source).
      return readsForeignTenant(actorOf(request), request.query.tenantId) ? { ...found, payload: null, salt: null, payloadWithheld: true } : found;
    },
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

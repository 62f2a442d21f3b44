import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { actorOf, sessionTokenOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import { streamJsonLines } from '../http/stream.js';
import type { IdentityService } from '../identity/index.js';
import { toCsv } from '../shared/csv.js';
import { ForbiddenError, ValidationError } from '../shared/errors.js';
import { authorizeData } from '../access/index.js';
import type { Collection, DataSession, RecordInput } from './collection.js';
import { ledgerSubjectIndex, type SubjectKeyStore } from './subject-keys.js';

const errors = { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema };
const byId = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] } as const;

/**
 * The routes of every encrypted collection (`/api/v1/contacts`, `/api/v1/jobs`): only a data user whose
 * session holds the tenant secret, or an external account within an active grant (read only), gets past
 * `dataSession`.
 */
/** The data session of an authenticated request, or a refusal that says who has data access. */
export async function dataSessionOf(identity: Pick<IdentityService, 'dataKeyOf'>, request: FastifyRequest): Promise<DataSession> {
  const key = await identity.dataKeyOf(sessionTokenOf(request)!.token);
  if (!key) throw new ForbiddenError('this session has no data access: only data users of a tenant who were given access (activation key or a colleague), or an external account with an active grant, can work with personal data');
  return { actor: actorOf(request), tenantId: key.tenantId, dataKey: key.dataKey, keyVersion: key.keyVersion, grants: key.grants, previous: key.previous };
}

/**
 * The ledger's pseudonyms of a data subject by e-mail address and/or name (Art. 15): only the tenant's
 * data-protection officer, in a data session (the pseudonym is keyed with the tenant data key).
 */
export async function subjectIndexesOf(subjectKeys: Pick<SubjectKeyStore, 'keysOf'>, s: DataSession, subject: { email?: string | undefined; name?: string | undefined }): Promise<string[]> {
  authorizeData(s.actor, 'privacy.search', s.tenantId, 'the privacy centre is for the data-protection officer');
  const keys = await subjectKeys.keysOf(s);
  return [
    ...(subject.email !== undefined ? [ledgerSubjectIndex(keys, 'email', subject.email)] : []),
    ...(subject.name !== undefined ? [ledgerSubjectIndex(keys, 'name', subject.name)] : []),
  ];
}

export function registerRecordRoutes(app: FastifyInstance, deps: { collections: Record<string, Collection>; identity: Pick<IdentityService, 'dataKeyOf'>; subjectKeys: Pick<SubjectKeyStore, 'keysOf'>; authenticate: preHandlerAsyncHookHandler }): void {
  const secured = { preHandler: deps.authenticate };
  const dataSession = (request: FastifyRequest): Promise<DataSession> => dataSessionOf(deps.identity, request);
  // CSV arrives as text (up to 20 MiB); an import answers with JSON lines as it goes.
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: 20 * 1024 * 1024 }, (_request, body, done) => done(null, body));

  for (const [path, collection] of Object.entries(deps.collections)) {
    const { spec } = collection;
    const names = Object.keys(spec.fields);
    const tags = ['records'];
    const recordSchema = {
      type: 'object',
      properties: {
        id: { type: 'string' },
        book: { type: 'string', enum: ['shared', 'personal'] },
        ...Object.fromEntries(names.map((n) => [n, { type: ['string', 'null'] }])),
        createdAt: { type: 'string' },
        updatedAt: { type: 'string' },
      },
      required: ['id', 'book', ...names, 'createdAt', 'updatedAt'],
    };
    const inputSchema = {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(Object.entries(spec.fields).map(([n, f]) => [n, { type: f.required ? 'string' : ['string', 'null'], maxLength: f.maxLength }])),
      required: Object.entries(spec.fields).filter(([, f]) => f.required).map(([n]) => n),
    };
    const searchable = Object.entries(spec.fields).filter(([, f]) => f.class === 'searchable').map(([n]) => n);
    const books = spec.books ? { book: { type: 'string', enum: ['shared', 'personal'], default: 'shared' } } : {};

    app.post<{ Body: RecordInput & { book?: 'shared' | 'personal' } }>(`/api/v1/${path}`, {
      ...secured,
      schema: {
        tags,
        summary: `Add a record to ${path}${spec.books ? ' (the shared book or your personal one)' : ''}: personal fields encrypted, searchable ones blind-indexed`,
        body: { ...inputSchema, properties: { ...inputSchema.properties, ...books } },
        response: { 201: recordSchema, ...errors },
      },
      handler: async (request, reply) => {
        const { book = 'shared', ...input } = request.body;
        return reply.status(201).send(await collection.create(await dataSession(request), book as 'shared' | 'personal', input));
      },
    });

    app.get<{ Querystring: Record<string, string | number> }>(`/api/v1/${path}`, {
      ...secured,
      schema: {
        tags,
        summary: `List ${path}, or find exact matches by ${searchable.join(', ')} (normalised: case, spaces, Unicode)`,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...(spec.books ? { book: { type: 'string', enum: ['shared', 'personal'] } } : {}),
            ...Object.fromEntries(searchable.map((n) => [n, { type: 'string', minLength: 1, maxLength: spec.fields[n]!.maxLength }])),
            limit: { type: 'integer', minimum: 1, maximum: 5000, default: 500 },
          },
        },
        response: { 200: { type: 'array', items: recordSchema }, ...errors },
      },
      handler: async (request) => collection.search(await dataSession(request), request.query),
    });

    app.post<{ Body: string; Querystring: { book?: 'shared' | 'personal' } }>(`/api/v1/${path}/import`, {
      ...secured,
      bodyLimit: 20 * 1024 * 1024,
      schema: {
        tags,
        summary: `Import ${path} from CSV (content-type text/csv; header: ${names.join(',')}). Answers with JSON lines: {"done","total"} as it goes, then {"created","errors":[{"line","message"}]}`,
        querystring: { type: 'object', additionalProperties: false, properties: { ...books } },
        response: { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema },
      },
      handler: async (request, reply) => {
        const session = await dataSession(request);
        if (typeof request.body !== 'string' || request.body.trim() === '') throw new ValidationError('send the CSV file as the request body (content-type: text/csv)');
        // The header line is checked before anything is streamed, so a wrong file gets a plain 400.
        const header = (request.body.split(/\r?\n/, 1)[0] ?? '').toLowerCase().split(',').map((h) => h.trim().replace(/^"|"$/g, ''));
        const missing = Object.entries(spec.fields).filter(([n, f]) => f.required && !header.includes(n)).map(([n]) => n);
        if (missing.length > 0) throw new ValidationError(`the first line must name the columns: ${names.join(', ')} (required: ${missing.join(', ')})`);
        const body = request.body;
        return streamJsonLines(reply, (line) =>
          collection.importCsv(session, request.query.book ?? 'shared', body, (done, total) => line({ done, total })).catch((error: Error) => ({ created: 0, errors: [{ line: 1, message: error.message }] })),
        );
      },
    });

    app.get<{ Querystring: { format?: 'csv' | 'json' } }>(`/api/v1/${path}/export`, {
      ...secured,
      schema: {
        tags,
        summary: `Export every record of ${path} you can see, as CSV (formula cells neutralised) or JSON`,
        querystring: { type: 'object', additionalProperties: false, properties: { format: { type: 'string', enum: ['csv', 'json'], default: 'csv' } } },
        response: { 401: errorResponseSchema, 403: errorResponseSchema },
      },
      handler: async (request, reply) => {
        const all = await collection.exportAll(await dataSession(request));
        void reply.header('content-disposition', `attachment; filename="${path}.${request.query.format ?? 'csv'}"`);
        if (request.query.format === 'json') return reply.type('application/json; charset=utf-8').send(JSON.stringify(all));
        return reply.type('text/csv; charset=utf-8').send(toCsv([...names, 'book', 'id'], all.map((r) => [...names.map((n) => r[n] ?? null), r.book, r.id])));
      },
    });

    const planSchema = {
      type: 'object',
      properties: {
        collection: { type: 'string' },
        expectedRows: { type: 'integer' },
        nextBits: { type: 'integer' },
        built: { type: 'array', items: { type: 'object', properties: { keyVersion: { type: 'integer' }, bits: { type: 'integer' } }, required: ['keyVersion', 'bits'] } },
      },
      required: ['collection', 'expectedRows', 'nextBits'],
    };
    app.get(`/api/v1/${path}/index-plan`, {
      ...secured,
      schema: { tags, summary: `The blind-index plan of ${path}: expected row count, the index length it gives, and the length each key version was built with (docs/keys.md)`, response: { 200: planSchema, ...errors } },
      handler: async (request) => {
        const actor = actorOf(request);
        return collection.indexPlan(actor, 'tenantId' in actor ? actor.tenantId : '');
      },
    });
    app.put<{ Body: { expectedRows: number } }>(`/api/v1/${path}/index-plan`, {
      ...secured,
      schema: {
        tags,
        summary: `Set how many records ${path} is expected to hold (tenant admin or data user); the next rotation of the tenant secret re-indexes with the length it gives`,
        body: { type: 'object', additionalProperties: false, properties: { expectedRows: { type: 'integer' } }, required: ['expectedRows'] },
        response: { 200: planSchema, ...errors },
      },
      handler: async (request) => {
        const actor = actorOf(request);
        return collection.setExpectedRows(actor, 'tenantId' in actor ? actor.tenantId : '', request.body.expectedRows);
      },
    });

    app.get<{ Params: { id: string } }>(`/api/v1/${path}/:id`, {
      ...secured,
      schema: { tags, summary: `One record of ${path}`, params: byId, response: { 200: recordSchema, ...errors } },
      handler: async (request) => collection.get(await dataSession(request), request.params.id),
    });

    app.put<{ Params: { id: string }; Body: RecordInput }>(`/api/v1/${path}/:id`, {
      ...secured,
      schema: { tags, summary: `Replace a record of ${path}`, params: byId, body: inputSchema, response: { 200: recordSchema, ...errors } },
      handler: async (request) => collection.update(await dataSession(request), request.params.id, request.body),
    });

    app.delete<{ Params: { id: string } }>(`/api/v1/${path}/:id`, {
      ...secured,
      schema: { tags, summary: `Delete a record of ${path}`, params: byId, response: { 204: { type: 'null' }, ...errors } },
      handler: async (request, reply) => {
        await collection.remove(await dataSession(request), request.params.id);
        return reply.status(204).send();
      },
    });
  }

  app.get<{ Querystring: { email?: string; name?: string } }>('/api/v1/privacy/subject-index', {
    ...secured,
    schema: {
      tags: ['privacy'],
      summary: "The ledger's pseudonym of a data subject by e-mail address or name (DPO): filter ledger entries or exports with it (Art. 15)",
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { email: { type: 'string', minLength: 3, maxLength: 254 }, name: { type: 'string', minLength: 1, maxLength: 200 } },
        minProperties: 1,
        maxProperties: 1,
      },
      response: { 200: { type: 'object', properties: { subject: { type: 'string' } }, required: ['subject'] }, ...errors },
    },
    handler: async (request) => {
      return { subject: (await subjectIndexesOf(deps.subjectKeys, await dataSession(request), request.query))[0]! };
    },
  });
}

import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { actorOf, sessionTokenOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import type { IdentityService } from '../identity/index.js';
import { PassThrough } from 'node:stream';
import { ForbiddenError, ValidationError } from '../shared/errors.js';
import { toCsv } from '../shared/csv.js';
import { CSV_COLUMNS, ledgerSubjectIndex, type ContactInput, type Contacts, type DataSession } from './contacts.js';

const contactSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    book: { type: 'string', enum: ['shared', 'personal'] },
    name: { type: 'string' },
    email: { type: ['string', 'null'] },
    phone: { type: ['string', 'null'] },
    address: { type: ['string', 'null'] },
    company: { type: ['string', 'null'] },
    notes: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
  },
  required: ['id', 'book', 'name', 'email', 'phone', 'address', 'company', 'notes', 'createdAt', 'updatedAt'],
} as const;

const inputSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    email: { type: ['string', 'null'], maxLength: 254 },
    phone: { type: ['string', 'null'], maxLength: 40 },
    address: { type: ['string', 'null'], maxLength: 2000 },
    company: { type: ['string', 'null'], maxLength: 200 },
    notes: { type: ['string', 'null'], maxLength: 2000 },
  },
  required: ['name'],
} as const;

const errors = { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema };
const byId = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] } as const;

/** Address-book routes: only a data user whose session holds the tenant secret gets past `dataSession`. */
export function registerRecordRoutes(app: FastifyInstance, deps: { contacts: Contacts; identity: Pick<IdentityService, 'dataKeyOf'>; authenticate: preHandlerAsyncHookHandler }): void {
  const { contacts } = deps;
  const secured = { preHandler: deps.authenticate };
  const dataSession = async (request: FastifyRequest): Promise<DataSession> => {
    const key = await deps.identity.dataKeyOf(sessionTokenOf(request)!.token);
    if (!key) throw new ForbiddenError('this session has no data access: only data users of a tenant who were given access (activation key or a colleague) can work with personal data');
    return { actor: actorOf(request), tenantId: key.tenantId, dataKey: key.dataKey, grant: key.grant };
  };

  app.post<{ Body: ContactInput & { book?: 'shared' | 'personal' } }>('/api/v1/contacts', {
    ...secured,
    schema: {
      tags: ['records'],
      summary: 'Add a contact to the shared book or your personal one (fields encrypted, name/e-mail/phone blind-indexed)',
      body: { ...inputSchema, properties: { ...inputSchema.properties, book: { type: 'string', enum: ['shared', 'personal'], default: 'shared' } } },
      response: { 201: contactSchema, ...errors },
    },
    handler: async (request, reply) => {
      const { book = 'shared', ...input } = request.body;
      return reply.status(201).send(await contacts.create(await dataSession(request), book, input));
    },
  });

  app.get<{ Querystring: { book?: 'shared' | 'personal'; name?: string; email?: string; phone?: string; limit?: number } }>('/api/v1/contacts', {
    ...secured,
    schema: {
      tags: ['records'],
      summary: 'List contacts, or find exact matches by name, e-mail or phone (normalised: case, spaces, Unicode)',
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          book: { type: 'string', enum: ['shared', 'personal'] },
          name: { type: 'string', minLength: 1, maxLength: 200 },
          email: { type: 'string', minLength: 3, maxLength: 254 },
          phone: { type: 'string', minLength: 3, maxLength: 40 },
          limit: { type: 'integer', minimum: 1, maximum: 5000, default: 500 },
        },
      },
      response: { 200: { type: 'array', items: contactSchema }, ...errors },
    },
    handler: async (request) => contacts.search(await dataSession(request), request.query),
  });

  // CSV arrives as text (up to 20 MiB); the reply streams progress as JSON lines.
  app.addContentTypeParser('text/csv', { parseAs: 'string', bodyLimit: 20 * 1024 * 1024 }, (_request, body, done) => done(null, body));

  app.post<{ Body: string; Querystring: { book?: 'shared' | 'personal' } }>('/api/v1/contacts/import', {
    ...secured,
    bodyLimit: 20 * 1024 * 1024,
    schema: {
      tags: ['records'],
      summary:
        'Import contacts from CSV (content-type text/csv; header: name,email,phone,address,company,notes). Answers with JSON lines: {"done","total"} as it goes, then {"created","errors":[{"line","message"}]}',
      querystring: { type: 'object', additionalProperties: false, properties: { book: { type: 'string', enum: ['shared', 'personal'], default: 'shared' } } },
      response: { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const session = await dataSession(request);
      if (typeof request.body !== 'string' || request.body.trim() === '') throw new ValidationError('send the CSV file as the request body (content-type: text/csv)');
      const out = new PassThrough();
      const line = (value: unknown) => out.write(`${JSON.stringify(value)}\n`);
      // The header line is checked before anything is streamed, so a wrong file gets a plain 400.
      const firstLine = request.body.split(/\r?\n/, 1)[0] ?? '';
      if (!/(^|,)\s*"?name"?\s*(,|$)/i.test(firstLine)) throw new ValidationError(`the first line must name the columns: ${CSV_COLUMNS.join(', ')} (name is required)`);
      void contacts
        .importCsv(session, request.query.book ?? 'shared', request.body, (done, total) => line({ done, total }))
        .then((result) => out.end(`${JSON.stringify(result)}\n`))
        .catch((error: Error) => out.end(`${JSON.stringify({ created: 0, errors: [{ line: 1, message: error.message }] })}\n`));
      return reply.type('application/x-ndjson; charset=utf-8').send(out);
    },
  });

  app.get<{ Querystring: { format?: 'csv' | 'json' } }>('/api/v1/contacts/export', {
    ...secured,
    schema: {
      tags: ['records'],
      summary: 'Export every contact you can see, as CSV (formula cells neutralised) or JSON',
      querystring: { type: 'object', additionalProperties: false, properties: { format: { type: 'string', enum: ['csv', 'json'], default: 'csv' } } },
      response: { 401: errorResponseSchema, 403: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const all = await contacts.exportAll(await dataSession(request));
      void reply.header('content-disposition', `attachment; filename="contacts.${request.query.format ?? 'csv'}"`);
      if (request.query.format === 'json') return reply.type('application/json; charset=utf-8').send(JSON.stringify(all));
      return reply.type('text/csv; charset=utf-8').send(toCsv([...CSV_COLUMNS, 'book', 'id'], all.map((c) => [c.name, c.email, c.phone, c.address, c.company, c.notes, c.book, c.id])));
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/contacts/:id', {
    ...secured,
    schema: { tags: ['records'], summary: 'One contact', params: byId, response: { 200: contactSchema, ...errors } },
    handler: async (request) => contacts.get(await dataSession(request), request.params.id),
  });

  app.put<{ Params: { id: string }; Body: ContactInput }>('/api/v1/contacts/:id', {
    ...secured,
    schema: { tags: ['records'], summary: 'Replace a contact', params: byId, body: inputSchema, response: { 200: contactSchema, ...errors } },
    handler: async (request) => contacts.update(await dataSession(request), request.params.id, request.body),
  });

  app.delete<{ Params: { id: string } }>('/api/v1/contacts/:id', {
    ...secured,
    schema: { tags: ['records'], summary: 'Delete a contact', params: byId, response: { 204: { type: 'null' }, ...errors } },
    handler: async (request, reply) => {
      await contacts.remove(await dataSession(request), request.params.id);
      return reply.status(204).send();
    },
  });

  app.get<{ Querystring: { email: string } }>('/api/v1/privacy/subject-index', {
    ...secured,
    schema: {
      tags: ['privacy'],
      summary: "The ledger's blind index of a data subject's e-mail address (DPO): filter ledger entries or exports with it (Art. 15)",
      querystring: { type: 'object', additionalProperties: false, properties: { email: { type: 'string', minLength: 3, maxLength: 254 } }, required: ['email'] },
      response: { 200: { type: 'object', properties: { subject: { type: 'string' } }, required: ['subject'] }, ...errors },
    },
    handler: async (request) => {
      const s = await dataSession(request);
      if (s.actor.kind !== 'tenant' || s.actor.role !== 'dpo') throw new ForbiddenError('the privacy centre is for the data-protection officer');
      return { subject: ledgerSubjectIndex(s.dataKey, request.query.email) };
    },
  });
}

import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { actorOf, sessionTokenOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import type { IdentityService } from '../identity/index.js';
import { ForbiddenError } from '../shared/errors.js';
import { ledgerSubjectIndex, type ContactInput, type Contacts, type DataSession } from './contacts.js';

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
    return { actor: actorOf(request), tenantId: key.tenantId, dataKey: key.dataKey };
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

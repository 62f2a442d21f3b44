import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { actorOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import type { PlatformService } from './platform.service.js';
import type { FirstDataUserInput } from './platform.types.js';

const id = { type: 'string', format: 'uuid' } as const;
const tenantSchema = {
  type: 'object',
  properties: {
    id,
    name: { type: 'string' },
    resellerId: { type: ['string', 'null'] },
    status: { type: 'string', enum: ['active', 'suspended'] },
    licenceEndsAt: { type: ['string', 'null'] },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
  },
  required: ['id', 'name', 'resellerId', 'status', 'licenceEndsAt', 'createdAt', 'updatedAt'],
} as const;
const resellerSchema = {
  type: 'object',
  properties: { id, name: { type: 'string' }, status: { type: 'string' }, createdAt: { type: 'string' } },
  required: ['id', 'name', 'status', 'createdAt'],
} as const;
const deletionReportSchema = {
  type: 'object',
  properties: {
    id,
    tenantId: id,
    tenantName: { type: 'string' },
    resellerId: { type: ['string', 'null'] },
    reason: { type: 'string' },
    licenceEndedAt: { type: ['string', 'null'] },
    deletedAt: { type: 'string' },
    removed: { type: 'array', items: { type: 'string' } },
  },
  required: ['id', 'tenantId', 'reason', 'deletedAt', 'removed'],
} as const;
const errors = { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema };
const tenantParams = { type: 'object', properties: { tenantId: id }, required: ['tenantId'] } as const;
const licenceEnd = {
  type: ['string', 'null'],
  maxLength: 40,
  description: 'YYYY-MM-DD (the licence runs through that day, UTC) or an ISO 8601 time; null for no end',
} as const;

interface TenantParams {
  tenantId: string;
}

/** Operator and reseller administration of resellers and tenants. Every handler asks the policy through the service. */
export function registerPlatformRoutes(app: FastifyInstance, deps: { platform: PlatformService; authenticate: preHandlerAsyncHookHandler }): void {
  const { platform } = deps;
  const secured = { preHandler: deps.authenticate };

  app.post<{ Body: { name: string; adminLogin: string } }>('/api/v1/resellers', {
    ...secured,
    schema: {
      tags: ['platform'],
      summary: 'Create a reseller with its first admin account (operator only)',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { name: { type: 'string', minLength: 2, maxLength: 200 }, adminLogin: { type: 'string', minLength: 3, maxLength: 254 } },
        required: ['name', 'adminLogin'],
      },
      response: {
        201: {
          type: 'object',
          properties: { reseller: resellerSchema, adminLogin: { type: 'string' }, invitationExpiresAt: { type: 'string' } },
          required: ['reseller', 'adminLogin', 'invitationExpiresAt'],
        },
        ...errors,
      },
    },
    handler: async (request, reply) => {
      // The invitation link carries a one-time key: it goes only into the admin's mail.
      const { reseller, adminLogin, invitationExpiresAt } = await platform.createReseller(actorOf(request), request.body);
      return reply.status(201).send({ reseller, adminLogin, invitationExpiresAt });
    },
  });

  app.get('/api/v1/resellers', {
    ...secured,
    schema: { tags: ['platform'], summary: 'List resellers (operator only)', response: { 200: { type: 'array', items: resellerSchema }, ...errors } },
    handler: async (request) => platform.listResellers(actorOf(request)),
  });

  app.get<{ Params: { resellerId: string } }>('/api/v1/resellers/:resellerId', {
    ...secured,
    schema: {
      tags: ['platform'],
      summary: 'Show a reseller (the operator, or the reseller itself)',
      params: { type: 'object', properties: { resellerId: id }, required: ['resellerId'] },
      response: { 200: resellerSchema, ...errors },
    },
    handler: async (request) => platform.getReseller(actorOf(request), request.params.resellerId),
  });

  app.post<{ Body: { name: string; resellerId?: string | null; licenceEndsAt?: string | null; firstDataUser?: FirstDataUserInput } }>('/api/v1/tenants', {
    ...secured,
    schema: {
      tags: ['platform'],
      summary: 'Create a tenant with its own database (a reseller creates for itself)',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 2, maxLength: 200 },
          resellerId: { type: ['string', 'null'], format: 'uuid' },
          licenceEndsAt: licenceEnd,
          firstDataUser: {
            type: 'object',
            additionalProperties: false,
            description:
              "the customer's first data user: invited by mail and the only one who receives the activation key, which works only for their account. Use this whenever the creator must not be trusted with the key (B.1)",
            properties: {
              email: { type: 'string', minLength: 3, maxLength: 254 },
              role: { type: 'string', enum: ['dpo', 'member'], default: 'dpo' },
              language: { type: 'string', enum: ['de', 'en'] },
            },
            required: ['email'],
          },
        },
        required: ['name'],
      },
      response: {
        201: {
          ...tenantSchema,
          properties: {
            ...tenantSchema.properties,
            initialKeys: {
              type: 'object',
              description:
                "Without firstDataUser: the activation key, shown once — hand it to the customer's first data user. It works once, and opens nothing afterwards: the activation replaces the tenant secret, and the new recovery code is shown only to that data user. With firstDataUser: activationKey is null and mailedTo is 'first-data-user' — the key went only to that person and works only for their account",
              properties: { activationKey: { type: ['string', 'null'] }, mailedTo: { type: 'string', enum: ['first-data-user'] } },
              required: ['activationKey'],
            },
            firstDataUser: {
              type: 'object',
              description: 'the invited first data user (only when named)',
              properties: { accountId: id, login: { type: 'string' }, role: { type: 'string', enum: ['dpo', 'member'] }, invitationExpiresAt: { type: 'string' } },
              required: ['accountId', 'login', 'role', 'invitationExpiresAt'],
            },
          },
          required: [...tenantSchema.required, 'initialKeys'],
        },
        ...errors,
      },
    },
    handler: async (request, reply) => reply.status(201).send(await platform.createTenant(actorOf(request), request.body)),
  });

  app.get('/api/v1/tenants', {
    ...secured,
    schema: { tags: ['platform'], summary: 'List the tenants the caller manages', response: { 200: { type: 'array', items: tenantSchema }, ...errors } },
    handler: async (request) => platform.listTenants(actorOf(request)),
  });

  app.get<{ Params: TenantParams }>('/api/v1/tenants/:tenantId', {
    ...secured,
    schema: { tags: ['platform'], summary: 'Show a tenant', params: tenantParams, response: { 200: tenantSchema, ...errors } },
    handler: async (request) => platform.getTenant(actorOf(request), request.params.tenantId),
  });

  app.post<{ Params: TenantParams }>('/api/v1/tenants/:tenantId/suspend', {
    ...secured,
    schema: { tags: ['platform'], summary: 'Suspend a tenant: its users and clients are refused', params: tenantParams, response: { 200: tenantSchema, ...errors } },
    handler: async (request) => platform.suspendTenant(actorOf(request), request.params.tenantId),
  });

  app.post<{ Params: TenantParams }>('/api/v1/tenants/:tenantId/resume', {
    ...secured,
    schema: { tags: ['platform'], summary: 'Resume a suspended tenant', params: tenantParams, response: { 200: tenantSchema, ...errors } },
    handler: async (request) => platform.resumeTenant(actorOf(request), request.params.tenantId),
  });

  app.put<{ Params: TenantParams; Body: { licenceEndsAt: string | null } }>('/api/v1/tenants/:tenantId/licence', {
    ...secured,
    schema: {
      tags: ['platform'],
      summary: 'Set or clear the licence end; the tenant is deleted after the end plus the grace period',
      params: tenantParams,
      body: { type: 'object', additionalProperties: false, properties: { licenceEndsAt: licenceEnd }, required: ['licenceEndsAt'] },
      response: { 200: tenantSchema, ...errors },
    },
    handler: async (request) => platform.setLicence(actorOf(request), request.params.tenantId, request.body.licenceEndsAt),
  });

  app.delete<{ Params: TenantParams }>('/api/v1/tenants/:tenantId', {
    ...secured,
    schema: {
      tags: ['platform'],
      summary: 'Delete a tenant completely and at once (database, role, blobs); returns the deletion report',
      params: tenantParams,
      response: { 200: deletionReportSchema, ...errors },
    },
    handler: async (request) => platform.deleteTenant(actorOf(request), request.params.tenantId, 'deleted-by-api'),
  });
}

import cookie from '@fastify/cookie';
import helmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import { SerializerSelector, type Serializer, type SerializerFactory } from '@fastify/fast-json-stringify-compiler';
import swagger from '@fastify/swagger';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Core } from '../core.js';
import { registerIdentityRoutes } from '../identity/identity.routes.js';
import { registerLedgerRoutes } from '../ledger/ledger.routes.js';
import { withEventSource } from '../ledger/index.js';
import { registerPlatformRoutes } from '../platform/platform.routes.js';
import { registerFormRequestToken, registerRequestTokenHeader, requireActor } from './auth.js';
import { dataSessionOf, registerRecordRoutes, subjectIndexesOf } from '../records/index.js';
import { registerGrantRoutes } from '../identity/identity.routes.js';
import { registerTransferRoutes } from '../transfers/index.js';
import { registerMailRoutes } from '../mail/index.js';
import { registerErrorHandling } from './errors.js';

export interface AppOptions {
  logger: Logger;
  /** Node `https` options; absent in `app.inject()` tests. */
  https?: HttpsServerOptions;
  metrics?: Registry;
}

const VERSION = '0.1.0';

/**
 * Fastify's response serializers, one per distinct schema instead of one per route and status: every
 * route declares the same error schema for its 4xx answers, and compiling it 480 times held about 7 MiB of
 * generated source (plus the functions and objects behind it) in every server for nothing. The schema's
 * JSON is the key; symbol keys (TypeBox's markers) do not change what a serializer writes.
 */
export function sharedSerializers(): SerializerFactory {
  const buildFactory = SerializerSelector();
  return (externalSchemas, options) => {
    const compile = buildFactory(externalSchemas, options);
    const built = new Map<string, Serializer>();
    return (route) => {
      const key = JSON.stringify(route.schema);
      let serializer = built.get(key);
      if (!serializer) built.set(key, (serializer = compile(route)));
      return serializer;
    };
  };
}

/** Assembles the Fastify app: security headers, error mapping, OpenAPI, health, metrics hooks and every module's routes. */
export async function buildApp(core: Core, opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger,
    ...(opts.https ? { https: opts.https } : {}),
    trustProxy: core.config.server.trust_proxy,
    bodyLimit: 1024 * 1024,
    requestIdHeader: false,
    genReqId: () => crypto.randomUUID(),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    schemaController: { compilersFactory: { buildSerializer: sharedSerializers() } },
  }) as unknown as FastifyInstance;

  registerErrorHandling(app);
  // Every ledger event written while a request is handled names the request's source address.
  app.addHook('onRequest', (request, _reply, done) => withEventSource(request.ip, done));
  await app.register(helmet, {
    // BSI / OWASP: HSTS for a year, no framing, a strict CSP (the web app ships no inline script).
    hsts: { maxAge: 31_536_000, includeSubDomains: true, preload: false },
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        formAction: ["'self'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
  });
  // Deny powerful browser features outright (helmet does not set Permissions-Policy).
  app.addHook('onSend', async (_request, reply, payload) => {
    void reply.header('permissions-policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()');
    return payload;
  });
  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tresor API', version: VERSION, description: 'Operator, reseller and tenant administration of a Tresor server.' },
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: '__Host-tresor_session' },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
      security: [{ session: [] }, { bearer: [] }],
    },
  });

  if (opts.metrics) registerMetricsHooks(app, opts.metrics);

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
    try {
      await core.storage.ping();
      return { status: 'ready' };
    } catch (error) {
      request.log.warn({ err: error }, 'readiness check failed');
      return reply.status(503).send({ status: 'database unreachable' });
    }
  });
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // Billing: every successful authenticated call counts for the tenant it is about — the caller's own
  // tenant (its data users, admins, grantees) or, for platform and reseller calls, the tenant named in the
  // path or query. Bytes are not taken from the HTTP envelope: the transfer service counts the payload bytes
  // it stores and sends (an upload or download would otherwise be counted twice). Counted as the answer
  // is sent (not after it reached the client), so a flush after a call returned always includes it.
  app.addHook('onSend', async (request, reply, payload) => {
    const actor = request.actor;
    if (!actor || reply.statusCode >= 400) return payload;
    const named = (request.params as { tenantId?: unknown } | undefined)?.tenantId ?? (request.query as { tenantId?: unknown } | undefined)?.tenantId;
    const tenantId = 'tenantId' in actor ? actor.tenantId : named;
    if (typeof tenantId === 'string') core.billing.count(tenantId, { apiCalls: 1 });
    return payload;
  });

  registerRequestTokenHeader(app);
  const authenticate = requireActor(core.identity);
  registerFormRequestToken(app, authenticate);
  registerIdentityRoutes(app, { identity: core.identity, authenticate });
  registerPlatformRoutes(app, { platform: core.platform, authenticate });
  registerRecordRoutes(app, { collections: core.collections, identity: core.identity, subjectKeys: core.subjectKeys, authenticate });
  registerGrantRoutes(app, { identity: core.identity, authenticate });
  registerTransferRoutes(app, { transfers: core.transfers, identity: core.identity, authenticate });
  registerMailRoutes(app, { mail: core.mail, authenticate });
  registerLedgerRoutes(app, {
    ledgerFor: (actor, tenantId, action) => core.platform.ledgerFor(actor, tenantId, action),
    subjectIndexes: async (request, subject) => subjectIndexesOf(core.subjectKeys, await dataSessionOf(core.identity, request), subject),
    authenticate,
  });

  // The web app (built by `npm run build:web` into dist/web), same origin as the API, under the strict CSP.
  const webRoot = fileURLToPath(new URL('../../dist/web/', import.meta.url));
  if (existsSync(webRoot)) {
    await app.register(fastifyStatic, { root: webRoot, prefix: '/', index: ['index.html'], wildcard: false });
    app.get('/app/*', { schema: { hide: true } }, (_request, reply) => reply.sendFile('index.html'));
  }

  await app.ready();
  return app;
}

function registerMetricsHooks(app: FastifyInstance, registry: Registry): void {
  collectDefaultMetrics({ register: registry, prefix: 'tresor_' });
  const requests = new Counter({
    name: 'tresor_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tresor_http_request_duration_seconds',
    help: 'HTTP request duration by route pattern',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the concrete URL: ids stay out of metric labels.
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });
}

import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { ACCOUNT_ROLES, authorizeData, type AccountRole } from '../access/index.js';
import { actorOf, SESSION_COOKIE, sessionTokenOf } from '../http/auth.js';
import { errorResponseSchema } from '../http/errors.js';
import { streamJsonLines } from '../http/stream.js';
import { ForbiddenError } from '../shared/errors.js';
import type { IdentityService, NewSession } from './identity.service.js';
import { CHARACTER_CLASSES, POLICY_BOUNDS, POLICY_ROLES, type PasswordPolicy } from './password-policy.js';

const actorSchema = {
  type: 'object',
  properties: {
    kind: { type: 'string' },
    accountId: { type: 'string' },
    resellerId: { type: 'string' },
    tenantId: { type: 'string' },
    role: { type: 'string' },
  },
  required: ['kind'],
} as const;

const pendingSchema = { type: 'array', items: { type: 'string', enum: ['password_change', 'second_factor_setup'] } } as const;
const sessionReply = {
  type: 'object',
  properties: {
    actor: actorSchema,
    expiresAt: { type: 'string' },
    pending: pendingSchema,
    sessionToken: { type: 'string', description: 'mode=token only' },
    requestToken: { type: 'string', description: 'mode=cookie only: send it as x-tresor-request-token with the next state-changing request' },
  },
  required: ['expiresAt', 'pending'],
} as const;

const policySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    minLength: { type: 'integer', minimum: POLICY_BOUNDS.minLength[0], maximum: POLICY_BOUNDS.minLength[1] },
    maxLength: { type: 'integer' },
    requiredClasses: { type: 'array', uniqueItems: true, items: { type: 'string', enum: [...CHARACTER_CLASSES] } },
    maxAgeDays: { type: ['integer', 'null'], minimum: POLICY_BOUNDS.maxAgeDays[0], maximum: POLICY_BOUNDS.maxAgeDays[1] },
    historyCount: { type: 'integer', minimum: POLICY_BOUNDS.historyCount[0], maximum: POLICY_BOUNDS.historyCount[1] },
    secondFactorRoles: { type: 'array', uniqueItems: true, items: { type: 'string', enum: [...POLICY_ROLES] } },
  },
} as const;

const accountBrief = { type: 'object', properties: { id: { type: 'string' }, login: { type: 'string' }, role: { type: 'string' } }, required: ['id', 'login', 'role'] } as const;
/** Present only when the relay did not take the mail at once: it waits in the durable queue and is retried. */
const mailOutcome = { type: 'string', enum: ['queued', 'rejected'], description: "present when the relay did not take the mail at once: 'queued' — it waits in the queue and is retried (tresor mail queue); 'rejected' — the relay refused the address for good (no such mailbox), nothing was sent" } as const;
/** `{ mail: 'queued' }` when the mail waits in the queue; nothing when it went out (the answer stays as it was). */
const mailField = (mail: string) => (mail === 'queued' || mail === 'rejected' ? { mail } : {});
const passwordField = { type: 'string', minLength: 1, maxLength: 1024 } as const;
const oneTimeKeyField = { type: 'string', minLength: 43, maxLength: 43, pattern: '^[A-Za-z0-9_-]+$' } as const;
const cookieOptions = { path: '/', secure: true, httpOnly: true, sameSite: 'strict' } as const;

/** Answers with a new session: a bearer token for scripts, or the __Host- cookie plus the first request token for browsers. */
function sendSession(request: FastifyRequest, reply: FastifyReply, session: Omit<NewSession, 'actor'> & { actor?: NewSession['actor'] }, via: 'cookie' | 'token') {
  const base = { ...(session.actor ? { actor: session.actor } : {}), expiresAt: session.expiresAt, pending: session.pending };
  if (via === 'token') return { ...base, sessionToken: session.sessionToken };
  void reply.setCookie(SESSION_COOKIE, session.sessionToken, { ...cookieOptions, expires: new Date(session.expiresAt) });
  if (session.requestToken) request.nextRequestToken = session.requestToken;
  return { ...base, requestToken: session.requestToken };
}

export function registerIdentityRoutes(app: FastifyInstance, deps: { identity: IdentityService; authenticate: preHandlerAsyncHookHandler }): void {
  const { identity } = deps;
  const secured = { preHandler: deps.authenticate };
  const tokenOf = (request: FastifyRequest) => sessionTokenOf(request)!.token;
  const viaOf = (request: FastifyRequest) => sessionTokenOf(request)!.via;

  app.post<{ Body: { login: string; password: string; otp?: string; mode?: 'cookie' | 'token' } }>('/api/v1/auth/login', {
    schema: {
      tags: ['auth'],
      summary: 'Log in. mode=cookie (browsers) sets a __Host- session cookie and returns the first request token; mode=token (scripts) returns a bearer token',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          login: { type: 'string', minLength: 1, maxLength: 254 },
          password: passwordField,
          otp: { type: 'string', maxLength: 32, description: 'TOTP code or recovery code, when a second factor is active' },
          mode: { type: 'string', enum: ['cookie', 'token'], default: 'cookie' },
        },
        required: ['login', 'password'],
      },
      response: { 200: sessionReply, 400: errorResponseSchema, 401: errorResponseSchema, 429: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const mode = request.body.mode ?? 'cookie';
      const session = await identity.login(request.body.login, request.body.password, request.ip, request.body.otp, mode);
      return sendSession(request, reply, session, mode);
    },
  });

  app.post('/api/v1/auth/logout', {
    ...secured,
    schema: { tags: ['auth'], summary: 'End the current session', response: { 204: { type: 'null' }, 401: errorResponseSchema } },
    handler: async (request, reply) => {
      await identity.logout(tokenOf(request));
      request.nextRequestToken = undefined;
      void reply.clearCookie(SESSION_COOKIE, cookieOptions);
      return reply.status(204).send();
    },
  });

  const sessionSchema = {
    type: 'object',
    properties: {
      ref: { type: 'string' },
      createdAt: { type: 'string' },
      lastSeenAt: { type: 'string' },
      expiresAt: { type: 'string' },
      current: { type: 'boolean' },
    },
    required: ['ref', 'createdAt', 'lastSeenAt', 'expiresAt', 'current'],
  } as const;

  app.get('/api/v1/auth/sessions', {
    ...secured,
    schema: { tags: ['auth'], summary: 'Your sessions (this one is marked current)', response: { 200: { type: 'array', items: sessionSchema }, 401: errorResponseSchema } },
    handler: async (request) => identity.listSessions(tokenOf(request)),
  });

  app.delete<{ Params: { ref: string } }>('/api/v1/auth/sessions/:ref', {
    ...secured,
    schema: {
      tags: ['auth'],
      summary: 'Log one of your sessions out',
      params: { type: 'object', properties: { ref: { type: 'string', pattern: '^[0-9a-f]{16}$' } }, required: ['ref'] },
      response: { 204: { type: 'null' }, 401: errorResponseSchema, 404: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.endSession(tokenOf(request), request.params.ref);
      return reply.status(204).send();
    },
  });

  app.post('/api/v1/auth/sessions/logout-all', {
    ...secured,
    schema: { tags: ['auth'], summary: 'Log out everywhere (every session of your account, this one too)', response: { 204: { type: 'null' }, 401: errorResponseSchema } },
    handler: async (request, reply) => {
      await identity.endAllSessions(tokenOf(request));
      request.nextRequestToken = undefined;
      void reply.clearCookie(SESSION_COOKIE, cookieOptions);
      return reply.status(204).send();
    },
  });

  app.post<{ Body: { currentPassword: string; newPassword: string } }>('/api/v1/auth/password', {
    ...secured,
    schema: {
      tags: ['auth'],
      summary: 'Change your password (needs the current one); every session ends and a new one starts',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { currentPassword: passwordField, newPassword: passwordField },
        required: ['currentPassword', 'newPassword'],
      },
      response: { 200: sessionReply, 400: errorResponseSchema, 401: errorResponseSchema, 409: errorResponseSchema, 429: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const via = viaOf(request);
      const session = await identity.changePassword(tokenOf(request), request.body.currentPassword, request.body.newPassword, request.ip);
      return sendSession(request, reply, session, via);
    },
  });

  app.get('/api/v1/auth/password-policy', {
    ...secured,
    schema: { tags: ['auth'], summary: 'The password rules that apply to you', response: { 200: policySchema, 401: errorResponseSchema } },
    handler: async (request) => identity.policyFor(tokenOf(request)),
  });

  app.post<{ Body: { key: string; newPassword: string } }>('/api/v1/auth/reset', {
    schema: {
      tags: ['auth'],
      summary: 'Set a new password with a one-time reset key (from the reset mail or `tresor account reset-link`)',
      body: { type: 'object', additionalProperties: false, properties: { key: oneTimeKeyField, newPassword: passwordField }, required: ['key', 'newPassword'] },
      response: { 204: { type: 'null' }, 400: errorResponseSchema, 401: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.resetPassword(request.body.key, request.body.newPassword);
      return reply.status(204).send();
    },
  });

  app.post<{ Body: { key: string } }>('/api/v1/auth/invitation/peek', {
    schema: {
      tags: ['auth'],
      summary: 'What an invitation key is for (login, organisation, role), without using it up',
      body: { type: 'object', additionalProperties: false, properties: { key: oneTimeKeyField }, required: ['key'] },
      response: {
        200: { type: 'object', properties: { login: { type: 'string' }, organisation: { type: 'string' }, role: { type: 'string' } }, required: ['login', 'organisation', 'role'] },
        400: errorResponseSchema,
        401: errorResponseSchema,
      },
    },
    handler: async (request) => identity.peekInvitation(request.body.key),
  });

  app.post<{ Body: { key: string; newPassword: string } }>('/api/v1/auth/invitation/accept', {
    schema: {
      tags: ['auth'],
      summary: 'Accept an invitation: set the password with the one-time key from the mail; then log in',
      body: { type: 'object', additionalProperties: false, properties: { key: oneTimeKeyField, newPassword: passwordField }, required: ['key', 'newPassword'] },
      response: { 204: { type: 'null' }, 400: errorResponseSchema, 401: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.acceptInvitation(request.body.key, request.body.newPassword);
      return reply.status(204).send();
    },
  });

  app.post('/api/v1/auth/totp/setup', {
    ...secured,
    schema: {
      tags: ['auth'],
      summary: 'Start TOTP set-up: a secret and an otpauth:// URI for an authenticator app',
      response: { 200: { type: 'object', properties: { secret: { type: 'string' }, uri: { type: 'string' } }, required: ['secret', 'uri'] }, 401: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request) => identity.setupTotp(tokenOf(request)),
  });

  app.post<{ Body: { code: string } }>('/api/v1/auth/totp/enable', {
    ...secured,
    schema: {
      tags: ['auth'],
      summary: 'Activate TOTP with a current code; returns ten recovery codes, shown once, and a new session (the id changes)',
      body: { type: 'object', additionalProperties: false, properties: { code: { type: 'string', pattern: '^[0-9]{6}$' } }, required: ['code'] },
      response: {
        200: { ...sessionReply, properties: { ...sessionReply.properties, recoveryCodes: { type: 'array', items: { type: 'string' } } }, required: ['recoveryCodes', ...sessionReply.required] },
        400: errorResponseSchema,
        401: errorResponseSchema,
        409: errorResponseSchema,
      },
    },
    handler: async (request, reply) => {
      const via = viaOf(request);
      const { recoveryCodes, session } = await identity.enableTotp(tokenOf(request), request.body.code);
      return { ...sendSession(request, reply, session, via), recoveryCodes };
    },
  });

  app.post<{ Body: { code: string } }>('/api/v1/auth/totp/recovery-codes', {
    ...secured,
    schema: {
      tags: ['auth'],
      summary: 'Ten new recovery codes, shown once; all earlier ones stop working. Needs a current code from the authenticator app',
      body: { type: 'object', additionalProperties: false, properties: { code: { type: 'string', pattern: '^[0-9]{6}$' } }, required: ['code'] },
      response: { 200: { type: 'object', properties: { recoveryCodes: { type: 'array', items: { type: 'string' } } }, required: ['recoveryCodes'] }, 400: errorResponseSchema, 401: errorResponseSchema, 409: errorResponseSchema, 429: errorResponseSchema },
    },
    handler: async (request) => ({ recoveryCodes: await identity.regenerateRecoveryCodes(tokenOf(request), request.body.code, request.ip) }),
  });

  app.get('/api/v1/auth/me', {
    ...secured,
    schema: {
      tags: ['auth'],
      summary: 'Who am I, and what must this session do first (pending)',
      response: { 200: { type: 'object', properties: { ...actorSchema.properties, pending: pendingSchema }, required: ['kind', 'pending'] }, 401: errorResponseSchema },
    },
    handler: async (request) => {
      const resolved = await identity.resolveSession(tokenOf(request), viaOf(request));
      return { ...resolved.actor, pending: resolved.pending };
    },
  });

  // ---- Accounts of the tiers below the caller (invite, list, disable/enable, reset) ----

  const accountSchema = {
    type: 'object',
    properties: {
      id: { type: 'string' },
      login: { type: 'string' },
      role: { type: 'string' },
      status: { type: 'string' },
      tenantId: { type: ['string', 'null'] },
      resellerId: { type: ['string', 'null'] },
      secondFactor: { type: 'boolean' },
      createdAt: { type: 'string' },
    },
    required: ['id', 'login', 'role', 'status', 'tenantId', 'resellerId', 'secondFactor', 'createdAt'],
  } as const;

  app.post<{ Body: { email: string; role: AccountRole; tenantId?: string; resellerId?: string; language?: 'de' | 'en' } }>('/api/v1/accounts', {
    ...secured,
    schema: {
      tags: ['accounts'],
      summary: 'Invite an account: it gets a mail with a one-time link to set its password (valid 7 days)',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          email: { type: 'string', minLength: 3, maxLength: 254 },
          role: { type: 'string', enum: ACCOUNT_ROLES.filter((r) => r !== 'guest') },
          tenantId: { type: 'string', format: 'uuid' },
          resellerId: { type: 'string', format: 'uuid' },
          language: { type: 'string', enum: ['de', 'en'] },
        },
        required: ['email', 'role'],
      },
      response: {
        201: { type: 'object', properties: { accountId: { type: 'string' }, login: { type: 'string' }, role: { type: 'string' }, expiresAt: { type: 'string' }, mail: mailOutcome }, required: ['accountId', 'login', 'role', 'expiresAt'] },
        400: errorResponseSchema,
        401: errorResponseSchema,
        403: errorResponseSchema,
        404: errorResponseSchema,
        409: errorResponseSchema,
      },
    },
    handler: async (request, reply) => {
      // The link with its key goes only into the mail, never into the API response.
      const { accountId, login, role, expiresAt, mail } = await identity.invite(actorOf(request), request.body);
      return reply.status(201).send({ accountId, login, role, expiresAt, ...mailField(mail) });
    },
  });

  app.get<{ Querystring: { tenantId?: string; resellerId?: string } }>('/api/v1/accounts', {
    ...secured,
    schema: {
      tags: ['accounts'],
      summary: 'Accounts you administer (of a tenant, of a reseller, or by default those of your own tier)',
      querystring: { type: 'object', additionalProperties: false, properties: { tenantId: { type: 'string', format: 'uuid' }, resellerId: { type: 'string', format: 'uuid' } } },
      response: { 200: { type: 'array', items: accountSchema }, 401: errorResponseSchema, 404: errorResponseSchema },
    },
    handler: async (request) => identity.listAccounts(actorOf(request), request.query),
  });

  const byId = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] } as const;
  for (const [verb, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    app.post<{ Params: { id: string } }>(`/api/v1/accounts/:id/${verb}`, {
      ...secured,
      schema: {
        tags: ['accounts'],
        summary: verb === 'disable' ? 'Disable an account: it cannot log in and its sessions end at once' : 'Enable a disabled account again',
        params: byId,
        response: { 200: { type: 'object', properties: { accountId: { type: 'string' }, sessionsEnded: { type: 'integer' } }, required: ['accountId', 'sessionsEnded'] }, 401: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
      },
      handler: async (request) => identity.setAccountStatus(request.params.id, status, actorOf(request)),
    });
  }

  app.post<{ Params: { id: string } }>('/api/v1/accounts/:id/second-factor/reset', {
    ...secured,
    schema: {
      tags: ['accounts'],
      summary: "Remove an account's second factor (a lost phone): its sessions end, the owner is told by mail and sets up a new one",
      params: byId,
      response: { 200: { type: 'object', properties: { accountId: { type: 'string' }, sessionsEnded: { type: 'integer' } }, required: ['accountId', 'sessionsEnded'] }, 401: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request) => identity.resetSecondFactor(actorOf(request), request.params.id),
  });

  app.delete<{ Params: { id: string } }>('/api/v1/accounts/:id', {
    ...secured,
    schema: {
      tags: ['accounts'],
      summary: 'Delete an account: its sessions end, its copy of the tenant secret and its personal address book are deleted',
      params: byId,
      response: { 200: { type: 'object', properties: { accountId: { type: 'string' }, personalRecordsDeleted: { type: 'integer' } }, required: ['accountId', 'personalRecordsDeleted'] }, 401: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request) => identity.deleteAccount(actorOf(request), request.params.id),
  });

  app.post<{ Params: { id: string } }>('/api/v1/accounts/:id/reset', {
    ...secured,
    schema: {
      tags: ['accounts'],
      summary: 'Mail the account a one-time link to set a new password (valid 24 hours)',
      params: byId,
      response: { 200: { type: 'object', properties: { expiresAt: { type: 'string' }, mail: mailOutcome }, required: ['expiresAt'] }, 401: errorResponseSchema, 404: errorResponseSchema },
    },
    handler: async (request) => {
      const { expiresAt, mail } = await identity.issuePasswordReset(request.params.id, undefined, actorOf(request));
      return { expiresAt, ...mailField(mail) };
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/tenants/:id/password-policy', {
    ...secured,
    schema: { tags: ['accounts'], summary: "A tenant's password and second-factor policy", params: byId, response: { 200: policySchema, 401: errorResponseSchema, 404: errorResponseSchema } },
    handler: async (request) => identity.tenantPolicy(actorOf(request), request.params.id),
  });

  app.put<{ Params: { id: string }; Body: Partial<PasswordPolicy> }>('/api/v1/tenants/:id/password-policy', {
    ...secured,
    schema: {
      tags: ['accounts'],
      summary: "Set a tenant's policy (only stricter than the platform default: min. length, character classes, maximum age, history, roles that need a second factor)",
      params: byId,
      body: policySchema,
      response: { 200: policySchema, 400: errorResponseSchema, 401: errorResponseSchema, 404: errorResponseSchema },
    },
    handler: async (request) => identity.setTenantPolicy(actorOf(request), request.params.id, request.body),
  });

  // ---- Data access: the tenant secret for data users (DESIGN §3) ----

  app.get('/api/v1/keys/status', {
    ...secured,
    schema: {
      tags: ['keys'],
      summary: 'Whether this session has data access, and (for a data user) which colleagues still wait for it',
      response: {
        200: {
          type: 'object',
          properties: {
            dataAccess: { type: 'boolean' },
            waiting: { type: 'array', items: accountBrief, description: 'data users of the tenant still without data access' },
            colleagues: { type: 'array', items: accountBrief, description: 'every data user of the tenant with a key pair (possible handover owners)' },
            externals: { type: 'array', items: accountBrief, description: 'external accounts that can be given a grant' },
            recoveryCodePending: { type: 'boolean', description: 'a recovery code waits for this data user: POST /api/v1/keys/recovery-code shows it once' },
            rotationPending: { type: 'boolean', description: 'a rotation of the tenant secret stopped before every record was re-encrypted: POST /api/v1/keys/rotate/resume' },
          },
          required: ['dataAccess', 'waiting', 'colleagues', 'externals'],
        },
        401: errorResponseSchema,
      },
    },
    handler: async (request) => identity.dataAccessStatus(tokenOf(request)),
  });

  app.post<{ Body: { activationKey?: string; recoveryCode?: string } }>('/api/v1/keys/activate', {
    ...secured,
    schema: {
      tags: ['keys'],
      summary: "Data access for the first data user (the tenant's one-time activation key) or after every key was lost (the recovery code)",
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { activationKey: { type: 'string', maxLength: 64 }, recoveryCode: { type: 'string', maxLength: 80 } },
        minProperties: 1,
        maxProperties: 1,
      },
      response: { 204: { type: 'null' }, 401: errorResponseSchema, 403: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.activateDataAccess(tokenOf(request), request.body);
      return reply.status(204).send();
    },
  });

  app.post('/api/v1/keys/recovery-code', {
    ...secured,
    schema: {
      tags: ['keys'],
      summary:
        "The tenant's recovery code, shown once to the data user it is owed to (after their first activation, a rotation they ran, or as the owner after a handover); keep it offline",
      response: {
        200: { type: 'object', properties: { recoveryCode: { type: 'string' } }, required: ['recoveryCode'] },
        401: errorResponseSchema,
        403: errorResponseSchema,
        404: errorResponseSchema,
      },
    },
    handler: async (request) => identity.takeRecoveryCode(tokenOf(request)),
  });

  app.post<{ Body: { excludeAccountIds?: string[] } }>('/api/v1/keys/rotate', {
    ...secured,
    schema: {
      tags: ['keys'],
      summary:
        'Replace the tenant secret and re-encrypt every record (e.g. after someone with access left): the listed accounts lose access, every old copy becomes useless. JSON lines: {"reencrypted":n} as it goes, then the result',
      body: { type: 'object', additionalProperties: false, properties: { excludeAccountIds: { type: 'array', maxItems: 1000, items: { type: 'string', format: 'uuid' } } } },
      response: { 401: errorResponseSchema, 403: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const token = tokenOf(request);
      const key = await identity.dataKeyOf(token);
      if (!key) throw new ForbiddenError('only a data user with data access can rotate the tenant secret');
      // Asked before the stream starts, so that a refusal is a 403 and not an error line after a 200.
      authorizeData(actorOf(request), 'key.rotate', key.tenantId, 'only a data user with data access can rotate the tenant secret');
      const opts = { exclude: request.body.excludeAccountIds };
      await identity.checkRotation(token, opts);
      return streamJsonLines(reply, (line) => identity.rotateTenantSecret(token, opts, (n) => line({ reencrypted: n })));
    },
  });

  app.post('/api/v1/keys/rotate/resume', {
    ...secured,
    schema: { tags: ['keys'], summary: 'Continue an interrupted rotation of the tenant secret (JSON lines with progress)', response: { 401: errorResponseSchema, 403: errorResponseSchema } },
    handler: async (request, reply) => {
      const token = tokenOf(request);
      const key = await identity.dataKeyOf(token);
      if (!key) throw new ForbiddenError('only a data user holding the new tenant secret can resume a rotation');
      authorizeData(actorOf(request), 'key.rotate', key.tenantId, 'only a data user holding the new tenant secret can resume a rotation');
      return streamJsonLines(reply, (line) => identity.resumeRotation(token, (n) => line({ reencrypted: n })));
    },
  });

  app.post<{ Params: { id: string }; Body: { ownerAccountId: string } }>('/api/v1/tenants/:id/handover', {
    ...secured,
    schema: {
      tags: ['keys'],
      summary:
        "Installer handover (S2.3): the customer's data user becomes the only holder of a new tenant secret, every record is re-encrypted, and everyone else's copy — the installer's too — opens nothing any more. JSON lines with progress",
      params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] },
      body: { type: 'object', additionalProperties: false, properties: { ownerAccountId: { type: 'string', format: 'uuid' } }, required: ['ownerAccountId'] },
      response: { 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const token = tokenOf(request);
      const key = await identity.dataKeyOf(token);
      if (!key || key.grants || key.tenantId !== request.params.id) throw new ForbiddenError('the handover is done by a data user of this tenant who holds its secret (the installer, during set-up)');
      authorizeData(actorOf(request), 'key.rotate', key.tenantId, 'the handover is done by a data user of this tenant who holds its secret (the installer, during set-up)');
      const opts = { only: request.body.ownerAccountId, reason: 'handover' as const };
      await identity.checkRotation(token, opts);
      return streamJsonLines(reply, (line) => identity.rotateTenantSecret(token, opts, (n) => line({ reencrypted: n })));
    },
  });

  app.post<{ Body: { accountId: string } }>('/api/v1/keys/grant', {
    ...secured,
    schema: {
      tags: ['keys'],
      summary: 'Give a colleague (member or dpo of your tenant) data access: wraps the tenant secret for their key',
      body: { type: 'object', additionalProperties: false, properties: { accountId: { type: 'string', format: 'uuid' } }, required: ['accountId'] },
      response: { 204: { type: 'null' }, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.grantDataAccess(tokenOf(request), request.body.accountId);
      return reply.status(204).send();
    },
  });
}

const grantSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    granteeId: { type: 'string' },
    collection: { type: 'string' },
    recordIds: { type: ['array', 'null'], items: { type: 'string' } },
    expiresAt: { type: 'string' },
    createdBy: { type: 'string' },
    createdAt: { type: 'string' },
    endedAt: { type: ['string', 'null'] },
    endReason: { type: ['string', 'null'] },
  },
  required: ['id', 'granteeId', 'collection', 'recordIds', 'expiresAt', 'createdBy', 'createdAt', 'endedAt', 'endReason'],
} as const;

/** Grants (S2.2): a data user gives an external account time-limited, read-only access to a scope. */
export function registerGrantRoutes(app: FastifyInstance, deps: { identity: IdentityService; authenticate: preHandlerAsyncHookHandler }): void {
  const { identity } = deps;
  const secured = { preHandler: deps.authenticate };
  const tokenOf = (request: FastifyRequest) => sessionTokenOf(request)!.token;
  app.post<{ Body: { granteeId: string; collection?: 'contacts' | 'jobs'; recordIds?: string[]; expiresAt: string } }>('/api/v1/grants', {
    ...secured,
    schema: {
      tags: ['grants'],
      summary: 'Grant an external account (technician, control centre, authority) read access to a collection (the shared address book, or jobs) or chosen records of it until expiresAt',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          granteeId: { type: 'string', format: 'uuid' },
          collection: { type: 'string', enum: ['contacts', 'jobs'], default: 'contacts' },
          recordIds: { type: 'array', minItems: 1, maxItems: 10000, items: { type: 'string', format: 'uuid' } },
          expiresAt: { type: 'string', format: 'date-time' },
        },
        required: ['granteeId', 'expiresAt'],
      },
      response: { 201: grantSchema, 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request, reply) => reply.status(201).send(await identity.createGrant(tokenOf(request), request.body)),
  });
  app.get('/api/v1/grants', {
    ...secured,
    schema: { tags: ['grants'], summary: "Your tenant's grants (data users) or your own (external accounts)", response: { 200: { type: 'array', items: grantSchema }, 401: errorResponseSchema, 403: errorResponseSchema } },
    handler: async (request) => identity.listGrants(tokenOf(request)),
  });
  app.delete<{ Params: { id: string } }>('/api/v1/grants/:id', {
    ...secured,
    schema: {
      tags: ['grants'],
      summary: "Revoke a grant: the grantee's copy of the key is destroyed and access ends at once",
      params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] },
      response: { 204: { type: 'null' }, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema },
    },
    handler: async (request, reply) => {
      await identity.revokeGrant(tokenOf(request), request.params.id);
      return reply.status(204).send();
    },
  });
  app.post<{ Params: { id: string }; Body: { validMinutes?: number } }>('/api/v1/grants/:id/link', {
    ...secured,
    schema: {
      tags: ['grants'],
      summary: 'Mail the grantee a one-time access link to this grant (opens it without a password; works once, at most 24 hours, never past the grant)',
      params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'] },
      body: { type: ['object', 'null'], additionalProperties: false, properties: { validMinutes: { type: 'integer', minimum: 1, maximum: 1440, default: 1440 } } },
      response: { 201: { type: 'object', properties: { expiresAt: { type: 'string' }, mail: mailOutcome }, required: ['expiresAt'] }, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema },
    },
    handler: async (request, reply) => {
      const { expiresAt, mail } = await identity.sendAccessLink(tokenOf(request), request.params.id, (request.body?.validMinutes ?? 1440) * 60_000);
      return reply.status(201).send({ expiresAt, ...mailField(mail) });
    },
  });
  app.post<{ Body: { key: string; mode?: 'cookie' | 'token' } }>('/api/v1/auth/access-link', {
    schema: {
      tags: ['auth', 'grants'],
      summary: "Redeem a grantee's one-time access link: a session limited to the grant, ending with it at the latest",
      body: { type: 'object', additionalProperties: false, properties: { key: oneTimeKeyField, mode: { type: 'string', enum: ['cookie', 'token'], default: 'cookie' } }, required: ['key'] },
      response: {
        200: { ...sessionReply, properties: { ...sessionReply.properties, grant: grantSchema } },
        400: errorResponseSchema,
        401: errorResponseSchema,
      },
    },
    handler: async (request, reply) => {
      const mode = request.body.mode ?? 'cookie';
      const session = await identity.redeemAccessLink(request.body.key, request.ip, mode);
      return { ...sendSession(request, reply, { ...session, pending: [] }, mode), grant: session.grant };
    },
  });
}

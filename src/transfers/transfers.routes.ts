import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { errorResponseSchema } from '../http/errors.js';
import { actorOf, sessionTokenOf } from '../http/auth.js';
import type { IdentityService } from '../identity/index.js';
import { DomainError, ForbiddenError } from '../shared/errors.js';
import type { SenderSession, TransferService } from './transfers.service.js';

const errors = { 400: errorResponseSchema, 401: errorResponseSchema, 403: errorResponseSchema, 404: errorResponseSchema, 409: errorResponseSchema };
const uuid = { type: 'string', format: 'uuid' } as const;
const b64url = (min: number, max: number) => ({ type: 'string', pattern: '^[A-Za-z0-9_-]+$', minLength: min, maxLength: max }) as const;
const email = { type: 'string', minLength: 3, maxLength: 254 } as const;

/** The answer to "send" and "send the link again" counts notifications the relay did not take at once. */
const mailCounts = {
  mailsQueued: { type: 'integer', description: 'how many notifications wait in the mail queue (they are retried); only when not 0' },
  mailsRejected: { type: 'integer', description: 'how many recipients the relay refused for good (no such mailbox): they got no link; only when not 0' },
  mailsFailed: { type: 'integer', description: 'how many notifications could not be handed to the mail queue or relay at all (an error of this server, in the ledger as transfer.notify): they got no link, send it again (POST …/recipients/{rid}/notify); only when not 0' },
} as const;

const transferView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    subject: { type: 'string' },
    level: { type: 'integer' },
    createdAt: { type: 'string' },
    expiresAt: { type: 'string' },
    sentAt: { type: ['string', 'null'] },
    withdrawnAt: { type: ['string', 'null'] },
    downloadLimit: { type: ['integer', 'null'] },
    from: { type: ['string', 'null'], description: 'set when an outsider uploaded this through your "request files" link' },
    mine: { type: 'boolean', description: 'in the list: whether you sent it (a DPO sees the whole tenant\'s)' },
    files: {
      type: 'array',
      items: { type: 'object', properties: { id: { type: 'string' }, name: { type: ['string', 'null'] }, size: { type: 'integer' }, cipherSize: { type: 'integer' }, received: { type: 'integer' } } },
    },
    recipients: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          email: { type: 'string' },
          state: { type: 'string' },
          downloads: { type: 'integer' },
          keyState: { type: 'string' },
          pendingFingerprint: { type: ['string', 'null'] },
        },
      },
    },
    ...mailCounts,
  },
} as const;

/**
 * Secure exchange (docs/transfers.md): SecuPass keys, sending (data users with data access), and the
 * recipient's link (no session for level 1; the recipient's login for levels 2–4).
 */
export function registerTransferRoutes(
  app: FastifyInstance,
  deps: { transfers: TransferService; identity: Pick<IdentityService, 'dataKeyOf'>; authenticate: preHandlerAsyncHookHandler },
): void {
  const { transfers } = deps;
  const secured = { preHandler: deps.authenticate };
  /** Resolves a session when the request has one; a request without any stays anonymous. */
  const optionalSession: preHandlerAsyncHookHandler = async function (request, reply) {
    if (!sessionTokenOf(request)) return;
    try {
      await deps.authenticate.call(this, request, reply);
    } catch (error) {
      // An expired or ended session is no session (level 1 needs none); a replay or a locked session stays refused.
      if (!(error instanceof DomainError && error.code === 'UNAUTHENTICATED')) throw error;
    }
  };
  /** The body's declared length, so that an upload beyond its file is refused before a byte is read. */
  const declaredLength = (request: FastifyRequest) => {
    const length = Number(request.headers['content-length']);
    return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
  };
  const senderSession = async (request: FastifyRequest): Promise<SenderSession> => {
    const key = await deps.identity.dataKeyOf(sessionTokenOf(request)!.token);
    if (!key || key.grants) throw new ForbiddenError('sending transfers needs data access: only data users of a tenant who were given access can send');
    return { actor: actorOf(request), tenantId: key.tenantId, dataKey: key.dataKey, keyVersion: key.keyVersion };
  };

  // ---- SecuPass keys ------------------------------------------------------------------------------------
  app.get('/api/v1/e2e/login-salt', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Salt and Argon2id parameters of your login hash, to show in the browser that your SecuPass key differs from your password',
      response: { 200: { type: 'object', properties: { salt: { type: 'string' }, memoryKib: { type: 'integer' }, iterations: { type: 'integer' }, parallelism: { type: 'integer' }, hashLength: { type: 'integer' } } }, 401: errorResponseSchema },
    },
    handler: async (request) => transfers.loginSalt(actorOf(request)),
  });
  app.get('/api/v1/e2e/key', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Your current end-to-end key: the public key and the private key sealed under your SecuPass key',
      response: { 200: { type: 'object', properties: { publicKey: { type: 'string' }, fingerprint: { type: 'string' }, sealedPrivateKey: { type: 'string' }, createdAt: { type: 'string' } } }, ...errors },
    },
    handler: async (request) => transfers.myKey(actorOf(request)),
  });
  app.put<{ Body: { publicKey: string; sealedPrivateKey: string; loginCheck: string } }>('/api/v1/e2e/key', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Create or reset your SecuPass key pair; a reset makes data sent for the old key unreadable until each sender approves the new key',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { publicKey: b64url(100, 4096), sealedPrivateKey: b64url(40, 8192), loginCheck: { type: 'string', minLength: 16, maxLength: 200, pattern: '^[A-Za-z0-9+/]+={0,2}$' } },
        required: ['publicKey', 'sealedPrivateKey', 'loginCheck'],
      },
      response: { 200: { type: 'object', properties: { fingerprint: { type: 'string' }, reset: { type: 'boolean' }, pendingApprovals: { type: 'integer' } } }, ...errors },
    },
    handler: async (request) => transfers.putKey(actorOf(request), request.body),
  });
  app.post<{ Body: { emails: string[] } }>('/api/v1/e2e/keys', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: "Recipients' current public keys by e-mail address (data users composing a level-3/4 transfer)",
      body: { type: 'object', additionalProperties: false, properties: { emails: { type: 'array', minItems: 1, maxItems: 50, items: email } }, required: ['emails'] },
      response: {
        200: {
          type: 'object',
          properties: { keys: { type: 'object', additionalProperties: { anyOf: [{ type: 'null' }, { type: 'object', properties: { publicKey: { type: 'string' }, fingerprint: { type: 'string' } } }] } } },
        },
        ...errors,
      },
    },
    handler: async (request) => transfers.keysFor(await senderSession(request), request.body.emails),
  });

  // ---- sending ------------------------------------------------------------------------------------------
  app.post<{ Body: Parameters<TransferService['create']>[1] }>('/api/v1/transfers', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Create a transfer (a draft until send): files are uploaded as ciphertext in the end-to-end format',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          subject: { type: 'string', minLength: 1, maxLength: 200 },
          level: { type: 'integer', enum: [1, 2, 3, 4] },
          expiresAt: { type: 'string', format: 'date-time' },
          downloadLimit: { type: 'integer', minimum: 1, maximum: 1000 },
          language: { type: 'string', enum: ['de', 'en'] },
          message: { type: 'string', maxLength: 20000 },
          recipients: { type: 'array', minItems: 1, maxItems: 50, items: email },
          files: {
            type: 'array',
            minItems: 1,
            maxItems: 100,
            items: { type: 'object', additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 255, description: 'levels 1–3; at level 4 the names go into the bundle' }, size: { type: 'integer', minimum: 0 }, fileKey: b64url(43, 43) }, required: ['size'] },
          },
          bundle: { type: 'object', additionalProperties: false, properties: { size: { type: 'integer', minimum: 2 } }, required: ['size'] },
        },
        required: ['subject', 'level', 'expiresAt', 'recipients', 'files'],
      },
      response: {
        201: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            files: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, name: { type: ['string', 'null'] }, size: { type: 'integer' }, cipherSize: { type: 'integer' } } } },
            bundleId: { type: 'string' },
            bundleCipherSize: { type: 'integer' },
            recipients: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, email: { type: 'string' }, publicKey: { type: 'string' }, fingerprint: { type: 'string' } } } },
            sender: { type: 'object', properties: { publicKey: { type: 'string' }, fingerprint: { type: 'string' } } },
          },
        },
        ...errors,
      },
    },
    handler: async (request, reply) => reply.status(201).send(await transfers.create(await senderSession(request), request.body)),
  });

  // Ciphertext arrives as a raw stream; it is written to disk as it comes (constant memory).
  app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
    scope.put<{ Params: { id: string; fileId: string }; Querystring: { offset: number } }>('/api/v1/transfers/:id/blobs/:fileId', {
      ...secured,
      schema: {
        tags: ['transfers'],
        summary: 'Append ciphertext to a file at byte `offset` (= what was received so far); resumable',
        params: { type: 'object', properties: { id: uuid, fileId: uuid }, required: ['id', 'fileId'] },
        querystring: { type: 'object', properties: { offset: { type: 'integer', minimum: 0 } }, required: ['offset'] },
        response: { 200: { type: 'object', properties: { received: { type: 'integer' }, cipherSize: { type: 'integer' } } }, ...errors },
      },
      handler: async (request) => {
        if (request.headers['content-type'] !== 'application/octet-stream') throw new DomainError('VALIDATION', 'send the ciphertext as application/octet-stream');
        return transfers.upload(await senderSession(request), request.params.id, request.params.fileId, request.query.offset, request.body as AsyncIterable<Uint8Array>, declaredLength(request));
      },
    });
  });
  app.get<{ Params: { id: string; fileId: string } }>('/api/v1/transfers/:id/blobs/:fileId/status', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'How much of a file has arrived (to resume an upload)',
      params: { type: 'object', properties: { id: uuid, fileId: uuid }, required: ['id', 'fileId'] },
      response: { 200: { type: 'object', properties: { received: { type: 'integer' }, cipherSize: { type: 'integer' } } }, ...errors },
    },
    handler: async (request) => transfers.uploadStatus(await senderSession(request), request.params.id, request.params.fileId),
  });
  /** Per file of a draft, what a client needs to go on with its upload from a fresh start. */
  const resumeFiles = {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        id: { type: 'string' },
        kind: { type: 'string', enum: ['file', 'bundle'] },
        name: { type: ['string', 'null'] },
        size: { type: 'integer' },
        cipherSize: { type: 'integer' },
        received: { type: 'integer' },
        header: { type: 'string' },
        pieces: { type: 'array', items: { type: 'string' } },
        manifest: { type: 'string' },
        content: { type: 'string', description: 'the complete level-4 bundle, base64url (end-to-end encrypted: message and file names)' },
        fileKey: { type: 'string' },
      },
    },
  } as const;
  app.put<{ Params: { id: string; fileId: string }; Body: { manifest: string } }>('/api/v1/transfers/:id/blobs/:fileId/manifest', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Before the first byte of a file: the list of SHA-256 digests of its plaintext (one per 8 MiB), end-to-end encrypted under the file key, so that an upload can go on after a page reload',
      params: { type: 'object', properties: { id: uuid, fileId: uuid }, required: ['id', 'fileId'] },
      body: { type: 'object', additionalProperties: false, properties: { manifest: b64url(16, 400_000) }, required: ['manifest'] },
      response: { 204: { type: 'null' }, ...errors },
    },
    handler: async (request, reply) => {
      await transfers.setManifest(await senderSession(request), request.params.id, request.params.fileId, request.body.manifest);
      return reply.status(204).send();
    },
  });
  app.get<{ Params: { id: string }; Querystring: { pieceSize: number } }>('/api/v1/transfers/:id/resume', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'To go on with an unsent transfer from a fresh start: per file what arrived, its stored header, a SHA-256 per piece of it and the sender\'s encrypted digest list; levels 1/2 the file keys, levels 3/4 the recipients\' keys, level 4 the encrypted bundle',
      params: { type: 'object', properties: { id: uuid }, required: ['id'] },
      querystring: { type: 'object', properties: { pieceSize: { type: 'integer', minimum: 8388608, maximum: 67108864 } }, required: ['pieceSize'] },
      response: {
        200: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            level: { type: 'integer' },
            files: resumeFiles,
            recipients: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, email: { type: 'string' }, fingerprint: { type: 'string' }, publicKey: { type: 'string' } } } },
          },
        },
        ...errors,
      },
    },
    handler: async (request, reply) => {
      void reply.header('cache-control', 'no-store'); // file keys of levels 1/2
      return transfers.resumeState(await senderSession(request), request.params.id, request.query.pieceSize);
    },
  });
  app.post<{ Params: { id: string }; Body: { wraps: { fileId: string; recipientId?: string; holder?: string; fingerprint: string; wrapped: string }[] } }>('/api/v1/transfers/:id/wraps', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Levels 3/4: the file keys wrapped to each recipient key and to your own (wrapFileKey of the e2e format)',
      params: { type: 'object', properties: { id: uuid }, required: ['id'] },
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          wraps: {
            type: 'array',
            minItems: 1,
            maxItems: 5202,
            items: {
              type: 'object',
              additionalProperties: false,
              properties: { fileId: uuid, recipientId: { type: 'string', maxLength: 36 }, holder: { type: 'string', maxLength: 36 }, fingerprint: { type: 'string', maxLength: 80 }, wrapped: b64url(100, 4096) },
              required: ['fileId', 'fingerprint', 'wrapped'],
            },
          },
        },
        required: ['wraps'],
      },
      response: { 200: { type: 'object', properties: { stored: { type: 'integer' } } }, ...errors },
    },
    handler: async (request) =>
      transfers.addWraps(
        await senderSession(request),
        request.params.id,
        request.body.wraps.map((w) => ({ fileId: w.fileId, holder: w.recipientId ?? w.holder ?? '', fingerprint: w.fingerprint, wrapped: w.wrapped })),
      ),
  });
  app.post<{ Params: { id: string } }>('/api/v1/transfers/:id/send', {
    ...secured,
    schema: { tags: ['transfers'], summary: 'Send: mails every recipient a link of their own', params: { type: 'object', properties: { id: uuid }, required: ['id'] }, response: { 200: transferView, ...errors } },
    handler: async (request) => transfers.send(await senderSession(request), request.params.id),
  });
  app.post<{ Params: { id: string; rid: string } }>('/api/v1/transfers/:id/recipients/:rid/notify', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Send one recipient of a sent transfer a new link (a notification that did not arrive); the earlier link stops opening',
      params: { type: 'object', properties: { id: uuid, rid: uuid }, required: ['id', 'rid'] },
      response: { 200: { type: 'object', properties: mailCounts }, ...errors },
    },
    handler: async (request) => transfers.notifyAgain(await senderSession(request), request.params.id, request.params.rid),
  });
  app.get('/api/v1/transfers', {
    ...secured,
    schema: { tags: ['transfers'], summary: 'Your transfers (the DPO: all of the tenant), newest first, with each recipient\'s state', response: { 200: { type: 'array', items: transferView }, ...errors } },
    handler: async (request) => transfers.list(await senderSession(request)),
  });
  app.delete<{ Params: { id: string } }>('/api/v1/transfers/:id', {
    ...secured,
    schema: { tags: ['transfers'], summary: 'Withdraw: blobs and key material are deleted at once', params: { type: 'object', properties: { id: uuid }, required: ['id'] }, response: { 204: { type: 'null' }, ...errors } },
    handler: async (request, reply) => {
      await transfers.withdraw(await senderSession(request), request.params.id);
      return reply.status(204).send();
    },
  });
  app.get<{ Params: { id: string } }>('/api/v1/transfers/:id/sender-wraps', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Your own wrapped file keys of a level-3/4 transfer (to re-wrap them for an approved key)',
      params: { type: 'object', properties: { id: uuid }, required: ['id'] },
      response: { 200: { type: 'array', items: { type: 'object', properties: { fileId: { type: 'string' }, wrapped: { type: 'string' }, fingerprint: { type: 'string' } } } }, ...errors },
    },
    handler: async (request) => transfers.senderWraps(await senderSession(request), request.params.id),
  });
  app.post<{ Params: { id: string; rid: string }; Body: { fingerprint: string; wraps: { fileId: string; wrapped: string }[] } }>('/api/v1/transfers/:id/recipients/:rid/approve', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: "Approve a recipient's new SecuPass key (compare its fingerprint first) with the file keys re-wrapped for it",
      params: { type: 'object', properties: { id: uuid, rid: uuid }, required: ['id', 'rid'] },
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          fingerprint: { type: 'string', maxLength: 80 },
          wraps: { type: 'array', minItems: 1, maxItems: 101, items: { type: 'object', additionalProperties: false, properties: { fileId: uuid, wrapped: b64url(100, 4096) }, required: ['fileId', 'wrapped'] } },
        },
        required: ['fingerprint', 'wraps'],
      },
      response: { 204: { type: 'null' }, ...errors },
    },
    handler: async (request, reply) => {
      await transfers.approve(await senderSession(request), request.params.id, request.params.rid, request.body);
      return reply.status(204).send();
    },
  });

  // ---- "request files" --------------------------------------------------------------------------------------
  app.post<{ Body: { level: 1 | 2 | 3 | 4; expiresAt: string; message?: string; email?: string; language?: 'de' | 'en' } }>('/api/v1/file-requests', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Ask someone for files: a link to upload to you at a chosen level (mailed when email is given)',
      body: {
        type: 'object',
        additionalProperties: false,
        properties: { level: { type: 'integer', enum: [1, 2, 3, 4] }, expiresAt: { type: 'string', format: 'date-time' }, message: { type: 'string', maxLength: 5000 }, email, language: { type: 'string', enum: ['de', 'en'] } },
        required: ['level', 'expiresAt'],
      },
      response: { 201: { type: 'object', properties: { id: { type: 'string' }, link: { type: 'string' }, expiresAt: { type: 'string' } } }, ...errors },
    },
    handler: async (request, reply) => reply.status(201).send(await transfers.createRequest(await senderSession(request), request.body)),
  });
  app.get('/api/v1/file-requests', {
    ...secured,
    schema: {
      tags: ['transfers'],
      summary: 'Your "request files" links',
      response: {
        200: {
          type: 'array',
          items: { type: 'object', properties: { id: { type: 'string' }, level: { type: 'integer' }, message: { type: ['string', 'null'] }, expiresAt: { type: 'string' }, createdAt: { type: 'string' }, closedAt: { type: ['string', 'null'] }, uploads: { type: 'integer' } } },
        },
        ...errors,
      },
    },
    handler: async (request) => transfers.listRequests(await senderSession(request)),
  });
  app.delete<{ Params: { id: string } }>('/api/v1/file-requests/:id', {
    ...secured,
    schema: { tags: ['transfers'], summary: 'Close a "request files" link', params: { type: 'object', properties: { id: uuid }, required: ['id'] }, response: { 204: { type: 'null' }, ...errors } },
    handler: async (request, reply) => {
      await transfers.closeRequest(await senderSession(request), request.params.id);
      return reply.status(204).send();
    },
  });
  const requestParams = { type: 'object', properties: { id: uuid }, required: ['id'] } as const;
  /** A body with nothing but a link's secret (request link or recipient link). */
  const secretOnly = { type: 'object', additionalProperties: false, properties: { secret: b64url(43, 43) }, required: ['secret'] } as const;
  const requestSecret = (request: FastifyRequest) => {
    const header = request.headers['x-tresor-request-secret'];
    const fromBody = (request.body as { secret?: unknown } | undefined)?.secret;
    const secret = typeof header === 'string' ? header : fromBody;
    if (typeof secret !== 'string') throw new DomainError('VALIDATION', 'send the secret of the request link (x-tresor-request-secret or "secret")');
    return secret;
  };
  app.post<{ Params: { id: string }; Body: { secret: string } }>('/api/v1/u/:id/open', {
    schema: {
      tags: ['transfers'],
      summary: 'What a "request files" link asks for: who, at which level, and (levels 3/4) the key to encrypt for',
      params: requestParams,
      body: secretOnly,
      response: {
        200: { type: 'object', properties: { level: { type: 'integer' }, message: { type: ['string', 'null'] }, requester: { type: 'string' }, expiresAt: { type: 'string' }, publicKey: { type: 'string' }, fingerprint: { type: 'string' } } },
        ...errors,
      },
    },
    handler: async (request) => transfers.openRequest(request.params.id, request.body.secret),
  });
  app.post<{ Params: { id: string }; Body: { secret: string; from: string; subject: string; message?: string; files: { name?: string; size: number; fileKey?: string }[]; bundle?: { size: number } } }>('/api/v1/u/:id/transfers', {
    schema: {
      tags: ['transfers'],
      summary: 'Upload through a "request files" link: creates a transfer to the requester (then blobs, wraps and send as usual)',
      params: requestParams,
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          secret: b64url(43, 43),
          from: email,
          subject: { type: 'string', minLength: 1, maxLength: 200 },
          message: { type: 'string', maxLength: 20000 },
          files: {
            type: 'array',
            minItems: 1,
            maxItems: 100,
            items: { type: 'object', additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 255 }, size: { type: 'integer', minimum: 0 }, fileKey: b64url(43, 43) }, required: ['size'] },
          },
          bundle: { type: 'object', additionalProperties: false, properties: { size: { type: 'integer', minimum: 2 } }, required: ['size'] },
        },
        required: ['secret', 'from', 'subject', 'files'],
      },
    },
    handler: async (request, reply) => {
      const { secret, from, subject, message, files, bundle } = request.body;
      return reply.status(201).send(await transfers.createViaRequest(request.params.id, secret, { from, subject, message, files, bundle }));
    },
  });
  /** An upload through a request link: the link's id, the draft's id (and a file's). */
  const viaParams = { type: 'object', properties: { id: uuid, tid: uuid }, required: ['id', 'tid'] } as const;
  const viaFileParams = { type: 'object', properties: { id: uuid, tid: uuid, fileId: uuid }, required: ['id', 'tid', 'fileId'] } as const;
  app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
    scope.put<{ Params: { id: string; tid: string; fileId: string }; Querystring: { offset: number } }>('/api/v1/u/:id/transfers/:tid/blobs/:fileId', {
      schema: {
        tags: ['transfers'],
        summary: 'Append ciphertext of an upload through a request link (header x-tresor-request-secret)',
        params: viaFileParams,
        querystring: { type: 'object', properties: { offset: { type: 'integer', minimum: 0 } }, required: ['offset'] },
        response: { 200: { type: 'object', properties: { received: { type: 'integer' }, cipherSize: { type: 'integer' } } }, ...errors },
      },
      handler: async (request) => {
        const access = await transfers.requestAccess(request.params.id, requestSecret(request), request.params.tid);
        return transfers.uploadVia(access, request.params.fileId, request.query.offset, request.body as AsyncIterable<Uint8Array>, declaredLength(request));
      },
    });
  });
  app.put<{ Params: { id: string; tid: string; fileId: string }; Body: { secret: string; manifest: string } }>('/api/v1/u/:id/transfers/:tid/blobs/:fileId/manifest', {
    schema: {
      tags: ['transfers'],
      summary: 'Through a request link, before the first byte of a file: its encrypted digest list (as for your own transfers), so the upload can go on after a page reload',
      params: viaFileParams,
      body: { type: 'object', additionalProperties: false, properties: { secret: b64url(43, 43), manifest: b64url(16, 400_000) }, required: ['secret', 'manifest'] },
      response: { 204: { type: 'null' }, ...errors },
    },
    handler: async (request, reply) => {
      const access = await transfers.requestAccess(request.params.id, request.body.secret, request.params.tid);
      await transfers.setManifestVia(access, request.params.fileId, request.body.manifest);
      return reply.status(204).send();
    },
  });
  app.post<{ Params: { id: string; tid: string }; Body: { secret: string; pieceSize: number } }>('/api/v1/u/:id/transfers/:tid/resume', {
    schema: {
      tags: ['transfers'],
      summary: 'Through a request link, after a page reload: what the server holds of each file of the unsent upload (no names or keys: the uploader\'s browser kept them)',
      params: viaParams,
      body: { type: 'object', additionalProperties: false, properties: { secret: b64url(43, 43), pieceSize: { type: 'integer', minimum: 8388608, maximum: 67108864 } }, required: ['secret', 'pieceSize'] },
      response: { 200: { type: 'object', properties: { id: { type: 'string' }, level: { type: 'integer' }, files: resumeFiles } }, ...errors },
    },
    handler: async (request, reply) => {
      void reply.header('cache-control', 'no-store');
      const access = await transfers.requestAccess(request.params.id, request.body.secret, request.params.tid);
      return transfers.resumeStateVia(access, request.body.pieceSize);
    },
  });
  app.post<{ Params: { id: string; tid: string }; Body: { secret: string } }>('/api/v1/u/:id/transfers/:tid/withdraw', {
    schema: {
      tags: ['transfers'],
      summary: 'Through a request link: give up an unsent upload; what arrived of it is deleted at once',
      params: viaParams,
      body: secretOnly,
      response: { 204: { type: 'null' }, ...errors },
    },
    handler: async (request, reply) => {
      await transfers.withdrawVia(await transfers.requestAccess(request.params.id, request.body.secret, request.params.tid));
      return reply.status(204).send();
    },
  });
  app.post<{ Params: { id: string; tid: string }; Body: { secret: string; wraps: { fileId: string; recipientId: string; fingerprint: string; wrapped: string }[] } }>('/api/v1/u/:id/transfers/:tid/wraps', {
    schema: {
      tags: ['transfers'],
      summary: "Levels 3/4 through a request link: the file keys wrapped to the requester's key",
      params: viaParams,
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          secret: b64url(43, 43),
          wraps: { type: 'array', minItems: 1, maxItems: 101, items: { type: 'object', additionalProperties: false, properties: { fileId: uuid, recipientId: uuid, fingerprint: { type: 'string', maxLength: 80 }, wrapped: b64url(100, 4096) }, required: ['fileId', 'recipientId', 'fingerprint', 'wrapped'] } },
        },
        required: ['secret', 'wraps'],
      },
      response: { 200: { type: 'object', properties: { stored: { type: 'integer' } } }, ...errors },
    },
    handler: async (request) => {
      const access = await transfers.requestAccess(request.params.id, request.body.secret, request.params.tid);
      return transfers.addWrapsVia(access, request.body.wraps.map((w) => ({ fileId: w.fileId, holder: w.recipientId, fingerprint: w.fingerprint, wrapped: w.wrapped })));
    },
  });
  app.post<{ Params: { id: string; tid: string }; Body: { secret: string } }>('/api/v1/u/:id/transfers/:tid/send', {
    schema: {
      tags: ['transfers'],
      summary: 'Send an upload through a request link: the requester is mailed their link',
      params: viaParams,
      body: secretOnly,
      response: { 200: { type: 'object', properties: { id: { type: 'string' }, sentAt: { type: ['string', 'null'] } } }, ...errors },
    },
    handler: async (request) => {
      const access = await transfers.requestAccess(request.params.id, request.body.secret, request.params.tid);
      const sent = await transfers.sendVia(access);
      return { id: sent.id, sentAt: sent.sentAt }; // the outsider learns nothing of the requester's other data
    },
  });

  // ---- receiving ------------------------------------------------------------------------------------------
  const openedSchema = {
    type: 'object',
    properties: {
      transferId: { type: 'string' },
      level: { type: 'integer' },
      subject: { type: 'string' },
      message: { type: ['string', 'null'] },
      sender: { type: 'string' },
      expiresAt: { type: 'string' },
      downloadsLeft: { type: ['integer', 'null'] },
      files: {
        type: 'array',
        items: { type: 'object', properties: { id: { type: 'string' }, name: { type: ['string', 'null'] }, size: { type: 'integer' }, cipherSize: { type: 'integer' }, wrapped: { type: 'string' }, fingerprint: { type: 'string' } } },
      },
      bundle: { type: 'object', properties: { id: { type: 'string' }, cipherSize: { type: 'integer' }, wrapped: { type: 'string' }, fingerprint: { type: 'string' } } },
      keyState: { type: 'string' },
      downloadToken: { type: 'string' },
    },
  } as const;
  app.post<{ Params: { rid: string }; Body: { secret: string; email?: string } }>('/api/v1/r/:rid/open', {
    preHandler: optionalSession,
    schema: {
      tags: ['transfers'],
      summary: "Open a transfer with the recipient's link: level 1 with the address it was sent to; levels 2–4 logged in as that address",
      params: { type: 'object', properties: { rid: uuid }, required: ['rid'] },
      body: { type: 'object', additionalProperties: false, properties: { secret: b64url(43, 43), email }, required: ['secret'] },
      response: { 200: openedSchema, ...errors },
    },
    handler: async (request) => transfers.open(request.params.rid, request.body.secret, { email: request.body.email, actor: request.actor, source: request.ip }),
  });
  app.post<{ Params: { rid: string }; Body: { secret: string } }>('/api/v1/r/:rid/register', {
    schema: {
      tags: ['transfers'],
      summary: "Register a free guest account for the link's address: an invitation goes to that address",
      params: { type: 'object', properties: { rid: uuid }, required: ['rid'] },
      body: secretOnly,
      response: { 202: { type: 'object', properties: { status: { type: 'string' } } }, ...errors },
    },
    handler: async (request, reply) => {
      const status = await transfers.register(request.params.rid, request.body.secret);
      // The same answer whether or not an account exists: the mail says the rest.
      return reply.status(202).send({ status: status === 'invited' ? 'mailed' : 'mailed' });
    },
  });
  app.get<{ Params: { rid: string; fileId: string }; Querystring: { token: string; encrypted?: boolean } }>('/api/v1/r/:rid/files/:fileId', {
    preHandler: optionalSession,
    schema: {
      tags: ['transfers'],
      summary:
        'Download a file with the token of open: plaintext at levels 1–2 (or, with encrypted=true, the stored ciphertext and its file key in the x-tresor-file-key header, for the recipient to decrypt), ciphertext (e2e format) at levels 3–4; levels 2–4 only in the session of the account that opened the link',
      params: { type: 'object', properties: { rid: uuid, fileId: uuid }, required: ['rid', 'fileId'] },
      querystring: { type: 'object', properties: { token: b64url(43, 43), encrypted: { type: 'boolean', default: false } }, required: ['token'] },
    },
    handler: async (request, reply) => {
      const file = await transfers.download(request.params.rid, request.params.fileId, request.query.token, { actor: request.actor, source: request.ip, encrypted: request.query.encrypted === true });
      if ('fileKey' in file && file.fileKey !== undefined) void reply.header('x-tresor-file-key', file.fileKey).header('x-tresor-file-context', file.context);
      return reply
        .header('content-type', file.encrypted ? 'application/octet-stream' : 'application/octet-stream')
        .header('content-length', String(file.length))
        .header('content-disposition', `attachment; filename="${file.name.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(file.name)}`)
        .header('cache-control', 'no-store')
        .header('x-tresor-encrypted', file.encrypted ? 'e2e' : 'no')
        .send(file.stream);
    },
  });
}

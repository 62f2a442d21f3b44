import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rm, stat, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline as pipelineStreams, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql, type Kysely } from 'kysely';
import { authorizeData, isAllowed, type Actor } from '../access/index.js';
import { aeadOpen, aeadSeal, hkdf32, unwrapWithKey, wrapWithKey } from '../crypto/envelope.js';
import { constantTimeEqual, newId, sha256Hex } from '../crypto/random.js';
import type { IdentityService } from '../identity/index.js';
import { ledgerActor } from '../ledger/ledgers.js';
import { MAX_ENTRY_FIELD_LENGTH, type Ledger, type LedgerEvent } from '../ledger/index.js';
import { ledgerSubjectIndex, type SubjectKeyStore } from '../records/subject-keys.js';
import type { Mailer } from '../mail/mailer.js';
import { mailErrorCode } from '../mail/mail.service.js';
import { renderMail, type MailTemplate } from '../mail/templates.js';
import { decryptTransform } from '../shared-e2e/node.js';
import { E2eError } from '../shared-e2e/errors.js';
import { ciphertextSize, decodePublicKey, fingerprint as fingerprintOf, fromBase64Url, HEADER_SIZE, WRAPPED_KEY_SIZE } from '../shared-e2e/index.js';
import { ConflictError, DomainError, ForbiddenError, NotFoundError, UnauthenticatedError, ValidationError } from '../shared/errors.js';
import { countStreamed, streamed } from '../shared/streamed.js';
import type { TransferControlSchema, TransferFileTable, TransferRecipientTable, TransferSchema, TransferTable } from './transfers.migrations.js';
import type { MailCounts } from './mail-notices.js';

export type Level = 1 | 2 | 3 | 4;
export type KeyState = 'none' | 'ok' | 'pending-key' | 'approval-needed';

export interface CreateTransferInput {
  subject: string;
  level: Level;
  expiresAt: string;
  downloadLimit?: number | undefined;
  language?: 'de' | 'en' | undefined;
  message?: string | undefined;
  recipients: string[];
  files: { name?: string | undefined; size: number; fileKey?: string | undefined }[];
  bundle?: { size: number } | undefined;
}

/** A transfer as its sender sees it; the answer to "send" adds the counts of notifications that did not go out at once. */
export interface TransferView extends MailCounts {
  id: string;
  subject: string;
  level: Level;
  createdAt: string;
  expiresAt: string;
  sentAt: string | null;
  withdrawnAt: string | null;
  downloadLimit: number | null;
  from: string | null;
  files: { id: string; name: string | null; size: number; cipherSize: number; received: number }[];
  recipients: { id: string; email: string; state: string; downloads: number; keyState: KeyState; pendingFingerprint: string | null }[];
  /** In the sent list: whether the session's account sent it (a DPO sees everyone's). */
  mine?: boolean;
}

export interface OpenedTransfer {
  transferId: string;
  level: Level;
  subject: string;
  message: string | null;
  sender: string;
  expiresAt: string;
  downloadsLeft: number | null;
  files: { id: string; name: string | null; size: number; cipherSize: number; wrapped?: string; fingerprint?: string }[];
  bundle?: { id: string; cipherSize: number; wrapped?: string; fingerprint?: string };
  keyState: KeyState;
  downloadToken: string;
}

/** What a data session gives the transfer service: the tenant data key of the sender's session. */
export interface SenderSession {
  actor: Actor;
  tenantId: string;
  dataKey: Buffer;
  keyVersion: number;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/u;
const DAY_MS = 86_400_000;
const DOWNLOAD_TOKEN_MS = 3_600_000;
export const MAX_FILE_BYTES = 64 * 1024 ** 3; // 64 GiB per file
const MAX_FILES = 100;
const MAX_RECIPIENTS = 50;
const MAX_BUNDLE_BYTES = 1024 * 1024;
const TOKEN = /^[A-Za-z0-9_-]{43}$/;
/** How many received bytes of an upload may wait before a background data sync starts. */
const SYNC_EVERY = 64 * 1024 * 1024;
/** What an upload queues on its way to disk, three times (the transform's two sides and the write stream). */
const UPLOAD_QUEUE = 1024 * 1024;
/** The pieces a download reads from disk. */
const DOWNLOAD_PIECE = 256 * 1024;
/** A stored blob as a download sends it, counted for the young-generation collection. */
const blobReader = (path: string) => pipelineStreams(createReadStream(path, { highWaterMark: DOWNLOAD_PIECE }), countStreamed(), () => undefined);

const normaliseEmail = (email: string) => email.normalize('NFC').trim().toLowerCase();
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');
/** The file context of the end-to-end format: binds a file's records to its transfer and id. */
export const fileContext = (transferId: string, fileId: string) => `transfer:${transferId}/file:${fileId}`;

/** "This link is not valid": one answer for unknown, withdrawn, expired and wrong-secret links. */
export class TransferLinkError extends DomainError {
  constructor() {
    super('NOT_FOUND', 'this transfer link is not valid (any more): it may have expired or been withdrawn');
  }
}

/**
 * One pass over the first `length` bytes of a blob, in constant memory: its header (once that many bytes are
 * there) and a SHA-256 (hex) per `pieceSize` bytes, the last one shorter.
 */
async function digestPieces(path: string, length: number, pieceSize: number): Promise<{ header: Buffer | undefined; pieces: string[] }> {
  const pieces: string[] = [];
  let hash = createHash('sha256');
  let inPiece = 0;
  let head = Buffer.alloc(0);
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    if (head.length < HEADER_SIZE) head = Buffer.concat([head, chunk.subarray(0, HEADER_SIZE - head.length)]);
    for (let at = 0; at < chunk.length; ) {
      const take = Math.min(chunk.length - at, pieceSize - inPiece);
      hash.update(chunk.subarray(at, at + take));
      at += take;
      inPiece += take;
      if (inPiece === pieceSize) {
        pieces.push(hash.digest('hex'));
        hash = createHash('sha256');
        inPiece = 0;
      }
    }
  }
  if (inPiece > 0) pieces.push(hash.digest('hex'));
  return { header: head.length === HEADER_SIZE ? head : undefined, pieces };
}

export function createTransferService(deps: {
  control: Kysely<TransferControlSchema>;
  tenantDb: (tenantId: string) => Promise<Kysely<TransferSchema>>;
  tenantLedger: (tenantId: string) => Promise<Pick<Ledger, 'append'>>;
  identity: Pick<IdentityService, 'accountInfo' | 'accountByLogin' | 'loginHashParams' | 'matchesLoginHash' | 'registerGuest'>;
  tenantName: (tenantId: string) => Promise<string>;
  mailer: Pick<Mailer, 'send'>;
  publicUrl: string;
  defaultLanguage: 'de' | 'en';
  blobRoot: string;
  clock: { now(): Date };
  billing?: { count(tenantId: string, usage: { bytesTransferred?: number }): void };
  /** The ledger's data-subject pseudonym keys (each recipient is named by the pseudonym of their address). */
  subjectKeys: Pick<SubjectKeyStore, 'keysOf'>;
}) {
  const { control, clock } = deps;
  const nowIso = () => clock.now().toISOString();

  // ---- keys of a transfer ----------------------------------------------------------------------------
  const tenantKek = (dataKey: Buffer) => hkdf32(dataKey, 'tresor/transfer-key/v1');
  const transferKeyContext = (id: string, version: number) => `transfer-key|${id}|v${version}`;
  const linkContext = (transferId: string, recipientId: string) => `transfer-link|${transferId}|${recipientId}`;
  const seal = (key: Buffer, text: string, aad: string) => aeadSeal(key, Buffer.from(text, 'utf8'), aad).toString('base64url');
  const unseal = (key: Buffer, sealed: string, aad: string) => aeadOpen(key, Buffer.from(sealed, 'base64url'), aad).toString('utf8');
  const emailCheck = (secret: Uint8Array, email: string) => createHmac('sha256', hkdf32(secret, 'tresor/transfer-email-check/v1')).update(normaliseEmail(email)).digest('hex');
  const requestKeyContext = (id: string, version: number) => `file-request-key|${id}|v${version}`;
  const requestLinkContext = (id: string) => `file-request-link|${id}`;
  const requestTransferContext = (id: string) => `transfer-key|${id}|request`;
  /** K_tr of a transfer for a data session: under the tenant data key, or (uploaded through a request) under K_req. */
  const transferKeyOf = async (s: SenderSession, t: TransferTable & { request_id?: string | null }) => {
    if (!t.key_wrap) throw new NotFoundError('transfer');
    if (t.request_id) {
      const db = await deps.tenantDb(s.tenantId);
      const fr = await db.selectFrom('file_requests').select(['id', 'key_wrap', 'key_version']).where('id', '=', t.request_id).executeTakeFirst();
      if (!fr?.key_wrap) throw new NotFoundError('transfer');
      const requestKey = unwrapWithKey(fr.key_wrap, tenantKek(s.dataKey), requestKeyContext(fr.id, fr.key_version));
      return unwrapWithKey(t.key_wrap, requestKey, requestTransferContext(t.id));
    }
    return unwrapWithKey(t.key_wrap, tenantKek(s.dataKey), transferKeyContext(t.id, t.key_version));
  };

  const blobDir = (tenantId: string, transferId: string) => join(deps.blobRoot, tenantId, transferId);
  const blobPath = (tenantId: string, transferId: string, fileId: string) => join(blobDir(tenantId, transferId), fileId);
  /**
   * What arrived of a file: pieces are not synced one by one, so after a crash the blob may be shorter
   * than recorded; what is really on disk decides (and where an upload goes on).
   */
  const arrivedOf = async (path: string, recorded: number) => {
    const onDisk = await stat(path).then((st) => st.size, () => 0);
    return { onDisk, received: Math.min(recorded, onDisk) };
  };

  const record = async (tenantId: string, event: LedgerEvent) => (await deps.tenantLedger(tenantId)).append(event);
  /** 'sent', or 'queued' when the relay did not take it at once (the mail module retries): never a failure. */
  const mailTo = async (to: { login: string; language: 'de' | 'en' | null }, template: MailTemplate) => {
    const { subject, text } = renderMail(template, to.language ?? deps.defaultLanguage);
    return deps.mailer.send({ to: to.login, subject, text, kind: template.kind });
  };

  /** A data user of the tenant (member or DPO) acting in a session that holds the tenant's data key. */
  const sender = (s: SenderSession) => {
    const a = s.actor;
    authorizeData(a, 'transfer.send', s.tenantId, 'transfers are sent by the data users of a tenant');
    if (a.kind !== 'tenant') throw new ForbiddenError('transfers are sent by the data users of a tenant'); // narrows the type; the policy decided
    return a;
  };
  const ownTransfer = async (s: SenderSession, id: string) => {
    const a = sender(s);
    const db = await deps.tenantDb(s.tenantId);
    const t = await db.selectFrom('transfers').selectAll().where('id', '=', id).executeTakeFirst();
    if (!t || t.deleted_at !== null || (t.sender_id !== a.accountId && !isAllowed(a, 'transfer.manage-any', { type: 'data', tenantId: s.tenantId }))) throw new NotFoundError('transfer');
    return { db, t, a };
  };

  /**
   * An unsent transfer of the session's own account, still open, not uploaded through a request link: what
   * the sender's browser may go on with (not a DPO who may manage everyone's: the resume answer holds file keys).
   */
  const ownDraft = async (s: SenderSession, id: string) => {
    const found = await ownTransfer(s, id);
    const { t, a } = found;
    if (t.sender_id !== a.accountId) throw new ForbiddenError('only the sender of a transfer can go on with its upload');
    stillDraft(t);
    if (t.request_id) throw new ConflictError('this transfer is being uploaded through a "request files" link; only its uploader can go on with it');
    return found;
  };

  /**
   * Per file of a draft what a client needs to go on with it from a fresh start: what arrived, the header
   * stored first (its salt makes the same key encrypt the same file to the same bytes again), a SHA-256
   * per `pieceSize` bytes of what arrived (the client compares its new ciphertext with them, so a changed
   * file is never spliced onto the old part) and the client's encrypted digest list; the level-4 bundle
   * whole once complete. `secrets`: also the file names and (levels 1/2) the file keys — for the sender's
   * session, not for a request-link holder, whose browser kept its own. Recorded as `transfer.resume`.
   */
  const filesToResume = async (x: { tenantId: string; db: Kysely<TransferSchema>; t: TransferSchema['transfers']; actor: LedgerEvent['actor'] }, key: Buffer, pieceSize: number, secrets: boolean) => {
    const { tenantId, db, t } = x;
    if (!Number.isSafeInteger(pieceSize) || pieceSize < 8 * 1024 * 1024 || pieceSize > 64 * 1024 * 1024) throw new ValidationError('pieceSize must be 8 MiB to 64 MiB');
    const rows = await db.selectFrom('transfer_files').selectAll().where('transfer_id', '=', t.id).orderBy('idx').execute();
    const files = [];
    for (const f of rows) {
      const path = blobPath(tenantId, t.id, f.id);
      const { received } = await arrivedOf(path, Number(f.received));
      // Digests only of files still open: a complete file is not uploaded again (and not read here).
      const { header, pieces } = received > 0 && received < Number(f.cipher_size) ? await digestsOf(path, received, pieceSize) : { header: undefined, pieces: [] };
      files.push({
        id: f.id,
        kind: f.kind as 'file' | 'bundle',
        ...(secrets ? { name: f.name_ct === null ? null : unseal(key, f.name_ct, `transfer|${t.id}|file-name|${f.id}`) } : {}),
        size: Number(f.size),
        cipherSize: Number(f.cipher_size),
        received,
        ...(header ? { header: header.toString('base64url') } : {}),
        pieces,
        ...(f.manifest !== null ? { manifest: f.manifest } : {}),
        // The level-4 bundle whole (at most 1 MiB, end-to-end encrypted): the sender's page reads the file
        // names from it, so that each chosen file goes on under its own name.
        ...(f.kind === 'bundle' && received === Number(f.cipher_size) ? { content: (await readFile(path)).toString('base64url') } : {}),
        ...(secrets && f.file_key_ct !== null ? { fileKey: aeadOpen(key, Buffer.from(f.file_key_ct, 'base64url'), `transfer|${t.id}|file-key|${f.id}`).toString('base64url') } : {}),
      });
    }
    await record(tenantId, { actor: x.actor, action: 'transfer.resume', resource: { type: 'transfer', id: t.id }, outcome: 'success', details: { files: files.length, received: files.reduce((n, f) => n + f.received, 0) } });
    return files;
  };

  /**
   * The digests last read of each blob, with the length, piece size and the file's size and modification
   * time they were read for: asking again while the blob is unchanged reads nothing again, so nobody holding
   * a request link can make the server read a large upload over and over (a write, an upload's or anyone
   * else's, makes them read anew). The newest 256 blobs are kept.
   */
  const digestCache = new Map<string, { key: string; value: Awaited<ReturnType<typeof digestPieces>> }>();
  const digestsOf = async (path: string, received: number, pieceSize: number) => {
    const st = await stat(path);
    const key = `${received}/${pieceSize}/${st.size}/${st.mtimeMs}`;
    const hit = digestCache.get(path);
    if (hit?.key === key) return hit.value;
    const value = await digestPieces(path, received, pieceSize);
    digestCache.delete(path);
    digestCache.set(path, { key, value });
    if (digestCache.size > 256) digestCache.delete(digestCache.keys().next().value!);
    return value;
  };

  /** A transfer withdrawn or expired: nothing about it can change any more (`details.state: expired`). */
  const goneError = () => new ConflictError('this transfer was withdrawn or has expired; send the files again', { client: { state: 'expired' } });

  /** An unsent draft its creator may still change: not sent, withdrawn or expired (`details.state` says which). */
  const stillDraft = (t: TransferSchema['transfers'], whenSent = 'this transfer was sent already; its files cannot change') => {
    if (t.sent_at !== null) throw new ConflictError(whenSent, { client: { state: 'sent' } });
    if (t.withdrawn_at !== null || t.expires_at <= nowIso()) throw goneError();
  };

  /** A transfer as its creator may change it: a data user's session, or an outsider holding a request link. */
  interface Access {
    tenantId: string;
    db: Kysely<TransferSchema>;
    t: TransferSchema['transfers'];
    key(): Promise<Buffer>;
    actor: LedgerEvent['actor'];
    senderLabel(): Promise<string>;
    ownFingerprint(): Promise<string | undefined>;
    viaRequest: boolean;
  }
  const sessionAccess = async (s: SenderSession, id: string): Promise<Access> => {
    const { db, t, a } = await ownTransfer(s, id);
    return {
      tenantId: s.tenantId,
      db,
      t,
      key: () => transferKeyOf(s, t),
      actor: ledgerActor(s.actor),
      senderLabel: async () => (await deps.identity.accountInfo(a.accountId))?.login ?? 'Tresor',
      ownFingerprint: async () => (await currentKey(a.accountId))?.fingerprint,
      viaRequest: false,
    };
  };

  const currentKey = async (accountId: string) =>
    control.selectFrom('e2e_keys').selectAll().where('account_id', '=', accountId).where('replaced_at', 'is', null).executeTakeFirst();
  /** The current key of the account with this login (e-mail address), if there is one. */
  const currentKeyOf = async (email: string) => {
    const account = await deps.identity.accountByLogin(email);
    return account ? currentKey(account.id) : undefined;
  };

  /** Who creates a transfer: a data user (K_tr under the tenant data key) or an outsider through a request (under K_req). */
  interface TransferOrigin {
    tenantId: string;
    senderId: string;
    actor: LedgerEvent['actor'];
    wrapKey(id: string, key: Buffer): { key_wrap: string; key_version: number };
    requestId?: string;
    from?: string;
    /** The ledger pseudonym of a recipient's e-mail address (Art. 15), when the sender holds the tenant data key. */
    subjectIndex?: (email: string) => string;
  }
  const createTransfer = async (origin: TransferOrigin, input: CreateTransferInput) => {
      const problems: string[] = [];
      const subject = input.subject.trim();
      if (subject.length < 1 || subject.length > 200) problems.push('subject must be 1 to 200 characters');
      if (![1, 2, 3, 4].includes(input.level)) problems.push('level must be 1, 2, 3 or 4');
      const expires = new Date(input.expiresAt);
      const now = clock.now();
      if (!Number.isFinite(expires.getTime()) || expires <= now || expires.getTime() - now.getTime() > 90 * DAY_MS) problems.push('expiresAt must be in the future, at most 90 days ahead');
      const recipients = [...new Set(input.recipients.map(normaliseEmail))];
      if (recipients.length < 1 || recipients.length > MAX_RECIPIENTS) problems.push(`recipients: 1 to ${MAX_RECIPIENTS} e-mail addresses`);
      for (const r of recipients) if (r.length > 254 || !EMAIL.test(r)) problems.push(`"${r.slice(0, 60)}" is not an e-mail address`);
      if (input.files.length < 1 || input.files.length > MAX_FILES) problems.push(`files: 1 to ${MAX_FILES}`);
      const e2e = input.level >= 3;
      input.files.forEach((f, i) => {
        if (input.level === 4) {
          if (f.name !== undefined) problems.push(`file ${i + 1}: at level 4 the file names go into the end-to-end encrypted bundle, not to the server`);
        } else if (f.name === undefined || f.name.trim().length < 1 || f.name.length > 255 || /[\u0000-\u001f/\\]/.test(f.name)) problems.push(`file ${i + 1}: the name must be 1 to 255 characters, without / \\ or control characters`);
        if (!Number.isSafeInteger(f.size) || f.size < 0 || f.size > MAX_FILE_BYTES) problems.push(`file ${i + 1}: size must be 0 to ${MAX_FILE_BYTES} bytes`);
        if (!e2e && (f.fileKey === undefined || !/^[A-Za-z0-9_-]{43}$/.test(f.fileKey))) problems.push(`file ${i + 1}: levels 1 and 2 need the file key (32 bytes, base64url)`);
        if (e2e && f.fileKey !== undefined) problems.push(`file ${i + 1}: at level ${input.level} the file key never goes to the server; send wraps instead`);
      });
      if (input.level === 4) {
        if (!input.bundle || !Number.isSafeInteger(input.bundle.size) || input.bundle.size < 2 || input.bundle.size > MAX_BUNDLE_BYTES) problems.push(`level 4 needs bundle.size (the encrypted message and file names), at most ${MAX_BUNDLE_BYTES} bytes`);
        if (input.message) problems.push('at level 4 the message goes into the end-to-end encrypted bundle, not into message');
      } else if (input.bundle) problems.push('bundle is for level 4 only');
      if ((input.message ?? '').length > 20_000) problems.push('message must be at most 20,000 characters');
      if (input.downloadLimit !== undefined && (!Number.isInteger(input.downloadLimit) || input.downloadLimit < 1 || input.downloadLimit > 1000)) problems.push('downloadLimit must be 1 to 1000');
      if (problems.length > 0) throw new ValidationError(problems.join('; '), { problems });

      const id = newId();
      const key = randomBytes(32);
      const db = await deps.tenantDb(origin.tenantId);
      const row: TransferSchema['transfers'] = {
        id,
        sender_id: origin.senderId,
        level: input.level,
        subject_ct: seal(key, subject, `transfer|${id}|subject`),
        message_ct: input.level <= 3 && input.message ? seal(key, input.message, `transfer|${id}|message`) : null,
        language: input.language ?? deps.defaultLanguage,
        ...origin.wrapKey(id, key),
        request_id: origin.requestId ?? null,
        from_ct: origin.from ? seal(key, origin.from, `transfer|${id}|from`) : null,
        download_limit: input.downloadLimit ?? null,
        created_at: now.toISOString(),
        expires_at: expires.toISOString(),
        sent_at: null,
        withdrawn_at: null,
        deleted_at: null,
      };
      const files: TransferFileTable[] = input.files.map((f, idx) => {
        const fileId = newId();
        return {
          id: fileId,
          transfer_id: id,
          idx,
          kind: 'file',
          name_ct: input.level === 4 ? null : seal(key, f.name!.trim(), `transfer|${id}|file-name|${fileId}`),
          size: f.size,
          cipher_size: ciphertextSize(f.size),
          received: 0,
          file_key_ct: e2e ? null : aeadSeal(key, Buffer.from(f.fileKey!, 'base64url'), `transfer|${id}|file-key|${fileId}`).toString('base64url'),
          manifest: null,
        };
      });
      if (input.level === 4) {
        files.push({ id: newId(), transfer_id: id, idx: files.length, kind: 'bundle', name_ct: null, size: input.bundle!.size, cipher_size: ciphertextSize(input.bundle!.size), received: 0, file_key_ct: null, manifest: null });
      }
      const recipientRows: (TransferRecipientTable & { email: string; publicKey?: string })[] = [];
      for (const [idx, email] of recipients.entries()) {
        const rid = newId();
        let keyInfo: { publicKey: string; fingerprint: string } | undefined;
        if (e2e) {
          const k = await currentKeyOf(email);
          if (k) keyInfo = { publicKey: k.public_key, fingerprint: k.fingerprint };
        }
        recipientRows.push({
          id: rid,
          transfer_id: id,
          idx,
          email_ct: seal(key, email, `transfer|${id}|recipient|${rid}`),
          email_check: null,
          secret_hash: null,
          key_wrap: null,
          state: 'draft',
          downloads: '{}',
          opened_at: null,
          downloaded_at: null,
          key_fingerprint: keyInfo?.fingerprint ?? null,
          key_state: !e2e ? 'none' : keyInfo ? 'ok' : 'pending-key',
          pending_fingerprint: null,
          email,
          ...(keyInfo ? { publicKey: keyInfo.publicKey } : {}),
        });
      }
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('transfers').values(row).execute();
        await trx.insertInto('transfer_files').values(files).execute();
        await trx.insertInto('transfer_recipients').values(recipientRows.map(({ email: _e, publicKey: _p, ...r }) => r)).execute();
      });
      await control.insertInto('transfer_index').values(recipientRows.map((r) => ({ recipient_id: r.id, tenant_id: origin.tenantId }))).execute();
      await mkdir(blobDir(origin.tenantId, id), { recursive: true, mode: 0o700 });
      // The recipients by pseudonym, so that an Art. 15 export by e-mail address finds what was sent to
      // them: as many as fit the entry's resource field, the rest in transfer.recipients entries.
      const subjects = origin.subjectIndex ? [...new Set(recipients.map(origin.subjectIndex))].sort() : [];
      const perEntry = Math.floor((MAX_ENTRY_FIELD_LENGTH - `transfer:${id}#bidx=`.length + 1) / 33);
      const chunks = Array.from({ length: Math.max(1, Math.ceil(subjects.length / perEntry)) }, (_, i) => subjects.slice(i * perEntry, (i + 1) * perEntry));
      await (await deps.tenantLedger(origin.tenantId)).append(
        chunks.map((blindIndexes, i) => ({
          actor: origin.actor,
          action: i === 0 ? 'transfer.create' : 'transfer.recipients',
          resource: { type: 'transfer', id, ...(blindIndexes.length > 0 ? { blindIndexes } : {}) },
          outcome: 'success' as const,
          details:
            i === 0
              ? { level: input.level, files: input.files.length, recipients: recipients.length, bytes: input.files.reduce((n, f) => n + f.size, 0) }
              : { part: i + 1, parts: chunks.length },
        })),
      );
      const own = e2e ? await currentKey(origin.senderId) : undefined;
      const bundle = files.find((f) => f.kind === 'bundle');
      return {
        id,
        files: files.filter((f) => f.kind === 'file').map((f) => ({ id: f.id, name: input.files[f.idx]!.name?.trim() ?? null, size: Number(f.size), cipherSize: Number(f.cipher_size) })),
        ...(bundle ? { bundleId: bundle.id, bundleCipherSize: Number(bundle.cipher_size) } : {}),
        recipients: recipientRows.map((r) => ({ id: r.id, email: r.email, ...(r.publicKey ? { publicKey: r.publicKey, fingerprint: r.key_fingerprint! } : {}) })),
        ...(own ? { sender: { publicKey: own.public_key, fingerprint: own.fingerprint } } : {}),
      };
  };

  // ---- sent list -------------------------------------------------------------------------------------
  const viewOf = async (db: Kysely<TransferSchema>, key: Buffer, t: TransferSchema['transfers']): Promise<TransferView> => {
    const files = await db.selectFrom('transfer_files').selectAll().where('transfer_id', '=', t.id).orderBy('idx').execute();
    const recipients = await db.selectFrom('transfer_recipients').selectAll().where('transfer_id', '=', t.id).orderBy('idx').execute();
    return {
      id: t.id,
      subject: unseal(key, t.subject_ct, `transfer|${t.id}|subject`),
      level: t.level as Level,
      createdAt: t.created_at,
      expiresAt: t.expires_at,
      sentAt: t.sent_at,
      withdrawnAt: t.withdrawn_at,
      downloadLimit: t.download_limit,
      // Uploaded by an outsider through a "request files" link: who says they sent it (unverified address).
      from: t.from_ct ? unseal(key, t.from_ct, `transfer|${t.id}|from`) : null,
      files: files.filter((f) => f.kind === 'file').map((f) => ({
        id: f.id,
        name: f.name_ct === null ? null : unseal(key, f.name_ct, `transfer|${t.id}|file-name|${f.id}`),
        size: Number(f.size),
        cipherSize: Number(f.cipher_size),
        received: Number(f.received),
      })),
      recipients: recipients.map((r) => ({
        id: r.id,
        email: unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`),
        state: r.state,
        downloads: Object.values(JSON.parse(r.downloads) as Record<string, number>).reduce((a, b) => a + b, 0),
        keyState: r.key_state as KeyState,
        pendingFingerprint: r.pending_fingerprint,
      })),
    };
  };

  /** Deletes a transfer's blobs and every piece of its key material (withdrawal, expiry). */
  const purge = async (tenantId: string, t: TransferTable, reason: 'withdrawn' | 'expired', actor: LedgerEvent['actor']) => {
    const db = await deps.tenantDb(tenantId);
    await rm(blobDir(tenantId, t.id), { recursive: true, force: true });
    const recipients = await db.selectFrom('transfer_recipients').select('id').where('transfer_id', '=', t.id).execute();
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('transfer_wraps').where('transfer_id', '=', t.id).execute();
      await trx.deleteFrom('transfer_downloads').where('transfer_id', '=', t.id).execute();
      await trx.updateTable('transfer_files').set({ file_key_ct: null }).where('transfer_id', '=', t.id).execute();
      await trx.updateTable('transfer_recipients').set({ key_wrap: null, secret_hash: null, email_check: null }).where('transfer_id', '=', t.id).execute();
      await trx
        .updateTable('transfers')
        .set({ key_wrap: null, deleted_at: nowIso(), ...(reason === 'withdrawn' && t.withdrawn_at === null ? { withdrawn_at: nowIso() } : {}) })
        .where('id', '=', t.id)
        .execute();
    });
    if (recipients.length > 0) await control.deleteFrom('transfer_index').where('recipient_id', 'in', recipients.map((r) => r.id)).execute();
    await record(tenantId, { actor, action: reason === 'withdrawn' ? 'transfer.withdraw' : 'transfer.expire', resource: { type: 'transfer', id: t.id }, outcome: 'success' });
  };

  /**
   * Mails one recipient the link with its secret (and the key fingerprint the browser checks): 'sent', or
   * 'queued'/'rejected' as the mailer says. A mail that cannot even be handed over is 'failed': the send or
   * the new link stands (the other recipients' links work), the sender is told, and the ledger has the
   * recipient's id and the error's code — never the address.
   */
  const notify = async (
    x: Pick<Access, 'tenantId' | 't' | 'actor'>,
    r: { id: string; key_fingerprint: string | null },
    email: string,
    secret: Buffer,
    letter: { senderLabel: string; organisation: string; subject: string; files: number },
  ): Promise<'sent' | 'queued' | 'rejected' | 'failed'> => {
    const { t } = x;
    const link = `${deps.publicUrl}/app/r/${r.id}#s=${b64(secret)}${r.key_fingerprint ? `&fp=${r.key_fingerprint}` : ''}`;
    try {
      const account = await deps.identity.accountByLogin(email);
      const mailed = await mailTo({ login: email, language: account?.language ?? (t.language as 'de' | 'en') }, { kind: 'transfer-notification', link, sender: letter.senderLabel, organisation: letter.organisation, subject: letter.subject, level: t.level, files: letter.files, expiresAt: t.expires_at });
      return mailed === 'queued' || mailed === 'rejected' ? mailed : 'sent';
    } catch (error) {
      await record(x.tenantId, { actor: x.actor, action: 'transfer.notify', resource: { type: 'transfer', id: t.id }, outcome: 'failure', details: { recipient: r.id, code: mailErrorCode(error) } });
      return 'failed';
    }
  };
  const countMail = (counts: MailCounts, outcome: Awaited<ReturnType<typeof notify>>) => {
    const field = ({ queued: 'mailsQueued', rejected: 'mailsRejected', failed: 'mailsFailed' } as const)[outcome as 'queued' | 'rejected' | 'failed'];
    if (field) counts[field] = (counts[field] ?? 0) + 1;
  };

  // ---- the recipient's side: the link -------------------------------------------------------------------
  /** Resolves a link: its tenant, transfer and recipient, with K_tr opened by the link secret. */
  const resolveLink = async (recipientId: string, secret: string) => {
    if (!TOKEN.test(secret) || !/^[0-9a-f-]{36}$/.test(recipientId)) throw new TransferLinkError();
    const index = await control.selectFrom('transfer_index').selectAll().where('recipient_id', '=', recipientId).executeTakeFirst();
    if (!index) throw new TransferLinkError();
    const db = await deps.tenantDb(index.tenant_id);
    const r = await db.selectFrom('transfer_recipients').selectAll().where('id', '=', recipientId).executeTakeFirst();
    const t = r ? await db.selectFrom('transfers').selectAll().where('id', '=', r.transfer_id).executeTakeFirst() : undefined;
    if (!r || !t || !r.secret_hash || !r.key_wrap || !constantTimeEqual(sha256Hex(secret), r.secret_hash)) throw new TransferLinkError();
    if (t.sent_at === null || t.deleted_at !== null || t.withdrawn_at !== null || t.expires_at <= nowIso()) throw new TransferLinkError();
    const secretBytes = Buffer.from(secret, 'base64url');
    const key = unwrapWithKey(r.key_wrap, secretBytes, linkContext(t.id, r.id));
    const email = unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`);
    return { tenantId: index.tenant_id, db, t, r, key, email, secretBytes };
  };

  /** Resolves a request link: its tenant and row, with K_req opened by the link secret. */
  const resolveRequest = async (id: string, secret: string) => {
    if (!TOKEN.test(secret) || !/^[0-9a-f-]{36}$/.test(id)) throw new TransferLinkError();
    const index = await control.selectFrom('transfer_index').selectAll().where('recipient_id', '=', id).executeTakeFirst();
    if (!index) throw new TransferLinkError();
    const db = await deps.tenantDb(index.tenant_id);
    const fr = await db.selectFrom('file_requests').selectAll().where('id', '=', id).executeTakeFirst();
    if (!fr || !fr.secret_hash || !fr.link_wrap || fr.closed_at !== null || fr.expires_at <= nowIso() || !constantTimeEqual(sha256Hex(secret), fr.secret_hash)) throw new TransferLinkError();
    return { tenantId: index.tenant_id, db, fr, requestKey: unwrapWithKey(fr.link_wrap, Buffer.from(secret, 'base64url'), requestLinkContext(fr.id)) };
  };

  /** One tenant's part of `expire`: how many transfers were purged. */
  const expireTenant = async (tenantId: string) => {
    let purged = 0;
    const db = await deps.tenantDb(tenantId);
    const due = await db.selectFrom('transfers').selectAll().where('deleted_at', 'is', null).where((eb) => eb.or([eb('expires_at', '<=', nowIso()), eb('withdrawn_at', 'is not', null)])).execute();
    for (const t of due) {
      await purge(tenantId, t, t.withdrawn_at ? 'withdrawn' : 'expired', { tier: 'system', role: 'scheduler', id: 'scheduler' });
      purged++;
    }
    await db.deleteFrom('transfer_downloads').where('expires_at', '<=', nowIso()).execute();
    // "Request files" links that expired or were closed: the outsider's way in (the link's wrap of K_req)
    // goes at once; the member's wrap of K_req once no transfer uploaded through the link is left.
    await db
      .updateTable('file_requests')
      .set({ link_wrap: null, secret_hash: null })
      .where((eb) => eb.or([eb('expires_at', '<=', nowIso()), eb('closed_at', 'is not', null)]))
      .where((eb) => eb.or([eb('link_wrap', 'is not', null), eb('secret_hash', 'is not', null)]))
      .execute();
    await db
      .updateTable('file_requests')
      .set({ key_wrap: null })
      .where((eb) => eb.or([eb('expires_at', '<=', nowIso()), eb('closed_at', 'is not', null)]))
      .where('key_wrap', 'is not', null)
      .where((eb) => eb.not(eb.exists(eb.selectFrom('transfers').select('transfers.id').whereRef('transfers.request_id', '=', 'file_requests.id').where('transfers.deleted_at', 'is', null))))
      .execute();
    return purged;
  };

  return {
    // ---- SecuPass keys --------------------------------------------------------------------------------
    async loginSalt(actor: Actor) {
      if (!('accountId' in actor)) throw new ForbiddenError();
      return deps.identity.loginHashParams(actor.accountId);
    },

    async myKey(actor: Actor) {
      if (!('accountId' in actor)) throw new ForbiddenError();
      const k = await currentKey(actor.accountId);
      if (!k) throw new NotFoundError('SecuPass key');
      return { publicKey: k.public_key, fingerprint: k.fingerprint, sealedPrivateKey: k.sealed_private_key, createdAt: k.created_at };
    },

    /**
     * Creates or resets the caller's key pair. A reset destroys every wrap for the old key (data sent
     * for it becomes unreadable) and asks each sender of such data to approve the new key.
     */
    async putKey(actor: Actor, input: { publicKey: string; sealedPrivateKey: string; loginCheck: string }) {
      if (!('tenantId' in actor) || !isAllowed(actor, 'e2e-key.own', { type: 'data', tenantId: actor.tenantId })) throw new ForbiddenError('SecuPass keys are for the people who send and receive transfers');
      let fingerprint: string;
      try {
        fingerprint = await fingerprintOf(await decodePublicKey(input.publicKey));
      } catch {
        throw new ValidationError('publicKey is not a valid Tresor end-to-end public key (docs/e2e-format.md)');
      }
      if (!/^[A-Za-z0-9_-]{40,8192}$/.test(input.sealedPrivateKey)) throw new ValidationError('sealedPrivateKey must be the sealed key in base64url');
      const check = Buffer.from(input.loginCheck, 'base64');
      if (await deps.identity.matchesLoginHash(actor.accountId, check)) throw new ConflictError('the SecuPass key must differ from your login password: choose another one');
      const old = await currentKey(actor.accountId);
      if (old?.fingerprint === fingerprint) throw new ConflictError('this is your current key already');
      const now = nowIso();
      // The replaced key's sealed private key is wiped with it: nobody (not even with the old SecuPass) can
      // open the old key again, and every wrap for it goes below, so what was sent for it is unreadable.
      if (old) await control.updateTable('e2e_keys').set({ replaced_at: now, sealed_private_key: null }).where('id', '=', old.id).execute();
      await control.insertInto('e2e_keys').values({ id: newId(), account_id: actor.accountId, public_key: input.publicKey, fingerprint, sealed_private_key: input.sealedPrivateKey, created_at: now, replaced_at: null }).execute();
      let pendingApprovals = 0;
      const me = await deps.identity.accountInfo(actor.accountId);
      if (old) {
        // Every wrap for the old key goes: what was sent for it is unreadable until a sender approves the new one.
        const tenants = await control.selectFrom('transfer_index').select('tenant_id').distinct().execute();
        for (const { tenant_id: tenantId } of tenants) {
          const db = await deps.tenantDb(tenantId);
          await db.deleteFrom('transfer_wraps').where('fingerprint', '=', old.fingerprint).execute();
          const affected = await db.selectFrom('transfer_recipients').selectAll().where('key_fingerprint', '=', old.fingerprint).execute();
          for (const r of affected) {
            await db.updateTable('transfer_recipients').set({ key_state: 'approval-needed', pending_fingerprint: fingerprint, key_fingerprint: null }).where('id', '=', r.id).execute();
            pendingApprovals++;
            const t = await db.selectFrom('transfers').select(['id', 'sender_id', 'level']).where('id', '=', r.transfer_id).executeTakeFirst();
            const senderAccount = t ? await deps.identity.accountInfo(t.sender_id) : undefined;
            if (senderAccount && me) await mailTo(senderAccount, { kind: 'transfer-key-pending', subject: `#${t!.id.slice(0, 8)}`, recipient: me.login, fingerprint });
          }
        }
      }
      const tenantId = 'tenantId' in actor && actor.tenantId ? actor.tenantId : undefined;
      const event: LedgerEvent = { actor: ledgerActor(actor), action: old ? 'e2e.key.reset' : 'e2e.key.create', resource: { type: 'e2e-key', id: actor.accountId }, outcome: 'success', details: { pendingApprovals } };
      if (tenantId) await record(tenantId, event);
      return { fingerprint, reset: old !== undefined, pendingApprovals };
    },

    /** The current public keys of people by address (for a sender composing a level-3/4 transfer). */
    async keysFor(s: SenderSession, emails: string[]) {
      sender(s);
      const keys: Record<string, { publicKey: string; fingerprint: string } | null> = {};
      for (const email of emails.slice(0, MAX_RECIPIENTS)) {
        const k = await currentKeyOf(email);
        keys[normaliseEmail(email)] = k ? { publicKey: k.public_key, fingerprint: k.fingerprint } : null;
      }
      return { keys };
    },

    // ---- sending --------------------------------------------------------------------------------------
    async create(s: SenderSession, input: CreateTransferInput) {
      const a = sender(s);
      const subjectKeys = await deps.subjectKeys.keysOf(s);
      return createTransfer(
        {
          tenantId: s.tenantId,
          senderId: a.accountId,
          actor: ledgerActor(s.actor),
          wrapKey: (id, key) => ({ key_wrap: wrapWithKey(key, tenantKek(s.dataKey), transferKeyContext(id, s.keyVersion)), key_version: s.keyVersion }),
          subjectIndex: (email) => ledgerSubjectIndex(subjectKeys, 'email', email),
        },
        input,
      );
    },

    /**
     * Appends ciphertext at `offset` (which must be what was received so far), streamed to disk in
     * constant memory. An interrupted upload keeps what arrived; the sender resumes from `received`.
     */
    async uploadVia(x: Access, fileId: string, offset: number, body: AsyncIterable<Uint8Array>, declaredLength?: number) {
      const { db, t } = x;
      stillDraft(t);
      const f = await db.selectFrom('transfer_files').selectAll().where('id', '=', fileId).where('transfer_id', '=', t.id).executeTakeFirst();
      if (!f) throw new NotFoundError('file');
      const path = blobPath(x.tenantId, t.id, f.id);
      const { onDisk, received } = await arrivedOf(path, Number(f.received));
      if (offset !== received) throw new ConflictError(`the upload continues at byte ${received}, not ${offset}`, { client: { received } });
      const limit = Number(f.cipher_size);
      if (declaredLength !== undefined && received + declaredLength > limit) {
        throw new ValidationError(`file ${f.id} is ${limit} bytes encrypted; ${declaredLength} more bytes at ${received} would go beyond that`, { client: { received } });
      }
      await mkdir(blobDir(x.tenantId, t.id), { recursive: true, mode: 0o700 });
      if (onDisk > received) await truncate(path, received); // a torn tail of an interrupted write goes
      // A write stream with a large buffer batches what arrives (writev) instead of one write per TLS
      // record; with the default 16 KiB the socket waits for every small write (a fifth of the speed). Not
      // larger: what waits here must die young (src/shared/streamed.ts).
      const out = createWriteStream(path, { flags: received === 0 ? 'w' : 'r+', start: received, mode: 0o600, highWaterMark: UPLOAD_QUEUE });
      // The disk writes back while the body still arrives: every 64 MiB a data sync starts in the background
      // (one at a time, through a second descriptor: a sync writes back the file's pages whichever descriptor
      // wrote them), so the sync at the end finds little left to do instead of the whole file.
      let syncer: FileHandle | undefined;
      let syncing: Promise<void> | undefined;
      let syncFailed: unknown;
      let position = received;
      let syncStartedAt = received;
      const syncInBackground = () => {
        syncStartedAt = position;
        syncing = (async () => {
          syncer ??= await open(path, 'r');
          await syncer.datasync();
        })().then(
          () => { syncing = undefined; },
          (error: unknown) => { syncing = undefined; syncFailed ??= error; },
        );
      };
      // On an error the pipeline settles at once, while a write may still be under way: what is on disk is
      // known only once the file is closed and the last sync is done.
      const settled = async () => {
        if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
        await syncing;
      };
      let tooLong = false;
      // A client that breaks off ends the body early instead of failing the pipeline: a failed pipeline
      // destroys the write stream and drops what it still buffers (up to 8 MiB here), while an ended one
      // writes all of it, so everything that arrived counts when the upload resumes (a resume checks it
      // against its digests; it is synced when the file is complete).
      async function* untilBrokenOff() {
        try {
          for await (const chunk of body) yield chunk as Buffer;
        } catch {
          // broke off: the body ends here
        }
      }
      try {
        await pipeline(
          untilBrokenOff(),
          new Transform({
            highWaterMark: UPLOAD_QUEUE,
            transform(chunk: Buffer, _encoding, done) {
              streamed(chunk.length);
              // Beyond the file (a body without a declared length): nothing more is written; the rest is
              // drained, so that every stream ends the ordinary way, and refused afterwards.
              if (tooLong || position + chunk.length > limit) {
                tooLong = true;
                return done();
              }
              position += chunk.length;
              if (position - syncStartedAt >= SYNC_EVERY && !syncing && syncFailed === undefined) syncInBackground();
              done(null, chunk);
            },
          }),
          out,
        ).finally(settled);
        if (syncFailed !== undefined) throw syncFailed;
        if (tooLong) {
          await db.updateTable('transfer_files').set({ received: position }).where('id', '=', f.id).execute();
          throw new ValidationError(`file ${f.id} is ${limit} bytes encrypted; the upload went beyond that (kept: ${position})`, { client: { received: position } });
        }
        if (position === limit) {
          // Complete: durable before the transfer can be sent.
          syncer ??= await open(path, 'r');
          await syncer.sync();
        }
      } catch (error) {
        if (error instanceof ValidationError) throw error;
        if (syncFailed !== undefined) {
          // A failed sync may have lost written pages (and a later fsync need not say so again): nothing of
          // this request counts, and the sender sends it again.
          position = received;
          await truncate(path, received).catch(() => undefined);
          throw syncFailed;
        }
        // The write failed: what reached the disk (up to the limit) counts, so the upload resumes there.
        const written = await stat(path).then((st) => st.size, () => received);
        position = Math.min(written, position, limit);
        if (written > position) await truncate(path, position);
      } finally {
        await syncer?.close().catch(() => undefined);
        await db.updateTable('transfer_files').set({ received: position }).where('id', '=', f.id).execute();
        deps.billing?.count(x.tenantId, { bytesTransferred: Math.max(0, position - received) });
      }
      // Withdrawn (or expired and deleted) while this request wrote: the deletion removed the folder before
      // these bytes arrived and made it again through them; they go too.
      const now = await db.selectFrom('transfers').select('deleted_at').where('id', '=', t.id).executeTakeFirst();
      if (!now || now.deleted_at !== null) {
        await rm(blobDir(x.tenantId, t.id), { recursive: true, force: true });
        throw new NotFoundError('transfer');
      }
      return { received: position, cipherSize: limit };
    },

    async upload(s: SenderSession, transferId: string, fileId: string, offset: number, body: AsyncIterable<Uint8Array>, declaredLength?: number) {
      return this.uploadVia(await sessionAccess(s, transferId), fileId, offset, body, declaredLength);
    },

    async uploadStatus(s: SenderSession, transferId: string, fileId: string) {
      const { db, t } = await ownTransfer(s, transferId);
      const f = await db.selectFrom('transfer_files').select(['received', 'cipher_size']).where('id', '=', fileId).where('transfer_id', '=', t.id).executeTakeFirst();
      if (!f) throw new NotFoundError('file');
      return { received: Number(f.received), cipherSize: Number(f.cipher_size) };
    },

    /**
     * What the sender needs to go on with an unsent transfer from a fresh start (another page load, another
     * browser or the CLI): per file what `filesToResume` gives with names and, at levels 1/2, the file key
     * (the server keeps it anyway); at levels 3/4 the recipients' keys on record.
     */
    async resumeState(s: SenderSession, transferId: string, pieceSize: number) {
      const { db, t } = await ownDraft(s, transferId);
      const key = await transferKeyOf(s, t);
      const files = await filesToResume({ tenantId: s.tenantId, db, t, actor: ledgerActor(s.actor) }, key, pieceSize, true);
      const recipients = [];
      for (const r of await db.selectFrom('transfer_recipients').selectAll().where('transfer_id', '=', t.id).orderBy('idx').execute()) {
        const email = unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`);
        // The key the transfer was created for, if it is still the recipient's (a reset since then: the
        // recipient gets it through the approval, as after sending).
        let publicKey: string | undefined;
        if (t.level >= 3 && r.key_fingerprint) {
          const k = await currentKeyOf(email);
          if (k && k.fingerprint === r.key_fingerprint) publicKey = k.public_key;
        }
        recipients.push({ id: r.id, email, ...(r.key_fingerprint ? { fingerprint: r.key_fingerprint } : {}), ...(publicKey ? { publicKey } : {}) });
      }
      return { id: t.id, level: t.level as Level, files, recipients };
    },

    /**
     * The same for an outsider going on with an upload through a request link (after a page reload): only
     * what the server holds of the files — no names, no file keys, no recipients; the uploader's browser
     * kept those (and the link's secret and the draft's id) for its tab.
     */
    async resumeStateVia(x: Access, pieceSize: number) {
      stillDraft(x.t);
      return { id: x.t.id, level: x.t.level as Level, files: await filesToResume(x, await x.key(), pieceSize, false) };
    },

    /**
     * The sender's encrypted digest list of a file's plaintext (opaque here), stored before the file's first
     * byte: once bytes arrived it is fixed, so that it always describes the file those bytes came from.
     */
    async setManifest(s: SenderSession, transferId: string, fileId: string, manifest: string) {
      const { db, t } = await ownDraft(s, transferId);
      return this.setManifestVia({ db, t }, fileId, manifest);
    },

    async setManifestVia(x: Pick<Access, 'db' | 't'>, fileId: string, manifest: string) {
      const { db, t } = x;
      stillDraft(t);
      const f = await db.selectFrom('transfer_files').select(['id', 'kind']).where('id', '=', fileId).where('transfer_id', '=', t.id).executeTakeFirst();
      if (!f || f.kind !== 'file') throw new NotFoundError('file');
      // One statement: no upload can start between the check and the change (bytes on disk beyond a recorded
      // 0 are a torn write, cut off by the next upload).
      const set = await db.updateTable('transfer_files').set({ manifest }).where('id', '=', f.id).where('received', '=', 0).executeTakeFirst();
      if (Number(set.numUpdatedRows) !== 1) throw new ConflictError('bytes of this file arrived already; its digest list is fixed');
    },

    /** Levels 3/4: file keys wrapped in the sender's browser or CLI, to recipients' keys and the sender's own. */
    async addWrapsVia(x: Access, wraps: { fileId: string; holder: string; fingerprint: string; wrapped: string }[]) {
      const { db, t } = x;
      if (t.level < 3) throw new ConflictError('wraps are for levels 3 and 4; at levels 1 and 2 the server holds the file keys');
      stillDraft(t, 'this transfer was sent already; a new key of a recipient is approved instead');
      const files = new Set((await db.selectFrom('transfer_files').select('id').where('transfer_id', '=', t.id).execute()).map((f) => f.id));
      const recipients = new Map((await db.selectFrom('transfer_recipients').select(['id', 'key_fingerprint']).where('transfer_id', '=', t.id).execute()).map((r) => [r.id, r.key_fingerprint]));
      const ownFingerprint = await x.ownFingerprint();
      for (const w of wraps) {
        if (!files.has(w.fileId)) throw new ValidationError(`file ${w.fileId} is not part of this transfer`);
        const expected = w.holder === 'sender' ? (x.viaRequest ? undefined : ownFingerprint) : recipients.get(w.holder);
        if (expected === undefined) throw new ValidationError(`holder ${w.holder} is not the sender or a recipient of this transfer`);
        if (expected === null || expected !== w.fingerprint) throw new ConflictError(`the wrap for ${w.holder} is for key ${w.fingerprint}, but the key on record is ${expected ?? 'none'}`);
        if (fromBase64Url(w.wrapped).length !== WRAPPED_KEY_SIZE) throw new ValidationError(`a wrapped key is ${WRAPPED_KEY_SIZE} bytes`);
      }
      await db.transaction().execute(async (trx) => {
        for (const w of wraps) {
          await trx.deleteFrom('transfer_wraps').where('transfer_id', '=', t.id).where('file_id', '=', w.fileId).where('holder', '=', w.holder).execute();
          await trx.insertInto('transfer_wraps').values({ id: newId(), transfer_id: t.id, file_id: w.fileId, holder: w.holder, fingerprint: w.fingerprint, wrapped: w.wrapped }).execute();
        }
      });
      return { stored: wraps.length };
    },

    async addWraps(s: SenderSession, transferId: string, wraps: { fileId: string; holder: string; fingerprint: string; wrapped: string }[]) {
      return this.addWrapsVia(await sessionAccess(s, transferId), wraps);
    },

    /** Sends: every blob complete (and wrapped, at levels 3/4); a link with a fresh secret per recipient. */
    async sendVia(x: Access): Promise<TransferView> {
      const { db, t } = x;
      stillDraft(t, 'this transfer was sent already');
      const files = await db.selectFrom('transfer_files').selectAll().where('transfer_id', '=', t.id).execute();
      const incomplete = files.filter((f) => Number(f.received) !== Number(f.cipher_size));
      if (incomplete.length > 0) throw new ConflictError(`${incomplete.length} file(s) are not completely uploaded yet`);
      const recipients = await db.selectFrom('transfer_recipients').selectAll().where('transfer_id', '=', t.id).orderBy('idx').execute();
      if (t.level >= 3) {
        const wraps = await db.selectFrom('transfer_wraps').select(['file_id', 'holder']).where('transfer_id', '=', t.id).execute();
        const has = (holder: string) => files.every((f) => wraps.some((w) => w.file_id === f.id && w.holder === holder));
        if (!x.viaRequest && !has('sender')) throw new ConflictError('wrap every file key for your own key too (so that you can approve a recipient\'s new key later)');
        const missing = recipients.filter((r) => r.key_state === 'ok' && !has(r.id));
        if (missing.length > 0) throw new ConflictError(`${missing.length} recipient(s) with a key have no wrapped file keys yet`);
      }
      const key = await x.key();
      const senderLabel = await x.senderLabel();
      const organisation = await deps.tenantName(x.tenantId);
      const subject = unseal(key, t.subject_ct, `transfer|${t.id}|subject`);
      const fileCount = files.filter((f) => f.kind === 'file').length;
      // Sending and every recipient's link are one transaction, decided by a conditional update: a second send
      // of the draft at the same moment (two tabs of one sender) or a withdrawal through the request link is
      // refused (409) before anything is mailed, and a failure on the way leaves a draft with no link key.
      // Only then the mails go out, each with a link that opens at once.
      const links = recipients.map((r) => ({ r, email: unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`), secret: randomBytes(32) }));
      const sentAt = nowIso();
      const claimed = await db.transaction().execute(async (trx) => {
        const marked = await trx.updateTable('transfers').set({ sent_at: sentAt }).where('id', '=', t.id).where('sent_at', 'is', null).where('withdrawn_at', 'is', null).where('deleted_at', 'is', null).where('expires_at', '>', sentAt).executeTakeFirst();
        if (Number(marked.numUpdatedRows) !== 1) return false;
        for (const { r, email, secret } of links) {
          await trx
            .updateTable('transfer_recipients')
            .set({ secret_hash: sha256Hex(b64(secret)), key_wrap: wrapWithKey(key, secret, linkContext(t.id, r.id)), email_check: emailCheck(secret, email), state: 'notified' })
            .where('id', '=', r.id)
            .execute();
        }
        return true;
      });
      if (!claimed) {
        // Why not, as every other change of a draft says it (sent, or withdrawn/expired).
        const now = await db.selectFrom('transfers').selectAll().where('id', '=', t.id).executeTakeFirst();
        stillDraft(now && now.deleted_at === null ? now : { ...t, withdrawn_at: nowIso() }, 'this transfer was sent already');
        throw new ConflictError('this transfer changed while it was being sent; try again');
      }
      const counts: MailCounts = {};
      const letter = { senderLabel, organisation, subject, files: fileCount };
      for (const { r, email, secret } of links) countMail(counts, await notify(x, r, email, secret, letter));
      // The sender may withdraw even a sent transfer, also while its mails go out: the withdrawal deleted the
      // link keys written above (they were committed before), and this send says so.
      const now = await db.selectFrom('transfers').select(['withdrawn_at', 'deleted_at']).where('id', '=', t.id).executeTakeFirst();
      if (!now || now.withdrawn_at !== null || now.deleted_at !== null) throw new ConflictError('this transfer was withdrawn while it was being sent', { client: { state: 'expired' } });
      if (t.request_id) await db.updateTable('file_requests').set({ uploads: sql<number>`uploads + 1` }).where('id', '=', t.request_id).execute();
      await record(x.tenantId, { actor: x.actor, action: 'transfer.send', resource: { type: 'transfer', id: t.id }, outcome: 'success', details: { recipients: recipients.length } });
      return { ...(await viewOf(db, key, { ...t, sent_at: sentAt })), ...counts };
    },

    async send(s: SenderSession, transferId: string): Promise<TransferView> {
      return this.sendVia(await sessionAccess(s, transferId));
    },

    async list(s: SenderSession): Promise<TransferView[]> {
      const a = sender(s);
      const db = await deps.tenantDb(s.tenantId);
      let q = db.selectFrom('transfers').selectAll().where('deleted_at', 'is', null).orderBy('created_at', 'desc').limit(200);
      if (!isAllowed(a, 'transfer.manage-any', { type: 'data', tenantId: s.tenantId })) q = q.where('sender_id', '=', a.accountId);
      const out: TransferView[] = [];
      for (const t of await q.execute()) out.push({ ...(await viewOf(db, await transferKeyOf(s, t), t)), mine: t.sender_id === a.accountId });
      return out;
    },

    async withdraw(s: SenderSession, transferId: string) {
      const { t } = await ownTransfer(s, transferId);
      await purge(s.tenantId, t, 'withdrawn', ledgerActor(s.actor));
    },

    /** An outsider gives up an unsent upload through a request link: its bytes and keys go at once. Once sent, it is the requester's. */
    async withdrawVia(x: Access) {
      // One statement decides between a send and this withdrawal running at the same time.
      const claimed = await x.db.updateTable('transfers').set({ withdrawn_at: nowIso() }).where('id', '=', x.t.id).where('sent_at', 'is', null).where('deleted_at', 'is', null).executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) throw new ConflictError('this upload was sent already; only the requester can withdraw it now', { client: { state: 'sent' } });
      await purge(x.tenantId, { ...x.t, withdrawn_at: nowIso() }, 'withdrawn', x.actor);
    },

    async senderWraps(s: SenderSession, transferId: string) {
      const { db, t } = await ownTransfer(s, transferId);
      return db.selectFrom('transfer_wraps').select(['file_id as fileId', 'wrapped', 'fingerprint']).where('transfer_id', '=', t.id).where('holder', '=', 'sender').execute();
    },

    /** The sender approves a recipient's new key, with the file keys re-wrapped for it in the sender's browser. */
    async approve(s: SenderSession, transferId: string, recipientId: string, input: { fingerprint: string; wraps: { fileId: string; wrapped: string }[] }) {
      const { db, t, a } = await ownTransfer(s, transferId);
      if (t.level < 3) throw new ConflictError('only levels 3 and 4 have keys to approve');
      const r = await db.selectFrom('transfer_recipients').selectAll().where('id', '=', recipientId).where('transfer_id', '=', t.id).executeTakeFirst();
      if (!r) throw new NotFoundError('recipient');
      if (r.key_state !== 'approval-needed' || r.pending_fingerprint !== input.fingerprint) throw new ConflictError('there is no new key with this fingerprint waiting for approval for this recipient');
      const key = await transferKeyOf(s, t);
      const email = unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`);
      const account = await deps.identity.accountByLogin(email);
      const current = account ? await currentKey(account.id) : undefined;
      if (!current || current.fingerprint !== input.fingerprint) throw new ConflictError("the recipient's current key is not the one with this fingerprint (it may have been reset again)");
      const files = await db.selectFrom('transfer_files').select('id').where('transfer_id', '=', t.id).execute();
      const byFile = new Map(input.wraps.map((w) => [w.fileId, w.wrapped]));
      if (files.some((f) => !byFile.has(f.id)) || byFile.size !== files.length) throw new ValidationError('send one wrapped key for every file of the transfer');
      for (const w of byFile.values()) if (fromBase64Url(w).length !== WRAPPED_KEY_SIZE) throw new ValidationError(`a wrapped key is ${WRAPPED_KEY_SIZE} bytes`);
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('transfer_wraps').where('transfer_id', '=', t.id).where('holder', '=', r.id).execute();
        for (const [fileId, wrapped] of byFile) await trx.insertInto('transfer_wraps').values({ id: newId(), transfer_id: t.id, file_id: fileId, holder: r.id, fingerprint: input.fingerprint, wrapped }).execute();
        await trx.updateTable('transfer_recipients').set({ key_state: 'ok', key_fingerprint: input.fingerprint, pending_fingerprint: null }).where('id', '=', r.id).execute();
      });
      const me = await deps.identity.accountInfo(a.accountId);
      await mailTo({ login: email, language: account!.language }, { kind: 'transfer-key-approved', subject: unseal(key, t.subject_ct, `transfer|${t.id}|subject`), sender: me?.login ?? 'Tresor' });
      await record(s.tenantId, { actor: ledgerActor(s.actor), action: 'transfer.approve', resource: { type: 'transfer', id: t.id }, outcome: 'success', details: { recipient: r.id } });
    },

    /**
     * A new link for one recipient of a sent transfer, mailed at once: for a notification that never arrived
     * (refused by the relay, not handed over) or a lost mail. The recipient's link secret exists nowhere but in
     * the mail, so a fresh one replaces it and the earlier link stops opening. Refused once the transfer is
     * withdrawn or expired, and for a recipient who has used up the download limit on every file.
     */
    async notifyAgain(s: SenderSession, transferId: string, recipientId: string): Promise<MailCounts> {
      const { db, t, a } = await ownTransfer(s, transferId);
      if (t.sent_at === null) throw new ConflictError('this transfer has not been sent yet; send it first');
      if (t.withdrawn_at !== null || t.expires_at <= nowIso()) throw goneError();
      const r = await db.selectFrom('transfer_recipients').selectAll().where('id', '=', recipientId).where('transfer_id', '=', t.id).executeTakeFirst();
      if (!r) throw new NotFoundError('recipient');
      const files = await db.selectFrom('transfer_files').select('id').where('transfer_id', '=', t.id).where('kind', '=', 'file').execute();
      if (t.download_limit !== null) {
        const downloads = JSON.parse(r.downloads) as Record<string, number>;
        if (files.every((f) => (downloads[f.id] ?? 0) >= t.download_limit!)) throw new ConflictError(`this recipient has downloaded every file ${t.download_limit} time(s), the transfer's limit; a new link would not open them`);
      }
      const key = await transferKeyOf(s, t);
      const email = unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`);
      const secret = randomBytes(32);
      // Only while the link stands: a withdrawal or expiry deletes the link key (secret_hash), and a new one
      // must not be written back after it.
      const replaced = await db
        .updateTable('transfer_recipients')
        .set({ secret_hash: sha256Hex(b64(secret)), key_wrap: wrapWithKey(key, secret, linkContext(t.id, r.id)), email_check: emailCheck(secret, email) })
        .where('id', '=', r.id)
        .where('secret_hash', 'is not', null)
        .executeTakeFirst();
      if (Number(replaced.numUpdatedRows) !== 1) throw goneError();
      const actor = ledgerActor(s.actor);
      const letter = {
        // An upload through a "request files" link is mailed as from its uploader, as when it was sent.
        senderLabel: t.from_ct ? unseal(key, t.from_ct, `transfer|${t.id}|from`) : ((await deps.identity.accountInfo(a.accountId))?.login ?? 'Tresor'),
        organisation: await deps.tenantName(s.tenantId),
        subject: unseal(key, t.subject_ct, `transfer|${t.id}|subject`),
        files: files.length,
      };
      const counts: MailCounts = {};
      const outcome = await notify({ tenantId: s.tenantId, t, actor }, r, email, secret, letter);
      countMail(counts, outcome);
      if (outcome !== 'failed') await record(s.tenantId, { actor, action: 'transfer.notify', resource: { type: 'transfer', id: t.id }, outcome: 'success', details: { recipient: r.id } });
      return counts;
    },

    // ---- receiving ------------------------------------------------------------------------------------
    async open(recipientId: string, secret: string, opts: { email?: string | undefined; actor?: Actor | undefined; source: string }): Promise<OpenedTransfer> {
      let link: Awaited<ReturnType<typeof resolveLink>>;
      try {
        link = await resolveLink(recipientId, secret);
      } catch (error) {
        await deps.control.selectFrom('transfer_index').select('tenant_id').where('recipient_id', '=', /^[0-9a-f-]{36}$/.test(recipientId) ? recipientId : '').executeTakeFirst().then(async (ix) => {
          if (ix) await record(ix.tenant_id, { actor: { tier: 'anonymous', role: 'link-holder', id: 'unknown' }, action: 'transfer.open', resource: { type: 'transfer-recipient', id: recipientId }, outcome: 'denied', source: opts.source });
        });
        throw error;
      }
      const { tenantId, db, t, r, key, email, secretBytes } = link;
      const actorId = opts.actor && 'accountId' in opts.actor ? opts.actor.accountId : undefined;
      const who: LedgerEvent['actor'] = opts.actor ? ledgerActor(opts.actor) : { tier: 'anonymous', role: 'link-holder', id: r.id };
      if (t.level === 1) {
        // Without an address the page learns only that one is needed (no attempt, nothing recorded).
        if (!opts.email) throw new DomainError('FORBIDDEN', 'enter the e-mail address this transfer was sent to', { client: { email: true } });
        if (!constantTimeEqual(emailCheck(secretBytes, opts.email), r.email_check ?? '')) {
          await record(tenantId, { actor: who, action: 'transfer.open', resource: { type: 'transfer', id: t.id }, outcome: 'denied', source: opts.source, details: { recipient: r.id, reason: 'address' } });
          throw new ForbiddenError('enter the e-mail address this transfer was sent to');
        }
      } else {
        const account = actorId ? await deps.identity.accountInfo(actorId) : undefined;
        if (!account || account.login !== normaliseEmail(email)) {
          await record(tenantId, { actor: who, action: 'transfer.open', resource: { type: 'transfer', id: t.id }, outcome: 'denied', source: opts.source, details: { recipient: r.id, reason: account ? 'account' : 'login' } });
          throw new DomainError('UNAUTHENTICATED', 'log in with the e-mail address this transfer was sent to (or register a free guest account from this link)', { client: { login: true } });
        }
      }
      let keyState = r.key_state as KeyState;
      if (t.level >= 3 && actorId) {
        const mine = await currentKey(actorId);
        if (!mine) keyState = 'none';
        else if (!(r.key_state === 'ok' && r.key_fingerprint === mine.fingerprint) && r.pending_fingerprint !== mine.fingerprint) {
          // A key the sender has not seen yet (the first one, or a reset): the sender approves it.
          keyState = 'approval-needed';
          await db.updateTable('transfer_recipients').set({ key_state: 'approval-needed', pending_fingerprint: mine.fingerprint }).where('id', '=', r.id).execute();
          const senderAccount = await deps.identity.accountInfo(t.sender_id);
          if (senderAccount) await mailTo(senderAccount, { kind: 'transfer-key-pending', subject: unseal(key, t.subject_ct, `transfer|${t.id}|subject`), recipient: email, fingerprint: mine.fingerprint });
        } else if (r.pending_fingerprint === mine.fingerprint) keyState = 'approval-needed';
      }
      if (r.state === 'notified') await db.updateTable('transfer_recipients').set({ state: 'opened', opened_at: nowIso() }).where('id', '=', r.id).execute();
      const token = randomBytes(32);
      await db.insertInto('transfer_downloads').values({ token_hash: sha256Hex(b64(token)), recipient_id: r.id, transfer_id: t.id, account_id: t.level >= 2 ? (actorId ?? null) : null, key_wrap: wrapWithKey(key, token, `transfer-download|${r.id}`), expires_at: new Date(clock.now().getTime() + DOWNLOAD_TOKEN_MS).toISOString() }).execute();
      const files = await db.selectFrom('transfer_files').selectAll().where('transfer_id', '=', t.id).orderBy('idx').execute();
      const wraps = t.level >= 3 && keyState === 'ok' ? await db.selectFrom('transfer_wraps').selectAll().where('transfer_id', '=', t.id).where('holder', '=', r.id).execute() : [];
      const wrapOf = (fileId: string) => {
        const w = wraps.find((x) => x.file_id === fileId);
        return w ? { wrapped: w.wrapped, fingerprint: w.fingerprint } : {};
      };
      const senderAccount = await deps.identity.accountInfo(t.sender_id);
      const downloads = JSON.parse(r.downloads) as Record<string, number>;
      const bundle = files.find((f) => f.kind === 'bundle');
      await record(tenantId, { actor: who, action: 'transfer.open', resource: { type: 'transfer', id: t.id }, outcome: 'success', source: opts.source, details: { recipient: r.id } });
      return {
        transferId: t.id,
        level: t.level as Level,
        subject: unseal(key, t.subject_ct, `transfer|${t.id}|subject`),
        message: t.message_ct ? unseal(key, t.message_ct, `transfer|${t.id}|message`) : null,
        sender: senderAccount?.login ?? 'Tresor',
        expiresAt: t.expires_at,
        downloadsLeft: t.download_limit === null ? null : Math.max(0, t.download_limit - Math.max(0, ...Object.values(downloads))),
        files: files
          .filter((f) => f.kind === 'file')
          .map((f) => ({ id: f.id, name: f.name_ct === null ? null : unseal(key, f.name_ct, `transfer|${t.id}|file-name|${f.id}`), size: Number(f.size), cipherSize: Number(f.cipher_size), ...wrapOf(f.id) })),
        ...(bundle ? { bundle: { id: bundle.id, cipherSize: Number(bundle.cipher_size), ...wrapOf(bundle.id) } } : {}),
        keyState,
        downloadToken: b64(token),
      };
    },

    /** A guest account for the link's recipient (levels 2–4): the invitation mail verifies the address. */
    async register(recipientId: string, secret: string) {
      const { tenantId, t, email } = await resolveLink(recipientId, secret);
      if (t.level < 2) throw new ConflictError('level-1 transfers need no account');
      return deps.identity.registerGuest(email, tenantId, t.language as 'de' | 'en');
    },

    /**
     * A file for a download token: levels 1–2 decrypted on the fly (the file key under K_tr), levels 3–4
     * the ciphertext for the recipient's browser or CLI. Counts the download against the limit.
     */
    /**
     * A file for the recipient. Levels 3/4: the ciphertext. Levels 1/2: decrypted on the way out, or, with
     * `encrypted` (the web app's service worker and `tresor receive`), the ciphertext as stored together with
     * its file key, so the recipient decrypts and the server runs AES only once (for TLS) instead of twice.
     * Either way the same checks, the same count against the limit and the same ledger entry.
     */
    async download(recipientId: string, fileId: string, token: string, opts: { actor?: Actor | undefined; source: string; encrypted?: boolean | undefined }) {
      const { source } = opts;
      if (!TOKEN.test(token) || !/^[0-9a-f-]{36}$/.test(recipientId)) throw new TransferLinkError();
      const index = await control.selectFrom('transfer_index').selectAll().where('recipient_id', '=', recipientId).executeTakeFirst();
      if (!index) throw new TransferLinkError();
      const actorId = opts.actor && 'accountId' in opts.actor ? opts.actor.accountId : undefined;
      const who: LedgerEvent['actor'] = opts.actor ? ledgerActor(opts.actor) : { tier: 'anonymous', role: 'link-holder', id: recipientId };
      const refused = (resource: LedgerEvent['resource'], reason: string) =>
        record(index.tenant_id, { actor: who, action: 'transfer.download', resource, outcome: 'denied', source, details: { recipient: recipientId, file: fileId, reason } });
      const db = await deps.tenantDb(index.tenant_id);
      const grant = await db.selectFrom('transfer_downloads').selectAll().where('token_hash', '=', sha256Hex(token)).executeTakeFirst();
      if (!grant || grant.recipient_id !== recipientId || grant.expires_at <= nowIso()) {
        await refused(grant ? { type: 'transfer', id: grant.transfer_id } : { type: 'transfer-recipient', id: recipientId }, grant && grant.recipient_id === recipientId ? 'token-expired' : 'token');
        throw new TransferLinkError();
      }
      const t = await db.selectFrom('transfers').selectAll().where('id', '=', grant.transfer_id).executeTakeFirst();
      const r = await db.selectFrom('transfer_recipients').selectAll().where('id', '=', recipientId).executeTakeFirst();
      const f = await db.selectFrom('transfer_files').selectAll().where('id', '=', fileId).where('transfer_id', '=', grant.transfer_id).executeTakeFirst();
      if (!t || !r || !f || t.deleted_at !== null || t.withdrawn_at !== null || t.expires_at <= nowIso()) throw new TransferLinkError();
      // Levels 2–4: the token was issued to the account that opened the link and works only in its session
      // (a token copied out of a page, a log or a history is worthless without that login).
      if (t.level >= 2) {
        if (!actorId) {
          await refused({ type: 'transfer', id: t.id }, 'login');
          throw new DomainError('UNAUTHENTICATED', 'log in with the account this transfer was sent to, then open the link again to download', { client: { login: true } });
        }
        if (grant.account_id === null || grant.account_id !== actorId) {
          await refused({ type: 'transfer', id: t.id }, 'account');
          throw new ForbiddenError('this download belongs to another account: log in as the recipient of this transfer and open the link again');
        }
      }
      const key = unwrapWithKey(grant.key_wrap, Buffer.from(token, 'base64url'), `transfer-download|${r.id}`);
      const bundle = f.kind === 'bundle'; // the level-4 message: reading it is not downloading a file
      let first = false;
      // Counted with a compare-and-set on the counters as read: of parallel downloads only one can move
      // them from the same value, so together they can never pass the limit; the others read again.
      for (let current = r, tries = 0; !bundle; tries++) {
        const downloads = JSON.parse(current.downloads) as Record<string, number>;
        const before = downloads[f.id] ?? 0;
        if (t.download_limit !== null && before >= t.download_limit) {
          await record(index.tenant_id, { actor: who, action: 'transfer.download', resource: { type: 'transfer', id: t.id }, outcome: 'denied', source, details: { recipient: r.id, file: f.id, reason: 'limit' } });
          throw new ForbiddenError(`this file may be downloaded ${t.download_limit} time(s); the limit is reached`);
        }
        downloads[f.id] = before + 1;
        const counted = await db
          .updateTable('transfer_recipients')
          .set({ downloads: JSON.stringify(downloads), state: 'downloaded', downloaded_at: current.downloaded_at ?? nowIso() })
          .where('id', '=', r.id)
          .where('downloads', '=', current.downloads)
          .executeTakeFirst();
        if (Number(counted.numUpdatedRows) === 1) {
          first = current.state !== 'downloaded';
          break;
        }
        if (tries >= 50) throw new ConflictError('too many downloads of this file at the same moment; try again in a few seconds');
        current = (await db.selectFrom('transfer_recipients').selectAll().where('id', '=', r.id).executeTakeFirst()) ?? current;
      }
      // Who decrypts: the recipient (levels 3/4, and levels 1/2 fetched as stored) or the server on the way out.
      const decryptedBy = t.level >= 3 || f.file_key_ct === null || opts.encrypted ? 'recipient' : 'server';
      await record(index.tenant_id, { actor: who, action: bundle ? 'transfer.read-message' : 'transfer.download', resource: { type: 'transfer', id: t.id }, outcome: 'success', source, details: { recipient: r.id, file: f.id, decryptedBy } });
      if (first) {
        const senderAccount = await deps.identity.accountInfo(t.sender_id);
        const email = unseal(key, r.email_ct, `transfer|${t.id}|recipient|${r.id}`);
        if (senderAccount) await mailTo(senderAccount, { kind: 'transfer-downloaded', subject: unseal(key, t.subject_ct, `transfer|${t.id}|subject`), recipient: email, time: nowIso() });
      }
      const path = blobPath(index.tenant_id, t.id, f.id);
      const size = (await stat(path)).size;
      deps.billing?.count(index.tenant_id, { bytesTransferred: size });
      const name = f.kind === 'bundle' ? 'bundle.tresor' : f.name_ct === null ? `${f.id}.tresor` : unseal(key, f.name_ct, `transfer|${t.id}|file-name|${f.id}`);
      if (t.level >= 3 || f.file_key_ct === null) {
        return { stream: blobReader(path), name: f.kind === 'file' && t.level === 3 ? `${name}.tresor` : name, length: size, encrypted: true };
      }
      const fileKey = aeadOpen(key, Buffer.from(f.file_key_ct, 'base64url'), `transfer|${t.id}|file-key|${f.id}`);
      if (opts.encrypted) {
        const handedOut = fileKey.toString('base64url');
        fileKey.fill(0);
        return { stream: blobReader(path), name, length: size, encrypted: true, fileKey: handedOut, context: fileContext(t.id, f.id) };
      }
      // Decrypted on the way out with Node's crypto (one OpenSSL call per record); an altered blob ends
      // the response with an error instead of passing on unauthenticated bytes.
      const plain = pipelineStreams(createReadStream(path, { highWaterMark: DOWNLOAD_PIECE }), countStreamed(), decryptTransform(new Uint8Array(fileKey), fileContext(t.id, f.id)), (error) => {
        // A blob that fails authentication on the way out (altered or truncated at rest) is a failure to
        // record; a recipient who breaks off the download is not.
        if (error instanceof E2eError) {
          void record(index.tenant_id, { actor: who, action: 'transfer.download', resource: { type: 'transfer', id: t.id }, outcome: 'failure', source, details: { recipient: r.id, file: f.id, reason: 'decrypt', code: error.code } }).catch(() => undefined);
        }
      });
      fileKey.fill(0);
      return { stream: plain, name, length: Number(f.size), encrypted: false };
    },

    // ---- "request files": an outsider uploads to a data user ----------------------------------------
    /** A data user asks someone for files: a link (mailed when `email` is given) to upload at `level`. */
    async createRequest(s: SenderSession, input: { level: Level; expiresAt: string; message?: string | undefined; email?: string | undefined; language?: 'de' | 'en' | undefined }) {
      const a = sender(s);
      const expires = new Date(input.expiresAt);
      const now = clock.now();
      const problems: string[] = [];
      if (![1, 2, 3, 4].includes(input.level)) problems.push('level must be 1, 2, 3 or 4');
      if (!Number.isFinite(expires.getTime()) || expires <= now || expires.getTime() - now.getTime() > 90 * DAY_MS) problems.push('expiresAt must be in the future, at most 90 days ahead');
      if (input.email !== undefined && !EMAIL.test(normaliseEmail(input.email))) problems.push('email must be an e-mail address');
      if ((input.message ?? '').length > 5000) problems.push('message must be at most 5,000 characters');
      const own = input.level >= 3 ? await currentKey(a.accountId) : undefined;
      if (input.level >= 3 && !own) problems.push('levels 3 and 4 need your own SecuPass key first: the files are encrypted for it');
      if (problems.length > 0) throw new ValidationError(problems.join('; '), { problems });
      const id = newId();
      const requestKey = randomBytes(32);
      const secret = randomBytes(32);
      const db = await deps.tenantDb(s.tenantId);
      await db
        .insertInto('file_requests')
        .values({
          id,
          owner_id: a.accountId,
          level: input.level,
          message_ct: input.message ? seal(requestKey, input.message, `file-request|${id}|message`) : null,
          key_wrap: wrapWithKey(requestKey, tenantKek(s.dataKey), requestKeyContext(id, s.keyVersion)),
          key_version: s.keyVersion,
          link_wrap: wrapWithKey(requestKey, secret, requestLinkContext(id)),
          secret_hash: sha256Hex(b64(secret)),
          owner_fingerprint: own?.fingerprint ?? null,
          language: input.language ?? deps.defaultLanguage,
          expires_at: expires.toISOString(),
          created_at: now.toISOString(),
          closed_at: null,
          uploads: 0,
        })
        .execute();
      await control.insertInto('transfer_index').values({ recipient_id: id, tenant_id: s.tenantId }).execute();
      const link = `${deps.publicUrl}/app/upload/${id}#s=${b64(secret)}${own ? `&fp=${own.fingerprint}` : ''}`;
      if (input.email) {
        const me = await deps.identity.accountInfo(a.accountId);
        await mailTo({ login: normaliseEmail(input.email), language: input.language ?? null }, { kind: 'file-request', link, requester: me?.login ?? 'Tresor', organisation: await deps.tenantName(s.tenantId), level: input.level, expiresAt: expires.toISOString() });
      }
      await record(s.tenantId, { actor: ledgerActor(s.actor), action: 'transfer.request.create', resource: { type: 'file-request', id }, outcome: 'success', details: { level: input.level, mailed: input.email !== undefined } });
      return { id, link, expiresAt: expires.toISOString() };
    },

    async listRequests(s: SenderSession) {
      const a = sender(s);
      const db = await deps.tenantDb(s.tenantId);
      const rows = await db.selectFrom('file_requests').selectAll().where('owner_id', '=', a.accountId).orderBy('created_at', 'desc').limit(200).execute();
      const out = [];
      for (const r of rows) {
        const key = r.key_wrap ? unwrapWithKey(r.key_wrap, tenantKek(s.dataKey), requestKeyContext(r.id, r.key_version)) : undefined;
        out.push({ id: r.id, level: r.level, message: key && r.message_ct ? unseal(key, r.message_ct, `file-request|${r.id}|message`) : null, expiresAt: r.expires_at, createdAt: r.created_at, closedAt: r.closed_at, uploads: r.uploads });
      }
      return out;
    },

    async closeRequest(s: SenderSession, id: string) {
      const a = sender(s);
      const db = await deps.tenantDb(s.tenantId);
      const updated = await db.updateTable('file_requests').set({ closed_at: nowIso(), link_wrap: null, secret_hash: null }).where('id', '=', id).where('owner_id', '=', a.accountId).where('closed_at', 'is', null).executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) throw new NotFoundError('file request');
      await record(s.tenantId, { actor: ledgerActor(s.actor), action: 'transfer.request.close', resource: { type: 'file-request', id }, outcome: 'success' });
    },

    /** What the outsider's page shows: who asks, at which level, and (levels 3/4) the key to encrypt for. */
    async openRequest(id: string, secret: string) {
      const { fr, requestKey } = await resolveRequest(id, secret);
      const owner = await deps.identity.accountInfo(fr.owner_id);
      const key = fr.level >= 3 ? await currentKey(fr.owner_id) : undefined;
      return {
        level: fr.level as Level,
        message: fr.message_ct ? unseal(requestKey, fr.message_ct, `file-request|${fr.id}|message`) : null,
        requester: owner?.login ?? 'Tresor',
        expiresAt: fr.expires_at,
        ...(key ? { publicKey: key.public_key, fingerprint: key.fingerprint } : {}),
      };
    },

    /** The outsider's transfer: to the requester only, at the request's level; then upload, wraps and send as usual. */
    async createViaRequest(id: string, secret: string, input: { from: string; subject: string; message?: string | undefined; files: CreateTransferInput['files']; bundle?: { size: number } | undefined }) {
      const { tenantId, fr, requestKey } = await resolveRequest(id, secret);
      const from = normaliseEmail(input.from);
      if (!EMAIL.test(from)) throw new ValidationError('from must be your e-mail address', { problems: ['from must be your e-mail address'] });
      const owner = await deps.identity.accountInfo(fr.owner_id);
      if (!owner || owner.status !== 'active') throw new TransferLinkError();
      const created = await createTransfer(
        {
          tenantId,
          senderId: fr.owner_id,
          actor: { tier: 'anonymous', role: 'request-link-holder', id: fr.id },
          wrapKey: (tid, key) => ({ key_wrap: wrapWithKey(key, requestKey, requestTransferContext(tid)), key_version: 0 }),
          requestId: fr.id,
          from,
        },
        {
          subject: input.subject,
          level: fr.level as Level,
          expiresAt: new Date(Math.min(clock.now().getTime() + 30 * DAY_MS, new Date(fr.expires_at).getTime() + 30 * DAY_MS)).toISOString(),
          language: fr.language as 'de' | 'en',
          message: input.message,
          recipients: [owner.login],
          files: input.files,
          bundle: input.bundle,
        },
      );
      const { sender: _ownersKey, ...answer } = created;
      return answer;
    },

    async requestAccess(id: string, secret: string, transferId: string): Promise<Access> {
      const { tenantId, db, fr, requestKey } = await resolveRequest(id, secret);
      const t = await db.selectFrom('transfers').selectAll().where('id', '=', transferId).where('request_id', '=', fr.id).executeTakeFirst();
      if (!t || t.deleted_at !== null || t.key_wrap === null) throw new NotFoundError('transfer');
      return {
        tenantId,
        db,
        t,
        key: async () => unwrapWithKey(t.key_wrap!, requestKey, requestTransferContext(t.id)),
        actor: { tier: 'anonymous', role: 'request-link-holder', id: fr.id },
        senderLabel: async () => (t.from_ct ? unseal(unwrapWithKey(t.key_wrap!, requestKey, requestTransferContext(t.id)), t.from_ct, `transfer|${t.id}|from`) : 'Tresor'),
        ownFingerprint: async () => undefined,
        viaRequest: true,
      };
    },

    /**
     * Deletes expired (and withdrawn, not yet purged) transfers of every tenant; the scheduler calls it.
     * A tenant that fails (its database unreachable, say) does not keep the others' transfers alive: it is
     * reported to `onTenantError` and the next one goes on; without `onTenantError` the first error is thrown
     * once every tenant was tried.
     */
    async expire(tenantIds: string[], onTenantError?: (tenantId: string, error: unknown) => void) {
      let purged = 0;
      let firstError: { error: unknown } | undefined;
      for (const tenantId of tenantIds) {
        try {
          purged += await expireTenant(tenantId);
        } catch (error) {
          if (onTenantError) onTenantError(tenantId, error);
          else firstError ??= { error };
        }
      }
      if (firstError) throw firstError.error;
      return purged;
    },

    /** Re-wraps every transfer key under the new tenant data key (rotation, handover). */
    async rekey(tenantId: string, from: { dataKey: Buffer; version: number }, to: { dataKey: Buffer; version: number }, progress: (done: number) => void) {
      const db = await deps.tenantDb(tenantId);
      const rows = await db.selectFrom('transfers').select(['id', 'key_wrap', 'key_version']).where('key_version', '=', from.version).where('key_wrap', 'is not', null).execute();
      let done = 0;
      const requests = await db.selectFrom('file_requests').select(['id', 'key_wrap']).where('key_version', '=', from.version).where('key_wrap', 'is not', null).execute();
      for (const r of requests) {
        const key = unwrapWithKey(r.key_wrap!, tenantKek(from.dataKey), requestKeyContext(r.id, from.version));
        await db.updateTable('file_requests').set({ key_wrap: wrapWithKey(key, tenantKek(to.dataKey), requestKeyContext(r.id, to.version)), key_version: to.version }).where('id', '=', r.id).where('key_version', '=', from.version).execute();
        progress(++done);
      }
      for (const t of rows) {
        const key = unwrapWithKey(t.key_wrap!, tenantKek(from.dataKey), transferKeyContext(t.id, from.version));
        await db.updateTable('transfers').set({ key_wrap: wrapWithKey(key, tenantKek(to.dataKey), transferKeyContext(t.id, to.version)), key_version: to.version }).where('id', '=', t.id).where('key_version', '=', from.version).execute();
        progress(++done);
      }
      return done;
    },
  };
}

export type TransferService = ReturnType<typeof createTransferService>;

import { Alerts } from './ui.js';
import { notifiedNotice, sentNotice, type SendAnswer } from './send-notice.js';
import { FileRequestsPanel } from './file-requests.js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Me } from './api.js';
import { formatTime, type Language, type TextKey } from './i18n.js';
import { Fingerprint, SecretField, SecuPassSetup } from './secupass.js';
import {
  type CreatedTransfer,
  fileContext,
  formatSize,
  type Level,
  messageOf,
  HeldBytesDifferError,
  openOwnKey,
  ownKey,
  type OwnKey,
  type ResumeState,
  cannotGoOn,
  firstChanged,
  matchChosen,
  uploadRest,
  type SentRecipient,
  type SentTransfer,
  newUploadHeader,
  UPLOAD_CHUNK,
  uploadStream,
} from './transfer-lib.js';
import {
  type CheckedKey,
  checkOfferedKeys,
  ciphertextSize,
  decodePublicKey,
  encryptBytes,
  decodeBundle,
  decryptBytes,
  encodeBundle,
  encryptStreamWithHeader,
  fingerprint,
  fingerprintMatches,
  fromBase64Url,
  type OfferedKey,
  randomFileKey,
  recipientKeys,
  toBase64Url,
  unwrapFileKey,
  wrapFileKey,
} from '../../src/shared-e2e/index.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
type PageComponent = (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element;

const LEVELS: Level[] = [1, 2, 3, 4];
/** Wraps per request (each about 1.6 KB of JSON). */
const WRAP_BATCH = 100;

/** A local date (yyyy-mm-dd) some days from now. */
const inDays = (days: number) => {
  const d = new Date(Date.now() + days * 86_400_000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
};

interface Progress {
  name: string;
  sent: number;
  total: number;
}

/**
 * The keys to encrypt for, each checked before a byte is uploaded (checkOfferedKeys: a public key the
 * server hands over must have the fingerprint the server names for it, recomputed here); undefined when
 * one does not.
 */
async function checkedHolders(offered: OfferedKey[]): Promise<CheckedKey[] | undefined> {
  const checked = await checkOfferedKeys(offered);
  return 'keys' in checked ? checked.keys : undefined;
}

/** Wraps every file key for every holder and stores the wraps (levels 3/4). */
async function storeWraps(transferId: string, secrets: { fileId: string; key: Uint8Array }[], holders: CheckedKey[]): Promise<void> {
  const wraps: { fileId: string; recipientId: string; fingerprint: string; wrapped: string }[] = [];
  for (const holder of holders) {
    for (const s of secrets) {
      wraps.push({ fileId: s.fileId, recipientId: holder.holder, fingerprint: holder.fingerprint, wrapped: toBase64Url(await wrapFileKey(s.key, holder.publicKey, fileContext(transferId, s.fileId))) });
    }
  }
  for (let i = 0; i < wraps.length; i += WRAP_BATCH) await api('POST', `/api/v1/transfers/${transferId}/wraps`, { wraps: wraps.slice(i, i + WRAP_BATCH) });
}

function ProgressList(props: { id: string; label: string; items: Progress[]; language: Language; t: T }) {
  const { t, language } = props;
  return (
    <ul class="plain progress-list" aria-label={props.label}>
      {props.items.map((p, i) => (
        <li key={i}>
          <label for={`${props.id}-${i}`}>{p.name}</label> <progress id={`${props.id}-${i}`} max={p.total} value={p.sent} />{' '}
          <span>{t('transfers.uploaded', { sent: formatSize(p.sent, language), total: formatSize(p.total, language) })}</span>
        </li>
      ))}
    </ul>
  );
}

const streamOf = (bytes: Uint8Array) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });

/**
 * /app/transfers (S4.1–S4.8): data users send files at one of four security levels, each file encrypted
 * in this browser before upload; the sent list shows every recipient's state, withdraws a transfer and
 * approves a recipient's new key (the file keys are re-wrapped here, with the sender's own key).
 */
export function TransfersPage(props: { t: T; me: Me; language: Language; Page: PageComponent }) {
  const { t, language, Page } = props;
  const [dataAccess, setDataAccess] = useState<boolean>();
  const [transfers, setTransfers] = useState<SentTransfer[]>();
  const [key, setKey] = useState<OwnKey | null>();
  const [draft, setDraft] = useState({ recipients: '', subject: '', message: '', level: 2 as Level, expires: inDays(7), limit: '' });
  const [files, setFiles] = useState<File[]>([]);
  const [progress, setProgress] = useState<Progress[]>();
  const [phase, setPhase] = useState<string>();
  const [notice, setNotice] = useState<string>();
  const [error, setError] = useState<string>();
  const [approving, setApproving] = useState<{ transferId: string; recipientId: string }>();
  const [secupass, setSecupass] = useState('');
  const [resuming, setResuming] = useState<string>();
  const [resumeFiles, setResumeFiles] = useState<File[]>([]);
  const [resumeProgress, setResumeProgress] = useState<Progress[]>();
  const fileInput = useRef<HTMLInputElement>(null);

  const load = async () => {
    try {
      const status = await api<{ dataAccess: boolean }>('GET', '/api/v1/keys/status');
      setDataAccess(status.dataAccess);
      if (status.dataAccess) setTransfers(await api<SentTransfer[]>('GET', '/api/v1/transfers'));
      setKey((await ownKey()) ?? null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => void load(), []);

  const set = (field: keyof typeof draft) => (e: Event) => setDraft({ ...draft, [field]: (e.target as HTMLInputElement).value });
  const busy = phase !== undefined;

  const send = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setNotice(undefined);
    const emails = draft.recipients
      .split(/[\s,;]+/)
      .map((e) => e.trim())
      .filter((e) => e !== '');
    if (emails.length === 0) return setError(t('transfers.noRecipients'));
    if (files.length === 0) return setError(t('transfers.noFiles'));
    const level = draft.level;
    const e2e = level >= 3;
    try {
      let own: OwnKey | undefined;
      if (e2e) {
        own = (await ownKey()) ?? undefined;
        setKey(own ?? null);
        if (!own) return setError(t('transfers.needKey'));
      }
      setPhase(t('transfers.phase.create'));
      const fileKeys = files.map(() => randomFileKey());
      const bundleKey = level === 4 ? randomFileKey() : undefined;
      const bundle = level === 4 ? encodeBundle(draft.message, files.map((f) => f.name)) : undefined;
      const expiresAt = new Date(`${draft.expires}T23:59:00`).toISOString();
      const created = await api<CreatedTransfer>('POST', '/api/v1/transfers', {
        subject: draft.subject,
        level,
        expiresAt,
        language,
        ...(draft.limit.trim() !== '' ? { downloadLimit: Number(draft.limit) } : {}),
        ...(level <= 3 && draft.message.trim() !== '' ? { message: draft.message } : {}),
        recipients: emails,
        // Level 4: the names travel only in the encrypted bundle; the server gets placeholders.
        files: files.map((f, i) => ({ ...(level === 4 ? {} : { name: f.name }), size: f.size, ...(level <= 2 ? { fileKey: toBase64Url(fileKeys[i]!) } : {}) })),
        ...(bundle ? { bundle: { size: bundle.length } } : {}),
      });
      if (created.files.length !== files.length) throw new Error('the server lists another number of files');
      let holders: CheckedKey[] = [];
      if (e2e && own) {
        const offered = [{ holder: 'sender', publicKey: own.publicKey, fingerprint: own.fingerprint }, ...recipientKeys(created.recipients)];
        const checked = await checkedHolders(offered);
        if (!checked) {
          // Nothing was uploaded; the empty transfer goes at once instead of waiting for its expiry.
          await api('DELETE', `/api/v1/transfers/${created.id}`).catch(() => undefined);
          throw new Error(t('transfers.fingerprintMismatch'));
        }
        holders = checked;
      }
      const secrets = created.files.map((f, i) => ({ fileId: f.id, key: fileKeys[i]! }));
      if (bundleKey && created.bundleId) secrets.push({ fileId: created.bundleId, key: bundleKey });
      // The sender's own wraps first: after an interruption, even from another page load, the sender's
      // SecuPass opens the file keys again and the upload goes on (see resume below).
      if (e2e) await storeWraps(created.id, secrets, holders.filter((h) => h.holder === 'sender'));

      // Encrypt and upload, one file after the other (each upload request moves the request token on); the
      // small level-4 bundle first, as it cannot be made again after an interruption (its message is gone).
      const items: Progress[] = files.map((f, i) => ({ name: f.name, sent: 0, total: created.files[i]!.cipherSize }));
      if (bundle) items.push({ name: t('transfers.bundle'), sent: 0, total: ciphertextSize(bundle.length) });
      setProgress(items.map((p) => ({ ...p })));
      const report = (index: number, sent: number) => {
        items[index]!.sent = sent;
        setProgress(items.map((p) => ({ ...p })));
      };
      // Each file's digest list first, encrypted under its key: what lets the upload go on after a reload.
      setPhase(t('transfers.phase.prepare'));
      const headers: Uint8Array[] = [];
      for (const [i, file] of files.entries()) headers.push(await newUploadHeader(created.id, created.files[i]!.id, fileKeys[i]!, file));
      setPhase(t('transfers.phase.upload'));
      if (bundle && bundleKey) {
        if (!created.bundleId) throw new Error('the server did not create the encrypted bundle');
        const cipher = await encryptBytes(bundleKey, fileContext(created.id, created.bundleId), bundle);
        await uploadStream(created.id, created.bundleId, streamOf(cipher), cipher.length, (sent) => report(files.length, sent));
      }
      for (const [i, file] of files.entries()) {
        const meta = created.files[i]!;
        if (meta.cipherSize !== ciphertextSize(file.size)) throw new Error(`unexpected ciphertext size for ${file.name}`);
        await uploadStream(created.id, meta.id, encryptStreamWithHeader(fileKeys[i]!, fileContext(created.id, meta.id), file.stream(), headers[i]!), meta.cipherSize, (sent) => report(i, sent));
      }

      if (e2e) {
        setPhase(t('transfers.phase.wrap'));
        await storeWraps(created.id, secrets, holders.filter((h) => h.holder !== 'sender'));
      }
      for (const k of fileKeys) k.fill(0);
      bundleKey?.fill(0);

      setPhase(t('transfers.phase.send'));
      const answer = await api<SendAnswer>('POST', `/api/v1/transfers/${created.id}/send`);
      setNotice(sentNotice(t, answer, emails.length, e2e ? created.recipients.filter((r) => !r.publicKey).length : 0));
      setDraft({ ...draft, recipients: '', subject: '', message: '', limit: '' });
      setFiles([]);
      if (fileInput.current) fileInput.current.value = '';
      setProgress(undefined);
      await load();
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setPhase(undefined);
    }
  };

  const withdraw = async (transfer: SentTransfer) => {
    setError(undefined);
    setNotice(undefined);
    try {
      await api('DELETE', `/api/v1/transfers/${transfer.id}`);
      setNotice(t('transfers.withdrawn', { subject: transfer.subject }));
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };

  /** A new link for one recipient whose notification did not arrive; the earlier link stops opening. */
  const notifyAgain = async (transfer: SentTransfer, recipient: SentRecipient) => {
    setError(undefined);
    setNotice(undefined);
    try {
      const answer = await api<SendAnswer>('POST', `/api/v1/transfers/${transfer.id}/recipients/${recipient.id}/notify`);
      setNotice(notifiedNotice(t, answer, recipient.email));
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };

  /** Re-wraps every file key of the transfer for the recipient's new key, after the sender saw its fingerprint. */
  const approve = async (event: Event, transfer: SentTransfer, recipient: SentRecipient) => {
    event.preventDefault();
    setError(undefined);
    setNotice(undefined);
    setPhase(t('transfers.phase.approve'));
    try {
      const expected = recipient.pendingFingerprint;
      if (!expected) throw new Error(t('transfers.fingerprintMismatch'));
      const { privateKey, fingerprint: mine } = await openOwnKey(secupass);
      const { keys } = await api<{ keys: Record<string, { publicKey: string; fingerprint: string } | null> }>('POST', '/api/v1/e2e/keys', { emails: [recipient.email] });
      const theirs = keys[recipient.email] ?? Object.values(keys)[0];
      if (!theirs) throw new Error(t('transfers.noRecipientKey'));
      const publicKey = await decodePublicKey(theirs.publicKey);
      if (!(await fingerprintMatches(publicKey, expected))) throw new Error(t('transfers.fingerprintMismatch'));
      const senderWraps = await api<{ fileId: string; wrapped: string; fingerprint: string }[]>('GET', `/api/v1/transfers/${transfer.id}/sender-wraps`);
      // Wrapped for an earlier key of the sender (since reset): nothing here can open them any more.
      if (senderWraps.length === 0 || senderWraps.some((w) => w.fingerprint.toLowerCase() !== mine)) throw new Error(t('transfers.noSenderWraps'));
      const wraps: { fileId: string; wrapped: string }[] = [];
      for (const w of senderWraps) {
        const context = fileContext(transfer.id, w.fileId);
        const fileKey = await unwrapFileKey(fromBase64Url(w.wrapped), privateKey, context);
        wraps.push({ fileId: w.fileId, wrapped: toBase64Url(await wrapFileKey(fileKey, publicKey, context)) });
        fileKey.fill(0);
      }
      await api('POST', `/api/v1/transfers/${transfer.id}/recipients/${recipient.id}/approve`, { fingerprint: await fingerprint(publicKey), wraps });
      setApproving(undefined);
      setSecupass('');
      setNotice(t('transfers.approved', { email: recipient.email }));
      await load();
    } catch (e) {
      setError(e instanceof Error && 'code' in e && e.code === 'WRONG_KEY' ? t('secupass.wrong') : messageOf(e));
    } finally {
      setPhase(undefined);
    }
  };

  /**
   * Goes on with a transfer whose upload was cut off, from a fresh page: the file keys come back (levels
   * 1/2 from the server, levels 3/4 from the sender's own wraps, opened with the SecuPass), each chosen
   * file is encrypted again under the header the server holds — the same bytes again — and compared
   * piece by piece with what arrived before the rest is uploaded; then as after a sending without a break.
   */
  const resume = async (event: Event, tr: SentTransfer) => {
    event.preventDefault();
    setError(undefined);
    setNotice(undefined);
    setPhase(t('transfers.phase.resume'));
    const keys = new Map<string, Uint8Array>();
    // Level 4: the names come from the bundle, once it is open (until then: "File n").
    let names: (string | null)[] = [];
    const nameOf = (f: ResumeState['files'][number], i: number) => f.name ?? names[i] ?? null;
    const fileLabel = (f: ResumeState['files'][number], i: number) => `${nameOf(f, i) ?? t('receive.fileN', { n: i + 1 })} (${formatSize(f.size, language)})`;
    try {
      const state = await api<ResumeState>('GET', `/api/v1/transfers/${tr.id}/resume?pieceSize=${UPLOAD_CHUNK}`);
      const files = state.files.filter((f) => f.kind === 'file');
      const open = state.files.filter((f) => f.received < f.cipherSize);
      if (cannotGoOn(open)) throw new Error(t('transfers.cannotResume'));

      let holders: CheckedKey[] = [];
      let own: Awaited<ReturnType<typeof openOwnKey>> | undefined;
      if (state.level >= 3) {
        own = await openOwnKey(secupass);
        const { privateKey, fingerprint: mine } = own;
        const senderWraps = await api<{ fileId: string; wrapped: string; fingerprint: string }[]>('GET', `/api/v1/transfers/${tr.id}/sender-wraps`);
        for (const f of state.files) {
          const w = senderWraps.find((x) => x.fileId === f.id);
          if (!w || w.fingerprint.toLowerCase() !== mine) throw new Error(t('transfers.cannotResume'));
          keys.set(f.id, await unwrapFileKey(fromBase64Url(w.wrapped), privateKey, fileContext(tr.id, f.id)));
        }
        const bundle = state.files.find((f) => f.kind === 'bundle');
        if (bundle) {
          if (bundle.content === undefined) throw new Error(t('transfers.cannotResume'));
          names = decodeBundle(await decryptBytes(keys.get(bundle.id)!, fileContext(tr.id, bundle.id), fromBase64Url(bundle.content))).names;
        }
        const checked = await checkedHolders(recipientKeys(state.recipients));
        if (!checked) throw new Error(t('transfers.fingerprintMismatch'));
        holders = checked;
      } else {
        for (const f of state.files) {
          if (!f.fileKey) throw new Error(t('transfers.cannotResume'));
          keys.set(f.id, fromBase64Url(f.fileKey));
        }
      }

      const { plan, missing } = matchChosen(open, files, nameOf, resumeFiles);
      if (missing.length > 0) throw new Error(t('transfers.chooseAgain', { names: missing.map((p) => fileLabel(p.f, p.index)).join(', ') }));
      const changed = await firstChanged(tr.id, plan, keys);
      if (changed) return setError(t('transfers.notSameFile', { name: fileLabel(changed.f, changed.index) }));

      if (own) {
        const { privateKey, fingerprint: mine } = own;
        // Anyone with the sender's public key can make a wrap for it, the server too: a key unwrapped here
        // is trusted only where the server cannot have chosen it — a file with bytes is checked against its
        // manifest (which needs the plaintext's digests), and a file with none gets a new key of its own,
        // wrapped here for the sender's own key, so nothing new is ever encrypted under a key from the server.
        const fresh = [];
        for (const p of plan.filter((x) => x.f.received === 0)) {
          const key = randomFileKey();
          keys.get(p.f.id)?.fill(0);
          keys.set(p.f.id, key);
          fresh.push({ fileId: p.f.id, recipientId: 'sender', fingerprint: mine, wrapped: toBase64Url(await wrapFileKey(key, privateKey.publicKey, fileContext(tr.id, p.f.id))) });
        }
        if (fresh.length > 0) await api('POST', `/api/v1/transfers/${tr.id}/wraps`, { wraps: fresh });
      }

      const items: Progress[] = plan.map((p) => ({ name: fileLabel(p.f, p.index), sent: p.f.received, total: p.f.cipherSize }));
      setResumeProgress(items.map((p) => ({ ...p })));
      await uploadRest(tr.id, plan, keys, (i, sent) => {
        items[i]!.sent = sent;
        setResumeProgress(items.map((x) => ({ ...x })));
      });
      if (state.level >= 3) {
        setPhase(t('transfers.phase.wrap'));
        await storeWraps(tr.id, state.files.map((f) => ({ fileId: f.id, key: keys.get(f.id)! })), holders);
      }
      setPhase(t('transfers.phase.send'));
      const answer = await api<SendAnswer>('POST', `/api/v1/transfers/${tr.id}/send`);
      setNotice(sentNotice(t, answer, state.recipients.length, state.level >= 3 ? state.recipients.filter((r) => !r.publicKey).length : 0));
      setResuming(undefined);
      setResumeFiles([]);
      setSecupass('');
      await load();
    } catch (e) {
      // A file that matched its manifest while the server's bytes differ: not the user's file, the server's.
      setError(e instanceof HeldBytesDifferError ? t('transfers.cannotResume') : e instanceof Error && 'code' in e && e.code === 'WRONG_KEY' ? t('secupass.wrong') : messageOf(e));
    } finally {
      for (const k of keys.values()) k.fill(0);
      setResumeProgress(undefined);
      setPhase(undefined);
    }
  };

  const stateText = (tr: SentTransfer) =>
    tr.withdrawnAt ? t('transfers.state.withdrawn') : new Date(tr.expiresAt) <= new Date() ? t('transfers.state.expired') : tr.sentAt ? t('transfers.state.sent') : t('transfers.state.draft');
  // Level 4: the files have no name here (it is in the bundle); the list also names the bundle itself, which is no file.
  const filesOf = (tr: SentTransfer) => (tr.level === 4 ? tr.files.filter((f) => f.name === null) : tr.files);
  const active = (tr: SentTransfer) => !tr.withdrawnAt && new Date(tr.expiresAt) > new Date();

  return (
    <Page title={t('transfers.title')}>
      <Alerts error={error} notice={notice} />
      {dataAccess === undefined ? (
        <p>{t('common.loading')}</p>
      ) : !dataAccess ? (
        <p class="notice">{t('contacts.noAccess')}</p>
      ) : (
        <>
          <form class="card" aria-label={t('transfers.new')} onSubmit={send}>
            <h2>{t('transfers.new')}</h2>
            <div class="field">
              <label for="transfer-recipients">{t('transfers.recipients')}</label>
              <textarea id="transfer-recipients" rows={2} required value={draft.recipients} aria-describedby="transfer-recipients-hint" onInput={set('recipients')} />
              <small id="transfer-recipients-hint" class="hint">
                {t('transfers.recipientsHint')}
              </small>
            </div>
            <div class="field">
              <label for="transfer-subject">{t('transfers.subject')}</label>
              <input id="transfer-subject" type="text" required maxLength={200} value={draft.subject} onInput={set('subject')} />
            </div>
            <div class="field">
              <label for="transfer-message">{t('transfers.message')}</label>
              <textarea id="transfer-message" rows={4} value={draft.message} onInput={set('message')} />
            </div>
            <fieldset class="levels">
              <legend>{t('transfers.level')}</legend>
              {LEVELS.map((l) => (
                <div class="radio" key={l}>
                  <input
                    id={`transfer-level-${l}`}
                    type="radio"
                    name="transfer-level"
                    value={String(l)}
                    checked={draft.level === l}
                    aria-describedby={`transfer-level-${l}-hint`}
                    onChange={() => setDraft({ ...draft, level: l })}
                  />
                  <label for={`transfer-level-${l}`}>{t(`transfers.level${l}` as TextKey)}</label>
                  <small id={`transfer-level-${l}-hint`} class="hint">
                    {t(`transfers.level${l}Hint` as TextKey)}
                  </small>
                </div>
              ))}
            </fieldset>
            {draft.level >= 3 && key === null ? <p class="notice">{t('transfers.needKeyBelow')}</p> : null}
            <div class="row">
              <div class="field">
                <label for="transfer-expires">{t('transfers.expires')}</label>
                <input id="transfer-expires" type="date" required min={inDays(0)} value={draft.expires} onInput={set('expires')} />
              </div>
              <div class="field">
                <label for="transfer-limit">{t('transfers.limit')}</label>
                <input id="transfer-limit" type="number" min={1} step={1} value={draft.limit} aria-describedby="transfer-limit-hint" onInput={set('limit')} />
                <small id="transfer-limit-hint" class="hint">
                  {t('transfers.limitHint')}
                </small>
              </div>
            </div>
            <div class="field">
              <label for="transfer-files">{t('transfers.files')}</label>
              <input id="transfer-files" ref={fileInput} type="file" multiple required onChange={(e) => setFiles(Array.from((e.target as HTMLInputElement).files ?? []))} />
            </div>
            {files.length > 0 ? (
              <ul class="plain" aria-label={t('transfers.chosen')}>
                {files.map((f) => (
                  <li key={f.name + f.size}>
                    {f.name} ({formatSize(f.size, language)})
                  </li>
                ))}
              </ul>
            ) : null}
            {progress ? <ProgressList id="upload" label={t('transfers.progress')} items={progress} language={language} t={t} /> : null}
            {phase && !resuming ? (
              <p role="status" class="progress-text">
                {phase}
              </p>
            ) : null}
            <button type="submit" disabled={busy}>
              {t('transfers.send')}
            </button>
          </form>
          {draft.level >= 3 && key === null ? <SecuPassSetup t={t} reset={false} onDone={() => void load()} /> : null}

          <h2>{t('transfers.sentList')}</h2>
          {transfers === undefined ? (
            <p>{t('common.loading')}</p>
          ) : transfers.length === 0 ? (
            <p>{t('transfers.none')}</p>
          ) : (
            transfers.map((tr) => (
              <article key={tr.id} class="card transfer" aria-label={tr.subject}>
                <h3>{tr.subject}</h3>
                <p>
                  {t(`transfers.level${tr.level}` as TextKey)} · {stateText(tr)} · {t('transfers.until', { time: formatTime(language, tr.expiresAt) })}
                  {tr.downloadLimit !== null ? ` · ${t('transfers.limitShort', { count: tr.downloadLimit })}` : ''}
                </p>
                <p>
                  {t('transfers.filesShort')}:{' '}
                  {tr.level === 4
                    ? t('transfers.namesEncrypted', { count: filesOf(tr).length, size: formatSize(filesOf(tr).reduce((s, f) => s + f.size, 0), language) })
                    : filesOf(tr)
                        .map((f) => `${f.name ?? ''} (${formatSize(f.size, language)})`)
                        .join(', ')}
                </p>
                <table>
                  <caption class="visually-hidden">{t('transfers.recipientsOf', { subject: tr.subject })}</caption>
                  <thead>
                    <tr>
                      <th scope="col">{t('transfers.recipient')}</th>
                      <th scope="col">{t('transfers.recipientState')}</th>
                      <th scope="col">{t('transfers.downloads')}</th>
                      {tr.level >= 3 ? <th scope="col">{t('transfers.keyState')}</th> : null}
                    </tr>
                  </thead>
                  <tbody>
                    {tr.recipients.map((r) => (
                      <tr key={r.id}>
                        <td>{r.email}</td>
                        <td>
                          {t(`transfers.rstate.${r.state}` as TextKey)}
                          {tr.sentAt && active(tr) ? (
                            <>
                              {' '}
                              <button type="button" class="link" onClick={() => void notifyAgain(tr, r)} aria-label={t('transfers.notifyAgainFor', { email: r.email })}>
                                {t('transfers.notifyAgain')}
                              </button>
                            </>
                          ) : null}
                        </td>
                        <td>{r.downloads}</td>
                        {tr.level >= 3 ? (
                          <td>
                            {t(`transfers.kstate.${r.keyState}` as TextKey)}
                            {r.keyState === 'approval-needed' && r.pendingFingerprint && active(tr) ? (
                              <div class="approve">
                                <Fingerprint label={t('transfers.newKey')} value={r.pendingFingerprint} />
                                {approving?.transferId === tr.id && approving.recipientId === r.id ? (
                                  <form aria-label={t('transfers.approveFor', { email: r.email })} onSubmit={(e) => void approve(e, tr, r)}>
                                    <p class="hint">{t('transfers.approveHint')}</p>
                                    <SecretField id={`approve-${r.id}`} label={t('transfers.yourSecupass')} value={secupass} onInput={setSecupass} autocomplete="current-password" />
                                    <button type="submit" disabled={busy}>
                                      {t('transfers.approveConfirm')}
                                    </button>{' '}
                                    <button type="button" class="link" onClick={() => setApproving(undefined)}>
                                      {t('secupass.cancel')}
                                    </button>
                                  </form>
                                ) : (
                                  <button type="button" onClick={() => (setSecupass(''), setResuming(undefined), setApproving({ transferId: tr.id, recipientId: r.id }))}>
                                    {t('transfers.approve')}
                                  </button>
                                )}
                              </div>
                            ) : null}
                          </td>
                        ) : null}
                      </tr>
                    ))}
                  </tbody>
                </table>
                {active(tr) && !tr.sentAt && tr.from === null && tr.mine ? (
                  <div class="resume">
                    <p class="notice">{t('transfers.unfinished')}</p>
                    <ul class="plain">
                      {filesOf(tr).map((f, i) => (
                        <li key={f.id}>{t('transfers.arrived', { name: f.name ?? t('receive.fileN', { n: i + 1 }), sent: formatSize(f.received, language), total: formatSize(f.cipherSize, language) })}</li>
                      ))}
                    </ul>
                    {resuming === tr.id ? (
                      <form aria-label={t('transfers.resumeFor', { subject: tr.subject })} onSubmit={(e) => void resume(e, tr)}>
                        <div class="field">
                          <label for={`resume-files-${tr.id}`}>{t('transfers.resumeFiles')}</label>
                          <input id={`resume-files-${tr.id}`} type="file" multiple aria-describedby={`resume-hint-${tr.id}`} onChange={(e) => setResumeFiles(Array.from((e.target as HTMLInputElement).files ?? []))} />
                          <small id={`resume-hint-${tr.id}`} class="hint">
                            {t('transfers.resumeHint')}
                          </small>
                        </div>
                        {tr.level >= 3 ? <SecretField id={`resume-secupass-${tr.id}`} label={t('transfers.yourSecupass')} value={secupass} onInput={setSecupass} autocomplete="current-password" /> : null}
                        {resumeProgress ? <ProgressList id={`resume-${tr.id}`} label={t('transfers.progress')} items={resumeProgress} language={language} t={t} /> : null}
                        {phase ? (
                          <p role="status" class="progress-text">
                            {phase}
                          </p>
                        ) : null}
                        <button type="submit" disabled={busy}>
                          {t('transfers.resumeConfirm')}
                        </button>{' '}
                        <button type="button" class="link" onClick={() => setResuming(undefined)}>
                          {t('secupass.cancel')}
                        </button>
                      </form>
                    ) : (
                      <button type="button" onClick={() => (setSecupass(''), setApproving(undefined), setResumeFiles([]), setResuming(tr.id))} aria-label={t('transfers.resumeFor', { subject: tr.subject })}>
                        {t('transfers.resume')}
                      </button>
                    )}
                  </div>
                ) : null}
                {active(tr) ? (
                  <button type="button" class="danger" onClick={() => void withdraw(tr)} aria-label={t('transfers.withdrawLabel', { subject: tr.subject })}>
                    {t('transfers.withdraw')}
                  </button>
                ) : null}
              </article>
            ))
          )}
          <FileRequestsPanel t={t} />
        </>
      )}
    </Page>
  );
}

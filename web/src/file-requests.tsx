import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from './api.js';
import type { TextKey } from './i18n.js';
import { cannotGoOn, fileContext, firstChanged, formatSize, HeldBytesDifferError, matchChosen, messageOf, type Level, type ResumeFile, type ResumePlan, UPLOAD_CHUNK, uploadRest, uploadStream } from './transfer-lib.js';
import { Alerts } from './ui.js';
import { ciphertextSize, decodePublicKey, encryptBytes, fingerprintMatches, fromBase64Url, randomFileKey, toBase64Url, wrapFileKey } from '../../src/shared-e2e/index.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
type PageComponent = (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element;

export const UPLOAD_PREFIX = '/app/upload/';

interface RequestRow {
  id: string;
  level: Level;
  message: string | null;
  expiresAt: string;
  closedAt: string | null;
  uploads: number;
}

const inDays = (days: number) => {
  const d = new Date(Date.now() + days * 86_400_000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
};

/** On /app/transfers: ask someone for files — a link to upload to you at a chosen level. */
export function FileRequestsPanel(props: { t: T }) {
  const { t } = props;
  const [rows, setRows] = useState<RequestRow[]>([]);
  const [draft, setDraft] = useState({ level: 2 as Level, message: '', email: '', expires: inDays(14) });
  const [link, setLink] = useState<string>();
  const [error, setError] = useState<string>();
  const load = async () => setRows(await api<RequestRow[]>('GET', '/api/v1/file-requests').catch(() => []));
  useEffect(() => void load(), []);
  const create = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setLink(undefined);
    try {
      const made = await api<{ link: string }>('POST', '/api/v1/file-requests', {
        level: draft.level,
        expiresAt: new Date(`${draft.expires}T23:59:00`).toISOString(),
        ...(draft.message.trim() ? { message: draft.message } : {}),
        ...(draft.email.trim() ? { email: draft.email.trim() } : {}),
      });
      setLink(made.link);
      setDraft({ ...draft, message: '', email: '' });
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const close = async (id: string) => {
    await api('DELETE', `/api/v1/file-requests/${id}`).catch((e) => setError(messageOf(e)));
    await load();
  };
  return (
    <section class="card" aria-labelledby="requests-title">
      <h2 id="requests-title">{t('requests.title')}</h2>
      <p>{t('requests.intro')}</p>
      <Alerts error={error} />
      <form aria-label={t('requests.new')} onSubmit={create}>
        <div class="field">
          <label for="request-level">{t('requests.level')}</label>
          <select id="request-level" value={String(draft.level)} onChange={(e) => setDraft({ ...draft, level: Number((e.target as HTMLSelectElement).value) as Level })}>
            {[1, 2, 3, 4].map((l) => (
              <option key={l} value={String(l)}>
                {t('requests.levelOption', { level: l })}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="request-message">{t('requests.message')}</label>
          <textarea id="request-message" value={draft.message} onInput={(e) => setDraft({ ...draft, message: (e.target as HTMLTextAreaElement).value })} />
        </div>
        <div class="field">
          <label for="request-email">{t('requests.email')}</label>
          <input id="request-email" type="email" value={draft.email} onInput={(e) => setDraft({ ...draft, email: (e.target as HTMLInputElement).value })} />
        </div>
        <div class="field">
          <label for="request-expires">{t('requests.until')}</label>
          <input id="request-expires" type="date" required value={draft.expires} onInput={(e) => setDraft({ ...draft, expires: (e.target as HTMLInputElement).value })} />
        </div>
        <button type="submit">{t('requests.create')}</button>
      </form>
      {link ? (
        <div role="status">
          <p>{t('requests.created')}</p>
          <label for="request-link">{t('requests.link')}</label>
          <input id="request-link" readOnly value={link} onFocus={(e) => (e.target as HTMLInputElement).select()} />
        </div>
      ) : null}
      {rows.length > 0 ? (
        <table>
          <caption>{t('requests.list')}</caption>
          <thead>
            <tr>
              <th scope="col">{t('requests.level')}</th>
              <th scope="col">{t('requests.message')}</th>
              <th scope="col">{t('requests.until')}</th>
              <th scope="col">{t('requests.uploads')}</th>
              <th scope="col">
                <span class="visually-hidden">{t('requests.close')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id}>
                <td>{r.level}</td>
                <td>{r.message ?? ''}</td>
                <td>{new Date(r.expiresAt).toLocaleDateString()}</td>
                <td>{r.uploads}</td>
                <td>
                  {r.closedAt ? (
                    t('requests.closed')
                  ) : (
                    <button type="button" class="danger" onClick={() => void close(r.id)}>
                      {t('requests.close')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

interface RequestInfo {
  level: Level;
  message: string | null;
  requester: string;
  expiresAt: string;
  publicKey?: string;
  fingerprint?: string;
}

/**
 * An upload through a request link that has begun, kept for this tab (sessionStorage: gone with the tab)
 * so that it goes on after a reload: the draft, and the keys and names only this browser has.
 */
interface PendingUpload {
  transferId: string;
  level: Level;
  subject: string;
  /** The requester as the draft's recipient (levels 3/4: the file keys are wrapped for them). */
  recipientId: string;
  files: { id: string; name: string; size: number; key: string }[];
  bundle?: { id: string; key: string };
}

/** What the tab keeps of a request link: its secret and fingerprint (the address bar loses them), and a pending upload. */
interface KeptLink {
  s: string;
  fp?: string;
  pending?: PendingUpload;
}

const keptKey = (requestId: string) => `tresor.upload.${requestId}`;

/** The pending upload's file keys (and the bundle's) by file id, decoded afresh: the caller wipes them. */
const keysOf = (p: PendingUpload) => new Map([...p.files, ...(p.bundle ? [p.bundle] : [])].map((f) => [f.id, fromBase64Url(f.key)] as const));

function readKept(requestId: string): KeptLink | undefined {
  try {
    const kept = JSON.parse(sessionStorage.getItem(keptKey(requestId)) ?? 'null') as KeptLink | null;
    return kept && typeof kept.s === 'string' ? kept : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps (or, without a pending upload, still keeps the link of) this tab's upload; where storage is refused, the upload just cannot go on after a reload. */
function keep(requestId: string, kept: KeptLink): void {
  try {
    sessionStorage.setItem(keptKey(requestId), JSON.stringify(kept));
  } catch {
    // storage blocked or full: nothing kept
  }
}

/**
 * /app/upload/<id>#s=…&fp=… (public): an outsider sends files to the data user who made the link. Every
 * file is encrypted here; at levels 3/4 the file keys are wrapped to the requester's key, and only if its
 * fingerprint is the one the link names. An upload cut off goes on after a reload of the tab: the files
 * chosen again are checked against what arrived (their digest lists, as for a member's own transfers).
 */
export function UploadPage(props: { t: T; language: 'de' | 'en'; path: string; Page: PageComponent }) {
  const { t, Page } = props;
  const requestId = props.path.slice(UPLOAD_PREFIX.length);
  const [{ link, replaces }] = useState<{ link: KeptLink; replaces?: KeptLink | undefined }>(() => {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const kept = readKept(requestId);
    const secret = fragment.get('s');
    if (location.hash) history.replaceState(null, '', location.pathname);
    if (!secret) return { link: kept ?? { s: '' } };
    const fp = fragment.get('fp') ?? undefined;
    // The link opened again: what this tab began with it goes on. Another link starts afresh once it opens
    // (below); a link that does not open leaves what the tab kept as it is.
    if (kept && kept.s === secret && kept.fp === fp) return { link: kept };
    return { link: { s: secret, ...(fp ? { fp } : {}) }, replaces: kept ?? { s: '' } };
  });
  const via = { requestId, secret: link.s };
  const [info, setInfo] = useState<RequestInfo>();
  const [pending, setPendingState] = useState<PendingUpload | undefined>(link.pending);
  const setPending = (p: PendingUpload | undefined) => {
    keep(requestId, { s: link.s, ...(link.fp ? { fp: link.fp } : {}), ...(p ? { pending: p } : {}) });
    setPendingState(p);
  };
  const [draft, setDraft] = useState({ from: '', subject: '', message: '' });
  const [files, setFiles] = useState<File[]>([]);
  const [again, setAgain] = useState<File[]>([]);
  const [progress, setProgress] = useState<{ name: string; sent: number; total: number }[]>();
  const [busy, setBusy] = useState(false);
  /** The first upload of the form is under way (its draft is pending already, but not interrupted). */
  const [sending, setSending] = useState(false);
  const [done, setDone] = useState(false);
  const [error, setError] = useState<string>();
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    api<RequestInfo>('POST', `/api/v1/u/${requestId}/open`, { secret: link.s }).then((opened) => {
      if (replaces) {
        keep(requestId, link);
        // What the tab began with the link it held before cannot go on (its keys are forgotten now): given
        // up at once rather than left on the server until it expires.
        const old = replaces.pending;
        if (old) api('POST', `/api/v1/u/${requestId}/transfers/${old.transferId}/withdraw`, { secret: replaces.s }).catch(() => undefined);
      }
      setInfo(opened);
    }, () => setError(t('requests.invalid')));
  }, []);

  /** Levels 3/4: the requester's key, only if it is the one the link names (a key swapped by the server is refused). */
  const requesterKey = async () => {
    const key = await decodePublicKey(info?.publicKey ?? '');
    if (!link.fp || !(await fingerprintMatches(key, link.fp))) throw new Error(t('requests.keyMismatch'));
    return key;
  };

  /**
   * Uploads the planned files (the rest of each), wraps every key of `keys` (keysOf: the files' and the
   * bundle's) for the requester, sends; then forgets the draft.
   */
  const finish = async (p: PendingUpload, plan: ResumePlan[], keys: Map<string, Uint8Array>) => {
    const key = p.level >= 3 ? await requesterKey() : undefined;
    const items = plan.map((x) => ({ name: p.files[x.index]!.name, sent: x.f.received, total: x.f.cipherSize }));
    setProgress(items.map((x) => ({ ...x })));
    await uploadRest(p.transferId, plan, keys, (i, sent) => {
      items[i]!.sent = sent;
      setProgress(items.map((x) => ({ ...x })));
    }, via);
    if (key && link.fp) {
      const wraps = [];
      for (const [fileId, fileKey] of keys) wraps.push({ fileId, recipientId: p.recipientId, fingerprint: link.fp, wrapped: toBase64Url(await wrapFileKey(fileKey, key, fileContext(p.transferId, fileId))) });
      await api('POST', `/api/v1/u/${requestId}/transfers/${p.transferId}/wraps`, { secret: link.s, wraps });
    }
    await api('POST', `/api/v1/u/${requestId}/transfers/${p.transferId}/send`, { secret: link.s });
    setPending(undefined);
    setDone(true);
    setFiles([]);
    setAgain([]);
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!info || busy) return;
    setError(undefined);
    if (files.length === 0) return setError(t('transfers.noFiles'));
    setBusy(true);
    setSending(true);
    const keys = files.map(() => randomFileKey());
    const bundleKey = randomFileKey();
    let kept: Map<string, Uint8Array> | undefined;
    try {
      const level = info.level;
      const e2e = level >= 3;
      if (e2e) await requesterKey(); // before anything is created
      const bundle = level === 4 ? new TextEncoder().encode(JSON.stringify({ message: draft.message, names: files.map((f) => f.name) })) : undefined;
      const created = await api<{ id: string; files: { id: string; cipherSize: number }[]; bundleId?: string; recipients: { id: string; fingerprint?: string }[] }>('POST', `/api/v1/u/${requestId}/transfers`, {
        secret: link.s,
        from: draft.from,
        subject: draft.subject,
        ...(level <= 3 && draft.message.trim() ? { message: draft.message } : {}),
        files: files.map((f, i) => ({ ...(level === 4 ? {} : { name: f.name }), size: f.size, ...(e2e ? {} : { fileKey: toBase64Url(keys[i]!) }) })),
        ...(bundle ? { bundle: { size: bundle.length } } : {}),
      });
      if (created.files.length !== files.length) throw new Error('the server lists another number of files');
      const p: PendingUpload = {
        transferId: created.id,
        level,
        subject: draft.subject,
        recipientId: created.recipients[0]?.id ?? '',
        files: files.map((f, i) => ({ id: created.files[i]!.id, name: f.name, size: f.size, key: toBase64Url(keys[i]!) })),
        ...(bundle && created.bundleId ? { bundle: { id: created.bundleId, key: toBase64Url(bundleKey) } } : {}),
      };
      // Kept before the first byte goes up: a reload from here on goes on with this draft.
      setPending(p);
      // The level-4 bundle (message and names) first: it cannot be made again after a reload.
      if (bundle) {
        if (!created.bundleId) throw new Error('the server did not create the encrypted bundle');
        const cipher = await encryptBytes(bundleKey, fileContext(created.id, created.bundleId), bundle);
        if (cipher.length !== ciphertextSize(bundle.length)) throw new Error('unexpected bundle size');
        await uploadStream(created.id, created.bundleId, new Blob([new Uint8Array(cipher)]).stream(), cipher.length, () => undefined, via);
      }
      const plan: ResumePlan[] = files.map((file, i) => ({ f: { id: created.files[i]!.id, kind: 'file', size: file.size, cipherSize: created.files[i]!.cipherSize, received: 0, pieces: [] }, index: i, file }));
      kept = keysOf(p);
      await finish(p, plan, kept);
      if (input.current) input.current.value = '';
    } catch (e) {
      setError(messageOf(e));
      setProgress(undefined);
    } finally {
      for (const k of [...keys, bundleKey, ...(kept?.values() ?? [])]) k.fill(0);
      setBusy(false);
      setSending(false);
    }
  };

  /** The server says the draft is no more to be continued: sent already (the requester has it) or expired. */
  const gone = (e: unknown) => {
    const state = e instanceof ApiError && e.status === 409 ? e.details?.state : undefined;
    if (state !== 'sent' && state !== 'expired') return false;
    setPending(undefined);
    setProgress(undefined);
    setAgain([]);
    if (state === 'sent') {
      setDone(true);
      setFiles([]);
    } else setError(t('requests.expiredUpload'));
    return true;
  };

  /**
   * Goes on with the tab's pending upload: what the server holds of each file is compared with the files
   * chosen again (each must be the one its digest list describes, checked before anything goes up), then
   * only the rest is encrypted and uploaded — under the keys this tab kept, which the server never had at
   * levels 3/4.
   */
  const goOn = async (event: Event) => {
    event.preventDefault();
    if (!pending || busy) return;
    setError(undefined);
    setBusy(true);
    const p = pending;
    const label = (i: number) => `${p.files[i]?.name ?? t('receive.fileN', { n: i + 1 })} (${formatSize(p.files[i]?.size ?? 0, props.language)})`;
    const keys = keysOf(p);
    try {
      const state = await api<{ id: string; level: Level; files: ResumeFile[] }>('POST', `/api/v1/u/${requestId}/transfers/${p.transferId}/resume`, { secret: link.s, pieceSize: UPLOAD_CHUNK });
      const draftFiles = state.files.filter((f) => f.kind === 'file');
      const sameDraft = state.id === p.transferId && state.level === p.level && draftFiles.length === p.files.length && draftFiles.every((f, i) => f.id === p.files[i]!.id && f.size === p.files[i]!.size);
      const open = state.files.filter((f) => f.received < f.cipherSize);
      if (!sameDraft || cannotGoOn(open)) throw new Error(t('requests.cannotResume'));
      // The files chosen in this tab before the break, unless others were chosen (after a reload: none left).
      const { plan, missing } = matchChosen(open, draftFiles, (_f, i) => p.files[i]!.name, again.length > 0 ? again : files);
      if (missing.length > 0) throw new Error(t('transfers.chooseAgain', { names: missing.map((m) => label(m.index)).join(', ') }));
      const changed = await firstChanged(p.transferId, plan, keys);
      if (changed) throw new Error(t('transfers.notSameFile', { name: label(changed.index) }));
      await finish(p, plan, keys);
    } catch (e) {
      if (gone(e)) return;
      // The server's bytes differ from the file that matched its digest list: the server's doing, not the file's.
      setError(e instanceof HeldBytesDifferError ? t('requests.cannotResume') : e instanceof ApiError && e.status === 404 ? t('requests.cannotResume') : messageOf(e));
    } finally {
      for (const k of keys.values()) k.fill(0);
      setBusy(false);
    }
  };

  /** Gives the pending upload up: the draft and what arrived of it are deleted; the form starts afresh. */
  const startOver = async () => {
    if (!pending || busy) return;
    setError(undefined);
    setBusy(true);
    try {
      await api('POST', `/api/v1/u/${requestId}/transfers/${pending.transferId}/withdraw`, { secret: link.s });
    } catch (e) {
      // Deleted already (404): nothing left to do. Sent already or expired: said so. Anything else: the
      // draft stays, and so do its keys, to try again.
      if (!(e instanceof ApiError && e.status === 404)) {
        if (!gone(e)) setError(messageOf(e));
        return;
      }
    } finally {
      setBusy(false);
    }
    setPending(undefined);
    setProgress(undefined);
    setAgain([]);
    setFiles([]);
    if (input.current) input.current.value = '';
  };

  const progressList = progress
    ? progress.map((x) => (
        <p key={x.name}>
          <label>
            {x.name} <progress max={x.total || 1} value={x.sent} />
          </label>
        </p>
      ))
    : null;

  return (
    <Page title={t('requests.uploadTitle')}>
      <Alerts error={error} />
      {done ? (
        <p role="status">{t('requests.uploaded', { requester: info?.requester ?? '' })}</p>
      ) : info && pending && !sending ? (
        <form class="card" aria-label={t('requests.goOnTitle')} onSubmit={goOn}>
          <p>{t('requests.interrupted', { subject: pending.subject })}</p>
          <ul>
            {pending.files.map((f) => (
              <li key={f.id}>
                {f.name} ({formatSize(f.size, props.language)})
              </li>
            ))}
          </ul>
          <div class="field">
            <label for="upload-again">{t('transfers.resumeFiles')}</label>
            <input id="upload-again" type="file" multiple aria-describedby="upload-again-hint" onChange={(e) => setAgain([...((e.target as HTMLInputElement).files ?? [])])} />
            <small id="upload-again-hint" class="hint">
              {t('transfers.resumeHint')} {files.length > 0 && again.length === 0 ? t('requests.sameTabFiles') : null}
            </small>
          </div>
          {progressList}
          <div>
            <button type="submit" disabled={busy}>
              {t('transfers.resumeConfirm')}
            </button>{' '}
            <button type="button" class="danger" disabled={busy} onClick={() => void startOver()}>
              {t('requests.startOver')}
            </button>
          </div>
        </form>
      ) : info ? (
        <form class="card" aria-label={t('requests.uploadTitle')} onSubmit={submit}>
          <p>{t('requests.asks', { requester: info.requester, level: info.level })}</p>
          {info.message ? <p class="notice">{info.message}</p> : null}
          {info.fingerprint ? <p>{t('requests.fingerprint', { fingerprint: info.fingerprint })}</p> : null}
          <div class="field">
            <label for="upload-from">{t('requests.from')}</label>
            <input id="upload-from" type="email" required value={draft.from} onInput={(e) => setDraft({ ...draft, from: (e.target as HTMLInputElement).value })} />
          </div>
          <div class="field">
            <label for="upload-subject">{t('requests.subject')}</label>
            <input id="upload-subject" required value={draft.subject} onInput={(e) => setDraft({ ...draft, subject: (e.target as HTMLInputElement).value })} />
          </div>
          <div class="field">
            <label for="upload-message">{t('requests.yourMessage')}</label>
            <textarea id="upload-message" value={draft.message} onInput={(e) => setDraft({ ...draft, message: (e.target as HTMLTextAreaElement).value })} />
          </div>
          <div class="field">
            <label for="upload-files">{t('requests.files')}</label>
            <input id="upload-files" ref={input} type="file" multiple onChange={(e) => setFiles([...((e.target as HTMLInputElement).files ?? [])])} />
          </div>
          {progressList}
          <button type="submit" disabled={busy}>
            {t('requests.send')}
          </button>
        </form>
      ) : error ? null : (
        <p>{t('common.loading')}</p>
      )}
    </Page>
  );
}

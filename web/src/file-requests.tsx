import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import type { TextKey } from './i18n.js';
import { fileContext, messageOf, type Level, uploadStream } from './transfer-lib.js';
import { Alerts } from './ui.js';
import { ciphertextSize, decodePublicKey, encryptBytes, encryptStream, fingerprintMatches, randomFileKey, toBase64Url, wrapFileKey } from '../../src/shared-e2e/index.js';

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
 * /app/upload/<id>#s=…&fp=… (public): an outsider sends files to the data user who made the link. Every
 * file is encrypted here; at levels 3/4 the file keys are wrapped to the requester's key, and only if its
 * fingerprint is the one the link names.
 */
export function UploadPage(props: { t: T; path: string; Page: PageComponent }) {
  const { t, Page } = props;
  const requestId = props.path.slice(UPLOAD_PREFIX.length);
  const [link] = useState(() => {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (location.hash) history.replaceState(null, '', location.pathname);
    return { secret: fragment.get('s') ?? '', fp: fragment.get('fp') ?? undefined };
  });
  const [info, setInfo] = useState<RequestInfo>();
  const [draft, setDraft] = useState({ from: '', subject: '', message: '' });
  const [files, setFiles] = useState<File[]>([]);
  const [progress, setProgress] = useState<{ name: string; sent: number; total: number }[]>();
  const [done, setDone] = useState(false);
  const [error, setError] = useState<string>();
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    api<RequestInfo>('POST', `/api/v1/u/${requestId}/open`, { secret: link.secret }).then(setInfo, () => setError(t('requests.invalid')));
  }, []);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!info) return;
    setError(undefined);
    if (files.length === 0) return setError(t('transfers.noFiles'));
    try {
      const level = info.level;
      const e2e = level >= 3;
      const requesterKey = e2e ? await decodePublicKey(info.publicKey ?? '') : undefined;
      // The key to encrypt for must be the one the link names: a key swapped by the server is refused.
      if (e2e && (!link.fp || !requesterKey || !(await fingerprintMatches(requesterKey, link.fp)))) throw new Error(t('requests.keyMismatch'));
      const keys = files.map(() => randomFileKey());
      const bundleKey = randomFileKey();
      const bundle = level === 4 ? new TextEncoder().encode(JSON.stringify({ message: draft.message, names: files.map((f) => f.name) })) : undefined;
      const via = { requestId, secret: link.secret };
      const created = await api<{ id: string; files: { id: string; cipherSize: number }[]; bundleId?: string; recipients: { id: string; fingerprint?: string }[] }>('POST', `/api/v1/u/${requestId}/transfers`, {
        secret: link.secret,
        from: draft.from,
        subject: draft.subject,
        ...(level <= 3 && draft.message.trim() ? { message: draft.message } : {}),
        files: files.map((f, i) => ({ ...(level === 4 ? {} : { name: f.name }), size: f.size, ...(e2e ? {} : { fileKey: toBase64Url(keys[i]!) }) })),
        ...(bundle ? { bundle: { size: bundle.length } } : {}),
      });
      const items = files.map((f, i) => ({ name: f.name, sent: 0, total: created.files[i]!.cipherSize }));
      setProgress(items.map((p) => ({ ...p })));
      for (const [i, file] of files.entries()) {
        const meta = created.files[i]!;
        await uploadStream(created.id, meta.id, encryptStream(keys[i]!, fileContext(created.id, meta.id), file.stream()), meta.cipherSize, (sent) => {
          items[i]!.sent = sent;
          setProgress(items.map((p) => ({ ...p })));
        }, via);
      }
      if (bundle && created.bundleId) {
        const cipher = await encryptBytes(bundleKey, fileContext(created.id, created.bundleId), bundle);
        if (cipher.length !== ciphertextSize(bundle.length)) throw new Error('unexpected bundle size');
        await uploadStream(created.id, created.bundleId, new Blob([new Uint8Array(cipher)]).stream(), cipher.length, () => undefined, via);
      }
      if (e2e && requesterKey && link.fp) {
        const recipient = created.recipients[0]!;
        const secrets = created.files.map((f, i) => ({ fileId: f.id, key: keys[i]! }));
        if (created.bundleId) secrets.push({ fileId: created.bundleId, key: bundleKey });
        const wraps = [];
        for (const s of secrets) wraps.push({ fileId: s.fileId, recipientId: recipient.id, fingerprint: link.fp, wrapped: toBase64Url(await wrapFileKey(s.key, requesterKey, fileContext(created.id, s.fileId))) });
        await api('POST', `/api/v1/u/${requestId}/transfers/${created.id}/wraps`, { secret: link.secret, wraps });
      }
      for (const k of keys) k.fill(0);
      bundleKey.fill(0);
      await api('POST', `/api/v1/u/${requestId}/transfers/${created.id}/send`, { secret: link.secret });
      setDone(true);
      setFiles([]);
      if (input.current) input.current.value = '';
    } catch (e) {
      setError(messageOf(e));
    }
  };

  return (
    <Page title={t('requests.uploadTitle')}>
      <Alerts error={error} />
      {done ? (
        <p role="status">{t('requests.uploaded', { requester: info?.requester ?? '' })}</p>
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
          {progress
            ? progress.map((p) => (
                <p key={p.name}>
                  <label>
                    {p.name} <progress max={p.total || 1} value={p.sent} />
                  </label>
                </p>
              ))
            : null}
          <button type="submit">{t('requests.send')}</button>
        </form>
      ) : error ? null : (
        <p>{t('common.loading')}</p>
      )}
    </Page>
  );
}

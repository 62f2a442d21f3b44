import { Alerts } from './ui.js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, type Me } from './api.js';
import { formatTime, type Language, type TextKey } from './i18n.js';
import { Fingerprint, SecretField, SecuPassSetup } from './secupass.js';
import {
  downloadThroughWorker,
  type DownloadState,
  fileContext,
  formatSize,
  messageOf,
  openOwnKey,
  type OpenedTransfer,
  prepareServiceWorker,
  rememberReturn,
  takeReturn,
} from './transfer-lib.js';
import { decodeBundle, decryptBytes, fingerprintMatches, fromBase64Url, unwrapFileKey } from '../../src/shared-e2e/index.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
type PageComponent = (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element;

export const RECEIVE_PREFIX = '/app/r/';

/**
 * The link secret `s` and the expected fingerprint `fp` from the fragment, kept in memory only and removed
 * from the address bar at once; after a login round trip they come back from this tab's session storage.
 */
function takeLink(path: string): { s?: string; fp?: string } {
  const params = new URLSearchParams(location.hash.slice(1));
  const s = params.get('s') ?? undefined;
  const fp = params.get('fp') ?? undefined;
  if (location.hash) history.replaceState(null, '', location.pathname);
  if (s) return { s, ...(fp ? { fp } : {}) };
  return takeReturn(path) ?? {};
}

interface Unlocked {
  keys: Map<string, Uint8Array>;
  names?: (string | null)[];
  message?: string;
}

/**
 * /app/r/<recipient>#s=…&fp=…: what a recipient sees. Level 1 asks for the e-mail address, levels 2–4 for a
 * login (or a free guest account); levels 3–4 open the file keys with the recipient's SecuPass key in this
 * browser, and the service worker decrypts each file as it downloads.
 */
export function ReceivePage(props: { t: T; language: Language; me: Me | undefined | 'loading'; path: string; Page: PageComponent; logout: () => Promise<void> }) {
  const { t, language, me, path, Page } = props;
  const rid = path.slice(RECEIVE_PREFIX.length);
  const [link] = useState(() => takeLink(path));
  const [view, setView] = useState<OpenedTransfer>();
  const [need, setNeed] = useState<'email' | 'login'>();
  const [email, setEmail] = useState('');
  const [registered, setRegistered] = useState(false);
  const [secupass, setSecupass] = useState('');
  const [unlocked, setUnlocked] = useState<Unlocked>();
  const [working, setWorking] = useState<string>();
  const [downloads, setDownloads] = useState<Record<string, DownloadState>>({});
  const [notice, setNotice] = useState<string>();
  const [error, setError] = useState<string>();
  const [gone, setGone] = useState(false);
  const openedFor = useRef<string | undefined>(undefined);
  const valid = /^[A-Za-z0-9_-]{8,64}$/.test(rid) && typeof link.s === 'string';

  const open = async (address?: string) => {
    setError(undefined);
    try {
      const opened = await api<OpenedTransfer>('POST', `/api/v1/r/${rid}/open`, { secret: link.s, ...(address ? { email: address } : {}) });
      setView(opened);
      setNeed(undefined);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setNeed('login');
      else if (e instanceof ApiError && (e.status === 403 || e.status === 400) && !address) setNeed('email');
      else if (e instanceof ApiError && e.status === 403) setError(t('receive.wrongEmail'));
      else if (e instanceof ApiError && (e.status === 404 || e.status === 410)) setGone(true);
      else setError(messageOf(e));
    }
  };
  useEffect(() => {
    // Once the session is known, and again when another account logs in.
    if (me === 'loading' || !valid) return;
    const who = me?.accountId ?? 'anonymous';
    if (openedFor.current === who) return;
    openedFor.current = who;
    void open();
  }, [me]);
  useEffect(() => {
    // The link opened again in this tab changes only the fragment: start afresh with it.
    const again = () => new URLSearchParams(location.hash.slice(1)).has('s') && location.reload();
    addEventListener('hashchange', again);
    return () => removeEventListener('hashchange', again);
  }, []);
  // Levels 3/4 need the service worker; levels 1/2 use it when it is there (the browser decrypts, so the
  // server does not), and otherwise the plain link, which the server decrypts.
  const [workerReady, setWorkerReady] = useState<boolean | undefined>(undefined);
  useEffect(() => {
    if (!view) return;
    prepareServiceWorker()
      .then(() => setWorkerReady(true))
      .catch(() => {
        setWorkerReady(false);
        if (view.level >= 3) setError(t('receive.noWorker'));
      });
  }, [view?.level]);

  const goLogin = async () => {
    rememberReturn(path, link.s!, link.fp);
    if (me && me !== 'loading') await props.logout();
    history.pushState(null, '', '/app/login');
    dispatchEvent(new PopStateEvent('popstate'));
  };
  const register = async () => {
    setError(undefined);
    try {
      await api('POST', `/api/v1/r/${rid}/register`, { secret: link.s });
      rememberReturn(path, link.s!, link.fp);
      setRegistered(true);
    } catch (e) {
      setError(messageOf(e));
    }
  };

  /** Opens the own private key, checks it is the key the sender used (or approved), unwraps the file keys. */
  const unlock = async (event: Event) => {
    event.preventDefault();
    if (!view) return;
    setError(undefined);
    setWorking(t('receive.unlocking'));
    try {
      const { privateKey } = await openOwnKey(secupass);
      const wrapFingerprints = [...view.files.map((f) => f.fingerprint), view.bundle?.fingerprint].filter((f): f is string => typeof f === 'string');
      const fromLink = link.fp ? await fingerprintMatches(privateKey.publicKey, link.fp) : false;
      let approved = wrapFingerprints.length > 0;
      for (const fp of wrapFingerprints) approved = approved && (await fingerprintMatches(privateKey.publicKey, fp));
      if (!fromLink && !approved) throw new Error(t('receive.keyMismatch'));
      const keys = new Map<string, Uint8Array>();
      for (const f of view.files) {
        if (!f.wrapped) throw new Error(t('receive.notWrapped'));
        keys.set(f.id, await unwrapFileKey(fromBase64Url(f.wrapped), privateKey, fileContext(view.transferId, f.id)));
      }
      const result: Unlocked = { keys };
      if (view.level === 4 && view.bundle) {
        if (!view.bundle.wrapped) throw new Error(t('receive.notWrapped'));
        const bundleKey = await unwrapFileKey(fromBase64Url(view.bundle.wrapped), privateKey, fileContext(view.transferId, view.bundle.id));
        const response = await fetch(`/api/v1/r/${rid}/files/${view.bundle.id}?token=${encodeURIComponent(view.downloadToken)}`, { credentials: 'same-origin' });
        if (!response.ok) throw new Error(((await response.json().catch(() => ({}))) as { message?: string }).message ?? response.statusText);
        const plain = await decryptBytes(bundleKey, fileContext(view.transferId, view.bundle.id), new Uint8Array(await response.arrayBuffer()));
        bundleKey.fill(0);
        const bundle = decodeBundle(plain);
        result.message = bundle.message;
        result.names = bundle.names;
      }
      setSecupass('');
      setUnlocked(result);
    } catch (e) {
      setError(e instanceof Error && 'code' in e && e.code === 'WRONG_KEY' ? t('receive.wrongKey') : messageOf(e));
    } finally {
      setWorking(undefined);
    }
  };

  const nameOf = (index: number) => view?.files[index]?.name ?? unlocked?.names?.[index] ?? t('receive.fileN', { n: index + 1 });
  const fileUrl = (fileId: string) => `/api/v1/r/${rid}/files/${fileId}?token=${encodeURIComponent(view?.downloadToken ?? '')}`;
  const download = async (index: number) => {
    const file = view?.files[index];
    const fileKey = file ? unlocked?.keys.get(file.id) : undefined;
    if (!view || !file || !fileKey) return;
    setError(undefined);
    const update = (state: DownloadState) => setDownloads((all) => ({ ...all, [file.id]: state }));
    try {
      await downloadThroughWorker({ url: fileUrl(file.id), fileKey, context: fileContext(view.transferId, file.id), name: nameOf(index), size: file.size }, update);
    } catch (e) {
      update({ state: 'error', message: messageOf(e) });
    }
  };
  const downloadPlain = async (event: MouseEvent, index: number) => {
    const file = view?.files[index];
    if (!workerReady || !view || !file) return; // the link itself: decrypted by the server
    event.preventDefault();
    setError(undefined);
    const update = (state: DownloadState) => setDownloads((all) => ({ ...all, [file.id]: state }));
    try {
      await downloadThroughWorker({ url: `${fileUrl(file.id)}&encrypted=true`, fileKey: 'from-response', context: fileContext(view.transferId, file.id), name: nameOf(index), size: file.size }, update);
    } catch (e) {
      update({ state: 'error', message: messageOf(e) });
    }
  };
  const downloadText = (state: DownloadState | undefined) =>
    state === undefined ? null : state.state === 'started' ? t('receive.dlStarted') : state.state === 'done' ? t('receive.dlDone') : t('receive.dlFailed', { message: state.message });

  const loggedIn = me !== undefined && me !== 'loading';
  const e2e = view !== undefined && view.level >= 3;
  const message = view?.level === 4 ? unlocked?.message : view?.message;

  return (
    <Page title={t('receive.title')}>
      <Alerts error={error} notice={notice} />
      {!valid || gone ? (
        <p role="alert" class="error">
          {t('receive.invalid')}
        </p>
      ) : need === 'email' ? (
        <form
          class="card"
          aria-label={t('receive.emailTitle')}
          onSubmit={(e) => {
            e.preventDefault();
            void open(email.trim());
          }}
        >
          <p>{t('receive.emailText')}</p>
          <div class="field">
            <label for="receive-email">{t('receive.email')}</label>
            <input id="receive-email" type="email" required autoComplete="email" value={email} onInput={(e) => setEmail((e.target as HTMLInputElement).value)} />
          </div>
          <button type="submit">{t('receive.open')}</button>
        </form>
      ) : need === 'login' ? (
        <div class="card">
          {registered ? (
            <p role="status">{t('receive.registered')}</p>
          ) : (
            <>
              <p>{loggedIn ? t('receive.otherAccount') : t('receive.loginText')}</p>
              <button type="button" onClick={() => void goLogin()}>
                {t('receive.login')}
              </button>{' '}
              {loggedIn ? null : (
                <button type="button" onClick={() => void register()}>
                  {t('receive.register')}
                </button>
              )}
              <p class="hint">{t('receive.registerHint')}</p>
            </>
          )}
        </div>
      ) : !view ? (
        <p>{t('common.loading')}</p>
      ) : (
        <>
          <div class="card">
            <h2>{view.subject}</h2>
            <p>
              {t('receive.from', { sender: view.sender })} · {t(`transfers.level${view.level}` as TextKey)} · {t('transfers.until', { time: formatTime(language, view.expiresAt) })}
              {view.downloadsLeft !== null ? ` · ${t('receive.downloadsLeft', { count: view.downloadsLeft })}` : ''}
            </p>
            {message ? (
              <blockquote class="message" aria-label={t('transfers.message')}>
                {message}
              </blockquote>
            ) : view.level === 4 && !unlocked ? (
              <p class="hint">{t('receive.messageLocked')}</p>
            ) : null}
          </div>

          {e2e && view.keyState === 'none' ? (
            loggedIn ? (
              <>
                <p class="notice">{t('receive.needKey')}</p>
                <SecuPassSetup
                  t={t}
                  reset={false}
                  onDone={() => {
                    setNotice(t('receive.keyCreated'));
                    void open();
                  }}
                />
              </>
            ) : null
          ) : e2e && (view.keyState === 'pending-key' || view.keyState === 'approval-needed') ? (
            <p class="notice" role="status">
              {t('receive.waiting')}
            </p>
          ) : e2e && !unlocked ? (
            <form class="card" aria-label={t('receive.unlockTitle')} onSubmit={(e) => void unlock(e)}>
              <h2>{t('receive.unlockTitle')}</h2>
              <p>{t('receive.unlockText')}</p>
              {link.fp ? <Fingerprint label={t('receive.expected')} value={link.fp} /> : null}
              <SecretField id="receive-secupass" label={t('transfers.yourSecupass')} value={secupass} onInput={setSecupass} autocomplete="current-password" />
              {working ? (
                <p role="status" class="progress-text">
                  {working}
                </p>
              ) : null}
              <button type="submit" disabled={working !== undefined}>
                {t('receive.unlock')}
              </button>
            </form>
          ) : null}

          <table>
            <caption>{t('receive.files')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('receive.name')}</th>
                <th scope="col">{t('receive.size')}</th>
                <th scope="col">
                  <span class="visually-hidden">{t('receive.download')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {view.files.map((f, i) => (
                <tr key={f.id}>
                  <td>{nameOf(i)}</td>
                  <td>{formatSize(f.size, language)}</td>
                  <td>
                    {!e2e ? (
                      <>
                        <a class="button" href={fileUrl(f.id)} onClick={(event) => void downloadPlain(event, i)} aria-label={t('receive.downloadName', { name: nameOf(i) })}>
                          {t('receive.download')}
                        </a>{' '}
                        <span role="status">{downloadText(downloads[f.id])}</span>
                      </>
                    ) : unlocked ? (
                      <>
                        <button type="button" onClick={() => void download(i)} aria-label={t('receive.downloadName', { name: nameOf(i) })}>
                          {t('receive.download')}
                        </button>{' '}
                        <span role="status">{downloadText(downloads[f.id])}</span>
                      </>
                    ) : (
                      <span class="hint">{t('receive.locked')}</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {!e2e && workerReady !== undefined ? <p class="hint">{workerReady ? t('receive.inBrowser') : t('receive.onServer')}</p> : null}
        </>
      )}
    </Page>
  );
}

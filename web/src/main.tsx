import { render, type ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, onApiError, setRequestToken, whoAmI, type Me } from './api.js';
import { dictionaries, formatTime, initialLanguage, rememberLanguage, translate, type Language, type TextKey } from './i18n.js';
import { checkpointRoot, verifyCheckpointSignature, verifyInclusion } from './proof.js';
import { GrantsPage } from './grants.js';
import { RecoveryCodeNotice } from './keys.js';
import { CONTACTS, JOBS, RecordsPage } from './records.js';
import { UsersPage } from './users.js';
import { SecuPassPage } from './secupass.js';
import { ReceivePage, RECEIVE_PREFIX } from './transfer-receive.js';
import { returnPath } from './transfer-lib.js';
import { TransfersPage } from './transfers.js';
import { UPLOAD_PREFIX, UploadPage } from './file-requests.js';
import './app.css';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;

// ---- routing: /app/<page>, history API ------------------------------------------------------------

function navigate(path: string): void {
  history.pushState(null, '', path);
  dispatchEvent(new PopStateEvent('popstate'));
}

function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    addEventListener('popstate', update);
    return () => removeEventListener('popstate', update);
  }, []);
  return path;
}

/** The one-time key of an invitation or reset link, read from the fragment and removed from the address bar at once. */
function takeKeyFromFragment(): string | undefined {
  const key = new URLSearchParams(location.hash.slice(1)).get('key') ?? undefined;
  if (location.hash) history.replaceState(null, '', location.pathname);
  return key;
}

// ---- shared pieces ---------------------------------------------------------------------------------

function Page(props: { title: string; children: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${props.title} – Tresor`;
    heading.current?.focus();
  }, [props.title]);
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1} ref={heading}>
        {props.title}
      </h1>
      {props.children}
    </section>
  );
}

function ErrorText(props: { error: string | undefined }) {
  return props.error ? (
    <p role="alert" class="error">
      {props.error}
    </p>
  ) : null;
}

function Field(props: { id: string; label: string; type?: 'text' | 'password' | 'datetime-local' | 'email'; value: string; onInput: (v: string) => void; autocomplete?: string; required?: boolean; hint?: string }) {
  // One input element for several types (preact's typings want one literal type per element).
  const inputProps = {
    id: props.id,
    name: props.id,
    type: props.type ?? 'text',
    value: props.value,
    autoComplete: props.autocomplete,
    required: props.required ?? true,
    'aria-describedby': props.hint ? `${props.id}-hint` : undefined,
    onInput: (e: Event) => props.onInput((e.target as HTMLInputElement).value),
  } as unknown as preact.JSX.IntrinsicElements['input'];
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input {...inputProps} />
      {props.hint ? (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      ) : null}
    </div>
  );
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * A refused password in the page's language: the server's problem codes map to `problem.<code>` texts;
 * an unknown code (a newer server) falls back to the server's English message.
 */
function passwordErrorOf(error: unknown, t: T): string {
  if (!(error instanceof ApiError) || !error.problemCodes?.length) return messageOf(error);
  const texts = error.problemCodes.map(({ code, params }) => {
    const key = `problem.${code}` as TextKey;
    const classKey = `problem.class.${String(params.class)}` as TextKey;
    const vars = code === 'needs-class' && isTextKey(classKey) ? { ...params, class: t(classKey) } : params;
    return isTextKey(key) ? t(key, vars) : undefined;
  });
  return texts.every((x) => x !== undefined) ? texts.join(' ') : messageOf(error);
}
const isTextKey = (key: string): key is TextKey => key in dictionaries.de;

// ---- pages -----------------------------------------------------------------------------------------

function LoginPage(props: { t: T; onLoggedIn: () => void }) {
  const { t } = props;
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [otp, setOtp] = useState('');
  const [needOtp, setNeedOtp] = useState(false);
  const [error, setError] = useState<string>();
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const result = await api<{ requestToken?: string; pending: string[] }>('POST', '/api/v1/auth/login', { login, password, mode: 'cookie', ...(otp ? { otp } : {}) });
      setRequestToken(result.requestToken);
      props.onLoggedIn();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'SECOND_FACTOR_REQUIRED') {
        setNeedOtp(true);
        setError(t('login.otpNeeded'));
      } else if (e instanceof ApiError && e.code === 'THROTTLED') setError(t('login.throttled', { seconds: e.retryAfter ?? 1 }));
      else if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') setError(t('login.failed'));
      else setError(messageOf(e));
    }
  };
  return (
    <Page title={t('login.title')}>
      <form onSubmit={submit} class="card">
        <Field id="login" label={t('login.login')} value={login} onInput={setLogin} autocomplete="username" />
        <Field id="password" label={t('login.password')} type="password" value={password} onInput={setPassword} autocomplete="current-password" />
        {needOtp ? <Field id="otp" label={t('login.otp')} value={otp} onInput={setOtp} autocomplete="one-time-code" /> : null}
        <ErrorText error={error} />
        <button type="submit">{t('login.submit')}</button>
      </form>
    </Page>
  );
}

function PasswordPage(props: { t: T; forced: boolean; onChanged: () => void }) {
  const { t } = props;
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState<string>();
  const [done, setDone] = useState(false);
  const [minLength, setMinLength] = useState(12);
  useEffect(() => {
    api<{ minLength: number }>('GET', '/api/v1/auth/password-policy').then((p) => setMinLength(p.minLength), () => undefined);
  }, []);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    if (next !== repeat) return setError(t('password.mismatch'));
    try {
      const result = await api<{ requestToken?: string }>('POST', '/api/v1/auth/password', { currentPassword: current, newPassword: next });
      setRequestToken(result.requestToken);
      setDone(true);
      props.onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'UNAUTHENTICATED') setError(t('password.wrongCurrent'));
      else if (e instanceof ApiError && e.code === 'CONFLICT') setError(t('password.same'));
      else if (e instanceof ApiError && e.code === 'THROTTLED') setError(t('login.throttled', { seconds: e.retryAfter ?? 1 }));
      else setError(passwordErrorOf(e, t));
    }
  };
  return (
    <Page title={t('password.title')}>
      {props.forced ? <p class="notice">{t('password.forced')}</p> : null}
      {done ? <p role="status">{t('password.done')}</p> : null}
      <form onSubmit={submit} class="card">
        <Field id="current-password" label={t('password.current')} type="password" value={current} onInput={setCurrent} autocomplete="current-password" />
        <Field id="new-password" label={t('password.new')} type="password" value={next} onInput={setNext} autocomplete="new-password" hint={t('password.rules', { min: minLength })} />
        <Field id="repeat-password" label={t('password.repeat')} type="password" value={repeat} onInput={setRepeat} autocomplete="new-password" />
        <ErrorText error={error} />
        <button type="submit">{t('password.submit')}</button>
      </form>
    </Page>
  );
}

function TotpPage(props: { t: T; required: boolean; onEnabled: () => void }) {
  const { t } = props;
  const [setup, setSetup] = useState<{ secret: string; uri: string }>();
  const [code, setCode] = useState('');
  const [codes, setCodes] = useState<string[]>();
  const [error, setError] = useState<string>();
  const start = async () => {
    setError(undefined);
    try {
      setSetup(await api('POST', '/api/v1/auth/totp/setup'));
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const enable = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const result = await api<{ recoveryCodes: string[]; requestToken?: string }>('POST', '/api/v1/auth/totp/enable', { code });
      setRequestToken(result.requestToken);
      setCodes(result.recoveryCodes);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  return (
    <Page title={t('totp.title')}>
      {props.required ? <p class="notice">{t('totp.required')}</p> : null}
      {codes ? (
        <div class="card">
          <p>{t('totp.codes')}</p>
          <ul class="codes" aria-label={t('totp.codes')}>
            {codes.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
          <button type="button" onClick={props.onEnabled}>
            {t('totp.saved')}
          </button>
        </div>
      ) : setup ? (
        <form onSubmit={enable} class="card">
          <p>
            {t('totp.secret')}: <code id="totp-secret">{setup.secret}</code>
          </p>
          <p>
            {t('totp.uri')}: <code class="wrap">{setup.uri}</code>
          </p>
          <Field id="totp-code" label={t('totp.code')} value={code} onInput={setCode} autocomplete="one-time-code" />
          <ErrorText error={error} />
          <button type="submit">{t('totp.enable')}</button>
        </form>
      ) : (
        <div class="card">
          <ErrorText error={error} />
          <button type="button" onClick={start}>
            {t('totp.start')}
          </button>
        </div>
      )}
    </Page>
  );
}

interface SessionRow {
  ref: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  current: boolean;
}

function SessionsPage(props: { t: T; language: Language; onLoggedOut: () => void }) {
  const { t, language } = props;
  const [sessions, setSessions] = useState<SessionRow[]>();
  const [error, setError] = useState<string>();
  const load = () => api<SessionRow[]>('GET', '/api/v1/auth/sessions').then(setSessions, (e) => setError(messageOf(e)));
  useEffect(() => void load(), []);
  const end = async (ref: string) => {
    await api('DELETE', `/api/v1/auth/sessions/${ref}`).catch((e) => setError(messageOf(e)));
    await load();
  };
  const endAll = async () => {
    await api('POST', '/api/v1/auth/sessions/logout-all').catch((e) => setError(messageOf(e)));
    props.onLoggedOut();
  };
  return (
    <Page title={t('sessions.title')}>
      <ErrorText error={error} />
      {sessions ? (
        <table>
          <thead>
            <tr>
              <th scope="col">{t('sessions.created')}</th>
              <th scope="col">{t('sessions.lastSeen')}</th>
              <th scope="col">{t('sessions.expires')}</th>
              <th scope="col">
                <span class="visually-hidden">{t('sessions.end')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.ref} class={s.current ? 'current' : ''}>
                <td>
                  {formatTime(language, s.createdAt)} {s.current ? <strong>({t('sessions.current')})</strong> : null}
                </td>
                <td>{formatTime(language, s.lastSeenAt)}</td>
                <td>{formatTime(language, s.expiresAt)}</td>
                <td>
                  {s.current ? null : (
                    <button type="button" onClick={() => end(s.ref)}>
                      {t('sessions.end')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>{t('common.loading')}</p>
      )}
      <button type="button" class="danger" onClick={endAll}>
        {t('sessions.endAll')}
      </button>
    </Page>
  );
}

function KeyPasswordPage(props: { t: T; kind: 'invite' | 'reset' }) {
  const { t } = props;
  const [key] = useState(takeKeyFromFragment);
  const [info, setInfo] = useState<{ login: string; organisation: string; role: string }>();
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState<string>();
  const [done, setDone] = useState(false);
  useEffect(() => {
    if (props.kind === 'invite' && key) api<typeof info>('POST', '/api/v1/auth/invitation/peek', { key }).then(setInfo, () => setError(t('invite.invalid')));
  }, []);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    if (password !== repeat) return setError(t('password.mismatch'));
    try {
      await api('POST', props.kind === 'invite' ? '/api/v1/auth/invitation/accept' : '/api/v1/auth/reset', { key, newPassword: password });
      setDone(true);
    } catch (e) {
      setError(e instanceof ApiError && e.status === 401 ? t('invite.invalid') : passwordErrorOf(e, t));
    }
  };
  return (
    <Page title={t(props.kind === 'invite' ? 'invite.title' : 'reset.title')}>
      {info ? <p>{t('invite.for', info)}</p> : null}
      {props.kind === 'reset' ? <p class="notice">{t('reset.dataAccess')}</p> : null}
      {done ? (
        <p role="status">
          {t(props.kind === 'invite' ? 'invite.done' : 'reset.done')}{' '}
          <a href="/app/login" onClick={(e) => (e.preventDefault(), navigate('/app/login'))}>
            {t('login.submit')}
          </a>
        </p>
      ) : key ? (
        <form onSubmit={submit} class="card">
          <Field id="new-password" label={t('password.new')} type="password" value={password} onInput={setPassword} autocomplete="new-password" hint={t('password.rules', { min: 12 })} />
          <Field id="repeat-password" label={t('password.repeat')} type="password" value={repeat} onInput={setRepeat} autocomplete="new-password" />
          <ErrorText error={error} />
          <button type="submit">{t('invite.submit')}</button>
        </form>
      ) : (
        <ErrorText error={t('invite.invalid')} />
      )}
    </Page>
  );
}

/** A grantee's one-time access link: redeemed once, it opens a session limited to the grant. */
function AccessPage(props: { t: T; onOpened: (collection: string) => void }) {
  const { t } = props;
  const [key] = useState(takeKeyFromFragment);
  const [error, setError] = useState<string>();
  const started = useRef(false);
  useEffect(() => {
    if (!key || started.current) return;
    started.current = true; // the key works once: never send it twice
    api<{ requestToken?: string; grant: { collection: string } }>('POST', '/api/v1/auth/access-link', { key, mode: 'cookie' }).then(
      (session) => {
        setRequestToken(session.requestToken);
        props.onOpened(session.grant.collection);
      },
      () => setError(t('access.invalid')),
    );
  }, []);
  return (
    <Page title={t('access.title')}>
      {key && !error ? <p role="status">{t('access.opening')}</p> : <ErrorText error={error ?? t('access.invalid')} />}
    </Page>
  );
}

interface LedgerEntry {
  seq: number;
  time: string;
  actor: string;
  action: string;
  resource: string;
  outcome: string;
}
interface EntryWithProof {
  seq: number;
  entry: string;
  leafHash: string;
  payload: unknown;
  treeSize: number;
  proof: string[];
  checkpoint: string;
}
interface VerifyReport {
  ok: boolean;
  treeSize: number;
  rootHash: string;
  checkpointsChecked: number;
  findings: { kind: string; message: string }[];
}

function LedgerPage(props: { t: T; language: Language; me: Me }) {
  const { t, language, me } = props;
  const [tenants, setTenants] = useState<{ id: string; name: string }[]>([]);
  const [scope, setScope] = useState('');
  // A data subject is named by e-mail address or name (the DPO's data session turns them into blind indexes).
  const [filter, setFilter] = useState({ from: '', to: '', actor: '', action: '', email: '', name: '' });
  const [entries, setEntries] = useState<LedgerEntry[]>();
  const [detail, setDetail] = useState<{ entry: EntryWithProof; valid: boolean; signed: boolean }>();
  const [report, setReport] = useState<VerifyReport>();
  const [checkpoint, setCheckpoint] = useState<string>();
  const [error, setError] = useState<string>();
  const choosesTenant = me.kind === 'operator' || me.kind === 'reseller';
  const isDpo = me.kind === 'tenant' && me.role === 'dpo';
  // Exports: the DPO of its tenant's ledger, the operator of the platform ledger.
  const exports = isDpo || (me.kind === 'operator' && scope === '');
  const [exported, setExported] = useState<string>();
  const scoped = (path: string, params: Record<string, string> = {}) => {
    const query = new URLSearchParams({ ...(scope ? { tenantId: scope } : {}), ...Object.fromEntries(Object.entries(params).filter(([, v]) => v !== '')) });
    return `${path}${query.size > 0 ? `?${query.toString()}` : ''}`;
  };
  const toIso = (d: string) => (d ? new Date(d).toISOString() : '');
  const filterParams = () => ({ ...filter, from: toIso(filter.from), to: toIso(filter.to), ...(isDpo ? {} : { email: '', name: '' }) });
  const search = async (event?: Event) => {
    event?.preventDefault();
    setError(undefined);
    setDetail(undefined);
    try {
      const result = await api<{ entries: LedgerEntry[] }>('GET', scoped('/api/v1/ledger/entries', filterParams()));
      setEntries(result.entries);
      setCheckpoint((await api<{ checkpoint: string }>('GET', scoped('/api/v1/ledger/checkpoint'))).checkpoint);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    if (choosesTenant) api<{ id: string; name: string }[]>('GET', '/api/v1/tenants').then(setTenants, () => undefined);
  }, []);
  useEffect(() => void search(), [scope]);
  const open = async (seq: number) => {
    setError(undefined);
    try {
      const entry = await api<EntryWithProof>('GET', scoped(`/api/v1/ledger/entries/${seq}`));
      const { root } = checkpointRoot(entry.checkpoint);
      // The checkpoint's signature too, with the ledger's published key (WebCrypto ECDSA P-256).
      const { publicKey } = await api<{ publicKey: string }>('GET', scoped('/api/v1/ledger/checkpoint'));
      const [valid, signed] = await Promise.all([verifyInclusion(entry.entry, entry.seq, entry.treeSize, entry.proof, root), verifyCheckpointSignature(entry.checkpoint, publicKey)]);
      setDetail({ entry, valid, signed });
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const verify = async () => {
    setError(undefined);
    try {
      setReport(await api<VerifyReport>('POST', scoped('/api/v1/ledger/verify')));
      setCheckpoint((await api<{ checkpoint: string }>('GET', scoped('/api/v1/ledger/checkpoint'))).checkpoint);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const set = (key: keyof typeof filter) => (value: string) => setFilter({ ...filter, [key]: value });
  /** Downloads the export (and for CSV the covering checkpoint beside it, as the CLI writes it). */
  const exportAs = async (format: 'json' | 'csv') => {
    setError(undefined);
    setExported(undefined);
    try {
      const response = await fetch(scoped('/api/v1/ledger/export', { ...filterParams(), format }), { credentials: 'same-origin', headers: { accept: format === 'csv' ? 'text/csv' : 'application/json' } });
      const body = await response.text();
      if (!response.ok) throw new Error((JSON.parse(body) as { message?: string }).message ?? response.statusText);
      const name = `ledger-export-${new Date().toISOString().slice(0, 10)}.${format}`;
      const save = (file: string, text: string, type: string) => {
        const url = URL.createObjectURL(new Blob([text], { type }));
        const a = document.createElement('a');
        a.href = url;
        a.download = file;
        a.click();
        URL.revokeObjectURL(url);
      };
      let count: number;
      if (format === 'csv') {
        const checkpoint = new TextDecoder().decode(Uint8Array.from(atob(response.headers.get('x-tresor-checkpoint') ?? ''), (c) => c.charCodeAt(0)));
        save(name, body, 'text/csv');
        save(`${name}.checkpoint`, checkpoint, 'text/plain');
        count = Math.max(0, body.trim().split('\r\n').length - 1);
      } else {
        save(name, body, 'application/json');
        count = (JSON.parse(body) as { entries: unknown[] }).entries.length;
      }
      setExported(t('ledger.exported', { count, file: name }));
    } catch (e) {
      setError(messageOf(e));
    }
  };
  return (
    <Page title={t('ledger.title')}>
      {choosesTenant ? (
        <div class="field">
          <label for="scope">{t('ledger.scope')}</label>
          <select id="scope" value={scope} onChange={(e) => setScope((e.target as HTMLSelectElement).value)}>
            {me.kind === 'operator' ? <option value="">{t('ledger.platform')}</option> : null}
            {tenants.map((tn) => (
              <option key={tn.id} value={tn.id}>
                {tn.name}
              </option>
            ))}
          </select>
        </div>
      ) : null}
      <form onSubmit={search} class="card filters" aria-label={t('ledger.filter')}>
        <Field id="from" label={t('ledger.from')} type="datetime-local" value={filter.from} onInput={set('from')} required={false} />
        <Field id="to" label={t('ledger.to')} type="datetime-local" value={filter.to} onInput={set('to')} required={false} />
        <Field id="actor" label={t('ledger.actor')} value={filter.actor} onInput={set('actor')} required={false} />
        <Field id="action" label={t('ledger.action')} value={filter.action} onInput={set('action')} required={false} />
        {isDpo ? (
          <>
            <Field id="subject-email" label={t('ledger.subjectEmail')} type="email" value={filter.email} onInput={set('email')} required={false} />
            <Field id="subject-name" label={t('ledger.subjectName')} value={filter.name} onInput={set('name')} required={false} />
          </>
        ) : null}
        <button type="submit">{t('ledger.filter')}</button>
        {exports ? (
          <>
            <button type="button" onClick={() => exportAs('json')}>
              {t('ledger.exportJson')}
            </button>
            <button type="button" onClick={() => exportAs('csv')}>
              {t('ledger.exportCsv')}
            </button>
          </>
        ) : null}
      </form>
      {exported ? (
        <p role="status" class="ok">
          {exported}
        </p>
      ) : null}
      <ErrorText error={error} />
      <div class="card">
        <button type="button" onClick={verify}>
          {t('ledger.verify')}
        </button>
        {report ? (
          report.ok ? (
            <p role="status" class="ok">
              ✓ {t('ledger.verifyOk', { size: report.treeSize, checkpoints: report.checkpointsChecked })}
            </p>
          ) : (
            <div role="alert" class="error">
              <p>{t('ledger.verifyFailed')}</p>
              <ul>
                {report.findings.map((f) => (
                  <li key={f.message}>{f.message}</li>
                ))}
              </ul>
            </div>
          )
        ) : null}
        {checkpoint ? (
          <details>
            <summary>{t('ledger.checkpoint')}</summary>
            <pre>{checkpoint}</pre>
          </details>
        ) : null}
      </div>
      {entries === undefined ? (
        <p>{t('common.loading')}</p>
      ) : entries.length === 0 ? (
        <p>{t('ledger.none')}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">{t('ledger.seq')}</th>
              <th scope="col">{t('ledger.time')}</th>
              <th scope="col">{t('ledger.actor')}</th>
              <th scope="col">{t('ledger.action')}</th>
              <th scope="col">{t('ledger.resource')}</th>
              <th scope="col">{t('ledger.outcome')}</th>
              <th scope="col">
                <span class="visually-hidden">{t('ledger.open')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.seq}>
                <td>{e.seq}</td>
                <td>{formatTime(language, e.time)}</td>
                <td class="mono">{e.actor}</td>
                <td>{e.action}</td>
                <td class="mono">{e.resource}</td>
                <td>{e.outcome}</td>
                <td>
                  <button type="button" onClick={() => open(e.seq)} aria-label={`${t('ledger.open')} ${e.seq}`}>
                    {t('ledger.open')}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {detail ? (
        <div class="card detail" role="region" aria-label={t('ledger.entry', { seq: detail.entry.seq })}>
          <h2>{t('ledger.entry', { seq: detail.entry.seq })}</h2>
          <p role="status" class={detail.valid ? 'ok' : 'error'}>
            {detail.valid ? `✓ ${t('ledger.proofValid')}` : `✗ ${t('ledger.proofInvalid')}`}
          </p>
          <p role="status" class={detail.signed ? 'ok' : 'error'}>
            {detail.signed ? `✓ ${t('ledger.signatureValid')}` : `✗ ${t('ledger.signatureInvalid')}`}
          </p>
          <pre>{new TextDecoder().decode(Uint8Array.from(atob(detail.entry.entry), (c) => c.charCodeAt(0)))}</pre>
          <p>
            {t('ledger.leafHash')}: <code class="wrap">{detail.entry.leafHash}</code>
          </p>
          <p>
            {t('ledger.payload')}: {detail.entry.payload === null ? t('ledger.payloadExpired') : <code class="wrap">{JSON.stringify(detail.entry.payload)}</code>}
          </p>
          <details>
            <summary>{t('ledger.proof', { count: detail.entry.proof.length, size: detail.entry.treeSize })}</summary>
            <ol>
              {detail.entry.proof.map((h) => (
                <li key={h}>
                  <code>{h}</code>
                </li>
              ))}
            </ol>
          </details>
          <details>
            <summary>{t('ledger.checkpoint')}</summary>
            <pre>{detail.entry.checkpoint}</pre>
          </details>
          <button type="button" onClick={() => setDetail(undefined)}>
            {t('common.close')}
          </button>
        </div>
      ) : null}
    </Page>
  );
}

function LockedPage(props: { t: T }) {
  const { t } = props;
  return (
    <Page title={t('locked.title')}>
      <p role="alert" class="error">
        {t('locked.text')}
      </p>
      <button type="button" onClick={() => navigate('/app/login')}>
        {t('common.back')}
      </button>
    </Page>
  );
}

// ---- the app ---------------------------------------------------------------------------------------

// What each kind of account sees (the server decides every request; this only shapes the navigation).
const isDataUser = (me: Me) => me.kind === 'tenant' && (me.role === 'member' || me.role === 'dpo');
const isGrantee = (me: Me) => me.kind === 'external';
const isAdministrator = (me: Me) => ['operator', 'reseller', 'installer'].includes(me.kind) || (me.kind === 'tenant' && me.role === 'admin');
const readsLedger = (me: Me) => me.kind === 'operator' || me.kind === 'reseller' || (me.kind === 'tenant' && me.role === 'dpo');
/** SecuPass keys are for the people who send and receive transfers, not for platform administrators. */
const hasSecuPass = (me: Me) => !['operator', 'reseller', 'installer'].includes(me.kind);
const homeOf = (me: Me) => (isDataUser(me) || isGrantee(me) ? '/app/contacts' : readsLedger(me) ? '/app/ledger' : isAdministrator(me) ? '/app/users' : '/app/sessions');

function App() {
  const [language, setLanguage] = useState<Language>(initialLanguage);
  const [me, setMe] = useState<Me | undefined | 'loading'>('loading');
  const path = usePath();
  const t: T = (key, vars) => translate(language, key, vars);
  const refresh = async () => setMe(await whoAmI().catch(() => undefined));
  useEffect(() => {
    rememberLanguage(language);
  }, [language]);
  useEffect(() => {
    void refresh();
    const onVisible = () => document.visibilityState === 'visible' && void whoAmI().catch(() => undefined);
    document.addEventListener('visibilitychange', onVisible);
    let checking = false;
    const off = onApiError((error) => {
      if (error.code === 'SESSION_LOCKED') {
        setMe(undefined);
        navigate('/app/locked');
      } else if (error.code === 'ACTION_REQUIRED') void refresh();
      else if (error.code === 'UNAUTHENTICATED' && !checking) {
        // The session may have ended elsewhere (logged out from another browser, timed out): ask once,
        // and go back to the login if so. A wrong current password leaves the session as it is.
        checking = true;
        void refresh().finally(() => (checking = false));
      }
    });
    return () => {
      document.removeEventListener('visibilitychange', onVisible);
      off();
    };
  }, []);

  const publicPages: Record<string, () => preact.JSX.Element> = {
    '/app/invite': () => <KeyPasswordPage t={t} kind="invite" />,
    '/app/reset': () => <KeyPasswordPage t={t} kind="reset" />,
    '/app/locked': () => <LockedPage t={t} />,
    '/app/access': () => <AccessPage t={t} onOpened={(collection) => void refresh().then(() => navigate(`/app/${collection}`))} />,
  };
  let content: preact.JSX.Element;
  if (publicPages[path]) content = publicPages[path]();
  else if (path.startsWith(UPLOAD_PREFIX)) content = <UploadPage key={path} t={t} language={language} path={path} Page={Page} />;
  else if (path.startsWith(RECEIVE_PREFIX)) {
    // A transfer link: public (level 1), or for the recipient's login (levels 2–4).
    content = (
      <ReceivePage
        key={path}
        t={t}
        language={language}
        me={me}
        path={path}
        Page={Page}
        logout={async () => {
          await api('POST', '/api/v1/auth/logout').catch(() => undefined);
          setMe(undefined);
        }}
      />
    );
  }
  else if (me === 'loading') content = <p>{t('common.loading')}</p>;
  else if (!me) {
    if (path !== '/app/login') queueMicrotask(() => navigate('/app/login'));
    // Back to a transfer link that asked for the login, if any (kept for this tab only).
    content = (
      <LoginPage
        t={t}
        onLoggedIn={() => {
          const back = returnPath();
          if (back) {
            setMe('loading'); // the link page waits for the session before it opens the transfer
            navigate(back);
          }
          void refresh().then(() => (back ? undefined : navigate('/app/')));
        }}
      />
    );
  } else if (me.pending.includes('password_change')) {
    content = <PasswordPage t={t} forced={true} onChanged={() => void refresh()} />;
  } else if (me.pending.includes('second_factor_setup') || path === '/app/totp') {
    content = <TotpPage t={t} required={me.pending.includes('second_factor_setup')} onEnabled={() => void refresh().then(() => navigate('/app/'))} />;
  } else if (path === '/app/sessions') {
    content = <SessionsPage t={t} language={language} onLoggedOut={() => (setMe(undefined), navigate('/app/login'))} />;
  } else if (path === '/app/password') {
    content = <PasswordPage t={t} forced={false} onChanged={() => void refresh()} />;
  } else if ((path === '/app/contacts' || path === '/app/jobs') && (isDataUser(me) || isGrantee(me))) {
    content = <RecordsPage t={t} collection={path === '/app/jobs' ? JOBS : CONTACTS} readOnly={isGrantee(me)} Page={Page} />;
  } else if (path === '/app/grants' && isDataUser(me)) {
    content = <GrantsPage t={t} me={me} Page={Page} />;
  } else if (path === '/app/transfers' && isDataUser(me)) {
    content = <TransfersPage t={t} me={me} language={language} Page={Page} />;
  } else if (path === '/app/secupass' && hasSecuPass(me)) {
    content = <SecuPassPage t={t} language={language} Page={Page} />;
  } else if (path === '/app/users' && isAdministrator(me)) {
    content = <UsersPage t={t} me={me} Page={Page} />;
  } else if (path === '/app/ledger' && readsLedger(me)) {
    content = <LedgerPage key={me.accountId} t={t} language={language} me={me} />;
  } else {
    const home = homeOf(me);
    if (path !== home) queueMicrotask(() => navigate(home));
    content = <p>{t('common.loading')}</p>;
  }

  const logout = async () => {
    await api('POST', '/api/v1/auth/logout').catch(() => undefined);
    setMe(undefined);
    navigate('/app/login');
  };
  const link = (to: string, key: TextKey) => (
    <a href={to} aria-current={path === to ? 'page' : undefined} onClick={(e) => (e.preventDefault(), navigate(to))}>
      {t(key)}
    </a>
  );
  return (
    <>
      <a class="skip" href="#main">
        {t('app.skip')}
      </a>
      <header>
        <span class="brand">{t('app.name')}</span>
        {me && me !== 'loading' && me.pending.length === 0 ? (
          <nav aria-label="Tresor">
            {isDataUser(me) || isGrantee(me) ? link('/app/contacts', 'nav.contacts') : null}
            {isDataUser(me) || isGrantee(me) ? link('/app/jobs', 'nav.jobs') : null}
            {isDataUser(me) ? link('/app/grants', 'nav.grants') : null}
            {isDataUser(me) ? link('/app/transfers', 'nav.transfers') : null}
            {hasSecuPass(me) ? link('/app/secupass', 'nav.secupass') : null}
            {readsLedger(me) ? link('/app/ledger', 'nav.ledger') : null}
            {isAdministrator(me) ? link('/app/users', 'nav.users') : null}
            {link('/app/sessions', 'nav.sessions')}
            {link('/app/password', 'nav.password')}
            {link('/app/totp', 'nav.totp')}
          </nav>
        ) : null}
        <button type="button" class="link" lang={language === 'de' ? 'en' : 'de'} aria-label={`${t('nav.language')} – ${t('nav.languageLabel')}`} onClick={() => setLanguage(language === 'de' ? 'en' : 'de')}>
          {t('nav.language')}
        </button>
        {me && me !== 'loading' ? (
          <button type="button" class="link" onClick={logout}>
            {t('nav.logout')}
          </button>
        ) : null}
      </header>
      <main id="main">
        {me && me !== 'loading' && me.pending.length === 0 && isDataUser(me) ? <RecoveryCodeNotice t={t} path={path} /> : null}
        {content}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);

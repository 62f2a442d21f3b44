import { Alerts } from './ui.js';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, currentRequestToken, setRequestToken } from './api.js';
import type { TextKey } from './i18n.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** A record of a collection: its id, maybe its book, and the fields in clear (the server decrypted them). */
type RecordRow = { id: string; book?: 'shared' | 'personal' } & Record<string, string | null>;

/** What the page needs to know of a collection (the server's spec decides what is encrypted and indexed). */
export interface CollectionView {
  path: 'contacts' | 'jobs';
  fields: readonly string[];
  required: readonly string[];
  /** Fields with a blind index: exact-match search. */
  search: readonly string[];
  /** Times, entered as local date and time and sent as UTC. */
  times: readonly string[];
  books: boolean;
}

export const CONTACTS: CollectionView = {
  path: 'contacts',
  fields: ['name', 'email', 'phone', 'address', 'company', 'notes'],
  required: ['name'],
  search: ['name', 'email', 'phone'],
  times: [],
  books: true,
};
export const JOBS: CollectionView = {
  path: 'jobs',
  fields: ['customer_name', 'address', 'window_start', 'window_end', 'asset_id', 'notes'],
  required: ['customer_name', 'address', 'window_start', 'window_end'],
  search: ['customer_name', 'asset_id'],
  times: ['window_start', 'window_end'],
  books: false,
};

const blank = (fields: readonly string[]) => Object.fromEntries(fields.map((f) => [f, ''])) as Record<string, string>;

/** An ISO time (UTC, as stored) as the value of a datetime-local input: the same instant in local time. */
export function localInputValue(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
}

/** The form's values as the API's body: empty fields become null, local times become UTC. */
const bodyOf = (c: CollectionView, values: Record<string, string>) =>
  Object.fromEntries(
    c.fields.map((f) => {
      const v = (values[f] ?? '').trim();
      return [f, v === '' ? null : c.times.includes(f) ? new Date(v).toISOString() : v];
    }),
  );

function Input(props: { id: string; label: string; value: string; onInput: (v: string) => void; required?: boolean; type?: 'text' | 'datetime-local' }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      {props.type === 'datetime-local' ? (
        <input id={props.id} name={props.id} type="datetime-local" value={props.value} required={props.required ?? false} onInput={(e) => props.onInput((e.target as HTMLInputElement).value)} />
      ) : (
        <input id={props.id} name={props.id} type="text" value={props.value} required={props.required ?? false} onInput={(e) => props.onInput((e.target as HTMLInputElement).value)} />
      )}
    </div>
  );
}

/**
 * A collection for data users (address book, jobs): unlock data access, search, add, edit, delete,
 * import and export. External accounts within a grant see the same page read-only.
 */
export function RecordsPage(props: { t: T; collection: CollectionView; readOnly: boolean; Page: (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element }) {
  const { t, Page, collection: c, readOnly } = props;
  const label = (field: string) => t(`${c.path}.${field}` as TextKey);
  const [status, setStatus] = useState<{ dataAccess: boolean; waiting: { id: string; login: string; role: string }[] }>();
  const [contacts, setContacts] = useState<RecordRow[]>();
  const [query, setQuery] = useState(() => blank(c.search));
  const [draft, setDraft] = useState(() => blank(c.fields));
  const [book, setBook] = useState<'shared' | 'personal'>('shared');
  const [activation, setActivation] = useState({ activationKey: '', recoveryCode: '' });
  const [progress, setProgress] = useState<{ done: number; total: number }>();
  const [importResult, setImportResult] = useState<{ created: number; errors: { line: number; message: string }[] }>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();
  /** The record being edited (its id) and the edit form's values. */
  const [editing, setEditing] = useState<{ id: string; values: Record<string, string> }>();

  const load = async () => {
    setError(undefined);
    try {
      const s = await api<NonNullable<typeof status>>('GET', '/api/v1/keys/status');
      setStatus(s);
      if (s.dataAccess) {
        const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v.trim() !== ''));
        setContacts(await api<RecordRow[]>('GET', `/api/v1/${c.path}${params.size > 0 ? `?${params.toString()}` : ''}`));
      }
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    setContacts(undefined);
    setQuery(blank(c.search));
    setDraft(blank(c.fields));
    setEditing(undefined);
    setNotice(undefined);
    void load();
  }, [c.path]);

  const activate = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      await api('POST', '/api/v1/keys/activate', activation.activationKey ? { activationKey: activation.activationKey.trim() } : { recoveryCode: activation.recoveryCode.trim() });
      window.dispatchEvent(new Event('tresor:keys-changed')); // the recovery code notice (keys.tsx)
      await load();
    } catch (e) {
      setError(e instanceof ApiError && e.status === 401 ? t('invite.invalid') : messageOf(e));
    }
  };
  const add = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setNotice(undefined);
    try {
      const body = bodyOf(c, draft);
      await api('POST', `/api/v1/${c.path}`, c.books ? { ...body, book } : body);
      setDraft(blank(c.fields));
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  /** Runs a change, reloads the list, then shows what went wrong (load() clears the error it finds). */
  const thenReload = async (change: Promise<unknown>) => {
    const failed = await change.then(
      () => undefined,
      (e: unknown) => (e instanceof ApiError && e.status === 404 ? t('records.gone') : messageOf(e)),
    );
    await load();
    if (failed) setError(failed);
  };
  const remove = async (id: string) => {
    setNotice(undefined);
    if (editing?.id === id) setEditing(undefined);
    await thenReload(api('DELETE', `/api/v1/${c.path}/${id}`));
  };
  const startEdit = (r: RecordRow) => {
    setError(undefined);
    setNotice(undefined);
    setEditing({ id: r.id, values: Object.fromEntries(c.fields.map((f) => [f, r[f] ? (c.times.includes(f) ? localInputValue(r[f]) : r[f]) : ''])) });
    // The form appears above the list: move the focus into it, for keyboard and screen-reader users.
    requestAnimationFrame(() => document.getElementById(`edit-${c.fields[0]!}`)?.focus());
  };
  /** Replaces the record with the form's values (PUT); the server checks them and says what to fix. */
  const save = async (event: Event) => {
    event.preventDefault();
    if (!editing) return;
    setError(undefined);
    setNotice(undefined);
    try {
      await api('PUT', `/api/v1/${c.path}/${editing.id}`, bodyOf(c, editing.values));
      setEditing(undefined);
      setNotice(t('records.saved'));
      await load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        setEditing(undefined);
        await load(); // clears the error: say what happened after it
        setError(t('records.gone'));
      } else setError(messageOf(e));
    }
  };
  const grant = async (accountId: string) => {
    await thenReload(api('POST', '/api/v1/keys/grant', { accountId }));
  };

  /** Uploads the file and reads the JSON lines the server streams back: progress, then the result. */
  const importFile = async (file: File) => {
    setError(undefined);
    setImportResult(undefined);
    setProgress({ done: 0, total: 0 });
    try {
      const response = await fetch(`/api/v1/${c.path}/import${c.books ? `?book=${book}` : ''}`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'text/csv', ...requestTokenHeader() },
        body: await file.text(),
      });
      rememberToken(response);
      if (!response.ok || !response.body) throw new Error(((await response.json()) as { message?: string }).message ?? response.statusText);
      await readJsonLines<{ done?: number; total?: number; created?: number; errors?: { line: number; message: string }[] }>(response, (line) => {
        if (line.created !== undefined) setImportResult({ created: line.created, errors: line.errors ?? [] });
        else setProgress({ done: line.done ?? 0, total: line.total ?? 0 });
      });
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const exportCsv = async () => {
    setError(undefined);
    const response = await fetch(`/api/v1/${c.path}/export?format=csv`, { credentials: 'same-origin' });
    rememberToken(response);
    if (!response.ok) {
      const message = ((await response.json().catch(() => ({}))) as { message?: string }).message ?? response.statusText;
      setError(t('records.exportFailed', { message }));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = `${c.path}.csv`;
    a.click();
    URL.revokeObjectURL(url);
  };

  return (
    <Page title={t(`${c.path}.title` as TextKey)}>
      <Alerts error={error} notice={notice} />
      {status === undefined ? (
        <p>{t('common.loading')}</p>
      ) : !status.dataAccess && readOnly ? (
        <p class="notice">{t('grants.noneActive')}</p>
      ) : !status.dataAccess ? (
        <form class="card" onSubmit={activate}>
          <p class="notice">{t('contacts.noAccess')}</p>
          <Input id="activation-key" label={t('contacts.activationKey')} value={activation.activationKey} onInput={(v) => setActivation({ ...activation, activationKey: v })} />
          <Input id="recovery-code" label={t('contacts.recoveryCode')} value={activation.recoveryCode} onInput={(v) => setActivation({ ...activation, recoveryCode: v })} />
          <button type="submit">{t('contacts.activate')}</button>
        </form>
      ) : (
        <>
          {status.waiting.length > 0 ? (
            <div class="card">
              <p>{t('contacts.waiting')}</p>
              <ul>
                {status.waiting.map((w) => (
                  <li key={w.id}>
                    {w.login} ({w.role}){' '}
                    <button type="button" onClick={() => grant(w.id)}>
                      {t('contacts.grant')}
                    </button>
                  </li>
                ))}
              </ul>
            </div>
          ) : null}
          <form class="card filters" aria-label={t('contacts.search')} onSubmit={(e) => (e.preventDefault(), void load())}>
            {c.search.map((f) => (
              <Input key={f} id={`q-${f}`} label={label(f)} value={query[f] ?? ''} onInput={(v) => setQuery({ ...query, [f]: v })} />
            ))}
            <button type="submit">{t('contacts.search')}</button>
          </form>
          {editing && !readOnly ? (
            <form class="card filters" aria-label={t(`${c.path}.edit` as TextKey)} onSubmit={save}>
              {c.fields.map((f) => (
                <Input
                  key={f}
                  id={`edit-${f}`}
                  type={c.times.includes(f) ? 'datetime-local' : 'text'}
                  label={label(f)}
                  value={editing.values[f] ?? ''}
                  required={c.required.includes(f)}
                  onInput={(v) => setEditing({ ...editing, values: { ...editing.values, [f]: v } })}
                />
              ))}
              <button type="submit">{t('records.save')}</button>{' '}
              <button type="button" class="link" onClick={() => setEditing(undefined)}>
                {t('records.cancel')}
              </button>
            </form>
          ) : null}
          {contacts === undefined ? null : contacts.length === 0 ? (
            <p>{t(`${c.path}.none` as TextKey)}</p>
          ) : (
            <table>
              <thead>
                <tr>
                  {c.fields.map((f) => (
                    <th scope="col" key={f}>
                      {label(f)}
                    </th>
                  ))}
                  {c.books ? <th scope="col">{t('contacts.book')}</th> : null}
                  {readOnly ? null : (
                    <th scope="col">
                      <span class="visually-hidden">{t('records.actions')}</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {contacts.map((r) => (
                  <tr key={r.id}>
                    {c.fields.map((f) => (
                      <td key={f}>{c.times.includes(f) && r[f] ? new Date(r[f]).toLocaleString() : (r[f] ?? '')}</td>
                    ))}
                    {c.books ? <td>{t(r.book === 'shared' ? 'contacts.shared' : 'contacts.personal')}</td> : null}
                    {readOnly ? null : (
                      <td>
                        <button type="button" aria-label={`${t('records.edit')}: ${r[c.fields[0]!] ?? ''}`} onClick={() => startEdit(r)}>
                          {t('records.edit')}
                        </button>{' '}
                        <button type="button" class="danger" aria-label={`${t('contacts.delete')}: ${r[c.fields[0]!] ?? ''}`} onClick={() => remove(r.id)}>
                          {t('contacts.delete')}
                        </button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {readOnly ? null : (
          <>
          <form class="card filters" aria-label={t(`${c.path}.add` as TextKey)} onSubmit={add}>
            {c.fields.map((f) => (
              <Input
                key={f}
                id={`new-${f}`}
                type={c.times.includes(f) ? 'datetime-local' : 'text'}
                label={label(f)}
                value={draft[f] ?? ''}
                required={c.required.includes(f)}
                onInput={(v) => setDraft({ ...draft, [f]: v })}
              />
            ))}
            {c.books ? (
            <div class="field">
              <label for="book">{t('contacts.book')}</label>
              <select id="book" value={book} onChange={(e) => setBook((e.target as HTMLSelectElement).value as 'shared' | 'personal')}>
                <option value="shared">{t('contacts.shared')}</option>
                <option value="personal">{t('contacts.personal')}</option>
              </select>
            </div>
            ) : null}
            <button type="submit">{t(`${c.path}.add` as TextKey)}</button>
          </form>
          <div class="card">
            <div class="field">
              <label for="import-file">{t(`${c.path}.importFile` as TextKey)}</label>
              <input id="import-file" type="file" accept=".csv,text/csv" onChange={(e) => {
                const file = (e.target as HTMLInputElement).files?.[0];
                if (file) void importFile(file);
              }} />
            </div>
            {progress ? (
              <p>
                <label for="import-progress">{t('contacts.progress')}</label>{' '}
                <progress id="import-progress" max={progress.total || 1} value={progress.done} />
              </p>
            ) : null}
            {importResult ? (
              <div role="status">
                <p>{t(`${c.path}.importDone` as TextKey, { created: importResult.created, errors: importResult.errors.length })}</p>
                <ul>
                  {importResult.errors.map((e) => (
                    <li key={e.line}>{t('contacts.importLine', e)}</li>
                  ))}
                </ul>
              </div>
            ) : null}
            <button type="button" onClick={exportCsv}>
              {t('contacts.export')}
            </button>
          </div>
          </>
          )}
        </>
      )}
    </Page>
  );
}

/** Reads an answer of JSON lines (long work: progress lines, then the result or `{ error }`) as it arrives. */
export async function readJsonLines<L>(response: Response, onLine: (line: L) => void): Promise<void> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffered.slice(0, newline)) as L & { error?: string };
      buffered = buffered.slice(newline + 1);
      if (typeof line.error === 'string') throw new Error(line.error);
      onLine(line);
    }
  }
}

// Streamed answers use fetch directly; the request token travels the same way.
export const requestTokenHeader = (): Record<string, string> => {
  const token = currentRequestToken();
  return token ? { 'x-tresor-request-token': token } : {};
};
export const rememberToken = (response: Response) => setRequestToken(response.headers.get('x-tresor-request-token') ?? undefined);

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, currentRequestToken, setRequestToken } from './api.js';
import type { TextKey } from './i18n.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

interface Contact {
  id: string;
  book: 'shared' | 'personal';
  name: string;
  email: string | null;
  phone: string | null;
  address: string | null;
  company: string | null;
  notes: string | null;
}

const FIELDS = ['name', 'email', 'phone', 'address', 'company', 'notes'] as const;
type ContactField = (typeof FIELDS)[number];

function Input(props: { id: string; label: string; value: string; onInput: (v: string) => void; required?: boolean }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input id={props.id} name={props.id} value={props.value} required={props.required ?? false} onInput={(e) => props.onInput((e.target as HTMLInputElement).value)} />
    </div>
  );
}

/** The address book for data users: unlock data access, search, add, delete, import and export. */
export function ContactsPage(props: { t: T; Page: (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element }) {
  const { t, Page } = props;
  const [status, setStatus] = useState<{ dataAccess: boolean; waiting: { id: string; login: string; role: string }[] }>();
  const [contacts, setContacts] = useState<Contact[]>();
  const [query, setQuery] = useState({ name: '', email: '', phone: '' });
  const [draft, setDraft] = useState<Record<ContactField, string>>({ name: '', email: '', phone: '', address: '', company: '', notes: '' });
  const [book, setBook] = useState<'shared' | 'personal'>('shared');
  const [activation, setActivation] = useState({ activationKey: '', recoveryCode: '' });
  const [progress, setProgress] = useState<{ done: number; total: number }>();
  const [importResult, setImportResult] = useState<{ created: number; errors: { line: number; message: string }[] }>();
  const [error, setError] = useState<string>();

  const load = async () => {
    setError(undefined);
    try {
      const s = await api<NonNullable<typeof status>>('GET', '/api/v1/keys/status');
      setStatus(s);
      if (s.dataAccess) {
        const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v.trim() !== ''));
        setContacts(await api<Contact[]>('GET', `/api/v1/contacts${params.size > 0 ? `?${params.toString()}` : ''}`));
      }
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => void load(), []);

  const activate = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      await api('POST', '/api/v1/keys/activate', activation.activationKey ? { activationKey: activation.activationKey.trim() } : { recoveryCode: activation.recoveryCode.trim() });
      await load();
    } catch (e) {
      setError(e instanceof ApiError && e.status === 401 ? t('invite.invalid') : messageOf(e));
    }
  };
  const add = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const body = Object.fromEntries(FIELDS.map((f) => [f, draft[f].trim() === '' ? null : draft[f].trim()]));
      await api('POST', '/api/v1/contacts', { ...body, name: draft.name, book });
      setDraft({ name: '', email: '', phone: '', address: '', company: '', notes: '' });
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const remove = async (id: string) => {
    await api('DELETE', `/api/v1/contacts/${id}`).catch((e) => setError(messageOf(e)));
    await load();
  };
  const grant = async (accountId: string) => {
    await api('POST', '/api/v1/keys/grant', { accountId }).catch((e) => setError(messageOf(e)));
    await load();
  };

  /** Uploads the file and reads the JSON lines the server streams back: progress, then the result. */
  const importFile = async (file: File) => {
    setError(undefined);
    setImportResult(undefined);
    setProgress({ done: 0, total: 0 });
    try {
      const response = await fetch(`/api/v1/contacts/import?book=${book}`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'text/csv', ...requestTokenHeader() },
        body: await file.text(),
      });
      rememberToken(response);
      if (!response.ok || !response.body) throw new Error(((await response.json()) as { message?: string }).message ?? response.statusText);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let newline;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = JSON.parse(buffered.slice(0, newline)) as { done?: number; total?: number; created?: number; errors?: { line: number; message: string }[] };
          buffered = buffered.slice(newline + 1);
          if (line.created !== undefined) setImportResult({ created: line.created, errors: line.errors ?? [] });
          else setProgress({ done: line.done ?? 0, total: line.total ?? 0 });
        }
      }
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const exportCsv = async () => {
    const response = await fetch('/api/v1/contacts/export?format=csv', { credentials: 'same-origin' });
    rememberToken(response);
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = 'contacts.csv';
    a.click();
    URL.revokeObjectURL(url);
  };

  return (
    <Page title={t('contacts.title')}>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {status === undefined ? (
        <p>{t('common.loading')}</p>
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
            <Input id="q-name" label={t('contacts.name')} value={query.name} onInput={(v) => setQuery({ ...query, name: v })} />
            <Input id="q-email" label={t('contacts.email')} value={query.email} onInput={(v) => setQuery({ ...query, email: v })} />
            <Input id="q-phone" label={t('contacts.phone')} value={query.phone} onInput={(v) => setQuery({ ...query, phone: v })} />
            <button type="submit">{t('contacts.search')}</button>
          </form>
          {contacts === undefined ? null : contacts.length === 0 ? (
            <p>{t('contacts.none')}</p>
          ) : (
            <table>
              <thead>
                <tr>
                  {FIELDS.map((f) => (
                    <th scope="col" key={f}>
                      {t(`contacts.${f}`)}
                    </th>
                  ))}
                  <th scope="col">{t('contacts.book')}</th>
                  <th scope="col">
                    <span class="visually-hidden">{t('contacts.delete')}</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {contacts.map((c) => (
                  <tr key={c.id}>
                    {FIELDS.map((f) => (
                      <td key={f}>{c[f] ?? ''}</td>
                    ))}
                    <td>{t(c.book === 'shared' ? 'contacts.shared' : 'contacts.personal')}</td>
                    <td>
                      <button type="button" class="danger" aria-label={`${t('contacts.delete')}: ${c.name}`} onClick={() => remove(c.id)}>
                        {t('contacts.delete')}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <form class="card filters" aria-label={t('contacts.add')} onSubmit={add}>
            {FIELDS.map((f) => (
              <Input key={f} id={`new-${f}`} label={t(`contacts.${f}`)} value={draft[f]} required={f === 'name'} onInput={(v) => setDraft({ ...draft, [f]: v })} />
            ))}
            <div class="field">
              <label for="book">{t('contacts.book')}</label>
              <select id="book" value={book} onChange={(e) => setBook((e.target as HTMLSelectElement).value as 'shared' | 'personal')}>
                <option value="shared">{t('contacts.shared')}</option>
                <option value="personal">{t('contacts.personal')}</option>
              </select>
            </div>
            <button type="submit">{t('contacts.add')}</button>
          </form>
          <div class="card">
            <div class="field">
              <label for="import-file">{t('contacts.importFile')}</label>
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
                <p>{t('contacts.importDone', { created: importResult.created, errors: importResult.errors.length })}</p>
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
    </Page>
  );
}

// The import streams its answer, so it uses fetch directly; the request token travels the same way.
const requestTokenHeader = (): Record<string, string> => {
  const token = currentRequestToken();
  return token ? { 'x-tresor-request-token': token } : {};
};
const rememberToken = (response: Response) => setRequestToken(response.headers.get('x-tresor-request-token') ?? undefined);

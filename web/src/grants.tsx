import { Alerts } from './ui.js';
import { useEffect, useState } from 'preact/hooks';
import { api, type Me } from './api.js';
import type { TextKey } from './i18n.js';
import { readJsonLines, rememberToken, requestTokenHeader } from './records.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

interface Brief {
  id: string;
  login: string;
  role: string;
}
interface Grant {
  id: string;
  granteeId: string;
  collection: 'contacts' | 'jobs';
  recordIds: string[] | null;
  expiresAt: string;
  endedAt: string | null;
  endReason: string | null;
}
type Row = { id: string } & Record<string, string | null>;

/** A local date-time input value (yyyy-mm-ddThh:mm) some hours from now. */
const inHours = (hours: number) => {
  const d = new Date(Date.now() + hours * 3_600_000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};

/**
 * Grants (S2.2) and the installer handover (S2.3), for data users holding the tenant secret: give an
 * external account time-limited read access to a collection or chosen records, mail it a one-time access
 * link, revoke; hand the tenant over to its owner with progress.
 */
export function GrantsPage(props: { t: T; me: Me; Page: (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element }) {
  const { t, me, Page } = props;
  const [status, setStatus] = useState<{ dataAccess: boolean; colleagues: Brief[]; externals: Brief[]; rotationPending?: boolean }>();
  const [resumed, setResumed] = useState<{ done: number; finished: boolean }>();
  const [grants, setGrants] = useState<Grant[]>([]);
  const [draft, setDraft] = useState({ granteeId: '', collection: 'jobs' as 'contacts' | 'jobs', expiresAt: inHours(8), chosen: [] as string[] });
  const [records, setRecords] = useState<Row[]>([]);
  const [owner, setOwner] = useState('');
  const [handover, setHandover] = useState<{ done: number; result?: { version: number; reencrypted: number } }>();
  const [notice, setNotice] = useState<string>();
  const [error, setError] = useState<string>();

  const load = async () => {
    try {
      const s = await api<NonNullable<typeof status>>('GET', '/api/v1/keys/status');
      setStatus(s);
      if (s.dataAccess) setGrants(await api<Grant[]>('GET', '/api/v1/grants'));
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => void load(), []);
  useEffect(() => {
    if (status?.dataAccess) void api<Row[]>('GET', `/api/v1/${draft.collection}`).then(setRecords, (e) => setError(messageOf(e)));
  }, [draft.collection, status?.dataAccess]);

  const loginOf = (id: string) => status?.externals.find((a) => a.id === id)?.login ?? id;
  const act = async (work: () => Promise<unknown>, done?: string) => {
    setError(undefined);
    setNotice(undefined);
    try {
      await work();
      if (done) setNotice(done);
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const create = (event: Event) => {
    event.preventDefault();
    void act(
      () =>
        api('POST', '/api/v1/grants', {
          granteeId: draft.granteeId,
          collection: draft.collection,
          expiresAt: new Date(draft.expiresAt).toISOString(),
          ...(draft.chosen.length > 0 ? { recordIds: draft.chosen } : {}),
        }),
      t('grants.created'),
    );
  };
  const runHandover = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setHandover({ done: 0 });
    try {
      const response = await fetch(`/api/v1/tenants/${me.tenantId ?? ''}/handover`, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', ...requestTokenHeader() },
        body: JSON.stringify({ ownerAccountId: owner }),
      });
      rememberToken(response);
      if (!response.ok) throw new Error(((await response.json()) as { message?: string }).message ?? response.statusText);
      await readJsonLines<{ reencrypted: number; version?: number }>(response, (line) =>
        setHandover(line.version === undefined ? { done: line.reencrypted } : { done: line.reencrypted, result: { version: line.version, reencrypted: line.reencrypted } }),
      );
    } catch (e) {
      setError(messageOf(e));
    }
  };

  /** Continues an interrupted handover or rotation: the records still under the old secret are re-encrypted. */
  const resumeRotation = async () => {
    setError(undefined);
    setResumed({ done: 0, finished: false });
    try {
      const response = await fetch('/api/v1/keys/rotate/resume', { method: 'POST', credentials: 'same-origin', headers: { ...requestTokenHeader() } });
      rememberToken(response);
      if (!response.ok) throw new Error(((await response.json()) as { message?: string }).message ?? response.statusText);
      let finished = false;
      await readJsonLines<{ reencrypted?: number; error?: string }>(response, (line) => {
        if (line.error) throw new Error(line.error);
        setResumed({ done: line.reencrypted ?? 0, finished });
      });
      finished = true;
      setResumed((r) => ({ done: r?.done ?? 0, finished }));
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };

  const stateOf = (g: Grant) => (g.endedAt ? t(g.endReason === 'revoked' ? 'grants.revoked' : 'grants.expired') : new Date(g.expiresAt) <= new Date() ? t('grants.expired') : t('grants.active'));
  const firstField = (r: Row) => r.customer_name ?? r.name ?? r.id;

  return (
    <Page title={t('grants.title')}>
      <Alerts error={error} notice={notice} />
      {status === undefined ? (
        <p>{t('common.loading')}</p>
      ) : !status.dataAccess ? (
        <p class="notice">{t('contacts.noAccess')}</p>
      ) : (
        <>
          <table>
            <caption>{t('grants.list')}</caption>
            <thead>
              <tr>
                <th scope="col">{t('grants.grantee')}</th>
                <th scope="col">{t('grants.collection')}</th>
                <th scope="col">{t('grants.scope')}</th>
                <th scope="col">{t('grants.until')}</th>
                <th scope="col">{t('grants.state')}</th>
                <th scope="col">
                  <span class="visually-hidden">{t('grants.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {grants.map((g) => (
                <tr key={g.id}>
                  <td>{loginOf(g.granteeId)}</td>
                  <td>{t(g.collection === 'jobs' ? 'nav.jobs' : 'nav.contacts')}</td>
                  <td>{g.recordIds === null ? t('grants.whole') : t('grants.records', { count: g.recordIds.length })}</td>
                  <td>{new Date(g.expiresAt).toLocaleString()}</td>
                  <td>{stateOf(g)}</td>
                  <td>
                    {g.endedAt === null && new Date(g.expiresAt) > new Date() ? (
                      <>
                        <button type="button" onClick={() => void act(() => api('POST', `/api/v1/grants/${g.id}/link`, {}), t('grants.linkSent', { login: loginOf(g.granteeId) }))}>
                          {t('grants.sendLink')}
                        </button>{' '}
                        <button type="button" class="danger" onClick={() => void act(() => api('DELETE', `/api/v1/grants/${g.id}`), t('grants.revokedNotice'))}>
                          {t('grants.revoke')}
                        </button>
                      </>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {grants.length === 0 ? <p>{t('grants.none')}</p> : null}

          <form class="card" aria-label={t('grants.new')} onSubmit={create}>
            <h2>{t('grants.new')}</h2>
            {status.externals.length === 0 ? <p class="notice">{t('grants.noExternals')}</p> : null}
            <div class="field">
              <label for="grantee">{t('grants.grantee')}</label>
              <select id="grantee" required value={draft.granteeId} onChange={(e) => setDraft({ ...draft, granteeId: (e.target as HTMLSelectElement).value })}>
                <option value="">{t('grants.choose')}</option>
                {status.externals.map((a) => (
                  <option key={a.id} value={a.id}>
                    {a.login} ({a.role})
                  </option>
                ))}
              </select>
            </div>
            <div class="field">
              <label for="grant-collection">{t('grants.collection')}</label>
              <select id="grant-collection" value={draft.collection} onChange={(e) => setDraft({ ...draft, collection: (e.target as HTMLSelectElement).value as 'contacts' | 'jobs', chosen: [] })}>
                <option value="jobs">{t('nav.jobs')}</option>
                <option value="contacts">{t('nav.contacts')}</option>
              </select>
            </div>
            <div class="field">
              <label for="grant-until">{t('grants.until')}</label>
              <input id="grant-until" type="datetime-local" required value={draft.expiresAt} onInput={(e) => setDraft({ ...draft, expiresAt: (e.target as HTMLInputElement).value })} />
            </div>
            <fieldset>
              <legend>{t('grants.chooseRecords')}</legend>
              {records.map((r) => (
                <label key={r.id} class="check">
                  <input
                    type="checkbox"
                    checked={draft.chosen.includes(r.id)}
                    onChange={(e) => setDraft({ ...draft, chosen: (e.target as HTMLInputElement).checked ? [...draft.chosen, r.id] : draft.chosen.filter((id) => id !== r.id) })}
                  />{' '}
                  {firstField(r)}
                </label>
              ))}
            </fieldset>
            <button type="submit">{t('grants.create')}</button>
          </form>

          {status.rotationPending || resumed ? (
            <div class="card" aria-label={t('keys.rotationResume')}>
              {status.rotationPending ? <p class="notice">{t('keys.rotationPending')}</p> : null}
              {status.rotationPending ? (
                <button type="button" onClick={() => void resumeRotation()}>
                  {t('keys.rotationResume')}
                </button>
              ) : null}
              {resumed ? <p role="status">{resumed.finished ? t('keys.rotationResumed', { count: resumed.done }) : t('handover.progress', { count: resumed.done })}</p> : null}
            </div>
          ) : null}
          <form class="card" aria-label={t('handover.title')} onSubmit={runHandover}>
            <h2>{t('handover.title')}</h2>
            <p>{t('handover.text')}</p>
            <div class="field">
              <label for="owner">{t('handover.owner')}</label>
              <select id="owner" required value={owner} onChange={(e) => setOwner((e.target as HTMLSelectElement).value)}>
                <option value="">{t('grants.choose')}</option>
                {status.colleagues
                  .filter((a) => a.id !== me.accountId)
                  .map((a) => (
                    <option key={a.id} value={a.id}>
                      {a.login} ({a.role})
                    </option>
                  ))}
              </select>
            </div>
            <button type="submit" class="danger">
              {t('handover.run')}
            </button>
            {handover ? (
              <p role="status">
                {handover.result ? t('handover.done', { version: handover.result.version, count: handover.result.reencrypted }) : t('handover.progress', { count: handover.done })}
              </p>
            ) : null}
          </form>
        </>
      )}
    </Page>
  );
}

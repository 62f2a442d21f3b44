import { Alerts } from './ui.js';
import { useEffect, useState } from 'preact/hooks';
import { api, type Me } from './api.js';
import type { TextKey } from './i18n.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

interface Account {
  id: string;
  login: string;
  role: string;
  status: string;
  tenantId: string | null;
  secondFactor: boolean;
}

/** Roles each kind of administrator may hand out (the server decides; this only keeps the form short). */
const ROLES: Record<string, string[]> = {
  operator: ['admin', 'reseller', 'installer', 'operator'],
  reseller: ['admin', 'installer', 'reseller'],
  installer: ['admin', 'member', 'dpo'],
  tenant: ['member', 'dpo', 'admin', 'technician', 'control-centre', 'authority'],
};

/** Users for administrators: list, invite by e-mail, disable and enable. No data pages here, by design. */
export function UsersPage(props: { t: T; me: Me; Page: (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element }) {
  const { t, me, Page } = props;
  const roles = ROLES[me.kind] ?? [];
  const [tenants, setTenants] = useState<{ id: string; name: string }[]>([]);
  const [tenantId, setTenantId] = useState('');
  const [accounts, setAccounts] = useState<Account[]>();
  const [email, setEmail] = useState('');
  const [role, setRole] = useState(roles[0] ?? 'member');
  const [notice, setNotice] = useState<string>();
  const [error, setError] = useState<string>();
  const needsTenant = me.kind !== 'tenant' && ['admin', 'member', 'dpo'].includes(role);
  const createsTenants = me.kind === 'operator' || me.kind === 'reseller';
  const loadTenants = () => api<{ id: string; name: string }[]>('GET', '/api/v1/tenants').then(setTenants, () => undefined);

  const load = async () => {
    try {
      setAccounts(await api<Account[]>('GET', `/api/v1/accounts${tenantId ? `?tenantId=${tenantId}` : ''}`));
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    if (me.kind === 'operator' || me.kind === 'reseller' || me.kind === 'installer') void loadTenants();
  }, []);
  useEffect(() => void load(), [tenantId]);

  const invite = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setNotice(undefined);
    try {
      const result = await api<{ login: string }>('POST', '/api/v1/accounts', { email, role, ...(needsTenant && tenantId ? { tenantId } : {}) });
      setNotice(t('users.invited', { login: result.login }));
      setEmail('');
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const setStatus = async (id: string, action: 'disable' | 'enable') => {
    await api('POST', `/api/v1/accounts/${id}/${action}`).catch((e) => setError(messageOf(e)));
    await load();
  };

  return (
    <Page title={t('users.title')}>
      {me.kind === 'tenant' ? <p class="notice">{t('users.noData')}</p> : null}
      {tenants.length > 0 ? (
        <div class="field">
          <label for="users-tenant">{t('users.tenant')}</label>
          <select id="users-tenant" value={tenantId} onChange={(e) => setTenantId((e.target as HTMLSelectElement).value)}>
            <option value="">–</option>
            {tenants.map((tn) => (
              <option key={tn.id} value={tn.id}>
                {tn.name}
              </option>
            ))}
          </select>
        </div>
      ) : null}
      <Alerts error={error} notice={notice} />
      {accounts ? (
        <table>
          <thead>
            <tr>
              <th scope="col">{t('users.login')}</th>
              <th scope="col">{t('users.role')}</th>
              <th scope="col">{t('users.status')}</th>
              <th scope="col">{t('users.secondFactor')}</th>
              <th scope="col">
                <span class="visually-hidden">{t('users.disable')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {accounts.map((a) => (
              <tr key={a.id}>
                <td>{a.login}</td>
                <td>{a.role}</td>
                <td>{a.status}</td>
                <td>{a.secondFactor ? '✓' : ''}</td>
                <td>
                  {a.id === me.accountId ? null : a.status === 'active' ? (
                    <button type="button" onClick={() => setStatus(a.id, 'disable')}>
                      {t('users.disable')}
                    </button>
                  ) : a.status === 'disabled' ? (
                    <button type="button" onClick={() => setStatus(a.id, 'enable')}>
                      {t('users.enable')}
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>{t('common.loading')}</p>
      )}
      <form class="card filters" aria-label={t('users.invite')} onSubmit={invite}>
        <div class="field">
          <label for="invite-email">{t('users.email')}</label>
          <input id="invite-email" type="email" required value={email} onInput={(e) => setEmail((e.target as HTMLInputElement).value)} />
        </div>
        <div class="field">
          <label for="invite-role">{t('users.role')}</label>
          <select id="invite-role" value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>
            {roles.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">{t('users.invite')}</button>
      </form>
      {createsTenants ? <NewTenantForm t={t} onCreated={() => void loadTenants()} /> : null}
    </Page>
  );
}

interface CreatedTenant {
  id: string;
  name: string;
  initialKeys: { activationKey: string | null; mailedTo?: 'first-data-user' };
  firstDataUser?: { login: string; role: string };
}

/**
 * A new tenant (operator, reseller). With a first data user named, the activation key goes only to that
 * person's mail and works only for their account (B.1); without, it is shown here once to hand on.
 */
function NewTenantForm(props: { t: T; onCreated: () => void }) {
  const { t } = props;
  const [name, setName] = useState('');
  const [firstEmail, setFirstEmail] = useState('');
  const [firstRole, setFirstRole] = useState<'dpo' | 'member'>('dpo');
  const [created, setCreated] = useState<CreatedTenant>();
  const [error, setError] = useState<string>();

  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setCreated(undefined);
    try {
      const email = firstEmail.trim();
      const result = await api<CreatedTenant>('POST', '/api/v1/tenants', { name, ...(email ? { firstDataUser: { email, role: firstRole } } : {}) });
      setCreated(result);
      setName('');
      setFirstEmail('');
      props.onCreated();
    } catch (e) {
      setError(messageOf(e));
    }
  };

  return (
    <form class="card" aria-label={t('tenants.create')} onSubmit={submit}>
      <h2>{t('tenants.create')}</h2>
      <div class="row">
        <div class="field">
          <label for="tenant-name">{t('tenants.name')}</label>
          <input id="tenant-name" required minLength={2} maxLength={200} value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </div>
        <div class="field">
          <label for="tenant-first-email">{t('tenants.firstDataUser')}</label>
          <input id="tenant-first-email" type="email" value={firstEmail} aria-describedby="tenant-first-hint" onInput={(e) => setFirstEmail((e.target as HTMLInputElement).value)} />
        </div>
        <div class="field">
          <label for="tenant-first-role">{t('tenants.firstRole')}</label>
          <select id="tenant-first-role" value={firstRole} onChange={(e) => setFirstRole((e.target as HTMLSelectElement).value === 'member' ? 'member' : 'dpo')}>
            <option value="dpo">dpo</option>
            <option value="member">member</option>
          </select>
        </div>
      </div>
      <p id="tenant-first-hint" class="hint">
        {t('tenants.firstHint')}
      </p>
      <button type="submit">{t('tenants.createButton')}</button>
      <Alerts error={error} />
      {created ? (
        created.firstDataUser ? (
          <p role="status">{t('tenants.mailed', { name: created.name, login: created.firstDataUser.login })}</p>
        ) : (
          <div role="status">
            <p>{t('tenants.keyOnce', { name: created.name })}</p>
            <code id="tenant-activation-key">{created.initialKeys.activationKey}</code>
          </div>
        )
      ) : null}
    </form>
  );
}

import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import type { TextKey } from './i18n.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** Other pages announce a change of the caller's data access (an activation) with this event. */
export const KEYS_CHANGED = 'tresor:keys-changed';

/**
 * The tenant's recovery code, for the data user it is owed to (after their activation, a rotation they
 * ran, or as the owner after a handover): a notice on every page until they asked for it, then the code
 * once. The server keeps no way to show it again.
 */
export function RecoveryCodeNotice(props: { t: T; path: string }) {
  const { t } = props;
  const [pending, setPending] = useState(false);
  const [code, setCode] = useState<string>();
  const [error, setError] = useState<string>();
  const check = () =>
    void api<{ recoveryCodePending?: boolean }>('GET', '/api/v1/keys/status').then(
      (s) => setPending(s.recoveryCodePending === true),
      () => setPending(false),
    );
  useEffect(check, [props.path]);
  useEffect(() => {
    window.addEventListener(KEYS_CHANGED, check);
    return () => window.removeEventListener(KEYS_CHANGED, check);
  }, []);
  const show = async () => {
    setError(undefined);
    try {
      setCode((await api<{ recoveryCode: string }>('POST', '/api/v1/keys/recovery-code')).recoveryCode);
      setPending(false);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  if (code) {
    return (
      <div class="card" role="status" aria-label={t('keys.recoveryCode')}>
        <p>{t('keys.recoveryCode')}</p>
        <p>
          <code data-testid="recovery-code">{code}</code>
        </p>
      </div>
    );
  }
  if (!pending) return null;
  return (
    <div class="card">
      <p class="notice">{t('keys.recoveryPending')}</p>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      <button type="button" onClick={show}>
        {t('keys.recoveryShow')}
      </button>
    </div>
  );
}

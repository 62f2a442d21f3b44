import { Alerts } from './ui.js';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api.js';
import { formatTime, type Language, type TextKey } from './i18n.js';
import { createSecuPassKey, messageOf, ownKey, type KeyStage, type OwnKey } from './transfer-lib.js';

type T = (key: TextKey, vars?: Record<string, string | number>) => string;
type PageComponent = (p: { title: string; children: preact.ComponentChildren }) => preact.JSX.Element;

const MIN_LENGTH = 12;

/** A password input with its label (and an optional hint). */
export function SecretField(props: { id: string; label: string; value: string; onInput: (v: string) => void; autocomplete?: string; hint?: string }) {
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        name={props.id}
        type="password"
        required
        autoComplete={props.autocomplete ?? 'off'}
        value={props.value}
        aria-describedby={props.hint ? `${props.id}-hint` : undefined}
        onInput={(e) => props.onInput((e.target as HTMLInputElement).value)}
      />
      {props.hint ? (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      ) : null}
    </div>
  );
}

/** The fingerprint of a key, in a form people can read aloud and compare. */
export function Fingerprint(props: { value: string; label: string }) {
  return (
    <p>
      {props.label}: <code class="fingerprint">{props.value}</code>
    </p>
  );
}

/**
 * Creates (or resets) the SecuPass key: the SecuPass twice, a check that it is not the login password
 * (the server compares Argon2id hashes, never the secrets), a new hybrid key pair, sealed in the browser.
 */
export function SecuPassSetup(props: { t: T; reset: boolean; onDone: (result: { fingerprint: string; pendingApprovals: number }) => void }) {
  const { t } = props;
  const [secupass, setSecupass] = useState('');
  const [repeat, setRepeat] = useState('');
  const [stage, setStage] = useState<KeyStage>();
  const [error, setError] = useState<string>();
  const prefix = props.reset ? 'secupass-reset' : 'secupass-new';
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    if (secupass.length < MIN_LENGTH) return setError(t('secupass.tooShort', { min: MIN_LENGTH }));
    if (secupass !== repeat) return setError(t('secupass.mismatch'));
    try {
      const result = await createSecuPassKey(secupass, setStage);
      setSecupass('');
      setRepeat('');
      props.onDone(result);
    } catch (e) {
      setError(e instanceof ApiError && e.code === 'CONFLICT' ? t('secupass.equalsPassword') : messageOf(e));
    } finally {
      setStage(undefined);
    }
  };
  return (
    <form class="card" aria-label={t(props.reset ? 'secupass.resetTitle' : 'secupass.createTitle')} onSubmit={submit}>
      <h2>{t(props.reset ? 'secupass.resetTitle' : 'secupass.createTitle')}</h2>
      {props.reset ? (
        <p role="alert" class="warning">
          {t('secupass.resetWarning')}
        </p>
      ) : (
        <p>{t('secupass.explain')}</p>
      )}
      <SecretField id={`${prefix}-1`} label={t('secupass.new')} value={secupass} onInput={setSecupass} autocomplete="new-password" hint={t('secupass.rules', { min: MIN_LENGTH })} />
      <SecretField id={`${prefix}-2`} label={t('secupass.repeat')} value={repeat} onInput={setRepeat} autocomplete="new-password" />
      <Alerts error={error} />
      {stage ? (
        <p role="status" class="progress-text">
          {t(`secupass.stage.${stage}` as TextKey)}
        </p>
      ) : null}
      <button type="submit" class={props.reset ? 'danger' : undefined} disabled={stage !== undefined}>
        {t(props.reset ? 'secupass.resetSubmit' : 'secupass.createSubmit')}
      </button>
    </form>
  );
}

/** /app/secupass: the account's key: fingerprint, creation and reset. */
export function SecuPassPage(props: { t: T; language: Language; Page: PageComponent }) {
  const { t, language, Page } = props;
  const [key, setKey] = useState<OwnKey | null>();
  const [resetting, setResetting] = useState(false);
  const [notice, setNotice] = useState<string>();
  const [error, setError] = useState<string>();
  const load = () =>
    ownKey().then(
      (k) => setKey(k ?? null),
      (e) => setError(messageOf(e)),
    );
  useEffect(() => void load(), []);
  const done = (result: { fingerprint: string; pendingApprovals: number }, reset: boolean) => {
    setResetting(false);
    setNotice(reset ? t('secupass.resetDone', { count: result.pendingApprovals }) : t('secupass.created'));
    void load();
  };
  return (
    <Page title={t('secupass.title')}>
      <Alerts error={error} notice={notice} />
      {key === undefined ? (
        <p>{t('common.loading')}</p>
      ) : key === null ? (
        <SecuPassSetup t={t} reset={false} onDone={(r) => done(r, false)} />
      ) : (
        <>
          <div class="card">
            <p>{t('secupass.have', { created: formatTime(language, key.createdAt) })}</p>
            <Fingerprint label={t('secupass.fingerprint')} value={key.fingerprint} />
            <p class="hint">{t('secupass.fingerprintHint')}</p>
            {resetting ? null : (
              <button type="button" class="danger" onClick={() => setResetting(true)}>
                {t('secupass.reset')}
              </button>
            )}
          </div>
          {resetting ? (
            <>
              <SecuPassSetup t={t} reset={true} onDone={(r) => done(r, true)} />
              <button type="button" onClick={() => setResetting(false)}>
                {t('secupass.cancel')}
              </button>
            </>
          ) : null}
        </>
      )}
    </Page>
  );
}

import { stringify } from 'smol-toml';
import { CONFIG_KEYS, ConfigSchema, type TresorConfig } from './schema.js';

export const MASK = '********';

/** Query parameters whose values may carry credentials (libpq accepts `?password=`, `?sslpassword=` …). */
const SECRET_QUERY_PARAM = /pass|secret|key|token|auth|cred/i;

/**
 * Masks a secret for display. Empty stays empty (nothing to hide, and "not set" is useful to see).
 * A URL keeps scheme, user, host, port and database so that operators can check where it points; its
 * password and credential-like query values are masked. Anything that does not parse cleanly as a
 * URL with an authority is masked completely: a half-understood URL might show the secret elsewhere.
 */
export function maskSecret(value: unknown): string {
  if (value === '') return '';
  if (typeof value !== 'string' || !/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return MASK;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return MASK;
  }
  // An '@' that did not end up separating user info (e.g. a password with an unescaped '/', '?' or '#')
  // means part of the credentials landed in the host, path, query or fragment.
  const userInfoParsed = url.username !== '' || url.password !== '';
  if (value.includes('@') && !userInfoParsed) return MASK;
  if (`${url.host}${url.pathname}${url.search}${url.hash}`.includes('@')) return MASK;
  if (url.password !== '') url.password = MASK;
  // Redis clients have read `redis://secret@host` as a password without a user name.
  else if (url.username !== '' && /^rediss?:$/.test(url.protocol)) url.username = MASK;
  if (url.search !== '') {
    const params = new URLSearchParams(url.search);
    for (const name of [...params.keys()]) if (SECRET_QUERY_PARAM.test(name)) params.set(name, MASK);
    url.search = params.toString();
  }
  if (url.hash !== '') url.hash = MASK;
  return url.toString();
}

/** Reads the value at a key path of a plain object tree. */
export function valueAt(tree: Record<string, unknown>, segments: readonly string[]): unknown {
  let node: unknown = tree;
  for (const segment of segments) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[segment];
  }
  return node;
}

/** A plain copy of the configuration with every secret masked. */
export function maskConfig(config: TresorConfig): Record<string, unknown> {
  const copy: Record<string, unknown> = structuredClone(config);
  for (const key of CONFIG_KEYS) {
    if (!key.secret) continue;
    const parent = valueAt(copy, key.segments.slice(0, -1));
    const name = key.segments.at(-1);
    if (typeof parent === 'object' && parent !== null && name !== undefined) {
      const holder = parent as Record<string, unknown>;
      holder[name] = maskSecret(holder[name]);
    }
  }
  return copy;
}

/** `key = value` as TOML (smol-toml quotes and escapes; keys are bare snake_case). */
function tomlLine(key: string, value: unknown): string {
  return stringify({ [key]: value }).trimEnd();
}

/**
 * The effective configuration, secrets masked, as TOML (with each key's description as a comment, so
 * the output is a documented starting point for `tresor.toml`) or as JSON.
 */
export function renderConfig(config: TresorConfig, format: 'toml' | 'json'): string {
  const masked = maskConfig(config);
  if (format === 'json') return `${JSON.stringify(masked, null, 2)}\n`;

  const lines: string[] = ['# Effective Tresor configuration: defaults < configuration file < TRESOR_* environment. Secrets are masked.'];
  const sections = ConfigSchema.properties as Record<string, { description?: string }>;
  let currentSection: string | undefined;
  for (const key of CONFIG_KEYS) {
    const [first, second] = key.segments;
    const section = second === undefined ? undefined : first;
    if (section !== currentSection && section !== undefined) {
      const description = sections[section]?.description;
      lines.push('', ...(description ? [`# ${description}`] : []), `[${section}]`);
      currentSection = section;
    }
    if (key.description) lines.push(`# ${key.description}`);
    lines.push(tomlLine(key.segments.at(-1)!, valueAt(masked, key.segments)));
  }
  return `${lines.join('\n')}\n`;
}

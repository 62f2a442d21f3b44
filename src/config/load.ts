import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Kind, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseToml, TomlError } from 'smol-toml';
import { ConfigError } from './errors.js';
import { maskSecret, valueAt } from './print.js';
import { CONFIG_KEYS, ConfigSchema, PATH_KEYS, type ConfigKey, type TresorConfig } from './schema.js';

export interface LoadConfigOptions {
  /** Base for a relative `file` / `TRESOR_CONFIG` and for the default `tresor.toml`. */
  cwd: string;
  /** Explicitly named configuration file (the CLI's `--config`); must exist. */
  file?: string | undefined;
  env: NodeJS.ProcessEnv;
}

/** The variable naming the configuration file. */
export const CONFIG_FILE_ENV = 'TRESOR_CONFIG';
/** Variables starting with this prefix belong to the test suite and are ignored here. */
export const TEST_ENV_PREFIX = 'TRESOR_TEST_';
/** `TRESOR_*` variables the CLI reads for remote mode; they are not configuration keys but are not mistakes either. */
export const CLIENT_ENV_VARS: readonly string[] = ['TRESOR_URL', 'TRESOR_TOKEN', 'TRESOR_CACERT', 'TRESOR_PASSWORD', 'TRESOR_NEW_PASSWORD', 'TRESOR_SECUPASS'];

const DEFAULT_FILE_NAME = 'tresor.toml';

/** Where a key's value came from, and the value as the operator wrote it (before coercion). */
interface Origin {
  source: string;
  raw: unknown;
}

type Tree = Record<string, unknown>;

/**
 * Loads the configuration: schema defaults < configuration file < `TRESOR_*` environment (including
 * `TRESOR_<KEY>_FILE` for secret keys). Validates everything, resolves relative paths, derives
 * `server.public_url`, and returns a deep-frozen object. Any problem is a ConfigError naming the key,
 * where the value came from, the value (masked for secrets) and what is expected.
 */
export function loadConfig(opts: LoadConfigOptions): Readonly<TresorConfig> {
  const origins = new Map<string, Origin>();
  const configFile = locateConfigFile(opts);
  const tree: Tree = configFile ? readConfigFile(configFile.path) : {};
  if (configFile) {
    checkKnownKeys(tree, ConfigSchema, [], configFile.path);
    for (const key of CONFIG_KEYS) {
      const raw = valueAt(tree, key.segments);
      if (raw !== undefined) origins.set(key.path, { source: configFile.path, raw });
    }
  }

  for (const override of readEnvironment(opts.env, opts.cwd)) {
    setAt(tree, override.key.segments, override.value);
    origins.set(override.key.path, { source: override.source, raw: override.raw });
  }

  const withDefaults: unknown = Value.Default(ConfigSchema, tree);
  const config = validate(withDefaults, origins);
  checkSemantics(config, origins);

  const baseDir = configFile ? dirname(configFile.path) : resolve(opts.cwd);
  for (const path of PATH_KEYS) {
    const key = keyByPath(path);
    const value = valueAt(config, key.segments);
    if (typeof value === 'string' && value !== '') setAt(config, key.segments, resolve(baseDir, value));
  }
  if (config.server.public_url === '') config.server.public_url = `https://localhost:${config.server.port}`;
  if (config.mail.outbox_dir === '') config.mail.outbox_dir = join(config.data_dir, 'outbox');
  if (config.backup.dir === '') config.backup.dir = join(config.data_dir, 'backups');

  return deepFreeze(config);
}

// ------------------------------------------------------------------------------------------------
// Configuration file

function locateConfigFile(opts: LoadConfigOptions): { path: string } | undefined {
  const named: { path: string; via: string } | undefined =
    opts.file !== undefined && opts.file !== ''
      ? { path: resolve(opts.cwd, opts.file), via: '--config' }
      : opts.env[CONFIG_FILE_ENV]
        ? { path: resolve(opts.cwd, opts.env[CONFIG_FILE_ENV]), via: CONFIG_FILE_ENV }
        : undefined;
  if (named) {
    if (!existsSync(named.path)) {
      throw new ConfigError(
        `configuration file ${named.path} (from ${named.via}) does not exist; create it, or point ${named.via} at an existing TOML file`,
        { key: 'config file', source: named.via, value: JSON.stringify(named.path), expected: 'an existing TOML file' },
      );
    }
    return { path: named.path };
  }
  const fallback = resolve(opts.cwd, DEFAULT_FILE_NAME);
  // A missing default file is fine: defaults and the environment are a complete configuration.
  return existsSync(fallback) ? { path: fallback } : undefined;
}

function readConfigFile(path: string): Tree {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`configuration file ${path} cannot be read (${reason}); make it a readable TOML file`, {
      key: 'config file',
      source: path,
      value: JSON.stringify(path),
      expected: 'a readable TOML file',
    });
  }
  try {
    return parseToml(text);
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    // Only the first line of smol-toml's message: the code block it appends would quote the
    // offending line, which may hold a secret.
    const reason = (error.message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/, '');
    throw new ConfigError(
      `configuration file ${path} is not valid TOML: ${reason} at line ${error.line}, column ${error.column}; fix the syntax there`,
      { key: 'config file', source: path, value: `line ${error.line}, column ${error.column}`, expected: `valid TOML (${reason})` },
    );
  }
}

function isTable(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function childSchemas(schema: TSchema): Record<string, TSchema> {
  return (schema as { properties?: Record<string, TSchema> }).properties ?? {};
}

const SECTION_NAMES = Object.entries(childSchemas(ConfigSchema))
  .filter(([, schema]) => schema[Kind] === 'Object')
  .map(([name]) => name);

/** Unknown keys are errors: a typo must not silently fall back to a default. */
function checkKnownKeys(tree: Tree, schema: TSchema, prefix: readonly string[], file: string): void {
  const known = childSchemas(schema);
  const knownNames = Object.keys(known);
  for (const [name, value] of Object.entries(tree)) {
    const segments = [...prefix, name];
    const path = segments.join('.');
    const child = known[name];
    if (!child) {
      const suggestion = closest(path, [...CONFIG_KEYS.map((k) => k.path), ...SECTION_NAMES]);
      const leaves = knownNames.filter((n) => known[n]?.[Kind] !== 'Object');
      const sections = knownNames.filter((n) => known[n]?.[Kind] === 'Object').map((n) => `[${n}]`);
      const expected =
        prefix.length === 0
          ? `known top-level keys: ${leaves.join(', ')} and the sections ${sections.join(', ')}`
          : `known keys in [${prefix.join('.')}]: ${knownNames.join(', ')}`;
      const hint = suggestion ? `did you mean '${suggestion}'? ` : '';
      throw new ConfigError(`unknown key '${path}' in ${file}; ${hint}${expected}`, {
        key: path,
        source: file,
        value: '(not shown)',
        expected,
      });
    }
    if (child[Kind] === 'Object') {
      if (!isTable(value)) {
        const expected = `a table [${path}] with the keys ${Object.keys(childSchemas(child)).join(', ')}`;
        throw new ConfigError(`configuration key '${path}' (from ${file}) is not a table; expected ${expected}`, {
          key: path,
          source: file,
          value: typeof value,
          expected,
        });
      }
      checkKnownKeys(value, child, segments, file);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Environment

interface EnvOverride {
  key: ConfigKey;
  value: unknown;
  raw: string;
  source: string;
}

const KEYS_BY_ENV = new Map(CONFIG_KEYS.map((k) => [k.envVar, k]));
const SECRET_KEYS_BY_FILE_ENV = new Map(CONFIG_KEYS.filter((k) => k.envFileVar).map((k) => [k.envFileVar!, k]));

/** Every variable that configures Tresor: one per key, `_FILE` for secret keys, and TRESOR_CONFIG. */
export const CONFIG_ENV_VARS: readonly string[] = [
  ...CONFIG_KEYS.flatMap((k) => (k.envFileVar ? [k.envVar, k.envFileVar] : [k.envVar])),
  CONFIG_FILE_ENV,
];

function readEnvironment(env: NodeJS.ProcessEnv, cwd: string): EnvOverride[] {
  const overrides: EnvOverride[] = [];
  const names = Object.keys(env)
    .filter((name) => name.startsWith('TRESOR_') && env[name] !== undefined)
    .sort();
  for (const name of names) {
    if (name === CONFIG_FILE_ENV || name.startsWith(TEST_ENV_PREFIX) || CLIENT_ENV_VARS.includes(name)) continue;
    const raw = env[name]!;
    const key = KEYS_BY_ENV.get(name);
    if (key) {
      overrides.push({ key, value: coerceEnvValue(key, raw), raw, source: name });
      continue;
    }
    const secretKey = SECRET_KEYS_BY_FILE_ENV.get(name);
    if (secretKey) {
      if (env[secretKey.envVar] !== undefined) {
        throw new ConfigError(
          `configuration key '${secretKey.path}' is set by both ${secretKey.envVar} and ${name}; unset one of them`,
          { key: secretKey.path, source: `${secretKey.envVar} and ${name}`, value: '(not shown)', expected: 'exactly one of the two variables' },
        );
      }
      const secret = readSecretFile(secretKey, name, resolve(cwd, raw));
      overrides.push({ key: secretKey, value: secret, raw: secret, source: `${name}=${resolve(cwd, raw)}` });
      continue;
    }
    const suggestion = closest(name, CONFIG_ENV_VARS);
    const expected =
      `a variable naming a configuration key (TRESOR_ + the key path in capitals joined with _, e.g. TRESOR_SERVER_PORT for server.port), ` +
      `or ${CONFIG_FILE_ENV}, ${TEST_ENV_PREFIX}*, ${CLIENT_ENV_VARS.join(', ')}`;
    throw new ConfigError(
      `unknown environment variable ${name}; ${suggestion ? `did you mean ${suggestion}? ` : ''}rename or unset it; expected ${expected}`,
      { key: name, source: name, value: '(not shown)', expected },
    );
  }
  return overrides;
}

function readSecretFile(key: ConfigKey, variable: string, file: string): string {
  try {
    // Docker and Kubernetes secrets usually end with a newline.
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(
      `configuration key '${key.path}' (from ${variable}) names the file ${file}, which cannot be read (${reason}); ` +
        `expected a readable file holding the value of ${key.path}`,
      { key: key.path, source: variable, value: JSON.stringify(file), expected: `a readable file holding the value of ${key.path}` },
    );
  }
}

/**
 * Turns an environment string into the key's schema type: integers, booleans (true/false/1/0, any case)
 * and comma-separated lists. A string that does not fit is returned unchanged, so that validation
 * reports it with the operator's own spelling.
 */
export function coerceEnvValue(key: ConfigKey, raw: string): unknown {
  const text = raw.trim();
  switch (key.schema[Kind]) {
    case 'Integer':
      return /^[+-]?\d+$/.test(text) ? Number(text) : raw;
    case 'Boolean': {
      const lower = text.toLowerCase();
      if (lower === 'true' || lower === '1') return true;
      if (lower === 'false' || lower === '0') return false;
      return raw;
    }
    case 'Array':
      return text
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    default:
      return raw;
  }
}

// ------------------------------------------------------------------------------------------------
// Validation

function keyByPath(path: string): ConfigKey {
  const key = CONFIG_KEYS.find((k) => k.path === path);
  if (!key) throw new Error(`internal: no configuration key ${path}`);
  return key;
}

/** The leaf key an error path (`/tls/hostnames/0`) points into. */
function keyForPointer(pointer: string): ConfigKey | undefined {
  const segments = pointer.split('/').slice(1);
  return CONFIG_KEYS.find((k) => k.segments.every((s, i) => segments[i] === s));
}

/** What a valid value of the key looks like, for error messages. */
export function describeExpected(key: ConfigKey): string {
  const schema = key.schema;
  if (typeof schema.expected === 'string') return schema.expected;
  switch (schema[Kind]) {
    case 'Integer': {
      const min = schema.minimum as number | undefined;
      const max = schema.maximum as number | undefined;
      if (min !== undefined && max !== undefined) return `an integer between ${min} and ${max}`;
      if (min !== undefined) return `an integer of at least ${min}`;
      return 'an integer';
    }
    case 'Boolean':
      return 'true or false (in the environment also 1 or 0)';
    case 'Union':
      return `one of ${(schema.anyOf as { const: unknown }[]).map((s) => JSON.stringify(s.const)).join(', ')}`;
    case 'String':
      return (schema.minLength as number | undefined) ? 'a non-empty string' : 'a string';
    default:
      return 'a value of the documented type';
  }
}

/** The value as shown in a message: JSON-quoted, secrets masked. */
function showValue(key: ConfigKey, raw: unknown): string {
  if (key.secret) return JSON.stringify(maskSecret(raw));
  return JSON.stringify(raw) ?? String(raw);
}

function keyError(key: ConfigKey, origins: Map<string, Origin>, value: unknown, expected: string): ConfigError {
  const origin = origins.get(key.path) ?? { source: 'the default', raw: value };
  const shown = showValue(key, origin.raw);
  return new ConfigError(`configuration key '${key.path}' (from ${origin.source}) has value ${shown}; expected ${expected}`, {
    key: key.path,
    source: origin.source,
    value: shown,
    expected,
  });
}

function validate(value: unknown, origins: Map<string, Origin>): TresorConfig {
  if (Value.Check(ConfigSchema, value)) return value;
  const first = Value.Errors(ConfigSchema, value).First();
  const key = first ? keyForPointer(first.path) : undefined;
  if (!first || !key) {
    // Not reachable for input that passed checkKnownKeys; kept so that a schema change cannot yield a silent pass.
    throw new ConfigError(`configuration is invalid at '${first?.path ?? '/'}': ${first?.message ?? 'unknown problem'}`, {
      key: first?.path ?? '/',
      source: 'unknown',
      value: '(not shown)',
      expected: 'a value matching the documented schema',
    });
  }
  throw keyError(key, origins, valueAt(value as Tree, key.segments), describeExpected(key));
}

function parsesAsUrl(value: string): boolean {
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

/** Rules the schema cannot express. */
function checkSemantics(config: TresorConfig, origins: Map<string, Origin>): void {
  for (const path of ['server.public_url', 'database.url', 'redis.url', 'mail.smtp_url']) {
    const key = keyByPath(path);
    const value = valueAt(config, key.segments);
    if (typeof value === 'string' && value !== '' && !parsesAsUrl(value)) {
      throw keyError(key, origins, value, `a well-formed URL: ${describeExpected(key)}`);
    }
  }
  if (config.mail.transport === 'smtp' && config.mail.smtp_url === '') {
    throw keyError(keyByPath('mail.smtp_url'), origins, '', 'an smtp:// or smtps:// URL of your relay, because mail.transport is "smtp"');
  }
  const { cert_file: certFile, key_file: keyFile } = config.tls;
  if ((certFile === '') !== (keyFile === '')) {
    const [setKey, missing] = certFile !== '' ? ['tls.cert_file', 'tls.key_file'] : ['tls.key_file', 'tls.cert_file'];
    throw keyError(
      keyByPath(setKey),
      origins,
      certFile || keyFile,
      `${missing} to be set as well (your certificate and its private key go together), or both empty so that the local CA issues a certificate`,
    );
  }
}

// ------------------------------------------------------------------------------------------------
// Helpers

function setAt(tree: Tree, segments: readonly string[], value: unknown): void {
  let node = tree;
  for (const segment of segments.slice(0, -1)) {
    const next = node[segment];
    if (isTable(next)) node = next;
    else {
      const created: Tree = {};
      node[segment] = created;
      node = created;
    }
  }
  node[segments.at(-1)!] = value;
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The candidate nearest to `name`, or undefined when nothing is near. A candidate that ends with the
 * whole unknown name wins (a key in the wrong section, `TRESOR_PORT` for `TRESOR_SERVER_PORT`); else the
 * smallest edit distance.
 */
function closest(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  const tail = lower.includes('.') ? lower.split('.').at(-1)! : lower.replace(/^tresor_/, '');
  const separator = lower.includes('.') || !lower.startsWith('tresor_') ? '.' : '_';
  const endsAlike = candidates.filter((c) => {
    const candidate = c.toLowerCase();
    return candidate !== lower && (candidate === tail || candidate.endsWith(`${separator}${tail}`));
  });
  if (endsAlike.length > 0) return endsAlike[0];
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  // Beyond a third of the length the "suggestion" is noise.
  return best && best.distance <= Math.max(2, Math.floor(tail.length / 3)) ? best.candidate : undefined;
}

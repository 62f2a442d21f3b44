import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CONFIG_ENV_VARS,
  CONFIG_KEYS,
  ConfigError,
  loadConfig,
  maskSecret,
  renderConfig,
  SECRET_KEYS,
  type ConfigKey,
  type TresorConfig,
} from '../src/config/index.js';
import { DomainError } from '../src/shared/errors.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tresor-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, content: string): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
  return path;
}

function load(env: Record<string, string> = {}, file?: string): Readonly<TresorConfig> {
  return loadConfig({ cwd: dir, file, env });
}

/** Runs `fn`, expects a ConfigError and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toBeInstanceOf(DomainError);
    expect((error as ConfigError).code).toBe('CONFIG_INVALID');
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

function keyOf(path: string): ConfigKey {
  const key = CONFIG_KEYS.find((k) => k.path === path);
  if (!key) throw new Error(`no key ${path}`);
  return key;
}

const MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

describe('loadConfig: sources and precedence', () => {
  it('uses the defaults when there is no file and no environment', () => {
    const config = load();
    expect(config).toEqual({
      data_dir: join(dir, 'data'),
      server: { host: '127.0.0.1', port: 8443, public_url: 'https://localhost:8443', http_redirect_port: 0, trust_proxy: false },
      tls: { cert_file: '', key_file: '', hostnames: ['localhost'] },
      database: { url: '', pool_max: 10 },
      master_key: { file: join(dir, 'keys', 'master.key'), value: '' },
      redis: { url: '' },
      metrics: { enabled: true, host: '127.0.0.1', port: 9464 },
      lifecycle: { deletion_grace_days: 30, scheduler_interval_seconds: 3600 },
      ledger: { retention_days: 90, technical_retention_days: 7, checkpoint_interval_seconds: 300 },
      backup: { dir: join(dir, 'data', 'backups'), interval_hours: 24, keep_days: 7 },
      log: { level: 'info' },
      cipher: { url: '', ca_file: '', cert_file: '', key_file: '' },
      mail: { transport: 'outbox', outbox_dir: join(dir, 'data', 'outbox'), smtp_url: '', smtp_ca_file: '', from: 'Tresor <tresor@localhost>', language: 'de' },
      argon2: { memory_kib: 19456, iterations: 2, parallelism: 1, max_concurrent: 2, max_queued: 1000 },
    });
  });

  it('reads tresor.toml from the working directory and keeps defaults for keys it does not set', () => {
    write(
      'tresor.toml',
      [
        'data_dir = "/srv/tresor"',
        '[server]',
        'host = "0.0.0.0"',
        'port = 9443',
        'trust_proxy = true',
        '[tls]',
        'hostnames = ["tresor.internal", "localhost"]',
        '[database]',
        'url = "postgres://tresor:pw@db:5432/tresor"',
        'pool_max = 20',
        '[log]',
        'level = "debug"',
      ].join('\n'),
    );
    const config = load();
    expect(config.data_dir).toBe('/srv/tresor');
    expect(config.server).toEqual({ host: '0.0.0.0', port: 9443, public_url: 'https://localhost:9443', http_redirect_port: 0, trust_proxy: true });
    expect(config.tls.hostnames).toEqual(['tresor.internal', 'localhost']);
    expect(config.database).toEqual({ url: 'postgres://tresor:pw@db:5432/tresor', pool_max: 20 });
    expect(config.log.level).toBe('debug');
    expect(config.metrics.port).toBe(9464);
  });

  it('resolves relative paths against the configuration file, not the working directory', () => {
    const file = write(
      'etc/tresor.toml',
      ['data_dir = "state"', '[tls]', 'cert_file = "tls/cert.pem"', 'key_file = "/abs/key.pem"', '[master_key]', 'file = "../keys/mk"'].join('\n'),
    );
    const config = load({}, file);
    expect(config.data_dir).toBe(join(dir, 'etc', 'state'));
    expect(config.tls.cert_file).toBe(join(dir, 'etc', 'tls', 'cert.pem'));
    expect(config.tls.key_file).toBe('/abs/key.pem');
    expect(config.master_key.file).toBe(join(dir, 'keys', 'mk'));
  });

  it('finds the file through TRESOR_CONFIG, and an explicit file wins over TRESOR_CONFIG', () => {
    write('a.toml', '[server]\nport = 1111\n');
    write('b.toml', '[server]\nport = 2222\n');
    expect(load({ TRESOR_CONFIG: 'a.toml' }).server.port).toBe(1111);
    expect(load({ TRESOR_CONFIG: 'a.toml' }, 'b.toml').server.port).toBe(2222);
  });

  it('lets the environment override the file, key by key', () => {
    write('tresor.toml', '[server]\nport = 9000\nhost = "0.0.0.0"\n[tls]\nhostnames = ["a"]\n');
    const config = load({
      TRESOR_SERVER_PORT: '9443',
      TRESOR_TLS_HOSTNAMES: 'tresor.example.org, localhost',
      TRESOR_METRICS_ENABLED: 'false',
      TRESOR_DATA_DIR: '/var/lib/tresor',
      TRESOR_SERVER_PUBLIC_URL: 'https://tresor.example.org',
    });
    expect(config.server.port).toBe(9443);
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.server.public_url).toBe('https://tresor.example.org');
    expect(config.tls.hostnames).toEqual(['tresor.example.org', 'localhost']);
    expect(config.metrics.enabled).toBe(false);
    expect(config.data_dir).toBe('/var/lib/tresor');
  });

  it('applies defaults < file < environment for every key', () => {
    // Two distinct valid values per key type; the file sets one, the environment the other.
    const samples = (key: ConfigKey): [unknown, string, unknown] => {
      switch (key.path) {
        case 'database.url':
          return ['postgres://a@db1/t', 'postgresql://b@db2/t', 'postgresql://b@db2/t'];
        case 'redis.url':
          return ['redis://r1:6379', 'rediss://r2:6380', 'rediss://r2:6380'];
        case 'master_key.value':
          return [MASTER_KEY, Buffer.alloc(32, 9).toString('base64'), Buffer.alloc(32, 9).toString('base64')];
        case 'server.public_url':
          return ['https://one.example', 'https://two.example', 'https://two.example'];
        case 'log.level':
          return ['debug', 'warn', 'warn'];
        case 'tls.hostnames':
          return [['one'], 'two,three', ['two', 'three']];
        case 'tls.cert_file':
        case 'tls.key_file':
          return ['/one.pem', '/two.pem', '/two.pem'];
        case 'cipher.url':
          return ['unix:///run/one.sock', 'unix:///run/two.sock', 'unix:///run/two.sock'];
        case 'mail.transport':
          return ['smtp', 'outbox', 'outbox'];
        case 'mail.smtp_url':
          return ['smtp://relay1:587', 'smtps://relay2:465', 'smtps://relay2:465'];
        case 'mail.language':
          return ['en', 'de', 'de'];
      }
      const schema = key.schema;
      if (schema.type === 'integer') return [(schema.minimum as number) + 1, String((schema.minimum as number) + 2), (schema.minimum as number) + 2];
      if (schema.type === 'boolean') return [!key.defaultValue, String(key.defaultValue), key.defaultValue];
      return ['/one', '/two', '/two'];
    };
    for (const key of CONFIG_KEYS) {
      const [fileValue, envValue, expected] = samples(key);
      const [section, name] = key.segments;
      const toml = name === undefined ? { [section!]: fileValue } : { [section!]: { [name]: fileValue } };
      const extra =
        key.path === 'tls.cert_file'
          ? { key_file: '/k.pem' }
          : key.path === 'tls.key_file'
            ? { cert_file: '/c.pem' }
            : key.path === 'mail.transport'
              ? { smtp_url: 'smtp://relay:587' }
              : {};
      if (name !== undefined && Object.keys(extra).length > 0) Object.assign(toml[section!] as object, extra);
      const file = write('precedence.toml', tomlOf(toml));
      const extraEnv: Record<string, string> =
        key.path === 'tls.cert_file' ? { TRESOR_TLS_KEY_FILE: '/k.pem' } : key.path === 'tls.key_file' ? { TRESOR_TLS_CERT_FILE: '/c.pem' } : {};
      const fromFile = loadConfig({ cwd: dir, file, env: extraEnv });
      expect(valueAt(fromFile, key.segments), `${key.path} from the file`).toEqual(fileValue);
      const fromEnv = loadConfig({ cwd: dir, file, env: { ...extraEnv, [key.envVar]: envValue } });
      expect(valueAt(fromEnv, key.segments), `${key.path} from ${key.envVar}`).toEqual(expected);
    }
  });

  it('ignores TRESOR_CONFIG, TRESOR_TEST_* and the CLI client variables', () => {
    expect(() =>
      load({ TRESOR_TEST_PG: 'postgres://x', TRESOR_TEST_ANYTHING: '1', TRESOR_URL: 'https://x', TRESOR_TOKEN: 't', TRESOR_CACERT: 'c', TRESOR_PASSWORD: 'p' }),
    ).not.toThrow();
  });
});

describe('loadConfig: secrets from files (TRESOR_<KEY>_FILE)', () => {
  it('reads every secret key from the named file, trimmed', () => {
    const db = write('secrets/db', 'postgres://tresor:from-file@db/tresor\n');
    const mk = write('secrets/mk', `  ${MASTER_KEY}\n`);
    write('secrets/redis', 'rediss://:r@cache:6380\n');
    const config = load({ TRESOR_DATABASE_URL_FILE: db, TRESOR_MASTER_KEY_VALUE_FILE: mk, TRESOR_REDIS_URL_FILE: 'secrets/redis' });
    expect(config.database.url).toBe('postgres://tresor:from-file@db/tresor');
    expect(config.master_key.value).toBe(MASTER_KEY);
    expect(config.redis.url).toBe('rediss://:r@cache:6380');
  });

  it('offers _FILE only for secret keys; TRESOR_MASTER_KEY_FILE is the key master_key.file', () => {
    expect(SECRET_KEYS).toEqual(['database.url', 'master_key.value', 'redis.url', 'mail.smtp_url']);
    expect(load({ TRESOR_MASTER_KEY_FILE: '/keys/mk.json' }).master_key.file).toBe('/keys/mk.json');
    const err = configError(() => load({ TRESOR_SERVER_PORT_FILE: '/x' }));
    expect(err.message).toContain('TRESOR_SERVER_PORT_FILE');
  });

  it('refuses a secret set both directly and through _FILE', () => {
    const db = write('db', 'postgres://a@b/c');
    const err = configError(() => load({ TRESOR_DATABASE_URL: 'postgres://x:hidden-pw@y/z', TRESOR_DATABASE_URL_FILE: db }));
    expect(err.message).toContain('database.url');
    expect(err.message).toContain('TRESOR_DATABASE_URL_FILE');
    expect(err.message).not.toContain('hidden-pw');
  });

  it('names the variable and the file when the secret file cannot be read', () => {
    const err = configError(() => load({ TRESOR_DATABASE_URL_FILE: '/nonexistent/secret' }));
    expect(err.message).toMatch(/database\.url.*TRESOR_DATABASE_URL_FILE.*\/nonexistent\/secret.*ENOENT.*expected a readable file/);
  });

  it('validates a secret read from a file like any other value, masked', () => {
    const db = write('db', 'mysql://tresor:file-secret-pw@db/tresor');
    const err = configError(() => load({ TRESOR_DATABASE_URL_FILE: db }));
    expect(err.message).toContain("configuration key 'database.url' (from TRESOR_DATABASE_URL_FILE");
    expect(err.message).toContain('mysql://tresor:********@db/tresor');
    expect(err.message).not.toContain('file-secret-pw');
  });
});

describe('loadConfig: errors name key, source, value and expectation', () => {
  it('bad type from the environment', () => {
    const err = configError(() => load({ TRESOR_SERVER_PORT: 'abc' }));
    expect(err.message).toBe(`configuration key 'server.port' (from TRESOR_SERVER_PORT) has value "abc"; expected an integer between 1 and 65535`);
    expect(err.details).toEqual({ key: 'server.port', source: 'TRESOR_SERVER_PORT', value: '"abc"', expected: 'an integer between 1 and 65535' });
  });

  it('bad type in the file', () => {
    const file = write('tresor.toml', '[server]\nport = "8443"\n');
    const err = configError(() => load());
    expect(err.message).toBe(`configuration key 'server.port' (from ${file}) has value "8443"; expected an integer between 1 and 65535`);
  });

  it('bad boolean, bad enum, bad list', () => {
    expect(configError(() => load({ TRESOR_METRICS_ENABLED: 'yes' })).message).toBe(
      `configuration key 'metrics.enabled' (from TRESOR_METRICS_ENABLED) has value "yes"; expected true or false (in the environment also 1 or 0)`,
    );
    const level = configError(() => load({ TRESOR_LOG_LEVEL: 'verbose' }));
    expect(level.message).toMatch(/'log\.level' \(from TRESOR_LOG_LEVEL\) has value "verbose"; expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent"/);
    const hostnames = configError(() => load({ TRESOR_TLS_HOSTNAMES: ' , ' }));
    expect(hostnames.message).toMatch(/'tls\.hostnames' \(from TRESOR_TLS_HOSTNAMES\) has value " , "; expected a non-empty list of host names/);
  });

  it('out of range, in the file and in the environment', () => {
    const file = write('tresor.toml', '[server]\nport = 70000\n');
    expect(configError(() => load()).message).toBe(
      `configuration key 'server.port' (from ${file}) has value 70000; expected an integer between 1 and 65535`,
    );
    rmSync(file);
    expect(configError(() => load({ TRESOR_ARGON2_MEMORY_KIB: '1024' })).message).toBe(
      `configuration key 'argon2.memory_kib' (from TRESOR_ARGON2_MEMORY_KIB) has value "1024"; expected an integer of at least 19456`,
    );
    expect(configError(() => load({ TRESOR_LIFECYCLE_SCHEDULER_INTERVAL_SECONDS: '1' })).message).toMatch(/at least 5/);
    expect(configError(() => load({ TRESOR_DATABASE_POOL_MAX: '0' })).message).toMatch(/between 1 and 100/);
    expect(configError(() => load({ TRESOR_ARGON2_PARALLELISM: '17' })).message).toMatch(/between 1 and 16/);
    expect(configError(() => load({ TRESOR_SERVER_HTTP_REDIRECT_PORT: '-1' })).message).toMatch(/between 0 and 65535 \(0 disables/);
    expect(configError(() => load({ TRESOR_SERVER_PORT: '0' })).message).toMatch(/has value "0"; expected an integer between 1 and 65535/);
  });

  it('unknown key in the file, with a suggestion and the known keys of the section', () => {
    const file = write('tresor.toml', '[server]\nprot = 8443\n');
    const err = configError(() => load());
    expect(err.message).toBe(
      `unknown key 'server.prot' in ${file}; did you mean 'server.port'? known keys in [server]: host, port, public_url, http_redirect_port, trust_proxy`,
    );
    expect(err.details.key).toBe('server.prot');
  });

  it('unknown top-level key or section, and a section that is not a table', () => {
    write('tresor.toml', 'datadir = "x"\n');
    expect(configError(() => load()).message).toMatch(/unknown key 'datadir' in .*tresor\.toml; did you mean 'data_dir'\? known top-level keys: data_dir and the sections \[server\], \[tls\]/);
    write('tresor.toml', '[sever]\nport = 1\n');
    expect(configError(() => load()).message).toMatch(/unknown key 'sever' in .*; did you mean 'server'\?/);
    write('tresor.toml', 'server = 8443\n');
    expect(configError(() => load()).message).toMatch(/configuration key 'server' \(from .*tresor\.toml\) is not a table; expected a table \[server\] with the keys host, port/);
  });

  it('unknown TRESOR_ variable, naming the closest known one', () => {
    const err = configError(() => load({ TRESOR_SERVER_PROT: '8443' }));
    expect(err.message).toMatch(/^unknown environment variable TRESOR_SERVER_PROT; did you mean TRESOR_SERVER_PORT\? rename or unset it; expected a variable naming a configuration key/);
    expect(configError(() => load({ TRESOR_PORT: '1' })).message).toMatch(/did you mean TRESOR_SERVER_PORT\?/);
    expect(configError(() => load({ TRESOR_SERVER_PORT_FILE: '/x' })).message).toMatch(/did you mean TRESOR_SERVER_PORT\?/);
    expect(configError(() => load({ TRESOR_XYZZY: '1' })).message).toMatch(/^unknown environment variable TRESOR_XYZZY; rename or unset it; expected/);
    expect(err.details.key).toBe('TRESOR_SERVER_PROT');
    // The value of a misspelt variable may be a secret: it is never shown.
    const secret = configError(() => load({ TRESOR_DATABSE_URL: 'postgres://u:typo-secret@db/x' }));
    expect(secret.message).toMatch(/did you mean TRESOR_DATABASE_URL\?/);
    expect(secret.message).not.toContain('typo-secret');
  });

  it('TOML syntax error with file, line and column, without quoting the line', () => {
    const file = write('tresor.toml', '[server]\nport = 8443\n[database]\nurl = "postgres://u:syntax-secret@db/x\n');
    const err = configError(() => load());
    expect(err.message).toMatch(new RegExp(`^configuration file ${file} is not valid TOML: .+ at line 4, column \\d+; fix the syntax there$`));
    expect(err.message).not.toContain('syntax-secret');
    expect(JSON.stringify(err.details)).not.toContain('syntax-secret');
  });

  it('missing explicitly named file, from the option or TRESOR_CONFIG; a missing default file is fine', () => {
    const viaOption = configError(() => load({}, 'nope.toml'));
    expect(viaOption.message).toBe(
      `configuration file ${join(dir, 'nope.toml')} (from --config) does not exist; create it, or point --config at an existing TOML file`,
    );
    const viaEnv = configError(() => load({ TRESOR_CONFIG: '/etc/tresor/missing.toml' }));
    expect(viaEnv.message).toMatch(/\/etc\/tresor\/missing\.toml \(from TRESOR_CONFIG\) does not exist/);
    expect(() => load()).not.toThrow();
  });

  it('certificate without key, and key without certificate', () => {
    const file = write('tresor.toml', '[tls]\ncert_file = "/etc/tls/cert.pem"\n');
    expect(configError(() => load()).message).toBe(
      `configuration key 'tls.cert_file' (from ${file}) has value "/etc/tls/cert.pem"; expected tls.key_file to be set as well ` +
        '(your certificate and its private key go together), or both empty so that the local CA issues a certificate',
    );
    rmSync(file);
    expect(configError(() => load({ TRESOR_TLS_KEY_FILE: '/k.pem' })).message).toMatch(
      /configuration key 'tls\.key_file' \(from TRESOR_TLS_KEY_FILE\) has value "\/k\.pem"; expected tls\.cert_file to be set as well/,
    );
    expect(load({ TRESOR_TLS_KEY_FILE: '/k.pem', TRESOR_TLS_CERT_FILE: '/c.pem' }).tls).toMatchObject({ cert_file: '/c.pem', key_file: '/k.pem' });
  });

  it('bad database URL scheme, with the password masked but the host visible', () => {
    const err = configError(() => load({ TRESOR_DATABASE_URL: 'mysql://tresor:db-pass-123@db.internal/tresor' }));
    expect(err.message).toBe(
      `configuration key 'database.url' (from TRESOR_DATABASE_URL) has value "mysql://tresor:********@db.internal/tresor"; ` +
        'expected empty (embedded SQLite) or a URL starting with postgres:// or postgresql://',
    );
    expect(JSON.stringify(err.details)).not.toContain('db-pass-123');
    expect(load({ TRESOR_DATABASE_URL: 'postgresql://tresor@db/tresor' }).database.url).toBe('postgresql://tresor@db/tresor');
  });

  it('bad redis URL, bad master key value, bad public URL', () => {
    expect(configError(() => load({ TRESOR_REDIS_URL: 'http://:redis-pw@cache' })).message).toMatch(
      /'redis\.url' \(from TRESOR_REDIS_URL\) has value "http:\/\/:\*{8}@cache\/"; expected empty or a URL starting with redis:\/\/ or rediss:\/\//,
    );
    const short = Buffer.alloc(16, 1).toString('base64');
    const mk = configError(() => load({ TRESOR_MASTER_KEY_VALUE: short }));
    expect(mk.message).toMatch(/'master_key\.value' \(from TRESOR_MASTER_KEY_VALUE\) has value "\*{8}"; expected .*exactly 32 bytes/);
    expect(mk.message).not.toContain(short);
    expect(configError(() => load({ TRESOR_SERVER_PUBLIC_URL: 'http://tresor.example.org' })).message).toMatch(
      /'server\.public_url' \(from TRESOR_SERVER_PUBLIC_URL\) has value "http:\/\/tresor\.example\.org"; expected an https:\/\/ URL/,
    );
  });

  it('masks a secret of the wrong type in the file', () => {
    write('tresor.toml', '[master_key]\nvalue = 123456789\n');
    const err = configError(() => load());
    expect(err.message).toMatch(/'master_key\.value' \(from .*\) has value "\*{8}"/);
    expect(err.message).not.toContain('123456789');
  });
});

describe('environment coercion', () => {
  const intKeys = CONFIG_KEYS.filter((k) => k.schema.type === 'integer');
  const boolKeys = CONFIG_KEYS.filter((k) => k.schema.type === 'boolean');

  it('names variables TRESOR_ + the key path in capitals, joined with _', () => {
    expect(keyOf('server.port').envVar).toBe('TRESOR_SERVER_PORT');
    expect(keyOf('data_dir').envVar).toBe('TRESOR_DATA_DIR');
    expect(keyOf('lifecycle.deletion_grace_days').envVar).toBe('TRESOR_LIFECYCLE_DELETION_GRACE_DAYS');
    expect(keyOf('database.url').envFileVar).toBe('TRESOR_DATABASE_URL_FILE');
    for (const key of CONFIG_KEYS) expect(key.envVar).toBe(`TRESOR_${key.path.replaceAll('.', '_').toUpperCase()}`);
    expect(new Set(CONFIG_ENV_VARS).size).toBe(CONFIG_ENV_VARS.length);
  });

  it('round-trips every integer within its range', () => {
    for (const key of intKeys) {
      const min = key.schema.minimum as number;
      const max = (key.schema.maximum as number | undefined) ?? 1_000_000;
      fc.assert(
        fc.property(fc.integer({ min, max }), fc.constantFrom('', ' ', '+'), (n, decoration) => {
          const text = decoration === '+' ? `+${n}` : `${decoration}${n}${decoration}`;
          expect(valueAt(load({ [key.envVar]: text }), key.segments)).toBe(n);
        }),
        { numRuns: 25 },
      );
    }
  });

  it('rejects integers outside the range and non-integers, quoting the raw value', () => {
    const port = keyOf('server.port');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 65536, max: 10_000_000 }).map(String),
          fc.integer({ min: -10_000_000, max: 0 }).map(String),
          fc.double({ noNaN: true }).filter((d) => !Number.isInteger(d)).map(String),
          fc.string().filter((s) => !/^\s*[+-]?\d+\s*$/.test(s)),
        ),
        (raw) => {
          const err = configError(() => load({ [port.envVar]: raw }));
          expect(err.message).toBe(
            `configuration key 'server.port' (from TRESOR_SERVER_PORT) has value ${JSON.stringify(raw)}; expected an integer between 1 and 65535`,
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  it('accepts true/false/1/0 in any case for booleans', () => {
    const spellings = fc.tuple(fc.boolean(), fc.boolean()).chain(([value, numeric]) =>
      (numeric ? fc.constant(value ? '1' : '0') : fc.mixedCase(fc.constant(String(value)))).map((text) => [value, text] as const),
    );
    for (const key of boolKeys) {
      fc.assert(
        fc.property(spellings, ([value, text]) => {
          expect(valueAt(load({ [key.envVar]: text }), key.segments)).toBe(value);
        }),
        { numRuns: 20 },
      );
    }
  });

  it('splits lists on commas and trims the items', () => {
    const hostname = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,20}$/);
    fc.assert(
      fc.property(fc.array(hostname, { minLength: 1, maxLength: 6 }), fc.constantFrom(',', ', ', ' ,'), (names, separator) => {
        expect(load({ TRESOR_TLS_HOSTNAMES: names.join(separator) }).tls.hostnames).toEqual(names);
      }),
      { numRuns: 100 },
    );
  });

  it('keeps strings as they are', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }).filter((s) => s.trim() !== ''), (host) => {
        expect(load({ TRESOR_SERVER_HOST: host }).server.host).toBe(host);
      }),
      { numRuns: 50 },
    );
  });
});

describe('secrets never leak', () => {
  /** Secrets long enough that they cannot occur by chance in the rest of the message. */
  const secretText = fc.string({ minLength: 8, maxLength: 30, unit: 'grapheme-ascii' }).filter((s) => s.trim() === s && /[A-Za-z0-9]{4}/.test(s));

  const leaks = (text: string, secret: string) =>
    text.includes(secret) || text.includes(encodeURIComponent(secret)) || text.includes(JSON.stringify(secret).slice(1, -1));

  it('maskSecret hides any password of a URL, whatever characters it has, but keeps the host', () => {
    fc.assert(
      fc.property(secretText, fc.constantFrom('postgres', 'postgresql', 'redis', 'rediss', 'mysql'), (password, scheme) => {
        const shown = maskSecret(`${scheme}://tresor:${password}@db.example.org:5432/tresor`);
        expect(leaks(shown, password)).toBe(false);
        const encoded = maskSecret(`${scheme}://tresor:${encodeURIComponent(password)}@db.example.org:5432/tresor`);
        expect(leaks(encoded, password)).toBe(false);
        expect(encoded).toBe(`${scheme}://tresor:********@db.example.org:5432/tresor`);
      }),
      { numRuns: 300 },
    );
    expect(maskSecret('postgres://u@db/x?sslmode=require&password=qs-secret')).toBe('postgres://u@db/x?sslmode=require&password=********');
    expect(maskSecret('redis://bare-token@cache:6379')).toBe('redis://********@cache:6379');
    expect(maskSecret('not a url with a secret')).toBe('********');
    expect(maskSecret('')).toBe('');
  });

  it('no error message contains a secret, for any secret key and any source', () => {
    fc.assert(
      fc.property(secretText, fc.constantFrom(...SECRET_KEYS), fc.constantFrom('env', 'file', 'toml'), (secret, path, source) => {
        const key = keyOf(path);
        // Wrong scheme or wrong length, so that validation fails with the secret in the value.
        const value = path === 'master_key.value' ? secret : `ftp://user:${encodeURIComponent(secret)}@host/${path}`;
        let env: Record<string, string> = {};
        if (source === 'env') env = { [key.envVar]: value };
        if (source === 'file') env = { [key.envFileVar!]: write('secret-file', `${value}\n`) };
        if (source === 'toml') write('tresor.toml', tomlOf({ [key.segments[0]!]: { [key.segments[1]!]: value } }));
        try {
          const err = configError(() => load(env));
          expect(err.message).toContain(`'${path}'`);
          expect(leaks(err.message, secret)).toBe(false);
          expect(leaks(JSON.stringify(err.details), secret)).toBe(false);
        } finally {
          rmSync(join(dir, 'tresor.toml'), { force: true });
        }
      }),
      { numRuns: 150 },
    );
  });

  it('renderConfig masks secrets in TOML and JSON and keeps everything else', () => {
    const config = load({
      TRESOR_DATABASE_URL: 'postgres://tresor:render-db-pw@db.internal:5432/tresor',
      TRESOR_REDIS_URL: 'redis://:render-redis-pw@127.0.0.1:6379',
      TRESOR_MASTER_KEY_VALUE: MASTER_KEY,
    });
    for (const format of ['toml', 'json'] as const) {
      const text = renderConfig(config, format);
      for (const secret of ['render-db-pw', 'render-redis-pw', MASTER_KEY]) expect(text).not.toContain(secret);
      const parsed = (format === 'toml' ? parseToml(text) : JSON.parse(text)) as TresorConfig;
      expect(parsed.database.url).toBe('postgres://tresor:********@db.internal:5432/tresor');
      expect(parsed.redis.url).toBe('redis://:********@127.0.0.1:6379');
      expect(parsed.master_key.value).toBe('********');
      expect({ ...parsed, database: config.database, redis: config.redis, master_key: config.master_key }).toEqual(config);
    }
    expect(renderConfig(config, 'toml')).toMatch(/^\[server\]\n(#.*\n)?host = "127\.0\.0\.1"\n#.*\nport = 8443$/m);
    // Empty secrets stay visible as empty: "not set" is worth seeing.
    expect(parseToml(renderConfig(load(), 'toml'))).toMatchObject({ database: { url: '' }, master_key: { value: '' } });
  });
});

describe('the loaded configuration', () => {
  it('is deeply frozen', () => {
    const config = load();
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(Object.isFrozen(config.tls.hostnames)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.tls.hostnames as string[]).push('evil.example');
    }).toThrow(TypeError);
    expect(config.server.port).toBe(8443);
  });

  it('derives public_url from the port unless set', () => {
    expect(load({ TRESOR_SERVER_PORT: '9443' }).server.public_url).toBe('https://localhost:9443');
    expect(load({ TRESOR_SERVER_PUBLIC_URL: 'https://tresor.example.org' }).server.public_url).toBe('https://tresor.example.org');
  });
});

// ------------------------------------------------------------------------------------------------

function valueAt(tree: object, segments: readonly string[]): unknown {
  let node: unknown = tree;
  for (const segment of segments) node = (node as Record<string, unknown>)[segment];
  return node;
}

/** Test fixtures as TOML (smol-toml writes top-level keys first, then one table per section). */
function tomlOf(tree: Record<string, unknown>): string {
  return stringifyToml(tree);
}

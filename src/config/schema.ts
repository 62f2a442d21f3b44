import { Kind, Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * The whole configuration in one TypeBox schema: `tresor.toml` sections and keys, the `TRESOR_*`
 * environment and `*_FILE` secrets all map onto it. Every key has a default and a description (the
 * descriptions feed `tresor config print` and the docs). Custom schema options used here:
 *  - `secret: true`  the value is never printed or put into an error message (URLs: only the password is masked)
 *  - `expected`      how an error message describes a valid value, when the generated text would be too vague
 */

const port = (description: string, defaultPort: number, minimum = 1) =>
  Type.Integer({
    minimum,
    maximum: 65535,
    default: defaultPort,
    description,
  });

export const ConfigSchema = Type.Object(
  {
    data_dir: Type.String({
      minLength: 1,
      default: './data',
      description: 'data directory: databases, blobs and the local PKI (relative paths: to the configuration file, else the working directory)',
    }),
    server: Type.Object(
      {
        host: Type.String({ minLength: 1, default: '127.0.0.1', description: 'address to listen on (0.0.0.0 or :: to serve the network)' }),
        port: port('HTTPS port', 8443),
        public_url: Type.String({
          pattern: '^(|https://[^\\s]+)$',
          default: '',
          description: 'the https:// URL users reach; empty: https://localhost:<port>',
          expected: 'an https:// URL such as "https://tresor.example.org", or empty for https://localhost:<port>',
        }),
        http_redirect_port: Type.Integer({
          minimum: 0,
          maximum: 65535,
          default: 0,
          description: 'plain-HTTP port that only redirects to HTTPS; 0 disables it',
          expected: 'an integer between 0 and 65535 (0 disables the redirect)',
        }),
        trust_proxy: Type.Boolean({ default: false, description: 'trust X-Forwarded-* headers from a reverse proxy' }),
      },
      { additionalProperties: false, default: {}, description: 'the HTTPS listener' },
    ),
    tls: Type.Object(
      {
        cert_file: Type.String({
          default: '',
          description: 'your certificate chain (PEM); empty: a local CA under <data_dir>/pki issues one',
        }),
        key_file: Type.String({ default: '', description: 'the private key of cert_file (PEM); set together with cert_file' }),
        hostnames: Type.Array(Type.String({ minLength: 1 }), {
          minItems: 1,
          default: ['localhost'],
          description: 'host names in the locally issued certificate',
          expected: 'a non-empty list of host names (in the environment: comma-separated, e.g. "localhost,tresor.internal")',
        }),
      },
      { additionalProperties: false, default: {}, description: 'TLS certificate' },
    ),
    database: Type.Object(
      {
        url: Type.String({
          pattern: '^(|postgres://.*|postgresql://.*)$',
          default: '',
          secret: true,
          description: 'PostgreSQL URL of the control database (postgres://user:pass@host:5432/tresor); empty: embedded SQLite under data_dir',
          expected: 'empty (embedded SQLite) or a URL starting with postgres:// or postgresql://',
        }),
        pool_max: Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'connections to the control database' }),
      },
      { additionalProperties: false, default: {}, description: 'storage' },
    ),
    master_key: Type.Object(
      {
        file: Type.String({
          minLength: 1,
          default: './keys/master.key',
          description: 'master key ring file, created with mode 0600; deliberately outside data_dir so a copy of the data alone decrypts nothing',
        }),
        value: Type.String({
          // 32 bytes are 43 base64 characters and one '=' of padding.
          pattern: '^(|[A-Za-z0-9+/]{43}=)$',
          default: '',
          secret: true,
          description: 'base64 of 32 bytes, used instead of the file when set',
          expected: 'empty (use master_key.file) or the base64 encoding of exactly 32 bytes (44 characters, e.g. from `openssl rand -base64 32`)',
        }),
      },
      { additionalProperties: false, default: {}, description: 'the master key that wraps every tenant key' },
    ),
    redis: Type.Object(
      {
        url: Type.String({
          pattern: '^(|redis://.*|rediss://.*)$',
          default: '',
          secret: true,
          description: 'Redis URL for shared ephemeral state in a cluster; empty: in-process state',
          expected: 'empty or a URL starting with redis:// or rediss://',
        }),
      },
      { additionalProperties: false, default: {}, description: 'shared ephemeral state' },
    ),
    metrics: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: 'serve Prometheus metrics on a separate listener' }),
        host: Type.String({ minLength: 1, default: '127.0.0.1', description: 'address of the metrics listener' }),
        port: port('port of the metrics listener', 9464),
      },
      { additionalProperties: false, default: {}, description: 'Prometheus metrics' },
    ),
    lifecycle: Type.Object(
      {
        deletion_grace_days: Type.Integer({
          minimum: 0,
          default: 30,
          description: 'days after the licence end before a tenant is deleted',
        }),
        scheduler_interval_seconds: Type.Integer({
          minimum: 5,
          default: 3600,
          description: 'how often the scheduler looks for expired tenants',
        }),
      },
      { additionalProperties: false, default: {}, description: 'tenant lifecycle' },
    ),
    ledger: Type.Object(
      {
        retention_days: Type.Integer({
          minimum: 1,
          default: 90,
          description: 'days a ledger payload (details, source address) is kept; the leaf hash stays and the tree still verifies',
        }),
        technical_retention_days: Type.Integer({
          minimum: 1,
          default: 7,
          description: 'days the payload of a technical event (technical.*: start, stop, migration, alarm-gateway logs) is kept; a shorter class than retention_days',
        }),
        checkpoint_interval_seconds: Type.Integer({
          minimum: 5,
          default: 300,
          description: 'how often a signed checkpoint is written for every ledger that grew',
        }),
      },
      { additionalProperties: false, default: {}, description: 'tamper-evident ledger' },
    ),
    backup: Type.Object(
      {
        dir: Type.String({ default: '', description: 'folder of the backups (`tresor backup`); empty: <data_dir>/backups. Better on another disk; the master key is never in a backup' }),
        interval_hours: Type.Integer({ minimum: 0, maximum: 8760, default: 24, description: 'hours between automatic backups by `tresor serve`; 0 = none' }),
        keep_days: Type.Integer({ minimum: 1, default: 7, description: 'days a backup is kept (rolling); the newest one always stays' }),
      },
      { additionalProperties: false, default: {}, description: 'backups (S1.3)' },
    ),
    log: Type.Object(
      {
        level: Type.Union(
          [
            Type.Literal('fatal'),
            Type.Literal('error'),
            Type.Literal('warn'),
            Type.Literal('info'),
            Type.Literal('debug'),
            Type.Literal('trace'),
            Type.Literal('silent'),
          ],
          { default: 'info', description: 'log level: fatal, error, warn, info, debug, trace or silent' },
        ),
      },
      { additionalProperties: false, default: {}, description: 'logging' },
    ),
    cipher: Type.Object(
      {
        url: Type.String({
          pattern: '^(|unix:///.+|https://[^/]+/?)$',
          default: '',
          description:
            'the cipher service that holds the master key: empty = in this process; unix:///path/to/cipher.sock or https://host:port (mutual TLS) = a separate `tresor cipher-service`',
          expected: 'empty, unix:// followed by the absolute path of the socket (unix:///run/tresor/cipher.sock), or https://host:port',
        }),
        ca_file: Type.String({ default: '', description: 'for an https:// cipher.url: the cipher service CA certificate (ca.pem printed by `tresor cipher-service --listen`)' }),
        cert_file: Type.String({ default: '', description: 'for an https:// cipher.url: the client certificate (client.pem)' }),
        key_file: Type.String({ default: '', description: 'for an https:// cipher.url: the client private key (client-key.pem)' }),
      },
      { additionalProperties: false, default: {}, description: 'where the master key is used' },
    ),
    mail: Type.Object(
      {
        transport: Type.Union([Type.Literal('outbox'), Type.Literal('smtp')], {
          default: 'outbox',
          description: 'outbox: write each mail as an .eml file into outbox_dir (local runs); smtp: send through smtp_url',
          expected: '"outbox" or "smtp"',
        }),
        outbox_dir: Type.String({ default: '', description: 'folder for .eml files of the outbox transport; empty: <data_dir>/outbox' }),
        smtp_url: Type.String({
          pattern: '^(|smtps?://.*)$',
          default: '',
          secret: true,
          description: 'relay for the smtp transport: smtps://user:pass@host:465 (implicit TLS) or smtp://user:pass@host:587 (STARTTLS, required)',
          expected: 'empty or a URL starting with smtp:// or smtps://',
        }),
        smtp_ca_file: Type.String({ default: '', description: "PEM file with the relay's CA when it is not publicly trusted; empty: the system's CAs" }),
        from: Type.String({ minLength: 3, default: 'Tresor <tresor@localhost>', description: 'sender address of every mail Tresor sends' }),
        language: Type.Union([Type.Literal('de'), Type.Literal('en')], {
          default: 'de',
          description: 'language of mails to accounts that have not chosen one',
          expected: '"de" or "en"',
        }),
      },
      { additionalProperties: false, default: {}, description: 'outbound mail: invitations, password resets, security notices' },
    ),
    argon2: Type.Object(
      {
        // OWASP Password Storage Cheat Sheet: Argon2id with m=19 MiB, t=2, p=1 is the minimum.
        memory_kib: Type.Integer({ minimum: 19456, default: 19456, description: 'Argon2id memory cost in KiB (OWASP minimum 19456)' }),
        iterations: Type.Integer({ minimum: 2, default: 2, description: 'Argon2id iterations (OWASP minimum 2)' }),
        parallelism: Type.Integer({ minimum: 1, maximum: 16, default: 1, description: 'Argon2id lanes' }),
      },
      { additionalProperties: false, default: {}, description: 'password hashing cost; can only be raised above the minimum' },
    ),
  },
  { additionalProperties: false },
);

/** The fully resolved configuration: every key present, paths absolute, `server.public_url` derived. */
export type TresorConfig = Static<typeof ConfigSchema>;

export type LogLevel = TresorConfig['log']['level'];

/** One leaf key of the configuration. */
export interface ConfigKey {
  /** Dotted path, e.g. `server.port`. */
  readonly path: string;
  /** Path segments, e.g. `['server', 'port']`. */
  readonly segments: readonly string[];
  /** The variable that overrides it, e.g. `TRESOR_SERVER_PORT`. */
  readonly envVar: string;
  /** For secret keys, the Docker-secrets style variable naming a file that holds the value. */
  readonly envFileVar: string | undefined;
  readonly secret: boolean;
  readonly description: string;
  readonly defaultValue: unknown;
  readonly schema: TSchema;
}

/** `server.port` → `TRESOR_SERVER_PORT`. */
export function envVarName(segments: readonly string[]): string {
  return `TRESOR_${segments.join('_').toUpperCase()}`;
}

function collectKeys(schema: TSchema, prefix: readonly string[]): ConfigKey[] {
  const properties = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  return Object.entries(properties).flatMap(([name, child]) => {
    const segments = [...prefix, name];
    if (child[Kind] === 'Object') return collectKeys(child, segments);
    const secret = child.secret === true;
    const envVar = envVarName(segments);
    return [
      {
        path: segments.join('.'),
        segments,
        envVar,
        envFileVar: secret ? `${envVar}_FILE` : undefined,
        secret,
        description: String(child.description ?? ''),
        defaultValue: child.default,
        schema: child,
      },
    ];
  });
}

/** Every leaf key, in schema order. */
export const CONFIG_KEYS: readonly ConfigKey[] = collectKeys(ConfigSchema, []);

/** Dotted paths of the secret keys: never printed, never in an error message. */
export const SECRET_KEYS: readonly string[] = CONFIG_KEYS.filter((k) => k.secret).map((k) => k.path);

/** Keys holding file-system paths; relative values are resolved against the configuration file's directory (else cwd). */
export const PATH_KEYS: readonly string[] = ['data_dir', 'tls.cert_file', 'tls.key_file', 'master_key.file', 'mail.outbox_dir', 'mail.smtp_ca_file', 'backup.dir'];

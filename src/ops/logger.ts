import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * Paths that are censored in every log line. Passwords, tokens, keys and personal fields never reach
 * a log; the list is tested in `test/logging.test.ts`. Pino's `*` matches one level, so common
 * nestings are listed explicitly.
 */
const SENSITIVE_KEYS = [
  'password',
  'newPassword',
  'currentPassword',
  'oneTimePassword',
  'token',
  'sessionToken',
  'secret',
  'apiSecret',
  'key',
  'privateKey',
  'masterKey',
  'authorization',
  'cookie',
  'email',
  'phone',
  'name',
  'firstName',
  'lastName',
  'address',
  'birthDate',
  'iban',
  'login',
];

export const REDACT_PATHS: string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-tresor-token"]',
  'res.headers["set-cookie"]',
  ...SENSITIVE_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `body.${k}`, `req.body.${k}`]),
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'tresor' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // A URL is logged without its query string: download tokens travel there (and nothing else belongs in a log).
    serializers: {
      req: (req: { method?: string; url?: string; ip?: string; socket?: { remoteAddress?: string } }) => ({
        method: req.method,
        url: typeof req.url === 'string' ? req.url.split('?')[0] : undefined,
        remoteAddress: req.ip ?? req.socket?.remoteAddress,
      }),
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

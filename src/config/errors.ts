import { DomainError } from '../shared/errors.js';

// A type alias (not an interface) so that it is assignable to DomainError's Record<string, unknown>.
export type ConfigErrorDetails = {
  /** The configuration key (`server.port`), or for problems outside one key the variable or `config file`. */
  readonly key: string;
  /** The offending value as shown to humans: JSON-quoted, masked for secret keys. */
  readonly value: string;
  /** What a valid value looks like. */
  readonly expected: string;
  /** Where the value came from: the configuration file's path, an environment variable, or `default`. */
  readonly source: string;
};

/** The configuration cannot be used; the message names the key, its source, the (masked) value and what is expected. */
export class ConfigError extends DomainError {
  declare readonly details: ConfigErrorDetails;

  constructor(message: string, details: ConfigErrorDetails) {
    super('CONFIG_INVALID', message, { ...details });
  }
}

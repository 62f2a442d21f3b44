export { ConfigError, type ConfigErrorDetails } from './errors.js';
export { CLIENT_ENV_VARS, CONFIG_ENV_VARS, CONFIG_FILE_ENV, loadConfig, type LoadConfigOptions } from './load.js';
export { MASK, maskSecret, renderConfig } from './print.js';
export { CONFIG_KEYS, ConfigSchema, SECRET_KEYS, envVarName, type ConfigKey, type LogLevel, type TresorConfig } from './schema.js';

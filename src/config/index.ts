export { defaultConfig, configSchema } from './schema.js';
export type { HalflifeConfig, EngineConfig, LogConfig, IngestConfig, SchemasConfig, ServerConfig, FsyncPolicy, Compatibility, LogLevel, AuthMode, Priority, OverloadConfig, RateLimitsConfig, MetricsConfig, AlertsConfig, NatsConfig } from './schema.js';
export { loadConfig, envLeaves } from './load.js';
export type { LoadConfigOptions, LoadedConfig } from './load.js';
export { ConfigErrors } from './errors.js';

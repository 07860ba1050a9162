import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { closest, HalflifeError } from '../core/index.js';
import './errors.js';
import { configSchema, defaultConfig, type HalflifeConfig } from './schema.js';

/** HALFLIFE_* variables that are not config keys (used by the CLI as a client). */
const CLIENT_ENV = new Set(['HALFLIFE_URL', 'HALFLIFE_API_KEY', 'HALFLIFE_CONFIG', 'HALFLIFE_NATS']);
const DEFAULT_CONFIG_FILES = ['halflife.yaml', 'halflife.yml'];

export interface LoadConfigOptions {
  /** Explicit config file (`--config`); it must exist. */
  readonly file?: string | undefined;
  /** Folder searched for halflife.yaml when no file is named, and base of relative flag paths. */
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Command-line overrides, as config paths: `{ 'server.port': 8080 }`. */
  readonly flags?: Readonly<Record<string, unknown>>;
}

export interface LoadedConfig {
  readonly config: HalflifeConfig;
  /** The file read, if any. */
  readonly file: string | undefined;
}

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(configSchema);

/** Loads defaults < file < HALFLIFE_* env < flags, and refuses unknown or ill-typed keys with their path. */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const config = defaultConfig();
  const problems: string[] = [];

  const file = findFile(options.file ?? env.HALFLIFE_CONFIG, cwd);
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      const words = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message;
      throw new HalflifeError('CONFIG_INVALID', { problems: `  ${file}: cannot be read: ${words}`, path: file }, { message: `cannot read config file ${file}: ${words} (${code})`, cause: err });
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text) ?? {};
    } catch (err) {
      throw new HalflifeError('CONFIG_INVALID', { problems: `  ${file}: not valid YAML: ${(err as Error).message}` });
    }
    if (!validate(parsed)) problems.push(...describe(validate.errors ?? [], file));
    else {
      const fromFile = parsed as Partial<HalflifeConfig>;
      const base = dirname(file);
      if (fromFile.dataDir !== undefined) fromFile.dataDir = resolve(base, fromFile.dataDir);
      if (typeof fromFile.schemas?.dir === 'string') fromFile.schemas.dir = resolve(base, fromFile.schemas.dir);
      if (typeof fromFile.archive?.dir === 'string') fromFile.archive.dir = resolve(base, fromFile.archive.dir);
      // TLS files are relative to the config file, like the other paths in it.
      if (typeof fromFile.server?.tlsCertFile === 'string') fromFile.server.tlsCertFile = resolve(base, fromFile.server.tlsCertFile);
      if (typeof fromFile.server?.tlsKeyFile === 'string') fromFile.server.tlsKeyFile = resolve(base, fromFile.server.tlsKeyFile);
      deepMerge(config as unknown as Record<string, unknown>, fromFile as Record<string, unknown>);
    }
  }

  const leaves = envLeaves();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('HALFLIFE_') || CLIENT_ENV.has(name) || raw === undefined) continue;
    const path = leaves.get(name);
    if (path === undefined) {
      problems.push(`  environment ${name}: not a config setting${suggest(name, [...leaves.keys()])}`);
      continue;
    }
    setPath(config, path, coerce(raw, getPath(defaultConfig(), path), path));
  }
  // HALFLIFE_NATS=nats://h1:4222,... : the log and the shared state on that NATS JetStream cluster.
  if (env.HALFLIFE_NATS !== undefined && env.HALFLIFE_NATS !== '') {
    config.nats.servers = env.HALFLIFE_NATS;
    config.log.backend = 'nats';
  }
  for (const [path, value] of Object.entries(options.flags ?? {})) {
    if (value !== undefined) setPath(config, path.split('.'), value);
  }
  if (!isAbsolute(config.dataDir)) config.dataDir = resolve(cwd, config.dataDir);
  if (config.schemas.dir !== null && !isAbsolute(config.schemas.dir)) config.schemas.dir = resolve(cwd, config.schemas.dir);
  if (config.archive.dir !== null && !isAbsolute(config.archive.dir)) config.archive.dir = resolve(cwd, config.archive.dir);
  if (config.server.tlsCertFile !== null) config.server.tlsCertFile = resolve(cwd, config.server.tlsCertFile);
  if (config.server.tlsKeyFile !== null) config.server.tlsKeyFile = resolve(cwd, config.server.tlsKeyFile);

  if (problems.length === 0 && !validate(config)) problems.push(...describe(validate.errors ?? [], 'settings'));
  for (const [key, p] of Object.entries(config.log.pinnedKeys)) {
    if (p >= config.log.partitions) {
      problems.push(`  log.pinnedKeys.${key}: partition ${p} does not exist (log.partitions is ${config.log.partitions})`);
    }
  }
  const { overload, rateLimits } = config;
  if (overload.shedLowAt > overload.shedNormalAt) {
    problems.push(`  overload.shedLowAt (${overload.shedLowAt}) must not be above overload.shedNormalAt (${overload.shedNormalAt}): low-priority events are shed first`);
  }
  if (rateLimits.overflowPartition !== null && rateLimits.overflowPartition >= config.log.partitions) {
    problems.push(`  rateLimits.overflowPartition: partition ${rateLimits.overflowPartition} does not exist (log.partitions is ${config.log.partitions})`);
  }
  if (rateLimits.hotKeyEventsPerS > 0 && rateLimits.overflowPartition === null) {
    problems.push('  rateLimits.hotKeyEventsPerS: hot keys are diverted to rateLimits.overflowPartition, which is not set');
  }
  if (config.log.backend === 'nats' && config.nats.servers === null) {
    problems.push('  log.backend: nats needs nats.servers (or HALFLIFE_NATS, or serve --nats nats://host:4222)');
  }
  if (config.cluster.role !== 'all' && config.log.backend !== 'nats') {
    problems.push(`  cluster.role: ${config.cluster.role} is a role in a cluster on NATS (log.backend: nats); one process on the embedded log runs everything (all)`);
  }
  if ((config.server.tlsCertFile === null) !== (config.server.tlsKeyFile === null)) {
    problems.push('  server.tlsCertFile and server.tlsKeyFile: set both (HTTPS) or neither (plain HTTP)');
  }
  if (problems.length > 0) throw new HalflifeError('CONFIG_INVALID', { problems: problems.join('\n') });
  return { config, file };
}

function findFile(explicit: string | undefined, cwd: string): string | undefined {
  if (explicit !== undefined) {
    const path = resolve(cwd, explicit);
    if (!existsSync(path)) throw new HalflifeError('CONFIG_NOT_FOUND', { path });
    return path;
  }
  for (const name of DEFAULT_CONFIG_FILES) {
    const path = resolve(cwd, name);
    if (existsSync(path)) return path;
  }
  return undefined;
}

function describe(errors: ErrorObject[], source: string): string[] {
  return errors.map((e) => {
    const path = e.instancePath.slice(1).replaceAll('/', '.');
    if (e.keyword === 'additionalProperties') {
      const key = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(propertiesAt(path));
      return `  ${source}: ${path ? `${path}.` : ''}${key}: unknown key${suggest(key, allowed)}; expected one of: ${allowed.join(', ')}`;
    }
    if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      return `  ${source}: ${path}: expected one of ${allowed.join(', ')} (got ${JSON.stringify(e.data)})`;
    }
    return `  ${source}: ${path || '(top level)'}: ${e.message} (got ${JSON.stringify(e.data)})`;
  });
}

function propertiesAt(path: string): Record<string, unknown> {
  let node: { properties?: Record<string, unknown> } = configSchema as never;
  for (const part of path ? path.split('.') : []) node = (node.properties?.[part] ?? {}) as never;
  return node.properties ?? {};
}

/** " (did you mean x?)" when a known name is within edit distance 2. */
function suggest(word: string, known: readonly string[]): string {
  const best = closest(word, known);
  return best === undefined ? '' : ` (did you mean ${best}?)`;
}

/** HALFLIFE_LOG_RETENTION_MAX_AGE_MS -> ['log', 'retention', 'maxAgeMs'], for every setting. */
export function envLeaves(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const walk = (obj: Record<string, unknown>, path: string[]) => {
    for (const [k, v] of Object.entries(obj)) {
      const p = [...path, k];
      if (v !== null && typeof v === 'object' && k !== 'pinnedKeys' && k !== 'priorities' && k !== 'rules') walk(v as Record<string, unknown>, p);
      else out.set(`HALFLIFE_${p.map((s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`, p);
    }
  };
  walk(defaultConfig() as unknown as Record<string, unknown>, []);
  return out;
}

function coerce(raw: string, example: unknown, path: readonly string[]): unknown {
  if (typeof example === 'number') return raw.trim() !== '' && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  // Settings whose default is null take null, a number or a string.
  if (example === null) {
    if (raw === 'null' || raw === '') return null;
    if (path.at(-1) === 'overflowPartition' && raw.trim() !== '' && !Number.isNaN(Number(raw))) return Number(raw);
  }
  if (typeof example === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw;
  if (example !== null && typeof example === 'object') {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  return raw;
}

function getPath(obj: unknown, path: string[]): unknown {
  let node = obj;
  for (const p of path) node = (node as Record<string, unknown> | undefined)?.[p];
  return node;
}

function setPath(obj: object, path: string[], value: unknown): void {
  let node = obj as Record<string, unknown>;
  for (const p of path.slice(0, -1)) {
    if (node[p] === null || typeof node[p] !== 'object') node[p] = {};
    node = node[p] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(source)) {
    const t = target[k];
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && t !== null && typeof t === 'object' && k !== 'pinnedKeys') {
      deepMerge(t as Record<string, unknown>, v as Record<string, unknown>);
    } else target[k] = v;
  }
}

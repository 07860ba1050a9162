import { readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Compatibility } from '../config/index.js';
import { HalflifeError, kvName, kvToken, LifecycleState, silentLogger, SystemClock, type Clock, type KvChange, type KvStore, type KvWatch, type Logger } from '../core/index.js';
import { backwardIncompatibilities, deepEqual } from './compatibility.js';
import { findRefLoop, MAX_SCHEMA_DEPTH, schemaDepth, SchemaCompiler, type CompiledSchema, type ValidationLimits } from './compiler.js';
import './errors.js';

const TYPE_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;

export interface SchemaVersion {
  readonly type: string;
  readonly version: number;
  readonly schema: unknown;
  readonly registeredAt: string;
}

export interface TypeSummary {
  readonly type: string;
  readonly latestVersion: number;
  readonly versions: number;
  readonly compatibility: Compatibility;
}

export interface RegisterResult {
  readonly type: string;
  readonly version: number;
  /** False when the schema equals the latest version, which is then kept. */
  readonly created: boolean;
}

export interface SchemaRegistryOptions {
  /**
   * Where versions and settings live: `schemas.<type>.v<N>` (a version, created once: two nodes cannot both create
   * version N) and `schemas.<type>.config`. Watched, so versions registered on another node come into force here.
   */
  readonly kv: KvStore;
  /** A folder in the layout of halflife before the KvStore (`<type>/v<N>.json`), imported once and renamed. */
  readonly importDir?: string;
  readonly defaultCompatibility: Compatibility;
  /** Folder of `<type>.json` files registered at start (optional). */
  readonly loadDir?: string | null | undefined;
  readonly logger?: Logger;
  readonly clock?: Clock;
  /** Limits of one event's validation (ingest.maxValidationSteps, ingest.maxValidationMs; see SchemaCompiler). */
  readonly validation?: ValidationLimits;
}

interface TypeEntry {
  versions: SchemaVersion[];
  latest: CompiledSchema;
  compiled: Map<number, CompiledSchema>;
}

/**
 * Versioned JSON Schemas (draft 2020-12) per event type. A registration is persisted and in force for the very
 * next validation; versions are immutable and numbered 1, 2, ...
 */
export class SchemaRegistry {
  readonly #o: SchemaRegistryOptions;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #compiler: SchemaCompiler;
  readonly #listeners: ((change: SchemaVersion) => void)[] = [];
  readonly #types = new Map<string, TypeEntry>();
  /** Per-type compatibility overrides (a type may have one before its first schema). */
  readonly #compat = new Map<string, Compatibility>();
  readonly #state = new LifecycleState('schema registry');
  /** Registrations are serialised here; across nodes, the KvStore's create decides who gets version N. */
  #writes: Promise<unknown> = Promise.resolve();
  #watch: KvWatch | undefined;

  constructor(options: SchemaRegistryOptions) {
    this.#compiler = new SchemaCompiler(options.validation);
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? new SystemClock();
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    const kv = this.#o.kv;
    if (this.#o.importDir !== undefined) await this.#import(this.#o.importDir);
    // Watch first, then read: a version registered elsewhere in between is seen at least once (applying is idempotent).
    this.#watch = await kv.watch('schemas', (change) => this.#applyChange(change));
    const byType = new Map<string, SchemaVersion[]>();
    for (const key of await kv.keys('schemas')) {
      const parsed = parseKey(key);
      if (parsed === undefined) continue;
      const entry = await kv.get(key);
      if (entry === undefined) continue;
      if (parsed.kind === 'config') {
        this.#compat.set(parsed.type, (decode(entry.value) as { compatibility: Compatibility }).compatibility);
        continue;
      }
      const list = byType.get(parsed.type) ?? [];
      list.push(versionOf(parsed, entry.value));
      byType.set(parsed.type, list);
    }
    for (const [type, versions] of byType) {
      versions.sort((a, b) => a.version - b.version);
      const known = this.#types.get(type);
      if (known !== undefined && known.latest.version >= versions[versions.length - 1].version) continue;
      const last = versions[versions.length - 1];
      const latest = this.#compiler.compileStored(type, last.version, last.schema);
      if (latest.refused !== undefined) this.#logger.error({ type, version: last.version }, `schema registry: ${latest.refused}; its events are rejected until then`);
      this.#types.set(type, { versions, latest, compiled: new Map([[last.version, latest]]) });
    }
    if (this.#o.loadDir) await this.#loadFolder(this.#o.loadDir);
  }

  /** Imports a registry folder of the layout before the KvStore, then renames it `<dir>.imported`. */
  async #import(dir: string): Promise<void> {
    let types: string[];
    try {
      types = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    let imported = 0;
    for (const type of types) {
      if (!TYPE_RE.test(type)) continue;
      const files = await readdir(join(dir, type));
      for (const f of files) {
        const key = f === 'config.json' ? configKey(type) : /^v\d+\.json$/.test(f) ? versionKey(type, Number(f.slice(1, -5))) : undefined;
        if (key === undefined) continue;
        const bytes = await readFile(join(dir, type, f));
        // Already imported by an earlier start that stopped before the rename: keep what is there.
        if ((await this.#o.kv.get(key)) === undefined) await this.#o.kv.put(key, new Uint8Array(bytes));
        imported++;
      }
    }
    await rename(dir, `${dir}.imported`);
    this.#logger.info({ from: dir, files: imported }, 'schema registry: imported the schemas folder into the state store');
  }

  /** A version or setting written by any node (this one included): in force here once. */
  #applyChange(change: KvChange): void {
    const parsed = parseKey(change.key);
    if (parsed === undefined || change.value === undefined) return;
    if (parsed.kind === 'config') {
      this.#compat.set(parsed.type, (decode(change.value) as { compatibility: Compatibility }).compatibility);
      return;
    }
    this.#apply(versionOf(parsed, change.value));
  }

  /** Adds a version newer than the type's latest (and tells the listeners); an older or known one changes nothing. */
  #apply(record: SchemaVersion, compiledHere?: CompiledSchema): void {
    const entry = this.#types.get(record.type);
    if (entry !== undefined && entry.latest.version >= record.version) return;
    const compiled = compiledHere ?? this.#compiler.compileStored(record.type, record.version, record.schema);
    if ('refused' in compiled && compiled.refused !== undefined) this.#logger.error({ type: record.type, version: record.version }, `schema registry: ${compiled.refused}`);
    if (entry === undefined) {
      this.#types.set(record.type, { versions: [record], latest: compiled, compiled: new Map([[record.version, compiled]]) });
    } else {
      entry.versions.push(record);
      entry.latest = compiled;
      entry.compiled.set(record.version, compiled);
    }
    this.#logger.info({ type: record.type, version: record.version }, 'schema registered');
    for (const listener of this.#listeners) listener(record);
  }

  async #loadFolder(dir: string): Promise<void> {
    for (const f of (await readdir(dir)).filter((n) => n.endsWith('.json')).sort()) {
      const type = f.slice(0, -'.json'.length);
      const schema = JSON.parse(await readFile(join(dir, f), 'utf8')) as unknown;
      await this.register(type, schema);
    }
  }

  /**
   * Calls `listener` with each new version as it comes into force (synchronously, before `register` resolves), so
   * copies of the registry elsewhere (ingest worker threads) follow it in order.
   */
  onRegistered(listener: (version: SchemaVersion) => void): void {
    this.#listeners.push(listener);
  }

  /** The latest version of every type. */
  latestVersions(): SchemaVersion[] {
    return [...this.#types.values()].map((e) => e.versions[e.versions.length - 1]);
  }

  /** The latest compiled schema of a type, or undefined. Cheap: called once per ingested event. */
  latest(type: string): CompiledSchema | undefined {
    return this.#types.get(type)?.latest;
  }

  list(): TypeSummary[] {
    return [...this.#types.entries()]
      .map(([type, e]) => ({
        type,
        latestVersion: e.latest.version,
        versions: e.versions.length,
        compatibility: this.compatibility(type),
      }))
      .sort((a, b) => a.type.localeCompare(b.type));
  }

  versions(type: string): readonly SchemaVersion[] {
    const entry = this.#types.get(type);
    if (entry === undefined) throw new HalflifeError('SCHEMA_NOT_FOUND', { type });
    return entry.versions;
  }

  get(type: string, version?: number): SchemaVersion {
    const versions = this.versions(type);
    if (version === undefined) return versions[versions.length - 1];
    const found = versions.find((v) => v.version === version);
    if (found === undefined) {
      throw new HalflifeError('SCHEMA_VERSION_NOT_FOUND', { type, version, latest: versions[versions.length - 1].version });
    }
    return found;
  }

  compatibility(type: string): Compatibility {
    return this.#compat.get(type) ?? this.#o.defaultCompatibility;
  }

  /** A compiled older version (for dead-letter and replay diagnostics). */
  compiled(type: string, version: number): CompiledSchema {
    const entry = this.#types.get(type);
    if (entry === undefined) throw new HalflifeError('SCHEMA_NOT_FOUND', { type });
    let c = entry.compiled.get(version);
    if (c === undefined) {
      c = this.#compiler.compileStored(type, version, this.get(type, version).schema);
      entry.compiled.set(version, c);
    }
    return c;
  }

  /**
   * Registers `schema` as the next version of `type` unless it equals the latest. Under `backward`
   * compatibility a schema that would reject events the latest version accepted is refused
   * (`SCHEMA_INCOMPATIBLE`, with `details.reasons`).
   */
  register(type: string, schema: unknown): Promise<RegisterResult> {
    this.#state.assertOpen();
    const run = this.#writes.then(async () => {
      // Another node may take version N first: then that version is in force here (the watch), and the schema is
      // checked again against it.
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.#register(type, schema);
        } catch (err) {
          if (!(err instanceof HalflifeError) || err.code !== 'KV_CONFLICT' || attempt >= 5) throw err;
          await this.#catchUp(type);
        }
      }
    });
    this.#writes = run.catch(() => {});
    return run;
  }

  async #register(type: string, schema: unknown): Promise<RegisterResult> {
    if (!TYPE_RE.test(type)) throw new HalflifeError('INVALID_TYPE_NAME', { type: JSON.stringify(type) });
    if (typeof schema !== 'boolean' && (schema === null || typeof schema !== 'object' || Array.isArray(schema))) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: 'a schema must be a JSON object or a boolean' });
    }
    // Checked before anything walks the schema recursively (comparing, loop finding, compiling).
    if (schemaDepth(schema) > MAX_SCHEMA_DEPTH) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: `it nests objects and arrays more than ${MAX_SCHEMA_DEPTH} levels deep` });
    }
    const entry = this.#types.get(type);
    const previous = entry?.versions[entry.versions.length - 1];
    if (previous !== undefined && deepEqual(previous.schema, schema)) {
      return { type, version: previous.version, created: false };
    }
    const version = (previous?.version ?? 0) + 1;
    // Before compiling: Ajv overflows the stack on some of these loops already while compiling.
    const loop = findRefLoop(schema);
    if (loop !== undefined) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: `the $ref at ${loop} leads back to itself without reading into the event, so validating some events would never finish` });
    }
    const proto = findProtoProperty(schema);
    if (proto !== undefined) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: `${proto} names a property __proto__, which the validator skips (events would pass unchecked); rename the field` });
    }
    const compiled = this.#compiler.compile(type, version, schema);
    if (previous !== undefined && this.compatibility(type) === 'backward') {
      const reasons = backwardIncompatibilities(previous.schema, schema);
      if (reasons.length > 0) {
        throw new HalflifeError('SCHEMA_INCOMPATIBLE', { type, version: previous.version, count: reasons.length, reasons });
      }
    }
    const record: SchemaVersion = { type, version, schema, registeredAt: new Date(this.#clock.now()).toISOString() };
    await this.#o.kv.create(versionKey(type, version), encode(record));
    this.#apply(record, compiled);
    return { type, version, created: true };
  }

  /** Reads a type's versions from the store (after another node took the version this one tried to create). */
  async #catchUp(type: string): Promise<void> {
    const versions: SchemaVersion[] = [];
    for (const key of await this.#o.kv.keys(`schemas.${kvToken(type)}`)) {
      const parsed = parseKey(key);
      if (parsed?.kind !== 'version') continue;
      const e = await this.#o.kv.get(key);
      if (e !== undefined) versions.push(versionOf(parsed, e.value));
    }
    for (const v of versions.sort((a, b) => a.version - b.version)) this.#apply(v);
  }

  /** Sets and persists a type's compatibility level (the type need not have a schema yet). */
  setCompatibility(type: string, compatibility: string): Promise<void> {
    this.#state.assertOpen();
    const run = this.#writes.then(async () => {
      if (!TYPE_RE.test(type)) throw new HalflifeError('INVALID_TYPE_NAME', { type: JSON.stringify(type) });
      if (compatibility !== 'backward' && compatibility !== 'none') {
        throw new HalflifeError('INVALID_COMPATIBILITY', { value: JSON.stringify(compatibility) });
      }
      await this.#o.kv.put(configKey(type), encode({ compatibility }));
      this.#compat.set(type, compatibility);
    });
    this.#writes = run.catch(() => {});
    return run;
  }

  close(): Promise<void> {
    return this.#state.close(async () => {
      await this.#writes;
      await this.#watch?.stop();
    });
  }
}

const versionKey = (type: string, version: number) => `schemas.${kvToken(type)}.v${version}`;
const configKey = (type: string) => `schemas.${kvToken(type)}.config`;

function parseKey(key: string): { kind: 'version'; type: string; version: number } | { kind: 'config'; type: string } | undefined {
  const m = /^schemas\.([^.]+)\.(?:v(\d+)|(config))$/.exec(key);
  if (m === null) return undefined;
  const type = kvName(m[1]);
  return m[3] === 'config' ? { kind: 'config', type } : { kind: 'version', type, version: Number(m[2]) };
}

/** A stored version; its type and number are the key's (records of older halflife versions lack the type). */
function versionOf(key: { type: string; version: number }, bytes: Uint8Array): SchemaVersion {
  return { ...(decode(bytes) as SchemaVersion), type: key.type, version: key.version };
}

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const decode = (bytes: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(bytes));


/**
 * Where a schema gives rules to a property named __proto__ (a `properties`, `dependentRequired` or `dependentSchemas`
 * key): Ajv skips such a key entirely, so its rules would silently not hold (`required` works). Walked without
 * recursion.
 */
function findProtoProperty(schema: unknown): string | undefined {
  const stack: { node: unknown; path: string }[] = [{ node: schema, path: '#' }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    const o = node as Record<string, unknown>;
    if (!Array.isArray(node)) {
      for (const k of ['properties', 'dependentRequired', 'dependentSchemas']) {
        const v = o[k];
        if (v !== null && typeof v === 'object' && Object.hasOwn(v, '__proto__')) return `${path}/${k}`;
      }
    }
    for (const [k, v] of Object.entries(node)) if (v !== null && typeof v === 'object') stack.push({ node: v, path: `${path}/${k}` });
  }
  return undefined;
}

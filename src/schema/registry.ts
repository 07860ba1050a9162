import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Compatibility } from '../config/index.js';
import { HalflifeError, LifecycleState, silentLogger, SystemClock, writeFileAtomic, type Clock, type Logger } from '../core/index.js';
import { backwardIncompatibilities, deepEqual } from './compatibility.js';
import { findRefLoop, SchemaCompiler, type CompiledSchema, type ValidationLimits } from './compiler.js';
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
  /** Folder the registry persists to (one sub-folder per type). */
  readonly dir: string;
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
  /** Registrations are serialised so two concurrent PUTs cannot both become version N. */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(options: SchemaRegistryOptions) {
    this.#compiler = new SchemaCompiler(options.validation);
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? new SystemClock();
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    await mkdir(this.#o.dir, { recursive: true });
    for (const type of await readdir(this.#o.dir)) {
      if (!TYPE_RE.test(type)) continue;
      const dir = join(this.#o.dir, type);
      const files = await readdir(dir);
      if (files.includes('config.json')) {
        const { compatibility } = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { compatibility: Compatibility };
        this.#compat.set(type, compatibility);
      }
      const versions: SchemaVersion[] = [];
      for (const f of files.filter((n) => /^v\d+\.json$/.test(n))) {
        versions.push(JSON.parse(await readFile(join(dir, f), 'utf8')) as SchemaVersion);
      }
      if (versions.length === 0) continue;
      versions.sort((a, b) => a.version - b.version);
      const last = versions[versions.length - 1];
      const latest = this.#compiler.compileStored(type, last.version, last.schema);
      if (latest.refused !== undefined) this.#logger.error({ type, version: last.version }, `schema registry: ${latest.refused}; its events are rejected until then`);
      this.#types.set(type, { versions, latest, compiled: new Map([[last.version, latest]]) });
    }
    if (this.#o.loadDir) await this.#loadFolder(this.#o.loadDir);
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
    const run = this.#writes.then(() => this.#register(type, schema));
    this.#writes = run.catch(() => {});
    return run;
  }

  async #register(type: string, schema: unknown): Promise<RegisterResult> {
    if (!TYPE_RE.test(type)) throw new HalflifeError('INVALID_TYPE_NAME', { type: JSON.stringify(type) });
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
    const dir = join(this.#o.dir, type);
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(join(dir, `v${version}.json`), JSON.stringify(record, null, 2) + '\n');
    if (entry === undefined) {
      this.#types.set(type, { versions: [record], latest: compiled, compiled: new Map([[version, compiled]]) });
    } else {
      entry.versions.push(record);
      entry.latest = compiled;
      entry.compiled.set(version, compiled);
    }
    this.#logger.info({ type, version }, 'schema registered');
    for (const listener of this.#listeners) listener(record);
    return { type, version, created: true };
  }

  /** Sets and persists a type's compatibility level (the type need not have a schema yet). */
  setCompatibility(type: string, compatibility: string): Promise<void> {
    this.#state.assertOpen();
    const run = this.#writes.then(async () => {
      if (!TYPE_RE.test(type)) throw new HalflifeError('INVALID_TYPE_NAME', { type: JSON.stringify(type) });
      if (compatibility !== 'backward' && compatibility !== 'none') {
        throw new HalflifeError('INVALID_COMPATIBILITY', { value: JSON.stringify(compatibility) });
      }
      const dir = join(this.#o.dir, type);
      await mkdir(dir, { recursive: true });
      await writeFileAtomic(join(dir, 'config.json'), JSON.stringify({ compatibility }) + '\n');
      this.#compat.set(type, compatibility);
    });
    this.#writes = run.catch(() => {});
    return run;
  }

  close(): Promise<void> {
    return this.#state.close(async () => {
      await this.#writes;
    });
  }
}


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

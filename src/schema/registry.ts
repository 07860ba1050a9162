import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Compatibility } from '../config/index.js';
import { HalflifeError, LifecycleState, silentLogger, SystemClock, type Clock, type Logger } from '../core/index.js';
import { backwardIncompatibilities, deepEqual } from './compatibility.js';
import './errors.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => void;

const TYPE_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;

export interface SchemaVersion {
  readonly type: string;
  readonly version: number;
  readonly schema: unknown;
  readonly registeredAt: string;
}

/** The outcome of validating one event's data: a result, never an exception. */
export type ValidationResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly message: string; readonly path: string };

export interface CompiledSchema {
  readonly version: number;
  validate(data: unknown): ValidationResult;
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
  readonly #ajv: Ajv2020;
  readonly #types = new Map<string, TypeEntry>();
  /** Per-type compatibility overrides (a type may have one before its first schema). */
  readonly #compat = new Map<string, Compatibility>();
  readonly #state = new LifecycleState('schema registry');
  /** Registrations are serialised so two concurrent PUTs cannot both become version N. */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(options: SchemaRegistryOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? new SystemClock();
    this.#ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
    addFormats(this.#ajv);
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
      const latest = this.#compile(type, last.version, last.schema);
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
      c = this.#compile(type, version, this.get(type, version).schema);
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
    const compiled = this.#compile(type, version, schema);
    if (previous !== undefined && this.compatibility(type) === 'backward') {
      const reasons = backwardIncompatibilities(previous.schema, schema);
      if (reasons.length > 0) {
        throw new HalflifeError('SCHEMA_INCOMPATIBLE', { type, version: previous.version, count: reasons.length, reasons });
      }
    }
    const record: SchemaVersion = { type, version, schema, registeredAt: new Date(this.#clock.now()).toISOString() };
    const dir = join(this.#o.dir, type);
    await mkdir(dir, { recursive: true });
    await atomicWrite(join(dir, `v${version}.json`), JSON.stringify(record, null, 2) + '\n');
    if (entry === undefined) {
      this.#types.set(type, { versions: [record], latest: compiled, compiled: new Map([[version, compiled]]) });
    } else {
      entry.versions.push(record);
      entry.latest = compiled;
      entry.compiled.set(version, compiled);
    }
    this.#logger.info({ type, version }, 'schema registered');
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
      await atomicWrite(join(dir, 'config.json'), JSON.stringify({ compatibility }) + '\n');
      this.#compat.set(type, compatibility);
    });
    this.#writes = run.catch(() => {});
    return run;
  }

  #compile(type: string, version: number, schema: unknown): CompiledSchema {
    if (typeof schema !== 'boolean' && (schema === null || typeof schema !== 'object' || Array.isArray(schema))) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: 'a schema must be a JSON object or a boolean' });
    }
    let fn: ValidateFunction;
    try {
      // A schema's own $id would collide across versions in one Ajv instance; validate without registering it.
      const { $id: _ignored, ...rest } = (typeof schema === 'boolean' ? {} : schema) as Record<string, unknown>;
      fn = this.#ajv.compile(typeof schema === 'boolean' ? schema : rest);
    } catch (err) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: (err as Error).message }, { cause: err });
    }
    return {
      version,
      validate(data: unknown): ValidationResult {
        if (fn(data)) return OK;
        const e = (fn.errors as ErrorObject[])[0];
        return { ok: false, message: describe(e), path: pathOf(e) };
      },
    };
  }

  close(): Promise<void> {
    return this.#state.close(async () => {
      await this.#writes;
    });
  }
}

const OK: ValidationResult = { ok: true };

function pathOf(e: ErrorObject): string {
  const base = '$.data' + e.instancePath.replace(/\/([^/]*)/g, (_m, seg: string) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg.replaceAll('~1', '/').replaceAll('~0', '~')}`));
  if (e.keyword === 'required') return `${base}.${(e.params as { missingProperty: string }).missingProperty}`;
  if (e.keyword === 'additionalProperties') return `${base}.${(e.params as { additionalProperty: string }).additionalProperty}`;
  return base;
}

function describe(e: ErrorObject): string {
  const where = e.instancePath === '' ? 'data' : `data${e.instancePath.replaceAll('/', '.')}`;
  switch (e.keyword) {
    case 'required':
      return `${where}: missing required field "${(e.params as { missingProperty: string }).missingProperty}"`;
    case 'additionalProperties':
      return `${where}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}" is not allowed`;
    case 'enum':
      return `${where}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
    default:
      return `${where}: ${e.message ?? e.keyword}`;
  }
}

async function atomicWrite(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, text, { flush: true });
  await rename(tmp, path);
}

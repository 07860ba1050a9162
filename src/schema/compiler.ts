import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { HalflifeError } from '../core/index.js';
import './errors.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => void;

/** The outcome of validating one event's data: a result, never an exception. */
export type ValidationResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly message: string; readonly path: string };

export interface CompiledSchema {
  readonly version: number;
  validate(data: unknown): ValidationResult;
}

/**
 * The one Ajv configuration events are validated with (draft 2020-12, unknown keywords ignored, formats checked).
 * The compatibility check models exactly this validator; its tests use this function to stay in step with it.
 */
export function createAjv(): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
  addFormats(ajv);
  return ajv;
}

/**
 * Compiles JSON Schemas (draft 2020-12, formats checked) into validators. The registry uses one; so does each
 * ingest worker thread, which keeps its own copy of the latest versions.
 */
export class SchemaCompiler {
  readonly #ajv: Ajv2020;

  constructor() {
    this.#ajv = createAjv();
  }

  /** Throws `SCHEMA_INVALID` for a schema Ajv cannot compile. */
  compile(type: string, version: number, schema: unknown): CompiledSchema {
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


import { _, Ajv2020, type ErrorObject, type KeywordCxt, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import { HalflifeError } from '../core/index.js';
import { linearRegExp } from './linear-regexp.js';
import './errors.js';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => void;

/** The outcome of validating one event's data: a result, never an exception. */
export type ValidationResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly message: string; readonly path: string; readonly code?: 'SCHEMA_TOO_COSTLY' };

export interface CompiledSchema {
  readonly version: number;
  /**
   * Whether an event's validation may be costly (the schema has references, which can repeat work, or is large):
   * its steps and time are metered (ingest.maxValidationSteps, ingest.maxValidationMs), and the server thread
   * leaves such events to an ingest worker.
   */
  readonly metered: boolean;
  validate(data: unknown): ValidationResult;
}

/** Limits of one event's validation (ingest.maxValidationSteps and ingest.maxValidationMs). */
export interface ValidationLimits {
  readonly maxValidationSteps?: number;
  readonly maxValidationMs?: number;
}

/** Default of ingest.maxValidationSteps: schema nodes one event's validation may evaluate. */
export const DEFAULT_MAX_VALIDATION_STEPS = 1_000_000;
/** Default of ingest.maxValidationMs. */
export const DEFAULT_MAX_VALIDATION_MS = 100;
/** Schemas without references and with at most this many nodes are not metered: their cost is schema × event size. */
const UNMETERED_MAX_NODES = 200;

/** Meters one validation; a compiler validates one event at a time. */
interface StepMeter {
  steps: number;
  max: number;
  /** performance.now() past which the validation stops. */
  deadline: number;
  maxMs: number;
}

class ValidationBudgetExceeded extends Error {
  constructor(readonly limit: 'steps' | 'time') {
    super(limit);
  }
}

/** The keyword set in every schema node of a compiled copy of a metered schema; it counts one step. */
const STEP_KEYWORD = '$halflifeStep';

/**
 * The one Ajv configuration events are validated with (draft 2020-12, unknown keywords ignored, formats checked).
 * The compatibility check models exactly this validator; its tests use this function to stay in step with it.
 */
export function createAjv(meter: StepMeter = { steps: 0, max: Infinity, deadline: Infinity, maxMs: Infinity }): Ajv2020 {
  // ownProperties: a field named constructor or toString is the event's own or absent, never Object.prototype's
  // (without it, properties: {constructor: {type: string}} rejected every event).
  // code.regExp: `pattern` and `patternProperties` run on RE2 (linear time), never on the backtracking native engine;
  // a pattern RE2 cannot run (backreference, lookaround) makes compile throw, naming the pattern and why.
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true, ownProperties: true, code: { regExp: linearEngine } });
  addFormats(ajv);
  // Ajv compares object items of uniqueItems pairwise: a 256 KB array of 25,000 small objects took 17 s. This one
  // keys each item by a canonical form (object keys sorted) and takes linear time; same result, same error.
  ajv.removeKeyword('uniqueItems');
  ajv.addKeyword({ keyword: 'uniqueItems', type: 'array', schemaType: 'boolean', errors: true, validate: uniqueItems });
  // A $ref that recurses, or a chain of $defs each naming the next twice, makes validation exponential in the event's
  // depth: 30 levels of {"x": …} held the server thread for two minutes. In a metered schema every node evaluated is
  // counted (the keyword runs first in each node, before $dynamicRef and $ref, so also when the node then fails),
  // and the clock is read every 1,024 steps (one node can loop over a long array): past either budget the validation
  // stops and the event is refused with SCHEMA_TOO_COSTLY.
  // Generated as a direct call (a `validate` keyword goes through Ajv's wrapper: 20 ns per node instead of a few).
  const step = () => {
    const steps = ++meter.steps;
    if (steps > meter.max) throw new ValidationBudgetExceeded('steps');
    if ((steps & 1023) === 0 && performance.now() > meter.deadline) throw new ValidationBudgetExceeded('time');
  };
  ajv.addKeyword({
    keyword: STEP_KEYWORD,
    before: '$dynamicRef',
    code(cxt: KeywordCxt) {
      const fn = cxt.gen.scopeValue('keyword', { ref: step });
      cxt.gen.code(_`${fn}()`);
    },
  });
  return ajv;
}

/**
 * uniqueItems as Ajv 8 evaluates it (the compatibility check models its quirks), in linear time. When `items` has
 * only scalar types Ajv compares just the elements of those types, by a hash (already linear; reproduced as is);
 * otherwise it compares all elements pairwise, which is what this replaces, keying each by a canonical form.
 */
function uniqueItems(schema: boolean, data: unknown[], parentSchema?: Record<string, unknown>): boolean {
  const fn = uniqueItems as typeof uniqueItems & { errors?: Partial<ErrorObject>[] };
  if (!schema || data.length < 2) return true;
  const items = parentSchema?.items;
  const declared = typeof items === 'object' && items !== null ? (items as Record<string, unknown>).type : undefined;
  const types = (typeof declared === 'string' ? [declared] : Array.isArray(declared) ? declared : []) as string[];
  if (typeof items === 'object' && items !== null && (items as Record<string, unknown>).nullable === true && !types.includes('null')) types.push('null');
  let pair: [number, number] | undefined;
  if (types.length > 0 && !types.some((t) => t === 'object' || t === 'array')) {
    const ofType = (v: unknown) =>
      types.some((t) => (t === 'null' ? v === null : t === 'integer' ? typeof v === 'number' && v % 1 === 0 : typeof v === t));
    // A plain object, as Ajv's generated code uses (so "__proto__" is never reported, as there).
    const indices: Record<string, unknown> = {};
    for (let i = data.length; i--; ) {
      let item = data[i];
      if (!ofType(item)) continue;
      if (types.length > 1 && typeof item === 'string') item += '_';
      const j = indices[item as string];
      if (typeof j === 'number') {
        pair = [i, j];
        break;
      }
      indices[item as string] = i;
    }
  } else {
    const seen = new Map<string, number>();
    for (let i = 0; i < data.length; i++) {
      const key = canonical(data[i]);
      const j = seen.get(key);
      // Ajv's pairwise loop reports the last item that repeats an earlier one, and the nearest earlier one.
      if (j !== undefined) pair = [i, j];
      seen.set(key, i);
    }
  }
  if (pair === undefined) return true;
  const [i, j] = pair;
  fn.errors = [{ keyword: 'uniqueItems', params: { i, j }, message: `must NOT have duplicate items (items ## ${j} and ${i} are identical)` }];
  return false;
}

/** A string equal for two JSON values exactly when they are deeply equal (objects whatever their key order). */
function canonical(v: unknown): string {
  if (typeof v !== 'object' || v === null) return JSON.stringify(v) ?? 'undefined';
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

const linearEngine: RegExpEngine = Object.assign((pattern: string, _u: string) => linearRegExp(pattern), { code: 'linearRegExp' });

/**
 * Values every schema is tried on when compiled: a schema whose validation throws for them (a `$dynamicRef` that
 * recurses without reading into the event overflows the stack) would fail every event, and is refused.
 */
const PROBES: readonly unknown[] = [null, true, 0, 1.5, '', 'x', [], [0], {}, { a: 0 }];

/**
 * Compiles JSON Schemas (draft 2020-12, formats checked) into validators. The registry uses one; so does each
 * ingest worker thread, which keeps its own copy of the latest versions.
 */
export class SchemaCompiler {
  readonly #ajv: Ajv2020;
  readonly #meter: StepMeter;

  constructor(limits: ValidationLimits = {}) {
    this.#meter = { steps: 0, max: limits.maxValidationSteps ?? DEFAULT_MAX_VALIDATION_STEPS, deadline: Infinity, maxMs: limits.maxValidationMs ?? DEFAULT_MAX_VALIDATION_MS };
    this.#ajv = createAjv(this.#meter);
  }

  /**
   * A version already registered: one that this compiler now refuses (a pattern the linear-time engine cannot run, a
   * validation that throws, registered by an older halflife) rejects every event of its type with the reason,
   * instead of keeping the server from starting. A fixed version registered over it takes its place.
   */
  compileStored(type: string, version: number, schema: unknown): CompiledSchema & { readonly refused?: string } {
    try {
      return this.compile(type, version, schema);
    } catch (err) {
      if (!(err instanceof HalflifeError) || err.code !== 'SCHEMA_INVALID') throw err;
      const reason = `version ${version} of the schema of ${type} can no longer be used (${err.message}); register a fixed version`;
      return { version, refused: reason, metered: false, validate: () => ({ ok: false, message: `data: ${reason}`, path: '$.data' }) };
    }
  }

  /** Throws `SCHEMA_INVALID` for a schema Ajv cannot compile. */
  compile(type: string, version: number, schema: unknown): CompiledSchema {
    if (typeof schema !== 'boolean' && (schema === null || typeof schema !== 'object' || Array.isArray(schema))) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: 'a schema must be a JSON object or a boolean' });
    }
    let fn: ValidateFunction;
    let metered = false;
    try {
      // A schema's own $id would collide across versions in one Ajv instance; validate without registering it.
      const { $id: _ignored, ...rest } = (typeof schema === 'boolean' ? {} : schema) as Record<string, unknown>;
      let compiled: unknown = typeof schema === 'boolean' ? schema : rest;
      if (typeof schema !== 'boolean') {
        const m = withStepCounts(rest);
        if (m.dataRef !== undefined) throw new Error(`${m.dataRef} points into the value of enum or const: data compared with events, not a schema`);
        metered = m.references || m.nodes > UNMETERED_MAX_NODES;
        if (metered) compiled = m.schema;
      }
      fn = this.#ajv.compile(compiled as Record<string, unknown> | boolean);
    } catch (err) {
      throw new HalflifeError('SCHEMA_INVALID', { type, reason: (err as Error).message }, { cause: err });
    }
    const meter = this.#meter;
    for (const probe of PROBES) {
      try {
        meter.steps = 0;
        meter.deadline = performance.now() + meter.maxMs;
        fn(probe);
      } catch (err) {
        if (err instanceof ValidationBudgetExceeded) {
          throw new HalflifeError('SCHEMA_INVALID', {
            type,
            reason: `validating ${JSON.stringify(probe)} against it ${budgetText(err, meter)}: its $defs name each other so often that the cost grows exponentially; simplify it`,
          });
        }
        throw new HalflifeError('SCHEMA_INVALID', {
          type,
          reason: `validating ${JSON.stringify(probe)} against it fails (${(err as Error).message}): a $ref or $dynamicRef that leads back to itself without reading into the event would fail every event`,
        }, { cause: err });
      }
    }
    return {
      version,
      metered,
      validate(data: unknown): ValidationResult {
        try {
          if (metered) {
            meter.steps = 0;
            meter.deadline = performance.now() + meter.maxMs;
          }
          if (fn(data)) return OK;
        } catch (err) {
          if (err instanceof ValidationBudgetExceeded) {
            return {
              ok: false,
              code: 'SCHEMA_TOO_COSTLY',
              message: `data: validating it ${budgetText(err, meter)}; the schema repeats work (references that recurse or name each other several times) so that the cost grows with the event far beyond its size: simplify it`,
              path: '$.data',
            };
          }
          // A stored schema registered before loops were refused (see findRefLoop): reject the event, never crash.
          return { ok: false, message: `data: the schema could not be evaluated (${(err as Error).message})`, path: '$.data' };
        }
        const e = (fn.errors as ErrorObject[])[0];
        return { ok: false, message: describe(e), path: pathOf(e) };
      },
    };
  }
}

const OK: ValidationResult = { ok: true };

function budgetText(err: ValidationBudgetExceeded, meter: StepMeter): string {
  return err.limit === 'steps' ? `evaluated more than ${meter.max} schema nodes (ingest.maxValidationSteps)` : `took longer than ${meter.maxMs} ms (ingest.maxValidationMs)`;
}

/** Keywords whose value is one subschema (or, for items, an array of them in older drafts). */
const SUBSCHEMA = new Set(['not', 'if', 'then', 'else', 'items', 'contains', 'additionalProperties', 'propertyNames', 'unevaluatedItems', 'unevaluatedProperties', 'additionalItems']);
/** Keywords whose value is an array of subschemas. */
const SUBSCHEMA_LIST = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
/** Keywords whose value maps names to subschemas. */
const SUBSCHEMA_MAP = new Set(['properties', 'patternProperties', 'dependentSchemas', '$defs', 'definitions', 'dependencies']);
/** Keywords whose value is data compared with the event: never a schema, and never changed. */
const DATA = new Set(['enum', 'const']);

/**
 * A copy of `schema` with the step-counting keyword in every schema node, and what it holds: its node count, whether
 * it has references, and the first local `$ref` that points into `enum` or `const` data (Ajv would follow it, into
 * a place this walk does not meter). Walks by keyword, so a property named like a keyword (`properties: {enum: …}`)
 * is still a schema; the value of a keyword Ajv does not know is walked as a schema (a `$ref` may point into it).
 */
function withStepCounts(schema: Record<string, unknown>): { schema: unknown; nodes: number; references: boolean; dataRef?: string } {
  const visited = new Set<object>();
  const refs: { ref: string; base: Record<string, unknown> }[] = [];
  let references = false;
  const each = (v: unknown, f: (x: unknown) => unknown) => (Array.isArray(v) ? v.map(f) : f(v));
  const walk = (node: unknown, base: Record<string, unknown>): unknown => {
    if (Array.isArray(node)) return node.map((x) => walk(x, base));
    if (typeof node !== 'object' || node === null) return node;
    const n = node as Record<string, unknown>;
    visited.add(n);
    // A nested $id starts a resource: its "#/…" references resolve against it.
    const here = typeof n.$id === 'string' ? n : base;
    const sub = (x: unknown) => walk(x, here);
    // Built from entries (own properties), so a key named __proto__ stays a key and never sets a prototype.
    const entries: [string, unknown][] = [];
    for (const [k, v] of Object.entries(n)) {
      if (k === STEP_KEYWORD) continue;
      if (DATA.has(k)) entries.push([k, v]);
      else if (SUBSCHEMA.has(k) || SUBSCHEMA_LIST.has(k)) entries.push([k, each(v, sub)]);
      else if (SUBSCHEMA_MAP.has(k) && typeof v === 'object' && v !== null && !Array.isArray(v)) {
        visited.add(v);
        entries.push([k, Object.fromEntries(Object.entries(v).map(([name, x]) => [name, sub(x)]))]);
      } else entries.push([k, typeof v === 'object' ? sub(v) : v]);
    }
    for (const k of ['$ref', '$dynamicRef', '$recursiveRef']) {
      const ref = n[k];
      if (typeof ref !== 'string') continue;
      references = true;
      refs.push({ ref, base: here });
    }
    entries.push([STEP_KEYWORD, true]);
    return Object.fromEntries(entries);
  };
  const copy = walk(schema, schema);
  let dataRef: string | undefined;
  for (const { ref, base } of refs) {
    const target = ref === '#' || ref.startsWith('#/') ? resolvePointer(base, ref) : undefined;
    if (typeof target === 'object' && target !== null && !visited.has(target)) {
      dataRef = `the reference ${JSON.stringify(ref)}`;
      break;
    }
  }
  return { schema: copy, nodes: visited.size, references, ...(dataRef === undefined ? {} : { dataRef }) };
}

/** The value a local JSON pointer ("#/a/b") names in `root`, or undefined. */
function resolvePointer(root: unknown, ref: string): unknown {
  let node: unknown = root;
  for (const raw of ref === '#' ? [] : ref.slice(2).split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    } catch {
      return undefined;
    }
    if (typeof node !== 'object' || node === null || !Object.prototype.hasOwnProperty.call(node, seg)) return undefined;
    node = (node as Record<string, unknown>)[seg];
  }
  return node;
}

/** Schemas nest no deeper than this (real ones rarely pass 20); deeper ones would overflow the checks' recursion. */
export const MAX_SCHEMA_DEPTH = 100;

/** How deep `schema` nests objects and arrays, counted without recursion; stops counting past `limit`. */
export function schemaDepth(schema: unknown, limit = MAX_SCHEMA_DEPTH): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[schema, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return deepest;
    for (const x of Object.values(v)) stack.push([x, depth + 1]);
  }
  return deepest;
}

/** Keywords whose subschemas apply to the same place in the event as the schema holding them. */
const IN_PLACE = ['allOf', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else', 'dependentSchemas'] as const;

/**
 * Finds a `$ref` loop that never reads into the event (`{ "$ref": "#" }`, or a property whose schema refers to
 * itself through allOf, anyOf, not, ...). Ajv compiles such a schema, and then overflows the stack on every event
 * that reaches the loop. Returns the JSON pointer of the `$ref` that closes a loop, or undefined. Schemas with an
 * `$id` below the root are not examined (their references resolve against that `$id`).
 */
export function findRefLoop(schema: unknown): string | undefined {
  const nodes: [Record<string, unknown>, string][] = [];
  let nestedId = false;
  const collect = (v: unknown, ptr: string, root: boolean) => {
    if (typeof v !== 'object' || v === null) return;
    if (!Array.isArray(v)) {
      nodes.push([v as Record<string, unknown>, ptr]);
      if (!root && typeof (v as Record<string, unknown>).$id === 'string') nestedId = true;
    }
    for (const [k, x] of Object.entries(v)) {
      if (k !== 'enum' && k !== 'const' && k !== 'default' && k !== 'examples') collect(x, `${ptr}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`, false);
    }
  };
  collect(schema, '#', true);
  if (nestedId) return undefined;
  const resolve = (ref: string): unknown => (ref === '#' || ref.startsWith('#/') ? resolvePointer(schema, ref) : undefined);
  const pointerOf = new Map(nodes);
  const state = new Map<unknown, 'open' | 'done'>();
  const visit = (node: Record<string, unknown>): string | undefined => {
    state.set(node, 'open');
    const next: [unknown, string | undefined][] = [];
    for (const kw of IN_PLACE) {
      const v = node[kw];
      if (Array.isArray(v)) for (const x of v) next.push([x, undefined]);
      else if (kw === 'dependentSchemas' && typeof v === 'object' && v !== null) for (const x of Object.values(v)) next.push([x, undefined]);
      else next.push([v, undefined]);
    }
    if (typeof node.$ref === 'string') next.push([resolve(node.$ref), `${pointerOf.get(node)}/$ref`]);
    let found: string | undefined;
    for (const [x, via] of next) {
      if (typeof x !== 'object' || x === null || Array.isArray(x)) continue;
      const s = state.get(x);
      if (s === 'open') found = via ?? `${pointerOf.get(node)}`;
      else if (s === undefined) found = visit(x as Record<string, unknown>);
      if (found !== undefined) break;
    }
    state.set(node, 'done');
    return found;
  };
  for (const [node] of nodes) {
    if (state.has(node)) continue;
    const found = visit(node);
    if (found !== undefined) return found;
  }
  return undefined;
}

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


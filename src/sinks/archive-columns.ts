/**
 * The columns of an event type's archive files, from its JSON Schema: each declared top-level property a typed
 * column (strings and string enums VARCHAR, integers BIGINT, numbers DOUBLE, booleans BOOLEAN; objects, arrays and
 * anything of several types JSON text), the properties the schema does not declare together in `_extra` (JSON text of
 * an object, NULL when there are none), then the record's metadata.
 */
export type ColumnKind = 'VARCHAR' | 'BIGINT' | 'DOUBLE' | 'BOOLEAN' | 'JSON';

export interface ArchiveColumn {
  /** The column's name in the files. */
  readonly name: string;
  /** The data property it holds (undefined for `_extra` and the metadata). */
  readonly property?: string;
  readonly kind: ColumnKind;
}

/** The record's metadata, after the data columns, in every file. */
export const METADATA_COLUMNS: readonly ArchiveColumn[] = [
  { name: 'received_at', kind: 'BIGINT' },
  { name: 'event_time', kind: 'BIGINT' },
  { name: 'id', kind: 'VARCHAR' },
  { name: 'key', kind: 'VARCHAR' },
  { name: 'partition', kind: 'BIGINT' },
  { name: 'offset', kind: 'BIGINT' },
  { name: 'schema_version', kind: 'BIGINT' },
];

export const EXTRA_COLUMN = '_extra';
const RESERVED = new Set([...METADATA_COLUMNS.map((c) => c.name), EXTRA_COLUMN]);

/**
 * The data columns of a schema, in the order it declares them. A property whose name is taken (a metadata column,
 * `_extra`, or one that differs only in letter case: SQL names ignore case) is not a column of its own; its values
 * go to `_extra`. Without a schema (types accepted unvalidated) every property goes to `_extra`.
 */
export function dataColumns(schema: unknown): ArchiveColumn[] {
  const props = isObject(schema) && isObject(schema.properties) ? schema.properties : {};
  const taken = new Set([...RESERVED].map((n) => n.toLowerCase()));
  const out: ArchiveColumn[] = [];
  for (const [name, sub] of Object.entries(props)) {
    if (taken.has(name.toLowerCase())) continue;
    taken.add(name.toLowerCase());
    out.push({ name, property: name, kind: kindOf(sub) });
  }
  return out;
}

/** The column kind of one property's schema. */
export function kindOf(schema: unknown): ColumnKind {
  if (!isObject(schema)) return 'JSON';
  const enumerated = Array.isArray(schema.enum) ? schema.enum : 'const' in schema ? [schema.const] : undefined;
  if (enumerated !== undefined) {
    const nonNull = enumerated.filter((v) => v !== null);
    if (nonNull.length > 0 && nonNull.every((v) => typeof v === 'string')) return 'VARCHAR';
    if (nonNull.length > 0 && nonNull.every((v) => typeof v === 'boolean')) return 'BOOLEAN';
    if (nonNull.length > 0 && nonNull.every((v) => Number.isSafeInteger(v))) return 'BIGINT';
    if (nonNull.length > 0 && nonNull.every((v) => typeof v === 'number')) return 'DOUBLE';
    return 'JSON';
  }
  const types = (Array.isArray(schema.type) ? schema.type : [schema.type]).filter((t) => t !== 'null');
  if (types.length !== 1) return 'JSON';
  switch (types[0]) {
    case 'string':
      return 'VARCHAR';
    case 'integer':
      return 'BIGINT';
    case 'number':
      return 'DOUBLE';
    case 'boolean':
      return 'BOOLEAN';
    default:
      return 'JSON';
  }
}

/**
 * The value a column holds for a property's value, or null. A value that does not fit the column's kind (the schema
 * allowed it: a string column given a number by an older version) is stored as its JSON text in a VARCHAR column,
 * and as NULL in a typed one, with the value kept in `_extra` by the caller (see `fits`).
 */
export function fits(kind: ColumnKind, v: unknown): boolean {
  switch (kind) {
    case 'VARCHAR':
      return typeof v === 'string';
    case 'BIGINT':
      return typeof v === 'number' ? Number.isSafeInteger(v) : typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
    case 'DOUBLE':
      return typeof v === 'number' || typeof v === 'bigint';
    case 'BOOLEAN':
      return typeof v === 'boolean';
    case 'JSON':
      return true;
  }
}

/** JSON text of a decoded MessagePack value (bigints as numbers, binary as base64 strings). */
export function jsonText(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? Number(x) : x instanceof Uint8Array ? Buffer.from(x).toString('base64') : x));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

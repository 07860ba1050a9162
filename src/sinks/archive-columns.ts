/**
 * The columns of an event type's archive files, from its JSON Schema: each declared top-level property a typed
 * column (strings and string enums VARCHAR, integers BIGINT, numbers DOUBLE, booleans BOOLEAN; objects, arrays and
 * anything of several types JSON text), the properties the schema does not declare together in `_extra` (JSON text of
 * an object, NULL when there are none), then the record's metadata.
 */
import type { DuckDBAppender } from '@duckdb/node-api';
import type { EventRecord } from '../core/index.js';

export const HOUR_MS = 3_600_000;

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
export const EXTRA: ArchiveColumn = { name: EXTRA_COLUMN, kind: 'JSON' };
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

/** Whether a property's value goes in its column; a value that does not (a string where the schema now says integer) goes to `_extra`. */
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

/**
 * The SQL of a buffer table for `columns` (data columns then `_extra`), the metadata and `_hour`: integers and times
 * held as doubles (cast when read, see `fileSelect`), JSON as text. The archive's buffer and the history's unarchived
 * tail are such tables.
 */
export function bufferTableSql(name: string, columns: readonly ArchiveColumn[]): string {
  return `CREATE TABLE ${name} (${[...columns, ...METADATA_COLUMNS].map((c) => `${ident(c.name)} ${bufferType(c.kind)}`).join(', ')}, _hour DOUBLE)`;
}

/** The SELECT list reading a buffer table as the files hold it (integers BIGINT, times TIMESTAMP). */
export function fileSelect(columns: readonly ArchiveColumn[]): string {
  const data = columns.map((c) => (c.kind === 'BIGINT' ? `${ident(c.name)}::BIGINT AS ${ident(c.name)}` : ident(c.name)));
  const meta = METADATA_COLUMNS.map((c) => {
    if (c.name === 'received_at' || c.name === 'event_time') return `epoch_ms(${ident(c.name)}::BIGINT) AS ${ident(c.name)}`;
    return c.kind === 'BIGINT' ? `${ident(c.name)}::BIGINT AS ${ident(c.name)}` : ident(c.name);
  });
  return [...data, ...meta].join(', ');
}

/**
 * Appends one event as a row of a buffer table with `columns` (see `bufferTableSql`); returns the start of its hour
 * (ms). Declared properties go to their columns, the rest (and values that do not fit) to `_extra`.
 */
export function appendEventRow(a: DuckDBAppender, columns: readonly ArchiveColumn[], r: EventRecord, partition: number, offset: number, key: string | undefined): number {
  const extra: Record<string, unknown> = {};
  let extras = 0;
  const declared = new Set<string>();
  for (const c of columns) {
    if (c.property === undefined) continue;
    declared.add(c.property);
    const v = r.data[c.property];
    if (v === undefined || v === null) a.appendNull();
    else if (!fits(c.kind, v)) {
      a.appendNull();
      extra[c.property] = v;
      extras++;
    } else if (c.kind === 'VARCHAR') a.appendVarchar(v as string);
    else if (c.kind === 'BIGINT' || c.kind === 'DOUBLE') a.appendDouble(Number(v));
    else if (c.kind === 'BOOLEAN') a.appendBoolean(v as boolean);
    else a.appendVarchar(jsonText(v));
  }
  for (const [k, v] of Object.entries(r.data)) {
    if (declared.has(k)) continue;
    extra[k] = v;
    extras++;
  }
  if (extras === 0) a.appendNull();
  else a.appendVarchar(jsonText(extra));
  const hour = Math.floor(r.received_at / HOUR_MS) * HOUR_MS;
  a.appendDouble(r.received_at);
  a.appendDouble(r.event_time ?? r.received_at);
  if (r.id === undefined) a.appendNull();
  else a.appendVarchar(r.id);
  if (key === undefined) a.appendNull();
  else a.appendVarchar(key);
  a.appendDouble(partition);
  a.appendDouble(offset);
  a.appendDouble(r.schema_version);
  a.appendDouble(hour);
  a.endRow();
  return hour;
}

/** The buffer's column type for a file's column kind. */
function bufferType(kind: ColumnKind): string {
  return kind === 'VARCHAR' || kind === 'JSON' ? 'VARCHAR' : kind === 'BOOLEAN' ? 'BOOLEAN' : 'DOUBLE';
}

/** A quoted SQL identifier. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

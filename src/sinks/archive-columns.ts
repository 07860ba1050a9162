/**
 * The columns of an event type's archive files, from its JSON Schema: each declared top-level property a typed
 * column (strings and string enums VARCHAR, integers BIGINT, numbers DOUBLE, booleans BOOLEAN; objects, arrays and
 * anything of several types JSON text), the properties the schema does not declare together in `_extra` (JSON text of
 * an object, NULL when there are none), then the record's metadata.
 */
import { EVENT_RECORD_HAS_ID, EVENT_RECORD_VERSION, readEventHeader, readMapHeader, readStringHeader, readUtf8, skipValue, type Cursor, type EventHeader, type EventRecord } from '../core/index.js';

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
 * One event as a line of CSV, the columns of `csvSource` in order: `columns` (data columns then `_extra`), then the
 * metadata. Declared properties go to their columns, the rest (and values that do not fit) to `_extra`. Strings are
 * always quoted (`""` inside), so an empty string is `""` and NULL is an empty field.
 *
 * Why CSV: the archive and the history's unarchived tail hand rows to DuckDB, and DuckDB's CSV reader takes them far
 * faster than its appender (a call into DuckDB per value) or its JSON reader. Measured with
 * `node --import tsx bench/archive-writer.ts` (see there).
 */
export function csvRow(columns: readonly ArchiveColumn[], r: EventRecord, partition: number, offset: number, key: string | undefined): string {
  let line = '';
  let extra: Record<string, unknown> | undefined;
  let declared = 0;
  for (const c of columns) {
    if (c.property === undefined) continue;
    let v = r.data[c.property];
    // Inherited (`constructor`, `__proto__` …) is missing: only objects can be inherited, so only they are looked at.
    if (typeof v === 'object' || typeof v === 'function') v = Object.hasOwn(r.data, c.property) ? v : undefined;
    if (v === undefined) {
      line += ',';
      continue;
    }
    declared++;
    if (v === null) line += ',';
    else if (!fits(c.kind, v)) {
      (extra ??= {})[c.property] = v;
      line += ',';
    } else line += `${csvValue(c.kind, v)},`;
  }
  // Properties the columns do not declare (counted: most events have none, and then no look-up is needed).
  if (Object.keys(r.data).length > declared) {
    const names = declaredProperties(columns);
    for (const k of Object.keys(r.data)) if (!names.has(k)) (extra ??= {})[k] = r.data[k];
  }
  if (extra !== undefined) line += quoted(jsonText(extra));
  line += `,${num(r.received_at)},${num(r.event_time ?? r.received_at)},${r.id === undefined ? '' : quoted(r.id)},${key === undefined ? '' : quoted(key)},${partition},${offset},${r.schema_version}\n`;
  return line;
}

/** A columns list prepared for `writeCsvRecord`: its data columns' property names as UTF-8 and kinds. */
interface CsvPlan {
  readonly names: Buffer[];
  readonly kinds: ColumnKind[];
  /** Scratch: where each data column's value starts in the record, -1 when it has none. */
  readonly starts: Int32Array;
}

const plans = new WeakMap<readonly ArchiveColumn[], CsvPlan>();
const scratchHeader: EventHeader = { version: 0, receivedAt: 0, eventTime: 0, payloadOffset: 0, replay: false };
const cursor: Cursor = { pos: 0 };

function planOf(columns: readonly ArchiveColumn[]): CsvPlan {
  let plan = plans.get(columns);
  if (plan === undefined) {
    const data = columns.filter((c) => c.property !== undefined);
    plan = { names: data.map((c) => Buffer.from(c.property!, 'utf8')), kinds: data.map((c) => c.kind), starts: new Int32Array(data.length) };
    plans.set(columns, plan);
  }
  return plan;
}

/**
 * The line `csvRow` makes of the record in buf[start, end), written straight from its bytes into `dst` at `at`
 * (room for `csvRecordBound` bytes): no object, and no string for an ASCII text. Returns the position after the line,
 * or -1 for a record it leaves to `csvRow` (with nothing written worth keeping): a property the columns do not
 * declare, a value that does not fit its column or goes to a JSON column, a version 2 record. The same bytes as
 * `csvRow` of the decoded record, property-tested against it. Damaged bytes throw `MsgpackError` as decoding does.
 */
export function writeCsvRecord(dst: Buffer, at: number, columns: readonly ArchiveColumn[], buf: Buffer, start: number, end: number, partition: number, offset: number, key: string | undefined): number {
  if (buf[start] !== EVENT_RECORD_VERSION) return -1;
  const plan = planOf(columns);
  const h = readEventHeader(buf, start, scratchHeader);
  const c = cursor;
  c.pos = h.payloadOffset;
  let idStart = -1;
  if (buf[start + 1] & EVENT_RECORD_HAS_ID) {
    idStart = c.pos;
    skipValue(buf, c, end);
  }
  const n = readMapHeader(buf, c, end);
  if (n < 0) return -1;
  const { names, kinds, starts } = plan;
  starts.fill(-1);
  let guess = 0;
  for (let i = 0; i < n; i++) {
    const len = readStringHeader(buf, c, end);
    if (len < 0) return -1;
    const k = c.pos;
    c.pos += len;
    // Properties mostly come in the schema's order: the column after the last one found is tried first.
    let j = guess < names.length && sameBytes(names[guess], buf, k, len) ? guess : -1;
    for (let x = 0; j < 0 && x < names.length; x++) if (sameBytes(names[x], buf, k, len)) j = x;
    if (j < 0) return -1;
    starts[j] = c.pos;
    skipValue(buf, c, end);
    guess = j + 1;
  }
  for (let j = 0; j < names.length; j++) {
    const v = starts[j];
    if (v >= 0 && buf[v] !== 0xc0) {
      const t = buf[v];
      switch (kinds[j]) {
        case 'VARCHAR':
          if (!isString(t)) return -1;
          at = copyString(dst, at, buf, v, end);
          break;
        case 'BIGINT':
        case 'DOUBLE': {
          const x = numberAt(buf, v, t);
          if (x === undefined || (kinds[j] === 'BIGINT' && !Number.isSafeInteger(x))) return -1;
          at += dst.write(num(x), at, 'latin1');
          break;
        }
        case 'BOOLEAN':
          if (t !== 0xc2 && t !== 0xc3) return -1;
          at += dst.write(t === 0xc3 ? 'true' : 'false', at, 'latin1');
          break;
        case 'JSON':
          return -1;
      }
    }
    dst[at++] = 0x2c;
  }
  // No `_extra`: every property had its column.
  at += dst.write(`,${num(h.receivedAt)},${num(h.eventTime)},`, at, 'latin1');
  if (idStart >= 0) {
    if (!isString(buf[idStart])) return -1;
    at = copyString(dst, at, buf, idStart, end);
  }
  dst[at++] = 0x2c;
  if (key !== undefined) at += dst.write(quoted(key), at, 'utf8');
  at += dst.write(`,${partition},${offset},${buf.readUInt32LE(start + 2)}\n`, at, 'latin1');
  return at;
}

/** Bytes `writeCsvRecord` may write for a record of `bytes` bytes (a byte of it becomes at most 3 of text, a number at most 6 per byte). */
export function csvRecordBound(bytes: number, columns: number, key: string | undefined): number {
  return 6 * bytes + columns + 256 + 6 * (key?.length ?? 0);
}

function sameBytes(name: Buffer, buf: Buffer, at: number, len: number): boolean {
  if (name.length !== len) return false;
  for (let i = 0; i < len; i++) if (name[i] !== buf[at + i]) return false;
  return true;
}

function isString(t: number): boolean {
  return (t >= 0xa0 && t <= 0xbf) || t === 0xd9 || t === 0xda || t === 0xdb;
}

/** The MessagePack string at `v` quoted into `dst` (ASCII byte by byte, anything else as decoding reads it). */
function copyString(dst: Buffer, at: number, buf: Buffer, v: number, end: number): number {
  const c = cursor;
  c.pos = v;
  const len = readStringHeader(buf, c, end);
  const s = c.pos;
  const from = at;
  dst[at++] = 0x22;
  for (let i = s; i < s + len; i++) {
    const b = buf[i];
    if (b >= 0x80) return from + dst.write(quoted(readUtf8(buf, s, s + len)), from, 'utf8');
    if (b === 0x22) dst[at++] = 0x22;
    dst[at++] = b;
  }
  dst[at++] = 0x22;
  return at;
}

/** The number at `v` (type byte `t`) as decoding reads it, or undefined when it is not a number. */
function numberAt(buf: Buffer, v: number, t: number): number | undefined {
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  switch (t) {
    case 0xcc:
      return buf[v + 1];
    case 0xcd:
      return buf.readUInt16BE(v + 1);
    case 0xce:
      return buf.readUInt32BE(v + 1);
    case 0xcf:
      return Number(buf.readBigUInt64BE(v + 1));
    case 0xd0:
      return buf.readInt8(v + 1);
    case 0xd1:
      return buf.readInt16BE(v + 1);
    case 0xd2:
      return buf.readInt32BE(v + 1);
    case 0xd3:
      return Number(buf.readBigInt64BE(v + 1));
    case 0xca:
      return buf.readFloatBE(v + 1);
    case 0xcb:
      return buf.readDoubleBE(v + 1);
    default:
      return undefined;
  }
}

/**
 * DuckDB's `read_csv` of files of `csvRow` lines made with `columns`, typed as the files are, with times as
 * milliseconds (`fileSelect` turns them into timestamps). `maxLineBytes`: the longest line's bytes (DuckDB refuses
 * longer lines than it is told to expect; its default is 2 MB).
 */
export function csvSource(paths: readonly string[], columns: readonly ArchiveColumn[], maxLineBytes: number): string {
  const types = [...columns, ...METADATA_COLUMNS].map((c) => `'${c.name.replaceAll("'", "''")}': '${csvType(c)}'`);
  const files = paths.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ');
  return (
    `read_csv([${files}], header = false, auto_detect = false, delim = ',', quote = '"', escape = '"', new_line = '\\n', ` +
    `allow_quoted_nulls = false, max_line_size = ${Math.max(2 ** 21, maxLineBytes + 1024)}, columns = {${types.join(', ')}})`
  );
}

/** The SELECT list reading `csvSource` rows as the files hold them (times as timestamps). */
export function fileSelect(columns: readonly ArchiveColumn[]): string {
  const meta = METADATA_COLUMNS.map((c) => (c.name === 'received_at' || c.name === 'event_time' ? `epoch_ms(${ident(c.name)}::BIGINT) AS ${ident(c.name)}` : ident(c.name)));
  return [...columns.map((c) => ident(c.name)), ...meta].join(', ');
}

/** A column's type in the CSV: the file's, but times (ms) as DOUBLE (an event time may have a fraction). */
function csvType(c: ArchiveColumn): string {
  if (c.property === undefined && (c.name === 'received_at' || c.name === 'event_time')) return 'DOUBLE';
  return c.kind === 'JSON' ? 'VARCHAR' : c.kind;
}

/** A value that fits its column's kind, as CSV. */
function csvValue(kind: ColumnKind, v: unknown): string {
  switch (kind) {
    case 'VARCHAR':
      return quoted(v as string);
    case 'BIGINT':
    case 'DOUBLE':
      return num(Number(v));
    case 'BOOLEAN':
      return v ? 'true' : 'false';
    case 'JSON':
      return quoted(jsonText(v));
  }
}

/** A number as DuckDB reads it back exactly: JavaScript's shortest round-trip text, `-0` kept (records hold no NaN or infinity). */
function num(n: number): string {
  return Object.is(n, -0) ? '-0' : String(n);
}

function quoted(s: string): string {
  return s.includes('"') ? `"${s.replaceAll('"', '""')}"` : `"${s}"`;
}

const declaredCache = new WeakMap<readonly ArchiveColumn[], Set<string>>();

function declaredProperties(columns: readonly ArchiveColumn[]): Set<string> {
  let names = declaredCache.get(columns);
  if (names === undefined) {
    names = new Set(columns.flatMap((c) => (c.property === undefined ? [] : [c.property])));
    declaredCache.set(columns, names);
  }
  return names;
}

/** A quoted SQL identifier. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

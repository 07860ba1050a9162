import { HalflifeError } from '../core/index.js';
import { sketchKey } from '../sketch/index.js';
import './errors.js';

export type TableRow = Record<string, unknown>;

export interface TableInfo {
  readonly name: string;
  readonly keyColumn: string;
  readonly columns: readonly string[];
  readonly rows: number;
}

const NO_ROWS: readonly TableRow[] = Object.freeze([]);
const NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;

/**
 * Static tables for enrichment joins: rows by a key column, with lazily built indexes for lookups on other
 * columns. An update is seen by the views from the next event on. In memory: the engine host keeps them in the
 * shared state (`TableStore`) and gives every engine its copy.
 */
export class Tables {
  readonly #tables = new Map<string, { keyColumn: string; columns: string[]; rows: Map<string, TableRow>; indexes: Map<string, Map<string, TableRow[]>> }>();

  /** Tables as stored (already checked when they were put). */
  load(tables: readonly { name: string; keyColumn: string; rows: readonly TableRow[] }[]): void {
    for (const t of tables) this.#set(t.name, t.keyColumn, t.rows, true);
  }

  names(): string[] {
    return [...this.#tables.keys()].sort();
  }

  info(name: string): TableInfo {
    const t = this.#tables.get(name);
    if (t === undefined) throw new HalflifeError('TABLE_NOT_FOUND', { name });
    return { name, keyColumn: t.keyColumn, columns: t.columns, rows: t.rows.size };
  }

  columns(name: string): readonly string[] | undefined {
    return this.#tables.get(name)?.columns;
  }

  rows(name: string): TableRow[] {
    const t = this.#tables.get(name);
    if (t === undefined) throw new HalflifeError('TABLE_NOT_FOUND', { name });
    return [...t.rows.values()];
  }

  /**
   * The rows whose `column` equals `value` (none for NULL, as `=` never matches NULL). The key column is unique, so
   * a lookup on it finds at most one row; any other column may match several, and a join yields one row per match.
   */
  lookup(name: string, column: string, value: unknown): readonly TableRow[] {
    const t = this.#tables.get(name);
    if (t === undefined || value === null || value === undefined) return NO_ROWS;
    const k = sketchKey(value);
    if (column === t.keyColumn) {
      const row = t.rows.get(k);
      return row === undefined ? NO_ROWS : [row];
    }
    let index = t.indexes.get(column);
    if (index === undefined) {
      index = new Map();
      for (const r of t.rows.values()) {
        const v = cell(r, column);
        if (v === null || v === undefined) continue;
        const vk = sketchKey(v);
        const list = index.get(vk);
        if (list === undefined) index.set(vk, [r]);
        else list.push(r);
      }
      t.indexes.set(column, index);
    }
    return index.get(k) ?? NO_ROWS;
  }

  /** Replaces a table's rows (`replace`) or upserts them by key. */
  async put(name: string, keyColumn: string, rows: readonly TableRow[], replace: boolean): Promise<TableInfo> {
    if (!NAME_RE.test(name)) throw new HalflifeError('INVALID_TABLE', { name: JSON.stringify(name), reason: 'a table name is 1-128 letters, digits or "_", starting with a letter' });
    const existing = this.#tables.get(name);
    if (!replace && existing !== undefined && existing.keyColumn !== keyColumn) {
      throw new HalflifeError('INVALID_TABLE', { name, reason: `its key column is ${existing.keyColumn}, not ${keyColumn}` });
    }
    // The key column is the table's primary key: two rows of one request with the same key are refused rather than
    // one silently kept (an update of an existing key through PATCH replaces that row, as an upsert should).
    const seen = new Map<string, number>();
    rows.forEach((r, i) => {
      if (r === null || typeof r !== 'object' || Array.isArray(r)) return; // refused with its own reason below
      const v = cell(r as TableRow, keyColumn);
      if (v === null || v === undefined) return;
      const k = sketchKey(v);
      const first = seen.get(k);
      if (first !== undefined) {
        throw new HalflifeError('INVALID_TABLE', { name, reason: `rows ${first} and ${i} have the same key ${JSON.stringify(v)} in the key column ${keyColumn}; a key column holds each value once (join on another column to match several rows)` });
      }
      seen.set(k, i);
    });
    const merged = replace || existing === undefined ? rows : [...existing.rows.values(), ...rows];
    this.#set(name, keyColumn, merged, false);
    return this.info(name);
  }

  async drop(name: string): Promise<void> {
    if (!this.#tables.delete(name)) throw new HalflifeError('TABLE_NOT_FOUND', { name });
  }

  #set(name: string, keyColumn: string, rows: readonly TableRow[], trusted: boolean): void {
    const map = new Map<string, TableRow>();
    const columns = new Set<string>([keyColumn]);
    rows.forEach((r, i) => {
      if (r === null || typeof r !== 'object' || Array.isArray(r)) {
        throw new HalflifeError('INVALID_TABLE', { name, reason: `row ${i} is not an object` });
      }
      const k = cell(r, keyColumn);
      if (!trusted && (k === null || k === undefined || k === '')) {
        throw new HalflifeError('INVALID_TABLE', { name, reason: `row ${i} has no value in the key column ${keyColumn}` });
      }
      map.set(sketchKey(k), r);
      for (const c of Object.keys(r)) columns.add(c);
    });
    this.#tables.set(name, { keyColumn, columns: [...columns], rows: map, indexes: new Map() });
  }

}

/** A row's value in `column`: its own only, so a column named toString or constructor is a column like any other. */
function cell(row: TableRow, column: string): unknown {
  return Object.hasOwn(row, column) ? row[column] : undefined;
}

/** How deeply a table row's values may nest (JSON's own nesting is unbounded; serialising a deep one overflows). */
export const MAX_TABLE_DEPTH = 32;

/** Refuses rows nested deeper than MAX_TABLE_DEPTH, measured without recursion. */
export function checkTableDepth(name: string, rows: readonly unknown[]): void {
  rows.forEach((row, i) => {
    const stack: { v: unknown; d: number }[] = [{ v: row, d: 1 }];
    while (stack.length > 0) {
      const { v, d } = stack.pop()!;
      if (v === null || typeof v !== 'object') continue;
      if (d > MAX_TABLE_DEPTH) throw new HalflifeError('INVALID_TABLE', { name, reason: `row ${i} nests deeper than ${MAX_TABLE_DEPTH} levels` });
      for (const x of Object.values(v)) stack.push({ v: x, d: d + 1 });
    }
  });
}

/** Parses a table body: a JSON array of objects, NDJSON, or CSV with a header row. */
export function parseTableBody(name: string, body: string, contentType: string): TableRow[] {
  const type = contentType.split(';')[0].trim().toLowerCase();
  try {
    if (type === 'text/csv') return parseCsv(body);
    if (type.includes('ndjson') || type.includes('jsonl')) {
      return body.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as TableRow);
    }
    const parsed = JSON.parse(body) as unknown;
    if (!Array.isArray(parsed)) throw new Error('expected a JSON array of rows');
    return parsed as TableRow[];
  } catch (err) {
    throw new HalflifeError('INVALID_TABLE', { name, reason: (err as Error).message });
  }
}

/** RFC 4180 CSV: quoted fields, doubled quotes, CRLF. Numeric-looking fields become numbers. */
export function parseCsv(text: string): TableRow[] {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      record.push(field);
      field = '';
      if (record.some((f) => f !== '')) records.push(record);
      record = [];
    } else field += c;
  }
  if (quoted) throw new Error('unterminated quoted field');
  record.push(field);
  if (record.some((f) => f !== '')) records.push(record);
  if (records.length === 0) return [];
  const [header, ...rows] = records;
  // fromEntries: a column named __proto__ is a column, not the row's prototype.
  return rows.map((r) =>
    Object.fromEntries(
      header.map((h, i) => {
        const v = r[i] ?? '';
        return [h, v !== '' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v];
      }),
    ),
  );
}

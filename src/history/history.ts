import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, JsonDuckDBValueConverter, StatementType, type DuckDBConnection, type DuckDBPreparedStatement } from '@duckdb/node-api';
import { HalflifeError, eventRecordType, silentLogger, type Logger } from '../core/index.js';
import { batchKey, type LogReader, type OffsetStore } from '../log/index.js';
import { EXTRA, fits, parseArchiveFile, superseded, type ArchiveFile, type ColumnKind, CsvSpool, csvSource, dataColumns, fileSelect, ident, type ArchiveColumn } from '../sinks/index.js';
import './errors.js';

export interface HistoryOptions {
  readonly log: LogReader & OffsetStore;
  /** The archive's folder (see sinks/archive.ts): the only files a query may read. */
  readonly archiveDir: string;
  /** The archive's consumer name (its committed positions say which files are complete). */
  readonly consumer?: string;
  /** The current schema of a type (the tail's columns, as the archive makes them). */
  readonly schemaOf: (type: string) => unknown;
  /** Every type with a schema: a table even before it has events. */
  readonly types: () => readonly string[];
  /** The static tables (`PUT /v1/tables/:name`), joinable by name. */
  readonly tables?: () => readonly { readonly name: string; readonly rows: readonly Record<string, unknown>[] }[];
  readonly timeoutMs: number;
  readonly maxRows: number;
  /** DuckDB's memory for one query. */
  readonly memoryLimitMb?: number;
  /** Where a query gathers the log's tail for DuckDB to read (a folder of its own inside, removed when set up; default the system's). */
  readonly tempDir?: string;
  readonly logger?: Logger;
}

/** A query under way (see `History.#open`). */
interface OpenQuery {
  readonly prepared: DuckDBPreparedStatement;
  readonly tailEvents: number;
  readonly files: number;
  close(): void;
  /** Throws SQL_TIMEOUT once the time limit interrupted the query. */
  check(): void;
  /** DuckDB's error as SQL_TIMEOUT (interrupted) or SQL_ERROR. */
  fail(err: unknown): never;
}

/** Rows as they come (see `History.stream`). */
export interface HistoryStream {
  readonly columns: { name: string; type: string }[];
  readonly rows: AsyncGenerator<unknown[][]>;
  /** Whether rows past `maxRows` were cut (known once `rows` is consumed). */
  truncated(): boolean;
  /** Ends the query and frees its DuckDB (also when `rows` was never started); safe to call again. */
  close(): void;
  readonly tailEvents: number;
  readonly files: number;
}

export interface HistoryResult {
  readonly columns: { name: string; type: string }[];
  readonly rows: unknown[][];
  /** More rows than `maxRows`: the first `maxRows` are given. */
  readonly truncated: boolean;
  /** Events read from the log (not archived yet) and archive files read for the query. */
  readonly tailEvents: number;
  readonly files: number;
}

/**
 * SQL over all history (issue #13): one table per event type and `events` over all of them, each the archive's
 * Parquet files whose flush was committed, plus the records of the log after the archive's committed positions (not
 * in a committed file yet), so a query sees every event the log held when it started, once.
 *
 * Each query gets a DuckDB of its own, sandboxed before the query runs: no file outside the archive folder
 * (`enable_external_access = false` with `allowed_directories`), no extension installed or loaded, the configuration
 * locked; only a single SELECT (or EXPLAIN) is run (COPY, ATTACH, SET, PRAGMA, INSTALL … are refused as
 * SQL_FORBIDDEN); a time limit interrupts it (SQL_TIMEOUT) and at most `maxRows` rows are returned.
 */
export class History {
  readonly #o: HistoryOptions;
  readonly #logger: Logger;

  constructor(options: HistoryOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  /** Empties `tempDir` of what a process that stopped mid-query left there. */
  async start(): Promise<void> {
    if (this.#o.tempDir === undefined) return;
    await rm(this.#o.tempDir, { recursive: true, force: true });
    await mkdir(this.#o.tempDir, { recursive: true, mode: 0o700 });
  }

  /** Runs `sql` and answers its rows (at most `maxRows`). */
  async query(sql: string): Promise<HistoryResult> {
    return this.#retrying(async () => {
      const q = await this.#open(sql);
      try {
        const reader = await q.prepared.streamAndReadUntil(this.#o.maxRows + 1).catch((err: unknown) => q.fail(err));
        q.check();
        const names = reader.columnNames();
        const types = reader.columnTypes().map((t) => t.toString());
        const rows = reader.getRowsJson() as unknown[][];
        const truncated = rows.length > this.#o.maxRows;
        return { columns: names.map((name, i) => ({ name, type: types[i] })), rows: truncated ? rows.slice(0, this.#o.maxRows) : rows, truncated, tailEvents: q.tailEvents, files: q.files };
      } finally {
        q.close();
      }
    });
  }

  /**
   * Runs `sql` and hands its rows over chunk by chunk as DuckDB makes them (`?format=ndjson|csv`): a large answer is
   * never held whole. At most `maxRows` rows; `truncated()` says, once the rows are consumed, whether more were cut.
   * The query's own DuckDB is closed when the rows are consumed or abandoned (`return`).
   */
  async stream(sql: string): Promise<HistoryStream> {
    const q = await this.#retrying(() => this.#open(sql));
    let result;
    try {
      result = await q.prepared.stream().catch((err: unknown) => q.fail(err));
    } catch (err) {
      q.close();
      throw err;
    }
    const names = result.columnNames();
    const types = result.columnTypes().map((t) => t.toString());
    const max = this.#o.maxRows;
    let truncated = false;
    let started = false;
    const chunks = async function* (): AsyncGenerator<unknown[][]> {
      started = true;
      let sent = 0;
      try {
        for (;;) {
          const chunk = await result.fetchChunk().catch((err: unknown) => q.fail(err));
          q.check();
          if (chunk === null || chunk.rowCount === 0) return;
          let rows = chunk.convertRows(JsonDuckDBValueConverter) as unknown[][];
          if (sent + rows.length > max) {
            rows = rows.slice(0, max - sent);
            truncated = true;
          }
          sent += rows.length;
          if (rows.length > 0) yield rows;
          if (truncated) return;
        }
      } finally {
        q.close();
      }
    };
    return { columns: names.map((name, i) => ({ name, type: types[i] })), rows: chunks(), truncated: () => truncated, close: () => {
        // Started, its `finally` closes it once the fetch under way settles (after `return()`); never started, here.
        if (!started) q.close();
      }, tailEvents: q.tailEvents, files: q.files };
  }

  /** A compaction (or retention) removed a file between the listing and the read: list again, once. */
  async #retrying<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof HalflifeError && err.code === 'SQL_ERROR' && /No such file|No files found|Could not open|cannot open file/i.test(err.message)) return work();
      throw err;
    }
  }

  /** A DuckDB of the query's own with the tables, sandboxed, and the statement checked and prepared, its clock running. */
  async #open(sql: string): Promise<OpenQuery> {
    if (typeof sql !== 'string' || sql.trim() === '') throw new HalflifeError('SQL_ERROR', { reason: 'no SQL given' });
    const db = await DuckDBInstance.create(':memory:', {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      allow_community_extensions: 'false',
      threads: '1',
      memory_limit: `${this.#o.memoryLimitMb ?? 1024}MB`,
    } as Record<string, string>);
    const con = await db.connect();
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      con.closeSync();
      db.closeSync();
    };
    const timeout = () => new HalflifeError('SQL_TIMEOUT', { timeoutMs: this.#o.timeoutMs, setting: 'history.queryTimeoutMs', hint: 'narrow it (a filter on date and hour reads fewer files) or raise the limit' });
    // The limit covers the whole query, reading the log's tail too. The timer also keeps the process's event loop
    // alive while DuckDB works (its asynchronous calls alone do not).
    timer = setTimeout(() => {
      timedOut = true;
      con.interrupt();
    }, this.#o.timeoutMs);
    try {
      const setup = await this.#setup(con, () => timedOut).catch((err: unknown) => {
        throw timedOut ? timeout() : err;
      });
      if (timedOut) throw timeout();
      await con.run(`SET allowed_directories = [${sqlString(this.#o.archiveDir.endsWith('/') ? this.#o.archiveDir : `${this.#o.archiveDir}/`)}]`);
      await con.run('SET enable_external_access = false');
      await con.run('SET lock_configuration = true');
      const statements = await con.extractStatements(sql).catch((err: unknown) => {
        throw new HalflifeError('SQL_ERROR', { reason: duckMessage(err) });
      });
      if (statements.count !== 1) throw new HalflifeError('SQL_FORBIDDEN', { reason: `one statement at a time (got ${statements.count})` });
      // Told by its first word before DuckDB binds it (binding COPY … TO a path outside the archive fails as a
      // permission error, which would hide what was asked); its type is checked again once prepared.
      const word = leadingKeyword(sql);
      if (!READING.has(word)) throw new HalflifeError('SQL_FORBIDDEN', { reason: `only SELECT reads history (this is ${word === '' ? 'not a statement' : word})` });
      const prepared = await statements.prepare(0).catch((err: unknown) => {
        throw new HalflifeError('SQL_ERROR', { reason: duckMessage(err) });
      });
      // Not EXPLAIN: EXPLAIN ANALYZE runs the statement it explains (a COPY into the archive folder, found in review).
      if (prepared.statementType !== StatementType.SELECT) {
        throw new HalflifeError('SQL_FORBIDDEN', { reason: `only SELECT reads history (this is ${StatementType[prepared.statementType] ?? 'another statement'})` });
      }
      return {
        prepared,
        ...setup,
        close,
        check: () => {
          if (timedOut) throw timeout();
        },
        fail: (err: unknown): never => {
          throw timedOut ? timeout() : new HalflifeError('SQL_ERROR', { reason: duckMessage(err) });
        },
      };
    } catch (err) {
      close();
      throw err;
    }
  }

  /**
   * The tables: for each type, the committed files and the log's records after the archive's positions. Positions
   * are read first: a flush committing after that has a first offset at or after them, so its file is left out and
   * its records come from the log.
   */
  async #setup(con: DuckDBConnection, stopped: () => boolean): Promise<{ tailEvents: number; files: number }> {
    const committed = await this.#o.log.committedOffsets(this.#o.consumer ?? 'archive');
    const stats = this.#o.log.stats();
    const from: number[] = stats.partitions.map((p, i) => committed[i] ?? p.firstOffset);
    const ends: number[] = stats.partitions.map((p) => p.nextOffset);
    const files = new Map<string, string[]>();
    await this.#listFiles(this.#o.archiveDir, from, files);
    let tailEvents = 0;
    // The tail: each type's records as CSV in a folder of the query's own, read into a table before the sandbox is
    // locked (its folder is not one the query may read).
    const spools = new Map<string, { columns: ArchiveColumn[]; spool: CsvSpool }>();
    if (this.#o.tempDir !== undefined) await mkdir(this.#o.tempDir, { recursive: true, mode: 0o700 });
    const tail = await mkdtemp(join(this.#o.tempDir ?? tmpdir(), 'halflife-history-'));
    try {
      const spoolOf = async (type: string) => {
        let t = spools.get(type);
        if (t === undefined) {
          t = { columns: [...dataColumns(this.#o.schemaOf(type)), EXTRA], spool: await CsvSpool.create(join(tail, `${spools.size}.csv`)) };
          spools.set(type, t);
        }
        return t;
      };
      for (const type of new Set([...this.#o.types(), ...files.keys()])) await spoolOf(type);
      for (let p = 0; p < from.length; p++) {
        let pos = from[p];
        while (pos < ends[p] && !stopped()) {
          const batch = await this.#o.log.readBatch(p, pos, { maxRecords: 4096 });
          if (batch.count === 0) break;
          for (let i = 0; i < batch.count && batch.offsets[i] < ends[p]; i++) {
            const at = batch.valueStarts[i];
            const t = await spoolOf(eventRecordType(batch.buffer, at));
            t.spool.addRecord(t.columns, batch.buffer, at, batch.valueEnds[i], p, batch.offsets[i], batchKey(batch, i));
          }
          for (const t of spools.values()) await t.spool.drain();
          pos = batch.next;
        }
      }
      let n = 0;
      for (const t of spools.values()) {
        await t.spool.finish();
        tailEvents += t.spool.rows;
        await con.run(`CREATE TABLE __halflife_tail_${n++} AS SELECT ${fileSelect(t.columns)} FROM ${csvSource([t.spool.path], t.columns, t.spool.maxLineBytes)}`);
      }
    } finally {
      for (const t of spools.values()) await t.spool.abandon();
      await rm(tail, { recursive: true, force: true });
    }
    const views: string[] = [];
    let n = 0;
    for (const type of spools.keys()) {
      const tail = `SELECT *, ${sqlString(type)} AS type, CAST(received_at AS DATE) AS date, CAST(hour(received_at) AS BIGINT) AS hour FROM __halflife_tail_${n++}`;
      const list = files.get(type) ?? [];
      // Only rows before the positions read: a flush committed and compacted since then may sit in a file listed here,
      // and its rows come from the log (found in review).
      const before = `CASE "partition" ${from.map((f, p) => `WHEN ${p} THEN ${f}`).join(' ')} ELSE -1 END`;
      const archived = list.length === 0 ? '' : `SELECT * FROM read_parquet([${list.map(sqlString).join(', ')}], hive_partitioning = true, hive_types = {'date': DATE, 'hour': BIGINT}, union_by_name = true) WHERE "offset" < ${before} UNION ALL BY NAME `;
      await con.run(`CREATE VIEW ${ident(type)} AS ${archived}${tail}`);
      views.push(`SELECT * FROM ${ident(type)}`);
    }
    for (const st of this.#o.tables?.() ?? []) {
      if (spools.has(st.name) || st.name === 'events') continue; // an event type's table wins
      await staticTable(con, st.name, st.rows);
    }
    if (!spools.has('events')) await con.run(`CREATE VIEW events AS ${views.length === 0 ? "SELECT NULL::VARCHAR AS type WHERE false" : views.join(' UNION ALL BY NAME ')}`);
    let count = 0;
    for (const l of files.values()) count += l.length;
    this.#logger.debug({ tailEvents, files: count }, 'history query set up');
    return { tailEvents, files: count };
  }

  /** The committed archive files (first offset before the partition's committed position), by type. */
  async #listFiles(dir: string, from: number[], out: Map<string, string[]>, type?: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const here: ArchiveFile[] = [];
    for (const e of entries) {
      if (e.isDirectory()) {
        const t = type ?? (e.name.startsWith('type=') ? e.name.slice(5) : undefined);
        if (t !== undefined) await this.#listFiles(join(dir, e.name), from, out, t);
        continue;
      }
      const f = parseArchiveFile(e.name);
      if (f === undefined || type === undefined) continue;
      if (f.partition >= from.length || f.first >= from[f.partition]) continue;
      here.push(f);
    }
    // A compaction between its rename and its removals: the merged file holds the others' events.
    const gone = superseded(here);
    for (const f of here) {
      if (gone.has(f.name)) continue;
      const list = out.get(type!) ?? [];
      list.push(join(dir, f.name));
      out.set(type!, list);
    }
  }
}

/**
 * A static table as a DuckDB table: a column per key its rows have, typed when every value fits one kind (text,
 * integer, number, boolean), else JSON text.
 */
async function staticTable(con: DuckDBConnection, name: string, rows: readonly Record<string, unknown>[]): Promise<void> {
  const names: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!names.includes(k)) names.push(k);
  if (names.length === 0) return;
  const kinds = names.map((k): ColumnKind => {
    const values = rows.map((r) => r[k]).filter((v) => v !== null && v !== undefined);
    for (const kind of ['BIGINT', 'DOUBLE', 'BOOLEAN', 'VARCHAR'] as const) if (values.length > 0 && values.every((v) => fits(kind, v))) return kind;
    return 'JSON';
  });
  const sqlType = (k: ColumnKind) => (k === 'JSON' ? 'VARCHAR' : k);
  await con.run(`CREATE TABLE ${ident(name)} (${names.map((n, i) => `${ident(n)} ${sqlType(kinds[i])}`).join(', ')})`);
  const a = await con.createAppender(name);
  for (const r of rows) {
    names.forEach((n, i) => {
      const v = r[n];
      if (v === null || v === undefined) a.appendNull();
      else if (kinds[i] === 'BIGINT') a.appendBigInt(BigInt(v as number));
      else if (kinds[i] === 'DOUBLE') a.appendDouble(Number(v));
      else if (kinds[i] === 'BOOLEAN') a.appendBoolean(v as boolean);
      else if (kinds[i] === 'VARCHAR') a.appendVarchar(v as string);
      else a.appendVarchar(JSON.stringify(v));
    });
    a.endRow();
  }
  a.closeSync();
}

/** First words of statements that only read. */
const READING = new Set(['SELECT', 'WITH', 'FROM', 'VALUES', 'TABLE', 'DESCRIBE', 'SUMMARIZE', 'SHOW']);

/** The first word of `sql` in upper case, past white space, comments and opening parentheses. */
export function leadingKeyword(sql: string): string {
  let i = 0;
  for (;;) {
    while (i < sql.length && (/\s/.test(sql[i]) || sql[i] === '(')) i++;
    if (sql.startsWith('--', i)) {
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? sql.length : nl + 1;
    } else if (sql.startsWith('/*', i)) {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else break;
  }
  const m = /^[A-Za-z_]+/.exec(sql.slice(i, i + 64));
  return m === null ? '' : m[0].toUpperCase();
}

function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/** DuckDB's message without its error class prefix noise kept short. */
function duckMessage(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).slice(0, 2000);
}

import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { LifecycleState, SystemClock, eventRecordIs, eventRecordType, publishFile, readEventHeader, silentLogger, syncDir, type Clock, type EventHeader, type Logger } from '../core/index.js';
import { batchKey, type LogReader, type OffsetStore } from '../log/index.js';
import { archiveFileName, parseArchiveFile, superseded, type ArchiveFile } from './archive-files.js';
import { EXTRA, HOUR_MS, csvSource, dataColumns, fileSelect, type ArchiveColumn } from './archive-columns.js';
import { CsvSpool } from './csv-spool.js';

/**
 * The archive: a consumer of the log (its own committed positions, consumer `archive`) that writes every event
 * once to Parquet under `<dir>/type=<type>/date=YYYY-MM-DD/hour=HH/` (by `received_at`, UTC), one file per partition
 * and flush: `p<partition>_<first offset>-<last offset>.parquet`, zstd.
 *
 * Writer: DuckDB, from CSV. Each partition gathers its records per type and hour as CSV lines in a spool file
 * (`<dir>/.spool`), made straight from the records' bytes (`writeCsvRecord`), and a flush is one
 * `COPY (SELECT … FROM read_csv(…)) TO … (FORMAT parquet)` per file, on the partition's own connection, so DuckDB's
 * work runs beside the thread's reading. Measured (`node --import tsx bench/archive-writer.ts 200000`: page views of
 * 16 columns): this thread's part is 0.52–0.59 s per 200k rows from records, against 0.69–0.81 s for DuckDB's appender
 * (a call into DuckDB per value, from values already decoded: decoding adds about 0.4 s) with its COPY on this
 * thread too; DuckDB's part is 0.64–0.67 s. From the log (`bench/archive-bench.ts`, 1M events, 8 partitions, roll 1 s):
 * 181–194k events/s, against 106k with the appender. NDJSON for DuckDB took 1.47 s to write; hyparquet-writer (pure
 * JS, snappy only) 48–64k rows/s with 60 % larger files.
 *
 * Exactly once: a flush of a partition writes each file to `<name>.tmp`, flushes it and renames it into place, and
 * only then commits the partition's position (the one after its last record in the files). A crash before the
 * commit leaves files whose first offset is at or after the committed position: at start they are removed (and
 * `.tmp` files with them) and their records read and written again. A crash after the commit leaves nothing to do.
 */
export interface ArchiveOptions {
  readonly log: LogReader & OffsetStore;
  readonly dir: string;
  /** The current JSON Schema of a type (its columns), or undefined when it has none. */
  readonly schemaOf: (type: string) => unknown;
  /** A partition's buffered records are written once the oldest waited this long (default 60). */
  readonly rollSeconds?: number;
  /** … or once they hold this many bytes of records (default 64 MiB). */
  readonly rollBytes?: number;
  /** Date folders older than this many days (UTC, by `received_at`) are removed, at start and hourly; 0 keeps all. */
  readonly retentionDays?: number;
  readonly consumer?: string;
  /** A folder's files of one partition are merged into one once there are this many (default 24; at least 2). */
  readonly compactFiles?: number;
  /** The partitions this process archives (default all). */
  readonly partitions?: readonly number[];
  readonly logger?: Logger;
  readonly clock?: Clock;
  /**
   * Called when a partition's archiving fails (a flush that could not write, a read that failed): its thread should
   * end so that a new one starts from the committed positions (files written since are removed then). Default: log.
   */
  readonly onFailure?: (err: unknown) => void;
}

/** A type's columns (they only grow while the process runs: a column keeps its kind), and the schema they were made from. */
interface TypeColumns {
  schema: unknown;
  readonly columns: readonly ArchiveColumn[];
}

/** A partition's records of one type and hour since its last flush, in a spool file. */
interface Group {
  readonly type: string;
  readonly hour: number;
  readonly first: number;
  last: number;
  readonly columns: readonly ArchiveColumn[];
  readonly spool: CsvSpool;
}

interface Pending {
  /** One per type and hour (few: a list is searched faster than a map's key is made). */
  readonly groups: Group[];
  bytes: number;
  since: number;
}

function groupOf(pending: Pending, type: string, hour: number): Group | undefined {
  for (const g of pending.groups) if (g.hour === hour && g.type === type) return g;
  return undefined;
}

export class Archive {
  readonly #o: ArchiveOptions;
  readonly #state = new LifecycleState('archive');
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #consumer: string;
  readonly #rollMs: number;
  readonly #rollBytes: number;
  readonly #abort = new AbortController();
  #db!: DuckDBInstance;
  readonly #types = new Map<string, TypeColumns>();
  readonly #positions = new Map<number, number>();
  readonly #loops: Promise<void>[] = [];
  /** Where partitions gather their records as CSV until a flush (`<dir>/.spool`, emptied at start). */
  readonly #spoolDir: string;
  #spools = 0;
  #archived = 0;
  #retention: NodeJS.Timeout | undefined;
  readonly #compactFiles: number;
  #compactCon!: DuckDBConnection;
  #compacting: Promise<void> = Promise.resolve();
  readonly #compactQueued = new Set<string>();
  #compacted = 0;
  /** Per folder and partition, files written since start (compaction is looked at every `compactFiles`). */
  readonly #written = new Map<string, number>();

  constructor(options: ArchiveOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? new SystemClock();
    this.#consumer = options.consumer ?? 'archive';
    this.#rollMs = (options.rollSeconds ?? 60) * 1000;
    this.#rollBytes = options.rollBytes ?? 64 * 1024 * 1024;
    this.#compactFiles = Math.max(2, options.compactFiles ?? 24);
    this.#spoolDir = join(options.dir, '.spool');
  }

  get partitions(): number[] {
    return [...(this.#o.partitions ?? Array.from({ length: this.#o.log.partitionCount }, (_, i) => i))];
  }

  /** Events written to Parquet by this process. */
  get archived(): number {
    return this.#archived;
  }

  /** Records of each partition not archived yet (in files whose position is committed). */
  lag(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const [p, pos] of this.#positions) out[p] = this.#o.log.lag(p, pos);
    return out;
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    await mkdir(this.#o.dir, { recursive: true });
    // One thread per query: a query runs on the thread that asked for it, so the partitions' flushes (each on a
    // connection of its own) and the compaction run side by side.
    this.#db = await DuckDBInstance.create(':memory:', { threads: '1' });
    this.#compactCon = await this.#db.connect();
    await rm(this.#spoolDir, { recursive: true, force: true });
    await mkdir(this.#spoolDir, { recursive: true });
    const committed = await this.#o.log.committedOffsets(this.#consumer);
    const stats = this.#o.log.stats();
    for (const p of this.partitions) this.#positions.set(p, committed[p] ?? stats.partitions[p].firstOffset);
    await this.#recover(this.#o.dir);
    if ((this.#o.retentionDays ?? 0) > 0) {
      await this.removeExpired();
      this.#retention = setInterval(() => void this.removeExpired().catch((err: unknown) => this.#logger.warn({ err }, 'archive retention failed')), HOUR_MS);
      this.#retention.unref();
    }
    for (const p of this.partitions) this.#loops.push(this.#run(p));
  }

  /**
   * Removes the date folders of every type older than `retentionDays` (a folder is a whole UTC day, removed once all
   * of it is older). Returns the folders removed.
   */
  async removeExpired(): Promise<string[]> {
    const days = this.#o.retentionDays ?? 0;
    if (days <= 0) return [];
    const cutoff = new Date(this.#clock.now() - days * 24 * HOUR_MS).toISOString().slice(0, 10);
    const removed: string[] = [];
    for (const t of await readdir(this.#o.dir, { withFileTypes: true })) {
      if (!t.isDirectory() || !t.name.startsWith('type=')) continue;
      for (const d of await readdir(join(this.#o.dir, t.name), { withFileTypes: true })) {
        const m = /^date=(\d{4}-\d{2}-\d{2})$/.exec(d.name);
        if (!d.isDirectory() || m === null || m[1] >= cutoff) continue;
        const path = join(this.#o.dir, t.name, d.name);
        await rm(path, { recursive: true, force: true });
        removed.push(path);
      }
    }
    if (removed.length > 0) this.#logger.info({ removed: removed.length, before: cutoff }, 'archive retention removed date folders');
    return removed;
  }

  /**
   * Removes what a crash left: `.tmp` files; files of a partition from its committed position on (a flush that did not
   * commit: its records are archived again); and files a compacted file supersedes (a compaction that renamed its
   * merged file into place but had not removed the files merged).
   */
  async #recover(dir: string): Promise<void> {
    const files: ArchiveFile[] = [];
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        await this.#recover(path);
        continue;
      }
      if (e.name.endsWith('.tmp')) {
        await rm(path, { force: true });
        continue;
      }
      const f = parseArchiveFile(e.name);
      if (f === undefined) continue;
      const pos = this.#positions.get(f.partition);
      if (pos !== undefined && f.first >= pos) {
        this.#logger.warn({ file: path }, 'removing an archive file its flush did not commit (its records are archived again)');
        await rm(path, { force: true });
      } else files.push(f);
    }
    const gone = superseded(files);
    for (const name of gone) {
      this.#logger.warn({ file: join(dir, name) }, 'removing an archive file a compaction merged (the compaction stopped before removing it)');
      await rm(join(dir, name), { force: true });
    }
    if (gone.size > 0) await syncDir(dir);
  }

  /**
   * Merges a folder's committed files of one partition into one file, once it holds `compactFiles` of them: written to
   * a `.tmp` name, renamed into place, then the files merged are removed (readers and recovery keep the wider file
   * while both exist, see `superseded`). One compaction at a time, beside the flushes.
   */
  #compactLater(folder: string, p: number): void {
    const key = `${folder}\u0000${p}`;
    if (this.#compactQueued.has(key)) return;
    this.#compactQueued.add(key);
    this.#compacting = this.#compacting
      .then(() => this.#compact(folder, p))
      .catch((err: unknown) => this.#logger.warn({ err, folder, partition: p }, 'archive compaction failed (the files stay as they are)'))
      .finally(() => this.#compactQueued.delete(key));
  }

  async #compact(folder: string, p: number): Promise<void> {
    if (this.#abort.signal.aborted) return;
    const pos = this.#positions.get(p) ?? 0;
    const files = (await readdir(folder))
      .map(parseArchiveFile)
      .filter((f): f is ArchiveFile => f !== undefined && f.partition === p && f.first < pos)
      .sort((a, b) => a.first - b.first);
    const gone = superseded(files);
    const inputs = files.filter((f) => !gone.has(f.name));
    if (inputs.length < this.#compactFiles) return;
    const name = archiveFileName(p, inputs[0].first, Math.max(...inputs.map((f) => f.last)));
    const target = join(folder, name);
    const list = inputs.map((f) => `'${sqlString(join(folder, f.name))}'`).join(', ');
    await this.#compactCon.run(
      `COPY (SELECT * FROM read_parquet([${list}], hive_partitioning = false, union_by_name = true) ORDER BY "offset") TO '${sqlString(target + '.tmp')}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`,
    );
    await publishFile(`${target}.tmp`, target);
    for (const f of inputs) await rm(join(folder, f.name), { force: true });
    await syncDir(folder);
    this.#compacted += inputs.length;
    this.#logger.debug({ folder, partition: p, files: inputs.length, into: name }, 'archive files compacted');
  }

  /** Files merged away by compactions since start. */
  get compacted(): number {
    return this.#compacted;
  }

  /** Waits for the compactions queued so far (tests). */
  async compactions(): Promise<void> {
    await this.#compacting;
  }

  async #run(p: number): Promise<void> {
    const signal = this.#abort.signal;
    const pending: Pending = { groups: [], bytes: 0, since: 0 };
    let pos = this.#positions.get(p)!;
    const con = await this.#db.connect();
    const header: EventHeader = { version: 0, receivedAt: 0, eventTime: 0, payloadOffset: 0, replay: false };
    let type: string | undefined;
    try {
      while (!signal.aborted) {
        const batch = await this.#o.log.readBatch(p, pos, { maxRecords: 4096 });
        for (let i = 0; i < batch.count; i++) {
          const start = batch.valueStarts[i];
          const end = batch.valueEnds[i];
          const offset = batch.offsets[i];
          // The type and time from the header: the record itself goes to CSV from its bytes (see CsvSpool.addRecord).
          if (type === undefined || !eventRecordIs(batch.buffer, type, start)) type = eventRecordType(batch.buffer, start);
          const hour = Math.floor(readEventHeader(batch.buffer, start, header).receivedAt / HOUR_MS) * HOUR_MS;
          const columns = this.#columnsOf(type);
          let g = groupOf(pending, type, hour);
          if (g !== undefined && g.columns !== columns) {
            // The type gained columns: what was gathered goes to files with the columns it had.
            await this.#flush(p, con, pending, offset);
            g = undefined;
          }
          if (g === undefined) {
            if (pending.groups.length === 0) pending.since = this.#clock.now();
            g = { type, hour, first: offset, last: offset, columns, spool: await CsvSpool.create(join(this.#spoolDir, `p${p}_${this.#spools++}.csv`)) };
            pending.groups.push(g);
          }
          g.spool.addRecord(columns, batch.buffer, start, end, p, offset, batchKey(batch, i));
          g.last = offset;
          pending.bytes += end - start;
        }
        for (const g of pending.groups) await g.spool.drain();
        pos = batch.next;
        const due = pending.groups.length > 0 && (pending.bytes >= this.#rollBytes || this.#clock.now() - pending.since >= this.#rollMs);
        if (due) await this.#flush(p, con, pending, pos);
        if (batch.count > 0) continue;
        // Nothing to read: wait for records, or until the buffered ones are due.
        // The timeout signal is kept referenced until the wait ends: on Node 20 a signal of AbortSignal.timeout only an
        // AbortSignal.any holds can be collected before it fires, leaving buffered records unwritten for good (seen
        // with 300k events; the test collects garbage while the archive waits).
        const later = pending.groups.length > 0 ? AbortSignal.timeout(Math.max(1, pending.since + this.#rollMs - this.#clock.now())) : undefined;
        const held: AbortSignal[] = later === undefined ? [signal] : [signal, later];
        await this.#o.log.tail(p, pos, held.length === 1 ? signal : AbortSignal.any(held));
        held.length = 0;
      }
    } catch (err) {
      if (!signal.aborted) {
        this.#logger.error({ err, partition: p }, 'the archive stopped for a partition');
        this.#o.onFailure?.(err);
      }
    } finally {
      for (const g of pending.groups) await g.spool.abandon();
      con.closeSync();
    }
  }

  /** The columns of a type's files: from its schema, made anew with more columns when the schema gained properties. */
  #columnsOf(type: string): readonly ArchiveColumn[] {
    const schema = this.#o.schemaOf(type);
    const t = this.#types.get(type);
    if (t !== undefined && t.schema === schema) return t.columns;
    const wanted = dataColumns(schema);
    if (t !== undefined && wanted.every((c) => t.columns.some((x) => x.name === c.name))) {
      t.schema = schema;
      return t.columns;
    }
    // The columns there (a column keeps its kind), then the new ones, then _extra.
    const data = t === undefined ? wanted : [...t.columns.filter((c) => c.property !== undefined), ...wanted.filter((c) => !t.columns.some((x) => x.name === c.name))];
    const columns = [...data, EXTRA];
    this.#types.set(type, { schema, columns });
    return columns;
  }

  /**
   * Writes a partition's gathered records to their files (`.tmp`, then renamed into place), then commits `pos`, the
   * position after them. Partitions flush side by side, each on its own connection.
   */
  async #flush(p: number, con: DuckDBConnection, pending: Pending, pos: number): Promise<void> {
    let written = 0;
    const folders: string[] = [];
    for (const g of pending.groups) {
      await g.spool.finish();
      const d = new Date(g.hour);
      const folder = join(this.#o.dir, `type=${g.type}`, `date=${d.toISOString().slice(0, 10)}`, `hour=${d.toISOString().slice(11, 13)}`);
      await mkdir(folder, { recursive: true });
      const file = join(folder, archiveFileName(p, g.first, g.last));
      const copied = await con.runAndReadAll(
        `COPY (SELECT ${fileSelect(g.columns)} FROM ${csvSource([g.spool.path], g.columns, g.spool.maxLineBytes)}) TO '${sqlString(file + '.tmp')}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)`,
      );
      const rows = Number(copied.getRows()[0]?.[0] ?? 0);
      if (rows !== g.spool.rows) throw new Error(`archive file ${file}: DuckDB wrote ${rows} rows of ${g.spool.rows}`);
      written += rows;
      await publishFile(`${file}.tmp`, file);
      await rm(g.spool.path, { force: true });
      folders.push(folder);
    }
    await this.#o.log.commitOffsets(this.#consumer, { [p]: pos });
    this.#positions.set(p, pos);
    this.#archived += written;
    for (const folder of folders) this.#countFile(folder, p);
    pending.groups.length = 0;
    pending.bytes = 0;
  }

  /** A file of partition p was written into `folder`: every `compactFiles` of them, the folder is compacted. */
  #countFile(folder: string, p: number): void {
    const key = `${folder}\u0000${p}`;
    const n = (this.#written.get(key) ?? 0) + 1;
    this.#written.set(key, n);
    if (n % this.#compactFiles === 0) this.#compactLater(folder, p);
  }

  /** Stops reading; what is buffered and not written is read again from the committed position by the next start. */
  close(): Promise<void> {
    return this.#state.close(async () => {
      this.#abort.abort();
      clearInterval(this.#retention);
      await Promise.allSettled(this.#loops);
      await this.#compacting;
      this.#compactCon?.closeSync();
      this.#db?.closeSync();
    });
  }
}

function sqlString(s: string): string {
  return s.replaceAll("'", "''");
}


import { open, type FileHandle } from 'node:fs/promises';
import { decodeEventRecord } from '../core/index.js';
import { csvRecordBound, csvRow, writeCsvRecord, type ArchiveColumn } from './archive-columns.js';

const CHUNK = 1 << 20;

/**
 * A file of CSV lines (see `csvRow`) being written for DuckDB to read: lines are encoded into 1 MiB buffers as they
 * come and written once a buffer is full (`drain`), so a roll of 64 MiB of records is never held whole in memory.
 * (Gathering the lines as one string instead spent half the archive's time collecting garbage.)
 */
export class CsvSpool {
  readonly path: string;
  readonly #file: FileHandle;
  #buf = Buffer.allocUnsafe(CHUNK);
  #used = 0;
  /** Full buffers not written yet. */
  #full: Buffer[] = [];
  #longest = 0;
  #rows = 0;

  private constructor(path: string, file: FileHandle) {
    this.path = path;
    this.#file = file;
  }

  /** Creates (or empties) the file at `path`. */
  static async create(path: string): Promise<CsvSpool> {
    return new CsvSpool(path, await open(path, 'w'));
  }

  /** Appends a line. */
  add(line: string): void {
    this.#room(line.length * 3); // UTF-8 takes at most 3 bytes per UTF-16 unit
    this.#added(this.#buf.write(line, this.#used));
  }

  /**
   * Appends the event record in buf[start, end) as the line `csvRow` makes of it: straight from its bytes when
   * `writeCsvRecord` takes it (most records: no object is made), else from the decoded record.
   */
  addRecord(columns: readonly ArchiveColumn[], buf: Buffer, start: number, end: number, partition: number, offset: number, key: string | undefined): void {
    this.#room(csvRecordBound(end - start, columns.length, key));
    const at = writeCsvRecord(this.#buf, this.#used, columns, buf, start, end, partition, offset, key);
    if (at < 0) this.add(csvRow(columns, decodeEventRecord(buf.subarray(start, end), key), partition, offset, key));
    else this.#added(at - this.#used);
  }

  /** Makes room for `bytes` more in the current buffer (a full one waits for `drain`). */
  #room(bytes: number): void {
    if (this.#used + bytes <= this.#buf.length) return;
    if (this.#used > 0) this.#full.push(this.#buf.subarray(0, this.#used));
    this.#buf = Buffer.allocUnsafe(Math.max(CHUNK, bytes));
    this.#used = 0;
  }

  #added(bytes: number): void {
    this.#used += bytes;
    if (bytes > this.#longest) this.#longest = bytes;
    this.#rows++;
  }

  get rows(): number {
    return this.#rows;
  }

  /** The longest line's bytes. */
  get maxLineBytes(): number {
    return this.#longest;
  }

  /** Writes the buffers filled so far. */
  async drain(): Promise<void> {
    const full = this.#full;
    this.#full = [];
    for (const b of full) {
      for (let at = 0; at < b.length; ) at += (await this.#file.write(b, at, b.length - at)).bytesWritten;
    }
  }

  /** Writes the rest and closes the file (it stays, for DuckDB to read). */
  async finish(): Promise<void> {
    try {
      if (this.#used > 0) this.#full.push(this.#buf.subarray(0, this.#used));
      this.#used = 0;
      await this.drain();
    } finally {
      await this.#file.close();
    }
  }

  /** Closes the file without writing the rest (the caller removes it). */
  async abandon(): Promise<void> {
    this.#full = [];
    await this.#file.close().catch(() => {});
  }
}

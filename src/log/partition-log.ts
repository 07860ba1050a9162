import './errors.js';
import { open, readdir, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { HalflifeError, offset as toOffset, partitionId, readUtf8, type Logger, type Offset, type PartitionId } from '../core/index.js';
import type { LogRecord, ReadOptions, RecordBatch } from './log.js';
import { FILE_HEADER_BYTES, fileHeader, isTornTail, scanRecords, segmentFormat, type DecodedRecord, type ScanResult, type ScanStop } from './segment-format.js';

const SEGMENT_RE = /^(\d{20})\.seg$/;
const INDEX_ENTRY_BYTES = 16;
/** An index file ends with the CRC-32 of its entries: a damaged entry could otherwise send a read past records. */
const INDEX_CRC_BYTES = 4;
const DEFAULT_MAX_RECORDS = 1000;
const DEFAULT_MAX_READ_BYTES = 1024 * 1024;

/**
 * One segment file plus its sparse index. Each index entry maps the first record of a batch (relative offset) to
 * the batch's byte position and carries the largest timestamp seen in the segment up to and including that
 * record, which makes "first offset at or after time T" a binary search even when timestamps are not monotonic.
 */
class Segment {
  readonly baseOffset: number;
  readonly path: string;
  readonly indexPath: string;
  /** 2, or 1 for a segment written before record batches (read only). */
  format: 1 | 2 = 2;
  /** Where records start: after the file header (format 2). */
  dataStart = FILE_HEADER_BYTES;
  /** Bytes durable and visible to readers. */
  size = 0;
  /**
   * Bytes whose CRCs this process has checked (recovery scan) or wrote itself: reads below this skip the CRC, as a
   * Kafka broker does. Sealed segments opened from their index are checked on every read.
   */
  verifiedBytes = 0;
  nextOffset: number;
  maxTimestampMs = -Infinity;
  relOffsets: number[] = [];
  positions: number[] = [];
  maxTs: number[] = [];
  lastIndexedPosition = -Infinity;
  /** Position and first offset of the last batch (-1: none yet). */
  lastBatchPosition = -1;
  lastBatchBase = -1;
  fh: FileHandle | undefined;
  /** Reads in progress; a segment deleted by retention closes its handle when the last one ends. */
  readers = 0;
  deleted = false;

  constructor(dir: string, baseOffset: number) {
    this.baseOffset = baseOffset;
    this.nextOffset = baseOffset;
    const name = String(baseOffset).padStart(20, '0');
    this.path = join(dir, `${name}.seg`);
    this.indexPath = join(dir, `${name}.idx`);
  }

  get name(): string {
    return this.path;
  }

  setFormat(format: 1 | 2): void {
    this.format = format;
    this.dataStart = format === 2 ? FILE_HEADER_BYTES : 0;
  }

  addIndexEntry(offset: number, position: number, maxTs: number): void {
    this.relOffsets.push(offset - this.baseOffset);
    this.positions.push(position);
    this.maxTs.push(maxTs);
    this.lastIndexedPosition = position;
  }

  /** Byte position to start scanning for `offset`. */
  positionFor(offset: number): number {
    const rel = offset - this.baseOffset;
    let lo = 0;
    let hi = this.relOffsets.length - 1;
    let best = this.dataStart;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.relOffsets[mid] <= rel) {
        best = this.positions[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  }

  /** Byte position from which every record with timestamp >= t lies at or after. */
  positionForTime(t: number): number {
    let lo = 0;
    let hi = this.maxTs.length - 1;
    let first = this.maxTs.length;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.maxTs[mid] >= t) {
        first = mid;
        hi = mid - 1;
      } else lo = mid + 1;
    }
    if (first === 0) return this.dataStart;
    // Records up to entry first-1 all have timestamps < t; the next candidate follows that record.
    return this.positions[first - 1];
  }

  encodeIndex(): Buffer {
    const n = this.relOffsets.length;
    const buf = Buffer.allocUnsafe(n * INDEX_ENTRY_BYTES + INDEX_CRC_BYTES);
    for (let i = 0; i < n; i++) {
      buf.writeUInt32LE(this.relOffsets[i], i * INDEX_ENTRY_BYTES);
      buf.writeUInt32LE(this.positions[i], i * INDEX_ENTRY_BYTES + 4);
      buf.writeDoubleLE(this.maxTs[i], i * INDEX_ENTRY_BYTES + 8);
    }
    buf.writeUInt32LE(crc32(buf.subarray(0, n * INDEX_ENTRY_BYTES)), n * INDEX_ENTRY_BYTES);
    return buf;
  }

  /** Runs `fn` with a read handle that stays open until it returns, even if retention deletes the segment. */
  async withReader<T>(fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    this.readers++;
    try {
      this.fh ??= await open(this.path, 'r');
      return await fn(this.fh);
    } finally {
      if (--this.readers === 0 && this.deleted) await this.closeHandle();
    }
  }

  async closeHandle(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

export interface PartitionLogOptions {
  readonly dir: string;
  readonly partition: number;
  readonly segmentBytes: number;
  readonly indexIntervalBytes: number;
  /** Whether to fsync new files' directory entries and sealed indexes. */
  readonly syncMetadata: boolean;
  readonly logger: Logger;
}

/** A planned write: the encoded frames plus the index entries they add, applied once the bytes are durable. */
export interface PreparedWrite {
  readonly count: number;
  readonly bytes: number;
  readonly firstOffset: number;
}

/** The segments of one partition: recovery on open, appends, reads, retention. */
export class PartitionLog {
  readonly partition: PartitionId;
  readonly #o: PartitionLogOptions;
  #segments: Segment[] = [];
  #writer: FileHandle | undefined;
  #dirty = false;

  constructor(options: PartitionLogOptions) {
    this.#o = options;
    this.partition = partitionId(options.partition);
  }

  get #active(): Segment {
    return this.#segments[this.#segments.length - 1];
  }

  get firstOffset(): Offset {
    return toOffset(this.#segments[0].baseOffset);
  }

  get nextOffset(): Offset {
    return toOffset(this.#active.nextOffset);
  }

  get bytes(): number {
    let total = 0;
    for (const s of this.#segments) total += s.size;
    return total;
  }

  get dirty(): boolean {
    return this.#dirty;
  }

  async open(): Promise<void> {
    const names = (await readdir(this.#o.dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    if (names.length === 0) {
      const seg = new Segment(this.#o.dir, 0);
      this.#segments = [seg];
      this.#writer = await this.#create(seg);
      return;
    }
    const segments = names.map((n) => new Segment(this.#o.dir, Number(SEGMENT_RE.exec(n)![1])));
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const last = i === segments.length - 1;
      if (!last && (await this.#loadIndex(seg, segments[i + 1].baseOffset))) continue;
      await this.#recover(seg, last);
    }
    this.#segments = segments;
    this.#writer = await open(this.#active.path, 'r+');
    // New records are written in the current format: a format-1 active segment is sealed as it is.
    if (this.#active.format === 1) await this.#roll();
  }

  /** Creates a new segment file with its header; returns its write handle. */
  async #create(seg: Segment): Promise<FileHandle> {
    const fh = await open(seg.path, 'w+');
    const header = fileHeader();
    await fh.write(header, 0, header.length, 0);
    seg.setFormat(2);
    seg.size = header.length;
    seg.verifiedBytes = header.length;
    await this.#syncDir();
    return fh;
  }

  /** Loads a sealed segment's index file; false when it is missing or does not fit the segment. */
  async #loadIndex(seg: Segment, nextBase: number): Promise<boolean> {
    let buf: Buffer;
    let size: number;
    try {
      buf = await readFile(seg.indexPath);
      const fh = await open(seg.path, 'r');
      try {
        size = (await fh.stat()).size;
        // Enough for the header or a format-1 segment's first frame (a larger one is checked by a full scan).
        const head = Buffer.alloc(Math.min(size, 1024 * 1024));
        await fh.read(head, 0, head.length, 0);
        const format = segmentFormat(head);
        if (format !== 1 && format !== 2) return false;
        seg.setFormat(format);
      } finally {
        await fh.close();
      }
    } catch {
      return false;
    }
    // A damaged index, or one written before indexes had a CRC, is rebuilt by scanning the segment (its CRCs checked).
    const entriesBytes = buf.length - INDEX_CRC_BYTES;
    if (entriesBytes <= 0 || entriesBytes % INDEX_ENTRY_BYTES !== 0) return false;
    if (crc32(buf.subarray(0, entriesBytes)) !== buf.readUInt32LE(entriesBytes)) return false;
    const n = entriesBytes / INDEX_ENTRY_BYTES;
    const rels: number[] = [];
    const positions: number[] = [];
    const maxTs: number[] = [];
    for (let i = 0; i < n; i++) {
      const rel = buf.readUInt32LE(i * INDEX_ENTRY_BYTES);
      const pos = buf.readUInt32LE(i * INDEX_ENTRY_BYTES + 4);
      const ts = buf.readDoubleLE(i * INDEX_ENTRY_BYTES + 8);
      if (pos >= size || pos < seg.dataStart || seg.baseOffset + rel >= nextBase) return false;
      if (i > 0 && (rel <= rels[i - 1] || pos <= positions[i - 1])) return false;
      rels.push(rel);
      positions.push(pos);
      maxTs.push(ts);
    }
    seg.relOffsets = rels;
    seg.positions = positions;
    seg.maxTs = maxTs;
    seg.size = size;
    seg.nextOffset = nextBase;
    seg.maxTimestampMs = seg.maxTs[n - 1];
    seg.lastIndexedPosition = seg.positions[n - 1];
    seg.lastBatchPosition = seg.positions[n - 1];
    seg.lastBatchBase = seg.baseOffset + seg.relOffsets[n - 1];
    return true;
  }

  /**
   * Scans a segment, rebuilding its index. A torn tail of the last segment (see `isTornTail`: an incomplete last
   * batch, never acknowledged under fsync `always`) is cut with a warning. Anything else that fails its checks
   * (a CRC mismatch, an impossible length or offset, followed by more bytes or in a sealed segment) may be
   * acknowledged data followed by more: start-up stops with SEGMENT_CORRUPT and nothing is cut.
   */
  async #recover(seg: Segment, active: boolean): Promise<void> {
    const buf = await readFile(seg.path);
    const format = segmentFormat(buf);
    if (format === 'damaged') throw this.#corrupt(seg, 0, 'damaged file header');
    seg.setFormat(format ?? 2);
    let maxTs = -Infinity;
    let end = 0;
    let reason = 'torn file header';
    if (format !== undefined) {
      const scan = scanRecords(buf, seg.dataStart, format, seg.baseOffset, (f) => {
        if (f.timestampMs > maxTs) maxTs = f.timestampMs;
        if (f.firstInBatch) {
          if (f.batchPosition - seg.lastIndexedPosition >= this.#o.indexIntervalBytes) seg.addIndexEntry(f.offset, f.batchPosition, maxTs);
          seg.lastBatchPosition = f.batchPosition;
          seg.lastBatchBase = f.offset;
        }
      });
      end = scan.end;
      seg.nextOffset = scan.nextOffset ?? seg.nextOffset;
      reason = reasonOf(scan.stop);
      if ((scan.stop.kind === 'partial' || scan.stop.kind === 'corrupt') && !(active && isTornTail(buf, end, scan.stop, format, seg.nextOffset))) {
        throw this.#corrupt(seg, end, reason);
      }
    }
    if (end < buf.length) {
      this.#o.logger.warn(
        { partition: this.#o.partition, segment: seg.path, truncatedBytes: buf.length - end, keptRecords: seg.nextOffset - seg.baseOffset, reason },
        `log recovery: cut ${buf.length - end} bytes of torn tail (an incomplete last write) from partition ${this.#o.partition}`,
      );
    }
    const fh = await open(seg.path, 'r+');
    try {
      if (seg.nextOffset === seg.baseOffset && format !== 2) {
        // No record left (an empty file, a header torn as the file was created, or everything cut): start the
        // file afresh in the current format.
        const header = fileHeader();
        await fh.truncate(0);
        await fh.write(header, 0, header.length, 0);
        await fh.datasync();
        seg.setFormat(2);
        end = header.length;
      } else if (end < buf.length) {
        await fh.truncate(end);
        await fh.datasync();
      }
    } finally {
      await fh.close();
    }
    seg.size = end;
    seg.verifiedBytes = end;
    seg.maxTimestampMs = maxTs;
    if (!active) await this.#seal(seg);
  }

  #corrupt(seg: Segment, position: number, reason: string): HalflifeError {
    return new HalflifeError('SEGMENT_CORRUPT', { partition: this.#o.partition, segment: seg.path, position, reason });
  }

  async #seal(seg: Segment): Promise<void> {
    // A final entry for the last batch makes the index carry the segment's overall max timestamp.
    if (seg.lastBatchPosition >= 0) {
      if (seg.positions[seg.positions.length - 1] === seg.lastBatchPosition) seg.maxTs[seg.maxTs.length - 1] = seg.maxTimestampMs;
      else seg.addIndexEntry(seg.lastBatchBase, seg.lastBatchPosition, seg.maxTimestampMs);
    }
    if (seg.relOffsets.length === 0) return;
    await writeFile(seg.indexPath, seg.encodeIndex(), { flush: this.#o.syncMetadata });
  }

  async #syncDir(): Promise<void> {
    if (!this.#o.syncMetadata) return;
    const fh = await open(this.#o.dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Rolls to a new segment when `incomingBytes` would push the active one past the size limit. */
  async rollIfNeeded(incomingBytes: number): Promise<void> {
    const active = this.#active;
    if (active.size === active.dataStart || active.size + incomingBytes <= this.#o.segmentBytes) return;
    await this.#roll();
  }

  async #roll(): Promise<void> {
    const active = this.#active;
    await this.#writer!.datasync();
    await this.#writer!.close();
    await this.#seal(active);
    const seg = new Segment(this.#o.dir, active.nextOffset);
    this.#writer = await this.#create(seg);
    this.#segments.push(seg);
  }

  /**
   * Writes frames already encoded by the caller (offsets from `nextOffset` on) at the end of the active
   * segment. Nothing becomes visible until `publish`, so readers never see bytes that could still be lost.
   */
  async write(buf: Buffer, length: number): Promise<void> {
    const active = this.#active;
    try {
      let done = 0;
      while (done < length) {
        const { bytesWritten } = await this.#writer!.write(buf, done, length - done, active.size + done);
        done += bytesWritten;
      }
    } catch (err) {
      // Best effort: drop a partial write so the next one starts at a frame boundary.
      await this.#writer!.truncate(active.size).catch(() => {});
      throw err;
    }
    this.#dirty = true;
  }

  /**
   * Makes written batches visible and indexes them: `batchPositions` (within the written bytes) and `batchCounts`
   * per batch, `timestamps` per record in order.
   */
  publish(length: number, batchPositions: readonly number[], batchCounts: readonly number[], timestamps: readonly number[]): void {
    const active = this.#active;
    const base = active.size;
    let maxTs = active.maxTimestampMs;
    let r = 0;
    for (let b = 0; b < batchPositions.length; b++) {
      const pos = base + batchPositions[b];
      const first = active.nextOffset + r;
      if (timestamps[r] > maxTs) maxTs = timestamps[r];
      if (pos - active.lastIndexedPosition >= this.#o.indexIntervalBytes) active.addIndexEntry(first, pos, maxTs);
      for (let end = r + batchCounts[b], i = r + 1; i < end; i++) if (timestamps[i] > maxTs) maxTs = timestamps[i];
      active.lastBatchPosition = pos;
      active.lastBatchBase = first;
      r += batchCounts[b];
    }
    active.maxTimestampMs = maxTs;
    if (active.verifiedBytes === active.size) active.verifiedBytes += length;
    active.size += length;
    active.nextOffset += r;
  }

  async sync(): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    await this.#writer!.datasync();
  }

  async read(from: number, options: ReadOptions = {}): Promise<LogRecord[]> {
    const maxRecords = options.maxRecords ?? DEFAULT_MAX_RECORDS;
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_READ_BYTES;
    const out: LogRecord[] = [];
    let start = Math.max(from, this.#segments[0].baseOffset);
    let bytes = 0;
    let i = this.#segmentIndexFor(start);
    // Snapshot the segment list: retention may delete a segment while we read it (its handle stays valid).
    const segments = this.#segments.slice();
    while (i < segments.length && out.length < maxRecords && bytes < maxBytes) {
      const seg = segments[i];
      if (start < seg.nextOffset) {
        bytes += await this.#readSegment(seg, start, maxRecords, maxBytes - bytes, out);
      }
      start = seg.nextOffset;
      i++;
    }
    return out;
  }

  /** Records from `from` in columns, from one chunk of one segment (an empty batch at the end). */
  async readBatch(from: number, options: ReadOptions = {}): Promise<RecordBatch> {
    const maxRecords = options.maxRecords ?? DEFAULT_MAX_RECORDS;
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_READ_BYTES;
    const segments = this.#segments.slice();
    let start = Math.max(from, segments[0].baseOffset);
    let i = this.#segmentIndexFor(start);
    while (i < segments.length && start >= segments[i].nextOffset) i++;
    const empty: RecordBatch = {
      partition: this.partition,
      count: 0,
      buffer: Buffer.alloc(0),
      offsets: new Float64Array(0),
      timestamps: new Float64Array(0),
      valueStarts: new Uint32Array(0),
      valueEnds: new Uint32Array(0),
      keyStarts: new Int32Array(0),
      keyEnds: new Int32Array(0),
      next: start,
    };
    // A segment can end in a gap (offsets set aside by `halflife repair`): then the records go on in the next one.
    for (; i < segments.length; i++) {
      const batch = await this.#readBatchFrom(segments[i], start, maxRecords, maxBytes, empty);
      if (batch.count > 0) return batch;
      start = Math.max(start, segments[i].nextOffset);
    }
    return { ...empty, next: start };
  }

  #readBatchFrom(seg: Segment, start: number, maxRecords: number, maxBytes: number, empty: RecordBatch): Promise<RecordBatch> {
    return seg.withReader(async (fh) => {
      let pos = seg.positionFor(start);
      // Size the read for the records asked for (a few hundred bytes each), not for maxBytes: reading and
      // allocating megabytes to use a fraction of them was the largest cost of the engine's reads.
      const want = Math.min(maxBytes + this.#o.indexIntervalBytes, Math.max(64 * 1024, maxRecords * 384));
      // Columns sized for what is read, not for maxRecords: a batch crosses to the engine's thread by structured clone,
      // which copies each column's whole buffer, and a steady stream is read in small batches.
      let cap = Math.min(maxRecords, 256);
      let offsets = new Float64Array(cap);
      let timestamps = new Float64Array(cap);
      let valueStarts = new Uint32Array(cap);
      let valueEnds = new Uint32Array(cap);
      let keyStarts = new Int32Array(cap);
      let keyEnds = new Int32Array(cap);
      const grow = () => {
        cap = Math.min(maxRecords, cap * 2);
        const more = <T extends Float64Array | Uint32Array | Int32Array>(a: T, make: (n: number) => T): T => {
          const b = make(cap);
          b.set(a);
          return b;
        };
        offsets = more(offsets, (k) => new Float64Array(k));
        timestamps = more(timestamps, (k) => new Float64Array(k));
        valueStarts = more(valueStarts, (k) => new Uint32Array(k));
        valueEnds = more(valueEnds, (k) => new Uint32Array(k));
        keyStarts = more(keyStarts, (k) => new Int32Array(k));
        keyEnds = more(keyEnds, (k) => new Int32Array(k));
      };
      let n = 0;
      let bytes = 0;
      for (;;) {
        const chunk = await readChunk(this.partition, seg, fh, pos, want, (f) => {
          if (f.offset < start) return;
          if (n === cap) grow();
          offsets[n] = f.offset;
          timestamps[n] = f.timestampMs;
          valueStarts[n] = f.valueStart;
          valueEnds[n] = f.valueEnd;
          keyStarts[n] = f.keyStart;
          keyEnds[n] = f.keyEnd;
          n++;
          bytes += f.recordBytes;
          if (n >= maxRecords || bytes >= maxBytes) return false;
        });
        if (chunk === undefined) return empty;
        if (n > 0) {
          const exact = <T extends Float64Array | Uint32Array | Int32Array>(a: T): T => (n === cap ? a : (a.slice(0, n) as T));
          return {
            partition: this.partition,
            count: n,
            buffer: chunk.view,
            offsets: exact(offsets),
            timestamps: exact(timestamps),
            valueStarts: exact(valueStarts),
            valueEnds: exact(valueEnds),
            keyStarts: exact(keyStarts),
            keyEnds: exact(keyEnds),
            next: offsets[n - 1] + 1,
          };
        }
        // Every record of the chunk lay before `start`: go on after them.
        pos += chunk.end;
      }
    });
  }

  #segmentIndexFor(offset: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    let best = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.#segments[mid].baseOffset <= offset) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  }

  #readSegment(seg: Segment, from: number, maxRecords: number, maxBytes: number, out: LogRecord[]): Promise<number> {
    const chunkBytes = Math.min(maxBytes + this.#o.indexIntervalBytes, Math.max(64 * 1024, maxRecords * 384));
    return seg.withReader(async (fh) => {
      let pos = seg.positionFor(from);
      let bytes = 0;
      while (pos < seg.size && out.length < maxRecords && bytes < maxBytes) {
        const chunk = await readChunk(this.partition, seg, fh, pos, chunkBytes, (f, view) => {
          if (f.offset < from) return;
          const key = f.keyStart < 0 ? undefined : readUtf8(view, f.keyStart, f.keyEnd);
          out.push({ partition: this.partition, offset: toOffset(f.offset), next: toOffset(f.offset + 1), timestampMs: f.timestampMs, key, value: view.subarray(f.valueStart, f.valueEnd) });
          bytes += f.recordBytes;
          if (out.length >= maxRecords || bytes >= maxBytes) return false;
        });
        if (chunk === undefined || chunk.stop.kind === 'visitor') break;
        pos += chunk.end;
      }
      return bytes;
    });
  }

  async offsetForTime(t: number): Promise<Offset> {
    for (const seg of this.#segments.slice()) {
      if (seg.size === seg.dataStart || seg.maxTimestampMs < t) continue;
      const found = await seg.withReader((fh) => firstAtOrAfter(this.partition, seg, fh, seg.positionForTime(t), t));
      if (found !== undefined) return toOffset(found);
    }
    return this.nextOffset;
  }

  /**
   * Deletes whole sealed segments older than `maxAgeMs` (by their newest record) or beyond `maxBytes` in
   * total, oldest first. The active segment is never deleted. Returns how many segments went.
   */
  /**
   * Deletes the oldest segments while they are too old or the partition too big, but never one holding a record at or
   * after `keepFrom` (a position a consumer that must read everything has not passed). Returns the segments deleted
   * and whether `keepFrom` held one back.
   */
  async applyRetention(nowMs: number, maxAgeMs: number, maxBytes: number, keepFrom = Infinity): Promise<{ removed: number; held: boolean }> {
    let removed = 0;
    let total = this.bytes;
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0];
      const tooOld = maxAgeMs > 0 && oldest.maxTimestampMs < nowMs - maxAgeMs;
      const tooBig = maxBytes > 0 && total > maxBytes;
      if (!tooOld && !tooBig) break;
      if (this.#segments[1].baseOffset > keepFrom) return { removed, held: true };
      this.#segments.shift();
      total -= oldest.size;
      oldest.deleted = true;
      if (oldest.readers === 0) await oldest.closeHandle();
      await rm(oldest.path, { force: true });
      await rm(oldest.indexPath, { force: true });
      removed++;
    }
    return { removed, held: false };
  }

  async close(): Promise<void> {
    if (this.#dirty) await this.sync();
    await this.#writer?.close();
    this.#writer = undefined;
    for (const s of this.#segments) await s.closeHandle();
  }
}

/**
 * Reads about `want` bytes of `seg` from `pos` (a batch boundary) and scans their records with `visit`; a batch
 * larger than `want` is read whole. Undefined at the segment's visible end. The visitor sees each record with the
 * chunk it lies in.
 */
async function readChunk(
  partition: number,
  seg: Segment,
  fh: FileHandle,
  pos: number,
  want: number,
  visit: (record: DecodedRecord, view: Buffer) => boolean | void,
): Promise<{ view: Buffer; end: number; stop: ScanResult['stop'] } | undefined> {
  for (;;) {
    const len = Math.min(seg.size - pos, want);
    if (len <= 0) return undefined;
    const buf = Buffer.allocUnsafe(len);
    const { bytesRead } = await fh.read(buf, 0, len, pos);
    const view = bytesRead === len ? buf : buf.subarray(0, bytesRead);
    const { end, stop, visited } = scanRecords(view, 0, seg.format, undefined, (r) => visit(r, view), pos + view.length > seg.verifiedBytes);
    if (stop.kind === 'corrupt') throw new HalflifeError('SEGMENT_CORRUPT', { partition, segment: seg.name, position: pos + end, reason: stop.reason });
    if (end === 0 && visited === 0) {
      if (stop.kind === 'partial' && stop.needBytes !== undefined && stop.needBytes > want) {
        want = stop.needBytes; // one batch larger than the chunk
        continue;
      }
      throw new HalflifeError('SEGMENT_CORRUPT', { partition, segment: seg.name, position: pos, reason: stop.kind === 'partial' ? stop.reason : 'short read' });
    }
    return { view, end, stop };
  }
}

/** First offset from `pos` on in a segment whose record has timestamp >= t. */
async function firstAtOrAfter(partition: number, seg: Segment, fh: FileHandle, pos: number, t: number): Promise<number | undefined> {
  let found: number | undefined;
  while (found === undefined) {
    const chunk = await readChunk(partition, seg, fh, pos, 1024 * 1024, (f) => {
      if (f.timestampMs < t) return;
      found = f.offset;
      return false;
    });
    if (chunk === undefined) return undefined;
    pos += chunk.end;
  }
  return found;
}

function reasonOf(stop: ScanStop): string {
  return stop.kind === 'end' || stop.kind === 'visitor' ? stop.kind : stop.reason;
}

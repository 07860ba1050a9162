import './errors.js';
import { open, readdir, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { HalflifeError, offset as toOffset, partitionId, type Logger, type Offset, type PartitionId } from '../core/index.js';
import type { LogRecord, ReadOptions, RecordBatch } from './log.js';
import { FRAME_HEADER_BYTES, readKey, scanFrames, type ScanStop } from './segment-format.js';

const SEGMENT_RE = /^(\d{20})\.seg$/;
const INDEX_ENTRY_BYTES = 16;
const DEFAULT_MAX_RECORDS = 1000;
const DEFAULT_MAX_READ_BYTES = 1024 * 1024;

/**
 * One segment file plus its sparse index. Each index entry maps a record (relative offset) to its byte
 * position and carries the largest timestamp seen in the segment up to and including that record, which
 * makes "first offset at or after time T" a binary search even when timestamps are not monotonic.
 */
class Segment {
  readonly baseOffset: number;
  readonly path: string;
  readonly indexPath: string;
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
  lastRecordPosition = -1;
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
    let best = 0;
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
    if (first === 0) return 0;
    // Records up to entry first-1 all have timestamps < t; the next candidate follows that record.
    return this.positions[first - 1];
  }

  encodeIndex(): Buffer {
    const n = this.relOffsets.length;
    const buf = Buffer.allocUnsafe(n * INDEX_ENTRY_BYTES);
    for (let i = 0; i < n; i++) {
      buf.writeUInt32LE(this.relOffsets[i], i * INDEX_ENTRY_BYTES);
      buf.writeUInt32LE(this.positions[i], i * INDEX_ENTRY_BYTES + 4);
      buf.writeDoubleLE(this.maxTs[i], i * INDEX_ENTRY_BYTES + 8);
    }
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
      this.#writer = await open(seg.path, 'w+');
      await this.#syncDir();
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
  }

  /** Loads a sealed segment's index file; false when it is missing or does not fit the segment. */
  async #loadIndex(seg: Segment, nextBase: number): Promise<boolean> {
    let buf: Buffer;
    let size: number;
    try {
      buf = await readFile(seg.indexPath);
      const fh = await open(seg.path, 'r');
      size = (await fh.stat()).size;
      await fh.close();
    } catch {
      return false;
    }
    if (buf.length === 0 || buf.length % INDEX_ENTRY_BYTES !== 0) return false;
    const n = buf.length / INDEX_ENTRY_BYTES;
    for (let i = 0; i < n; i++) {
      const rel = buf.readUInt32LE(i * INDEX_ENTRY_BYTES);
      const pos = buf.readUInt32LE(i * INDEX_ENTRY_BYTES + 4);
      const ts = buf.readDoubleLE(i * INDEX_ENTRY_BYTES + 8);
      if (pos >= size || seg.baseOffset + rel >= nextBase) return false;
      seg.relOffsets.push(rel);
      seg.positions.push(pos);
      seg.maxTs.push(ts);
    }
    seg.size = size;
    seg.nextOffset = nextBase;
    seg.maxTimestampMs = seg.maxTs[n - 1];
    seg.lastIndexedPosition = seg.positions[n - 1];
    return true;
  }

  /** Scans a segment, rebuilding its index; cuts a torn or corrupt tail at the last good record. */
  async #recover(seg: Segment, active: boolean): Promise<void> {
    const buf = await readFile(seg.path);
    let maxTs = -Infinity;
    const { end, stop } = scanFrames(buf, 0, seg.baseOffset, (f) => {
      if (f.timestampMs > maxTs) maxTs = f.timestampMs;
      if (f.position - seg.lastIndexedPosition >= this.#o.indexIntervalBytes) {
        seg.addIndexEntry(f.offset, f.position, maxTs);
      }
      seg.lastRecordPosition = f.position;
      seg.nextOffset = f.offset + 1;
    });
    if (end < buf.length) {
      this.#o.logger.warn(
        {
          partition: this.#o.partition,
          segment: seg.path,
          truncatedBytes: buf.length - end,
          keptRecords: seg.nextOffset - seg.baseOffset,
          reason: reasonOf(stop),
        },
        `log recovery: cut ${buf.length - end} bytes of torn or corrupt tail from partition ${this.#o.partition}`,
      );
      const fh = await open(seg.path, 'r+');
      await fh.truncate(end);
      await fh.datasync();
      await fh.close();
    }
    seg.size = end;
    seg.verifiedBytes = end;
    seg.maxTimestampMs = maxTs;
    if (!active) await this.#seal(seg);
  }

  async #seal(seg: Segment): Promise<void> {
    // A final entry for the last record makes the index carry the segment's overall max timestamp.
    if (seg.lastRecordPosition >= 0 && seg.positions[seg.positions.length - 1] !== seg.lastRecordPosition) {
      seg.addIndexEntry(seg.nextOffset - 1, seg.lastRecordPosition, seg.maxTimestampMs);
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
    if (active.size === 0 || active.size + incomingBytes <= this.#o.segmentBytes) return;
    await this.#writer!.datasync();
    await this.#writer!.close();
    await this.#seal(active);
    const seg = new Segment(this.#o.dir, active.nextOffset);
    this.#writer = await open(seg.path, 'w+');
    this.#segments.push(seg);
    await this.#syncDir();
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

  /** Makes written frames visible and indexes them. `frames` are (position-in-buf, timestamp) per record. */
  publish(length: number, count: number, framePositions: Int32Array | number[], timestamps: number[]): void {
    const active = this.#active;
    const base = active.size;
    let maxTs = active.maxTimestampMs;
    for (let i = 0; i < count; i++) {
      const pos = base + framePositions[i];
      if (timestamps[i] > maxTs) maxTs = timestamps[i];
      if (pos - active.lastIndexedPosition >= this.#o.indexIntervalBytes) {
        active.addIndexEntry(active.nextOffset + i, pos, maxTs);
      }
    }
    if (count > 0) active.lastRecordPosition = base + framePositions[count - 1];
    active.maxTimestampMs = maxTs;
    if (active.verifiedBytes === active.size) active.verifiedBytes += length;
    active.size += length;
    active.nextOffset += count;
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
    };
    if (i >= segments.length) return empty;
    const seg = segments[i];
    return seg.withReader(async (fh) => {
      const pos = seg.positionFor(start);
      // Size the read for the records asked for (a few hundred bytes each), not for maxBytes: reading and
      // allocating megabytes to use a fraction of them was the largest cost of the engine's reads.
      let want = Math.min(maxBytes + this.#o.indexIntervalBytes, Math.max(64 * 1024, maxRecords * 384));
      for (;;) {
        const len = Math.min(seg.size - pos, want);
        if (len <= 0) return empty;
        const buf = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(buf, 0, len, pos);
        const view = bytesRead === len ? buf : buf.subarray(0, bytesRead);
        const offsets = new Float64Array(maxRecords);
        const timestamps = new Float64Array(maxRecords);
        const valueStarts = new Uint32Array(maxRecords);
        const valueEnds = new Uint32Array(maxRecords);
        const keyStarts = new Int32Array(maxRecords);
        const keyEnds = new Int32Array(maxRecords);
        let n = 0;
        let bytes = 0;
        const { end, stop } = scanFrames(
          view,
          0,
          undefined,
          (f) => {
            if (f.offset < start) return;
            offsets[n] = f.offset;
            timestamps[n] = f.timestampMs;
            valueStarts[n] = f.valueStart;
            valueEnds[n] = f.valueEnd;
            keyStarts[n] = f.keyStart;
            keyEnds[n] = f.keyEnd;
            n++;
            bytes += f.frameBytes;
            if (n >= maxRecords || bytes >= maxBytes) return false;
          },
          pos + view.length > seg.verifiedBytes,
        );
        if (end === 0 && n === 0) {
          const need = view.length >= FRAME_HEADER_BYTES ? view.readUInt32LE(0) + FRAME_HEADER_BYTES : 0;
          if (stop.kind === 'partial' && need > want) {
            want = need;
            continue;
          }
          throw new HalflifeError('SEGMENT_CORRUPT', { segment: seg.name, position: pos, reason: stop.kind === 'end' ? 'short read' : stop.reason });
        }
        if (stop.kind === 'corrupt') throw new HalflifeError('SEGMENT_CORRUPT', { segment: seg.name, position: pos + end, reason: stop.reason });
        return {
          partition: this.partition,
          count: n,
          buffer: view,
          offsets: offsets.subarray(0, n),
          timestamps: timestamps.subarray(0, n),
          valueStarts: valueStarts.subarray(0, n),
          valueEnds: valueEnds.subarray(0, n),
          keyStarts: keyStarts.subarray(0, n),
          keyEnds: keyEnds.subarray(0, n),
        };
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
    const chunk = Math.min(maxBytes + this.#o.indexIntervalBytes, Math.max(64 * 1024, maxRecords * 384));
    return seg.withReader(async (fh) => {
      let pos = seg.positionFor(from);
      let want = chunk;
      let bytes = 0;
      while (pos < seg.size && out.length < maxRecords && bytes < maxBytes) {
        const len = Math.min(seg.size - pos, want);
        const buf = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(buf, 0, len, pos);
        const view = bytesRead === len ? buf : buf.subarray(0, bytesRead);
        const verify = pos + view.length > seg.verifiedBytes;
        const { end, stop } = scanFrames(
          view,
          0,
          undefined,
          (f) => {
            if (f.offset < from) return;
            const key = f.keyStart < 0 ? undefined : readKey(view, f.keyStart, f.keyEnd);
            out.push({ partition: this.partition, offset: toOffset(f.offset), timestampMs: f.timestampMs, key, value: view.subarray(f.valueStart, f.valueEnd) });
            bytes += f.frameBytes;
            if (out.length >= maxRecords || bytes >= maxBytes) return false;
          },
          verify,
        );
        if (end === 0) {
          const need = view.length >= FRAME_HEADER_BYTES ? view.readUInt32LE(0) + FRAME_HEADER_BYTES : 0;
          if (stop.kind === 'partial' && need > want) {
            want = need; // one frame larger than the chunk
            continue;
          }
          throw new HalflifeError('SEGMENT_CORRUPT', { segment: seg.name, position: pos, reason: stop.kind === 'end' ? 'short read' : stop.reason });
        }
        if (stop.kind === 'corrupt') {
          throw new HalflifeError('SEGMENT_CORRUPT', { segment: seg.name, position: pos + end, reason: stop.reason });
        }
        pos += end;
      }
      return bytes;
    });
  }

  async offsetForTime(t: number): Promise<Offset> {
    for (const seg of this.#segments.slice()) {
      if (seg.size === 0 || seg.maxTimestampMs < t) continue;
      const found = await seg.withReader((fh) => firstAtOrAfter(fh, seg.positionForTime(t), seg.size, t));
      if (found !== undefined) return toOffset(found);
    }
    return this.nextOffset;
  }

  /**
   * Deletes whole sealed segments older than `maxAgeMs` (by their newest record) or beyond `maxBytes` in
   * total, oldest first. The active segment is never deleted. Returns how many segments went.
   */
  async applyRetention(nowMs: number, maxAgeMs: number, maxBytes: number): Promise<number> {
    let removed = 0;
    let total = this.bytes;
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0];
      const tooOld = maxAgeMs > 0 && oldest.maxTimestampMs < nowMs - maxAgeMs;
      const tooBig = maxBytes > 0 && total > maxBytes;
      if (!tooOld && !tooBig) break;
      this.#segments.shift();
      total -= oldest.size;
      oldest.deleted = true;
      if (oldest.readers === 0) await oldest.closeHandle();
      await rm(oldest.path, { force: true });
      await rm(oldest.indexPath, { force: true });
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {
    if (this.#dirty) await this.sync();
    await this.#writer?.close();
    this.#writer = undefined;
    for (const s of this.#segments) await s.closeHandle();
  }
}

/** First offset in [pos, limit) of a segment whose record has timestamp >= t. */
async function firstAtOrAfter(fh: FileHandle, pos: number, limit: number, t: number): Promise<number | undefined> {
  while (pos < limit) {
    const want = Math.min(limit - pos, 1024 * 1024);
    const buf = Buffer.allocUnsafe(want);
    const { bytesRead } = await fh.read(buf, 0, want, pos);
    let found: number | undefined;
    const { end } = scanFrames(buf.subarray(0, bytesRead), 0, undefined, (f) => {
      if (f.timestampMs < t) return;
      found = f.offset;
      return false;
    });
    if (found !== undefined) return found;
    if (end === 0) return undefined;
    pos += end;
  }
  return undefined;
}

function reasonOf(stop: ScanStop): string {
  return stop.kind === 'end' ? 'end' : stop.reason;
}

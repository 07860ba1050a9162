import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { syncDir, writeFileAtomic } from '../core/index.js';
import { join } from 'node:path';
import { BATCH_HEADER_BYTES, fileHeader, findNextBatch, gapMarker, isTornTail, RECORD_HEADER_BYTES, scanRecords, segmentFormat } from './segment-format.js';

const PARTITION_RE = /^p-(\d{4})$/;
const SEGMENT_RE = /^(\d{20})\.seg$/;

/** One range of a segment that `repairLog` sets aside (or would, in a dry run). */
export interface RepairAction {
  /**
   * - `set-aside`: damaged bytes moved to the quarantine file; offsets `lost` are a gap from now on.
   * - `header`: a damaged 8-byte file header moved aside and rewritten; no record is lost.
   * - `unsupported`: damage in a format-1 segment, which repair does not rewrite; nothing was changed.
   */
  readonly kind: 'set-aside' | 'header' | 'unsupported';
  readonly partition: number;
  readonly segment: string;
  /** Byte position of the damaged range in the segment as it was. */
  readonly position: number;
  readonly bytes: number;
  readonly reason: string;
  /** Offsets [from, to) whose records were in the damaged range (empty for `header`). */
  readonly lost: { readonly from: number; readonly to: number };
  /** Where the bytes go: a `.bin` file with a `.json` report next to it. */
  readonly quarantineFile: string;
}

export interface RepairOptions {
  /** The log's folder: the one holding `meta.json` and the `p-NNNN` partition folders. */
  readonly dir: string;
  /** Folder for the damaged bytes and their reports (created when needed). */
  readonly quarantineDir: string;
  /** Prefix of the quarantine file names, naming the log (e.g. `log-events`). */
  readonly label: string;
  /** Find and report, change nothing. */
  readonly dryRun: boolean;
}

/**
 * Sets aside the damaged bytes of a stopped segment log so it opens again, without ever reusing an offset.
 *
 * Every segment is scanned whole (start-up only scans the active one). A damaged range runs from a batch that fails
 * its checks to the next whole, valid batch (found by resynchronising byte by byte), or to the end of the segment.
 * Its bytes are copied to `<quarantineDir>/<label>-partition-N-<segment>-<position>.bin` with a `.json` report, and
 * replaced in the segment by a gap marker whose base is the offset the records after the range carry: they keep
 * their offsets, a reader skips the gap, and the next append continues after the highest offset ever written. When
 * nothing valid follows in the partition, the gap covers as many records as the damaged bytes could hold and every
 * consumer's committed position, so no offset a consumer has seen is written again. A torn tail (an incomplete
 * last batch) is left for start-up to cut. The segment is replaced atomically and its index removed (start-up
 * rebuilds it by scanning); running repair again finds nothing more to do.
 */
export async function repairLog(options: RepairOptions): Promise<RepairAction[]> {
  const actions: RepairAction[] = [];
  const partitions = (await readdir(options.dir)).filter((n) => PARTITION_RE.test(n)).sort();
  const committed = await committedMax(join(options.dir, 'consumers'));
  for (const name of partitions) {
    const partition = Number(PARTITION_RE.exec(name)![1]);
    const pdir = join(options.dir, name);
    const segments = (await readdir(pdir)).filter((n) => SEGMENT_RE.test(n)).sort();
    for (let i = 0; i < segments.length; i++) {
      const last = i === segments.length - 1;
      const nextBase = last ? undefined : Number(SEGMENT_RE.exec(segments[i + 1])![1]);
      const found = await repairSegment(options, partition, join(pdir, segments[i]), Number(SEGMENT_RE.exec(segments[i])![1]), nextBase, committed.get(partition) ?? 0);
      actions.push(...found);
    }
  }
  return actions;
}

async function repairSegment(
  o: RepairOptions,
  partition: number,
  path: string,
  baseOffset: number,
  nextSegmentBase: number | undefined,
  committedMax: number,
): Promise<RepairAction[]> {
  const buf = await readFile(path);
  const format = segmentFormat(buf);
  if (format === undefined) return []; // no record in it; start-up starts it afresh
  const actions: RepairAction[] = [];
  const segName = String(baseOffset).padStart(20, '0');
  const action = (kind: RepairAction['kind'], position: number, bytes: number, reason: string, from: number, to: number): RepairAction => {
    const a: RepairAction = {
      kind,
      partition,
      segment: path,
      position,
      bytes,
      reason,
      lost: { from, to },
      quarantineFile: join(o.quarantineDir, `${o.label}-partition-${partition}-${segName}-${position}.bin`),
    };
    actions.push(a);
    return a;
  };
  if (format === 1) {
    const scan = scanRecords(buf, 0, 1, baseOffset, () => {});
    if (scan.stop.kind === 'corrupt' || scan.stop.kind === 'partial') {
      if (!(nextSegmentBase === undefined && isTornTail(buf, scan.end, scan.stop, 1, scan.nextOffset ?? baseOffset))) {
        action('unsupported', scan.end, buf.length - scan.end, `${scan.stop.reason} in a format-1 segment`, scan.nextOffset ?? baseOffset, scan.nextOffset ?? baseOffset);
      }
    }
    return actions;
  }
  // The new segment: kept byte ranges of the old one, gap markers where damaged ranges were.
  const parts: Buffer[] = [fileHeader()];
  const setAside: { action: RepairAction; bytes: Buffer }[] = [];
  if (format === 'damaged') {
    const a = action('header', 0, 8, 'damaged file header', baseOffset, baseOffset);
    setAside.push({ action: a, bytes: buf.subarray(0, 8) });
  }
  let pos = 8;
  let expect = baseOffset;
  while (pos < buf.length) {
    const scan = scanRecords(buf, pos, 2, expect, () => {});
    parts.push(buf.subarray(pos, scan.end));
    pos = scan.end;
    expect = scan.nextOffset ?? expect;
    if (scan.stop.kind !== 'partial' && scan.stop.kind !== 'corrupt') break;
    if (nextSegmentBase === undefined && isTornTail(buf, pos, scan.stop, 2, expect)) {
      parts.push(buf.subarray(pos)); // never acknowledged: start-up cuts it, with its warning
      break;
    }
    const next = findNextBatch(buf, pos + 1, expect);
    const end = next?.position ?? buf.length;
    // Nothing valid after the range in this segment: the next segment's base, or (last segment) the most records
    // the range could hold, and never below a position a consumer committed.
    const most = Math.max(0, Math.floor((end - pos - BATCH_HEADER_BYTES) / RECORD_HEADER_BYTES));
    const resume = next?.base ?? nextSegmentBase ?? Math.max(expect + most, committedMax);
    const a = action('set-aside', pos, end - pos, scan.stop.reason, expect, Math.max(expect, resume));
    setAside.push({ action: a, bytes: buf.subarray(pos, end) });
    if (resume > expect) parts.push(gapMarker(resume));
    expect = Math.max(expect, resume);
    pos = end;
  }
  if (setAside.length === 0 || o.dryRun) return actions;
  await mkdir(o.quarantineDir, { recursive: true });
  for (const { action: a, bytes } of setAside) {
    await writeDurably(a.quarantineFile, bytes);
    await writeDurably(a.quarantineFile.replace(/\.bin$/, '.json'), Buffer.from(JSON.stringify({ ...a, repairedAtMs: Date.now() }, null, 2) + '\n'));
  }
  await syncDir(o.quarantineDir);
  await writeFileAtomic(path, Buffer.concat(parts), { tmpSuffix: '.repair' });
  await rm(path.replace(/\.seg$/, '.idx'), { force: true });
  await syncDir(join(path, '..'));
  return actions;
}

/** The highest committed position per partition over every consumer of the log. */
async function committedMax(dir: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  } catch {
    return out;
  }
  for (const n of names) {
    try {
      const offsets = JSON.parse(await readFile(join(dir, n), 'utf8')) as Record<string, unknown>;
      for (const [p, o] of Object.entries(offsets)) {
        if (typeof o === 'number' && Number.isSafeInteger(o)) out.set(Number(p), Math.max(out.get(Number(p)) ?? 0, o));
      }
    } catch {
      // An unreadable consumer file is not the log's damage; the consumer reports it when it starts.
    }
  }
  return out;
}

async function writeDurably(path: string, bytes: Buffer): Promise<void> {
  await writeFile(path, bytes, { flush: true });
}



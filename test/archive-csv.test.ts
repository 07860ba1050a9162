import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { decodeEventRecord, encodeEventRecord, MsgpackWriter } from '../src/core/index.js';
import { CsvSpool, EXTRA, csvRecordBound, csvRow, dataColumns, writeCsvRecord, type ArchiveColumn } from '../src/sinks/index.js';
import { tempDir } from './helpers/tmp.js';

/**
 * The archive's CSV straight from a record's bytes (`writeCsvRecord`) against its oracle: `csvRow` of the record as
 * decoding reads it (which the archive tests check against the events sent, through DuckDB). Byte for byte, for
 * records the writer makes and for MessagePack it does not (float32, 64-bit integers, bin), and with the fast path
 * taken whenever the record's values all fit their columns (so the comparison is not won by always declining).
 */

const NAMES = ['s', 'i', 'n', 'b', 'j', 'ü', 'constructor', 'offset', 'x'];
const KINDS = [{ type: 'string' }, { type: 'integer' }, { type: 'number' }, { type: 'boolean' }, { type: 'object' }, { enum: ['a', 'b'] }, {}];

const schema = fc.dictionary(fc.constantFrom(...NAMES.slice(0, -1)), fc.constantFrom(...KINDS), { maxKeys: 8 }).map((properties) => ({ type: 'object', properties }));

const text = fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('', '"', '""x"', ',', '\n', '\r\n', 'é"', '\u0000', 'NULL'));
const scalar = fc.oneof(
  text,
  fc.integer(),
  fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }),
  fc.constantFrom(0, -1, -32, -33, 127, 128, 255, 256, 65_535, 65_536, 2 ** 31, 2 ** 32, -(2 ** 31) - 1, 2 ** 53, -(2 ** 60), 2 ** 70),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(-0, 0.5, 1e21, 5e-324),
  fc.boolean(),
  fc.constant(null),
);
const value = fc.oneof({ weight: 6, arbitrary: scalar }, { weight: 1, arbitrary: fc.array(scalar, { maxLength: 3 }) }, { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 3 }), scalar, { maxKeys: 2 }) });

const record = fc.record({
  data: fc.dictionary(fc.constantFrom(...NAMES), value, { maxKeys: 6 }),
  id: fc.option(text, { nil: undefined }),
  key: fc.option(text, { nil: undefined }),
  eventTime: fc.option(fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.double({ min: 0, max: 2 ** 45, noNaN: true })), { nil: undefined }),
  receivedAt: fc.integer({ min: 0, max: 2 ** 45 }),
  schemaVersion: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  partition: fc.nat(63),
  offset: fc.nat(),
});

function columnsOf(s: unknown): ArchiveColumn[] {
  return [...dataColumns(s), EXTRA];
}

/** The line writeCsvRecord makes of `bytes`, or undefined when it declines; written at an offset into a dirty buffer. */
function fast(columns: readonly ArchiveColumn[], bytes: Buffer, partition: number, offset: number, key: string | undefined): Buffer | undefined {
  const pad = 7;
  const dst = Buffer.alloc(pad + csvRecordBound(bytes.length, columns.length, key), 0x41);
  // The record in the middle of a larger buffer, as the log's batches hold them.
  const host = Buffer.concat([Buffer.from([1, 2, 3]), bytes, Buffer.from([0xc1])]);
  const at = writeCsvRecord(dst, pad, columns, host, 3, 3 + bytes.length, partition, offset, key);
  return at < 0 ? undefined : dst.subarray(pad, at);
}

/** Whether every property of `data` has a column its value fits without JSON (then the fast path must take it). */
function takesFast(columns: readonly ArchiveColumn[], data: Record<string, unknown>): boolean {
  return Object.entries(data).every(([k, v]) => {
    const c = columns.find((x) => x.property === k);
    if (c === undefined) return false;
    if (v === null) return true;
    if (c.kind === 'VARCHAR') return typeof v === 'string';
    if (c.kind === 'BIGINT') return Number.isSafeInteger(v);
    if (c.kind === 'DOUBLE') return typeof v === 'number';
    if (c.kind === 'BOOLEAN') return typeof v === 'boolean';
    return false;
  });
}

test('property: a record written to CSV from its bytes is the line csvRow makes of it decoded, byte for byte; taken whenever its values fit their columns', () => {
  let taken = 0;
  fc.assert(
    fc.property(schema, record, (s, r) => {
      const columns = columnsOf(s);
      const bytes = encodeEventRecord({ receivedAt: r.receivedAt, schemaVersion: r.schemaVersion, type: 't', id: r.id, eventTimeMs: r.eventTime, data: r.data });
      const want = Buffer.from(csvRow(columns, decodeEventRecord(bytes, r.key), r.partition, r.offset, r.key), 'utf8');
      const got = fast(columns, bytes, r.partition, r.offset, r.key);
      if (got !== undefined) {
        taken++;
        assert.equal(got.toString('utf8'), want.toString('utf8'));
        assert.ok(got.equals(want));
      } else assert.ok(!takesFast(columns, decodeEventRecord(bytes).data), 'declined a record whose values all fit');
    }),
    { numRuns: 3000 },
  );
  assert.ok(taken > 300, `the fast path was taken ${taken} times`);
});

/** A raw MessagePack value the writer never makes. */
const raw = fc.oneof(
  fc.float({ noNaN: true, noDefaultInfinity: true }).map((f) => {
    const b = Buffer.alloc(5);
    b[0] = 0xca;
    b.writeFloatBE(f, 1);
    return b;
  }),
  fc.bigUint64Array({ minLength: 1, maxLength: 1 }).map(([v]) => {
    const b = Buffer.alloc(9);
    b[0] = 0xcf;
    b.writeBigUInt64BE(v, 1);
    return b;
  }),
  fc.bigInt64Array({ minLength: 1, maxLength: 1 }).map(([v]) => {
    const b = Buffer.alloc(9);
    b[0] = 0xd3;
    b.writeBigInt64BE(v, 1);
    return b;
  }),
  fc.integer({ min: -128, max: 127 }).map((v) => Buffer.from([0xd0, v & 0xff])),
  fc.constantFrom(Buffer.from([0xc4, 1, 7]), Buffer.from([0xd9, 2, 0x22, 0x41]), Buffer.from([0xa2, 0xc3, 0xa9]), Buffer.from([0xa2, 0xff, 0x41])),
);

test('property: MessagePack the writer does not make (float32, 64-bit integers, int8, bin, invalid UTF-8): the same line as decoding, or the same error', () => {
  fc.assert(
    fc.property(schema, fc.array(fc.tuple(fc.constantFrom(...NAMES), raw), { maxLength: 4 }), fc.nat(1000), (s, entries, receivedAt) => {
      const columns = columnsOf(s);
      const head = encodeEventRecord({ receivedAt, schemaVersion: 1, type: 't', data: {} });
      assert.equal(head.at(-1), 0x80);
      const w = new MsgpackWriter(64);
      for (const [k] of entries) w.value(k);
      const keys = Buffer.from(w.buffer.subarray(0, w.pos));
      const parts: Buffer[] = [head.subarray(0, -1), Buffer.from([0x80 | entries.length])];
      let at = 0;
      for (const [k, v] of entries) {
        const kb = Buffer.from(k, 'utf8');
        const len = kb.length + 1;
        parts.push(keys.subarray(at, at + len), v);
        at += len;
      }
      const bytes = Buffer.concat(parts);
      let want: Buffer | Error;
      try {
        want = Buffer.from(csvRow(columns, decodeEventRecord(bytes, 'k'), 1, 2, 'k'), 'utf8');
      } catch (err) {
        want = err as Error;
      }
      let got: Buffer | undefined | Error;
      try {
        got = fast(columns, bytes, 1, 2, 'k');
      } catch (err) {
        got = err as Error;
      }
      if (want instanceof Error) assert.ok(got === undefined || got instanceof Error, `decoding fails (${want.message}) but the fast path wrote a line`);
      else if (got !== undefined) assert.equal(got instanceof Error ? got.message : got.toString('utf8'), want.toString('utf8'));
    }),
    { numRuns: 2000 },
  );
});

test('CsvSpool: lines from records (fast or not) and from strings land in the file in order, across its 1 MiB buffers; the longest line is counted', async () => {
  const t = await tempDir('halflife-csv-spool-');
  try {
    const columns = columnsOf({ properties: { s: { type: 'string' }, i: { type: 'integer' } } });
    const spool = await CsvSpool.create(join(t.dir, 'a.csv'));
    const want: string[] = [];
    for (let n = 0; n < 30_000; n++) {
      // Every third has an undeclared property (the decoded path), one a long string past a buffer's size.
      const data: Record<string, unknown> = n % 3 === 0 ? { s: `v${n}`, i: n, other: [n] } : { s: n === 7 ? 'é'.repeat(600_000) : `"${n}"`, i: n };
      const bytes = encodeEventRecord({ receivedAt: 1000 + n, schemaVersion: 1, type: 't', data });
      want.push(csvRow(columns, decodeEventRecord(bytes, `k${n}`), 0, n, `k${n}`));
      spool.addRecord(columns, bytes, 0, bytes.length, 0, n, `k${n}`);
      if (n % 1000 === 0) await spool.drain();
    }
    await spool.finish();
    assert.equal(spool.rows, 30_000);
    assert.equal(await readFile(spool.path, 'utf8'), want.join(''));
    assert.equal(spool.maxLineBytes, Math.max(...want.map((l) => Buffer.byteLength(l))));
  } finally {
    await t.cleanup();
  }
});

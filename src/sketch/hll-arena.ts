import { NumberColumn } from '../core/index.js';
import { HLL_MAX_PRECISION, HLL_MIN_PRECISION, HyperLogLog, sparseEntry, hllStateAdd, type HllState } from './hll.js';

/** Rows with up to this many sparse entries live in the arena; larger sketches are objects of their own. */
const SMALL_MAX = 32;
/** Entries in a new arena's first chunk, which doubles up to a full chunk before more chunks are added. */
const FIRST_CHUNK = 64;
/** `len` of a row whose sketch lives in `big`. */
const BIG = 255;

/**
 * Many HyperLogLog sketches of one precision, one per row, for view state that holds a sketch per key and
 * window. A small sketch (up to 32 sparse entries, which is what most keys ever have) is a run of sorted 4-byte
 * entries in shared Uint32Array chunks, addressed by an offset and a length per row: 5 bytes of bookkeeping
 * per row instead of a JS string or array (24 bytes of header and slot). A sketch that outgrows that moves to
 * a sparse list or dense registers of its own.
 *
 * A row that gains an entry grows in place when its run is the last one written, else moves to the end; the
 * hole it leaves is reclaimed by compacting (copying live runs in row order) once holes outweigh a quarter of
 * the live entries, which bounds the waste. The first chunk starts at 64 entries and doubles, so an arena of a
 * few rows stays a few hundred bytes.
 */
export class HllArena {
  readonly precision: number;
  readonly #smallMax: number;
  /**
   * Entries per full chunk (a power of two): a row's run never crosses a chunk, and only the first chunk is ever
   * copied to grow.
   */
  readonly #chunk: number;
  readonly #chunkBits: number;
  readonly #off = new NumberColumn((n) => new Uint32Array(n));
  readonly #len = new NumberColumn((n) => new Uint8Array(n));
  /** Rows made addressable so far. */
  #rows = 0;
  #chunks: Uint32Array[] = [];
  /** Next free position in the last chunk. */
  #top = 0;
  #live = 0;
  /** Entries in runs rows have left. */
  #holes = 0;
  /** Entries at the ends of chunks too short for the run allocated next (at most 31 per chunk). */
  #tails = 0;
  #compactions = 0;
  readonly #big = new Map<number, HllState>();

  /** `chunkBits`: log2 of the entries per chunk (64 KiB chunks by default; tests use tiny ones). */
  constructor(precision: number, chunkBits = 14) {
    if (!Number.isInteger(precision) || precision < HLL_MIN_PRECISION || precision > HLL_MAX_PRECISION) {
      throw new RangeError(`HyperLogLog precision must be an integer from ${HLL_MIN_PRECISION} to ${HLL_MAX_PRECISION}`);
    }
    this.precision = precision;
    this.#smallMax = Math.min(SMALL_MAX, (1 << precision) / 8);
    this.#chunkBits = Math.max(chunkBits, 5); // a chunk holds the largest run
    this.#chunk = 1 << this.#chunkBits;
  }

  /** Makes rows below `rows` addressable. */
  grow(rows: number): void {
    if (rows <= this.#rows) return;
    this.#off.ensure(rows);
    this.#len.ensure(rows);
    this.#rows = rows;
  }

  /** Adds a 64-bit hash (high and low halves) to the row's sketch. */
  add(row: number, hi: number, lo: number): void {
    const n = this.#len.get(row);
    if (n === BIG) {
      this.#big.set(row, hllStateAdd(this.#big.get(row), this.precision, hi, lo));
      return;
    }
    const entry = sparseEntry(hi, lo);
    const off = this.#off.get(row);
    const chunk = this.#chunks[off >>> this.#chunkBits];
    const pos = off & (this.#chunk - 1);
    const prefix = entry >> 6;
    let a = 0;
    let b = n - 1;
    while (a <= b) {
      const mid = (a + b) >> 1;
      const e = chunk[pos + mid];
      if (e >> 6 === prefix) {
        if (entry > e) chunk[pos + mid] = entry;
        return;
      }
      if (e >> 6 < prefix) a = mid + 1;
      else b = mid - 1;
    }
    if (n + 1 > this.#smallMax) {
      const list = n === 0 ? [] : Array.from(chunk.subarray(pos, pos + n));
      this.#release(row);
      this.#big.set(row, hllStateAdd(list, this.precision, hi, lo));
      this.#len.set(row, BIG);
      this.#compactIfWasteful();
      return;
    }
    // `a` is where the entry goes. The run last allocated grows in place when its chunk has room (a row that
    // gains several values in a row leaves no holes); any other moves to a new run one longer.
    if (n > 0 && chunk === this.#chunks[this.#chunks.length - 1] && pos + n === this.#top && this.#top < chunk.length) {
      chunk.copyWithin(pos + a + 1, pos + a, pos + n);
      chunk[pos + a] = entry;
      this.#top++;
      this.#len.set(row, n + 1);
      this.#live++;
      return;
    }
    const at = this.#alloc(n + 1);
    const dst = this.#chunks[at >>> this.#chunkBits];
    const d = at & (this.#chunk - 1);
    if (n > 0) {
      dst.set(chunk.subarray(pos, pos + a), d);
      dst.set(chunk.subarray(pos + a, pos + n), d + a + 1);
    }
    dst[d + a] = entry;
    this.#release(row);
    this.#off.set(row, at);
    this.#len.set(row, n + 1);
    this.#live += n + 1;
    this.#compactIfWasteful();
  }

  /** Merges a sketch into the row's sketch (the union of the two sets). */
  merge(row: number, other: HyperLogLog): void {
    this.#set(row, this.sketch(row).clone().merge(other).state);
  }

  /** The row's sketch (read-only: it may share the row's data). */
  sketch(row: number): HyperLogLog {
    const n = this.#len.get(row);
    if (n === BIG) return HyperLogLog.fromState(this.precision, this.#big.get(row)!);
    if (n === 0) return new HyperLogLog(this.precision);
    const off = this.#off.get(row);
    const pos = off & (this.#chunk - 1);
    return HyperLogLog.fromState(this.precision, Array.from(this.#chunks[off >>> this.#chunkBits].subarray(pos, pos + n)));
  }

  /** Approximate heap bytes of the row's sketch, bookkeeping included. */
  bytes(row: number): number {
    const n = this.#len.get(row);
    if (n !== BIG) return 5 + n * 4;
    const s = this.#big.get(row)!;
    return 5 + 16 + (s instanceof Uint8Array ? s.length + 64 : 16 + s.length * 8);
  }

  /** Entries in use, in holes and in chunk tails; entries allocated; chunks; compactions so far. */
  get footprint(): { live: number; holes: number; tails: number; capacity: number; chunks: number; compactions: number } {
    const capacity = this.#chunks.reduce((n, c) => n + c.length, 0);
    return { live: this.#live, holes: this.#holes, tails: this.#tails, capacity, chunks: this.#chunks.length, compactions: this.#compactions };
  }

  #set(row: number, state: HllState): void {
    this.#release(row);
    if (state instanceof Uint8Array || state.length > this.#smallMax) {
      this.#big.set(row, state);
      this.#len.set(row, BIG);
      this.#compactIfWasteful();
      return;
    }
    if (state.length === 0) return this.#compactIfWasteful();
    const at = this.#alloc(state.length);
    this.#chunks[at >>> this.#chunkBits].set(state, at & (this.#chunk - 1));
    this.#off.set(row, at);
    this.#len.set(row, state.length);
    this.#live += state.length;
    this.#compactIfWasteful();
  }

  /** Forgets the row's current run (it becomes a hole) or sketch. */
  #release(row: number): void {
    const n = this.#len.get(row);
    if (n === BIG) this.#big.delete(row);
    else {
      this.#live -= n;
      this.#holes += n;
    }
    this.#len.set(row, 0);
  }

  /** The arena offset of `n` free entries. */
  #alloc(n: number): number {
    const last = this.#chunks[this.#chunks.length - 1];
    if (last !== undefined && this.#chunks.length === 1 && last.length < this.#chunk && this.#top + n > last.length) {
      // The first chunk starts small and doubles (a window with a few keys holds a few hundred bytes, not 64 KiB).
      let len = last.length * 2;
      while (len < this.#top + n && len < this.#chunk) len *= 2;
      const next = new Uint32Array(Math.min(len, this.#chunk));
      next.set(last);
      this.#chunks[0] = next;
    }
    const room = this.#chunks.length === 0 ? 0 : this.#chunks[this.#chunks.length - 1].length;
    if (this.#top + n > room) {
      this.#tails += room - Math.min(this.#top, room);
      this.#chunks.push(new Uint32Array(this.#chunks.length === 0 ? Math.min(FIRST_CHUNK, this.#chunk) : this.#chunk));
      this.#top = 0;
    }
    const at = (this.#chunks.length - 1) * this.#chunk + this.#top;
    this.#top += n;
    return at;
  }

  #compactIfWasteful(): void {
    if (this.#holes <= this.#chunk || this.#holes * 4 <= this.#live) return;
    this.#compactions++;
    const old = this.#chunks;
    this.#chunks = [];
    this.#top = 0;
    this.#holes = 0;
    this.#tails = 0;
    for (let row = 0; row < this.#rows; row++) {
      const n = this.#len.get(row);
      if (n === 0 || n === BIG) continue;
      const off = this.#off.get(row);
      const pos = off & (this.#chunk - 1);
      const at = this.#alloc(n);
      this.#chunks[at >>> this.#chunkBits].set(old[off >>> this.#chunkBits].subarray(pos, pos + n), at & (this.#chunk - 1));
      this.#off.set(row, at);
    }
  }
}

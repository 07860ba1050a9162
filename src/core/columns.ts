/** Rows per chunk past the first: 65,536. */
const BITS = 16;
const SIZE = 1 << BITS;
const MASK = SIZE - 1;

type Numbers = Uint8Array | Uint32Array | Float64Array;

/**
 * A numeric column indexed by row that grows without doubling: its first chunk doubles up to 65,536 rows (small
 * tables stay small), then whole chunks are added. The spare room is at most one chunk, where a doubling array
 * is up to half empty (measured: 96 -> 118 bytes per view row just past 2^20 rows). New rows read 0.
 */
export class NumberColumn<T extends Numbers> {
  #chunks: T[];
  readonly #make: (n: number) => T;

  constructor(make: (n: number) => T) {
    this.#make = make;
    this.#chunks = [make(16)];
  }

  /** Makes rows below `n` addressable. */
  ensure(n: number): void {
    const first = this.#chunks[0];
    if (first.length < SIZE && n > first.length) {
      let len = first.length;
      while (len < n && len < SIZE) len *= 2;
      const next = this.#make(len);
      next.set(first as never);
      this.#chunks[0] = next;
    }
    while (this.#chunks.length * SIZE < n) this.#chunks.push(this.#make(SIZE));
  }

  get(row: number): number {
    return this.#chunks[row >>> BITS][row & MASK];
  }

  set(row: number, v: number): void {
    this.#chunks[row >>> BITS][row & MASK] = v;
  }

  /** The same rows in another representation (e.g. widened from 4- to 8-byte numbers). */
  convert<U extends Numbers>(make: (n: number) => U): NumberColumn<U> {
    const c = new NumberColumn(make);
    c.#chunks = this.#chunks.map((chunk) => {
      const next = make(chunk.length);
      next.set(chunk as never);
      return next;
    });
    return c;
  }

  get bytesPerRow(): number {
    return this.#chunks[0].BYTES_PER_ELEMENT;
  }
}

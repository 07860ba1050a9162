/**
 * MurmurHash3 (x86, 32-bit) over a string's UTF-16 code units, two seeds for 64 bits. Strings are hashed without
 * encoding them to bytes first: values reach the sketches as JS strings and numbers, and an encode per value
 * would double the cost. Numbers are hashed through their canonical string form, so 1 and "1" collide on
 * purpose: a column holds one type.
 */
function murmur3(s: string, seed: number): number {
  let h = seed >>> 0;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = (s.charCodeAt(i) & 0xffff) | ((s.charCodeAt(i + 1) & 0xffff) << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = s.charCodeAt(i) & 0xffff;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export const HASH_SEED_HI = 0x9747b28c;
export const HASH_SEED_LO = 0x5bd1e995;

/**
 * The canonical string of a sketch input: strings as they are, numbers and booleans as text, objects and arrays
 * as JSON (never String(): untrusted JSON objects may carry a non-function toString, on which it throws).
 */
export function sketchKey(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value) ?? '';
}

/** High and low 32 bits of the 64-bit hash of `s`. */
export function hash64(s: string, out: Uint32Array): void {
  out[0] = murmur3(s, HASH_SEED_HI);
  out[1] = murmur3(s, HASH_SEED_LO);
}

export { murmur3 };

/**
 * Finds the byte ranges of the top-level elements of a JSON array (or of a single JSON value) that is already
 * known to be valid, with each element's nesting depth. Ingest uses the ranges to store each event's original
 * bytes and to check size and depth without walking the parsed objects. Strings are skipped with a native
 * `indexOf`, so the scan costs well under a microsecond per 250-byte event.
 */
export interface Elements {
  starts: number[];
  ends: number[];
  /** Nesting of each element: a primitive is 0, `{}` is 1, `{"a":[1]}` is 2. */
  depths: number[];
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COMMA = 0x2c;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Index of the quote closing the string whose opening quote is at `open`. */
function stringEnd(buf: Buffer, open: number, end: number): number {
  let j = buf.indexOf(QUOTE, open + 1);
  for (;;) {
    if (j < 0 || j >= end) return end - 1;
    let k = j - 1;
    while (buf[k] === BACKSLASH) k--;
    if ((j - 1 - k) % 2 === 0) return j;
    j = buf.indexOf(QUOTE, j + 1);
  }
}

/** The nesting depth of the valid JSON value in buf[start, end). */
export function depthOf(buf: Buffer, start: number, end: number): number {
  let depth = 0;
  let max = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c === QUOTE) i = stringEnd(buf, i, end);
    else if (c === OPEN_OBJ || c === OPEN_ARR) {
      if (++depth > max) max = depth;
    } else if (c === CLOSE_OBJ || c === CLOSE_ARR) depth--;
  }
  return max;
}

/**
 * Splits buf[start, end) into elements. For a top-level array: one range per element; for any other value: one
 * range covering it (`isArray` false).
 */
export function splitTopLevel(buf: Buffer, start = 0, end = buf.length): Elements & { isArray: boolean } {
  let i = start;
  while (i < end && isWs(buf[i])) i++;
  let last = end;
  while (last > i && isWs(buf[last - 1])) last--;
  if (buf[i] !== OPEN_ARR) return { starts: [i], ends: [last], depths: [depthOf(buf, i, last)], isArray: false };

  const out: Elements & { isArray: boolean } = { starts: [], ends: [], depths: [], isArray: true };
  let depth = 1;
  let elemStart = -1;
  let elemEnd = -1;
  let elemMax = 0;
  for (i++; i < end; i++) {
    const c = buf[i];
    if (isWs(c)) continue;
    if (depth === 1) {
      if (c === COMMA) {
        out.starts.push(elemStart);
        out.ends.push(elemEnd);
        out.depths.push(elemMax);
        elemStart = -1;
        continue;
      }
      if (c === CLOSE_ARR) {
        if (elemStart >= 0) {
          out.starts.push(elemStart);
          out.ends.push(elemEnd);
          out.depths.push(elemMax);
        }
        break;
      }
      if (elemStart < 0) {
        elemStart = i;
        elemMax = 0;
      }
    }
    if (c === QUOTE) i = stringEnd(buf, i, end);
    else if (c === OPEN_OBJ || c === OPEN_ARR) {
      depth++;
      if (depth - 1 > elemMax) elemMax = depth - 1;
    } else if (c === CLOSE_OBJ || c === CLOSE_ARR) depth--;
    elemEnd = i + 1;
  }
  return out;
}

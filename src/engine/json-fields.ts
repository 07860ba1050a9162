/**
 * Reads chosen top-level fields of an envelope's `data` object straight from its JSON bytes. Views use a few
 * fields of each event (article_id, user_id), and `JSON.parse` of the whole envelope was the engine's largest
 * cost: this scanner skips what no view reads (strings with a native `indexOf`) and builds only the wanted
 * values. Anything unusual (escaped keys, malformed input) returns false and the caller parses normally.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Whether buf[s, e) holds a backslash. A loop, not Buffer.indexOf: that has no end and would scan the batch. */
function hasBackslash(buf: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (buf[i] === BACKSLASH) return true;
  return false;
}

function ws(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Index just past the string whose opening quote is at `i`, or -1. */
function stringEnd(buf: Buffer, i: number, end: number): number {
  let j = buf.indexOf(QUOTE, i + 1);
  for (;;) {
    if (j < 0 || j >= end) return -1;
    let k = j - 1;
    while (buf[k] === BACKSLASH) k--;
    if ((j - 1 - k) % 2 === 0) return j + 1;
    j = buf.indexOf(QUOTE, j + 1);
  }
}

/** Index just past the value starting at `i` (which is not whitespace), or -1. */
function valueEnd(buf: Buffer, i: number, end: number): number {
  const c = buf[i];
  if (c === QUOTE) return stringEnd(buf, i, end);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    for (let j = i; j < end; j++) {
      const d = buf[j];
      if (d === QUOTE) {
        j = stringEnd(buf, j, end) - 1;
        if (j < 0) return -1;
      } else if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        if (--depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < end) {
    const d = buf[j];
    if (d === 0x2c || d === 0x7d || d === 0x5d || ws(d)) break;
    j++;
  }
  return j;
}

function value(buf: Buffer, i: number, e: number): unknown {
  const c = buf[i];
  if (c === QUOTE) {
    if (!hasBackslash(buf, i + 1, e - 1)) return buf.toString('utf8', i + 1, e - 1);
    return JSON.parse(buf.toString('utf8', i, e));
  }
  if (c === 0x74) return true;
  if (c === 0x66) return false;
  if (c === 0x6e) return null;
  if (c === 0x7b || c === 0x5b) return JSON.parse(buf.toString('utf8', i, e));
  // A number: whole numbers parsed here, anything else by Number().
  let n = 0;
  let j = i;
  const neg = c === 0x2d;
  if (neg) j++;
  for (; j < e; j++) {
    const d = buf[j] - 0x30;
    if (d < 0 || d > 9) return Number(buf.toString('latin1', i, e));
    n = n * 10 + d;
  }
  if (e - i > 15) return Number(buf.toString('latin1', i, e));
  return neg ? -n : n;
}

/** Compares buf[s, e) with an ASCII string. */
function keyIs(buf: Buffer, s: number, e: number, key: string): boolean {
  if (e - s !== key.length) return false;
  for (let k = 0; k < key.length; k++) if (buf[s + k] !== key.charCodeAt(k)) return false;
  return true;
}

/**
 * Fills `out` with the `wanted` top-level fields of the `data` object of the envelope in buf[start, end), with
 * `JSON.parse`'s meaning: when a key repeats, the last one wins (so views read exactly what validation checked).
 * Returns false when the bytes are not the simple shape it handles; `out` is then incomplete.
 */
export function extractDataFields(buf: Buffer, start: number, end: number, wanted: readonly string[], out: Record<string, unknown>): boolean {
  let i = start;
  let seenData = false;
  while (i < end && ws(buf[i])) i++;
  if (buf[i] !== 0x7b) return false;
  i++;
  for (;;) {
    while (i < end && ws(buf[i])) i++;
    if (buf[i] === 0x7d) return true; // the end of the envelope
    if (buf[i] !== QUOTE) return false;
    const ke = stringEnd(buf, i, end);
    if (ke < 0) return false;
    const isData = keyIs(buf, i + 1, ke - 1, 'data');
    if (!isData && hasBackslash(buf, i + 1, ke - 1)) return false; // an escaped key could spell "data"
    i = ke;
    while (i < end && ws(buf[i])) i++;
    if (buf[i] !== 0x3a) return false;
    i++;
    while (i < end && ws(buf[i])) i++;
    if (isData) {
      // A second "data" would be the one JSON.parse keeps: let the full parser handle such input.
      if (seenData) return false;
      seenData = true;
      const de = dataObject(buf, i, end, wanted, out);
      if (de < 0) return false;
      i = de;
    } else {
      const ve = valueEnd(buf, i, end);
      if (ve < 0) return false;
      i = ve;
    }
    while (i < end && ws(buf[i])) i++;
    if (buf[i] === 0x2c) i++;
    else if (buf[i] !== 0x7d) return false;
  }
}

/** Index just past the data object at `i` (filling `out`), or -1. */
function dataObject(buf: Buffer, i: number, end: number, wanted: readonly string[], out: Record<string, unknown>): number {
  if (buf[i] !== 0x7b) return -1;
  i++;
  for (;;) {
    while (i < end && ws(buf[i])) i++;
    if (buf[i] === 0x7d) return i + 1;
    if (buf[i] !== QUOTE) return -1;
    const ke = stringEnd(buf, i, end);
    if (ke < 0) return -1;
    let hit = -1;
    for (let w = 0; w < wanted.length; w++) {
      if (keyIs(buf, i + 1, ke - 1, wanted[w])) {
        hit = w;
        break;
      }
    }
    // An escaped key could spell a wanted name: let the full parser decide.
    if (hit < 0 && hasBackslash(buf, i + 1, ke - 1)) return -1;
    i = ke;
    while (i < end && ws(buf[i])) i++;
    if (buf[i] !== 0x3a) return -1;
    i++;
    while (i < end && ws(buf[i])) i++;
    const ve = valueEnd(buf, i, end);
    if (ve < 0) return -1;
    // Every occurrence is read, not the first: a repeated key's last value is the one that was validated.
    if (hit >= 0) out[wanted[hit]] = value(buf, i, ve);
    i = ve;
    while (i < end && ws(buf[i])) i++;
    if (buf[i] === 0x2c) i++;
    else if (buf[i] !== 0x7d) return -1;
  }
}

import fc from 'fast-check';

/**
 * JSON values (as JSON.parse makes them) that reach every MessagePack form the writer emits: strings of every
 * header width (fixstr, str8, str16, and str32 now and then), ASCII and multi-byte, integers at and around every
 * width's edges, floats, nil, booleans, arrays and maps of fix and 16-bit sizes, nested.
 */
export function wideJsonValue(opts: { maxDepth?: number; bigStrings?: boolean } = {}): fc.Arbitrary<unknown> {
  const edges = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1];
  const integer = fc.oneof(fc.constantFrom(...edges), fc.integer(), fc.maxSafeInteger());
  const float = fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d));
  const unit = fc.constantFrom('a', 'z', ' ', '"', '\\', '\n', '\u0000', 'é', 'ß', 'İ', '日', '😀', '\u{10FFFF}');
  const text = (min: number, max: number) => fc.array(unit, { minLength: min, maxLength: max }).map((a) => a.join(''));
  const strings = [
    fc.string({ maxLength: 8 }),
    text(0, 31),
    text(28, 40), // around the fixstr/str8 edge, in bytes and characters
    fc.string({ unit: 'grapheme', minLength: 8, maxLength: 120 }),
    text(250, 300), // around the str8/str16 edge
  ];
  if (opts.bigStrings === true) strings.push(fc.constantFrom('x'.repeat(65535), 'y'.repeat(65536), 'é'.repeat(40000)));
  const string = fc.oneof(...strings);
  const leaf = fc.oneof(string, integer, float, fc.constant(null), fc.boolean());
  const { value } = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', maxDepth: opts.maxDepth ?? 3 },
      leaf,
      fc.array(tie('value'), { maxLength: 18 }),
      fc.dictionary(fc.oneof(fc.string({ maxLength: 4 }), string), tie('value'), { maxKeys: 18 }),
    ),
  }));
  // Through JSON text, so the values are exactly what JSON.parse gives (no -0, own "__proto__" keys kept as data).
  return value.map((v) => JSON.parse(JSON.stringify(v)) as unknown);
}

import { RE2JS } from 're2js';

/**
 * Schema patterns (`pattern`, `patternProperties`) run on RE2 (re2js, pure JavaScript): matching takes time linear
 * in the string, whatever the pattern. With the native engine `"pattern": "^(a+)+$"` and a 60-byte string held a
 * thread for minutes. Patterns are written in ECMA-262 syntax (JSON Schema's); `toRe2` translates them so they mean
 * exactly what the native engine (with Ajv's `u` flag) would, and refuses what RE2 cannot run in linear time.
 */

/** Thrown for a pattern that cannot run on the linear-time engine; the message says why. */
export class UnsupportedPatternError extends Error {
  constructor(
    readonly pattern: string,
    readonly why: string,
  ) {
    super(`pattern ${JSON.stringify(pattern)} ${why}`);
    this.name = 'UnsupportedPatternError';
  }
}

// ECMA-262 WhiteSpace and LineTerminator: what \s matches natively (RE2's \s is only [\t\n\f\r ]).
const SPACE = '\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}';
// What `.` matches natively without the s flag: anything but a line terminator (RE2's `.` excludes only \n).
const DOT = '[^\\n\\r\\x{2028}\\x{2029}]';
const hex = (cp: number) => `\\x{${cp.toString(16).toUpperCase()}}`;

/** Translates an ECMA-262 pattern (u mode) into RE2 syntax, or throws UnsupportedPatternError. */
export function toRe2(pattern: string): string {
  try {
    new RegExp(pattern, 'u'); // the syntax check JSON Schema asks for; compiling does not run the pattern
  } catch (err) {
    throw new UnsupportedPatternError(pattern, `is not a valid regular expression: ${(err as Error).message}`);
  }
  let out = '';
  let i = 0;
  const n = pattern.length;
  /** Reads the escape at i (pattern[i] === '\\'); returns its RE2 form. */
  const escape = (inClass: boolean): string => {
    const c = pattern[i + 1];
    i += 2;
    switch (c) {
      case 'd': case 'D': case 'w': case 'W': return `\\${c}`;
      case 's': return inClass ? SPACE : `[${SPACE}]`;
      case 'S':
        if (inClass) throw new UnsupportedPatternError(pattern, 'uses \\S inside a character class, which the linear-time engine cannot express; list the characters instead');
        return `[^${SPACE}]`;
      case 'b': return inClass ? hex(8) : '\\b';
      case 'B': return '\\B';
      case 't': return hex(9);
      case 'n': return hex(10);
      case 'v': return hex(11);
      case 'f': return hex(12);
      case 'r': return hex(13);
      case '0': return hex(0);
      case 'c': { const cp = pattern.charCodeAt(i) % 32; i += 1; return hex(cp); }
      case 'x': { const cp = parseInt(pattern.slice(i, i + 2), 16); i += 2; return hex(cp); }
      case 'u': {
        if (pattern[i] === '{') {
          const end = pattern.indexOf('}', i);
          const cp = parseInt(pattern.slice(i + 1, end), 16);
          i = end + 1;
          return hex(cp);
        }
        let cp = parseInt(pattern.slice(i, i + 4), 16);
        i += 4;
        // In u mode an escaped surrogate pair is one code point.
        if (cp >= 0xd800 && cp <= 0xdbff && pattern.startsWith('\\u', i) && /^[0-9a-fA-F]{4}$/.test(pattern.slice(i + 2, i + 6))) {
          const lo = parseInt(pattern.slice(i + 2, i + 6), 16);
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
          }
        }
        return hex(cp);
      }
      case 'p': case 'P': {
        const end = pattern.indexOf('}', i);
        const name = pattern.slice(i + 1, end);
        i = end + 1;
        // RE2 knows general categories and scripts by their short names (\p{L}, \p{Greek}).
        const bare = name.replace(/^(General_Category|gc|Script|sc)=/, '');
        return `\\${c}{${bare}}`;
      }
      case 'k':
        throw new UnsupportedPatternError(pattern, 'uses a backreference (\\k<name>), which no linear-time engine can run');
      default:
        if (c !== undefined && c >= '1' && c <= '9') throw new UnsupportedPatternError(pattern, `uses a backreference (\\${c}), which no linear-time engine can run`);
        // u mode allows only syntax characters (and - in classes) to be escaped: the same in RE2.
        return `\\${c}`;
    }
  };
  while (i < n) {
    const c = pattern[i];
    if (c === '\\') {
      out += escape(false);
    } else if (c === '.') {
      out += DOT;
      i++;
    } else if (c === '(') {
      if (pattern.startsWith('(?=', i) || pattern.startsWith('(?!', i) || pattern.startsWith('(?<=', i) || pattern.startsWith('(?<!', i)) {
        throw new UnsupportedPatternError(pattern, 'uses a lookaround assertion ((?=, (?!, (?<=, (?<!), which the linear-time engine cannot run');
      }
      if (pattern.startsWith('(?<', i)) {
        out += '(?P<';
        i += 3;
      } else {
        out += c;
        i++;
      }
    } else if (c === '[') {
      i++;
      let negated = false;
      if (pattern[i] === '^') {
        negated = true;
        i++;
      }
      let body = '';
      while (pattern[i] !== ']') {
        const d = pattern[i];
        if (d === '\\') body += escape(true);
        else {
          const cp = pattern.codePointAt(i)!;
          body += d === '[' || d === '^' || d === '-' ? (d === '-' ? '-' : `\\${d}`) : String.fromCodePoint(cp);
          i += cp > 0xffff ? 2 : 1;
        }
      }
      i++;
      if (body === '') out += negated ? '[\\x{0}-\\x{10FFFF}]' : '[^\\x{0}-\\x{10FFFF}]';
      else out += `[${negated ? '^' : ''}${body}]`;
    } else {
      const cp = pattern.codePointAt(i)!;
      out += String.fromCodePoint(cp);
      i += cp > 0xffff ? 2 : 1;
    }
  }
  return out;
}

/** A linear-time matcher for an ECMA-262 pattern; throws UnsupportedPatternError for one RE2 cannot run. */
export function linearRegExp(pattern: string): { test(s: string): boolean; toString(): string } {
  const source = toRe2(pattern);
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (err) {
    throw new UnsupportedPatternError(pattern, `cannot run on the linear-time engine (RE2): ${(err as Error).message}`);
  }
  // Ajv keys its compiled patterns by toString(): it must differ between patterns, as a RegExp's does.
  const name = `/${pattern}/u`;
  return { test: (s: string) => re.test(s), toString: () => name };
}

import { HalflifeError } from '../core/index.js';
import { sqlError, type Pos } from './position.js';

/** The longest SQL text accepted (characters): longer is refused with `SQL_TOO_LARGE` before any work. */
export const MAX_SQL_LENGTH = 100_000;

export type TokenKind = 'ident' | 'quoted' | 'keyword' | 'string' | 'number' | 'op' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** Keywords upper-cased; identifiers as written; strings unescaped. */
  readonly text: string;
  readonly pos: Pos;
  readonly length: number;
}

const KEYWORDS = new Set([
  'SELECT', 'FROM', 'WHERE', 'GROUP', 'BY', 'HAVING', 'ORDER', 'LIMIT', 'AS', 'AND', 'OR', 'NOT', 'IN', 'IS',
  'NULL', 'TRUE', 'FALSE', 'BETWEEN', 'LIKE', 'CASE', 'WHEN', 'THEN', 'ELSE', 'END', 'CAST', 'DISTINCT',
  'INTERVAL', 'CREATE', 'VIEW', 'WITH', 'JOIN', 'LEFT', 'INNER', 'OUTER', 'ON', 'ASC', 'DESC', 'OR', 'REPLACE',
]);

const OPS = ['<>', '!=', '<=', '>=', '||', '=', '<', '>', '+', '-', '*', '/', '%', '(', ')', ',', '.', ';'];

export function tokenize(text: string): Token[] {
  if (text.length > MAX_SQL_LENGTH) {
    throw new HalflifeError('SQL_TOO_LARGE', { length: text.length, max: MAX_SQL_LENGTH });
  }
  const tokens: Token[] = [];
  let i = 0;
  const n = text.length;
  // Line and column follow the scan (tokens come in order), so positions cost one pass over the text in all.
  let line = 1;
  let lineStart = 0;
  let scanned = 0;
  const posAt = (_text: string, offset: number): Pos => {
    for (; scanned < offset; scanned++) {
      if (text.charCodeAt(scanned) === 10) {
        line++;
        lineStart = scanned + 1;
      }
    }
    return { offset, line, column: offset - lineStart + 1 };
  };
  while (i < n) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === '-' && text[i + 1] === '-') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw sqlError('SQL_SYNTAX', text, posAt(text, i), 'unterminated comment', 2);
      i = end + 2;
      continue;
    }
    const start = i;
    if (/[A-Za-z_]/.test(c)) {
      while (i < n && /[A-Za-z0-9_]/.test(text[i])) i++;
      const word = text.slice(start, i);
      const upper = word.toUpperCase();
      tokens.push({ kind: KEYWORDS.has(upper) ? 'keyword' : 'ident', text: KEYWORDS.has(upper) ? upper : word, pos: posAt(text, start), length: i - start });
      continue;
    }
    if (c === '"' || c === '`') {
      const close = c;
      i++;
      let value = '';
      while (i < n && !(text[i] === close && text[i + 1] !== close)) {
        if (text[i] === close) i++;
        value += text[i++];
      }
      if (i >= n) throw sqlError('SQL_SYNTAX', text, posAt(text, start), 'unterminated quoted identifier', 1);
      i++;
      tokens.push({ kind: 'quoted', text: value, pos: posAt(text, start), length: i - start });
      continue;
    }
    if (c === "'") {
      i++;
      let value = '';
      for (;;) {
        if (i >= n) throw sqlError('SQL_SYNTAX', text, posAt(text, start), 'unterminated string literal', 1);
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            value += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += text[i++];
      }
      tokens.push({ kind: 'string', text: value, pos: posAt(text, start), length: i - start });
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(text[i + 1] ?? ''))) {
      while (i < n && /[0-9]/.test(text[i])) i++;
      if (text[i] === '.' && /[0-9]/.test(text[i + 1] ?? '')) {
        i++;
        while (i < n && /[0-9]/.test(text[i])) i++;
      }
      if ((text[i] === 'e' || text[i] === 'E') && /[-+0-9]/.test(text[i + 1] ?? '')) {
        i += 2;
        while (i < n && /[0-9]/.test(text[i])) i++;
      }
      tokens.push({ kind: 'number', text: text.slice(start, i), pos: posAt(text, start), length: i - start });
      continue;
    }
    const op = OPS.find((o) => text.startsWith(o, i));
    if (op === undefined) throw sqlError('SQL_SYNTAX', text, posAt(text, i), `unexpected character ${JSON.stringify(c)}`);
    tokens.push({ kind: 'op', text: op, pos: posAt(text, i), length: op.length });
    i += op.length;
  }
  tokens.push({ kind: 'eof', text: '', pos: posAt(text, n), length: 0 });
  return tokens;
}

import { HalflifeError } from '../core/index.js';
import './errors.js';

/** A place in the SQL text: byte offset into the string, 1-based line and column. */
export interface Pos {
  readonly offset: number;
  readonly line: number;
  readonly column: number;
}

export function posAt(text: string, offset: number): Pos {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { offset, line, column: offset - lineStart + 1 };
}

/** The offending line with a caret under the position, for error messages. */
export function caret(text: string, pos: Pos, length = 1): string {
  const start = text.lastIndexOf('\n', pos.offset - 1) + 1;
  let end = text.indexOf('\n', pos.offset);
  if (end < 0) end = text.length;
  const line = text.slice(start, end);
  return `${line}\n${' '.repeat(pos.column - 1)}${'^'.repeat(Math.max(1, Math.min(length, end - pos.offset)))}`;
}

/** `SQL_SYNTAX` or `SQL_PLAN` with line, column and a caret in `details`. */
export function sqlError(code: 'SQL_SYNTAX' | 'SQL_PLAN', text: string, pos: Pos, reason: string, length = 1, extra: Record<string, unknown> = {}): HalflifeError {
  const pointer = caret(text, pos, length);
  return new HalflifeError(
    code,
    { line: pos.line, column: pos.column, reason, caret: pointer, ...extra },
    { message: `${code === 'SQL_SYNTAX' ? 'SQL syntax error' : 'SQL error'} at line ${pos.line}, column ${pos.column}: ${reason}\n${pointer}` },
  );
}

import type { BinaryOp, CreateView, Expr, Join, OrderItem, Select, SelectItem, Statement, TableRef } from './ast.js';
import { tokenize, type Token } from './lexer.js';
import { HalflifeError } from '../core/index.js';
import { sqlError, type Pos } from './position.js';

const INTERVAL_UNITS: Record<string, number> = {
  MILLISECOND: 1, MILLISECONDS: 1, SECOND: 1000, SECONDS: 1000, MINUTE: 60_000, MINUTES: 60_000,
  HOUR: 3_600_000, HOURS: 3_600_000, DAY: 86_400_000, DAYS: 86_400_000,
};

/** Parses one statement: `SELECT …` or `CREATE VIEW name [WITH (k = 'v', …)] AS SELECT …`. */
/**
 * How deeply expressions may nest (parentheses, operators, NOT, CASE, function arguments): deeper is refused with
 * `SQL_TOO_DEEP`, so that neither the parser nor the planner and evaluators (which recurse over the tree) can run out
 * of stack on hostile text.
 */
export const MAX_SQL_DEPTH = 256;

export function parse(text: string): Statement {
  const stmt = new Parser(text).statement();
  checkDepth(stmt);
  return stmt;
}

/** Parses `'10s'`, `'5 minutes'`, `'250ms'`, `'1h'` into milliseconds; undefined if not a duration. */
export function parseDuration(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\s*$/i.exec(s);
  if (m === null) return undefined;
  const n = Number(m[1]);
  const u = m[2].toLowerCase();
  const factor = u.startsWith('ms') || u.startsWith('milli') ? 1 : u.startsWith('s') ? 1000 : u.startsWith('m') ? 60_000 : u.startsWith('h') ? 3_600_000 : 86_400_000;
  return n * factor;
}

class Parser {
  readonly #text: string;
  readonly #tokens: Token[];
  #i = 0;

  constructor(text: string) {
    this.#text = text;
    this.#tokens = tokenize(text);
  }

  #depth = 0;

  /** Parses one level deeper, refusing text nested past MAX_SQL_DEPTH before the stack runs out. */
  #nest<T>(parse: () => T): T {
    if (++this.#depth > MAX_SQL_DEPTH) throw tooDeep(this.#t.pos);
    try {
      return parse();
    } finally {
      this.#depth--;
    }
  }

  get #t(): Token {
    return this.#tokens[this.#i];
  }

  #fail(reason: string, token: Token = this.#t): never {
    throw sqlError('SQL_SYNTAX', this.#text, token.pos, reason, Math.max(1, token.length));
  }

  #describe(t: Token): string {
    return t.kind === 'eof' ? 'the end of the query' : t.kind === 'string' ? `'${t.text}'` : `"${t.text}"`;
  }

  #isKeyword(...words: string[]): boolean {
    return this.#t.kind === 'keyword' && words.includes(this.#t.text);
  }

  #isOp(op: string): boolean {
    return this.#t.kind === 'op' && this.#t.text === op;
  }

  #acceptKeyword(word: string): boolean {
    if (!this.#isKeyword(word)) return false;
    this.#i++;
    return true;
  }

  #acceptOp(op: string): boolean {
    if (!this.#isOp(op)) return false;
    this.#i++;
    return true;
  }

  #expectKeyword(word: string): Token {
    if (!this.#isKeyword(word)) this.#fail(`expected ${word} but found ${this.#describe(this.#t)}`);
    return this.#tokens[this.#i++];
  }

  #expectOp(op: string): Token {
    if (!this.#isOp(op)) this.#fail(`expected "${op}" but found ${this.#describe(this.#t)}`);
    return this.#tokens[this.#i++];
  }

  #identifier(what: string): Token {
    const t = this.#t;
    if (t.kind === 'ident' || t.kind === 'quoted') {
      this.#i++;
      return t;
    }
    if (t.kind === 'keyword') this.#fail(`expected ${what} but found the keyword ${t.text} (quote it as "${t.text.toLowerCase()}" to use it as a name)`);
    return this.#fail(`expected ${what} but found ${this.#describe(t)}`);
  }

  statement(): Statement {
    const stmt = this.#isKeyword('CREATE') ? this.#createView() : this.#select();
    this.#acceptOp(';');
    if (this.#t.kind !== 'eof') this.#fail(`unexpected ${this.#describe(this.#t)} after the end of the statement`);
    return stmt;
  }

  #createView(): CreateView {
    const start = this.#expectKeyword('CREATE');
    if (this.#acceptKeyword('OR')) this.#expectKeyword('REPLACE');
    this.#expectKeyword('VIEW');
    const name = this.#identifier('a view name').text;
    // Collected as entries: an option named __proto__ becomes an own property (refused as unknown), not a prototype.
    const entries: [string, string][] = [];
    if (this.#acceptKeyword('WITH')) {
      this.#expectOp('(');
      do {
        const key = this.#identifier('an option name').text.toLowerCase();
        this.#expectOp('=');
        const v = this.#t;
        if (v.kind !== 'string' && v.kind !== 'number' && v.kind !== 'ident') this.#fail(`expected a value for option ${key}`);
        this.#i++;
        entries.push([key, v.text]);
      } while (this.#acceptOp(','));
      this.#expectOp(')');
    }
    this.#expectKeyword('AS');
    return { kind: 'create_view', name, options: Object.fromEntries(entries), select: this.#select(), pos: start.pos };
  }

  #select(): Select {
    const start = this.#expectKeyword('SELECT');
    const items: SelectItem[] = [];
    let star = false;
    if (this.#acceptOp('*')) star = true;
    else {
      do {
        const pos = this.#t.pos;
        const expr = this.#expr();
        let alias: string | undefined;
        if (this.#acceptKeyword('AS')) alias = this.#identifier('a column alias').text;
        else if (this.#t.kind === 'ident' || this.#t.kind === 'quoted') alias = this.#identifier('a column alias').text;
        items.push({ expr, alias, pos });
      } while (this.#acceptOp(','));
    }
    this.#expectKeyword('FROM');
    const from = this.#tableRef();
    const joins: Join[] = [];
    for (;;) {
      let kind: 'inner' | 'left' | undefined;
      if (this.#acceptKeyword('LEFT')) {
        this.#acceptKeyword('OUTER');
        this.#expectKeyword('JOIN');
        kind = 'left';
      } else if (this.#acceptKeyword('INNER')) {
        this.#expectKeyword('JOIN');
        kind = 'inner';
      } else if (this.#acceptKeyword('JOIN')) kind = 'inner';
      if (kind === undefined) break;
      const table = this.#tableRef();
      this.#expectKeyword('ON');
      joins.push({ kind, table, on: this.#expr() });
    }
    const where = this.#acceptKeyword('WHERE') ? this.#expr() : undefined;
    const groupBy: Expr[] = [];
    if (this.#acceptKeyword('GROUP')) {
      this.#expectKeyword('BY');
      do groupBy.push(this.#expr());
      while (this.#acceptOp(','));
    }
    const having = this.#acceptKeyword('HAVING') ? this.#expr() : undefined;
    const orderBy: OrderItem[] = [];
    if (this.#acceptKeyword('ORDER')) {
      this.#expectKeyword('BY');
      do {
        const expr = this.#expr();
        const desc = this.#acceptKeyword('DESC');
        if (!desc) this.#acceptKeyword('ASC');
        orderBy.push({ expr, desc });
      } while (this.#acceptOp(','));
    }
    let limit: number | undefined;
    if (this.#acceptKeyword('LIMIT')) {
      const t = this.#t;
      if (t.kind !== 'number' || !/^\d+$/.test(t.text)) this.#fail('LIMIT takes a whole number');
      this.#i++;
      limit = Number(t.text);
    }
    return { kind: 'select', items, star, from, joins, where, groupBy, having, orderBy, limit, pos: start.pos };
  }

  #tableRef(): TableRef {
    const t = this.#identifier('a stream, view or table name');
    let alias: string | undefined;
    if (this.#acceptKeyword('AS')) alias = this.#identifier('an alias').text;
    else if (this.#t.kind === 'ident' || this.#t.kind === 'quoted') alias = this.#identifier('an alias').text;
    return { name: t.text, alias, pos: t.pos, length: t.length };
  }

  // Precedence climbing: OR < AND < NOT < comparison/IS/IN/BETWEEN/LIKE < || < + - < * / % < unary -.
  #expr(): Expr {
    return this.#nest(() => this.#or());
  }

  #or(): Expr {
    let left = this.#and();
    while (this.#isKeyword('OR')) {
      const pos = this.#t.pos;
      this.#i++;
      left = { kind: 'binary', op: 'OR', left, right: this.#and(), pos };
    }
    return left;
  }

  #and(): Expr {
    let left = this.#not();
    while (this.#isKeyword('AND')) {
      const pos = this.#t.pos;
      this.#i++;
      left = { kind: 'binary', op: 'AND', left, right: this.#not(), pos };
    }
    return left;
  }

  #not(): Expr {
    if (this.#isKeyword('NOT')) {
      const pos = this.#t.pos;
      this.#i++;
      return { kind: 'unary', op: 'NOT', operand: this.#nest(() => this.#not()), pos };
    }
    return this.#is();
  }

  /** `x IS [NOT] NULL` binds looser than comparisons, as in PostgreSQL: `a LIKE 'x%' IS NULL`. */
  #is(): Expr {
    let left = this.#comparison();
    while (this.#isKeyword('IS')) {
      const pos = this.#t.pos;
      this.#i++;
      const negated = this.#acceptKeyword('NOT');
      this.#expectKeyword('NULL');
      left = { kind: 'isnull', expr: left, negated, pos };
    }
    return left;
  }

  #comparison(): Expr {
    const left = this.#concat();
    const pos = this.#t.pos;
    if (this.#t.kind === 'op' && ['=', '<>', '!=', '<', '<=', '>', '>='].includes(this.#t.text)) {
      const raw = this.#tokens[this.#i++].text;
      const op = (raw === '!=' ? '<>' : raw) as BinaryOp;
      return { kind: 'binary', op, left, right: this.#concat(), pos };
    }
    const negated = this.#isKeyword('NOT') && this.#tokens[this.#i + 1]?.kind === 'keyword' && ['IN', 'BETWEEN', 'LIKE'].includes(this.#tokens[this.#i + 1].text);
    if (negated) this.#i++;
    if (this.#acceptKeyword('IN')) {
      this.#expectOp('(');
      const list: Expr[] = [];
      do list.push(this.#expr());
      while (this.#acceptOp(','));
      this.#expectOp(')');
      return { kind: 'in', expr: left, list, negated, pos };
    }
    if (this.#acceptKeyword('BETWEEN')) {
      const low = this.#concat();
      this.#expectKeyword('AND');
      return { kind: 'between', expr: left, low, high: this.#concat(), negated, pos };
    }
    if (this.#acceptKeyword('LIKE')) return { kind: 'like', expr: left, pattern: this.#concat(), negated, pos };
    if (negated) this.#fail('expected IN, BETWEEN or LIKE after NOT');
    return left;
  }

  #concat(): Expr {
    let left = this.#additive();
    while (this.#isOp('||')) {
      const pos = this.#t.pos;
      this.#i++;
      left = { kind: 'binary', op: '||', left, right: this.#additive(), pos };
    }
    return left;
  }

  #additive(): Expr {
    let left = this.#multiplicative();
    while (this.#isOp('+') || this.#isOp('-')) {
      const t = this.#tokens[this.#i++];
      left = { kind: 'binary', op: t.text as BinaryOp, left, right: this.#multiplicative(), pos: t.pos };
    }
    return left;
  }

  #multiplicative(): Expr {
    let left = this.#unary();
    while (this.#isOp('*') || this.#isOp('/') || this.#isOp('%')) {
      const t = this.#tokens[this.#i++];
      left = { kind: 'binary', op: t.text as BinaryOp, left, right: this.#unary(), pos: t.pos };
    }
    return left;
  }

  #unary(): Expr {
    if (this.#isOp('-')) {
      const pos = this.#t.pos;
      this.#i++;
      const operand = this.#nest(() => this.#unary());
      if (operand.kind === 'literal' && typeof operand.value === 'number') return { kind: 'literal', value: -operand.value, pos };
      return { kind: 'unary', op: '-', operand, pos };
    }
    if (this.#acceptOp('+')) return this.#nest(() => this.#unary());
    return this.#primary();
  }

  #primary(): Expr {
    const t = this.#t;
    if (t.kind === 'number') {
      this.#i++;
      return { kind: 'literal', value: Number(t.text), pos: t.pos };
    }
    if (t.kind === 'string') {
      this.#i++;
      return { kind: 'literal', value: t.text, pos: t.pos };
    }
    if (t.kind === 'keyword') {
      switch (t.text) {
        case 'NULL':
          this.#i++;
          return { kind: 'literal', value: null, pos: t.pos };
        case 'TRUE':
        case 'FALSE':
          this.#i++;
          return { kind: 'literal', value: t.text === 'TRUE', pos: t.pos };
        case 'INTERVAL':
          return this.#interval();
        case 'CASE':
          return this.#case();
        case 'CAST': {
          this.#i++;
          this.#expectOp('(');
          const expr = this.#expr();
          this.#expectKeyword('AS');
          const type = this.#identifier('a type name (VARCHAR, BIGINT, DOUBLE, BOOLEAN, TIMESTAMP)').text.toUpperCase();
          this.#expectOp(')');
          return { kind: 'cast', expr, type, pos: t.pos };
        }
        default:
          break;
      }
    }
    if (this.#acceptOp('(')) {
      const e = this.#expr();
      this.#expectOp(')');
      return e;
    }
    if (t.kind === 'ident' || t.kind === 'quoted') {
      this.#i++;
      if (t.kind === 'ident' && this.#isOp('(')) return this.#call(t);
      const path = [t.text];
      let end = t.pos.offset + t.length;
      while (this.#isOp('.')) {
        this.#i++;
        const part = this.#t;
        if (part.kind !== 'ident' && part.kind !== 'quoted' && part.kind !== 'keyword') this.#fail('expected a field name after "."');
        this.#i++;
        path.push(part.kind === 'keyword' ? part.text.toLowerCase() : part.text);
        end = part.pos.offset + part.length;
      }
      return { kind: 'column', path, pos: t.pos, length: end - t.pos.offset };
    }
    return this.#fail(`expected an expression but found ${this.#describe(t)}`);
  }

  #call(name: Token): Expr {
    this.#expectOp('(');
    const upper = name.text.toUpperCase();
    if (this.#acceptOp('*')) {
      const close = this.#expectOp(')');
      return { kind: 'call', name: upper, args: [], star: true, distinct: false, pos: name.pos, length: close.pos.offset + 1 - name.pos.offset };
    }
    const distinct = this.#acceptKeyword('DISTINCT');
    const args: Expr[] = [];
    if (!this.#isOp(')')) {
      do args.push(this.#expr());
      while (this.#acceptOp(','));
    }
    const close = this.#expectOp(')');
    return { kind: 'call', name: upper, args, star: false, distinct, pos: name.pos, length: close.pos.offset + 1 - name.pos.offset };
  }

  #interval(): Expr {
    const start = this.#expectKeyword('INTERVAL');
    const v = this.#t;
    if (v.kind !== 'string' && v.kind !== 'number') this.#fail("expected a quantity after INTERVAL, e.g. INTERVAL '5' MINUTE");
    this.#i++;
    const unitTok = this.#t;
    const unit = unitTok.kind === 'ident' || unitTok.kind === 'keyword' ? unitTok.text.toUpperCase() : '';
    const unitMs = Object.hasOwn(INTERVAL_UNITS, unit) ? INTERVAL_UNITS[unit] : undefined;
    if (unitMs !== undefined) {
      this.#i++;
      const n = Number(v.text);
      if (!Number.isFinite(n) || n <= 0) this.#fail(`interval quantity must be a positive number (got ${this.#describe(v)})`, v);
      return { kind: 'interval', ms: n * unitMs, pos: start.pos };
    }
    const ms = parseDuration(v.text);
    if (ms === undefined || ms <= 0) {
      this.#fail('expected a unit after the interval quantity: MILLISECOND, SECOND, MINUTE, HOUR or DAY', unitTok.kind === 'eof' ? v : unitTok);
    }
    return { kind: 'interval', ms, pos: start.pos };
  }

  #case(): Expr {
    const start = this.#expectKeyword('CASE');
    const operand = this.#isKeyword('WHEN') ? undefined : this.#expr();
    const whens: [Expr, Expr][] = [];
    while (this.#acceptKeyword('WHEN')) {
      const cond = this.#expr();
      this.#expectKeyword('THEN');
      whens.push([cond, this.#expr()]);
    }
    if (whens.length === 0) this.#fail('CASE needs at least one WHEN … THEN …');
    const otherwise = this.#acceptKeyword('ELSE') ? this.#expr() : undefined;
    this.#expectKeyword('END');
    return { kind: 'case', operand, whens, otherwise, pos: start.pos };
  }
}

function tooDeep(pos: Pos): HalflifeError {
  return new HalflifeError('SQL_TOO_DEEP', { line: pos.line, column: pos.column, max: MAX_SQL_DEPTH });
}

/**
 * The parser's recursion is bounded by #nest, but operator chains (`a + a + … + a`, `x = 1 OR x = 2 OR …`) are built
 * by loops into trees as deep as they are long: measured here without recursion.
 */
function checkDepth(stmt: Statement): void {
  const stack: { node: unknown; depth: number }[] = [{ node: stmt, depth: 0 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    const isExpr = !Array.isArray(node) && typeof (node as { kind?: unknown }).kind === 'string';
    const d = isExpr ? depth + 1 : depth;
    if (d > MAX_SQL_DEPTH) throw tooDeep((node as { pos: Pos }).pos);
    for (const [k, v] of Object.entries(node)) if (k !== 'pos' && v !== null && typeof v === 'object') stack.push({ node: v, depth: d });
  }
}

import type { Pos } from './position.js';

/** Immutable SQL syntax tree. Every node carries the position of its first token. */
export type Expr =
  | { readonly kind: 'column'; readonly path: readonly string[]; readonly pos: Pos; readonly length: number }
  | { readonly kind: 'literal'; readonly value: string | number | boolean | null; readonly pos: Pos }
  | { readonly kind: 'interval'; readonly ms: number; readonly pos: Pos }
  | { readonly kind: 'binary'; readonly op: BinaryOp; readonly left: Expr; readonly right: Expr; readonly pos: Pos }
  | { readonly kind: 'unary'; readonly op: 'NOT' | '-'; readonly operand: Expr; readonly pos: Pos }
  | {
      readonly kind: 'call';
      readonly name: string;
      readonly args: readonly Expr[];
      readonly star: boolean;
      readonly distinct: boolean;
      readonly pos: Pos;
      readonly length: number;
    }
  | { readonly kind: 'case'; readonly operand: Expr | undefined; readonly whens: readonly (readonly [Expr, Expr])[]; readonly otherwise: Expr | undefined; readonly pos: Pos }
  | { readonly kind: 'in'; readonly expr: Expr; readonly list: readonly Expr[]; readonly negated: boolean; readonly pos: Pos }
  | { readonly kind: 'between'; readonly expr: Expr; readonly low: Expr; readonly high: Expr; readonly negated: boolean; readonly pos: Pos }
  | { readonly kind: 'like'; readonly expr: Expr; readonly pattern: Expr; readonly negated: boolean; readonly pos: Pos }
  | { readonly kind: 'isnull'; readonly expr: Expr; readonly negated: boolean; readonly pos: Pos }
  | { readonly kind: 'cast'; readonly expr: Expr; readonly type: string; readonly pos: Pos };

export type BinaryOp = '+' | '-' | '*' | '/' | '%' | '=' | '<>' | '<' | '<=' | '>' | '>=' | 'AND' | 'OR' | '||';

export interface SelectItem {
  readonly expr: Expr;
  readonly alias: string | undefined;
  readonly pos: Pos;
}

export interface TableRef {
  readonly name: string;
  readonly alias: string | undefined;
  readonly pos: Pos;
  readonly length: number;
}

export interface Join {
  readonly kind: 'inner' | 'left';
  readonly table: TableRef;
  readonly on: Expr;
}

export interface OrderItem {
  readonly expr: Expr;
  readonly desc: boolean;
}

export interface Select {
  readonly kind: 'select';
  readonly items: readonly SelectItem[];
  /** `SELECT *` */
  readonly star: boolean;
  readonly from: TableRef;
  readonly joins: readonly Join[];
  readonly where: Expr | undefined;
  readonly groupBy: readonly Expr[];
  readonly having: Expr | undefined;
  readonly orderBy: readonly OrderItem[];
  readonly limit: number | undefined;
  readonly pos: Pos;
}

export interface CreateView {
  readonly kind: 'create_view';
  readonly name: string;
  readonly options: Readonly<Record<string, string>>;
  readonly select: Select;
  readonly pos: Pos;
}

export type Statement = Select | CreateView;

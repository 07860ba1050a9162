export { parse, parseDuration } from './parser.js';
export { tokenize } from './lexer.js';
export type { Token, TokenKind } from './lexer.js';
export type { Expr, Select, CreateView, Statement, SelectItem, TableRef, Join, OrderItem, BinaryOp } from './ast.js';
export { planView, planQuery, fieldsFromJsonSchema, schemaCatalog, sameExpr, exprKey, exprText, METADATA_COLUMNS, DEFAULT_VIEW_OPTIONS } from './plan.js';
export type {
  Catalog,
  FieldInfo,
  EventRow,
  RowEvaluator,
  GroupEvaluator,
  WindowSpec,
  AggFn,
  AggSpec,
  JoinSpec,
  OutputColumn,
  ViewOptions,
  ViewPlan,
  QueryPlan,
  QueryCatalog,
  ViewColumn,
} from './plan.js';
export { compare, compareForOrder, isNull, truthy, arith, cast, like, toNumber, toText, SCALAR_FUNCTIONS } from './expr.js';
export type { Value } from './expr.js';
export { posAt, caret, sqlError } from './position.js';
export type { Pos } from './position.js';
export { SqlErrors } from './errors.js';

import { HalflifeError } from '../core/index.js';
import './errors.js';

export type Severity = 'info' | 'warning' | 'critical';
export type Comparison = '>' | '>=' | '<' | '<=' | '==' | '!=';

/** An alert rule as written (config or `PUT /v1/alerts/:name`). */
export interface AlertRuleSpec {
  /** `SELECT … FROM <view> …`: each row returned is a firing group. */
  sql?: string;
  /** Or a metric of GET /metrics whose series are compared with `threshold`. */
  metric?: string;
  threshold?: number;
  /** How a metric's value is compared with the threshold (default `>`). */
  op?: Comparison;
  /** A duration ("30s", "5m", "1h" or ms): how long a group must keep matching before it fires (default 0). */
  for?: string | number;
  labels?: Record<string, string>;
  severity?: Severity;
  /**
   * Columns (SQL) or labels (metric) that tell groups apart; the other columns are the group's values. Default:
   * SQL: the text columns; metric: every label of the series.
   */
  groupBy?: string[];
  /** A duration: a firing group is notified again this often (default "4h"; 0: once). */
  repeat?: string | number;
  webhook?: { url: string; timeoutMs?: number };
}

/** A validated rule. */
export interface AlertRule {
  readonly name: string;
  readonly spec: AlertRuleSpec;
  readonly kind: 'sql' | 'metric';
  readonly forMs: number;
  readonly repeatMs: number;
  readonly severity: Severity;
  readonly labels: Readonly<Record<string, string>>;
  readonly op: Comparison;
}

const NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const METRIC_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a duration given as ms or as text ("90s", "5m", "1h30m"). */
export function parseDuration(v: string | number | undefined, dflt: number, what: string, name: string): number {
  if (v === undefined) return dflt;
  if (typeof v === 'number') {
    if (Number.isFinite(v) && v >= 0) return v;
  } else {
    const parts = [...v.trim().matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/g)];
    const joined = parts.map((p) => p[0].replace(/\s+/g, '')).join('');
    if (parts.length > 0 && joined === v.replace(/\s+/g, '')) return parts.reduce((a, p) => a + Number(p[1]) * UNITS[p[2]], 0);
  }
  throw new HalflifeError('ALERT_INVALID', { name, reason: `${what} must be a duration like "30s", "5m" or "1h", or milliseconds (got ${JSON.stringify(v)})` });
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** Checks a rule's shape (its SQL is checked by running it once, by the manager). */
export function validateRule(name: string, input: unknown): AlertRule {
  const bad = (reason: string) => new HalflifeError('ALERT_INVALID', { name, reason });
  if (!NAME_RE.test(name)) throw bad('a rule name is 1-128 letters, digits, "_", "." or "-", starting with a letter');
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad('a rule is a JSON object');
  const spec = input as AlertRuleSpec;
  const known = new Set(['sql', 'metric', 'threshold', 'op', 'for', 'labels', 'severity', 'groupBy', 'repeat', 'webhook']);
  for (const k of Object.keys(spec)) if (!known.has(k)) throw bad(`unknown field "${k}" (allowed: ${[...known].join(', ')})`);
  if ((spec.sql === undefined) === (spec.metric === undefined)) throw bad('give either sql (a SELECT over a view) or metric with threshold');
  if (spec.sql !== undefined && (typeof spec.sql !== 'string' || spec.sql.trim() === '')) throw bad('sql must be a SELECT statement');
  if (spec.metric !== undefined) {
    if (typeof spec.metric !== 'string' || !METRIC_RE.test(spec.metric)) throw bad('metric must be a Prometheus metric name');
    if (typeof spec.threshold !== 'number' || !Number.isFinite(spec.threshold)) throw bad('a metric rule needs a numeric threshold');
  } else if (spec.threshold !== undefined || spec.op !== undefined) throw bad('threshold and op belong to metric rules; put the condition in the WHERE clause');
  const op = spec.op ?? '>';
  if (!['>', '>=', '<', '<=', '==', '!='].includes(op)) throw bad(`op must be one of > >= < <= == != (got ${JSON.stringify(op)})`);
  const severity = spec.severity ?? 'warning';
  if (!['info', 'warning', 'critical'].includes(severity)) throw bad('severity must be info, warning or critical');
  if (spec.labels !== undefined && !isStringRecord(spec.labels)) throw bad('labels must map names to strings');
  if (spec.groupBy !== undefined && (!Array.isArray(spec.groupBy) || !spec.groupBy.every((g) => typeof g === 'string'))) throw bad('groupBy must be a list of column or label names');
  if (spec.webhook !== undefined) {
    const w = spec.webhook as { url?: unknown; timeoutMs?: unknown };
    let ok = typeof w.url === 'string';
    if (ok) {
      try {
        ok = ['http:', 'https:'].includes(new URL(w.url as string).protocol);
      } catch {
        ok = false;
      }
    }
    if (!ok) throw bad('webhook.url must be an http(s) URL');
    if (w.timeoutMs !== undefined && (typeof w.timeoutMs !== 'number' || !(w.timeoutMs > 0 && w.timeoutMs <= 60_000))) throw bad('webhook.timeoutMs must be a number of milliseconds from 1 to 60000');
  }
  return {
    name,
    spec,
    kind: spec.sql !== undefined ? 'sql' : 'metric',
    forMs: parseDuration(spec.for, 0, 'for', name),
    repeatMs: parseDuration(spec.repeat, 4 * 3_600_000, 'repeat', name),
    severity,
    labels: spec.labels ?? {},
    op,
  };
}

export function compareWith(op: Comparison, value: number, threshold: number): boolean {
  switch (op) {
    case '>':
      return value > threshold;
    case '>=':
      return value >= threshold;
    case '<':
      return value < threshold;
    case '<=':
      return value <= threshold;
    case '==':
      return value === threshold;
    case '!=':
      return value !== threshold;
  }
}

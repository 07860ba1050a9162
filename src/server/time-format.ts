import { HalflifeError } from '../core/index.js';

/**
 * `?time=iso` on read routes: time columns as ISO-8601 strings instead of epoch ms. The default stays `ms`, so
 * existing clients see no change. Time columns are known by name (the view's window bounds and the log's times);
 * a column renamed by an alias (`window_start AS ws`) or computed (`MAX(received_at)`) stays a number.
 */
export type TimeFormat = 'ms' | 'iso';

export const TIME_COLUMNS: ReadonlySet<string> = new Set(['window_start', 'window_end', 'received_at', 'event_time']);

/** Reads the `time` query parameter; anything but `ms` or `iso` is INVALID_QUERY. */
export function timeFormatParam(q: Record<string, unknown>): TimeFormat {
  const raw = q.time;
  if (raw === undefined || raw === '' || raw === 'ms') return 'ms';
  if (raw === 'iso') return 'iso';
  throw new HalflifeError('INVALID_QUERY', { name: 'time', reason: `expected ms (epoch milliseconds, the default) or iso (ISO-8601 strings), got ${JSON.stringify(raw)}` });
}

/** An epoch-ms number as ISO-8601 (UTC, milliseconds); anything else (null, out of range) unchanged. */
function iso(v: unknown): unknown {
  if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > 8.64e15) return v;
  return new Date(v).toISOString();
}

/** The rows with their time columns in the asked format (the same array when `ms`). */
export function formatTimes<T extends Record<string, unknown>>(rows: readonly T[], format: TimeFormat): T[] {
  if (format === 'ms') return rows as T[];
  return rows.map((row) => {
    let out: Record<string, unknown> | undefined;
    for (const k of Object.keys(row)) {
      if (!TIME_COLUMNS.has(k)) continue;
      out ??= { ...row };
      out[k] = iso(row[k]);
    }
    return (out ?? row) as T;
  });
}

import type { ArchiveStatus } from '../sinks/index.js';
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import type { HistogramSnapshot } from '../core/index.js';
import type { Ingestor } from '../ingest/index.js';
import type { LogObserver, LogStats } from '../log/index.js';
import type { SchemaRegistry } from '../schema/index.js';
import type { EngineHost } from '../engine/index.js';
import type { OverloadMonitor } from './overload.js';

/** Every metric halflife exposes, by name (Prometheus conventions: `_total` counters, base units in the name). */
export const METRIC = {
  ingestEvents: 'halflife_ingest_events_total',
  ingestBytes: 'halflife_ingest_bytes_total',
  ingestRequestsShed: 'halflife_ingest_requests_shed_total',
  deadLetters: 'halflife_deadletters_total',
  deadLettersDropped: 'halflife_deadletters_dropped_total',
  engineRestarts: 'halflife_engine_restarts_total',
  httpDuration: 'halflife_http_request_duration_seconds',
  groupCommitRecords: 'halflife_log_group_commit_records',
  fsyncDuration: 'halflife_log_fsync_duration_seconds',
  logEndOffset: 'halflife_log_end_offset',
  logSize: 'halflife_log_size_bytes',
  logQueued: 'halflife_log_queued_bytes',
  consumerLag: 'halflife_consumer_lag_records',
  archiveEvents: 'halflife_archive_events_total',
  archiveRestarts: 'halflife_archive_restarts_total',
  viewApplied: 'halflife_view_applied_records_total',
  viewGroups: 'halflife_view_groups',
  viewMemory: 'halflife_view_memory_bytes',
  viewLate: 'halflife_view_late_events_total',
  checkpointDuration: 'halflife_view_checkpoint_duration_seconds',
  checkpointAge: 'halflife_view_checkpoint_age_seconds',
  freshness: 'halflife_view_freshness_seconds',
  liveClients: 'halflife_live_stream_clients',
  overloadPressure: 'halflife_overload_pressure',
  overloadShedLevel: 'halflife_overload_shed_level',
  alertGroups: 'halflife_alert_groups',
  alertNotifications: 'halflife_alert_notifications_total',
} as const;

type Labels = Record<string, string | number>;
type Sample = { labels: Labels; value: number; metricName?: string };

/** A metric read from the components when scraped (their totals since start), as prom-client renders it. */
function collected(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', samples: () => Promise<Sample[]> | Sample[]) {
  return {
    name,
    help,
    type,
    aggregator: 'sum' as const,
    async get() {
      return { name, help, type, aggregator: 'sum' as const, values: await samples() };
    },
    reset() {},
  };
}

function histogramSamples(name: string, h: HistogramSnapshot): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  h.bounds.forEach((le, i) => {
    cumulative += h.counts[i];
    out.push({ metricName: `${name}_bucket`, labels: { le }, value: cumulative });
  });
  out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels: {}, value: h.sum });
  out.push({ metricName: `${name}_count`, labels: {}, value: h.count });
  return out;
}

export interface ConstantLabels {
  environment: string;
  service: string;
  team: string;
  version: string;
}

export interface MetricsSources {
  readonly registry: SchemaRegistry;
  readonly ingestor: Ingestor;
  readonly log: { stats(): LogStats; lag(partition: number, from: number): number; readonly queuedBytes: number };
  readonly engine: EngineHost;
  readonly overload: OverloadMonitor;
  readonly liveClients: () => number;
  /** The archive's status (absent when it does not run here). */
  readonly archive?: () => ArchiveStatus | undefined;
  /** Alert groups by rule and state, and notifications by rule and result (absent until alerts exist). */
  readonly alerts?: () => { groups: { rule: string; state: string; count: number }[]; notifications: { rule: string; result: string; count: number }[] };
}

/**
 * Prometheus metrics (prom-client) with the four constant labels on every series. Counters and gauges are read from
 * the components when scraped; request latency, group commits and fsyncs are observed as they happen.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>;
  readonly #groupCommit: Histogram;
  readonly #fsync: Histogram;
  #ingestBytes = 0;
  #sources: MetricsSources | undefined;

  constructor(labels: ConstantLabels) {
    this.registry.setDefaultLabels({ ...labels });
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges with a `_total` suffix, which Prometheus reserves for counters (promtool says
    // so), and nodejs_version_info has a `version` label of its own that would hide the constant one.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total', 'nodejs_version_info']) {
      this.registry.removeSingleMetric(name);
    }
    this.httpDuration = new Histogram({
      name: METRIC.httpDuration,
      help: 'HTTP request duration by method, route pattern and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [this.registry],
    });
    this.#groupCommit = new Histogram({
      name: METRIC.groupCommitRecords,
      help: 'Records written per group commit of the event log (all partitions)',
      buckets: [1, 10, 100, 1000, 5000, 20_000, 100_000],
      registers: [this.registry],
    });
    this.#fsync = new Histogram({
      name: METRIC.fsyncDuration,
      help: 'Duration of one fdatasync of an event-log partition',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [this.registry],
    });
  }

  /** For the event log's options. */
  readonly logObserver: LogObserver = {
    groupCommitted: (records) => this.#groupCommit.observe(records),
    synced: (seconds) => this.#fsync.observe(seconds),
  };

  /** Request body bytes received by POST /v1/events. */
  countIngestBytes(bytes: number): void {
    this.#ingestBytes += bytes;
  }

  /** Connects the components read at scrape time (once they exist). */
  attach(s: MetricsSources): void {
    this.#sources = s;
    const r = this.registry;
    const reg = (m: ReturnType<typeof collected>) => r.registerMetric(m as never);
    reg(
      collected(METRIC.ingestEvents, 'Events received, by type and result (accepted, duplicate, rejected with the error code as reason, shed with the overload signal as reason)', 'counter', () => {
        const sums = new Map<string, Sample>();
        for (const o of s.ingestor.outcomes()) {
          const labels = { type: o.type, result: o.result, reason: o.reason };
          const k = JSON.stringify(labels);
          const cur = sums.get(k);
          if (cur === undefined) sums.set(k, { labels, value: o.count });
          else cur.value += o.count;
        }
        return [...sums.values()];
      }),
    );
    reg(collected(METRIC.ingestBytes, 'Request body bytes received for ingestion', 'counter', () => [{ labels: {}, value: this.#ingestBytes }]));
    reg(
      collected(METRIC.ingestRequestsShed, 'Requests shed on arrival by their declared priority, before their body was read', 'counter', () =>
        Object.entries(s.overload.shedRequests()).flatMap(([priority, reasons]) => Object.entries(reasons).map(([reason, value]) => ({ labels: { priority, reason }, value }))),
      ),
    );
    reg(
      collected(METRIC.deadLetters, 'Dead letters written, by error code', 'counter', () =>
        Object.entries(s.ingestor.deadLetterCounts()).map(([code, value]) => ({ labels: { code }, value })),
      ),
    );
    reg(collected(METRIC.deadLettersDropped, 'Rejected events whose dead letter was not kept: their sender was past ingest.deadLetterBytesPerS', 'counter', () => [{ labels: {}, value: s.ingestor.deadLettersDropped }]));
    reg(collected(METRIC.archiveEvents, 'Events written to Parquet by the archive since start', 'counter', () => [{ labels: {}, value: s.archive?.()?.archived ?? 0 }]));
    reg(collected(METRIC.archiveRestarts, 'Times the archive thread exited unasked and was started again from its committed positions', 'counter', () => [{ labels: {}, value: s.archive?.()?.restarts ?? 0 }]));
    reg(collected(METRIC.engineRestarts, 'Times an engine worker thread exited unasked (a crash) and was restarted from its checkpoints', 'counter', () => [{ labels: {}, value: s.engine.restarts }]));
    reg(collected(METRIC.logEndOffset, 'Position after the newest record of each event-log partition (opaque: ordered, not a count)', 'gauge', () => s.log.stats().partitions.map((p) => ({ labels: { partition: p.partition }, value: p.nextOffset }))));
    reg(collected(METRIC.logSize, 'Bytes on disk of each event-log partition', 'gauge', () => s.log.stats().partitions.map((p) => ({ labels: { partition: p.partition }, value: p.bytes }))));
    reg(collected(METRIC.logQueued, 'Bytes waiting for the next group commit', 'gauge', () => [{ labels: {}, value: s.log.queuedBytes }]));
    const infos = () => s.engine.infos().catch(() => []);
    reg(
      collected(METRIC.consumerLag, 'Records of each partition a consumer (a view) has not applied yet', 'gauge', async () => {
        const views = (await infos()).flatMap((v) => v.offsets.map((o, p) => ({ labels: { consumer: `view.${v.name}`, partition: p }, value: s.log.lag(p, o) })));
        const archive = Object.entries(s.archive?.()?.lag ?? {}).map(([p, value]) => ({ labels: { consumer: 'archive', partition: Number(p) }, value }));
        return [...views, ...archive];
      }),
    );
    reg(collected(METRIC.viewApplied, 'Records a view has applied since it started (rate: the engine\'s events/s)', 'counter', async () => (await infos()).map((v) => ({ labels: { view: v.name }, value: v.appliedRecords }))));
    reg(collected(METRIC.viewGroups, 'Rows (groups by key and window) a view holds', 'gauge', async () => (await infos()).map((v) => ({ labels: { view: v.name }, value: v.rows }))));
    reg(collected(METRIC.viewMemory, 'Approximate memory a view\'s state takes', 'gauge', async () => (await infos()).map((v) => ({ labels: { view: v.name }, value: v.memoryBytes }))));
    reg(collected(METRIC.viewLate, 'Events that arrived after their window closed, by view', 'counter', async () => (await infos()).map((v) => ({ labels: { view: v.name }, value: v.lateEvents }))));
    reg(
      collected(METRIC.checkpointDuration, 'How long the last checkpoint of a view took', 'gauge', async () =>
        (await infos()).filter((v) => v.lastCheckpointDurationMs !== null).map((v) => ({ labels: { view: v.name }, value: v.lastCheckpointDurationMs! / 1000 })),
      ),
    );
    reg(
      collected(METRIC.checkpointAge, 'Time since the last checkpoint of a view (what a crash would replay)', 'gauge', async () =>
        (await infos()).filter((v) => v.lastCheckpointMs !== null).map((v) => ({ labels: { view: v.name }, value: Math.max(0, Date.now() - v.lastCheckpointMs!) / 1000 })),
      ),
    );
    reg(
      collected(METRIC.freshness, 'Time from an event\'s arrival (received_at) to its being visible in the views', 'histogram', async () => {
        try {
          return histogramSamples(METRIC.freshness, await s.engine.freshness());
        } catch {
          return [];
        }
      }),
    );
    reg(collected(METRIC.liveClients, 'Live view streams (Server-Sent Events) open', 'gauge', () => [{ labels: {}, value: s.liveClients() }]));
    reg(collected(METRIC.overloadPressure, 'Overload pressure: the largest of the signals as a share of its bound, by signal', 'gauge', () => Object.entries(s.overload.status().signals).map(([signal, value]) => ({ labels: { signal }, value }))));
    reg(collected(METRIC.overloadShedLevel, 'What is shed now: 0 nothing, 1 low-priority events, 2 low and normal', 'gauge', () => [{ labels: {}, value: s.overload.status().shed }]));
    reg(collected(METRIC.alertGroups, 'Alert groups by rule and state (pending, firing)', 'gauge', () => s.alerts?.().groups.map((g) => ({ labels: { rule: g.rule, state: g.state }, value: g.count })) ?? []));
    reg(
      collected(METRIC.alertNotifications, 'Alert notifications by rule and result (sent, failed)', 'counter', () =>
        s.alerts?.().notifications.map((n) => ({ labels: { rule: n.rule, result: n.result }, value: n.count })) ?? [],
      ),
    );
  }

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Current values of one metric, for alert rules over metrics. */
  async samples(name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
    const m = this.registry.getSingleMetric(name);
    if (m === undefined) return [];
    const got = await m.get();
    return got.values.filter((v) => (v as { metricName?: string }).metricName === undefined || (v as { metricName?: string }).metricName === name).map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value }));
  }

  get attached(): boolean {
    return this.#sources !== undefined;
  }
}

import { readFile, rename } from 'node:fs/promises';
import { HalflifeError, LifecycleState, silentLogger, type Clock, type Logger, kvName, kvToken, type KvChange, type KvStore, type KvWatch } from '../core/index.js';
import { redactUrl, type WebhookOptions, type WebhookSender } from '../sinks/index.js';
import { compareWith, validateRule, type AlertRule, type AlertRuleSpec } from './rule.js';
import './errors.js';

export type AlertState = 'pending' | 'firing';

/** One group of a rule that currently matches. */
export interface AlertGroup {
  readonly labels: Readonly<Record<string, string>>;
  readonly values: Readonly<Record<string, unknown>>;
  readonly state: AlertState;
  /** When the group started to match (ISO). */
  readonly activeSince: string;
  readonly firedAt: string | null;
}

export interface AlertRuleInfo {
  readonly name: string;
  readonly source: 'config' | 'api';
  readonly rule: AlertRuleSpec;
  readonly lastEvaluatedAt: string | null;
  /** Why the last evaluation failed (the view was dropped, the SQL no longer plans), if it did. */
  readonly lastError: string | null;
  readonly groups: readonly AlertGroup[];
  readonly notifications: { readonly sent: number; readonly failed: number };
}

/** A state change, kept in a short history: `cleared` is a pending group that stopped matching before firing. */
export interface AlertTransition {
  readonly at: string;
  readonly rule: string;
  readonly state: 'pending' | 'firing' | 'resolved' | 'cleared';
  readonly labels: Readonly<Record<string, string>>;
  readonly values: Readonly<Record<string, unknown>>;
}

/** What a webhook receives. */
export interface AlertNotification {
  readonly rule: string;
  readonly state: 'firing' | 'resolved';
  readonly severity: string;
  /** The rule's labels and the group's (with `alertname` and `severity`). */
  readonly labels: Readonly<Record<string, string>>;
  readonly values: Readonly<Record<string, unknown>>;
  /** When the group fired (ISO); `ended_at` when it was resolved (snake_case, as in event records). */
  readonly started_at: string;
  readonly ended_at: string | null;
  /** True for the reminders of a group still firing (the rule's `repeat`). */
  readonly repeated: boolean;
}

export interface AlertManagerOptions {
  /** Where rules made through the API persist (`alerts.<name>`), watched so a rule saved on another node applies here. */
  readonly kv: KvStore;
  /** An `alerts.json` of the layout before the state store, imported once and renamed `alerts.json.imported`. */
  readonly importFile?: string;
  /** Rules from the config, by name. */
  readonly configRules: Readonly<Record<string, unknown>>;
  /** Runs a SELECT over views. */
  readonly runSql: (sql: string) => Promise<{ readonly columns: readonly string[]; readonly rows: readonly Record<string, unknown>[] }>;
  /** The series of a metric (GET /metrics) now. */
  readonly metricSamples: (name: string) => Promise<{ labels: Record<string, string | number>; value: number }[]>;
  /** Labels every series carries (environment, service…): not part of a metric group's identity. */
  readonly constantLabels?: readonly string[];
  readonly webhooks: WebhookSender;
  /** Retries of webhook deliveries (default: 4 attempts, 500 ms doubling, 5 s timeout). */
  readonly delivery?: WebhookOptions;
  readonly clock: Clock;
  readonly logger?: Logger;
  /** How often every rule is evaluated (ms). */
  readonly intervalMs: number;
}

interface Group {
  labels: Record<string, string>;
  values: Record<string, unknown>;
  state: AlertState;
  activeSinceMs: number;
  firedAtMs: number | null;
  lastNotifiedMs: number | null;
}

interface Runtime {
  rule: AlertRule;
  source: 'config' | 'api';
  groups: Map<string, Group>;
  lastEvaluatedMs: number | null;
  lastError: string | null;
  sent: number;
  failed: number;
  /** Deliveries of one rule go out in order (a group's firing before its resolution). */
  delivery: Promise<void>;
}

const HISTORY = 200;

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Alert rules over views (a SELECT: each row returned is a firing group) or metrics (a threshold per series),
 * evaluated every `intervalMs`. A group fires once it has matched for the rule's `for` (so a blip does not notify),
 * is reminded every `repeat` while it fires, and is resolved when it stops matching; each change goes to the log and
 * to the rule's webhook (retried with backoff, failures counted).
 */
export class AlertManager {
  readonly #o: AlertManagerOptions;
  readonly #logger: Logger;
  readonly #rules = new Map<string, Runtime>();
  readonly #history: AlertTransition[] = [];
  readonly #state = new LifecycleState('alerts');
  #timer: NodeJS.Timeout | undefined;
  #evaluating: Promise<void> | undefined;
  #writes: Promise<unknown> = Promise.resolve();
  #watch: KvWatch | undefined;

  constructor(options: AlertManagerOptions) {
    this.#o = options;
    this.#logger = options.logger ?? silentLogger;
  }

  async start(): Promise<void> {
    this.#state.assertOpen();
    for (const [name, spec] of Object.entries(this.#o.configRules)) this.#install(this.#validate(name, spec), 'config');
    if (this.#o.importFile !== undefined) await this.#import(this.#o.importFile);
    this.#watch = await this.#o.kv.watch('alerts', (change) => this.#applyChange(change));
    for (const key of await this.#o.kv.keys('alerts')) {
      const entry = await this.#o.kv.get(key);
      if (entry !== undefined) this.#install(this.#validate(nameOf(key), decode(entry.value)), 'api');
    }
    this.#timer = setInterval(() => void this.evaluate(), this.#o.intervalMs);
    this.#timer.unref();
  }

  /** Imports the rules of an `alerts.json` (the layout before the state store), then renames the file. */
  async #import(file: string): Promise<void> {
    let rules: Record<string, unknown>;
    try {
      rules = (JSON.parse(await readFile(file, 'utf8')) as { rules: Record<string, unknown> }).rules;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const [name, spec] of Object.entries(rules)) if ((await this.#o.kv.get(ruleKey(name))) === undefined) await this.#o.kv.put(ruleKey(name), encode(spec));
    await rename(file, `${file}.imported`);
    this.#logger.info({ from: file, rules: Object.keys(rules).length }, 'alerts: imported alerts.json into the state store');
  }

  /** A rule saved or deleted on any node (this one included): the same here. */
  #applyChange(change: KvChange): void {
    const name = nameOf(change.key);
    const current = this.#rules.get(name);
    if (change.value === undefined) {
      if (current?.source === 'api') this.#remove(name, current);
      return;
    }
    const spec = decode(change.value);
    if (current !== undefined && JSON.stringify(current.rule.spec) === JSON.stringify(spec)) return;
    try {
      this.#install(this.#validate(name, spec), 'api');
    } catch (err) {
      this.#logger.error({ rule: name, err }, 'alerts: a rule saved elsewhere is not valid here');
    }
  }

  #install(rule: AlertRule, source: 'config' | 'api'): void {
    const before = this.#rules.get(rule.name);
    this.#rules.set(rule.name, {
      rule,
      source,
      // A replaced rule keeps its groups: what fires goes on firing (and is resolved) under the new definition.
      groups: before?.groups ?? new Map(),
      lastEvaluatedMs: null,
      lastError: null,
      sent: before?.sent ?? 0,
      failed: before?.failed ?? 0,
      delivery: before?.delivery ?? Promise.resolve(),
    });
  }

  /** Creates or replaces a rule; its SQL is run once first, so a rule that cannot run is refused. */
  async put(name: string, spec: unknown): Promise<AlertRuleInfo> {
    this.#state.assertOpen();
    const rule = this.#validate(name, spec);
    if (rule.kind === 'sql') await this.#o.runSql(rule.spec.sql!);
    this.#install(rule, 'api');
    await this.#persist(name, rule.spec);
    this.#logger.info({ rule: name }, 'alert rule saved');
    await this.#evaluateRule(this.#rules.get(name)!);
    return this.info(name);
  }

  /** A rule's shape, and a webhook the sender may call (alerts.allowedWebhookHosts). */
  #validate(name: string, spec: unknown): AlertRule {
    const rule = validateRule(name, spec);
    const url = rule.spec.webhook?.url;
    const refused = url === undefined ? undefined : this.#o.webhooks.refusal(url);
    if (refused !== undefined) throw new HalflifeError('ALERT_INVALID', { name, reason: `webhook.url: ${refused}` });
    return rule;
  }

  /** Removes a rule; groups it had firing are resolved. */
  async delete(name: string): Promise<void> {
    this.#state.assertOpen();
    const rt = this.#rules.get(name);
    if (rt === undefined) throw new HalflifeError('ALERT_NOT_FOUND', { name });
    this.#remove(name, rt);
    await this.#persist(name, undefined);
    await rt.delivery;
  }

  /** Drops a rule; groups it had firing are resolved. */
  #remove(name: string, rt: Runtime): void {
    for (const [key, g] of rt.groups) this.#leave(rt, key, g, this.#o.clock.now());
    this.#rules.delete(name);
  }

  /** Saves (or with no spec, deletes) a rule made through the API, in order with the others. */
  #persist(name: string, spec: unknown): Promise<void> {
    const run = this.#writes.then(() => (spec === undefined ? this.#o.kv.delete(ruleKey(name)) : this.#o.kv.put(ruleKey(name), encode(spec)).then(() => {})));
    this.#writes = run.catch(() => {});
    return run;
  }

  info(name: string): AlertRuleInfo {
    const rt = this.#rules.get(name);
    if (rt === undefined) throw new HalflifeError('ALERT_NOT_FOUND', { name });
    return {
      name,
      source: rt.source,
      // Webhook URLs carry secrets (tokens in the query, passwords): answers show them redacted.
      rule: rt.rule.spec.webhook === undefined ? rt.rule.spec : { ...rt.rule.spec, webhook: { ...rt.rule.spec.webhook, url: redactUrl(rt.rule.spec.webhook.url) } },
      lastEvaluatedAt: rt.lastEvaluatedMs === null ? null : iso(rt.lastEvaluatedMs),
      lastError: rt.lastError,
      groups: [...rt.groups.values()].map((g) => ({ labels: g.labels, values: g.values, state: g.state, activeSince: iso(g.activeSinceMs), firedAt: g.firedAtMs === null ? null : iso(g.firedAtMs) })),
      notifications: { sent: rt.sent, failed: rt.failed },
    };
  }

  list(): AlertRuleInfo[] {
    return [...this.#rules.keys()].sort().map((n) => this.info(n));
  }

  /** The most recent state changes, newest last. */
  history(): readonly AlertTransition[] {
    return this.#history;
  }

  /** Groups by rule and state, notifications by rule and result (metrics). */
  counts(): { groups: { rule: string; state: string; count: number }[]; notifications: { rule: string; result: string; count: number }[] } {
    const groups: { rule: string; state: string; count: number }[] = [];
    const notifications: { rule: string; result: string; count: number }[] = [];
    for (const [rule, rt] of this.#rules) {
      for (const state of ['pending', 'firing'] as const) groups.push({ rule, state, count: [...rt.groups.values()].filter((g) => g.state === state).length });
      notifications.push({ rule, result: 'sent', count: rt.sent }, { rule, result: 'failed', count: rt.failed });
    }
    return { groups, notifications };
  }

  /** Evaluates every rule now (also on the timer); a call during an evaluation waits for it. */
  evaluate(): Promise<void> {
    this.#evaluating ??= (async () => {
      for (const rt of [...this.#rules.values()]) await this.#evaluateRule(rt);
    })().finally(() => (this.#evaluating = undefined));
    return this.#evaluating;
  }

  async #evaluateRule(rt: Runtime): Promise<void> {
    const now = this.#o.clock.now();
    let matches: Map<string, { labels: Record<string, string>; values: Record<string, unknown> }>;
    try {
      matches = rt.rule.kind === 'sql' ? await this.#sqlGroups(rt.rule) : await this.#metricGroups(rt.rule);
    } catch (err) {
      const reason = (err as Error).message;
      if (rt.lastError !== reason) this.#logger.error({ rule: rt.rule.name, err: reason }, `alert rule ${rt.rule.name} could not be evaluated; its groups keep their state`);
      rt.lastError = reason;
      rt.lastEvaluatedMs = now;
      return;
    }
    rt.lastError = null;
    rt.lastEvaluatedMs = now;
    for (const [key, m] of matches) {
      let g = rt.groups.get(key);
      if (g === undefined) {
        g = { labels: m.labels, values: m.values, state: 'pending', activeSinceMs: now, firedAtMs: null, lastNotifiedMs: null };
        rt.groups.set(key, g);
        this.#record(rt.rule.name, 'pending', g);
      }
      g.values = m.values;
      if (g.state === 'pending' && now - g.activeSinceMs >= rt.rule.forMs) {
        g.state = 'firing';
        g.firedAtMs = now;
        g.lastNotifiedMs = now;
        this.#record(rt.rule.name, 'firing', g);
        this.#notify(rt, g, 'firing', false, now);
      } else if (g.state === 'firing' && rt.rule.repeatMs > 0 && g.lastNotifiedMs !== null && now - g.lastNotifiedMs >= rt.rule.repeatMs) {
        g.lastNotifiedMs = now;
        this.#notify(rt, g, 'firing', true, now);
      }
    }
    for (const [key, g] of rt.groups) if (!matches.has(key)) this.#leave(rt, key, g, now);
  }

  /** A group that stopped matching: resolved if it fired, cleared (not notified) if it was pending. */
  #leave(rt: Runtime, key: string, g: Group, now: number): void {
    rt.groups.delete(key);
    if (g.state === 'pending') {
      this.#record(rt.rule.name, 'cleared', g);
      return;
    }
    this.#record(rt.rule.name, 'resolved', g);
    this.#notify(rt, g, 'resolved', false, now);
  }

  async #sqlGroups(rule: AlertRule) {
    const { columns, rows } = await this.#o.runSql(rule.spec.sql!);
    const out = new Map<string, { labels: Record<string, string>; values: Record<string, unknown> }>();
    for (const row of rows) {
      const keyColumns = rule.spec.groupBy ?? columns.filter((c) => typeof row[c] === 'string');
      const labels: Record<string, string> = {};
      const values: Record<string, unknown> = {};
      for (const c of columns) {
        if (keyColumns.includes(c)) labels[c] = row[c] === null || row[c] === undefined ? '' : String(row[c]);
        else values[c] = row[c];
      }
      out.set(groupKey(labels), { labels, values });
    }
    return out;
  }

  async #metricGroups(rule: AlertRule) {
    const constant = new Set(this.#o.constantLabels ?? []);
    const out = new Map<string, { labels: Record<string, string>; values: Record<string, unknown> }>();
    for (const s of await this.#o.metricSamples(rule.spec.metric!)) {
      if (!compareWith(rule.op, s.value, rule.spec.threshold!)) continue;
      const labels: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.labels)) {
        if (constant.has(k) || (rule.spec.groupBy !== undefined && !rule.spec.groupBy.includes(k))) continue;
        labels[k] = String(v);
      }
      const key = groupKey(labels);
      // Several series in one group (groupBy drops labels): the group holds the largest value.
      const prev = out.get(key);
      if (prev === undefined || (prev.values.value as number) < s.value) out.set(key, { labels, values: { value: s.value } });
    }
    return out;
  }

  #record(rule: string, state: AlertTransition['state'], g: Group): void {
    this.#history.push({ at: iso(this.#o.clock.now()), rule, state, labels: g.labels, values: g.values });
    if (this.#history.length > HISTORY) this.#history.splice(0, this.#history.length - HISTORY);
  }

  #notify(rt: Runtime, g: Group, state: 'firing' | 'resolved', repeated: boolean, now: number): void {
    const rule = rt.rule;
    const body: AlertNotification = {
      rule: rule.name,
      state,
      severity: rule.severity,
      labels: { alertname: rule.name, severity: rule.severity, ...rule.labels, ...g.labels },
      values: g.values,
      started_at: iso(g.firedAtMs ?? g.activeSinceMs),
      ended_at: state === 'resolved' ? iso(now) : null,
      repeated,
    };
    const log = { rule: rule.name, state, labels: body.labels, values: body.values, repeated };
    if (state === 'firing') this.#logger.warn(log, `alert ${rule.name} firing${describe(g.labels)}`);
    else this.#logger.info(log, `alert ${rule.name} resolved${describe(g.labels)}`);
    const hook = rule.spec.webhook;
    if (hook === undefined) return;
    rt.delivery = rt.delivery.then(async () => {
      const result = await this.#o.webhooks.send(hook.url, body, { ...this.#o.delivery, ...(hook.timeoutMs === undefined ? {} : { timeoutMs: hook.timeoutMs }) });
      if (result.delivered) rt.sent++;
      else {
        rt.failed++;
        this.#logger.error({ rule: rule.name, state, url: redactUrl(hook.url), attempts: result.attempts, error: result.error }, `alert ${rule.name}: webhook delivery failed after ${result.attempts} attempts (${result.error})`);
      }
    });
  }

  /**
   * Stops evaluating and waits for deliveries in progress, at most `deliveryGraceMs`: a webhook that is down (retried
   * for up to ~25 s) must not hold up a shutdown.
   */
  close(deliveryGraceMs = 2000): Promise<void> {
    return this.#state.close(async () => {
      clearInterval(this.#timer);
      await this.#watch?.stop();
      await this.#evaluating;
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), deliveryGraceMs)));
      const done = await Promise.race([Promise.all([...this.#rules.values()].map((r) => r.delivery)), grace]);
      clearTimeout(timer);
      if (done === 'late') this.#logger.warn({ graceMs: deliveryGraceMs }, 'alerts: stopped with webhook deliveries still retrying; they are dropped');
      await this.#writes;
    });
  }
}

function groupKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function describe(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
}

const ruleKey = (name: string) => `alerts.${kvToken(name)}`;
const nameOf = (key: string) => kvName(key.slice('alerts.'.length));
const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const decode = (bytes: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(bytes));

import { readFile } from 'node:fs/promises';
import { HalflifeClient } from '../../../sdk/index.js';
import type { DeadLetter, SchemaDetail } from '../../../sdk/index.js';
import { bytes, human, table, type Io } from '../output.js';

export interface OutputFlags {
  json?: boolean | undefined;
}

const iso = (ms: number) => new Date(ms).toISOString();

export async function schemaAdd(client: HalflifeClient, type: string, file: string, io: Io): Promise<number> {
  let schema: unknown;
  try {
    schema = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    io.err(`halflife: cannot read a JSON schema from ${file}: ${(err as Error).message}\n`);
    return 2;
  }
  const res = await client.registerSchema(type, schema);
  io.out(res.created ? `registered ${type} version ${res.version}\n` : `${type} is unchanged (version ${res.version})\n`);
  return 0;
}

export async function schemaList(client: HalflifeClient, flags: OutputFlags, io: Io): Promise<number> {
  const schemas = await client.listSchemas();
  if (flags.json) io.out(JSON.stringify(schemas, null, 2) + '\n');
  else if (schemas.length === 0) io.out('no schemas registered (halflife schema add <type> <file>)\n');
  else io.out(table(schemas.map((s) => [s.type, s.latestVersion, s.versions, s.compatibility]), ['TYPE', 'LATEST', 'VERSIONS', 'COMPATIBILITY']));
  return 0;
}

export async function schemaShow(client: HalflifeClient, type: string, version: number | undefined, flags: OutputFlags, io: Io): Promise<number> {
  const s = await client.getSchema(type, version);
  if (flags.json) {
    io.out(JSON.stringify(s, null, 2) + '\n');
    return 0;
  }
  const detail = s as SchemaDetail;
  io.out(`type: ${s.type}\nversion: ${s.version}\nregistered: ${s.registeredAt}\n`);
  if (detail.versions !== undefined) io.out(`versions: ${detail.versions.join(', ')}\ncompatibility: ${detail.compatibility}\n`);
  io.out(JSON.stringify(s.schema, null, 2) + '\n');
  return 0;
}

/** Shows the type's compatibility setting, or sets it (`none` accepts any new version, `backward` checks). */
export async function schemaConfig(client: HalflifeClient, type: string, compatibility: 'none' | 'backward' | undefined, flags: OutputFlags, io: Io): Promise<number> {
  const res = compatibility === undefined ? await client.getCompatibility(type) : await client.setCompatibility(type, compatibility);
  if (flags.json) io.out(JSON.stringify(res) + '\n');
  else io.out(compatibility === undefined ? `${res.type}: compatibility ${res.compatibility}\n` : `${res.type}: compatibility set to ${res.compatibility}\n`);
  return 0;
}

export async function streams(client: HalflifeClient, flags: OutputFlags, io: Io): Promise<number> {
  const s = await client.streams();
  if (flags.json) {
    io.out(JSON.stringify(s, null, 2) + '\n');
    return 0;
  }
  io.out(table(s.partitions.map((p) => [p.partition, p.firstOffset, p.nextOffset, p.records, bytes(p.bytes)]), ['PARTITION', 'FIRST', 'NEXT', 'RECORDS', 'SIZE']));
  io.out(`total: ${s.records} records, ${bytes(s.bytes)}\n`);
  return 0;
}

/** `halflife cluster status`: the processes, the servers and stream behind the log, partitions with lag, warnings. */
export async function clusterStatus(client: HalflifeClient, flags: OutputFlags, io: Io): Promise<number> {
  const s = await client.clusterStatus();
  if (flags.json) {
    io.out(JSON.stringify(s, null, 2) + '\n');
    return 0;
  }
  io.out(`backend: ${s.backend === 'nats' ? 'NATS JetStream' : 'files (one process)'}\n`);
  if (s.nats !== undefined) {
    const st = s.nats.stream;
    io.out(`servers: ${s.nats.servers} (nats-server ${s.nats.serverVersion}${st.cluster === null ? ', no cluster' : `, cluster ${st.cluster}`})\n`);
    io.out(`stream ${st.name}: ${st.replicas} replica${st.replicas === 1 ? '' : 's'}, ${st.messages} messages, ${bytes(st.bytes)}${st.leader === null ? '' : `, leader ${st.leader}`}\n`);
    for (const p of st.peers) io.out(`  replica ${p.name}: ${p.offline ? 'offline' : p.current ? 'current' : `${p.lagMessages} messages behind`}\n`);
  }
  io.out('\n');
  io.out(table(s.nodes.map((n) => [n.id === s.node ? `${n.id} (this)` : n.id, n.host, n.pid, n.role, n.version, n.startedAt, `${(n.heartbeatAgeMs / 1000).toFixed(1)} s`]), ['NODE', 'HOST', 'PID', 'ROLE', 'VERSION', 'STARTED', 'SEEN']));
  io.out('\n');
  const views = [...new Set(s.partitions.flatMap((p) => Object.keys(p.lag)))].sort();
  const lease = (p: (typeof s.partitions)[number]) => (p.leaseToken === undefined ? '-' : `token ${p.leaseToken}, ${((p.leaseAgeMs ?? 0) / 1000).toFixed(1)} s`);
  io.out(
    table(
      s.partitions.map((p) => [p.partition, p.records, p.owner ?? 'none', lease(p), views.length === 0 ? '-' : views.map((v) => (p.lag[v] === undefined ? '' : `${v} ${p.lag[v]}`)).filter((x) => x !== '').join(', ') || '(elsewhere)']),
      ['PARTITION', 'RECORDS', 'OWNER', 'LEASE', 'LAG (per view)'],
    ),
  );
  if (s.warnings.length > 0) io.out(`\nwarnings:\n${s.warnings.map((w) => `  - ${w}`).join('\n')}\n`);
  return 0;
}

export interface DlqFlags extends OutputFlags {
  type?: string | undefined;
  code?: string | undefined;
  since?: string | undefined;
  limit?: string | undefined;
}

export async function dlqList(client: HalflifeClient, flags: DlqFlags, io: Io): Promise<number> {
  const page = await client.deadLetters({
    type: flags.type,
    code: flags.code,
    since: flags.since,
    limit: flags.limit === undefined ? 50 : Number(flags.limit),
  });
  if (flags.json) {
    io.out(JSON.stringify(page, null, 2) + '\n');
    return 0;
  }
  if (page.deadletters.length === 0) {
    io.out('no dead letters match\n');
    return 0;
  }
  const short = (d: DeadLetter) => (d.raw.length > 60 ? `${d.raw.slice(0, 57)}...` : d.raw);
  io.out(
    table(
      page.deadletters.map((d) => [d.id, iso(d.received_at), d.code, d.type ?? '-', d.path, d.replayed ? 'yes' : '', d.message]),
      ['ID', 'RECEIVED', 'CODE', 'TYPE', 'PATH', 'REPLAYED', 'MESSAGE'],
    ),
  );
  if (page.deadletters.length > 0) io.out(`\nfirst input: ${short(page.deadletters[0])}\n`);
  if (page.next !== null) io.out(`more: halflife dlq list --limit ${flags.limit ?? 50} (next id ${page.next}); use --json for all fields\n`);
  return 0;
}

export async function dlqReplay(client: HalflifeClient, flags: DlqFlags, io: Io): Promise<number> {
  const res = await client.replayDeadLetters({ type: flags.type, code: flags.code, since: flags.since });
  if (flags.json) io.out(JSON.stringify(res) + '\n');
  else io.out(`replayed ${res.replayed}, still failing ${res.failed}, skipped ${res.skipped} (replayed before)${res.refused > 0 ? `, refused ${res.refused} (types their sending key may not write)` : ''}\n`);
  return 0;
}

export interface TailFlags {
  type?: string | undefined;
  /** Start at this time (epoch ms or ISO-8601) instead of the beginning of the log. */
  since?: string | undefined;
  /** Keep printing new events until `signal` aborts; otherwise stop at the end of what is stored. */
  follow?: boolean | undefined;
  iso?: boolean | undefined;
  /** How often --follow asks for new events. */
  pollMs?: number;
}

/** Prints the stored events as NDJSON, then (with follow) the new ones as they arrive, until aborted. */
export async function tail(client: HalflifeClient, flags: TailFlags, io: Io, signal?: AbortSignal): Promise<number> {
  let cursor: string | undefined;
  const time = flags.iso ? 'iso' : undefined;
  for (;;) {
    if (signal?.aborted) return 0;
    const page = await client.readEvents({ cursor, since: cursor === undefined ? flags.since : undefined, type: flags.type, limit: 1000, time });
    for (const r of page.records) io.out(JSON.stringify(r) + '\n');
    cursor = page.next;
    if (page.records.length === 0) {
      if (flags.follow !== true) return 0;
      await sleep(flags.pollMs ?? 500, signal);
    }
  }
}

/** Waits, or less if the signal aborts first. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export { human };

export async function viewCreate(client: HalflifeClient, name: string, sql: string, replace: boolean, flags: OutputFlags, io: Io): Promise<number> {
  const info = await client.createView(name, sql, replace);
  if (flags.json) io.out(JSON.stringify(info, null, 2) + '\n');
  else io.out(`created view ${info.name} over ${info.source}: columns ${info.columns.join(', ')}\n`);
  return 0;
}

export async function viewList(client: HalflifeClient, flags: OutputFlags, io: Io): Promise<number> {
  const views = await client.listViews();
  if (flags.json) io.out(JSON.stringify(views, null, 2) + '\n');
  else if (views.length === 0) io.out('no views (halflife view create <name> --sql "CREATE VIEW …")\n');
  else {
    io.out(
      table(
        views.map((v) => [v.name, v.source, v.window.kind, v.rows, bytes(v.memoryBytes), v.lag, `${(v.progress * 100).toFixed(0)}%`, v.lateEvents]),
        ['VIEW', 'SOURCE', 'WINDOW', 'ROWS', 'MEMORY', 'LAG', 'BACKFILL', 'LATE'],
      ),
    );
  }
  return 0;
}

export async function viewDrop(client: HalflifeClient, name: string, io: Io): Promise<number> {
  await client.dropView(name);
  io.out(`dropped view ${name}\n`);
  return 0;
}

const cell = (v: unknown) => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** `halflife sql "<query>"`: SQL over all history, as an aligned table, CSV (--csv) or the raw answer (--json). */
export async function sql(client: HalflifeClient, text: string, flags: OutputFlags & { csv?: boolean | undefined }, io: Io): Promise<number> {
  const res = await client.sql(text);
  if (flags.json) io.out(JSON.stringify(res, null, 2) + '\n');
  else if (flags.csv) {
    const field = (v: unknown) => {
      if (v === null || v === undefined) return '';
      const s = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
      return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    };
    io.out([res.columns.map((c) => field(c.name)).join(','), ...res.rows.map((r) => r.map(field).join(','))].join('\n') + '\n');
  } else {
    io.out(table(res.rows.map((r) => r.map((v) => cell(v))), res.columns.map((c) => c.name)));
    io.out(`(${res.rows.length} row${res.rows.length === 1 ? '' : 's'}${res.truncated ? ', truncated at history.maxRows' : ''})\n`);
  }
  return 0;
}

export async function query(client: HalflifeClient, sql: string, flags: OutputFlags & { iso?: boolean | undefined }, io: Io): Promise<number> {
  const res = await client.query(sql, flags.iso ? { time: 'iso' } : {});
  if (flags.json) io.out(JSON.stringify(res, null, 2) + '\n');
  else {
    io.out(table(res.rows.map((r) => res.columns.map((c) => cell(r[c]))), res.columns));
    io.out(`(${res.rows.length} row${res.rows.length === 1 ? '' : 's'})\n`);
  }
  return 0;
}

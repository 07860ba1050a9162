import { parseArgs, type ParseArgsConfig } from 'node:util';
import { HalflifeApiError, HalflifeClient } from '../../sdk/index.js';
import { HalflifeError, packageVersion } from '../core/index.js';
import { readFile } from 'node:fs/promises';
import { clusterStatus, dlqList, dlqReplay, query, sql, schemaAdd, schemaConfig, schemaList, schemaShow, streams, tail, viewCreate, viewDrop, viewList } from './commands/client-commands.js';
import { init } from './commands/init.js';
import { keysCreate, keysList, keysRevoke, type KeysTarget } from './commands/keys.js';
import { loadConfig, type HalflifeConfig } from '../config/index.js';
import { send } from './commands/send.js';
import { repair } from './commands/repair.js';
import { serve } from './commands/serve.js';
import { processIo, type Io } from './output.js';

/** Each command's usage, printed by `halflife <command> --help` and after a usage error in that command. */
const COMMANDS = {
  serve: `halflife serve [--config F] [--data DIR] [--host H] [--port N] [--nats URL[,URL...]] [--role ROLE]
  Start the server (default 127.0.0.1:7070, data in ./halflife-data). A start-up failure (port in use, data folder
  locked or not writable, config unreadable or invalid, a damaged log segment) exits 2 with one line.
  --nats (or HALFLIFE_NATS): keep the event log, dead letters, schemas, alert rules and consumer positions on that
  NATS JetStream cluster (nats.replicas copies, default 3; 1 for a single server) instead of the data folder.
  --role (or HALFLIFE_CLUSTER_ROLE), with --nats: all (default), ingest (accepts events), worker (runs the views of
  the partitions it holds leases on) or query; every role answers view queries (docs/scale-out.md).
`,
  repair: `halflife repair [--config F] [--data DIR] [--dry-run]
  With the server stopped: scan every segment of the data folder's logs and move damaged bytes (a start-up that
  failed with SEGMENT_CORRUPT) into DIR/quarantine/, with a report of the offsets lost. The records after a damaged
  batch keep their offsets and new ones continue above every old one: an offset is never reused. --dry-run only
  reports. Exit 0 when the logs are consistent, 1 when damage remains that it cannot repair, 2 when the folder is in use.
`,
  init: `halflife init [DIR] [--force]
  Write a commented halflife.yaml, schemas/page_view.json, example events and HALFLIFE.md into DIR (default: here).
  Existing files are kept unless --force.
`,
  send: `halflife send <FILE|-> [--batch 1000] [--rate N] [--concurrency 2]
  Send events from FILE (NDJSON, one event per line, or a JSON array) or standard input (-) to POST /v1/events.
  Network errors, 429 and 5xx answers are retried (after Retry-After, at most 5 times, 30 s each); any other refusal
  stops sending. Exit 1 when an event was rejected or a request failed (the first rejections are printed).
`,
  schema: `halflife schema add <TYPE> <FILE.json>                  register a JSON Schema (draft 2020-12)
halflife schema list
halflife schema show <TYPE> [--version N]
halflife schema config <TYPE> [--compatibility none|backward]  show or set how new versions must relate to the last
`,
  dlq: `halflife dlq list [--type T] [--code C] [--since TIME] [--limit N]
halflife dlq replay [--type T] [--code C] [--since TIME]        re-validate and append what now passes
`,
  tail: `halflife tail [--type T] [--since TIME] [--follow] [--iso]
  Print the stored events as NDJSON and exit; with --follow (-f), keep printing new ones until interrupted.
  --since starts at a time (epoch ms or ISO-8601); --iso prints received_at and event_time as ISO-8601.
`,
  streams: `halflife streams
  Records and bytes per partition.
`,
  cluster: `halflife cluster status [--json]
  The processes sharing the log (host, pid, version, when last seen), the NATS servers and stream behind it (version,
  replicas, leader, how far each copy is behind), each partition's records and every view's lag in it, and warnings
  (fewer than 3 replicas, a server older than 2.10.23, a copy behind or offline, a process not seen lately).
`,
  view: `halflife view create <NAME> (--sql "CREATE VIEW …" | -f FILE.sql) [--replace]
halflife view list
halflife view drop <NAME>
`,
  query: `halflife query "SELECT … FROM <view> …" [--iso]
  Query views (sketches re-aggregated); --iso prints time columns (window_start, window_end, …) as ISO-8601.
`,
  sql: `halflife sql "SELECT … FROM <type> | events …" [--csv] [--json]
  SQL over all history (DuckDB): a table per event type and \`events\` over all of them, from the archive's Parquet
  files and the log's events not archived yet, so every acknowledged event is counted once. One SELECT at a time,
  no files outside the archive, history.queryTimeoutMs and history.maxRows apply (docs/archive.md).
`,
  keys: `halflife keys create --scope write|read|admin[,…] [--types T1,T2] [--origins https://…] [--rate N --burst N] [--name N]
halflife keys list
halflife keys revoke <ID>
  On the data folder (--data DIR, default: the config's), or on a running server with --url (or HALFLIFE_URL).
`,
  bench: `halflife bench [--quick] [--scenario …] [--json] [--generate N]
  Benchmarks next to Redis, NATS, PostgreSQL, DuckDB (from a source checkout with its dev dependencies).
`,
} as const;
type CommandName = keyof typeof COMMANDS;

const CLIENT_NOTE = `Client commands talk to --url (or HALFLIFE_URL, default http://127.0.0.1:7070) with the API key in --key (or
HALFLIFE_API_KEY); --json prints raw JSON.`;

const USAGE = `halflife — real-time event analytics: schema-validated ingest, durable log, dead letters

Usage:
${Object.values(COMMANDS)
  .map((u) => u.split('\n').filter((l) => l.startsWith('halflife ')).map((l) => `  ${l}`).join('\n'))
  .join('\n')}

${CLIENT_NOTE} "keys" works on the data folder unless --url or HALFLIFE_URL is given.
"halflife <command> --help" describes a command.
Exit codes: 0 ok, 1 failed, 2 bad usage or configuration.
`;

function commandUsage(name: CommandName): string {
  const client = !['serve', 'repair', 'init', 'bench'].includes(name);
  return `Usage:\n${COMMANDS[name]}${client ? `\n${CLIENT_NOTE}\n` : ''}Exit codes: 0 ok, 1 failed, 2 bad usage or configuration.\n`;
}

const CLIENT_OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

function client(url: string | undefined, key?: string): HalflifeClient {
  return new HalflifeClient({ url: url ?? process.env.HALFLIFE_URL ?? 'http://127.0.0.1:7070', apiKey: key ?? process.env.HALFLIFE_API_KEY });
}

function positiveInt(name: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a non-negative number (got ${raw})`);
  return n;
}

class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: CommandName,
  ) {
    super(message);
  }
}

/** `--help` or `-h` anywhere before a `--`: the command's usage, not its work. */
function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** Node's parser, with its errors said in our words and tied to the command. */
function parse<T extends ParseArgsConfig>(command: CommandName, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const option = /'([^']+)'/.exec(e.message)?.[1] ?? '';
      throw new UsageError(`${command} has no option ${option}`, command);
    }
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new UsageError(`${command}: ${e.message.replace(/^Option /, 'option ')}`, command);
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      const arg = /'([^']+)'/.exec(e.message)?.[1] ?? '';
      throw new UsageError(`${command} takes no argument ${JSON.stringify(arg)}`, command);
    }
    throw err;
  }
}

/**
 * `halflife bench`: runs bench/run.ts of the source checkout (the benchmark drives servers and peers from
 * TypeScript and needs the dev dependencies: it ships with the repository, not with the built package).
 */
async function bench(args: readonly string[], io: Io): Promise<number> {
  const { existsSync } = await import('node:fs');
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  for (const up of ['../../', '../../../']) {
    const root = fileURLToPath(new URL(up, import.meta.url));
    const script = `${root}bench/run.ts`;
    if (!existsSync(script) || !existsSync(`${root}node_modules/tsx`)) continue;
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', script, ...args], { cwd: root, stdio: 'inherit' });
    return new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  }
  io.err('halflife: the benchmark runs from a source checkout with its dev dependencies: npm install && npm run bench\n');
  return 1;
}

/** Runs the CLI; returns the process exit code. */
/** `keys` on the keys a server with this config uses: its data folder's, or the cluster's shared state on NATS. */
function folderTarget(config: HalflifeConfig): KeysTarget {
  return { kind: 'folder', dataDir: config.dataDir, nats: config.log.backend === 'nats' ? config.nats : undefined };
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    return await run(command, rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`halflife: ${err.message}\n\n${err.command === undefined ? USAGE : commandUsage(err.command)}`);
      return 2;
    }
    if (err instanceof HalflifeApiError) {
      io.err(`halflife: ${err.code}: ${err.message}\n`);
      const reasons = err.details.reasons;
      if (Array.isArray(reasons)) for (const r of reasons) io.err(`  - ${String(r)}\n`);
      return 1;
    }
    if (err instanceof HalflifeError) {
      io.err(`halflife: ${err.code}: ${err.message}\n`);
      return err.code.startsWith('CONFIG_') ? 2 : 1;
    }
    throw err;
  }
}

async function run(command: string | undefined, args: string[], io: Io): Promise<number> {
  if (command !== undefined && Object.hasOwn(COMMANDS, command) && wantsHelp(args)) {
    io.out(commandUsage(command as CommandName));
    return 0;
  }
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return command === undefined ? 2 : 0;
    case '--version':
    case 'version':
      io.out(`halflife ${packageVersion()}\n`);
      return 0;
    case 'serve': {
      const { values } = parse('serve', {
        args,
        options: { config: { type: 'string', short: 'c' }, data: { type: 'string' }, host: { type: 'string' }, port: { type: 'string', short: 'p' }, nats: { type: 'string' }, role: { type: 'string' } },
      });
      return serve(values, io);
    }
    case 'repair': {
      const { values } = parse('repair', { args, options: { config: { type: 'string', short: 'c' }, data: { type: 'string' }, 'dry-run': { type: 'boolean' } } });
      return repair({ config: values.config, data: values.data, dryRun: values['dry-run'] }, io);
    }
    case 'init': {
      const { values, positionals } = parse('init', { args, allowPositionals: true, options: { force: { type: 'boolean' } } });
      if (positionals.length > 1) throw new UsageError('init takes one folder', 'init');
      return init(positionals[0], values.force === true, io);
    }
    case 'send': {
      const { values, positionals } = parse('send', {
        args,
        allowPositionals: true,
        options: { ...CLIENT_OPTIONS, batch: { type: 'string' }, rate: { type: 'string' }, concurrency: { type: 'string' } },
      });
      if (positionals.length !== 1) throw new UsageError('send takes one input: a file of events (NDJSON or a JSON array), or - for standard input', 'send');
      const batch = positiveInt('batch', values.batch, 1000);
      if (batch < 1) throw new UsageError('--batch must be at least 1', 'send');
      return send(client(values.url, values.key), positionals[0], {
        batch,
        rate: positiveInt('rate', values.rate?.replace(/\/s$/, ''), 0),
        concurrency: Math.max(1, positiveInt('concurrency', values.concurrency, 2)),
        json: values.json,
      }, io);
    }
    case 'schema': {
      const [sub, ...subArgs] = args;
      const { values, positionals } = parse('schema', {
        args: subArgs,
        allowPositionals: true,
        options: { ...CLIENT_OPTIONS, version: { type: 'string' }, compatibility: { type: 'string' } },
      });
      const c = client(values.url, values.key);
      if (sub === 'add' && positionals.length === 2) return schemaAdd(c, positionals[0], positionals[1], io);
      if (sub === 'list' && positionals.length === 0) return schemaList(c, values, io);
      if (sub === 'show' && positionals.length === 1) {
        return schemaShow(c, positionals[0], values.version === undefined ? undefined : positiveInt('version', values.version, 0), values, io);
      }
      if (sub === 'config' && positionals.length === 1) {
        const mode = values.compatibility;
        if (mode !== undefined && mode !== 'none' && mode !== 'backward') throw new UsageError(`--compatibility is none or backward (got ${mode})`, 'schema');
        return schemaConfig(c, positionals[0], mode, values, io);
      }
      throw new UsageError(sub === undefined ? 'schema needs a subcommand' : `schema ${sub}: wrong arguments`, 'schema');
    }
    case 'dlq': {
      const [sub, ...subArgs] = args;
      const { values } = parse('dlq', {
        args: subArgs,
        options: { ...CLIENT_OPTIONS, type: { type: 'string' }, code: { type: 'string' }, since: { type: 'string' }, limit: { type: 'string' } },
      });
      const c = client(values.url, values.key);
      if (sub === 'list') return dlqList(c, values, io);
      if (sub === 'replay') return dlqReplay(c, values, io);
      throw new UsageError(sub === undefined ? 'dlq needs a subcommand' : `unknown subcommand dlq ${sub}`, 'dlq');
    }
    case 'tail': {
      const { values } = parse('tail', {
        args,
        options: { ...CLIENT_OPTIONS, type: { type: 'string' }, since: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, iso: { type: 'boolean' } },
      });
      const controller = new AbortController();
      const onSigint = () => controller.abort();
      process.once('SIGINT', onSigint);
      try {
        return await tail(client(values.url, values.key), { type: values.type, since: values.since, follow: values.follow === true, iso: values.iso }, io, controller.signal);
      } finally {
        process.off('SIGINT', onSigint);
      }
    }
    case 'view': {
      const [sub, ...subArgs] = args;
      const { values, positionals } = parse('view', {
        args: subArgs,
        allowPositionals: true,
        options: { ...CLIENT_OPTIONS, sql: { type: 'string' }, file: { type: 'string', short: 'f' }, replace: { type: 'boolean' } },
      });
      const c = client(values.url, values.key);
      if (sub === 'create' && positionals.length === 1) {
        if ((values.sql === undefined) === (values.file === undefined)) throw new UsageError('view create takes --sql "…" or -f FILE.sql', 'view');
        const sql = values.sql ?? (await readFile(values.file!, 'utf8'));
        return viewCreate(c, positionals[0], sql, values.replace === true, values, io);
      }
      if (sub === 'list' && positionals.length === 0) return viewList(c, values, io);
      if (sub === 'drop' && positionals.length === 1) return viewDrop(c, positionals[0], io);
      throw new UsageError(sub === undefined ? 'view needs a subcommand' : `view ${sub}: wrong arguments`, 'view');
    }
    case 'query': {
      const { values, positionals } = parse('query', { args, allowPositionals: true, options: { ...CLIENT_OPTIONS, iso: { type: 'boolean' } } });
      if (positionals.length !== 1) throw new UsageError('query takes one SQL statement, quoted', 'query');
      return query(client(values.url, values.key), positionals[0], values, io);
    }
    case 'sql': {
      const { values, positionals } = parse('sql', { args, allowPositionals: true, options: { ...CLIENT_OPTIONS, csv: { type: 'boolean' } } });
      if (positionals.length !== 1) throw new UsageError('sql takes one SELECT, quoted', 'sql');
      return sql(client(values.url, values.key), positionals[0], values, io);
    }
    case 'bench':
      return bench(args, io);
    case 'streams': {
      const { values } = parse('streams', { args, options: CLIENT_OPTIONS });
      return streams(client(values.url, values.key), values, io);
    }
    case 'cluster': {
      const [sub, ...subArgs] = args;
      const { values } = parse('cluster', { args: subArgs, options: CLIENT_OPTIONS });
      if (sub !== 'status') throw new UsageError(sub === undefined ? 'cluster needs a subcommand: status' : `cluster ${sub}: unknown subcommand (status)`, 'cluster');
      return clusterStatus(client(values.url, values.key), values, io);
    }
    case 'keys': {
      const [sub, ...subArgs] = args;
      const { values, positionals } = parse('keys', {
        args: subArgs,
        allowPositionals: true,
        options: {
          ...CLIENT_OPTIONS,
          data: { type: 'string' },
          config: { type: 'string', short: 'c' },
          scope: { type: 'string' },
          types: { type: 'string' },
          origins: { type: 'string' },
          name: { type: 'string' },
          rate: { type: 'string' },
          burst: { type: 'string' },
        },
      });
      if (values.data !== undefined && values.url !== undefined) throw new UsageError('keys takes --data DIR or --url URL, not both', 'keys');
      const target: KeysTarget =
        values.url !== undefined || (values.data === undefined && process.env.HALFLIFE_URL !== undefined)
          ? { kind: 'server', client: client(values.url, values.key) }
          : folderTarget(loadConfig({ file: values.config, flags: { dataDir: values.data } }).config);
      if (sub === 'create' && positionals.length === 0) {
        if (values.scope === undefined) throw new UsageError('keys create needs --scope write, read or admin (several: --scope read,write)', 'keys');
        return keysCreate(target, values, io);
      }
      if (sub === 'list' && positionals.length === 0) return keysList(target, values, io);
      if (sub === 'revoke' && positionals.length === 1) return keysRevoke(target, positionals[0], io);
      throw new UsageError(sub === undefined ? 'keys needs a subcommand' : `keys ${sub}: wrong arguments`, 'keys');
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { HalflifeApiError, HalflifeClient } from '../../sdk/index.js';
import { HalflifeError, packageVersion } from '../core/index.js';
import { readFile } from 'node:fs/promises';
import { dlqList, dlqReplay, query, schemaAdd, schemaList, schemaShow, streams, tail, viewCreate, viewDrop, viewList } from './commands/client-commands.js';
import { init } from './commands/init.js';
import { keysCreate, keysList, keysRevoke, type KeysTarget } from './commands/keys.js';
import { loadConfig } from '../config/index.js';
import { send } from './commands/send.js';
import { serve } from './commands/serve.js';
import { processIo, type Io } from './output.js';

const USAGE = `halflife — real-time event analytics: schema-validated ingest, durable log, dead letters

Usage:
  halflife serve [--config F] [--data DIR] [--host H] [--port N]   start the server (default 127.0.0.1:7070)
  halflife init [DIR] [--force]                                    write a commented config, a schema and examples
  halflife send <FILE.ndjson|-> [--batch 1000] [--rate N] [--concurrency 2]
  halflife schema add <TYPE> <FILE.json>                           register a JSON Schema (draft 2020-12)
  halflife schema list
  halflife schema show <TYPE> [--version N]
  halflife dlq list [--type T] [--code C] [--since TIME] [--limit N]
  halflife dlq replay [--type T] [--code C] [--since TIME]        re-validate and append what now passes
  halflife tail [--type T] [--from-beginning]                      follow the log as NDJSON
  halflife streams                                                 records and bytes per partition
  halflife view create <NAME> (--sql "CREATE VIEW …" | -f FILE.sql) [--replace]
  halflife view list | view drop <NAME>
  halflife query "SELECT … FROM <view> …"                          query views (re-aggregates sketches)
  halflife keys create --scope write|read|admin[,…] [--types T1,T2] [--origins https://…] [--rate N --burst N] [--name N]
  halflife keys list | keys revoke <ID>                            on --data DIR (default: the config's), or --url
  halflife bench [--quick] [--scenario …] [--json] [--generate N]   benchmarks next to Redis, NATS, PostgreSQL, DuckDB

Client commands talk to --url (or HALFLIFE_URL, default http://127.0.0.1:7070) with the API key in --key (or
HALFLIFE_API_KEY); --json prints raw JSON. "keys" works on the data folder unless --url or HALFLIFE_URL is given.
Exit codes: 0 ok, 1 failed, 2 bad usage or configuration.
`;

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

class UsageError extends Error {}

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
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    return await run(command, rest, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`halflife: ${(err as Error).message}\n\n${USAGE}`);
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
      const { values } = parseArgs({
        args,
        options: { config: { type: 'string', short: 'c' }, data: { type: 'string' }, host: { type: 'string' }, port: { type: 'string', short: 'p' } },
      });
      return serve(values, io);
    }
    case 'init': {
      const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { force: { type: 'boolean' } } });
      return init(positionals[0], values.force === true, io);
    }
    case 'send': {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: { ...CLIENT_OPTIONS, batch: { type: 'string' }, rate: { type: 'string' }, concurrency: { type: 'string' } },
      });
      if (positionals.length !== 1) throw new UsageError('send takes one input: a file of NDJSON events, or - for standard input');
      const batch = positiveInt('batch', values.batch, 1000);
      if (batch < 1) throw new UsageError('--batch must be at least 1');
      return send(client(values.url, values.key), positionals[0], {
        batch,
        rate: positiveInt('rate', values.rate?.replace(/\/s$/, ''), 0),
        concurrency: Math.max(1, positiveInt('concurrency', values.concurrency, 2)),
        json: values.json,
      }, io);
    }
    case 'schema': {
      const [sub, ...subArgs] = args;
      const { values, positionals } = parseArgs({ args: subArgs, allowPositionals: true, options: { ...CLIENT_OPTIONS, version: { type: 'string' } } });
      const c = client(values.url, values.key);
      if (sub === 'add' && positionals.length === 2) return schemaAdd(c, positionals[0], positionals[1], io);
      if (sub === 'list' && positionals.length === 0) return schemaList(c, values, io);
      if (sub === 'show' && positionals.length === 1) {
        return schemaShow(c, positionals[0], values.version === undefined ? undefined : positiveInt('version', values.version, 0), values, io);
      }
      throw new UsageError('usage: halflife schema add <type> <file> | schema list | schema show <type> [--version N]');
    }
    case 'dlq': {
      const [sub, ...subArgs] = args;
      const { values } = parseArgs({
        args: subArgs,
        options: { ...CLIENT_OPTIONS, type: { type: 'string' }, code: { type: 'string' }, since: { type: 'string' }, limit: { type: 'string' } },
      });
      const c = client(values.url, values.key);
      if (sub === 'list') return dlqList(c, values, io);
      if (sub === 'replay') return dlqReplay(c, values, io);
      throw new UsageError('usage: halflife dlq list [filters] | dlq replay [filters]');
    }
    case 'tail': {
      const { values } = parseArgs({ args, options: { ...CLIENT_OPTIONS, type: { type: 'string' }, 'from-beginning': { type: 'boolean' } } });
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      return tail(client(values.url, values.key), { type: values.type, fromBeginning: values['from-beginning'] }, io, controller.signal);
    }
    case 'view': {
      const [sub, ...subArgs] = args;
      const { values, positionals } = parseArgs({
        args: subArgs,
        allowPositionals: true,
        options: { ...CLIENT_OPTIONS, sql: { type: 'string' }, file: { type: 'string', short: 'f' }, replace: { type: 'boolean' } },
      });
      const c = client(values.url, values.key);
      if (sub === 'create' && positionals.length === 1) {
        if ((values.sql === undefined) === (values.file === undefined)) throw new UsageError('view create takes --sql "…" or -f FILE.sql');
        const sql = values.sql ?? (await readFile(values.file!, 'utf8'));
        return viewCreate(c, positionals[0], sql, values.replace === true, values, io);
      }
      if (sub === 'list' && positionals.length === 0) return viewList(c, values, io);
      if (sub === 'drop' && positionals.length === 1) return viewDrop(c, positionals[0], io);
      throw new UsageError('usage: halflife view create <name> --sql "…" | -f file.sql, view list, view drop <name>');
    }
    case 'query': {
      const { values, positionals } = parseArgs({ args, allowPositionals: true, options: CLIENT_OPTIONS });
      if (positionals.length !== 1) throw new UsageError('query takes one SQL statement, quoted');
      return query(client(values.url, values.key), positionals[0], values, io);
    }
    case 'bench':
      return bench(args, io);
    case 'streams': {
      const { values } = parseArgs({ args, options: CLIENT_OPTIONS });
      return streams(client(values.url, values.key), values, io);
    }
    case 'keys': {
      const [sub, ...subArgs] = args;
      const { values, positionals } = parseArgs({
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
      if (values.data !== undefined && values.url !== undefined) throw new UsageError('keys takes --data DIR or --url URL, not both');
      const target: KeysTarget =
        values.url !== undefined || (values.data === undefined && process.env.HALFLIFE_URL !== undefined)
          ? { kind: 'server', client: client(values.url, values.key) }
          : { kind: 'folder', dataDir: loadConfig({ file: values.config, flags: { dataDir: values.data } }).config.dataDir };
      if (sub === 'create' && positionals.length === 0) {
        if (values.scope === undefined) throw new UsageError('keys create needs --scope write, read or admin (several: --scope read,write)');
        return keysCreate(target, values, io);
      }
      if (sub === 'list' && positionals.length === 0) return keysList(target, values, io);
      if (sub === 'revoke' && positionals.length === 1) return keysRevoke(target, positionals[0], io);
      throw new UsageError('usage: halflife keys create --scope S [--types T] [--origins O] [--name N] | keys list | keys revoke <id>  [--data DIR | --url URL]');
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Io } from '../output.js';

const CONFIG = `# halflife configuration. Every key is optional; shown here with its default.
# Precedence: defaults < this file < HALFLIFE_* environment (e.g. HALFLIFE_SERVER_PORT=8080) < command-line flags.
# Unknown keys stop start-up with their path, so a typo never goes unnoticed.

# Where the log, schemas and dead letters live (relative to this file).
dataDir: ./halflife-data
logLevel: info            # fatal | error | warn | info | debug | trace | silent
# auto: API keys are required once one exists (halflife keys create --scope admin); with none, loopback only.
# on: keys always required. off: no authentication (only behind a proxy that authenticates).
auth: auto

server:
  host: 127.0.0.1         # 0.0.0.0 to listen on every interface (needs an API key, or auth: off)
  port: 7070
  shutdownTimeoutMs: 10000
  # HTTPS: PEM certificate and key (or terminate TLS in a reverse proxy in front of 127.0.0.1)
  tlsCertFile: null
  tlsKeyFile: null

log:
  partitions: 8           # fixed once the log exists: keys map to partitions by hash
  # When an event counts as durable (the request is answered only then):
  #   always   - fdatasync before answering: nothing acknowledged is lost even on power loss (slowest)
  #   interval - written to the OS before answering, fdatasync every fsyncIntervalMs: a process crash loses
  #              nothing acknowledged; a power loss or kernel crash loses at most fsyncIntervalMs of events
  #   never    - written to the OS before answering; the OS flushes when it likes (~30 s on Linux)
  fsync: interval
  fsyncIntervalMs: 100
  segmentBytes: 67108864  # 64 MiB per segment file; retention removes whole segments
  retention:
    maxAgeMs: 604800000   # 7 days (0 = keep for ever)
    maxBytesPerPartition: 0   # 0 = no size limit
  # A key can own a partition of its own, so one busy key never slows the others:
  pinnedKeys: {}
  #   BTC-USD: 7

ingest:
  maxBodyBytes: 10485760  # 413 BODY_TOO_LARGE beyond this
  maxEventBytes: 262144   # EVENT_TOO_LARGE per event
  maxDepth: 32            # TOO_DEEP per event
  unknownTypes: reject    # reject (UNKNOWN_TYPE) | accept (stored unvalidated, schema_version 0)
  dedupWindowMs: 600000   # events with the same "id" within this window are stored once
  dedupMaxIds: 1000000    # memory bound of the dedup window
  deadLetterRawBytes: 16384   # how much of a malformed or oversized input a dead letter keeps
  # workers: 2            # threads that parse and check large bodies (default: one per core, at most 4; 0: the server thread does)

schemas:
  dir: ./schemas          # every <type>.json here is registered at start
  compatibility: backward # backward: refuse a schema that would reject events the previous version accepted

engine:
  checkpointIntervalMs: 5000  # views save state + offsets together this often; a crash replays, never double-counts
  workers: 1                  # engine threads, each over a share of the partitions (partials merge at read time)
`;

const SCHEMA = JSON.stringify(
  {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'page_view',
    type: 'object',
    properties: {
      article_id: { type: 'string', minLength: 1 },
      user_id: { type: 'string' },
      section: { type: 'string' },
      read_ms: { type: 'integer', minimum: 0 },
    },
    required: ['article_id'],
  },
  null,
  2,
) + '\n';

const EVENTS = [
  { type: 'page_view', data: { article_id: 'a1', user_id: 'u1', section: 'news', read_ms: 5400 }, key: 'a1' },
  { type: 'page_view', data: { article_id: 'a2', user_id: 'u2', section: 'sport', read_ms: 1200 }, key: 'a2', id: 'evt-2' },
  { type: 'page_view', data: { user_id: 'u3' } },
].map((e) => JSON.stringify(e)).join('\n') + '\n';

const HINTS = `# Your halflife project

    halflife serve                                  # starts on http://127.0.0.1:7070, data in ./halflife-data
    halflife send events.example.ndjson             # 2 accepted, 1 rejected (missing article_id)
    halflife dlq list                               # see why it was rejected
    halflife streams                                # records per partition
    halflife tail                                   # read the log back (--follow: and wait for more)

Add an event type: put a JSON Schema (draft 2020-12) in schemas/<type>.json and restart, or without a restart:

    halflife schema add click schemas/click.json

Send events from anywhere:

    curl -X POST http://127.0.0.1:7070/v1/events -H 'content-type: application/json' \\
      -d '[{"type":"page_view","data":{"article_id":"a9","user_id":"u9"}}]'
`;

/** `halflife init [dir]`: a commented config, an example schema, example events and hints. */
export async function init(dirArg: string | undefined, force: boolean, io: Io): Promise<number> {
  const dir = resolve(dirArg ?? '.');
  await mkdir(join(dir, 'schemas'), { recursive: true });
  const files: [string, string][] = [
    ['halflife.yaml', CONFIG],
    [join('schemas', 'page_view.json'), SCHEMA],
    ['events.example.ndjson', EVENTS],
    ['HALFLIFE.md', HINTS],
  ];
  for (const [name, text] of files) {
    const path = join(dir, name);
    if (existsSync(path) && !force) {
      io.out(`kept     ${path} (exists; --force to overwrite)\n`);
      continue;
    }
    await writeFile(path, text);
    io.out(`wrote    ${path}\n`);
  }
  io.out(`\nNext:\n  cd ${dirArg ?? '.'} && halflife serve\n  halflife send events.example.ndjson\n(see HALFLIFE.md)\n`);
  return 0;
}

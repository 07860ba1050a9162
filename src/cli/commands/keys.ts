import type { HalflifeClient } from '../../../sdk/index.js';
import type { NatsConfig } from '../../config/index.js';
import { withKeyStore, type ApiKeyInfo, type KeyStore } from '../../server/index.js';
import { table, type Io } from '../output.js';

/**
 * Where `halflife keys` acts: the keys of a data folder directly (also while no server runs; with `log.backend:
 * nats`, the keys in the cluster's shared state), or a running server.
 */
export type KeysTarget = { kind: 'folder'; dataDir: string; nats?: NatsConfig | undefined } | { kind: 'server'; client: HalflifeClient };

function withStore<T>(target: Extract<KeysTarget, { kind: 'folder' }>, work: (store: KeyStore) => Promise<T>): Promise<T> {
  return withKeyStore(target.dataDir, target.nats, work);
}

export interface KeyFlags {
  scope?: string | undefined;
  types?: string | undefined;
  origins?: string | undefined;
  name?: string | undefined;
  rate?: string | undefined;
  burst?: string | undefined;
  json?: boolean | undefined;
}

const list = (csv: string | undefined) => (csv === undefined ? undefined : csv.split(',').map((s) => s.trim()).filter((s) => s !== ''));

function describe(k: ApiKeyInfo): string {
  const limits = [
    k.types === null ? '' : `types ${k.types.join(', ')}`,
    k.origins === null ? '' : `origins ${k.origins.join(', ')}`,
    k.eventsPerS === null ? '' : `${k.eventsPerS} events/s (burst ${k.burstEvents ?? k.eventsPerS})`,
  ].filter((s) => s !== '');
  return `${k.id}${k.name ? ` (${k.name})` : ''}: scope ${k.scopes.join(', ')}${limits.length > 0 ? `; ${limits.join('; ')}` : ''}`;
}

/** Creates a key and prints it alone on the last line (the only time it is shown). */
export async function keysCreate(target: KeysTarget, flags: KeyFlags, io: Io): Promise<number> {
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const spec = { name: flags.name, scopes: list(flags.scope) ?? [], types: list(flags.types), origins: list(flags.origins), eventsPerS: num(flags.rate), burstEvents: num(flags.burst) };
  let key: string;
  let info: ApiKeyInfo;
  if (target.kind === 'folder') {
    ({ key, info } = await withStore(target, (store) => store.create(spec)));
  } else {
    const created = await target.client.createKey(spec as Parameters<HalflifeClient['createKey']>[0]);
    ({ key, ...info } = created);
  }
  if (flags.json) io.out(JSON.stringify({ key, ...info }, null, 2) + '\n');
  else io.out(`created ${describe(info)}\nstore it now: it is not shown again\n${key}\n`);
  return 0;
}

export async function keysList(target: KeysTarget, flags: KeyFlags, io: Io): Promise<number> {
  let keys: ApiKeyInfo[];
  if (target.kind === 'folder') {
    keys = await withStore(target, async (store) => {
      await store.load();
      return store.list();
    });
  } else keys = await target.client.listKeys();
  if (flags.json) io.out(JSON.stringify(keys, null, 2) + '\n');
  else if (keys.length === 0) io.out('no API keys: the server answers loopback only, unauthenticated (halflife keys create --scope admin)\n');
  else {
    const rows = keys.map((k) => [k.id, k.name, k.scopes.join(','), k.types?.join(',') ?? '*', k.origins?.join(',') ?? '*', k.eventsPerS === null ? 'default' : `${k.eventsPerS}/s`, k.createdAt]);
    io.out(table(rows, ['ID', 'NAME', 'SCOPES', 'TYPES', 'ORIGINS', 'RATE', 'CREATED']));
  }
  return 0;
}

export async function keysRevoke(target: KeysTarget, id: string, io: Io): Promise<number> {
  if (target.kind === 'folder') {
    if (!(await withStore(target, (store) => store.revoke(id)))) {
      io.err(`halflife: KEY_NOT_FOUND: no API key has id ${id}\n`);
      return 1;
    }
  } else await target.client.revokeKey(id);
  io.out(`revoked ${id}${target.kind === 'folder' ? ' (a running server stops accepting it within a second)' : ''}\n`);
  return 0;
}

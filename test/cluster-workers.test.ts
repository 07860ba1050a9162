import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnServer, type ChildServer } from './helpers/child-server.js';
import { hasNatsServer, startNatsCluster, type NatsCluster } from './helpers/nats.js';
import { tempDir } from './helpers/tmp.js';
import { connect } from '@nats-io/transport-node';
import { Kvm, KvWatchInclude } from '@nats-io/kv';

/**
 * halflife as several processes on a 3-node JetStream cluster (R3): two ingest processes and two workers under
 * steady load; a NATS node is killed (SIGKILL), then a worker; a third worker joins; later a worker is paused past
 * its leases (SIGSTOP) and resumed. Every acknowledged event is counted exactly once in every view, read from any
 * process. In CI nats-server is required (.ci/run installs it).
 */
const cluster: NatsCluster | undefined = hasNatsServer ? await startNatsCluster(3) : undefined;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups) await c().catch(() => {});
  await cluster?.stop();
});

const LEASE_MS = 3000;

/** The NATS servers' recent warnings, for a failure's message. */
function natsLog(): string {
  return cluster!.nodes.map((n, i) => `n${i}:\n${(n.output ?? []).filter((l) => /\[(WRN|ERR|INF)\]/.test(l) && !/connect to route/.test(l)).slice(-25).join('\n')}`).join('\n');
}

async function node(role: 'ingest' | 'worker' | 'query' | 'all'): Promise<ChildServer> {
  const { dir, cleanup } = await tempDir('halflife-cw-');
  cleanups.push(cleanup);
  return spawnServer(
    dir,
    {
    HALFLIFE_NATS: cluster!.servers,
    HALFLIFE_CLUSTER_ROLE: role,
    HALFLIFE_CLUSTER_LEASE_MS: String(LEASE_MS),
    HALFLIFE_LOG_PARTITIONS: '4',
    HALFLIFE_NATS_REPLICAS: '3',
    HALFLIFE_NATS_STREAM: 'CW',
    HALFLIFE_NATS_SUBJECT_PREFIX: 'cw',
    HALFLIFE_NATS_BUCKET_PREFIX: 'cw',
    HALFLIFE_ENGINE_CHECKPOINT_INTERVAL_MS: '300',
    },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nNATS:\n${natsLog()}`);
  });
}

async function call(s: ChildServer, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  try {
    const res = await fetch(`${s.url}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
  } catch (err) {
    return { status: 0, body: { error: { code: 'FETCH_FAILED', message: (err as Error).message } } };
  }
}

async function until<T>(what: string, timeoutMs: number, get: () => Promise<T | undefined>, explain?: () => Promise<string>): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    const got = await get().catch((err: unknown) => {
      if (err instanceof assert.AssertionError) throw err;
      last = err;
      return undefined;
    });
    if (got !== undefined) return got;
    if (Date.now() - t0 >= timeoutMs) assert.fail(`${what} did not happen within ${timeoutMs} ms (last error: ${String(last)})\n${explain === undefined ? '' : await explain()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Every lease and every checkpoint written during the test, as JetStream stored them (watches from the first revision
 * on), to check the fence: a partition's checkpoint is only ever written under its lease's newest token, by the
 * process holding that lease.
 */
async function auditWrites() {
  // Not on the server the test kills (a watch there would miss what is replaced while it restarts).
  const nc = await connect({ servers: cluster!.nodes.slice(0, 2).map((n) => n.url), maxReconnectAttempts: -1 });
  cleanups.push(() => nc.close());
  const kvm = new Kvm(nc);
  /** Lease revision (a fencing token) → who wrote it, and whether it was a release. */
  const leases = new Map<number, { owner: string; released: boolean; key: string }>();
  const writes: { key: string; partition: number; revision: number; token: number; by?: string }[] = [];
  /** The newest revision each watch delivered of a marker key (written at the end: both watches still run). */
  const markers = new Map<string, number>();
  /**
   * Follows every revision of a bucket. Its watch (an ordered consumer) can stall or end when its server dies: it is
   * opened again from the revision after the last one it delivered, whenever it ends or is restarted.
   */
  const watch = async (bucket: string, on: (key: string, revision: number, value: Uint8Array) => void) => {
    const kv = await kvm.open(bucket);
    let last = 0;
    let stopped = false;
    let it = await kv.watch({ include: KvWatchInclude.AllHistory });
    const done = (async () => {
      while (!stopped) {
        for await (const e of it) {
          last = e.revision;
          if (e.key === 'audit.marker') markers.set(bucket, e.revision);
          else if (e.operation === 'PUT') on(e.key, e.revision, e.value);
        }
        if (!stopped) it = await kv.watch({ include: KvWatchInclude.AllHistory, resumeFromRevision: last + 1 });
      }
    })();
    // Kept live while the test runs: a marker every second, and a watch that has not delivered the marker written
    // 3 s ago is opened again at once (a stalled watch noticed only at the end had missed almost every write: once in
    // CI it saw 6 of hundreds, the bucket keeping only each key's newest).
    const sent: { revision: number; at: number }[] = [];
    const beat = setInterval(() => {
      void kv.put('audit.marker', 'x').then(
        (revision) => {
          sent.push({ revision, at: Date.now() });
          while (sent.length > 20) sent.shift();
          const old = sent.filter((m) => Date.now() - m.at >= 3000);
          const lagging = old.length > 0 && (markers.get(bucket) ?? 0) < old[old.length - 1].revision;
          if (lagging && !stopped) {
            sent.length = 0;
            it.stop();
          }
        },
        () => {},
      );
    }, 1000);
    return {
      bucket,
      marker: async () => kv.put('audit.marker', 'x'),
      restart: () => it.stop(),
      stop: async () => {
        clearInterval(beat);
        stopped = true;
        it.stop();
        await done;
      },
    };
  };
  const json = (v: Uint8Array) => JSON.parse(Buffer.from(v).toString('utf8'));
  const watches = [
    await watch('cw_leases', (key, revision, value) => {
      const v = json(value) as { owner: string; released?: boolean };
      leases.set(revision, { owner: v.owner, released: v.released === true, key });
    }),
    await watch('cw_state', (key, revision, value) => {
      const m = /^fenced\.checkpoint\..+\.p(\d+)\.meta$/.exec(key);
      if (m === null) return;
      const v = json(value) as { token: number; by?: string };
      writes.push({ key, partition: Number(m[1]), revision, token: v.token, by: v.by });
    }),
  ];
  return {
    /**
     * Stops watching and checks every checkpoint write against the leases: returns how many were checked, and how
     * many were under a lease revision the watch never saw (replaced within moments while a watch restarted).
     */
    async check(): Promise<{ checked: number; unseen: number }> {
      // Both watches delivered everything up to now: each sees a marker written now (a stalled one is opened again
      // from where it was, up to three times).
      for (let attempt = 1; ; attempt++) {
        const wrote = await Promise.all(watches.map((w) => w.marker()));
        const seen = () => watches.every((w, i) => (markers.get(w.bucket) ?? 0) >= wrote[i]);
        const t0 = Date.now();
        while (!seen() && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
        if (seen()) break;
        assert.ok(attempt < 3, 'the audit watches stopped delivering');
        for (const [i, w] of watches.entries()) if ((markers.get(w.bucket) ?? 0) < wrote[i]) w.restart();
      }
      for (const w of watches) await w.stop();
      await nc.close();
      const last = new Map<string, number>();
      let unseen = 0;
      for (const w of writes.sort((a, b) => a.revision - b.revision)) {
        // Tokens of one key never go down: no checkpoint was written under an older lease after a newer one (a
        // worker that lost its lease never wrote over its successor's).
        assert.ok(w.token >= (last.get(w.key) ?? 0), `${w.key} written with token ${w.token} after token ${last.get(w.key)}: a lost lease wrote`);
        last.set(w.key, w.token);
        // The token is a revision of that partition's lease, taken or renewed by the writer itself.
        const lease = leases.get(w.token);
        if (lease === undefined) {
          unseen++;
          continue;
        }
        assert.deepEqual({ key: lease.key, owner: lease.owner, released: lease.released }, { key: `lease.p${w.partition}`, owner: w.by, released: false }, `${w.key} written under token ${w.token}`);
      }
      return { checked: writes.length, unseen };
    },
  };
}

const VIEW = 'CREATE VIEW c AS SELECT COUNT(*) AS n, COUNT(DISTINCT user) AS users, APPROX_COUNT_DISTINCT(user) AS approx, SUM(v) AS total FROM click';

describe('halflife cluster: ingest processes and workers with leases on a 3-node JetStream', { skip: hasNatsServer ? false : 'nats-server not installed' }, () => {
  test('a NATS node killed, a worker killed, a third worker joining, a worker paused past its leases: every acknowledged event counted exactly once, read from any process', { timeout: 600_000 }, async (t) => {
    // One after the other: four processes loading at once on two cores starve the NATS servers' own heartbeats.
    const in1 = await node('ingest');
    const in2 = await node('ingest');
    const w1 = await node('worker');
    const w2 = await node('worker');
    const audit = await auditWrites();
    // A schema registered on one process validates on the others (watched in the shared state).
    assert.equal((await call(in1, 'PUT', '/v1/schemas/click', { type: 'object', properties: { user: { type: 'string' }, v: { type: 'integer' } }, required: ['user', 'v'] })).status, 201);
    const t0 = Date.now();
    // In force there: an event the schema refuses is refused by the other process (dead-lettered, not stored).
    await until('the schema in force on the other ingest process', 10_000, async () => {
      const res = await call(in2, 'POST', '/v1/events', [{ type: 'click', id: 'bad', data: { user: 'x' } }]);
      return res.status === 200 && res.body.errors?.[0]?.code === 'SCHEMA_VALIDATION' ? true : undefined;
    });
    const took = Date.now() - t0;
    t.diagnostic(`a schema registered on one ingest process validated events on the other after ${took} ms`);
    // Within a second on an idle machine (the figure above); the bound leaves room for busy cores.
    assert.ok(took < 5000, `the schema reached the other process after ${took} ms`);
    const tv = Date.now();
    const created = await call(in1, 'PUT', '/v1/views/c', { sql: VIEW });
    assert.equal(created.status, 201, `${Date.now() - tv} ms ${JSON.stringify(created.body)}\n${in1.output.slice(-30).join('\n')}`);
    // Workers accept no events; every role answers view queries.
    assert.equal((await call(w1, 'POST', '/v1/events', { type: 'click', data: { user: 'x', v: 1 } })).body.error.code, 'ROLE_NOT_SERVED');

    const users = new Set<string>();
    let sum = 0;
    let acknowledged = 0;
    let w3: Promise<ChildServer> | undefined;
    const batches = 30;
    const per = 100;
    const send = async (sender: number, to: ChildServer) => {
      for (let b = 0; b < batches; b++) {
        const events = Array.from({ length: per }, (_, i) => {
          const n = (sender * batches + b) * per + i;
          return { type: 'click', id: `e${n}`, key: `k${n % 13}`, data: { user: `u${n % 2500}`, v: n % 97 } };
        });
        // A request the cluster could not take is sent again with the same ids: stored once.
        const deadline = Date.now() + 120_000;
        for (;;) {
          const res = await call(to, 'POST', '/v1/events', events);
          if (res.status === 200) {
            assert.equal(res.body.rejected, 0, JSON.stringify(res.body));
            break;
          }
          assert.ok([0, 503].includes(res.status), JSON.stringify(res.body));
          assert.ok(Date.now() < deadline, `events not taken again within 2 minutes: ${JSON.stringify(res.body)}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        for (const e of events) {
          users.add(e.data.user);
          sum += e.data.v;
        }
        acknowledged += per;
        if (sender === 0 && b === 8) await cluster!.nodes[2].stop(); // a NATS server dies (SIGKILL)
        if (sender === 0 && b === 15) w1.child.kill('SIGKILL'); // a worker dies
        if (sender === 0 && b === 20) w3 = node('worker'); // a third one joins
      }
    };
    await Promise.all([send(0, in1), send(1, in2)]);
    const third = await w3!;
    const expected = { n: acknowledged, users: users.size, total: sum };
    let lastRead = '';
    const row = async (s: ChildServer) => {
      const r = await call(s, 'GET', '/v1/views/c');
      lastRead = JSON.stringify(r.body).slice(0, 400);
      return r.status === 200 ? r.body.rows[0] : undefined;
    };
    /** What the processes said that went wrong, and the last read, for a failure's message. */
    const trouble = async () => {
      const status = JSON.stringify((await call(in1, 'GET', '/v1/cluster')).body?.partitions);
      const logs = [in1, in2, w1, w2, third].map((s) => s.output.filter((l) => /"level":(40|50)/.test(l)).slice(-8).join('\n')).join('\n--\n');
      return `last read: ${lastRead}\npartitions: ${status}\n${logs}\nNATS:\n${natsLog()}`;
    };
    for (const s of [in1, in2, w2, third]) {
      const got = await until(`every event counted, read from ${s.url}`, 180_000, async () => {
        const r = await row(s);
        // A read is never above what was acknowledged: that would be an event counted twice (also while
        // partitions move).
        if (r !== undefined) assert.ok(r.n <= expected.n, `read ${r.n} of ${expected.n} events from ${s.url}: counted twice`);
        return r !== undefined && r.n === expected.n ? r : undefined;
      }, trouble);
      assert.deepEqual({ n: got.n, users: got.users, total: got.total }, expected, `read from ${s.url}`);
      assert.ok(Math.abs(got.approx - expected.users) <= expected.users * 0.03, `HyperLogLog ${got.approx} within 3 % of ${expected.users}`);
    }
    // The partitions are shared by the two live workers, each under a lease.
    const ids = await Promise.all([w2, third].map(async (s) => (await call(s, 'GET', '/v1/cluster')).body.node as string));
    await until('the partitions shared by the live workers', 60_000, async () => {
      const owners = ((await call(in1, 'GET', '/v1/cluster')).body.partitions as { owner: string | null }[]).map((p) => p.owner);
      return owners.every((o) => o !== null && ids.includes(o)) && new Set(owners).size === 2 ? true : undefined;
    });

    // A worker paused past its leases (SIGSTOP): the other takes its partitions over and counts on; resumed, it has
    // lost them (its writes are refused) and takes a share back by handover. Nothing is lost or counted twice.
    w2.child.kill('SIGSTOP');
    await until('the running worker holding every partition', 60_000, async () => {
      const owners = ((await call(in1, 'GET', '/v1/cluster')).body.partitions as { owner: string | null }[]).map((p) => p.owner);
      return owners.every((o) => o === ids[1]) ? true : undefined;
    });
    const more = Array.from({ length: 500 }, (_, i) => ({ type: 'click', id: `late${i}`, data: { user: `w${i}`, v: 1 } }));
    assert.equal((await call(in1, 'POST', '/v1/events', more)).status, 200);
    const final = { n: expected.n + 500, users: expected.users + 500, total: expected.total + 500 };
    w2.child.kill('SIGCONT');
    // Read from the resumed worker at once and on: its state from before the pause must never be merged with the
    // state of the worker that took its partitions over (it answers 503 until it knows where it stands).
    await until('the resumed worker noticing it lost its leases', 60_000, async () => {
      const r = await row(w2);
      if (r !== undefined) assert.ok(r.n <= final.n, `read ${r.n} of ${final.n} events from the resumed worker: counted twice`);
      return w2.output.some((l) => /lost the leases of partitions/.test(l)) ? true : undefined;
    });
    for (const s of [in2, w2, third]) {
      const got = await until(`every event counted after the pause, read from ${s.url}`, 180_000, async () => {
        const r = await row(s);
        if (r !== undefined) assert.ok(r.n <= final.n, `read ${r.n} of ${final.n} events from ${s.url}: counted twice`);
        return r !== undefined && r.n === final.n ? r : undefined;
      }, trouble);
      assert.deepEqual({ n: got.n, users: got.users, total: got.total }, final, `read from ${s.url}`);
    }
    // Still exact once the partitions settled between the two again (a double count would show here).
    await until('the partitions shared again', 60_000, async () => {
      const owners = ((await call(in1, 'GET', '/v1/cluster')).body.partitions as { owner: string | null }[]).map((p) => p.owner);
      return new Set(owners).size === 2 && owners.every((o) => o !== null) ? true : undefined;
    });
    const settled = await until('a read after the handover', 60_000, () => row(in1));
    assert.deepEqual({ n: settled.n, users: settled.users, total: settled.total }, final);
    // No partition was ever written by two owners.
    const { checked, unseen } = await audit.check();
    // A watch that lags sees only the newest of a key's writes (the bucket keeps one): fewer on a busy machine.
    assert.ok(checked >= 8, `only ${checked} checkpoint writes were seen`);
    // A lease revision lives about a second (renewed every third of a 3 s lease) and the bucket keeps only the newest:
    // while a watch restarts after its server died, the revisions replaced meanwhile are gone (CI once missed 376 of
    // 444). Writes under those are checked for order only; enough others must be matched to their lease's holder.
    assert.ok(checked - unseen >= 5, `only ${checked - unseen} of ${checked} checkpoint writes were under lease revisions the audit saw`);
    t.diagnostic(`${checked} checkpoint writes: tokens never went down per checkpoint; ${checked - unseen} matched to the lease revision they were written under, by its holder (${unseen} under revisions the audit's watch missed)`);
    for (const s of [in1, in2, w2, third]) s.child.kill('SIGTERM');
    await Promise.all([in1, in2, w2, third].map((s) => s.exited));
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DedupWindow } from './dedup.js';

/** The window as the docs state it, kept naively: ids in arrival order with their expiry. */
class Model {
  entries: { id: string; expires: number }[] = [];
  constructor(readonly windowMs: number, readonly maxIds: number) {}
  #expire(now: number) {
    this.entries = this.entries.filter((e) => e.expires > now);
  }
  #add(id: string, expires: number) {
    this.entries = this.entries.filter((e) => e.id !== id);
    this.entries.push({ id, expires });
    while (this.entries.length > this.maxIds) this.entries.shift();
  }
  checkAndAdd(id: string, now: number): boolean {
    this.#expire(now);
    if (this.entries.some((e) => e.id === id)) return true;
    this.#add(id, now + this.windowMs);
    return false;
  }
  remember(id: string, at: number) {
    this.#add(id, at + this.windowMs);
  }
  forget(ids: string[]) {
    this.entries = this.entries.filter((e) => !ids.includes(e.id));
  }
}

type Op = { k: 'check'; id: string; dt: number } | { k: 'remember'; id: string; dt: number } | { k: 'forget'; ids: string[] };
const id = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g');
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('check' as const), id, dt: fc.nat(40) }), weight: 8 },
  { arbitrary: fc.record({ k: fc.constant('remember' as const), id, dt: fc.nat(40) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('forget' as const), ids: fc.array(id, { maxLength: 3 }) }), weight: 1 },
);

test('the dedup window answers as the straightforward model: expiry, the id bound (oldest first), forget, remember', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 300 }), (windowMs, maxIds, ops) => {
      const d = new DedupWindow(windowMs, maxIds);
      const m = new Model(windowMs, maxIds);
      let now = 1000;
      for (const o of ops) {
        if (o.k === 'check') {
          now += o.dt;
          assert.equal(d.checkAndAdd(o.id, now), m.checkAndAdd(o.id, now), JSON.stringify({ o, now, model: m.entries }));
        } else if (o.k === 'remember') {
          // Times in arrival order, as a rebuild from the log gives them (ids then expire oldest first).
          now += o.dt;
          d.remember(o.id, now);
          m.remember(o.id, now);
        } else {
          d.forget(o.ids);
          m.forget(o.ids);
        }
        assert.ok(d.size <= maxIds);
      }
    }),
    { numRuns: 2000 },
  );
});

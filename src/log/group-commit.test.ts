import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GroupCommit } from './group-commit.js';

const turn = () => new Promise((r) => setImmediate(r));

test('property: any adds while flushes finish in any order: every item flushed once, never more than maxInFlight flushes at once, one at a time in order when 1, drain waits for all', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }),
      // Each step: add some items in this turn, then let some pending flushes finish (which ones: by index).
      fc.array(fc.record({ add: fc.integer({ min: 0, max: 3 }), finish: fc.array(fc.nat(), { maxLength: 3 }) }), { minLength: 1, maxLength: 20 }),
      async (maxInFlight, steps) => {
        const pending: { group: number[]; done: () => void }[] = [];
        const flushed: number[][] = [];
        let running = 0;
        let most = 0;
        const groups = new GroupCommit<number>(async (group) => {
          running++;
          most = Math.max(most, running);
          assert.ok(running <= maxInFlight, `${running} flushes at once (at most ${maxInFlight})`);
          await new Promise<void>((done) => pending.push({ group, done }));
          running--;
          flushed.push(group);
        }, maxInFlight);
        let next = 0;
        for (const s of steps) {
          for (let i = 0; i < s.add; i++) groups.add(next++);
          await turn();
          for (const f of s.finish) {
            if (pending.length === 0) break;
            pending.splice(f % pending.length, 1)[0].done();
          }
          await turn();
        }
        let drained = false;
        const draining = groups.drain().then(() => {
          drained = true;
        });
        // Finish what is left (and what the finished ones let start), oldest first.
        for (let spins = 0; !drained; spins++) {
          assert.ok(spins < 10_000, 'drain never resolved');
          if (pending.length > 0) pending.shift()!.done();
          await turn();
        }
        assert.equal(pending.length, 0, 'drain resolved while flushes were pending');
        await draining;
        assert.deepEqual(flushed.flat().sort((a, b) => a - b), Array.from({ length: next }, (_, i) => i), 'every item flushed once');
        for (const g of flushed) assert.ok(g.length > 0, 'no empty group');
        if (maxInFlight === 1) assert.deepEqual(flushed.flat(), Array.from({ length: next }, (_, i) => i), 'one at a time, in order');
        assert.ok(most <= maxInFlight);
      },
    ),
    { numRuns: 200 },
  );
});

test('groups are flushed side by side up to maxInFlight: a second group goes out while the first waits', async () => {
  const started: number[][] = [];
  const release: (() => void)[] = [];
  const groups = new GroupCommit<number>(async (group) => {
    started.push(group);
    await new Promise<void>((r) => release.push(r));
  }, 2);
  groups.add(1);
  await turn();
  groups.add(2);
  groups.add(3);
  await turn();
  groups.add(4);
  await turn();
  // Two in flight ([1] and [2, 3]); 4 waits for one of them.
  assert.deepEqual(started, [[1], [2, 3]]);
  release[1]();
  await turn();
  await turn();
  assert.deepEqual(started, [[1], [2, 3], [4]]);
  for (const r of release) r();
  await groups.drain();
});

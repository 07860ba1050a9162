import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SHIFT, firstAfterRefresh } from './jetstream-log.js';

/**
 * A refresh learns where a partition's first message is from the leader's info and a direct get that any copy may
 * answer. Model: a partition's messages in stream order, retention removing the oldest, the info taken after some were
 * stored, more stored after it (the watcher may have told of them), the direct get answered by a copy that applied
 * any prefix of what the leader did. Readers that find nothing jump to the first position (`readBatch`), so it must
 * never be past a stored message; and with nothing stored it is the end (what stats show for an empty partition).
 */
test('property: a refresh never moves the first position past a stored message, whichever copy answers and whatever was stored since the info', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 0, maxLength: 12 }),
      fc.array(fc.nat(), { minLength: 10, maxLength: 10 }),
      fc.boolean(),
      (gaps, picks, lagging) => {
        // Sequences of the partition's messages (gaps: other partitions' messages in between).
        const seqs: number[] = [];
        for (const g of gaps) seqs.push((seqs.at(-1) ?? 0) + g);
        const n = seqs.length;
        const pick = (i: number, lo: number, hi: number) => (hi <= lo ? lo : lo + (picks[i] % (hi - lo + 1)));
        const k = pick(0, 0, n); // stored when the leader answered the info
        const removedAtInfo = pick(1, 0, k);
        const infoLastSeq = pick(2, k === 0 ? 0 : seqs[k - 1], k < n ? seqs[k] - 1 : (seqs.at(-1) ?? 0) + 3);
        const m = pick(3, k, n); // stored by the time of the direct get
        const removedNow = pick(4, removedAtInfo, k); // retention goes on (the oldest first)
        const seen = pick(5, 0, m); // how many the watcher told of
        // The copy answering the direct get: up to date, or behind the leader in what it stored and removed.
        const copyStored = lagging ? pick(6, 0, m) : m;
        const copyRemoved = lagging ? Math.min(pick(7, 0, removedNow), copyStored) : removedNow;
        // A refresh asks for the first message only when the info counted some.
        const messages = k - removedAtInfo;
        const firstSeq = messages > 0 && copyRemoved < copyStored ? seqs[copyRemoved] : null;
        const end = seen === 0 ? 0 : (seqs[seen - 1] + 1) * SHIFT;
        // Where it was: anything (before a refresh found the first message, the watcher's first one, past older ones).
        const current = pick(8, 0, end + SHIFT);
        // The stream's first sequence at the info: at most the partition's first then (other partitions' may be older).
        const infoFirstSeq = pick(9, 1, removedAtInfo < k ? seqs[removedAtInfo] : infoLastSeq + 1);

        const first = firstAfterRefresh({ current, end, messages, firstSeq, infoFirstSeq, infoLastSeq });
        for (let i = removedNow; i < m; i++) {
          assert.ok(first <= seqs[i] * SHIFT, `first ${first / SHIFT} is past stored message ${seqs[i]} (seqs ${seqs}, info ${messages} messages to ${infoLastSeq}, copy ${copyRemoved}..${copyStored})`);
        }
        if (messages === 0 && m === k && seen === m) assert.equal(first, end, 'nothing stored: the first position is the end');
        if (!lagging && messages > 0 && removedNow < m) assert.equal(first, seqs[removedNow] * SHIFT, 'an up-to-date copy answered: its first message');
      },
    ),
    { numRuns: 2000 },
  );
});

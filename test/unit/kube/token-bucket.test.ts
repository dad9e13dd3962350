import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { TokenBucket } from '../../../src/kube/client.js';

test('the token bucket serves waiters in order and leaves no listener on their signal', async () => {
  const bucket = new TokenBucket(1000, 2);
  const signal = new AbortController().signal;
  const order: number[] = [];
  await Promise.all(
    Array.from({ length: 50 }, (_, i) => bucket.take(signal).then(() => order.push(i))),
  );
  assert.deepEqual(
    order,
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.equal(getEventListeners(signal, 'abort').length, 0);
});

test('an aborted waiter is rejected and leaves the queue; the others are still served', async () => {
  const bucket = new TokenBucket(50, 1);
  await bucket.take();
  const stop = new AbortController();
  const doomed = bucket.take(stop.signal);
  const next = bucket.take();
  stop.abort(new Error('stopped'));
  await assert.rejects(doomed, /stopped/);
  await next;
});

import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { abortOf } from '../../../src/abort.js';
import { runTogether } from '../../../src/agent/wiring.js';

/** A part that runs until its signal aborts, then takes a turn of the event loop to stop. */
class Part {
  stopped = false;
  readonly running: Promise<void>;

  constructor(signal: AbortSignal, onStop?: () => void) {
    this.running = abortOf(signal).then(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      this.stopped = true;
      onStop?.();
    });
  }
}

test('one part failing stops the others; its error is rethrown once all have stopped', async () => {
  const failure = new Error('second part failed');
  const parts: Part[] = [];
  const outside = new AbortController();
  let stoppedWhenRejected: boolean[] = [];
  await assert.rejects(
    runTogether(outside.signal, (own) => {
      // The first part fails too, but only because it was stopped: the error reported is the
      // one that stopped everything, not the first in the list.
      const first = new Part(own, () => {
        throw new Error('first part stopped by the abort');
      });
      const third = new Part(own);
      parts.push(first, third);
      const second = new Promise<never>((_, reject) => {
        setImmediate(() => {
          reject(failure);
        });
      });
      return [first.running, second, third.running];
    }).catch((err: unknown) => {
      stoppedWhenRejected = parts.map((p) => p.stopped);
      throw err;
    }),
    (err) => err === failure,
  );
  assert.deepEqual(stoppedWhenRejected, [true, true]);
  assert.equal(outside.signal.aborted, false, 'the caller’s signal is not aborted');
  assert.equal(getEventListeners(outside.signal, 'abort').length, 0);
});

test('an abort of the signal stops every part; the run resolves once all have stopped', async () => {
  const outside = new AbortController();
  const parts: Part[] = [];
  let own: AbortSignal | undefined;
  const run = runTogether(outside.signal, (signal) => {
    own = signal;
    parts.push(new Part(signal), new Part(signal), new Part(signal));
    return parts.map((p) => p.running);
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(own?.aborted, false);
  outside.abort();
  await run;
  assert.deepEqual(
    parts.map((p) => p.stopped),
    [true, true, true],
  );
  assert.equal(getEventListeners(outside.signal, 'abort').length, 0);
});

test('parts started with an aborted signal get an aborted signal and stop at once', async () => {
  const parts: Part[] = [];
  await runTogether(AbortSignal.abort(), (own) => {
    assert.equal(own.aborted, true);
    parts.push(new Part(own), new Part(own));
    return parts.map((p) => p.running);
  });
  assert.deepEqual(
    parts.map((p) => p.stopped),
    [true, true],
  );
});

test('a part that ends without an error does not stop the others', async () => {
  const outside = new AbortController();
  let other: Part | undefined;
  let own: AbortSignal | undefined;
  const run = runTogether(outside.signal, (signal) => {
    own = signal;
    other = new Part(signal);
    return [Promise.resolve(), other.running];
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(own?.aborted, false);
  assert.equal(other?.stopped, false);
  outside.abort();
  await run;
  assert.equal(other?.stopped, true);
});

test('an error thrown while starting the parts is rethrown and leaves no listener behind', async () => {
  const outside = new AbortController();
  const failure = new Error('cannot start');
  await assert.rejects(
    runTogether(outside.signal, () => {
      throw failure;
    }),
    (err) => err === failure,
  );
  assert.equal(getEventListeners(outside.signal, 'abort').length, 0);
});

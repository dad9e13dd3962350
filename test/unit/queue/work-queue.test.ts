import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorCode, errorMessage, invalidInput, unavailable } from '../../../src/errors.js';
import { WorkQueue, backoffDelayMs, type WorkQueueOptions } from '../../../src/queue/index.js';
import { waitFor } from '../../helpers/wait.js';

const soon = { intervalMs: 1, timeoutMs: 10_000 };

interface Gate {
  readonly promise: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

interface Running {
  readonly signal: AbortSignal;
  /** Aborts the run and waits for it to drain. */
  stop(): Promise<void>;
}

function start(queue: WorkQueue): Running {
  const controller = new AbortController();
  const done = queue.run(controller.signal);
  return {
    signal: controller.signal,
    stop: async () => {
      controller.abort();
      await done;
    },
  };
}

interface ErrorReport {
  readonly key: string;
  readonly error: unknown;
  readonly attempt: number;
  readonly willRetry: boolean;
}

function queueWith(
  handler: WorkQueueOptions['handler'],
  options: Partial<WorkQueueOptions> = {},
): { queue: WorkQueue; errors: ErrorReport[] } {
  const errors: ErrorReport[] = [];
  const queue = new WorkQueue({
    name: 'test',
    handler,
    onError: (key, error, attempt, willRetry) => errors.push({ key, error, attempt, willRetry }),
    ...options,
  });
  return { queue, errors };
}

test('adding a queued key again does nothing', async () => {
  const seen: string[] = [];
  const { queue } = queueWith(async (key) => {
    seen.push(key);
    await Promise.resolve();
  });
  queue.add('a');
  queue.add('a');
  queue.add('b');
  queue.add('a');
  assert.equal(queue.stats().queued, 2);
  assert.ok(queue.has('a'));
  const run = start(queue);
  await queue.whenIdle();
  assert.deepEqual(seen, ['a', 'b']);
  assert.equal(queue.has('a'), false);
  await run.stop();
});

test('a key added while in flight runs exactly once more, never concurrently', async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const first = gate();
  const { queue } = queueWith(
    async () => {
      runs += 1;
      active += 1;
      maxActive = Math.max(maxActive, active);
      if (runs === 1) await first.promise;
      active -= 1;
    },
    { workers: 4 },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => queue.stats().inFlight === 1, soon);
  queue.add('a');
  queue.add('a');
  queue.add('a');
  // Dirty, not queued: a second worker must not pick it up.
  assert.deepEqual([queue.stats().queued, queue.stats().inFlight], [0, 1]);
  assert.ok(queue.has('a'));
  first.open();
  await waitFor(() => runs === 2 && queue.stats().inFlight === 0, soon);
  await queue.whenIdle();
  assert.equal(runs, 2);
  assert.equal(maxActive, 1);
  await run.stop();
  assert.equal(runs, 2);
});

test('distinct keys start in FIFO order with one worker', async () => {
  const seen: string[] = [];
  const { queue } = queueWith(
    async (key) => {
      seen.push(key);
      await Promise.resolve();
    },
    { workers: 1 },
  );
  const keys = ['d', 'a', 'c', 'b', 'e'];
  for (const key of keys) queue.add(key);
  const run = start(queue);
  queue.add('f');
  queue.add('a'); // queued already: keeps its place
  await queue.whenIdle();
  assert.deepEqual(seen, [...keys, 'f']);
  await run.stop();
});

test('no more than `workers` handlers run at once', async () => {
  const release = gate();
  let active = 0;
  let maxActive = 0;
  const { queue } = queueWith(
    async () => {
      active += 1;
      maxActive = Math.max(maxActive, active);
      await release.promise;
      active -= 1;
    },
    { workers: 3 },
  );
  const run = start(queue);
  for (let i = 0; i < 10; i++) queue.add(`k${String(i)}`);
  await waitFor(() => queue.stats().inFlight === 3, soon);
  assert.equal(queue.stats().queued, 7);
  release.open();
  await queue.whenIdle();
  assert.equal(maxActive, 3);
  assert.equal(queue.stats().processed, 10);
  await run.stop();
});

test('backoff doubles per consecutive failure and is capped', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffDelayMs(attempt, 100, 1_000)),
    [100, 200, 400, 800, 1_000, 1_000, 1_000],
  );
  assert.equal(backoffDelayMs(5_000, 100, 300_000), 300_000);
});

test('a failing key is retried with growing, capped delays until maxAttempts', async () => {
  const startedAt: number[] = [];
  const { queue, errors } = queueWith(
    async () => {
      startedAt.push(performance.now());
      await Promise.resolve();
      throw unavailable('backend busy');
    },
    { baseBackoffMs: 2, maxBackoffMs: 8, maxAttempts: 12 },
  );
  const run = start(queue);
  const began = performance.now();
  queue.add('a');
  await waitFor(() => errors.length === 12, soon);
  const elapsed = performance.now() - began;
  assert.deepEqual(
    errors.map((e) => [e.attempt, e.willRetry]),
    Array.from({ length: 12 }, (_, i) => [i + 1, i + 1 < 12]),
  );
  const gaps = startedAt.slice(1).map((t, i) => t - (startedAt[i] ?? 0));
  const expected = [2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8];
  // Timers never fire early (1 ms of slack for clock rounding), so the delays grow as planned.
  gaps.forEach((gap, i) => {
    assert.ok(gap >= (expected[i] ?? 0) - 1, `gap ${String(i)} was ${gap.toFixed(1)} ms`);
  });
  // Without the cap the last delays alone would add up to more than 8 seconds.
  assert.ok(elapsed < 4_000, `took ${elapsed.toFixed(0)} ms`);
  assert.deepEqual(queue.stats(), {
    queued: 0,
    inFlight: 0,
    delayed: 0,
    processed: 0,
    failed: 12,
    retried: 11,
  });
  await run.stop();
});

test('a non-retryable error drops the key and reports willRetry=false', async () => {
  let runs = 0;
  const { queue, errors } = queueWith(async () => {
    runs += 1;
    await Promise.resolve();
    throw invalidInput('x');
  });
  const run = start(queue);
  queue.add('a');
  await waitFor(() => errors.length === 1, soon);
  await queue.whenIdle();
  assert.equal(runs, 1);
  const [report] = errors;
  assert.ok(report);
  assert.deepEqual([report.key, report.attempt, report.willRetry], ['a', 1, false]);
  assert.ok(report.error instanceof Error);
  assert.equal(report.error.message, 'x');
  assert.equal(queue.has('a'), false);
  assert.deepEqual(queue.stats(), {
    queued: 0,
    inFlight: 0,
    delayed: 0,
    processed: 0,
    failed: 1,
    retried: 0,
  });
  await run.stop();
});

test('shouldRetry decides, and a synchronous throw counts as a failure', async () => {
  const asked: [string, number][] = [];
  const { queue, errors } = queueWith(
    () => {
      throw new Error('sync');
    },
    {
      shouldRetry: (_error, key, attempt) => {
        asked.push([key, attempt]);
        return attempt < 2;
      },
      baseBackoffMs: 1,
    },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => errors.length === 2, soon);
  assert.deepEqual(asked, [
    ['a', 1],
    ['a', 2],
  ]);
  assert.deepEqual(
    errors.map((e) => e.willRetry),
    [true, false],
  );
  await run.stop();
});

test('a success resets the backoff', async () => {
  let runs = 0;
  const { queue, errors } = queueWith(
    async () => {
      runs += 1;
      await Promise.resolve();
      // Fails, fails, succeeds; then fails again after the next add.
      if (runs !== 3) throw unavailable('busy');
    },
    { baseBackoffMs: 1, maxAttempts: 5 },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => queue.stats().processed === 1, soon);
  assert.deepEqual(
    errors.map((e) => e.attempt),
    [1, 2],
  );
  queue.add('a');
  await waitFor(() => errors.length === 3, soon);
  assert.equal(errors[2]?.attempt, 1);
  queue.forget('a');
  await run.stop();
});

test('addAfter keeps the earlier deadline, and add() runs a delayed key now', async () => {
  const seen: string[] = [];
  const { queue } = queueWith(async (key) => {
    seen.push(key);
    await Promise.resolve();
  });
  const run = start(queue);

  queue.addAfter('late-then-early', 60_000);
  queue.addAfter('late-then-early', 5);
  queue.addAfter('early-then-late', 5);
  queue.addAfter('early-then-late', 60_000);
  assert.equal(queue.stats().delayed, 2);
  assert.ok(queue.has('late-then-early'));
  await waitFor(() => seen.length === 2, soon);
  assert.deepEqual(new Set(seen), new Set(['late-then-early', 'early-then-late']));
  assert.equal(queue.stats().delayed, 0);

  queue.addAfter('now', 60_000);
  queue.add('now');
  assert.equal(queue.stats().delayed, 0);
  await queue.whenIdle();
  assert.deepEqual(seen.slice(2), ['now']);

  queue.addAfter('zero', 0);
  assert.equal(queue.stats().queued, 1);
  await queue.whenIdle();
  assert.deepEqual(seen.slice(3), ['zero']);
  await run.stop();
});

test('whenIdle does not wait for delayed keys', async () => {
  const { queue } = queueWith(async () => {
    await Promise.resolve();
  });
  const run = start(queue);
  queue.addAfter('a', 60_000);
  await queue.whenIdle();
  assert.equal(queue.stats().delayed, 1);
  await run.stop();
});

test('forget cancels a pending retry and resets the attempt count', async () => {
  const { queue, errors } = queueWith(
    async () => {
      await Promise.resolve();
      throw unavailable('busy');
    },
    { baseBackoffMs: 60_000, maxBackoffMs: 60_000 },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => queue.stats().delayed === 1, soon);
  assert.equal(errors[0]?.willRetry, true);
  assert.equal(queue.stats().retried, 1);
  queue.forget('a');
  assert.equal(queue.stats().delayed, 0);
  assert.equal(queue.has('a'), false);
  queue.add('a');
  await waitFor(() => errors.length === 2, soon);
  assert.equal(errors[1]?.attempt, 1);
  await run.stop();
});

test('forget during a run keeps that run from being retried', async () => {
  const release = gate();
  const { queue, errors } = queueWith(
    async () => {
      await release.promise;
      throw unavailable('busy');
    },
    { baseBackoffMs: 1 },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => queue.stats().inFlight === 1, soon);
  queue.forget('a');
  release.open();
  await waitFor(() => errors.length === 1, soon);
  assert.equal(errors[0]?.willRetry, false);
  assert.deepEqual([queue.stats().delayed, queue.stats().retried], [0, 0]);
  await run.stop();
});

test('a key that fails after being added again runs again at once, keeping its count', async () => {
  const release = gate();
  let runs = 0;
  const { queue, errors } = queueWith(
    async () => {
      runs += 1;
      if (runs === 1) await release.promise;
      throw unavailable('busy');
    },
    { baseBackoffMs: 60_000, maxBackoffMs: 60_000 },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => queue.stats().inFlight === 1, soon);
  queue.add('a');
  release.open();
  // The second run follows without the 60 s backoff; only its own failure schedules a retry.
  await waitFor(() => errors.length === 2, soon);
  assert.deepEqual(
    errors.map((e) => [e.attempt, e.willRetry]),
    [
      [1, true],
      [2, true],
    ],
  );
  await waitFor(() => queue.stats().delayed === 1, soon);
  await run.stop();
});

test('aborting the run drains in-flight work and starts nothing new', async () => {
  const release = gate();
  const started: string[] = [];
  const signals: AbortSignal[] = [];
  const { queue, errors } = queueWith(
    async (key, signal) => {
      started.push(key);
      signals.push(signal);
      await release.promise;
    },
    { workers: 2 },
  );
  for (const key of ['a', 'b', 'c', 'd', 'e']) queue.add(key);
  queue.addAfter('later', 60_000);
  const controller = new AbortController();
  let finished = false;
  const done = queue.run(controller.signal).then(() => {
    finished = true;
  });
  await waitFor(() => started.length === 2, soon);

  controller.abort();
  assert.ok(signals.every((s) => s.aborted));
  assert.deepEqual(queue.stats(), {
    queued: 0,
    inFlight: 2,
    delayed: 0,
    processed: 0,
    failed: 0,
    retried: 0,
  });
  queue.add('f');
  queue.addAfter('g', 1);
  queue.add('a'); // in flight: would redirty, but the queue is stopping
  assert.equal(queue.has('f'), false);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(finished, false);

  release.open();
  await done;
  assert.deepEqual(started, ['a', 'b']);
  assert.equal(queue.stats().processed, 2);
  assert.equal(queue.stats().inFlight, 0);
  assert.equal(errors.length, 0);
  await queue.whenIdle();
});

test('a failure during shutdown is reported and not retried', async () => {
  const { queue, errors } = queueWith(
    async (_key, signal) => {
      await new Promise<void>((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    },
    { baseBackoffMs: 1 },
  );
  const run = start(queue);
  queue.add('a');
  await waitFor(() => queue.stats().inFlight === 1, soon);
  await run.stop();
  assert.deepEqual(
    errors.map((e) => [e.key, e.willRetry]),
    [['a', false]],
  );
  assert.deepEqual([queue.stats().failed, queue.stats().retried, queue.stats().delayed], [1, 0, 0]);
});

test('run() with an aborted signal resolves at once and starts nothing', async () => {
  let runs = 0;
  const { queue } = queueWith(async () => {
    runs += 1;
    await Promise.resolve();
  });
  queue.add('a');
  await queue.run(AbortSignal.abort());
  assert.equal(runs, 0);
  assert.equal(queue.has('a'), false);
});

test('run() may be called only once', async () => {
  const { queue } = queueWith(async () => {
    await Promise.resolve();
  });
  const run = start(queue);
  await assert.rejects(queue.run(new AbortController().signal), /run\(\) may be called only once/);
  await run.stop();
  await assert.rejects(queue.run(new AbortController().signal), /only once/);
});

test('stats() counts completions, rejections and retries', async () => {
  const failedOnce = new Set<string>();
  const { queue } = queueWith(
    async (key) => {
      await Promise.resolve();
      if (key === 'bad') throw invalidInput('bad');
      if (key === 'flaky' && !failedOnce.has(key)) {
        failedOnce.add(key);
        throw unavailable('flaky');
      }
    },
    { baseBackoffMs: 1 },
  );
  const run = start(queue);
  for (const key of ['ok', 'bad', 'flaky', 'ok']) queue.add(key);
  await waitFor(() => queue.stats().processed === 2, soon);
  assert.deepEqual(queue.stats(), {
    queued: 0,
    inFlight: 0,
    delayed: 0,
    processed: 2,
    failed: 2,
    retried: 1,
  });
  await run.stop();
});

test('the constructor rejects bad options', () => {
  const handler = async (): Promise<void> => {
    await Promise.resolve();
  };
  const bad: [Partial<WorkQueueOptions>, RegExp][] = [
    [{ name: '' }, /^WorkQueue: name must be a non-empty string/],
    [{ handler: 'nope' as unknown as WorkQueueOptions['handler'] }, /^WorkQueue "q": handler/],
    [{ workers: 0 }, /^WorkQueue "q": workers must be a positive integer, got 0/],
    [{ workers: 1.5 }, /workers/],
    [{ baseBackoffMs: 0 }, /baseBackoffMs/],
    [{ baseBackoffMs: Number.NaN }, /baseBackoffMs/],
    [{ maxBackoffMs: 2 ** 31 }, /maxBackoffMs/],
    [{ baseBackoffMs: 10, maxBackoffMs: 5 }, /must not exceed maxBackoffMs/],
    [{ maxAttempts: 0 }, /maxAttempts/],
    [{ onError: 1 as unknown as WorkQueueOptions['onError'] }, /onError/],
  ];
  for (const [options, message] of bad) {
    assert.throws(
      () => new WorkQueue({ name: 'q', handler, ...options }),
      (err: unknown) => {
        assert.equal(
          errorCode(err),
          'InvalidInput',
          `${String(err)} for ${JSON.stringify(options)}`,
        );
        assert.match(errorMessage(err), message);
        return true;
      },
    );
  }
  const queue = new WorkQueue({ name: 'q', handler, maxAttempts: Infinity });
  assert.equal(queue.name, 'q');
  assert.throws(() => queue.addAfter('a', Number.NaN), RangeError);
  // Longer than a timer can wait: shortened, not an error.
  queue.addAfter('a', Infinity);
  assert.equal(queue.stats().delayed, 1);
  queue.forget('a');
  assert.equal(queue.stats().delayed, 0);
});

test('20,000 keys are all processed', async () => {
  let runs = 0;
  const { queue } = queueWith(
    async () => {
      runs += 1;
      await Promise.resolve();
    },
    { workers: 10 },
  );
  const run = start(queue);
  for (let i = 0; i < 20_000; i++) queue.add(`ns/pod-${String(i)}`);
  for (let i = 0; i < 20_000; i += 2) queue.add(`ns/pod-${String(i)}`);
  await queue.whenIdle();
  assert.equal(runs, 20_000);
  assert.equal(queue.stats().processed, 20_000);
  await run.stop();
});

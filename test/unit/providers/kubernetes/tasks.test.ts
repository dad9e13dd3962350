import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackgroundTasks } from '../../../../src/providers/kubernetes/tasks.js';
import { waitFor } from '../../../helpers/wait.js';

/** A promise and the functions that settle it. */
function pending(): {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
} {
  let resolve = (): void => undefined;
  let reject = (_err: Error): void => undefined;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test('a task is held while it runs and leaves when it ends: a thousand ended tasks hold nothing', async () => {
  const tasks = new BackgroundTasks();
  const running = pending();
  tasks.add(running.promise);
  for (let i = 0; i < 1000; i++) tasks.add(Promise.resolve());
  assert.equal(tasks.size, 1001);
  await waitFor(() => tasks.size === 1, { what: 'only the running task held' });
  running.resolve();
  await waitFor(() => tasks.size === 0, { what: 'no task held' });
});

test('a failed task leaves too, and settled() resolves without its error', async () => {
  const tasks = new BackgroundTasks();
  const failing = pending();
  tasks.add(failing.promise);
  const settled = tasks.settled();
  failing.reject(new Error('remote create refused'));
  await settled;
  assert.equal(tasks.size, 0);
});

test('settled() waits for a task added while it waits', async () => {
  const tasks = new BackgroundTasks();
  const first = pending();
  const second = pending();
  tasks.add(first.promise);
  let done = false;
  const settled = tasks.settled().then(() => {
    done = true;
  });
  tasks.add(second.promise);
  first.resolve();
  await waitFor(() => tasks.size === 1, { what: 'the first task gone' });
  assert.equal(done, false, 'the second task still runs');
  second.resolve();
  await settled;
  assert.equal(tasks.size, 0);
});

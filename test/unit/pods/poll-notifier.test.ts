import type { V1Pod, V1PodStatus } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { notFound, unavailable } from '../../../src/errors.js';
import { PollNotifier, type PollNotifierOptions } from '../../../src/pods/poll-notifier.js';
import type { PodLifecycleHandler } from '../../../src/provider.js';
import { waitFor } from '../../helpers/wait.js';

const NOW = new Date('2030-01-01T00:10:00Z');
const unused = (): Promise<never> => Promise.reject(new Error('not used by the poller'));

/** A provider whose statuses the test sets; `calls` counts getPodStatus by pod name. */
class FakeProvider implements PodLifecycleHandler {
  readonly statuses = new Map<string, V1PodStatus | Error>();
  readonly calls = new Map<string, number>();
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;

  createPod = unused;
  updatePod = unused;
  deletePod = unused;
  getPod = unused;
  getPods = unused;

  async getPodStatus(_namespace: string, name: string): Promise<V1PodStatus | undefined> {
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      const status = this.statuses.get(name);
      if (status instanceof Error) throw status;
      return status && structuredClone(status);
    } finally {
      this.inFlight--;
    }
  }
}

function apiPod(name: string, status: V1PodStatus, ageMs = 10 * 60_000): V1Pod {
  return {
    metadata: {
      namespace: 'ns',
      name,
      uid: `uid-${name}`,
      creationTimestamp: new Date(NOW.getTime() - ageMs).toISOString(),
    },
    spec: { containers: [{ name: 'main', image: 'busybox' }] },
    status,
  };
}

const runningStatus = (startedAt = '2030-01-01T00:00:00Z'): V1PodStatus => ({
  phase: 'Running',
  containerStatuses: [
    {
      name: 'main',
      image: 'busybox',
      imageID: '',
      containerID: 'mock://uid/main',
      ready: true,
      restartCount: 0,
      state: { running: { startedAt } },
    },
  ],
});

function setup(pods: V1Pod[], options: Partial<PollNotifierOptions> = {}) {
  const provider = new FakeProvider();
  const pushed: V1Pod[] = [];
  const poller = new PollNotifier({
    provider,
    listPods: () => pods,
    clock: () => NOW,
    ...options,
  });
  poller.notifyPods((pod) => pushed.push(pod));
  return { provider, pushed, poller };
}

describe('PollNotifier', () => {
  test('reports the provider status on a copy of the pod, once per distinct status', async () => {
    const pod = apiPod('a', { phase: 'Pending' });
    const { provider, pushed, poller } = setup([pod]);
    provider.statuses.set('a', runningStatus());

    await poller.pollNow();
    await poller.pollNow();
    assert.equal(pushed.length, 1, 'an identical status is reported once');
    assert.equal(pushed[0]?.status?.phase, 'Running');
    assert.deepEqual(pushed[0].metadata, pod.metadata);
    assert.equal(pod.status?.phase, 'Pending', 'the listed pod is not mutated');

    provider.statuses.set('a', { ...runningStatus(), podIP: '10.0.0.1' });
    await poller.pollNow();
    assert.equal(pushed.length, 2);
    assert.equal(pushed[1]?.status?.podIP, '10.0.0.1');
  });

  test('a Running pod the provider lost becomes Failed/NotFound with exit code 137', async () => {
    const started = '2030-01-01T00:00:00Z';
    const pod = apiPod('lost', runningStatus(started), 1000);
    const { provider, pushed, poller } = setup([pod]);
    await poller.pollNow();
    await poller.pollNow();
    assert.equal(pushed.length, 1, 'reported once');
    const status = pushed[0]?.status;
    assert.equal(status?.phase, 'Failed');
    assert.equal(status.reason, 'NotFound');
    assert.equal(
      status.message,
      'The pod status was not found and may have been deleted from the provider',
    );
    const cs = status.containerStatuses?.[0];
    assert.equal(cs?.state?.running, undefined);
    assert.deepEqual(cs?.state?.terminated, {
      exitCode: 137,
      reason: 'NotFound',
      message: 'Container was not found and was likely deleted',
      finishedAt: '2030-01-01T00:10:00Z',
      startedAt: started,
      containerID: 'mock://uid/main',
    });
    assert.equal(cs.ready, false);
    assert.equal(provider.calls.get('lost'), 2);

    // A NotFound error means the same as undefined.
    const other = setup([apiPod('gone', runningStatus())]);
    other.provider.statuses.set('gone', notFound('no such pod'));
    await other.poller.pollNow();
    assert.equal(other.pushed[0]?.status?.reason, 'NotFound');
  });

  test('a young Pending pod the provider does not know is left alone; an old one fails', async () => {
    const young = apiPod('young', { phase: 'Pending' }, 5000);
    const old = apiPod('old', { phase: 'Pending' }, 2 * 60_000);
    const { pushed, poller } = setup([young, old]);
    await poller.pollNow();
    assert.deepEqual(
      pushed.map((p) => [p.metadata?.name, p.status?.phase, p.status?.reason]),
      [['old', 'Failed', 'NotFound']],
    );
  });

  test('a pod being deleted that the provider forgot is reported terminated, not lost', async () => {
    const pod = apiPod('bye', runningStatus());
    pod.metadata = { ...pod.metadata, deletionTimestamp: NOW.toISOString() };
    const { pushed, poller } = setup([pod]);
    await poller.pollNow();
    await poller.pollNow();
    assert.equal(pushed.length, 1);
    const status = pushed[0]?.status;
    assert.equal(status?.phase, 'Succeeded');
    assert.equal(status.reason, 'Terminated');
    assert.equal(status.containerStatuses?.[0]?.state?.terminated?.exitCode, 0);
  });

  test('errors are skipped and the pod is tried again next round', async () => {
    const { provider, pushed, poller } = setup([
      apiPod('flaky', { phase: 'Pending' }),
      apiPod('fine', { phase: 'Pending' }),
    ]);
    provider.statuses.set('flaky', unavailable('backend busy'));
    provider.statuses.set('fine', runningStatus());
    await poller.pollNow();
    assert.deepEqual(
      pushed.map((p) => p.metadata?.name),
      ['fine'],
    );
    provider.statuses.set('flaky', runningStatus());
    await poller.pollNow();
    assert.deepEqual(
      pushed.map((p) => p.metadata?.name),
      ['fine', 'flaky'],
    );
  });

  test('terminal pods are not polled', async () => {
    const { provider, poller } = setup([
      apiPod('done', { phase: 'Succeeded' }),
      apiPod('failed', { phase: 'Failed' }),
      apiPod('running', runningStatus()),
    ]);
    provider.statuses.set('running', runningStatus());
    await poller.pollNow();
    assert.deepEqual([...provider.calls.keys()], ['running']);
  });

  test('without a callback nothing is polled', async () => {
    const provider = new FakeProvider();
    const poller = new PollNotifier({ provider, listPods: () => [apiPod('a', {})] });
    await poller.pollNow();
    assert.equal(provider.calls.size, 0);
  });

  test('at most `concurrency` calls are in flight', async () => {
    const pods = Array.from({ length: 12 }, (_, i) =>
      apiPod(`p${String(i)}`, { phase: 'Pending' }),
    );
    const { provider, pushed, poller } = setup(pods, { concurrency: 3 });
    provider.delayMs = 5;
    for (const pod of pods) provider.statuses.set(pod.metadata?.name ?? '', runningStatus());
    await poller.pollNow();
    assert.equal(pushed.length, 12);
    assert.equal(provider.maxInFlight, 3);
  });

  test('a listPods error skips the round', async () => {
    const provider = new FakeProvider();
    const poller = new PollNotifier({
      provider,
      listPods: () => {
        throw new Error('cache not ready');
      },
    });
    poller.notifyPods(() => undefined);
    await poller.pollNow();
    assert.equal(provider.calls.size, 0);
  });

  test('run polls every interval and resolves after abort', async () => {
    const { provider, pushed, poller } = setup([apiPod('r', { phase: 'Pending' })], {
      intervalMs: 10,
    });
    provider.statuses.set('r', runningStatus());
    const controller = new AbortController();
    const running = poller.run(controller.signal);
    await waitFor(() => pushed.length === 1, { intervalMs: 5, timeoutMs: 5000 });
    await waitFor(() => (provider.calls.get('r') ?? 0) >= 3, { intervalMs: 5, timeoutMs: 5000 });
    controller.abort();
    await running;
    const calls = provider.calls.get('r');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(provider.calls.get('r'), calls, 'no round after run resolved');
  });

  test('validates its options', () => {
    const provider = new FakeProvider();
    assert.throws(() => new PollNotifier({ provider, listPods: () => [], intervalMs: 0 }), {
      code: 'InvalidInput',
    });
    assert.throws(() => new PollNotifier({ provider, listPods: () => [], concurrency: 1.5 }), {
      code: 'InvalidInput',
    });
  });
});

import type { CoreV1Event, V1Pod, V1PodSpec } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { permanent, unavailable } from '../../../src/errors.js';
import type { PodControllerOptions } from '../../../src/pods/pod-controller.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import type { MockConfig } from '../../../src/providers/mock/config.js';
import { FakeApi } from '../../helpers/fake-api.js';
import {
  runPodController,
  testPod,
  waitPodPhase,
  type RunningPodController,
} from '../../helpers/pod-controller.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'component-node';
const NS = 'apps';
const never = new AbortController().signal;
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };

/** The mock, counting creates (with their times) and failing the first `failCreates` of them. */
class TestMock extends MockProvider {
  readonly createdAt: number[] = [];
  failCreates = 0;
  failWith: () => Error = () => unavailable('mock: the backend is busy');

  get creates(): number {
    return this.createdAt.length;
  }

  override async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    this.createdAt.push(performance.now());
    if (this.failCreates > 0) {
      this.failCreates--;
      throw this.failWith();
    }
    await super.createPod(pod, signal);
  }
}

async function setup(
  t: TestContext,
  notify: boolean,
  config: MockConfig = {},
  options: Partial<PodControllerOptions> = {},
): Promise<{ api: FakeApi; provider: TestMock; running: RunningPodController }> {
  const api = await FakeApi.start(t);
  const provider = new TestMock({
    nodeName: NODE,
    notify,
    config: { logIntervalMs: 0, ...config },
  });
  t.after(() => provider.close());
  const running = await runPodController(t, api, provider, { nodeName: NODE, ...options });
  return { api, provider, running };
}

const pod = (name: string, spec: Partial<V1PodSpec> = {}): V1Pod => testPod(NS, NODE, name, spec);

const apiPod = (api: FakeApi, name: string): V1Pod | undefined => api.get('pods', NS, name);

const waitPhase = (api: FakeApi, name: string, phase: string): Promise<V1Pod> =>
  waitPodPhase(api, NS, name, phase, WAIT);

function waitGone(api: FakeApi, name: string): Promise<boolean> {
  return waitFor(() => apiPod(api, name) === undefined, { ...WAIT, what: `pod ${name} gone` });
}

const eventsOf = (api: FakeApi, name: string, reason: string): CoreV1Event[] =>
  api.list('events', NS).filter((e) => e.involvedObject.name === name && e.reason === reason);

/** The pod-status PATCHes and DELETEs the controller sent for `name`, in order. */
const writesOf = (api: FakeApi, name: string): { method: string; body: unknown }[] =>
  api.requests
    .filter(
      (r) =>
        (r.method === 'PATCH' && r.path === `/api/v1/namespaces/${NS}/pods/${name}/status`) ||
        (r.method === 'DELETE' && r.path === `/api/v1/namespaces/${NS}/pods/${name}`),
    )
    .map((r) => ({ method: r.method, body: r.body }));

for (const notify of [true, false]) {
  describe(`PodController with a ${notify ? 'push' : 'polled'} provider`, () => {
    test('a pod bound to the node is created once and its status written once', async (t) => {
      const { api, provider } = await setup(t, notify);
      // The first status write fails: the status queue tries again.
      api.fail({ method: 'PATCH', path: /\/pods\/web\/status$/, status: 500, times: 1 });
      const created = api.create('pods', pod('web'));
      const running = await waitPhase(api, 'web', 'Running');
      assert.equal(provider.creates, 1);
      assert.equal((await provider.getPod(NS, 'web', never))?.metadata?.uid, created.metadata?.uid);
      assert.equal(running.status?.hostIP, '127.0.0.1');
      assert.equal(running.status?.containerStatuses?.[0]?.ready, true);
      const types = (running.status?.conditions ?? []).map((c) => c.type).sort();
      assert.deepEqual(types, ['ContainersReady', 'Initialized', 'PodScheduled', 'Ready']);
      await waitFor(() => eventsOf(api, 'web', 'ProviderCreateSuccess').length === 1, WAIT);
      // The patches carry the pod's UID, so they cannot land on a newer pod of the same name.
      const writes = writesOf(api, 'web');
      for (const w of writes)
        assert.equal((w.body as V1Pod).metadata?.uid, created.metadata?.uid, 'UID in the patch');
      // The status is remembered as written: the cache's echo of it does not write it again.
      const before = writes.length;
      api.update('pods', NS, 'web', (p) => {
        p.metadata = { ...p.metadata, annotations: { note: 'x' } };
      });
      await waitFor(
        async () => (await provider.getPod(NS, 'web', never))?.metadata?.annotations?.note === 'x',
        WAIT,
      );
      assert.equal(writesOf(api, 'web').length, before);
    });

    test('a changed image reaches the provider, which restarts the container', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('pods', pod('web'));
      await waitPhase(api, 'web', 'Running');
      api.update('pods', NS, 'web', (p) => {
        const c = p.spec?.containers[0];
        if (c) c.image = 'busybox:2';
      });
      const updated = await waitFor(() => {
        const cs = apiPod(api, 'web')?.status?.containerStatuses?.[0];
        return cs?.image === 'busybox:2' ? cs : false;
      }, WAIT);
      assert.equal(updated.restartCount, 1);
      assert.equal(
        (await provider.getPod(NS, 'web', never))?.spec?.containers[0]?.image,
        'busybox:2',
      );
      assert.equal(provider.creates, 1);
    });

    test('an ephemeral container added to a running pod reaches the provider, its status the API', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create(
        'pods',
        pod('web', {
          containers: [{ name: 'app', image: 'busybox:1', env: [{ name: 'A', value: 'a' }] }],
        }),
      );
      await waitPhase(api, 'web', 'Running');
      api.update('pods', NS, 'web', (p) => {
        if (!p.spec) return;
        p.spec.ephemeralContainers = [
          {
            name: 'debugger',
            image: 'busybox:1',
            targetContainerName: 'app',
            stdin: true,
            tty: true,
            env: [{ name: 'B', value: '$(A)-b' }],
          },
        ];
      });
      const cs = await waitFor(
        () => apiPod(api, 'web')?.status?.ephemeralContainerStatuses?.[0] ?? false,
        { ...WAIT, what: 'ephemeralContainerStatuses' },
      );
      assert.equal(cs.name, 'debugger');
      assert.ok(cs.state?.running, 'the ephemeral container runs');
      const held = await provider.getPod(NS, 'web', never);
      const eph = held?.spec?.ephemeralContainers?.[0];
      assert.equal(eph?.name, 'debugger');
      // Its environment is resolved as an ordinary container's ($(A) is not its own: kept).
      assert.deepEqual(eph?.env, [{ name: 'B', value: '$(A)-b' }]);
      // The app container's status is untouched and the pod stays Running and Ready.
      const after = apiPod(api, 'web');
      assert.equal(after?.status?.phase, 'Running');
      assert.equal(after?.status?.containerStatuses?.[0]?.restartCount, 0);
      assert.equal(after?.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    });

    test('a graceful delete writes the final status, then removes the pod with its UID', async (t) => {
      const { api, provider } = await setup(t, notify);
      const created = api.create('pods', pod('web'));
      await waitPhase(api, 'web', 'Running');
      api.deletePod(NS, 'web', 30);
      await waitGone(api, 'web');
      await waitFor(async () => (await provider.getPods(never)).length === 0, WAIT);
      const writes = writesOf(api, 'web');
      const last = writes.at(-1);
      assert.equal(last?.method, 'DELETE');
      assert.deepEqual(last.body, {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        gracePeriodSeconds: 0,
        preconditions: { uid: created.metadata?.uid },
      });
      const final = writes.at(-2);
      assert.equal(final?.method, 'PATCH');
      assert.equal((final.body as V1Pod).status?.phase, 'Succeeded');
    });

    test('a graceful delete waits no longer than the grace period', async (t) => {
      const { api, provider } = await setup(t, notify, {
        containers: { app: { stopAfterSeconds: 60 } },
      });
      api.create('pods', pod('slow', { terminationGracePeriodSeconds: 1 }));
      await waitPhase(api, 'slow', 'Running');
      const started = performance.now();
      api.deletePod(NS, 'slow');
      await waitGone(api, 'slow');
      const tookMs = performance.now() - started;
      assert.ok(tookMs >= 900 && tookMs < 4_000, `removed after ${String(tookMs)} ms`);
      await waitFor(async () => (await provider.getPods(never)).length === 0, WAIT);
    });

    test('a force-deleted pod is removed from the provider', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('pods', pod('web'));
      await waitPhase(api, 'web', 'Running');
      api.deletePod(NS, 'web', 0);
      assert.equal(apiPod(api, 'web'), undefined);
      await waitFor(async () => (await provider.getPod(NS, 'web', never)) === undefined, WAIT);
      assert.equal(writesOf(api, 'web').filter((w) => w.method === 'DELETE').length, 0);
    });

    test('a pod replaced by another of the same name: the old one leaves the provider first', async (t) => {
      const { api, provider } = await setup(t, notify);
      const first = api.create('pods', pod('web'));
      await waitPhase(api, 'web', 'Running');
      api.deletePod(NS, 'web', 0);
      const second = api.create('pods', pod('web'));
      assert.notEqual(first.metadata?.uid, second.metadata?.uid);
      await waitFor(
        async () =>
          (await provider.getPod(NS, 'web', never))?.metadata?.uid === second.metadata?.uid,
        WAIT,
      );
      await waitPhase(api, 'web', 'Running');
      assert.equal(provider.creates, 2);
    });

    test('a retryable create failure is retried with backoff; the pod shows why meanwhile', async (t) => {
      const { api, provider } = await setup(t, notify);
      provider.failCreates = 3;
      api.create('pods', pod('flaky'));
      const pending = await waitFor(() => {
        const p = apiPod(api, 'flaky');
        return p?.status?.reason === 'ProviderFailed' ? p : false;
      }, WAIT);
      assert.equal(pending.status?.phase, 'Pending');
      assert.match(pending.status?.message ?? '', /could not create the pod: mock: the backend/);
      const running = await waitPhase(api, 'flaky', 'Running');
      // A report with a phase describes the pod as it is now: the old reason is cleared.
      assert.equal(running.status?.reason, undefined);
      assert.equal(provider.creates, 4);
      // Each retry waits at least its doubled delay (100, 200, 400 ms); a busy machine only adds.
      const gaps = provider.createdAt.slice(1).map((at, i) => at - (provider.createdAt[i] ?? 0));
      assert.ok(
        gaps.length === 3 && gaps.every((g, i) => g >= 0.95 * 100 * 2 ** i),
        `backoff grows: ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`,
      );
      // One Event, counted: the recorder raises its count rather than writing another.
      await waitFor(() => eventsOf(api, 'flaky', 'ProviderCreateFailed').length === 1, WAIT);
    });

    test('a permanent create failure fails the pod: one Event, one status write, no retry', async (t) => {
      const { api, provider } = await setup(t, notify);
      provider.failCreates = 100;
      provider.failWith = () => permanent('mock: the image is forbidden');
      api.create('pods', pod('doomed'));
      const failed = await waitPhase(api, 'doomed', 'Failed');
      assert.equal(failed.status?.reason, 'ProviderFailed');
      assert.match(failed.status?.message ?? '', /the image is forbidden/);
      await waitFor(() => eventsOf(api, 'doomed', 'ProviderCreateFailed').length === 1, WAIT);
      // Whatever happens next (poll rounds, cache echoes) never retries nor rewrites it.
      api.update('pods', NS, 'doomed', (p) => {
        p.metadata = { ...p.metadata, labels: { touched: 'yes' } };
      });
      api.create('pods', pod('marker'));
      await waitPhase(api, 'marker', 'Failed');
      assert.equal(provider.creates, 2);
      assert.equal(writesOf(api, 'doomed').length, 1);
      assert.equal(eventsOf(api, 'doomed', 'ProviderCreateFailed')[0]?.count, 1);
    });

    test('a retryable failure with restartPolicy Never fails the pod at once', async (t) => {
      const { api, provider } = await setup(t, notify);
      provider.failCreates = 1;
      api.create('pods', pod('once', { restartPolicy: 'Never' }));
      const failed = await waitPhase(api, 'once', 'Failed');
      assert.equal(failed.status?.reason, 'ProviderFailed');
      assert.equal(provider.creates, 1);
    });

    test('a restarted controller adopts what the provider runs and creates nothing twice', async (t) => {
      const { api, provider, running } = await setup(t, notify);
      for (const name of ['a', 'b', 'c']) api.create('pods', pod(name));
      for (const name of ['a', 'b', 'c']) await waitPhase(api, name, 'Running');
      assert.equal(provider.creates, 3);
      // Down: one pod is deleted while nobody watches.
      await running.stop();
      api.deletePod(NS, 'c', 0);
      const again = await runPodController(t, api, provider, { nodeName: NODE });
      await waitFor(async () => (await provider.getPod(NS, 'c', never)) === undefined, {
        ...WAIT,
        what: 'the pod deleted while the controller was down to leave the provider',
      });
      assert.deepEqual(
        again.controller.listPods().map((p) => [p.metadata?.name, p.status?.phase]),
        [
          ['a', 'Running'],
          ['b', 'Running'],
        ],
      );
      // A change after the restart is an update of the adopted pod, never a second create.
      api.update('pods', NS, 'a', (p) => {
        const c = p.spec?.containers[0];
        if (c) c.image = 'busybox:2';
      });
      await waitFor(
        async () =>
          (await provider.getPod(NS, 'a', never))?.spec?.containers[0]?.image === 'busybox:2',
        WAIT,
      );
      assert.equal(provider.creates, 3, 'no pod was created twice');
    });

    test('a running pod the provider lost is marked Failed with reason NotFound', async (t) => {
      const { api, provider } = await setup(t, notify, {}, { fullResyncPeriodMs: 100 });
      api.create('pods', pod('lost'));
      await waitPhase(api, 'lost', 'Running');
      provider.forgetPod(NS, 'lost');
      const failed = await waitPhase(api, 'lost', 'Failed');
      assert.equal(failed.status?.reason, 'NotFound');
      assert.equal(provider.creates, 1, 'the lost pod was not created again');
    });
  });
}

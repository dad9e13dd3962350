import type { V1Pod, V1PodSpec, V1PodStatus } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { PodControllerOptions } from '../../../src/pods/pod-controller.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import type { MockConfig } from '../../../src/providers/mock/config.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { runPodController, testPod, waitPodPhase } from '../../helpers/pod-controller.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'deadline-node';
const NS = 'apps';
const never = new AbortController().signal;
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };

/** How a hung call behaves: `abortable` rejects when its signal fires; `deaf` ignores it. */
type Hang = 'abortable' | 'deaf';

interface DeleteCall {
  readonly name: string;
  readonly graceSeconds: number | undefined;
  readonly signal: AbortSignal;
}

/**
 * The mock with calls that can hang, watching that no pod ever has two calls in flight (the
 * pod-scoped methods the controller calls; `getPods` is about no one pod).
 */
class HangingProvider extends MockProvider {
  hangDeletes: Hang | undefined;
  hangCreates: Hang | undefined;
  readonly deletes: DeleteCall[] = [];
  readonly created: string[] = [];
  readonly overlaps: string[] = [];
  readonly #inFlight = new Set<string>();
  readonly #release: (() => void)[] = [];

  /** The pod as the mock has it, read past the in-flight watch (for the test's own checks). */
  peek(name: string): Promise<V1Pod | undefined> {
    return super.getPod(NS, name, never);
  }

  /** Lets every deaf call hung so far go on (to the mock). */
  release(): void {
    for (const go of this.#release.splice(0)) go();
  }

  async #guard<T>(key: string, method: string, fn: () => Promise<T>): Promise<T> {
    if (this.#inFlight.has(key)) this.overlaps.push(`${method} ${key}`);
    this.#inFlight.add(key);
    try {
      return await fn();
    } finally {
      this.#inFlight.delete(key);
    }
  }

  async #hang(hang: Hang, signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      if (hang === 'deaf') this.#release.push(resolve);
      else signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    });
  }

  override createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const name = pod.metadata?.name ?? '';
    return this.#guard(`${NS}/${name}`, 'createPod', async () => {
      this.created.push(name);
      if (this.hangCreates) await this.#hang(this.hangCreates, signal);
      await super.createPod(pod, never);
    });
  }

  override updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    return this.#guard(`${NS}/${pod.metadata?.name ?? ''}`, 'updatePod', () =>
      super.updatePod(pod, signal),
    );
  }

  override deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const name = pod.metadata?.name ?? '';
    return this.#guard(`${NS}/${name}`, 'deletePod', async () => {
      this.deletes.push({ name, graceSeconds: pod.metadata?.deletionGracePeriodSeconds, signal });
      // A forced delete is never made to hang: it is the way out.
      if (this.hangDeletes && pod.metadata?.deletionGracePeriodSeconds !== 0)
        await this.#hang(this.hangDeletes, signal);
      await super.deletePod(pod, signal);
    });
  }

  override getPod(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1Pod | undefined> {
    return this.#guard(`${namespace}/${name}`, 'getPod', () =>
      super.getPod(namespace, name, signal),
    );
  }

  override getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    return this.#guard(`${namespace}/${name}`, 'getPodStatus', () =>
      super.getPodStatus(namespace, name, signal),
    );
  }
}

interface Setup {
  readonly api: FakeApi;
  readonly provider: HangingProvider;
  /** Aborts the controller's run and resolves when it returned. */
  readonly stop: () => Promise<void>;
}

async function setup(
  t: TestContext,
  notify: boolean,
  options: Partial<PodControllerOptions> = {},
  config: MockConfig = {},
): Promise<Setup> {
  const api = await FakeApi.start(t);
  const provider = new HangingProvider({
    nodeName: NODE,
    notify,
    config: { logIntervalMs: 0, ...config },
  });
  t.after(() => provider.close());
  const { stop } = await runPodController(t, api, provider, { nodeName: NODE, ...options });
  t.after(() => {
    provider.release();
  });
  return { api, provider, stop };
}

const pod = (name: string, spec: Partial<V1PodSpec> = {}): V1Pod => testPod(NS, NODE, name, spec);

const apiPod = (api: FakeApi, name: string): V1Pod | undefined => api.get('pods', NS, name);

const waitPhase = (api: FakeApi, name: string, phase: string): Promise<V1Pod> =>
  waitPodPhase(api, NS, name, phase, WAIT);

/** The longest grace period the API accepts (as `terminationGracePeriodSeconds`). */
const FOREVER_SECONDS = 2_147_483_647;

for (const notify of [true, false]) {
  describe(`provider calls with deadlines (${notify ? 'push' : 'polled'} provider)`, () => {
    test('ten deletions that never end hold no worker: a new pod is still created', async (t) => {
      // Fewer workers than hung deletions: a worker held by one would show.
      const { api, provider, stop } = await setup(t, notify, { workers: 2 });
      const names = Array.from({ length: 10 }, (_, i) => `stuck-${String(i)}`);
      for (const name of names)
        api.create('pods', pod(name, { terminationGracePeriodSeconds: FOREVER_SECONDS }));
      for (const name of names) await waitPhase(api, name, 'Running');
      // Deaf: the calls ignore their signal too, as a wedged backend would.
      provider.hangDeletes = 'deaf';
      for (const name of names) api.deletePod(NS, name);
      await waitFor(() => provider.deletes.length === names.length, {
        ...WAIT,
        what: 'ten deletes in flight',
      });
      api.create('pods', pod('fresh'));
      await waitFor(() => provider.created.includes('fresh'), {
        timeoutMs: 2_000,
        intervalMs: 10,
        what: 'createPod of a pod made after ten hung deletions',
      });
      await waitPhase(api, 'fresh', 'Running');
      // Nothing else was asked of the stuck pods while their deletes hung.
      assert.deepEqual(provider.overlaps, []);
      const started = performance.now();
      await stop();
      const tookMs = performance.now() - started;
      assert.ok(tookMs < 1_000, `stopped after ${String(tookMs)} ms`);
    });

    test('a forced delete after a hung graceful one reaches the provider with grace 0', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('pods', pod('web', { terminationGracePeriodSeconds: FOREVER_SECONDS }));
      await waitPhase(api, 'web', 'Running');
      provider.hangDeletes = 'abortable';
      api.deletePod(NS, 'web', 3_600);
      const graceful = await waitFor(() => provider.deletes[0] ?? false, WAIT);
      assert.equal(graceful.graceSeconds, 3_600);
      const forcedAt = performance.now();
      api.deletePod(NS, 'web', 0);
      const forced = await waitFor(() => provider.deletes.find((d) => d.graceSeconds === 0), {
        timeoutMs: 3_000,
        intervalMs: 10,
        what: 'a grace-0 deletePod',
      });
      assert.equal(forced.name, 'web');
      assert.ok(graceful.signal.aborted, 'the graceful delete was aborted');
      assert.ok(performance.now() - forcedAt < 3_000);
      await waitFor(async () => (await provider.peek('web')) === undefined, WAIT);
      assert.deepEqual(provider.overlaps, []);
    });

    test('a shorter grace period with the object kept aborts the delete in flight', async (t) => {
      const { api, provider } = await setup(t, notify);
      const created = pod('kept', { terminationGracePeriodSeconds: FOREVER_SECONDS });
      created.metadata = { ...created.metadata, finalizers: ['example.com/keep'] };
      api.create('pods', created);
      await waitPhase(api, 'kept', 'Running');
      provider.hangDeletes = 'abortable';
      api.deletePod(NS, 'kept', 3_600);
      const graceful = await waitFor(() => provider.deletes[0] ?? false, WAIT);
      // The finalizer keeps the object, now with grace 0: the controller sees a shorter grace.
      api.deletePod(NS, 'kept', 0);
      const forced = await waitFor(() => provider.deletes.find((d) => d.graceSeconds === 0), {
        timeoutMs: 3_000,
        intervalMs: 10,
        what: 'a grace-0 deletePod',
      });
      assert.equal(forced.name, 'kept');
      assert.ok(graceful.signal.aborted);
      await waitFor(async () => (await provider.peek('kept')) === undefined, WAIT);
      assert.deepEqual(provider.overlaps, []);
    });

    test('a mock pod slow to stop: a forced delete stops it at once', async (t) => {
      const { api, provider } = await setup(
        t,
        notify,
        {},
        {
          containers: { app: { stopAfterSeconds: 3_600 } },
        },
      );
      const created = pod('slow', { terminationGracePeriodSeconds: 3_600 });
      created.metadata = { ...created.metadata, finalizers: ['example.com/keep'] };
      api.create('pods', created);
      await waitPhase(api, 'slow', 'Running');
      api.deletePod(NS, 'slow', 3_600);
      await waitFor(() => provider.deletes.length === 1, WAIT);
      api.deletePod(NS, 'slow', 0);
      await waitFor(async () => (await provider.peek('slow')) === undefined, {
        timeoutMs: 3_000,
        intervalMs: 10,
        what: 'the slow pod stopped by the forced delete',
      });
      assert.deepEqual(
        provider.deletes.map((d) => d.graceSeconds),
        [3_600, 0],
      );
    });

    test('a create past its deadline: its late result never marks a deleted pod created', async (t) => {
      const { api, provider } = await setup(t, notify, { createTimeoutMs: 200, abortWaitMs: 200 });
      provider.hangCreates = 'deaf';
      api.create('pods', pod('late'));
      await waitFor(() => provider.created.includes('late'), WAIT);
      // Past the deadline the worker is free: another pod is created meanwhile.
      provider.hangCreates = undefined;
      api.create('pods', pod('other'));
      await waitPhase(api, 'other', 'Running');
      // The pod leaves the API while its create still hangs; then the create ends, late.
      api.deletePod(NS, 'late', 0);
      assert.equal(apiPod(api, 'late'), undefined);
      provider.release();
      await waitFor(async () => (await provider.peek('late')) === undefined, {
        ...WAIT,
        what: 'the late-created pod removed from the provider',
      });
      const success = api
        .list('events', NS)
        .filter((e) => e.involvedObject.name === 'late' && e.reason === 'ProviderCreateSuccess');
      assert.deepEqual(success, []);
      assert.equal(provider.created.filter((n) => n === 'late').length, 1, 'created once');
      assert.deepEqual(provider.overlaps, []);
    });

    test('a status read past its deadline frees the worker and is retried', async (t) => {
      const { api, provider } = await setup(t, notify, { getTimeoutMs: 200 });
      let hung = 0;
      const getPod = provider.getPod.bind(provider);
      provider.getPod = (namespace, name, signal) => {
        if (name === 'slow' && hung++ === 0)
          return new Promise((_, reject) => {
            signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
          });
        return getPod(namespace, name, signal);
      };
      api.create('pods', pod('slow'));
      await waitPhase(api, 'slow', 'Running');
      assert.ok(hung >= 2, 'getPod asked again after its deadline');
    });
  });
}

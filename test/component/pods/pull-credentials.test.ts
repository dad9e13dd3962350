import type { CoreV1Event, V1Pod, V1Secret } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test, type TestContext } from 'node:test';
import type { PodControllerOptions } from '../../../src/pods/pod-controller.js';
import type { RegistryCredential } from '../../../src/provider.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { runPodController, testPod, waitPodPhase } from '../../helpers/pod-controller.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'pull-node';
const NS = 'apps';
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };
const REASON = 'FailedToRetrieveImagePullSecret';

/** The mock with the pullCredentials capability, recording its calls in order. */
class PullMock extends MockProvider {
  readonly calls: { method: string; pod: string; credentials?: RegistryCredential[] }[] = [];

  setPodPullCredentials(
    pod: V1Pod,
    credentials: readonly RegistryCredential[],
    _signal: AbortSignal,
  ): Promise<void> {
    this.calls.push({
      method: 'setPodPullCredentials',
      pod: pod.metadata?.name ?? '',
      credentials: structuredClone([...credentials]),
    });
    return Promise.resolve();
  }

  override async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    this.calls.push({ method: 'createPod', pod: pod.metadata?.name ?? '' });
    await super.createPod(pod, signal);
  }

  /** How often the core asked for a pod (once per pass of a pod's sync). */
  getPodCalls = 0;

  override async getPod(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1Pod | undefined> {
    this.getPodCalls++;
    return super.getPod(namespace, name, signal);
  }

  /** The credentials of the last setPodPullCredentials call for `pod`. */
  last(pod: string): RegistryCredential[] | undefined {
    return this.calls.filter((c) => c.pod === pod && c.credentials).at(-1)?.credentials;
  }
}

const pullSecret = (name: string, registry: string, password: string): V1Secret => ({
  metadata: { name, namespace: NS },
  type: 'kubernetes.io/dockerconfigjson',
  data: {
    '.dockerconfigjson': Buffer.from(
      JSON.stringify({ auths: { [registry]: { username: name, password } } }),
    ).toString('base64'),
  },
});

const pullPod = (name: string, secrets: readonly string[]): V1Pod =>
  testPod(NS, NODE, name, {
    containers: [{ name: 'app', image: 'registry.example.com/private/app:v1' }],
    imagePullSecrets: secrets.map((s) => ({ name: s })),
  });

const eventsOf = (api: FakeApi, name: string, reason: string): CoreV1Event[] =>
  api.list('events', NS).filter((e) => e.involvedObject.name === name && e.reason === reason);

async function setup(
  t: TestContext,
  notify: boolean,
  options: Partial<PodControllerOptions> = {},
): Promise<{ api: FakeApi; provider: PullMock }> {
  const api = await FakeApi.start(t);
  const provider = new PullMock({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  await runPodController(t, api, provider, { nodeName: NODE, ...options });
  return { api, provider };
}

for (const notify of [true, false]) {
  describe(`image pull secrets with a ${notify ? 'push' : 'polled'} provider`, () => {
    test('the credentials of the pod secrets come before createPod, in pod order; a missing or broken secret is a Warning, not a failure', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('secrets', pullSecret('second', 'registry.example.com', 'pw-second'));
      api.create('secrets', pullSecret('first', 'https://registry.example.com/v1/', 'pw-first'));
      api.create('secrets', {
        metadata: { name: 'broken', namespace: NS },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': Buffer.from('{"auths": "pw-broken').toString('base64') },
      });
      api.create('pods', pullPod('web', ['first', 'missing', 'broken', 'second']));
      await waitPodPhase(api, NS, 'web', 'Running', WAIT);
      assert.deepEqual(
        provider.calls.filter((c) => c.pod === 'web').map((c) => c.method),
        ['setPodPullCredentials', 'createPod'],
      );
      assert.deepEqual(provider.last('web'), [
        { registry: 'https://registry.example.com/v1/', username: 'first', password: 'pw-first' },
        { registry: 'registry.example.com', username: 'second', password: 'pw-second' },
      ]);
      const warnings = await waitFor(
        () => {
          const e = eventsOf(api, 'web', REASON);
          return e.length === 2 ? e : undefined;
        },
        { ...WAIT, what: `two ${REASON} Events` },
      );
      const messages = warnings.map((e) => e.message ?? '').sort();
      assert.ok(warnings.every((e) => e.type === 'Warning'));
      assert.match(messages[0] ?? '', /^Unable to retrieve some image pull secrets \(missing\);/);
      assert.match(messages[1] ?? '', /^Unable to use an image pull secret: .*"broken"/);
      const all = JSON.stringify(api.list('events', NS));
      for (const pw of ['pw-first', 'pw-second', 'pw-broken']) assert.ok(!all.includes(pw), pw);
    });

    test('a pod without pull secrets gets an empty list before createPod', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('pods', testPod(NS, NODE, 'plain'));
      await waitPodPhase(api, NS, 'plain', 'Running', WAIT);
      assert.deepEqual(provider.last('plain'), []);
      assert.equal(api.count('GET', /\/secrets\//), 0, 'no secret is read');
    });

    test('a secret missing at creation is read again at the resync, and reaches the provider once it exists', async (t) => {
      const { api, provider } = await setup(t, notify, { fullResyncPeriodMs: 100 });
      api.create('pods', pullPod('late', ['later']));
      await waitPodPhase(api, NS, 'late', 'Running', WAIT);
      assert.deepEqual(provider.last('late'), []);
      api.create('secrets', pullSecret('later', 'registry.example.com', 'pw-later'));
      await waitFor(() => provider.last('late')?.length === 1, {
        ...WAIT,
        what: 'the credentials of the secret created later',
      });
      assert.deepEqual(provider.last('late'), [
        { registry: 'registry.example.com', username: 'later', password: 'pw-later' },
      ]);
      // Complete now: later resyncs of the pod read the secret no more.
      const reads = api.count('GET', /\/secrets\/later/);
      const passes = provider.getPodCalls;
      await waitFor(() => provider.getPodCalls >= passes + 3, {
        ...WAIT,
        what: 'three more passes of the pod',
      });
      assert.equal(api.count('GET', /\/secrets\/later/), reads);
    });
  });
}

test('after a restart of the agent, a pod the provider already runs gets its credentials again, and is not created twice', async (t) => {
  const api = await FakeApi.start(t);
  const provider = new PullMock({ nodeName: NODE, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  api.create('secrets', pullSecret('regcred', 'registry.example.com', 'pw'));
  const pod = api.create('pods', pullPod('kept', ['regcred']));
  // What a provider still runs when the agent starts again.
  await provider.createPod(pod, AbortSignal.timeout(5_000));
  await runPodController(t, api, provider, { nodeName: NODE });
  await waitFor(() => provider.last('kept')?.length === 1, {
    ...WAIT,
    what: 'the credentials of the adopted pod',
  });
  assert.deepEqual(provider.last('kept'), [
    { registry: 'registry.example.com', username: 'regcred', password: 'pw' },
  ]);
  assert.deepEqual(
    provider.calls.map((c) => c.method),
    ['createPod', 'setPodPullCredentials'],
  );
});

test('a provider without setPodPullCredentials makes the core read no pull secret', async (t) => {
  const api = await FakeApi.start(t);
  const provider = new MockProvider({ nodeName: NODE, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  await runPodController(t, api, provider, { nodeName: NODE });
  api.create('pods', pullPod('web', ['missing']));
  await waitPodPhase(api, NS, 'web', 'Running', WAIT);
  assert.equal(api.count('GET', /\/secrets\//), 0);
  assert.deepEqual(eventsOf(api, 'web', REASON), []);
});

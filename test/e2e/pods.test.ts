import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { MockProvider } from '../../src/providers/mock/index.js';
import type { MockConfig } from '../../src/providers/mock/config.js';
import { onNode, startNode, uniqueNodeName, type InProcessNode } from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';
import type { V1Pod } from '../../src/wire.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);
const apps = (): k8s.AppsV1Api => testCluster().kc.makeApiClient(k8s.AppsV1Api);
const never = new AbortController().signal;

/** The mock, counting the calls that must not repeat. */
class CountingMock extends MockProvider {
  creates = 0;
  override async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    this.creates++;
    await super.createPod(pod, signal);
  }
}

function pod(name: string, nodeName: string, spec: Partial<k8s.V1PodSpec> = {}): k8s.V1Pod {
  return {
    metadata: { name },
    spec: { ...onNode(nodeName), containers: [{ name: 'app', image: 'busybox' }], ...spec },
  };
}

async function waitPhase(
  ns: string,
  name: string,
  phase: string,
  timeoutMs = 30_000,
): Promise<k8s.V1Pod> {
  return waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name, namespace: ns });
      return p.status?.phase === phase ? p : undefined;
    },
    { what: `pod ${name} to be ${phase}`, timeoutMs },
  );
}

async function waitGone(ns: string, name: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () =>
      (await core()
        .readNamespacedPod({ name, namespace: ns })
        .catch(() => undefined)) === undefined,
    { what: `pod ${name} to be gone`, timeoutMs },
  );
}

async function eventsFor(ns: string, name: string): Promise<k8s.CoreV1Event[]> {
  return (
    await core().listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.name=${name}`,
    })
  ).items;
}

async function setup(
  t: TestContext,
  notify: boolean,
  config: MockConfig = {},
): Promise<{ ns: string; nodeName: string; provider: CountingMock; agent: InProcessNode }> {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName(notify ? 'push' : 'poll');
  const provider = new CountingMock({ nodeName, config, notify });
  t.after(() => provider.close());
  const agent = await startNode(t, { nodeName, provider });
  return { ns, nodeName, provider, agent };
}

for (const notify of [true, false]) {
  const mode = notify ? 'push' : 'polling';

  test(`[${mode}] a Deployment of 3 gets 3 Running pods; scaled to 0 they leave the API and the provider`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify);
    const labels = { app: 'web' };
    await apps().createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 3,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              nodeSelector: { 'kubernetes.io/hostname': nodeName },
              tolerations: onNode(nodeName).tolerations,
              containers: [{ name: 'web', image: 'nginx' }],
            },
          },
        },
      },
    });
    const running = await waitFor(
      async () => {
        const items = (await core().listNamespacedPod({ namespace: ns })).items;
        const ok = items.filter(
          (p) =>
            p.spec?.nodeName === nodeName &&
            p.status?.phase === 'Running' &&
            p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ok.length === 3 ? ok : undefined;
      },
      { what: '3 Running and Ready pods', timeoutMs: 60_000 },
    );
    assert.equal(new Set(running.map((p) => p.status?.podIP)).size, 3, 'three addresses');
    for (const p of running) {
      assert.equal(p.status?.hostIP, '127.0.0.1');
      // Each pod has its own address of the mock's podCIDR.
      assert.match(p.status?.podIP ?? '', /^10\.244\.\d+\.\d+$/);
      assert.ok(p.status?.startTime);
      assert.equal(p.status?.containerStatuses?.[0]?.ready, true);
      const types = (p.status?.conditions ?? []).map((c) => c.type).sort();
      for (const c of ['ContainersReady', 'Initialized', 'PodScheduled', 'Ready'])
        assert.ok(types.includes(c), c);
    }
    assert.equal((await provider.getPods(never)).length, 3);
    assert.equal(provider.creates, 3);

    await apps().patchNamespacedDeploymentScale(
      { name: 'web', namespace: ns, body: { spec: { replicas: 0 } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await waitFor(
      async () => (await core().listNamespacedPod({ namespace: ns })).items.length === 0,
      {
        what: 'every pod to leave the API',
        timeoutMs: 60_000,
      },
    );
    await waitFor(async () => (await provider.getPods(never)).length === 0, {
      what: 'the provider to be empty',
    });
  });

  test(`[${mode}] graceful delete waits for the containers to stop, and no longer than the grace period`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify, {
      containers: { slow: { stopAfterSeconds: 2 }, stubborn: { stopAfterSeconds: 600 } },
    });
    await core().createNamespacedPod({
      namespace: ns,
      body: pod('slow', nodeName, {
        containers: [{ name: 'slow', image: 'busybox' }],
        terminationGracePeriodSeconds: 30,
      }),
    });
    await core().createNamespacedPod({
      namespace: ns,
      body: pod('stubborn', nodeName, {
        containers: [{ name: 'stubborn', image: 'busybox' }],
        terminationGracePeriodSeconds: 3,
      }),
    });
    await waitPhase(ns, 'slow', 'Running');
    await waitPhase(ns, 'stubborn', 'Running');

    const t0 = Date.now();
    await core().deleteNamespacedPod({ name: 'slow', namespace: ns });
    await core().deleteNamespacedPod({ name: 'stubborn', namespace: ns });
    // While its container shuts down, the pod stays, marked for deletion.
    const terminating = await core().readNamespacedPod({ name: 'slow', namespace: ns });
    assert.ok(terminating.metadata?.deletionTimestamp);
    await Promise.all([waitGone(ns, 'slow'), waitGone(ns, 'stubborn')]);
    const elapsed = Date.now() - t0;
    assert.ok(
      elapsed >= 2_000,
      `the pods were removed after ${String(elapsed)} ms, before their containers stopped`,
    );
    assert.ok(
      elapsed < 20_000,
      `the pods were removed after ${String(elapsed)} ms, long after their grace periods`,
    );
    await waitFor(async () => (await provider.getPods(never)).length === 0, {
      what: 'the provider to be empty',
    });
  });

  test(`[${mode}] a force-deleted pod is removed from the provider`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify, {
      containers: { app: { stopAfterSeconds: 600 } },
    });
    await core().createNamespacedPod({ namespace: ns, body: pod('forced', nodeName) });
    await waitPhase(ns, 'forced', 'Running');
    await kubectl(['delete', 'pod', 'forced', '-n', ns, '--grace-period=0', '--force']);
    await waitFor(async () => (await provider.getPod(ns, 'forced', never)) === undefined, {
      what: 'the provider to drop the force-deleted pod',
    });
  });

  test(`[${mode}] env from a config map, a secret and the downward API reaches the provider resolved`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify);
    await core().createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'cfg' }, data: { color: 'blue', size: 'L' } },
    });
    await core().createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'sec' }, stringData: { token: 's3cret' } },
    });
    await core().createNamespacedPod({
      namespace: ns,
      body: pod('env', nodeName, {
        containers: [
          {
            name: 'app',
            image: 'busybox',
            envFrom: [{ configMapRef: { name: 'cfg' }, prefix: 'CFG_' }],
            env: [
              { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'sec', key: 'token' } } },
              { name: 'COLOR', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'color' } } },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
              { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
              { name: 'GREETING', value: 'hello $(POD_NAME) in $(COLOR)' },
            ],
          },
        ],
      }),
    });
    await waitPhase(ns, 'env', 'Running');
    const inProvider = await provider.getPod(ns, 'env', never);
    const env = Object.fromEntries(
      (inProvider?.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]),
    );
    assert.equal(env.CFG_color, 'blue');
    assert.equal(env.CFG_size, 'L');
    assert.equal(env.TOKEN, 's3cret');
    assert.equal(env.COLOR, 'blue');
    assert.equal(env.POD_NAME, 'env');
    assert.equal(env.NODE, nodeName);
    assert.equal(env.HOST_IP, '127.0.0.1');
    assert.equal(env.GREETING, 'hello env in blue');
    assert.equal(env.KUBERNETES_SERVICE_HOST, '10.96.0.1');
    assert.equal(inProvider?.spec?.containers[0]?.envFrom, undefined);
  });

  test(`[${mode}] a missing mandatory config map blocks the create with an event, until it appears`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify);
    await core().createNamespacedPod({
      namespace: ns,
      body: pod('waits', nodeName, {
        containers: [
          { name: 'app', image: 'busybox', envFrom: [{ configMapRef: { name: 'late' } }] },
        ],
      }),
    });
    const event = await waitFor(
      async () =>
        (await eventsFor(ns, 'waits')).find((e) => e.reason === 'MandatoryConfigMapNotFound'),
      { what: 'a MandatoryConfigMapNotFound event' },
    );
    assert.equal(event.type, 'Warning');
    const waiting = await waitFor(
      async () => {
        const p = await core().readNamespacedPod({ name: 'waits', namespace: ns });
        return p.status?.containerStatuses?.[0]?.state?.waiting?.reason ===
          'CreateContainerConfigError'
          ? p
          : undefined;
      },
      { what: 'the container to wait with CreateContainerConfigError' },
    );
    assert.equal(waiting.status?.phase, 'Pending');
    assert.equal(await provider.getPod(ns, 'waits', never), undefined);
    assert.equal(provider.creates, 0);

    await core().createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'late' }, data: { A: '1' } },
    });
    await waitPhase(ns, 'waits', 'Running');
    assert.ok(await provider.getPod(ns, 'waits', never));
  });

  test(`[${mode}] a missing optional secret does not block the pod, and is reported`, async (t) => {
    const { ns, nodeName } = await setup(t, notify);
    await core().createNamespacedPod({
      namespace: ns,
      body: pod('optional', nodeName, {
        containers: [
          {
            name: 'app',
            image: 'busybox',
            env: [
              {
                name: 'X',
                valueFrom: { secretKeyRef: { name: 'absent', key: 'x', optional: true } },
              },
            ],
          },
        ],
      }),
    });
    await waitPhase(ns, 'optional', 'Running');
    await waitFor(
      async () =>
        (await eventsFor(ns, 'optional')).some((e) => e.reason === 'OptionalSecretNotFound'),
      {
        what: 'an OptionalSecretNotFound event',
      },
    );
  });

  test(`[${mode}] a restarted agent creates nothing twice and removes what the API no longer has`, async (t) => {
    const { ns, nodeName, provider, agent } = await setup(t, notify);
    for (const name of ['a', 'b', 'c'])
      await core().createNamespacedPod({ namespace: ns, body: pod(name, nodeName) });
    for (const name of ['a', 'b', 'c']) await waitPhase(ns, name, 'Running');
    assert.equal(provider.creates, 3);
    // Stop the agent (the backend keeps its pods) and delete a pod while nobody watches.
    await agent.stop();
    await core().deleteNamespacedPod({ name: 'c', namespace: ns, gracePeriodSeconds: 0 });
    await waitGone(ns, 'c');
    const again = await startNode(t, { nodeName, provider });
    await again.node.whenReady();
    await waitFor(async () => (await provider.getPod(ns, 'c', never)) === undefined, {
      what: 'the pod deleted while the agent was down to leave the provider',
    });
    for (const name of ['a', 'b'])
      assert.equal(
        (await core().readNamespacedPod({ name, namespace: ns })).status?.phase,
        'Running',
      );
    assert.equal(provider.creates, 3, 'no pod was created twice');
  });

  test(`[${mode}] a permanent provider failure marks the pod Failed with ProviderFailed`, async (t) => {
    const { ns, nodeName } = await setup(t, notify, {
      faults: { createPod: { errorRate: 1, error: 'permanent' } },
    });
    await core().createNamespacedPod({ namespace: ns, body: pod('doomed', nodeName) });
    const failed = await waitPhase(ns, 'doomed', 'Failed');
    assert.equal(failed.status?.reason, 'ProviderFailed');
    assert.match(failed.status?.message ?? '', /could not create/);
    assert.ok((await eventsFor(ns, 'doomed')).some((e) => e.reason === 'ProviderCreateFailed'));
  });

  test(`[${mode}] a retryable provider failure keeps the pod Pending with a reason; Failed with restartPolicy Never`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify, {
      faults: { createPod: { errorRate: 1, error: 'unavailable' } },
    });
    await core().createNamespacedPod({ namespace: ns, body: pod('retried', nodeName) });
    await core().createNamespacedPod({
      namespace: ns,
      body: pod('once', nodeName, { restartPolicy: 'Never' }),
    });
    const pending = await waitFor(
      async () => {
        const p = await core().readNamespacedPod({ name: 'retried', namespace: ns });
        return p.status?.reason === 'ProviderFailed' ? p : undefined;
      },
      { what: 'ProviderFailed on the retried pod' },
    );
    assert.equal(pending.status?.phase, 'Pending');
    await waitFor(() => provider.creates >= 3, {
      what: 'the create to be retried',
      timeoutMs: 30_000,
    });
    const once = await waitPhase(ns, 'once', 'Failed');
    assert.equal(once.status?.reason, 'ProviderFailed');
  });

  test(`[${mode}] a running pod the provider lost is marked Failed with reason NotFound`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify);
    await core().createNamespacedPod({ namespace: ns, body: pod('lost', nodeName) });
    await waitPhase(ns, 'lost', 'Running');
    // The backend loses the pod without a word (a crash, a restart without state).
    provider.forgetPod(ns, 'lost');
    // A polled provider's loss shows at the next poll; a push provider says nothing, and the
    // next resync finds the pod missing.
    const failed = await waitPhase(ns, 'lost', 'Failed', 30_000);
    assert.equal(failed.status?.reason, 'NotFound');
    assert.equal(provider.creates, 1, 'the lost pod was not created again');
  });
}

import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test, type TestContext } from 'node:test';
import type { PodVolumes, ResolvedVolume } from '../../src/provider.js';
import { unavailable } from '../../src/errors.js';
import { MockProvider } from '../../src/providers/mock/index.js';
import { onNode, startNode, uniqueNodeName } from '../helpers/agent.js';
import { testCluster, testNamespace } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';
import type { V1Pod } from '../../src/wire.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);
const never = new AbortController().signal;

interface VolumeCall {
  readonly pod: string;
  readonly uid: string;
  readonly volumes: readonly ResolvedVolume[];
}

/** The mock with the PodVolumes capability: it records every call, in order with creates. */
class VolumeRecordingMock extends MockProvider implements PodVolumes {
  readonly calls: VolumeCall[] = [];
  /** `setPodVolumes <pod>` and `createPod <pod>`, in the order they came. */
  readonly log: string[] = [];
  /** The next this many calls fail with `Unavailable`. */
  failures = 0;

  setPodVolumes(
    pod: V1Pod,
    volumes: readonly ResolvedVolume[],
    _signal: AbortSignal,
  ): Promise<void> {
    const key = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
    if (this.failures > 0) {
      this.failures--;
      this.log.push(`setPodVolumes ${key} failed`);
      return Promise.reject(unavailable('the volume store is busy'));
    }
    this.calls.push({ pod: key, uid: pod.metadata?.uid ?? '', volumes: structuredClone(volumes) });
    this.log.push(`setPodVolumes ${key}`);
    return Promise.resolve();
  }

  override async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    this.log.push(`createPod ${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`);
    await super.createPod(pod, signal);
  }

  /** The content of each volume of `pod` as the provider holds it now (later calls win). */
  current(pod: string): Map<string, Map<string, { text: string; mode: number }>> {
    const out = new Map<string, Map<string, { text: string; mode: number }>>();
    for (const call of this.calls) {
      if (call.pod !== pod) continue;
      for (const v of call.volumes) {
        out.set(
          v.name,
          new Map(
            v.files.map((f) => [
              f.path,
              { text: Buffer.from(f.data).toString('utf8'), mode: f.mode },
            ]),
          ),
        );
      }
    }
    return out;
  }
}

async function setup(
  t: TestContext,
  notify: boolean,
  refreshMs?: number,
): Promise<{ ns: string; nodeName: string; provider: VolumeRecordingMock }> {
  const ns = await testNamespace(t, 'vol');
  const nodeName = uniqueNodeName(notify ? 'vol-push' : 'vol-poll');
  const provider = new VolumeRecordingMock({ nodeName, notify });
  t.after(() => provider.close());
  await startNode(t, {
    nodeName,
    provider,
    ...(refreshMs === undefined ? {} : { tuning: { pods: { volumeRefreshPeriodMs: refreshMs } } }),
  });
  return { ns, nodeName, provider };
}

async function waitRunning(ns: string, name: string, timeoutMs = 30_000): Promise<k8s.V1Pod> {
  return waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name, namespace: ns });
      return p.status?.phase === 'Running' ? p : undefined;
    },
    { what: `pod ${name} to be Running`, timeoutMs },
  );
}

async function eventsFor(ns: string, name: string, reason: string): Promise<k8s.CoreV1Event[]> {
  const items = (
    await core().listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.name=${name}`,
    })
  ).items;
  return items.filter((e) => e.reason === reason);
}

/** The claims of a JWT, unverified (the API server verifies it through a TokenReview). */
function claims(token: string): Record<string, unknown> {
  const payload = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}

for (const notify of [true, false]) {
  const mode = notify ? 'push' : 'polling';

  test(`[${mode}] configMap, secret, downwardAPI and service-account volumes reach the provider before the pod is created`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify);
    await core().createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'cfg' }, data: { 'app.conf': 'port=80', other: 'x' } },
    });
    await core().createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'creds' }, stringData: { password: 's3cr3t' } },
    });
    const created = await core().createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'web', labels: { app: 'web', tier: 'front' } },
        spec: {
          ...onNode(nodeName),
          containers: [{ name: 'app', image: 'busybox' }],
          volumes: [
            {
              name: 'config',
              configMap: {
                name: 'cfg',
                defaultMode: 0o440,
                items: [{ key: 'app.conf', path: 'conf/app.conf', mode: 0o600 }],
              },
            },
            { name: 'creds', secret: { secretName: 'creds', defaultMode: 0o400 } },
            {
              name: 'podinfo',
              downwardAPI: {
                items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }],
              },
            },
            { name: 'scratch', emptyDir: {} },
          ],
        },
      },
    });
    const key = `${ns}/web`;
    await waitRunning(ns, 'web');

    // Volumes first, then the pod.
    const first = provider.log.findIndex((l) => l === `setPodVolumes ${key}`);
    const create = provider.log.findIndex((l) => l === `createPod ${key}`);
    assert.ok(first >= 0 && create > first, provider.log.join(', '));
    assert.equal(provider.calls[0]?.uid, created.metadata?.uid);

    const volumes = provider.current(key);
    assert.deepEqual(
      [...volumes.keys()].filter((n) => !n.startsWith('kube-api-access-')),
      ['config', 'creds', 'podinfo'],
    );
    assert.deepEqual(Object.fromEntries(volumes.get('config') ?? []), {
      'conf/app.conf': { text: 'port=80', mode: 0o600 },
    });
    assert.deepEqual(Object.fromEntries(volumes.get('creds') ?? []), {
      password: { text: 's3cr3t', mode: 0o400 },
    });
    assert.deepEqual(Object.fromEntries(volumes.get('podinfo') ?? []), {
      labels: { text: 'app="web"\ntier="front"', mode: 0o644 },
    });

    // The service-account volume the API server injected.
    const access = [...volumes.entries()].find(([n]) => n.startsWith('kube-api-access-'));
    assert.ok(access, 'the kube-api-access volume was passed');
    const files = access[1];
    assert.deepEqual([...files.keys()].sort(), ['ca.crt', 'namespace', 'token']);
    assert.equal(files.get('namespace')?.text, ns);
    const rootCA = await core().readNamespacedConfigMap({
      name: 'kube-root-ca.crt',
      namespace: ns,
    });
    assert.equal(files.get('ca.crt')?.text, rootCA.data?.['ca.crt']);

    // A real token, accepted by the API server and bound to this pod.
    const token = files.get('token')?.text ?? '';
    const review = await testCluster()
      .kc.makeApiClient(k8s.AuthenticationV1Api)
      .createTokenReview({ body: { spec: { token } } });
    assert.equal(review.status?.authenticated, true, review.status?.error);
    assert.equal(review.status?.user?.username, `system:serviceaccount:${ns}:default`);
    assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/pod-name'], [
      'web',
    ]);
    assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/pod-uid'], [
      created.metadata?.uid,
    ]);
    const bound = claims(token)['kubernetes.io'] as { pod?: { name?: string; uid?: string } };
    assert.equal(bound.pod?.name, 'web');
    assert.equal(bound.pod?.uid, created.metadata?.uid);
  });

  test(`[${mode}] a missing config map: FailedMount, Pending, and the pod starts once it appears`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify);
    await core().createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'waiting' },
        spec: {
          ...onNode(nodeName),
          automountServiceAccountToken: false,
          containers: [{ name: 'app', image: 'busybox' }],
          volumes: [{ name: 'cfg', configMap: { name: 'late' } }],
        },
      },
    });
    const [event] = await waitFor(
      async () => {
        const events = await eventsFor(ns, 'waiting', 'FailedMount');
        return events.length > 0 ? events : undefined;
      },
      { what: 'a FailedMount event' },
    );
    assert.equal(event?.type, 'Warning');
    assert.equal(
      event?.message,
      'MountVolume.SetUp failed for volume "cfg" : configmap "late" not found',
    );
    const pending = await core().readNamespacedPod({ name: 'waiting', namespace: ns });
    assert.equal(pending.status?.phase, 'Pending');
    assert.equal(await provider.getPod(ns, 'waiting', never), undefined);
    assert.equal(provider.calls.length, 0);

    await core().createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'late' }, data: { greeting: 'hello' } },
    });
    await waitRunning(ns, 'waiting');
    assert.deepEqual(Object.fromEntries(provider.current(`${ns}/waiting`).get('cfg') ?? []), {
      greeting: { text: 'hello', mode: 0o644 },
    });
  });

  test(`[${mode}] config map and label changes reach the provider, with only the volume that changed`, async (t) => {
    const { ns, nodeName, provider } = await setup(t, notify, 1_000);
    await core().createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'cfg' }, data: { level: 'info' } },
    });
    await core().createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'reader', labels: { v: '1' } },
        spec: {
          ...onNode(nodeName),
          containers: [{ name: 'app', image: 'busybox' }],
          volumes: [
            { name: 'cfg', configMap: { name: 'cfg' } },
            {
              name: 'podinfo',
              downwardAPI: {
                items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }],
              },
            },
          ],
        },
      },
    });
    const key = `${ns}/reader`;
    await waitRunning(ns, 'reader');
    assert.equal(provider.current(key).get('cfg')?.get('level')?.text, 'info');
    const before = provider.calls.length;

    await core().replaceNamespacedConfigMap({
      name: 'cfg',
      namespace: ns,
      body: { metadata: { name: 'cfg' }, data: { level: 'debug', extra: 'yes' } },
    });
    await waitFor(() => provider.current(key).get('cfg')?.get('level')?.text === 'debug', {
      what: 'the new config map content in the provider',
      timeoutMs: 60_000,
    });
    const update = provider.calls.slice(before).find((c) => c.pod === key);
    // The token volume did not change, so only the config map volume was passed again.
    assert.deepEqual(
      update?.volumes.map((v) => v.name),
      ['cfg'],
    );
    assert.deepEqual(
      update.volumes[0]?.files.map((f) => f.path),
      ['extra', 'level'],
    );

    // Labels read through the downward API.
    const beforeLabels = provider.calls.length;
    await core().patchNamespacedPod(
      { name: 'reader', namespace: ns, body: { metadata: { labels: { v: '2' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await waitFor(() => provider.current(key).get('podinfo')?.get('labels')?.text === 'v="2"', {
      what: 'the new labels in the provider',
      timeoutMs: 60_000,
    });
    assert.deepEqual(
      provider.calls
        .slice(beforeLabels)
        .filter((c) => c.pod === key)
        .flatMap((c) => c.volumes.map((v) => v.name)),
      ['podinfo'],
    );
  });
}

test('a setPodVolumes failure is handled like a createPod failure: retried, and no createPod before it succeeds', async (t) => {
  const { ns, nodeName, provider } = await setup(t, true);
  provider.failures = 2;
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'flaky' },
      spec: {
        ...onNode(nodeName),
        containers: [{ name: 'app', image: 'busybox' }],
        volumes: [
          {
            name: 'podinfo',
            downwardAPI: { items: [{ path: 'name', fieldRef: { fieldPath: 'metadata.name' } }] },
          },
        ],
      },
    },
  });
  await waitRunning(ns, 'flaky');
  const key = `${ns}/flaky`;
  assert.deepEqual(
    provider.log.filter((l) => l.endsWith(key) || l.endsWith(`${key} failed`)),
    [
      `setPodVolumes ${key} failed`,
      `setPodVolumes ${key} failed`,
      `setPodVolumes ${key}`,
      `createPod ${key}`,
    ],
  );
  const [event] = await waitFor(
    async () => {
      const events = await eventsFor(ns, 'flaky', 'ProviderCreateFailed');
      return events.length > 0 ? events : undefined;
    },
    { what: 'a ProviderCreateFailed event' },
  );
  assert.match(event?.message ?? '', /the volume store is busy/);
});

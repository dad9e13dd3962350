import type { V1Pod, V1Volume } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { runPodController } from '../../helpers/pod-controller.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'volume-sources-node';
const NS = 'vol';
const WAIT = { timeoutMs: 20_000, intervalMs: 50 };
const never = new AbortController().signal;

function pod(name: string, volume: V1Volume): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: NS, name },
    spec: {
      nodeName: NODE,
      volumes: [volume],
      containers: [
        { name: 'app', image: 'busybox:1', volumeMounts: [{ name: volume.name, mountPath: '/v' }] },
      ],
    },
  };
}

// The mock takes no volume content (no setPodVolumes): the core still holds a pod back until
// the config maps and secrets its volumes name exist, as a kubelet does.
test('a volume of a missing config map or secret keeps the pod Pending until it exists', async (t) => {
  const api = await FakeApi.start(t);
  const provider = new MockProvider({ nodeName: NODE, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  assert.ok(!('setPodVolumes' in provider), 'the mock takes no volume content');
  await runPodController(t, api, provider, {
    nodeName: NODE,
    // The controller's own resync period.
    fullResyncPeriodMs: undefined,
    maxBackoffMs: 200,
  });

  const held = [
    pod('cm', { name: 'v', configMap: { name: 'later-map' } }),
    pod('secret', { name: 'v', secret: { secretName: 'later-secret' } }),
    pod('projected', {
      name: 'v',
      projected: {
        sources: [
          { configMap: { name: 'later-map', optional: true } },
          { secret: { name: 'later-secret' } },
        ],
      },
    }),
  ];
  const free = [
    pod('optional', { name: 'v', secret: { secretName: 'later-secret', optional: true } }),
    pod('empty-dir', { name: 'v', emptyDir: {} }),
  ];
  for (const p of [...held, ...free]) api.create('pods', p);

  const phase = (name: string): string | undefined => api.get('pods', NS, name)?.status?.phase;
  await waitFor(() => free.every((p) => phase(p.metadata?.name ?? '') === 'Running'), {
    ...WAIT,
    what: 'the pods without missing sources Running',
  });
  const failedMount = (name: string) =>
    api
      .list('events', NS)
      .find((e) => e.involvedObject.name === name && e.reason === 'FailedMount');
  await waitFor(
    () =>
      held.every((p) => {
        const name = p.metadata?.name ?? '';
        const waiting = api.get('pods', NS, name)?.status?.containerStatuses?.[0]?.state?.waiting;
        return waiting?.reason === 'ContainerCreating' && failedMount(name) !== undefined;
      }),
    { ...WAIT, what: 'the held pods waiting with a FailedMount Event' },
  );
  for (const p of held) {
    const name = p.metadata?.name ?? '';
    assert.equal(phase(name), 'Pending', name);
    assert.match(failedMount(name)?.message ?? '', /MountVolume\.SetUp failed for volume "v" : /);
    assert.equal(await provider.getPod(NS, name, never), undefined, `${name} not created`);
  }
  assert.match(failedMount('cm')?.message ?? '', /configmap "later-map" not found/);
  assert.match(failedMount('secret')?.message ?? '', /secret "later-secret" not found/);

  // Retried with backoff: once the objects appear, the pods start.
  api.create('configmaps', {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { namespace: NS, name: 'later-map' },
    data: { k: 'v' },
  });
  api.create('secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { namespace: NS, name: 'later-secret' },
    data: { k: Buffer.from('v').toString('base64') },
  });
  await waitFor(() => held.every((p) => phase(p.metadata?.name ?? '') === 'Running'), {
    ...WAIT,
    what: 'the held pods Running once their sources exist',
  });
});

/**
 * The kubernetes provider against an in-memory stand-in for the remote API server: what it
 * creates there, what it reports back, and how it handles remote deletions, refusals, restarts
 * and reflected objects.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { errorCode } from '../../../src/errors.js';
import type { PodEvent, ResolvedVolume } from '../../../src/provider.js';
import {
  KubernetesProvider,
  parseKubernetesConfig,
} from '../../../src/providers/kubernetes/index.js';
import type { V1Node, V1Pod } from '../../../src/wire.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'vk-offload';
const signal = (): AbortSignal => AbortSignal.timeout(10_000);

interface Harness {
  readonly api: FakeApi;
  readonly provider: KubernetesProvider;
  readonly reports: V1Pod[];
  readonly events: { pod: V1Pod; event: PodEvent }[];
}

async function harness(t: TestContext, api?: FakeApi): Promise<Harness> {
  const remote = api ?? (await FakeApi.start(t));
  const provider = new KubernetesProvider({
    nodeName: NODE,
    nodeIP: '10.0.0.1',
    config: parseKubernetesConfig({ kubeconfig: 'unused', clusterId: 'local-a' }),
    client: remote.client,
  });
  t.after(() => provider.close(signal()));
  const reports: V1Pod[] = [];
  const events: Harness['events'] = [];
  provider.notifyPods((p) => reports.push(p));
  provider.notifyPodEvents((pod, event) => events.push({ pod, event }));
  const node: V1Node = {
    metadata: { name: NODE, labels: { 'kubernetes.io/hostname': NODE, type: 'virtual-kubelet' } },
    spec: { taints: [{ key: 'virtual-kubelet.io/provider', value: 'k', effect: 'NoSchedule' }] },
  };
  await provider.configureNode(node);
  return { api: remote, provider, reports, events };
}

function pod(name: string, uid: string, extra: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { namespace: 'shop', name, uid, labels: { app: name } },
    spec: {
      nodeName: NODE,
      terminationGracePeriodSeconds: 0,
      containers: [{ name: 'app', image: 'app:1' }],
      ...extra,
    },
  };
}

const postsOf = (api: FakeApi): number => api.count('POST', /^\/api\/v1\/namespaces\/shop\/pods$/);

/** The remote pods that stand for local pod `uid`. */
const copiesOf = (api: FakeApi, uid: string): V1Pod[] =>
  api.list('pods').filter((p) => p.metadata?.labels?.['virtual-kubelet.io/origin-uid'] === uid);

test('createPod makes the namespace and the remote pod once; its status comes back', async (t) => {
  const h = await harness(t);
  const local = pod('web', 'uid-web');
  await h.provider.createPod(local, signal());
  const remote = h.api.get('pods', 'shop', 'web');
  assert.ok(remote);
  assert.equal(remote.metadata?.labels?.['virtual-kubelet.io/origin-uid'], 'uid-web');
  assert.equal(remote.metadata?.labels?.['virtual-kubelet.io/origin-cluster'], 'local-a');
  assert.equal(remote.spec?.nodeName, undefined);
  assert.ok(h.api.get('namespaces', '', 'shop'), 'the remote namespace was created');
  // A retried create (after a timeout, say) creates nothing twice.
  await h.provider.createPod(local, signal());
  assert.deepEqual(
    copiesOf(h.api, 'uid-web').map((p) => p.metadata?.uid),
    [remote.metadata?.uid],
  );
  h.api.update('pods', 'shop', 'web', (p) => {
    p.status = {
      phase: 'Running',
      podIP: '10.244.1.7',
      hostIP: '192.168.5.5',
      containerStatuses: [
        { name: 'app', image: 'app:1', imageID: '', ready: true, restartCount: 0 },
      ],
    };
  });
  const report = await waitFor(() => h.reports.find((r) => r.status?.phase === 'Running'), {
    what: 'a Running report',
  });
  assert.deepEqual(report.metadata, local.metadata, 'reported as the local pod');
  assert.equal(report.status?.podIP, '10.244.1.7');
  assert.equal(report.status?.hostIP, '192.168.5.5');
  const status = await h.provider.getPodStatus('shop', 'web', signal());
  assert.equal(status?.phase, 'Running');
});

test('a remote pod deleted by someone else is created again, with an Event and a restart', async (t) => {
  const h = await harness(t);
  await h.provider.createPod(pod('web', 'uid-web'), signal());
  h.api.update('pods', 'shop', 'web', (p) => {
    p.status = {
      phase: 'Running',
      containerStatuses: [
        { name: 'app', image: 'app:1', imageID: '', ready: true, restartCount: 2 },
      ],
    };
  });
  await waitFor(() => h.reports.some((r) => r.status?.phase === 'Running'), { what: 'Running' });
  h.api.remove('pods', 'shop', 'web');
  await waitFor(() => postsOf(h.api) === 2 && h.api.get('pods', 'shop', 'web'), {
    what: 'the remote pod made again',
  });
  assert.deepEqual(
    h.events.map((e) => [e.pod.metadata?.uid, e.event.reason]),
    [['uid-web', 'RemotePodRecreated']],
  );
  h.api.update('pods', 'shop', 'web', (p) => {
    p.status = {
      phase: 'Running',
      containerStatuses: [
        { name: 'app', image: 'app:1', imageID: '', ready: true, restartCount: 0 },
      ],
    };
  });
  const again = await waitFor(
    () => h.reports.findLast((r) => r.status?.containerStatuses?.[0]?.restartCount === 3),
    { what: 'the restart count carried over the re-creation' },
  );
  assert.equal(again.status?.phase, 'Running');
});

test('deletePod removes the remote pod and the provider forgets it', async (t) => {
  const h = await harness(t);
  const local = pod('web', 'uid-web');
  await h.provider.createPod(local, signal());
  await h.provider.deletePod(local, signal());
  assert.equal(h.api.get('pods', 'shop', 'web'), undefined);
  assert.equal(await h.provider.getPod('shop', 'web', signal()), undefined);
  assert.equal(postsOf(h.api), 1, 'a pod the agent deleted is not created again');
});

test('a namespace a deletion had to leave (its remote pod outlived the wait) goes with that pod', async (t) => {
  const h = await harness(t);
  const local = pod('slow', 'uid-slow', { terminationGracePeriodSeconds: 30 });
  await h.provider.createPod(local, signal());
  assert.ok(h.api.get('namespaces', '', 'shop'), 'the provider made the remote namespace');
  // Scheduled to a remote worker, whose kubelet gives it its grace period to go; the deletion
  // stops waiting for it first.
  h.api.update('pods', 'shop', 'slow', (p) => {
    (p.spec ??= { containers: [] }).nodeName = 'worker-1';
  });
  const stop = new AbortController();
  const deleting = h.provider.deletePod(local, stop.signal);
  await waitFor(() => h.api.get('pods', 'shop', 'slow')?.metadata?.deletionTimestamp, {
    what: 'the remote pod terminating',
  });
  stop.abort();
  await deleting.catch(() => undefined);
  assert.ok(h.api.get('namespaces', '', 'shop'), 'kept while the remote pod is there');
  // Its remote kubelet is done with it: the pod goes, and the namespace after it.
  h.api.remove('pods', 'shop', 'slow');
  await waitFor(() => h.api.get('namespaces', '', 'shop') === undefined, {
    what: 'the unused remote namespace deleted',
  });
});

test('remote refusals fail the pod by kind, with an Event', async (t) => {
  const h = await harness(t);
  await h.provider.createPod(pod('first', 'u1'), signal());
  h.api.fail({ method: 'POST', path: /\/pods$/, status: 422, reason: 'Invalid', times: 1 });
  await assert.rejects(h.provider.createPod(pod('bad', 'u2'), signal()), (err: Error) => {
    assert.equal(errorCode(err), 'InvalidInput');
    assert.match(
      err.message,
      /creating the remote pod shop\/bad: the remote cluster answered 422 Invalid/,
    );
    return true;
  });
  h.api.fail({ method: 'POST', path: /\/pods$/, status: 503, times: 1 });
  await assert.rejects(h.provider.createPod(pod('later', 'u3'), signal()), (err: Error) => {
    assert.equal(errorCode(err), 'Unavailable', 'retried by the core');
    return true;
  });
  // Until a create goes through the provider has no such pod: the core's retry creates it
  // rather than taking it for created.
  assert.equal(await h.provider.getPod('shop', 'later', signal()), undefined);
  assert.equal(await h.provider.getPod('shop', 'bad', signal()), undefined);
  assert.deepEqual(
    h.events.map((e) => [e.pod.metadata?.name, e.event.type, e.event.reason]),
    [
      ['bad', 'Warning', 'RemoteRefused'],
      ['later', 'Warning', 'RemoteCreateFailed'],
    ],
  );
  await h.provider.createPod(pod('later', 'u3'), signal());
  assert.ok(h.api.get('pods', 'shop', 'later'));
});

test('a restarted provider adopts the remote pods by their origin and creates nothing twice', async (t) => {
  const h = await harness(t);
  const local = pod('web', 'uid-web');
  await h.provider.createPod(local, signal());
  await h.provider.close(signal());
  const again = await harness(t, h.api);
  const pods = await again.provider.getPods(signal());
  assert.deepEqual(
    pods.map((p) => p.metadata),
    [{ namespace: 'shop', name: 'web', uid: 'uid-web' }],
  );
  const before = copiesOf(h.api, 'uid-web').map((p) => p.metadata?.uid);
  await again.provider.createPod(local, signal());
  assert.deepEqual(
    copiesOf(h.api, 'uid-web').map((p) => p.metadata?.uid),
    before,
  );
  assert.equal(before.length, 1);
  // The adopted pod is still re-created when someone deletes it remotely.
  h.api.remove('pods', 'shop', 'web');
  await waitFor(() => h.api.get('pods', 'shop', 'web'), { what: 'the adopted pod made again' });
});

test('a pod of the same name that this node did not make is left alone', async (t) => {
  const h = await harness(t);
  h.api.create('namespaces', { metadata: { name: 'shop' } });
  h.api.create('pods', { metadata: { namespace: 'shop', name: 'web' }, spec: { containers: [] } });
  await assert.rejects(h.provider.createPod(pod('web', 'uid-web'), signal()), (err: Error) => {
    assert.equal(errorCode(err), 'Permanent');
    assert.match(err.message, /did not create/);
    return true;
  });
});

test('config maps and secrets of the volumes are reflected, kept in sync and removed with the last pod', async (t) => {
  const h = await harness(t);
  const volumes = {
    volumes: [
      { name: 'cfg', configMap: { name: 'settings' } },
      { name: 'creds', secret: { secretName: 'db', items: [{ key: 'password', path: 'pw' }] } },
    ],
  };
  const a = pod('a', 'uid-a', volumes);
  const b = pod('b', 'uid-b', volumes);
  const content = (conf: string): ResolvedVolume[] => [
    {
      name: 'cfg',
      files: [{ path: 'app.conf', data: new TextEncoder().encode(conf), mode: 0o644 }],
    },
    {
      name: 'creds',
      files: [{ path: 'pw', data: new TextEncoder().encode('s3cret'), mode: 0o600 }],
    },
  ];
  await h.provider.setPodVolumes(a, content('color=blue'), signal());
  await h.provider.createPod(a, signal());
  await h.provider.setPodVolumes(b, content('color=blue'), signal());
  await h.provider.createPod(b, signal());
  const cm = h.api.get('configmaps', 'shop', 'settings');
  assert.deepEqual(cm?.data, { 'app.conf': 'color=blue' });
  assert.equal(cm?.metadata?.labels?.['virtual-kubelet.io/reflected'], 'true');
  assert.deepEqual(h.api.get('secrets', 'shop', 'db')?.data, {
    password: Buffer.from('s3cret').toString('base64'),
  });
  // The core hands over new content when the config map changes.
  await h.provider.setPodVolumes(a, content('color=green').slice(0, 1), signal());
  await h.provider.setPodVolumes(b, content('color=green').slice(0, 1), signal());
  assert.deepEqual(h.api.get('configmaps', 'shop', 'settings')?.data, {
    'app.conf': 'color=green',
  });
  await h.provider.deletePod(a, signal());
  assert.ok(h.api.get('configmaps', 'shop', 'settings'), 'pod b still needs it');
  await h.provider.deletePod(b, signal());
  assert.equal(h.api.get('configmaps', 'shop', 'settings'), undefined);
  assert.equal(h.api.get('secrets', 'shop', 'db'), undefined);
});

test('a mirrored service account is created remotely; an existing remote object is used as is', async (t) => {
  const h = await harness(t);
  h.api.create('namespaces', { metadata: { name: 'shop' } });
  h.api.create('configmaps', {
    metadata: { namespace: 'shop', name: 'theirs' },
    data: { k: 'remote' },
  });
  const local = pod('web', 'uid-web', {
    serviceAccountName: 'builder',
    volumes: [{ name: 'cfg', configMap: { name: 'theirs' } }],
  });
  await h.provider.setPodVolumes(
    local,
    [{ name: 'cfg', files: [{ path: 'k', data: new TextEncoder().encode('local'), mode: 0o644 }] }],
    signal(),
  );
  await h.provider.createPod(local, signal());
  assert.ok(h.api.get('serviceaccounts', 'shop', 'builder'));
  assert.equal(h.api.get('pods', 'shop', 'web')?.spec?.serviceAccountName, 'builder');
  assert.deepEqual(h.api.get('configmaps', 'shop', 'theirs')?.data, { k: 'remote' });
  await h.provider.deletePod(local, signal());
  assert.equal(h.api.get('serviceaccounts', 'shop', 'builder'), undefined);
  assert.ok(h.api.get('configmaps', 'shop', 'theirs'), 'not ours: never deleted');
});

test('remote Events about an offloaded pod are copied onto the local pod once', async (t) => {
  const h = await harness(t);
  await h.provider.createPod(pod('web', 'uid-web'), signal());
  h.api.update('pods', 'shop', 'web', (p) => {
    p.status = { phase: 'Pending' };
  });
  await waitFor(() => h.reports.length > 0, { what: 'the remote pod seen' });
  const remoteUid = h.api.get('pods', 'shop', 'web')?.metadata?.uid ?? '';
  const event = (name: string, uid: string, count: number) => ({
    metadata: { namespace: 'shop', name },
    involvedObject: { kind: 'Pod', namespace: 'shop', name: 'web', uid },
    type: 'Warning',
    reason: 'FailedMount',
    message: 'volume not ready',
    count,
    lastTimestamp: new Date().toISOString(),
  });
  h.api.create('events', event('web.1', remoteUid, 1));
  h.api.create('events', event('other.1', 'someone-else', 1));
  await waitFor(() => h.events.some((e) => e.event.reason === 'FailedMount'), {
    what: 'the remote Event copied',
  });
  h.api.update('events', 'shop', 'web.1', (e) => {
    e.count = 2;
  });
  await waitFor(() => h.events.filter((e) => e.event.reason === 'FailedMount').length === 2, {
    what: 'the repeated Event copied again',
  });
  assert.deepEqual(
    h.events.map((e) => [e.pod.metadata?.uid, e.event.type, e.event.message]),
    [
      ['uid-web', 'Warning', 'remote: volume not ready'],
      ['uid-web', 'Warning', 'remote: volume not ready'],
    ],
  );
});

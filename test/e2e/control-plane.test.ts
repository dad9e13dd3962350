import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KUBERNETES_VERSION } from '../../src/devcluster/index.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

test('the apiserver is ready and reports the pinned version', async () => {
  const ready = await kubectl(['get', '--raw', '/readyz']);
  assert.equal(ready.stdout.trim(), 'ok');
  const version = JSON.parse((await kubectl(['version', '-o', 'json'])).stdout) as {
    clientVersion: { gitVersion: string };
    serverVersion: { gitVersion: string };
  };
  assert.equal(version.serverVersion.gitVersion, KUBERNETES_VERSION);
  assert.equal(version.clientVersion.gitVersion, KUBERNETES_VERSION);
});

test('a ConfigMap and a Secret round-trip through kubectl', async (t) => {
  const ns = await testNamespace(t);
  await kubectl(['apply', '-n', ns, '-f', '-'], {
    input: [
      'apiVersion: v1',
      'kind: ConfigMap',
      'metadata: {name: settings}',
      'data: {color: blue, size: "3"}',
      '---',
      'apiVersion: v1',
      'kind: Secret',
      'metadata: {name: creds}',
      'stringData: {password: "s3cr3t with spaces"}',
    ].join('\n'),
  });
  const cm = JSON.parse(
    (await kubectl(['get', 'configmap', 'settings', '-n', ns, '-o', 'json'])).stdout,
  ) as k8s.V1ConfigMap;
  assert.deepEqual(cm.data, { color: 'blue', size: '3' });
  const secret = JSON.parse(
    (await kubectl(['get', 'secret', 'creds', '-n', ns, '-o', 'json'])).stdout,
  ) as k8s.V1Secret;
  assert.equal(Buffer.from(secret.data?.password ?? '', 'base64').toString(), 's3cr3t with spaces');
  await kubectl(['delete', 'configmap/settings', 'secret/creds', '-n', ns]);
  const gone = await kubectl(['get', 'configmap', 'settings', '-n', ns], { allowFailure: true });
  assert.notEqual(gone.code, 0);
  assert.match(gone.stderr, /NotFound/);
});

test('a ConfigMap and a Secret round-trip through the JS client, watched', async (t) => {
  const ns = await testNamespace(t);
  const { kc } = testCluster();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const events: { type: string; name: string; color: string | undefined }[] = [];
  const watch = await new k8s.Watch(kc).watch(
    `/api/v1/namespaces/${ns}/configmaps`,
    {},
    (type: string, obj: k8s.V1ConfigMap) => {
      events.push({ type, name: obj.metadata?.name ?? '', color: obj.data?.color });
    },
    () => undefined,
  );
  t.after(() => {
    watch.abort();
  });

  await core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: 'watched' }, data: { color: 'red' } },
  });
  const read = await core.readNamespacedConfigMap({ name: 'watched', namespace: ns });
  assert.equal(read.data?.color, 'red');
  await core.replaceNamespacedConfigMap({
    name: 'watched',
    namespace: ns,
    body: { ...read, data: { color: 'green' } },
  });
  await core.deleteNamespacedConfigMap({ name: 'watched', namespace: ns });
  await waitFor(() => events.some((e) => e.type === 'DELETED'), { what: 'the DELETED event' });
  assert.deepEqual(
    events.filter((e) => e.name === 'watched'),
    [
      { type: 'ADDED', name: 'watched', color: 'red' },
      { type: 'MODIFIED', name: 'watched', color: 'green' },
      { type: 'DELETED', name: 'watched', color: 'green' },
    ],
  );

  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: 'token' }, stringData: { token: 'abc123' } },
  });
  const secret = await core.readNamespacedSecret({ name: 'token', namespace: ns });
  assert.equal(Buffer.from(secret.data?.token ?? '', 'base64').toString(), 'abc123');
});

test('a Deployment gets a ReplicaSet and Pending pods from the controller manager and scheduler', async (t) => {
  const ns = await testNamespace(t);
  const { kc } = testCluster();
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const labels = { app: 'web' };
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name: 'web' },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            // No node will ever match, whatever other tests register: the pods must stay Pending.
            nodeSelector: { 'e2e.virtual-kubelet.io/nowhere': 'true' },
            containers: [{ name: 'web', image: 'nginx' }],
          },
        },
      },
    },
  });
  const rs = await waitFor(
    async () =>
      (await apps.listNamespacedReplicaSet({ namespace: ns })).items.find((r) =>
        r.metadata?.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === 'web'),
      ),
    { what: 'a ReplicaSet owned by the Deployment', timeoutMs: 60_000 },
  );
  const pods = await waitFor(
    async () => {
      const items = (await core.listNamespacedPod({ namespace: ns })).items;
      const unschedulable = items.filter((p) =>
        p.status?.conditions?.some(
          (c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable',
        ),
      );
      return unschedulable.length === 2 ? unschedulable : undefined;
    },
    { what: 'two pods marked Unschedulable by the scheduler', timeoutMs: 60_000 },
  );
  for (const pod of pods) {
    assert.equal(pod.status?.phase, 'Pending');
    assert.equal(pod.metadata?.ownerReferences?.[0]?.name, rs.metadata?.name);
    assert.equal(pod.spec?.serviceAccountName, 'default');
  }
});

import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  DevCluster,
  ensureBinaries,
  isAlive,
  KUBERNETES_VERSION,
  type Component,
} from '../../src/devcluster/index.js';
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

/** The outcome of one request to etcd: its status, or the error that stopped it. */
function etcdGet(url: string, tls: https.RequestOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? https.request : http.request;
    const req = get(url, { ...tls, timeout: 5_000, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(`HTTP ${String(res.statusCode)}`));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    req.end();
  });
}

test('etcd admits only TLS clients with a certificate of its own CA; the apiserver has one', async () => {
  const c = testCluster();
  assert.match(c.etcdUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  const pem = (name: string): Promise<Buffer> => readFile(join(c.pkiDir, name));
  const ca = await pem('etcd-ca.crt');
  const health = `${c.etcdUrl}/health`;
  // The control: the apiserver's own client certificate is let in.
  const allowed = await etcdGet(health, {
    ca,
    cert: await pem('apiserver-etcd-client.crt'),
    key: await pem('apiserver-etcd-client.key'),
  });
  assert.equal(allowed, 'HTTP 200');
  // Plain HTTP on the client port: no TLS handshake, no answer.
  const plain = await etcdGet(health.replace('https:', 'http:'));
  assert.doesNotMatch(plain, /^HTTP 2/, `plain HTTP got ${plain}`);
  // TLS without a client certificate: the handshake is refused.
  const anonymous = await etcdGet(health, { ca });
  assert.match(anonymous, /^error /, `TLS without a certificate got ${anonymous}`);
  // A certificate of the cluster CA (the admin's) is no etcd client either.
  const admin = await etcdGet(health, {
    ca,
    cert: await pem('admin.crt'),
    key: await pem('admin.key'),
  });
  assert.match(admin, /^error /, `the admin certificate got ${admin}`);
  assert.equal((await kubectl(['get', '--raw', '/readyz'])).stdout.trim(), 'ok');
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

test('components stop and start one at a time, on the same port, data and certificates', async (t) => {
  // A control plane of its own: the shared one serves the other tests meanwhile.
  const dir = await mkdtemp(join(tmpdir(), 'vk-e2e-components-'));
  // The runner's sweep of stale vk-e2e-* directories leaves those of a live owner alone.
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  const exits: Component[] = [];
  const cluster = new DevCluster({
    dir,
    binaries: await ensureBinaries(),
    onComponentExit: (c) => exits.push(c),
  });
  t.after(async () => {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const info = await cluster.start();
  const ctl = (args: string[]) =>
    kubectl(args, { kubeconfig: info.adminKubeconfig, allowFailure: true, timeoutMs: 20_000 });
  const readyz = async (): Promise<string> => {
    const r = await ctl(['get', '--raw', '/readyz', '--request-timeout=3s']);
    return r.code === 0 ? r.stdout.trim() : `failed: ${r.stderr.trim()}`;
  };
  await ctl(['create', 'configmap', 'kept', '-n', 'default', '--from-literal=k=v']);

  const apiPid = cluster.pid('kube-apiserver');
  await cluster.stopComponent('kube-apiserver');
  assert.equal(isAlive(apiPid), false);
  assert.equal(cluster.isStopped('kube-apiserver'), true);
  assert.match(await readyz(), /^failed: /);
  await cluster.startComponent('kube-apiserver');
  assert.equal(cluster.isStopped('kube-apiserver'), false);
  assert.notEqual(cluster.pid('kube-apiserver'), apiPid);
  assert.equal(await readyz(), 'ok');
  const kept = await ctl(['get', 'configmap', 'kept', '-n', 'default', '-o', 'jsonpath={.data.k}']);
  assert.equal(kept.stdout, 'v', 'etcd data and the admin certificate work as before');

  // etcd killed outright, as a crash would: the apiserver answers not ready until it is back.
  await cluster.stopComponent('etcd', { graceMs: 0 });
  await waitFor(async () => (await readyz()) !== 'ok', { what: '/readyz to fail without etcd' });
  await cluster.startComponent('etcd');
  await waitFor(async () => (await readyz()) === 'ok', {
    what: '/readyz ok again with etcd back',
    timeoutMs: 60_000,
  });

  await cluster.stopComponent('kube-controller-manager');
  // Past the 1 s after which a component that exits on its own is restarted.
  await delay(2_500);
  assert.equal(cluster.pid('kube-controller-manager'), 0, 'not restarted while stopped');
  assert.equal(cluster.isStopped('kube-controller-manager'), true);
  await cluster.startComponent('kube-controller-manager');
  assert.notEqual(cluster.pid('kube-controller-manager'), 0);
  assert.deepEqual(exits, [], 'a component stopped on purpose is no exit to report');
});

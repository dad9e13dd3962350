import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { testCluster } from '../helpers/cluster.js';
import { startNode, waitNodeReady } from '../helpers/agent.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);
const coordination = (): k8s.CoordinationV1Api =>
  testCluster().kc.makeApiClient(k8s.CoordinationV1Api);

for (const notify of [true, false]) {
  const mode = notify ? 'push' : 'polling';

  test(`[${mode}] the node registers as a node identity, Ready, with its labels, taint and addresses`, async (t) => {
    const { nodeName } = await startNode(t, {
      notify,
      config: { cpu: '8', memory: '32Gi', pods: '200', others: { 'example.com/gpu': '2' } },
    });
    const node = await waitNodeReady(nodeName);
    assert.equal(node.metadata?.labels?.type, 'virtual-kubelet');
    assert.equal(node.metadata?.labels?.['kubernetes.io/hostname'], nodeName);
    assert.equal(node.metadata?.labels?.['kubernetes.io/os'], 'linux');
    assert.ok(node.metadata?.labels?.['kubernetes.io/arch']);
    // The node lifecycle controller may add its own not-ready taint for a moment, as for any node.
    const taints = (node.spec?.taints ?? []).map((x) => `${x.key}=${x.value ?? ''}:${x.effect}`);
    assert.ok(taints.includes('virtual-kubelet.io/provider=mock:NoSchedule'), taints.join());
    assert.equal(node.status?.capacity?.cpu, '8');
    assert.equal(node.status?.capacity?.memory, '32Gi');
    assert.equal(node.status?.capacity?.pods, '200');
    assert.equal(node.status?.capacity?.['example.com/gpu'], '2');
    assert.equal(node.status?.allocatable?.cpu, '8');
    assert.deepEqual(
      node.status?.addresses?.map((a) => ({ type: a.type, address: a.address })),
      [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: nodeName },
      ],
    );
    assert.equal(node.status?.daemonEndpoints?.kubeletEndpoint?.Port, 10250);
    assert.match(node.status?.nodeInfo?.kubeletVersion ?? '', /-vk-/);
    const types = (node.status?.conditions ?? []).map((c) => c.type).sort();
    assert.deepEqual(types, [
      'DiskPressure',
      'MemoryPressure',
      'NetworkUnavailable',
      'PIDPressure',
      'Ready',
    ]);
  });

  test(`[${mode}] the lease is owned by the node and renewed`, async (t) => {
    const { nodeName } = await startNode(t, {
      notify,
      tuning: { node: { leaseDurationSeconds: 4 } },
    });
    const node = await waitNodeReady(nodeName);
    const lease = await coordination().readNamespacedLease({
      name: nodeName,
      namespace: 'kube-node-lease',
    });
    assert.equal(lease.spec?.holderIdentity, nodeName);
    assert.equal(lease.spec?.leaseDurationSeconds, 4);
    assert.equal(lease.metadata?.ownerReferences?.[0]?.uid, node.metadata?.uid);
    const first = new Date(lease.spec?.renewTime ?? 0).getTime();
    await waitFor(
      async () => {
        const l = await coordination().readNamespacedLease({
          name: nodeName,
          namespace: 'kube-node-lease',
        });
        return new Date(l.spec?.renewTime ?? 0).getTime() > first;
      },
      { what: 'the lease to be renewed', timeoutMs: 10_000 },
    );
  });

  test(`[${mode}] a deleted node is registered again, and conditions added by others survive status writes`, async (t) => {
    const { nodeName } = await startNode(t, { notify });
    const before = await waitNodeReady(nodeName);
    await core().patchNodeStatus(
      {
        name: nodeName,
        body: {
          status: { conditions: [{ type: 'example.com/Custom', status: 'True', reason: 'Test' }] },
        },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    );
    // Two status periods later the custom condition is still there, next to ours.
    const heartbeat = (n: k8s.V1Node): number =>
      new Date(
        n.status?.conditions?.find((c) => c.type === 'Ready')?.lastHeartbeatTime ?? 0,
      ).getTime();
    const h0 = heartbeat(await core().readNode({ name: nodeName }));
    const later = await waitFor(
      async () => {
        const n = await core().readNode({ name: nodeName });
        return heartbeat(n) > h0 ? n : undefined;
      },
      { what: 'a new heartbeat', timeoutMs: 10_000 },
    );
    assert.ok(later.status?.conditions?.some((c) => c.type === 'example.com/Custom'));

    await core().deleteNode({ name: nodeName });
    const again = await waitFor(
      async () => {
        const n = await core()
          .readNode({ name: nodeName })
          .catch(() => undefined);
        return n && n.metadata?.uid !== before.metadata?.uid ? n : undefined;
      },
      { what: 'the node to be registered again', timeoutMs: 15_000 },
    );
    assert.equal(again.metadata?.labels?.type, 'virtual-kubelet');
    await waitNodeReady(nodeName);
    await waitFor(
      async () => {
        const l = await coordination().readNamespacedLease({
          name: nodeName,
          namespace: 'kube-node-lease',
        });
        return l.metadata?.ownerReferences?.[0]?.uid === again.metadata?.uid;
      },
      { what: 'the lease to be owned by the new node', timeoutMs: 15_000 },
    );
  });

  test(`[${mode}] the node goes NotReady with a reason when the provider fails its health check`, async (t) => {
    const { nodeName } = await startNode(t, {
      notify,
      config: { faults: { ping: { errorRate: 1 } } },
    });
    const node = await waitNodeReady(nodeName, 'False');
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.reason, 'ProviderUnhealthy');
    assert.match(ready?.message ?? '', /health check/);
  });
}

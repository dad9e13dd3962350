import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePorts } from '../../src/devcluster/cluster.js';
import { readMockState } from '../../src/providers/mock/index.js';
import {
  nodeKubeconfig,
  onNode,
  spawnAgent,
  uniqueNodeName,
  waitNodeReady,
} from '../helpers/agent.js';
import { testCluster, testNamespace } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

const LEASE_SECONDS = 8;
const PODS = 200;

const coordination = (): k8s.CoordinationV1Api =>
  testCluster().kc.makeApiClient(k8s.CoordinationV1Api);
const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

const nodeLease = (name: string): Promise<k8s.V1Lease> =>
  coordination().readNamespacedLease({ name, namespace: 'kube-node-lease' });

/** Whether something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      resolve(false);
    });
  });
}

test('two replicas with --leader-elect: the leader killed during a 200-pod rollout, the standby takes over; every pod Running, none created twice', async (t) => {
  const name = uniqueNodeName('ha');
  const ns = await testNamespace(t, 'ha');
  const dir = testCluster().dir;
  const stateFile = join(dir, `${name}-mock-state.jsonl`);
  const config = join(dir, `${name}-mock.json`);
  // One backend both replicas reach: the mock keeps its pods in a file the next leader reads.
  await writeFile(config, JSON.stringify({ pods: '250', stateFile, logIntervalMs: 0 }));
  const kubeconfig = await nodeKubeconfig(name);
  const ports = await freePorts(2);
  const replica = (identity: string, port: number) =>
    spawnAgent(t, [
      '--kubeconfig',
      kubeconfig,
      '--nodename',
      name,
      '--node-ip',
      '127.0.0.1',
      '--listen-port',
      String(port),
      '--provider',
      'mock',
      '--provider-config',
      config,
      '--leader-elect',
      '--leader-elect-identity',
      identity,
      '--leader-elect-lease-duration',
      `${String(LEASE_SECONDS)}s`,
      '--leader-elect-renew-deadline',
      '5s',
      '--leader-elect-retry-period',
      '1s',
    ]);

  const a = replica('replica-a', ports[0] ?? 0);
  await waitFor(async () => (await nodeLease(name)).spec?.holderIdentity === 'replica-a', {
    what: 'replica-a to hold the node Lease',
  });
  await waitNodeReady(name);
  const b = replica('replica-b', ports[1] ?? 0);
  await waitFor(async () => /another replica leads/.test(await b.logs()), {
    what: 'replica-b to see replica-a lead',
  });
  // The standby serves nothing: no kubelet API, no node of its own.
  assert.equal(await listening(ports[1] ?? 0), false, 'the standby does not listen');
  assert.equal(await listening(ports[0] ?? 0), true, 'the leader serves the kubelet API');
  assert.doesNotMatch(await b.logs(), /virtual node ready/);

  // The Node's Ready condition, sampled for the whole test.
  const notReady: string[] = [];
  const sampling = new AbortController();
  t.after(() => {
    sampling.abort();
  });
  const sampler = (async () => {
    while (!sampling.signal.aborted) {
      const node = await core()
        .readNode({ name })
        .catch(() => undefined);
      const ready = node?.status?.conditions?.find((c) => c.type === 'Ready');
      if (ready?.status !== 'True')
        notReady.push(`${new Date().toISOString()} ${ready?.status ?? 'no node'}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();

  const apps = testCluster().kc.makeApiClient(k8s.AppsV1Api);
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name: 'rollout' },
      spec: {
        replicas: PODS,
        selector: { matchLabels: { app: 'rollout' } },
        template: {
          metadata: { labels: { app: 'rollout' } },
          spec: {
            nodeSelector: { 'kubernetes.io/hostname': name },
            tolerations: onNode(name).tolerations,
            containers: [{ name: 'app', image: 'busybox' }],
          },
        },
      },
    },
  });
  // Kill the leader mid-way: some pods are running on it, others not yet.
  await waitFor(() => readMockState(stateFile).creates.size >= PODS / 5, {
    what: `${String(PODS / 5)} pods created by the leader`,
    timeoutMs: 120_000,
    intervalMs: 200,
  });
  a.child.kill('SIGKILL');
  assert.equal(await a.exited, 'SIGKILL');
  const createdByA = readMockState(stateFile).creates.size;
  assert.ok(
    createdByA < PODS,
    `the leader was killed during the rollout (${String(createdByA)} created)`,
  );
  const before = await nodeLease(name);
  assert.equal(before.spec?.holderIdentity, 'replica-a', 'no one took over at once');
  const lastRenew = new Date(before.spec?.renewTime ?? 0).getTime();
  const transitions = before.spec?.leaseTransitions ?? 0;

  const after = await waitFor(
    async () => {
      const lease = await nodeLease(name);
      return lease.spec?.holderIdentity === 'replica-b' ? lease : undefined;
    },
    { what: 'replica-b to take the Lease', timeoutMs: 4 * LEASE_SECONDS * 1000 },
  );
  const acquired = new Date(after.spec?.acquireTime ?? 0).getTime();
  assert.equal(after.spec?.leaseTransitions, transitions + 1);
  assert.equal(after.spec?.leaseDurationSeconds, LEASE_SECONDS);
  t.diagnostic(
    `replica-b took the Lease ${String(acquired - lastRenew)} ms after replica-a's last renewal (lease ${String(LEASE_SECONDS)} s)`,
  );
  // Not before the killed leader's lease expired, and within one lease duration after that.
  assert.ok(
    acquired - lastRenew >= LEASE_SECONDS * 1000,
    `taken ${String(acquired - lastRenew)} ms after the last renewal: before the lease expired`,
  );
  assert.ok(
    acquired - lastRenew <= 2 * LEASE_SECONDS * 1000,
    `taken ${String(acquired - lastRenew)} ms after the last renewal`,
  );

  // The new leader finishes the rollout.
  await waitFor(
    async () => {
      const pods = await core().listNamespacedPod({ namespace: ns });
      const running = pods.items.filter((p) => p.status?.phase === 'Running');
      return running.length === PODS && pods.items.length === PODS;
    },
    { what: `${String(PODS)} pods Running`, timeoutMs: 300_000, intervalMs: 1_000 },
  );
  await waitFor(async () => /virtual node ready: leading/.test(await b.logs()), {
    what: 'replica-b to lead the node',
  });
  const node = await waitNodeReady(name);
  assert.equal(
    node.status?.daemonEndpoints?.kubeletEndpoint?.Port,
    ports[1],
    'the Node names the new leader',
  );
  assert.equal(await listening(ports[1] ?? 0), true, 'the new leader serves the kubelet API');
  sampling.abort();
  await sampler;
  assert.deepEqual(notReady, [], 'the node stayed Ready');

  // Counted in the provider's journal: every pod of the rollout created exactly once, and no
  // other pod (a lost pod would have been replaced by the ReplicaSet under a new UID).
  const pods = await core().listNamespacedPod({ namespace: ns });
  const { creates } = readMockState(stateFile);
  assert.equal(creates.size, PODS, 'no pod was replaced');
  for (const pod of pods.items) {
    const uid = pod.metadata?.uid ?? '';
    assert.equal(creates.get(uid), 1, `${pod.metadata?.name ?? uid} created once`);
  }
  assert.match(await b.logs(), /acquired the lease/);
});

test('a kubelet identity may write only its own node Lease: another lease namespace is refused in one line', async (t) => {
  const name = uniqueNodeName('ha');
  const [port] = await freePorts(1);
  const agent = spawnAgent(t, [
    '--kubeconfig',
    await nodeKubeconfig(name),
    '--nodename',
    name,
    '--listen-port',
    String(port),
    '--leader-elect',
    '--leader-elect-namespace',
    'default',
  ]);
  assert.equal(await agent.exited, 1);
  const lines = (await agent.logs())
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('{'));
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(
    lines[0] ?? '',
    new RegExp(
      `^virtual-kubelet: leader election: this identity may not write the Lease default/${name}: .*can only access leases in the "kube-node-lease" system namespace`,
    ),
  );
});

test('a replica stopped with SIGTERM releases the Lease: the standby leads at once', async (t) => {
  const name = uniqueNodeName('ha');
  const kubeconfig = await nodeKubeconfig(name);
  const ports = await freePorts(2);
  // Long enough that a takeover within it can only come from the release.
  const replica = (identity: string, port: number) =>
    spawnAgent(t, [
      '--kubeconfig',
      kubeconfig,
      '--nodename',
      name,
      '--node-ip',
      '127.0.0.1',
      '--listen-port',
      String(port),
      '--provider',
      'mock-polling',
      '--leader-elect',
      '--leader-elect-identity',
      identity,
      '--leader-elect-lease-duration',
      '60s',
    ]);
  const a = replica('replica-a', ports[0] ?? 0);
  await waitFor(async () => /virtual node ready: leading/.test(await a.logs()), {
    what: 'replica-a to lead',
  });
  const b = replica('replica-b', ports[1] ?? 0);
  await waitFor(async () => /another replica leads/.test(await b.logs()), {
    what: 'replica-b to stand by',
  });
  const stoppedAt = Date.now();
  a.child.kill('SIGTERM');
  assert.equal(await a.exited, 0);
  assert.match(await a.logs(), /released the lease/);
  const lease = await waitFor(
    async () => {
      const l = await nodeLease(name);
      return l.spec?.holderIdentity === 'replica-b' ? l : undefined;
    },
    { what: 'replica-b to take the released Lease', timeoutMs: 30_000 },
  );
  assert.ok(
    new Date(lease.spec?.acquireTime ?? 0).getTime() - stoppedAt < 60_000,
    'taken before the 60 s lease could have expired',
  );
  await waitFor(async () => /virtual node ready: leading/.test(await b.logs()), {
    what: 'replica-b to lead',
  });
  await waitNodeReady(name);
});

test('with another --leader-elect-namespace the lock is a Lease there, and the node keeps its own heartbeat Lease', async (t) => {
  const name = uniqueNodeName('ha');
  const ns = await testNamespace(t, 'ha');
  const [port] = await freePorts(1);
  // An identity allowed to write Leases there (the cluster's admin here; see docs/operations.md
  // for the Role a deployment's own identity needs).
  const agent = spawnAgent(t, [
    '--kubeconfig',
    testCluster().kubeconfigPath,
    '--nodename',
    name,
    '--node-ip',
    '127.0.0.1',
    '--listen-port',
    String(port),
    '--provider',
    'mock-polling',
    '--leader-elect',
    '--leader-elect-namespace',
    ns,
    '--leader-elect-identity',
    'replica-a',
  ]);
  await waitFor(async () => /virtual node ready: leading/.test(await agent.logs()), {
    what: 'the replica to lead',
  });
  const lock = await coordination().readNamespacedLease({ name, namespace: ns });
  assert.equal(lock.spec?.holderIdentity, 'replica-a');
  assert.equal(lock.spec?.leaseDurationSeconds, 15);
  const heartbeat = await waitFor(() => nodeLease(name), { what: 'the node Lease' });
  assert.equal(
    heartbeat.spec?.holderIdentity,
    name,
    'the node keeps its heartbeat Lease, as without election',
  );
  await waitNodeReady(name);
});

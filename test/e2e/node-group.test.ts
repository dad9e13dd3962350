import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePorts } from '../../src/devcluster/cluster.js';
import { onNode, spawnAgent, uniqueNodeName, waitNodeReady } from '../helpers/agent.js';
import { testCluster, testNamespace } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

test('one process runs many nodes from --nodes: each Ready with its own lease, port and pods', async (t) => {
  const names = [0, 1, 2].map(() => uniqueNodeName('group'));
  const ports = await freePorts(3);
  const file = join(testCluster().dir, `${names[0] ?? ''}-nodes.yaml`);
  // YAML, one node on the polling mock, the last one's port from --listen-port + index.
  await writeFile(
    file,
    [
      'nodes:',
      `  - name: ${names[0] ?? ''}`,
      `    port: ${String(ports[0])}`,
      `  - name: ${names[1] ?? ''}`,
      '    provider: mock-polling',
      `    port: ${String(ports[1])}`,
      `  - name: ${names[2] ?? ''}`,
      '',
    ].join('\n'),
  );
  const basePort = (ports[2] ?? 0) - 2;
  const agent = spawnAgent(t, [
    '--kubeconfig',
    testCluster().kubeconfigPath,
    '--nodes',
    file,
    '--listen-port',
    String(basePort),
    '--node-ip',
    '127.0.0.1',
    '--authorization-mode',
    'AlwaysAllow',
  ]);
  t.after(async () => {
    await Promise.all(
      names.map((name) =>
        core()
          .deleteNode({ name })
          .catch(() => undefined),
      ),
    );
  });
  const nodes = await Promise.all(names.map((n) => waitNodeReady(n)));
  assert.deepEqual(
    nodes.map((n) => n.status?.daemonEndpoints?.kubeletEndpoint?.Port),
    [ports[0], ports[1], ports[2]],
  );
  // Each node serves its own kubelet API.
  for (const port of ports) {
    const status = await new Promise<number>((resolve, reject) => {
      get(`https://127.0.0.1:${String(port)}/healthz`, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
    assert.ok([200, 401].includes(status), `port ${String(port)} answered ${String(status)}`);
  }
  const coordination = testCluster().kc.makeApiClient(k8s.CoordinationV1Api);
  for (const name of names) {
    const lease = await coordination.readNamespacedLease({ name, namespace: 'kube-node-lease' });
    assert.equal(lease.spec?.holderIdentity, name);
  }

  // A pod bound to each node runs.
  const ns = await testNamespace(t, 'group');
  for (const [i, name] of names.entries())
    await core().createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: `p${String(i)}` },
        spec: { ...onNode(name), containers: [{ name: 'c', image: 'busybox' }] },
      },
    });
  await waitFor(
    async () => {
      const pods = await core().listNamespacedPod({ namespace: ns });
      const running = pods.items.filter((p) => p.status?.phase === 'Running');
      return running.length === 3 ? running : undefined;
    },
    { what: 'a Running pod on each node' },
  );

  // A deleted Node of the group comes back (its watch is shared with the others).
  const before = nodes[1]?.metadata?.uid;
  await core().deleteNode({ name: names[1] ?? '' });
  await waitFor(
    async () => {
      const n = await core()
        .readNode({ name: names[1] ?? '' })
        .catch(() => undefined);
      return n?.metadata?.uid && n.metadata.uid !== before ? n : undefined;
    },
    { what: 'the deleted node registered again' },
  );

  agent.child.kill('SIGTERM');
  assert.equal(await agent.exited, 0, await agent.logs());
});

test('a bad --nodes file is one line and a non-zero exit', async (t) => {
  const file = join(testCluster().dir, `${uniqueNodeName('bad')}-nodes.json`);
  await writeFile(file, JSON.stringify({ nodes: [{ name: 'Upper_Case' }] }));
  const agent = spawnAgent(t, ['--kubeconfig', testCluster().kubeconfigPath, '--nodes', file]);
  assert.equal(await agent.exited, 1);
  const output = (await agent.logs()).trim();
  assert.equal(output.split('\n').length, 1, output);
  assert.match(output, /--nodes .*: nodes\[0\]\.name must be a DNS subdomain/);
});

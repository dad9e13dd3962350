/**
 * A pod's own address in its environment, against the real control plane: the core asks the
 * provider for the pod's addresses (`preparePod`) before it resolves the environment, so
 * `status.podIP` in `env` and `$(POD_IP)` in `args` hold the address the pod's status shows.
 * And what the API server itself allows: a downwardAPI volume may not name `status.podIP`.
 */
import * as k8s from '@kubernetes/client-node';
import type { V1Pod, V1PodStatus } from '../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MockProvider } from '../../src/providers/mock/index.js';
import { ProcessProvider } from '../../src/providers/process/index.js';
import { onNode, startNode, uniqueNodeName } from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { processStateDir, randomPodCidr, reap } from '../helpers/process-pods.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

/** The environment that reads the pod's and the node's addresses through the downward API. */
const ADDRESS_ENV: k8s.V1EnvVar[] = [
  { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
  { name: 'POD_IPS', valueFrom: { fieldRef: { fieldPath: 'status.podIPs' } } },
  { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
];

async function waitRunning(ns: string, name: string): Promise<k8s.V1Pod> {
  return waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name, namespace: ns });
      return p.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    },
    { what: `pod ${name} Running with a podIP`, timeoutMs: 30_000 },
  );
}

test('the API server refuses a downwardAPI volume that names status.podIP', async (t) => {
  const ns = await testNamespace(t);
  const refused = await core()
    .createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'ip-volume' },
        spec: {
          containers: [{ name: 'app', image: 'busybox' }],
          volumes: [
            {
              name: 'info',
              downwardAPI: { items: [{ path: 'ip', fieldRef: { fieldPath: 'status.podIP' } }] },
            },
          ],
        },
      },
    })
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  assert.ok(refused instanceof k8s.ApiException, 'the create is refused');
  const apiError = refused as k8s.ApiException<unknown>;
  assert.equal(apiError.code, 422);
  assert.match(String(apiError.body), /status\.podIP/);
  assert.match(String(apiError.body), /Unsupported value/);
});

for (const notify of [true, false]) {
  const mode = notify ? 'push' : 'polling';
  test(`[${mode}] mock: kubectl exec sees POD_IP, POD_IPS, HOST_IP and $(POD_IP) equal to the pod's status`, async (t) => {
    const ns = await testNamespace(t);
    const nodeName = uniqueNodeName(`addr-${mode}`);
    const provider = new MockProvider({ nodeName, notify, config: { logIntervalMs: 0 } });
    t.after(() => provider.close());
    await startNode(t, { nodeName, provider, api: true });
    await core().createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'addr' },
        spec: {
          ...onNode(nodeName),
          containers: [
            {
              name: 'app',
              image: 'busybox',
              command: ['sleep'],
              args: ['3600', 'ip=$(POD_IP)'],
              env: ADDRESS_ENV,
            },
          ],
        },
      },
    });
    const pod = await waitRunning(ns, 'addr');
    const podIP = pod.status?.podIP ?? '';
    assert.match(podIP, /^10\.244\.\d+\.\d+$/, 'an address of the mock podCIDR');
    assert.deepEqual(
      pod.status?.podIPs?.map((p) => p.ip),
      [podIP],
    );
    assert.equal(pod.status?.hostIP, '127.0.0.1');
    const printenv = async (name: string): Promise<string> =>
      (await kubectl(['exec', 'addr', '-n', ns, '--', 'printenv', name])).stdout.trim();
    assert.equal(await printenv('POD_IP'), podIP);
    assert.equal(await printenv('POD_IPS'), podIP);
    assert.equal(await printenv('HOST_IP'), pod.status?.hostIP);
    const inProvider = await provider.getPod(ns, 'addr', new AbortController().signal);
    // The provider got the args as written: expanding them is the runtime's job.
    assert.deepEqual(inProvider?.spec?.containers[0]?.args, ['3600', 'ip=$(POD_IP)']);

    await core().deleteNamespacedPod({ name: 'addr', namespace: ns });
    await waitFor(() => provider.addressesInUse === 0, {
      what: 'the pod address to be freed',
      timeoutMs: 30_000,
    });
  });
}

test('process: a pod prints POD_IP, HOST_IP and $(POD_IP), equal to its status', async (t) => {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('addr-proc');
  const dir = processStateDir();
  const provider = new ProcessProvider({
    nodeName,
    config: { stateDir: dir, monitorIntervalMs: 200, podCIDR: randomPodCidr() },
  });
  const forget = onOrphaned(() => {
    reap(dir, nodeName);
  });
  t.after(async () => {
    forget();
    await provider.close();
    reap(dir, nodeName);
  });
  await startNode(t, { nodeName, provider, api: true });
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'addr' },
      spec: {
        ...onNode(nodeName),
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sh', '-c', 'echo "env=$POD_IP,$HOST_IP arg=$(POD_IP)"; sleep 3600'],
            env: ADDRESS_ENV,
          },
        ],
      },
    },
  });
  const pod = await waitRunning(ns, 'addr');
  const podIP = pod.status?.podIP ?? '';
  const hostIP = pod.status?.hostIP ?? '';
  assert.ok(podIP !== '' && hostIP !== '', 'the status has both addresses');
  const line = await waitFor(
    async () => {
      const out = (await kubectl(['logs', 'addr', '-n', ns])).stdout;
      return out.includes('\n') ? out.trim() : undefined;
    },
    { what: 'the pod to print its addresses' },
  );
  assert.equal(line, `env=${podIP},${hostIP} arg=${podIP}`);
  // With a pod network (root, namespaces, the CNI plugins) the address is the pod's own, of the
  // node's pod CIDR, made before the environment was resolved.
  assert.match(provider.isolation, /cni-network /);
  assert.notEqual(podIP, hostIP);
  assert.equal(
    podIP.split('.').slice(0, 3).join('.'),
    provider.podCIDR?.split('.').slice(0, 3).join('.'),
  );
});

/**
 * A provider whose pods change address while they run, as a pod re-created in another cluster or
 * a sandbox re-made by a runtime does.
 */
class MovingProvider extends MockProvider {
  podIP = '10.250.0.1';

  #moved(status: V1PodStatus | undefined): V1PodStatus | undefined {
    if (!status) return status;
    return { ...status, podIP: this.podIP, podIPs: [{ ip: this.podIP }] };
  }

  override async getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    return this.#moved(await super.getPodStatus(namespace, name, signal));
  }

  override async getPods(signal: AbortSignal): Promise<V1Pod[]> {
    return (await super.getPods(signal)).map((p) => ({ ...p, status: this.#moved(p.status) }));
  }
}

test("a running pod's new address replaces the old one in its status", async (t) => {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('addr-move');
  const provider = new MovingProvider({ nodeName, notify: false, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  await startNode(t, { nodeName, provider });
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'moving' },
      spec: { ...onNode(nodeName), containers: [{ name: 'app', image: 'busybox' }] },
    },
  });
  const first = await waitRunning(ns, 'moving');
  assert.deepEqual(
    first.status?.podIPs?.map((p) => p.ip),
    ['10.250.0.1'],
  );
  provider.podIP = '10.250.0.2';
  // A merge of the lists by address would hold both, which the API server refuses.
  const moved = await waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name: 'moving', namespace: ns });
      return p.status?.podIP === '10.250.0.2' ? p : undefined;
    },
    { what: 'the new address in the status', timeoutMs: 30_000 },
  );
  assert.deepEqual(
    moved.status?.podIPs?.map((p) => p.ip),
    ['10.250.0.2'],
  );
});

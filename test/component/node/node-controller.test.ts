import type { V1Lease, V1Node, V1NodeCondition } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { unavailable } from '../../../src/errors.js';
import { NodeController, type NodeControllerOptions } from '../../../src/node/node-controller.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'component-node';
const LEASE_NS = 'kube-node-lease';
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };

/** The mock, whose health check fails while `unhealthy` is set. */
class TestMock extends MockProvider {
  unhealthy = false;

  override async ping(signal: AbortSignal): Promise<void> {
    if (this.unhealthy) throw unavailable('mock: the backend does not answer');
    await super.ping(signal);
  }
}

async function setup(
  t: TestContext,
  options: Partial<NodeControllerOptions> = {},
  before?: (api: FakeApi) => void,
): Promise<{ api: FakeApi; provider: TestMock; controller: NodeController }> {
  const api = await FakeApi.start(t);
  before?.(api);
  const provider = new TestMock({ nodeName: NODE });
  t.after(() => provider.close());
  const controller = new NodeController({
    client: api.client,
    nodeName: NODE,
    provider,
    labels: { team: 'blue' },
    taints: [{ key: 'virtual-kubelet.io/provider', value: 'mock', effect: 'NoSchedule' }],
    kubeletVersion: 'v1.37.2-vk-test',
    leaseDurationSeconds: 4,
    leaseRenewIntervalMs: 50,
    statusUpdateIntervalMs: 100,
    pingIntervalMs: 30,
    ...options,
  });
  const abort = new AbortController();
  const running = controller.run(abort.signal);
  t.after(async () => {
    abort.abort();
    await running.catch(() => undefined);
  });
  await Promise.race([controller.whenReady(), running]);
  return { api, provider, controller };
}

const node = (api: FakeApi): V1Node | undefined => api.get('nodes', '', NODE);
const lease = (api: FakeApi): V1Lease | undefined => api.get('leases', LEASE_NS, NODE);
const condition = (n: V1Node | undefined, type: string): V1NodeCondition | undefined =>
  n?.status?.conditions?.find((c) => c.type === type);

test('registers the Node (retrying an API error) with its labels, taint and a Lease it owns', async (t) => {
  const { api } = await setup(t, {}, (a) => {
    a.fail({ method: 'POST', path: /^\/api\/v1\/nodes$/, status: 500, times: 1 });
  });
  assert.equal(api.count('POST', /^\/api\/v1\/nodes$/), 2);
  const n = node(api);
  assert.ok(n);
  assert.equal(n.metadata?.labels?.type, 'virtual-kubelet');
  assert.equal(n.metadata?.labels?.team, 'blue');
  assert.equal(n.metadata?.labels?.['kubernetes.io/hostname'], NODE);
  assert.deepEqual(n.spec?.taints, [
    { key: 'virtual-kubelet.io/provider', value: 'mock', effect: 'NoSchedule' },
  ]);
  assert.equal(condition(n, 'Ready')?.status, 'True');
  assert.equal(n.status?.nodeInfo?.kubeletVersion, 'v1.37.2-vk-test');
  const l = lease(api);
  assert.equal(l?.spec?.holderIdentity, NODE);
  assert.equal(l.spec?.leaseDurationSeconds, 4);
  assert.deepEqual(
    l.metadata?.ownerReferences?.map((r) => [r.kind, r.name, r.uid]),
    [['Node', NODE, n.metadata?.uid]],
  );
});

test('adopts an existing virtual Node of the same name: adds missing labels, creates nothing', async (t) => {
  let uid = '';
  const { api } = await setup(t, {}, (a) => {
    const existing = a.create('nodes', {
      metadata: { name: NODE, labels: { type: 'virtual-kubelet', keep: 'me' } },
      status: {
        conditions: [{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown' }],
      },
    });
    uid = existing.metadata?.uid ?? '';
  });
  assert.equal(api.count('POST', /^\/api\/v1\/nodes$/), 0);
  const n = node(api);
  assert.equal(n?.metadata?.uid, uid);
  assert.equal(n?.metadata?.labels?.keep, 'me');
  assert.equal(n?.metadata?.labels?.team, 'blue');
  assert.equal(condition(n, 'Ready')?.status, 'True');
});

test("an adopted Node without spec.podCIDR gets the provider's pod CIDR", async (t) => {
  class CidrMock extends TestMock {
    override configureNode(n: V1Node): void {
      super.configureNode(n);
      n.spec = { ...n.spec, podCIDR: '10.244.7.0/24', podCIDRs: ['10.244.7.0/24'] };
    }
  }
  const api = await FakeApi.start(t);
  api.create('nodes', { metadata: { name: NODE, labels: { type: 'virtual-kubelet' } } });
  const provider = new CidrMock({ nodeName: NODE });
  t.after(() => provider.close());
  const controller = new NodeController({ client: api.client, nodeName: NODE, provider });
  const abort = new AbortController();
  const running = controller.run(abort.signal);
  t.after(async () => {
    abort.abort();
    await running.catch(() => undefined);
  });
  await Promise.race([controller.whenReady(), running]);
  assert.equal(node(api)?.spec?.podCIDR, '10.244.7.0/24');
  assert.deepEqual(node(api)?.spec?.podCIDRs, ['10.244.7.0/24']);
});

test('refuses a Node that a real kubelet registered', async (t) => {
  const api = await FakeApi.start(t);
  const nodeInfo = {
    kubeletVersion: 'v1.37.2',
    architecture: 'amd64',
    operatingSystem: 'linux',
    bootID: '',
    containerRuntimeVersion: '',
    kernelVersion: '',
    kubeProxyVersion: '',
    machineID: '',
    osImage: '',
    systemUUID: '',
  };
  api.create('nodes', { metadata: { name: NODE }, status: { nodeInfo } });
  const provider = new MockProvider({ nodeName: NODE });
  t.after(() => provider.close());
  const controller = new NodeController({ client: api.client, nodeName: NODE, provider });
  await assert.rejects(
    controller.run(new AbortController().signal),
    /registered by a real kubelet/,
  );
});

test('renews the Lease, and takes a conflicting write in its stride', async (t) => {
  const { api } = await setup(t);
  const first = lease(api)?.spec?.renewTime;
  api.fail({ method: 'PUT', path: /\/leases\//, status: 409, times: 1 });
  await waitFor(() => api.count('PUT', /\/leases\//) >= 4, { ...WAIT, what: 'lease renewals' });
  const renewed = await waitFor(() => {
    const at = lease(api)?.spec?.renewTime;
    return at !== undefined && at !== first ? at : false;
  }, WAIT);
  // MicroTime: six fractional digits.
  assert.match(renewed ?? '', /\.\d{6}Z$/);
});

test('status writes keep the conditions others own; provider conditions are merged in', async (t) => {
  const { api, provider } = await setup(t);
  api.update('nodes', '', NODE, (n) => {
    n.status?.conditions?.push({ type: 'DiskCorrupted', status: 'False', reason: 'Checked' });
  });
  provider.setNodeCondition({
    type: 'GPUReady',
    status: 'True',
    reason: 'DriverLoaded',
    message: 'the GPU driver is loaded',
  });
  const n = await waitFor(() => {
    const got = node(api);
    return condition(got, 'GPUReady') ? got : false;
  }, WAIT);
  assert.equal(condition(n, 'DiskCorrupted')?.reason, 'Checked');
  assert.equal(condition(n, 'Ready')?.status, 'True');
  // A later write (a heartbeat) still leaves them.
  const heartbeat = condition(n, 'Ready')?.lastHeartbeatTime;
  const later = await waitFor(() => {
    const got = node(api);
    return condition(got, 'Ready')?.lastHeartbeatTime !== heartbeat ? got : false;
  }, WAIT);
  assert.equal(condition(later, 'DiskCorrupted')?.reason, 'Checked');
  assert.equal(condition(later, 'GPUReady')?.status, 'True');
  // lastTransitionTime moves only when a condition's status changes.
  assert.equal(
    condition(later, 'Ready')?.lastTransitionTime,
    condition(n, 'Ready')?.lastTransitionTime,
  );
});

test('a deleted Node is registered again, and its Lease follows the new UID', async (t) => {
  const { api } = await setup(t);
  const before = node(api)?.metadata?.uid;
  api.remove('nodes', '', NODE);
  const again = await waitFor(() => {
    const n = node(api);
    return n && n.metadata?.uid !== before ? n : false;
  }, WAIT);
  assert.equal(again.metadata?.labels?.team, 'blue');
  await waitFor(() => lease(api)?.metadata?.ownerReferences?.[0]?.uid === again.metadata?.uid, {
    ...WAIT,
    what: 'the lease to be owned by the new Node',
  });
});

test('a failing health check turns the Node NotReady with a reason, and back', async (t) => {
  const { api, provider } = await setup(t);
  provider.unhealthy = true;
  const down = await waitFor(() => {
    const ready = condition(node(api), 'Ready');
    return ready?.status === 'False' ? ready : false;
  }, WAIT);
  assert.equal(down.reason, 'ProviderUnhealthy');
  assert.match(down.message ?? '', /does not answer/);
  provider.unhealthy = false;
  await waitFor(() => condition(node(api), 'Ready')?.status === 'True', WAIT);
});

import type { CoreV1Event, V1EnvVar, V1Pod, V1PodSpec, V1PodStatus } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { invalidInput, permanent, unavailable } from '../../../src/errors.js';
import { expandEnvValue } from '../../../src/kubelet/env-expansion.js';
import type { PodControllerOptions } from '../../../src/pods/pod-controller.js';
import type { PodAddresses } from '../../../src/provider.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { runPodController, testPod, waitPodPhase } from '../../helpers/pod-controller.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'address-node';
const NS = 'apps';
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };

/**
 * The mock, recording what `preparePod` answered and the pods `createPod` got, in order, and
 * checking that a pod is never created before it was prepared.
 */
class AddressMock extends MockProvider {
  readonly prepared: PodAddresses[] = [];
  readonly created: V1Pod[] = [];
  readonly updated: V1Pod[] = [];
  readonly unprepared: string[] = [];
  /** What the next `preparePod` calls throw (one each), or `'hang'` (until aborted). */
  prepareFaults: (Error | 'hang')[] = [];
  failCreates = 0;
  failWith: () => Error = () => unavailable('mock: the backend is busy');
  readonly #uids = new Set<string>();

  override async preparePod(pod: V1Pod, signal: AbortSignal): Promise<PodAddresses> {
    const fault = this.prepareFaults.shift();
    if (fault === 'hang') {
      await new Promise((_, reject) => {
        signal.addEventListener('abort', () => {
          reject(signal.reason as Error);
        });
      });
    } else if (fault) throw fault;
    const addresses = await super.preparePod(pod, signal);
    this.prepared.push(addresses);
    this.#uids.add(pod.metadata?.uid ?? '');
    return addresses;
  }

  override async updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    this.updated.push(structuredClone(pod));
    await super.updatePod(pod, signal);
  }

  override async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    if (!this.#uids.has(pod.metadata?.uid ?? '')) this.unprepared.push(pod.metadata?.name ?? '');
    this.created.push(structuredClone(pod));
    if (this.failCreates > 0) {
      this.failCreates--;
      throw this.failWith();
    }
    await super.createPod(pod, signal);
  }
}

/** Dual-stack addresses from preparePod, and statuses that report no address at all. */
class BareStatusMock extends AddressMock {
  constructor(notify: boolean) {
    super({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
    const notifyPods = this.notifyPods;
    if (notifyPods)
      Object.defineProperty(this, 'notifyPods', {
        value: (callback: (pod: V1Pod) => void) => {
          notifyPods((pod) => {
            callback(bare(pod) ?? pod);
          });
        },
      });
  }

  override async preparePod(pod: V1Pod, signal: AbortSignal): Promise<PodAddresses> {
    const { podIPs } = await super.preparePod(pod, signal);
    return { podIPs: [...podIPs, 'fd00::9'] };
  }

  override async getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    return bare({ status: await super.getPodStatus(namespace, name, signal) })?.status;
  }
}

function bare(pod: V1Pod): V1Pod | undefined {
  if (!pod.status) return undefined;
  const status = { ...pod.status };
  delete status.podIP;
  delete status.podIPs;
  delete status.hostIP;
  delete status.hostIPs;
  return { ...pod, status };
}

async function setup(
  t: TestContext,
  notify: boolean,
  options: Partial<PodControllerOptions> = {},
): Promise<{ api: FakeApi; provider: AddressMock }> {
  const api = await FakeApi.start(t);
  const provider = new AddressMock({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  await runPodController(t, api, provider, { nodeName: NODE, nodeIP: '192.168.7.1', ...options });
  return { api, provider };
}

const field = (name: string, fieldPath: string): V1EnvVar => ({
  name,
  valueFrom: { fieldRef: { fieldPath } },
});

/** Reads the pod's addresses in env, in an expanded env value, and in args. */
const addressPod = (name: string, spec: Partial<V1PodSpec> = {}): V1Pod =>
  testPod(NS, NODE, name, {
    containers: [
      {
        name: 'app',
        image: 'busybox:1',
        command: ['serve'],
        args: ['--listen=$(POD_IP):8080', '--advertise=$(HOST_IP)'],
        env: [
          field('POD_IP', 'status.podIP'),
          field('POD_IPS', 'status.podIPs'),
          field('HOST_IP', 'status.hostIP'),
          { name: 'URL', value: 'http://$(POD_IP):8080' },
        ],
      },
    ],
    ...spec,
  });

const envOf = (pod: V1Pod | undefined): Map<string, string> =>
  new Map((pod?.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value ?? '']));

const eventsOf = (api: FakeApi, name: string, reason: string): CoreV1Event[] =>
  api.list('events', NS).filter((e) => e.involvedObject.name === name && e.reason === reason);

for (const notify of [true, false]) {
  describe(`pod addresses with a ${notify ? 'push' : 'polled'} provider`, () => {
    test('status.podIP, status.podIPs and status.hostIP reach env and args before createPod, equal to the status written', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('pods', addressPod('web'));
      const running = await waitPodPhase(api, NS, 'web', 'Running', WAIT);
      assert.deepEqual(provider.unprepared, [], 'createPod always came after preparePod');
      const [prepared] = provider.prepared;
      const podIP = prepared?.podIPs[0] ?? '';
      assert.match(podIP, /^10\.244\.\d+\.\d+$/);
      // The status the API has: the address preparePod gave, and the node's.
      assert.equal(running.status?.podIP, podIP);
      assert.deepEqual(running.status?.podIPs, [{ ip: podIP }]);
      const env = envOf(provider.created[0]);
      assert.equal(env.get('POD_IP'), podIP);
      assert.equal(env.get('POD_IPS'), podIP);
      assert.equal(env.get('URL'), `http://${podIP}:8080`);
      // The mock reports its own hostIP (127.0.0.1, its default), as a provider may.
      assert.equal(env.get('HOST_IP'), prepared?.hostIP);
      assert.equal(running.status?.hostIP, prepared?.hostIP);
      // `args` reach the provider as written; a runtime expands them with the env it got.
      const created = provider.created[0]?.spec?.containers[0];
      const args = (created?.args ?? []).map((a) => expandEnvValue(a, (n) => env.get(n)));
      assert.deepEqual(args, [`--listen=${podIP}:8080`, `--advertise=${prepared?.hostIP ?? ''}`]);
    });

    test('the core writes status.podIP, podIPs, hostIP and hostIPs from preparePod when the provider reports none', async (t) => {
      const api = await FakeApi.start(t);
      const provider = new BareStatusMock(notify);
      t.after(() => provider.close());
      await runPodController(t, api, provider, { nodeName: NODE, nodeIP: '192.168.7.1' });
      api.create('pods', addressPod('dual'));
      const running = await waitPodPhase(api, NS, 'dual', 'Running', WAIT);
      const podIP = provider.prepared[0]?.podIPs[0] ?? '';
      assert.equal(running.status?.podIP, podIP);
      assert.deepEqual(running.status?.podIPs, [{ ip: podIP }, { ip: 'fd00::9' }]);
      assert.equal(running.status?.hostIP, '192.168.7.1');
      assert.deepEqual(running.status?.hostIPs, [{ ip: '192.168.7.1' }]);
      const env = envOf(provider.created[0]);
      assert.equal(env.get('POD_IP'), podIP);
      assert.equal(env.get('POD_IPS'), `${podIP},fd00::9`);
      assert.equal(env.get('HOST_IP'), '192.168.7.1');
    });

    test('two pods get two addresses; a deleted pod frees its address', async (t) => {
      const { api, provider } = await setup(t, notify);
      api.create('pods', addressPod('a'));
      api.create('pods', addressPod('b'));
      const a = await waitPodPhase(api, NS, 'a', 'Running', WAIT);
      const b = await waitPodPhase(api, NS, 'b', 'Running', WAIT);
      assert.notEqual(a.status?.podIP, b.status?.podIP);
      assert.equal(provider.addressesInUse, 2);
      api.deletePod(NS, 'a', 0);
      await waitFor(() => provider.addressesInUse === 1, { ...WAIT, what: 'one address freed' });
    });

    test('preparePod is idempotent across a restart of the controller: one address, the same one', async (t) => {
      const api = await FakeApi.start(t);
      const provider = new AddressMock({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
      t.after(() => provider.close());
      // Every create fails until the restart: the pod is prepared again and again.
      provider.failCreates = 1_000;
      const first = await runPodController(t, api, provider, { nodeName: NODE });
      api.create('pods', addressPod('web'));
      await waitFor(() => provider.prepared.length >= 2, { ...WAIT, what: 'two prepares' });
      const pending = api.get('pods', NS, 'web');
      assert.equal(pending?.status?.phase, 'Pending');
      assert.equal(pending?.status?.reason, 'ProviderFailed');
      await first.stop();
      provider.failCreates = 0;
      const before = provider.prepared.length;
      await runPodController(t, api, provider, { nodeName: NODE });
      const running = await waitPodPhase(api, NS, 'web', 'Running', WAIT);
      assert.ok(provider.prepared.length > before, 'prepared again after the restart');
      const ips = new Set(provider.prepared.map((p) => p.podIPs.join(',')));
      assert.deepEqual([...ips], [running.status?.podIP]);
      assert.equal(provider.addressesInUse, 1);
      assert.equal(envOf(provider.created.at(-1)).get('POD_IP'), running.status?.podIP);
    });

    test("after a restart of the controller an update resolves POD_IP from the pod's status", async (t) => {
      const api = await FakeApi.start(t);
      const provider = new AddressMock({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
      t.after(() => provider.close());
      const first = await runPodController(t, api, provider, { nodeName: NODE });
      api.create('pods', addressPod('web'));
      const running = await waitPodPhase(api, NS, 'web', 'Running', WAIT);
      await first.stop();
      // A new controller adopts the running pod: it prepares nothing, the status has the address.
      await runPodController(t, api, provider, { nodeName: NODE });
      api.update('pods', NS, 'web', (p) => {
        p.metadata = { ...p.metadata, labels: { ...p.metadata?.labels, tier: 'front' } };
      });
      await waitFor(() => provider.updated.length > 0, { ...WAIT, what: 'an updatePod' });
      assert.equal(envOf(provider.updated.at(-1)).get('POD_IP'), running.status?.podIP);
      assert.equal(provider.prepared.length, 1);
    });

    test('a pod prepared but never created is released by deletePod', async (t) => {
      const { api, provider } = await setup(t, notify);
      provider.failCreates = 1;
      provider.failWith = () => permanent('mock: quota exceeded');
      api.create('pods', addressPod('quota', { restartPolicy: 'Never' }));
      await waitPodPhase(api, NS, 'quota', 'Failed', WAIT);
      assert.equal(provider.addressesInUse, 1, 'the address is held until the pod is deleted');
      api.deletePod(NS, 'quota');
      await waitFor(() => api.get('pods', NS, 'quota') === undefined, WAIT);
      await waitFor(() => provider.addressesInUse === 0, { ...WAIT, what: 'the address freed' });
      // A pod removed from the API at once (force delete) while its create is retried too.
      provider.failCreates = 1_000;
      provider.failWith = () => unavailable('mock: the backend is busy');
      api.create('pods', addressPod('forced'));
      await waitFor(() => provider.addressesInUse === 1, { ...WAIT, what: 'an address taken' });
      api.deletePod(NS, 'forced', 0);
      await waitFor(() => provider.addressesInUse === 0, { ...WAIT, what: 'the address freed' });
    });

    test('preparePod errors: Unavailable is retried, InvalidInput fails the pod before createPod', async (t) => {
      const { api, provider } = await setup(t, notify);
      provider.prepareFaults = [unavailable('mock: no address yet')];
      api.create('pods', addressPod('later'));
      await waitPodPhase(api, NS, 'later', 'Running', WAIT);
      await waitFor(() => eventsOf(api, 'later', 'ProviderCreateFailed').length === 1, {
        ...WAIT,
        what: 'a ProviderCreateFailed event',
      });
      provider.prepareFaults = [invalidInput('mock: this pod cannot have an address')];
      api.create('pods', addressPod('never'));
      const failed = await waitPodPhase(api, NS, 'never', 'Failed', WAIT);
      assert.match(failed.status?.message ?? '', /cannot have an address/);
      assert.ok(!provider.created.some((p) => p.metadata?.name === 'never'));
    });

    test('a hung preparePod is cut at the create deadline, and no other call joins it', async (t) => {
      const { api, provider } = await setup(t, notify, { createTimeoutMs: 200 });
      provider.prepareFaults = ['hang'];
      api.create('pods', addressPod('slow'));
      const running = await waitPodPhase(api, NS, 'slow', 'Running', WAIT);
      assert.deepEqual(provider.unprepared, []);
      assert.equal(provider.created.length, 1);
      assert.equal(envOf(provider.created[0]).get('POD_IP'), running.status?.podIP);
    });

    test('a provider without preparePod: a pod reading status.podIP fails with the reason; hostNetwork gets the node address', async (t) => {
      const api = await FakeApi.start(t);
      const provider = new AddressMock({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
      // The same mock without the capability.
      Object.defineProperty(provider, 'preparePod', { value: undefined });
      t.after(() => provider.close());
      await runPodController(t, api, provider, { nodeName: NODE, nodeIP: '192.168.7.1' });
      api.create('pods', addressPod('needs-ip'));
      const failed = await waitPodPhase(api, NS, 'needs-ip', 'Failed', WAIT);
      assert.equal(failed.status?.reason, 'PodAddressUnavailable');
      assert.match(failed.status?.message ?? '', /cannot give a pod its address before it starts/);
      const [event] = await waitFor(
        () => {
          const found = eventsOf(api, 'needs-ip', 'PodAddressUnavailable');
          return found.length > 0 ? found : false;
        },
        { ...WAIT, what: 'a PodAddressUnavailable event' },
      );
      assert.equal(event?.type, 'Warning');
      assert.equal(provider.created.length, 0, 'never created with an empty address');

      api.create('pods', addressPod('host', { hostNetwork: true }));
      await waitPodPhase(api, NS, 'host', 'Running', WAIT);
      const env = envOf(provider.created.find((p) => p.metadata?.name === 'host'));
      assert.equal(env.get('POD_IP'), '192.168.7.1');
      assert.equal(env.get('HOST_IP'), '192.168.7.1');

      // A pod that does not read its own IP is not affected.
      api.create('pods', testPod(NS, NODE, 'plain'));
      await waitPodPhase(api, NS, 'plain', 'Running', WAIT);
    });
  });
}

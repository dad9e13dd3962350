/**
 * The provider contract (`provider.ts`) as tests, published as `virtual-kubelet/testing`. Every
 * built-in provider runs this suite, and so can a provider outside this repository: its own test
 * file, run with `node --test`, calls `providerContractSuite` with a factory.
 *
 * The pods used here have one container, image `busybox:1.36` (or `options.image`), command
 * `sleep 3600`, and a termination grace period of 1 s, so a provider that really runs something
 * can run them.
 */
import type { V1Pod } from '../wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { describe, test } from 'node:test';
import { errorCode } from '../errors.js';
import { isTerminalPhase } from '../kubelet/pod-status.js';
import {
  hasPodAddresses,
  hasPullCredentials,
  isPodNotifier,
  type Provider,
  type RegistryCredential,
} from '../provider.js';
import { waitFor } from './wait.js';

export interface ProviderUnderTest {
  readonly provider: Provider;
  close(): Promise<void>;
}

const NAMESPACE = 'conformance';

/** Options of {@link providerContractSuite}. */
export interface ContractSuiteOptions {
  /** The image the suite's pods run. Default: `busybox:1.36`. */
  readonly image?: string;
}

function makeTestPod(name: string, image = 'busybox:1.36'): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      namespace: NAMESPACE,
      name,
      uid: randomUUID(),
      creationTimestamp: new Date().toISOString(),
      labels: { app: 'conformance' },
    },
    spec: {
      nodeName: 'conformance-node',
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image, command: ['sleep', '3600'] }],
    },
    status: { phase: 'Pending', qosClass: 'BestEffort' },
  };
}

/** The pod as the core hands it to `deletePod`: marked for deletion with a grace period. */
function deleting(pod: V1Pod): V1Pod {
  const copy = structuredClone(pod);
  copy.metadata = {
    ...copy.metadata,
    deletionTimestamp: new Date().toISOString(),
    deletionGracePeriodSeconds: 1,
  };
  return copy;
}

/**
 * Registers the contract's tests under `describe(name)`. `make` builds a fresh provider for each
 * test; `close` is called when the test ends, whatever its outcome. As the core does, a notifier
 * gets its callback before the first `createPod`.
 */
export function providerContractSuite(
  name: string,
  make: () => Promise<ProviderUnderTest>,
  options: ContractSuiteOptions = {},
): void {
  let counter = 0;
  const testPod = (pod: string): V1Pod => makeTestPod(pod, options.image);
  const podName = (what: string): string => `${what}-${String(++counter)}`;

  /** Runs `body` with a fresh provider and the pods it has pushed so far (if a notifier). */
  async function withProvider(
    body: (provider: Provider, pushed: V1Pod[], signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    const subject = await make();
    const provider = subject.provider;
    const pushed: V1Pod[] = [];
    if (isPodNotifier(provider)) provider.notifyPods((pod) => pushed.push(pod));
    const controller = new AbortController();
    try {
      await body(provider, pushed, controller.signal);
    } finally {
      controller.abort();
      await subject.close();
    }
  }

  describe(name, () => {
    test('a created pod is seen by getPod, getPodStatus and getPods, Pending or Running', () =>
      withProvider(async (provider, _pushed, signal) => {
        const pod = testPod(podName('create'));
        const { namespace = '', name = '' } = pod.metadata ?? {};
        await provider.createPod(pod, signal);

        const got = await provider.getPod(namespace, name, signal);
        assert.ok(got, 'getPod returns the pod');
        assert.equal(got.metadata?.uid, pod.metadata?.uid);
        assert.ok(['Pending', 'Running'].includes(got.status?.phase ?? ''), got.status?.phase);

        const status = await provider.getPodStatus(namespace, name, signal);
        assert.ok(status, 'getPodStatus returns a status');
        assert.ok(['Pending', 'Running'].includes(status.phase ?? ''), status.phase);

        const all = await provider.getPods(signal);
        assert.equal(all.filter((p) => p.metadata?.uid === pod.metadata?.uid).length, 1);
      }));

    test('a pod created twice is there once', () =>
      withProvider(async (provider, _pushed, signal) => {
        const pod = testPod(podName('twice'));
        await provider.createPod(pod, signal);
        try {
          await provider.createPod(pod, signal);
        } catch (err) {
          assert.equal(errorCode(err), 'AlreadyExists', 'the only error allowed is AlreadyExists');
        }
        const all = await provider.getPods(signal);
        const same = all.filter(
          (p) =>
            p.metadata?.namespace === pod.metadata?.namespace &&
            p.metadata?.name === pod.metadata?.name,
        );
        assert.equal(same.length, 1);
      }));

    test('after deletePod the pod becomes terminal or is forgotten', () =>
      withProvider(async (provider, _pushed, signal) => {
        const pod = testPod(podName('delete'));
        const { namespace = '', name = '' } = pod.metadata ?? {};
        await provider.createPod(pod, signal);
        await provider.deletePod(deleting(pod), signal);
        await waitFor(
          async () => {
            const status = await provider.getPodStatus(namespace, name, signal);
            return status === undefined || isTerminalPhase(status.phase);
          },
          { what: 'the pod to be terminal or forgotten', timeoutMs: 15_000, intervalMs: 20 },
        );
        // A second call is allowed; it resolves or says NotFound.
        await provider.deletePod(deleting(pod), signal).catch((err: unknown) => {
          assert.equal(errorCode(err), 'NotFound');
        });
      }));

    test('deletePod of an unknown pod resolves or throws NotFound', () =>
      withProvider(async (provider, _pushed, signal) => {
        await provider.deletePod(deleting(testPod(podName('unknown'))), signal).then(
          () => undefined,
          (err: unknown) => {
            assert.equal(errorCode(err), 'NotFound');
          },
        );
      }));

    test('returned objects are copies', () =>
      withProvider(async (provider, _pushed, signal) => {
        const pod = testPod(podName('copies'));
        const { namespace = '', name = '' } = pod.metadata ?? {};
        await provider.createPod(pod, signal);
        const before = await provider.getPod(namespace, name, signal);
        assert.ok(before);

        const got = await provider.getPod(namespace, name, signal);
        assert.ok(got?.metadata && got.status);
        got.metadata.labels = { changed: 'yes' };
        got.status.phase = 'Unknown';
        const status = await provider.getPodStatus(namespace, name, signal);
        assert.ok(status);
        status.phase = 'Unknown';
        status.conditions = [];
        for (const p of await provider.getPods(signal)) {
          if (p.metadata) p.metadata.labels = { changed: 'yes' };
          if (p.status) p.status.phase = 'Unknown';
          if (p.spec) p.spec.containers = [];
        }

        const after = await provider.getPod(namespace, name, signal);
        assert.deepEqual(after?.metadata, before.metadata);
        assert.deepEqual(after?.spec, before.spec);
        assert.notEqual(after?.status?.phase, 'Unknown');
        assert.notDeepEqual(after?.status?.conditions, []);
      }));

    test('createPod does not change the pod it is given', () =>
      withProvider(async (provider, _pushed, signal) => {
        const pod = testPod(podName('input'));
        const snapshot = structuredClone(pod);
        await provider.createPod(pod, signal);
        assert.deepEqual(pod, snapshot);
        await provider.updatePod(pod, signal).catch(() => undefined);
        assert.deepEqual(pod, snapshot);
      }));

    test('podAddresses: preparePod answers the same again, the status reports its podIP, deletePod releases a pod never created', (t) =>
      withProvider(async (provider, _pushed, signal) => {
        if (!hasPodAddresses(provider)) {
          t.skip('the provider has no preparePod (capability podAddresses)');
          return;
        }
        const pod = testPod(podName('address'));
        const { namespace = '', name = '' } = pod.metadata ?? {};
        const first = await provider.preparePod(pod, signal);
        assert.ok(first.podIPs.length > 0, 'at least one pod IP');
        for (const ip of first.podIPs) assert.notEqual(isIP(ip), 0, `${ip} is an IP address`);
        const again = await provider.preparePod(structuredClone(pod), signal);
        assert.deepEqual([...again.podIPs], [...first.podIPs], 'the same addresses for the UID');
        assert.equal(again.hostIP, first.hostIP);

        await provider.createPod(pod, signal);
        const status = await waitFor(
          async () => {
            const s = await provider.getPodStatus(namespace, name, signal);
            return s?.podIP ? s : undefined;
          },
          { what: 'a status with a podIP', timeoutMs: 15_000, intervalMs: 20 },
        );
        assert.equal(status.podIP, first.podIPs[0], 'the status reports the prepared podIP');

        // Prepared, never created: deletePod releases it and creates nothing.
        const prepared = testPod(podName('prepared'));
        await provider.preparePod(prepared, signal);
        await provider.deletePod(deleting(prepared), signal).catch((err: unknown) => {
          assert.equal(errorCode(err), 'NotFound');
        });
        const meta = prepared.metadata ?? {};
        assert.equal(
          await provider.getPod(meta.namespace ?? '', meta.name ?? '', signal),
          undefined,
        );
      }));

    test('pullCredentials: setPodPullCredentials before createPod keeps its input intact, and no credential shows in what the provider reports', (t) =>
      withProvider(async (provider, pushed, signal) => {
        if (!hasPullCredentials(provider)) {
          t.skip('the provider has no setPodPullCredentials (capability pullCredentials)');
          return;
        }
        const pod = testPod(podName('pull'));
        const { namespace = '', name = '' } = pod.metadata ?? {};
        // For a registry none of the suite's images is on: the pulls stay anonymous.
        const password = `conformance-${randomUUID()}`;
        const credentials: RegistryCredential[] = [
          { registry: 'registry.conformance.invalid', username: 'vk', password },
        ];
        const snapshot = structuredClone({ pod, credentials });
        await provider.setPodPullCredentials(pod, credentials, signal);
        await provider.createPod(pod, signal);
        assert.deepEqual({ pod, credentials }, snapshot, 'the inputs are not mutated');
        // Again, with none: the pod names no pull secrets any more.
        await provider.setPodPullCredentials(pod, [], signal);
        const reported = await provider.getPod(namespace, name, signal);
        assert.ok(reported, 'the pod is known');
        const status = await provider.getPodStatus(namespace, name, signal);
        const seen = JSON.stringify([reported, status, await provider.getPods(signal), pushed]);
        assert.ok(!seen.includes(password), 'no credential in pods, statuses or notifications');
      }));

    test('a created pod is reported: pushed by a notifier, or found by the poll adapter', () =>
      withProvider(async (provider, pushed, signal) => {
        const pod = testPod(podName('notify'));
        await provider.createPod(pod, signal);
        const find = (): V1Pod | undefined =>
          pushed.find((p) => p.metadata?.uid === pod.metadata?.uid);
        let seen: V1Pod;
        if (isPodNotifier(provider)) {
          seen = await waitFor(find, {
            what: 'a notification for the pod',
            timeoutMs: 15_000,
            intervalMs: 20,
          });
        } else {
          // The core wraps a provider without notifyPods in its poll adapter, which reads
          // getPodStatus of every pod it knows; so do we.
          const { namespace = '', name = '' } = pod.metadata ?? {};
          seen = await waitFor(
            async () => {
              const status = await provider.getPodStatus(namespace, name, signal);
              return status && { ...pod, status };
            },
            { what: 'a polled status for the pod', timeoutMs: 15_000, intervalMs: 20 },
          );
        }
        assert.ok(['Pending', 'Running'].includes(seen.status?.phase ?? ''), seen.status?.phase);
        assert.equal(seen.metadata?.name, pod.metadata?.name);
      }));
  });
}

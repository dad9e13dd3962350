import type { V1Node, V1Pod } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { VirtualKubeletError } from '../../../../src/errors.js';
import { isNodeConfigurer, isNodeProvider, isPodNotifier } from '../../../../src/provider.js';
import {
  MockProvider,
  parseMockConfig,
  type MockConfig,
  type MockProviderOptions,
} from '../../../../src/providers/mock/index.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;

function pod(name: string, patch: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { namespace: 'ns', name, uid: `uid-${name}` },
    spec: { containers: [{ name: 'main', image: 'busybox' }], ...patch },
  };
}

/** A provider with a recording notifier; closed by the caller. */
function mock(options: Partial<MockProviderOptions> = {}): {
  provider: MockProvider;
  pushed: V1Pod[];
} {
  const provider = new MockProvider({ nodeName: 'node-1', ...options });
  const pushed: V1Pod[] = [];
  provider.notifyPods?.((p) => pushed.push(p));
  return { provider, pushed };
}

function assertInvalid(fn: () => unknown, message: RegExp | string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VirtualKubeletError);
    assert.equal(err.code, 'InvalidInput');
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

describe('parseMockConfig', () => {
  test('accepts a full configuration and normalizes numeric quantities', () => {
    const json = {
      cpu: '8',
      memory: '32Gi',
      pods: 50,
      ephemeralStorage: '1Ti',
      others: { 'nvidia.com/gpu': '2' },
      providerID: 'mock://node-1',
      podIP: '10.0.0.5',
      hostIP: '::1',
      faults: { createPod: { errorRate: 0.1, latencyMs: 50, error: 'permanent' }, ping: {} },
      containers: { main: { exitAfterSeconds: 5, exitCode: 1 } },
    };
    assert.deepEqual(parseMockConfig(json), { ...json, pods: '50' });
    assert.deepEqual(parseMockConfig({}), {});
  });

  test("quantities are the kubelet's: suffixes and exponents, never negative", () => {
    for (const memory of ['500m', '1.5Gi', '2E', '1e3', '+4k']) {
      assert.deepEqual(parseMockConfig({ memory }), { memory });
    }
    for (const memory of ['-1', '1 Gi', 'Gi', '1iB']) {
      assertInvalid(() => parseMockConfig({ memory }), /^memory must be a non-negative/);
    }
  });

  test('names the bad field', () => {
    assertInvalid(
      () => parseMockConfig({ faults: { createPod: { errorRate: 2 } } }),
      'faults.createPod.errorRate must be a number between 0 and 1',
    );
    assertInvalid(() => parseMockConfig({ cpu: 'lots' }), /^cpu must be/);
    assertInvalid(() => parseMockConfig({ memory: '-1Gi' }), /^memory must be/);
    assertInvalid(() => parseMockConfig({ cpuu: '1' }), /^cpuu is not a known field/);
    assertInvalid(() => parseMockConfig({ faults: { explode: {} } }), /^faults\.explode is not/);
    assertInvalid(
      () => parseMockConfig({ faults: { getPod: { error: 'boom' } } }),
      /^faults\.getPod\.error must be one of unavailable, permanent, invalidInput/,
    );
    assertInvalid(
      () => parseMockConfig({ faults: { ping: { latencyMs: -1 } } }),
      /^faults\.ping\.latencyMs/,
    );
    assertInvalid(
      () => parseMockConfig({ containers: { main: { exitCode: 1.5 } } }),
      /^containers\.main\.exitCode must be an integer/,
    );
    assertInvalid(
      () => parseMockConfig({ containers: { main: { exitAfterSeconds: '5' } } }),
      /^containers\.main\.exitAfterSeconds/,
    );
    assertInvalid(() => parseMockConfig({ others: { 'bad name!': '1' } }), /^others\.bad name!/);
    assertInvalid(() => parseMockConfig({ others: { cpu: '1' } }), /^others\.cpu/);
    assertInvalid(() => parseMockConfig({ podIP: 'localhost' }), /^podIP must be an IPv4/);
    assertInvalid(() => parseMockConfig([]), /must be an object/);
    assertInvalid(() => parseMockConfig(null), /must be an object/);
  });

  test('the constructor validates too', () => {
    assertInvalid(() => new MockProvider({ nodeName: 'n', config: { cpu: 'x' } }), /^cpu must be/);
    assertInvalid(() => new MockProvider({ nodeName: '' }), /nodeName/);
  });
});

describe('MockProvider', () => {
  test('notify chooses between a push and a polled provider', async () => {
    const push = new MockProvider({ nodeName: 'n' });
    const polled = new MockProvider({ nodeName: 'n', notify: false });
    assert.equal(isPodNotifier(push), true);
    assert.equal(isPodNotifier(polled), false);
    assert.equal('notifyPods' in polled, false);
    assert.equal(isNodeProvider(polled), true);
    assert.equal(isNodeConfigurer(polled), true);
    await push.close();
    await polled.close();
  });

  test('configureNode sets capacity, allocatable, node info and provider ID, and no labels', async () => {
    const node: V1Node = {
      metadata: { name: 'node-1', labels: { type: 'virtual-kubelet' } },
      status: { capacity: { 'hugepages-2Mi': '0' } },
    };
    const provider = new MockProvider({
      nodeName: 'node-1',
      config: { memory: '8Gi', others: { 'nvidia.com/gpu': '2' }, providerID: 'mock://node-1' },
    });
    provider.configureNode(node);
    const expected = {
      cpu: '20',
      memory: '8Gi',
      pods: '110',
      'ephemeral-storage': '100Gi',
      'nvidia.com/gpu': '2',
    };
    assert.deepEqual(node.status?.capacity, { 'hugepages-2Mi': '0', ...expected });
    assert.deepEqual(node.status.allocatable, expected);
    assert.equal(node.status.nodeInfo?.operatingSystem, 'linux');
    const arch = node.status.nodeInfo.architecture;
    assert.equal(arch, process.arch === 'x64' ? 'amd64' : process.arch);
    assert.equal(node.spec?.providerID, 'mock://node-1');
    assert.deepEqual(node.metadata?.labels, { type: 'virtual-kubelet' });
    await provider.close();
  });

  test('setNodeCondition reports the configured node with the condition', async () => {
    const provider = new MockProvider({ nodeName: 'node-1' });
    const nodes: V1Node[] = [];
    provider.notifyNodeStatus((n) => nodes.push(n));
    provider.configureNode({ metadata: { name: 'node-1' } });
    provider.setNodeCondition({ type: 'Ready', status: 'False', reason: 'Testing' });
    provider.setNodeCondition({ type: 'Ready', status: 'True' });
    assert.equal(nodes.length, 2);
    assert.deepEqual(nodes[1]?.status?.conditions, [{ type: 'Ready', status: 'True' }]);
    assert.equal(nodes[1].status.capacity?.cpu, '20');
    await provider.close();
  });

  test('createPod reports a running pod with every status field a kubelet sets', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    // Statuses carry times as the API writes them: RFC 3339 strings.
    const at = now.toISOString();
    const { provider, pushed } = mock({
      clock: () => now,
      config: { podIP: '10.1.2.3', hostIP: '192.168.0.1' },
    });
    const input = pod('web', {
      initContainers: [
        { name: 'setup', image: 'init' },
        { name: 'proxy', image: 'envoy', restartPolicy: 'Always' },
      ],
    });
    input.status = { phase: 'Pending', qosClass: 'BestEffort' };
    await provider.createPod(input, signal);

    assert.equal(pushed.length, 1);
    const status = await provider.getPodStatus('ns', 'web', signal);
    assert.deepEqual(pushed[0]?.status, status);
    assert.ok(status);
    assert.equal(status.phase, 'Running');
    assert.equal(status.qosClass, 'BestEffort');
    assert.equal(status.startTime, at);
    assert.equal(status.podIP, '10.1.2.3');
    assert.deepEqual(status.podIPs, [{ ip: '10.1.2.3' }]);
    assert.equal(status.hostIP, '192.168.0.1');
    assert.deepEqual(status.hostIPs, [{ ip: '192.168.0.1' }]);
    assert.deepEqual(
      status.conditions?.map((c) => [c.type, c.status, c.lastTransitionTime]),
      ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((t) => [t, 'True', at]),
    );
    assert.deepEqual(status.containerStatuses, [
      {
        name: 'main',
        image: 'busybox',
        imageID: '',
        containerID: 'mock://uid-web/main',
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: at } },
      },
    ]);
    const [setup, proxy] = status.initContainerStatuses ?? [];
    assert.equal(setup?.state?.terminated?.exitCode, 0);
    assert.equal(setup.state.terminated.reason, 'Completed');
    assert.ok(proxy?.state?.running);
    await provider.close();
  });

  test('createPod of a known pod changes nothing; another UID replaces it', async () => {
    let t = 0;
    const { provider, pushed } = mock({ clock: () => new Date(++t * 1000) });
    await provider.createPod(pod('a'), signal);
    const first = await provider.getPodStatus('ns', 'a', signal);
    await provider.createPod(pod('a'), signal);
    assert.deepEqual(await provider.getPodStatus('ns', 'a', signal), first);
    assert.equal(pushed.length, 1);
    assert.equal((await provider.getPods(signal)).length, 1);

    const replacement = pod('a');
    replacement.metadata = { ...replacement.metadata, uid: 'uid-other' };
    await provider.createPod(replacement, signal);
    const got = await provider.getPod('ns', 'a', signal);
    assert.equal(got?.metadata?.uid, 'uid-other');
    assert.notDeepEqual(got.status?.startTime, first?.startTime);
    await provider.close();
  });

  test('updatePod keeps the status and restarts a container whose image changed', async () => {
    const { provider, pushed } = mock();
    await provider.createPod(pod('u'), signal);
    const before = await provider.getPodStatus('ns', 'u', signal);

    const labelled = pod('u');
    labelled.metadata = { ...labelled.metadata, labels: { tier: 'web' } };
    await provider.updatePod(labelled, signal);
    const got = await provider.getPod('ns', 'u', signal);
    assert.deepEqual(got?.metadata?.labels, { tier: 'web' });
    assert.deepEqual(got.status, before);
    assert.equal(pushed.length, 1, 'no status change, no notification');

    await provider.updatePod(
      pod('u', { containers: [{ name: 'main', image: 'busybox:2' }] }),
      signal,
    );
    const cs = (await provider.getPodStatus('ns', 'u', signal))?.containerStatuses?.[0];
    assert.equal(cs?.image, 'busybox:2');
    assert.equal(cs.restartCount, 1);
    assert.equal(cs.lastState?.terminated?.reason, 'Completed');
    assert.equal(pushed.length, 2);

    await assert.rejects(provider.updatePod(pod('nobody'), signal), { code: 'NotFound' });
    await provider.close();
  });

  test('deletePod reports every container terminated, then forgets the pod', async () => {
    const { provider, pushed } = mock();
    await provider.createPod(pod('d'), signal);
    await provider.deletePod(pod('d'), signal);
    const last = pushed.at(-1);
    assert.equal(last?.status?.phase, 'Succeeded');
    const terminated = last.status.containerStatuses?.[0]?.state?.terminated;
    assert.equal(terminated?.exitCode, 0);
    assert.equal(terminated.reason, 'Completed');
    assert.ok(terminated.finishedAt);
    assert.equal(last.status.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.equal(await provider.getPod('ns', 'd', signal), undefined);
    assert.equal(await provider.getPodStatus('ns', 'd', signal), undefined);
    await assert.rejects(provider.deletePod(pod('d'), signal), { code: 'NotFound' });
    await provider.close();
  });

  test('faults fail calls by the injected random source, with the configured error', async () => {
    let roll = 0;
    const config: MockConfig = {
      faults: {
        createPod: { errorRate: 0.5 },
        getPods: { errorRate: 0.5, error: 'permanent' },
        ping: { errorRate: 1, error: 'invalidInput' },
      },
    };
    const { provider } = mock({ config, random: () => roll });
    await assert.rejects(provider.createPod(pod('f'), signal), (err: unknown) => {
      assert.ok(err instanceof VirtualKubeletError);
      assert.equal(err.code, 'Unavailable');
      assert.equal(err.retryable, true);
      return true;
    });
    assert.equal(
      await provider.getPod('ns', 'f', signal),
      undefined,
      'a failed create runs nothing',
    );
    await assert.rejects(provider.getPods(signal), { code: 'Permanent' });
    await assert.rejects(provider.ping(signal), { code: 'InvalidInput' });

    roll = 0.7;
    await provider.createPod(pod('f'), signal);
    assert.equal((await provider.getPods(signal)).length, 1);
    roll = 0.99;
    await assert.rejects(
      provider.ping(signal),
      { code: 'InvalidInput' },
      'errorRate 1 always fails',
    );
    await provider.close();
  });

  test('latency delays a call and ends early on abort or close', async () => {
    const { provider } = mock({ config: { faults: { getPods: { latencyMs: 60_000 } } } });
    const controller = new AbortController();
    const aborted = provider.getPods(controller.signal);
    controller.abort(new Error('stop'));
    await assert.rejects(aborted, /stop/);

    const closed = provider.getPods(signal);
    await provider.close();
    await assert.rejects(closed, { code: 'Unavailable' });
    await assert.rejects(provider.createPod(pod('late'), signal), { code: 'Unavailable' });

    const fast = new MockProvider({
      nodeName: 'n',
      config: { faults: { getPods: { latencyMs: 30 } } },
    });
    const started = performance.now();
    await fast.getPods(signal);
    assert.ok(performance.now() - started >= 25);
    await fast.close();
  });

  test('an aborted signal fails a call at once', async () => {
    const { provider } = mock();
    await assert.rejects(provider.getPods(AbortSignal.abort(new Error('gone'))), /gone/);
    await provider.close();
  });

  describe('exitAfterSeconds', () => {
    const config: MockConfig = {
      containers: {
        ok: { exitAfterSeconds: 0.05 },
        bad: { exitAfterSeconds: 0.05, exitCode: 3 },
      },
    };
    const containers = (...names: string[]): { containers: { name: string; image: string }[] } => ({
      containers: names.map((name) => ({ name, image: 'busybox' })),
    });

    test('restartPolicy Never: all containers exit 0, the pod Succeeds', async () => {
      const { provider, pushed } = mock({ config });
      await provider.createPod(pod('s', { restartPolicy: 'Never', ...containers('ok') }), signal);
      const done = await waitFor(() => pushed.find((p) => p.status?.phase === 'Succeeded'), {
        intervalMs: 10,
        timeoutMs: 5000,
      });
      const terminated = done.status?.containerStatuses?.[0]?.state?.terminated;
      assert.equal(terminated?.exitCode, 0);
      assert.equal(terminated.reason, 'Completed');
      assert.ok(terminated.startedAt);
      assert.equal(
        done.status?.conditions?.find((c) => c.type === 'Ready')?.reason,
        'PodCompleted',
      );
      assert.equal((await provider.getPodStatus('ns', 's', signal))?.phase, 'Succeeded');
      await provider.close();
    });

    test('restartPolicy Never: a non-zero exit fails the pod once every container stopped', async () => {
      const { provider, pushed } = mock({ config });
      await provider.createPod(
        pod('f', { restartPolicy: 'Never', ...containers('bad', 'forever') }),
        signal,
      );
      const exited = await waitFor(
        () => pushed.find((p) => p.status?.containerStatuses?.[0]?.state?.terminated),
        { intervalMs: 10, timeoutMs: 5000 },
      );
      assert.equal(exited.status?.phase, 'Running', 'another container still runs');
      assert.equal(exited.status.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
      const terminated = exited.status.containerStatuses?.[0]?.state?.terminated;
      assert.equal(terminated?.exitCode, 3);
      assert.equal(terminated.reason, 'Error');

      await provider.deletePod(pod('f'), signal);
      assert.equal(pushed.at(-1)?.status?.phase, 'Failed');
      await provider.close();
    });

    test('restartPolicy Always restarts the container', async () => {
      const { provider, pushed } = mock({ config });
      await provider.createPod(pod('r', { restartPolicy: 'Always', ...containers('bad') }), signal);
      const restarted = await waitFor(
        () => pushed.find((p) => p.status?.containerStatuses?.[0]?.restartCount === 1),
        { intervalMs: 10, timeoutMs: 5000 },
      );
      const cs = restarted.status?.containerStatuses?.[0];
      assert.equal(restarted.status?.phase, 'Running');
      assert.equal(cs?.ready, true);
      assert.ok(cs.state?.running);
      assert.equal(cs.lastState?.terminated?.exitCode, 3);
      assert.equal(cs.lastState.terminated.reason, 'Error');
      await waitFor(
        async () =>
          ((await provider.getPodStatus('ns', 'r', signal))?.containerStatuses?.[0]?.restartCount ??
            0) >= 2,
        { intervalMs: 10, timeoutMs: 5000, what: 'a second restart' },
      );
      await provider.close();
    });

    test('restartPolicy OnFailure restarts a failed container, not a successful one', async () => {
      const { provider, pushed } = mock({ config });
      await provider.createPod(
        pod('o', { restartPolicy: 'OnFailure', ...containers('ok', 'bad') }),
        signal,
      );
      await waitFor(
        () =>
          pushed.find((p) => {
            const [ok, bad] = p.status?.containerStatuses ?? [];
            return ok?.state?.terminated?.exitCode === 0 && bad?.restartCount === 1;
          }),
        { intervalMs: 10, timeoutMs: 5000 },
      );
      assert.equal((await provider.getPodStatus('ns', 'o', signal))?.phase, 'Running');
      await provider.close();
    });

    test('close clears the exit timers', async () => {
      const { provider, pushed } = mock({ config });
      await provider.createPod(pod('c', { restartPolicy: 'Never', ...containers('ok') }), signal);
      await provider.close();
      // Proving that nothing happens takes waiting past the moment it would have happened.
      await delay(150);
      assert.equal(pushed.length, 1);
      const cs = (await provider.getPodStatus('ns', 'c', signal))?.containerStatuses?.[0];
      assert.ok(cs?.state?.running);
    });

    test('deletePod and forgetPod clear the pod timers', async () => {
      const { provider, pushed } = mock({ config });
      await provider.createPod(pod('x', { restartPolicy: 'Never', ...containers('ok') }), signal);
      await provider.createPod(pod('y', { restartPolicy: 'Never', ...containers('ok') }), signal);
      await provider.deletePod(pod('x'), signal);
      assert.equal(provider.forgetPod('ns', 'y'), true);
      assert.equal(provider.forgetPod('ns', 'y'), false);
      const count = pushed.length;
      await delay(150);
      assert.equal(pushed.length, count);
      await provider.close();
    });
  });
});

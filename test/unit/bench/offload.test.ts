import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PodTracker, podBody, type PodObject } from '../../../bench/common.js';
import {
  delayFigures,
  GOAL_SECONDS_RATIO,
  GOAL_STATUS_P99_MS,
  offloadGoals,
  offloadProviderConfig,
  offloadRatios,
  offloadReport,
  type OffloadRun,
  type OffloadSettings,
  parseOffloadArgs,
  pinnedPodBody,
  restarted,
  summarizeOffload,
} from '../../../bench/offload.js';
import { providerArgument } from '../../../bench/rollout.js';
import type { KubeClient, WatchEvent } from '../../../src/kube/client.js';
import { parseKubernetesConfig } from '../../../src/providers/kubernetes/index.js';

describe('rollout --provider kubernetes: arguments', () => {
  test('rollout hands --provider kubernetes to the offload scenario, in either spelling', () => {
    assert.equal(providerArgument(['--n', '5', '--provider', 'kubernetes']), 'kubernetes');
    assert.equal(providerArgument(['--provider=kubernetes', '--runs', '1']), 'kubernetes');
    assert.equal(providerArgument(['--provider', 'cri', '--vs', 'kubelet']), 'cri');
    assert.equal(providerArgument(['--n', '5']), undefined);
    assert.equal(providerArgument(['--', '--provider', 'kubernetes']), undefined);
  });

  test('defaults: 1 000 pods, 3 runs, 32 in flight, 50 restarts/s, timeout max(300 s, N)', () => {
    assert.deepEqual(parseOffloadArgs(['--provider', 'kubernetes']), {
      n: 1000,
      runs: 3,
      concurrency: 32,
      timeoutMs: 1_000_000,
      changeRate: 50,
      podCapacity: 20_000,
    });
    const small = parseOffloadArgs(
      '--provider kubernetes --n 50 --runs 1 --change-rate 5 --json /tmp/x.json'.split(' '),
    );
    assert.deepEqual(small, {
      n: 50,
      runs: 1,
      concurrency: 32,
      timeoutMs: 300_000,
      changeRate: 5,
      podCapacity: 20_000,
      json: '/tmp/x.json',
    });
  });

  test('refuses what makes no sense here, with a message', () => {
    const refused = (args: string): string => {
      const r = parseOffloadArgs(args.split(' '));
      assert.equal(typeof r, 'string', `${args} refused`);
      return r as string;
    };
    assert.match(refused('--provider kubernetes --systems ours'), /picks its systems/);
    assert.match(refused('--provider kubernetes --vs kubelet'), /picks its systems/);
    assert.match(refused('--provider kubernetes --process-network cni'), /--provider process/);
    assert.match(refused('--provider kubernetes --n 0'), /positive whole numbers/);
    assert.match(refused('--provider kubernetes --runs 1.5'), /positive whole numbers/);
    assert.match(refused('--provider kubernetes --change-rate 0'), /--change-rate/);
    assert.match(refused('--provider kubernetes --timeout -1'), /--timeout/);
    assert.match(refused('--provider kubernetes --n 100 --pod-capacity 50'), /--pod-capacity/);
    assert.match(refused('--provider kubernetes --smoke'), /Unknown option '--smoke'/);
    assert.match(refused('--provider mock'), /needs --provider kubernetes/);
  });
});

describe('rollout --provider kubernetes: pods and provider', () => {
  test('a direct pod is the rollout pod pinned to the worker by hostname instead of bound', () => {
    const direct = pinnedPodBody('pod-00001', 'bench-worker-1-abc') as {
      spec: Record<string, unknown>;
    };
    const bound = podBody('pod-00001', 'bench-worker-1-abc') as { spec: Record<string, unknown> };
    assert.equal(direct.spec.nodeName, undefined, 'left to the remote scheduler');
    assert.deepEqual(direct.spec.nodeSelector, { 'kubernetes.io/hostname': 'bench-worker-1-abc' });
    const withoutPin = { ...direct.spec };
    delete withoutPin.nodeSelector;
    const withoutBinding = { ...bound.spec };
    delete withoutBinding.nodeName;
    assert.deepEqual(
      { ...direct, spec: withoutPin },
      { ...bound, spec: withoutBinding },
      'otherwise the same pod',
    );
  });

  test("the provider's configuration is valid and pins its remote pods the same way", () => {
    const config = parseKubernetesConfig(offloadProviderConfig('/tmp/offload.kubeconfig', 'w-1'));
    assert.equal(config.kubeconfig, '/tmp/offload.kubeconfig');
    assert.deepEqual(config.nodeSelector, { 'kubernetes.io/hostname': 'w-1' });
    assert.deepEqual(config.tolerations, [
      { key: 'virtual-kubelet.io/provider', operator: 'Exists' },
    ]);
  });

  test('a pod counts as restarted once its container app has a restart', () => {
    const pod = (statuses: { name: string; restartCount?: number }[]): PodObject => ({
      metadata: { name: 'p' },
      status: { phase: 'Running', containerStatuses: statuses },
    });
    assert.equal(restarted({ metadata: { name: 'p' } }), false);
    assert.equal(restarted(pod([{ name: 'app', restartCount: 0 }])), false);
    assert.equal(restarted(pod([{ name: 'sidecar', restartCount: 3 }])), false);
    assert.equal(restarted(pod([{ name: 'app', restartCount: 1 }])), true);
  });
});

/** A client whose pod list is empty and whose watch delivers what the test pushes. */
function watchStub(): { client: KubeClient; push: (e: WatchEvent<PodObject>) => void } {
  let deliver: ((e: WatchEvent<PodObject>) => void) | undefined;
  const client = {
    request: () => Promise.resolve({ metadata: { resourceVersion: '1' }, items: [] }),
    watch: (
      _path: string,
      _query: unknown,
      onEvent: (e: WatchEvent<PodObject>) => void,
      signal: AbortSignal,
    ) => {
      deliver = onEvent;
      return new Promise<void>((resolve) => {
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },
  } as unknown as KubeClient;
  return {
    client,
    push: (e) => {
      if (!deliver) throw new Error('no watch yet');
      deliver(e);
    },
  };
}

test('the pod tracker notes when each pod first holds its mark, and only the first time', async (t) => {
  const { client, push } = watchStub();
  const tracker = new PodTracker(client, 'ns', { mark: restarted });
  t.after(() => tracker.stop());
  await tracker.start();
  const pod = (name: string, restartCount: number): PodObject => ({
    metadata: { name, resourceVersion: String(restartCount + 2) },
    status: { phase: 'Running', containerStatuses: [{ name: 'app', restartCount }] },
  });
  push({ type: 'ADDED', object: pod('a', 0) });
  assert.equal(tracker.running, 1);
  assert.equal(tracker.marked, 0);
  push({ type: 'MODIFIED', object: pod('a', 1) });
  const first = tracker.markedAt('a');
  assert.ok(first !== undefined);
  push({ type: 'MODIFIED', object: pod('a', 2) });
  assert.equal(tracker.markedAt('a'), first, 'the first time is kept');
  assert.equal(tracker.marked, 1);
  assert.equal(tracker.markedAt('b'), undefined);
});

describe('rollout --provider kubernetes: figures', () => {
  test('delays per pod: percentiles over the pods seen at both ends, the others counted', () => {
    const pairs = Array.from({ length: 100 }, (_, i) => ({ from: 1000 + i, to: 1000 + 2 * i + 1 }));
    assert.deepEqual(delayFigures(pairs), {
      p50Ms: 50,
      p90Ms: 90,
      p99Ms: 99,
      maxMs: 100,
      missing: 0,
    });
    assert.deepEqual(delayFigures([{ from: 5, to: 9 }, { from: 5 }, { to: 3 }]), {
      p50Ms: 4,
      p90Ms: 4,
      p99Ms: 4,
      maxMs: 4,
      missing: 2,
    });
    assert.deepEqual(delayFigures([]), { missing: 0 });
  });

  const run = (n: number, f: Partial<OffloadRun>, ok = true): OffloadRun => ({
    run: n,
    ok,
    running: ok ? 100 : 10,
    ...f,
  });

  const results = {
    direct: summarizeOffload('d', [
      run(1, { seconds: 10, latencyP99Ms: 400, cpuSeconds: 2, workerCpuSeconds: 2 }),
      run(2, { seconds: 14, latencyP99Ms: 600, cpuSeconds: 4, workerCpuSeconds: 4 }),
      run(3, {}, false),
    ]),
    offloaded: summarizeOffload('o', [
      run(1, {
        seconds: 12,
        latencyP99Ms: 900,
        cpuSeconds: 9,
        workerCpuSeconds: 3,
        statusP99Ms: 700,
      }),
      run(2, {
        seconds: 15,
        latencyP99Ms: 1100,
        cpuSeconds: 7,
        workerCpuSeconds: 3,
        statusP99Ms: 900,
      }),
    ]),
  };

  test('medians of the runs that completed; a figure no run has is left out', () => {
    assert.equal(results.direct.seconds, 12);
    assert.equal(results.direct.latencyP99Ms, 500);
    assert.equal(results.direct.runs.length, 3, 'the failed run is kept in runs');
    assert.equal('statusP99Ms' in results.direct, false);
    assert.equal(results.offloaded.statusP99Ms, 800);
  });

  test('ratios are offloaded/direct of the medians', () => {
    const r = offloadRatios(results)['offloaded/direct'];
    assert.ok(r);
    assert.equal(r.seconds, 13.5 / 12);
    assert.equal(r.latencyP99Ms, 1000 / 500);
    assert.equal(r.cpuSeconds, 8 / 3);
    assert.equal(r.workerCpuSeconds, 1);
    assert.deepEqual(offloadRatios({ direct: results.direct }), {});
  });

  test('the goals: seconds ratio <= 1.3 and status p99 <= 1 s', () => {
    assert.equal(GOAL_SECONDS_RATIO, 1.3);
    assert.equal(GOAL_STATUS_P99_MS, 1000);
    assert.deepEqual(offloadGoals(results), {
      secondsRatio: 13.5 / 12,
      secondsRatioMet: true,
      statusP99Ms: 800,
      statusP99Met: true,
    });
    const slow = {
      ...results,
      offloaded: { ...results.offloaded, seconds: 16, statusP99Ms: 1001 },
    };
    const goals = offloadGoals(slow);
    assert.equal(goals.secondsRatioMet, false);
    assert.equal(goals.statusP99Met, false);
    assert.deepEqual(offloadGoals({}), {}, 'nothing measured meets nothing');
  });

  test('the report: one row per system, the ratio row, the goals, and failed runs named', () => {
    const settings: OffloadSettings = {
      n: 100,
      runs: 3,
      concurrency: 32,
      timeoutMs: 300_000,
      changeRate: 50,
      podCapacity: 20_000,
    };
    const text = offloadReport(settings, results);
    assert.match(text, /N=100, 3 run\(s\) per system, interleaved/);
    assert.match(text, /^direct +2\/3 +12\.00 /m);
    assert.match(text, /^offloaded +2\/2 +13\.50 /m);
    assert.match(text, /^offloaded\/direct +1\.13 +- +2\.00 /m);
    assert.match(text, /^offloaded\/direct seconds +1\.13 +<= 1\.3 +yes$/m);
    assert.match(text, /^status change p99 ms +800 +<= 1000 +yes$/m);
    assert.match(text, /^FAILED direct run 3: $/m);
  });
});

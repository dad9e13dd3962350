import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hasStats } from '../../../../src/provider.js';
import { escapeLabelValue } from '../../../../src/kubelet/resource-metrics.js';
import { metricsResource, takeSnapshot } from '../../../../src/providers/mock/stats.js';
import { waitFor } from '../../../helpers/wait.js';
import { mock, pod, signal } from './helpers.js';

const fast = { intervalMs: 10, timeoutMs: 5000 };

interface Cpu {
  time: string;
  usageNanoCores: number;
  usageCoreNanoSeconds: number;
}
interface Memory {
  time: string;
  workingSetBytes: number;
  usageBytes: number;
  rssBytes: number;
  pageFaults: number;
  majorPageFaults: number;
  availableBytes?: number;
}
interface Summary {
  node: { nodeName: string; startTime: string; cpu: Cpu; memory: Memory };
  pods: {
    podRef: { name: string; namespace: string; uid: string };
    startTime: string;
    containers: { name: string; startTime: string; cpu: Cpu; memory: Memory }[];
    cpu: Cpu;
    memory: Memory;
  }[];
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

function assertNonZero(what: string, cpu: Cpu, memory: Memory): void {
  assert.match(cpu.time, RFC3339, what);
  assert.match(memory.time, RFC3339, what);
  for (const [name, value] of Object.entries({ ...cpu, ...memory })) {
    if (name === 'time') continue;
    assert.ok(typeof value === 'number' && Number.isInteger(value) && value > 0, `${what} ${name}`);
  }
}

describe('MockProvider stats', () => {
  test('the summary has node, pods and containers, all non-zero, sums at every level', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0, memory: '8Gi' } });
    assert.equal(hasStats(provider), true);
    await provider.createPod(
      pod('web', { containers: [{ name: 'app' }, { name: 'proxy' }] }),
      signal,
    );
    await provider.createPod(pod('db'), signal);
    const summary = (await provider.getStatsSummary(signal)) as unknown as Summary;

    assert.equal(summary.node.nodeName, 'node-1');
    assert.match(summary.node.startTime, RFC3339);
    assertNonZero('node', summary.node.cpu, summary.node.memory);
    assert.equal(
      summary.node.memory.availableBytes,
      8 * 2 ** 30 - summary.node.memory.workingSetBytes,
    );
    assert.deepEqual(
      summary.pods.map((p) => [p.podRef, p.containers.map((c) => c.name)]),
      [
        [{ name: 'web', namespace: 'ns', uid: 'uid-web' }, ['app', 'proxy']],
        [{ name: 'db', namespace: 'ns', uid: 'uid-db' }, ['main']],
      ],
    );
    let podCpu = 0;
    let podMemory = 0;
    for (const p of summary.pods) {
      assert.match(p.startTime, RFC3339);
      assertNonZero(p.podRef.name, p.cpu, p.memory);
      for (const c of p.containers) {
        assertNonZero(`${p.podRef.name}/${c.name}`, c.cpu, c.memory);
        assert.match(c.startTime, RFC3339);
        assert.ok(c.cpu.usageNanoCores >= 10e6 && c.cpu.usageNanoCores <= 60e6);
        assert.ok(c.memory.workingSetBytes >= 10 * 2 ** 20);
        assert.ok(c.memory.workingSetBytes <= 60 * 2 ** 20);
      }
      const sum = (pick: (c: Summary['pods'][number]['containers'][number]) => number): number =>
        p.containers.reduce((total, c) => total + pick(c), 0);
      assert.equal(
        p.cpu.usageNanoCores,
        sum((c) => c.cpu.usageNanoCores),
      );
      assert.equal(
        p.cpu.usageCoreNanoSeconds,
        sum((c) => c.cpu.usageCoreNanoSeconds),
      );
      assert.equal(
        p.memory.workingSetBytes,
        sum((c) => c.memory.workingSetBytes),
      );
      podCpu += p.cpu.usageNanoCores;
      podMemory += p.memory.workingSetBytes;
    }
    assert.ok(summary.node.cpu.usageNanoCores > podCpu, 'the node adds a base');
    assert.ok(summary.node.memory.workingSetBytes > podMemory);

    // Deterministic: the same container has the same rate in another provider.
    const other = mock({ config: { logIntervalMs: 0 } }).provider;
    await other.createPod(pod('db'), signal);
    const again = (await other.getStatsSummary(signal)) as unknown as Summary;
    assert.equal(again.pods[0]?.cpu.usageNanoCores, summary.pods[1]?.cpu.usageNanoCores);
    await other.close();
    await provider.close();
  });

  test('CPU counters grow between two calls and never go back when pods go', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    await provider.createPod(pod('a'), signal);
    await provider.createPod(pod('b'), signal);
    const first = (await provider.getStatsSummary(signal)) as unknown as Summary;
    const second = await waitFor(async () => {
      const s = (await provider.getStatsSummary(signal)) as unknown as Summary;
      return s.node.cpu.usageCoreNanoSeconds > first.node.cpu.usageCoreNanoSeconds && s;
    }, fast);
    const cpuOf = (s: Summary, name: string): number =>
      s.pods.find((p) => p.podRef.name === name)?.containers[0]?.cpu.usageCoreNanoSeconds ?? 0;
    await waitFor(async () => {
      const s = (await provider.getStatsSummary(signal)) as unknown as Summary;
      return cpuOf(s, 'a') > cpuOf(first, 'a');
    }, fast);

    await provider.deletePod(pod('b'), signal);
    const after = (await provider.getStatsSummary(signal)) as unknown as Summary;
    assert.deepEqual(
      after.pods.map((p) => p.podRef.name),
      ['a'],
    );
    assert.ok(after.node.cpu.usageCoreNanoSeconds >= second.node.cpu.usageCoreNanoSeconds);
    await provider.close();
  });

  test('only running containers of pods that are not terminal count', async () => {
    const { provider } = mock({
      config: { logIntervalMs: 0, containers: { short: { exitAfterSeconds: 0.02 } } },
    });
    await provider.createPod(
      pod('mixed', { restartPolicy: 'Never', containers: [{ name: 'short' }, { name: 'main' }] }),
      signal,
    );
    await provider.createPod(
      pod('done', { restartPolicy: 'Never', containers: [{ name: 'short' }] }),
      signal,
    );
    await waitFor(
      async () => (await provider.getPodStatus('ns', 'done', signal))?.phase === 'Succeeded',
      fast,
    );
    await waitFor(
      async () =>
        (await provider.getPodStatus('ns', 'mixed', signal))?.containerStatuses?.[0]?.state
          ?.terminated,
      fast,
    );
    const summary = (await provider.getStatsSummary(signal)) as unknown as Summary;
    assert.deepEqual(
      summary.pods.map((p) => [p.podRef.name, p.containers.map((c) => c.name)]),
      [['mixed', ['main']]],
    );
    await provider.close();
  });

  test('/metrics/resource has every series, labelled and stamped, from the summary figures', async () => {
    const now = new Date('2030-01-01T00:00:00.250Z');
    const { provider } = mock({ config: { logIntervalMs: 0 }, clock: () => now });
    await provider.createPod(pod('web'), signal);
    const summary = (await provider.getStatsSummary(signal)) as unknown as Summary;
    const textFormat = await provider.getMetricsResource(signal);

    const samples = new Map<string, { value: number; timestamp?: number }>();
    const types = new Map<string, string>();
    for (const line of textFormat.trimEnd().split('\n')) {
      const meta = /^# (HELP|TYPE) ([a-z_]+) (.+)$/.exec(line);
      if (meta) {
        if (meta[1] === 'TYPE') types.set(meta[2] ?? '', meta[3] ?? '');
        continue;
      }
      const sample = /^([a-z_]+(?:\{[^}]*\})?) (\S+)(?: (\d+))?$/.exec(line);
      assert.ok(sample, `a sample line: ${line}`);
      const [, series = '', value = '', timestamp] = sample;
      assert.ok(Number.isFinite(Number(value)), line);
      samples.set(series, {
        value: Number(value),
        ...(timestamp === undefined ? {} : { timestamp: Number(timestamp) }),
      });
    }
    assert.ok(textFormat.endsWith('\n'));
    const labels = 'container="main",namespace="ns",pod="web"';
    const podStats = summary.pods[0];
    const container = podStats?.containers[0];
    assert.ok(podStats && container);
    const at = now.getTime();
    assert.deepEqual(Object.fromEntries(samples), {
      [`container_cpu_usage_seconds_total{${labels}}`]: {
        value: container.cpu.usageCoreNanoSeconds / 1e9,
        timestamp: at,
      },
      [`container_memory_working_set_bytes{${labels}}`]: {
        value: container.memory.workingSetBytes,
        timestamp: at,
      },
      [`container_start_time_seconds{${labels}}`]: { value: now.getTime() / 1000 },
      node_cpu_usage_seconds_total: {
        value: summary.node.cpu.usageCoreNanoSeconds / 1e9,
        timestamp: at,
      },
      node_memory_working_set_bytes: { value: summary.node.memory.workingSetBytes, timestamp: at },
      'pod_cpu_usage_seconds_total{namespace="ns",pod="web"}': {
        value: podStats.cpu.usageCoreNanoSeconds / 1e9,
        timestamp: at,
      },
      'pod_memory_working_set_bytes{namespace="ns",pod="web"}': {
        value: podStats.memory.workingSetBytes,
        timestamp: at,
      },
      resource_scrape_error: { value: 0 },
    });
    assert.deepEqual(Object.fromEntries(types), {
      container_cpu_usage_seconds_total: 'counter',
      container_memory_working_set_bytes: 'gauge',
      container_start_time_seconds: 'gauge',
      node_cpu_usage_seconds_total: 'counter',
      node_memory_working_set_bytes: 'gauge',
      pod_cpu_usage_seconds_total: 'counter',
      pod_memory_working_set_bytes: 'gauge',
      resource_scrape_error: 'gauge',
    });
    for (const name of types.keys())
      assert.match(textFormat, new RegExp(`^# HELP ${name} \\S`, 'm'));
    await provider.close();
  });

  test('label values are escaped; families without samples are left out', () => {
    assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
    const at = new Date('2030-01-01T00:00:00Z');
    const text = metricsResource(
      takeSnapshot({
        nodeName: 'n',
        nodeStartTime: at,
        now: at,
        memoryCapacityBytes: 2 ** 30,
        retiredCoreNanoSeconds: 0,
        pods: [
          {
            namespace: 'ns',
            name: 'we"ird',
            uid: 'u',
            startTime: at,
            retiredCoreNanoSeconds: 0,
            containers: [{ name: 'c\\1', startedAt: at }],
          },
        ],
      }),
    );
    assert.match(
      text,
      /^container_memory_working_set_bytes\{container="c\\\\1",namespace="ns",pod="we\\"ird"\} \d+ \d+$/m,
    );
    const empty = metricsResource(
      takeSnapshot({
        nodeName: 'n',
        nodeStartTime: at,
        now: at,
        memoryCapacityBytes: 2 ** 30,
        retiredCoreNanoSeconds: 0,
        pods: [],
      }),
    );
    assert.doesNotMatch(empty, /container_|pod_/);
    assert.match(empty, /^node_cpu_usage_seconds_total 0\.05 \d+$/m);
  });
});

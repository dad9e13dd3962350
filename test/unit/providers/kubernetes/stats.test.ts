import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PodStats, Summary } from '../../../../src/provider.js';
import {
  mapSummaries,
  metricsResourceOf,
  resourceMetricsOf,
  type PodRef,
} from '../../../../src/providers/kubernetes/stats.js';

const T1 = '2026-01-01T00:00:10Z';
const T2 = '2026-01-01T00:00:12Z';

function pod(namespace: string, name: string, uid: string, cores: number, mib: number): PodStats {
  const time = namespace === 'remote-b' ? T2 : T1;
  return {
    podRef: { namespace, name, uid },
    startTime: '2026-01-01T00:00:00Z',
    containers: [
      {
        name: 'app',
        startTime: '2026-01-01T00:00:01Z',
        cpu: { time, usageNanoCores: cores * 1e9, usageCoreNanoSeconds: cores * 10e9 },
        memory: { time, usageBytes: mib * 2 ** 20, workingSetBytes: mib * 2 ** 20 },
      },
    ],
    cpu: { time, usageNanoCores: cores * 1e9, usageCoreNanoSeconds: cores * 10e9 },
    memory: { time, usageBytes: mib * 2 ** 20, workingSetBytes: mib * 2 ** 20 },
  };
}

function remoteSummary(nodeName: string, pods: PodStats[]): Summary {
  return {
    node: {
      nodeName,
      startTime: '2025-01-01T00:00:00Z',
      cpu: { time: T1, usageNanoCores: 99e9, usageCoreNanoSeconds: 99e12 },
      memory: { time: T1, workingSetBytes: 99 * 2 ** 30 },
    },
    pods,
  };
}

/** Remote pods offloaded by this node: remote namespace/name/uid to the local pod. */
const offloaded = new Map<string, PodRef>([
  ['remote-a/web/ru-1', { namespace: 'shop', name: 'web', uid: 'lu-1' }],
  ['remote-b/db/ru-2', { namespace: 'data', name: 'db', uid: 'lu-2' }],
]);
const localOf = (r: PodRef): PodRef | undefined =>
  offloaded.get(`${r.namespace}/${r.name}/${r.uid}`);

test('remote pod entries are renamed to the local pods; other pods of the remote nodes are left out', () => {
  const summary = mapSummaries({
    nodeName: 'vk-east',
    startTime: '2026-01-01T00:00:00Z',
    now: '2026-01-01T00:01:00Z',
    localOf,
    summaries: [
      remoteSummary('worker-1', [
        pod('remote-a', 'web', 'ru-1', 0.5, 64),
        pod('kube-system', 'dns', 'x', 1, 1),
      ]),
      // The same remote name with another UID (an older pod) is not ours.
      remoteSummary('worker-2', [
        pod('remote-b', 'db', 'ru-2', 0.25, 32),
        pod('remote-a', 'web', 'old', 1, 1),
      ]),
    ],
  });
  assert.deepEqual(
    summary.pods.map((p) => p.podRef),
    [
      { namespace: 'data', name: 'db', uid: 'lu-2' },
      { namespace: 'shop', name: 'web', uid: 'lu-1' },
    ],
  );
  const web = summary.pods.find((p) => p.podRef.name === 'web');
  assert.equal(web?.containers[0]?.cpu?.usageNanoCores, 0.5e9, 'the remote figures are kept');
  assert.equal(web?.memory?.workingSetBytes, 64 * 2 ** 20);
});

test('the node part is the virtual node, summing the offloaded pods, not the remote nodes', () => {
  const summary = mapSummaries({
    nodeName: 'vk-east',
    startTime: '2026-01-01T00:00:00Z',
    now: '2026-01-01T00:01:00Z',
    localOf,
    summaries: [
      remoteSummary('worker-1', [pod('remote-a', 'web', 'ru-1', 0.5, 64)]),
      remoteSummary('worker-2', [pod('remote-b', 'db', 'ru-2', 0.25, 32)]),
    ],
  });
  assert.equal(summary.node.nodeName, 'vk-east');
  assert.equal(summary.node.startTime, '2026-01-01T00:00:00Z');
  assert.equal(summary.node.cpu?.usageNanoCores, 0.75e9);
  assert.equal(summary.node.cpu?.usageCoreNanoSeconds, 7.5e9);
  assert.equal(summary.node.cpu?.time, T2, 'the latest sample time');
  assert.equal(summary.node.memory?.workingSetBytes, 96 * 2 ** 20);
});

test('a pod listed by two remote Summaries is kept once; no pods gives a zero node part', () => {
  const twice = mapSummaries({
    nodeName: 'vk',
    startTime: T1,
    now: T2,
    localOf,
    summaries: [
      remoteSummary('w', [pod('remote-a', 'web', 'ru-1', 1, 1)]),
      remoteSummary('w', [pod('remote-a', 'web', 'ru-1', 1, 1)]),
    ],
  });
  assert.equal(twice.pods.length, 1);
  const none = mapSummaries({ nodeName: 'vk', startTime: T1, now: T2, localOf, summaries: [] });
  assert.deepEqual(none.pods, []);
  assert.equal(none.node.cpu?.usageNanoCores, 0);
  assert.equal(none.node.memory?.workingSetBytes, 0);
  assert.equal(none.node.cpu?.time, T2);
});

test('a figure missing on one pod is left out of the node sum rather than undercounted', () => {
  const partial: PodStats = { ...pod('remote-b', 'db', 'ru-2', 1, 1), cpu: { time: T1 } };
  const summary = mapSummaries({
    nodeName: 'vk',
    startTime: T1,
    now: T2,
    localOf,
    summaries: [remoteSummary('w', [pod('remote-a', 'web', 'ru-1', 1, 1), partial])],
  });
  assert.equal(summary.node.cpu?.usageNanoCores, undefined);
  assert.equal(summary.node.memory?.workingSetBytes, 2 * 2 ** 20);
});

test('/metrics/resource names the local pods, with CPU counters and working sets at the sample time', () => {
  const summary = mapSummaries({
    nodeName: 'vk',
    startTime: T1,
    now: T2,
    localOf,
    summaries: [remoteSummary('w', [pod('remote-a', 'web', 'ru-1', 0.5, 64)])],
  });
  const input = resourceMetricsOf(summary, 0);
  assert.equal(input.timeMs, Date.parse(T1));
  assert.deepEqual(input.pods[0]?.usage, {
    usageCoreNanoSeconds: 5e9,
    workingSetBytes: 64 * 2 ** 20,
  });
  const text = metricsResourceOf(summary, 0);
  assert.match(
    text,
    new RegExp(
      `^container_cpu_usage_seconds_total\\{container="app",namespace="shop",pod="web"\\} 5 ${String(Date.parse(T1))}$`,
      'm',
    ),
  );
  assert.match(text, /^pod_memory_working_set_bytes\{namespace="shop",pod="web"\} 67108864 /m);
  assert.match(text, /^node_cpu_usage_seconds_total 5 /m);
  assert.match(text, /^resource_scrape_error 0$/m);
});

test('/metrics/resource leaves out a pod without a cumulative CPU figure', () => {
  const summary: Summary = {
    node: { nodeName: 'vk', startTime: T1 },
    pods: [{ ...pod('shop', 'web', 'u', 1, 1), cpu: { time: T1, usageNanoCores: 1 } }],
  };
  const input = resourceMetricsOf(summary, 1234);
  assert.deepEqual(input.pods, []);
  assert.equal(input.timeMs, 1234, 'no sample: the time given');
});

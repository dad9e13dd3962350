import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  latencyFigures,
  latencyRatios,
  latencyReport,
  summarizeLatency,
  type LatencyRun,
} from '../../../bench/latency.js';
import { fleetNames, NodeTracker, staleLeases, summarizeNodes } from '../../../bench/nodes.js';
import { streamFigures, summarizeStreams } from '../../../bench/streams.js';
import { median, percentile, ratio, ratioText } from '../../../bench/util.js';
import type { KubeClient } from '../../../src/kube/client.js';

describe('percentiles', () => {
  test('nearest rank, whatever the order', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    assert.equal(percentile(xs, 50), 50);
    assert.equal(percentile(xs, 90), 90);
    assert.equal(percentile(xs, 99), 99);
    assert.equal(percentile(xs, 100), 100);
    assert.equal(percentile([7], 99), 7);
    assert.equal(percentile([], 50), 0);
  });

  test('median of an even count is the mean of the middle two', () => {
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([3, 1, 2]), 2);
  });

  test('latencyFigures: p50, p90, p99 and max', () => {
    const f = latencyFigures(Array.from({ length: 1000 }, (_, i) => i + 1));
    assert.deepEqual(f, { p50Ms: 500, p90Ms: 900, p99Ms: 990, maxMs: 1000 });
  });

  test('ratios: undefined when a side is unknown or zero; small ones keep two digits', () => {
    assert.equal(ratio(1, 2), 0.5);
    assert.equal(ratio(1, 0), undefined);
    assert.equal(ratio(undefined, 2), undefined);
    assert.equal(ratioText(0.5), '0.50');
    assert.equal(ratioText(0.0012345), '0.0012');
    assert.equal(ratioText(undefined), '-');
  });
});

const run = (n: number, p99Ms: number, ok = true): LatencyRun => ({
  run: n,
  ok,
  pods: 100,
  running: ok ? 100 : 50,
  p50Ms: p99Ms / 4,
  p90Ms: p99Ms / 2,
  p99Ms,
  maxMs: p99Ms + 1,
  seconds: 10,
  cpuSeconds: 2,
  peakRssBytes: 100 * 2 ** 20,
});

describe('latency results', () => {
  test('the JSON shape: medians of the completed runs and every run', () => {
    const r = summarizeLatency('s', [run(1, 300), run(2, 100), run(3, 200), run(4, 5, false)]);
    assert.equal(r.p99Ms, 200);
    assert.equal(r.p50Ms, 50);
    assert.equal(r.seconds, 10);
    assert.equal(r.cpuSeconds, 2);
    assert.equal(r.peakRssBytes, 100 * 2 ** 20);
    assert.equal(r.runs.length, 4);
    const json = JSON.parse(
      JSON.stringify({ scenario: 'latency', n: 100, systems: { ours: r } }),
    ) as {
      systems: { ours: Record<string, unknown> };
    };
    for (const key of ['seconds', 'cpuSeconds', 'peakRssBytes', 'runs', 'p50Ms', 'p90Ms', 'p99Ms'])
      assert.ok(key in json.systems.ours, key);
  });

  test('ratios are ours over each peer, and the report marks the target', () => {
    const results = {
      ours: summarizeLatency('a', [run(1, 200)]),
      kwok: summarizeLatency('b', [run(1, 400)]),
      'go-vk': summarizeLatency('c', [run(1, 4000)]),
    };
    assert.deepEqual(latencyRatios(results)['ours/kwok']?.p99Ms, 0.5);
    const text = latencyReport(50, 60, 1, results);
    assert.match(text, /^ours\s.*\syes$/m);
    assert.match(text, /^go-vk\s.*\sNO$/m);
    assert.match(text, /^ours\/kwok\s+0\.50\s+0\.50\s+0\.50/m);
  });
});

describe('nodes', () => {
  test('fleet names are numbered with at least four digits', () => {
    assert.deepEqual(fleetNames('vk', 2), ['vk-0001', 'vk-0002']);
    assert.equal(fleetNames('vk', 12_000)[11_999], 'vk-12000');
  });

  test('the tracker counts Ready -> not Ready transitions and deletions of its nodes only', () => {
    const t = new NodeTracker({} as KubeClient, ['a', 'b']);
    const node = (name: string, status: string): object => ({
      metadata: { name },
      status: { conditions: [{ type: 'Ready', status }] },
    });
    t.see(node('a', 'False') as never);
    assert.equal(t.notReadyTransitions, 0, 'never Ready yet is no transition');
    t.see(node('a', 'True') as never);
    t.see(node('b', 'True') as never);
    t.see(node('other', 'True') as never);
    assert.equal(t.everReady, 2);
    t.see(node('a', 'Unknown') as never);
    t.see(node('a', 'Unknown') as never);
    t.see(node('a', 'True') as never);
    assert.equal(t.notReadyTransitions, 1);
    t.gone('b');
    assert.deepEqual([...t.deleted], ['b']);
    assert.equal(t.readyNow, 1);
  });

  test('leases missing and expired', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    const lease = (name: string, renewTime: string): object => ({
      metadata: { name },
      spec: { renewTime, leaseDurationSeconds: 40 },
    });
    const r = staleLeases(
      [
        lease('a', '2026-11-23T11:59:50.000000Z'),
        lease('b', '2026-11-23T11:59:00.000000Z'),
      ] as never,
      ['a', 'b', 'c'],
      now,
    );
    assert.deepEqual(r, { missing: 1, stale: 1, oldestAgeSeconds: 60 });
  });

  test('summaries: CPU %, RSS and every transition of every run', () => {
    const r = summarizeNodes('s', [
      {
        run: 1,
        ok: true,
        seconds: 5,
        cpuSeconds: 3,
        cpuPercent: 2,
        rssBytes: 10,
        peakRssBytes: 20,
        nodesReady: 3,
        notReadyTransitions: 0,
        nodesDeleted: 0,
      },
      { run: 2, ok: false, nodesReady: 3, notReadyTransitions: 2, nodesDeleted: 0 },
    ]);
    assert.equal(r.cpuPercent, 2);
    assert.equal(r.rssBytes, 10);
    assert.equal(r.notReadyTransitions, 2);
    assert.equal(r.runs.length, 2);
  });
});

describe('streams', () => {
  test('MiB/s from bytes and seconds; medians over runs', () => {
    const a = streamFigures(1, 100 * 2 ** 20, 2, 1, 50);
    assert.deepEqual(a, {
      run: 1,
      bytes: 100 * 2 ** 20,
      seconds: 2,
      mibPerSecond: 50,
      cpuSeconds: 1,
      peakRssBytes: 50,
    });
    const s = summarizeStreams('x', [a, streamFigures(2, 100 * 2 ** 20, 4, 3, 70)]);
    assert.equal(s.mibPerSecond, 37.5);
    assert.equal(s.seconds, 3);
    assert.equal(s.cpuSeconds, 2);
    assert.equal(s.peakRssBytes, 70);
  });
});

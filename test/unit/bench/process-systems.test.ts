import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseSystems, resolveSystemNames } from '../../../bench/harness.js';
import { networkCost, networkCostTable } from '../../../bench/network-cost.js';
import { OursProcess, PROCESS_MAX_PODS } from '../../../bench/systems.js';

const settings = { goVkTunedWorkers: 64, limitConcurrency: 64, oursLogIntervalMs: 0 };

describe('--provider and --process-network', () => {
  test('the mock provider runs --systems, else the defaults', () => {
    assert.deepEqual(resolveSystemNames({}, 'ours,kwok', 3000), ['ours', 'kwok']);
    assert.deepEqual(resolveSystemNames({ provider: 'mock', systems: 'limit' }, 'ours', 3000), [
      'limit',
    ]);
  });

  test('--provider process runs with and without the pod network by default', () => {
    assert.deepEqual(resolveSystemNames({ provider: 'process' }, 'ours', 200), [
      'ours-process-cni',
      'ours-process-host',
    ]);
    assert.deepEqual(
      resolveSystemNames({ provider: 'process', processNetwork: 'both' }, 'ours', 200),
      ['ours-process-cni', 'ours-process-host'],
    );
  });

  test('--process-network cni or host runs only that one', () => {
    assert.deepEqual(
      resolveSystemNames({ provider: 'process', processNetwork: 'cni' }, 'ours', 1),
      ['ours-process-cni'],
    );
    assert.deepEqual(
      resolveSystemNames({ provider: 'process', processNetwork: 'host' }, 'ours', 1),
      ['ours-process-host'],
    );
  });

  test('bad combinations are one clear message', () => {
    assert.match(
      String(resolveSystemNames({ provider: 'docker' }, 'ours', 1)),
      /unknown provider 'docker': choose mock, process or cri/,
    );
    assert.match(
      String(resolveSystemNames({ provider: 'process', processNetwork: 'none' }, 'ours', 1)),
      /--process-network must be one of cni, host, both, not 'none'/,
    );
    assert.match(
      String(resolveSystemNames({ processNetwork: 'cni' }, 'ours', 1)),
      /--process-network needs --provider process/,
    );
    assert.match(
      String(resolveSystemNames({ provider: 'process', systems: 'ours' }, 'ours', 1)),
      /give --process-network instead of --systems/,
    );
  });

  test('more pods than a /24 pod CIDR holds are refused for the process systems only', () => {
    assert.deepEqual(
      resolveSystemNames({ provider: 'process' }, 'ours', PROCESS_MAX_PODS).length,
      2,
    );
    assert.match(
      String(resolveSystemNames({ provider: 'process' }, 'ours', PROCESS_MAX_PODS + 1)),
      /at most 250 pods at once \(a \/24 pod CIDR\): 251 asked for/,
    );
    assert.match(
      String(resolveSystemNames({ systems: 'ours,ours-process-host' }, 'ours', 3000)),
      /at most 250 pods/,
    );
    assert.deepEqual(resolveSystemNames({}, 'ours', 3000), ['ours']);
  });

  test('the names resolve to process systems with the network asked for', () => {
    const systems = parseSystems(['ours-process-cni', 'ours-process-host'], settings);
    assert.ok(Array.isArray(systems));
    assert.deepEqual(
      systems.map((s) => [s.name, s instanceof OursProcess ? s.network : undefined]),
      [
        ['ours-process-cni', 'cni'],
        ['ours-process-host', 'host'],
      ],
    );
    assert.match(systems[0]?.settings() ?? '', /"network":"cni"/);
    assert.match(systems[1]?.settings() ?? '', /"network":"host"/);
  });
});

describe('pod network cost', () => {
  test('cni/host ratios and cni - host differences', () => {
    const cost = networkCost(
      { p50Ms: 300, p90Ms: 500, p99Ms: 900, seconds: 30 },
      { p50Ms: 200, p90Ms: 400, p99Ms: 600, seconds: 20 },
    );
    assert.deepEqual(cost.ratio, { p50Ms: 1.5, p90Ms: 1.25, p99Ms: 1.5, seconds: 1.5 });
    assert.deepEqual(cost.difference, { p50Ms: 100, p90Ms: 100, p99Ms: 300, seconds: 10 });
  });

  test('a missing figure is undefined, never NaN, and shows as -', () => {
    const cost = networkCost({ p50Ms: 300 }, { p50Ms: 0, p99Ms: 5 });
    assert.equal(cost.ratio.p50Ms, undefined);
    assert.equal(cost.difference.p50Ms, 300);
    assert.equal(cost.ratio.p99Ms, undefined);
    assert.equal(cost.difference.p99Ms, undefined);
    const text = networkCostTable({ p50Ms: 300 }, { p50Ms: 200 });
    assert.match(text, /cni - host\s+100\s+-\s+-\s+-/);
  });
});

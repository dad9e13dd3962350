import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { watchLeadership } from '../../../src/agent/metrics.js';

test('virtual_kubelet_leader says, per node, whether this replica leads it, when scraped', async () => {
  const registry = new Registry();
  const leading = new Map([
    ['vk-a', true],
    ['vk-b', false],
  ]);
  watchLeadership(registry, () => leading);
  const first = await registry.metrics();
  assert.match(first, /^virtual_kubelet_leader\{node="vk-a"\} 1$/m);
  assert.match(first, /^virtual_kubelet_leader\{node="vk-b"\} 0$/m);
  leading.set('vk-a', false);
  assert.match(await registry.metrics(), /^virtual_kubelet_leader\{node="vk-a"\} 0$/m);
});

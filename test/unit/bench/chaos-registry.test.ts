import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pickScenarios, SCENARIO_NAMES } from '../../../bench/chaos/index.js';
import { summaryTable } from '../../../bench/chaos/run.js';

describe('chaos registry', () => {
  test('lists the whole set; the soak runs only when named', () => {
    assert.deepEqual(SCENARIO_NAMES, [
      'kill-restart',
      'apiserver-outage',
      'etcd-restart',
      'controller-manager-down',
      'provider-faults',
      'bad-specs',
      'fuzz',
      'authz-matrix',
      'soak',
    ]);
    const all = pickScenarios(undefined);
    assert.ok(Array.isArray(all));
    assert.deepEqual(
      all.map((s) => s.name),
      SCENARIO_NAMES.filter((n) => n !== 'soak'),
    );
    const some = pickScenarios('fuzz,soak');
    assert.ok(Array.isArray(some));
    assert.deepEqual(
      some.map((s) => s.name),
      ['fuzz', 'soak'],
    );
    const unknown = pickScenarios('fuzz,nope');
    assert.equal(typeof unknown, 'string');
    assert.match(unknown as string, /unknown scenario\(s\) nope/);
  });

  test('the on-request soak loads its module', async () => {
    const entry = pickScenarios('soak');
    assert.ok(Array.isArray(entry));
    const loaded = await entry[0]?.load();
    assert.ok(loaded && !('notBuilt' in loaded));
    assert.equal(typeof loaded.run, 'function');
  });

  test('the table has a line per scenario and a failed one says why', () => {
    const text = summaryTable({
      fuzz: { ok: true, requests: 10, rssStartBytes: 1.23456 },
      'bad-specs': { ok: false, reason: 'it crashed', crashes: 1 },
    });
    const lines = text.split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[1] ?? '', /^fuzz\s+yes\s+requests=10 rssStartBytes=1\.235$/);
    assert.match(lines[2] ?? '', /^bad-specs\s+NO\s+crashes=1$/);
    assert.match(lines[3] ?? '', /reason: it crashed$/);
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ROUTES } from '../../src/api/routes/table.js';
import { CAPABILITIES, CAPABILITY_NAMES, type Capability } from '../../src/provider.js';

const guide = readFileSync(new URL('../../docs/provider-guide.md', import.meta.url), 'utf8');

interface Row {
  readonly methods: readonly string[];
  readonly uses: string;
}

/** The rows of the capability table of the guide's "Optional capabilities" section. */
function capabilityTable(): Map<string, Row> {
  const section = guide.split(/^## /m).find((s) => s.startsWith('Optional capabilities'));
  assert.ok(section, 'the guide has an "Optional capabilities" section');
  const rows = new Map<string, Row>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const name = /^`(\w+)`$/.exec(cells[1] ?? '')?.[1];
    if (name === undefined) continue;
    const methods = [...(cells[2] ?? '').matchAll(/`(\w+)\(/g)].map((m) => m[1] ?? '');
    rows.set(name, { methods, uses: cells[3] ?? '' });
  }
  return rows;
}

test('the provider guide lists every capability with its methods, as CAPABILITIES does', () => {
  const rows = capabilityTable();
  assert.deepEqual([...rows.keys()], [...CAPABILITY_NAMES]);
  for (const name of CAPABILITY_NAMES) {
    assert.deepEqual(rows.get(name)?.methods, [...CAPABILITIES[name].methods], name);
  }
});

test('the provider guide names every kubelet API route of each capability', () => {
  const rows = capabilityTable();
  const routed = ROUTES.filter(
    (r): r is typeof r & { capability: Capability } => r.capability !== undefined,
  );
  assert.ok(routed.length > 0);
  for (const route of routed) {
    const uses = rows.get(route.capability)?.uses ?? '';
    assert.ok(
      uses.includes(`\`${route.pattern}\``),
      `the row of ${route.capability} names ${route.pattern}`,
    );
  }
});

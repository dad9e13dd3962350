import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Cgroups } from '../../../../src/providers/process/cgroups.js';

/** A directory that looks like a cgroup mount; the kernel's files are written by the test. */
function fakeRoot(t: TestContext): string {
  const root = mkdtempSync(join(tmpdir(), 'vk-cgroup-unit-'));
  t.after(() => {
    rmSync(root, { recursive: true, force: true });
  });
  return root;
}

test('cgroup v2: limits, usage, OOM kills and process lists come from the unified tree', (t) => {
  const root = fakeRoot(t);
  writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  mkdirSync(join(root, 'vk'), { recursive: true });
  writeFileSync(join(root, 'vk', 'cgroup.controllers'), 'cpu memory pids\n');
  const cg = Cgroups.detect('vk', root);
  assert.ok(cg instanceof Cgroups);
  assert.equal(cg.version, 'v2');
  assert.equal(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8'), '+memory +cpu +pids');
  const procs = cg.prepare('u1', 'app', { memoryBytes: 64 * 1024 * 1024, cpuCores: 0.25 });
  const dir = join(root, 'vk', 'podu1', 'app');
  assert.deepEqual(procs, [join(dir, 'cgroup.procs')]);
  assert.equal(readFileSync(join(dir, 'memory.max'), 'utf8'), String(64 * 1024 * 1024));
  assert.equal(readFileSync(join(dir, 'cpu.max'), 'utf8'), '25000 100000');
  writeFileSync(join(dir, 'memory.current'), '5000\n');
  writeFileSync(join(dir, 'memory.stat'), 'anon 3000\ninactive_file 1000\n');
  writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\n');
  writeFileSync(join(dir, 'pids.current'), '2\n');
  writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
  writeFileSync(join(dir, 'cgroup.procs'), '101\n102\n');
  assert.deepEqual(cg.usage('u1', 'app'), {
    cpuNs: 1_500_000,
    usageBytes: 5000,
    workingSetBytes: 4000,
    rssBytes: 3000,
    processes: 2,
  });
  assert.equal(cg.oomKills('u1', 'app'), 1);
  assert.deepEqual(cg.processes('u1').sort(), [101, 102]);
});

test('cgroup v1: one cgroup per hierarchy; no limit is -1', (t) => {
  const root = fakeRoot(t);
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids']) mkdirSync(join(root, c));
  const cg = Cgroups.detect('vk/node', root);
  assert.ok(cg instanceof Cgroups);
  assert.equal(cg.version, 'v1');
  // A real cpu hierarchy has the CFS files; the fake one gets them as the kernel would.
  mkdirSync(join(root, 'cpu', 'vk', 'node', 'podu1', 'app'), { recursive: true });
  writeFileSync(join(root, 'cpu', 'vk', 'node', 'podu1', 'app', 'cpu.cfs_quota_us'), '-1');
  const procs = cg.prepare('u1', 'app', { cpuCores: 2 });
  assert.equal(procs.length, 4);
  const mem = join(root, 'memory', 'vk', 'node', 'podu1', 'app');
  assert.equal(readFileSync(join(mem, 'memory.limit_in_bytes'), 'utf8'), '-1');
  assert.equal(
    readFileSync(join(root, 'cpu', 'vk', 'node', 'podu1', 'app', 'cpu.cfs_quota_us'), 'utf8'),
    '200000',
  );
  writeFileSync(join(mem, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
  assert.equal(cg.oomKills('u1', 'app'), 2);
});

test('cgroups that cannot be used say why', (t) => {
  const root = fakeRoot(t);
  const why = (r: Cgroups | string): string => (typeof r === 'string' ? r : 'usable');
  assert.match(why(Cgroups.detect('vk', root)), /no cgroup v1 memory hierarchy/);
  writeFileSync(join(root, 'cgroup.controllers'), 'pids\n');
  assert.match(why(Cgroups.detect('vk', root)), /cgroup v2 lacks the memory controller/);
});

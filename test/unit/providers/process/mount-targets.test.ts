import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createMountTargets, MountTargets } from '../../../../src/providers/process/volumes.js';
import type { Mount } from '../../../../src/providers/process/launch.js';

function root(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vk-targets-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

const mount = (target: string): Mount => ({ source: tmpdir(), target, readOnly: false });

test('a pod alone: what it created goes with it, deepest first', (t) => {
  const dir = root(t);
  const targets = new MountTargets();
  const m = [mount(join(dir, 'a', 'b', 'c'))];
  const created = createMountTargets(m);
  assert.deepEqual(created, [join(dir, 'a'), join(dir, 'a', 'b'), join(dir, 'a', 'b', 'c')]);
  targets.use('pod-a', m, created);
  targets.release('pod-a');
  assert.equal(existsSync(join(dir, 'a')), false);
});

test('a path another pod needs passes to it, and goes with the last pod that needs it', (t) => {
  const dir = root(t);
  const handed: string[] = [];
  const targets = new MountTargets((pod) => handed.push(pod));
  // A creates <dir>/s and <dir>/s/a; B's target <dir>/s/b sits under A's <dir>/s.
  const a = [mount(join(dir, 's', 'a'))];
  const aCreated = createMountTargets(a);
  targets.use('pod-a', a, aCreated);
  const b = [mount(join(dir, 's', 'b'))];
  const bCreated = createMountTargets(b);
  assert.deepEqual(bCreated, [join(dir, 's', 'b')]);
  targets.use('pod-b', b, bCreated);
  targets.release('pod-a');
  assert.equal(existsSync(join(dir, 's', 'a')), false, "A's own target is gone");
  assert.equal(existsSync(join(dir, 's', 'b')), true, "B's target stays");
  assert.deepEqual(handed, ['pod-b']);
  assert.deepEqual(bCreated, [join(dir, 's', 'b'), join(dir, 's')], 'B now removes <dir>/s');
  targets.release('pod-b');
  assert.equal(existsSync(join(dir, 's')), false);
});

test('the same target in two pods: the one that found it never removes it', (t) => {
  const dir = root(t);
  const targets = new MountTargets();
  const m = [mount(join(dir, 'shared'))];
  const aCreated = createMountTargets(m);
  targets.use('pod-a', m, aCreated);
  const bCreated = createMountTargets(m);
  assert.deepEqual(bCreated, []);
  targets.use('pod-b', m, bCreated);
  targets.release('pod-a');
  assert.equal(existsSync(join(dir, 'shared')), true);
  targets.release('pod-b');
  assert.equal(existsSync(join(dir, 'shared')), false);
});

/**
 * Pods whose start is in flight when the agent stops or the pod is deleted: every process the
 * provider spawned is noted in its pod's state from the start (so whatever kills the noted
 * processes, as the agent's successor or a clean-up does, leaves none), `close()` ends the
 * starts in flight before it resolves, and `deletePod` does not leave a start running behind it.
 */
import type { V1Pod } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { ProcessProvider } from '../../../../src/providers/process/index.js';
import { killNoted, PROCESSES_FILE } from '../../../../src/providers/process/state.js';
import { processFixture } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const never = new AbortController().signal;
/** Pods started at once in each test. */
const PODS = 4;

interface Starting {
  readonly provider: ProcessProvider;
  /** Another provider on the same state directory: the agent restarted. */
  readonly make: () => ProcessProvider;
  readonly dir: string;
  /** In the name of every pod of the test, so in its sandbox's command line (its hostname). */
  readonly token: string;
  readonly pods: readonly V1Pod[];
}

/** A provider and pods for it; whatever runs with the test's token is killed after the test. */
function setup(t: TestContext): Starting | undefined {
  // No checks of the pods (an hour apart): a sandbox the test kills is not made again, as it
  // would not be by an agent that is gone.
  const { provider, make, dir } = processFixture(t, 'starting', {
    config: { network: 'host', monitorIntervalMs: 3_600_000 },
  });
  if (!provider.isolation.startsWith('namespaces')) {
    t.skip(provider.isolation);
    return undefined;
  }
  const token = `starting-${randomBytes(4).toString('hex')}`;
  // What a test failing before its end leaves (the fixture reaps only what is noted).
  t.after(() => {
    for (const p of sandboxProcesses(token)) {
      for (const target of [-p.pgrp, p.pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // Gone, or not a group.
        }
      }
    }
  });
  const pods = Array.from({ length: PODS }, (_, i): V1Pod => ({
    metadata: { namespace: 'unit', name: `${token}-${String(i)}`, uid: randomUUID() },
    spec: {
      terminationGracePeriodSeconds: 0,
      containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
    },
  }));
  return { provider, make, dir, token, pods };
}

/** Live processes whose command line has `token` (a zombie's has none), with their group. */
function sandboxProcesses(token: string): { pid: number; pgrp: number }[] {
  const out: { pid: number; pgrp: number }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (!readFileSync(join('/proc', entry, 'cmdline'), 'utf8').includes(token)) continue;
      const stat = readFileSync(join('/proc', entry, 'stat'), 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(entry), pgrp: Number(fields[2]) });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** The PIDs of the `processes` file of the pod directory `dir`, alive or not. */
function notedPids(dir: string): number[] {
  const path = join(dir, PROCESSES_FILE);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => Number(line.split(' ')[0]));
}

/** The pod directories of the state directory `dir`. */
function podDirs(dir: string): string[] {
  const pods = join(dir, 'pods');
  return existsSync(pods) ? readdirSync(pods).map((d) => join(pods, d)) : [];
}

/** Starts every pod without waiting; `pending()` counts the createPod calls not yet ended. */
function createAll(s: Starting): { creates: Promise<void>[]; pending: () => number } {
  let ended = 0;
  const creates = s.pods.map((p) => s.provider.createPod(p, never));
  for (const c of creates) {
    void c.then(
      () => ended++,
      () => ended++,
    );
  }
  return { creates, pending: () => PODS - ended };
}

/**
 * Resolves once every pod's createPod has spawned its sandbox, waiting on promises only: no
 * timer or I/O callback runs meanwhile, so no start can have ended (createPod gets to the spawn
 * waiting on nothing but promises, and a sandbox's readiness is polled on a timer).
 */
async function spawned(s: Starting): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
  // Each sandbox's first process leads a process group of its own.
  const leaders = sandboxProcesses(s.token).filter((p) => p.pid === p.pgrp);
  assert.equal(leaders.length, PODS, 'every pod has a sandbox being set up');
}

/** Resolves once no process of the test's pods is left. */
async function allGone(token: string, what: string): Promise<void> {
  await waitFor(() => sandboxProcesses(token).length === 0, { timeoutMs: 10_000, what });
}

test('a sandbox being set up is noted at once: killing the noted processes leaves none', async (t) => {
  const s = setup(t);
  if (!s) return;
  const { creates } = createAll(s);
  await spawned(s);
  // What stays of an agent that exits while its pods start: their directories, and the
  // processes noted there, which a clean-up or the next agent stops.
  for (const d of podDirs(s.dir)) killNoted(d);
  await Promise.allSettled(creates);
  await allGone(s.token, 'no process of the pods left after their noted processes were killed');
});

test('an agent restarted while pods were starting stops what those starts spawned', async (t) => {
  const s = setup(t);
  if (!s) return;
  const { creates } = createAll(s);
  await spawned(s);
  // The next agent, made before the first goes on: the starts left no pod, only processes.
  const again = s.make();
  assert.deepEqual(again.podKeys(), [], 'no pod of a start that never ended is adopted');
  await Promise.allSettled(creates);
  await allGone(s.token, 'no process of the pods left after the restart');
});

for (const when of ['before', 'after'] as const) {
  test(`close() ${when} the sandboxes are spawned ends the starts: what runs then is noted`, async (t) => {
    const s = setup(t);
    if (!s) return;
    const { creates, pending } = createAll(s);
    if (when === 'after') await spawned(s);
    await s.provider.close();
    assert.equal(pending(), 0, 'every createPod has ended when close() resolves');
    // Also a group leader killed a moment ago (a zombie), whose group is still exiting.
    const noted = new Set(podDirs(s.dir).flatMap((d) => notedPids(d)));
    for (const p of sandboxProcesses(s.token)) {
      assert.ok(
        noted.has(p.pid) || noted.has(p.pgrp),
        `process ${String(p.pid)} (group ${String(p.pgrp)}) runs without being noted`,
      );
    }
    await Promise.allSettled(creates);
    for (const d of podDirs(s.dir)) killNoted(d);
    await allGone(s.token, 'no process of the pods left after their noted processes were killed');
  });
}

test('deletePod of a pod being started ends the start first: nothing of the pod is left', async (t) => {
  const s = setup(t);
  if (!s) return;
  const { creates, pending } = createAll(s);
  await spawned(s);
  await Promise.all(s.pods.map((p) => s.provider.deletePod(p, never)));
  assert.equal(pending(), 0, 'every createPod has ended when deletePod resolves');
  await Promise.allSettled(creates);
  assert.deepEqual(s.provider.podKeys(), [], 'no pod is known after its delete');
  await allGone(s.token, 'no process of the deleted pods left');
  assert.deepEqual(podDirs(s.dir), [], 'no pod directory is left');
});

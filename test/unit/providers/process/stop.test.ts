/**
 * How the process provider stops a pod whose command ignores SIGTERM: a later delete with a
 * shorter grace period, or an aborted signal, escalates to SIGKILL at once instead of waiting
 * out the grace period. Processes noted for a pod are killed only while their PID still names them.
 */
import type { V1Pod } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { ProcessProvider } from '../../../../src/providers/process/index.js';
import { isAlive, processRef } from '../../../../src/providers/process/proc.js';
import { killNoted, noteProcesses } from '../../../../src/providers/process/state.js';
import { processFixture } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const never = new AbortController().signal;
/** The longest grace period the API accepts. */
const FOREVER_SECONDS = 2_147_483_647;

function setup(t: TestContext): ProcessProvider {
  return processFixture(t, 'stop', { config: { network: 'host' } }).provider;
}

/** A pod whose only container ignores SIGTERM, with a grace period that never ends. */
function stubborn(name: string): V1Pod {
  return {
    metadata: { namespace: 'unit', name, uid: randomUUID() },
    spec: {
      terminationGracePeriodSeconds: FOREVER_SECONDS,
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sh', '-c', "trap '' TERM; echo trapped; while :; do sleep 1; done"],
        },
      ],
    },
  };
}

const withGrace = (pod: V1Pod, seconds: number): V1Pod => ({
  ...pod,
  metadata: {
    ...pod.metadata,
    deletionTimestamp: new Date().toISOString(),
    deletionGracePeriodSeconds: seconds,
  },
});

/** Creates `pod` and resolves once its command has set its trap. */
async function started(provider: ProcessProvider, pod: V1Pod): Promise<void> {
  const name = pod.metadata?.name ?? '';
  await provider.createPod(pod, never);
  await waitFor(
    async () => {
      if ((await provider.getPodStatus('unit', name, never))?.phase !== 'Running') return false;
      const logs = await provider.getContainerLogs(
        'unit',
        name,
        'app',
        { follow: false, previous: false, timestamps: false },
        never,
      );
      return (await text(logs)).includes('trapped');
    },
    { timeoutMs: 10_000, what: `${name} running with its trap set` },
  );
}

/** Whether the pod's container has stopped (or the provider forgot the pod). */
async function stopped(provider: ProcessProvider, name: string): Promise<boolean> {
  const s = await provider.getPodStatus('unit', name, never);
  return !s || (s.containerStatuses ?? []).every((c) => c.state?.running === undefined);
}

test('a grace-0 delete kills a pod that ignores SIGTERM while a graceful delete waits', async (t) => {
  const provider = setup(t);
  const pod = stubborn('trapper');
  await started(provider, pod);
  const graceful = provider.deletePod(withGrace(pod, FOREVER_SECONDS), never);
  let gracefulDone = false;
  void graceful.then(() => (gracefulDone = true));
  // SIGTERM went out and was ignored: the graceful delete keeps waiting.
  await waitFor(
    async () =>
      ((await provider.getPodStatus('unit', 'trapper', never))?.containerStatuses ?? []).every(
        (c) => c.state?.running !== undefined,
      ) && !gracefulDone,
    { timeoutMs: 2_000, what: 'a graceful delete still waiting' },
  );
  const forcedAt = performance.now();
  await provider.deletePod(withGrace(pod, 0), never);
  const tookMs = performance.now() - forcedAt;
  assert.ok(tookMs < 1_500, `the grace-0 delete took ${String(tookMs)} ms`);
  assert.ok(await stopped(provider, 'trapper'));
  await graceful;
});

test('an aborted signal ends the wait of a graceful delete: the pod is killed', async (t) => {
  const provider = setup(t);
  const pod = stubborn('aborted');
  await started(provider, pod);
  const abort = new AbortController();
  const deleting = provider.deletePod(withGrace(pod, FOREVER_SECONDS), abort.signal);
  let settled = false;
  void deleting.then(
    () => (settled = true),
    () => (settled = true),
  );
  await waitFor(() => provider.getPods(never).then((pods) => pods.length === 1 && !settled), {
    timeoutMs: 2_000,
    what: 'a graceful delete in progress',
  });
  const abortedAt = performance.now();
  abort.abort();
  await deleting.catch(() => undefined);
  const tookMs = performance.now() - abortedAt;
  assert.ok(tookMs < 1_500, `the aborted delete took ${String(tookMs)} ms`);
  assert.ok(await stopped(provider, 'aborted'));
});

test('a noted PID that ended and was given to another process is not killed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vk-noted-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const other = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  const pid = other.pid ?? 0;
  const ref = processRef(pid);
  assert.ok(ref, 'the other process runs');
  // The note of a process that had this PID before: same number, another start time.
  noteProcesses(dir, { pid, start: ref.start - 1 });
  assert.deepEqual(killNoted(dir), []);
  assert.ok(isAlive(ref), 'the process now under that PID lives');
  // Noted as it is, it is killed.
  noteProcesses(dir, ref);
  assert.deepEqual(killNoted(dir), [ref]);
  await waitFor(() => !isAlive(ref), { what: 'the noted process to die' });
});

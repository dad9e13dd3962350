/**
 * Ephemeral containers (`kubectl debug`) in the process provider, with real processes: added by
 * updatePod, started once in the pod's namespaces, attachable, never restarted, gone with the
 * pod.
 */
import type { V1EphemeralContainer, V1Pod } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { ProcessProvider } from '../../../../src/providers/process/index.js';
import { isAlive } from '../../../../src/providers/process/proc.js';
import { processFixture } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;

function setup(t: TestContext): ProcessProvider {
  const { provider } = processFixture(t, 'ephemeral');
  assert.ok(
    provider.isolation.startsWith('namespaces'),
    `sharing the pod's PID namespace needs namespaces: ${provider.isolation}`,
  );
  return provider;
}

const appPod = (name: string): V1Pod => ({
  metadata: { namespace: 'unit', name, uid: randomUUID() },
  spec: {
    terminationGracePeriodSeconds: 1,
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  },
});

const withDebugger = (pod: V1Pod, debug: V1EphemeralContainer): V1Pod => {
  const copy = structuredClone(pod);
  if (copy.spec) copy.spec.ephemeralContainers = [...(copy.spec.ephemeralContainers ?? []), debug];
  return copy;
};

const ephemeralStatus = async (provider: ProcessProvider, name: string, container: string) =>
  (await provider.getPodStatus('unit', name, signal))?.ephemeralContainerStatuses?.find(
    (c) => c.name === container,
  );

test('an ephemeral container with stdin and a TTY is attached to, sees the target, ends once', async (t) => {
  const provider = setup(t);
  const pod = appPod('debug');
  await provider.createPod(pod, signal);
  await waitFor(
    async () => (await provider.getPodStatus('unit', 'debug', signal))?.phase === 'Running',
    { what: 'Running' },
  );
  const debug = withDebugger(pod, {
    name: 'debugger',
    image: 'busybox',
    targetContainerName: 'app',
    stdin: true,
    tty: true,
    command: ['sh'],
  });
  await provider.updatePod(debug, signal);
  const running = await waitFor(
    async () => {
      const s = await ephemeralStatus(provider, 'debug', 'debugger');
      return s?.state?.running ? s : false;
    },
    { what: 'the debugger Running' },
  );
  assert.equal(running.ready, false);
  assert.equal(running.started, undefined);
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const got = text(stdout);
  const session = provider.attachToContainer(
    'unit',
    'debug',
    'debugger',
    { stdin, stdout, tty: true },
    signal,
  );
  // The target's process is visible: the pod has one PID namespace.
  stdin.write('ps -e -o args | grep -c "^sleep 3600" ; echo hi-from-debug; exit 3\n');
  await session;
  stdout.end();
  const out = await got;
  assert.match(out, /hi-from-debug/);
  // The count is on a line of its own, after the shell's prompt when the prompt came late.
  assert.match(out, /^(?:# )?1\r?$/m);
  const ended = await waitFor(
    async () => {
      const s = await ephemeralStatus(provider, 'debug', 'debugger');
      return s?.state?.terminated ? s.state.terminated : false;
    },
    { what: 'the debugger Terminated' },
  );
  assert.equal(ended.exitCode, 3);
  // The log has what the shell printed; the pod and its app container carry on, unchanged.
  const log = await text(
    await provider.getContainerLogs(
      'unit',
      'debug',
      'debugger',
      { follow: false, previous: false, timestamps: false },
      signal,
    ),
  );
  assert.match(log, /hi-from-debug/);
  const status = await provider.getPodStatus('unit', 'debug', signal);
  assert.equal(status?.phase, 'Running');
  assert.equal(status?.containerStatuses?.length, 1);
  assert.equal(status?.containerStatuses?.[0]?.restartCount, 0);
  assert.equal(status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
  // Never restarted, also after more monitor rounds and another update.
  await provider.updatePod(debug, signal);
  await new Promise((r) => setTimeout(r, 300));
  const after = await ephemeralStatus(provider, 'debug', 'debugger');
  assert.equal(after?.restartCount, 0);
  assert.equal(after?.state?.terminated?.exitCode, 3);
});

test('a running ephemeral container is stopped with the pod', async (t) => {
  const provider = setup(t);
  const pod = appPod('gone');
  await provider.createPod(pod, signal);
  const debug = withDebugger(pod, { name: 'd', image: 'busybox', command: ['sleep', '3600'] });
  await provider.updatePod(debug, signal);
  await waitFor(async () => (await ephemeralStatus(provider, 'gone', 'd'))?.state?.running, {
    what: 'd Running',
  });
  const main = await waitFor(() => provider.mainProcess('unit', 'gone', 'd'), { what: 'd main' });
  await provider.deletePod(debug, signal);
  assert.equal(isAlive(main), false);
  assert.deepEqual(provider.podKeys(), []);
});

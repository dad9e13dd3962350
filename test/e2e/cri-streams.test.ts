/**
 * Interactive streams of the cri provider through the runtime's streaming server, against the
 * real control plane and a real containerd (the dev runtime): `kubectl exec -i` and `-it`,
 * `kubectl attach`, `kubectl cp` out of and into a container, and `kubectl debug` with an
 * ephemeral container in the target's PID namespace.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { BUSYBOX_OS_RELEASE } from '../../src/devcluster/index.js';
import type { V1Container } from '../../src/wire.js';
import { onNode } from '../helpers/agent.js';
import { kubectl, testCluster } from '../helpers/cluster.js';
import { criNode, runtimeForFile } from '../helpers/cri.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

const rt = runtimeForFile('vk-e2e-cri-streams-');

/** A CRI node with one pod of the busybox image; resolves to the namespace once it runs. */
async function runningPod(
  t: TestContext,
  name: string,
  container: Omit<V1Container, 'name' | 'image'>,
  restartPolicy = 'Always',
): Promise<string> {
  const { ns, nodeName } = await criNode(t, rt, {
    prefix: 'cris',
    config: { syncIntervalMs: 300 },
  });
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name },
      spec: {
        ...onNode(nodeName),
        restartPolicy,
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'main', image: rt.info.images.busybox, ...container }],
      },
    },
  });
  await waitFor(
    async () => {
      const pod = await core().readNamespacedPod({ name, namespace: ns });
      return pod.status?.containerStatuses?.[0]?.state?.running ? pod : undefined;
    },
    { what: `pod ${name} running`, timeoutMs: 120_000 },
  );
  return ns;
}

const sleeper = { command: ['sh', '-c', 'trap "exit 0" TERM; while true; do sleep 1; done'] };

test('kubectl exec -i carries piped stdin and the exit code; plain exec streams output', async (t) => {
  const ns = await runningPod(t, 'shell', sleeper);
  const r = await kubectl(
    [
      'exec',
      '-i',
      'shell',
      '-n',
      ns,
      '--',
      'sh',
      '-c',
      'read l; echo "got $l"; echo err >&2; exit 3',
    ],
    { input: 'hello over stdin\n', allowFailure: true },
  );
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'got hello over stdin\n');
  assert.match(r.stderr, /^err$/m);
  const cat = await kubectl(['exec', 'shell', '-n', ns, '--', 'cat', '/etc/os-release']);
  assert.equal(cat.stdout, BUSYBOX_OS_RELEASE);
  const ok = await kubectl(['exec', 'shell', '-n', ns, '--', 'true']);
  assert.equal(ok.code, 0);
});

test('kubectl exec -it drives a terminal: the size reaches the container', async (t) => {
  const ns = await runningPod(t, 'tty', sleeper);
  const c = testCluster();
  // `script` gives kubectl a real pseudo-terminal; stty sets its size. containerd starts the
  // process before it applies the first size (as under the kubelet on containerd), so the shell
  // waits up to 5 s for a size to be set (busybox's `stty size` prints nothing for 0x0).
  const inner = `i=0; until s=$(stty size 2>/dev/null) && [ -n "$s" ] && [ "$s" != "0 0" ]; do i=$((i+1)); [ $i -ge 50 ] && break; sleep 0.1; done; echo "size $s"; [ -t 0 ] && echo is-a-tty; exit 4`;
  const cmd = `stty rows 33 cols 101; ${c.kubectlPath} exec -it tty -n ${ns} -- sh -c '${inner}'; echo "kubectl=$?"`;
  const out = await new Promise<string>((resolve) => {
    const child = spawn('script', ['-qec', cmd, '/dev/null'], {
      env: { ...process.env, KUBECONFIG: c.kubeconfigPath },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', () => resolve(text));
    child.stdin.end();
  });
  assert.match(out, /size 33 101/);
  assert.match(out, /is-a-tty/);
  assert.match(out, /kubectl=4/);
});

test('kubectl attach connects to the main process: its stdin and its output', async (t) => {
  const ns = await runningPod(
    t,
    'attached',
    // stdinOnce: the end of kubectl's stdin closes the process's stdin and the output stays
    // attached until it exits. Without it the runtime detaches at the end of the client's stdin
    // (containerd's rule, under the kubelet too), which may come before the output.
    { command: ['sh', '-c', 'read l; echo "attached: $l"'], stdin: true, stdinOnce: true },
    'Never',
  );
  const r = await kubectl(['attach', '-i', 'attached', '-n', ns], {
    input: 'ping over attach\n',
    allowFailure: true,
    timeoutMs: 60_000,
  });
  assert.match(r.stdout, /attached: ping over attach/, r.stderr);
});

test('kubectl cp copies a file out of the container', async (t) => {
  const ns = await runningPod(t, 'files', sleeper);
  const local = await mkdtemp(join(tmpdir(), 'vk-e2e-cp-'));
  t.after(() => rm(local, { recursive: true, force: true }));
  await kubectl(['cp', `${ns}/files:/etc/os-release`, join(local, 'os-release')], {
    timeoutMs: 60_000,
  });
  assert.equal(await readFile(join(local, 'os-release'), 'utf8'), BUSYBOX_OS_RELEASE);
});

/** A text file of a few hundred KiB: lines of random hex, so kubectl's output compares as text. */
function hexLines(bytes: number): string {
  const lines: string[] = [];
  for (let size = 0; size < bytes; size += 65) lines.push(randomBytes(32).toString('hex'));
  return `${lines.join('\n')}\n`;
}

test('kubectl cp copies a file into the container, and exec -i gets the end of stdin', async (t) => {
  const ns = await runningPod(t, 'inbox', sleeper);
  const local = await mkdtemp(join(tmpdir(), 'vk-e2e-cp-in-'));
  t.after(() => rm(local, { recursive: true, force: true }));
  const text = hexLines(300 * 1024);
  await writeFile(join(local, 'data.txt'), text);
  // tar xf - in the container exits only when its stdin ends.
  await kubectl(['cp', join(local, 'data.txt'), `${ns}/inbox:/tmp/x`, '-c', 'main'], {
    timeoutMs: 60_000,
  });
  const cat = await kubectl(['exec', 'inbox', '-n', ns, '--', 'cat', '/tmp/x']);
  assert.equal(cat.stdout.length, text.length);
  assert.ok(cat.stdout === text, 'the copied file differs');
  const wc = await kubectl(['exec', '-i', 'inbox', '-n', ns, '--', 'wc', '-c'], {
    input: text,
    timeoutMs: 60_000,
  });
  assert.equal(wc.stdout.trim(), String(Buffer.byteLength(text)));
});

/** The pod's first ephemeral container's name and status, once `ready` accepts the pod. */
async function ephemeral(
  ns: string,
  name: string,
  what: string,
  ready: (s: k8s.V1ContainerStatus) => boolean,
): Promise<{ name: string; status: k8s.V1ContainerStatus }> {
  return waitFor(
    async () => {
      const pod = await core().readNamespacedPod({ name, namespace: ns });
      const status = pod.status?.ephemeralContainerStatuses?.[0];
      const spec = pod.spec?.ephemeralContainers?.[0];
      return spec && status && ready(status) ? { name: spec.name, status } : undefined;
    },
    { what, timeoutMs: 120_000 },
  );
}

test("kubectl debug --target runs an ephemeral container in the target's PID namespace, once", async (t) => {
  const ns = await runningPod(t, 'target', sleeper);
  // Not interactive: kubectl adds the container and returns; its output is in its log.
  await kubectl([
    'debug',
    'target',
    '-n',
    ns,
    `--image=${rt.info.images.busybox}`,
    '--target=main',
    '--',
    'sh',
    '-c',
    'echo "pid1: $(tr "\\0" " " < /proc/1/cmdline)"; ps -o args',
  ]);
  const done = await ephemeral(ns, 'target', 'the debug container Terminated', (s) =>
    Boolean(s.state?.terminated),
  );
  assert.equal(done.status.state?.terminated?.exitCode, 0);
  assert.equal(done.status.ready, false);
  assert.equal(done.status.restartCount, 0);
  const logs = await kubectl(['logs', 'target', '-n', ns, '-c', done.name]);
  // PID 1 of its namespace is the target's main process.
  assert.match(logs.stdout, /^pid1: sh -c trap "exit 0" TERM; while true; do sleep 1; done $/m);
  assert.match(logs.stdout, /^sh -c trap "exit 0" TERM/m);
  // Never restarted, and the target kept running.
  const pod = await core().readNamespacedPod({ name: 'target', namespace: ns });
  assert.equal(pod.status?.phase, 'Running');
  assert.equal(pod.status?.containerStatuses?.[0]?.restartCount, 0);
  assert.equal(pod.status?.ephemeralContainerStatuses?.[0]?.state?.terminated?.exitCode, 0);
});

test('kubectl debug -i attaches to the running ephemeral container: its stdin and output', async (t) => {
  const ns = await runningPod(t, 'probed', sleeper);
  const c = testCluster();
  const child = spawn(
    c.kubectlPath,
    [
      'debug',
      '-i',
      'probed',
      '-n',
      ns,
      `--image=${rt.info.images.busybox}`,
      '--target=main',
      '--',
      'sh',
      '-c',
      'read l; echo "got $l"; ps -o args | grep -c "^sh -c trap"',
    ],
    { env: { ...process.env, KUBECONFIG: c.kubeconfigPath }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const running = await ephemeral(ns, 'probed', 'the debug container Running', (s) =>
    Boolean(s.state?.running),
  );
  assert.equal(running.status.ready, false);
  // kubectl copies the line once it has attached; the shell waits for it. kubectl's stdin stays
  // open: at its end the runtime would detach (kubectl debug sets no stdinOnce).
  child.stdin.write('over attach\n');
  const code = await exited;
  child.stdin.end();
  assert.match(out, /^got over attach$/m, err);
  assert.match(out, /^1$/m, err);
  assert.equal(code, 0, err);
  const done = await ephemeral(ns, 'probed', 'the debug container Terminated', (s) =>
    Boolean(s.state?.terminated),
  );
  assert.equal(done.status.state?.terminated?.exitCode, 0);
});

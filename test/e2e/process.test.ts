/**
 * The process provider against the real control plane: pods run as local processes in their own
 * namespaces, and kubectl (logs, exec, port-forward, top), the Job controller and the kubelet
 * API see them as they would see a kubelet's. Every test removes the processes, mounts, cgroups
 * and state directories it made (see `reap`).
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { primaryAddress } from '../../src/cli/run.js';
import { HELLO_OVERRIDES } from '../../src/cli/start.js';
import { freePorts } from '../../src/devcluster/cluster.js';
import { ProcessProvider, type ProcessConfig } from '../../src/providers/process/index.js';
import type { PodRecord } from '../../src/providers/process/state.js';
import {
  nodeKubeconfig,
  onNode,
  spawnAgent,
  startNode,
  uniqueNodeName,
  waitNodeReady,
  type InProcessNode,
  type SpawnedAgent,
} from '../helpers/agent.js';
import { kubectl, podSummary, testCluster, testNamespace } from '../helpers/cluster.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { processStateDir as stateDir, randomPodCidr, reap } from '../helpers/process-pods.js';
import { cidrContains, netnsName, parseCidr } from '../../src/providers/process/network.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface Fixture {
  readonly ns: string;
  readonly node: InProcessNode;
  readonly nodeName: string;
  readonly provider: ProcessProvider;
  /** The node's pod CIDR (each fixture has a random one, so runs at once do not collide). */
  readonly podCidr: string;
}

async function fixture(
  t: TestContext,
  config: ProcessConfig = {},
  nodeIP?: string,
): Promise<Fixture> {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('proc');
  const dir = stateDir();
  const podCidr = randomPodCidr();
  const provider = new ProcessProvider({
    nodeName,
    config: { stateDir: dir, monitorIntervalMs: 200, podCIDR: podCidr, ...config },
    ...(nodeIP ? { nodeIP } : {}),
  });
  const forget = onOrphaned(() => {
    reap(dir, nodeName);
  });
  t.after(async () => {
    forget();
    await provider.close();
    reap(dir, nodeName);
  });
  const node = await startNode(t, {
    nodeName,
    api: true,
    provider,
    ...(nodeIP ? { nodeIP } : {}),
    // Config map changes reach mounted volumes within a second or two here (a minute by default).
    tuning: { pods: { volumeRefreshPeriodMs: 1_000 } },
  });
  return { ns, node, nodeName, provider, podCidr };
}

async function createPod(
  f: Pick<Fixture, 'ns' | 'nodeName'>,
  name: string,
  spec: Partial<k8s.V1PodSpec>,
): Promise<void> {
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name },
      spec: { ...onNode(f.nodeName), containers: [], terminationGracePeriodSeconds: 2, ...spec },
    },
  });
}

async function waitPod(
  f: Pick<Fixture, 'ns'>,
  name: string,
  what: string,
  ok: (pod: k8s.V1Pod) => boolean,
  timeoutMs = 30_000,
): Promise<k8s.V1Pod> {
  return waitFor(
    async () => {
      const pod = await core().readNamespacedPod({ name, namespace: f.ns });
      if (ok(pod)) return pod;
      throw new Error(`last seen: ${podSummary(pod)}`);
    },
    { what: `pod ${name}: ${what}`, timeoutMs },
  );
}

const running = (pod: k8s.V1Pod): boolean => pod.status?.phase === 'Running';

/** Waits for an Event on pod `name` with `reason` and a message matching `message`. */
async function waitEvent(
  f: Pick<Fixture, 'ns'>,
  name: string,
  reason: string,
  message: RegExp,
): Promise<k8s.CoreV1Event> {
  return waitFor(
    async () => {
      const list = await core().listNamespacedEvent({ namespace: f.ns });
      return list.items.find(
        (e) =>
          e.involvedObject.name === name &&
          e.reason === reason &&
          message.test(e.message ?? '') &&
          e.source?.component === 'virtual-kubelet',
      );
    },
    { what: `a ${reason} Event on pod ${name}` },
  );
}

test('a shell pod runs: kubectl logs and exec see its output, hostname and volumes', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedConfigMap({
    namespace: f.ns,
    body: { metadata: { name: 'app-config' }, data: { greeting: 'v1' } },
  });
  await core().createNamespacedSecret({
    namespace: f.ns,
    body: { metadata: { name: 'app-secret' }, stringData: { password: 's3cret' } },
  });
  await createPod(f, 'hello', {
    volumes: [
      { name: 'config', configMap: { name: 'app-config' } },
      { name: 'scratch', emptyDir: {} },
    ],
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sh', '-c', 'echo from-main > /scratch/note; echo hello; sleep 3600'],
        env: [
          { name: 'GREETING', value: 'hi there' },
          {
            name: 'PASSWORD',
            valueFrom: { secretKeyRef: { name: 'app-secret', key: 'password' } },
          },
        ],
        volumeMounts: [
          { name: 'config', mountPath: '/etc/app-config' },
          { name: 'scratch', mountPath: '/scratch' },
        ],
      },
    ],
  });
  const pod = await waitPod(f, 'hello', 'Running', running);
  assert.equal(pod.status?.containerStatuses?.[0]?.ready, true);
  // The node says how its pods are isolated, and has this machine's capacity.
  const node = await core().readNode({ name: f.nodeName });
  assert.equal(
    node.metadata?.annotations?.['virtual-kubelet.io/process-isolation'],
    f.provider.isolation,
  );
  assert.equal(node.status?.capacity?.cpu, String(cpus().length));
  await waitFor(async () => (await kubectl(['logs', 'hello', '-n', f.ns])).stdout === 'hello\n', {
    what: 'kubectl logs to print hello',
  });
  const stamped = (await kubectl(['logs', 'hello', '-n', f.ns, '--timestamps'])).stdout;
  assert.match(stamped, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z hello\n$/);

  const hostname = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'hostname']);
  assert.equal(hostname.stdout.trim(), 'hello');
  const env = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'sh', '-c', 'echo "$GREETING"']);
  assert.equal(env.stdout, 'hi there\n');
  const note = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'cat', '/scratch/note']);
  assert.equal(note.stdout, 'from-main\n');
  // The pod has its own PID namespace: its first process is PID 1 and the host's are not seen.
  const pids = await kubectl([
    'exec',
    'hello',
    '-n',
    f.ns,
    '--',
    'sh',
    '-c',
    'ls /proc | grep -c "^[0-9]"',
  ]);
  assert.ok(Number(pids.stdout) < 20, `few processes in the pod's PID namespace: ${pids.stdout}`);
  const failing = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'sh', '-c', 'exit 7'], {
    allowFailure: true,
  });
  assert.equal(failing.code, 7);

  // The env from a secret, the config map at its mountPath, the service-account token where
  // clients look for it; all read by the core and handed to the provider.
  const secret = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'sh', '-c', 'echo "$PASSWORD"']);
  assert.equal(secret.stdout, 's3cret\n');
  const read = async (): Promise<string> =>
    (await kubectl(['exec', 'hello', '-n', f.ns, '--', 'cat', '/etc/app-config/greeting'])).stdout;
  assert.equal(await read(), 'v1');
  const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
  const namespace = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'cat', `${sa}/namespace`]);
  assert.equal(namespace.stdout, f.ns);
  const token = await kubectl(['exec', 'hello', '-n', f.ns, '--', 'cat', `${sa}/token`]);
  assert.match(token.stdout, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
  // An edit of the config map reaches the running pod's volume, in place.
  await core().replaceNamespacedConfigMap({
    name: 'app-config',
    namespace: f.ns,
    body: { metadata: { name: 'app-config' }, data: { greeting: 'v2' } },
  });
  await waitFor(async () => (await read()) === 'v2' || undefined, {
    what: 'the edited config map in the mounted volume',
  });
  const write = await kubectl(
    ['exec', 'hello', '-n', f.ns, '--', 'sh', '-c', 'echo x > /etc/app-config/other'],
    { allowFailure: true },
  );
  assert.notEqual(write.code, 0, 'a configMap volume is read-only');
});

test('a Job runs to completion and the Job controller marks it Complete', async (t) => {
  const f = await fixture(t);
  const batch = testCluster().kc.makeApiClient(k8s.BatchV1Api);
  await batch.createNamespacedJob({
    namespace: f.ns,
    body: {
      metadata: { name: 'once' },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            ...onNode(f.nodeName),
            restartPolicy: 'Never',
            containers: [{ name: 'work', image: 'busybox', command: ['sh', '-c', 'echo done'] }],
          },
        },
      },
    },
  });
  await waitFor(
    async () => {
      const job = await batch.readNamespacedJob({ name: 'once', namespace: f.ns });
      return job.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True');
    },
    { what: 'the Job to be Complete', timeoutMs: 60_000 },
  );
  const pods = await core().listNamespacedPod({ namespace: f.ns, labelSelector: 'job-name=once' });
  const pod = pods.items[0];
  assert.equal(pod?.status?.phase, 'Succeeded');
  const state = pod.status?.containerStatuses?.[0]?.state?.terminated;
  assert.equal(state?.exitCode, 0);
  assert.equal(state.reason, 'Completed');
  const logs = await kubectl(['logs', pod.metadata?.name ?? '', '-n', f.ns]);
  assert.equal(logs.stdout, 'done\n');
});

test('a crashing container reaches CrashLoopBackOff with a growing back-off', async (t) => {
  const f = await fixture(t, { backoffInitialSeconds: 1, backoffMaxSeconds: 8 });
  await createPod(f, 'crasher', {
    containers: [{ name: 'app', image: 'busybox', command: ['sh', '-c', 'echo crashing; exit 3'] }],
  });
  const waiting = (seconds: number) => (pod: k8s.V1Pod) => {
    const w = pod.status?.containerStatuses?.[0]?.state?.waiting;
    return (
      w?.reason === 'CrashLoopBackOff' &&
      (w.message ?? '').startsWith(`back-off ${String(seconds)}s`)
    );
  };
  const first = await waitPod(f, 'crasher', 'back-off 1s', waiting(1));
  const cs = first.status?.containerStatuses?.[0];
  assert.equal(cs?.lastState?.terminated?.exitCode, 3);
  assert.equal(cs.lastState.terminated.reason, 'Error');
  assert.match(cs.state?.waiting?.message ?? '', /restarting failed container=app pod=crasher_/);
  const later = await waitPod(f, 'crasher', 'back-off 4s', waiting(4));
  assert.ok((later.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 3);
  assert.equal(later.status?.phase, 'Running');
  const previous = await kubectl(['logs', 'crasher', '-n', f.ns, '--previous']);
  assert.equal(previous.stdout, 'crashing\n');
  // The kubelet's Events: the starts, and the back-off (counted on one Event, not one each).
  await waitEvent(f, 'crasher', 'Started', /^Started container app$/);
  const backOff = await waitEvent(
    f,
    'crasher',
    'BackOff',
    /Back-off restarting failed container app/,
  );
  assert.equal(backOff.type, 'Warning');
});

test('a command that does not exist fails to start with a reason; no command at all waits', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'missing', {
    restartPolicy: 'Never',
    containers: [{ name: 'app', image: 'busybox', command: ['no-such-command-vk'] }],
  });
  const failed = await waitPod(f, 'missing', 'Failed', (p) => p.status?.phase === 'Failed');
  const term = failed.status?.containerStatuses?.[0]?.state?.terminated;
  assert.equal(term?.reason, 'StartError');
  assert.match(term.message ?? '', /"no-such-command-vk": executable file not found/);
  await waitEvent(f, 'missing', 'Failed', /"no-such-command-vk": executable file not found/);

  await createPod(f, 'unknown-image', {
    containers: [{ name: 'app', image: 'example.com/unknown:1' }],
  });
  const waiting = await waitPod(
    f,
    'unknown-image',
    'CreateContainerConfigError',
    (p) =>
      p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError',
  );
  assert.match(
    waiting.status?.containerStatuses?.[0]?.state?.waiting?.message ?? '',
    /no command, and image "example.com\/unknown:1" is not in the process provider's image table/,
  );
  const events = await waitFor(
    async () => {
      const list = await core().listNamespacedEvent({ namespace: f.ns });
      return list.items.find(
        (e) => e.involvedObject.name === 'unknown-image' && /image table/.test(e.message ?? ''),
      );
    },
    { what: 'an Event about the missing command' },
  );
  assert.equal(events.type, 'Warning');
});

test('securityContext: runAsNonRoot is refused as the kubelet refuses it; a pod as 65534 reads its own token and not the state directory', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'nonroot', {
    securityContext: { runAsNonRoot: true },
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  const refused = await waitPod(
    f,
    'nonroot',
    'CreateContainerConfigError',
    (p) =>
      p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError',
  );
  const uid = refused.metadata?.uid ?? '';
  const message = `container has runAsNonRoot and image will run as root (pod: "nonroot_${f.ns}(${uid})", container: app)`;
  assert.equal(refused.status?.containerStatuses?.[0]?.state?.waiting?.message, message);
  const event = await waitEvent(f, 'nonroot', 'Failed', /runAsNonRoot/);
  assert.equal(event.message, `Error: ${message}`);
  assert.equal(event.type, 'Warning');

  await createPod(f, 'nobody', {
    securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534 },
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '3600'],
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      },
    ],
  });
  await waitPod(f, 'nobody', 'Running', running);
  const sh = (script: string): Promise<{ stdout: string; code: number }> =>
    kubectl(['exec', 'nobody', '-n', f.ns, '--', 'sh', '-c', script], { allowFailure: true });
  const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
  assert.match((await sh(`id -u; cat ${sa}/token`)).stdout, /^65534\neyJ[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.match((await sh('grep NoNewPrivs /proc/self/status')).stdout, /^NoNewPrivs:\s+1$/m);
  const stateDir = f.provider.stateDir;
  const listing = await sh(`ls ${stateDir}/pods 2>&1`);
  assert.notEqual(listing.code, 0);
  assert.match(listing.stdout, /Permission denied/);
});

test('kubectl port-forward reaches an HTTP server listening on the pod IP only', async (t) => {
  const f = await fixture(t);
  const [port] = await freePorts(1);
  const server = `require('node:http').createServer((q, s) => s.end('pong from ' + require('node:os').hostname())).listen(${String(port)}, require('node:os').networkInterfaces().eth0[0].address)`;
  await createPod(f, 'web', {
    containers: [{ name: 'web', image: 'node', command: [process.execPath, '-e', server] }],
  });
  const pod = await waitPod(f, 'web', 'Running', running);
  // The pod has an address of the node's pod CIDR, not the node's.
  const ip = pod.status?.podIP ?? '';
  assert.ok(cidrContains(parseCidr(f.podCidr, 'pod CIDR'), ip), `${ip} in ${f.podCidr}`);
  assert.notEqual(ip, pod.status?.hostIP);
  assert.deepEqual(
    pod.status?.podIPs?.map((p) => p.ip),
    [ip],
  );
  const node = await core().readNode({ name: f.nodeName });
  assert.equal(node.spec?.podCIDR, f.podCidr);
  // A hostNetwork pod keeps the node's address.
  await createPod(f, 'on-host', {
    hostNetwork: true,
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  const onHost = await waitPod(f, 'on-host', 'Running', running);
  assert.equal(onHost.status?.podIP, onHost.status?.hostIP);
  const c = testCluster();
  const pf = spawn(c.kubectlPath, ['port-forward', '-n', f.ns, 'pod/web', `:${String(port)}`], {
    env: { ...process.env, KUBECONFIG: c.kubeconfigPath },
  });
  t.after(onOrphaned(() => pf.kill('SIGKILL')));
  t.after(() => pf.kill());
  const local = await new Promise<number>((resolve, reject) => {
    let text = '';
    pf.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(text);
      if (m?.[1]) resolve(Number(m[1]));
    });
    pf.on('exit', (code) => reject(new Error(`kubectl port-forward exited with ${String(code)}`)));
  });
  const body = await waitFor(
    async () => {
      const res = await fetch(`http://127.0.0.1:${String(local)}/`);
      return res.ok ? res.text() : undefined;
    },
    { what: 'an answer through the port-forward' },
  );
  // The server runs in the pod's UTS namespace: its hostname is the pod's name.
  assert.equal(body, 'pong from web');
});

test('deleting a pod sends SIGTERM to its processes, and SIGKILL after the grace period', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'polite', {
    terminationGracePeriodSeconds: 30,
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sh', '-c', 'trap "echo got TERM; exit 0" TERM; while :; do sleep 0.1; done'],
      },
    ],
  });
  await createPod(f, 'stubborn', {
    terminationGracePeriodSeconds: 2,
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done'],
      },
    ],
  });
  await waitPod(f, 'polite', 'Running', running);
  await waitPod(f, 'stubborn', 'Running', running);
  const main = (name: string): number =>
    waitForSync(() => f.provider.mainProcess(f.ns, name, 'app')?.pid);
  const politePid = main('polite');
  const stubbornPid = main('stubborn');
  const started = Date.now();
  await core().deleteNamespacedPod({ name: 'polite', namespace: f.ns });
  await core().deleteNamespacedPod({ name: 'stubborn', namespace: f.ns });
  await waitFor(() => !alive(politePid), { what: 'the polite process to exit' });
  assert.ok(Date.now() - started < 10_000, 'a process that handles SIGTERM exits at once');
  await waitFor(() => !alive(stubbornPid), { what: 'the stubborn process to be killed' });
  assert.ok(
    Date.now() - started >= 1_900,
    'a process that ignores SIGTERM lives out its grace period',
  );
  for (const name of ['polite', 'stubborn']) {
    await waitFor(
      async () =>
        await core()
          .readNamespacedPod({ name, namespace: f.ns })
          .then(() => false)
          .catch(() => true),
      { what: `pod ${name} to be gone` },
    );
  }
  assert.deepEqual(f.provider.podKeys(), []);
});

/** `check()` right now, or soon: the main process of a running container may take a tick. */
function waitForSync<T>(check: () => T | undefined): T {
  for (let i = 0; i < 100; i++) {
    const v = check();
    if (v !== undefined) return v;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  throw new Error('timed out waiting for a main process');
}

test('a container over its memory limit is OOMKilled', async (t) => {
  const f = await fixture(t);
  if (!f.provider.isolation.includes('cgroups-')) {
    t.skip(`no cgroups here: ${f.provider.isolation}`);
    return;
  }
  await createPod(f, 'hungry', {
    restartPolicy: 'Never',
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sh', '-c', 'x=0123456789; while :; do x="$x$x"; done'],
        resources: { limits: { memory: '32Mi' } },
      },
    ],
  });
  const pod = await waitPod(f, 'hungry', 'Failed', (p) => p.status?.phase === 'Failed');
  const term = pod.status?.containerStatuses?.[0]?.state?.terminated;
  assert.equal(term?.reason, 'OOMKilled');
  assert.equal(term.exitCode, 137);
});

test('kubectl top pod shows the real CPU use of a busy pod', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'busy', {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sh', '-c', 'while :; do :; done'],
        resources: { limits: { cpu: '100m', memory: '64Mi' } },
      },
    ],
  });
  await waitPod(f, 'busy', 'Running', running);
  const top = await waitFor(
    async () => {
      const r = await kubectl(['top', 'pod', 'busy', '-n', f.ns, '--no-headers'], {
        allowFailure: true,
      });
      const m = /^busy\s+(\d+)m\s+(\d+)Mi/m.exec(r.stdout);
      return m && Number(m[1]) > 0 ? { cpu: Number(m[1]), line: r.stdout } : undefined;
    },
    { what: 'kubectl top pod with non-zero CPU', timeoutMs: 120_000, intervalMs: 2_000 },
  );
  // The CPU quota holds it near its limit of 100m.
  assert.ok(top.cpu >= 20 && top.cpu <= 150, top.line);
});

test('an agent killed with SIGKILL and started again adopts its running pods', async (t) => {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('adopt');
  const dir = stateDir();
  const forget = onOrphaned(() => {
    reap(dir, nodeName);
  });
  const configPath = join(testCluster().dir, `process-${nodeName}.json`);
  writeFileSync(
    configPath,
    JSON.stringify({ stateDir: dir, monitorIntervalMs: 200, podCIDR: randomPodCidr() }),
  );
  const [port1, port2] = await freePorts(2);
  const args = async (port: number | undefined): Promise<string[]> => [
    '--kubeconfig',
    await nodeKubeconfig(nodeName),
    '--nodename',
    nodeName,
    '--provider',
    'process',
    '--provider-config',
    configPath,
    '--node-ip',
    '127.0.0.1',
    '--listen-port',
    String(port),
  ];
  const agents: SpawnedAgent[] = [];
  t.after(async () => {
    // An agent still running would write its state again: stop them before reaping.
    for (const a of agents) {
      a.child.kill('SIGKILL');
      await a.exited;
    }
    forget();
    reap(dir, nodeName);
    rmSync(configPath, { force: true });
  });
  const first = spawnAgent(t, await args(port1));
  agents.push(first);
  await waitNodeReady(nodeName);
  const f = { ns, nodeName };
  const marker = `adopt-${randomBytes(3).toString('hex')}`;
  const command = ['sh', '-c', `while :; do sleep 1; done; : ${marker}`];
  await createPod(f, 'survivor', {
    containers: [{ name: 'app', image: 'busybox', command }],
  });
  await createPod(f, 'victim', {
    restartPolicy: 'Never',
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  await createPod(f, 'deleted', {
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  const deleted = await waitPod(f, 'deleted', 'Running', running);
  const deletedNetns = join('/var/run/netns', netnsName(deleted.metadata?.uid ?? ''));
  assert.ok(existsSync(deletedNetns), 'the pod has a network namespace');
  const before = await waitPod(f, 'survivor', 'Running', running);
  await waitPod(f, 'victim', 'Running', running);
  const record = (name: string): PodRecord => {
    const d = readdirSync(join(dir, 'pods')).find((x) => x.startsWith(`${ns}_${name}_`)) ?? '';
    return JSON.parse(readFileSync(join(dir, 'pods', d, 'state.json'), 'utf8')) as PodRecord;
  };
  const mainOf = (name: string): number =>
    waitForSync(() => record(name).containers[0]?.run?.main?.pid);
  const survivorPid = mainOf('survivor');
  const victimPid = mainOf('victim');

  first.child.kill('SIGKILL');
  await first.exited;
  assert.ok(alive(survivorPid), 'the pod outlives its agent');
  // A process that dies while the agent is down is reported when it is back.
  process.kill(victimPid, 'SIGKILL');
  await waitFor(() => !alive(victimPid), { what: 'the victim to die' });
  // A pod deleted from the API while its agent is down: gone at once (no kubelet to wait for).
  await core().deleteNamespacedPod({ name: 'deleted', namespace: ns, gracePeriodSeconds: 0 });

  agents.push(spawnAgent(t, await args(port2)));
  await waitNodeReady(nodeName);
  const victim = await waitPod(f, 'victim', 'Failed', (p) => p.status?.phase === 'Failed');
  // The agent stops what the API no longer has, and its network goes with it (CNI DEL).
  await waitFor(() => !existsSync(deletedNetns), { what: "the deleted pod's netns to go" });
  assert.equal(victim.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 137);
  const after = await waitPod(f, 'survivor', 'Running', running);
  const cs = after.status?.containerStatuses?.[0];
  assert.equal(cs?.restartCount, 0);
  assert.equal(cs.containerID, before.status?.containerStatuses?.[0]?.containerID);
  assert.equal(record('survivor').containers[0]?.run?.main?.pid, survivorPid);
  assert.ok(alive(survivorPid));
  // Nothing was started twice: one process runs the command.
  const expected = command.join('\0');
  const copies = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0$/, '') === expected;
      } catch {
        return false;
      }
    });
  assert.equal(copies.length, 1, `processes running the command: ${copies.join(', ')}`);
});

test("a readiness probe that starts failing drops the pod from its Service's EndpointSlice", async (t) => {
  // The API server keeps loopback addresses out of EndpointSlices: the node gets the host's.
  const f = await fixture(t, {}, primaryAddress());
  // The probe checks a host file (the pod sees the host's filesystem, except its private /tmp).
  const flag = `/var/tmp/vk-ready-${randomBytes(4).toString('hex')}`;
  writeFileSync(flag, '');
  t.after(() => {
    rmSync(flag, { force: true });
  });
  await core().createNamespacedService({
    namespace: f.ns,
    body: {
      metadata: { name: 'web' },
      spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
    },
  });
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'web', labels: { app: 'web' } },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 2,
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sleep', '3600'],
            readinessProbe: { exec: { command: ['test', '-f', flag] }, periodSeconds: 1 },
          },
        ],
      },
    },
  });
  const discovery = testCluster().kc.makeApiClient(k8s.DiscoveryV1Api);
  const endpoint = async (): Promise<k8s.V1Endpoint | undefined> => {
    const slices = await discovery.listNamespacedEndpointSlice({
      namespace: f.ns,
      labelSelector: 'kubernetes.io/service-name=web',
    });
    return slices.items
      .flatMap((s) => (s.endpoints as k8s.V1Endpoint[] | null) ?? [])
      .find((e) => e.targetRef?.name === 'web');
  };
  await waitFor(async () => (await endpoint())?.conditions?.ready === true || undefined, {
    what: 'the pod ready in the EndpointSlice',
  });
  rmSync(flag);
  await waitPod(
    f,
    'web',
    'NotReady',
    (p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'False') === true,
  );
  await waitFor(async () => (await endpoint())?.conditions?.ready !== true || undefined, {
    what: 'the pod no longer ready in the EndpointSlice',
  });
});

test('probes: readiness gates the Ready condition, a failing liveness probe restarts', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'probed', {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '3600'],
        readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 },
      },
    ],
  });
  await createPod(f, 'unhealthy', {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '3600'],
        livenessProbe: { exec: { command: ['false'] }, periodSeconds: 1, failureThreshold: 1 },
      },
    ],
  });
  const ready = (p: k8s.V1Pod): string | undefined =>
    p.status?.conditions?.find((c) => c.type === 'Ready')?.status;
  const notReady = await waitPod(f, 'probed', 'Running', running);
  assert.equal(ready(notReady), 'False');
  // The pod has a private /tmp: the probe sees the file that exec made there.
  await kubectl(['exec', 'probed', '-n', f.ns, '--', 'touch', '/tmp/ready']);
  await waitPod(f, 'probed', 'Ready', (p) => ready(p) === 'True');
  const restarted = await waitPod(
    f,
    'unhealthy',
    'restarted by its liveness probe',
    (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1,
  );
  assert.equal(restarted.status?.containerStatuses?.[0]?.lastState?.terminated?.exitCode, 143);
  await waitEvent(f, 'unhealthy', 'Unhealthy', /^Liveness probe failed/);
  await waitEvent(f, 'unhealthy', 'Killing', /failed liveness probe, will be restarted/);
});

/**
 * The hint's overrides with this file's node added to the selector: every virtual node of the
 * shared test cluster has the `type=virtual-kubelet` label the hint selects.
 */
function pinned(overrides: string, nodeName: string): string {
  const o = JSON.parse(overrides) as { spec: { nodeSelector: Record<string, string> } };
  o.spec.nodeSelector['kubernetes.io/hostname'] = nodeName;
  return JSON.stringify(o);
}

test("npm start's hint works as printed: kubectl run busybox -- sh -c 'echo ...'", async (t) => {
  const f = await fixture(t);
  await kubectl([
    'run',
    'hello',
    '-n',
    f.ns,
    '--image=busybox',
    '--restart=Never',
    `--overrides=${pinned(HELLO_OVERRIDES, f.nodeName)}`,
    '--',
    'sh',
    '-c',
    'echo hello from a virtual node',
  ]);
  const pod = await waitPod(f, 'hello', 'Succeeded', (p) => p.status?.phase === 'Succeeded');
  assert.equal(pod.spec?.nodeName, f.nodeName);
  assert.equal(
    (await kubectl(['logs', 'hello', '-n', f.ns])).stdout,
    'hello from a virtual node\n',
  );
});

test('kubectl exec -i and kubectl attach -i carry stdin to the container', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'reader', {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        stdin: true,
        command: ['sh', '-c', 'while read line; do echo "got $line"; done'],
      },
    ],
  });
  await waitPod(f, 'reader', 'Running', running);
  const cat = await kubectl(
    ['exec', '-i', 'reader', '-n', f.ns, '--', 'sh', '-c', 'cat; echo end'],
    {
      input: 'piped\n',
    },
  );
  assert.equal(cat.stdout, 'piped\nend\n');
  const attach = await kubectl(['attach', '-i', 'reader', '-n', f.ns, '-c', 'app'], {
    input: 'one\ntwo\n',
    timeoutMs: 20_000,
  });
  assert.match(attach.stdout, /got one\ngot two\n/);
  assert.match((await kubectl(['logs', 'reader', '-n', f.ns])).stdout, /got one\ngot two\n/);
});

test('kubectl logs -f follows a container until it exits; --tail and --limit-bytes apply', async (t) => {
  const f = await fixture(t);
  await createPod(f, 'counter', {
    restartPolicy: 'Never',
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sh', '-c', 'for i in 1 2 3 4; do echo "line $i"; sleep 0.5; done'],
      },
    ],
  });
  await waitPod(f, 'counter', 'Running', running);
  const followed = await kubectl(['logs', '-f', 'counter', '-n', f.ns], { timeoutMs: 20_000 });
  assert.equal(followed.stdout, 'line 1\nline 2\nline 3\nline 4\n');
  await waitPod(f, 'counter', 'Succeeded', (p) => p.status?.phase === 'Succeeded');
  assert.equal(
    (await kubectl(['logs', 'counter', '-n', f.ns, '--tail=2'])).stdout,
    'line 3\nline 4\n',
  );
  assert.equal(
    (await kubectl(['logs', 'counter', '-n', f.ns, '--limit-bytes=9'])).stdout,
    'line 1\nli',
  );
});

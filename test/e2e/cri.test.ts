/**
 * The cri provider against the real control plane and a real containerd (the dev runtime):
 * pods run as containers from the test images in the local registry, and kubectl sees them as
 * it sees a kubelet's.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import { BUSYBOX_OS_RELEASE, DevRuntime, type RuntimeInfo } from '../../src/devcluster/index.js';
import { CriProvider } from '../../src/providers/cri/index.js';
import { onNode, startNode, uniqueNodeName, type InProcessNode } from '../helpers/agent.js';
import { kubectl, podSummary, testCluster, testNamespace } from '../helpers/cluster.js';
import { randomPodCidr } from '../helpers/process-pods.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

let dir = '';
let runtime: DevRuntime | undefined;
let info: RuntimeInfo;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vk-e2e-cri-'));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  runtime = new DevRuntime({ dir: join(dir, 'rt') });
  info = await runtime.start();
});

after(async () => {
  await runtime?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Fixture {
  readonly ns: string;
  readonly nodeName: string;
  readonly node: InProcessNode;
  readonly podCidr: string;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('cri');
  const podCidr = randomPodCidr();
  const provider = new CriProvider({
    nodeName,
    nodeIP: '127.0.0.1',
    config: {
      runtimeEndpoint: info.runtimeEndpoint,
      podCIDR: podCidr,
      stateDir: join(dir, 'state', nodeName),
      syncIntervalMs: 300,
      backoffInitialSeconds: 1,
      backoffMaxSeconds: 4,
    },
    logger: testLogger,
  });
  const node = await startNode(t, { nodeName, api: true, provider });
  t.after(async () => {
    // Whatever the core has not deleted yet goes now: sandboxes, containers, logs.
    for (const pod of await provider.getPods())
      await provider.deletePod(pod, AbortSignal.timeout(60_000)).catch(() => undefined);
    await provider.close();
    spawnSync('nft', [
      'delete',
      'table',
      'inet',
      `vk_cri_${nodeName.replace(/[^a-zA-Z0-9]/g, '_')}`,
    ]);
  });
  return { ns, nodeName, node, podCidr };
}

const testLogger = {
  level: 'warn',
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  fatal: () => undefined,
  child() {
    return this;
  },
};

async function waitPod(
  f: Fixture,
  name: string,
  what: string,
  ok: (pod: k8s.V1Pod) => boolean,
  timeoutMs = 90_000,
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

async function waitEvent(f: Fixture, name: string, reason: string): Promise<k8s.CoreV1Event> {
  return waitFor(
    async () => {
      const list = await core().listNamespacedEvent({ namespace: f.ns });
      return list.items.find((e) => e.involvedObject.name === name && e.reason === reason);
    },
    { what: `a ${reason} Event on ${name}`, timeoutMs: 90_000 },
  );
}

test("a Deployment of the busybox image runs in containerd: exec sees the image's files, logs -f follows, the pod IP is of the node's CIDR", async (t) => {
  const f = await fixture(t);
  const apps = testCluster().kc.makeApiClient(k8s.AppsV1Api);
  await apps.createNamespacedDeployment({
    namespace: f.ns,
    body: {
      metadata: { name: 'hello' },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'hello' } },
        template: {
          metadata: { labels: { app: 'hello' } },
          spec: {
            ...onNode(f.nodeName),
            terminationGracePeriodSeconds: 2,
            containers: [
              {
                name: 'main',
                image: info.images.busybox,
                command: ['sh', '-c'],
                args: ['i=0; while true; do echo "tick $i $GREETING"; i=$((i+1)); sleep 0.5; done'],
                env: [{ name: 'GREETING', value: 'hi' }],
                workingDir: '/tmp',
              },
            ],
          },
        },
      },
    },
  });
  const pod = await waitFor(
    async () => {
      const list = await core().listNamespacedPod({ namespace: f.ns, labelSelector: 'app=hello' });
      return list.items.find(
        (p) => p.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.ready,
      );
    },
    { what: "the Deployment's pod Running and ready", timeoutMs: 120_000 },
  );
  const name = pod.metadata?.name ?? '';
  const [net] = f.podCidr.split('/');
  assert.ok(
    pod.status?.podIP?.startsWith(net?.split('.').slice(0, 3).join('.') ?? 'x'),
    `pod IP ${String(pod.status?.podIP)} in ${f.podCidr}`,
  );
  assert.match(pod.status?.containerStatuses?.[0]?.containerID ?? '', /^containerd:\/\//);

  const cat = await kubectl(['exec', '-n', f.ns, name, '--', 'cat', '/etc/os-release']);
  assert.equal(cat.stdout, BUSYBOX_OS_RELEASE);
  const pwd = await kubectl(['exec', '-n', f.ns, name, '--', 'pwd']);
  assert.equal(pwd.stdout.trim(), '/tmp');

  const logs = await waitFor(
    async () => {
      const r = await kubectl(['logs', '-n', f.ns, name, '--tail=2']);
      return r.stdout.split('\n').filter(Boolean).length === 2 ? r.stdout : undefined;
    },
    { what: 'two log lines' },
  );
  assert.match(logs, /^tick \d+ hi\ntick \d+ hi\n$/);
  const ts = await kubectl(['logs', '-n', f.ns, name, '--tail=1', '--timestamps']);
  assert.match(ts.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z tick \d+ hi\n$/);
  const limited = await kubectl(['logs', '-n', f.ns, name, '--limit-bytes=3']);
  assert.equal(limited.stdout, 'tic');

  // logs -f goes on with new lines.
  const follow = await kubectl(
    ['logs', '-n', f.ns, name, '-f', '--tail=1', '--request-timeout=3s'],
    {
      allowFailure: true,
    },
  );
  assert.ok(follow.stdout.split('\n').filter(Boolean).length >= 2, `followed: ${follow.stdout}`);
});

test('a bad image gives ErrImagePull, then ImagePullBackOff and an Event', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'bad' },
      spec: {
        ...onNode(f.nodeName),
        containers: [{ name: 'main', image: `${info.registry}/no-such-image:v1` }],
      },
    },
  });
  await waitPod(
    f,
    'bad',
    'ImagePullBackOff',
    (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff',
  );
  const event = await waitEvent(f, 'bad', 'Failed');
  assert.match(event.message ?? '', /Failed to pull image/);
});

test('a private image: with a dockerconfigjson imagePullSecret the pod runs; without it the registry refuses the pull', async (t) => {
  const f = await fixture(t);
  const { username, password } = info.credentials;
  const auth = Buffer.from(`${username}:${password}`).toString('base64');
  await core().createNamespacedSecret({
    namespace: f.ns,
    body: {
      metadata: { name: 'regcred' },
      type: 'kubernetes.io/dockerconfigjson',
      data: {
        '.dockerconfigjson': Buffer.from(
          JSON.stringify({ auths: { [info.privateRegistry]: { username, password, auth } } }),
        ).toString('base64'),
      },
    },
  });
  const privatePod = (name: string, secrets: string[]): k8s.V1Pod => ({
    metadata: { name },
    spec: {
      ...onNode(f.nodeName),
      terminationGracePeriodSeconds: 1,
      imagePullSecrets: secrets.map((s) => ({ name: s })),
      containers: [
        {
          name: 'main',
          image: info.privateImage,
          // Every pod pulls: an image already in the runtime would hide a refused pull.
          imagePullPolicy: 'Always',
          command: ['sleep', '3600'],
        },
      ],
    },
  });
  await core().createNamespacedPod({ namespace: f.ns, body: privatePod('anonymous', []) });
  await core().createNamespacedPod({ namespace: f.ns, body: privatePod('authed', ['regcred']) });

  const running = await waitPod(f, 'authed', 'Running', (p) => p.status?.phase === 'Running');
  assert.equal(running.status?.containerStatuses?.[0]?.ready, true);

  const refused = await waitPod(f, 'anonymous', 'ErrImagePull or ImagePullBackOff', (p) =>
    ['ErrImagePull', 'ImagePullBackOff'].includes(
      p.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '',
    ),
  );
  assert.notEqual(refused.status?.phase, 'Running');
  const failed = await waitEvent(f, 'anonymous', 'Failed');
  assert.match(failed.message ?? '', /Failed to pull image/);
  assert.match(failed.message ?? '', /401|unauthorized/i, 'the registry refused the pull');
  const events = await core().listNamespacedEvent({ namespace: f.ns });
  assert.ok(!JSON.stringify(events.items).includes(password), 'the password is in no Event');
});

test('a crashing container is restarted with back-off (CrashLoopBackOff) and logs --previous shows its last run', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'crash' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        containers: [
          { name: 'main', image: info.images.busybox, command: ['sh', '-c', 'echo run; exit 3'] },
        ],
      },
    },
  });
  const pod = await waitPod(f, 'crash', 'CrashLoopBackOff after a restart', (p) => {
    const s = p.status?.containerStatuses?.[0];
    return (s?.restartCount ?? 0) >= 1 && s?.state?.waiting?.reason === 'CrashLoopBackOff';
  });
  const last = pod.status?.containerStatuses?.[0]?.lastState?.terminated;
  assert.equal(last?.exitCode, 3);
  assert.equal(last?.reason, 'Error');
  const prev = await kubectl(['logs', '-n', f.ns, 'crash', '--previous']);
  assert.equal(prev.stdout, 'run\n');
});

test('init containers run in order before the main one; a Never pod that exits 0 Succeeds', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'job' },
      spec: {
        ...onNode(f.nodeName),
        restartPolicy: 'Never',
        volumes: [{ name: 'work', emptyDir: {} }],
        initContainers: [
          {
            name: 'one',
            image: info.images.busybox,
            command: ['sh', '-c', 'echo one >> /work/order'],
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
          {
            name: 'two',
            image: info.images.busybox,
            command: ['sh', '-c', 'echo two >> /work/order'],
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
        containers: [
          {
            name: 'main',
            image: info.images.busybox,
            command: ['cat', '/work/order'],
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
      },
    },
  });
  const pod = await waitPod(f, 'job', 'Succeeded', (p) => p.status?.phase === 'Succeeded');
  assert.equal(pod.status?.initContainerStatuses?.length, 2);
  const logs = await kubectl(['logs', '-n', f.ns, 'job', '-c', 'main']);
  assert.equal(logs.stdout, 'one\ntwo\n');
});

test('a container over its 32Mi memory limit is OOMKilled', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'oom' },
      spec: {
        ...onNode(f.nodeName),
        restartPolicy: 'Never',
        containers: [
          {
            name: 'main',
            image: info.images.busybox,
            command: ['sh', '-c', 'a=xxxxxxxx; while true; do a=$a$a; done'],
            resources: { limits: { memory: '32Mi' } },
          },
        ],
      },
    },
  });
  const pod = await waitPod(f, 'oom', 'Failed', (p) => p.status?.phase === 'Failed');
  const term = pod.status?.containerStatuses?.[0]?.state?.terminated;
  assert.equal(term?.reason, 'OOMKilled');
  assert.equal(term?.exitCode, 137);
});

test('a failing exec liveness probe restarts the container, with Unhealthy and Killing Events', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'live' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: info.images.busybox,
            command: ['sh', '-c', 'touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 3600'],
            livenessProbe: {
              exec: { command: ['cat', '/tmp/ok'] },
              periodSeconds: 1,
              failureThreshold: 1,
            },
          },
        ],
      },
    },
  });
  await waitPod(
    f,
    'live',
    'restarted by its liveness probe',
    (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1,
  );
  const unhealthy = await waitEvent(f, 'live', 'Unhealthy');
  assert.match(unhealthy.message ?? '', /Liveness probe failed/);
  await waitEvent(f, 'live', 'Killing');
});

test('kubectl port-forward reaches the server image on its pod IP; an HTTP readiness probe makes it ready', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'web' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'web',
            image: info.images.server,
            readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 1 },
          },
        ],
      },
    },
  });
  await waitPod(
    f,
    'web',
    'Running and ready',
    (p) => p.status?.containerStatuses?.[0]?.ready === true,
  );
  const c = testCluster();
  const pf = spawn(c.kubectlPath, ['port-forward', '-n', f.ns, 'pod/web', ':8080'], {
    env: { ...process.env, KUBECONFIG: c.kubeconfigPath },
  });
  t.after(() => pf.kill());
  const local = await new Promise<number>((resolve, reject) => {
    let text = '';
    pf.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(text);
      if (m?.[1]) resolve(Number(m[1]));
    });
    pf.on('exit', (code) => {
      reject(new Error(`kubectl port-forward exited with ${String(code)}`));
    });
  });
  const body = await waitFor(
    async () => {
      const res = await fetch(`http://127.0.0.1:${String(local)}/`);
      return res.ok ? res.text() : undefined;
    },
    { what: 'an answer through the port-forward' },
  );
  // The server runs in the pod's sandbox: its hostname is the pod's name.
  assert.equal(body, 'hello from web\n');
});

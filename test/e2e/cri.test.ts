/**
 * The cri provider against the real control plane and a real containerd (the dev runtime):
 * pods run as containers from the test images in the local registry, and kubectl sees them as
 * it sees a kubelet's.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  binaryPaths,
  BUSYBOX_OS_RELEASE,
  cacheRoot,
  CLUSTER_DOMAIN,
  freePorts,
  spawnOwned,
  stopProcess,
} from '../../src/devcluster/index.js';
import { createDnsInterface, run, writeCorefile } from '../../src/devcluster/services.js';
import { CriClient, type Message } from '../../src/providers/cri/client.js';
import { guardTable, removeGuard, type CriConfig } from '../../src/providers/cri/index.js';
import {
  nodeKubeconfig,
  onNode,
  servingCertificate,
  spawnAgent,
  uniqueNodeName,
  waitNodeReady,
  type SpawnedAgent,
} from '../helpers/agent.js';
import { kubectl, podSummary, testCluster, testNamespace } from '../helpers/cluster.js';
import { criNode, criProvider, removeAll, runtimeForFile, type CriNode } from '../helpers/cri.js';
import {
  mountsBelow,
  namedNetnsOf,
  NETNS_DIR,
  processTable,
  processTree,
  stillRunning,
  type ProcessEntry,
} from '../helpers/leftovers.js';
import { randomPodCidr } from '../helpers/process-pods.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

const rt = runtimeForFile('vk-e2e-cri-');

type Fixture = CriNode;

function fixture(
  t: TestContext,
  options: { readonly clusterDNS?: readonly string[]; readonly config?: Partial<CriConfig> } = {},
): Promise<Fixture> {
  return criNode(t, rt, {
    prefix: 'cri',
    ...(options.clusterDNS ? { clusterDNS: options.clusterDNS } : {}),
    config: {
      syncIntervalMs: 300,
      backoffInitialSeconds: 1,
      backoffMaxSeconds: 4,
      ...options.config,
    },
  });
}

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
                image: rt.info.images.busybox,
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
        containers: [{ name: 'main', image: `${rt.info.registry}/no-such-image:v1` }],
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
  const { username, password } = rt.info.credentials;
  const auth = Buffer.from(`${username}:${password}`).toString('base64');
  await core().createNamespacedSecret({
    namespace: f.ns,
    body: {
      metadata: { name: 'regcred' },
      type: 'kubernetes.io/dockerconfigjson',
      data: {
        '.dockerconfigjson': Buffer.from(
          JSON.stringify({ auths: { [rt.info.privateRegistry]: { username, password, auth } } }),
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
          image: rt.info.privateImage,
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
          {
            name: 'main',
            image: rt.info.images.busybox,
            command: ['sh', '-c', 'echo run; exit 3'],
          },
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

test('runAsNonRoot: a container whose image runs as root waits with CreateContainerConfigError; one with a non-root runAsUser runs', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'nonroot' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        securityContext: { runAsNonRoot: true },
        containers: [
          { name: 'image-user', image: rt.info.images.busybox, command: ['sleep', '3600'] },
          {
            name: 'uid',
            image: rt.info.images.busybox,
            command: ['sleep', '3600'],
            securityContext: { runAsUser: 1000 },
          },
        ],
      },
    },
  });
  const pod = await waitPod(f, 'nonroot', 'image-user refused, uid running', (p) => {
    const by = new Map((p.status?.containerStatuses ?? []).map((s) => [s.name, s]));
    return (
      by.get('image-user')?.state?.waiting?.reason === 'CreateContainerConfigError' &&
      by.get('uid')?.state?.running !== undefined
    );
  });
  const refused = pod.status?.containerStatuses?.find((s) => s.name === 'image-user');
  assert.equal(
    refused?.state?.waiting?.message,
    `container has runAsNonRoot and image will run as root (pod: "nonroot_${f.ns}(${pod.metadata?.uid ?? ''})", container: image-user)`,
  );
});

test('garbage collection: a container that crashed 3 times keeps at most 2 containers in the runtime; a stopped sandbox of a gone pod and its container are removed', async (t) => {
  const f = await fixture(t, { config: { containerGcIntervalMs: 500 } });
  const cri = new CriClient({ runtimeEndpoint: rt.info.runtimeEndpoint });
  t.after(() => {
    cri.close();
  });
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'crash3' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        containers: [
          { name: 'main', image: rt.info.images.busybox, command: ['sh', '-c', 'exit 3'] },
        ],
      },
    },
  });
  const pod = await waitPod(
    f,
    'crash3',
    'restarted 3 times',
    (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 3,
    120_000,
  );
  // What a pod that is gone leaves behind: a stopped sandbox with this node's labels and a
  // container in it.
  const goneUid = `gone-${String(randomInt(1e9))}`;
  const labels = {
    'virtual-kubelet.io/node': f.nodeName,
    'io.kubernetes.pod.uid': goneUid,
    'io.kubernetes.pod.name': 'gone',
    'io.kubernetes.pod.namespace': f.ns,
  };
  const sandboxConfig = {
    metadata: { name: 'gone', uid: goneUid, namespace: f.ns, attempt: 0 },
    labels,
    linux: { security_context: { namespace_options: { network: 'NODE' } } },
  };
  const { pod_sandbox_id: stray } = await cri.runtime<{ pod_sandbox_id: string }>('RunPodSandbox', {
    config: sandboxConfig,
  });
  await cri.runtime('CreateContainer', {
    pod_sandbox_id: stray,
    config: {
      metadata: { name: 'main', attempt: 0 },
      image: { image: rt.info.images.busybox },
      command: ['true'],
      labels: { ...labels, 'io.kubernetes.container.name': 'main' },
    },
    sandbox_config: sandboxConfig,
  });
  await cri.runtime('StopPodSandbox', { pod_sandbox_id: stray });
  await waitFor(
    async () => {
      const res = await cri.runtime<{ items: Message[] }>('ListPodSandbox', {
        filter: { id: stray },
      });
      return res.items.length === 0;
    },
    { what: 'the stray sandbox removed by GC', timeoutMs: 30_000 },
  );
  const list = await cri.runtime<{ containers: Message[] }>('ListContainers', {
    filter: { label_selector: { 'io.kubernetes.pod.uid': pod.metadata?.uid ?? '' } },
  });
  assert.ok(
    list.containers.length <= 2,
    `containers of crash3: ${JSON.stringify(list.containers.map((c) => c.metadata))}`,
  );
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
            image: rt.info.images.busybox,
            command: ['sh', '-c', 'echo one >> /work/order'],
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
          {
            name: 'two',
            image: rt.info.images.busybox,
            command: ['sh', '-c', 'echo two >> /work/order'],
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
        containers: [
          {
            name: 'main',
            image: rt.info.images.busybox,
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
            image: rt.info.images.busybox,
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
            image: rt.info.images.busybox,
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
            image: rt.info.images.server,
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

test('a Job of the busybox image runs to completion: its pod Succeeded with exit code 0, and kubectl logs job/ shows its output', async (t) => {
  const f = await fixture(t);
  const batch = testCluster().kc.makeApiClient(k8s.BatchV1Api);
  await batch.createNamespacedJob({
    namespace: f.ns,
    body: {
      metadata: { name: 'count' },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            ...onNode(f.nodeName),
            restartPolicy: 'Never',
            containers: [
              {
                name: 'main',
                image: rt.info.images.busybox,
                command: ['sh', '-c', 'for i in 1 2 3; do echo "step $i"; done'],
              },
            ],
          },
        },
      },
    },
  });
  await kubectl(['wait', '-n', f.ns, '--for=condition=complete', 'job/count', '--timeout=120s'], {
    timeoutMs: 130_000,
  });
  const pods = await core().listNamespacedPod({ namespace: f.ns, labelSelector: 'job-name=count' });
  assert.equal(pods.items.length, 1, 'one pod ran: no retry');
  const pod = pods.items[0];
  assert.equal(pod?.status?.phase, 'Succeeded');
  const terminated = pod?.status?.containerStatuses?.[0]?.state?.terminated;
  assert.equal(terminated?.exitCode, 0);
  assert.equal(terminated.reason, 'Completed');
  const logs = await kubectl(['logs', '-n', f.ns, 'job/count']);
  assert.equal(logs.stdout, 'step 1\nstep 2\nstep 3\n');
});

/**
 * CoreDNS with the cluster's names (the dev cluster's Corefile, the admin's identity) on an
 * address of its own host interface, which pods reach through their gateway. Stopped, and the
 * interface removed, when the test ends. Resolves to its address.
 */
async function startCoreDns(t: TestContext): Promise<string> {
  const iface = `vkcridns${randomInt(0, 0xffff).toString(16)}`;
  const services = {
    nodeName: 'none',
    podCidr: '',
    serviceCidr: '',
    dnsIp: '',
    clusterDomain: CLUSTER_DOMAIN,
    // Away from the pod CIDRs of the tests (10.200.0.0/13) and the services' CoreDNS.
    dnsServerAddress: `10.250.${String(randomInt(0, 256))}.53`,
    dummyInterface: iface,
  };
  await createDnsInterface(services);
  t.after(() => run('ip', ['link', 'del', iface]).catch(() => undefined));
  const [healthPort = 0, readyPort = 0] = await freePorts(2);
  const corefile = await writeCorefile(services, {
    dir: join(rt.dir, iface),
    kubeconfig: testCluster().kubeconfigPath,
    healthPort,
    readyPort,
  });
  const coredns = spawnOwned(binaryPaths().coredns, {
    args: ['-conf', corefile],
    logPath: join(rt.dir, `${iface}.log`),
  });
  t.after(() => stopProcess(coredns, 5_000));
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${String(readyPort)}/ready`).catch(() => null))?.ok,
    { what: 'CoreDNS ready', timeoutMs: 60_000 },
  );
  return services.dnsServerAddress;
}

test("a StatefulSet behind a headless Service: one pod resolves the other by its DNS name through the cluster DNS and reaches it; resolv.conf, hostname and /etc/hosts are the kubelet's", async (t) => {
  const dns = await startCoreDns(t);
  const f = await fixture(t, { clusterDNS: [dns] });
  await core().createNamespacedService({
    namespace: f.ns,
    body: {
      metadata: { name: 'web' },
      spec: { clusterIP: 'None', selector: { app: 'web' }, ports: [{ port: 8080 }] },
    },
  });
  const apps = testCluster().kc.makeApiClient(k8s.AppsV1Api);
  await apps.createNamespacedStatefulSet({
    namespace: f.ns,
    body: {
      metadata: { name: 'web' },
      spec: {
        serviceName: 'web',
        replicas: 2,
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: {
            ...onNode(f.nodeName),
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'httpd',
                image: rt.info.images.busybox,
                command: [
                  'sh',
                  '-c',
                  'mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www',
                ],
                ports: [{ containerPort: 8080 }],
              },
            ],
          },
        },
      },
    },
  });
  const ready = (p: k8s.V1Pod): boolean =>
    p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
  const web0 = await waitPod(f, 'web-0', 'Ready', ready, 120_000);
  const web1 = await waitPod(f, 'web-1', 'Ready', ready, 120_000);
  const ip1 = web1.status?.podIP ?? '';
  const fqdn = (name: string): string => `${name}.web.${f.ns}.svc.${CLUSTER_DOMAIN}`;
  const inWeb0 = async (...command: string[]): Promise<string> =>
    (await kubectl(['exec', '-n', f.ns, 'web-0', '--', ...command])).stdout;

  // The kubelet's files: resolv.conf from ClusterFirst, the hostname, the managed hosts file.
  const resolv = await inWeb0('cat', '/etc/resolv.conf');
  assert.match(
    resolv,
    new RegExp(
      `^search ${f.ns}\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local\\b`,
      'm',
    ),
  );
  assert.match(resolv, new RegExp(`^nameserver ${dns.replaceAll('.', '\\.')}$`, 'm'));
  assert.match(resolv, /^options ndots:5$/m);
  assert.equal((await inWeb0('hostname')).trim(), 'web-0');
  assert.ok(
    (await inWeb0('cat', '/etc/hosts')).includes(
      `${web0.status?.podIP ?? '?'}\t${fqdn('web-0')}\tweb-0\n`,
    ),
    'the pod FQDN in /etc/hosts',
  );

  // The EndpointSlice controller publishes the pods' hostnames once they are ready: the name
  // resolves as soon as CoreDNS has seen it.
  const lookup = await waitFor(
    async () => {
      const r = await kubectl(['exec', '-n', f.ns, 'web-0', '--', 'nslookup', fqdn('web-1')], {
        allowFailure: true,
      });
      return r.code === 0 && r.stdout.includes(ip1) ? r.stdout : undefined;
    },
    { what: `${fqdn('web-1')} resolving to ${ip1}`, timeoutMs: 60_000, intervalMs: 1_000 },
  );
  assert.match(lookup, new RegExp(`Address:\\s+${ip1.replaceAll('.', '\\.')}\\b`));
  // A short name goes through the search domains; the answer comes from web-1 itself.
  assert.equal(await inWeb0('wget', '-qO-', 'http://web-1.web:8080/'), 'web-1\n');
});

/**
 * GETs `path` of the kubelet API as the API server's kubelet client (what the node proxy and
 * metrics-server send); the node proxy itself refuses loopback node addresses.
 */
async function asApiserver(port: number, path: string): Promise<{ status: number; body: string }> {
  const pki = testCluster().pkiDir;
  const [ca, cert, key] = await Promise.all(
    ['ca.crt', 'apiserver-kubelet-client.crt', 'apiserver-kubelet-client.key'].map((name) =>
      readFile(join(pki, name)),
    ),
  );
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, ca, cert, key }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('kubectl top pod and the Summary API show the CPU and memory of a CRI pod', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'busy' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: rt.info.images.busybox,
            command: ['sh', '-c', 'while :; do :; done'],
            resources: { limits: { cpu: '100m', memory: '64Mi' } },
          },
        ],
      },
    },
  });
  const pod = await waitPod(f, 'busy', 'Running', (p) => p.status?.phase === 'Running');
  const port = f.node.node.server?.port ?? 0;
  const summary = await waitFor(
    async () => {
      const r = await asApiserver(port, '/stats/summary');
      assert.equal(r.status, 200, r.body);
      const s = JSON.parse(r.body) as {
        pods?: {
          podRef: { name: string; uid: string };
          cpu?: { usageCoreNanoSeconds?: number };
          memory?: { workingSetBytes?: number };
          containers?: { name: string }[];
        }[];
      };
      const mine = s.pods?.find((p) => p.podRef.name === 'busy');
      return (mine?.cpu?.usageCoreNanoSeconds ?? 0) > 0 ? mine : undefined;
    },
    { what: 'the pod in the Summary API with CPU used', timeoutMs: 60_000, intervalMs: 1_000 },
  );
  assert.equal(summary.podRef.uid, pod.metadata?.uid);
  assert.deepEqual(
    summary.containers?.map((c) => c.name),
    ['main'],
  );
  assert.ok((summary.memory?.workingSetBytes ?? 0) > 0, 'memory in use');
  const resource = await asApiserver(port, '/metrics/resource');
  assert.match(
    resource.body,
    new RegExp(
      `^container_cpu_usage_seconds_total\\{container="main",namespace="${f.ns}",pod="busy"\\} [\\d.e+-]+ \\d{13}$`,
      'm',
    ),
  );

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

test('an agent killed with SIGKILL and started again adopts its sandboxes and containers; a pod deleted meanwhile leaves the runtime', async (t) => {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('cri-adopt');
  const stateDir = join(rt.dir, 'state', nodeName);
  const configPath = join(rt.dir, `${nodeName}.json`);
  await writeFile(
    configPath,
    JSON.stringify({
      runtimeEndpoint: rt.info.runtimeEndpoint,
      podCIDR: randomPodCidr(),
      stateDir,
      syncIntervalMs: 300,
      backoffInitialSeconds: 1,
      backoffMaxSeconds: 4,
    }),
  );
  const cri = new CriClient({ runtimeEndpoint: rt.info.runtimeEndpoint });
  const agents: SpawnedAgent[] = [];
  t.after(async () => {
    // A running agent would act on the pods again: stop them before removing what is left.
    for (const a of agents) {
      a.child.kill('SIGKILL');
      await a.exited;
    }
    cri.close();
    await removeAll(criProvider(rt, { nodeName, config: { stateDir } }), nodeName);
  });
  const [port1, port2] = await freePorts(2);
  // A serving certificate from the cluster CA, so that the API server reaches it (exec).
  const serving = await servingCertificate(nodeName);
  await writeFile(join(rt.dir, `${nodeName}.crt`), serving.cert);
  await writeFile(join(rt.dir, `${nodeName}.key`), serving.key, { mode: 0o600 });
  const start = async (port: number | undefined): Promise<SpawnedAgent> => {
    const agent = spawnAgent(t, [
      '--tls-cert-file',
      join(rt.dir, `${nodeName}.crt`),
      '--tls-private-key-file',
      join(rt.dir, `${nodeName}.key`),
      '--kubeconfig',
      await nodeKubeconfig(nodeName),
      '--nodename',
      nodeName,
      '--provider',
      'cri',
      '--provider-config',
      configPath,
      '--node-ip',
      '127.0.0.1',
      '--listen-port',
      String(port),
    ]);
    agents.push(agent);
    await waitNodeReady(nodeName);
    return agent;
  };
  const first = await start(port1);

  const f = { ns, nodeName } as Fixture;
  const sleeper = (name: string, script: string): k8s.V1Pod => ({
    metadata: { name },
    spec: {
      ...onNode(nodeName),
      terminationGracePeriodSeconds: 1,
      volumes: [{ name: 'work', emptyDir: {} }],
      containers: [
        {
          name: 'main',
          image: rt.info.images.busybox,
          command: ['sh', '-c', script],
          volumeMounts: [{ name: 'work', mountPath: '/work' }],
        },
      ],
    },
  });
  await core().createNamespacedPod({ namespace: ns, body: sleeper('steady', 'exec sleep 3600') });
  // Fails once, then runs: a restart count of 1 that must survive the agent.
  await core().createNamespacedPod({
    namespace: ns,
    body: sleeper('flaky', '[ -f /work/ran ] || { touch /work/ran; exit 1; }; exec sleep 3600'),
  });
  const doomed = await core().createNamespacedPod({
    namespace: ns,
    body: sleeper('doomed', 'exec sleep 3600'),
  });
  const running = (p: k8s.V1Pod): boolean =>
    p.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.state?.running !== undefined;
  await waitPod(f, 'doomed', 'Running', running);
  const steady = await waitPod(f, 'steady', 'Running', running);
  const flaky = await waitPod(
    f,
    'flaky',
    'Running after one restart',
    (p) => running(p) && p.status?.containerStatuses?.[0]?.restartCount === 1,
  );

  const sandboxes = async (): Promise<Message[]> =>
    (
      await cri.runtime<{ items: Message[] }>('ListPodSandbox', {
        filter: { label_selector: { 'virtual-kubelet.io/node': nodeName } },
      })
    ).items;
  const containers = async (): Promise<string[]> =>
    (
      await cri.runtime<{ containers: Message[] }>('ListContainers', {
        filter: { label_selector: { 'virtual-kubelet.io/node': nodeName } },
      })
    ).containers
      .map((c) => String(c.id))
      .sort();
  const sandboxesBefore = (await sandboxes()).map((s) => String(s.id)).sort();
  assert.equal(sandboxesBefore.length, 3);
  const containersBefore = await containers();

  first.child.kill('SIGKILL');
  await first.exited;
  // Deleted from the API while its agent is down: gone at once (no kubelet to wait for).
  await core().deleteNamespacedPod({ name: 'doomed', namespace: ns, gracePeriodSeconds: 0 });
  await start(port2);

  const doomedUid = doomed.metadata?.uid ?? '';
  await waitFor(
    async () =>
      (await sandboxes()).every(
        (s) => (s.labels as Record<string, string>)['io.kubernetes.pod.uid'] !== doomedUid,
      ),
    { what: "the deleted pod's sandbox to leave containerd" },
  );
  // Adopted, not made again: the same sandboxes and containers, nothing new.
  const after = (await sandboxes()).map((s) => String(s.id)).sort();
  assert.equal(after.length, 2);
  assert.ok(
    after.every((id) => sandboxesBefore.includes(id)),
    'no new sandbox',
  );
  const containersAfter = await containers();
  assert.ok(
    containersAfter.every((id) => containersBefore.includes(id)),
    'no new container',
  );
  for (const [name, before] of [
    ['steady', steady],
    ['flaky', flaky],
  ] as const) {
    const now = await waitPod(f, name, 'Running', running);
    const [b, a] = [before.status?.containerStatuses?.[0], now.status?.containerStatuses?.[0]];
    assert.equal(a?.containerID, b?.containerID, `${name}: the same container`);
    assert.equal(a?.restartCount, b?.restartCount, `${name}: the same restart count`);
    assert.equal(
      now.status?.conditions?.find((c) => c.type === 'Ready')?.status,
      'True',
      `${name}: Ready`,
    );
  }
  const lastState = (await waitPod(f, 'flaky', 'Running', running)).status?.containerStatuses?.[0]
    ?.lastState?.terminated;
  assert.equal(lastState?.exitCode, 1);
  // The restarted agent serves the adopted pods' logs and exec.
  assert.equal(
    (await kubectl(['exec', '-n', ns, 'steady', '--', 'hostname'])).stdout.trim(),
    'steady',
  );
});

test('lifecycle hooks: postStart runs before the container is reported running, a failing one is a FailedPostStartHook Event, preStop runs on deletion', async (t) => {
  const f = await fixture(t);
  const hostDir = join(rt.dir, `hooks-${f.ns}`);
  await mkdir(hostDir, { recursive: true });
  const work = { name: 'work', mountPath: '/work' };
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'hooked' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 10,
        volumes: [{ name: 'work', hostPath: { path: hostDir } }],
        containers: [
          {
            name: 'app',
            image: rt.info.images.busybox,
            command: [
              'sh',
              '-c',
              'until [ -f /work/post ]; do sleep 0.2; done; echo "read: $(cat /work/post)"; exec sleep 3600',
            ],
            volumeMounts: [work],
            lifecycle: {
              // Written at the end of a hook that takes a while: the container must not be
              // reported running before it is there.
              postStart: { exec: { command: ['sh', '-c', 'sleep 2; echo started > /work/post'] } },
              preStop: { exec: { command: ['sh', '-c', 'echo stopping > /work/pre'] } },
            },
          },
        ],
      },
    },
  });
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'bad-hook' },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image: rt.info.images.busybox,
            command: ['sleep', '3600'],
            lifecycle: { postStart: { exec: { command: ['sh', '-c', 'exit 3'] } } },
          },
        ],
      },
    },
  });
  await waitPod(f, 'hooked', 'app running', (p) =>
    Boolean(p.status?.containerStatuses?.[0]?.state?.running),
  );
  assert.equal(
    await readFile(join(hostDir, 'post'), 'utf8'),
    'started\n',
    'the postStart hook was done when the container was first reported running',
  );
  const logs = await waitFor(
    async () => {
      const r = await kubectl(['logs', '-n', f.ns, 'hooked', '-c', 'app']);
      return r.stdout.includes('read:') ? r.stdout : undefined;
    },
    { what: 'the main container read what postStart wrote', timeoutMs: 30_000 },
  );
  assert.equal(logs, 'read: started\n');

  const failed = await waitEvent(f, 'bad-hook', 'FailedPostStartHook');
  assert.equal(failed.type, 'Warning');
  await waitPod(
    f,
    'bad-hook',
    'restarted after its postStart hook failed',
    (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) > 0,
  );

  await core().deleteNamespacedPod({ name: 'hooked', namespace: f.ns });
  const pre = await waitFor(() => readFile(join(hostDir, 'pre'), 'utf8').catch(() => undefined), {
    what: 'the preStop hook wrote its file',
    timeoutMs: 60_000,
  });
  assert.equal(pre, 'stopping\n');
});

test('a pod with activeDeadlineSeconds: 5 is stopped and Failed with reason DeadlineExceeded, with an Event; an update that shortens the deadline applies', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'shortened' },
      spec: {
        ...onNode(f.nodeName),
        activeDeadlineSeconds: 3600,
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'app', image: rt.info.images.busybox, command: ['sleep', '3600'] }],
      },
    },
  });
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'deadline' },
      spec: {
        ...onNode(f.nodeName),
        activeDeadlineSeconds: 5,
        terminationGracePeriodSeconds: 1,
        containers: [{ name: 'app', image: rt.info.images.busybox, command: ['sleep', '3600'] }],
      },
    },
  });
  const pod = await waitPod(f, 'deadline', 'Failed', (p) => p.status?.phase === 'Failed');
  assert.equal(pod.status?.reason, 'DeadlineExceeded');
  assert.equal(
    pod.status?.message,
    'Pod was active on the node longer than the specified deadline',
  );
  assert.ok(pod.status?.containerStatuses?.[0]?.state?.terminated, 'the container was stopped');
  const started = new Date(pod.status?.startTime ?? 0).getTime();
  const finished = new Date(
    pod.status?.containerStatuses?.[0]?.state?.terminated?.finishedAt ?? 0,
  ).getTime();
  assert.ok(finished - started >= 5000, `stopped ${String(finished - started)}ms after the start`);
  const event = await waitEvent(f, 'deadline', 'DeadlineExceeded');
  assert.equal(event.type, 'Warning');

  await waitPod(f, 'shortened', 'Running', (p) => p.status?.phase === 'Running');
  await core().patchNamespacedPod(
    { name: 'shortened', namespace: f.ns, body: { spec: { activeDeadlineSeconds: 1 } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  const shortened = await waitPod(f, 'shortened', 'Failed', (p) => p.status?.phase === 'Failed');
  assert.equal(shortened.status?.reason, 'DeadlineExceeded');
});

test('a restartPolicy Never pod with a sidecar: the next init container starts beside it, the pod Succeeds once the sidecar is stopped', async (t) => {
  const f = await fixture(t);
  const work = { name: 'work', mountPath: '/work' };
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name: 'with-sidecar' },
      spec: {
        ...onNode(f.nodeName),
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 5,
        volumes: [{ name: 'work', emptyDir: {} }],
        initContainers: [
          {
            name: 'sidecar',
            image: rt.info.images.busybox,
            restartPolicy: 'Always',
            command: [
              'sh',
              '-c',
              'trap "exit 0" TERM; echo up > /work/up; while true; do sleep 1; done',
            ],
            volumeMounts: [work],
          },
          {
            // Runs only while the sidecar does: it did not block this one.
            name: 'after',
            image: rt.info.images.busybox,
            command: ['sh', '-c', 'until [ -f /work/up ]; do sleep 0.2; done'],
            volumeMounts: [work],
          },
        ],
        containers: [
          {
            name: 'main',
            image: rt.info.images.busybox,
            command: ['sh', '-c', 'cat /work/up'],
            volumeMounts: [work],
          },
        ],
      },
    },
  });
  const pod = await waitPod(f, 'with-sidecar', 'Succeeded', (p) => p.status?.phase === 'Succeeded');
  const inits = new Map((pod.status?.initContainerStatuses ?? []).map((s) => [s.name, s]));
  assert.ok(inits.get('sidecar')?.state?.terminated, 'the sidecar was stopped');
  assert.equal(inits.get('after')?.state?.terminated?.exitCode, 0);
  assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0);
  const logs = await kubectl(['logs', '-n', f.ns, 'with-sidecar', '-c', 'main']);
  assert.equal(logs.stdout, 'up\n');
});

const bin = new URL('../../bin/virtual-kubelet', import.meta.url).pathname;
const repoRoot = new URL('../..', import.meta.url).pathname;
/** The node of `start --provider cri`. */
const CRI_NODE = 'vk-cri';
const tail = (text: string): string => text.split('\n').slice(-30).join('\n');

/** `node bin/virtual-kubelet start --provider cri` (what `npm start -- --provider cri` runs). */
interface StartedMainJob {
  readonly child: ChildProcess;
  /** The fresh home it runs with (no kubeconfig: it brings up its own dev cluster there). */
  readonly home: string;
  /** The environment of a shell of that user. */
  readonly env: NodeJS.ProcessEnv;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

/**
 * Starts the main job with `--provider cri` as on a fresh machine: a home of its own (no
 * `~/.kube/config`, so it starts its own dev cluster and dev runtime below it, on free ports), the
 * build cache of this run (the control plane and the test images are built already). What would
 * clash with the tests running beside it is moved aside: the kubelet API on a free port
 * (`$KUBELET_PORT`, not 10250), and `--no-services`, since kube-proxy's rules are host-wide and
 * services.test.ts runs its own. Host-wide still: the guard of node vk-cri and the route of its
 * pod CIDR 10.244.0.0/24, so no `npm start -- --provider cri` may run on the host meanwhile. If
 * the test fails first, it is stopped (SIGINT, then SIGKILL) and the home removed.
 */
async function startMainJob(t: TestContext): Promise<StartedMainJob> {
  testCluster(); // the control plane's binaries are built: fail with the reason when they are not
  const home = await mkdtemp(join(tmpdir(), 'vk-e2e-start-cri-'));
  await writeFile(join(home, 'owner.pid'), String(process.pid));
  // A shell of a user with no cluster configured, whose state is in the fresh home.
  const unset = new Set(['KUBECONFIG', 'KUBERNETES_SERVICE_HOST', 'XDG_STATE_HOME']);
  const [kubeletPort = 0] = await freePorts(1);
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !unset.has(name))),
    HOME: home,
    VK_CACHE_DIR: cacheRoot(),
    KUBELET_PORT: String(kubeletPort),
  };
  const child = spawn(process.execPath, [bin, 'start', '--provider', 'cri', '--no-services'], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      await exited;
      clearTimeout(timer);
    }
    removeGuard(CRI_NODE);
    await rm(home, { recursive: true, force: true });
  });
  return { child, home, env, exited, stdout: () => out, stderr: () => err };
}

const hasExited = (job: StartedMainJob): boolean =>
  job.child.exitCode !== null || job.child.signalCode !== null;

/** Waits for the printed hint ("what to try"); fails at once if the job exits first. */
async function hintOf(job: StartedMainJob): Promise<string> {
  const printed = await waitFor(
    () =>
      job.stdout().includes('Press Ctrl-C to stop') ? job.stdout() : hasExited(job) && 'exited',
    { what: 'the hint of start --provider cri', timeoutMs: 300_000, intervalMs: 500 },
  );
  if (printed === 'exited')
    assert.fail(
      `start --provider cri exited (${String(job.child.signalCode ?? job.child.exitCode)}) before its hint:\n${tail(job.stderr())}`,
    );
  return printed;
}

/** The hint's shell lines (indented by two spaces, `export` ones first), as printed. */
function hintLines(hint: string): { exports: string[]; line: (prefix: string) => string } {
  const lines = hint
    .split('\n')
    .filter((l) => l.startsWith('  '))
    .map((l) => l.slice(2));
  return {
    exports: lines.filter((l) => l.startsWith('export ')),
    line: (prefix) => {
      const found = lines.find((l) => l.startsWith(prefix));
      assert.ok(found, `the hint has no line starting with ${prefix}:\n${hint}`);
      return found;
    },
  };
}

/** Runs one printed line as printed, in a shell of the job's user that ran the printed exports. */
function shell(
  job: StartedMainJob,
  exports: readonly string[],
  line: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['-c', [...exports, line].join('\n')],
      { cwd: job.home, env: job.env, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/** What the job started on the host, taken while it runs: to be gone once it has exited. */
interface HostState {
  readonly processes: ProcessEntry[];
  readonly netns: string[];
  readonly bridge: string;
  readonly cniNetwork: string;
}

function hostStateOf(job: StartedMainJob): HostState {
  const processes = processTree(job.child.pid ?? -1, job.home);
  const has = (what: string, re: RegExp): void => {
    assert.ok(
      processes.some((p) => re.test(p.cmdline)),
      `no ${what} among the job's processes:\n${processes.map((p) => p.cmdline).join('\n')}`,
    );
  };
  has('containerd', /^\/usr\/bin\/containerd /);
  has('containerd shim', /containerd-shim/);
  has('registry', /docker-registry serve/);
  has('kube-apiserver', /kube-apiserver /);
  has('etcd', /etcd /);
  has('container (sleep 3600)', /^sleep 3600$/);
  const netns = namedNetnsOf(processes);
  assert.ok(netns.length > 0, "no named network namespace of the job's pods");
  const template = JSON.parse(
    readFileSync(join(runtimeDirOf(job), 'cni-template.json'), 'utf8'),
  ) as { name: string; plugins: { bridge?: string }[] };
  const bridge = template.plugins[0]?.bridge ?? '';
  assert.equal(spawnSync('ip', ['link', 'show', bridge]).status, 0, `the bridge ${bridge}`);
  assert.equal(
    spawnSync('nft', ['list', 'table', 'inet', guardTable(CRI_NODE)]).status,
    0,
    "the node's guard",
  );
  return { processes, netns, bridge, cniNetwork: template.name };
}

const runtimeDirOf = (job: StartedMainJob): string =>
  join(job.home, '.local', 'state', 'virtual-kubelet', 'dev-runtime');

/** Sends `signal`; the job exits 0 in time and leaves none of `state` behind. */
async function stopAndCheck(
  job: StartedMainJob,
  signal: NodeJS.Signals,
  state: HostState,
): Promise<void> {
  job.child.kill(signal);
  await waitFor(() => hasExited(job), {
    what: `the exit after ${signal}`,
    timeoutMs: 120_000,
    intervalMs: 200,
  }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}:\n${tail(job.stderr())}`);
  });
  const { code, signal: killedBy } = await job.exited;
  assert.equal(killedBy, null, tail(job.stderr()));
  assert.equal(code, 0, tail(job.stderr()));
  assert.deepEqual(
    stillRunning(state.processes).map((p) => `${String(p.pid)} ${p.cmdline}`),
    [],
    'processes of the job still run',
  );
  assert.deepEqual(
    processTable()
      .filter((p) => p.cmdline.includes(job.home))
      .map((p) => `${String(p.pid)} ${p.cmdline}`),
    [],
    "processes naming the job's directories",
  );
  assert.deepEqual(await mountsBelow(job.home), []);
  for (const name of state.netns) {
    assert.equal(existsSync(join(NETNS_DIR, name)), false, `network namespace ${name}`);
    assert.deepEqual(await mountsBelow(join(NETNS_DIR, name)), [], `the mount of ${name}`);
  }
  assert.notEqual(spawnSync('ip', ['link', 'show', state.bridge]).status, 0, 'the bridge is left');
  assert.equal(existsSync(join('/var/lib/cni/networks', state.cniNetwork)), false, 'CNI IPAM');
  assert.notEqual(
    spawnSync('nft', ['list', 'table', 'inet', guardTable(CRI_NODE)]).status,
    0,
    "the node's guard is left",
  );
  assert.equal(existsSync(join(runtimeDirOf(job), 'nodes', CRI_NODE)), false, "the node's state");
  await rm(job.home, { recursive: true, force: true });
  assert.equal(existsSync(job.home), false);
}

test("npm start -- --provider cri works as printed on a fresh machine: the hint's kubectl lines run as printed and do what they say; SIGINT exits 0 and leaves no process, mount, network namespace, bridge or guard", async (t) => {
  const job = await startMainJob(t);
  const hint = await hintOf(job);
  const state = join(job.home, '.local', 'state', 'virtual-kubelet');
  assert.ok(
    hint.includes(`  export KUBECONFIG=${join(state, 'dev-cluster', 'admin.kubeconfig')}\n`),
    `the kubeconfig of its own dev cluster:\n${hint}`,
  );
  assert.ok(
    hint.includes(`in containerd (unix://${join(runtimeDirOf(job), 'containerd.sock')})`),
    `its own dev runtime:\n${hint}`,
  );
  const { exports, line } = hintLines(hint);
  const sh = (l: string) => shell(job, exports, l);
  /** Runs the printed line until `ok` holds of its result; resolves to its output. */
  const until = (l: string, what: string, ok: (stdout: string) => boolean): Promise<string> =>
    waitFor(
      async () => {
        const r = await sh(l);
        if (r.code === 0 && ok(r.stdout)) return r.stdout;
        throw new Error(`${l}: exit ${String(r.code)}: ${r.stdout}${r.stderr}`);
      },
      { what, timeoutMs: 120_000, intervalMs: 1_000 },
    );
  const created = async (l: string, pod: string): Promise<void> => {
    const r = await sh(l);
    assert.equal(r.code, 0, `${l}: ${r.stderr}`);
    assert.equal(r.stdout, `pod/${pod} created\n`);
  };

  const nodes = await sh(line('kubectl get nodes -o wide'));
  assert.equal(nodes.code, 0, nodes.stderr);
  assert.match(nodes.stdout, new RegExp(`^${CRI_NODE}\\s+Ready\\s`, 'm'));

  await created(line('kubectl run hello '), 'hello');
  // "the test image's os-release, not the host's"
  await until(line('kubectl logs hello'), "hello's logs", (o) => o === BUSYBOX_OS_RELEASE);

  await created(line('kubectl run shell '), 'shell');
  await until(
    line('kubectl exec shell -- cat /etc/os-release'),
    'exec in shell',
    (o) => o === BUSYBOX_OS_RELEASE,
  );

  // "an HTTP server on :8080", at the address `get pods -o wide` shows, in the pod CIDR.
  await created(line('kubectl run web '), 'web');
  const getPods = line('kubectl get pods -o wide');
  const webLine = /^web\s+1\/1\s+Running\s+0\s+\S+\s+(10\.244\.0\.\d+)\s+vk-cri\s/m;
  const pods = await until(
    getPods,
    'hello Completed, shell and web Running on vk-cri',
    (o) =>
      /^hello\s+0\/1\s+Completed\s/m.test(o) &&
      /^shell\s+1\/1\s+Running\s/m.test(o) &&
      webLine.test(o),
  );
  const webIp = webLine.exec(pods)?.[1] ?? '';
  const body = await waitFor(
    async () => {
      const res = await fetch(`http://${webIp}:8080/`);
      return res.ok ? res.text() : undefined;
    },
    { what: `an answer from web on ${webIp}:8080` },
  );
  assert.equal(body, 'hello from web\n');

  // "ImagePullBackOff"
  await created(line('kubectl run bad '), 'bad');
  await until(getPods, 'bad in ImagePullBackOff', (o) =>
    /^bad\s+0\/1\s+ImagePullBackOff\s/m.test(o),
  );

  await stopAndCheck(job, 'SIGINT', hostStateOf(job));
});

test('npm start -- --provider cri stopped with SIGTERM exits 0 and leaves no process, mount, network namespace, bridge or guard', async (t) => {
  const job = await startMainJob(t);
  const { exports, line } = hintLines(await hintOf(job));
  const run = await shell(job, exports, line('kubectl run shell '));
  assert.equal(run.code, 0, run.stderr);
  await waitFor(
    async () => {
      const r = await shell(job, exports, line('kubectl exec shell -- cat /etc/os-release'));
      return r.code === 0 && r.stdout === BUSYBOX_OS_RELEASE;
    },
    { what: 'a running container (exec in shell)', timeoutMs: 120_000, intervalMs: 1_000 },
  );
  await stopAndCheck(job, 'SIGTERM', hostStateOf(job));
});

/**
 * The cri provider against the real control plane and a real containerd (the dev runtime):
 * pods run as containers from the test images in the local registry, and kubectl sees them as
 * it sees a kubelet's.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  binaryPaths,
  BUSYBOX_OS_RELEASE,
  CLUSTER_DOMAIN,
  freePorts,
  spawnOwned,
  stopProcess,
} from '../../src/devcluster/index.js';
import { createDnsInterface, run, writeCorefile } from '../../src/devcluster/services.js';
import { CriClient, type Message } from '../../src/providers/cri/client.js';
import type { CriConfig } from '../../src/providers/cri/index.js';
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

/**
 * The kubernetes provider between two real control planes: the run's dev cluster (local) and
 * one this file starts (remote), whose worker is a mock-provider virtual node run in this
 * process with its kubelet API served, so the remote API server can proxy logs and exec to it.
 * The local virtual node runs the kubernetes provider against the remote cluster, as an identity
 * that has only the shipped least-privilege ClusterRole there. The `--nodes` test starts one
 * more remote cluster of its own, and the admission webhook tests serve the remote API server's
 * webhook from this process.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { WebhookAuthorizer } from '../../src/api/auth.js';
import { VirtualNode } from '../../src/agent/virtual-node.js';
import {
  DevCluster,
  ensureBinaries,
  issueCert,
  renderKubeconfig,
  writeNodeKubeconfig,
  type ClusterInfo,
} from '../../src/devcluster/index.js';
import { KubeClient, loadKubeConfig } from '../../src/kube/client.js';
import { freePorts } from '../../src/devcluster/cluster.js';
import type { AttachStreams, Summary } from '../../src/provider.js';
import { KubernetesProvider, parseKubernetesConfig } from '../../src/providers/kubernetes/index.js';
import { MockProvider } from '../../src/providers/mock/index.js';
import {
  spawnAgent,
  startNode,
  uniqueNodeName,
  waitNodeReady,
  type InProcessNode,
} from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { relayFromHost, testHost } from '../helpers/netns.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { waitFor } from '../helpers/wait.js';

const ORIGIN_UID = 'virtual-kubelet.io/origin-uid';

let dir = '';
let remote: DevCluster | undefined;
let info: ClusterInfo;
let remoteCore: k8s.CoreV1Api;
let workerName = '';
/** The provider's identity in the remote cluster: bound by the shipped least-privilege manifest only. */
let offloadKubeconfig = '';
const cleanups: (() => Promise<void>)[] = [];

/**
 * The remote worker's address: one of this machine's own, not loopback, because the API server
 * refuses to proxy `nodes/<n>/proxy/...` (which the stats read) to a loopback node address.
 * 127.0.0.1 when the machine has no other (the stats test is then skipped).
 */
const workerIP =
  Object.values(networkInterfaces())
    .flat()
    .find((a) => a?.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1';

/** Where the remote worker keeps each container's files: `<dir>/fs/<namespace>/<pod>`. */
const containerRoot = (namespace: string, pod: string): string => join(dir, 'fs', namespace, pod);

/**
 * The mock provider, whose containers also have a `tar` (the host's, run in the container's own
 * folder), so that `kubectl cp` has something to talk to. Absolute paths are the container's:
 * `-C /tmp` becomes the folder's `tmp`, and `/tmp/f` is named `tmp/f` from the folder, as tar
 * names it after dropping the leading slash.
 */
class WorkerProvider extends MockProvider {
  override async runInContainer(
    namespace: string,
    pod: string,
    container: string,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number> {
    if (command[0] !== 'tar')
      return super.runInContainer(namespace, pod, container, command, streams, signal);
    const root = containerRoot(namespace, pod);
    await mkdir(join(root, 'tmp'), { recursive: true });
    const args = command
      .slice(1)
      .map((a, i, all) =>
        all[i - 1] === '-C' ? join(root, a) : a.startsWith('/') ? a.replace(/^\/+/, '') : a,
      );
    const child = spawn('tar', args, { cwd: root, signal, stdio: ['pipe', 'pipe', 'pipe'] });
    child.on('error', () => undefined);
    if (streams.stdin) streams.stdin.pipe(child.stdin);
    else child.stdin.end();
    child.stdout.on('data', (d: Buffer) => streams.stdout?.write(d));
    child.stderr.on('data', (d: Buffer) => streams.stderr?.write(d));
    const [code] = (await once(child, 'close')) as [number | null];
    streams.stdin?.unpipe(child.stdin);
    return code ?? 137;
  }
}

/** A remote cluster's worker: a mock virtual node serving the kubelet API on a free port. */
interface RemoteWorker {
  readonly name: string;
  stop(): Promise<void>;
}

async function startRemoteWorker(cluster: ClusterInfo): Promise<RemoteWorker> {
  const name = uniqueNodeName('remote-worker');
  const kc = loadKubeConfig(
    await writeNodeKubeconfig({
      pkiDir: cluster.pkiDir,
      server: cluster.server,
      nodeName: name,
      path: join(dir, `node-${name}.kubeconfig`),
    }),
  );
  const client = await KubeClient.create(kc);
  const certName = `serving-${name}`;
  await issueCert(cluster.pkiDir, {
    name: certName,
    cn: `system:node:${name}`,
    organizations: ['system:nodes'],
    usage: 'server',
    sans: [...new Set(['IP:127.0.0.1', `IP:${workerIP}`])].concat(`DNS:${name}`),
  });
  const provider = new WorkerProvider({ nodeName: name, config: {}, notify: true });
  const node = new VirtualNode({
    client,
    nodeName: name,
    provider,
    nodeIP: workerIP,
    taints: [{ key: 'virtual-kubelet.io/provider', value: 'mock', effect: 'NoSchedule' }],
    kubeletVersion: 'v1.37.2-vk-test',
    node: { statusUpdateIntervalMs: 2_000, pingIntervalMs: 500, leaseDurationSeconds: 8 },
    pods: { pollIntervalMs: 300, fullResyncPeriodMs: 10_000, maxBackoffMs: 2_000 },
    api: {
      cert: await readFile(join(cluster.pkiDir, `${certName}.crt`), 'utf8'),
      key: await readFile(join(cluster.pkiDir, `${certName}.key`), 'utf8'),
      clientCA: await readFile(join(cluster.pkiDir, 'ca.crt')),
      port: 0,
      host: workerIP,
      authorizer: new WebhookAuthorizer({ client, nodeName: name }),
    },
  });
  const controller = new AbortController();
  const running = node.run(controller.signal);
  const stop = async (): Promise<void> => {
    controller.abort();
    await running;
    await provider.close();
    client.close();
  };
  try {
    await Promise.race([node.whenReady(), running]);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { name, stop };
}

/** Gives a remote cluster the shipped least-privilege RBAC of the provider's identity. */
async function grantOffload(cluster: ClusterInfo): Promise<void> {
  const rbac = new URL('../../deploy/kubernetes-provider-remote-rbac.yaml', import.meta.url)
    .pathname;
  await kubectl(['apply', '-f', rbac], { kubeconfig: cluster.adminKubeconfig });
}

/**
 * A kubeconfig of the provider's identity (`virtual-kubelet-offload`, which the shipped RBAC
 * binds) in a remote cluster, with a certificate of its own named `name`.
 */
async function offloadKubeconfigFor(cluster: ClusterInfo, name: string): Promise<string> {
  await issueCert(cluster.pkiDir, { name, cn: 'virtual-kubelet-offload', usage: 'client' });
  const path = join(dir, `${name}.kubeconfig`);
  await writeFile(
    path,
    await renderKubeconfig({
      server: cluster.server,
      caFile: join(cluster.pkiDir, 'ca.crt'),
      certFile: join(cluster.pkiDir, `${name}.crt`),
      keyFile: join(cluster.pkiDir, `${name}.key`),
      name,
    }),
  );
  return path;
}

/** An API client of a cluster as its admin. */
function adminApi<T extends k8s.ApiType>(cluster: ClusterInfo, api: k8s.ApiConstructor<T>): T {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.adminKubeconfig);
  return kc.makeApiClient(api);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vk-e2e-kubeprov-'));
  // The runner's sweep of stale vk-e2e-* directories leaves those of a live owner alone.
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  remote = new DevCluster({ dir, binaries: await ensureBinaries() });
  info = await remote.start();
  remoteCore = adminApi(info, k8s.CoreV1Api);
  const worker = await startRemoteWorker(info);
  workerName = worker.name;
  cleanups.push(() => worker.stop());
  await grantOffload(info);
  offloadKubeconfig = await offloadKubeconfigFor(info, 'offload');
});

after(async () => {
  for (const fn of cleanups.reverse()) await fn();
  await remote?.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Offload {
  readonly local: InProcessNode;
  readonly provider: KubernetesProvider;
}

/** A local virtual node whose pods run in the remote cluster, on its worker. */
async function offloadNode(
  t: TestContext,
  nodeName?: string,
  config: Record<string, unknown> = {},
  nodeIP = '127.0.0.1',
): Promise<Offload> {
  const name = nodeName ?? uniqueNodeName('kube');
  const provider = await KubernetesProvider.create({
    nodeName: name,
    nodeIP,
    config: parseKubernetesConfig({
      kubeconfig: offloadKubeconfig,
      nodeSelector: { 'kubernetes.io/hostname': workerName },
      tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
      capacityRefreshSeconds: 1,
      ...config,
    }),
  });
  const local = await startNode(t, { nodeName: name, provider, api: true, nodeIP });
  t.after(() => provider.close(AbortSignal.timeout(10_000)));
  return { local, provider };
}

function podOn(nodeName: string, name: string, extra: Partial<k8s.V1PodSpec> = {}): k8s.V1Pod {
  return {
    metadata: { name, labels: { app: name } },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': nodeName },
      tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
      containers: [{ name: 'app', image: 'example.invalid/app:1' }],
      ...extra,
    },
  };
}

const localCore = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

async function remotePodsOf(namespace: string, uid: string): Promise<k8s.V1Pod[]> {
  const list = await remoteCore
    .listNamespacedPod({ namespace, labelSelector: `${ORIGIN_UID}=${uid}` })
    .catch(() => ({ items: [] }));
  return list.items;
}

async function runningLocal(namespace: string, name: string): Promise<k8s.V1Pod> {
  return waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ namespace, name });
      return p.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    },
    { what: `local pod ${namespace}/${name} Running with an IP`, timeoutMs: 120_000 },
  );
}

test('a Deployment on the virtual node runs in the remote cluster, its status reflected', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  const apps = testCluster().kc.makeApiClient(k8s.AppsV1Api);
  const template = podOn(local.nodeName, 'web');
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name: 'web' },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'web' } },
        template: { metadata: template.metadata, spec: template.spec },
      },
    },
  });
  await waitFor(
    async () =>
      (await apps.readNamespacedDeployment({ name: 'web', namespace: ns })).status
        ?.availableReplicas === 2,
    { what: 'the Deployment available with 2 replicas', timeoutMs: 90_000 },
  );
  const pods = (await localCore().listNamespacedPod({ namespace: ns })).items;
  assert.equal(pods.length, 2);
  for (const p of pods) {
    const uid = p.metadata?.uid ?? '';
    const [copy, ...more] = await remotePodsOf(ns, uid);
    assert.ok(copy, `a remote pod for ${p.metadata?.name ?? ''}`);
    assert.equal(more.length, 0, 'created once');
    assert.equal(copy.metadata?.name, p.metadata?.name, 'the name is kept');
    assert.equal(copy.spec?.nodeName, workerName, 'scheduled by the remote scheduler');
    assert.equal(copy.metadata?.annotations?.['virtual-kubelet.io/origin-namespace'], ns);
    assert.equal(copy.metadata?.labels?.['virtual-kubelet.io/origin-node'], local.nodeName);
    assert.equal(copy.metadata?.labels?.app, 'web');
    assert.equal(p.status?.podIP, copy.status?.podIP, 'the remote pod IP is reported');
    assert.equal(p.status?.phase, 'Running');
    assert.ok(
      p.status?.containerStatuses?.[0]?.ready,
      'container statuses come from the remote pod',
    );
  }
  // The remote namespace was made for the pods.
  const remoteNs = await remoteCore.readNamespace({ name: ns });
  assert.equal(remoteNs.metadata?.labels?.['virtual-kubelet.io/reflected'], 'true');
  // Scaled down: the remote pod goes with the local one.
  await apps.patchNamespacedDeploymentScale(
    { name: 'web', namespace: ns, body: { spec: { replicas: 0 } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await waitFor(
    async () =>
      (await remoteCore.listNamespacedPod({ namespace: ns })).items.length === 0 &&
      (await localCore().listNamespacedPod({ namespace: ns })).items.length === 0,
    { what: 'local and remote pods gone', timeoutMs: 90_000 },
  );
});

test('the virtual node offers the remote workers free capacity', async (t) => {
  const { local } = await offloadNode(t);
  const millicores = (q: string | undefined): number =>
    q?.endsWith('m') ? Number(q.slice(0, -1)) : Number(q) * 1000;
  // What other virtual nodes' pods (earlier tests) take of the worker is not offered.
  const expected = async (): Promise<{ pods: number; cpu: number }> => {
    const worker = await remoteCore.readNode({ name: workerName });
    const others = (
      await remoteCore.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${workerName}` })
    ).items.filter(
      (p) =>
        p.status?.phase !== 'Succeeded' &&
        p.status?.phase !== 'Failed' &&
        p.metadata?.labels?.['virtual-kubelet.io/origin-node'] !== local.nodeName,
    );
    return {
      pods: Number(worker.status?.allocatable?.pods) - others.length,
      cpu: millicores(worker.status?.allocatable?.cpu),
    };
  };
  let last = '';
  const node = await waitFor(
    async () => {
      const n = await localCore().readNode({ name: local.nodeName });
      const want = await expected();
      last = `want ${JSON.stringify(want)}, node has ${JSON.stringify(n.status?.allocatable)}`;
      return Number(n.status?.allocatable?.pods) === want.pods &&
        millicores(n.status?.allocatable?.cpu) === want.cpu
        ? n
        : undefined;
    },
    { what: 'the remote capacity on the local node' },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}: ${last}`);
  });
  assert.equal(node.metadata?.labels?.['virtual-kubelet.io/provider'], 'kubernetes');
});

test('a ConfigMap edit reaches the remote copy; the copy goes with the last pod', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await localCore().createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: 'settings' }, data: { 'app.conf': 'color=blue' } },
  });
  const pod = podOn(local.nodeName, 'reader', {
    volumes: [{ name: 'cfg', configMap: { name: 'settings' } }],
    containers: [
      {
        name: 'app',
        image: 'example.invalid/app:1',
        volumeMounts: [{ name: 'cfg', mountPath: '/cfg' }],
      },
    ],
  });
  await localCore().createNamespacedPod({ namespace: ns, body: pod });
  await runningLocal(ns, 'reader');
  const remoteData = async (): Promise<string | undefined> =>
    (
      await remoteCore
        .readNamespacedConfigMap({ name: 'settings', namespace: ns })
        .catch(() => undefined)
    )?.data?.['app.conf'];
  assert.equal(await remoteData(), 'color=blue');
  await localCore().patchNamespacedConfigMap(
    { name: 'settings', namespace: ns, body: { data: { 'app.conf': 'color=green' } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await waitFor(async () => (await remoteData()) === 'color=green', {
    what: 'the edit in the remote copy',
    timeoutMs: 120_000,
  });
  await localCore().deleteNamespacedPod({ name: 'reader', namespace: ns, gracePeriodSeconds: 0 });
  await waitFor(async () => (await remoteData()) === undefined, {
    what: 'the remote copy removed with its last pod',
    timeoutMs: 60_000,
  });
  // The provider made the remote namespace: it goes once nothing is left in it.
  await waitFor(
    async () =>
      (await remoteCore.readNamespace({ name: ns }).catch(() => undefined)) === undefined ||
      (await remoteCore.readNamespace({ name: ns })).status?.phase === 'Terminating',
    { what: 'the unused remote namespace deleted', timeoutMs: 60_000 },
  );
});

/** The addresses of the EndpointSlices of Service `name`, with the slices' managers. */
async function endpointsOf(
  discovery: k8s.DiscoveryV1Api,
  namespace: string,
  name: string,
): Promise<{ addresses: string[]; managers: string[] }> {
  const slices = await discovery.listNamespacedEndpointSlice({
    namespace,
    labelSelector: `kubernetes.io/service-name=${name}`,
  });
  return {
    addresses: slices.items.flatMap((s) => s.endpoints.flatMap((e) => e.addresses)),
    managers: slices.items.map(
      (s) => s.metadata?.labels?.['endpointslice.kubernetes.io/managed-by'] ?? '',
    ),
  };
}

test('a reflected Service gets endpoints in both clusters; one annotated reflect=false stays local', async (t) => {
  const { local } = await offloadNode(t, undefined, {
    reflect: ['ConfigMap', 'Secret', 'ServiceAccount', 'Service'],
  });
  const ns = await testNamespace(t, 'kp');
  // A remote namespace the provider did not make: it is never deleted.
  await remoteCore.createNamespace({ body: { metadata: { name: ns } } });
  t.after(() =>
    remoteCore.deleteNamespace({ name: ns }).then(
      () => undefined,
      () => undefined,
    ),
  );
  await localCore().createNamespacedService({
    namespace: ns,
    body: {
      metadata: { name: 'web' },
      spec: {
        type: 'NodePort',
        selector: { app: 'web' },
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      },
    },
  });
  await localCore().createNamespacedService({
    namespace: ns,
    body: {
      metadata: { name: 'private', annotations: { 'virtual-kubelet.io/reflect': 'false' } },
      spec: { selector: { app: 'web' }, ports: [{ port: 81 }] },
    },
  });
  await localCore().createNamespacedPod({ namespace: ns, body: podOn(local.nodeName, 'web') });
  const pod = await runningLocal(ns, 'web');
  const podIP = pod.status?.podIP ?? '';
  const remoteService = async (name: string): Promise<k8s.V1Service | undefined> =>
    remoteCore.readNamespacedService({ name, namespace: ns }).catch(() => undefined);
  const copy = await waitFor(() => remoteService('web'), { what: 'the remote Service' });
  assert.equal(copy.spec?.type, 'ClusterIP', 'a NodePort Service is reflected as ClusterIP');
  assert.deepEqual(copy.spec?.selector, { app: 'web' });
  assert.equal(copy.spec?.ports?.[0]?.nodePort, undefined);
  assert.equal(copy.metadata?.labels?.['virtual-kubelet.io/origin-node'], local.nodeName);
  // The remote EndpointSlice controller lists the remote pod; the local one lists the local pod
  // under the IP the provider reports (the remote pod's): nothing needs reflecting back.
  const remoteDiscovery = (() => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(info.adminKubeconfig);
    return kc.makeApiClient(k8s.DiscoveryV1Api);
  })();
  const localDiscovery = testCluster().kc.makeApiClient(k8s.DiscoveryV1Api);
  const remoteEndpoints = await waitFor(
    async () => {
      const e = await endpointsOf(remoteDiscovery, ns, 'web');
      return e.addresses.includes(podIP) ? e : undefined;
    },
    { what: `the remote pod ${podIP} as an endpoint of the remote Service`, timeoutMs: 60_000 },
  );
  assert.deepEqual(remoteEndpoints.managers, ['endpointslice-controller.k8s.io']);
  const localEndpoints = await waitFor(
    async () => {
      const e = await endpointsOf(localDiscovery, ns, 'web');
      return e.addresses.includes(podIP) ? e : undefined;
    },
    { what: `the reported pod IP ${podIP} as an endpoint of the local Service`, timeoutMs: 60_000 },
  );
  assert.deepEqual(localEndpoints.managers, ['endpointslice-controller.k8s.io']);
  assert.equal(await remoteService('private'), undefined, 'reflect=false is not reflected');
  // An edit reaches the copy; a deletion removes it.
  await localCore().patchNamespacedService(
    {
      name: 'web',
      namespace: ns,
      body: { spec: { ports: [{ name: 'http', port: 80, targetPort: 9090 }] } },
    },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await waitFor(async () => (await remoteService('web'))?.spec?.ports?.[0]?.targetPort === 9090, {
    what: 'the new target port on the remote Service',
  });
  await localCore().deleteNamespacedService({ name: 'web', namespace: ns });
  await waitFor(async () => (await remoteService('web')) === undefined, {
    what: 'the remote Service removed with the local one',
  });
  // The last pod gone (the provider's deletePod, which removes unused namespaces, has returned):
  // the namespace it did not make is still there.
  await localCore().deleteNamespacedPod({ name: 'web', namespace: ns, gracePeriodSeconds: 0 });
  await waitFor(
    async () =>
      (await localCore()
        .readNamespacedPod({ name: 'web', namespace: ns })
        .catch(() => undefined)) === undefined,
    { what: 'the local pod gone' },
  );
  const kept = await remoteCore.readNamespace({ name: ns });
  assert.equal(kept.status?.phase, 'Active', 'a remote namespace the provider did not make stays');
});

test('kubectl logs and exec go through both API servers', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await localCore().createNamespacedPod({ namespace: ns, body: podOn(local.nodeName, 'shell') });
  await runningLocal(ns, 'shell');
  const logs = await kubectl(['logs', '-n', ns, 'shell']);
  assert.match(logs.stdout, new RegExp(`mock: container app of ${ns}/shell started`));
  const exec = await kubectl(['exec', '-n', ns, 'shell', '--', 'sh', '-c', 'echo hello; exit 3'], {
    allowFailure: true,
  });
  assert.equal(exec.stdout.trim(), 'hello');
  assert.equal(exec.code, 3, 'the remote exit code comes back');
  const cat = await kubectl(['exec', '-i', '-n', ns, 'shell', '--', 'cat'], {
    input: 'from stdin\n',
  });
  assert.equal(cat.stdout, 'from stdin\n');
});

test('kubectl port-forward reaches the remote pod through both API servers', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await localCore().createNamespacedPod({
    namespace: ns,
    body: podOn(local.nodeName, 'echo', {
      containers: [
        { name: 'app', image: 'example.invalid/app:1', ports: [{ containerPort: 8080 }] },
      ],
    }),
  });
  await runningLocal(ns, 'echo');
  const c = testCluster();
  const pf = spawn(c.kubectlPath, ['port-forward', '-n', ns, 'pod/echo', ':8080'], {
    env: { ...process.env, KUBECONFIG: c.kubeconfigPath },
  });
  t.after(onOrphaned(() => pf.kill('SIGKILL')));
  t.after(() => pf.kill());
  const port = await new Promise<number>((resolve, reject) => {
    let text = '';
    pf.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(text);
      if (m?.[1]) resolve(Number(m[1]));
    });
    pf.on('exit', (code) => reject(new Error(`kubectl port-forward exited with ${String(code)}`)));
  });
  const data = randomBytes(1024 * 1024);
  const back = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let n = 0;
    socket.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= data.length) socket.end();
    });
    socket.on('close', () => resolve(Buffer.concat(got)));
    socket.on('error', reject);
    socket.write(data);
  });
  assert.ok(back.equals(data), 'the echo came back whole');
});

test('a remote pod deleted behind the agents back is created again, with an Event', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  const created = await localCore().createNamespacedPod({
    namespace: ns,
    body: podOn(local.nodeName, 'survivor'),
  });
  const uid = created.metadata?.uid ?? '';
  await runningLocal(ns, 'survivor');
  const [first] = await remotePodsOf(ns, uid);
  assert.ok(first);
  await remoteCore.deleteNamespacedPod({ name: 'survivor', namespace: ns, gracePeriodSeconds: 0 });
  const second = await waitFor(
    async () => {
      const pods = await remotePodsOf(ns, uid);
      return pods.length === 1 && pods[0]?.metadata?.uid !== first.metadata?.uid
        ? pods[0]
        : undefined;
    },
    { what: 'the remote pod made again', timeoutMs: 60_000 },
  );
  assert.equal(second.metadata?.name, 'survivor');
  await waitFor(
    async () =>
      (await localCore().listNamespacedEvent({ namespace: ns })).items.some(
        (e) => e.reason === 'RemotePodRecreated' && e.involvedObject.name === 'survivor',
      ),
    { what: 'the RemotePodRecreated Event' },
  );
  const kept = await localCore().readNamespacedPod({ name: 'survivor', namespace: ns });
  assert.equal(kept.metadata?.uid, uid, 'the local pod is the truth: kept');
  const again = await waitFor(
    async () => {
      const [p] = await remotePodsOf(ns, uid);
      return p?.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    },
    { what: 'the new remote pod Running' },
  );
  // The local status follows the new remote pod, whose address may differ from the first's.
  await waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ name: 'survivor', namespace: ns });
      return p.status?.phase === 'Running' && p.status.podIP === again.status?.podIP;
    },
    { what: "the local pod's status from the new remote pod" },
  );
});

test('the remote API server stopped and started: pods kept, the node NotReady then Ready', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  const created = await localCore().createNamespacedPod({
    namespace: ns,
    body: podOn(local.nodeName, 'steady'),
  });
  const uid = created.metadata?.uid ?? '';
  await runningLocal(ns, 'steady');
  const [before] = await remotePodsOf(ns, uid);
  assert.ok(before);
  await remote?.stopComponent('kube-apiserver');
  try {
    await waitNodeReady(local.nodeName, 'False', 60_000);
    const kept = await localCore().readNamespacedPod({ name: 'steady', namespace: ns });
    assert.equal(kept.metadata?.uid, uid, 'the local pod is kept');
  } finally {
    await remote?.startComponent('kube-apiserver');
  }
  await waitNodeReady(local.nodeName, 'True', 60_000);
  const after = await remotePodsOf(ns, uid);
  assert.equal(after.length, 1, 'nothing created twice');
  assert.equal(after[0]?.metadata?.uid, before.metadata?.uid, 'the same remote pod');
  await runningLocal(ns, 'steady');
  // The remote cluster's node controller may have tainted its worker while the API server was
  // away; the tests after this one schedule remote pods, so the worker must be schedulable again.
  await waitFor(
    async () => {
      const worker = await remoteCore.readNode({ name: workerName }).catch(() => undefined);
      const ready = worker?.status?.conditions?.some(
        (c) => c.type === 'Ready' && c.status === 'True',
      );
      const tainted = worker?.spec?.taints?.some((taint) =>
        taint.key.startsWith('node.kubernetes.io/'),
      );
      return ready === true && tainted !== true;
    },
    { what: 'the remote worker Ready and untainted', timeoutMs: 120_000 },
  );
});

test('a restarted agent adopts its remote pods by their origin UID and creates nothing twice', async (t) => {
  const nodeName = uniqueNodeName('kube-restart');
  const first = await offloadNode(t, nodeName);
  const ns = await testNamespace(t, 'kp');
  const created = await localCore().createNamespacedPod({
    namespace: ns,
    body: podOn(nodeName, 'adopted'),
  });
  const uid = created.metadata?.uid ?? '';
  await runningLocal(ns, 'adopted');
  const [before] = await remotePodsOf(ns, uid);
  await first.local.stop();
  await first.provider.close(AbortSignal.timeout(10_000));
  await offloadNode(t, nodeName);
  await waitNodeReady(nodeName, 'True', 60_000);
  await runningLocal(ns, 'adopted');
  // Give the new agent a full resync to do something wrong.
  await waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ name: 'adopted', namespace: ns });
      return p.status?.phase === 'Running';
    },
    { what: 'the adopted pod Running' },
  );
  const after = await remotePodsOf(ns, uid);
  assert.equal(after.length, 1);
  assert.equal(after[0]?.metadata?.uid, before?.metadata?.uid, 'the same remote pod, adopted');
  // Logs still reach the remote pod after the restart.
  const logs = await kubectl(['logs', '-n', ns, 'adopted']);
  assert.match(logs.stdout, /started/);
});

test('the virtual node summary and resource metrics list the offloaded pods with the remote figures', async (t) => {
  // A missing part fails the test with the reason, never skips it.
  assert.notEqual(
    workerIP,
    '127.0.0.1',
    'no address other than loopback for the remote worker, whose stats the API server proxies',
  );
  // The local API server, too, proxies only to global unicast node addresses: the virtual node
  // lives at a test host, relayed to its kubelet API.
  const host = testHost(t);
  const { local } = await offloadNode(t, undefined, {}, host.ip);
  await relayFromHost(t, host, local.node.server?.port ?? 0, local.node.server?.port ?? 0);
  const ns = await testNamespace(t, 'kp');
  const created = await localCore().createNamespacedPod({
    namespace: ns,
    body: podOn(local.nodeName, 'busy'),
  });
  const uid = created.metadata?.uid ?? '';
  await runningLocal(ns, 'busy');
  const [copy] = await remotePodsOf(ns, uid);
  assert.ok(copy?.metadata?.uid);
  const raw = `/api/v1/nodes/${local.nodeName}/proxy/stats/summary`;
  let last = '';
  const summary = await waitFor(
    async () => {
      const r = await kubectl(['get', '--raw', raw], { allowFailure: true });
      last = r.code === 0 ? r.stdout.slice(0, 500) : r.stderr;
      if (r.code !== 0) return undefined;
      const s = JSON.parse(r.stdout) as Summary;
      return s.pods.some((p) => p.podRef.name === 'busy') ? s : undefined;
    },
    { what: 'the offloaded pod in the summary of the virtual node', timeoutMs: 60_000 },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}: last answer ${last}`, { cause: err });
  });
  assert.equal(summary.node.nodeName, local.nodeName);
  const [pod, ...others] = summary.pods;
  assert.equal(others.length, 0, "only this node's pods, not the remote worker's others");
  assert.deepEqual(pod?.podRef, { namespace: ns, name: 'busy', uid }, 'the local names and UID');
  assert.ok((pod.cpu?.usageNanoCores ?? 0) > 0, 'CPU as the remote kubelet measured it');
  assert.ok((pod.memory?.workingSetBytes ?? 0) > 0, 'memory as the remote kubelet measured it');
  assert.equal(pod.containers[0]?.name, 'app');
  assert.equal(
    summary.node.memory?.workingSetBytes,
    pod.memory?.workingSetBytes,
    'the node sums its pods',
  );
  // The remote worker names the same pod by its remote UID.
  const remoteSummary = JSON.parse(
    (
      await kubectl(['get', '--raw', `/api/v1/nodes/${workerName}/proxy/stats/summary`], {
        kubeconfig: info.adminKubeconfig,
      })
    ).stdout,
  ) as Summary;
  assert.ok(remoteSummary.pods.some((p) => p.podRef.uid === copy.metadata?.uid));
  const metrics = await kubectl([
    'get',
    '--raw',
    `/api/v1/nodes/${local.nodeName}/proxy/metrics/resource`,
  ]);
  assert.match(
    metrics.stdout,
    new RegExp(
      `^pod_cpu_usage_seconds_total\\{namespace="${ns}",pod="busy"\\} [0-9.e+-]+ \\d+$`,
      'm',
    ),
  );
  assert.match(
    metrics.stdout,
    new RegExp(
      `^container_memory_working_set_bytes\\{container="app",namespace="${ns}",pod="busy"\\} \\d+`,
      'm',
    ),
  );
  const top = await waitFor(
    async () => {
      const r = await kubectl(['top', 'pod', 'busy', '-n', ns, '--no-headers'], {
        allowFailure: true,
      });
      return r.code === 0 ? r.stdout : undefined;
    },
    { what: 'kubectl top pod of the offloaded pod', timeoutMs: 90_000, intervalMs: 2_000 },
  );
  assert.match(top, /^busy\s+\d+m\s+\d+Mi/m);
});

test('kubectl attach and kubectl cp, both ways, go through both API servers', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await localCore().createNamespacedPod({
    namespace: ns,
    body: podOn(local.nodeName, 'shell', {
      containers: [{ name: 'app', image: 'example.invalid/app:1', stdin: true }],
    }),
  });
  await runningLocal(ns, 'shell');
  // The main process of a mock container reads stdin into its log: the session shows it.
  const attach = await kubectl(['attach', '-i', '-n', ns, 'shell', '-c', 'app'], {
    input: 'hello through attach\n',
    timeoutMs: 30_000,
  });
  assert.match(attach.stdout, /^hello through attach$/m);
  const logs = await kubectl(['logs', '-n', ns, 'shell']);
  assert.match(logs.stdout, /^hello through attach$/m, 'what attach sent reached the container');
  const sent = randomBytes(48 * 1024).toString('base64');
  const inPath = join(dir, `cp-in-${ns}.txt`);
  await writeFile(inPath, sent);
  await kubectl(['cp', '-c', 'app', inPath, `${ns}/shell:/tmp/in.txt`]);
  assert.equal(
    await readFile(join(containerRoot(ns, 'shell'), 'tmp', 'in.txt'), 'utf8'),
    sent,
    'the file is in the remote container',
  );
  const kept = randomBytes(48 * 1024).toString('hex');
  await writeFile(join(containerRoot(ns, 'shell'), 'tmp', 'out.txt'), kept);
  const outPath = join(dir, `cp-out-${ns}.txt`);
  await kubectl(['cp', '-c', 'app', `${ns}/shell:/tmp/out.txt`, outPath]);
  assert.equal(await readFile(outPath, 'utf8'), kept, 'the file came out of the remote container');
});

/** A remote namespace of the test's name, made beforehand and deleted when the test ends. */
async function remoteNamespaceFor(t: TestContext, ns: string): Promise<void> {
  await remoteCore.createNamespace({ body: { metadata: { name: ns } } });
  t.after(() =>
    remoteCore.deleteNamespace({ name: ns }).then(
      () => undefined,
      () => undefined,
    ),
  );
}

test('a remote ResourceQuota refuses the pod: Pending with the remote message, retried until the quota is raised', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await remoteNamespaceFor(t, ns);
  await remoteCore.createNamespacedResourceQuota({
    namespace: ns,
    body: { metadata: { name: 'pods' }, spec: { hard: { pods: '0' } } },
  });
  await waitFor(
    async () =>
      (await remoteCore.readNamespacedResourceQuota({ name: 'pods', namespace: ns })).status?.hard
        ?.pods === '0',
    { what: 'the remote quota in force' },
  );
  await localCore().createNamespacedPod({ namespace: ns, body: podOn(local.nodeName, 'limited') });
  const refusals = async (): Promise<k8s.CoreV1Event[]> =>
    (await localCore().listNamespacedEvent({ namespace: ns })).items.filter(
      (e) => e.reason === 'RemoteCreateFailed' && e.involvedObject.name === 'limited',
    );
  const [event] = await waitFor(
    async () => {
      const found = await refusals();
      return found.length > 0 ? found : undefined;
    },
    { what: 'the RemoteCreateFailed Event', timeoutMs: 60_000 },
  );
  assert.equal(event?.type, 'Warning');
  assert.match(event?.message ?? '', /exceeded quota: pods/, 'the remote message');
  const pending = await waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ name: 'limited', namespace: ns });
      return p.status?.reason === 'ProviderFailed' ? p : undefined;
    },
    { what: 'the local pod with the refusal in its status' },
  );
  assert.equal(pending.status?.phase, 'Pending', 'a quota refusal is not final');
  assert.match(pending.status?.message ?? '', /exceeded quota: pods/);
  // Retried: the refusal comes again.
  await waitFor(async () => (await refusals()).reduce((n, e) => n + (e.count ?? 1), 0) >= 2, {
    what: 'the create tried again',
    timeoutMs: 60_000,
  });
  assert.equal((await remoteCore.listNamespacedPod({ namespace: ns })).items.length, 0);
  await remoteCore.patchNamespacedResourceQuota(
    { name: 'pods', namespace: ns, body: { spec: { hard: { pods: '10' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await runningLocal(ns, 'limited');
});

test('a remote admission policy refusing the pod fails it for good, with the remote message', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await remoteNamespaceFor(t, ns);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(info.adminKubeconfig);
  const admission = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
  const name = `deny-refused-${ns}`;
  await admission.createValidatingAdmissionPolicy({
    body: {
      metadata: { name },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] },
          ],
        },
        validations: [
          {
            expression: "!has(object.metadata.labels) || !('refused' in object.metadata.labels)",
            message: 'pods labelled refused are not allowed here',
          },
        ],
      },
    },
  });
  await admission.createValidatingAdmissionPolicyBinding({
    body: {
      metadata: { name },
      spec: {
        policyName: name,
        validationActions: ['Deny'],
        matchResources: {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
        },
      },
    },
  });
  t.after(async () => {
    await admission.deleteValidatingAdmissionPolicyBinding({ name }).catch(() => undefined);
    await admission.deleteValidatingAdmissionPolicy({ name }).catch(() => undefined);
  });
  // In force once the API server refuses such a pod itself.
  await waitFor(
    async () =>
      remoteCore
        .createNamespacedPod({
          namespace: ns,
          dryRun: 'All',
          body: {
            metadata: { name: 'probe', labels: { refused: 'yes' } },
            spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
          },
        })
        .then(
          () => false,
          (err: unknown) => /pods labelled refused/.test(String(err)),
        ),
    { what: 'the admission policy in force' },
  );
  const pod = podOn(local.nodeName, 'refused');
  pod.metadata = { name: 'refused', labels: { refused: 'yes' } };
  await localCore().createNamespacedPod({ namespace: ns, body: pod });
  const failed = await waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ name: 'refused', namespace: ns });
      return p.status?.phase === 'Failed' ? p : undefined;
    },
    { what: 'the local pod Failed', timeoutMs: 60_000 },
  );
  assert.equal(failed.status?.reason, 'ProviderFailed');
  assert.match(failed.status?.message ?? '', /pods labelled refused are not allowed here/);
  const event = await waitFor(
    async () =>
      (await localCore().listNamespacedEvent({ namespace: ns })).items.find(
        (e) => e.reason === 'RemoteRefused' && e.involvedObject.name === 'refused',
      ),
    { what: 'the RemoteRefused Event' },
  );
  assert.equal(event.type, 'Warning');
  assert.match(event.message ?? '', /pods labelled refused are not allowed here/);
  assert.equal((await remoteCore.listNamespacedPod({ namespace: ns })).items.length, 0);
});

/** The test webhook's name (a webhook's name has three DNS labels at least). */
const WEBHOOK = 'deny-refused.virtual-kubelet.test';
/** What the test webhook says when it denies a pod. */
const WEBHOOK_MESSAGE = 'pods labelled refused are turned away by the test webhook';
/** The remote API server's words for the test webhook's denial. */
const WEBHOOK_DENIAL =
  /admission webhook "deny-refused\.virtual-kubelet\.test" denied the request: pods labelled refused are turned away by the test webhook/;

interface TestWebhook {
  /** The names of the pods the remote API server asked about, in order. */
  readonly reviewed: readonly string[];
  /** Stops serving: the remote API server's calls find nothing listening. */
  stop(): Promise<void>;
  /** Serves again, on the same port. */
  start(): Promise<void>;
}

/**
 * A validating admission webhook of the remote cluster, served by this process: HTTPS on
 * 127.0.0.1 with a certificate of the remote cluster's CA, answering AdmissionReview v1. With
 * `deny` it denies pods labelled `refused`, with WEBHOOK_MESSAGE and no status code of its own;
 * it allows every other pod. Registered (failurePolicy Fail)
 * for pod creations in the remote namespace `ns` only, so no other test meets it; in force when
 * this returns. Removed and stopped when the test ends.
 */
async function testWebhook(t: TestContext, ns: string, deny: boolean): Promise<TestWebhook> {
  const certName = `webhook-${ns}`;
  await issueCert(info.pkiDir, {
    name: certName,
    cn: WEBHOOK,
    usage: 'server',
    sans: ['IP:127.0.0.1'],
  });
  const read = (file: string): Promise<string> => readFile(join(info.pkiDir, file), 'utf8');
  const [cert, key, ca] = await Promise.all([
    read(`${certName}.crt`),
    read(`${certName}.key`),
    read('ca.crt'),
  ]);
  const reviewed: string[] = [];
  const server = createHttpsServer({ cert, key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        request?: { uid?: string; object?: k8s.V1Pod };
      };
      const pod = review.request?.object;
      reviewed.push(pod?.metadata?.name ?? '');
      const denied = deny && pod?.metadata?.labels?.refused !== undefined;
      res.setHeader('Content-Type', 'application/json');
      res.end(
        JSON.stringify({
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          response: {
            uid: review.request?.uid,
            allowed: !denied,
            ...(denied ? { status: { message: WEBHOOK_MESSAGE } } : {}),
          },
        }),
      );
    });
  });
  const listen = async (port: number): Promise<void> => {
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
  };
  const stop = async (): Promise<void> => {
    if (!server.listening) return;
    const closed = once(server, 'close');
    server.close();
    // Also the connections the API server keeps open: its next call finds nothing.
    server.closeAllConnections();
    await closed;
  };
  await listen(0);
  const { port } = server.address() as AddressInfo;
  const hook: TestWebhook = { reviewed, stop, start: () => listen(port) };
  const admission = adminApi(info, k8s.AdmissionregistrationV1Api);
  const name = `deny-refused-${ns}`;
  t.after(async () => {
    await admission.deleteValidatingWebhookConfiguration({ name }).catch(() => undefined);
    await stop();
  });
  await admission.createValidatingWebhookConfiguration({
    body: {
      metadata: { name },
      webhooks: [
        {
          name: WEBHOOK,
          clientConfig: {
            url: `https://127.0.0.1:${String(port)}/validate`,
            caBundle: Buffer.from(ca).toString('base64'),
          },
          rules: [
            {
              apiGroups: [''],
              apiVersions: ['v1'],
              operations: ['CREATE'],
              resources: ['pods'],
              scope: 'Namespaced',
            },
          ],
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
          failurePolicy: 'Fail',
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          timeoutSeconds: 5,
        },
      ],
    },
  });
  // In force once the remote API server asks it about a pod (a dry run creates nothing).
  await waitFor(
    async () => {
      await dryRunRefused(ns).catch(() => undefined);
      return reviewed.includes('probe');
    },
    { what: 'the remote API server calling the webhook' },
  );
  return hook;
}

/** A dry-run create of a pod `probe` labelled `refused` in the remote namespace `ns`. */
function dryRunRefused(ns: string): Promise<k8s.V1Pod> {
  return remoteCore.createNamespacedPod({
    namespace: ns,
    dryRun: 'All',
    body: {
      metadata: { name: 'probe', labels: { refused: 'yes' } },
      spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
    },
  });
}

test('a remote admission webhook denying the pod fails it for good, with its message in the status and an Event; other pods pass', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await remoteNamespaceFor(t, ns);
  const webhook = await testWebhook(t, ns, true);
  // The remote API server's answer to a denial without a code of the webhook's own.
  const answer = await dryRunRefused(ns).then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(answer instanceof k8s.ApiException, 'the remote API server refuses the pod');
  const apiError = answer as k8s.ApiException<unknown>;
  assert.equal(apiError.code, 400);
  const status = (
    typeof apiError.body === 'string' ? JSON.parse(apiError.body) : apiError.body
  ) as k8s.V1Status;
  assert.match(status.message ?? '', WEBHOOK_DENIAL);

  const pod = podOn(local.nodeName, 'refused');
  pod.metadata = { name: 'refused', labels: { refused: 'yes' } };
  await localCore().createNamespacedPod({ namespace: ns, body: pod });
  await localCore().createNamespacedPod({ namespace: ns, body: podOn(local.nodeName, 'welcome') });
  const failed = await waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ name: 'refused', namespace: ns });
      return p.status?.phase === 'Failed' ? p : undefined;
    },
    { what: 'the local pod Failed', timeoutMs: 60_000 },
  );
  assert.equal(failed.status?.reason, 'ProviderFailed');
  assert.match(failed.status?.message ?? '', WEBHOOK_DENIAL);
  const event = await waitFor(
    async () =>
      (await localCore().listNamespacedEvent({ namespace: ns })).items.find(
        (e) => e.reason === 'RemoteRefused' && e.involvedObject.name === 'refused',
      ),
    { what: 'the RemoteRefused Event' },
  );
  assert.equal(event.type, 'Warning');
  assert.match(event.message ?? '', WEBHOOK_DENIAL);
  assert.ok(webhook.reviewed.includes('refused'), 'the webhook was asked about the pod');
  // The webhook allows the pod without the label: it runs.
  const welcome = await runningLocal(ns, 'welcome');
  assert.ok(webhook.reviewed.includes('welcome'), 'the webhook was asked about the other pod');
  const names = (await remoteCore.listNamespacedPod({ namespace: ns })).items.map(
    (p) => p.metadata?.name,
  );
  assert.deepEqual(names, ['welcome'], 'only the allowed pod is in the remote cluster');
  assert.equal(
    (await remotePodsOf(ns, welcome.metadata?.uid ?? '')).length,
    1,
    'the allowed pod is the local one',
  );
});

test('a remote admission webhook that cannot be called keeps the pod Pending, retried, until it answers', async (t) => {
  const { local } = await offloadNode(t);
  const ns = await testNamespace(t, 'kp');
  await remoteNamespaceFor(t, ns);
  const webhook = await testWebhook(t, ns, false);
  await webhook.stop();
  await localCore().createNamespacedPod({ namespace: ns, body: podOn(local.nodeName, 'waiting') });
  const unreachable = /failed calling webhook "deny-refused\.virtual-kubelet\.test"/;
  const failures = async (): Promise<k8s.CoreV1Event[]> =>
    (await localCore().listNamespacedEvent({ namespace: ns })).items.filter(
      (e) => e.reason === 'RemoteCreateFailed' && e.involvedObject.name === 'waiting',
    );
  const [event] = await waitFor(
    async () => {
      const found = await failures();
      return found.length > 0 ? found : undefined;
    },
    { what: 'the RemoteCreateFailed Event', timeoutMs: 60_000 },
  );
  assert.equal(event?.type, 'Warning');
  assert.match(event?.message ?? '', unreachable, 'the remote message');
  const pending = await waitFor(
    async () => {
      const p = await localCore().readNamespacedPod({ name: 'waiting', namespace: ns });
      return p.status?.reason === 'ProviderFailed' ? p : undefined;
    },
    { what: 'the local pod with the refusal in its status' },
  );
  assert.equal(pending.status?.phase, 'Pending', 'a webhook that cannot be called is not final');
  assert.match(pending.status?.message ?? '', unreachable);
  // Retried: the refusal comes again.
  await waitFor(async () => (await failures()).reduce((n, e) => n + (e.count ?? 1), 0) >= 2, {
    what: 'the create tried again',
    timeoutMs: 60_000,
  });
  assert.equal((await remoteCore.listNamespacedPod({ namespace: ns })).items.length, 0);
  assert.ok(!webhook.reviewed.includes('waiting'), 'the webhook was not reached');
  await webhook.start();
  await runningLocal(ns, 'waiting');
  assert.ok(webhook.reviewed.includes('waiting'), 'the webhook, back, allowed the pod');
});

/** A remote cluster: its API client as admin, and its worker's name. */
interface RemoteCluster {
  readonly info: ClusterInfo;
  readonly core: k8s.CoreV1Api;
  readonly workerName: string;
}

/**
 * One more remote cluster, for this test only: a control plane of its own (as the file's remote
 * cluster, without metrics-server), a mock worker, and the shipped RBAC. Its worker stopped, the
 * control plane stopped and its directory removed when the test ends.
 */
async function anotherRemoteCluster(t: TestContext): Promise<RemoteCluster> {
  const clusterDir = join(dir, `remote-${randomBytes(3).toString('hex')}`);
  const cluster = new DevCluster({ dir: clusterDir, binaries: await ensureBinaries() });
  // The worker goes before its control plane.
  const workers: RemoteWorker[] = [];
  t.after(async () => {
    for (const w of workers) await w.stop().catch(() => undefined);
    await cluster.stop();
    await rm(clusterDir, { recursive: true, force: true });
  });
  const started = await cluster.start();
  const worker = await startRemoteWorker(started);
  workers.push(worker);
  await grantOffload(started);
  return { info: started, core: adminApi(started, k8s.CoreV1Api), workerName: worker.name };
}

test('one agent process with --nodes serves three virtual nodes: two offload into one remote cluster, with their own kubeconfigs and namespaces, the third into another', async (t) => {
  const ns = await testNamespace(t, 'kp');
  const other = await anotherRemoteCluster(t);
  const first: RemoteCluster = { info, core: remoteCore, workerName };
  const targets = [
    { side: 'east', remote: first },
    { side: 'west', remote: first },
    { side: 'far', remote: other },
  ] as const;
  const names = targets.map(({ side }) => uniqueNodeName(`kube-${side}`));
  // A kubeconfig per node, each with a certificate of its own for the user the shipped RBAC
  // binds: two in the first cluster, one from the other cluster's CA.
  const specs: { name: string; provider: string; providerConfig: string; port: number }[] = [];
  const ports = await freePorts(targets.length);
  for (const [i, { side, remote: r }] of targets.entries()) {
    const cert = `offload-${side}-${ns}`;
    const providerConfig = join(dir, `${cert}.json`);
    await writeFile(
      providerConfig,
      JSON.stringify({
        kubeconfig: await offloadKubeconfigFor(r.info, cert),
        namespaceMapping: 'Prefix',
        namespacePrefix: `${side}-`,
        nodeSelector: { 'kubernetes.io/hostname': r.workerName },
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
        capacityRefreshSeconds: 1,
      }),
    );
    specs.push({
      name: names[i] ?? '',
      provider: 'kubernetes',
      providerConfig,
      port: ports[i] ?? 0,
    });
  }
  // The other cluster goes as a whole; the first keeps running for the other tests.
  for (const { side } of targets.filter((x) => x.remote === first))
    t.after(() =>
      remoteCore.deleteNamespace({ name: `${side}-${ns}` }).then(
        () => undefined,
        () => undefined,
      ),
    );
  const nodesFile = join(dir, `nodes-${ns}.json`);
  await writeFile(nodesFile, JSON.stringify({ nodes: specs }));
  t.after(() =>
    Promise.all(
      names.map((name) =>
        localCore()
          .deleteNode({ name })
          .catch(() => undefined),
      ),
    ),
  );
  const agent = spawnAgent(t, [
    '--kubeconfig',
    testCluster().kubeconfigPath,
    '--nodes',
    nodesFile,
    '--node-ip',
    '127.0.0.1',
    '--authorization-mode',
    'AlwaysAllow',
  ]);
  try {
    await Promise.all(names.map((n) => waitNodeReady(n, 'True', 90_000)));
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${(await agent.logs()).slice(-3000)}`, {
      cause: err,
    });
  }
  for (const [i, name] of names.entries())
    await localCore().createNamespacedPod({ namespace: ns, body: podOn(name, `pod-${String(i)}`) });
  for (const [i, { side, remote: r }] of targets.entries()) {
    const p = await runningLocal(ns, `pod-${String(i)}`);
    const copies = await r.core.listNamespacedPod({
      namespace: `${side}-${ns}`,
      labelSelector: `${ORIGIN_UID}=${p.metadata?.uid ?? ''}`,
    });
    const [copy, ...more] = copies.items;
    assert.ok(copy, `the pod of ${side} in the remote namespace ${side}-${ns}`);
    assert.equal(more.length, 0);
    assert.equal(copy.metadata?.labels?.['virtual-kubelet.io/origin-node'], names[i]);
    assert.equal(copy.spec?.nodeName, r.workerName, `scheduled on the worker of ${side}'s cluster`);
    assert.equal(p.status?.podIP, copy.status?.podIP);
  }
  // Each node's pod is in its own cluster and namespace only: nothing of it anywhere else.
  for (const [i, { side, remote: r }] of targets.entries())
    for (const [where, c] of [
      ['the first', first],
      ['the other', other],
    ] as const) {
      const found = await c.core.listPodForAllNamespaces({
        labelSelector: `virtual-kubelet.io/origin-node=${names[i] ?? ''}`,
      });
      assert.deepEqual(
        found.items.map((p) => `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`),
        c === r ? [`${side}-${ns}/pod-${String(i)}`] : [],
        `the pods of ${side} in ${where} remote cluster`,
      );
    }
});

/**
 * The agent deployed in the cluster: the image built by scripts/image.ts, pushed to the dev
 * runtime's registry, installed with the chart (real helm) onto a cri node (real containerd),
 * registers its own virtual node and runs a pod on it.
 *
 * The dev API server listens on 127.0.0.1 and the test cluster has no Service routing, so the
 * agent's pod uses the node's network (`hostNetwork`) and reaches the API server through
 * KUBERNETES_SERVICE_HOST/PORT set in the chart's extraEnv; its service account (the projected
 * token and CA) is what it authenticates with.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildImage, run, type BuiltImage } from '../../scripts/image.js';
import { DevRuntime, freePorts, type RuntimeInfo } from '../../src/devcluster/index.js';
import { ensureHelm } from '../../src/devcluster/helm.js';
import { CriProvider } from '../../src/providers/cri/index.js';
import { startNode, uniqueNodeName } from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { randomPodCidr } from '../helpers/process-pods.js';
import { waitFor } from '../helpers/wait.js';

const chart = new URL('../../charts/virtual-kubelet', import.meta.url).pathname;
const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);

const id = randomBytes(3).toString('hex');
const tag = `e2e-${id}`;
let dir = '';
let runtime: DevRuntime | undefined;
let info: RuntimeInfo;
let image: BuiltImage | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vk-e2e-incluster-'));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  runtime = new DevRuntime({ dir: join(dir, 'rt') });
  info = await runtime.start();
  image = await buildImage({ tag, push: info.registry, insecure: true });
});

after(async () => {
  await runtime?.stop();
  if (image) {
    await run('buildah', [...image.storageFlags, 'rmi', image.image]).catch(() => undefined);
    await rm(image.archive, { force: true });
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs the helm built into the cache against the test cluster. */
async function helm(args: readonly string[]): Promise<string> {
  const bin = await ensureHelm();
  const c = testCluster();
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ['--kubeconfig', c.kubeconfigPath, ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`helm ${args.join(' ')} failed: ${stderr.trim()}`));
        else resolve(stdout);
      },
    );
  });
}

const quiet = {
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

const ready = (node: k8s.V1Node | undefined): boolean =>
  node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

test('the chart installs the image on a cri node; the agent in its pod registers its own node, Ready, and runs a pod on it', async (t) => {
  const started = Date.now();
  const ns = await testNamespace(t, 'incluster');
  const criNode = uniqueNodeName('cri');
  const vkNode = uniqueNodeName('incluster');
  const release = `vk-${id}`;
  const provider = new CriProvider({
    nodeName: criNode,
    nodeIP: '127.0.0.1',
    config: {
      runtimeEndpoint: info.runtimeEndpoint,
      podCIDR: randomPodCidr(),
      stateDir: join(dir, 'state', criNode),
      syncIntervalMs: 300,
      backoffInitialSeconds: 1,
      backoffMaxSeconds: 4,
    },
    logger: quiet,
  });
  const cri = startNode(t, { nodeName: criNode, api: true, provider });
  // One cleanup, in order: the release, then what the agent made, then the cri node's pods.
  t.after(async () => {
    await helm(['uninstall', release, '--namespace', ns, '--wait', '--timeout', '90s']).catch(
      (err: unknown) => t.diagnostic(`helm uninstall: ${(err as Error).message}`),
    );
    await core()
      .deleteNode({ name: vkNode })
      .catch(() => undefined);
    for (const csr of await certificateRequests(vkNode))
      await kubectl(['delete', 'csr', csr, '--ignore-not-found']).catch(() => undefined);
    for (const pod of await provider.getPods())
      await provider.deletePod(pod, AbortSignal.timeout(60_000)).catch(() => undefined);
    await (await cri.catch(() => undefined))?.stop();
    await provider.close();
    spawnSync('nft', [
      'delete',
      'table',
      'inet',
      `vk_cri_${criNode.replace(/[^a-zA-Z0-9]/g, '_')}`,
    ]);
  });
  await cri;

  const server = new URL(testCluster().server);
  const [kubeletPort] = await freePorts(1);
  await helm([
    'install',
    release,
    chart,
    '--namespace',
    ns,
    '--set',
    `image.repository=${info.registry}/virtual-kubelet`,
    '--set-string',
    `image.tag=${tag}`,
    '--set',
    'provider=mock',
    '--set',
    `nodeName=${vkNode}`,
    '--set',
    `kubeletPort=${String(kubeletPort)}`,
    '--set',
    'hostNetwork=true',
    '--set',
    `nodeSelector.kubernetes\\.io/hostname=${criNode}`,
    '--set',
    'tolerations[0].key=virtual-kubelet.io/provider,tolerations[0].operator=Exists',
    '--set',
    `extraEnv[0].name=KUBERNETES_SERVICE_HOST,extraEnv[0].value=${server.hostname}`,
    '--set',
    'extraEnv[1].name=KUBERNETES_SERVICE_PORT',
    '--set-string',
    `extraEnv[1].value=${server.port}`,
  ]);

  // The agent's pod: scheduled to the cri node, running the pushed image.
  const agentPod = await waitFor(
    async () => {
      const list = await core().listNamespacedPod({
        namespace: ns,
        labelSelector: `app.kubernetes.io/instance=${release}`,
      });
      return list.items.find((p) => p.status?.phase === 'Running');
    },
    { what: "the agent's pod Running on the cri node", timeoutMs: 120_000 },
  );
  assert.equal(agentPod.spec?.nodeName, criNode);
  assert.equal(agentPod.spec?.hostNetwork, true);
  assert.equal(
    agentPod.status?.containerStatuses?.[0]?.image,
    `${info.registry}/virtual-kubelet:${tag}`,
  );
  const agentName = agentPod.metadata?.name ?? '';

  // Its own node, registered with the service account's token.
  const agentLog = async (): Promise<string> => {
    const r = await kubectl(['logs', '-n', ns, agentName, '--previous', '--tail=30'], {
      allowFailure: true,
    });
    const p = await core().readNamespacedPod({ name: agentName, namespace: ns });
    return `${r.stdout}${r.stderr}\n${JSON.stringify(p.status?.containerStatuses)}`;
  };
  const node = await waitFor(
    async () => {
      const n = await core()
        .readNode({ name: vkNode })
        .catch(() => undefined);
      if (ready(n)) return n;
      const p = await core().readNamespacedPod({ name: agentName, namespace: ns });
      if ((p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 2)
        throw new Error(`the agent keeps exiting; its log:\n${await agentLog()}`);
      return undefined;
    },
    { what: `node ${vkNode} registered by the in-cluster agent and Ready`, timeoutMs: 90_000 },
  ).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}; the agent's log:\n${await agentLog()}`);
  });
  assert.equal(node.metadata?.labels?.type, 'virtual-kubelet');
  assert.equal(node.status?.daemonEndpoints?.kubeletEndpoint?.Port, kubeletPort);

  // The chart's serving certificate: a kubelet-serving CSR for the node, made by the release's
  // service account, approved here as the chart says an operator does.
  const csr = await waitFor(async () => (await certificateRequests(vkNode))[0], {
    what: `a kubelet-serving CSR for ${vkNode}`,
    timeoutMs: 60_000,
  });
  const requested = await kubectl(['get', 'csr', csr, '-o', 'jsonpath={.spec.username}']);
  assert.equal(requested.stdout, `system:serviceaccount:${ns}:${release}-virtual-kubelet`);
  await kubectl(['certificate', 'approve', csr]);

  // A pod through the scheduler onto the agent's node.
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'on-vk' },
      spec: {
        nodeSelector: { 'kubernetes.io/hostname': vkNode },
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
        containers: [{ name: 'main', image: 'example.invalid/hello:v1' }],
      },
    },
  });
  const pod = await waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name: 'on-vk', namespace: ns });
      return p.status?.phase === 'Running' ? p : undefined;
    },
    { what: `pod on-vk Running on ${vkNode}`, timeoutMs: 90_000 },
  );
  assert.equal(pod.spec?.nodeName, vkNode);

  // kubectl logs through the agent's kubelet API, once the approved certificate is served.
  const logs = await waitFor(
    async () => {
      const r = await kubectl(['logs', '-n', ns, 'on-vk'], { allowFailure: true });
      return r.code === 0 ? r : undefined;
    },
    { what: `kubectl logs of on-vk through ${vkNode}'s kubelet API`, timeoutMs: 60_000 },
  );
  assert.equal(logs.code, 0);

  // And the agent's own log, through the cri node: it names the node it serves.
  const own = await kubectl(['logs', '-n', ns, agentName]);
  assert.match(own.stdout, new RegExp(`"node":"${vkNode}"`));
  t.diagnostic(`installed, registered and ran a pod in ${String(Date.now() - started)} ms`);
});

/** The names of the kubelet-serving CSRs asking for `node`'s certificate. */
async function certificateRequests(node: string): Promise<string[]> {
  const r = await kubectl(['get', 'csr', '-o', 'json'], { allowFailure: true });
  if (r.code !== 0) return [];
  const list = JSON.parse(r.stdout) as {
    items: { metadata: { name: string }; spec: { signerName: string; request: string } }[];
  };
  return list.items
    .filter(
      (c) =>
        c.spec.signerName === 'kubernetes.io/kubelet-serving' &&
        csrSubject(c.spec.request).includes(`system:node:${node}`),
    )
    .map((c) => c.metadata.name);
}

/** The PEM CSR's text, enough to find the subject's common name in (DER strings are plain). */
function csrSubject(request: string): string {
  const pem = Buffer.from(request, 'base64').toString('utf8');
  const body = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64').toString('latin1');
}

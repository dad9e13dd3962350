/**
 * A virtual node served by the Go example provider (examples/providers/go-mock) through the
 * provider protocol, against the real control plane: the mock's scenarios, from another language.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/log.js';
import {
  ExternalProvider,
  ProviderProcess,
  startExternalProvider,
} from '../../src/providers/external/index.js';
import { onNode, startNode, uniqueNodeName, type InProcessNode } from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { buildGoMock, protocolDescriptorSet, PYTHON_MOCK } from '../helpers/example-providers.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const never = new AbortController().signal;

interface Fixture {
  ns: string;
  nodeName: string;
  node: InProcessNode;
  provider: ExternalProvider;
  port: number;
}

/** A node whose provider is the Go mock, started (and stopped) by the external provider. */
async function fixture(t: TestContext): Promise<Fixture> {
  const binary = await buildGoMock();
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('go');
  const provider = await startExternalProvider({ nodeName, config: { command: [binary] } });
  const node = await startNode(t, { nodeName, provider, api: true });
  t.after(() => provider.close(AbortSignal.timeout(10_000)));
  return { ns, nodeName, node, provider, port: node.node.server?.port ?? 0 };
}

async function runningPod(
  f: Fixture,
  name: string,
  spec: Partial<k8s.V1PodSpec> = {},
): Promise<void> {
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name },
      spec: {
        ...onNode(f.nodeName),
        containers: [{ name: 'app', image: 'busybox', env: [{ name: 'GREETING', value: 'hi' }] }],
        ...spec,
      },
    },
  });
  await waitFor(
    async () =>
      (await core().readNamespacedPod({ name, namespace: f.ns })).status?.phase === 'Running',
    { what: `pod ${name} Running` },
  );
}

async function waitGone(ns: string, name: string): Promise<void> {
  await waitFor(
    async () =>
      (await core()
        .readNamespacedPod({ name, namespace: ns })
        .catch(() => undefined)) === undefined,
    { what: `pod ${name} to be gone`, timeoutMs: 30_000 },
  );
}

function kubectlBytes(
  args: string[],
  input: Buffer,
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const c = testCluster();
  return new Promise((resolve) => {
    const child = spawn(c.kubectlPath, args, {
      env: { ...process.env, KUBECONFIG: c.kubeconfigPath },
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) =>
      resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }),
    );
    child.stdin.end(input);
  });
}

/** GET on the kubelet port with the API server's kubelet client certificate. */
async function asApiserver(port: number, path: string): Promise<{ status: number; body: string }> {
  const pki = testCluster().pkiDir;
  const [ca, cert, key] = await Promise.all(
    ['ca.crt', 'apiserver-kubelet-client.crt', 'apiserver-kubelet-client.key'].map((file) =>
      readFile(join(pki, file)),
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

test('go provider: a Deployment runs, updates reach the provider, scaled to 0 it leaves both', async (t) => {
  const f = await fixture(t);
  const ready = await core().readNode({ name: f.nodeName });
  assert.equal(ready.status?.capacity?.cpu, '20', 'ConfigureNode shaped the node');
  await kubectl([
    'create',
    'deployment',
    'web',
    '-n',
    f.ns,
    '--image=busybox',
    '--replicas=3',
    '--',
    'sleep',
    '3600',
  ]);
  await kubectl([
    'patch',
    'deployment',
    'web',
    '-n',
    f.ns,
    '--type=merge',
    '-p',
    JSON.stringify({ spec: { template: { spec: onNode(f.nodeName) } } }),
  ]);
  await waitFor(
    async () => {
      const pods = await core().listNamespacedPod({ namespace: f.ns, labelSelector: 'app=web' });
      const running = pods.items.filter(
        (p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp,
      );
      return running.length === 3 && running.every((p) => p.spec?.nodeName === f.nodeName);
    },
    { what: '3 Running pods on the node', timeoutMs: 60_000 },
  );
  await waitFor(async () => (await f.provider.getPods(never)).length === 3, {
    what: '3 pods in the provider',
  });

  // An image change reaches the provider, which restarts the container.
  await runningPod(f, 'single');
  await kubectl(['set', 'image', 'pod/single', '-n', f.ns, 'app=busybox:1.37']);
  await waitFor(
    async () => {
      const cs = (await core().readNamespacedPod({ name: 'single', namespace: f.ns })).status
        ?.containerStatuses?.[0];
      return cs?.image === 'busybox:1.37' && cs.restartCount === 1;
    },
    { what: 'the new image, restarted once' },
  );
  await kubectl(['label', 'pod', 'single', '-n', f.ns, 'tier=front']);
  await waitFor(
    async () =>
      (await f.provider.getPod(f.ns, 'single', never))?.metadata?.labels?.tier === 'front',
    {
      what: 'the label in the provider',
    },
  );

  await kubectl(['scale', 'deployment', 'web', '-n', f.ns, '--replicas=0']);
  await waitFor(
    async () =>
      (await core().listNamespacedPod({ namespace: f.ns, labelSelector: 'app=web' })).items
        .length === 0,
    { what: 'the pods to leave the API', timeoutMs: 60_000 },
  );
  await waitFor(
    async () => (await f.provider.getPods(never)).every((p) => p.metadata?.labels?.app !== 'web'),
    { what: 'the pods to leave the provider' },
  );
});

test('go provider: graceful and forced delete', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'graceful');
  await runningPod(f, 'forced');
  await core().deleteNamespacedPod({ name: 'graceful', namespace: f.ns });
  await waitGone(f.ns, 'graceful');
  await kubectl(['delete', 'pod', 'forced', '-n', f.ns, '--grace-period=0', '--force']);
  await waitFor(async () => (await f.provider.getPod(f.ns, 'forced', never)) === undefined, {
    what: 'the provider to drop the force-deleted pod',
  });
  assert.equal(await f.provider.getPod(f.ns, 'graceful', never), undefined);
});

test('go provider: logs, exec with stdin and exit codes, attach, port-forward', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'shell');
  await waitFor(
    async () => (await kubectl(['logs', 'shell', '-n', f.ns])).stdout.includes('tick 2'),
    {
      what: 'a few log lines',
    },
  );
  assert.match((await kubectl(['logs', 'shell', '-n', f.ns])).stdout, /started/);
  assert.equal(
    (await kubectl(['logs', 'shell', '-n', f.ns, '--tail=1'])).stdout.trim().split('\n').length,
    1,
  );
  for (const line of (
    await kubectl(['logs', 'shell', '-n', f.ns, '--timestamps', '--tail=2'])
  ).stdout
    .trim()
    .split('\n'))
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \S/);
  assert.equal(
    Buffer.byteLength((await kubectl(['logs', 'shell', '-n', f.ns, '--limit-bytes=10'])).stdout),
    10,
  );

  assert.equal(
    (await kubectl(['exec', 'shell', '-n', f.ns, '--', 'echo', 'hello', 'world'])).stdout,
    'hello world\n',
  );
  assert.match(
    (await kubectl(['exec', 'shell', '-n', f.ns, '--', 'env'])).stdout,
    /^GREETING=hi$/m,
  );
  const exit3 = await kubectl(['exec', 'shell', '-n', f.ns, '--', 'sh', '-c', 'exit 3'], {
    allowFailure: true,
  });
  assert.equal(exit3.code, 3);
  const missing = await kubectl(['exec', 'shell', '-n', f.ns, '--', 'no-such-command'], {
    allowFailure: true,
  });
  assert.equal(missing.code, 127);
  const data = randomBytes(2 * 1024 * 1024);
  const cat = await kubectlBytes(['exec', '-i', 'shell', '-n', f.ns, '--', 'cat'], data);
  assert.equal(cat.code, 0, cat.stderr);
  assert.equal(sha(cat.stdout), sha(data));

  const attached = await kubectlBytes(
    ['attach', '-i', 'shell', '-n', f.ns],
    Buffer.from('ping over attach\n'),
  );
  assert.match(attached.stdout.toString(), /ping over attach/);

  const c = testCluster();
  const pf = spawn(c.kubectlPath, ['port-forward', '-n', f.ns, 'pod/shell', ':8080'], {
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
  const big = randomBytes(2 * 1024 * 1024);
  const back = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect(local, '127.0.0.1');
    const got: Buffer[] = [];
    let n = 0;
    socket.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= big.length) socket.end();
    });
    socket.on('close', () => resolve(Buffer.concat(got)));
    socket.on('error', reject);
    socket.write(big);
  });
  assert.equal(sha(back), sha(big));
});

test('go provider: /stats/summary, /metrics/resource and kubectl top', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'busy');
  const summary = await asApiserver(f.port, '/stats/summary');
  assert.equal(summary.status, 200, summary.body);
  const parsed = JSON.parse(summary.body) as {
    node: { nodeName: string };
    pods: { podRef: { name: string }; containers: { memory: { workingSetBytes: number } }[] }[];
  };
  assert.equal(parsed.node.nodeName, f.nodeName);
  const busy = parsed.pods.find((p) => p.podRef.name === 'busy');
  assert.ok(busy && (busy.containers[0]?.memory.workingSetBytes ?? 0) > 0);
  const resource = await asApiserver(f.port, '/metrics/resource');
  assert.match(
    resource.body,
    /^container_cpu_usage_seconds_total\{container="app",namespace="[^"]+",pod="busy"\} [\d.e+-]+ \d{13}$/m,
  );
  const top = await waitFor(
    async () => {
      const r = await kubectl(['top', 'pod', 'busy', '-n', f.ns, '--no-headers'], {
        allowFailure: true,
      });
      return r.code === 0 ? r.stdout : undefined;
    },
    { what: 'kubectl top pod', timeoutMs: 90_000, intervalMs: 2_000 },
  );
  assert.match(top, /^busy\s+\d+m\s+\d+Mi/m);
});

test('go provider: killed, the node goes NotReady; restarted, Ready again and runs new pods', async (t) => {
  const binary = await buildGoMock();
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('go');
  const dir = await mkdtemp(join(tmpdir(), 'vk-go-provider-'));
  const address = `unix://${join(dir, 'provider.sock')}`;
  const child = new ProviderProcess({
    command: [binary],
    env: { VK_PROVIDER_ADDRESS: address },
    logger: silentLogger,
    restartInitialMs: 8000,
  });
  const stopChild = new AbortController();
  const running = child.run(stopChild.signal);
  t.after(async () => {
    stopChild.abort();
    await running;
    await rm(dir, { recursive: true, force: true });
  });
  const provider = await ExternalProvider.connect(
    { nodeName, address },
    AbortSignal.timeout(30_000),
  );
  t.after(() => provider.close(AbortSignal.timeout(10_000)));
  const node = await startNode(t, { nodeName, provider });
  const f: Fixture = { ns, nodeName, node, provider, port: 0 };
  await runningPod(f, 'before');
  const ready = async (): Promise<string | undefined> =>
    (await core().readNode({ name: nodeName })).status?.conditions?.find((c) => c.type === 'Ready')
      ?.status;
  const pid = child.pid;
  assert.ok(pid !== undefined, 'the provider process runs');
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => (await ready()) !== 'True', {
    what: 'the node to leave Ready while the provider is down',
    timeoutMs: 30_000,
  });
  await waitFor(async () => (await ready()) === 'True', {
    what: 'the node to be Ready again',
    timeoutMs: 60_000,
  });
  assert.equal(child.restarts, 1);
  // The restarted provider keeps no state: the pod it lost is Failed (NotFound), not created again.
  await waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name: 'before', namespace: ns });
      return p.status?.phase === 'Failed' && p.status.reason === 'NotFound';
    },
    { what: 'the lost pod to be Failed with reason NotFound', timeoutMs: 60_000 },
  );
  assert.equal(await provider.getPod(ns, 'before', never), undefined);
  await runningPod(f, 'after');
});

test('python provider: a pod runs end to end (Running, logs, exec, deleted)', async (t) => {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('py');
  const provider = await startExternalProvider({
    nodeName,
    config: {
      command: ['/usr/bin/python3', PYTHON_MOCK],
      env: { VK_PROVIDER_DESCRIPTOR_SET: protocolDescriptorSet() },
    },
  });
  const node = await startNode(t, { nodeName, provider, api: true });
  t.after(() => provider.close(AbortSignal.timeout(10_000)));
  const f: Fixture = { ns, nodeName, node, provider, port: node.node.server?.port ?? 0 };
  await runningPod(f, 'snake');
  assert.match((await kubectl(['logs', 'snake', '-n', ns])).stdout, /python-mock: container app/);
  assert.equal(
    (await kubectl(['exec', 'snake', '-n', ns, '--', 'echo', 'from', 'python'])).stdout,
    'from python\n',
  );
  const exit4 = await kubectl(['exec', 'snake', '-n', ns, '--', 'sh', '-c', 'exit 4'], {
    allowFailure: true,
  });
  assert.equal(exit4.code, 4);
  await core().deleteNamespacedPod({ name: 'snake', namespace: ns });
  await waitGone(ns, 'snake');
  assert.equal(await provider.getPod(ns, 'snake', never), undefined);
});

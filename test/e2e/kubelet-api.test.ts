import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { test, type TestContext } from 'node:test';
import type { PodLifecycleHandler } from '../../src/provider.js';
import type { MockConfig } from '../../src/providers/mock/config.js';
import { freePorts } from '../../src/devcluster/cluster.js';
import {
  nodeKubeconfig,
  onNode,
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
import type { V1Pod } from '../../src/wire.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Fixture {
  ns: string;
  node: InProcessNode;
  nodeName: string;
  port: number;
}

async function fixture(t: TestContext, config: MockConfig = {}, notify = true): Promise<Fixture> {
  const ns = await testNamespace(t);
  const node = await startNode(t, { api: true, notify, config: { logIntervalMs: 200, ...config } });
  const port = node.node.server?.port ?? 0;
  assert.ok(port > 0);
  return { ns, node, nodeName: node.nodeName, port };
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

/** Runs kubectl with `input` as stdin, as bytes; resolves to its exit code and output. */
function kubectlBytes(
  args: string[],
  input?: Buffer,
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
    if (input) child.stdin.end(input);
    else child.stdin.end();
  });
}

test('kubectl logs: plain, --tail, --timestamps, --limit-bytes, --since', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'talker');
  await waitFor(
    async () => (await kubectl(['logs', 'talker', '-n', f.ns])).stdout.includes('tick 2'),
    {
      what: 'a few log lines',
    },
  );
  const all = (await kubectl(['logs', 'talker', '-n', f.ns])).stdout;
  assert.match(all, /started/);
  const tail = (await kubectl(['logs', 'talker', '-n', f.ns, '--tail=1'])).stdout;
  assert.equal(tail.trim().split('\n').length, 1);
  const stamped = (await kubectl(['logs', 'talker', '-n', f.ns, '--timestamps', '--tail=2']))
    .stdout;
  for (const line of stamped.trim().split('\n'))
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \S/);
  const limited = (await kubectl(['logs', 'talker', '-n', f.ns, '--limit-bytes=10'])).stdout;
  assert.equal(Buffer.byteLength(limited), 10);
  const since = (await kubectl(['logs', 'talker', '-n', f.ns, '--since=1h'])).stdout;
  assert.match(since, /started/);
  const bad = await kubectl(['logs', 'talker', '-n', f.ns, '--container', 'nope'], {
    allowFailure: true,
  });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /container nope is not valid|not found/);
});

test('kubectl logs -f ends when the container stops; --previous shows the last instance', async (t) => {
  const f = await fixture(t, {
    containers: { short: { exitAfterSeconds: 1.5 }, again: { exitAfterSeconds: 1 } },
  });
  await runningPod(f, 'short', {
    restartPolicy: 'Never',
    containers: [{ name: 'short', image: 'busybox' }],
  });
  const followed = await kubectl(['logs', '-f', 'short', '-n', f.ns], { timeoutMs: 30_000 });
  assert.match(followed.stdout, /started/);
  await runningPod(f, 'again', {
    restartPolicy: 'Always',
    containers: [{ name: 'again', image: 'busybox' }],
  });
  await waitFor(
    async () =>
      ((await core().readNamespacedPod({ name: 'again', namespace: f.ns })).status
        ?.containerStatuses?.[0]?.restartCount ?? 0) > 0,
    { what: 'a restart' },
  );
  const previous = await kubectl(['logs', '--previous', 'again', '-n', f.ns]);
  assert.match(previous.stdout, /started/);
});

test('kubectl exec: output, exit codes, env, and 10 MiB of stdin back unchanged', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'shell');
  const echo = await kubectl(['exec', 'shell', '-n', f.ns, '--', 'echo', 'hello', 'world']);
  assert.equal(echo.stdout, 'hello world\n');
  const env = await kubectl(['exec', 'shell', '-n', f.ns, '--', 'env']);
  assert.match(env.stdout, /^GREETING=hi$/m);
  const exit3 = await kubectl(['exec', 'shell', '-n', f.ns, '--', 'sh', '-c', 'exit 3'], {
    allowFailure: true,
  });
  assert.equal(exit3.code, 3);
  const missing = await kubectl(['exec', 'shell', '-n', f.ns, '--', 'no-such-command'], {
    allowFailure: true,
  });
  assert.equal(missing.code, 127);

  const data = randomBytes(10 * 1024 * 1024);
  const cat = await kubectlBytes(['exec', '-i', 'shell', '-n', f.ns, '--', 'cat'], data);
  assert.equal(cat.code, 0, cat.stderr);
  assert.equal(cat.stdout.length, data.length);
  assert.equal(sha(cat.stdout), sha(data));
});

test('kubectl exec -it drives a terminal: the size reaches the container', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'tty');
  const c = testCluster();
  // `script` gives kubectl a real pseudo-terminal; stty sets its size.
  const cmd = `stty rows 33 cols 101; ${c.kubectlPath} exec -it tty -n ${f.ns} -- stty size`;
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
  assert.match(out, /33 101/);
});

test('kubectl attach connects to the main process', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'attached', { containers: [{ name: 'app', image: 'busybox', stdin: true }] });
  const r = await kubectlBytes(
    ['attach', '-i', 'attached', '-n', f.ns],
    Buffer.from('ping over attach\n'),
  );
  assert.match(r.stdout.toString(), /ping over attach/);
});

test('kubectl port-forward carries 10 MiB both ways over several connections', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'server');
  const c = testCluster();
  const pf = spawn(c.kubectlPath, ['port-forward', '-n', f.ns, 'pod/server', ':8080'], {
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
  const roundTrip = (data: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const socket = connect(local, '127.0.0.1');
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
  const big = randomBytes(10 * 1024 * 1024);
  const back = await roundTrip(big);
  assert.equal(sha(back), sha(big));
  const small = [randomBytes(100_000), randomBytes(200_000), randomBytes(300_000)];
  const backs = await Promise.all(small.map(roundTrip));
  backs.forEach((b, i) => assert.equal(sha(b), sha(small[i] ?? Buffer.alloc(0))));
});

/**
 * GET on the kubelet port as the API server calls it: with its kubelet client certificate
 * (the node proxy forwards exactly such requests). `kubectl get --raw .../nodes/N/proxy/...`
 * itself is refused by the API server for loopback node addresses ("address not allowed").
 */
async function asApiserver(port: number, path: string): Promise<{ status: number; body: string }> {
  const pki = testCluster().pkiDir;
  const [ca, cert, key] = await Promise.all(
    ['ca.crt', 'apiserver-kubelet-client.crt', 'apiserver-kubelet-client.key'].map((f) =>
      readFile(join(pki, f)),
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

test('kubelet API: /stats/summary, /metrics/resource, /pods, /healthz, /metrics', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'measured');
  const raw = async (path: string): Promise<string> => {
    const r = await asApiserver(f.port, path);
    assert.equal(r.status, 200, `${path}: ${r.body}`);
    return r.body;
  };
  const summary = JSON.parse(await raw('/stats/summary')) as {
    node: { nodeName: string; cpu: { usageNanoCores: number } };
    pods: { podRef: { name: string }; containers: { memory: { workingSetBytes: number } }[] }[];
  };
  assert.equal(summary.node.nodeName, f.nodeName);
  const pod = summary.pods.find((p) => p.podRef.name === 'measured');
  assert.ok(pod && (pod.containers[0]?.memory.workingSetBytes ?? 0) > 0);
  const resource = await raw('/metrics/resource');
  assert.match(
    resource,
    /^container_cpu_usage_seconds_total\{container="app",namespace="[^"]+",pod="measured"\} [\d.e+-]+ \d{13}$/m,
  );
  assert.match(resource, /^node_memory_working_set_bytes [\d.e+-]+ \d{13}$/m);
  const pods = JSON.parse(await raw('/pods')) as { kind: string; items: k8s.V1Pod[] };
  assert.equal(pods.kind, 'PodList');
  assert.ok(pods.items.some((p) => p.metadata?.name === 'measured'));
  assert.equal((await raw('/healthz')).trim(), 'ok');
  const metrics = await raw('/metrics');
  for (const series of [
    /^kubelet_http_requests_total\{path="\/stats",method="GET",code="200"\} \d+/m,
    /^virtual_kubelet_queue_depth\{queue="sync",state="queued"\} \d+/m,
    /^virtual_kubelet_queue_items_total\{queue="sync",result="processed"\} [1-9]\d*/m,
    /^virtual_kubelet_reconcile_duration_seconds_count\{queue="sync",result="ok"\} [1-9]\d*/m,
    /^virtual_kubelet_provider_call_duration_seconds_count\{method="createPod",result="ok"\} [1-9]\d*/m,
    /^virtual_kubelet_apiserver_requests_total\{verb="PATCH",code="200"\} [1-9]\d*/m,
  ])
    assert.match(metrics, series);
  assert.equal((await asApiserver(f.port, '/no/such/path')).status, 404);
});

test('kubectl get --raw reaches /stats/summary, /metrics/resource and /pods through the node proxy', async (t) => {
  // The API server proxies only to global unicast node addresses: the node lives at a test host.
  const host = testHost(t);
  const ns = await testNamespace(t);
  const node = await startNode(t, { api: true, nodeIP: host.ip, config: { logIntervalMs: 0 } });
  const port = node.node.server?.port ?? 0;
  await relayFromHost(t, host, port, port);
  const f: Fixture = { ns, node, nodeName: node.nodeName, port };
  await runningPod(f, 'proxied');
  const raw = async (path: string): Promise<string> =>
    (await kubectl(['get', '--raw', `/api/v1/nodes/${f.nodeName}/proxy${path}`])).stdout;
  const summary = JSON.parse(await raw('/stats/summary')) as {
    node: { nodeName: string };
    pods: { podRef: { name: string } }[];
  };
  assert.equal(summary.node.nodeName, f.nodeName);
  assert.ok(summary.pods.some((p) => p.podRef.name === 'proxied'));
  assert.match(
    await raw('/metrics/resource'),
    /^pod_memory_working_set_bytes\{namespace="[^"]+",pod="proxied"\} /m,
  );
  const pods = JSON.parse(await raw('/pods')) as { items: k8s.V1Pod[] };
  assert.ok(pods.items.some((p) => p.metadata?.name === 'proxied'));
  assert.equal((await raw('/healthz')).trim(), 'ok');
});

test('the kubelet API says 401 without credentials and 403 to a service account without rights', async (t) => {
  const f = await fixture(t);
  await core().createNamespacedServiceAccount({
    namespace: f.ns,
    body: { metadata: { name: 'nobody' } },
  });
  const token = (await kubectl(['create', 'token', 'nobody', '-n', f.ns])).stdout.trim();
  const ca = await readFile(join(testCluster().pkiDir, 'ca.crt'));
  const get = (
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: f.port, path, ca, headers, servername: f.nodeName },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  assert.equal((await get('/pods')).status, 401);
  const denied = await get('/stats/summary', { authorization: `Bearer ${token}` });
  assert.equal(denied.status, 403);
  assert.match(
    denied.body,
    /user=system:serviceaccount:.*:nobody, verb=get, resource=nodes, subresource\(s\)=\[stats\]/,
  );
  assert.equal((await get('/pods', { authorization: 'Bearer not-a-token' })).status, 401);
});

test('bad requests get 4xx and the server keeps serving', async (t) => {
  const f = await fixture(t);
  const ca = await readFile(join(testCluster().pkiDir, 'ca.crt'));
  const rawTls = (payload: string): Promise<string> =>
    new Promise((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: f.port, ca, servername: f.nodeName }, () =>
        s.end(payload),
      );
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.on('close', () => resolve(out));
      s.on('error', () => resolve(out));
    });
  assert.match(await rawTls('GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
  // Request targets that are no URL at all, before any authentication.
  assert.match(await rawTls('GET // HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400/);
  assert.match(
    await rawTls('GET // HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n'),
    /^HTTP\/1\.1 400/,
  );
  assert.match(
    await rawTls(`GET /pods HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`),
    /^HTTP\/1\.1 431/,
  );
  // Garbage instead of SPDY frames after an upgrade.
  await rawTls(
    'POST /exec/a/b/c?command=ls&output=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n\u0000\u0001garbage',
  );
  const health = await asApiserver(f.port, '/healthz');
  assert.equal(health.body.trim(), 'ok');
  assert.equal((await asApiserver(f.port, '/containerLogs/../../etc/passwd')).status, 400);
});

test('a capability the provider lacks answers 501, naming it', async (t) => {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('bare');
  const pods = new Map<string, V1Pod>();
  const bare: PodLifecycleHandler = {
    createPod: (pod) => {
      pods.set(
        `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`,
        structuredClone(pod),
      );
      return Promise.resolve();
    },
    updatePod: () => Promise.resolve(),
    deletePod: (pod) => {
      pods.delete(`${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`);
      return Promise.resolve();
    },
    getPod: (n, p) => Promise.resolve(pods.get(`${n}/${p}`)),
    getPodStatus: (n, p) =>
      Promise.resolve(pods.has(`${n}/${p}`) ? { phase: 'Running' } : undefined),
    getPods: () => Promise.resolve([...pods.values()]),
  };
  await startNode(t, { nodeName, provider: bare, api: true });
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'plain' },
      spec: { ...onNode(nodeName), containers: [{ name: 'app', image: 'x' }] },
    },
  });
  await waitFor(
    async () =>
      (await core().readNamespacedPod({ name: 'plain', namespace: ns })).status?.phase ===
      'Running',
    { what: 'Running' },
  );
  const logs = await kubectl(['logs', 'plain', '-n', ns], { allowFailure: true });
  assert.notEqual(logs.code, 0);
  assert.match(logs.stderr, /does not implement container logs/);
  const exec = await kubectl(['exec', 'plain', '-n', ns, '--', 'ls'], {
    allowFailure: true,
    timeoutMs: 20_000,
  });
  assert.notEqual(exec.code, 0);
  assert.match(exec.stderr, /does not implement exec|501|Not Implemented/);
});

test('kubectl top shows the virtual node and its pods through metrics-server', async (t) => {
  const f = await fixture(t);
  await runningPod(f, 'busy');
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
  const node = await waitFor(
    async () => {
      const r = await kubectl(['top', 'node', f.nodeName, '--no-headers'], { allowFailure: true });
      return r.code === 0 ? r.stdout : undefined;
    },
    { what: 'kubectl top node', timeoutMs: 60_000, intervalMs: 2_000 },
  );
  assert.match(node, new RegExp(`^${f.nodeName}\\s+\\d+m`));
});

test("with --rotate-server-certificates the dev cluster approves the node's serving CSR: kubectl logs works with no manual step", async (t) => {
  const ns = await testNamespace(t);
  const name = uniqueNodeName('csr');
  const [port] = await freePorts(1);
  const agent = spawnAgent(t, [
    '--kubeconfig',
    await nodeKubeconfig(name),
    '--nodename',
    name,
    '--node-ip',
    '127.0.0.1',
    '--listen-port',
    String(port),
    '--rotate-server-certificates',
  ]);
  interface Csr {
    metadata: { name: string };
    spec: { username: string; signerName: string };
    status?: { certificate?: string; conditions?: { type: string; reason?: string }[] };
  }
  // The node registers first; its request names the node's name and address only.
  await waitNodeReady(name);
  const csr = await waitFor(
    async () => {
      const list = JSON.parse((await kubectl(['get', 'csr', '-o', 'json'])).stdout) as {
        items: Csr[];
      };
      const mine = list.items.find((c) => c.spec.username === `system:node:${name}`);
      return mine?.status?.certificate ? mine : undefined;
    },
    { what: 'the CSR of the node, approved and signed' },
  );
  assert.equal(csr.spec.signerName, 'kubernetes.io/kubelet-serving');
  const approved = csr.status?.conditions?.find((c) => c.type === 'Approved');
  assert.equal(approved?.reason, 'NodeNamesMatch', 'approved by the dev cluster, not by hand');
  await waitFor(
    async () => /serving certificate from the cluster in use/.test(await agent.logs()),
    {
      what: 'the agent to serve the signed certificate',
    },
  );
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'p' },
      spec: { ...onNode(name), containers: [{ name: 'app', image: 'x' }] },
    },
  });
  await waitFor(
    async () =>
      (await core().readNamespacedPod({ name: 'p', namespace: ns })).status?.phase === 'Running',
    { what: 'Running' },
  );
  // The API server verifies the kubelet's certificate against the cluster CA: this works only
  // with the certificate the cluster signed.
  const logs = await kubectl(['logs', 'p', '-n', ns]);
  assert.match(logs.stdout, /started/);
});

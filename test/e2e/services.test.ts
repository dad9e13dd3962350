// Services and DNS of a dev cluster started with `services`: real kube-proxy (nftables) and
// CoreDNS, reached from the host, from network namespaces routed to the service CIDR, and from
// "pods" on a bridge in the pod CIDR. Only one cluster with services can run on a host (the
// services lock): this file starts one, so a `dev-cluster up --services` running meanwhile
// makes it fail with that reason.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { primaryAddress } from '../../src/cli/run.js';
import {
  DevCluster,
  ensureBinaries,
  freePorts,
  isAlive,
  issueCert,
  writeNodeKubeconfig,
  type ClusterInfo,
} from '../../src/devcluster/index.js';
import { spawnOwned } from '../../src/devcluster/process.js';
import { kubectl, podSummary } from '../helpers/cluster.js';
import { testHost, type TestHost } from '../helpers/netns.js';
import { processStateDir, reap } from '../helpers/process-pods.js';
import { cidrContains, parseCidr } from '../../src/providers/process/network.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { waitFor } from '../helpers/wait.js';

const NODE = 'vk-services-e2e';
// A pod range of this file's own, away from the ranges the pod-network tests use: kube-proxy's
// cluster CIDR, holding the bridge test's /24 and the process node's.
const POD_CIDR = '10.214.0.0/16';
const BRIDGE_IP = '10.214.0.1';
const NODE_POD_CIDR = '10.214.1.0/24';
const NODE_IP = '127.0.0.1';
const bin = new URL('../../bin/virtual-kubelet', import.meta.url).pathname;

let dir = '';
let cluster: DevCluster | undefined;
let info: ClusterInfo;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vk-e2e-services-'));
  // The runner's sweep of stale vk-e2e-* directories leaves those of a live owner alone.
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  cluster = new DevCluster({
    dir,
    binaries: await ensureBinaries({ services: true }),
    services: { nodeName: NODE, podCidr: POD_CIDR },
  });
  info = await cluster.start();
});

after(async () => {
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

const ctl = (args: string[], input?: string, allowFailure = false) =>
  kubectl(args, { kubeconfig: info.adminKubeconfig, allowFailure, ...(input ? { input } : {}) });

/** The fields of a pod and an EndpointSlice these tests read. */
interface Pod {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: {
    phase?: string;
    podIP?: string;
    hostIP?: string;
    conditions?: { type: string; status: string }[];
  };
}
interface Slice {
  ports?: { port: number }[];
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[];
}

const isReady = (p: Pod): boolean =>
  p.status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

/**
 * A Deployment `web` of two busybox httpd on port 8080 of the virtual node, each serving a page
 * that names its pod, Ready while `/tmp/www/ready` (in the pod's private /tmp) exists, and the
 * Service `web` on port 8080.
 */
function webManifest(): string {
  const script =
    'mkdir -p /tmp/www && echo "hello from $POD_NAME" > /tmp/www/index.html && ' +
    'touch /tmp/www/ready && exec busybox httpd -f -p 8080 -h /tmp/www';
  return [
    'apiVersion: apps/v1',
    'kind: Deployment',
    'metadata: {name: web}',
    'spec:',
    '  replicas: 2',
    '  selector: {matchLabels: {app: web}}',
    '  template:',
    '    metadata: {labels: {app: web}}',
    '    spec:',
    '      nodeSelector: {type: virtual-kubelet}',
    '      tolerations: [{key: virtual-kubelet.io/provider, operator: Exists, effect: NoSchedule}]',
    '      terminationGracePeriodSeconds: 1',
    '      containers:',
    '      - name: httpd',
    '        image: busybox',
    `        command: [sh, -c, ${JSON.stringify(script)}]`,
    '        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]',
    '        ports: [{containerPort: 8080}]',
    '        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1, failureThreshold: 1}',
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata: {name: web}',
    'spec: {selector: {app: web}, ports: [{port: 8080, targetPort: 8080}]}',
  ].join('\n');
}

/** Runs `script` with node inside the namespace and resolves to its stdout. */
function inNamespace(ns: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      ['netns', 'exec', ns, process.execPath, '-e', script],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`in ${ns}: ${stderr.trim() || err.message}`));
        else resolve(stdout.trim());
      },
    );
  });
}

/** The host side of a test host's /30 (the namespace's address minus one). */
function hostSide(host: TestHost): string {
  const parts = host.ip.split('.').map(Number);
  return [...parts.slice(0, 3), (parts[3] ?? 0) - 1].join('.');
}

/** Routes the service CIDR (only) from the namespace to this host. */
function routeServices(ns: string, via: string): void {
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'route', 'add', '10.96.0.0/16', 'via', via]);
}

/** A TCP server in the namespace that answers each connection with `reply` and closes. */
async function serverIn(t: TestContext, ns: string, ip: string, reply: string): Promise<void> {
  const logPath = join(dir, `server-${ns}.log`);
  const script = `require('node:net').createServer((c) => c.end(${JSON.stringify(reply)}))
    .listen(8080, ${JSON.stringify(ip)}, () => console.log('ready'));`;
  const child = spawnOwned('ip', {
    args: ['netns', 'exec', ns, process.execPath, '-e', script],
    logPath,
  });
  const kill = (): void => {
    child.kill('SIGKILL');
  };
  const forget = onOrphaned(kill);
  t.after(() => {
    forget();
    kill();
  });
  await waitFor(async () => (await readFile(logPath, 'utf8').catch(() => '')).includes('ready'), {
    what: `the server in ${ns}`,
  });
}

/** What `ip:port` answers on a TCP connection from here. */
function fetchTcp(ip: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: ip, port, timeout: 3_000 });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.on('end', () => resolve(data));
    socket.on('timeout', () => socket.destroy(new Error('timed out')));
    socket.on('error', reject);
  });
}

const tcpScript = (ip: string, port: number): string => `
  const s = require('node:net').connect({ host: ${JSON.stringify(ip)}, port: ${String(port)} });
  let d = ''; s.setEncoding('utf8'); s.setTimeout(3000, () => s.destroy(new Error('timed out')));
  s.on('data', (x) => (d += x)); s.on('end', () => console.log(d));
  s.on('error', (e) => { console.error(e.message); process.exit(1); });`;

/** A Service without selector whose EndpointSlice points at `ip:8080`; resolves to its ClusterIP. */
async function serviceTo(ns: string, name: string, ip: string): Promise<string> {
  await ctl(
    ['apply', '-n', ns, '-f', '-'],
    [
      'apiVersion: v1',
      'kind: Service',
      `metadata: {name: ${name}}`,
      'spec: {ports: [{name: web, port: 80, protocol: TCP, targetPort: 8080}]}',
      '---',
      'apiVersion: discovery.k8s.io/v1',
      'kind: EndpointSlice',
      'metadata:',
      `  name: ${name}-1`,
      `  labels: {kubernetes.io/service-name: ${name}, endpointslice.kubernetes.io/managed-by: e2e}`,
      'addressType: IPv4',
      'ports: [{name: web, port: 8080, protocol: TCP}]',
      `endpoints: [{addresses: ["${ip}"], conditions: {ready: true}}]`,
    ].join('\n'),
  );
  return (await ctl(['get', 'service', name, '-n', ns, '-o', 'jsonpath={.spec.clusterIP}'])).stdout;
}

async function namespace(t: TestContext): Promise<string> {
  const name = `svc-${randomBytes(3).toString('hex')}`;
  await ctl(['create', 'namespace', name]);
  t.after(async () => {
    await ctl(['delete', 'namespace', name, '--wait=false']).catch(() => undefined);
  });
  return name;
}

test('ClusterInfo tells an agent the DNS IP, cluster domain and pod CIDR', () => {
  assert.equal(info.services?.dnsIp, '10.96.0.10');
  assert.equal(info.services.clusterDomain, 'cluster.local');
  assert.equal(info.services.podCidr, POD_CIDR);
  assert.equal(info.services.nodeName, NODE);
  assert.notEqual(info.pids['kube-proxy'], undefined);
  assert.notEqual(info.pids.coredns, undefined);
});

test('kube-dns is a Service at 10.96.0.10 with an EndpointSlice at the CoreDNS address', async () => {
  const svc = JSON.parse(
    (await ctl(['get', 'service', 'kube-dns', '-n', 'kube-system', '-o', 'json'])).stdout,
  ) as {
    spec: { clusterIP: string; selector?: unknown; ports: { port: number; protocol: string }[] };
  };
  assert.equal(svc.spec.clusterIP, '10.96.0.10');
  assert.equal(svc.spec.selector, undefined);
  assert.deepEqual(svc.spec.ports.map((p) => `${String(p.port)}/${p.protocol}`).sort(), [
    '53/TCP',
    '53/UDP',
  ]);
  const slice = (
    await ctl([
      'get',
      'endpointslices',
      '-n',
      'kube-system',
      '-l',
      'kubernetes.io/service-name=kube-dns',
      '-o',
      'jsonpath={.items[0].endpoints[0].addresses[0]}',
    ])
  ).stdout;
  assert.equal(slice, info.services?.dnsServerAddress);
});

test('CoreDNS answers Service names with their ClusterIPs, and nothing outside the cluster', async (t) => {
  const ns = await namespace(t);
  const ip = await serviceTo(ns, 'web', '10.213.0.2');
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  resolver.setServers([info.services?.dnsServerAddress ?? '']);
  assert.deepEqual(await resolver.resolve4('kubernetes.default.svc.cluster.local'), ['10.96.0.1']);
  await waitFor(async () => (await resolver.resolve4(`web.${ns}.svc.cluster.local`))[0] === ip, {
    what: `web.${ns} in DNS`,
  });
  // No forwarding: a name outside the cluster gets an error, never an answer.
  await assert.rejects(resolver.resolve4('example.org'), (err: NodeJS.ErrnoException) => {
    assert.match(err.code ?? '', /^(ENOTFOUND|ESERVFAIL|EREFUSED)$/);
    return true;
  });
});

test('DNS through the ClusterIP 10.96.0.10 from a network namespace', async (t) => {
  const client = testHost(t);
  routeServices(client.name, hostSide(client));
  const script = `
    const { Resolver } = require('node:dns/promises');
    const r = new Resolver({ timeout: 2000, tries: 2 }); r.setServers(['10.96.0.10']);
    r.resolve4('kubernetes.default.svc.cluster.local').then((a) => console.log(a.join(',')),
      (e) => { console.error(e.code); process.exit(1); });`;
  assert.equal(
    await waitFor(() => inNamespace(client.name, script), { what: 'an answer via 10.96.0.10' }),
    '10.96.0.1',
  );
});

test('kube-proxy routes a ClusterIP to an endpoint in a namespace, from the host and from another namespace', async (t) => {
  const ns = await namespace(t);
  const server = testHost(t);
  await serverIn(t, server.name, server.ip, `hello from ${server.ip}`);
  const clusterIp = await serviceTo(ns, 'echo', server.ip);
  const answer = await waitFor(() => fetchTcp(clusterIp, 80), {
    what: `${clusterIp}:80 from the host`,
  });
  assert.equal(answer, `hello from ${server.ip}`);

  const client = testHost(t);
  routeServices(client.name, hostSide(client));
  assert.equal(
    await waitFor(() => inNamespace(client.name, tcpScript(clusterIp, 80)), {
      what: `${clusterIp}:80 from another namespace`,
    }),
    `hello from ${server.ip}`,
  );
});

/**
 * Two "pods" on one bridge in the pod CIDR, as the node's CNI network puts them: the reply of
 * the endpoint pod goes straight back over the bridge, so only conntrack on bridged traffic
 * (br_netfilter) turns its source back into the ClusterIP.
 */
test('a pod reaches a ClusterIP whose endpoint is a pod on the same bridge, without masquerading', async (t) => {
  const tag = randomBytes(2).toString('hex');
  const bridge = `vksb${tag}`;
  const pods = [`vksp${tag}a`, `vksp${tag}b`];
  const ip = (...args: string[]): void => {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const remove = (): void => {
    for (const p of pods) spawnSync('ip', ['netns', 'del', p], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  };
  const forget = onOrphaned(remove);
  t.after(() => {
    forget();
    remove();
  });
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${BRIDGE_IP}/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  const addresses = ['10.214.0.2', '10.214.0.3'];
  pods.forEach((p, i) => {
    const veth = `${p}h`;
    ip('netns', 'add', p);
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', p);
    ip('link', 'set', veth, 'master', bridge);
    ip('link', 'set', veth, 'up');
    ip('netns', 'exec', p, 'ip', 'addr', 'add', `${addresses[i] ?? ''}/24`, 'dev', 'eth0');
    ip('netns', 'exec', p, 'ip', 'link', 'set', 'eth0', 'up');
    ip('netns', 'exec', p, 'ip', 'link', 'set', 'lo', 'up');
    routeServices(p, BRIDGE_IP);
  });
  const [client = '', server = ''] = pods;
  const serverIp = addresses[1] ?? '';
  // The server reports the address the connection came from: a pod's, not masqueraded.
  const logPath = join(dir, `server-${server}.log`);
  const child = spawnOwned('ip', {
    args: [
      'netns',
      'exec',
      server,
      process.execPath,
      '-e',
      `require('node:net').createServer((c) => c.end('from ' + c.remoteAddress))
        .listen(8080, ${JSON.stringify(serverIp)}, () => console.log('ready'));`,
    ],
    logPath,
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  await waitFor(async () => (await readFile(logPath, 'utf8').catch(() => '')).includes('ready'), {
    what: 'the server pod',
  });
  const ns = await namespace(t);
  const clusterIp = await serviceTo(ns, 'pod-echo', serverIp);
  assert.equal(
    await waitFor(() => inNamespace(client, tcpScript(clusterIp, 80)), {
      what: `${clusterIp}:80 from a pod on the bridge`,
    }),
    `from ${addresses[0] ?? ''}`,
  );
});

/**
 * A real process-provider node (`bin/virtual-kubelet --provider process`) in this cluster, with
 * the pod network of CNI, `--cluster-dns` at the kube-dns Service and a pod CIDR inside
 * kube-proxy's cluster CIDR; everything below goes through the pinned kubectl.
 */
describe('a process node with the pod network, kube-proxy and CoreDNS', () => {
  const stateDir = processStateDir();
  let agent: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  let forget = (): void => undefined;
  let agentLog = '';

  before(async () => {
    const pki = info.pkiDir;
    const kubeconfig = await writeNodeKubeconfig({
      pkiDir: pki,
      server: info.server,
      nodeName: NODE,
      path: join(dir, `node-${NODE}.kubeconfig`),
    });
    await issueCert(pki, {
      name: `serving-${NODE}`,
      cn: `system:node:${NODE}`,
      organizations: ['system:nodes'],
      usage: 'server',
      sans: ['IP:127.0.0.1', `DNS:${NODE}`],
    });
    const config = join(dir, 'process.json');
    // The cluster's directory (its PKI, with etcd's client key) is under /tmp, which each pod
    // has a private one of.
    await writeFile(config, JSON.stringify({ stateDir, monitorIntervalMs: 200, network: 'cni' }));
    const [port] = await freePorts(1);
    agentLog = join(dir, 'agent.log');
    forget = onOrphaned(() => {
      agent?.kill('SIGKILL');
      reap(stateDir, NODE);
    });
    agent = spawnOwned(process.execPath, {
      args: [
        bin,
        '--kubeconfig',
        kubeconfig,
        '--nodename',
        NODE,
        '--provider',
        'process',
        '--provider-config',
        config,
        '--node-ip',
        NODE_IP,
        '--listen-port',
        String(port),
        '--pod-cidr',
        NODE_POD_CIDR,
        '--cluster-dns',
        info.services?.dnsIp ?? '',
        '--cluster-domain',
        info.services?.clusterDomain ?? '',
        '--tls-cert-file',
        join(pki, `serving-${NODE}.crt`),
        '--tls-private-key-file',
        join(pki, `serving-${NODE}.key`),
        '--pod-status-poll-interval',
        '1s',
      ],
      logPath: agentLog,
    });
    const child = agent;
    exited = new Promise((resolve) => child.once('exit', resolve));
    await waitFor(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`the agent exited: ${await readFile(agentLog, 'utf8')}`);
        const r = await ctl(
          ['get', 'node', NODE, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'],
          undefined,
          true,
        );
        return r.stdout === 'True';
      },
      { what: `node ${NODE} Ready`, timeoutMs: 60_000 },
    );
  });

  after(async () => {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      const timer = setTimeout(() => agent?.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    forget();
    // Pods outlive their agent on purpose: their processes, netns, bridge and table go here.
    reap(stateDir, NODE);
    await ctl(['delete', 'node', NODE, '--wait=false'], undefined, true);
  });

  /** Runs `args` in a pod's container with kubectl exec; resolves to its stdout. */
  const exec = async (ns: string, pod: string, args: string[]): Promise<string> =>
    (await ctl(['exec', pod, '-n', ns, '--', ...args])).stdout;

  /** A busybox pod that sleeps, on the virtual node; resolves once it runs. */
  async function sleeper(ns: string, name: string, extra: string[] = []): Promise<Pod> {
    await ctl(
      ['apply', '-n', ns, '-f', '-'],
      [
        'apiVersion: v1',
        'kind: Pod',
        `metadata: {name: ${name}}`,
        'spec:',
        `  nodeSelector: {type: virtual-kubelet}`,
        `  tolerations: [{key: virtual-kubelet.io/provider, operator: Exists, effect: NoSchedule}]`,
        '  terminationGracePeriodSeconds: 1',
        '  containers: [{name: app, image: busybox, command: [sleep, "3600"]}]',
        ...extra.map((l) => `  ${l}`),
      ].join('\n'),
    );
    return waitFor(
      async () => {
        const p = await pod(ns, name);
        return p.status.phase === 'Running' ? p : undefined;
      },
      { what: `pod ${name} Running` },
    );
  }

  async function pod(ns: string, name: string): Promise<Pod> {
    return JSON.parse((await ctl(['get', 'pod', name, '-n', ns, '-o', 'json'])).stdout) as Pod;
  }

  /** The Deployment `web` (two busybox httpd on :8080, Ready while /tmp/www/ready exists) and its Service. */
  async function deployWeb(ns: string): Promise<Pod[]> {
    await ctl(['apply', '-n', ns, '-f', '-'], webManifest());
    return waitFor(
      async () => {
        const list = JSON.parse(
          (await ctl(['get', 'pods', '-n', ns, '-l', 'app=web', '-o', 'json'])).stdout,
        ) as { items: Pod[] };
        const ready = list.items.filter((p) => isReady(p) && !p.metadata.deletionTimestamp);
        return ready.length === 2 ? ready : undefined;
      },
      { what: 'two web pods Ready', timeoutMs: 60_000 },
    );
  }

  /** The addresses of the web Service's EndpointSlices, with their ready condition. */
  async function endpoints(ns: string): Promise<{ ports: number[]; ready: Map<string, boolean> }> {
    const slices = JSON.parse(
      (
        await ctl([
          'get',
          'endpointslices',
          '-n',
          ns,
          '-l',
          'kubernetes.io/service-name=web',
          '-o',
          'json',
        ])
      ).stdout,
    ) as { items: Slice[] };
    const ready = new Map<string, boolean>();
    const ports: number[] = [];
    for (const s of slices.items) {
      for (const p of s.ports ?? []) ports.push(p.port);
      for (const e of s.endpoints ?? [])
        for (const a of e.addresses) ready.set(a, e.conditions?.ready === true);
    }
    return { ports, ready };
  }

  test('a Deployment of two httpd pods on one port answers through its Service by name, short name and ClusterIP', async (t) => {
    const ns = await namespace(t);
    const pods = await deployWeb(ns);
    const ips = pods.map((p) => p.status.podIP ?? '');
    assert.equal(new Set(ips).size, 2, `two pod IPs: ${ips.join(', ')}`);
    const range = parseCidr(NODE_POD_CIDR, 'pod CIDR');
    for (const p of pods) {
      assert.ok(
        cidrContains(range, p.status.podIP ?? ''),
        `${String(p.status.podIP)} in the pod CIDR`,
      );
      assert.equal(p.spec.nodeName, NODE);
      assert.equal(p.status.hostIP, NODE_IP);
    }
    // Both endpoints, ready, on the one port both pods listen on.
    const slice = await waitFor(
      async () => {
        const e = await endpoints(ns);
        return ips.every((ip) => e.ready.get(ip) === true) ? e : undefined;
      },
      { what: 'both pod IPs ready in the EndpointSlice' },
    );
    assert.deepEqual(slice.ports, [8080]);
    assert.equal(slice.ready.size, 2);

    await sleeper(ns, 'client');
    const clusterIp = (
      await ctl(['get', 'service', 'web', '-n', ns, '-o', 'jsonpath={.spec.clusterIP}'])
    ).stdout;
    assert.match(clusterIp, /^10\.96\./);
    const names = pods.map((p) => p.metadata.name).sort();
    for (const url of [
      `http://web.${ns}.svc.cluster.local:8080`,
      'http://web:8080',
      `http://${clusterIp}:8080`,
    ]) {
      // kube-proxy picks an endpoint at random: asked often enough, both pods answer.
      const seen = new Set<string>();
      await waitFor(
        async () => {
          const body = await exec(ns, 'client', ['wget', '-qO-', '-T', '3', url]).catch(
            async (err: unknown) => {
              const why = err instanceof Error ? err.message : String(err);
              throw new Error(`${why}; client: ${podSummary(await pod(ns, 'client'))}`);
            },
          );
          const m = /^hello from (\S+)$/m.exec(body);
          assert.ok(m?.[1], `${url} answered ${JSON.stringify(body)}`);
          seen.add(m[1]);
          return seen.size === 2;
        },
        { what: `both web pods through ${url}`, timeoutMs: 60_000, intervalMs: 100 },
      );
      assert.deepEqual([...seen].sort(), names, url);
    }
  });

  test('a pod whose readiness probe fails leaves the EndpointSlice, and comes back when it passes', async (t) => {
    const ns = await namespace(t);
    const [sick, well] = await deployWeb(ns);
    assert.ok(sick && well);
    const sickIp = sick.status.podIP ?? '';
    const wellIp = well.status.podIP ?? '';
    await waitFor(async () => (await endpoints(ns)).ready.get(sickIp) === true, {
      what: `${sickIp} ready in the EndpointSlice`,
    });
    await exec(ns, sick.metadata.name, ['rm', '/tmp/www/ready']);
    await waitFor(async () => !isReady(await pod(ns, sick.metadata.name)), {
      what: `pod ${sick.metadata.name} not Ready`,
    });
    const without = await waitFor(
      async () => {
        const e = await endpoints(ns);
        return e.ready.get(sickIp) !== true ? e : undefined;
      },
      { what: `${sickIp} not ready (or gone) in the EndpointSlice` },
    );
    assert.equal(without.ready.get(wellIp), true);
    await exec(ns, sick.metadata.name, ['touch', '/tmp/www/ready']);
    await waitFor(async () => (await endpoints(ns)).ready.get(sickIp) === true, {
      what: `${sickIp} ready again in the EndpointSlice`,
    });
    assert.ok(isReady(await pod(ns, sick.metadata.name)));
  });

  test("a hostNetwork pod reports the node's address; resolv.conf is the cluster's for ClusterFirst, the host's for Default", async (t) => {
    const ns = await namespace(t);
    const onHost = await sleeper(ns, 'on-host', ['hostNetwork: true']);
    assert.equal(onHost.status.podIP, NODE_IP);
    assert.equal(onHost.status.hostIP, NODE_IP);

    await sleeper(ns, 'first');
    const resolv = await exec(ns, 'first', ['cat', '/etc/resolv.conf']);
    assert.match(resolv, /^nameserver 10\.96\.0\.10$/m);
    assert.match(
      resolv,
      new RegExp(
        `^search ${ns}\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local\\b`,
        'm',
      ),
    );
    assert.match(resolv, /^options ndots:5$/m);

    await sleeper(ns, 'default', ['dnsPolicy: Default']);
    const own = await exec(ns, 'default', ['cat', '/etc/resolv.conf']);
    const servers = (text: string): string[] =>
      text
        .split('\n')
        .filter((l) => l.startsWith('nameserver '))
        .slice(0, 3);
    assert.deepEqual(servers(own), servers(await readFile('/etc/resolv.conf', 'utf8')));
    assert.doesNotMatch(own, /10\.96\.0\.10|svc\.cluster\.local/);
  });

  test("a pod cannot reach etcd: no route from the pod network, no TLS session without etcd's client certificate", async (t) => {
    const ns = await namespace(t);
    const etcd = new URL(info.etcdUrl);
    const port = Number(etcd.port);
    assert.equal(etcd.hostname, '127.0.0.1');
    const connect = (host: string): string[] => [
      process.execPath,
      '-e',
      `const s = require('node:net').connect({ host: ${JSON.stringify(host)}, port: ${String(port)} });
       s.setTimeout(3000, () => { console.log('timeout'); process.exit(0); });
       s.on('connect', () => { console.log('connected'); process.exit(0); });
       s.on('error', (e) => { console.log(e.code); process.exit(0); });`,
    ];
    const gateway = NODE_POD_CIDR.replace(/\.0\/24$/, '.1');
    await sleeper(ns, 'in-pod-net');
    // Its own loopback: nothing listens there.
    assert.equal(await exec(ns, 'in-pod-net', connect('127.0.0.1')), 'ECONNREFUSED\n');
    // The host at the bridge: etcd listens on the host's loopback only.
    assert.equal(await exec(ns, 'in-pod-net', connect(gateway)), 'ECONNREFUSED\n');
    // Other addresses of the host (CoreDNS's, the primary one): not routed from a pod.
    for (const address of [info.services?.dnsServerAddress ?? '', primaryAddress()]) {
      if (address === '127.0.0.1') continue;
      assert.match(
        await exec(ns, 'in-pod-net', connect(address)),
        /^(ENETUNREACH|EHOSTUNREACH|ECONNREFUSED)\n$/,
        address,
      );
    }

    // A host-network pod shares the host's loopback, so it connects; the TLS handshake without a
    // client certificate of etcd's CA fails, and the cluster's PKI (under /tmp) is out of its
    // sight: each pod has a /tmp of its own.
    await sleeper(ns, 'on-host', ['hostNetwork: true']);
    assert.equal(await exec(ns, 'on-host', connect('127.0.0.1')), 'connected\n');
    const tls = await exec(ns, 'on-host', [
      process.execPath,
      '-e',
      `require('node:https').get(${JSON.stringify(`${info.etcdUrl}/health`)},
         { rejectUnauthorized: false, timeout: 5000 },
         (r) => { console.log('HTTP ' + r.statusCode); process.exit(0); })
       .on('error', (e) => { console.log('error ' + (e.code || e.message)); process.exit(0); });`,
    ]);
    assert.match(tls, /^error /, `TLS without a client certificate got ${tls}`);
    const key = join(info.pkiDir, 'apiserver-etcd-client.key');
    const read = await ctl(['exec', 'on-host', '-n', ns, '--', 'cat', key], undefined, true);
    assert.notEqual(read.code, 0, "the pod read etcd's client key");
  });
});

test('a second cluster with services on this host fails at once, naming the one that runs', async (t) => {
  const other = await mkdtemp(join(tmpdir(), 'vk-e2e-services-2-'));
  await writeFile(join(other, 'owner.pid'), String(process.pid));
  const second = new DevCluster({
    dir: other,
    binaries: await ensureBinaries({ services: true }),
    services: { nodeName: 'vk-other', podCidr: POD_CIDR },
  });
  t.after(async () => {
    await second.stop();
    await rm(other, { recursive: true, force: true });
  });
  await assert.rejects(second.start(), {
    code: 'StartFailed',
    message: /another dev cluster with services runs on this host/,
  });
  // Its failed start removed nothing of the first: DNS still answers.
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  resolver.setServers([info.services?.dnsServerAddress ?? '']);
  assert.deepEqual(await resolver.resolve4('kubernetes.default.svc.cluster.local'), ['10.96.0.1']);
  assert.equal(spawnSync('nft', ['list', 'table', 'ip', 'kube-proxy']).status, 0);
});

test('stopping the cluster leaves no kube-proxy rules, dummy interface or process', async () => {
  const c = cluster;
  assert.ok(c);
  // kube-proxy restarts when its Node goes (the process node's, deleted above).
  const pids = await waitFor(
    () => {
      const p = [c.pid('kube-proxy'), c.pid('coredns')];
      return p.every((x) => x > 0) ? p : undefined;
    },
    { what: 'kube-proxy and CoreDNS running' },
  );
  await c.stop();
  for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${String(pid)} still runs`);
  for (const family of ['ip', 'ip6']) {
    const r = spawnSync('nft', ['list', 'table', family, 'kube-proxy'], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, `the ${family} kube-proxy table is still there`);
  }
  const link = spawnSync('ip', ['link', 'show', info.services?.dummyInterface ?? 'vk-dns0']);
  assert.notEqual(link.status, 0, 'the dummy interface is still there');
  const chains = spawnSync('iptables-save', [], { encoding: 'utf8' }).stdout;
  assert.doesNotMatch(chains, /KUBE-/, 'iptables chains of kube-proxy are left');
});

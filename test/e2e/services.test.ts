// Services and DNS of a dev cluster started with `services`: real kube-proxy (nftables) and
// CoreDNS, reached from the host, from network namespaces routed to the service CIDR, and from
// "pods" on a bridge in the pod CIDR. Only one cluster with services can run on a host (the
// services lock): this file starts one, so a `dev-cluster up --services` running meanwhile
// makes it fail with that reason.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import {
  DevCluster,
  ensureBinaries,
  isAlive,
  type ClusterInfo,
} from '../../src/devcluster/index.js';
import { spawnOwned } from '../../src/devcluster/process.js';
import { kubectl } from '../helpers/cluster.js';
import { testHost, type TestHost } from '../helpers/netns.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { waitFor } from '../helpers/wait.js';

const NODE = 'vk-services-e2e';
// A pod range of this file's own, away from the ranges the pod-network tests use.
const POD_CIDR = '10.214.0.0/24';
const BRIDGE_IP = '10.214.0.1';

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

const ctl = (args: string[], input?: string) =>
  kubectl(args, { kubeconfig: info.adminKubeconfig, ...(input ? { input } : {}) });

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
  const pids = [c.pid('kube-proxy'), c.pid('coredns')];
  assert.ok(pids.every((p) => p > 0));
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

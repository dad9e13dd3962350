/**
 * Pod networks of the process provider: the conflist and the CNI invocation order (with fake
 * plugins that record what they get), and real networks made by the CNI plugins of this machine
 * (root, /usr/lib/cni or /opt/cni/bin, nft): two pods on one port, addresses, port-forward,
 * teardown, and that a pod has no way off the machine.
 */
import type { V1Pod, V1PodSpec } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Duplex, PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { errorMessage } from '../../../../src/errors.js';
import {
  ISOLATION_ANNOTATION,
  ProcessProvider,
  parseProcessConfig,
  type ProcessConfig,
} from '../../../../src/providers/process/index.js';
import {
  CNI_BIN_DIRS,
  addNetworkList,
  cidrContains,
  confList,
  delNetworkList,
  findCniBinDir,
  netnsName,
  nftTableName,
  parseCidr,
  bridgeName,
} from '../../../../src/providers/process/network.js';
import { processFixture, processStateDir, randomPodCidr } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;

test('the conflist: bridge with gateway, no masquerade, hairpin; host-local; only the service route', () => {
  const list = confList({
    name: 'vk-x',
    bridge: 'vkabc',
    podCidr: '10.201.3.0/24',
    serviceCidr: '10.96.0.0/16',
    ipamDataDir: '/state/network/ipam',
  });
  assert.equal(list.cniVersion, '1.0.0');
  assert.deepEqual(
    list.plugins.map((p) => p.type),
    ['bridge', 'portmap', 'loopback'],
  );
  assert.deepEqual(list.plugins[0], {
    type: 'bridge',
    bridge: 'vkabc',
    isGateway: true,
    ipMasq: false,
    hairpinMode: true,
    ipam: {
      type: 'host-local',
      dataDir: '/state/network/ipam',
      ranges: [[{ subnet: '10.201.3.0/24' }]],
      routes: [{ dst: '10.96.0.0/16' }],
    },
  });
  assert.ok(bridgeName('some-node-with-a-long-name-indeed').length <= 15);
});

test('CIDRs: a bad one is one readable error naming the field', () => {
  assert.throws(
    () => parseCidr('10.1.2.0/33', '--pod-cidr'),
    /--pod-cidr "10.1.2.0\/33" is not an IPv4 CIDR/,
  );
  assert.throws(
    () => parseCidr('10.1.2.3/24', 'podCIDR'),
    /host bits set: the network is 10.1.2.0\/24/,
  );
  assert.throws(() => parseCidr('fd00::/64', 'podCIDR'), /not an IPv4 CIDR/);
  assert.ok(cidrContains(parseCidr('10.1.2.0/24', 'x'), '10.1.2.77'));
  assert.ok(!cidrContains(parseCidr('10.1.2.0/24', 'x'), '10.1.3.1'));
  assert.throws(
    () => parseProcessConfig({ podCIDR: '10.96.0.0/24', serviceCIDR: '10.96.0.0/16' }),
    /process provider config: podCIDR 10.96.0.0\/24 overlaps serviceCIDR 10.96.0.0\/16/,
  );
  assert.throws(() => parseProcessConfig({ network: 'bridge' }), /network must be "cni" or "host"/);
  assert.throws(
    () => parseProcessConfig({ serviceCIDR: 'x' }),
    /serviceCIDR "x" is not an IPv4 CIDR/,
  );
});

/** Fake plugins that log `<command> <type> <prevResult's marker>` and print a result. */
function fakePlugins(t: TestContext, failing?: string): { dir: string; log: () => string[] } {
  const dir = mkdtempSync('/var/tmp/vk-fake-cni-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'log');
  for (const type of ['bridge', 'portmap', 'loopback']) {
    const fail = type === failing;
    const script = [
      '#!/bin/sh',
      'conf=$(cat)',
      // The marker of the result before, if any: "prev=<type>".
      `prev=$(printf '%s' "$conf" | sed -n 's/.*"prevResult":{"marker":"\\([a-z]*\\)".*/\\1/p')`,
      `echo "$CNI_COMMAND ${type} prev=$prev id=$CNI_CONTAINERID ns=$CNI_NETNS if=$CNI_IFNAME path=$CNI_PATH" >> ${logFile}`,
      fail
        ? `echo '{"cniVersion":"1.0.0","code":11,"msg":"failed on purpose","details":"the ${type} fake"}'; exit 1`
        : `echo '{"marker":"${type}","cniVersion":"1.0.0","ips":[{"address":"10.9.9.9/24"}]}'`,
    ].join('\n');
    writeFileSync(join(dir, type), `${script}\n`);
    chmodSync(join(dir, type), 0o755);
  }
  return {
    dir,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n') : []),
  };
}

const fakeList = confList({
  name: 'vk-fake',
  bridge: 'vkfake',
  podCidr: '10.201.0.0/24',
  serviceCidr: '10.96.0.0/16',
  ipamDataDir: '/nonexistent',
});

test('ADD runs the plugins in order, each with the result before it; DEL in reverse', async (t) => {
  const fake = fakePlugins(t);
  const inv = {
    containerID: 'uid-1',
    netns: '/var/run/netns/x',
    ifname: 'eth0',
    binDir: fake.dir,
    timeoutMs: 5000,
  };
  const result = await addNetworkList(fakeList, inv);
  assert.deepEqual((result as { marker: string }).marker, 'loopback');
  await delNetworkList(fakeList, inv, result);
  const env = `id=uid-1 ns=/var/run/netns/x if=eth0 path=${fake.dir}`;
  assert.deepEqual(fake.log(), [
    `ADD bridge prev= ${env}`,
    `ADD portmap prev=bridge ${env}`,
    `ADD loopback prev=portmap ${env}`,
    `DEL loopback prev=loopback ${env}`,
    `DEL portmap prev=loopback ${env}`,
    `DEL bridge prev=loopback ${env}`,
  ]);
});

test("a plugin's error result is the error; DEL still runs every plugin", async (t) => {
  const fake = fakePlugins(t, 'portmap');
  const inv = { containerID: 'u', netns: '/n', ifname: 'eth0', binDir: fake.dir, timeoutMs: 5000 };
  await assert.rejects(
    addNetworkList(fakeList, inv),
    /CNI plugin portmap ADD failed: failed on purpose: the portmap fake \(code 11\)/,
  );
  await assert.rejects(delNetworkList(fakeList, inv), /CNI plugin portmap DEL failed/);
  assert.deepEqual(
    fake.log().map((l) => l.split(' ').slice(0, 2).join(' ')),
    ['ADD bridge', 'ADD portmap', 'DEL loopback', 'DEL portmap', 'DEL bridge'],
  );
});

// ---- real networks --------------------------------------------------------------------------

/** Fails (never skips) when what real networks need is missing. */
function requireCni(): void {
  if (process.getuid?.() !== 0) assert.fail('pod network tests need root');
  if (findCniBinDir(CNI_BIN_DIRS) === undefined)
    assert.fail(`no CNI plugins in ${CNI_BIN_DIRS.join(' or ')} (containernetworking-plugins)`);
  if (spawnSync('nft', ['--version']).status !== 0) assert.fail('nft (nftables) is missing');
}

interface Setup {
  readonly provider: ProcessProvider;
  readonly make: () => ProcessProvider;
  readonly nodeName: string;
  readonly dir: string;
  readonly cidr: string;
}

function setup(t: TestContext, config: ProcessConfig = {}): Setup {
  requireCni();
  const cidr = randomPodCidr();
  const f = processFixture(t, 'net', { nodeIP: '127.0.0.1', config: { podCIDR: cidr, ...config } });
  return { ...f, cidr };
}

function pod(name: string, spec: Partial<V1PodSpec>): V1Pod {
  return {
    metadata: { namespace: 'unit', name, uid: randomUUID() },
    spec: { terminationGracePeriodSeconds: 1, containers: [], ...spec },
  };
}

/** A pod serving its hostname over HTTP on `port` (busybox httpd, on every address). */
function webPod(name: string, port = 8080): V1Pod {
  return pod(name, {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: [
          'sh',
          '-c',
          `hostname > /tmp/index.html; exec busybox httpd -f -p ${String(port)} -h /tmp`,
        ],
      },
    ],
  });
}

async function podIP(p: ProcessProvider, name: string): Promise<string> {
  return waitFor(
    async () => {
      const s = await p.getPodStatus('unit', name, signal);
      return s?.phase === 'Running' ? s.podIP : undefined;
    },
    { what: `pod ${name} running` },
  );
}

async function execIn(
  p: ProcessProvider,
  name: string,
  command: string[],
): Promise<{ code: number; out: string }> {
  const out = new PassThrough();
  const got = text(out);
  const code = await p.runInContainer(
    'unit',
    name,
    'app',
    command,
    { stdout: out, stderr: out, tty: false },
    signal,
  );
  out.end();
  return { code, out: await got };
}

async function httpGet(url: string): Promise<string> {
  return waitFor(
    async () => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
        return res.ok ? (await res.text()).trim() : undefined;
      } catch {
        return undefined;
      }
    },
    { what: `an answer from ${url}`, timeoutMs: 10_000 },
  );
}

test('two pods listen on one port, each at its own pod IP, reachable from the host and each other', async (t) => {
  const { provider, cidr, nodeName } = setup(t);
  await provider.createPod(webPod('a'), signal);
  await provider.createPod(webPod('b'), signal);
  const [ipA, ipB] = [await podIP(provider, 'a'), await podIP(provider, 'b')];
  const range = parseCidr(cidr, 'test');
  assert.ok(cidrContains(range, ipA), `${ipA} in ${cidr}`);
  assert.ok(cidrContains(range, ipB), `${ipB} in ${cidr}`);
  assert.notEqual(ipA, ipB);
  assert.notEqual(ipA, '127.0.0.1');
  const status = await provider.getPodStatus('unit', 'a', signal);
  assert.deepEqual(status?.podIPs, [{ ip: ipA }]);
  assert.equal(status?.hostIP, '127.0.0.1');
  assert.equal(await httpGet(`http://${ipA}:8080/`), 'a');
  assert.equal(await httpGet(`http://${ipB}:8080/`), 'b');
  const fromA = await execIn(provider, 'a', [
    'busybox',
    'wget',
    '-q',
    '-O',
    '-',
    `http://${ipB}:8080/`,
  ]);
  assert.deepEqual(fromA, { code: 0, out: 'b\n' });
  const fromB = await execIn(provider, 'b', [
    'busybox',
    'wget',
    '-q',
    '-O',
    '-',
    `http://${ipA}:8080/`,
  ]);
  assert.deepEqual(fromB, { code: 0, out: 'a\n' });
  // The node says so.
  const node = { metadata: {}, status: {} };
  provider.configureNode(node);
  assert.match(
    (node.metadata as { annotations?: Record<string, string> }).annotations?.[
      ISOLATION_ANNOTATION
    ] ?? '',
    new RegExp(`cni-network ${cidr.replace(/\./g, '\\.')}`),
  );
  assert.deepEqual((node as { spec?: unknown }).spec, { podCIDR: cidr, podCIDRs: [cidr] });
  const nft = spawnSync('nft', ['list', 'table', 'inet', nftTableName(nodeName)], {
    encoding: 'utf8',
  });
  assert.equal(nft.status, 0, nft.stderr);
  assert.match(nft.stdout, new RegExp(`ip saddr ${cidr.replace(/\./g, '\\.')} drop`));
});

test('a hostNetwork pod keeps the host network and reports the node IP', async (t) => {
  const { provider } = setup(t);
  const p = pod('host', {
    hostNetwork: true,
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  await provider.createPod(p, signal);
  assert.equal(await podIP(provider, 'host'), '127.0.0.1');
  assert.equal(existsSync(join('/var/run/netns', netnsName(p.metadata?.uid ?? ''))), false);
  const main = await waitFor(() => provider.mainProcess('unit', 'host', 'app'), {
    what: 'the main process',
  });
  const link = (pid: number | string): string =>
    spawnSync('readlink', [`/proc/${String(pid)}/ns/net`], { encoding: 'utf8' }).stdout.trim();
  assert.equal(link(main.pid), link(process.pid));
});

test('port-forward reaches a pod that listens on its pod IP only', async (t) => {
  const { provider } = setup(t);
  await provider.createPod(
    pod('only', {
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: [
            'sh',
            '-c',
            'echo only > /tmp/index.html; ip=$(busybox ip -4 -o addr show eth0 | sed "s/.* inet \\([0-9.]*\\).*/\\1/"); exec busybox httpd -f -p "$ip:8081" -h /tmp',
          ],
        },
      ],
    }),
    signal,
  );
  const ip = await podIP(provider, 'only');
  await httpGet(`http://${ip}:8081/`);
  const input = new PassThrough();
  const output = new PassThrough();
  const got = text(output);
  const stream = Duplex.from({ readable: input, writable: output });
  input.end('GET / HTTP/1.0\r\n\r\n');
  await provider.portForward('unit', 'only', 8081, stream, signal);
  output.end();
  assert.match(await got, /^HTTP\/1\.[01] 200[\s\S]*\r\n\r\nonly\n$/);
});

function ipamFiles(dir: string, network: string): string[] {
  const d = join(dir, 'network', 'ipam', network);
  return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}

test('deleting a pod removes its netns and frees its IP', async (t) => {
  const { provider, dir, nodeName } = setup(t);
  const p = webPod('gone');
  await provider.createPod(p, signal);
  const ip = await podIP(provider, 'gone');
  const network = `vk-${bridgeName(nodeName).slice(2)}`;
  assert.deepEqual(ipamFiles(dir, network), [ip]);
  const ns = join('/var/run/netns', netnsName(p.metadata?.uid ?? ''));
  assert.ok(existsSync(ns));
  await provider.deletePod(p, signal);
  assert.equal(existsSync(ns), false, 'the netns is gone');
  assert.deepEqual(ipamFiles(dir, network), [], 'the IP is free');
  // Idempotent: a second delete of what is gone succeeds.
  await provider.deletePod(p, signal);
});

test('createPod twice gives the same IP without a second ADD', async (t) => {
  const { provider, dir, nodeName } = setup(t);
  const p = webPod('twice');
  await provider.createPod(p, signal);
  const first = await provider.ensurePodNetwork(p, signal);
  const again = await provider.ensurePodNetwork(p, signal);
  assert.deepEqual(first.podIPs, again.podIPs);
  assert.deepEqual(ipamFiles(dir, `vk-${bridgeName(nodeName).slice(2)}`), [...first.podIPs]);
});

test('networks of pods deleted or lost while the agent was down are removed on start', async (t) => {
  const { provider, make, dir, nodeName } = setup(t);
  const deleted = webPod('deleted');
  const lost = webPod('lost');
  await provider.createPod(deleted, signal);
  await provider.createPod(lost, signal);
  await podIP(provider, 'deleted');
  await podIP(provider, 'lost');
  await provider.close();
  // "lost": its processes die and its state goes (as if its record could not be read).
  const lostRecord = provider.podRecord('unit', 'lost');
  if (lostRecord?.sandbox) process.kill(lostRecord.sandbox.pid, 'SIGKILL');
  rmSync(lostRecord?.dir ?? '', { recursive: true, force: true });
  const second = make();
  const nsOf = (p: V1Pod): string => join('/var/run/netns', netnsName(p.metadata?.uid ?? ''));
  await waitFor(() => !existsSync(nsOf(lost)), { what: 'the lost pod network to go' });
  // "deleted": the core deletes a pod the API no longer has.
  assert.ok(second.podKeys().includes('unit/deleted'));
  await second.deletePod(deleted, signal);
  assert.equal(existsSync(nsOf(deleted)), false);
  assert.deepEqual(ipamFiles(dir, `vk-${bridgeName(nodeName).slice(2)}`), []);
});

test('a pod has no route off the machine: no default route, connects elsewhere fail', async (t) => {
  const { provider, cidr } = setup(t);
  await provider.createPod(
    pod('jail', { containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] }),
    signal,
  );
  await podIP(provider, 'jail');
  const routes = await execIn(provider, 'jail', ['busybox', 'ip', '-4', 'route']);
  assert.equal(routes.code, 0);
  assert.doesNotMatch(routes.out, /default/);
  const lines = routes.out
    .trim()
    .split('\n')
    .map((l) => l.split(' ')[0]);
  assert.deepEqual(lines.sort(), ['10.96.0.0/16', cidr].sort());
  // TEST-NET-1 (192.0.2.0/24): no route, so the connect fails before any packet is sent.
  const out = await execIn(provider, 'jail', ['busybox', 'nc', '-w', '2', '192.0.2.1', '80']);
  assert.notEqual(out.code, 0);
  assert.match(out.out, /unreachable/i);
});

test('network "cni" that cannot work is an error; "host" keeps the node IP', (t) => {
  requireCni();
  const dir = processStateDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(
    () =>
      new ProcessProvider({
        nodeName: `unit-net-bad-${String(process.pid)}`,
        config: { stateDir: dir, network: 'cni', cniBinDir: '/nonexistent' },
      }),
    (err: unknown) => /network "cni" cannot work: no CNI plugins/.test(errorMessage(err)),
  );
  const host = new ProcessProvider({
    nodeName: `unit-net-host-${String(process.pid)}`,
    nodeIP: '127.0.0.1',
    config: { stateDir: dir, network: 'host' },
  });
  t.after(() => host.close());
  assert.match(host.isolation, /host-network \(disabled by config\)/);
  assert.equal(host.podCIDR, undefined);
});

test('a pod whose sandbox and netns are gone (a reboot) gets a network again', async (t) => {
  const { provider, cidr } = setup(t);
  const p = webPod('reborn');
  await provider.createPod(p, signal);
  await podIP(provider, 'reborn');
  const ns = join('/var/run/netns', netnsName(p.metadata?.uid ?? ''));
  const sandbox = provider.podRecord('unit', 'reborn')?.sandbox;
  assert.ok(sandbox);
  process.kill(sandbox.pid, 'SIGKILL');
  spawnSync('ip', ['netns', 'del', netnsName(p.metadata?.uid ?? '')]);
  const ip = await waitFor(
    async () => {
      const s = await provider.getPodStatus('unit', 'reborn', signal);
      const revived = provider.podRecord('unit', 'reborn')?.sandbox?.pid !== sandbox.pid;
      return revived && s?.containerStatuses?.[0]?.state?.running && existsSync(ns)
        ? s.podIP
        : undefined;
    },
    { what: 'the pod running again in a new netns', timeoutMs: 15_000 },
  );
  assert.ok(cidrContains(parseCidr(cidr, 'test'), ip ?? ''));
  assert.equal(await httpGet(`http://${ip ?? ''}:8080/`), 'reborn');
});

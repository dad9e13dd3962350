import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cgroupDriver,
  criNftTable,
  CRI_BENCH_TAINT,
  CRI_MAX_PODS,
  kubeletConfiguration,
  kubeletFailure,
  kubeletFlags,
  parseIptablesSave,
} from '../../../bench/cri-kubelet.js';
import { parseSystems, resolveSystemNames } from '../../../bench/harness.js';
import { ratios, type SystemResult } from '../../../bench/rollout.js';

const settings = { goVkTunedWorkers: 64, limitConcurrency: 64, oursLogIntervalMs: 0 };

describe('--provider cri and --vs kubelet', () => {
  test('--provider cri runs ours-cri, and the kubelet after it with --vs kubelet', () => {
    assert.deepEqual(resolveSystemNames({ provider: 'cri' }, 'ours', 100), ['ours-cri']);
    assert.deepEqual(resolveSystemNames({ provider: 'cri', vs: 'kubelet' }, 'ours', 100), [
      'ours-cri',
      'kubelet',
    ]);
    const systems = parseSystems(['ours-cri', 'kubelet'], settings);
    assert.ok(Array.isArray(systems));
    assert.deepEqual(
      systems.map((s) => s.name),
      ['ours-cri', 'kubelet'],
    );
  });

  test('bad combinations are one clear message', () => {
    assert.match(
      String(resolveSystemNames({ provider: 'cri', vs: 'kwok' }, 'ours', 1)),
      /--vs must be kubelet, not 'kwok'/,
    );
    assert.match(
      String(resolveSystemNames({ vs: 'kubelet' }, 'ours', 1)),
      /--vs needs --provider cri/,
    );
    assert.match(
      String(resolveSystemNames({ provider: 'process', vs: 'kubelet' }, 'ours', 1)),
      /--vs needs --provider cri/,
    );
    assert.match(
      String(resolveSystemNames({ provider: 'cri', systems: 'ours' }, 'ours', 1)),
      /give --vs instead of --systems/,
    );
    assert.match(
      String(resolveSystemNames({ provider: 'cri', processNetwork: 'cni' }, 'ours', 1)),
      /--process-network needs --provider process/,
    );
  });

  test('more pods than a /24 holds are refused', () => {
    assert.equal(resolveSystemNames({ provider: 'cri' }, 'ours', CRI_MAX_PODS).length, 1);
    assert.match(
      String(resolveSystemNames({ provider: 'cri', vs: 'kubelet' }, 'ours', CRI_MAX_PODS + 1)),
      /at most 250 pods at once \(a \/24 pod CIDR\): 251 asked for/,
    );
  });
});

describe('the kubelet of the benchmark', () => {
  const options = {
    runtimeEndpoint: 'unix:///tmp/rt/containerd.sock',
    clientCaFile: '/pki/ca.crt',
    tlsCertFile: '/pki/node-serving.crt',
    tlsPrivateKeyFile: '/pki/node-serving.key',
    port: 41001,
    healthzPort: 41002,
    podLogsDir: '/tmp/run/node.kubelet/pod-logs',
    cgroupDriver: 'cgroupfs' as const,
    cgroupRoot: '/bench-kubelet-1-abc123',
    maxPods: 250,
  };

  test('its configuration: loopback ports, no read-only port, the cluster CA and webhooks, the runtime, cgroup v1 allowed', () => {
    const c = kubeletConfiguration(options);
    assert.equal(c.kind, 'KubeletConfiguration');
    assert.equal(c.apiVersion, 'kubelet.config.k8s.io/v1beta1');
    assert.equal(c.address, '127.0.0.1');
    assert.equal(c.port, 41001);
    assert.equal(c.readOnlyPort, 0);
    assert.equal(c.healthzBindAddress, '127.0.0.1');
    assert.equal(c.healthzPort, 41002);
    assert.deepEqual(c.authentication, {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: '/pki/ca.crt' },
    });
    assert.deepEqual(c.authorization, { mode: 'Webhook' });
    assert.equal(c.containerRuntimeEndpoint, 'unix:///tmp/rt/containerd.sock');
    assert.equal(c.cgroupDriver, 'cgroupfs');
    assert.equal(c.cgroupRoot, '/bench-kubelet-1-abc123');
    assert.equal(c.failCgroupV1, false);
    assert.equal(c.failSwapOn, false);
    assert.equal(c.podLogsDir, '/tmp/run/node.kubelet/pod-logs');
    assert.equal(c.maxPods, 250);
    assert.equal(c.tlsCertFile, '/pki/node-serving.crt');
    assert.equal(c.tlsPrivateKeyFile, '/pki/node-serving.key');
    assert.deepEqual(c.registerWithTaints, [CRI_BENCH_TAINT]);
    // JSON is what the file holds; every value survives it.
    assert.deepEqual(JSON.parse(JSON.stringify(c)), c);
  });

  test('its flags: config, kubeconfig, its own root and certificate directories, name, address, labels', () => {
    assert.deepEqual(
      kubeletFlags({
        configFile: '/r/config.json',
        kubeconfig: '/r/kubeconfig',
        rootDir: '/r',
        nodeName: 'bench-kubelet-1-abc123',
        nodeIp: '127.0.0.1',
        labels: { 'vk-bench/system': 'kubelet', tier: 'b' },
      }),
      [
        '--config=/r/config.json',
        '--kubeconfig=/r/kubeconfig',
        '--root-dir=/r',
        '--cert-dir=/r/pki',
        '--hostname-override=bench-kubelet-1-abc123',
        '--node-ip=127.0.0.1',
        '--node-labels=vk-bench/system=kubelet,tier=b',
        '--v=2',
      ],
    );
    const bare = kubeletFlags({
      configFile: 'c',
      kubeconfig: 'k',
      rootDir: '/r',
      nodeName: 'n',
      nodeIp: '127.0.0.1',
      labels: {},
      verbosity: 4,
    });
    assert.ok(!bare.some((f) => f.startsWith('--node-labels')));
    assert.equal(bare.at(-1), '--v=4');
  });

  test('the cgroup driver follows the init system', () => {
    assert.equal(cgroupDriver(true), 'systemd');
    assert.equal(cgroupDriver(false), 'cgroupfs');
  });

  test("why it stopped: the error of its last 'command failed' line, unquoted", () => {
    const log = [
      'I1207 19:52:29.000001   4242 server.go:100] "Kubelet version" kubeletVersion="v1.37.2"',
      'E1207 19:52:29.500000   4242 remote_runtime.go:50] "Version from runtime service failed" err="transient"',
      'E1207 19:52:30.123456   4242 run.go:72] "command failed" err="failed to run Kubelet: validate service connection: validate CRI v1 runtime API for endpoint \\"unix:///rt/containerd.sock\\": rpc error: code = Unimplemented desc = unknown service runtime.v1.RuntimeService"',
      '',
    ].join('\n');
    assert.equal(
      kubeletFailure(log),
      'failed to run Kubelet: validate service connection: validate CRI v1 runtime API for endpoint "unix:///rt/containerd.sock": rpc error: code = Unimplemented desc = unknown service runtime.v1.RuntimeService',
    );
  });

  test('without such a line, the last error line; without errors, nothing', () => {
    assert.equal(
      kubeletFailure(
        'I1207 10:00:00.000000   1 a.go:1] "starting"\nE1207 10:00:01.000000   1 b.go:2] cannot open /dev/kmsg\n',
      ),
      'cannot open /dev/kmsg',
    );
    assert.equal(kubeletFailure('I1207 10:00:00.000000   1 a.go:1] "fine"\n'), undefined);
    assert.equal(kubeletFailure(''), undefined);
    const long = `E1207 10:00:00.000000   1 run.go:72] "command failed" err="${'x'.repeat(500)}"`;
    assert.equal(kubeletFailure(long)?.length, 403);
  });

  test("the cri provider's nftables table name for a node", () => {
    assert.equal(criNftTable('bench-ours-cri-1-abc123'), 'vk_cri_bench_ours_cri_1_abc123');
    assert.equal(criNftTable('x'.repeat(60)).length, 'vk_cri_'.length + 40);
  });
});

describe('rollout ratios', () => {
  const result = (seconds: number, p50: number, p99: number, rss: number): SystemResult => ({
    settings: '',
    seconds,
    latencyP50Ms: p50,
    latencyP99Ms: p99,
    peakRssBytes: rss,
    deleteSeconds: seconds,
    cpuSeconds: 1,
    runs: [],
  });

  test('ours-cri over the kubelet, beside ours over the mock peers', () => {
    const r = ratios({
      'ours-cri': result(20, 100, 400, 100),
      kubelet: result(40, 200, 400, 50),
      ours: result(1, 1, 1, 1),
      kwok: result(2, 2, 2, 2),
    });
    assert.deepEqual(Object.keys(r).sort(), ['ours-cri/kubelet', 'ours/kwok']);
    assert.deepEqual(r['ours-cri/kubelet'], {
      seconds: 0.5,
      latencyP50Ms: 0.5,
      latencyP99Ms: 1,
      deleteSeconds: 0.5,
      cpuSeconds: 1,
      peakRssBytes: 2,
    });
  });

  test('no pair without both sides', () => {
    assert.deepEqual(ratios({ 'ours-cri': result(1, 1, 1, 1) }), {});
  });
});

test('iptables-save: chains by table, and the jumps to a chain as arguments for -D', () => {
  const text = [
    '*mangle',
    ':PREROUTING ACCEPT [0:0]',
    ':KUBE-IPTABLES-HINT - [0:0]',
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':KUBE-FIREWALL - [0:0]',
    '-A INPUT -j KUBE-FIREWALL',
    '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -j DROP',
    'COMMIT',
  ].join('\n');
  const { chains, jumps } = parseIptablesSave(text);
  assert.deepEqual(
    [...chains],
    ['mangle/PREROUTING', 'mangle/KUBE-IPTABLES-HINT', 'filter/INPUT', 'filter/KUBE-FIREWALL'],
  );
  assert.deepEqual(jumps, [
    { table: 'filter', chain: 'KUBE-FIREWALL', args: ['INPUT', '-j', 'KUBE-FIREWALL'] },
  ]);
});

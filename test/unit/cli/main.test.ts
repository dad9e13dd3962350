import assert from 'node:assert/strict';
import { test } from 'node:test';
import { main } from '../../../src/cli/main.js';
import { defaultRunOptions, parseDomain, parseIpList } from '../../../src/cli/run.js';

async function capture(argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

test('version prints the package and control-plane versions', async () => {
  const r = await capture(['version']);
  assert.equal(r.code, 0);
  assert.match(
    r.out.join('\n'),
    /^virtual-kubelet \d+\.\d+\.\d+ \(Kubernetes v1\.\d+\.\d+ dev cluster\)$/,
  );
});

test('a bad port value is one line and exit code 2', async () => {
  const r = await capture(['dev-cluster', 'up', '--port', 'http']);
  assert.equal(r.code, 2);
  assert.equal(r.err.length, 1);
  assert.match(
    r.err[0] ?? '',
    /^virtual-kubelet: option '--port <port>' argument 'http' is invalid/,
  );
});

test('an unknown command is one line and exit code 2', async () => {
  const r = await capture(['dev-clutser']);
  assert.equal(r.code, 2);
  assert.equal(r.err.length, 1);
  assert.match(r.err[0] ?? '', /unknown command 'dev-clutser'/);
});

test('a bad --pod-cidr is one line and exit code 1', async () => {
  const r = await capture(['run', '--pod-cidr', '10.1.2.0/33']);
  assert.equal(r.code, 1);
  assert.deepEqual(r.err, [
    'virtual-kubelet: --pod-cidr "10.1.2.0/33" is not an IPv4 CIDR between /8 and /30 (a.b.c.d/n)',
  ]);
  const hostBits = await capture(['run', '--pod-cidr', '10.1.2.3/24']);
  assert.equal(hostBits.code, 1);
  assert.deepEqual(hostBits.err, [
    'virtual-kubelet: --pod-cidr "10.1.2.3/24" has host bits set: the network is 10.1.2.0/24',
  ]);
  const many = await capture(['run', '--pod-cidr', '10.1.2.0/24', '--nodes', '/nonexistent']);
  assert.equal(many.code, 1);
  assert.match(many.err.join('\n'), /--pod-cidr names the CIDR of one node/);
});

test('--cluster-dns takes IP addresses (repeated or comma-separated), --cluster-domain a DNS name', () => {
  assert.deepEqual(parseIpList('10.96.0.10,fd00::a', parseIpList('10.0.0.2')), [
    '10.0.0.2',
    '10.96.0.10',
    'fd00::a',
  ]);
  assert.throws(
    () => parseIpList('10.96.0.10,dns.example'),
    /expected IP addresses, got 'dns.example'/,
  );
  assert.equal(parseDomain('k8s.test.'), 'k8s.test');
  assert.throws(() => parseDomain('Bad_Domain'), /expected a DNS domain/);
  const defaults = defaultRunOptions({ out: () => undefined, err: () => undefined, exitCode: 0 });
  assert.deepEqual(defaults.clusterDns, []);
  assert.equal(defaults.clusterDomain, 'cluster.local');
});

test('a bad --cluster-dns value is one line and exit code 2', async () => {
  const r = await capture(['run', '--cluster-dns', 'nameserver']);
  assert.equal(r.code, 2);
  assert.equal(r.err.length, 1);
  assert.match(r.err[0] ?? '', /--cluster-dns.*expected IP addresses, got 'nameserver'/);
});

test('--leader-elect durations that break the election rules are one line naming the flags', async () => {
  const cases: [string[], RegExp][] = [
    [
      ['--leader-elect-lease-duration', '1500ms'],
      /--leader-elect-lease-duration must be whole seconds/,
    ],
    [
      ['--leader-elect-renew-deadline', '20s'],
      /--leader-elect-lease-duration \(15000 ms\) must be longer than --leader-elect-renew-deadline \(20000 ms\)/,
    ],
    [
      ['--leader-elect-retry-period', '9s'],
      /--leader-elect-renew-deadline \(10000 ms\) must be longer than 1\.2 times --leader-elect-retry-period/,
    ],
  ];
  for (const [flags, message] of cases) {
    const r = await capture(['run', '--leader-elect', ...flags]);
    assert.equal(r.code, 1);
    assert.equal(r.err.length, 1, r.err.join('\n'));
    assert.match(r.err[0] ?? '', /^virtual-kubelet: /);
    assert.match(r.err[0] ?? '', message);
  }
});

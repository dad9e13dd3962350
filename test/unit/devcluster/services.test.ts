import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  lockServices,
  resolveServices,
  servicesManifest,
  writeCorefile,
  writeKubeProxyConfig,
} from '../../../src/devcluster/services.js';

test('services default to the pod CIDR 10.244.0.0/16, kube-dns at 10.96.0.10 and cluster.local', () => {
  const info = resolveServices({ nodeName: 'vk-1' });
  assert.deepEqual(info, {
    nodeName: 'vk-1',
    podCidr: '10.244.0.0/16',
    serviceCidr: '10.96.0.0/16',
    dnsIp: '10.96.0.10',
    clusterDomain: 'cluster.local',
    dnsServerAddress: '10.212.0.53',
    dummyInterface: 'vk-dns0',
  });
});

test('bad services options fail once with the field named', () => {
  const cases: [Parameters<typeof resolveServices>[0], RegExp][] = [
    [{ nodeName: 'Bad Name' }, /nodeName/],
    [{ nodeName: 'n', podCidr: '10.244.0.0' }, /podCidr/],
    [{ nodeName: 'n', podCidr: '10.96.0.0/16' }, /overlaps the service CIDR/],
    [{ nodeName: 'n', dnsServerAddress: '127.0.0.53' }, /dnsServerAddress/],
    [{ nodeName: 'n', dnsServerAddress: '10.1.2.300' }, /dnsServerAddress/],
  ];
  for (const [options, message] of cases)
    assert.throws(() => resolveServices(options), { code: 'InvalidInput', message });
});

test('the kube-dns Service has no selector and an EndpointSlice at the CoreDNS address', () => {
  const text = servicesManifest(resolveServices({ nodeName: 'n', dnsServerAddress: '10.212.0.9' }));
  assert.match(text, /clusterIP: 10\.96\.0\.10/);
  assert.doesNotMatch(text, /selector/);
  assert.match(text, /endpointslice\.kubernetes\.io\/managed-by: dev-cluster\.virtual-kubelet\.io/);
  assert.match(text, /kubernetes\.io\/service-name: kube-dns/);
  assert.match(text, /addresses: \["10\.212\.0\.9"\]/);
  assert.match(text, /protocol: UDP/);
  assert.match(text, /protocol: TCP/);
});

test('CoreDNS forwards nothing and serves health and readiness on loopback only', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-services-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = await writeCorefile(resolveServices({ nodeName: 'n' }), {
    dir,
    kubeconfig: '/k',
    healthPort: 1001,
    readyPort: 1002,
  });
  const text = await readFile(path, 'utf8');
  assert.doesNotMatch(text, /forward|proxy/);
  assert.match(text, /bind 10\.212\.0\.53\n/);
  assert.match(text, /health 127\.0\.0\.1:1001\n/);
  assert.match(text, /ready 127\.0\.0\.1:1002\n/);
  assert.match(text, /kubernetes cluster\.local in-addr\.arpa ip6\.arpa/);
});

test('kube-proxy runs in nftables mode for the node, with its servers on loopback', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-services-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = await writeKubeProxyConfig(
    resolveServices({ nodeName: 'vk-9', podCidr: '10.244.7.0/24' }),
    { dir, kubeconfig: '/k', healthzPort: 2001, metricsPort: 2002 },
  );
  const text = await readFile(path, 'utf8');
  assert.match(text, /^mode: nftables$/m);
  assert.match(text, /^hostnameOverride: vk-9$/m);
  assert.match(text, /^clusterCIDR: 10\.244\.7\.0\/24$/m);
  assert.match(text, /^healthzBindAddress: 127\.0\.0\.1:2001$/m);
  assert.match(text, /^metricsBindAddress: 127\.0\.0\.1:2002$/m);
  assert.match(text, /^ {2}maxPerCore: 0$/m);
});

test('the services lock admits one holder, this process included, and takes over a dead one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-services-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'services.lock');
  const release = await lockServices(path);
  await assert.rejects(lockServices(path), {
    code: 'StartFailed',
    message: new RegExp(
      `another dev cluster with services runs on this host \\(pid ${String(process.pid)}`,
    ),
  });
  await release();
  // A lock whose holder has exited is stale.
  const dead = spawnSync('true').pid;
  await writeFile(path, String(dead));
  const again = await lockServices(path);
  assert.equal(await readFile(path, 'utf8'), String(process.pid));
  await again();
});

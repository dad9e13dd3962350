import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mountsManagedHosts, sandboxDnsConfig } from '../../../../src/providers/cri/pod-files.js';
import type { V1Pod, V1PodSpec } from '../../../../src/wire.js';

const HOST = 'nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n';
const options = {
  clusterDNS: ['10.96.0.10'],
  clusterDomain: 'cluster.local',
  hostResolvConf: HOST,
};

const pod = (spec: Partial<V1PodSpec> = {}): V1Pod => ({
  metadata: { name: 'web-0', namespace: 'shop', uid: 'u1' },
  spec: { containers: [{ name: 'main' }], ...spec },
});

test('ClusterFirst: the cluster DNS, the namespace search domains then the host ones, ndots:5', () => {
  const { dnsConfig, events } = sandboxDnsConfig(pod(), options);
  assert.deepEqual(dnsConfig, {
    servers: ['10.96.0.10'],
    searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'corp.example'],
    options: ['ndots:5'],
  });
  assert.deepEqual(events, []);
});

test("Default, and ClusterFirst on the host network, get the host's resolv.conf", () => {
  const host = { servers: ['192.0.2.53'], searches: ['corp.example'], options: ['timeout:2'] };
  assert.deepEqual(sandboxDnsConfig(pod({ dnsPolicy: 'Default' }), options).dnsConfig, host);
  assert.deepEqual(sandboxDnsConfig(pod({ hostNetwork: true }), options).dnsConfig, host);
  // ClusterFirstWithHostNet keeps the cluster DNS on the host network.
  assert.deepEqual(
    sandboxDnsConfig(pod({ hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' }), options)
      .dnsConfig.servers,
    ['10.96.0.10'],
  );
});

test('None takes only dnsConfig; other policies get dnsConfig appended, options by name', () => {
  const dnsConfig = {
    nameservers: ['192.0.2.1'],
    searches: ['extra.example'],
    options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }],
  };
  assert.deepEqual(sandboxDnsConfig(pod({ dnsPolicy: 'None', dnsConfig }), options).dnsConfig, {
    servers: ['192.0.2.1'],
    searches: ['extra.example'],
    options: ['ndots:2', 'edns0'],
  });
  assert.deepEqual(sandboxDnsConfig(pod({ dnsConfig }), options).dnsConfig, {
    servers: ['10.96.0.10', '192.0.2.1'],
    searches: [
      'shop.svc.cluster.local',
      'svc.cluster.local',
      'cluster.local',
      'corp.example',
      'extra.example',
    ],
    options: ['ndots:2', 'edns0'],
  });
});

test('ClusterFirst without cluster DNS falls back to the host, with a MissingClusterDNS Event', () => {
  const { dnsConfig, events } = sandboxDnsConfig(pod(), { ...options, clusterDNS: [] });
  assert.deepEqual(dnsConfig.servers, ['192.0.2.53']);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.reason, 'MissingClusterDNS');
  assert.match(events[0]?.message ?? '', /web-0_shop\(u1\)/);
});

test('every container mounts the managed /etc/hosts, unless it mounts its own or has no address', () => {
  assert.equal(mountsManagedHosts({ name: 'a' }, ['10.0.0.5']), true);
  assert.equal(mountsManagedHosts({ name: 'a' }, []), false);
  assert.equal(
    mountsManagedHosts({ name: 'a', volumeMounts: [{ name: 'h', mountPath: '/etc/hosts' }] }, [
      '10.0.0.5',
    ]),
    false,
  );
});

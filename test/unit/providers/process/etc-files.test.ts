/**
 * The pod's /etc/resolv.conf and /etc/hosts as its processes see them: real pods of the process
 * provider whose container prints both files.
 */
import type { V1Pod, V1PodSpec } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { ProcessProvider } from '../../../../src/providers/process/index.js';
import type { PodEvent } from '../../../../src/provider.js';
import { parseResolvConf } from '../../../../src/kubelet/dns.js';
import { processFixture } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;
const NODE_IP = '127.0.0.1';

function setup(
  t: TestContext,
  clusterDNS: readonly string[] = ['10.96.0.10'],
): { provider: ProcessProvider; events: PodEvent[] } {
  const { provider } = processFixture(t, 'etc', {
    nodeIP: NODE_IP,
    clusterDNS,
    clusterDomain: 'cluster.test',
  });
  const events: PodEvent[] = [];
  provider.notifyPodEvents((_pod, e) => events.push(e));
  assert.ok(
    provider.isolation.startsWith('namespaces'),
    `the pod's /etc files need mount namespaces: ${provider.isolation}`,
  );
  return { provider, events };
}

/** Runs a pod whose container prints both files, and returns what it printed. */
async function etcOf(provider: ProcessProvider, name: string, spec: Partial<V1PodSpec>) {
  const pod: V1Pod = {
    metadata: { namespace: 'etc-ns', name, uid: randomUUID() },
    spec: {
      terminationGracePeriodSeconds: 1,
      restartPolicy: 'Never',
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sh', '-c', 'cat /etc/resolv.conf; echo ---; cat /etc/hosts'],
        },
      ],
      ...spec,
    },
  };
  await provider.createPod(pod, signal);
  await waitFor(
    async () => (await provider.getPodStatus('etc-ns', name, signal))?.phase === 'Succeeded',
    { what: `${name} Succeeded` },
  );
  const out = await text(
    await provider.getContainerLogs(
      'etc-ns',
      name,
      'app',
      { follow: false, previous: false, timestamps: false },
      signal,
    ),
  );
  const [resolv = '', hosts = ''] = out.split('---\n');
  // The pod's own address (its network namespace's, or the node's on the host network).
  const podIP = (await provider.getPodStatus('etc-ns', name, signal))?.podIP ?? '';
  assert.ok(podIP, `${name} has a pod IP`);
  return { resolv, hosts, podIP: podIP.replaceAll('.', '\\.') };
}

const hostResolv = parseResolvConf(readFileSync('/etc/resolv.conf', 'utf8'));

test('ClusterFirst: the cluster DNS server, the cluster search domains first, ndots:5', async (t) => {
  const { provider } = setup(t);
  const { resolv, hosts, podIP } = await etcOf(provider, 'cluster-first', {});
  const search = ['etc-ns.svc.cluster.test', 'svc.cluster.test', 'cluster.test'];
  for (const s of hostResolv.searches) if (!search.includes(s)) search.push(s);
  assert.equal(
    resolv,
    `search ${search.slice(0, 32).join(' ')}\nnameserver 10.96.0.10\noptions ndots:5\n`,
  );
  assert.match(hosts, /^# Kubernetes-managed hosts file\.\n127\.0\.0\.1\tlocalhost\n/);
  assert.match(hosts, new RegExp(`\\n${podIP}\\tcluster-first\\n$`));
});

test('Default: the host resolv.conf as the kubelet rewrites it', async (t) => {
  const { provider } = setup(t);
  const { resolv } = await etcOf(provider, 'default', { dnsPolicy: 'Default' });
  assert.deepEqual(parseResolvConf(resolv), {
    ...hostResolv,
    servers: hostResolv.servers.slice(0, 3),
  });
  assert.doesNotMatch(resolv, /10\.96\.0\.10/);
});

test('None with dnsConfig: only what dnsConfig says', async (t) => {
  const { provider } = setup(t);
  const { resolv } = await etcOf(provider, 'none', {
    dnsPolicy: 'None',
    dnsConfig: {
      nameservers: ['192.0.2.53'],
      searches: ['one.example', 'two.example'],
      options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }],
    },
  });
  assert.equal(
    resolv,
    'search one.example two.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n',
  );
});

test('hostAliases and a subdomain appear in /etc/hosts', async (t) => {
  const { provider } = setup(t);
  const { hosts, podIP } = await etcOf(provider, 'aliases', {
    hostname: 'web',
    subdomain: 'front',
    hostAliases: [
      { ip: '192.0.2.10', hostnames: ['foo.local', 'bar.local'] },
      { ip: '192.0.2.11', hostnames: ['baz.local'] },
    ],
  });
  assert.match(
    hosts,
    new RegExp(
      `\\n${podIP}\\tweb\\.front\\.etc-ns\\.svc\\.cluster\\.test\\tweb\\n\\n# Entries added by HostAliases\\.\\n192\\.0\\.2\\.10\\tfoo\\.local\\tbar\\.local\\n192\\.0\\.2\\.11\\tbaz\\.local\\n$`,
    ),
  );
});

test('ClusterFirst without --cluster-dns: the host file and a MissingClusterDNS Event', async (t) => {
  const { provider, events } = setup(t, []);
  const { resolv } = await etcOf(provider, 'no-cluster-dns', {});
  assert.doesNotMatch(resolv, /ndots:5/);
  assert.deepEqual(parseResolvConf(resolv).servers, hostResolv.servers.slice(0, 3));
  const missing = events.find((e) => e.reason === 'MissingClusterDNS');
  assert.equal(missing?.type, 'Warning');
  assert.match(missing?.message ?? '', /Falling back to "Default" policy/);
});

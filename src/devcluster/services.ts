import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DevClusterError } from './errors.js';
import { tryLock } from './lock.js';

/** What a cluster with Services and DNS for the pods of one virtual node needs to know. */
export interface ServicesOptions {
  /** The virtual node whose pods use the Services: kube-proxy's `hostnameOverride`. */
  readonly nodeName: string;
  /**
   * The pods' address range (kube-proxy's `clusterCIDR`): traffic to a ClusterIP from outside
   * it is masqueraded, traffic from inside keeps its source. Default: `10.244.0.0/16`.
   */
  readonly podCidr?: string;
  /**
   * The host address CoreDNS listens on, on the dummy interface the cluster creates (not
   * loopback: the API server refuses loopback endpoints). Default: `10.212.0.53`.
   */
  readonly dnsServerAddress?: string;
}

/** Facts about a cluster's Services and DNS, for an agent that sets up pods. */
export interface ServicesInfo {
  readonly nodeName: string;
  readonly podCidr: string;
  /** The service CIDR of the apiserver. */
  readonly serviceCidr: string;
  /** The `kube-dns` Service's ClusterIP: the nameserver pods get. */
  readonly dnsIp: string;
  /** The domain of Service names: `<svc>.<ns>.svc.<clusterDomain>`. */
  readonly clusterDomain: string;
  /** Where CoreDNS itself listens (port 53, UDP and TCP), behind the `kube-dns` Service. */
  readonly dnsServerAddress: string;
  /** The dummy interface holding `dnsServerAddress`. */
  readonly dummyInterface: string;
}

export const SERVICE_CIDR = '10.96.0.0/16';
export const CLUSTER_DNS_IP = '10.96.0.10';
export const CLUSTER_DOMAIN = 'cluster.local';
export const DEFAULT_POD_CIDR = '10.244.0.0/16';
export const DEFAULT_DNS_SERVER_ADDRESS = '10.212.0.53';
/** One per host: kube-proxy's rules are host-wide too. */
export const DNS_INTERFACE = 'vk-dns0';
/** The table kube-proxy's nftables mode owns (a fixed name: one kube-proxy per host). */
export const KUBE_PROXY_NFT_TABLES = ['ip kube-proxy', 'ip6 kube-proxy'] as const;
/** The `managed-by` of the EndpointSlice the dev cluster keeps for `kube-dns`. */
export const ENDPOINTSLICE_MANAGER = 'dev-cluster.virtual-kubelet.io';
/**
 * Host-wide lock: at most one dev cluster with services per host, since two kube-proxies would
 * rewrite each other's table.
 */
export const SERVICES_LOCK = '/run/virtual-kubelet-dev-cluster-services.lock';

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function isIpv4(text: string): boolean {
  const m = IPV4.exec(text);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

/** Checks the options and fills in the defaults. Throws InvalidInput naming the bad field. */
export function resolveServices(options: ServicesOptions): ServicesInfo {
  const bad = (msg: string): DevClusterError =>
    new DevClusterError('InvalidInput', `DevCluster services: ${msg}`);
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(options.nodeName))
    throw bad(`nodeName must be a DNS subdomain, got ${JSON.stringify(options.nodeName)}`);
  const podCidr = options.podCidr ?? DEFAULT_POD_CIDR;
  const [net, bits] = podCidr.split('/');
  if (net === undefined || !isIpv4(net) || !/^\d+$/.test(bits ?? '') || Number(bits) > 32)
    throw bad(`podCidr must be an IPv4 CIDR such as 10.244.0.0/16, got ${podCidr}`);
  if (net.startsWith('10.96.'))
    throw bad(`podCidr ${podCidr} overlaps the service CIDR ${SERVICE_CIDR}`);
  const dnsServerAddress = options.dnsServerAddress ?? DEFAULT_DNS_SERVER_ADDRESS;
  if (!isIpv4(dnsServerAddress) || /^(127|0|169\.254)\./.test(dnsServerAddress))
    throw bad(
      `dnsServerAddress must be an IPv4 address that is not loopback or link-local, got ${dnsServerAddress}`,
    );
  return {
    nodeName: options.nodeName,
    podCidr,
    serviceCidr: SERVICE_CIDR,
    dnsIp: CLUSTER_DNS_IP,
    clusterDomain: CLUSTER_DOMAIN,
    dnsServerAddress,
    dummyInterface: DNS_INTERFACE,
  };
}

/**
 * Takes the host-wide services lock, or throws StartFailed naming the process that holds it. A
 * lock left by a dead process is taken over. Resolves to the release function.
 */
export async function lockServices(path = SERVICES_LOCK): Promise<() => Promise<void>> {
  const lock = await tryLock(path);
  if ('release' in lock) return lock.release;
  // This process counts too: two clusters in one process would fight just the same.
  throw new DevClusterError(
    'StartFailed',
    `another dev cluster with services runs on this host (pid ${String(lock.holder)}, lock ${path}): ` +
      'kube-proxy rules are host-wide, so only one can run at a time; stop it first (dev-cluster down)',
  );
}

/** Runs a command; rejects with its stderr. */
export function run(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * Creates the dummy interface holding CoreDNS's address (replacing a stale one): type `dummy`,
 * or an empty `bridge` where the kernel has no dummy driver.
 */
export async function createDnsInterface(info: ServicesInfo): Promise<void> {
  await run('ip', ['link', 'del', info.dummyInterface]).catch(() => undefined);
  try {
    // A kernel without the dummy driver gets an empty bridge: as good for a local address.
    await run('ip', ['link', 'add', info.dummyInterface, 'type', 'dummy']).catch(() =>
      run('ip', ['link', 'add', info.dummyInterface, 'type', 'bridge']),
    );
    await run('ip', ['addr', 'add', `${info.dnsServerAddress}/32`, 'dev', info.dummyInterface]);
    await run('ip', ['link', 'set', info.dummyInterface, 'up']);
  } catch (err) {
    await run('ip', ['link', 'del', info.dummyInterface]).catch(() => undefined);
    throw new DevClusterError(
      'StartFailed',
      `cannot create the dummy interface ${info.dummyInterface} for CoreDNS (root and iproute2 are needed): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Removes what the services leave on the host: kube-proxy's rules (`kube-proxy --cleanup`, then
 * its nft tables if any remain) and the dummy interface. Idempotent; never throws, returns what
 * could not be removed.
 */
export async function cleanUpServices(
  kubeProxy: string | undefined,
  dummyInterface: string = DNS_INTERFACE,
): Promise<string[]> {
  const problems: string[] = [];
  if (kubeProxy) {
    await run(kubeProxy, ['--cleanup']).catch((err: unknown) => {
      problems.push((err as Error).message);
    });
  }
  for (const table of KUBE_PROXY_NFT_TABLES) {
    const [family = 'ip', name = 'kube-proxy'] = table.split(' ');
    const listed = await run('nft', ['list', 'table', family, name]).then(
      () => true,
      () => false,
    );
    if (listed)
      await run('nft', ['delete', 'table', family, name]).catch((err: unknown) => {
        problems.push((err as Error).message);
      });
  }
  const link = await run('ip', ['link', 'show', dummyInterface]).then(
    () => true,
    () => false,
  );
  if (link)
    await run('ip', ['link', 'del', dummyInterface]).catch((err: unknown) => {
      problems.push((err as Error).message);
    });
  return problems;
}

export interface KubeProxyFiles {
  readonly dir: string;
  readonly kubeconfig: string;
  readonly healthzPort: number;
  readonly metricsPort: number;
}

/** Writes kube-proxy's KubeProxyConfiguration and returns its path. */
export async function writeKubeProxyConfig(
  info: ServicesInfo,
  files: KubeProxyFiles,
): Promise<string> {
  await mkdir(files.dir, { recursive: true });
  const path = join(files.dir, 'kube-proxy.yaml');
  const text = [
    'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
    'kind: KubeProxyConfiguration',
    'mode: nftables',
    `hostnameOverride: ${info.nodeName}`,
    `clusterCIDR: ${info.podCidr}`,
    'detectLocalMode: ClusterCIDR',
    'clientConnection:',
    `  kubeconfig: ${files.kubeconfig}`,
    `healthzBindAddress: 127.0.0.1:${String(files.healthzPort)}`,
    `metricsBindAddress: 127.0.0.1:${String(files.metricsPort)}`,
    // NodePorts only on CoreDNS's dummy address, not on every address of the host.
    'nodePortAddresses:',
    `- ${info.dnsServerAddress}/32`,
    // Its default (-999) would make the kernel spare it over everything else on a shared host.
    'oomScoreAdj: 0',
    // Zero leaves the host's conntrack settings as they are: the host is shared.
    'conntrack:',
    '  maxPerCore: 0',
    '  min: 0',
    '  tcpEstablishedTimeout: 0s',
    '  tcpCloseWaitTimeout: 0s',
    '  udpTimeout: 0s',
    '  udpStreamTimeout: 0s',
    '',
  ].join('\n');
  await writeFile(path, text);
  return path;
}

/** Writes CoreDNS's Corefile and returns its path. No `forward`: nothing leaves the machine. */
export async function writeCorefile(
  info: ServicesInfo,
  files: { dir: string; kubeconfig: string; healthPort: number; readyPort: number },
): Promise<string> {
  await mkdir(files.dir, { recursive: true });
  const path = join(files.dir, 'Corefile');
  const text = [
    '.:53 {',
    `    bind ${info.dnsServerAddress}`,
    '    errors',
    `    health 127.0.0.1:${String(files.healthPort)}`,
    `    ready 127.0.0.1:${String(files.readyPort)}`,
    `    kubernetes ${info.clusterDomain} in-addr.arpa ip6.arpa {`,
    `        kubeconfig ${files.kubeconfig}`,
    '        pods insecure',
    '        ttl 30',
    '    }',
    '    cache 30',
    '}',
    '',
  ].join('\n');
  await writeFile(path, text);
  return path;
}

/**
 * The objects the dev cluster keeps in the API for its services: CoreDNS's ClusterRole and
 * binding, and the `kube-dns` Service with an EndpointSlice at CoreDNS's host address (no
 * selector: CoreDNS is no pod).
 */
export function servicesManifest(info: ServicesInfo): string {
  return [
    'apiVersion: rbac.authorization.k8s.io/v1',
    'kind: ClusterRole',
    'metadata: {name: "system:coredns"}',
    'rules:',
    '- apiGroups: [""]',
    '  resources: [services, pods, namespaces]',
    '  verbs: [list, watch]',
    '- apiGroups: [discovery.k8s.io]',
    '  resources: [endpointslices]',
    '  verbs: [list, watch]',
    '---',
    'apiVersion: rbac.authorization.k8s.io/v1',
    'kind: ClusterRoleBinding',
    'metadata: {name: "system:coredns"}',
    'roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}',
    'subjects:',
    '- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}',
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    '  name: kube-dns',
    '  namespace: kube-system',
    '  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}',
    'spec:',
    `  clusterIP: ${info.dnsIp}`,
    '  ports:',
    '  - {name: dns, port: 53, protocol: UDP, targetPort: 53}',
    '  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}',
    '---',
    'apiVersion: discovery.k8s.io/v1',
    'kind: EndpointSlice',
    'metadata:',
    '  name: kube-dns-dev-cluster',
    '  namespace: kube-system',
    '  labels:',
    '    kubernetes.io/service-name: kube-dns',
    `    endpointslice.kubernetes.io/managed-by: ${ENDPOINTSLICE_MANAGER}`,
    'addressType: IPv4',
    'ports:',
    '- {name: dns, port: 53, protocol: UDP}',
    '- {name: dns-tcp, port: 53, protocol: TCP}',
    'endpoints:',
    `- addresses: ["${info.dnsServerAddress}"]`,
    '  conditions: {ready: true}',
    '',
  ].join('\n');
}

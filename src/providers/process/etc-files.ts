/**
 * The pod's /etc/resolv.conf and /etc/hosts: written into the pod's directory when the pod is
 * created (as the kubelet writes them, kubelet/dns.ts) and bind-mounted over the host's files
 * in every container's mount namespace, read-only.
 */
import type { V1Pod } from '../../wire.js';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { podHostsFile, podResolvConf, type DnsEvent } from '../../kubelet/dns.js';
import type { Mount } from './launch.js';

export interface EtcFilesOptions {
  readonly clusterDNS: readonly string[];
  readonly clusterDomain: string;
  /** The pod's IPs as the provider reports them (status.podIPs). */
  readonly podIPs: readonly string[];
  readonly nodeIPs: readonly string[];
  /** The host's resolv.conf. Default: `/etc/resolv.conf`. */
  readonly hostResolvConfPath?: string;
  /** The host's hosts file. Default: `/etc/hosts`. */
  readonly hostHostsPath?: string;
}

const RESOLV_CONF = 'resolv.conf';
const HOSTS = 'hosts';

function etcDir(podDir: string): string {
  return join(podDir, 'etc');
}

/** A host file's text; a missing one is empty (a host without DNS configured). */
function readHostFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/**
 * Writes the pod's resolv.conf and hosts into `<podDir>/etc` (mode 0644: any user of the pod
 * reads them). Returns the Events the kubelet records meanwhile (MissingClusterDNS,
 * DNSConfigForming). Idempotent.
 */
export function writeEtcFiles(pod: V1Pod, podDir: string, options: EtcFilesOptions): DnsEvent[] {
  const dir = etcDir(podDir);
  mkdirSync(dir, { recursive: true });
  const { content, events } = podResolvConf(pod, {
    clusterDNS: options.clusterDNS,
    clusterDomain: options.clusterDomain,
    hostResolvConf: readHostFile(options.hostResolvConfPath ?? '/etc/resolv.conf'),
    nodeIPs: options.nodeIPs,
  });
  writeFileSync(join(dir, RESOLV_CONF), content, { mode: 0o644 });
  const hosts = podHostsFile(pod, {
    podIPs: options.podIPs,
    clusterDomain: options.clusterDomain,
    hostHosts: readHostFile(options.hostHostsPath ?? '/etc/hosts'),
  });
  writeFileSync(join(dir, HOSTS), hosts, { mode: 0o644 });
  return [...events];
}

/**
 * The bind mounts of the files {@link writeEtcFiles} wrote (none for a pod created before they
 * existed). They come before the container's volume mounts, so a volume mounted at /etc/hosts
 * wins, as with the kubelet, which then leaves its own file out.
 */
export function etcMounts(podDir: string): Mount[] {
  const dir = etcDir(podDir);
  const out: Mount[] = [];
  for (const [name, target] of [
    [RESOLV_CONF, '/etc/resolv.conf'],
    [HOSTS, '/etc/hosts'],
  ] as const) {
    const source = join(dir, name);
    if (existsSync(source)) out.push({ source, target, readOnly: true });
  }
  return out;
}

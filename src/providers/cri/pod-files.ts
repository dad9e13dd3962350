/**
 * What the kubelet hands a CRI runtime for a pod's name resolution: the sandbox's `dns_config`
 * (the runtime writes the pod's /etc/resolv.conf from it) and whether a container gets the
 * kubelet-managed /etc/hosts. Pure: the host's files come in as text.
 */
import { podDnsConfig, type DnsEvent } from '../../kubelet/dns.js';
import type { V1Container, V1Pod } from '../../wire.js';

/** The path of the hosts file in a container. */
export const ETC_HOSTS = '/etc/hosts';

export interface SandboxDnsOptions {
  /** `--cluster-dns`. Empty: ClusterFirst falls back to Default (with a MissingClusterDNS Event). */
  readonly clusterDNS: readonly string[];
  /** `--cluster-domain`. */
  readonly clusterDomain: string;
  /** The host's resolv.conf text (the kubelet's `--resolv-conf`, /etc/resolv.conf). */
  readonly hostResolvConf: string;
}

/** A CRI `DNSConfig`. */
export interface CriDnsConfig {
  readonly servers: string[];
  readonly searches: string[];
  readonly options: string[];
}

/**
 * The sandbox's `dns_config` as the kubelet forms it (`GetPodDNS`): always set, so the runtime
 * never decides on its own. ClusterFirst: the cluster DNS servers, the search domains
 * `<ns>.svc.<domain> svc.<domain> <domain>` then the host's, `ndots:5`; Default (and
 * ClusterFirst on the host network): the host's resolv.conf; None: only `dnsConfig`, which the
 * other policies get appended. The Events are those the kubelet records meanwhile.
 */
export function sandboxDnsConfig(
  pod: V1Pod,
  options: SandboxDnsOptions,
): { readonly dnsConfig: CriDnsConfig; readonly events: readonly DnsEvent[] } {
  const { config, events } = podDnsConfig(pod, {
    clusterDNS: options.clusterDNS,
    clusterDomain: options.clusterDomain,
    hostResolvConf: options.hostResolvConf,
  });
  return {
    dnsConfig: {
      servers: [...config.servers],
      searches: [...config.searches],
      options: [...config.options],
    },
    events,
  };
}

/**
 * Whether the container gets the kubelet-managed /etc/hosts: every container of a pod with an
 * address, unless it mounts a volume at /etc/hosts itself (the kubelet's `makeMounts`).
 */
export function mountsManagedHosts(container: V1Container, podIPs: readonly string[]): boolean {
  if (podIPs.length === 0) return false;
  return !(container.volumeMounts ?? []).some((m) => m.mountPath === ETC_HOSTS);
}

/**
 * A pod's /etc/resolv.conf and /etc/hosts as the kubelet makes them (pkg/kubelet/network/dns
 * `GetPodDNS`, written out as a CRI runtime writes a sandbox's resolv.conf; pkg/kubelet
 * `ensureHostsFile`). Pure: the host's files come in as text.
 */
import type { V1HostAlias, V1Pod } from '../wire.js';
import { podHostname } from './hostname.js';

/** The kubelet's limits (API validation's): nameservers, search domains, search line length. */
export const MAX_DNS_NAMESERVERS = 3;
export const MAX_DNS_SEARCH_PATHS = 32;
export const MAX_DNS_SEARCH_LIST_CHARS = 2048;
/** A search domain longer than a DNS subdomain may be is dropped (some resolvers abort on it). */
const MAX_SEARCH_DOMAIN_CHARS = 253;
/** The host's resolv.conf is read up to this size, as the kubelet does. */
export const MAX_RESOLV_CONF_BYTES = 10 * 1024 * 1024;

/** What a kubelet resolves names with: nameservers, search domains, options (`name[:value]`). */
export interface DnsConfig {
  readonly servers: readonly string[];
  readonly searches: readonly string[];
  readonly options: readonly string[];
}

/** An Event the kubelet records about the pod while forming its DNS configuration. */
export interface DnsEvent {
  readonly type: 'Warning';
  readonly reason: 'MissingClusterDNS' | 'DNSConfigForming';
  readonly message: string;
}

export interface PodDnsOptions {
  /** `--cluster-dns`: the cluster's DNS server addresses. Empty: ClusterFirst falls back to Default. */
  readonly clusterDNS: readonly string[];
  /** `--cluster-domain`. Empty: no cluster search domains. */
  readonly clusterDomain: string;
  /**
   * The host's resolv.conf text. Undefined stands for the kubelet's `--resolv-conf=""`: the
   * host policy then means a loopback nameserver and the search domain `.`.
   */
  readonly hostResolvConf: string | undefined;
  /** The node's addresses, for that loopback nameserver (`::1` for an IPv6 one). Default: none. */
  readonly nodeIPs?: readonly string[];
}

export interface PodDns {
  readonly config: DnsConfig;
  readonly events: readonly DnsEvent[];
}

/**
 * The nameservers (every line, in order), search domains (the last `search` line, trailing dots
 * removed, `.` left out) and options (every `options` line, a later option replacing an earlier
 * one of the same name) of a resolv.conf. Lines starting with `#` are comments. Reads at most
 * {@link MAX_RESOLV_CONF_BYTES} characters.
 */
export function parseResolvConf(text: string): DnsConfig {
  const servers: string[] = [];
  let searches: string[] = [];
  let options: string[] = [];
  for (const line of text.slice(0, MAX_RESOLV_CONF_BYTES).split('\n')) {
    const trimmed = line.trim();
    if (trimmed.startsWith('#')) continue;
    const [key, ...fields] = trimmed.split(/\s+/).filter(Boolean);
    if (key === 'nameserver' && fields[0] !== undefined) servers.push(fields[0]);
    else if (key === 'search') {
      searches = fields.filter((s) => s !== '.').map((s) => (s.endsWith('.') ? s.slice(0, -1) : s));
    } else if (key === 'options') options = mergeOptionLines(options, fields);
  }
  return { servers, searches, options };
}

/**
 * The pod's DNS configuration as the kubelet forms it from `dnsPolicy`:
 * - `ClusterFirst` (the default) and `ClusterFirstWithHostNet`: the cluster DNS servers, the
 *   search domains `<ns>.svc.<domain> svc.<domain> <domain>` then the host's, `ndots:5`.
 *   `ClusterFirst` with `hostNetwork` is `Default`; either without cluster DNS configured falls
 *   back to `Default` with a MissingClusterDNS Event.
 * - `Default`: the host's resolv.conf.
 * - `None`: nothing but `dnsConfig`.
 * Then `dnsConfig` is appended (nameservers and searches without duplicates, options override
 * by name) and the result cut to the limits (a DNSConfigForming Event says so).
 */
export function podDnsConfig(pod: V1Pod, options: PodDnsOptions): PodDns {
  const events: DnsEvent[] = [];
  const host =
    options.hostResolvConf === undefined
      ? { servers: [], searches: [], options: [] }
      : parseResolvConf(options.hostResolvConf);
  const policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  let kind: 'cluster' | 'host' | 'none';
  if (policy === 'None') kind = 'none';
  else if (policy === 'Default') kind = 'host';
  else if (policy === 'ClusterFirst' && pod.spec?.hostNetwork === true) kind = 'host';
  // An unknown policy (the API server never lets one through) is taken as ClusterFirst.
  else kind = 'cluster';

  let servers: string[] = [...host.servers];
  let searches: string[] = [...host.searches];
  let opts: string[] = [...host.options];
  if (kind === 'none') {
    servers = [];
    searches = [];
    opts = [];
  } else if (kind === 'cluster' && options.clusterDNS.length > 0) {
    servers = [...options.clusterDNS];
    const d = options.clusterDomain;
    if (d !== '') {
      const ns = pod.metadata?.namespace ?? 'default';
      searches = unique([`${ns}.svc.${d}`, `svc.${d}`, d, ...searches]);
    }
    opts = ['ndots:5'];
  } else {
    if (kind === 'cluster') {
      const meta = pod.metadata;
      events.push({
        type: 'Warning',
        reason: 'MissingClusterDNS',
        message: `pod: "${meta?.name ?? ''}_${meta?.namespace ?? ''}(${meta?.uid ?? ''})". kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.`,
      });
    }
    if (options.hostResolvConf === undefined) {
      const ips = options.nodeIPs ?? [];
      servers =
        ips.length > 0 ? ips.map((ip) => (ip.includes(':') ? '::1' : '127.0.0.1')) : ['127.0.0.1'];
      searches = ['.'];
    }
  }

  const extra = pod.spec?.dnsConfig;
  if (extra) {
    servers = unique([...servers, ...(extra.nameservers ?? [])]);
    searches = unique([...searches, ...(extra.searches ?? [])]);
    opts = mergeOptions(opts, extra.options ?? []);
  }

  if (servers.length > MAX_DNS_NAMESERVERS) {
    servers = servers.slice(0, MAX_DNS_NAMESERVERS);
    events.push({
      type: 'Warning',
      reason: 'DNSConfigForming',
      message: `Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: ${servers.join(' ')}`,
    });
  }
  const fitted = fitSearches(searches);
  if (fitted.cut) {
    events.push({
      type: 'Warning',
      reason: 'DNSConfigForming',
      message: `Search Line limits were exceeded, some search paths have been omitted, the applied search line is: ${fitted.searches.join(' ')}`,
    });
  }
  return { config: { servers, searches: fitted.searches, options: opts }, events };
}

/** The search list cut as the kubelet cuts it: count, over-long domains, then line length. */
function fitSearches(input: readonly string[]): { searches: string[]; cut: boolean } {
  let cut = false;
  let searches = [...input];
  if (searches.length > MAX_DNS_SEARCH_PATHS) {
    searches = searches.slice(0, MAX_DNS_SEARCH_PATHS);
    cut = true;
  }
  const short = searches.filter((s) => s.length <= MAX_SEARCH_DOMAIN_CHARS);
  if (short.length !== searches.length) cut = true;
  searches = short;
  // Whole domains come off the end until the line (domains joined by spaces) fits.
  let length = searches.join(' ').length;
  if (length > MAX_DNS_SEARCH_LIST_CHARS) {
    while (searches.length > 0 && length > MAX_DNS_SEARCH_LIST_CHARS) {
      length -= (searches.pop() ?? '').length + 1;
    }
    cut = true;
  }
  return { searches, cut };
}

/** Options by name, later ones replacing earlier ones in place; new names at the end. */
function mergeOptions(
  base: readonly string[],
  extra: readonly { name?: string; value?: string }[],
): string[] {
  const byName = new Map<string, string>();
  for (const op of base) {
    const i = op.indexOf(':');
    if (i === -1) byName.set(op, '');
    else byName.set(op.slice(0, i), op.slice(i + 1));
  }
  for (const op of extra) byName.set(op.name ?? '', op.value ?? '');
  return [...byName].map(([name, value]) => (value === '' ? name : `${name}:${value}`));
}

/** `options` words by name (before a `:`), a later one replacing an earlier one in place. */
function mergeOptionLines(base: readonly string[], extra: readonly string[]): string[] {
  const byName = new Map<string, string>();
  for (const op of [...base, ...extra]) byName.set(op.split(':')[0] ?? op, op);
  return [...byName.values()];
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}

/**
 * resolv.conf text for `config`, as a CRI runtime writes a sandbox's: one `search` line, a
 * `nameserver` line each, one `options` line; a part that is empty has no line.
 */
export function formatResolvConf(config: DnsConfig): string {
  let out = '';
  if (config.searches.length > 0) out += `search ${config.searches.join(' ')}\n`;
  for (const s of config.servers) out += `nameserver ${s}\n`;
  if (config.options.length > 0) out += `options ${config.options.join(' ')}\n`;
  return out;
}

/** The resolv.conf the kubelet gives the pod, and the Events it records while making it. */
export function podResolvConf(
  pod: V1Pod,
  options: PodDnsOptions,
): { readonly content: string; readonly events: readonly DnsEvent[] } {
  const { config, events } = podDnsConfig(pod, options);
  return { content: formatResolvConf(config), events };
}

export interface HostsFileOptions {
  /** The pod's IPs (status.podIPs), each with the pod's hostname. */
  readonly podIPs: readonly string[];
  /** For the FQDN of a pod with `subdomain`. Default: `cluster.local`. */
  readonly clusterDomain?: string;
  /** The host's /etc/hosts text: what a `hostNetwork` pod gets. */
  readonly hostHosts: string;
}

/** The header of a hosts file the kubelet manages. */
export const MANAGED_HOSTS_HEADER = '# Kubernetes-managed hosts file.\n';
/** The header of a `hostNetwork` pod's hosts file: the host's, with the pod's host aliases. */
export const MANAGED_HOSTS_HEADER_HOST_NETWORK =
  '# Kubernetes-managed hosts file (host network).\n';

/**
 * The pod's /etc/hosts: for a `hostNetwork` pod the host's file, otherwise localhost lines and
 * each pod IP with `<hostname>.<subdomain>.<ns>.svc.<domain> <hostname>` (just the hostname
 * without `subdomain`); then the `hostAliases`, an IP per line with its names tab-separated.
 */
export function podHostsFile(pod: V1Pod, options: HostsFileOptions): string {
  const aliases = hostAliasLines(pod.spec?.hostAliases ?? []);
  if (pod.spec?.hostNetwork === true) {
    return MANAGED_HOSTS_HEADER_HOST_NETWORK + options.hostHosts + aliases;
  }
  const hostname = podHostname(pod);
  const subdomain = pod.spec?.subdomain ?? '';
  const domain =
    subdomain === ''
      ? ''
      : `${subdomain}.${pod.metadata?.namespace ?? 'default'}.svc.${options.clusterDomain ?? 'cluster.local'}`;
  let out =
    MANAGED_HOSTS_HEADER +
    '127.0.0.1\tlocalhost\n' +
    '::1\tlocalhost ip6-localhost ip6-loopback\n' +
    'fe00::0\tip6-localnet\n' +
    'fe00::0\tip6-mcastprefix\n' +
    'fe00::1\tip6-allnodes\n' +
    'fe00::2\tip6-allrouters\n';
  for (const ip of options.podIPs) {
    out += domain === '' ? `${ip}\t${hostname}\n` : `${ip}\t${hostname}.${domain}\t${hostname}\n`;
  }
  return out + aliases;
}

function hostAliasLines(aliases: readonly V1HostAlias[]): string {
  if (aliases.length === 0) return '';
  let out = '\n# Entries added by HostAliases.\n';
  for (const a of aliases) out += `${a.ip}\t${(a.hostnames ?? []).join('\t')}\n`;
  return out;
}

/**
 * The process provider's configuration: a JSON document whose every field is optional. Parsing
 * is strict (unknown fields are errors), so a typo fails at start instead of being ignored.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { errorMessage, invalidInput } from '../../errors.js';
import { parseQuantity } from '../../kubelet/quantity.js';
import { cidrsOverlap, parseCidr, type Cidr } from './network.js';

/** What an image would run: its `ENTRYPOINT` and `CMD`. */
export interface ImageEntrypoint {
  /** Replaced by the container's `command`. Default: none. */
  readonly entrypoint?: readonly string[];
  /** Replaced by the container's `args`. Default: none. */
  readonly cmd?: readonly string[];
  /** The working directory when the container sets none. Default: the state directory's pod dir. */
  readonly workingDir?: string;
}

/** The process provider's configuration. Quantities are Kubernetes quantities. */
export interface ProcessConfig {
  /**
   * Where pod state, logs and volumes live. Default: `/var/lib/virtual-kubelet/<node>` as root,
   * else `~/.local/state/virtual-kubelet/<node>`.
   */
  readonly stateDir?: string;
  /**
   * Image name (as written in the pod, or without its tag or digest) or glob pattern (`*`
   * matches anything) to what it runs. Exact names win over patterns; patterns are tried in
   * order. The defaults (`busybox`, `alpine`, `ubuntu` and `debian` run a shell, `node` runs
   * `node`) apply after these, unless an entry names them.
   */
  readonly images?: Readonly<Record<string, ImageEntrypoint>>;
  /** Node capacity. Default: this machine's cores. */
  readonly cpu?: string;
  /** Node capacity. Default: this machine's memory. */
  readonly memory?: string;
  /** Default: `"110"`. */
  readonly pods?: string;
  /** Subtracted from capacity for allocatable. Default: `"100m"` of CPU, `"256Mi"` of memory. */
  readonly reserved?: { readonly cpu?: string; readonly memory?: string };
  /** Namespaces: `auto` uses them when the kernel allows, `none` never. Default: `auto`. */
  readonly isolation?: 'auto' | 'none';
  /** Resource limits: `auto` uses cgroups when writable, `none` never. Default: `auto`. */
  readonly cgroups?: 'auto' | 'none';
  /** The cgroup under which pods get theirs. Default: `virtual-kubelet/<node>`. */
  readonly cgroupParent?: string;
  /** Size at which a container log is rotated, in bytes. Default: 10 MiB. */
  readonly maxLogBytes?: number;
  /** Rotated log files kept per container run. Default: 2. */
  readonly maxLogFiles?: number;
  /** The first restart back-off after a crash, in seconds. Default: 10 (the kubelet's). */
  readonly backoffInitialSeconds?: number;
  /** The longest restart back-off, in seconds. Default: 300 (the kubelet's). */
  readonly backoffMaxSeconds?: number;
  /** How often running processes are checked, in milliseconds. Default: 500. */
  readonly monitorIntervalMs?: number;
  /**
   * Absolute paths (a leading `~` is the agent's home, `$NAME` an environment variable; a
   * path naming an unset one is left out) that pods must not see: each container's mount
   * namespace covers them with an empty read-only tmpfs (a file with /dev/null). The state
   * directory is hidden too, always. Default: `["~/.local/state/virtual-kubelet",
   * "~/.cache/virtual-kubelet", "$VK_CACHE_DIR"]` (the dev cluster's PKI, kubeconfigs and
   * binaries).
   */
  readonly hiddenPaths?: readonly string[];
  /**
   * Pod networking: `cni` gives each pod a network namespace and an address of `podCIDR`
   * through CNI plugins, `host` shares the host's network (pod IP = node IP). Default: `cni`
   * when the agent runs as root with namespaces, the plugins and `nft`, else `host` (logged once
   * and shown in the Node's isolation annotation); an explicit `cni` that cannot work is an error.
   */
  readonly network?: 'cni' | 'host';
  /**
   * The node's pod CIDR (IPv4, /8 to /30). Default: the `--pod-cidr` flag, else a /24 of
   * 10.244.0.0/16 chosen by a digest of the node name.
   */
  readonly podCIDR?: string;
  /** The cluster's service CIDR, the only route a pod has besides its own CIDR. Default: `10.96.0.0/16`. */
  readonly serviceCIDR?: string;
  /** The CNI plugin directory. Default: the first of /usr/lib/cni, /opt/cni/bin with the plugins. */
  readonly cniBinDir?: string;
}

export const DEFAULT_IMAGES: Readonly<Record<string, ImageEntrypoint>> = {
  busybox: { cmd: ['sh'] },
  alpine: { cmd: ['/bin/sh'] },
  ubuntu: { cmd: ['/bin/bash'] },
  debian: { cmd: ['bash'] },
  node: { entrypoint: ['docker-entrypoint.sh'], cmd: ['node'] },
};

const FIELDS = new Set([
  'stateDir',
  'images',
  'cpu',
  'memory',
  'pods',
  'reserved',
  'isolation',
  'cgroups',
  'cgroupParent',
  'maxLogBytes',
  'maxLogFiles',
  'backoffInitialSeconds',
  'backoffMaxSeconds',
  'monitorIntervalMs',
  'hiddenPaths',
  'network',
  'podCIDR',
  'serviceCIDR',
  'cniBinDir',
]);

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isStrings = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string');

/** Validates `raw` as a ProcessConfig; throws `InvalidInput` naming the first bad field. */
export function parseProcessConfig(raw: unknown): ProcessConfig {
  if (!isRecord(raw)) throw invalidInput('process provider config: expected a JSON object');
  for (const key of Object.keys(raw)) {
    if (!FIELDS.has(key)) throw invalidInput(`process provider config: unknown field "${key}"`);
  }
  const bad = (field: string, what: string): never => {
    throw invalidInput(`process provider config: ${field} must be ${what}`);
  };
  for (const f of [
    'stateDir',
    'cpu',
    'memory',
    'pods',
    'cgroupParent',
    'podCIDR',
    'serviceCIDR',
    'cniBinDir',
  ] as const) {
    if (raw[f] !== undefined && typeof raw[f] !== 'string') bad(f, 'a string');
  }
  const quantity = (text: string, field: string): void => {
    let value: number;
    try {
      value = parseQuantity(text);
    } catch (err) {
      throw invalidInput(`process provider config: ${field}: ${errorMessage(err)}`, err);
    }
    if (value < 0) bad(field, 'a non-negative quantity');
  };
  for (const f of ['cpu', 'memory', 'pods'] as const) {
    const v = raw[f];
    if (typeof v === 'string') quantity(v, f);
  }
  if (raw.isolation !== undefined && raw.isolation !== 'auto' && raw.isolation !== 'none')
    bad('isolation', '"auto" or "none"');
  if (raw.cgroups !== undefined && raw.cgroups !== 'auto' && raw.cgroups !== 'none')
    bad('cgroups', '"auto" or "none"');
  if (raw.network !== undefined && raw.network !== 'cni' && raw.network !== 'host')
    bad('network', '"cni" or "host"');
  const cidrs: Cidr[] = [];
  for (const f of ['podCIDR', 'serviceCIDR'] as const) {
    const v = raw[f];
    if (typeof v === 'string') cidrs.push(parseCidr(v, `process provider config: ${f}`));
  }
  const [pods, services] = cidrs;
  if (pods && services && cidrsOverlap(pods, services))
    throw invalidInput(
      `process provider config: podCIDR ${pods.text} overlaps serviceCIDR ${services.text}`,
    );
  for (const f of [
    'maxLogBytes',
    'maxLogFiles',
    'backoffInitialSeconds',
    'backoffMaxSeconds',
    'monitorIntervalMs',
  ] as const) {
    const v = raw[f];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0))
      bad(f, 'a positive number');
  }
  if (raw.hiddenPaths !== undefined) {
    if (!isStrings(raw.hiddenPaths)) bad('hiddenPaths', 'an array of strings');
    for (const p of raw.hiddenPaths as string[]) {
      if (!p.startsWith('/') && !p.startsWith('~') && !p.startsWith('$'))
        bad('hiddenPaths', `absolute paths (not "${p}")`);
    }
  }
  if (raw.reserved !== undefined) {
    if (!isRecord(raw.reserved)) bad('reserved', 'an object');
    const r = raw.reserved as Record<string, unknown>;
    for (const key of Object.keys(r)) {
      if (key !== 'cpu' && key !== 'memory') bad(`reserved.${key}`, 'absent (unknown field)');
      const v = r[key];
      if (typeof v !== 'string') bad(`reserved.${key}`, 'a string');
      else quantity(v, `reserved.${key}`);
    }
  }
  if (raw.images !== undefined) {
    if (!isRecord(raw.images)) bad('images', 'an object');
    for (const [name, entry] of Object.entries(raw.images as Record<string, unknown>)) {
      if (!isRecord(entry)) bad(`images["${name}"]`, 'an object');
      const e = entry as Record<string, unknown>;
      for (const key of Object.keys(e)) {
        if (key === 'entrypoint' || key === 'cmd') {
          if (!isStrings(e[key])) bad(`images["${name}"].${key}`, 'an array of strings');
        } else if (key === 'workingDir') {
          if (typeof e[key] !== 'string') bad(`images["${name}"].workingDir`, 'a string');
        } else bad(`images["${name}"].${key}`, 'absent (unknown field)');
      }
    }
  }
  return raw;
}

/** The default state directory of `nodeName`. */
export function defaultStateDir(nodeName: string): string {
  if (process.getuid?.() === 0) return join('/var/lib/virtual-kubelet', nodeName);
  return join(homedir(), '.local', 'state', 'virtual-kubelet', nodeName);
}

/**
 * A network per pod through CNI plugins, invoked as the CNI specification says (1.0.0): the
 * configuration on stdin, `CNI_*` variables in the environment, the result on stdout; ADD runs
 * each plugin of the list in order with the result before it as `prevResult`, DEL runs them in
 * reverse order.
 *
 * Each virtual node has a Linux bridge (made by the `bridge` plugin, which is also each pod's
 * gateway) and a pod CIDR that `host-local` hands out from; each pod a named network namespace
 * (`/var/run/netns/vk-<pod uid>`, as `ip netns add` makes it). A pod's routes are its pod CIDR
 * (on the link) and the service CIDR via the gateway, and nothing else: no default route, no
 * masquerade. An nftables table of the node's own also drops forwarded packets from the pod CIDR
 * to anywhere outside it, so nothing a pod sends is routed off the machine even if a route
 * appears.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { invalidInput, unavailable } from '../../errors.js';
import type { Logger } from '../../log.js';

/** An IPv4 network: `base` is its first address as an unsigned 32-bit number. */
export interface Cidr {
  readonly text: string;
  readonly base: number;
  readonly prefix: number;
}

function ipv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

function ipText(n: number): string {
  return [24, 16, 8, 0].map((s) => String(Math.floor(n / 2 ** s) % 256)).join('.');
}

/**
 * Parses an IPv4 CIDR (`10.244.0.0/24`); throws `InvalidInput` naming `what` when it is not
 * one, has host bits set, or is smaller than a /30 (a gateway and one pod need room).
 */
export function parseCidr(text: string, what: string): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  const base = m?.[1] === undefined ? undefined : ipv4(m[1]);
  const prefix = Number(m?.[2]);
  if (base === undefined || !(prefix >= 8 && prefix <= 30))
    throw invalidInput(`${what} "${text}" is not an IPv4 CIDR between /8 and /30 (a.b.c.d/n)`);
  const size = 2 ** (32 - prefix);
  if (base % size !== 0)
    throw invalidInput(
      `${what} "${text}" has host bits set: the network is ${ipText(base - (base % size))}/${String(prefix)}`,
    );
  return { text, base, prefix };
}

export function cidrContains(c: Cidr, ip: string): boolean {
  const n = ipv4(ip);
  return n !== undefined && n >= c.base && n < c.base + 2 ** (32 - c.prefix);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const aEnd = a.base + 2 ** (32 - a.prefix);
  const bEnd = b.base + 2 ** (32 - b.prefix);
  return a.base < bEnd && b.base < aEnd;
}

/** The default pod CIDR of a node: a /24 of 10.244.0.0/16 chosen by a digest of its name. */
export function defaultPodCidr(nodeName: string): string {
  const byte = createHash('sha256').update(nodeName).digest()[0] ?? 0;
  return `10.244.${String(byte)}.0/24`;
}

/** The dev cluster's (and kubeadm's) service CIDR. */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/16';

/** Where the plugins are looked for when the config names no directory. */
export const CNI_BIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'] as const;

/** The netns directory of `ip netns` (iproute2). */
export const NETNS_DIR = '/var/run/netns';

/** A short tag of the node for names with a length limit (interfaces: 15 bytes). */
export function nodeTag(nodeName: string): string {
  return createHash('sha256').update(nodeName).digest('hex').slice(0, 8);
}

/** The bridge of a node: `vk` and 8 hex digits. */
export function bridgeName(nodeName: string): string {
  return `vk${nodeTag(nodeName)}`;
}

/** The nftables table (family inet) of a node. */
export function nftTableName(nodeName: string): string {
  return `vk-${nodeTag(nodeName)}`;
}

/** The network namespace name of the pod with `uid`. */
export function netnsName(uid: string): string {
  return `vk-${uid}`;
}

/** One plugin's entry of a network configuration list. */
export type PluginConf = Readonly<Record<string, unknown>> & { readonly type: string };

export interface ConfList {
  readonly cniVersion: string;
  readonly name: string;
  readonly plugins: readonly PluginConf[];
}

export interface ConfListOptions {
  readonly name: string;
  readonly bridge: string;
  readonly podCidr: string;
  readonly serviceCidr: string;
  /** host-local's directory of reserved addresses. */
  readonly ipamDataDir: string;
}

/**
 * The node's network configuration list: `bridge` (gateway on the host, no masquerade,
 * hairpin so a pod reaches itself through a Service) with `host-local` addresses and only the
 * service CIDR as an extra route; `portmap` for hostPorts; `loopback` brings `lo` up.
 */
export function confList(o: ConfListOptions): ConfList {
  return {
    cniVersion: '1.0.0',
    name: o.name,
    plugins: [
      {
        type: 'bridge',
        bridge: o.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: o.ipamDataDir,
          ranges: [[{ subnet: o.podCidr }]],
          routes: [{ dst: o.serviceCidr }],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'loopback' },
    ],
  };
}

/** A hostPort of the pod, as the portmap plugin's `portMappings` capability takes it. */
export interface PortMapping {
  readonly hostPort: number;
  readonly containerPort: number;
  readonly protocol: string;
  readonly hostIP?: string;
}

/** What one invocation of a plugin needs besides its config. */
export interface Invocation {
  readonly command: 'ADD' | 'DEL' | 'CHECK';
  readonly containerID: string;
  readonly netns: string;
  readonly ifname: string;
  readonly binDir: string;
  readonly timeoutMs: number;
}

/** A CNI error result, or a plugin that failed without one. */
export function cniError(type: string, command: string, stdout: string, detail: string): Error {
  let msg = detail;
  try {
    const parsed = JSON.parse(stdout) as { code?: number; msg?: string; details?: string };
    if (typeof parsed.msg === 'string')
      msg = `${parsed.msg}${parsed.details ? `: ${parsed.details}` : ''} (code ${String(parsed.code)})`;
  } catch {
    // Not JSON: the plugin's stderr or exit status says it.
  }
  return unavailable(`CNI plugin ${type} ${command} failed: ${msg}`);
}

/** Runs one plugin; resolves to its stdout (the result JSON for ADD). */
export function invokePlugin(conf: object, type: string, inv: Invocation): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(inv.binDir, type), [], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        // Plugins run iptables, ip and the like (portmap, bridge).
        PATH: `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        CNI_COMMAND: inv.command,
        CNI_CONTAINERID: inv.containerID,
        CNI_NETNS: inv.netns,
        CNI_IFNAME: inv.ifname,
        CNI_PATH: inv.binDir,
      },
      timeout: inv.timeoutMs,
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      if (out.length < 1 << 20) out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 4096) err += d;
    });
    child.once('error', (e) => {
      reject(unavailable(`cannot run CNI plugin ${type}: ${e.message}`, e));
    });
    child.once('close', (code, sig) => {
      if (code === 0) resolve(out);
      else
        reject(
          cniError(
            type,
            inv.command,
            out,
            err.trim() || (sig ? `killed by ${sig}` : `exit status ${String(code)}`),
          ),
        );
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(conf));
  });
}

/** The config one plugin of `list` gets: its entry with the list's name and version. */
function pluginConfig(
  list: ConfList,
  plugin: PluginConf,
  prevResult: unknown,
  portMappings: readonly PortMapping[],
): object {
  const { capabilities, ...rest } = plugin as PluginConf & { capabilities?: unknown };
  const wantsPorts =
    typeof capabilities === 'object' &&
    capabilities !== null &&
    (capabilities as Record<string, unknown>).portMappings === true;
  return {
    ...rest,
    cniVersion: list.cniVersion,
    name: list.name,
    ...(wantsPorts ? { runtimeConfig: { portMappings } } : {}),
    ...(prevResult !== undefined ? { prevResult } : {}),
  };
}

/** ADD of each plugin in order, each given the result before it; resolves to the last result. */
export async function addNetworkList(
  list: ConfList,
  inv: Omit<Invocation, 'command'>,
  portMappings: readonly PortMapping[] = [],
): Promise<unknown> {
  let prev: unknown;
  for (const plugin of list.plugins) {
    const out = await invokePlugin(pluginConfig(list, plugin, prev, portMappings), plugin.type, {
      ...inv,
      command: 'ADD',
    });
    try {
      prev = JSON.parse(out) as unknown;
    } catch {
      throw unavailable(`CNI plugin ${plugin.type} ADD printed no JSON result`);
    }
  }
  return prev;
}

/**
 * DEL of each plugin in reverse order. Plugins succeed when what they would remove is gone, so
 * this is idempotent. Every plugin runs even when one fails; the first failure is thrown then.
 */
export async function delNetworkList(
  list: ConfList,
  inv: Omit<Invocation, 'command'>,
  prevResult?: unknown,
  portMappings: readonly PortMapping[] = [],
): Promise<void> {
  let first: Error | undefined;
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await invokePlugin(pluginConfig(list, plugin, prevResult, portMappings), plugin.type, {
        ...inv,
        command: 'DEL',
      });
    } catch (err) {
      first ??= err instanceof Error ? err : new Error(String(err));
    }
  }
  if (first !== undefined) throw first;
}

/** The IPv4 addresses (without prefix) of a CNI result. */
export function resultIPs(result: unknown): string[] {
  const ips = (result as { ips?: { address?: unknown }[] } | undefined)?.ips ?? [];
  return ips
    .map((i) => (typeof i.address === 'string' ? (i.address.split('/')[0] ?? '') : ''))
    .filter((a) => a !== '');
}

/** The first plugin directory of `dirs` that has the plugins of the list. */
export function findCniBinDir(dirs: readonly string[]): string | undefined {
  return dirs.find((d) =>
    ['bridge', 'host-local', 'portmap', 'loopback'].every((p) => existsSync(join(d, p))),
  );
}

/** What is saved of a pod's network, so a restarted agent can remove it. */
export interface PodNetworkRecord {
  readonly uid: string;
  readonly netns: string;
  /** Set once ADD succeeded; absent while it runs (a crash then leaves a record to undo). */
  readonly result?: unknown;
  readonly ips: readonly string[];
  readonly portMappings: readonly PortMapping[];
}

export interface NodeNetworkOptions {
  readonly nodeName: string;
  readonly podCidr: Cidr;
  readonly serviceCidr: Cidr;
  readonly binDir: string;
  /** Where host-local's data and the pods' network records live. */
  readonly dir: string;
  readonly log: Logger;
  /** How long one plugin may run, in ms. Default: 30 000. */
  readonly pluginTimeoutMs?: number;
}

/**
 * A node's pod network. `ensurePod` and `removePod` are idempotent and serialised per pod;
 * `setUp` puts the node's nftables guard in place; `tearDown` removes the guard and the bridge
 * once no pod has a network.
 */
export class NodeNetwork {
  readonly #o: NodeNetworkOptions;
  readonly #list: ConfList;
  readonly #recordsDir: string;
  readonly #inFlight = new Map<string, Promise<unknown>>();

  constructor(options: NodeNetworkOptions) {
    this.#o = options;
    this.#recordsDir = join(options.dir, 'pods');
    this.#list = confList({
      name: `vk-${nodeTag(options.nodeName)}`,
      bridge: bridgeName(options.nodeName),
      podCidr: options.podCidr.text,
      serviceCidr: options.serviceCidr.text,
      ipamDataDir: join(options.dir, 'ipam'),
    });
  }

  get confList(): ConfList {
    return this.#list;
  }

  get bridge(): string {
    return bridgeName(this.#o.nodeName);
  }

  get nftTable(): string {
    return nftTableName(this.#o.nodeName);
  }

  /**
   * Writes the conflist (for people and tools to read; the agent uses its own copy) and the
   * nftables guard: forwarded packets from the pod CIDR to outside it are dropped. Forwarding
   * runs after DNAT, so Service traffic DNATed to a pod passes; replies of connections made to
   * a pod (established) pass too. Traffic to the host's own addresses goes through INPUT.
   */
  setUp(): void {
    mkdirSync(this.#recordsDir, { recursive: true });
    writeFileSync(join(this.#o.dir, '10-vk.conflist'), `${JSON.stringify(this.#list, null, 2)}\n`);
    const cidr = this.#o.podCidr.text;
    const table = this.nftTable;
    spawnSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
    const script = [
      `table inet ${table} {`,
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    ip saddr ${cidr} ip daddr ${cidr} accept`,
      `    ip saddr ${cidr} ct state established,related accept`,
      `    ip saddr ${cidr} drop`,
      '  }',
      '}',
    ].join('\n');
    const r = spawnSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
    if (r.status !== 0)
      throw unavailable(
        `cannot add the nftables table inet ${table}: ${r.stderr.toString().trim() || `exit ${String(r.status)}`}`,
      );
  }

  /** The network records of pods, including unfinished ones. */
  records(): PodNetworkRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.#recordsDir);
    } catch {
      return [];
    }
    const out: PodNetworkRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(readFileSync(join(this.#recordsDir, n), 'utf8')) as PodNetworkRecord);
      } catch {
        // A half-written record: its ADD never finished; the uid is the file name.
        out.push({
          uid: n.slice(0, -5),
          netns: netnsName(n.slice(0, -5)),
          ips: [],
          portMappings: [],
        });
      }
    }
    return out;
  }

  #save(r: PodNetworkRecord): void {
    const path = join(this.#recordsDir, `${r.uid}.json`);
    writeFileSync(`${path}.tmp`, JSON.stringify(r), { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  }

  #serial<T>(uid: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#inFlight.get(uid) ?? Promise.resolve();
    const next = before.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.#inFlight.set(uid, settled);
    void settled.then(() => {
      if (this.#inFlight.get(uid) === settled) this.#inFlight.delete(uid);
    });
    return next;
  }

  #inv(uid: string): Omit<Invocation, 'command'> {
    return {
      containerID: uid,
      netns: join(NETNS_DIR, netnsName(uid)),
      ifname: 'eth0',
      binDir: this.#o.binDir,
      timeoutMs: this.#o.pluginTimeoutMs ?? 30_000,
    };
  }

  /**
   * The pod's network: made once (netns, then ADD), after that the saved addresses. A record
   * whose netns is gone (the machine rebooted) is removed and made again.
   */
  ensurePod(uid: string, portMappings: readonly PortMapping[] = []): Promise<{ ips: string[] }> {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(uid)) throw invalidInput(`pod uid "${uid}" is not a UID`);
    return this.#serial(uid, async () => {
      const path = join(this.#recordsDir, `${uid}.json`);
      const nsPath = join(NETNS_DIR, netnsName(uid));
      if (existsSync(path)) {
        try {
          const r = JSON.parse(readFileSync(path, 'utf8')) as PodNetworkRecord;
          if (r.result !== undefined && existsSync(nsPath)) return { ips: [...r.ips] };
        } catch {
          // Unfinished: undone below.
        }
        await this.#remove(uid);
      }
      this.#save({ uid, netns: netnsName(uid), ips: [], portMappings });
      try {
        const ns = spawnSync('ip', ['netns', 'add', netnsName(uid)], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        if (ns.status !== 0)
          throw unavailable(
            `cannot create the network namespace ${netnsName(uid)}: ${ns.stderr.toString().trim()}`,
          );
        const result = await addNetworkList(this.#list, this.#inv(uid), portMappings);
        const ips = resultIPs(result);
        if (ips.length === 0) throw unavailable('the CNI result has no IP address');
        this.#save({ uid, netns: netnsName(uid), result, ips, portMappings });
        this.#o.log.debug({ uid, ips }, 'pod network added');
        return { ips };
      } catch (err) {
        await this.#remove(uid).catch(() => undefined);
        throw err;
      }
    });
  }

  /** CNI DEL (reverse order), then the netns and the record. Idempotent. */
  removePod(uid: string): Promise<void> {
    return this.#serial(uid, () => this.#remove(uid));
  }

  async #remove(uid: string): Promise<void> {
    const path = join(this.#recordsDir, `${uid}.json`);
    // The record is written before the netns and ADD: with neither there is nothing to undo
    // (a host-network pod, or one whose network is gone already).
    if (!existsSync(path) && !existsSync(join(NETNS_DIR, netnsName(uid)))) return;
    let r: PodNetworkRecord | undefined;
    try {
      r = JSON.parse(readFileSync(path, 'utf8')) as PodNetworkRecord;
    } catch {
      r = undefined;
    }
    await delNetworkList(this.#list, this.#inv(uid), r?.result, r?.portMappings ?? []);
    const name = netnsName(uid);
    if (existsSync(join(NETNS_DIR, name))) {
      const del = spawnSync('ip', ['netns', 'del', name], { stdio: ['ignore', 'ignore', 'pipe'] });
      if (del.status !== 0)
        throw unavailable(
          `cannot remove the network namespace ${name}: ${del.stderr.toString().trim()}`,
        );
    }
    rmSync(path, { force: true });
  }

  /** Removes the guard and the bridge when no pod has a network left; whether it did. */
  tearDown(): boolean {
    if (this.records().length > 0) return false;
    spawnSync('nft', ['delete', 'table', 'inet', this.nftTable], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' });
    return true;
  }
}

/**
 * A route of this machine (main table) to a network that overlaps `cidr` through another device
 * than `bridge`, as `ip route` prints it; undefined when there is none. Such a pod CIDR would
 * take addresses away from what the machine already reaches.
 */
export function routeConflict(cidr: Cidr, bridge: string): string | undefined {
  const r = spawnSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  for (const line of r.stdout.split('\n')) {
    const [dst] = line.split(' ');
    if (dst === undefined || dst === '' || dst === 'default') continue;
    const dev = / dev (\S+)/.exec(line)?.[1];
    if (dev === bridge) continue;
    const [addr, bits] = dst.split('/');
    const base = ipv4(addr ?? '');
    const prefix = bits === undefined ? 32 : Number(bits);
    if (base === undefined || !(prefix >= 0 && prefix <= 32)) continue;
    if (cidrsOverlap(cidr, { text: dst, base, prefix })) return line.trim();
  }
  return undefined;
}

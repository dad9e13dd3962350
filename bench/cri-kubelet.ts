// The CRI pair: our CLI with the cri provider (`ours-cri`) and the real kubelet (`kubelet`,
// `cmd/kubelet` of the control plane's release, built into the cache on first use by
// src/devcluster/build.ts), each run as a node of the bench cluster against the same containerd
// (the dev runtime the harness starts for `--provider cri`), one after the other. Each starts on
// a containerd without pods and leaves none: after it stops, every sandbox is removed. The pure
// parts (the kubelet's configuration and flags, reading why it stopped) are exported for the
// unit tests.
import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { ensureKubelet, kubeletPath } from '../src/devcluster/build.js';
import { freePorts } from '../src/devcluster/cluster.js';
import { PKI, writeNodeKubeconfig, writeNodeServingCertificate } from '../src/devcluster/pki.js';
import { spawnOwned } from '../src/devcluster/process.js';
import { KUBERNETES_VERSION } from '../src/devcluster/versions.js';
import { CriClient } from '../src/providers/cri/client.js';
import { NotBuiltError } from './peers.js';
import {
  type AgentHandle,
  type BenchContext,
  type BenchSystem,
  ensureDist,
  handle,
  logFile,
  Ours,
  type PrepareOptions,
} from './systems.js';

const run = promisify(execFile);

/** The most pods one CRI node of the benchmark holds at once: its pod CIDR is a /24. */
export const CRI_MAX_PODS = 250;

/** The taint every benchmark node of the CRI pair registers with; the bench's pods tolerate it. */
export const CRI_BENCH_TAINT = { key: 'vk-bench/node', value: 'cri', effect: 'NoSchedule' };

export interface KubeletConfigOptions {
  /** `unix:///…/containerd.sock`. */
  readonly runtimeEndpoint: string;
  /** The cluster CA: client certificates it signed authenticate at the kubelet's port. */
  readonly clientCaFile: string;
  readonly tlsCertFile: string;
  readonly tlsPrivateKeyFile: string;
  /** The kubelet API's port on 127.0.0.1. */
  readonly port: number;
  /** The healthz port on 127.0.0.1. */
  readonly healthzPort: number;
  /** Where the kubelet writes pod logs (absolute); below its root directory. */
  readonly podLogsDir: string;
  /** `cgroupfs` unless the machine runs systemd (see {@link cgroupDriver}). */
  readonly cgroupDriver: 'cgroupfs' | 'systemd';
  /** A cgroup of its own (it must exist) under which the kubelet makes `kubepods`. */
  readonly cgroupRoot: string;
  readonly maxPods: number;
}

/**
 * The KubeletConfiguration (v1beta1, as JSON, which the kubelet's YAML reader accepts) of a
 * benchmark node: the kubelet's defaults except what a second node on a shared machine needs:
 * its API and healthz on 127.0.0.1 at free ports, no read-only port, x509 (the cluster CA) and
 * webhook authentication, webhook authorization, the dev runtime's containerd, a cgroup root of
 * its own, cgroup v1 allowed (the kubelet refuses it by default), swap allowed, pod logs under
 * its root directory, `maxPods`, and the benchmark's taint.
 */
export function kubeletConfiguration(o: KubeletConfigOptions): Record<string, unknown> {
  return {
    kind: 'KubeletConfiguration',
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    address: '127.0.0.1',
    port: o.port,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: o.healthzPort,
    tlsCertFile: o.tlsCertFile,
    tlsPrivateKeyFile: o.tlsPrivateKeyFile,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: o.clientCaFile },
    },
    authorization: { mode: 'Webhook' },
    containerRuntimeEndpoint: o.runtimeEndpoint,
    cgroupDriver: o.cgroupDriver,
    cgroupRoot: o.cgroupRoot,
    failCgroupV1: false,
    failSwapOn: false,
    podLogsDir: o.podLogsDir,
    maxPods: o.maxPods,
    registerWithTaints: [CRI_BENCH_TAINT],
  };
}

export interface KubeletFlagOptions {
  readonly configFile: string;
  readonly kubeconfig: string;
  readonly rootDir: string;
  readonly nodeName: string;
  readonly nodeIp: string;
  /** Labels the node registers with. */
  readonly labels: Readonly<Record<string, string>>;
  /** klog verbosity. Default: 2. */
  readonly verbosity?: number;
}

/** The kubelet's command line: everything else is in the configuration file. */
export function kubeletFlags(o: KubeletFlagOptions): string[] {
  const labels = Object.entries(o.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return [
    `--config=${o.configFile}`,
    `--kubeconfig=${o.kubeconfig}`,
    `--root-dir=${o.rootDir}`,
    `--cert-dir=${join(o.rootDir, 'pki')}`,
    `--hostname-override=${o.nodeName}`,
    `--node-ip=${o.nodeIp}`,
    ...(labels ? [`--node-labels=${labels}`] : []),
    `--v=${String(o.verbosity ?? 2)}`,
  ];
}

/**
 * `systemd` when the machine runs systemd as its init (the kubelet and the runtime must agree on
 * the driver; the dev runtime's containerd uses cgroupfs, so this is for the report), else
 * `cgroupfs`.
 */
export function cgroupDriver(
  runsSystemd: boolean = existsSync('/run/systemd/system'),
): 'cgroupfs' | 'systemd' {
  return runsSystemd ? 'systemd' : 'cgroupfs';
}

/** The cgroup v1 hierarchies mounted under `base` (none on a cgroup v2 machine). */
export function cgroupV1Hierarchies(base = '/sys/fs/cgroup'): string[] {
  const CGROUP2_MAGIC = 0x63677270;
  try {
    if (statfsSync(base).type === CGROUP2_MAGIC) return [];
    return readdirSync(base, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(base, d.name, 'cgroup.procs')))
      .map((d) => join(base, d.name));
  } catch {
    return [];
  }
}

/**
 * The one line that says why the kubelet stopped, from its log: the last `command failed` or
 * `failed to run Kubelet` error with its cause, else the last error line (`E…`), else undefined.
 */
export function kubeletFailure(log: string): string | undefined {
  const lines = log.split('\n').filter((l) => l.trim() !== '');
  const pick = (re: RegExp): string | undefined => [...lines].reverse().find((l) => re.test(l));
  const line =
    pick(/"command failed"|failed to run Kubelet/) ?? pick(/^E\d{4} /) ?? pick(/^F\d{4} /);
  if (line === undefined) return undefined;
  const err = /err="((?:[^"\\]|\\.)*)"/.exec(line)?.[1];
  const text =
    err !== undefined ? err.replace(/\\"/g, '"') : line.replace(/^[EF]\d{4} \S+ +\d+ \S+\] /, '');
  return text.length > 400 ? `${text.slice(0, 400)}...` : text;
}

/** Stops and removes every pod sandbox (and so every container) containerd holds. */
export async function clearSandboxes(runtimeEndpoint: string): Promise<void> {
  const cri = new CriClient({ runtimeEndpoint });
  try {
    const { items } = await cri.runtime<{ items: { id: string }[] }>('ListPodSandbox', {});
    for (const sb of items) {
      await cri.runtime('StopPodSandbox', { pod_sandbox_id: sb.id }).catch(() => undefined);
      await cri.runtime('RemovePodSandbox', { pod_sandbox_id: sb.id }).catch(() => undefined);
    }
  } finally {
    cri.close();
  }
}

/** The nftables table the cri provider keeps for a node (see src/providers/cri). */
export const criNftTable = (nodeName: string): string =>
  `vk_cri_${nodeName.replace(/[^a-zA-Z0-9]/g, '_').slice(0, 40)}`;

/**
 * Our CLI with the cri provider: the dev runtime's containerd, a /24 pod CIDR of its own,
 * CRI_MAX_PODS pods, a state directory in the run's directory, a node client certificate
 * (system:node:<name>) as the kubelet has. Its pods' containers outlive it (by design), so the
 * harness deletes the pods while it runs; after it stopped, containerd's sandboxes, its
 * nftables table and its state directory are removed.
 */
export class OursCri implements BenchSystem {
  readonly name = 'ours-cri' as const;
  readonly #podCidr: () => string;

  constructor(podCidr: () => string) {
    this.#podCidr = podCidr;
  }

  #config(runtimeEndpoint: string, podCidr: string, stateDir: string): Record<string, unknown> {
    return { runtimeEndpoint, podCIDR: podCidr, stateDir, pods: String(CRI_MAX_PODS) };
  }

  settings(): string {
    const config = JSON.stringify(
      this.#config('<the dev runtime>', '<a free 10.2xx.y.0/24>', '<run dir>'),
    );
    return `bin/virtual-kubelet --provider cri, default settings (10 pod-sync workers, qps 1000, burst 2000); changed: --provider-config ${config}, a node client certificate (system:node:<name>), --authorization-mode AlwaysAllow, --node-ip 127.0.0.1, a free --listen-port, serving cert from the cluster CA`;
  }

  async prepare(say: (line: string) => void): Promise<void> {
    if (process.getuid?.() !== 0)
      throw new Error('ours-cri needs root (the containerd socket, nftables)');
    await ensureDist(say);
  }

  async start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    const runtime = ctx.runtime;
    if (!runtime) throw new Error('ours-cri needs the dev runtime (run with --provider cri)');
    const stateDir = join(ctx.dir, `${nodeName}.cri-state`);
    const kubeconfig = await writeNodeKubeconfig({
      pkiDir: ctx.info.pkiDir,
      server: ctx.info.server,
      nodeName,
      path: join(ctx.dir, `${nodeName}.kubeconfig`),
    });
    const podCidr = this.#podCidr();
    const agent = await new Ours(0, {
      provider: 'cri',
      name: this.name,
      kubeconfig,
      providerConfig: () => this.#config(runtime.runtimeEndpoint, podCidr, stateDir),
    }).start(ctx, nodeName);
    return {
      pid: agent.pid,
      logPath: agent.logPath,
      exited: () => agent.exited(),
      podsOutliveAgent: true,
      stop: async () => {
        await agent.stop();
        await clearSandboxes(runtime.runtimeEndpoint);
        await run('nft', ['delete', 'table', 'inet', criNftTable(nodeName)]).catch(() => undefined);
        await unmountBelow(stateDir);
        await rm(stateDir, { recursive: true, force: true });
      },
    };
  }
}

/** The kubelet: see the file's head. */
export class Kubelet implements BenchSystem {
  readonly name = 'kubelet' as const;
  #binary = '';
  readonly #podCidr: () => string;

  /** `podCidr` gives each node a /24 of its own. */
  constructor(podCidr: () => string) {
    this.#podCidr = podCidr;
  }

  settings(): string {
    return `kubelet ${KUBERNETES_VERSION} (cmd/kubelet of the control plane's k8s.io/kubernetes), its defaults (kubeAPIQPS 50, burst 100, serialized image pulls, cgroupsPerQOS) except: a node client certificate (system:node:<name>), the dev runtime's containerd, cgroupDriver ${cgroupDriver()}, a cgroupRoot of its own, failCgroupV1 false, failSwapOn false, x509 + webhook authentication, webhook authorization, serving cert from the cluster CA, maxPods ${String(CRI_MAX_PODS)}, a fresh --root-dir, --node-ip 127.0.0.1, spec.podCIDR a free /24 (set on the Node before it registers)`;
  }

  async prepare(say: (line: string) => void, options: PrepareOptions): Promise<void> {
    if (process.getuid?.() !== 0)
      throw new Error('kubelet needs root (mounts, cgroups, the containerd socket)');
    if (options.build)
      this.#binary = await ensureKubelet({
        progress: say,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    else {
      this.#binary = kubeletPath();
      if (!existsSync(this.#binary))
        throw new NotBuiltError(
          `kubelet ${KUBERNETES_VERSION} is not built (no ${this.#binary}); any run that is not a smoke builds it, or: dev-cluster build --kubelet`,
        );
    }
  }

  async start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    const runtime = ctx.runtime;
    if (!runtime) throw new Error('kubelet needs the dev runtime (run with --provider cri)');
    if (!this.#binary) throw new Error('prepare() first');
    const rootDir = join(ctx.dir, `${nodeName}.kubelet`);
    await mkdir(join(rootDir, 'pod-logs'), { recursive: true });
    const [port, healthzPort] = await freePorts(2);
    const serving = await writeNodeServingCertificate({ pkiDir: ctx.info.pkiDir, nodeName });
    const kubeconfig = await writeNodeKubeconfig({
      pkiDir: ctx.info.pkiDir,
      server: ctx.info.server,
      nodeName,
      path: join(rootDir, 'kubeconfig'),
    });
    const cgroupRoot = `/${nodeName}`;
    const cgroups = await makeCgroupRoot(cgroupRoot);
    // The kubelet makes iptables chains of its own (canaries, a localnet firewall): those it
    // adds go when it stops, those that were there before stay.
    const chainsBefore = await iptablesChains();
    const configFile = join(rootDir, 'config.json');
    await writeFile(
      configFile,
      JSON.stringify(
        kubeletConfiguration({
          runtimeEndpoint: runtime.runtimeEndpoint,
          clientCaFile: join(ctx.info.pkiDir, `${PKI.ca}.crt`),
          tlsCertFile: serving.certFile,
          tlsPrivateKeyFile: serving.keyFile,
          port: port ?? 0,
          healthzPort: healthzPort ?? 0,
          podLogsDir: join(rootDir, 'pod-logs'),
          cgroupDriver: cgroupDriver(),
          cgroupRoot,
          maxPods: CRI_MAX_PODS,
        }),
        null,
        2,
      ),
    );
    // The kubelet takes its pod CIDR from its Node's spec (the controller manager allocates none
    // here): the Node is made with it, and the kubelet registers over it.
    await ctx.client.create('/api/v1/nodes', {
      metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName } },
      spec: { podCIDR: this.#podCidr(), taints: [CRI_BENCH_TAINT] },
    });
    const logPath = logFile(ctx, nodeName);
    const child = spawnOwned(this.#binary, {
      args: kubeletFlags({
        configFile,
        kubeconfig,
        rootDir,
        nodeName,
        nodeIp: '127.0.0.1',
        labels: { 'vk-bench/system': 'kubelet' },
      }),
      logPath,
    });
    const base = handle(child, logPath);
    return {
      ...base,
      podsOutliveAgent: true,
      exited: () => {
        const exit = base.exited();
        if (exit === undefined) return undefined;
        let log = '';
        try {
          log = readFileSync(logPath, 'utf8');
        } catch {
          // No log: the exit alone.
        }
        const reason = kubeletFailure(log);
        return reason === undefined ? exit : `${exit}: ${reason}`;
      },
      stop: async () => {
        await base.stop();
        // Its pods' containers outlive it: the harness deleted the pods while it ran, and what
        // containerd still holds goes now; then the mounts it made (service account tokens),
        // its cgroups and its directory.
        await clearSandboxes(runtime.runtimeEndpoint);
        await unmountBelow(rootDir);
        await removeCgroups(cgroups);
        await removeNewChains(chainsBefore);
        await rm(rootDir, { recursive: true, force: true }).catch((err: unknown) => {
          ctx.say(`kubelet: cannot remove ${rootDir}: ${(err as Error).message}`);
        });
      },
    };
  }
}

/** Makes `root` in every cgroup v1 hierarchy (cpuset seeded from its parent); returns them. */
async function makeCgroupRoot(root: string): Promise<string[]> {
  const made: string[] = [];
  for (const h of cgroupV1Hierarchies()) {
    const dir = join(h, root);
    await mkdir(dir, { recursive: true });
    made.push(dir);
    if (h.endsWith('/cpuset'))
      for (const f of ['cpuset.cpus', 'cpuset.mems'])
        await writeFile(join(dir, f), await readFile(join(h, f), 'utf8'));
  }
  return made;
}

/** Removes the cgroups below and including each of `roots`, deepest first, retrying a while. */
async function removeCgroups(roots: readonly string[]): Promise<void> {
  for (const root of roots) {
    if (!existsSync(root)) continue;
    const dirs = readdirSync(root, { withFileTypes: true, recursive: true })
      .filter((d) => d.isDirectory())
      .map((d) => join(d.parentPath, d.name))
      .sort((a, b) => b.length - a.length);
    for (const d of [...dirs, root]) {
      for (let i = 0; i < 50; i++) {
        try {
          await rmdir(d);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          await delay(100);
        }
      }
    }
  }
}

/** The iptables programs of both families. */
const IPTABLES = ['iptables', 'ip6tables'] as const;

/**
 * The chains of an `iptables-save` text as `table/chain`, and the rules that jump to each, as
 * arguments for `-D` (rules with quoted words are left out: the kubelet's jumps have none).
 */
export function parseIptablesSave(text: string): {
  chains: Set<string>;
  jumps: { table: string; chain: string; args: string[] }[];
} {
  const chains = new Set<string>();
  const jumps: { table: string; chain: string; args: string[] }[] = [];
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (line.startsWith(':')) chains.add(`${table}/${line.slice(1).split(' ')[0] ?? ''}`);
    else if (line.startsWith('-A ') && !line.includes('"')) {
      const words = line.split(' ').filter(Boolean);
      const target = words[words.indexOf('-j') + 1];
      if (words.includes('-j') && target)
        jumps.push({ table, chain: target, args: words.slice(1) });
    }
  }
  return { chains, jumps };
}

/** Each family's chains as `<program>:<table>/<chain>`; none where iptables is missing. */
async function iptablesChains(): Promise<Set<string>> {
  const out = new Set<string>();
  for (const cmd of IPTABLES) {
    const text = await run(`${cmd}-save`, []).then(
      (r) => r.stdout,
      () => '',
    );
    for (const c of parseIptablesSave(text).chains) out.add(`${cmd}:${c}`);
  }
  return out;
}

/** Removes the `KUBE-` chains made since `before` (the jumps to them first), in both families. */
async function removeNewChains(before: ReadonlySet<string>): Promise<void> {
  for (const cmd of IPTABLES) {
    const text = await run(`${cmd}-save`, []).then(
      (r) => r.stdout,
      () => '',
    );
    const { chains, jumps } = parseIptablesSave(text);
    const added = [...chains].filter(
      (c) => !before.has(`${cmd}:${c}`) && (c.split('/')[1] ?? '').startsWith('KUBE-'),
    );
    for (const j of jumps) {
      if (!added.includes(`${j.table}/${j.chain}`)) continue;
      const [chain = '', ...rest] = j.args;
      await run(cmd, ['-t', j.table, '-D', chain, ...rest]).catch(() => undefined);
    }
    for (const c of added) {
      const [table = '', chain = ''] = c.split('/');
      await run(cmd, ['-t', table, '-F', chain]).catch(() => undefined);
    }
    for (const c of added) {
      const [table = '', chain = ''] = c.split('/');
      await run(cmd, ['-t', table, '-X', chain]).catch(() => undefined);
    }
  }
}

/**
 * Unmounts every mount below `dir` and `dir` itself (the kubelet bind-mounts its root directory
 * onto itself to make it a shared mount), deepest first.
 */
async function unmountBelow(dir: string): Promise<void> {
  // A path mounted over more than once needs as many unmounts.
  for (let round = 0; round < 5; round++) {
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((p) => p === dir || p.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return;
    for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
  }
}

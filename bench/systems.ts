// The node agents the benchmarks compare, each run as its own process against the bench cluster:
//   ours         our CLI (bin/virtual-kubelet, mock provider)
//   go-vk        the Go virtual-kubelet's mock provider, default settings
//   go-vk-tuned  the same with the best settings its CLI allows
//   kwok         kwok managing one fake Node that the harness creates
//   limit        bench/limit-agent.ts, the ideal agent (see there)
//   ours-process-cni   our CLI with the process provider, a pod network per pod (CNI)
//   ours-process-host  the same with `network: "host"`: what the pod network costs is the gap
//   ours-external  our CLI with the external provider: examples/providers/go-mock (Go) over the
//                  provider protocol on a unix socket; against `ours`, what the protocol costs
//   ours-cri     our CLI with the cri provider on the dev runtime's containerd (bench/cri-kubelet.ts)
//   kubelet      the real kubelet of the control plane's release on the same containerd
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ClusterInfo } from '../src/devcluster/cluster.js';
import type { RuntimeInfo } from '../src/devcluster/runtime.js';
import { freePorts } from '../src/devcluster/cluster.js';
import { spawnOwned, stopProcess } from '../src/devcluster/process.js';
import { errorCode } from '../src/errors.js';
import type { KubeClient } from '../src/kube/client.js';
import {
  bridgeName,
  CNI_BIN_DIRS,
  findCniBinDir,
  netnsName,
  nftTableName,
} from '../src/providers/process/network.js';
import type { PodRecord } from '../src/providers/process/state.js';
import { cachedPeer, ensurePeer, kwokStagesConfig, type Peer } from './peers.js';
import { randomPodCidr, reap } from '../test/helpers/process-pods.js';
import { buildGoMock } from '../test/helpers/example-providers.js';
import { Kubelet, OursCri } from './cri-kubelet.js';

export const SYSTEM_NAMES = [
  'ours',
  'go-vk',
  'go-vk-tuned',
  'kwok',
  'limit',
  'ours-process-cni',
  'ours-process-host',
  'ours-traced',
  'ours-baseline',
  'ours-external',
  'ours-cri',
  'kubelet',
] as const;
export type SystemName = (typeof SYSTEM_NAMES)[number];

export const isSystemName = (s: string): s is SystemName =>
  (SYSTEM_NAMES as readonly string[]).includes(s);

/** What every system gets from the harness. */
export interface BenchContext {
  readonly info: ClusterInfo;
  readonly client: KubeClient;
  /** Working directory of this benchmark invocation (logs, configs). */
  readonly dir: string;
  /** A serving certificate for 127.0.0.1 from the cluster's CA. */
  readonly servingCert: { readonly cert: string; readonly key: string };
  /** Pods each Node offers. */
  readonly podCapacity: number;
  readonly say: (line: string) => void;
  /** The dev runtime (containerd, the local registry), when the scenario runs CRI systems. */
  readonly runtime?: RuntimeInfo;
  /** The image of the benchmark's pods. Default: `registry.k8s.io/pause:3.10` (never pulled). */
  readonly podImage?: string;
  /** A second dev cluster, when the scenario offloads pods to another cluster. */
  readonly remote?: RemoteCluster;
}

/** A second dev cluster of the harness, and an admin client of it without a rate limit. */
export interface RemoteCluster {
  readonly info: ClusterInfo;
  readonly client: KubeClient;
}

export interface PrepareOptions {
  /** Whether a missing peer may be built (minutes). */
  readonly build: boolean;
  readonly signal?: AbortSignal;
}

/** A running agent. */
export interface AgentHandle {
  /** Its process, whose CPU and memory are measured. */
  readonly pid: number | undefined;
  readonly logPath: string;
  /** Why it is no longer running, or undefined while it runs. */
  exited(): string | undefined;
  /** Stops it (SIGTERM, SIGKILL after 10 s); resolves once it has exited. */
  stop(): Promise<void>;
  /**
   * Whether its pods outlive it (the process provider's run on when it stops): the harness then
   * deletes the pods and waits for them to be gone while it still runs.
   */
  readonly podsOutliveAgent?: boolean;
}

export interface BenchSystem {
  readonly name: SystemName;
  /** The settings it runs with, for the report. */
  settings(): string;
  /**
   * Builds (with `build`, else only finds) or checks what it needs; throws with a readable
   * message when it cannot run (`NotBuiltError` when it is not built and may not be).
   */
  prepare(say: (line: string) => void, options: PrepareOptions): Promise<void>;
  /** Starts an agent for a fresh node called `nodeName`. */
  start(ctx: BenchContext, nodeName: string): Promise<AgentHandle>;
}

export const repoRoot = fileURLToPath(new URL('../', import.meta.url));

/** An agent handle for a process started with spawnOwned. */
export function handle(child: ChildProcess, logPath: string): AgentHandle {
  let exit: string | undefined;
  child.once('exit', (code, signal) => {
    exit = signal ? `killed by ${signal}` : `exited with code ${String(code)}`;
  });
  child.once('error', (err) => {
    exit = `could not start: ${err.message}`;
  });
  return {
    pid: child.pid,
    logPath,
    exited: () => exit,
    stop: () => stopProcess(child, 10_000),
  };
}

let logCounter = 0;
/** A fresh log file for an agent, numbered in start order. */
export const logFile = (ctx: BenchContext, nodeName: string): string =>
  join(ctx.dir, `${String(++logCounter).padStart(3, '0')}-${nodeName}.log`);

/** Our CLI agent as a user runs it, plus the few settings a benchmark node needs. */
export class Ours implements BenchSystem {
  readonly name: SystemName;
  readonly #logIntervalMs: number;
  readonly #provider: string;
  readonly #mockConfig: Readonly<Record<string, unknown>>;
  readonly #providerConfig: ((dir: string) => Readonly<Record<string, unknown>>) | undefined;
  readonly #traced: boolean;
  readonly #root: string | undefined;
  readonly #kubeconfig: string | undefined;
  #sink: string | undefined;

  /**
   * `provider` (default mock); the mock gets a configuration file with the benchmark's capacity,
   * `logIntervalMs` and `mockConfig`; another provider gets `providerConfig(<a directory of its
   * own in the run's directory>)` when given, else no file.
   */
  constructor(
    logIntervalMs: number,
    options: {
      provider?: string;
      mockConfig?: Readonly<Record<string, unknown>>;
      providerConfig?: (dir: string) => Readonly<Record<string, unknown>>;
      /** The system's name in reports (default `ours`). */
      name?: SystemName;
      /** Send spans over OTLP/HTTP to a sink in this process (tracing on, every trace sampled). */
      traced?: boolean;
      /** A checkout (with dist/ built) to run instead of this one: the baseline. */
      root?: string;
      /** The agent's kubeconfig. Default: the cluster's admin kubeconfig. */
      kubeconfig?: string;
    } = {},
  ) {
    this.name = options.name ?? 'ours';
    this.#traced = options.traced ?? false;
    this.#root = options.root;
    this.#kubeconfig = options.kubeconfig;
    this.#logIntervalMs = logIntervalMs;
    this.#provider = options.provider ?? 'mock';
    this.#mockConfig = options.mockConfig ?? {};
    this.#providerConfig = options.providerConfig;
  }

  settings(): string {
    const extra = Object.entries(this.#mockConfig)
      .map(([k, v]) => `, ${k} ${JSON.stringify(v)}`)
      .join('');
    const other = this.#providerConfig?.('<run dir>');
    const config =
      this.#provider === 'mock'
        ? `changed: --provider-config {cpu 1000, memory 10000Gi, pods <capacity>, logIntervalMs ${String(this.#logIntervalMs)}${extra}}, `
        : other
          ? `changed: --provider-config ${JSON.stringify(other)}, `
          : 'changed: ';
    const variant = this.#traced
      ? ' with tracing on (OTEL_EXPORTER_OTLP_ENDPOINT at an OTLP/HTTP sink in the harness that answers 200, every trace sampled)'
      : this.#root
        ? ` of the baseline checkout ${this.#root}`
        : '';
    return (
      `bin/virtual-kubelet${variant} --provider ${this.#provider}, default settings (10 pod-sync workers, qps 1000, burst 2000); ` +
      config +
      '--authorization-mode AlwaysAllow, --node-ip 127.0.0.1, a free --listen-port, serving cert from the cluster CA'
    );
  }

  async prepare(say: (line: string) => void): Promise<void> {
    if (this.#root !== undefined) {
      if (!existsSync(join(this.#root, 'dist', 'cli', 'main.js')))
        throw new Error(
          `${this.name}: ${this.#root} has no dist/: check out the baseline commit there and run npm run build`,
        );
    } else await ensureDist(say);
    if (this.#traced && this.#sink === undefined) this.#sink = await otlpSink();
  }

  async start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    const [port] = await freePorts(1);
    const config = join(ctx.dir, `${nodeName}.${this.#provider}.json`);
    const other = this.#providerConfig?.(join(ctx.dir, `${nodeName}.${this.#provider}`));
    if (other) await writeFile(config, JSON.stringify(other));
    if (this.#provider === 'mock')
      await writeFile(
        config,
        JSON.stringify({
          cpu: '1000',
          memory: '10000Gi',
          pods: String(ctx.podCapacity),
          logIntervalMs: this.#logIntervalMs,
          ...this.#mockConfig,
        }),
      );
    const logPath = logFile(ctx, nodeName);
    const root = this.#root ?? repoRoot;
    const child = spawnOwned(process.execPath, {
      ...(this.#sink === undefined
        ? {}
        : {
            env: {
              ...process.env,
              OTEL_EXPORTER_OTLP_ENDPOINT: this.#sink,
              OTEL_TRACES_SAMPLER: 'always_on',
            },
          }),
      args: [
        join(root, 'bin', 'virtual-kubelet'),
        '--kubeconfig',
        this.#kubeconfig ?? ctx.info.adminKubeconfig,
        '--nodename',
        nodeName,
        '--provider',
        this.#provider,
        ...(this.#provider === 'mock' || other ? ['--provider-config', config] : []),
        '--node-ip',
        '127.0.0.1',
        '--listen-port',
        String(port),
        '--authorization-mode',
        'AlwaysAllow',
        '--tls-cert-file',
        ctx.servingCert.cert,
        '--tls-private-key-file',
        ctx.servingCert.key,
      ],
      logPath,
      cwd: root,
    });
    return handle(child, logPath);
  }
}

/**
 * An OTLP/HTTP receiver that reads each export and answers 200 with an empty response: what
 * the agent pays to send its spans, without a collector's own CPU on the machine. Lives as long
 * as the benchmark process.
 */
async function otlpSink(): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  const address = server.address();
  return `http://127.0.0.1:${String(typeof address === 'object' && address ? address.port : 0)}`;
}

/** The Go virtual-kubelet with its mock provider. */
class GoVirtualKubelet implements BenchSystem {
  readonly name: 'go-vk' | 'go-vk-tuned';
  readonly #workers: number | undefined;
  #peer: Peer | undefined;

  constructor(name: 'go-vk' | 'go-vk-tuned', workers?: number) {
    this.name = name;
    this.#workers = workers;
  }

  settings(): string {
    const v = this.#peer?.version ?? '';
    const base = `virtual-kubelet ${v} --provider mock (admin kubeconfig, --provider-config {cpu 1000, memory 10000Gi, pods <capacity>}, KUBELET_PORT, VKUBELET_POD_IP=127.0.0.1, serving cert from the cluster CA)`;
    return this.#workers === undefined
      ? `${base}; defaults: 10 pod-sync workers, client-go default rate limit (5 qps, burst 10)`
      : `${base}; --pod-sync-workers ${String(this.#workers)} (its CLI has no flag or variable for client QPS/burst, so client-go's 5 qps, burst 10 stay)`;
  }

  async prepare(say: (line: string) => void, options: PrepareOptions): Promise<void> {
    this.#peer = options.build
      ? await ensurePeer('go-vk', say, options.signal)
      : await cachedPeer('go-vk');
  }

  async start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    if (!this.#peer) throw new Error('prepare() first');
    const [kubeletPort, metricsPort] = await freePorts(2);
    const config = join(ctx.dir, `${nodeName}.go-mock.json`);
    const capacity = { cpu: '1000', memory: '10000Gi', pods: String(ctx.podCapacity) };
    await writeFile(config, JSON.stringify({ [nodeName]: capacity }));
    const logPath = logFile(ctx, nodeName);
    const child = spawnOwned(this.#peer.binary, {
      args: [
        '--kubeconfig',
        ctx.info.adminKubeconfig,
        '--nodename',
        nodeName,
        '--provider',
        'mock',
        '--provider-config',
        config,
        '--metrics-addr',
        `127.0.0.1:${String(metricsPort)}`,
        ...(this.#workers === undefined ? [] : ['--pod-sync-workers', String(this.#workers)]),
      ],
      env: {
        ...process.env,
        KUBELET_PORT: String(kubeletPort),
        VKUBELET_POD_IP: '127.0.0.1',
        APISERVER_CERT_LOCATION: ctx.servingCert.cert,
        APISERVER_KEY_LOCATION: ctx.servingCert.key,
      },
      logPath,
    });
    return handle(child, logPath);
  }
}

/** kwok, managing only Nodes annotated kwok.x-k8s.io/node=fake; the harness creates the Node. */
class Kwok implements BenchSystem {
  readonly name = 'kwok';
  #peer: Peer | undefined;
  #config: string | undefined;

  settings(): string {
    return `kwok ${this.#peer?.version ?? ''} with kwokctl's default stages (node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete; no delays), no client rate limit (its own default), --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --cidr=10.244.0.0/16 --node-ip=127.0.0.1 --node-lease-duration-seconds=40`;
  }

  async prepare(say: (line: string) => void, options: PrepareOptions): Promise<void> {
    this.#peer = options.build
      ? await ensurePeer('kwok', say, options.signal)
      : await cachedPeer('kwok');
    this.#config = await kwokStagesConfig(this.#peer);
  }

  async start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    if (!this.#peer || !this.#config) throw new Error('prepare() first');
    const logPath = logFile(ctx, nodeName);
    const child = spawnOwned(this.#peer.binary, {
      args: [
        `--config=${this.#config}`,
        `--kubeconfig=${ctx.info.adminKubeconfig}`,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--manage-nodes-with-label-selector=',
        '--manage-single-node=',
        '--cidr=10.244.0.0/16',
        '--node-ip=127.0.0.1',
        '--node-lease-duration-seconds=40',
      ],
      logPath,
    });
    const agent = handle(child, logPath);
    const capacity = { cpu: '1000', memory: '10000Gi', pods: String(ctx.podCapacity) };
    try {
      await ctx.client.create('/api/v1/nodes', {
        metadata: {
          name: nodeName,
          annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
          labels: {
            type: 'kwok',
            'kubernetes.io/hostname': nodeName,
            'kubernetes.io/os': 'linux',
            'kubernetes.io/role': 'agent',
          },
        },
        spec: { taints: [{ key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' }] },
        status: { capacity, allocatable: capacity },
      });
    } catch (err) {
      if (errorCode(err) !== 'AlreadyExists') {
        await agent.stop();
        throw err;
      }
    }
    return agent;
  }
}

/** The ideal agent of bench/limit-agent.ts, in its own Node.js process. */
class Limit implements BenchSystem {
  readonly name = 'limit';
  readonly #concurrency: number;

  constructor(concurrency: number) {
    this.#concurrency = concurrency;
  }

  settings(): string {
    return `bench/limit-agent.ts in its own process: watch by spec.nodeName, one status patch per pod, ${String(this.#concurrency)} requests in flight, no rate limit, no events`;
  }

  prepare(): Promise<void> {
    return Promise.resolve();
  }

  start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    const logPath = logFile(ctx, nodeName);
    const child = spawnOwned(process.execPath, {
      args: [
        '--import',
        'tsx',
        join(repoRoot, 'bench', 'limit-agent.ts'),
        '--kubeconfig',
        ctx.info.adminKubeconfig,
        '--nodename',
        nodeName,
        '--concurrency',
        String(this.#concurrency),
      ],
      logPath,
      cwd: repoRoot,
    });
    return Promise.resolve(handle(child, logPath));
  }
}

/** The process provider's pod network: one per pod through CNI, or the host's. */
export type ProcessNetwork = 'cni' | 'host';

/** The most pods a process-provider system may hold at once: a /24 pod CIDR less its gateway. */
export const PROCESS_MAX_PODS = 250;

/** What `command` prints as a check (`ip`, `nft`): whether it exits 0. */
const succeeds = (command: string, args: string[]): boolean =>
  spawnSync(command, args, { stdio: 'ignore' }).status === 0;

/**
 * What a process-provider node left on the machine after its agent stopped: the bridge, the
 * nftables table, pod network namespaces and processes of pods still on record.
 */
export function processLeftovers(stateDir: string, nodeName: string): string[] {
  const left: string[] = [];
  if (succeeds('ip', ['link', 'show', bridgeName(nodeName)]))
    left.push(`bridge ${bridgeName(nodeName)}`);
  if (succeeds('nft', ['list', 'table', 'inet', nftTableName(nodeName)]))
    left.push(`nft table inet ${nftTableName(nodeName)}`);
  const netPods = join(stateDir, 'network', 'pods');
  for (const f of existsSync(netPods) ? readdirSync(netPods) : [])
    if (f.endsWith('.json') && existsSync(join('/var/run/netns', netnsName(f.slice(0, -5)))))
      left.push(`netns ${netnsName(f.slice(0, -5))}`);
  for (const r of podRecords(stateDir))
    if (r.sandbox !== undefined && alive(r.sandbox.pid))
      left.push(`pod ${r.pod.metadata?.name ?? '?'} (sandbox pid ${String(r.sandbox.pid)})`);
  return left;
}

function podRecords(stateDir: string): PodRecord[] {
  const pods = join(stateDir, 'pods');
  const out: PodRecord[] = [];
  for (const d of existsSync(pods) ? readdirSync(pods) : []) {
    try {
      out.push(JSON.parse(readFileSync(join(pods, d, 'state.json'), 'utf8')) as PodRecord);
    } catch {
      // A pod directory without a readable record has no process to find.
    }
  }
  return out;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Our CLI with the process provider, as root: each agent gets a fresh state directory under
 * /var/tmp (pods get a private /tmp, so not there), a random free /24 pod CIDR and room for
 * PROCESS_MAX_PODS pods; `registry.k8s.io/pause*` runs `sleep`. With `cni` every pod gets its
 * own network namespace and address; with `host` pods share the host's network, as before the
 * pod network existed. Its pods outlive the agent (the provider's design), so the harness deletes
 * them while it runs; after it stopped, whatever is left (bridge, nft table, netns, processes)
 * is reported and removed, and the state directory removed.
 */
export class OursProcess implements BenchSystem {
  readonly name: 'ours-process-cni' | 'ours-process-host';
  readonly network: ProcessNetwork;

  constructor(network: ProcessNetwork) {
    this.network = network;
    this.name = network === 'cni' ? 'ours-process-cni' : 'ours-process-host';
  }

  #config(stateDir: string, podCidr: string): Record<string, unknown> {
    return {
      stateDir,
      network: this.network,
      podCIDR: podCidr,
      pods: String(PROCESS_MAX_PODS),
      images: { 'registry.k8s.io/pause*': { cmd: ['sleep', '86400'] } },
    };
  }

  settings(): string {
    const config = JSON.stringify(
      this.#config('<fresh dir under /var/tmp>', '<random free 10.2xx.y.0/24>'),
    );
    return `bin/virtual-kubelet --provider process, default settings (10 pod-sync workers, qps 1000, burst 2000); changed: --provider-config ${config}, --authorization-mode AlwaysAllow, --node-ip 127.0.0.1, a free --listen-port, serving cert from the cluster CA`;
  }

  async prepare(say: (line: string) => void): Promise<void> {
    if (process.getuid?.() !== 0)
      throw new Error(
        `${this.name} needs root (the process provider's namespaces and cgroups${this.network === 'cni' ? ', a bridge and nftables' : ''})`,
      );
    if (this.network === 'cni') {
      if (findCniBinDir(CNI_BIN_DIRS) === undefined)
        throw new Error(
          `${this.name} needs the CNI plugins (bridge, host-local, portmap, loopback) in ${CNI_BIN_DIRS.join(' or ')}`,
        );
      if (!succeeds('nft', ['--version'])) throw new Error(`${this.name} needs nft (nftables)`);
    }
    await ensureDist(say);
  }

  async start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    const stateDir = await mkdtemp('/var/tmp/vk-bench-process-');
    const podCidr = randomPodCidr();
    const ours = new Ours(0, {
      provider: 'process',
      name: this.name,
      providerConfig: () => this.#config(stateDir, podCidr),
    });
    let agent: AgentHandle;
    try {
      agent = await ours.start(ctx, nodeName);
    } catch (err) {
      await rm(stateDir, { recursive: true, force: true });
      throw err;
    }
    return {
      pid: agent.pid,
      logPath: agent.logPath,
      exited: () => agent.exited(),
      podsOutliveAgent: true,
      stop: async () => {
        await agent.stop();
        const left = processLeftovers(stateDir, nodeName);
        if (left.length > 0)
          ctx.say(`${this.name}: left behind by ${nodeName}: ${left.join(', ')}; removing them`);
        // What is left, the node's cgroups and the state directory: the tests' own clean-up.
        reap(stateDir, nodeName);
      },
    };
  }
}

/**
 * Our CLI with `--provider external` running the Go example provider, which the agent starts
 * itself. The Go mock gets the benchmark's capacity and the same log interval as `ours`. The
 * measured process is the agent; the provider is its child.
 */
export class OursExternal implements BenchSystem {
  readonly name = 'ours-external' as const;
  readonly #logIntervalMs: number;
  #binary = '';

  constructor(logIntervalMs: number) {
    this.#logIntervalMs = logIntervalMs;
  }

  #config(ctx: { podCapacity: number } | undefined): Record<string, unknown> {
    return {
      command: [this.#binary || '<cache>/example-providers/go-mock-<hash>/go-mock'],
      env: {
        VK_MOCK_CPU: '1000',
        VK_MOCK_MEMORY: '10000Gi',
        VK_MOCK_PODS: ctx ? String(ctx.podCapacity) : '<capacity>',
        VK_MOCK_LOG_INTERVAL_MS: String(this.#logIntervalMs),
      },
    };
  }

  settings(): string {
    return `bin/virtual-kubelet --provider external, default settings (10 pod-sync workers, qps 1000, burst 2000); changed: --provider-config ${JSON.stringify(this.#config(undefined))}, --authorization-mode AlwaysAllow, --node-ip 127.0.0.1, a free --listen-port, serving cert from the cluster CA`;
  }

  async prepare(say: (line: string) => void, options: PrepareOptions): Promise<void> {
    await ensureDist(say);
    this.#binary = await buildGoMock(options.signal);
  }

  start(ctx: BenchContext, nodeName: string): Promise<AgentHandle> {
    return new Ours(0, {
      provider: 'external',
      name: this.name,
      providerConfig: () => this.#config(ctx),
    }).start(ctx, nodeName);
  }
}

export interface SystemSettings {
  /** `--pod-sync-workers` of go-vk-tuned. */
  readonly goVkTunedWorkers: number;
  /** Requests in flight of the limit agent. */
  readonly limitConcurrency: number;
  /** The mock provider's `logIntervalMs` for ours (its default is 1000). */
  readonly oursLogIntervalMs: number;
  /** A checkout of an earlier commit, built, that `ours-baseline` runs. */
  readonly baselineDir?: string;
}

export function makeSystem(name: SystemName, s: SystemSettings): BenchSystem {
  switch (name) {
    case 'ours':
      return new Ours(s.oursLogIntervalMs);
    case 'go-vk':
      return new GoVirtualKubelet('go-vk');
    case 'go-vk-tuned':
      return new GoVirtualKubelet('go-vk-tuned', s.goVkTunedWorkers);
    case 'kwok':
      return new Kwok();
    case 'limit':
      return new Limit(s.limitConcurrency);
    case 'ours-process-cni':
      return new OursProcess('cni');
    case 'ours-process-host':
      return new OursProcess('host');
    case 'ours-traced':
      return new Ours(s.oursLogIntervalMs, { name: 'ours-traced', traced: true });
    case 'ours-baseline':
      return new Ours(s.oursLogIntervalMs, {
        name: 'ours-baseline',
        root: s.baselineDir ?? '(no --baseline-dir given)',
      });
    case 'ours-external':
      return new OursExternal(s.oursLogIntervalMs);
    case 'ours-cri':
      return new OursCri(randomPodCidr);
    case 'kubelet':
      return new Kubelet(randomPodCidr);
  }
}

/** Builds dist/ (what bin/virtual-kubelet runs) when missing; warns when src/ is newer. */
export async function ensureDist(say: (line: string) => void): Promise<void> {
  const main = join(repoRoot, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) {
    say('dist/ is missing: running npm run build');
    await promisify(execFile)('npm', ['run', 'build'], { cwd: repoRoot });
  }
  const built = statSync(main).mtimeMs;
  const newest = await newestMtime(join(repoRoot, 'src'));
  if (newest > built)
    say('warning: src/ is newer than dist/: `npm run build` to measure the current code');
}

/** The providers `bin/virtual-kubelet run --help` names. */
export function helpProviders(help: string): string[] {
  const m = /--provider <name>\s+provider: ([^(]*)\(default/.exec(help.replace(/\s+/g, ' '));
  return (m?.[1] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/** The help text of `bin/virtual-kubelet run`, to learn which flags and providers it has. */
export async function cliRunHelp(): Promise<string> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(repoRoot, 'bin', 'virtual-kubelet'), 'run', '--help'],
    { cwd: repoRoot },
  );
  return stdout;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) {
      const m = statSync(join(entry.parentPath, entry.name)).mtimeMs;
      if (m > newest) newest = m;
    }
  }
  return newest;
}

/** The last lines of an agent's log, for failure messages. */
export async function logTail(path: string, lines = 6): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .trimEnd()
    .split('\n')
    .slice(-lines)
    .map((l) => (l.length > 240 ? `${l.slice(0, 240)}...` : l))
    .join('\n    ');
}

// Scenario `nodes`: many virtual nodes served by one agent process (default 1 000), kept alive
// for a while (default 3 minutes after every node is Ready): what the agent costs at steady state
// (CPU as % of one core and resident memory, sampled from /proc after a warm-up), and whether
// every node stayed Ready throughout (a watch on the nodes counts every Ready -> not Ready
// transition, e.g. the node lifecycle controller marking a node whose Lease expired; any fails the
// run). For each run, each system in turn, with fresh node names.
//
//   ours   one `bin/virtual-kubelet run --nodes FILE` process (the file lists every node and its
//          kubelet port); skipped with a clear line when the build has no --nodes
//   kwok   one kwok process; the harness creates the Nodes with kwok's annotation
//   limit  bench/limit-agent.ts --nodes FILE: registers the nodes, renews every Lease each 10 s,
//          writes every Node's status each 60 s, nothing else
//
//   npm run bench -- nodes [--count 1000] [--duration 180] [--warmup 30] [--runs 1]
//                          [--systems ours,kwok,limit] [--json FILE]
import { type Server, createServer } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { spawnOwned } from '../src/devcluster/process.js';
import { errorCode } from '../src/errors.js';
import type { KubeClient, WatchEvent } from '../src/kube/client.js';
import { gitCommit, isAborted, writeJson } from './common.js';
import { controlPlane, controlPlaneLine, machine, withHarness } from './harness.js';
import { cachedPeer, ensurePeer, kwokStagesConfig, NotBuiltError, type Peer } from './peers.js';
import { cpuSeconds, peakRssBytes, rssBytes } from './proc.js';
import {
  type AgentHandle,
  type BenchContext,
  type BenchSystem,
  cliRunHelp,
  ensureDist,
  handle,
  logFile,
  logTail,
  type PrepareOptions,
  repoRoot,
} from './systems.js';
import {
  fixed,
  forEachConcurrent,
  median,
  medianOf,
  mib,
  ratio,
  ratioText,
  say,
  table,
} from './util.js';

type FleetName = 'ours' | 'kwok' | 'limit';
const FLEET_NAMES: readonly FleetName[] = ['ours', 'kwok', 'limit'];

/** An agent that serves many nodes from one process. */
interface FleetSystem {
  readonly name: FleetName;
  settings(): string;
  prepare(say: (line: string) => void, options: PrepareOptions): Promise<void>;
  /** Starts the agent for the nodes `names`; the Nodes exist or are being created when it resolves. */
  start(ctx: BenchContext, names: readonly string[], tag: string): Promise<AgentHandle>;
}

/** What the lead's `--nodes FILE` takes: one entry per node, the rest from the shared flags. */
export interface NodesFile {
  readonly nodes: readonly {
    readonly name: string;
    readonly provider?: string;
    readonly providerConfig?: string;
    readonly port?: number;
  }[];
}

/** `count` node names for one run: `<prefix>-0001`, ... */
export function fleetNames(prefix: string, count: number): string[] {
  const width = Math.max(4, String(count).length);
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i + 1).padStart(width, '0')}`);
}

async function listen(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, () => resolve(server));
  });
}

/**
 * A base port such that base .. base+count-1 can all be bound now, below Linux's ephemeral range
 * (32768+) so outgoing connections do not take them meanwhile.
 */
export async function freePortRange(count: number, low = 20_000, high = 32_000): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = low + Math.floor(Math.random() * Math.max(1, high - low - count));
    const servers: (Server | undefined)[] = [];
    for (let i = 0; i < count; i += 100)
      servers.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(100, count - i) }, (_, j) => listen(base + i + j)),
        )),
      );
    await Promise.all(
      servers
        .filter((s): s is Server => s !== undefined)
        .map((s) => new Promise<void>((r) => s.close(() => r()))),
    );
    if (servers.every(Boolean)) return base;
  }
  throw new Error(
    `no ${String(count)} consecutive free ports between ${String(low)} and ${String(high)}`,
  );
}

class OursFleet implements FleetSystem {
  readonly name = 'ours';

  settings(): string {
    return 'bin/virtual-kubelet run --nodes FILE (one entry per node: name and port from a free range), --provider mock, shared flags: admin kubeconfig, --node-ip 127.0.0.1, --authorization-mode AlwaysAllow, serving cert from the cluster CA; defaults otherwise (Lease renewed every 10 s, status every 1 m)';
  }

  async prepare(say: (line: string) => void): Promise<void> {
    await ensureDist(say);
    const help = await cliRunHelp();
    if (!/--nodes\b/.test(help)) throw new NotSupported('this build has no --nodes');
  }

  async start(ctx: BenchContext, names: readonly string[], tag: string): Promise<AgentHandle> {
    const base = await freePortRange(names.length);
    const file = join(ctx.dir, `${tag}.nodes.json`);
    const nodes: NodesFile = { nodes: names.map((name, i) => ({ name, port: base + i })) };
    await writeFile(file, JSON.stringify(nodes));
    const logPath = logFile(ctx, tag);
    const child = spawnOwned(process.execPath, {
      args: [
        join(repoRoot, 'bin', 'virtual-kubelet'),
        'run',
        '--nodes',
        file,
        '--kubeconfig',
        ctx.info.adminKubeconfig,
        '--provider',
        'mock',
        '--node-ip',
        '127.0.0.1',
        '--listen-port',
        String(base),
        '--authorization-mode',
        'AlwaysAllow',
        '--tls-cert-file',
        ctx.servingCert.cert,
        '--tls-private-key-file',
        ctx.servingCert.key,
      ],
      logPath,
      cwd: repoRoot,
    });
    return handle(child, logPath);
  }
}

class KwokFleet implements FleetSystem {
  readonly name = 'kwok';
  #peer: Peer | undefined;
  #config: string | undefined;

  settings(): string {
    return `kwok ${this.#peer?.version ?? ''} with kwokctl's default stages (node-initialize, node-heartbeat-with-lease), --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --node-lease-duration-seconds=40; the harness creates the Nodes (32 at a time)`;
  }

  async prepare(say: (line: string) => void, options: PrepareOptions): Promise<void> {
    this.#peer = options.build
      ? await ensurePeer('kwok', say, options.signal)
      : await cachedPeer('kwok');
    this.#config = await kwokStagesConfig(this.#peer);
  }

  async start(ctx: BenchContext, names: readonly string[], tag: string): Promise<AgentHandle> {
    if (!this.#peer || !this.#config) throw new Error('prepare() first');
    const logPath = logFile(ctx, tag);
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
    const capacity = { cpu: '32', memory: '256Gi', pods: '110' };
    try {
      await forEachConcurrent(names.length, 32, async (i) => {
        const name = names[i] ?? '';
        try {
          await ctx.client.create('/api/v1/nodes', {
            metadata: {
              name,
              annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
              labels: {
                type: 'kwok',
                'kubernetes.io/hostname': name,
                'kubernetes.io/os': 'linux',
                'kubernetes.io/role': 'agent',
              },
            },
            spec: {
              taints: [{ key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' }],
            },
            status: { capacity, allocatable: capacity },
          });
        } catch (err) {
          if (errorCode(err) !== 'AlreadyExists') throw err;
        }
      });
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }
}

class LimitFleet implements FleetSystem {
  readonly name = 'limit';

  settings(): string {
    return 'bench/limit-agent.ts --nodes FILE in its own process: registers every node, renews every Lease each 10 s and writes every Node status each 60 s (spread evenly), 64 requests in flight';
  }

  prepare(): Promise<void> {
    return Promise.resolve();
  }

  async start(ctx: BenchContext, names: readonly string[], tag: string): Promise<AgentHandle> {
    const file = join(ctx.dir, `${tag}.nodes.json`);
    const nodes: NodesFile = { nodes: names.map((name) => ({ name })) };
    await writeFile(file, JSON.stringify(nodes));
    const logPath = logFile(ctx, tag);
    const child = spawnOwned(process.execPath, {
      args: [
        '--import',
        'tsx',
        join(repoRoot, 'bench', 'limit-agent.ts'),
        '--kubeconfig',
        ctx.info.adminKubeconfig,
        '--nodes',
        file,
      ],
      logPath,
      cwd: repoRoot,
    });
    return handle(child, logPath);
  }
}

/** A system that cannot run this scenario with this build (not an error of the run). */
class NotSupported extends Error {
  override readonly name = 'NotSupported';
}

function makeFleet(name: FleetName): FleetSystem {
  switch (name) {
    case 'ours':
      return new OursFleet();
    case 'kwok':
      return new KwokFleet();
    case 'limit':
      return new LimitFleet();
  }
}

interface NodeLite {
  readonly metadata: { readonly name: string; readonly resourceVersion?: string };
  readonly status?: { readonly conditions?: readonly { type: string; status: string }[] };
}

/**
 * Follows the Ready condition of a set of nodes through a watch (relisting when it breaks):
 * which have been Ready, how often one went from Ready to anything else, which were deleted.
 */
export class NodeTracker {
  readonly #client: KubeClient;
  readonly #names: ReadonlySet<string>;
  readonly #ready = new Map<string, boolean>();
  readonly #everReady = new Set<string>();
  /** Ready -> not Ready transitions, by node. */
  readonly transitions = new Map<string, number>();
  /** Nodes deleted while tracked. */
  readonly deleted = new Set<string>();
  #loop: Promise<void> | undefined;
  readonly #stop = new AbortController();

  constructor(client: KubeClient, names: readonly string[]) {
    this.#client = client;
    this.#names = new Set(names);
  }

  /** Nodes that have been Ready at least once. */
  get everReady(): number {
    return this.#everReady.size;
  }

  /** Nodes Ready now. */
  get readyNow(): number {
    let n = 0;
    for (const r of this.#ready.values()) if (r) n++;
    return n;
  }

  get notReadyTransitions(): number {
    let n = 0;
    for (const c of this.transitions.values()) n += c;
    return n;
  }

  /** Applies one observed state of a node. */
  see(node: NodeLite): void {
    const name = node.metadata.name;
    if (!this.#names.has(name)) return;
    const ready =
      node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    const was = this.#ready.get(name);
    this.#ready.set(name, ready);
    if (ready) this.#everReady.add(name);
    else if (was === true) this.transitions.set(name, (this.transitions.get(name) ?? 0) + 1);
  }

  gone(name: string): void {
    if (!this.#names.has(name)) return;
    if (this.#ready.get(name) === true) this.deleted.add(name);
    this.#ready.delete(name);
  }

  async start(): Promise<void> {
    const list = await this.#client.request<{
      metadata: { resourceVersion: string };
      items: NodeLite[];
    }>('GET', '/api/v1/nodes');
    for (const node of list.items) this.see(node);
    this.#loop = this.#watch(list.metadata.resourceVersion);
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #watch(resourceVersion: string): Promise<void> {
    let rv = resourceVersion;
    const signal = this.#stop.signal;
    while (!isAborted(signal)) {
      try {
        await this.#client.watch<NodeLite>(
          '/api/v1/nodes',
          { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 3600 },
          (event: WatchEvent<NodeLite>) => {
            if (event.type === 'ERROR') throw new Error(JSON.stringify(event.object));
            if (event.object.metadata.resourceVersion) rv = event.object.metadata.resourceVersion;
            if (event.type === 'BOOKMARK') return;
            if (event.type === 'DELETED') this.gone(event.object.metadata.name);
            else this.see(event.object);
          },
          signal,
        );
      } catch (err) {
        if (isAborted(signal)) break;
        say(`node watch broke (${err instanceof Error ? err.message : String(err)}): relisting`);
        await delay(200);
        try {
          const list = await this.#client.request<{
            metadata: { resourceVersion: string };
            items: NodeLite[];
          }>('GET', '/api/v1/nodes', { signal });
          const present = new Set(list.items.map((n) => n.metadata.name));
          for (const name of this.#ready.keys()) if (!present.has(name)) this.gone(name);
          for (const node of list.items) this.see(node);
          rv = list.metadata.resourceVersion;
        } catch {
          // Watch again from the last resource version.
        }
      }
    }
  }
}

interface LeaseLite {
  readonly metadata: { readonly name: string };
  readonly spec?: { readonly renewTime?: string; readonly leaseDurationSeconds?: number };
}

/** Of `names`, the Leases missing and those older than their duration at `now`. */
export function staleLeases(
  leases: readonly LeaseLite[],
  names: readonly string[],
  now: number,
): { missing: number; stale: number; oldestAgeSeconds: number } {
  const byName = new Map(leases.map((l) => [l.metadata.name, l]));
  let missing = 0;
  let stale = 0;
  let oldest = 0;
  for (const name of names) {
    const lease = byName.get(name);
    const renewed = lease?.spec?.renewTime ? Date.parse(lease.spec.renewTime) : Number.NaN;
    if (!lease || Number.isNaN(renewed)) {
      missing++;
      continue;
    }
    const age = (now - renewed) / 1000;
    oldest = Math.max(oldest, age);
    if (age > (lease.spec?.leaseDurationSeconds ?? 40)) stale++;
  }
  return { missing, stale, oldestAgeSeconds: oldest };
}

export interface NodesRun {
  readonly run: number;
  readonly ok: boolean;
  readonly error?: string;
  /** Agent start to every node Ready. */
  readonly seconds?: number;
  /** Agent CPU (user + system) over the measured window (after the warm-up). */
  readonly cpuSeconds?: number;
  /** The same as % of one core. */
  readonly cpuPercent?: number;
  /** Median VmRSS of the samples taken in the window. */
  readonly rssBytes?: number;
  /** VmHWM at the end (registration included). */
  readonly peakRssBytes?: number;
  /** kube-apiserver CPU over the window, % of one core. */
  readonly apiserverCpuPercent?: number;
  /** Agent CPU from start to every node Ready. */
  readonly startupCpuSeconds?: number;
  readonly windowSeconds?: number;
  readonly nodesReady: number;
  readonly notReadyTransitions: number;
  readonly nodesDeleted: number;
  /** At the end of the window: Leases missing or older than their duration. */
  readonly leasesMissing?: number;
  readonly leasesStale?: number;
  readonly oldestLeaseAgeSeconds?: number;
  readonly commit?: string;
}

export interface NodesResult {
  readonly settings: string;
  readonly seconds?: number;
  readonly cpuSeconds?: number;
  readonly cpuPercent?: number;
  readonly rssBytes?: number;
  readonly peakRssBytes?: number;
  readonly apiserverCpuPercent?: number;
  readonly notReadyTransitions: number;
  readonly runs: NodesRun[];
}

export function summarizeNodes(settings: string, runs: NodesRun[]): NodesResult {
  const ok = runs.filter((r) => r.ok);
  const m = (k: keyof NodesRun): number | undefined =>
    medianOf(ok.map((r) => r[k] as number | undefined));
  return {
    settings,
    seconds: m('seconds'),
    cpuSeconds: m('cpuSeconds'),
    cpuPercent: m('cpuPercent'),
    rssBytes: m('rssBytes'),
    peakRssBytes: m('peakRssBytes'),
    apiserverCpuPercent: m('apiserverCpuPercent'),
    notReadyTransitions: runs.reduce((a, r) => a + r.notReadyTransitions, 0),
    runs,
  };
}

interface NodesSettings {
  readonly count: number;
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly readyTimeoutMs: number;
  readonly sampleMs: number;
}

async function oneRun(
  ctx: BenchContext,
  system: FleetSystem,
  run: number,
  s: NodesSettings,
  signal: AbortSignal,
): Promise<NodesRun> {
  const { client } = ctx;
  const commit = await gitCommit();
  const tag = `fleet-${system.name}-${String(run)}-${Math.random().toString(16).slice(2, 8)}`;
  const names = fleetNames(tag, s.count);
  const tracker = new NodeTracker(client, names);
  let agent: AgentHandle | undefined;
  const figures = (): Pick<NodesRun, 'nodesReady' | 'notReadyTransitions' | 'nodesDeleted'> => ({
    nodesReady: tracker.everReady,
    notReadyTransitions: tracker.notReadyTransitions,
    nodesDeleted: tracker.deleted.size,
  });
  try {
    await tracker.start();
    const t0 = performance.now();
    agent = await system.start(ctx, names, tag);
    const live = agent;
    const alive = async (): Promise<void> => {
      const exit = live.exited();
      if (exit)
        throw new Error(
          `the agent ${exit}; log ${live.logPath}:\n    ${await logTail(live.logPath)}`,
        );
    };
    const readyDeadline = t0 + s.readyTimeoutMs;
    while (tracker.everReady < s.count) {
      signal.throwIfAborted();
      await alive();
      if (performance.now() > readyDeadline)
        throw new Error(
          `only ${String(tracker.everReady)} of ${String(s.count)} nodes Ready after ${String(s.readyTimeoutMs / 1000)} s; log ${live.logPath}:\n    ${await logTail(live.logPath)}`,
        );
      await delay(250, undefined, { signal });
    }
    const tReady = performance.now();
    const startupCpu = agent.pid === undefined ? undefined : cpuSeconds(agent.pid);
    say(
      `  ${system.name}: ${String(s.count)} nodes Ready in ${fixed((tReady - t0) / 1000, 1)} s; holding ${String(s.durationSeconds)} s (warm-up ${String(s.warmupSeconds)} s)`,
    );
    const tWarm = tReady + s.warmupSeconds * 1000;
    const tEnd = tReady + s.durationSeconds * 1000;
    let cpu0: number | undefined;
    let api0: number | undefined;
    let w0 = 0;
    const rss: number[] = [];
    const apiPid = ctx.info.pids['kube-apiserver'];
    while (performance.now() < tEnd) {
      signal.throwIfAborted();
      await alive();
      if (tracker.notReadyTransitions > 0 || tracker.deleted.size > 0) break;
      const now = performance.now();
      if (now >= tWarm && cpu0 === undefined) {
        w0 = now;
        cpu0 = agent.pid === undefined ? undefined : cpuSeconds(agent.pid);
        api0 = apiPid === undefined ? undefined : cpuSeconds(apiPid);
      }
      if (cpu0 !== undefined && agent.pid !== undefined) {
        const r = rssBytes(agent.pid);
        if (r !== undefined) rss.push(r);
      }
      await delay(Math.min(s.sampleMs, Math.max(10, tEnd - performance.now())), undefined, {
        signal,
      });
    }
    const w1 = performance.now();
    const cpu1 = agent.pid === undefined ? undefined : cpuSeconds(agent.pid);
    const api1 = apiPid === undefined ? undefined : cpuSeconds(apiPid);
    const leases = await client
      .request<{ items: LeaseLite[] }>(
        'GET',
        '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
      )
      .then((l) => staleLeases(l.items, names, Date.now()))
      .catch(() => undefined);
    const window = (w1 - w0) / 1000;
    const cpuWindow = cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0;
    const apiWindow = api0 === undefined || api1 === undefined ? undefined : api1 - api0;
    const f = figures();
    const problems: string[] = [];
    if (f.notReadyTransitions > 0)
      problems.push(
        `${String(f.notReadyTransitions)} Ready -> not Ready transition(s) (${[...tracker.transitions.keys()].slice(0, 5).join(', ')}...)`,
      );
    if (f.nodesDeleted > 0) problems.push(`${String(f.nodesDeleted)} node(s) deleted`);
    if (leases && leases.missing + leases.stale > 0)
      problems.push(
        `${String(leases.missing)} Lease(s) missing, ${String(leases.stale)} expired (oldest ${fixed(leases.oldestAgeSeconds, 0)} s)`,
      );
    const base: NodesRun = {
      run,
      ok: problems.length === 0,
      ...(problems.length > 0 ? { error: problems.join('; ') } : {}),
      seconds: (tReady - t0) / 1000,
      cpuSeconds: cpuWindow,
      cpuPercent: cpuWindow === undefined || window <= 0 ? undefined : (cpuWindow / window) * 100,
      rssBytes: rss.length > 0 ? median(rss) : undefined,
      peakRssBytes: agent.pid === undefined ? undefined : peakRssBytes(agent.pid),
      apiserverCpuPercent:
        apiWindow === undefined || window <= 0 ? undefined : (apiWindow / window) * 100,
      startupCpuSeconds: startupCpu,
      windowSeconds: window,
      ...f,
      leasesMissing: leases?.missing,
      leasesStale: leases?.stale,
      oldestLeaseAgeSeconds: leases?.oldestAgeSeconds,
      commit,
    };
    return base;
  } catch (err) {
    if (signal.aborted) throw err;
    return {
      run,
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      ...figures(),
      commit,
    };
  } finally {
    await tracker.stop();
    await agent?.stop();
    // The Nodes and Leases go, 32 deletes at a time (kwok's nodes were made by the harness,
    // ours by the agent; neither deletes them on exit).
    await forEachConcurrent(names.length, 32, async (i) => {
      const name = names[i] ?? '';
      await client.delete(`/api/v1/nodes/${name}`).catch(() => undefined);
      await client
        .delete(`/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`)
        .catch(() => undefined);
    });
  }
}

export function nodesReport(
  count: number,
  s: { durationSeconds: number; warmupSeconds: number },
  runsRequested: number,
  results: Partial<Record<FleetName, NodesResult>>,
  skipped: readonly string[],
): string {
  const rows: string[][] = [
    [
      'system',
      'ok',
      'all Ready s',
      'CPU %',
      'RSS',
      'peak RSS',
      'apiserver CPU %',
      'NotReady transitions',
    ],
  ];
  for (const [name, r] of Object.entries(results))
    rows.push([
      name,
      `${String(r.runs.filter((x) => x.ok).length)}/${String(r.runs.length)}`,
      fixed(r.seconds, 1),
      fixed(r.cpuPercent, 1),
      mib(r.rssBytes),
      mib(r.peakRssBytes),
      fixed(r.apiserverCpuPercent, 1),
      String(r.notReadyTransitions),
    ]);
  const out = [
    `scenario nodes, ${String(count)} nodes in one agent process, held ${String(s.durationSeconds)} s after all Ready; CPU (% of one core) and RSS (median of samples) after a ${String(s.warmupSeconds)} s warm-up; ${String(runsRequested)} run(s) per system, medians`,
    controlPlaneLine(),
    '',
    table(rows),
    '',
  ];
  const ours = results.ours;
  const ratioRows: string[][] = [['ratio', 'CPU %', 'RSS', 'peak RSS']];
  if (ours)
    for (const peer of ['kwok', 'limit'] as const) {
      const p = results[peer];
      if (!p) continue;
      ratioRows.push([
        `ours/${peer}`,
        ratioText(ratio(ours.cpuPercent, p.cpuPercent)),
        ratioText(ratio(ours.rssBytes, p.rssBytes)),
        ratioText(ratio(ours.peakRssBytes, p.peakRssBytes)),
      ]);
    }
  if (ratioRows.length > 1) out.push(table(ratioRows), '');
  out.push('settings:');
  for (const [name, r] of Object.entries(results)) out.push(`  ${name}: ${r.settings}`);
  for (const line of skipped) out.push(line);
  for (const [name, r] of Object.entries(results))
    for (const run of r.runs)
      if (!run.ok) out.push(`FAILED ${name} run ${String(run.run)}: ${run.error ?? ''}`);
  return `${out.join('\n')}\n`;
}

export async function nodes(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      count: { type: 'string', default: '1000' },
      duration: { type: 'string', default: '180' },
      warmup: { type: 'string' },
      runs: { type: 'string', default: '1' },
      systems: { type: 'string', default: 'ours,kwok,limit' },
      json: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      'ready-timeout': { type: 'string' },
      'sample-interval': { type: 'string', default: '5' },
    },
  });
  const count = Number(values.count);
  const durationSeconds = Number(values.duration);
  const warmupSeconds = Number(values.warmup ?? Math.min(30, durationSeconds / 3));
  const runs = Number(values.runs);
  if (
    !(count >= 1) ||
    !(durationSeconds > 0) ||
    !(runs >= 1) ||
    !(warmupSeconds >= 0 && warmupSeconds < durationSeconds)
  ) {
    say('--count, --duration and --runs must be positive, --warmup below --duration');
    return 2;
  }
  const names = values.systems.split(',').filter(Boolean);
  const unknown = names.filter((n) => !(FLEET_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0 || names.length === 0) {
    say(`unknown system(s) ${unknown.join(', ')}: choose from ${FLEET_NAMES.join(', ')}`);
    return 2;
  }
  const settings: NodesSettings = {
    count,
    durationSeconds,
    warmupSeconds,
    readyTimeoutMs: Number(values['ready-timeout'] ?? Math.max(180, count / 5)) * 1000,
    sampleMs: Number(values['sample-interval']) * 1000,
  };
  // A system that cannot run this scenario with this build is named and left out; the rest run.
  const fleets: FleetSystem[] = [];
  const skipped: string[] = [];
  for (const name of names as FleetName[]) {
    const fleet = makeFleet(name);
    try {
      await fleet.prepare(say, { build: !values.smoke });
      fleets.push(fleet);
    } catch (err) {
      if (!(err instanceof NotSupported) && !(values.smoke && err instanceof NotBuiltError))
        throw err;
      const line = `${name}: skipped: ${err.message}`;
      say(line);
      skipped.push(line);
    }
  }
  if (fleets.length === 0) {
    process.stdout.write(`${skipped.join('\n')}\nnothing to run\n`);
    return 0;
  }
  const outcome = { failed: false };
  const results: Partial<Record<FleetName, NodesResult>> = {};
  // The fleets are prepared above; the harness gets no per-pod systems to prepare.
  const none: BenchSystem[] = [];
  await withHarness(
    none,
    { smoke: values.smoke, podCapacity: 110, concurrency: 32, name: 'nodes' },
    async ({ ctx, signal, keepLogs }) => {
      const perSystem = new Map<FleetName, NodesRun[]>(fleets.map((f) => [f.name, []]));
      for (let run = 1; run <= runs; run++) {
        for (const fleet of fleets) {
          say(`run ${String(run)}/${String(runs)}: ${fleet.name}, ${String(count)} nodes`);
          const r = await oneRun(ctx, fleet, run, settings, signal);
          perSystem.get(fleet.name)?.push(r);
          if (r.ok)
            say(
              `  ${fleet.name}: CPU ${fixed(r.cpuPercent, 1)} % of a core, RSS ${mib(r.rssBytes)} (peak ${mib(r.peakRssBytes)}), apiserver ${fixed(r.apiserverCpuPercent, 1)} %, 0 NotReady transitions, oldest Lease ${fixed(r.oldestLeaseAgeSeconds, 0)} s`,
            );
          else {
            outcome.failed = true;
            keepLogs();
            say(`  ${fleet.name} FAILED: ${r.error ?? ''}`);
          }
        }
      }
      for (const fleet of fleets)
        results[fleet.name] = summarizeNodes(fleet.settings(), perSystem.get(fleet.name) ?? []);
      process.stdout.write(
        nodesReport(count, { durationSeconds, warmupSeconds }, runs, results, skipped),
      );
      const jsonPath =
        values.json ??
        (values.smoke
          ? undefined
          : `bench/results/${new Date().toISOString().slice(0, 10)}-nodes.json`);
      if (jsonPath) {
        await writeJson(jsonPath, {
          scenario: 'nodes',
          n: count,
          durationSeconds,
          warmupSeconds,
          date: new Date().toISOString(),
          runsRequested: runs,
          machine: machine(),
          controlPlane,
          commit: await gitCommit(),
          systems: results,
          skipped,
        });
        say(`wrote ${jsonPath}`);
      }
    },
  );
  return outcome.failed ? 1 : 0;
}

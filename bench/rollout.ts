// Scenario `rollout`: N pods bound to one agent's node (spec.nodeName set and every taint
// tolerated, so the scheduler is out of the measurement) go from the first create to every pod
// observed Running through a watch; then all are deleted and timed until every pod object is
// gone. One dev cluster per invocation; for each run, each system in turn (A B C A B C) gets a
// fresh namespace and a fresh node, and its agent process is started for that run only.
//
//   npm run bench -- rollout [--n 1000] [--runs 3] [--systems ours,go-vk,kwok,limit]
//                            [--json FILE] [--smoke] [--concurrency 32] [--timeout SECONDS]
import { KubeConfig } from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { request as httpsRequest, type RequestOptions as HttpsRequestOptions } from 'node:https';
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DevCluster, type ClusterInfo } from '../src/devcluster/cluster.js';
import { ensureBinaries } from '../src/devcluster/build.js';
import { DevClusterError } from '../src/devcluster/errors.js';
import { issueCert } from '../src/devcluster/pki.js';
import { ETCD_VERSION, KUBERNETES_VERSION } from '../src/devcluster/versions.js';
import { ApiError, isNotFound, KubeClient, type WatchEvent } from '../src/kube/client.js';
import { cpuSeconds, peakRssBytes } from './proc.js';
import {
  type AgentHandle,
  type BenchContext,
  type BenchSystem,
  isSystemName,
  logTail,
  makeSystem,
  SYSTEM_NAMES,
  type SystemName,
} from './systems.js';
import { fixed, forEachConcurrent, medianOf, mib, percentile, say, table } from './util.js';

/** Figures of one run of one system. */
export interface RunFigures {
  readonly run: number;
  readonly ok: boolean;
  /** Why the run failed. */
  readonly error?: string;
  /** First create to the last pod observed Running. */
  readonly seconds?: number;
  readonly podsPerSecond?: number;
  /** First create to the last create answered (the harness's own pace). */
  readonly createSeconds?: number;
  /** First delete to the last pod object gone. */
  readonly deleteSeconds?: number;
  /** Agent CPU (user + system) from the first create to the last pod gone. */
  readonly cpuSeconds?: number;
  /** Agent CPU from the first create to the last pod Running. */
  readonly cpuRolloutSeconds?: number;
  /** Agent VmHWM at the end of the run (its peak since it started). */
  readonly peakRssBytes?: number;
  /** kube-apiserver CPU over the same span as cpuSeconds. */
  readonly apiserverCpuSeconds?: number;
  /** kube-apiserver CPU from the first create to the last pod Running. */
  readonly apiserverCpuRolloutSeconds?: number;
  /** etcd CPU over the same span. */
  readonly etcdCpuSeconds?: number;
  /** Per pod, create sent to Running observed. */
  readonly latencyP50Ms?: number;
  readonly latencyP99Ms?: number;
  /** Agent start to its Node Ready. */
  readonly readySeconds?: number;
  /** The machine's 1-minute load average when the run started (others share the machine). */
  readonly loadAverage?: number;
  /** The checked-out commit when the run started (the agent code can change between runs). */
  readonly commit?: string;
  /** When dist/ (what `ours` runs) was last built, ISO time. */
  readonly distBuiltAt?: string;
  /** Pods observed Running when the rollout phase ended. */
  readonly running: number;
  /** Pod updates (watch MODIFIED events) per pod from the first create to all Running. */
  readonly podWritesPerPodToRunning?: number;
  /** Pod updates per pod over the whole run (deletion included). */
  readonly podWritesPerPod?: number;
  /** Event objects in the namespace per pod at the end of the run. */
  readonly eventsPerPod?: number;
  /** Requests the apiserver served (all clients) from the first create to all Running. */
  readonly requestsToRunning?: Record<string, number>;
  /** The same from the first delete to all gone. */
  readonly requestsToGone?: Record<string, number>;
}

export interface SystemResult {
  readonly settings: string;
  readonly seconds?: number;
  readonly podsPerSecond?: number;
  readonly cpuSeconds?: number;
  readonly peakRssBytes?: number;
  readonly deleteSeconds?: number;
  readonly cpuRolloutSeconds?: number;
  readonly apiserverCpuSeconds?: number;
  readonly apiserverCpuRolloutSeconds?: number;
  readonly latencyP99Ms?: number;
  readonly runs: RunFigures[];
}

interface PodObject {
  readonly metadata: {
    readonly name: string;
    readonly resourceVersion?: string;
    readonly deletionTimestamp?: string;
  };
  readonly status?: { readonly phase?: string };
}

interface PodListObject {
  readonly metadata: { readonly resourceVersion: string };
  readonly items: readonly PodObject[];
}

/**
 * Follows the pods of one namespace through a watch (relisting if it breaks): when each was
 * first seen Running, and which are gone.
 */
class PodTracker {
  readonly #client: KubeClient;
  readonly #path: string;
  readonly #runningAt = new Map<string, number>();
  readonly #phases = new Map<string, string>();
  readonly #gone = new Set<string>();
  /** MODIFIED events seen: every write to a pod, by anyone. */
  modified = 0;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #stop = new AbortController();

  constructor(client: KubeClient, namespace: string) {
    this.#client = client;
    this.#path = `/api/v1/namespaces/${namespace}/pods`;
  }

  get running(): number {
    return this.#runningAt.size;
  }

  get gone(): number {
    return this.#gone.size;
  }

  runningAt(name: string): number | undefined {
    return this.#runningAt.get(name);
  }

  /** Counts of the phases last seen, for failure messages. */
  phases(): string {
    const counts = new Map<string, number>();
    for (const [name, phase] of this.#phases) {
      if (this.#gone.has(name)) continue;
      counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    return [...counts].map(([p, c]) => `${p} ${String(c)}`).join(', ') || 'no pods';
  }

  /** Lists (to learn the resource version) and starts watching. */
  async start(): Promise<void> {
    const list = await this.#client.request<PodListObject>('GET', this.#path);
    for (const pod of list.items) this.#see(pod);
    this.#loop = this.#watch(list.metadata.resourceVersion);
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** Resolves when `done()` holds; rejects after `timeoutMs` or when `check()` throws. */
  async until(
    done: () => boolean,
    timeoutMs: number,
    signal: AbortSignal,
    check: () => void,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      signal.throwIfAborted();
      check();
      const left = deadline - performance.now();
      if (left <= 0) throw new Error('timed out');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  #see(pod: PodObject): void {
    const name = pod.metadata.name;
    const phase = pod.status?.phase ?? 'Pending';
    this.#phases.set(name, pod.metadata.deletionTimestamp ? `${phase}+deleting` : phase);
    if (phase === 'Running' && !this.#runningAt.has(name))
      this.#runningAt.set(name, performance.now());
  }

  async #watch(resourceVersion: string): Promise<void> {
    let rv = resourceVersion;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#client.watch<PodObject>(
          this.#path,
          { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 3600 },
          (event: WatchEvent<PodObject>) => {
            if (event.type === 'ERROR') throw new Error(JSON.stringify(event.object));
            if (event.object.metadata.resourceVersion) rv = event.object.metadata.resourceVersion;
            if (event.type === 'BOOKMARK') return;
            if (event.type === 'DELETED') this.#gone.add(event.object.metadata.name);
            else {
              if (event.type === 'MODIFIED') this.modified++;
              this.#see(event.object);
            }
            this.#wake?.();
          },
          signal,
        );
      } catch (err) {
        if (isAborted(signal)) break;
        say(`pod watch broke (${err instanceof Error ? err.message : String(err)}): relisting`);
        await delay(200);
      }
      if (isAborted(signal)) break;
      // Relist: whatever the list lacks is gone; the rest is seen anew.
      try {
        const list = await this.#client.request<PodListObject>('GET', this.#path, { signal });
        const present = new Set(list.items.map((p) => p.metadata.name));
        for (const name of this.#phases.keys()) if (!present.has(name)) this.#gone.add(name);
        for (const pod of list.items) this.#see(pod);
        rv = list.metadata.resourceVersion;
        this.#wake?.();
      } catch {
        // Try the watch again from the last resource version.
      }
    }
  }
}

/**
 * Requests the apiserver has served so far, by `VERB resource[/subresource]` (every client: the
 * harness, the agent, the controller manager), from its `apiserver_request_total` metric.
 */
async function requestCounts(client: KubeClient): Promise<Map<string, number> | undefined> {
  try {
    const res = await fetchText(client, '/metrics');
    const out = new Map<string, number>();
    for (const line of res.split('\n')) {
      if (!line.startsWith('apiserver_request_total{')) continue;
      const labels = line.slice(line.indexOf('{') + 1, line.lastIndexOf('}'));
      const get = (k: string): string =>
        new RegExp(`(?:^|,)${k}="([^"]*)"`).exec(labels)?.[1] ?? '';
      const resource = get('resource');
      if (!resource) continue;
      const sub = get('subresource');
      const key = `${get('verb')} ${resource}${sub ? `/${sub}` : ''}`;
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      out.set(key, (out.get(key) ?? 0) + value);
    }
    return out;
  } catch {
    return undefined;
  }
}

async function fetchText(client: KubeClient, path: string): Promise<string> {
  // The client parses JSON; the metrics are text, so read them through a raw request.
  const opts: HttpsRequestOptions = {};
  await client.kubeConfig.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(path, client.server), { ...opts, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        resolve(body);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function diffCounts(
  a: Map<string, number> | undefined,
  b: Map<string, number> | undefined,
): Record<string, number> | undefined {
  if (!a || !b) return undefined;
  const out: [string, number][] = [];
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0) out.push([k, d]);
  }
  out.sort((x, y) => y[1] - x[1]);
  return Object.fromEntries(out);
}

/** Reads the flag anew (TypeScript narrows `signal.aborted` as if it could not change). */
const isAborted = (signal: AbortSignal): boolean => signal.aborted;

const retriable = (err: unknown): boolean =>
  !(err instanceof ApiError) || err.status === 429 || err.status >= 500;

async function withRetries<T>(op: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (attempt >= 6 || signal.aborted || !retriable(err)) throw err;
      await delay(100 * 2 ** attempt, undefined, { signal });
    }
  }
}

function podBody(name: string, nodeName: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'rollout' } },
    spec: {
      nodeName,
      // Every taint tolerated: the agents' NoSchedule taints and any NoExecute one.
      tolerations: [{ operator: 'Exists' }],
      containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }],
    },
  };
}

interface Node {
  readonly status?: { readonly conditions?: readonly { type: string; status: string }[] };
}

async function waitNodeReady(
  client: KubeClient,
  nodeName: string,
  agent: AgentHandle,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    signal.throwIfAborted();
    const exit = agent.exited();
    if (exit)
      throw new Error(
        `the agent ${exit} before its Node was Ready; log ${agent.logPath}:\n    ${await logTail(agent.logPath)}`,
      );
    const node = await client.get<Node>(`/api/v1/nodes/${nodeName}`, signal);
    if (node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return;
    if (performance.now() > deadline)
      throw new Error(
        `its Node ${nodeName} was not Ready after ${String(timeoutMs / 1000)} s (${node ? 'registered' : 'not registered'}); log ${agent.logPath}:\n    ${await logTail(agent.logPath)}`,
      );
    await delay(200, undefined, { signal });
  }
}

async function waitGone(client: KubeClient, path: string, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (!(await client.get(path).catch(() => true))) return true;
    await delay(500);
  }
  return false;
}

interface RolloutSettings {
  readonly n: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
}

/** One run of one system; never throws for the system's failures (they are in the figures). */
async function oneRun(
  ctx: BenchContext,
  system: BenchSystem,
  run: number,
  settings: RolloutSettings,
  signal: AbortSignal,
): Promise<RunFigures> {
  const { client } = ctx;
  const { n } = settings;
  const suffix = randomBytes(3).toString('hex');
  const loadAverage = loadavg()[0];
  const commit = await gitCommit();
  const distBuiltAt = await stat(
    join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js'),
  )
    .then((s) => s.mtime.toISOString())
    .catch(() => undefined);
  const namespace = `rollout-${system.name}-${String(run)}-${suffix}`;
  const nodeName = `bench-${system.name}-${String(run)}-${suffix}`;
  await client.create('/api/v1/namespaces', {
    metadata: { name: namespace, labels: { 'vk-bench': 'rollout' } },
  });
  // The ServiceAccount admission plugin refuses pods until the default account exists.
  while (!(await client.get(`/api/v1/namespaces/${namespace}/serviceaccounts/default`, signal)))
    await delay(100, undefined, { signal });

  const tracker = new PodTracker(client, namespace);
  const names = Array.from({ length: n }, (_, i) => `pod-${String(i).padStart(5, '0')}`);
  const sentAt = new Map<string, number>();
  let agent: AgentHandle | undefined;
  let running = 0;
  const pids = ctx.info.pids;
  const cpu = (pid: number | undefined): number | undefined =>
    pid === undefined ? undefined : cpuSeconds(pid);
  try {
    const startedAt = performance.now();
    agent = await system.start(ctx, nodeName);
    const live = agent;
    await waitNodeReady(client, nodeName, agent, 120_000, signal);
    const readySeconds = (performance.now() - startedAt) / 1000;
    await tracker.start();
    const aliveCheck = (): void => {
      const exit = live.exited();
      if (exit) throw new Error(`the agent ${exit}`);
    };

    const req0 = await requestCounts(client);
    const cpu0 = cpu(agent.pid);
    const api0 = cpu(pids['kube-apiserver']);
    const etcd0 = cpu(pids.etcd);
    const t0 = performance.now();
    let createdAll = 0;
    const creating = forEachConcurrent(n, settings.concurrency, async (i) => {
      const name = names[i] ?? '';
      sentAt.set(name, performance.now());
      await withRetries(
        () =>
          client.create(`/api/v1/namespaces/${namespace}/pods`, podBody(name, nodeName), signal),
        signal,
      );
    }).then(() => (createdAll = performance.now()));
    let phaseError: unknown;
    try {
      await tracker.until(() => tracker.running >= n, settings.timeoutMs, signal, aliveCheck);
    } catch (err) {
      phaseError = err;
    }
    await creating;
    running = tracker.running;
    if (phaseError !== undefined) {
      const why = phaseError instanceof Error ? phaseError.message : 'failed';
      const exit = agent.exited();
      throw new Error(
        `only ${String(running)} of ${String(n)} pods Running after ${fixed((performance.now() - t0) / 1000)} s (${why}; phases seen: ${tracker.phases()}; agent ${exit ?? 'still running'}); log ${agent.logPath}:\n    ${await logTail(agent.logPath)}`,
      );
    }
    let last = t0;
    const latencies: number[] = [];
    for (const name of names) {
      const at = tracker.runningAt(name) ?? t0;
      if (at > last) last = at;
      latencies.push(at - (sentAt.get(name) ?? t0));
    }
    const cpu1 = cpu(agent.pid);
    const api1 = cpu(pids['kube-apiserver']);
    const writesToRunning = tracker.modified;
    const req1 = await requestCounts(client);

    const t1 = performance.now();
    await forEachConcurrent(n, settings.concurrency, async (i) => {
      const name = names[i] ?? '';
      try {
        await withRetries(
          () => client.delete(`/api/v1/namespaces/${namespace}/pods/${name}`, undefined, signal),
          signal,
        );
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    });
    try {
      await tracker.until(() => tracker.gone >= n, settings.timeoutMs, signal, aliveCheck);
    } catch (err) {
      throw new Error(
        `only ${String(tracker.gone)} of ${String(n)} pods gone ${fixed((performance.now() - t1) / 1000)} s after the deletes (${err instanceof Error ? err.message : String(err)}; phases seen: ${tracker.phases()}); log ${agent.logPath}:\n    ${await logTail(agent.logPath)}`,
        { cause: err },
      );
    }
    const t2 = performance.now();
    const cpu2 = cpu(agent.pid);
    const api2 = cpu(pids['kube-apiserver']);
    const etcd2 = cpu(pids.etcd);
    const req2 = await requestCounts(client);
    const events = await client
      .request<{ items: unknown[] }>('GET', `/api/v1/namespaces/${namespace}/events`)
      .then((l) => l.items.length)
      .catch(() => undefined);
    const diff = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : b - a;
    const seconds = (last - t0) / 1000;
    return {
      run,
      ok: true,
      seconds,
      podsPerSecond: n / seconds,
      createSeconds: (createdAll - t0) / 1000,
      deleteSeconds: (t2 - t1) / 1000,
      cpuSeconds: diff(cpu0, cpu2),
      cpuRolloutSeconds: diff(cpu0, cpu1),
      peakRssBytes: agent.pid === undefined ? undefined : peakRssBytes(agent.pid),
      apiserverCpuSeconds: diff(api0, api2),
      apiserverCpuRolloutSeconds: diff(api0, api1),
      etcdCpuSeconds: diff(etcd0, etcd2),
      latencyP50Ms: percentile(latencies, 50),
      latencyP99Ms: percentile(latencies, 99),
      readySeconds,
      loadAverage,
      commit,
      distBuiltAt,
      running: n,
      podWritesPerPodToRunning: writesToRunning / n,
      podWritesPerPod: tracker.modified / n,
      ...(events === undefined ? {} : { eventsPerPod: events / n }),
      requestsToRunning: diffCounts(req0, req1),
      requestsToGone: diffCounts(req1, req2),
    };
  } catch (err) {
    if (signal.aborted) throw err;
    return {
      run,
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      loadAverage,
      commit,
      distBuiltAt,
      running: running || tracker.running,
    };
  } finally {
    await tracker.stop();
    await agent?.stop();
    // Whatever is left goes at once, without an agent; then the node, its lease, the namespace.
    await client
      .request('DELETE', `/api/v1/namespaces/${namespace}/pods`, {
        query: { gracePeriodSeconds: 0 },
      })
      .catch(() => undefined);
    await client.delete(`/api/v1/nodes/${nodeName}`).catch(() => undefined);
    await client
      .delete(`/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`)
      .catch(() => undefined);
    await client.delete(`/api/v1/namespaces/${namespace}`).catch(() => undefined);
    // The namespace's events are removed by the controller manager: let that finish before
    // the next system is measured.
    if (!signal.aborted && !(await waitGone(client, `/api/v1/namespaces/${namespace}`, 180_000)))
      say(`namespace ${namespace} still terminating after 180 s; going on`);
  }
}

function summarize(settings: string, runs: RunFigures[]): SystemResult {
  const ok = runs.filter((r) => r.ok);
  const m = (k: keyof RunFigures): number | undefined =>
    medianOf(ok.map((r) => r[k] as number | undefined));
  return {
    settings,
    seconds: m('seconds'),
    podsPerSecond: m('podsPerSecond'),
    cpuSeconds: m('cpuSeconds'),
    peakRssBytes: m('peakRssBytes'),
    deleteSeconds: m('deleteSeconds'),
    cpuRolloutSeconds: m('cpuRolloutSeconds'),
    apiserverCpuSeconds: m('apiserverCpuSeconds'),
    apiserverCpuRolloutSeconds: m('apiserverCpuRolloutSeconds'),
    latencyP99Ms: m('latencyP99Ms'),
    runs,
  };
}

function report(
  n: number,
  runsRequested: number,
  results: Partial<Record<SystemName, SystemResult>>,
): string {
  const rows: string[][] = [
    [
      'system',
      'ok',
      'seconds',
      'pods/s',
      'p99 ms',
      'delete s',
      'CPU s',
      'CPU s (to Running)',
      'peak RSS',
      'apiserver CPU s',
      '(to Running)',
    ],
  ];
  for (const [name, r] of Object.entries(results)) {
    rows.push([
      name,
      `${String(r.runs.filter((x) => x.ok).length)}/${String(r.runs.length)}`,
      fixed(r.seconds, 2),
      fixed(r.podsPerSecond, 0),
      fixed(r.latencyP99Ms, 0),
      fixed(r.deleteSeconds, 2),
      fixed(r.cpuSeconds, 2),
      fixed(r.cpuRolloutSeconds, 2),
      mib(r.peakRssBytes),
      fixed(r.apiserverCpuSeconds, 1),
      fixed(r.apiserverCpuRolloutSeconds, 1),
    ]);
  }
  const out = [
    `scenario rollout, N=${String(n)}, ${String(runsRequested)} run(s) per system, interleaved; medians of the runs that completed`,
    `control plane: kube-apiserver ${KUBERNETES_VERSION}, etcd ${ETCD_VERSION}, on 127.0.0.1; ${String(cpus().length)} CPUs`,
    '',
    table(rows),
    '',
  ];
  const ours = results.ours;
  const ratioRows: string[][] = [['ratio', 'seconds', 'delete s', 'CPU s', 'peak RSS']];
  const ratio = (a: number | undefined, b: number | undefined): string =>
    a === undefined || b === undefined || b === 0 ? '-' : (a / b).toFixed(2);
  if (ours) {
    for (const peer of ['go-vk', 'go-vk-tuned', 'kwok', 'limit'] as const) {
      const p = results[peer];
      if (!p) continue;
      ratioRows.push([
        `ours/${peer}`,
        ratio(ours.seconds, p.seconds),
        ratio(ours.deleteSeconds, p.deleteSeconds),
        ratio(ours.cpuSeconds, p.cpuSeconds),
        ratio(ours.peakRssBytes, p.peakRssBytes),
      ]);
    }
  }
  if (ratioRows.length > 1) out.push(table(ratioRows), '');
  out.push('settings:');
  for (const [name, r] of Object.entries(results)) out.push(`  ${name}: ${r.settings}`);
  for (const [name, r] of Object.entries(results))
    for (const run of r.runs)
      if (!run.ok) out.push(`FAILED ${name} run ${String(run.run)}: ${run.error ?? ''}`);
  return `${out.join('\n')}\n`;
}

function ratios(
  results: Partial<Record<SystemName, SystemResult>>,
): Record<string, Record<string, number | undefined>> {
  const out: Record<string, Record<string, number | undefined>> = {};
  const ours = results.ours;
  if (!ours) return out;
  const r = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b;
  for (const peer of ['go-vk', 'go-vk-tuned', 'kwok', 'limit'] as const) {
    const p = results[peer];
    if (!p) continue;
    out[`ours/${peer}`] = {
      seconds: r(ours.seconds, p.seconds),
      deleteSeconds: r(ours.deleteSeconds, p.deleteSeconds),
      cpuSeconds: r(ours.cpuSeconds, p.cpuSeconds),
      peakRssBytes: r(ours.peakRssBytes, p.peakRssBytes),
    };
  }
  return out;
}

/** The checked-out commit (with `+dirty` when the tree has changes), if git is there. */
async function gitCommit(): Promise<string | undefined> {
  const git = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile('git', args, (err, stdout) => {
        if (err) reject(new Error(err.message));
        else resolve(stdout.trim());
      });
    });
  try {
    const head = await git(['rev-parse', '--short', 'HEAD']);
    const dirty = (await git(['status', '--porcelain', '--', 'src'])) !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return undefined;
  }
}

/** Writes JSON, in the repository's format when prettier is installed. */
async function writeJson(path: string, value: unknown): Promise<void> {
  let text = `${JSON.stringify(value, null, 2)}\n`;
  try {
    const prettier = await import('prettier');
    const config = (await prettier.resolveConfig(path)) ?? {};
    text = await prettier.format(text, { ...config, parser: 'json' });
  } catch {
    // Plain JSON.stringify output is fine too.
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

export async function rollout(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      n: { type: 'string', default: '1000' },
      runs: { type: 'string', default: '3' },
      // go-vk-tuned only on request: it measures the same binary as go-vk, and its extra
      // workers make a data race in the Go mock provider likely (it can crash).
      systems: { type: 'string', default: 'ours,go-vk,kwok,limit' },
      json: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      concurrency: { type: 'string', default: '32' },
      timeout: { type: 'string' },
      'pod-capacity': { type: 'string' },
      'go-vk-tuned-workers': { type: 'string', default: '64' },
      'limit-concurrency': { type: 'string', default: '64' },
      'ours-log-interval-ms': { type: 'string', default: '0' },
    },
  });
  const n = Number(values.n);
  const runs = Number(values.runs);
  const concurrency = Number(values.concurrency);
  if (!(n >= 1) || !(runs >= 1) || !(concurrency >= 1)) {
    say('--n, --runs and --concurrency must be positive numbers');
    return 2;
  }
  const names = values.systems.split(',').filter(Boolean);
  const unknown = names.filter((s) => !isSystemName(s));
  if (unknown.length > 0) {
    say(`unknown system(s) ${unknown.join(', ')}: choose from ${SYSTEM_NAMES.join(', ')}`);
    return 2;
  }
  const timeoutMs = Number(values.timeout ?? Math.max(300, n)) * 1000;
  const podCapacity = Number(values['pod-capacity'] ?? Math.max(20_000, n));
  const systems = (names as SystemName[]).map((name) =>
    makeSystem(name, {
      goVkTunedWorkers: Number(values['go-vk-tuned-workers']),
      limitConcurrency: Number(values['limit-concurrency']),
      oursLogIntervalMs: Number(values['ours-log-interval-ms']),
    }),
  );

  const stop = new AbortController();
  // Every request in flight listens on it.
  setMaxListeners(0, stop.signal);
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts === 1) {
      say('interrupted: stopping the agents and the cluster (again to kill at once)');
      stop.abort();
    } else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const binaries = await ensureBinaries({ progress: say, signal: stop.signal });
  // Peers are built (first use only) before the cluster runs, so nothing competes with the build.
  const skipped: string[] = [];
  const ready: BenchSystem[] = [];
  for (const system of systems) {
    try {
      await system.prepare(say);
      ready.push(system);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (values.smoke && err instanceof DevClusterError && err.code !== 'Aborted') {
        say(`skipping ${system.name}: it cannot be built here (${why})`);
        skipped.push(system.name);
        continue;
      }
      throw err;
    }
  }

  const dir = await mkdtemp(join(tmpdir(), 'vk-bench-rollout-'));
  const cluster = new DevCluster({
    dir,
    binaries,
    log: say,
    onComponentExit: (c, code, sig) => {
      say(`${c} exited (${sig ?? `code ${String(code)}`}) during the benchmark`);
    },
  });
  let info: ClusterInfo;
  try {
    info = await cluster.start(stop.signal);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let failed = false;
  const results: Partial<Record<SystemName, SystemResult>> = {};
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(info.adminKubeconfig);
    const client = await KubeClient.create(kc, {
      qps: 1e6,
      burst: 1e6,
      maxSockets: concurrency * 2 + 8,
      userAgent: 'vk-bench',
    });
    await issueCert(info.pkiDir, {
      name: 'bench-serving',
      cn: 'vk-bench-kubelet',
      usage: 'server',
      sans: ['IP:127.0.0.1', 'DNS:localhost'],
    });
    const ctx: BenchContext = {
      info,
      client,
      dir,
      servingCert: {
        cert: join(info.pkiDir, 'bench-serving.crt'),
        key: join(info.pkiDir, 'bench-serving.key'),
      },
      podCapacity,
      say,
    };

    const settings: RolloutSettings = { n, concurrency, timeoutMs };
    const perSystem = new Map<SystemName, RunFigures[]>(ready.map((s) => [s.name, []]));
    for (let run = 1; run <= runs; run++) {
      for (const system of ready) {
        say(`run ${String(run)}/${String(runs)}: ${system.name}, ${String(n)} pods`);
        const figures = await oneRun(ctx, system, run, settings, stop.signal);
        perSystem.get(system.name)?.push(figures);
        if (figures.ok)
          say(
            `  ${system.name}: ${fixed(figures.seconds, 2)} s to Running (${fixed(figures.podsPerSecond, 0)} pods/s, creates took ${fixed(figures.createSeconds, 2)} s), delete ${fixed(figures.deleteSeconds, 2)} s, agent CPU ${fixed(figures.cpuSeconds, 2)} s, peak RSS ${mib(figures.peakRssBytes)}, apiserver CPU ${fixed(figures.apiserverCpuSeconds, 1)} s`,
          );
        else {
          failed = true;
          say(`  ${system.name} FAILED: ${figures.error ?? ''}`);
        }
      }
    }
    for (const system of ready)
      results[system.name] = summarize(system.settings(), perSystem.get(system.name) ?? []);
    process.stdout.write(report(n, runs, results));
    if (skipped.length > 0)
      process.stdout.write(`skipped (not buildable): ${skipped.join(', ')}\n`);

    const jsonPath =
      values.json ??
      (values.smoke
        ? undefined
        : `bench/results/${new Date().toISOString().slice(0, 10)}-rollout-${String(n)}.json`);
    if (jsonPath) {
      await writeJson(jsonPath, {
        scenario: 'rollout',
        n,
        date: new Date().toISOString(),
        runsRequested: runs,
        smoke: values.smoke,
        machine: {
          cpus: cpus().length,
          memoryGiB: Math.round(totalmem() / 2 ** 30),
          node: process.version,
        },
        controlPlane: { kubernetes: KUBERNETES_VERSION, etcd: ETCD_VERSION },
        commit: await gitCommit(),
        createConcurrency: concurrency,
        systems: results,
        ratios: ratios(results),
      });
      say(`wrote ${jsonPath}`);
    }
    client.close();
  } finally {
    await cluster.stop();
    if (failed) say(`logs kept in ${dir}`);
    else await rm(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (failed) {
    const names = Object.entries(results)
      .filter(([, r]) => r.runs.some((x) => !x.ok))
      .map(([name]) => name);
    say(`not every pod got Running (or was deleted) for: ${names.join(', ')}`);
    return 1;
  }
  return 0;
}

// Scenario `rollout --provider kubernetes`: what offloading costs. The harness runs two dev
// clusters, the local one and a remote one. For each run, one system after the other (direct,
// offloaded, direct, ...), a fresh worker node joins the remote cluster (our CLI with the mock
// provider, its own process, so its pods get Running at once), and:
//
//   direct     N pods are created in the remote cluster, pinned to the worker by the nodeSelector
//              kubernetes.io/hostname (the remote scheduler binds them), and timed there;
//   offloaded  the same N pods are created in the local cluster on a virtual node of our CLI with
//              the kubernetes provider (spec.nodeName set, as in every rollout), which creates
//              them in the remote cluster pinned to the same kind of worker in the same way;
//              timed in the local cluster.
//
// Then, offloaded only, each remote pod's container is restarted at a steady pace (its image is
// changed in the remote cluster, and the worker restarts it as a kubelet would): per pod, the time
// from a watch on the remote cluster seeing the restart to a watch on the local cluster seeing it
// on the local pod. Then every pod is deleted where it was created and timed until gone.
//
//   npm run bench -- rollout --provider kubernetes [--n 1000] [--runs 3] [--change-rate 50]
//                            [--concurrency 32] [--timeout SECONDS] [--json FILE]
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { issueCert, renderKubeconfig } from '../src/devcluster/pki.js';
import { errorCode } from '../src/errors.js';
import type { KubeClient } from '../src/kube/client.js';
import {
  gitCommit,
  PodTracker,
  podBody,
  type PodObject,
  teardownRun,
  waitNodeReady,
  withRetries,
  writeJson,
} from './common.js';
import { controlPlane, controlPlaneLine, machine, withHarness } from './harness.js';
import { cpuSeconds, peakRssBytes } from './proc.js';
import {
  type AgentHandle,
  type BenchContext,
  ensureDist,
  logTail,
  Ours,
  type RemoteCluster,
  repoRoot,
} from './systems.js';
import {
  fixed,
  forEachConcurrent,
  medianOf,
  mib,
  percentile,
  ratio,
  ratioText,
  say,
  table,
} from './util.js';

/** The goal of the issue for offloaded/direct seconds to all Running. */
export const GOAL_SECONDS_RATIO = 1.3;
/** The goal of the issue for the p99 of a remote status change reaching the local pod. */
export const GOAL_STATUS_P99_MS = 1000;

export const OFFLOAD_SYSTEMS = ['direct', 'offloaded'] as const;
export type OffloadSystem = (typeof OFFLOAD_SYSTEMS)[number];

/** The label that pins a pod to the remote worker, as the provider's `nodeSelector` does. */
const HOSTNAME = 'kubernetes.io/hostname';
/** The image a remote container is changed to, which makes the worker restart it. */
export const RESTART_IMAGE = 'registry.k8s.io/pause:3.9';
/** The least-privilege identity the provider has in the remote cluster, as shipped. */
const RBAC_MANIFEST = join(repoRoot, 'deploy', 'kubernetes-provider-remote-rbac.yaml');
const OFFLOAD_USER = 'virtual-kubelet-offload';

export interface OffloadSettings {
  readonly n: number;
  readonly runs: number;
  /** Creates and deletes in flight. */
  readonly concurrency: number;
  /** Per phase. */
  readonly timeoutMs: number;
  /** Remote container restarts a second, sent open-loop. */
  readonly changeRate: number;
  /** Pods the remote worker offers. */
  readonly podCapacity: number;
  readonly json?: string;
}

/** `rollout --provider kubernetes` options, or a message saying what is wrong with them. */
export function parseOffloadArgs(argv: readonly string[]): OffloadSettings | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        provider: { type: 'string' },
        n: { type: 'string', default: '1000' },
        runs: { type: 'string', default: '3' },
        concurrency: { type: 'string', default: '32' },
        timeout: { type: 'string' },
        'change-rate': { type: 'string', default: '50' },
        'pod-capacity': { type: 'string' },
        json: { type: 'string' },
        systems: { type: 'string' },
        vs: { type: 'string' },
        'process-network': { type: 'string' },
      },
    }));
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  if (values.provider !== 'kubernetes') return 'this scenario needs --provider kubernetes';
  if (values.systems !== undefined || values.vs !== undefined)
    return '--provider kubernetes picks its systems (direct, offloaded): give neither --systems nor --vs';
  if (values['process-network'] !== undefined) return '--process-network needs --provider process';
  const n = Number(values.n);
  const runs = Number(values.runs);
  const concurrency = Number(values.concurrency);
  const changeRate = Number(values['change-rate']);
  if (![n, runs, concurrency].every((x) => Number.isInteger(x) && x >= 1))
    return '--n, --runs and --concurrency must be positive whole numbers';
  if (!(changeRate > 0)) return '--change-rate must be a positive number';
  const timeoutSeconds = Number(values.timeout ?? Math.max(300, n));
  if (!(timeoutSeconds > 0)) return '--timeout must be a positive number of seconds';
  const podCapacity = Number(values['pod-capacity'] ?? Math.max(20_000, n));
  if (!(Number.isInteger(podCapacity) && podCapacity >= n))
    return `--pod-capacity must be a whole number of at least --n (${String(n)})`;
  return {
    n,
    runs,
    concurrency,
    timeoutMs: timeoutSeconds * 1000,
    changeRate,
    podCapacity,
    ...(values.json === undefined ? {} : { json: values.json }),
  };
}

/** The figures of a run that the summary takes the median of. */
export const OFFLOAD_FIGURES = [
  'seconds',
  'podsPerSecond',
  'createSeconds',
  'latencyP50Ms',
  'latencyP90Ms',
  'latencyP99Ms',
  'deleteSeconds',
  'cpuSeconds',
  'cpuRolloutSeconds',
  'agentCpuSeconds',
  'agentCpuRolloutSeconds',
  'agentPeakRssBytes',
  'workerCpuSeconds',
  'workerCpuRolloutSeconds',
  'workerPeakRssBytes',
  'localApiserverCpuRolloutSeconds',
  'remoteApiserverCpuRolloutSeconds',
  'runningLagP50Ms',
  'runningLagP99Ms',
  'statusP50Ms',
  'statusP90Ms',
  'statusP99Ms',
  'statusMaxMs',
  'statusRate',
  'agentCpuStatusSeconds',
  'readySeconds',
] as const;
export type OffloadFigure = (typeof OFFLOAD_FIGURES)[number];

/**
 * Figures of one run of one system. Times run from the first create; "agent" is the
 * kubernetes-provider agent (offloaded only), "worker" the remote node's agent (both); CPU is
 * user + system from procfs.
 *
 * - seconds: first create to the last pod observed Running, in the cluster it was created in
 * - createSeconds: first create to the last create answered (the harness's own pace)
 * - latencyP*Ms: per pod, create sent to Running observed
 * - deleteSeconds: first delete to the last pod object gone
 * - cpuSeconds, cpuRolloutSeconds: every agent of the system (offloaded: agent and worker),
 *   over the rollout and the deletion (not the status changes), and to all Running
 * - agentCpu*, workerCpu*: the same per process; *PeakRssBytes: VmHWM at the end of the run
 * - runningLagP*Ms (offloaded): per pod, its remote copy seen Running to the local pod seen Running
 * - statusP*Ms (offloaded): per pod, the remote container restart seen in the remote cluster to
 *   the local pod showing it; statusRate the restarts a second the harness sent;
 *   agentCpuStatusSeconds the agent's CPU over that phase
 */
export type OffloadRun = Partial<Record<OffloadFigure, number>> & {
  readonly run: number;
  readonly ok: boolean;
  readonly error?: string;
  /** Pods observed Running when the rollout phase ended. */
  readonly running: number;
  /** Restarts that reached the local pod (offloaded). */
  readonly statusChanges?: number;
  readonly loadAverage?: number;
  readonly commit?: string;
};

export type OffloadResult = Partial<Record<OffloadFigure, number>> & {
  readonly settings: string;
  readonly runs: OffloadRun[];
};

/** Medians of the runs that completed. */
export function summarizeOffload(settings: string, runs: OffloadRun[]): OffloadResult {
  const ok = runs.filter((r) => r.ok);
  const medians: Partial<Record<OffloadFigure, number>> = {};
  for (const k of OFFLOAD_FIGURES) {
    const m = medianOf(ok.map((r) => r[k]));
    if (m !== undefined) medians[k] = m;
  }
  return { settings, ...medians, runs };
}

/** The figures compared as offloaded/direct. */
const RATIO_FIGURES = [
  'seconds',
  'latencyP50Ms',
  'latencyP99Ms',
  'deleteSeconds',
  'cpuSeconds',
  'workerCpuSeconds',
] as const satisfies readonly OffloadFigure[];

/** `offloaded/direct` ratios of the medians, when both ran. */
export function offloadRatios(
  results: Partial<Record<OffloadSystem, OffloadResult>>,
): Record<string, Partial<Record<OffloadFigure, number>>> {
  const { direct, offloaded } = results;
  if (!direct || !offloaded) return {};
  const out: Partial<Record<OffloadFigure, number>> = {};
  for (const k of RATIO_FIGURES) {
    const r = ratio(offloaded[k], direct[k]);
    if (r !== undefined) out[k] = r;
  }
  return { 'offloaded/direct': out };
}

export interface OffloadGoals {
  /** offloaded/direct seconds to all Running; goal <= GOAL_SECONDS_RATIO. */
  readonly secondsRatio?: number;
  readonly secondsRatioMet?: boolean;
  /** p99 of a remote status change reaching the local pod; goal <= GOAL_STATUS_P99_MS. */
  readonly statusP99Ms?: number;
  readonly statusP99Met?: boolean;
}

/** The issue's two goals against the medians; a figure that is missing meets nothing. */
export function offloadGoals(results: Partial<Record<OffloadSystem, OffloadResult>>): OffloadGoals {
  const secondsRatio = offloadRatios(results)['offloaded/direct']?.seconds;
  const statusP99Ms = results.offloaded?.statusP99Ms;
  return {
    ...(secondsRatio === undefined
      ? {}
      : { secondsRatio, secondsRatioMet: secondsRatio <= GOAL_SECONDS_RATIO }),
    ...(statusP99Ms === undefined
      ? {}
      : { statusP99Ms, statusP99Met: statusP99Ms <= GOAL_STATUS_P99_MS }),
  };
}

/**
 * Percentiles of the time from `from` to `to` per pod, over the pods that have both; how many
 * lack either.
 */
export function delayFigures(pairs: readonly { readonly from?: number; readonly to?: number }[]): {
  p50Ms?: number;
  p90Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  missing: number;
} {
  const delays: number[] = [];
  for (const { from, to } of pairs)
    if (from !== undefined && to !== undefined) delays.push(to - from);
  const missing = pairs.length - delays.length;
  if (delays.length === 0) return { missing };
  return {
    p50Ms: percentile(delays, 50),
    p90Ms: percentile(delays, 90),
    p99Ms: percentile(delays, 99),
    maxMs: delays.reduce((a, b) => Math.max(a, b), -Infinity),
    missing,
  };
}

/**
 * A benchmark pod pinned to the remote worker by its hostname label, otherwise the pod every
 * rollout creates (`podBody`): the direct system's pods, and what the offloaded pods' remote
 * copies amount to.
 */
export function pinnedPodBody(name: string, workerName: string, image?: string): object {
  const base = podBody(name, workerName, 'rollout', image) as { spec: Record<string, unknown> };
  const spec: Record<string, unknown> = { ...base.spec, nodeSelector: { [HOSTNAME]: workerName } };
  delete spec.nodeName;
  return { ...base, spec };
}

/** The kubernetes provider's configuration: its remote pods go to the worker, past its taint. */
export function offloadProviderConfig(
  kubeconfig: string,
  workerName: string,
): Record<string, unknown> {
  return {
    kubeconfig,
    nodeSelector: { [HOSTNAME]: workerName },
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
  };
}

/** Whether the pod's container `app` has restarted (as the status change phase makes it). */
export const restarted = (pod: PodObject): boolean =>
  pod.status?.containerStatuses?.some((c) => c.name === 'app' && (c.restartCount ?? 0) >= 1) ??
  false;

const SETTINGS: Readonly<Record<OffloadSystem, string>> = {
  direct:
    'pods created in the remote cluster with nodeSelector kubernetes.io/hostname=<worker> and every taint tolerated; the remote kube-scheduler binds them; timed in the remote cluster',
  offloaded:
    'pods created in the local cluster with spec.nodeName <virtual node> and every taint tolerated, on bin/virtual-kubelet --provider kubernetes (admin kubeconfig of the local cluster, default settings: 10 pod-sync workers, qps 1000, burst 2000; --provider-config {kubeconfig: the shipped least-privilege identity in the remote cluster, nodeSelector {kubernetes.io/hostname: <worker>}, tolerations [virtual-kubelet.io/provider Exists]}, the rest default); it creates each in the remote cluster, where the remote kube-scheduler binds it; timed in the local cluster',
};

const WORKER_SETTINGS =
  'worker (both systems, fresh each run): bin/virtual-kubelet --provider mock against the remote cluster (admin kubeconfig), --provider-config {cpu 1000, memory 10000Gi, pods <capacity>, logIntervalMs 0}, --node-ip 127.0.0.1, --authorization-mode AlwaysAllow';

export function offloadReport(
  settings: OffloadSettings,
  results: Partial<Record<OffloadSystem, OffloadResult>>,
): string {
  const rows: string[][] = [
    [
      'system',
      'ok',
      'seconds',
      'pods/s',
      'p50 ms',
      'p99 ms',
      'delete s',
      'CPU s (all agents)',
      'agent CPU s',
      'agent peak RSS',
      'worker CPU s',
      'worker peak RSS',
      'status p50 ms',
      'status p99 ms',
    ],
  ];
  for (const [name, r] of Object.entries(results))
    rows.push([
      name,
      `${String(r.runs.filter((x) => x.ok).length)}/${String(r.runs.length)}`,
      fixed(r.seconds, 2),
      fixed(r.podsPerSecond, 0),
      fixed(r.latencyP50Ms, 0),
      fixed(r.latencyP99Ms, 0),
      fixed(r.deleteSeconds, 2),
      fixed(r.cpuSeconds, 2),
      fixed(r.agentCpuSeconds, 2),
      mib(r.agentPeakRssBytes),
      fixed(r.workerCpuSeconds, 2),
      mib(r.workerPeakRssBytes),
      fixed(r.statusP50Ms, 0),
      fixed(r.statusP99Ms, 0),
    ]);
  const out = [
    `scenario rollout --provider kubernetes, N=${String(settings.n)}, ${String(settings.runs)} run(s) per system, interleaved; medians of the runs that completed`,
    `status: a remote container restart (${String(settings.changeRate)}/s) seen in the remote cluster to the local pod showing it, by the harness clock`,
    `${controlPlaneLine()}; two clusters (local and remote)`,
    '',
    table(rows),
    '',
  ];
  const ratios = offloadRatios(results)['offloaded/direct'];
  if (ratios)
    out.push(
      table([
        ['ratio', 'seconds', 'p50 ms', 'p99 ms', 'delete s', 'CPU s (all agents)', 'worker CPU s'],
        [
          'offloaded/direct',
          ratioText(ratios.seconds),
          ratioText(ratios.latencyP50Ms),
          ratioText(ratios.latencyP99Ms),
          ratioText(ratios.deleteSeconds),
          ratioText(ratios.cpuSeconds),
          ratioText(ratios.workerCpuSeconds),
        ],
      ]),
      '',
    );
  const goals = offloadGoals(results);
  const met = (m: boolean | undefined): string => (m === undefined ? '-' : m ? 'yes' : 'NO');
  out.push(
    table([
      ['goal', 'value', 'target', 'met'],
      [
        'offloaded/direct seconds',
        ratioText(goals.secondsRatio),
        `<= ${String(GOAL_SECONDS_RATIO)}`,
        met(goals.secondsRatioMet),
      ],
      [
        'status change p99 ms',
        fixed(goals.statusP99Ms, 0),
        `<= ${String(GOAL_STATUS_P99_MS)}`,
        met(goals.statusP99Met),
      ],
    ]),
    '',
    'settings:',
  );
  for (const [name, r] of Object.entries(results)) out.push(`  ${name}: ${r.settings}`);
  out.push(`  ${WORKER_SETTINGS}`);
  for (const [name, r] of Object.entries(results))
    for (const run of r.runs)
      if (!run.ok) out.push(`FAILED ${name} run ${String(run.run)}: ${run.error ?? ''}`);
  return `${out.join('\n')}\n`;
}

/**
 * Gives the provider's identity in the remote cluster the shipped least-privilege ClusterRole
 * (deploy/kubernetes-provider-remote-rbac.yaml) and writes its kubeconfig into `dir`.
 */
async function offloadIdentity(remote: RemoteCluster, dir: string): Promise<string> {
  const docs = parseAllDocuments(await readFile(RBAC_MANIFEST, 'utf8'))
    .map((d) => d.toJS() as { kind?: string } | null)
    .filter((d) => d !== null);
  for (const doc of docs) {
    const resource =
      doc.kind === 'ClusterRole'
        ? 'clusterroles'
        : doc.kind === 'ClusterRoleBinding'
          ? 'clusterrolebindings'
          : undefined;
    if (!resource) throw new Error(`${RBAC_MANIFEST}: unexpected kind ${String(doc.kind)}`);
    await remote.client.create(`/apis/rbac.authorization.k8s.io/v1/${resource}`, doc);
  }
  const pki = remote.info.pkiDir;
  await issueCert(pki, { name: 'offload', cn: OFFLOAD_USER, usage: 'client' });
  const path = join(dir, 'offload.kubeconfig');
  await writeFile(
    path,
    await renderKubeconfig({
      server: remote.info.server,
      caFile: join(pki, 'ca.crt'),
      certFile: join(pki, 'offload.crt'),
      keyFile: join(pki, 'offload.key'),
      name: 'offload',
    }),
    { mode: 0o600 },
  );
  return path;
}

async function createNamespace(
  client: KubeClient,
  namespace: string,
  signal: AbortSignal,
): Promise<void> {
  await client.create('/api/v1/namespaces', {
    metadata: { name: namespace, labels: { 'vk-bench': 'rollout' } },
  });
  // The ServiceAccount admission plugin refuses pods until the default account exists.
  while (!(await client.get(`/api/v1/namespaces/${namespace}/serviceaccounts/default`, signal)))
    await delay(100, undefined, { signal });
}

interface RunContext {
  readonly ctx: BenchContext;
  readonly remote: RemoteCluster;
  readonly offloadKubeconfig: string;
  readonly settings: OffloadSettings;
  readonly signal: AbortSignal;
}

/** The last lines of each agent's log, for failure messages. */
async function logs(agents: readonly (AgentHandle | undefined)[]): Promise<string> {
  const out: string[] = [];
  for (const a of agents) if (a) out.push(`log ${a.logPath}:\n    ${await logTail(a.logPath)}`);
  return out.join('\n');
}

/** One run of one system; never throws for the system's failures (they are in the figures). */
async function oneRun(system: OffloadSystem, run: number, rc: RunContext): Promise<OffloadRun> {
  const { ctx, remote, settings, signal } = rc;
  const { n } = settings;
  const suffix = randomBytes(3).toString('hex');
  const loadAverage = loadavg()[0];
  const commit = await gitCommit();
  const namespace = `offload-${system}-${String(run)}-${suffix}`;
  const workerName = `bench-worker-${String(run)}-${suffix}`;
  const nodeName = `bench-offload-${String(run)}-${suffix}`;
  const offloaded = system === 'offloaded';
  // Where the pods are created, watched and deleted.
  const client = offloaded ? ctx.client : remote.client;
  const names = Array.from({ length: n }, (_, i) => `pod-${String(i).padStart(5, '0')}`);
  const sentAt = new Map<string, number>();
  const tracker = new PodTracker(client, namespace, { mark: restarted });
  // The remote copies of offloaded pods, in the remote namespace of the same name (the
  // provider's default namespaceMapping, SameName).
  const remoteTracker = offloaded
    ? new PodTracker(remote.client, namespace, { mark: restarted })
    : undefined;
  let worker: AgentHandle | undefined;
  let agent: AgentHandle | undefined;
  let running = 0;
  const cpu = (pid: number | undefined): number | undefined =>
    pid === undefined ? undefined : cpuSeconds(pid);
  const localApi = ctx.info.pids['kube-apiserver'];
  const remoteApi = remote.info.pids['kube-apiserver'];
  try {
    await createNamespace(client, namespace, signal);
    const startedAt = performance.now();
    worker = await new Ours(0, { kubeconfig: remote.info.adminKubeconfig }).start(ctx, workerName);
    await waitNodeReady(remote.client, workerName, worker, 120_000, signal);
    if (offloaded) {
      agent = await new Ours(0, {
        provider: 'kubernetes',
        providerConfig: () => offloadProviderConfig(rc.offloadKubeconfig, workerName),
      }).start(ctx, nodeName);
      await waitNodeReady(ctx.client, nodeName, agent, 120_000, signal);
    }
    const readySeconds = (performance.now() - startedAt) / 1000;
    await tracker.start();
    await remoteTracker?.start();
    const live = { worker, agent };
    const aliveCheck = (): void => {
      for (const [what, a] of Object.entries(live)) {
        const exit = a?.exited();
        if (exit) throw new Error(`the ${what} ${exit}`);
      }
    };
    const agentCpu = (): number | undefined => cpu(live.agent?.pid);
    const workerCpu = (): number | undefined => cpu(live.worker.pid);

    const cpu0 = { agent: agentCpu(), worker: workerCpu() };
    const api0 = { local: cpu(localApi), remote: cpu(remoteApi) };
    const t0 = performance.now();
    let createdAll = 0;
    const creating = forEachConcurrent(n, settings.concurrency, async (i) => {
      const name = names[i] ?? '';
      sentAt.set(name, performance.now());
      const body = offloaded
        ? podBody(name, nodeName, 'rollout', ctx.podImage)
        : pinnedPodBody(name, workerName, ctx.podImage);
      await withRetries(
        () => client.create(`/api/v1/namespaces/${namespace}/pods`, body, signal),
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
      throw new Error(
        `only ${String(running)} of ${String(n)} pods Running after ${fixed((performance.now() - t0) / 1000)} s (${why}; phases seen: ${tracker.phases()}${remoteTracker ? `; remote copies: ${remoteTracker.phases()}` : ''}); ${await logs([agent, worker])}`,
      );
    }
    let last = t0;
    const latencies: number[] = [];
    for (const name of names) {
      const at = tracker.runningAt(name) ?? t0;
      if (at > last) last = at;
      latencies.push(at - (sentAt.get(name) ?? t0));
    }
    const cpu1 = { agent: agentCpu(), worker: workerCpu() };
    const api1 = { local: cpu(localApi), remote: cpu(remoteApi) };
    const runningLag = remoteTracker
      ? delayFigures(
          names.map((name) => ({
            from: remoteTracker.runningAt(name),
            to: tracker.runningAt(name),
          })),
        )
      : undefined;

    const status = remoteTracker
      ? await restartRemoteContainers(rc, namespace, names, tracker, remoteTracker, aliveCheck)
      : undefined;
    const cpu2 = { agent: agentCpu(), worker: workerCpu() };

    const t1 = performance.now();
    await forEachConcurrent(n, settings.concurrency, async (i) => {
      const name = names[i] ?? '';
      try {
        await withRetries(
          () => client.delete(`/api/v1/namespaces/${namespace}/pods/${name}`, undefined, signal),
          signal,
        );
      } catch (err) {
        if (errorCode(err) !== 'NotFound') throw err;
      }
    });
    try {
      await tracker.until(() => tracker.gone >= n, settings.timeoutMs, signal, aliveCheck);
    } catch (err) {
      throw new Error(
        `only ${String(tracker.gone)} of ${String(n)} pods gone ${fixed((performance.now() - t1) / 1000)} s after the deletes (${err instanceof Error ? err.message : String(err)}; phases seen: ${tracker.phases()}); ${await logs([agent, worker])}`,
        { cause: err },
      );
    }
    const t2 = performance.now();
    const cpu3 = { agent: agentCpu(), worker: workerCpu() };
    const diff = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : b - a;
    // The rollout and the deletion, without the status phase between them (direct has none).
    const spans = (k: 'agent' | 'worker'): number | undefined => {
      const rollout = diff(cpu0[k], cpu1[k]);
      const deletion = diff(cpu2[k], cpu3[k]);
      return rollout === undefined || deletion === undefined ? undefined : rollout + deletion;
    };
    const sum = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined ? b : b === undefined ? a : a + b;
    const seconds = (last - t0) / 1000;
    return {
      run,
      ok: true,
      running: n,
      seconds,
      podsPerSecond: n / seconds,
      createSeconds: (createdAll - t0) / 1000,
      latencyP50Ms: percentile(latencies, 50),
      latencyP90Ms: percentile(latencies, 90),
      latencyP99Ms: percentile(latencies, 99),
      deleteSeconds: (t2 - t1) / 1000,
      cpuSeconds: sum(spans('agent'), spans('worker')),
      cpuRolloutSeconds: sum(diff(cpu0.agent, cpu1.agent), diff(cpu0.worker, cpu1.worker)),
      agentCpuSeconds: spans('agent'),
      agentCpuRolloutSeconds: diff(cpu0.agent, cpu1.agent),
      agentPeakRssBytes: agent?.pid === undefined ? undefined : peakRssBytes(agent.pid),
      workerCpuSeconds: spans('worker'),
      workerCpuRolloutSeconds: diff(cpu0.worker, cpu1.worker),
      workerPeakRssBytes: worker.pid === undefined ? undefined : peakRssBytes(worker.pid),
      localApiserverCpuRolloutSeconds: diff(api0.local, api1.local),
      remoteApiserverCpuRolloutSeconds: diff(api0.remote, api1.remote),
      runningLagP50Ms: runningLag?.p50Ms,
      runningLagP99Ms: runningLag?.p99Ms,
      ...(status
        ? {
            statusP50Ms: status.p50Ms,
            statusP90Ms: status.p90Ms,
            statusP99Ms: status.p99Ms,
            statusMaxMs: status.maxMs,
            statusRate: status.rate,
            statusChanges: n - status.missing,
            agentCpuStatusSeconds: diff(cpu1.agent, cpu2.agent),
          }
        : {}),
      readySeconds,
      loadAverage,
      commit,
    };
  } catch (err) {
    if (signal.aborted) throw err;
    return {
      run,
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      running: running || tracker.running,
      loadAverage,
      commit,
    };
  } finally {
    await remoteTracker?.stop();
    await tracker.stop();
    if (offloaded) await teardownRun(ctx.client, agent, namespace, nodeName, signal);
    // The remote namespace: the direct pods', or the one the provider made for its copies.
    await teardownRun(remote.client, worker, namespace, workerName, signal);
  }
}

/**
 * Restarts the container of every remote copy, open-loop at `changeRate` a second (its image is
 * changed; the worker restarts it, as a kubelet does), and waits until every local pod shows the
 * restart. Per pod: the restart seen by the remote watch to the restart seen by the local watch.
 */
async function restartRemoteContainers(
  rc: RunContext,
  namespace: string,
  names: readonly string[],
  local: PodTracker,
  remote: PodTracker,
  aliveCheck: () => void,
): Promise<ReturnType<typeof delayFigures> & { rate?: number }> {
  const { settings, signal } = rc;
  const intervalMs = 1000 / settings.changeRate;
  const patch = { spec: { containers: [{ name: 'app', image: RESTART_IMAGE }] } };
  const t0 = performance.now();
  let lastSent = t0;
  let patchError: Error | undefined;
  const sends: Promise<void>[] = [];
  for (const [i, name] of names.entries()) {
    const wait = t0 + i * intervalMs - performance.now();
    if (wait > 1) await delay(wait, undefined, { signal });
    if (patchError !== undefined) break;
    lastSent = performance.now();
    sends.push(
      withRetries(
        () =>
          rc.remote.client.patch(
            `/api/v1/namespaces/${namespace}/pods/${name}`,
            'strategic',
            patch,
            signal,
          ),
        signal,
      ).then(
        () => undefined,
        (err: unknown) => {
          patchError ??= err instanceof Error ? err : new Error(String(err));
        },
      ),
    );
  }
  await Promise.all(sends);
  if (patchError !== undefined)
    throw new Error(`changing a remote pod's image failed: ${patchError.message}`, {
      cause: patchError,
    });
  const n = names.length;
  try {
    await local.until(
      () => local.marked >= n && remote.marked >= n,
      settings.timeoutMs,
      signal,
      aliveCheck,
    );
  } catch (err) {
    throw new Error(
      `after ${fixed((performance.now() - lastSent) / 1000)} s, ${String(remote.marked)} of ${String(n)} remote containers seen restarted and ${String(local.marked)} local pods showing it (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
  const figures = delayFigures(
    names.map((name) => ({ from: remote.markedAt(name), to: local.markedAt(name) })),
  );
  return {
    ...figures,
    ...(n > 1 && lastSent > t0 ? { rate: ((n - 1) * 1000) / (lastSent - t0) } : {}),
  };
}

/** `npm run bench -- rollout --provider kubernetes ...` */
export async function offloadRollout(argv: string[]): Promise<number> {
  const settings = parseOffloadArgs(argv);
  if (typeof settings === 'string') {
    say(settings);
    return 2;
  }
  // Built before the clusters start, so that nothing competes with the build.
  await ensureDist(say);
  const results: Partial<Record<OffloadSystem, OffloadResult>> = {};
  const outcome = { failed: false };
  await withHarness(
    [],
    {
      smoke: false,
      podCapacity: settings.podCapacity,
      concurrency: settings.concurrency,
      name: 'rollout-kubernetes',
      remote: true,
    },
    async ({ ctx, signal, keepLogs }) => {
      const remote = ctx.remote;
      if (!remote) throw new Error('the harness started no remote cluster');
      const rc: RunContext = {
        ctx,
        remote,
        offloadKubeconfig: await offloadIdentity(remote, ctx.dir),
        settings,
        signal,
      };
      const perSystem = new Map<OffloadSystem, OffloadRun[]>(OFFLOAD_SYSTEMS.map((s) => [s, []]));
      for (let run = 1; run <= settings.runs; run++) {
        for (const system of OFFLOAD_SYSTEMS) {
          say(`run ${String(run)}/${String(settings.runs)}: ${system}, ${String(settings.n)} pods`);
          const f = await oneRun(system, run, rc);
          perSystem.get(system)?.push(f);
          if (f.ok)
            say(
              `  ${system}: ${fixed(f.seconds, 2)} s to Running (${fixed(f.podsPerSecond, 0)} pods/s, creates took ${fixed(f.createSeconds, 2)} s, p99 ${fixed(f.latencyP99Ms, 0)} ms), delete ${fixed(f.deleteSeconds, 2)} s, CPU ${fixed(f.cpuSeconds, 2)} s (agent ${fixed(f.agentCpuSeconds, 2)}, worker ${fixed(f.workerCpuSeconds, 2)}), peak RSS agent ${mib(f.agentPeakRssBytes)}, worker ${mib(f.workerPeakRssBytes)}` +
                (offloadedLine(f) ?? ''),
            );
          else {
            outcome.failed = true;
            keepLogs();
            say(`  ${system} FAILED: ${f.error ?? ''}`);
          }
        }
      }
      for (const system of OFFLOAD_SYSTEMS)
        results[system] = summarizeOffload(SETTINGS[system], perSystem.get(system) ?? []);
      process.stdout.write(offloadReport(settings, results));
      const jsonPath =
        settings.json ??
        `bench/results/${new Date().toISOString().slice(0, 10)}-rollout-kubernetes-${String(settings.n)}.json`;
      await writeJson(jsonPath, {
        scenario: 'rollout',
        provider: 'kubernetes',
        n: settings.n,
        date: new Date().toISOString(),
        runsRequested: settings.runs,
        machine: machine(),
        controlPlane,
        commit: await gitCommit(),
        createConcurrency: settings.concurrency,
        changeRate: settings.changeRate,
        worker: WORKER_SETTINGS,
        systems: results,
        ratios: offloadRatios(results),
        goals: offloadGoals(results),
      });
      say(`wrote ${jsonPath}`);
    },
  );
  if (outcome.failed) {
    say(
      `not every run completed: ${OFFLOAD_SYSTEMS.filter((s) => results[s]?.runs.some((r) => !r.ok)).join(', ')}`,
    );
    return 1;
  }
  return 0;
}

/** The offloaded run's own figures, for its progress line. */
function offloadedLine(f: OffloadRun): string | undefined {
  if (f.statusP99Ms === undefined) return undefined;
  return `; remote Running to local Running p50 ${fixed(f.runningLagP50Ms, 0)} ms, p99 ${fixed(f.runningLagP99Ms, 0)} ms; status change p50 ${fixed(f.statusP50Ms, 0)} ms, p99 ${fixed(f.statusP99Ms, 0)} ms at ${fixed(f.statusRate, 1)}/s`;
}

/**
 * The virtual node's Summary (`stats.k8s.io/v1alpha1`) and `/metrics/resource`, made from the
 * Summaries of the remote nodes that run its offloaded pods: each remote pod entry is renamed to
 * the local pod it stands for, everything else of those nodes is left out, and the node part is
 * the sum of the offloaded pods (what the virtual node runs), not the remote nodes' totals.
 */
import {
  formatResourceMetrics,
  type ResourceMetricsInput,
} from '../../kubelet/resource-metrics.js';
import type { CPUStats, MemoryStats, PodStats, Summary } from '../../provider.js';

/** A local pod, as the Summary names pods. */
export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

export interface MapSummariesInput {
  /** The virtual node's name: `node.nodeName`. */
  readonly nodeName: string;
  /** RFC 3339: when the virtual node's provider started (`node.startTime`). */
  readonly startTime: string;
  /** The remote nodes' Summaries (any order; a pod listed twice is kept once). */
  readonly summaries: readonly Summary[];
  /**
   * The local pod a remote pod stands for, by the remote pod's namespace, name and UID;
   * `undefined` for a remote pod this node did not offload (it is left out).
   */
  readonly localOf: (remote: PodRef) => PodRef | undefined;
  /** RFC 3339: the node part's time when no pod reports one. */
  readonly now: string;
}

/** The later of two RFC 3339 times (either may be missing). */
function later(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

/** Adds the figures both blocks have; a figure missing on either side is left out. */
function sumCpu(blocks: readonly (CPUStats | undefined)[], now: string): CPUStats | undefined {
  const present = blocks.filter((b): b is CPUStats => b !== undefined);
  if (present.length === 0) return undefined;
  const sum = (k: 'usageNanoCores' | 'usageCoreNanoSeconds'): number | undefined =>
    present.every((b) => b[k] !== undefined)
      ? present.reduce((n, b) => n + (b[k] ?? 0), 0)
      : undefined;
  const nano = sum('usageNanoCores');
  const total = sum('usageCoreNanoSeconds');
  return {
    time: present.reduce<string | undefined>((t, b) => later(t, b.time), undefined) ?? now,
    ...(nano === undefined ? {} : { usageNanoCores: nano }),
    ...(total === undefined ? {} : { usageCoreNanoSeconds: total }),
  };
}

const MEMORY_FIGURES = [
  'usageBytes',
  'workingSetBytes',
  'rssBytes',
  'pageFaults',
  'majorPageFaults',
] as const;

function sumMemory(
  blocks: readonly (MemoryStats | undefined)[],
  now: string,
): MemoryStats | undefined {
  const present = blocks.filter((b): b is MemoryStats => b !== undefined);
  if (present.length === 0) return undefined;
  const out: Record<string, number | string> = {
    time: present.reduce<string | undefined>((t, b) => later(t, b.time), undefined) ?? now,
  };
  for (const k of MEMORY_FIGURES)
    if (present.every((b) => b[k] !== undefined))
      out[k] = present.reduce((n, b) => n + (b[k] ?? 0), 0);
  return out as unknown as MemoryStats;
}

/**
 * The virtual node's Summary: the offloaded pods' entries of the remote Summaries under their
 * local namespace, name and UID (containers, CPU, memory, network, volumes as the remote kubelet
 * measured them), and a node part summing the pods' CPU and memory. Pure.
 */
export function mapSummaries(input: MapSummariesInput): Summary {
  const pods: PodStats[] = [];
  const seen = new Set<string>();
  for (const summary of input.summaries) {
    for (const pod of summary.pods) {
      const local = input.localOf(pod.podRef);
      if (local === undefined || seen.has(local.uid)) continue;
      seen.add(local.uid);
      pods.push({
        ...pod,
        podRef: { namespace: local.namespace, name: local.name, uid: local.uid },
      });
    }
  }
  pods.sort(
    (a, b) =>
      a.podRef.namespace.localeCompare(b.podRef.namespace) ||
      a.podRef.name.localeCompare(b.podRef.name),
  );
  const cpu = sumCpu(
    pods.map((p) => p.cpu),
    input.now,
  );
  const memory = sumMemory(
    pods.map((p) => p.memory),
    input.now,
  );
  return {
    node: {
      nodeName: input.nodeName,
      startTime: input.startTime,
      cpu: cpu ?? { time: input.now, usageNanoCores: 0, usageCoreNanoSeconds: 0 },
      memory: memory ?? { time: input.now, usageBytes: 0, workingSetBytes: 0 },
    },
    pods,
  };
}

/**
 * What `/metrics/resource` renders of a Summary: the pods and containers that report both a
 * cumulative CPU figure and a working set (metrics-server needs both), at the latest sample time.
 */
export function resourceMetricsOf(summary: Summary, nowMs: number): ResourceMetricsInput {
  let timeMs = 0;
  const usageOf = (
    cpu: CPUStats | undefined,
    memory: MemoryStats | undefined,
  ): { usageCoreNanoSeconds: number; workingSetBytes: number } | undefined => {
    if (cpu?.usageCoreNanoSeconds === undefined || memory?.workingSetBytes === undefined)
      return undefined;
    const at = Date.parse(cpu.time);
    if (Number.isFinite(at)) timeMs = Math.max(timeMs, at);
    return {
      usageCoreNanoSeconds: cpu.usageCoreNanoSeconds,
      workingSetBytes: memory.workingSetBytes,
    };
  };
  const pods: ResourceMetricsInput['pods'][number][] = [];
  for (const pod of summary.pods) {
    const usage = usageOf(pod.cpu, pod.memory);
    if (usage === undefined) continue;
    const containers = [];
    for (const c of pod.containers) {
      const cu = usageOf(c.cpu, c.memory);
      const start = Date.parse(c.startTime);
      if (cu !== undefined && Number.isFinite(start))
        containers.push({ name: c.name, startTimeMs: start, usage: cu });
    }
    pods.push({ namespace: pod.podRef.namespace, name: pod.podRef.name, usage, containers });
  }
  const node = usageOf(summary.node.cpu, summary.node.memory) ?? {
    usageCoreNanoSeconds: 0,
    workingSetBytes: 0,
  };
  return { timeMs: timeMs || nowMs, node, pods };
}

/** `/metrics/resource` as the kubelet writes it, from the virtual node's Summary. */
export function metricsResourceOf(summary: Summary, nowMs: number): string {
  return formatResourceMetrics(resourceMetricsOf(summary, nowMs));
}

/**
 * Synthetic resource usage, and its two renderings: the kubelet Summary (`/stats/summary`,
 * stats.k8s.io/v1alpha1) and the Prometheus text of `/metrics/resource`, which is what
 * metrics-server reads. Pure functions; the provider hands in what runs and since when.
 *
 * Every container run uses a steady CPU rate (10m to 60m) and working set (10 to 60 MiB) derived
 * from a hash of `namespace/pod/container`, so figures are stable per container and non-zero from
 * the start: metrics-server drops a pod if any of its containers reports zero CPU or memory.
 */
import type { CPUStats, MemoryStats, Summary } from '../../provider.js';
import {
  formatResourceMetrics,
  summaryCpuStats,
  summaryMemoryStats,
} from '../../kubelet/resource-metrics.js';
import { formatRfc3339 } from '../../kubelet/time.js';

const MIB = 1024 * 1024;
/** CPU a container uses while it starts, so its counter is non-zero at once. */
const STARTUP_CORE_NANOSECONDS = 50_000_000;
/** What the node uses besides its pods. */
const NODE_BASE_NANOCORES = 50_000_000;
const NODE_BASE_WORKING_SET_BYTES = 256 * MIB;

export interface Usage {
  readonly usageNanoCores: number;
  readonly usageCoreNanoSeconds: number;
  readonly workingSetBytes: number;
  readonly usageBytes: number;
  readonly rssBytes: number;
  readonly pageFaults: number;
  readonly majorPageFaults: number;
}

const ZERO: Usage = {
  usageNanoCores: 0,
  usageCoreNanoSeconds: 0,
  workingSetBytes: 0,
  usageBytes: 0,
  rssBytes: 0,
  pageFaults: 0,
  majorPageFaults: 0,
};

// FNV-1a, 32 bits: small, stable and spreads short names well enough.
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h;
}

const millicoresOf = (seed: string): number => 10 + (hash(seed) % 51);

/** Core-nanoseconds a run of the container `seed` has used from `startedAt` to `at`. */
export function cpuCoreNanoSeconds(seed: string, startedAt: Date, at: Date): number {
  const elapsedMs = Math.max(0, at.getTime() - startedAt.getTime());
  // m millicores are m * 1e6 nanocores, m * 1e3 core-nanoseconds per millisecond.
  return STARTUP_CORE_NANOSECONDS + millicoresOf(seed) * 1000 * Math.floor(elapsedMs);
}

/** The usage of the run of container `seed` started at `startedAt`, at `at`. */
export function containerUsage(seed: string, startedAt: Date, at: Date): Usage {
  const h = hash(seed);
  const workingSetBytes = (10 + ((h >>> 8) % 51)) * MIB;
  const elapsedSeconds = Math.max(0, Math.floor((at.getTime() - startedAt.getTime()) / 1000));
  return {
    usageNanoCores: millicoresOf(seed) * 1_000_000,
    usageCoreNanoSeconds: cpuCoreNanoSeconds(seed, startedAt, at),
    workingSetBytes,
    usageBytes: workingSetBytes + 4 * MIB,
    rssBytes: workingSetBytes - 2 * MIB,
    pageFaults: 1000 + 10 * elapsedSeconds,
    majorPageFaults: 1 + (h % 10),
  };
}

function add(a: Usage, b: Usage): Usage {
  return {
    usageNanoCores: a.usageNanoCores + b.usageNanoCores,
    usageCoreNanoSeconds: a.usageCoreNanoSeconds + b.usageCoreNanoSeconds,
    workingSetBytes: a.workingSetBytes + b.workingSetBytes,
    usageBytes: a.usageBytes + b.usageBytes,
    rssBytes: a.rssBytes + b.rssBytes,
    pageFaults: a.pageFaults + b.pageFaults,
    majorPageFaults: a.majorPageFaults + b.majorPageFaults,
  };
}

export interface RunningPodInput {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly startTime: Date;
  /** CPU used by the pod's runs that have stopped, so the pod's counter never goes back. */
  readonly retiredCoreNanoSeconds: number;
  /** Its running containers. */
  readonly containers: readonly { readonly name: string; readonly startedAt: Date }[];
}

export interface SnapshotInput {
  readonly nodeName: string;
  readonly nodeStartTime: Date;
  readonly now: Date;
  readonly memoryCapacityBytes: number;
  /** CPU used by every run that has stopped, so the node's counter never goes back. */
  readonly retiredCoreNanoSeconds: number;
  /** Pods that are not terminal and have running containers. */
  readonly pods: readonly RunningPodInput[];
}

export interface ContainerSample {
  readonly name: string;
  readonly startTime: Date;
  readonly usage: Usage;
}

export interface PodSample {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly startTime: Date;
  readonly containers: readonly ContainerSample[];
  readonly usage: Usage;
}

/** The figures both renderings are made of, taken at one instant. */
export interface Snapshot {
  readonly time: Date;
  readonly node: {
    readonly name: string;
    readonly startTime: Date;
    readonly usage: Usage;
    readonly availableBytes: number;
  };
  readonly pods: readonly PodSample[];
}

/**
 * Usage at `input.now`. Counters are monotonic: a pod's and the node's CPU counters include what
 * stopped runs used; the node adds a base of 50m CPU and 256 MiB over its pods.
 */
export function takeSnapshot(input: SnapshotInput): Snapshot {
  const now = input.now;
  const pods = input.pods.map((pod): PodSample => {
    const containers = pod.containers.map((c): ContainerSample => ({
      name: c.name,
      startTime: c.startedAt,
      usage: containerUsage(`${pod.namespace}/${pod.name}/${c.name}`, c.startedAt, now),
    }));
    const sum = containers.reduce((total, c) => add(total, c.usage), ZERO);
    return {
      namespace: pod.namespace,
      name: pod.name,
      uid: pod.uid,
      startTime: pod.startTime,
      containers,
      usage: {
        ...sum,
        usageCoreNanoSeconds: sum.usageCoreNanoSeconds + pod.retiredCoreNanoSeconds,
      },
    };
  });
  const running = pods.reduce(
    (total, pod) =>
      add(total, {
        ...pod.usage,
        usageCoreNanoSeconds: pod.containers.reduce(
          (cpu, c) => cpu + c.usage.usageCoreNanoSeconds,
          0,
        ),
      }),
    ZERO,
  );
  const uptimeMs = Math.max(0, now.getTime() - input.nodeStartTime.getTime());
  const workingSetBytes = NODE_BASE_WORKING_SET_BYTES + running.workingSetBytes;
  const usage: Usage = {
    usageNanoCores: NODE_BASE_NANOCORES + running.usageNanoCores,
    usageCoreNanoSeconds:
      STARTUP_CORE_NANOSECONDS +
      (NODE_BASE_NANOCORES / 1000) * Math.floor(uptimeMs) +
      input.retiredCoreNanoSeconds +
      running.usageCoreNanoSeconds,
    workingSetBytes,
    usageBytes: workingSetBytes + 64 * MIB + running.usageBytes - running.workingSetBytes,
    rssBytes: NODE_BASE_WORKING_SET_BYTES / 2 + running.rssBytes,
    pageFaults: 100_000 + running.pageFaults,
    majorPageFaults: 100 + running.majorPageFaults,
  };
  return {
    time: now,
    node: {
      name: input.nodeName,
      startTime: input.nodeStartTime,
      usage,
      availableBytes: Math.max(0, input.memoryCapacityBytes - workingSetBytes),
    },
    pods,
  };
}

const cpu = (usage: Usage, time: string): CPUStats =>
  summaryCpuStats(time, usage.usageNanoCores, usage.usageCoreNanoSeconds);
const memory = (usage: Usage, time: string): MemoryStats => summaryMemoryStats(time, usage);

/** The Summary (`stats.k8s.io/v1alpha1`) with node, pods, containers, CPU and memory. */
export function statsSummary(snapshot: Snapshot): Summary {
  const time = formatRfc3339(snapshot.time);
  const node = snapshot.node;
  return {
    node: {
      nodeName: node.name,
      startTime: formatRfc3339(node.startTime),
      cpu: cpu(node.usage, time),
      memory: { ...memory(node.usage, time), availableBytes: node.availableBytes },
    },
    pods: snapshot.pods.map((pod) => ({
      podRef: { name: pod.name, namespace: pod.namespace, uid: pod.uid },
      startTime: formatRfc3339(pod.startTime),
      containers: pod.containers.map((c) => ({
        name: c.name,
        startTime: formatRfc3339(c.startTime),
        cpu: cpu(c.usage, time),
        memory: memory(c.usage, time),
      })),
      cpu: cpu(pod.usage, time),
      memory: memory(pod.usage, time),
    })),
  };
}

/** `/metrics/resource` as the kubelet writes it (see kubelet/resource-metrics.ts). */
export function metricsResource(snapshot: Snapshot): string {
  return formatResourceMetrics({
    timeMs: snapshot.time.getTime(),
    node: snapshot.node.usage,
    pods: snapshot.pods.map((pod) => ({
      namespace: pod.namespace,
      name: pod.name,
      usage: pod.usage,
      containers: pod.containers.map((c) => ({
        name: c.name,
        startTimeMs: c.startTime.getTime(),
        usage: c.usage,
      })),
    })),
  });
}

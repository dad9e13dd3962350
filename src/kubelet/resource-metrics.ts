/**
 * The kubelet's resource usage renderings: the CPU and memory blocks of the Summary
 * (`stats.k8s.io/v1alpha1`) and the Prometheus text of `/metrics/resource` (k8s:
 * pkg/kubelet/metrics/collectors/resource_metrics.go), which metrics-server reads.
 */

import type { CPUStats, MemoryStats } from '../provider.js';

/** What the renderings need of a node's, pod's or container's usage. */
export interface ResourceUsage {
  /** Cumulative CPU, in core-nanoseconds. */
  readonly usageCoreNanoSeconds: number;
  readonly workingSetBytes: number;
}

/** A container of {@link ResourceMetricsInput}. */
export interface ContainerResourceUsage {
  readonly name: string;
  /** Start of the current run, in milliseconds since the epoch. */
  readonly startTimeMs: number;
  readonly usage: ResourceUsage;
}

/** A pod of {@link ResourceMetricsInput}. */
export interface PodResourceUsage {
  readonly namespace: string;
  readonly name: string;
  readonly usage: ResourceUsage;
  readonly containers: readonly ContainerResourceUsage[];
}

export interface ResourceMetricsInput {
  /** When the usage was sampled, in milliseconds since the epoch (the samples' timestamps). */
  readonly timeMs: number;
  readonly node: ResourceUsage;
  readonly pods: readonly PodResourceUsage[];
}

/** A label value in the text exposition format: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

interface Sample {
  readonly labels?: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestampMs?: number;
}

function family(
  name: string,
  type: 'counter' | 'gauge',
  help: string,
  samples: readonly Sample[],
): string[] {
  // As the Go client does, a family without samples is left out.
  if (samples.length === 0) return [];
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const sample of samples) {
    const labels = Object.entries(sample.labels ?? {})
      .map(([key, value]) => `${key}="${escapeLabelValue(value)}"`)
      .join(',');
    const series = labels === '' ? name : `${name}{${labels}}`;
    const at = sample.timestampMs === undefined ? '' : ` ${String(sample.timestampMs)}`;
    lines.push(`${series} ${String(sample.value)}${at}`);
  }
  return lines;
}

/**
 * `/metrics/resource` as the kubelet writes it: HELP and TYPE lines, labels in the Go client's
 * (sorted) order, and millisecond timestamps on the usage samples, which metrics-server needs
 * to compute rates.
 */
export function formatResourceMetrics(input: ResourceMetricsInput): string {
  const at = input.timeMs;
  const containers = input.pods.flatMap((pod) =>
    pod.containers.map((c) => ({
      labels: { container: c.name, namespace: pod.namespace, pod: pod.name },
      c,
    })),
  );
  const pods = input.pods.map((pod) => ({
    labels: { namespace: pod.namespace, pod: pod.name },
    pod,
  }));
  const seconds = (usage: ResourceUsage): number => usage.usageCoreNanoSeconds / 1e9;
  // Usage samples carry the sampling time; start times and the scrape error do not.
  const cpu = (usage: ResourceUsage, labels?: Record<string, string>): Sample => ({
    ...(labels && { labels }),
    value: seconds(usage),
    timestampMs: at,
  });
  const workingSet = (usage: ResourceUsage, labels?: Record<string, string>): Sample => ({
    ...(labels && { labels }),
    value: usage.workingSetBytes,
    timestampMs: at,
  });
  const lines = [
    ...family(
      'container_cpu_usage_seconds_total',
      'counter',
      '[STABLE] Cumulative cpu time consumed by the container in core-seconds',
      containers.map(({ labels, c }) => cpu(c.usage, labels)),
    ),
    ...family(
      'container_memory_working_set_bytes',
      'gauge',
      '[STABLE] Current working set of the container in bytes',
      containers.map(({ labels, c }) => workingSet(c.usage, labels)),
    ),
    ...family(
      'container_start_time_seconds',
      'gauge',
      '[STABLE] Start time of the container since unix epoch in seconds',
      containers.map(({ labels, c }) => ({ labels, value: c.startTimeMs / 1000 })),
    ),
    ...family(
      'node_cpu_usage_seconds_total',
      'counter',
      '[STABLE] Cumulative cpu time consumed by the node in core-seconds',
      [cpu(input.node)],
    ),
    ...family(
      'node_memory_working_set_bytes',
      'gauge',
      '[STABLE] Current working set of the node in bytes',
      [workingSet(input.node)],
    ),
    ...family(
      'pod_cpu_usage_seconds_total',
      'counter',
      '[STABLE] Cumulative cpu time consumed by the pod in core-seconds',
      pods.map(({ labels, pod }) => cpu(pod.usage, labels)),
    ),
    ...family(
      'pod_memory_working_set_bytes',
      'gauge',
      '[STABLE] Current working set of the pod in bytes',
      pods.map(({ labels, pod }) => workingSet(pod.usage, labels)),
    ),
    ...family(
      'resource_scrape_error',
      'gauge',
      '[STABLE] 1 if there was an error while getting container metrics, 0 otherwise',
      [{ value: 0 }],
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/** What the Summary's memory block reports; the page fault counters are optional. */
export interface MemoryUsage {
  readonly usageBytes: number;
  readonly workingSetBytes: number;
  readonly rssBytes: number;
  readonly pageFaults?: number;
  readonly majorPageFaults?: number;
}

/** A Summary `CPUStats` block at `time` (RFC 3339). */
export function summaryCpuStats(
  time: string,
  usageNanoCores: number,
  usageCoreNanoSeconds: number,
): CPUStats {
  return { time, usageNanoCores, usageCoreNanoSeconds };
}

/** A Summary `MemoryStats` block at `time` (RFC 3339); absent counters are left out. */
export function summaryMemoryStats(time: string, usage: MemoryUsage): MemoryStats {
  return {
    time,
    usageBytes: usage.usageBytes,
    workingSetBytes: usage.workingSetBytes,
    rssBytes: usage.rssBytes,
    ...(usage.pageFaults === undefined ? {} : { pageFaults: usage.pageFaults }),
    ...(usage.majorPageFaults === undefined ? {} : { majorPageFaults: usage.majorPageFaults }),
  };
}

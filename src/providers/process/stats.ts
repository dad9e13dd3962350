/**
 * Real resource usage: from the pod and container cgroups where there are some, else from
 * /proc for the container's process tree; the node's from /proc/stat and /proc/meminfo.
 * Rendered as the kubelet Summary (`/stats/summary`) and as `/metrics/resource`, which
 * metrics-server reads. CPU rates (nanocores) are taken over the window since the last sample.
 */
import { readFileSync } from 'node:fs';
import type { CPUStats, MemoryStats, Summary } from '../../provider.js';
import type { Cgroups } from './cgroups.js';
import type { PodRunner } from './pod.js';
import { CLOCK_TICKS, descendants, processUsage } from './proc.js';
import {
  formatResourceMetrics,
  summaryCpuStats,
  summaryMemoryStats,
  type ResourceUsage,
} from '../../kubelet/resource-metrics.js';
import { formatRfc3339 } from '../../kubelet/time.js';

export interface Usage {
  /** Cumulative CPU, in core-nanoseconds. */
  readonly cpuNs: number;
  readonly workingSetBytes: number;
  readonly usageBytes: number;
  readonly rssBytes: number;
  readonly processes: number;
}

export interface ContainerInput {
  readonly name: string;
  readonly startedAt: Date;
  readonly usage: Usage;
}

export interface PodInput {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly startTime: Date;
  readonly containers: readonly ContainerInput[];
  readonly usage: Usage;
}

/**
 * The usage of every pod that is not terminal and has running containers: from their cgroups,
 * else from /proc for each container's process tree (working set = RSS there).
 */
export function podUsage(runners: Iterable<PodRunner>, cg: Cgroups | undefined): PodInput[] {
  const out: PodInput[] = [];
  for (const runner of runners) {
    if (runner.terminal) continue;
    const uid = runner.record.pod.metadata?.uid ?? '';
    const containers = runner.record.containers
      .filter((c) => c.state.kind === 'running' && c.run)
      .map((c) => {
        const main = runner.findMain(c);
        let usage: Usage | undefined = cg?.usage(uid, c.name);
        if (!usage) {
          const pids = main ? descendants(main.pid) : [];
          const u = processUsage(pids);
          usage = {
            cpuNs: u.cpuNs,
            workingSetBytes: u.rssBytes,
            usageBytes: u.rssBytes,
            rssBytes: u.rssBytes,
            processes: pids.length,
          };
        }
        return { name: c.name, startedAt: new Date(c.run?.startedAt ?? 0), usage };
      });
    if (containers.length === 0) continue;
    const sum = containers.reduce(
      (a, c) => ({
        cpuNs: a.cpuNs + c.usage.cpuNs,
        workingSetBytes: a.workingSetBytes + c.usage.workingSetBytes,
        usageBytes: a.usageBytes + c.usage.usageBytes,
        rssBytes: a.rssBytes + c.usage.rssBytes,
        processes: a.processes + c.usage.processes,
      }),
      { cpuNs: 0, workingSetBytes: 0, usageBytes: 0, rssBytes: 0, processes: 0 },
    );
    const meta = runner.record.pod.metadata;
    out.push({
      namespace: meta?.namespace ?? '',
      name: meta?.name ?? '',
      uid,
      startTime: new Date(runner.record.startTime),
      containers,
      usage: cg?.usage(uid) ?? sum,
    });
  }
  return out;
}

/** Keeps the previous cumulative CPU per key, to turn counters into rates. */
export class RateTracker {
  readonly #last = new Map<string, { cpuNs: number; at: number }>();

  /** Nanocores of `key` since its last sample (0 for the first sample). */
  rate(key: string, cpuNs: number, at: number): number {
    const prev = this.#last.get(key);
    this.#last.set(key, { cpuNs, at });
    if (!prev || at <= prev.at || cpuNs < prev.cpuNs) return 0;
    return Math.round(((cpuNs - prev.cpuNs) / ((at - prev.at) * 1e6)) * 1e9);
  }

  /** Drops keys not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const k of this.#last.keys()) if (!keep.has(k)) this.#last.delete(k);
  }
}

/** The node's cumulative CPU (all cores, busy time) and memory from /proc. */
export function nodeUsage(): {
  cpuNs: number;
  workingSetBytes: number;
  availableBytes: number;
  totalBytes: number;
} {
  const stat = readFileSync('/proc/stat', 'utf8');
  const fields = (stat.split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  const busy = fields.slice(0, 8).reduce((a, b, i) => (i === 3 || i === 4 ? a : a + b), 0);
  const mem = new Map(
    readFileSync('/proc/meminfo', 'utf8')
      .split('\n')
      .map((l) => /^(\w+):\s+(\d+)/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1] ?? '', Number(m[2]) * 1024]),
  );
  const total = mem.get('MemTotal') ?? 0;
  const available = mem.get('MemAvailable') ?? 0;
  return {
    cpuNs: (busy * 1e9) / CLOCK_TICKS,
    workingSetBytes: total - available,
    availableBytes: available,
    totalBytes: total,
  };
}

export interface Snapshot {
  readonly time: Date;
  readonly nodeName: string;
  readonly nodeStartTime: Date;
  readonly node: Usage & { readonly availableBytes: number; readonly nanoCores: number };
  readonly pods: readonly (PodInput & {
    readonly nanoCores: number;
    readonly containerNanoCores: readonly number[];
  })[];
}

/** Takes rates for everything in `pods` and the node at `time`. */
export function snapshot(
  nodeName: string,
  nodeStartTime: Date,
  pods: readonly PodInput[],
  rates: RateTracker,
  time: Date = new Date(),
): Snapshot {
  const at = time.getTime();
  const n = nodeUsage();
  const keep = new Set<string>(['node']);
  const out = pods.map((p) => {
    const key = `${p.namespace}/${p.name}/${p.uid}`;
    keep.add(key);
    return {
      ...p,
      nanoCores: rates.rate(key, p.usage.cpuNs, at),
      containerNanoCores: p.containers.map((c) => {
        keep.add(`${key}/${c.name}`);
        return rates.rate(`${key}/${c.name}`, c.usage.cpuNs, at);
      }),
    };
  });
  const node = {
    cpuNs: n.cpuNs,
    workingSetBytes: n.workingSetBytes,
    usageBytes: n.workingSetBytes,
    rssBytes: n.workingSetBytes,
    processes: 0,
    availableBytes: n.availableBytes,
    nanoCores: rates.rate('node', n.cpuNs, at),
  };
  rates.retain(keep);
  return { time, nodeName, nodeStartTime, node, pods: out };
}

const cpu = (cpuNs: number, nanoCores: number, time: string): CPUStats =>
  summaryCpuStats(time, nanoCores, Math.round(cpuNs));
const memory = (u: Usage, time: string): MemoryStats => summaryMemoryStats(time, u);

/** The Summary (`stats.k8s.io/v1alpha1`). */
export function statsSummary(s: Snapshot): Summary {
  const time = formatRfc3339(s.time);
  return {
    node: {
      nodeName: s.nodeName,
      startTime: formatRfc3339(s.nodeStartTime),
      cpu: cpu(s.node.cpuNs, s.node.nanoCores, time),
      memory: { ...memory(s.node, time), availableBytes: s.node.availableBytes },
    },
    pods: s.pods.map((p) => ({
      podRef: { name: p.name, namespace: p.namespace, uid: p.uid },
      startTime: formatRfc3339(p.startTime),
      containers: p.containers.map((c, i) => ({
        name: c.name,
        startTime: formatRfc3339(c.startedAt),
        cpu: cpu(c.usage.cpuNs, p.containerNanoCores[i] ?? 0, time),
        memory: memory(c.usage, time),
      })),
      cpu: cpu(p.usage.cpuNs, p.nanoCores, time),
      memory: memory(p.usage, time),
      process_stats: { process_count: p.usage.processes },
    })),
  };
}

/** `/metrics/resource` as the kubelet writes it (see kubelet/resource-metrics.ts). */
export function metricsResource(s: Snapshot): string {
  const usage = (u: Usage): ResourceUsage => ({
    usageCoreNanoSeconds: u.cpuNs,
    workingSetBytes: u.workingSetBytes,
  });
  return formatResourceMetrics({
    timeMs: s.time.getTime(),
    node: usage(s.node),
    pods: s.pods.map((p) => ({
      namespace: p.namespace,
      name: p.name,
      usage: usage(p.usage),
      containers: p.containers.map((c) => ({
        name: c.name,
        startTimeMs: c.startedAt.getTime(),
        usage: usage(c.usage),
      })),
    })),
  });
}

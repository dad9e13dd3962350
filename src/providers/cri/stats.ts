/**
 * Pod and container usage from the runtime's ListContainerStats (containerd 1.6 has no
 * ListPodSandboxStats: a pod's figures are the sums of its containers'), and the node's from
 * the machine.
 */
import { cpus, freemem, totalmem, uptime } from 'node:os';
import { formatResourceMetrics } from '../../kubelet/resource-metrics.js';
import type { ContainerStats, PodStats, Summary } from '../../provider.js';
import { nanosToIso, type Message } from './client.js';

/** One container's figures, as the runtime reports them. */
export interface ContainerSample {
  readonly podNamespace: string;
  readonly podName: string;
  readonly podUid: string;
  readonly container: string;
  readonly timeMs: number;
  readonly usageCoreNanoSeconds: number;
  readonly usageNanoCores?: number;
  readonly workingSetBytes: number;
  readonly usageBytes?: number;
  readonly rssBytes?: number;
}

const u64 = (v: unknown): number | undefined => {
  const value = (v as { value?: string } | null | undefined)?.value;
  return value === undefined ? undefined : Number(value);
};

/** The samples of a ListContainerStats answer (containers without CPU figures left out). */
export function containerSamples(stats: readonly Message[]): ContainerSample[] {
  const out: ContainerSample[] = [];
  for (const s of stats) {
    const attrs = s.attributes as { labels?: Record<string, string> } | undefined;
    const labels = attrs?.labels ?? {};
    const cpu = s.cpu as { timestamp?: string; usage_core_nano_seconds?: unknown } | null;
    const mem = s.memory as Record<string, unknown> | null;
    const cpuNs = u64(cpu?.usage_core_nano_seconds);
    if (cpuNs === undefined) continue;
    const nanoCores = u64((cpu as Record<string, unknown>).usage_nano_cores);
    const usageBytes = u64(mem?.usage_bytes);
    const rssBytes = u64(mem?.rss_bytes);
    out.push({
      podNamespace: labels['io.kubernetes.pod.namespace'] ?? '',
      podName: labels['io.kubernetes.pod.name'] ?? '',
      podUid: labels['io.kubernetes.pod.uid'] ?? '',
      container: labels['io.kubernetes.container.name'] ?? '',
      timeMs: Number(BigInt(cpu?.timestamp ?? '0') / 1_000_000n) || Date.now(),
      usageCoreNanoSeconds: cpuNs,
      ...(nanoCores === undefined ? {} : { usageNanoCores: nanoCores }),
      workingSetBytes: u64(mem?.working_set_bytes) ?? 0,
      ...(usageBytes === undefined ? {} : { usageBytes }),
      ...(rssBytes === undefined ? {} : { rssBytes }),
    });
  }
  return out;
}

/** The machine's cumulative CPU (all cores, core-nanoseconds) and memory in use. */
function nodeUsage(): { usageCoreNanoSeconds: number; workingSetBytes: number } {
  const ms = cpus().reduce(
    (sum, c) => sum + c.times.user + c.times.nice + c.times.sys + c.times.irq,
    0,
  );
  return { usageCoreNanoSeconds: ms * 1e6, workingSetBytes: totalmem() - freemem() };
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The Summary API's answer: the node, then one entry per pod with running containers. */
export function summaryOf(
  nodeName: string,
  samples: readonly ContainerSample[],
  startTimes: ReadonlyMap<string, { pod: string; containers: ReadonlyMap<string, unknown> }>,
): Summary {
  const now = Date.now();
  const node = nodeUsage();
  const pods = new Map<string, ContainerSample[]>();
  for (const s of samples) pods.set(s.podUid, [...(pods.get(s.podUid) ?? []), s]);
  const podStats: PodStats[] = [...pods.entries()].map(([uid, cs]) => {
    const first = cs[0];
    const time = iso(first?.timeMs ?? now);
    const containers: ContainerStats[] = cs.map((c) => ({
      name: c.container,
      startTime:
        nanosToIso(startTimes.get(uid)?.containers.get(c.container)) ??
        startTimes.get(uid)?.pod ??
        time,
      cpu: {
        time,
        usageCoreNanoSeconds: c.usageCoreNanoSeconds,
        ...(c.usageNanoCores === undefined ? {} : { usageNanoCores: c.usageNanoCores }),
      },
      memory: {
        time,
        workingSetBytes: c.workingSetBytes,
        ...(c.usageBytes === undefined ? {} : { usageBytes: c.usageBytes }),
        ...(c.rssBytes === undefined ? {} : { rssBytes: c.rssBytes }),
      },
    }));
    const sum = (f: (c: ContainerSample) => number | undefined): number =>
      cs.reduce((t, c) => t + (f(c) ?? 0), 0);
    return {
      podRef: { name: first?.podName ?? '', namespace: first?.podNamespace ?? '', uid },
      startTime: startTimes.get(uid)?.pod ?? time,
      containers,
      cpu: {
        time,
        usageCoreNanoSeconds: sum((c) => c.usageCoreNanoSeconds),
        usageNanoCores: sum((c) => c.usageNanoCores),
      },
      memory: { time, workingSetBytes: sum((c) => c.workingSetBytes) },
    };
  });
  const time = iso(now);
  return {
    node: {
      nodeName,
      startTime: iso(now - uptime() * 1000),
      cpu: { time, usageCoreNanoSeconds: node.usageCoreNanoSeconds },
      memory: {
        time,
        workingSetBytes: node.workingSetBytes,
        availableBytes: freemem(),
        usageBytes: node.workingSetBytes,
      },
    },
    pods: podStats,
  };
}

/** `/metrics/resource` from the same samples. */
export function resourceMetricsOf(
  samples: readonly ContainerSample[],
  startTimes: ReadonlyMap<string, { pod: string; containers: ReadonlyMap<string, unknown> }>,
): string {
  const pods = new Map<string, ContainerSample[]>();
  for (const s of samples) pods.set(s.podUid, [...(pods.get(s.podUid) ?? []), s]);
  return formatResourceMetrics({
    timeMs: Date.now(),
    node: nodeUsage(),
    pods: [...pods.entries()].map(([uid, cs]) => ({
      namespace: cs[0]?.podNamespace ?? '',
      name: cs[0]?.podName ?? '',
      usage: {
        usageCoreNanoSeconds: cs.reduce((t, c) => t + c.usageCoreNanoSeconds, 0),
        workingSetBytes: cs.reduce((t, c) => t + c.workingSetBytes, 0),
      },
      containers: cs.map((c) => {
        const started = nanosToIso(startTimes.get(uid)?.containers.get(c.container));
        return {
          name: c.container,
          startTimeMs: started ? Date.parse(started) : c.timeMs,
          usage: {
            usageCoreNanoSeconds: c.usageCoreNanoSeconds,
            workingSetBytes: c.workingSetBytes,
          },
        };
      }),
    })),
  });
}

// What the process provider's pod network costs per pod, from the medians of the two process
// systems of one scenario run: `ours-process-cni` (a network namespace and CNI ADD/DEL per pod)
// against `ours-process-host` (pods on the host's network, the same otherwise).
import { fixed, table } from './util.js';

/** The figures compared: per-pod create-to-Running percentiles and time to all Running. */
export interface NetworkFigures {
  readonly p50Ms?: number;
  readonly p90Ms?: number;
  readonly p99Ms?: number;
  readonly seconds?: number;
}

export interface NetworkCost {
  /** cni / host of each figure. */
  readonly ratio: Record<keyof NetworkFigures, number | undefined>;
  /** cni - host of each figure (ms for the percentiles, s for `seconds`). */
  readonly difference: Record<keyof NetworkFigures, number | undefined>;
}

const KEYS = ['p50Ms', 'p90Ms', 'p99Ms', 'seconds'] as const;

export function networkCost(cni: NetworkFigures, host: NetworkFigures): NetworkCost {
  const ratio = {} as Record<keyof NetworkFigures, number | undefined>;
  const difference = {} as Record<keyof NetworkFigures, number | undefined>;
  for (const k of KEYS) {
    const a = cni[k];
    const b = host[k];
    ratio[k] = a === undefined || b === undefined || b === 0 ? undefined : a / b;
    difference[k] = a === undefined || b === undefined ? undefined : a - b;
  }
  return { ratio, difference };
}

/** The table of a report: cni, host, cni/host and cni - host. */
export function networkCostTable(cni: NetworkFigures, host: NetworkFigures): string {
  const cost = networkCost(cni, host);
  const row = (name: string, f: NetworkFigures, digits: number): string[] => [
    name,
    ...KEYS.map((k) => fixed(f[k], k === 'seconds' ? 2 : digits)),
  ];
  return table([
    ['pod network', 'p50 ms', 'p90 ms', 'p99 ms', 'all Running s'],
    row('cni', cni, 0),
    row('host', host, 0),
    ['cni/host', ...KEYS.map((k) => fixed(cost.ratio[k], 2))],
    row('cni - host', cost.difference, 0),
  ]);
}

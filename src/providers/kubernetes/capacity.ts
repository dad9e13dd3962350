/**
 * The capacity a virtual node offers for a remote cluster: the allocatable resources of the
 * remote nodes that are Ready and schedulable, minus the requests of the non-terminal pods that
 * run on them (the virtual node's own offloaded pods excepted: the local scheduler counts those
 * against the virtual node already).
 */
import { parseQuantity } from '../../kubelet/quantity.js';
import type { V1Container, V1Node, V1Pod } from '../../wire.js';
import { ORIGIN_NODE } from './translate.js';

/** The resources reported: cpu in cores, memory and ephemeral-storage in bytes, pods. */
const RESOURCES = ['cpu', 'memory', 'pods', 'ephemeral-storage'] as const;

const usable = (node: V1Node): boolean =>
  node.spec?.unschedulable !== true &&
  node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

const sumRequests = (containers: readonly V1Container[] | undefined): Map<string, number> => {
  const out = new Map<string, number>();
  for (const c of containers ?? [])
    for (const [r, q] of Object.entries(c.resources?.requests ?? {}))
      out.set(r, (out.get(r) ?? 0) + parseQuantity(q));
  return out;
};

/** A pod's effective requests, as the scheduler computes them (init containers' maximum). */
export function podRequests(pod: V1Pod): Map<string, number> {
  const total = sumRequests(pod.spec?.containers);
  for (const c of pod.spec?.initContainers ?? [])
    for (const [r, q] of Object.entries(c.resources?.requests ?? {}))
      total.set(r, Math.max(total.get(r) ?? 0, parseQuantity(q)));
  for (const [r, q] of Object.entries(pod.spec?.overhead ?? {}))
    total.set(r, (total.get(r) ?? 0) + parseQuantity(q));
  total.set('pods', 1);
  return total;
}

/** Quantity text for `resource` (cpu in millicores, the others as integers). */
function format(resource: string, value: number): string {
  const v = Math.max(0, value);
  return resource === 'cpu' ? `${String(Math.floor(v * 1000))}m` : String(Math.floor(v));
}

/**
 * Free capacity of `nodes` given `pods` (every pod of the remote cluster, or at least those on
 * `nodes`), for the virtual node `nodeName`. Nodes that are not Ready or are cordoned count for
 * nothing; so does a resource no usable node reports.
 */
export function freeCapacity(
  nodes: readonly V1Node[],
  pods: readonly V1Pod[],
  nodeName: string,
): Record<string, string> {
  const names = new Set(nodes.filter(usable).map((n) => n.metadata?.name ?? ''));
  const free = new Map<string, number>(RESOURCES.map((r) => [r, 0]));
  for (const n of nodes) {
    if (!names.has(n.metadata?.name ?? '')) continue;
    for (const r of RESOURCES) {
      const q = n.status?.allocatable?.[r];
      if (q !== undefined) free.set(r, (free.get(r) ?? 0) + parseQuantity(q));
    }
  }
  for (const p of pods) {
    if (!names.has(p.spec?.nodeName ?? '')) continue;
    if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
    if (p.metadata?.labels?.[ORIGIN_NODE] === nodeName) continue;
    for (const [r, v] of podRequests(p)) if (free.has(r)) free.set(r, (free.get(r) ?? 0) - v);
  }
  return Object.fromEntries([...free].map(([r, v]) => [r, format(r, v)]));
}

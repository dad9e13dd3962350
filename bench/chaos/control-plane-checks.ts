// What the control-plane scenarios (kill-restart, apiserver-outage, etcd-restart,
// controller-manager-down) share: a namespace with pods bound to the agent's node, waits that
// survive an outage, and the checks of what must not have been written (pods deleted or Failed,
// taints, a node not Ready).
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { PodTracker, podBody, withRetries } from '../common.js';
import type { ChaosAgent, ChaosContext } from './types.js';

interface Pod {
  readonly metadata: { readonly name: string; readonly uid?: string; deletionTimestamp?: string };
  readonly status?: { readonly phase?: string };
}

interface Node {
  readonly spec?: { readonly taints?: readonly { key: string; effect: string }[] };
  readonly status?: {
    readonly conditions?: readonly { type: string; status: string; lastHeartbeatTime?: string }[];
  };
}

interface Lease {
  readonly spec?: { readonly renewTime?: string };
}

/** A fresh namespace whose default service account exists (pods are refused before). */
export async function podNamespace(ctx: ChaosContext): Promise<string> {
  const name = `${ctx.name}-${randomBytes(3).toString('hex')}`;
  await ctx.client.request('POST', '/api/v1/namespaces', { body: { metadata: { name } } });
  const deadline = performance.now() + 60_000;
  while (!(await ctx.client.get(`/api/v1/namespaces/${name}/serviceaccounts/default`))) {
    if (performance.now() > deadline) throw new Error(`no default service account in ${name}`);
    await delay(200, undefined, { signal: ctx.signal });
  }
  return name;
}

/** Creates `count` pods bound to `nodeName`, `concurrency` requests at a time. */
export async function createPods(
  ctx: ChaosContext,
  namespace: string,
  nodeName: string,
  count: number,
  concurrency = 32,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const name = `pod-${String(next++).padStart(4, '0')}`;
      await withRetries(
        () =>
          ctx.client.request('POST', `/api/v1/namespaces/${namespace}/pods`, {
            body: podBody(name, nodeName, ctx.name),
          }),
        ctx.signal,
      );
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Waits (through a watch) until `count` pods of the namespace are Running; seconds taken. */
export async function waitRunning(
  ctx: ChaosContext,
  namespace: string,
  count: number,
  agent: ChaosAgent,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  const tracker = new PodTracker(ctx.client, namespace);
  await tracker.start();
  try {
    await tracker.until(
      () => tracker.phases() === `Running ${String(count)}`,
      timeoutMs,
      ctx.signal,
      () => {
        const exit = agent.exited();
        if (exit) throw new Error(`the agent ${exit} (log ${agent.logPath})`);
      },
    );
  } catch (err) {
    throw new Error(
      `not all ${String(count)} pods Running after ${String(timeoutMs / 1000)} s (${tracker.phases()}): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  } finally {
    await tracker.stop();
  }
  return (performance.now() - started) / 1000;
}

/** What a list of the namespace's pods shows against what should be there. */
export interface PodCheck {
  readonly pods: number;
  readonly running: number;
  /** Pods of `expected` not in the list, or in it with a deletion timestamp. */
  readonly deleted: number;
  readonly failed: number;
}

export async function checkPods(
  ctx: ChaosContext,
  namespace: string,
  expected: number,
): Promise<PodCheck> {
  const list = await withRetries(
    () =>
      ctx.client.request<{ items: Pod[] }>('GET', `/api/v1/namespaces/${namespace}/pods`, {
        signal: ctx.signal,
      }),
    ctx.signal,
  );
  const items = list.items;
  const deleting = items.filter((p) => p.metadata.deletionTimestamp !== undefined).length;
  return {
    pods: items.length,
    running: items.filter((p) => p.status?.phase === 'Running').length,
    deleted: Math.max(0, expected - items.length) + deleting,
    failed: items.filter((p) => p.status?.phase === 'Failed').length,
  };
}

/** The node's Ready status and its taints (`key:effect`), or undefined when unreachable. */
export async function nodeState(
  ctx: ChaosContext,
  nodeName: string,
): Promise<{ ready: boolean; taints: string[] } | undefined> {
  try {
    const node = await ctx.client.get<Node>(`/api/v1/nodes/${nodeName}`, ctx.signal);
    if (!node) return undefined;
    return {
      ready:
        node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
      taints: (node.spec?.taints ?? []).map((t) => `${t.key}:${t.effect}`).sort(),
    };
  } catch {
    return undefined;
  }
}

/**
 * Waits until the agent has renewed its Lease after `sinceMs` (a `Date.now()` time) and its
 * Node is Ready: the agent is back in touch with the control plane. Seconds from `sinceMs`, or
 * undefined after `timeoutMs`.
 */
export async function waitHeartbeat(
  ctx: ChaosContext,
  nodeName: string,
  sinceMs: number,
  timeoutMs: number,
): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  // Lease times have microseconds; the apiserver's clock is this machine's.
  const since = sinceMs - 1;
  while (Date.now() < deadline) {
    ctx.signal.throwIfAborted();
    const lease = await ctx.client
      .get<Lease>(
        `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`,
        ctx.signal,
      )
      .catch(() => undefined);
    const renewed = lease?.spec?.renewTime ? Date.parse(lease.spec.renewTime) : 0;
    if (renewed > since && (await nodeState(ctx, nodeName))?.ready)
      return (Date.now() - sinceMs) / 1000;
    await delay(250, undefined, { signal: ctx.signal });
  }
  return undefined;
}

/** Seconds rounded to tenths, for the table. */
export const tenths = (seconds: number): number => Math.round(seconds * 10) / 10;

/** Problems found, joined for `reason`; undefined when there are none. */
export function reasons(problems: readonly (string | false | undefined)[]): string | undefined {
  const found = problems.filter((p): p is string => typeof p === 'string');
  return found.length > 0 ? found.join('; ') : undefined;
}

/**
 * The common start of the control-plane scenarios: an agent Ready, `count` pods Running on it
 * in a namespace of the scenario's own, and the Node's taints before the fault.
 */
export async function runningPods(
  ctx: ChaosContext,
  count: number,
): Promise<{ agent: ChaosAgent; namespace: string; taintsBefore: readonly string[] }> {
  const agent = await ctx.startAgent();
  await ctx.waitReady(agent);
  const namespace = await podNamespace(ctx);
  await createPods(ctx, namespace, agent.nodeName, count);
  await waitRunning(ctx, namespace, count, agent, 300_000);
  const taintsBefore = (await nodeState(ctx, agent.nodeName))?.taints ?? [];
  return { agent, namespace, taintsBefore };
}

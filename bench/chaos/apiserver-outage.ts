// apiserver-outage: kube-apiserver stopped for 30 s (short: 10 s) with 500 pods Running (short:
// 50), then started again on the same port. The agent must stay up, renew its Lease with its Node
// Ready within one lease period (40 s) of the apiserver being ready, delete or fail no pod, and
// not relist in a loop. LIST requests are counted from the new apiserver's own
// `apiserver_request_total{verb="LIST"}` (its counters start with the process, so they hold
// exactly what came after the outage) for pods and nodes, over the window from its start to the
// end of the settle period: that is every client (the agent, the controller manager, the
// scheduler; the scenario itself lists nothing in the window), so a storm by any of them shows.
// WATCH requests are reported beside them: Go clients of this version open their informers with a
// streaming watch (sendInitialEvents) instead of a LIST, so their relists count there.
import { diffCounts, requestCounts } from '../common.js';
import {
  checkPods,
  nodeState,
  reasons,
  runningPods,
  tenths,
  waitHeartbeat,
} from './control-plane-checks.js';
import { setTimeout as delay } from 'node:timers/promises';
import type { ChaosContext, ScenarioResult } from './types.js';

const LEASE_SECONDS = 40;
/**
 * More LIST requests for pods and nodes than this after the outage is a storm: each informer of
 * each client relists at most once or twice (the agent's pods, the controller manager's and the
 * scheduler's pods and nodes).
 */
const MAX_LISTS = 30;

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const count = ctx.short ? 50 : 500;
  const outageMs = ctx.short ? 10_000 : 30_000;
  const settleMs = ctx.short ? 15_000 : 30_000;
  const { agent, namespace, taintsBefore } = await runningPods(ctx, count);

  ctx.log(`stopping kube-apiserver for ${String(outageMs / 1000)} s with ${String(count)} pods`);
  await ctx.cluster.stopComponent('kube-apiserver');
  await delay(outageMs, undefined, { signal: ctx.signal });
  const agentUpDuringOutage = agent.exited() === undefined;
  await ctx.cluster.startComponent('kube-apiserver', ctx.signal);
  const backAt = Date.now();
  ctx.log('kube-apiserver ready again');

  const heartbeat = await waitHeartbeat(ctx, agent.nodeName, backAt, 120_000);
  const left = settleMs - (Date.now() - backAt);
  if (left > 0) await delay(left, undefined, { signal: ctx.signal });
  // Read before the scenario's own list below.
  const counts = diffCounts(new Map(), await requestCounts(ctx.client)) ?? {};
  const listPods = counts['LIST pods'] ?? 0;
  const listNodes = counts['LIST nodes'] ?? 0;
  const watchPods = counts['WATCH pods'] ?? 0;
  const watchNodes = counts['WATCH nodes'] ?? 0;
  const check = await checkPods(ctx, namespace, count);
  const node = await nodeState(ctx, agent.nodeName);
  const agentUp = agent.exited() === undefined;
  const newTaints = (node?.taints ?? []).filter((t) => !taintsBefore.includes(t));

  const reason = reasons([
    !agentUpDuringOutage && `the agent ${agent.exited() ?? ''} during the outage`,
    !agentUp && `the agent ${agent.exited() ?? ''} after the outage`,
    heartbeat === undefined && 'no Lease renewal with the Node Ready after the outage',
    heartbeat !== undefined &&
      heartbeat > LEASE_SECONDS &&
      `Node Ready again only after ${String(tenths(heartbeat))} s`,
    node?.ready !== true && 'the Node is not Ready at the end',
    check.deleted > 0 && `${String(check.deleted)} pods deleted`,
    check.failed > 0 && `${String(check.failed)} pods Failed`,
    listPods + listNodes > MAX_LISTS &&
      `${String(listPods + listNodes)} LIST requests after the outage (a relist storm)`,
    newTaints.length > 0 && `taints appeared: ${newTaints.join(', ')}`,
  ]);
  return {
    ok: reason === undefined,
    ...(reason === undefined ? {} : { reason }),
    pods: count,
    outageSeconds: outageMs / 1000,
    agentUp,
    secondsToNodeReady: heartbeat === undefined ? -1 : tenths(heartbeat),
    leasePeriodSeconds: LEASE_SECONDS,
    listPodsAfterOutage: listPods,
    listNodesAfterOutage: listNodes,
    watchPodsAfterOutage: watchPods,
    watchNodesAfterOutage: watchNodes,
    listWindowSeconds: tenths((Date.now() - backAt) / 1000),
    podsDeleted: check.deleted,
    podsFailed: check.failed,
    podsRunning: check.running,
    newTaints: newTaints.join(',') || 'none',
  };
}

// controller-manager-down: kube-controller-manager stopped for 2 minutes (short: 20 s) with 100
// pods Running (short: 20), then started again. The node lifecycle controller lives there, so
// while it is down nobody judges the node: the agent alone writes, and must write nothing wrong
// (no pod deleted or Failed, the Node Ready, its Lease renewed). Once it is back it finds fresh
// Leases: no taint may appear and nothing may change wrongly in the settle period after.
import { setTimeout as delay } from 'node:timers/promises';
import {
  checkPods,
  nodeState,
  reasons,
  runningPods,
  tenths,
  waitHeartbeat,
} from './control-plane-checks.js';
import type { ChaosContext, ScenarioResult } from './types.js';

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const count = ctx.short ? 20 : 100;
  const downMs = ctx.short ? 20_000 : 120_000;
  const settleMs = ctx.short ? 15_000 : 60_000;
  const { agent, namespace, taintsBefore } = await runningPods(ctx, count);

  ctx.log(`stopping kube-controller-manager for ${String(downMs / 1000)} s`);
  await ctx.cluster.stopComponent('kube-controller-manager');
  const stoppedAt = Date.now();
  // Watched every 2 s while it is down: the Node Ready, no taint, the Lease renewed.
  let notReadySamples = 0;
  let samples = 0;
  const taintsSeen = new Set<string>();
  while (Date.now() - stoppedAt < downMs) {
    const node = await nodeState(ctx, agent.nodeName);
    samples++;
    if (node?.ready !== true) notReadySamples++;
    for (const t of node?.taints ?? []) if (!taintsBefore.includes(t)) taintsSeen.add(t);
    await delay(2_000, undefined, { signal: ctx.signal });
  }
  const renewedWhileDown = await waitHeartbeat(ctx, agent.nodeName, Date.now() - 15_000, 30_000);
  await ctx.cluster.startComponent('kube-controller-manager', ctx.signal);
  const backAt = Date.now();
  ctx.log('kube-controller-manager back');
  while (Date.now() - backAt < settleMs) {
    const node = await nodeState(ctx, agent.nodeName);
    samples++;
    if (node?.ready !== true) notReadySamples++;
    for (const t of node?.taints ?? []) if (!taintsBefore.includes(t)) taintsSeen.add(t);
    await delay(2_000, undefined, { signal: ctx.signal });
  }
  const check = await checkPods(ctx, namespace, count);
  const agentUp = agent.exited() === undefined;
  const newTaints = [...taintsSeen].sort();

  const reason = reasons([
    !agentUp && `the agent ${agent.exited() ?? ''}`,
    renewedWhileDown === undefined &&
      'the Lease was not renewed while the controller manager was down',
    notReadySamples > 0 && `the Node was not Ready in ${String(notReadySamples)} samples`,
    check.deleted > 0 && `${String(check.deleted)} pods deleted`,
    check.failed > 0 && `${String(check.failed)} pods Failed`,
    check.running < count && `${String(count - check.running)} pods not Running`,
    newTaints.length > 0 && `taints appeared: ${newTaints.join(', ')}`,
  ]);
  return {
    ok: reason === undefined,
    ...(reason === undefined ? {} : { reason }),
    pods: count,
    downSeconds: downMs / 1000,
    settleSeconds: settleMs / 1000,
    agentUp,
    nodeSamples: samples,
    nodeNotReadySamples: notReadySamples,
    leaseRenewedWhileDown: renewedWhileDown !== undefined,
    podsDeleted: check.deleted,
    podsFailed: check.failed,
    podsRunning: check.running,
    newTaints: newTaints.join(',') || 'none',
    secondsDown: tenths((backAt - stoppedAt) / 1000),
  };
}

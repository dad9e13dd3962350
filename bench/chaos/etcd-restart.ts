// etcd-restart: etcd stopped (SIGTERM) for 10 s (short: 5 s) and started again on the same data
// directory, with 100 pods Running (short: 20). The apiserver stays up and answers errors
// meanwhile. Nothing wrong may be written: no pod deleted or Failed, no new taint on the Node,
// the Node Ready again (a Lease renewal after etcd is back), the agent up.
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
  const outageMs = ctx.short ? 5_000 : 10_000;
  const settleMs = ctx.short ? 10_000 : 20_000;
  const { agent, namespace, taintsBefore } = await runningPods(ctx, count);

  ctx.log(`stopping etcd for ${String(outageMs / 1000)} s with ${String(count)} pods`);
  await ctx.cluster.stopComponent('etcd');
  await delay(outageMs, undefined, { signal: ctx.signal });
  await ctx.cluster.startComponent('etcd', ctx.signal);
  const backAt = Date.now();
  ctx.log('etcd back');

  const heartbeat = await waitHeartbeat(ctx, agent.nodeName, backAt, 120_000);
  const left = settleMs - (Date.now() - backAt);
  if (left > 0) await delay(left, undefined, { signal: ctx.signal });
  const check = await checkPods(ctx, namespace, count);
  const node = await nodeState(ctx, agent.nodeName);
  const agentUp = agent.exited() === undefined;
  const newTaints = (node?.taints ?? []).filter((t) => !taintsBefore.includes(t));

  const reason = reasons([
    !agentUp && `the agent ${agent.exited() ?? ''}`,
    heartbeat === undefined && 'no Lease renewal with the Node Ready after etcd came back',
    node?.ready !== true && 'the Node is not Ready at the end',
    check.deleted > 0 && `${String(check.deleted)} pods deleted`,
    check.failed > 0 && `${String(check.failed)} pods Failed`,
    check.running < count && `${String(count - check.running)} pods not Running`,
    newTaints.length > 0 && `taints appeared: ${newTaints.join(', ')}`,
  ]);
  return {
    ok: reason === undefined,
    ...(reason === undefined ? {} : { reason }),
    pods: count,
    outageSeconds: outageMs / 1000,
    agentUp,
    secondsToNodeReady: heartbeat === undefined ? -1 : tenths(heartbeat),
    podsDeleted: check.deleted,
    podsFailed: check.failed,
    podsRunning: check.running,
    newTaints: newTaints.join(',') || 'none',
  };
}

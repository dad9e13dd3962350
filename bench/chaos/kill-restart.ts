// kill-restart: the agent is killed (SIGKILL) a third of the way through a rollout of 1,000
// pods (short: 100) on the mock provider with 50 ms create latency and a state file that outlives
// the process, then, once every pod of the rollout exists in the API, started again under the
// same node name. Figures: how many times the provider started each pod (from the state file:
// every start of a pod UID is a line; the mock's create is idempotent per UID, so a second start
// means the agent deleted and created the pod again), pods lost (in the API but not running in
// the provider, or gone from the API), seconds from the restart to every pod Running, the new
// process's boot included (goal <= 15 s, reported, not asserted).
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { readMockState } from '../../src/providers/mock/index.js';
import { PodTracker } from '../common.js';
import {
  checkPods,
  createPods,
  podNamespace,
  reasons,
  tenths,
  waitRunning,
} from './control-plane-checks.js';
import type { ChaosContext, ScenarioResult } from './types.js';

const GOAL_SECONDS = 15;

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const count = ctx.short ? 100 : 1000;
  const stateFile = join(ctx.dir, 'mock-state.jsonl');
  const providerConfig = { stateFile, faults: { createPod: { latencyMs: 50 } } };
  const first = await ctx.startAgent({ providerConfig });
  const nodeName = first.nodeName;
  await ctx.waitReady(first);
  const namespace = await podNamespace(ctx);

  const tracker = new PodTracker(ctx.client, namespace);
  await tracker.start();
  let killedAt: number;
  let runningAtKill: number;
  try {
    const creating = createPods(ctx, namespace, nodeName, count);
    // Killed once the provider has started a third of the pods, by the state file: the rest are
    // in flight or queued, and some started pods have no status in the API yet.
    while (readMockState(stateFile).pods.size < count / 3) {
      const exit = first.exited();
      if (exit) throw new Error(`the agent ${exit} before it was killed (log ${first.logPath})`);
      await delay(20, undefined, { signal: ctx.signal });
    }
    runningAtKill = tracker.running;
    first.kill('SIGKILL');
    await first.exit;
    killedAt = performance.now();
    ctx.log(`agent killed with ${String(runningAtKill)} of ${String(count)} pods Running`);
    await creating;
  } finally {
    await tracker.stop();
  }
  const startedInProviderAtKill = readMockState(stateFile).pods.size;

  const restartAt = performance.now();
  const second = await ctx.startAgent({ nodeName, providerConfig });
  // From the start of the new process, its boot included.
  await waitRunning(ctx, namespace, count, second, 300_000);
  const secondsToAllRunning = (performance.now() - restartAt) / 1000;

  const state = readMockState(stateFile);
  const pods = await ctx.client.request<{ items: { metadata: { uid?: string } }[] }>(
    'GET',
    `/api/v1/namespaces/${namespace}/pods`,
  );
  const uids = pods.items.map((p) => p.metadata.uid ?? '');
  const createsPerPod = uids.map((uid) => state.creates.get(uid) ?? 0);
  const inProvider = new Set(
    [...state.pods.values()].map((p) => p.pod.metadata?.uid).filter(Boolean),
  );
  const check = await checkPods(ctx, namespace, count);
  const podsLost = check.deleted + uids.filter((uid) => !inProvider.has(uid)).length;
  const podsCreatedTwiceOrMore = createsPerPod.filter((n) => n > 1).length;
  const podsNeverCreated = createsPerPod.filter((n) => n === 0).length;
  const agentUp = second.exited() === undefined;

  const reason = reasons([
    podsCreatedTwiceOrMore > 0 && `${String(podsCreatedTwiceOrMore)} pods started more than once`,
    podsNeverCreated > 0 && `${String(podsNeverCreated)} pods never started in the provider`,
    podsLost > 0 && `${String(podsLost)} pods lost`,
    check.failed > 0 && `${String(check.failed)} pods Failed`,
    !agentUp && `the restarted agent ${second.exited() ?? ''}`,
  ]);
  return {
    ok: reason === undefined,
    ...(reason === undefined ? {} : { reason }),
    pods: count,
    runningAtKill,
    startedInProviderAtKill,
    secondsKillToRestart: tenths((restartAt - killedAt) / 1000),
    createsPerPodMin: Math.min(...createsPerPod),
    createsPerPodMax: Math.max(...createsPerPod),
    podsCreatedTwiceOrMore,
    podsLost,
    podsFailed: check.failed,
    secondsRestartToAllRunning: tenths(secondsToAllRunning),
    goalSeconds: GOAL_SECONDS,
    withinGoal: secondsToAllRunning <= GOAL_SECONDS,
  };
}

// provider-faults: the mock provider fails 30 % of its pod calls, answers each after 1 s, and
// never answers 1 % of them (until the caller's deadline aborts it). N pods must all get Running
// anyway; a hung call may delay its own pod only; retries per pod stay bounded; the agent's CPU
// while its provider fails is reported (goal: under 20 % of a core).
import { PodTracker, podBody, withRetries } from '../common.js';
import { forEachConcurrent, percentile } from '../util.js';
import { LIFECYCLE_METHODS } from '../../src/provider.js';
import { apiserverKubeletClient, kubeletRequest, sumByLabel } from './kubelet-client.js';
import { cpuMeter } from './proc.js';
import { createNamespace } from './namespace.js';
import type { ChaosContext, ScenarioResult } from './types.js';

/** The faults of every pod lifecycle call (ping stays healthy: the node must stay Ready). */
export const FAULT = { errorRate: 0.3, latencyMs: 1000, hangRate: 0.01 } as const;

/** createPod calls per pod the retries may take on average; 1 / (1 - 0.3) ≈ 1.4 is expected. */
export const MAX_CREATE_CALLS_PER_POD = 4;

const CPU_GOAL_PERCENT = 20;

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const n = ctx.short ? 50 : 500;
  const faults = Object.fromEntries(LIFECYCLE_METHODS.map((m) => [m, FAULT]));
  const agent = await ctx.startAgent({ providerConfig: { faults } });
  await ctx.waitReady(agent, 90_000);
  const namespace = 'chaos-faults';
  await createNamespace(ctx.client, namespace, ctx.signal);
  const tracker = new PodTracker(ctx.client, namespace);
  await tracker.start();
  const createdAt = new Map<string, number>();
  const pid = agent.pid ?? 0;
  const cpu = cpuMeter(pid);
  const t0 = performance.now();
  await forEachConcurrent(n, 16, async (i) => {
    const name = `faulty-${String(i).padStart(4, '0')}`;
    createdAt.set(name, performance.now());
    await withRetries(
      () =>
        ctx.client.request('POST', `/api/v1/namespaces/${namespace}/pods`, {
          body: podBody(name, agent.nodeName, 'faults'),
        }),
      ctx.signal,
    );
  });
  const timeoutMs = (ctx.short ? 180 : 900) * 1000;
  let converged = true;
  let lastReport = performance.now();
  try {
    await tracker.until(
      () => tracker.running >= n,
      timeoutMs,
      ctx.signal,
      () => {
        const exit = agent.exited();
        if (exit) throw new Error(`the agent ${exit}`);
        if (performance.now() - lastReport > 15_000) {
          lastReport = performance.now();
          ctx.log(`${String(tracker.running)}/${String(n)} Running (${tracker.phases()})`);
        }
      },
    );
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    converged = false;
    ctx.log(`not every pod Running: ${err instanceof Error ? err.message : String(err)}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpuPercent = cpu.stop();
  await tracker.stop();
  const latencies: number[] = [];
  for (const [name, at] of createdAt) {
    const running = tracker.runningAt(name);
    if (running !== undefined) latencies.push(running - at);
  }
  const p50 = percentile(latencies, 50);
  // A pod is "held" when it took far longer than most: what a hung call does to its own pod.
  const held = latencies.filter((l) => l > Math.max(5 * p50, 5000)).length;

  const metrics = await kubeletRequest(
    agent.port,
    '/metrics',
    await apiserverKubeletClient(ctx.info.pkiDir),
  );
  const byMethod = sumByLabel(
    metrics.body,
    'virtual_kubelet_provider_call_duration_seconds_count',
    'method',
  );
  const byResult = sumByLabel(
    metrics.body,
    'virtual_kubelet_provider_call_duration_seconds_count',
    'result',
  );
  const lifecycleCalls = LIFECYCLE_METHODS.reduce((s, m) => s + (byMethod.get(m) ?? 0), 0);
  const createCalls = byMethod.get('createPod') ?? 0;
  const createPerPod = createCalls / n;
  const alive = agent.exited() === undefined;
  const reasons: string[] = [];
  if (!alive) reasons.push(`the agent ${agent.exited() ?? ''}`);
  if (!converged)
    reasons.push(
      `${String(tracker.running)}/${String(n)} pods Running after ${String(timeoutMs / 1000)} s (${tracker.phases()}); a provider call that never answers holds its pod until a deadline ends it`,
    );
  if (metrics.status !== 200) reasons.push(`/metrics answered ${String(metrics.status)}`);
  else if (createPerPod > MAX_CREATE_CALLS_PER_POD)
    reasons.push(
      `${createPerPod.toFixed(2)} createPod calls per pod (more than ${String(MAX_CREATE_CALLS_PER_POD)})`,
    );
  if (!ctx.short && cpuPercent !== undefined && cpuPercent > CPU_GOAL_PERCENT)
    reasons.push(
      `agent CPU ${cpuPercent.toFixed(1)} % of a core (goal < ${String(CPU_GOAL_PERCENT)} %)`,
    );
  ctx.log(
    `${String(tracker.running)}/${String(n)} Running in ${seconds.toFixed(1)} s; createPod calls ${String(createCalls)} (${createPerPod.toFixed(2)}/pod), ` +
      `lifecycle calls ${String(lifecycleCalls)}, errors ${String(byResult.get('error') ?? 0)}; agent CPU ${cpuPercent?.toFixed(1) ?? '-'} %`,
  );
  return {
    ok: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    pods: n,
    running: tracker.running,
    convergeSeconds: Math.round(seconds * 10) / 10,
    p50Ms: Math.round(p50),
    p99Ms: Math.round(percentile(latencies, 99)),
    maxMs: Math.round(percentile(latencies, 100)),
    heldPods: held,
    createPodCallsPerPod: Math.round(createPerPod * 100) / 100,
    providerCallsPerPod: Math.round((lifecycleCalls / n) * 100) / 100,
    providerErrors: byResult.get('error') ?? 0,
    agentCpuPercent: cpuPercent === undefined ? 'n/a' : Math.round(cpuPercent * 10) / 10,
    agentAlive: alive,
  };
}

// bad-specs: the table of bad pod specs (test/helpers/bad-pod-specs.ts, the one the component
// test of the PodController sends to a stand-in API) sent to the real API server for a node of
// ours. Each spec must meet its expectation (`onCluster` where the API server's defaulting makes
// it another pod, else `expect`): a spec marked `rejectedByApiServer` gets a 4xx, any
// other is accepted and then Running, Pending (every container waiting with the given reason,
// and an Event with the given reason) or Failed (the pod's reason, and an Event). The agent must
// not crash, and a plain pod afterwards must still get Running.
import { setTimeout as delay } from 'node:timers/promises';
import type { CoreV1Event, V1Pod } from '../../src/wire.js';
import { ApiError } from '../../src/kube/client.js';
import {
  BAD_POD_SPECS,
  badSpecObjects,
  badSpecPod,
  type BadPodSpec,
} from '../../test/helpers/bad-pod-specs.js';
import { podBody, PodTracker } from '../common.js';
import { createNamespace } from './namespace.js';
import type { ChaosContext, ScenarioResult } from './types.js';

const NAMESPACE = 'chaos-bad-specs';

/**
 * Why `pod` (with the Event reasons recorded for it) does not meet `spec`'s expectation, or
 * undefined when it does.
 */
export function expectationMiss(
  spec: BadPodSpec,
  pod: V1Pod | undefined,
  eventReasons: ReadonlySet<string>,
): string | undefined {
  const expect = spec.onCluster ?? spec.expect;
  const status = pod?.status;
  const phase = status?.phase ?? 'none';
  if (phase !== expect.status) return `phase ${phase}, not ${expect.status}`;
  if (expect.status === 'Running') return undefined;
  if (expect.status === 'Failed' && status?.reason !== expect.reason)
    return `reason ${status?.reason ?? 'none'}, not ${expect.reason}`;
  if (expect.status === 'Pending') {
    const waiting = (status?.containerStatuses ?? []).map((c) => c.state?.waiting?.reason);
    if (waiting.length === 0 || waiting.some((r) => r !== expect.waiting))
      return `containers waiting ${JSON.stringify(waiting)}, not ${expect.waiting}`;
  }
  if (!eventReasons.has(expect.event)) return `no ${expect.event} Event`;
  return undefined;
}

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const specs = BAD_POD_SPECS;
  ctx.log(`${String(specs.length)} bad specs from test/helpers/bad-pod-specs.ts`);
  const agent = await ctx.startAgent();
  await ctx.waitReady(agent, 90_000);
  const pid = agent.pid;
  const c = ctx.client;
  await createNamespace(c, NAMESPACE, ctx.signal);
  const { configMap, secret } = badSpecObjects(NAMESPACE);
  await c.request('POST', `/api/v1/namespaces/${NAMESPACE}/configmaps`, { body: configMap });
  await c.request('POST', `/api/v1/namespaces/${NAMESPACE}/secrets`, { body: secret });

  const accepted: BadPodSpec[] = [];
  const rejected: string[] = [];
  const mismatches = new Map<string, string>();
  for (const spec of specs) {
    const body = badSpecPod(spec, NAMESPACE, agent.nodeName);
    // Every taint tolerated: the agent's NoSchedule taint and any NoExecute one.
    if (body.spec) body.spec.tolerations = [{ operator: 'Exists' }];
    try {
      await c.request('POST', `/api/v1/namespaces/${NAMESPACE}/pods`, { body });
      accepted.push(spec);
      if (spec.rejectedByApiServer) mismatches.set(spec.name, 'accepted by the API server');
    } catch (err) {
      if (!(err instanceof ApiError) || err.status >= 500) throw err;
      rejected.push(spec.name);
      if (!spec.rejectedByApiServer)
        mismatches.set(
          spec.name,
          `refused by the API server (${String(err.status)}: ${err.message.slice(0, 200)})`,
        );
    }
  }
  ctx.log(
    `accepted ${String(accepted.length)}, refused by the API server ${String(rejected.length)}`,
  );

  const deadline = performance.now() + (ctx.short ? 60_000 : 120_000);
  const misses = new Map<string, string>();
  for (;;) {
    misses.clear();
    const events = await c.request<{ items: CoreV1Event[] }>(
      'GET',
      `/api/v1/namespaces/${NAMESPACE}/events`,
    );
    const reasons = new Map<string, Set<string>>();
    for (const e of events.items) {
      const name = e.involvedObject.name ?? '';
      const set = reasons.get(name) ?? new Set<string>();
      set.add(e.reason ?? '');
      reasons.set(name, set);
    }
    const pods = await c.request<{ items: V1Pod[] }>('GET', `/api/v1/namespaces/${NAMESPACE}/pods`);
    const byName = new Map(pods.items.map((p) => [p.metadata?.name ?? '', p]));
    for (const spec of accepted) {
      const name = spec.pod.metadata?.name ?? '';
      const miss = expectationMiss(spec, byName.get(name), reasons.get(name) ?? new Set());
      if (miss !== undefined) misses.set(spec.name, miss);
    }
    if (misses.size === 0 || performance.now() > deadline || agent.exited()) break;
    await delay(2000, undefined, { signal: ctx.signal });
  }
  for (const [name, miss] of misses) {
    const flag = mismatches.get(name);
    mismatches.set(name, flag === undefined ? miss : `${flag}, then ${miss}`);
  }

  // The node still works: a plain pod gets Running.
  const tracker = new PodTracker(c, NAMESPACE);
  await tracker.start();
  await c.request('POST', `/api/v1/namespaces/${NAMESPACE}/pods`, {
    body: podBody('still-fine', agent.nodeName, 'bad-specs'),
  });
  let fine = true;
  try {
    await tracker.until(
      () => tracker.runningAt('still-fine') !== undefined,
      60_000,
      ctx.signal,
      () => undefined,
    );
  } catch {
    fine = false;
  }
  await tracker.stop();
  const alive = agent.exited() === undefined && agent.pid === pid;
  const reasons = [
    ...(alive ? [] : [`the agent ${agent.exited() ?? 'was restarted'}`]),
    ...[...mismatches].map(([name, why]) => `${name}: ${why}`),
    ...(fine ? [] : ['a plain pod did not get Running afterwards']),
  ];
  return {
    ok: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    specs: specs.length,
    accepted: accepted.length,
    rejected: rejected.length,
    matched: specs.length - mismatches.size,
    mismatches: mismatches.size,
    ...(mismatches.size > 0 ? { mismatched: [...mismatches.keys()].join(',') } : {}),
    crashes: alive ? 0 : 1,
    plainPodRunning: fine,
  };
}

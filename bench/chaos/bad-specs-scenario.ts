// bad-specs: bad pod specs sent to the real API server for a node of ours. The agent must not
// crash (alive, never restarted), and each pod the API server accepted must have an Event and a
// status reason (the pod's, a container's waiting or terminated one, or a false condition's).
// A pod that is fine afterwards must still get Running.
import { setTimeout as delay } from 'node:timers/promises';
import { ApiError } from '../../src/kube/client.js';
import { podBody, PodTracker } from '../common.js';
import { type BadPodSpec, LOCAL_BAD_POD_SPECS, LOCAL_MOCK_CONTAINERS } from './bad-specs-local.js';
import { createNamespace } from './namespace.js';
import type { ChaosContext, ScenarioResult } from './types.js';

const NAMESPACE = 'chaos-bad-specs';

interface PodSeen {
  readonly status?: {
    readonly phase?: string;
    readonly reason?: string;
    readonly conditions?: readonly { status?: string; reason?: string }[];
    readonly containerStatuses?: readonly {
      state?: { waiting?: { reason?: string }; terminated?: { reason?: string } };
    }[];
  };
}

/** The pod's reason as a person reading its status would find it, if any. */
export function statusReason(pod: PodSeen): string | undefined {
  const s = pod.status;
  if (!s) return undefined;
  if (s.reason) return s.reason;
  for (const c of s.containerStatuses ?? []) {
    const r = c.state?.waiting?.reason ?? c.state?.terminated?.reason;
    if (r) return r;
  }
  return (s.conditions ?? []).find((c) => c.status === 'False' && c.reason)?.reason;
}

/** The table: the larger shared one when it is in the tree, else the suite's own. */
async function badSpecs(): Promise<{ specs: readonly BadPodSpec[]; source: string }> {
  try {
    const mod = (await import(new URL('./bad-specs.js', import.meta.url).href)) as {
      BAD_POD_SPECS?: unknown;
    };
    if (Array.isArray(mod.BAD_POD_SPECS))
      return { specs: mod.BAD_POD_SPECS as BadPodSpec[], source: 'bench/chaos/bad-specs.ts' };
  } catch {
    // Not in the tree: the local table.
  }
  return { specs: LOCAL_BAD_POD_SPECS, source: 'bench/chaos/bad-specs-local.ts' };
}

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const { specs, source } = await badSpecs();
  ctx.log(`${String(specs.length)} bad specs from ${source}`);
  const agent = await ctx.startAgent({ providerConfig: { containers: LOCAL_MOCK_CONTAINERS } });
  await ctx.waitReady(agent, 90_000);
  const c = ctx.client;
  await createNamespace(c, NAMESPACE, ctx.signal);
  const accepted: string[] = [];
  const rejected: string[] = [];
  for (const bad of specs) {
    const body = {
      apiVersion: 'v1',
      kind: 'Pod',
      ...bad.pod,
      metadata: { ...bad.pod.metadata, name: bad.name },
      spec: {
        ...bad.pod.spec,
        nodeName: agent.nodeName,
        tolerations: [{ operator: 'Exists' }],
      },
    };
    try {
      await c.request('POST', `/api/v1/namespaces/${NAMESPACE}/pods`, { body });
      accepted.push(bad.name);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status >= 500) throw err;
      rejected.push(bad.name);
    }
  }
  ctx.log(
    `accepted ${String(accepted.length)}, refused by the API server ${String(rejected.length)} (${rejected.join(', ')})`,
  );
  const deadline = performance.now() + (ctx.short ? 60_000 : 120_000);
  const missing = new Map<string, string>();
  for (;;) {
    missing.clear();
    const events = await c.request<{ items: { involvedObject?: { name?: string } }[] }>(
      'GET',
      `/api/v1/namespaces/${NAMESPACE}/events`,
    );
    const withEvent = new Set(events.items.map((e) => e.involvedObject?.name));
    for (const name of accepted) {
      const pod = await c.get<PodSeen>(`/api/v1/namespaces/${NAMESPACE}/pods/${name}`);
      const reason = pod ? statusReason(pod) : undefined;
      const lacks = [
        ...(withEvent.has(name) ? [] : ['no Event']),
        ...(reason ? [] : [`no reason (phase ${pod?.status?.phase ?? 'none'})`]),
      ];
      if (lacks.length > 0) missing.set(name, lacks.join(', '));
    }
    if (missing.size === 0 || performance.now() > deadline || agent.exited()) break;
    await delay(2000, undefined, { signal: ctx.signal });
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
  const alive = agent.exited() === undefined;
  const reasons = [
    ...(alive ? [] : [`the agent ${agent.exited() ?? ''}`]),
    ...[...missing].map(([name, why]) => `${name}: ${why}`),
    ...(fine ? [] : ['a plain pod did not get Running afterwards']),
  ];
  return {
    ok: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    specs: specs.length,
    table: source,
    accepted: accepted.length,
    refused: rejected.length,
    withEventAndReason: accepted.length - missing.size,
    crashes: alive ? 0 : 1,
    plainPodRunning: fine,
  };
}

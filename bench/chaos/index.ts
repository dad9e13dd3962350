// Every scenario of the chaos suite, by name, in the order `--scenarios` defaults to. A module
// is loaded only when its scenario runs; one that is not in the tree yet reports `not built`.
import type { ScenarioModule } from './types.js';

export interface ScenarioEntry {
  readonly name: string;
  /** What it checks, one line. */
  readonly what: string;
  /** Runs only when `--scenarios` names it. */
  readonly onRequest?: boolean;
  /** The module, or why it cannot run (`not built: ...`). */
  load(): Promise<ScenarioModule | NotBuilt>;
}

/** A scenario whose module is not in the tree. */
export interface NotBuilt {
  readonly notBuilt: string;
}

/** A module that may not exist yet: its scenario then fails with `not built`. */
function optional(stem: string): () => Promise<ScenarioModule | NotBuilt> {
  return async () => {
    const url = new URL(`./${stem}.js`, import.meta.url).href;
    let mod: unknown;
    try {
      mod = await import(url);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      const message = err instanceof Error ? err.message : String(err);
      if (code === 'ERR_MODULE_NOT_FOUND' && message.includes(`${stem}.`))
        return notBuilt(`bench/chaos/${stem}.ts is not built`);
      throw err;
    }
    const run = (mod as { run?: unknown }).run;
    if (typeof run !== 'function') return notBuilt(`bench/chaos/${stem}.ts exports no run(ctx)`);
    return mod as ScenarioModule;
  };
}

const notBuilt = (reason: string): NotBuilt => ({ notBuilt: `not built: ${reason}` });

export const SCENARIOS: readonly ScenarioEntry[] = [
  {
    name: 'kill-restart',
    what: 'the agent killed (SIGKILL) under load and restarted: pods kept, none lost or doubled',
    load: optional('kill-restart'),
  },
  {
    name: 'apiserver-outage',
    what: 'kube-apiserver stopped and started again: the agent reconnects, its watches resume',
    load: optional('apiserver-outage'),
  },
  {
    name: 'etcd-restart',
    what: 'etcd restarted under the apiserver: the agent rides it out',
    load: optional('etcd-restart'),
  },
  {
    name: 'controller-manager-down',
    what: 'kube-controller-manager stopped: the node keeps its Lease and pods',
    load: optional('controller-manager-down'),
  },
  {
    name: 'provider-faults',
    what: 'the mock with 30 % errors, 1 s latency, 1 % hung calls: every pod Running, retries bounded',
    load: () => import('./provider-faults.js'),
  },
  {
    name: 'bad-specs',
    what: 'the shared table of bad pod specs: each refused, or its status and Event as expected; no crash',
    load: () => import('./bad-specs-scenario.js'),
  },
  {
    name: 'fuzz',
    what: 'random HTTP, SPDY and WebSocket traffic at the kubelet port: no crash, no leak',
    load: () => import('./fuzz.js'),
  },
  {
    name: 'authz-matrix',
    what: 'every kubelet route against six identities: 401/403/allowed as the kubelet decides',
    load: () => import('./authz-matrix.js'),
  },
  {
    name: 'soak',
    what: 'hours of churn: memory and descriptors flat',
    onRequest: true,
    load: optional('soak'),
  },
];

export const SCENARIO_NAMES: readonly string[] = SCENARIOS.map((s) => s.name);

/** `--scenarios a,b` as entries (default: all but the on-request ones), or what is unknown. */
export function pickScenarios(list: string | undefined): ScenarioEntry[] | string {
  if (list === undefined) return SCENARIOS.filter((s) => !s.onRequest);
  const names = list.split(',').filter(Boolean);
  const unknown = names.filter((n) => !SCENARIO_NAMES.includes(n));
  if (unknown.length > 0)
    return `unknown scenario(s) ${unknown.join(', ')}: choose from ${SCENARIO_NAMES.join(', ')}`;
  if (names.length === 0) return 'no scenario given';
  return SCENARIOS.filter((s) => names.includes(s.name));
}

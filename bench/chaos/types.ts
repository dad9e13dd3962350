// The contract between the chaos suite's runner (bench/chaos/run.ts) and its scenarios: each
// scenario is a module `bench/chaos/<name>.ts` exporting `run(ctx): Promise<ScenarioResult>`.
import type { ClusterInfo, DevCluster } from '../../src/devcluster/cluster.js';
import type { KubeClient } from '../../src/kube/client.js';

/** A figure of a result: a count, a duration, a name, or a yes/no. */
export type Figure = number | string | boolean;

/**
 * What a scenario found. `ok` says whether every correctness condition held (the suite's exit
 * status); `reason` says why not when it is false; every other key is a figure for the table
 * and the JSON (numbers with their unit in the name: `seconds`, `rssBytes`, `cpuPercent`).
 */
export interface ScenarioResult {
  readonly ok: boolean;
  readonly reason?: string;
  readonly [figure: string]: Figure | undefined;
}

/** How to start our agent. */
export interface AgentOptions {
  /** Default: a fresh name `chaos-<scenario>-<6 hex>`. Reuse a name to restart an agent. */
  readonly nodeName?: string;
  /** Default: `mock`. */
  readonly provider?: string;
  /** Written to a file passed as `--provider-config`; the mock gets a large capacity merged in. */
  readonly providerConfig?: Readonly<Record<string, unknown>>;
  /** Extra CLI arguments, after the ones the runner passes. */
  readonly args?: readonly string[];
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Our agent, `bin/virtual-kubelet` as its own process (dies with the runner), with a kubelet's
 * identity: a client certificate for `system:node:<nodeName>` (Node authorizer, NodeRestriction),
 * a serving certificate for its node from the cluster CA, `--client-ca-file` the cluster CA,
 * webhook authorization, `--node-ip 127.0.0.1` and a free `--listen-port`.
 */
export interface ChaosAgent {
  readonly nodeName: string;
  readonly pid: number | undefined;
  /** Its kubelet API port on 127.0.0.1. */
  readonly port: number;
  /** stdout and stderr. */
  readonly logPath: string;
  /** Its node kubeconfig (system:node:<nodeName>). */
  readonly kubeconfig: string;
  /** Why it is no longer running, or undefined while it runs. */
  exited(): string | undefined;
  /** Resolves when the process has exited, however. */
  readonly exit: Promise<void>;
  /** Sends a signal (e.g. SIGKILL for a crash) and returns at once. */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after 10 s; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
}

/** What a scenario gets; every scenario runs against a fresh dev cluster of its own. */
export interface ChaosContext {
  /** The scenario's name, e.g. `provider-faults`. */
  readonly name: string;
  /** The running control plane (its processes' pids are in `info.pids`). */
  readonly cluster: DevCluster;
  readonly info: ClusterInfo;
  /** An admin client without a rate limit. */
  readonly client: KubeClient;
  /** The admin kubeconfig's path (also `info.adminKubeconfig`). */
  readonly adminKubeconfig: string;
  /** A directory of the scenario's own for files and logs (kept when the scenario fails). */
  readonly dir: string;
  /** `--short`: the CI form (fewer pods, requests, seconds); assert correctness, never a time. */
  readonly short: boolean;
  /** Aborts on Ctrl-C; pass it to every wait. */
  readonly signal: AbortSignal;
  /** Starts our agent; stopped by the runner at the end if still running. */
  startAgent(options?: AgentOptions): Promise<ChaosAgent>;
  /** Waits until the Node's Ready condition is True; throws naming the agent's log tail. */
  waitReady(agent: ChaosAgent, timeoutMs?: number): Promise<void>;
  /** A progress line, prefixed with the scenario's name. */
  log(line: string): void;
}

/** A scenario module's shape. */
export interface ScenarioModule {
  run(ctx: ChaosContext): Promise<ScenarioResult>;
}

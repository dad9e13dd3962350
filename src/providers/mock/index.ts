/**
 * The mock provider: runs pods in memory, as the Go virtual-kubelet's mock does. Pods go straight
 * to Running; containers can be made to exit, and operations to be slow or to fail, through
 * `MockConfig`. Containers write a log, run a few built-in commands (exec), echo stdin (attach),
 * every pod port is an echo server (port-forward), and stats and `/metrics/resource` report
 * synthetic, non-zero usage. It is the provider the core's tests run against, in a push
 * (`notify: true`) and a polling (`notify: false`) variant.
 */
import type { V1Container, V1Node, V1NodeCondition, V1Pod, V1PodStatus } from '../../wire.js';
import type { Duplex, Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import {
  invalidInput,
  notFound,
  permanent,
  unavailable,
  type VirtualKubeletError,
} from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type {
  AttachStreams,
  ContainerAttach,
  ContainerExec,
  ContainerLogOptions,
  ContainerLogs,
  NodeConfigurer,
  NodeProvider,
  PodAddressProvider,
  PodAddresses as ContractPodAddresses,
  PortForwarder,
  Provider,
  StatsProvider,
  Summary,
} from '../../provider.js';
import { attach } from './attach.js';
import { DEFAULT_POD_CIDR, PodAddressPool } from './addresses.js';
import { ContainerRun } from './container-run.js';
import { KILLED_EXIT_CODE, run as runCommand, TerminalSizes } from './exec.js';
import { readLog } from './logs.js';
import { MockStateJournal, readMockState } from './state.js';
import { echo } from './port-forward.js';
import {
  cpuCoreNanoSeconds,
  metricsResource,
  statsSummary,
  takeSnapshot,
  type RunningPodInput,
  type Snapshot,
} from './stats.js';
import {
  parseMockConfig,
  type FaultError,
  type FaultOperation,
  type MockConfig,
} from './config.js';
import {
  addEphemeralStatuses,
  settle,
  startedStatus,
  stopContainer,
  terminatedState,
  type PodAddresses,
} from './status.js';
import { goArch } from '../../kubelet/go-arch.js';
import { parseQuantity } from '../../kubelet/quantity.js';
import { namespacedKey } from '../../kubelet/pod-key.js';
import { isTerminalPhase, withoutStatus } from '../../kubelet/pod-status.js';

export { MAX_LOG_LINES } from './logs.js';
export { DEFAULT_POD_CIDR } from './addresses.js';
export { readMockState, type MockState, type StoredPod } from './state.js';
export {
  FAULT_OPERATIONS,
  LOG_FILL_LINE_BYTES,
  MAX_LOG_FILL_BYTES,
  parseMockConfig,
  type FaultError,
  type FaultOperation,
  type MockConfig,
  type MockContainerBehaviour,
  type MockFault,
} from './config.js';

export interface MockProviderOptions {
  /** The name of the node the provider serves; it names the Node in `setNodeCondition`. */
  readonly nodeName: string;
  /** Capacity, addresses, faults and container behaviour; validated like a file. Default: `{}`. */
  readonly config?: MockConfig;
  /** Default: `silentLogger`. */
  readonly logger?: Logger;
  /**
   * Whether the provider pushes status changes. With `false` the instance has no `notifyPods`
   * at all, so `isPodNotifier()` is false and the core polls it. Default: true.
   */
  readonly notify?: boolean;
  /**
   * The time stamped on statuses and log lines, and the time stats are taken at (the node starts
   * at construction). Timers still run on real time. Default: `() => new Date()`.
   */
  readonly clock?: () => Date;
  /**
   * Decides injected faults: a call hangs when `random() < hangRate`, then fails when
   * `random() < errorRate`. Default: `Math.random`.
   */
  readonly random?: () => number;
}

interface Entry {
  /** The pod as last created or updated, without status. */
  pod: V1Pod;
  /** The status the provider reports; mutated in place, copied on the way out. */
  readonly status: V1PodStatus;
  /** Pending container exits, by container name. */
  readonly timers: Map<string, NodeJS.Timeout>;
  /** The runs of every container and init container, by name. */
  readonly runs: Map<string, Runs>;
  /** CPU used by the pod's stopped runs, in core-nanoseconds (see stats.ts). */
  retiredCpu: number;
  /** Fires when the pod goes away (stopped, forgotten, replaced) or the provider closes. */
  readonly gone: AbortController;
  /** While deletePod stops it: when its containers are all stopped (ms since the epoch). */
  stopAtMs?: number;
}

interface Runs {
  current: ContainerRun;
  /** The run before the last restart, for `previous` logs. */
  previous: ContainerRun | undefined;
}

const DEFAULTS = { cpu: '20', memory: '100Gi', pods: '110', ephemeralStorage: '100Gi' } as const;
const DEFAULT_HOST_IP = '127.0.0.1';
const DEFAULT_LOG_INTERVAL_MS = 1000;
/** Timer key of a pod whose containers are shutting down after deletePod. */
const STOPPING = '\u0000stopping';
/** A restarted container runs at least this long, so `exitAfterSeconds: 0` cannot spin. */
const MIN_RERUN_MS = 100;

const FAULT_FACTORIES: Record<FaultError, (message: string) => VirtualKubeletError> = {
  unavailable,
  permanent,
  invalidInput,
};

/** The pod's key, as kubelet/pod-key makes it; a pod without a namespace or name is refused. */
function requirePodKey(pod: V1Pod): string {
  const namespace = pod.metadata?.namespace;
  const name = pod.metadata?.name;
  if (!namespace || !name) throw invalidInput('the pod has no metadata.namespace or metadata.name');
  return namespacedKey(namespace, name);
}

/** Who holds an address: the pod's UID (or its key, for a pod without one). */
const holderOf = (pod: V1Pod, key: string): string => pod.metadata?.uid ?? `key:${key}`;

const view = (entry: Entry): V1Pod => structuredClone({ ...entry.pod, status: entry.status });

/** `fn()` as a promise: a throw becomes a rejection (`Promise.try`, which Node 20 lacks). */
const attempt = <T>(fn: () => T): Promise<T> =>
  new Promise((resolve) => {
    resolve(fn());
  });

/**
 * Runs pods in memory. Every method copies what it keeps and what it returns, so callers may do
 * what they like with their objects. `close()` clears every timer and ends every session; the
 * instance then starts no new pods.
 *
 * `notifyPods` is present only when the `notify` option is true (the default): the same class
 * serves as a push and as a polling provider, and `isPodNotifier()` tells them apart.
 */
export class MockProvider
  implements
    Provider,
    NodeProvider,
    NodeConfigurer,
    ContainerLogs,
    ContainerExec,
    ContainerAttach,
    PortForwarder,
    StatsProvider,
    PodAddressProvider
{
  /** Present only with `notify: true`; see the class comment. */
  declare readonly notifyPods?: (callback: (pod: V1Pod) => void) => void;

  readonly #nodeName: string;
  readonly #config: MockConfig;
  readonly #log: Logger;
  readonly #clock: () => Date;
  readonly #random: () => number;
  readonly #hostIP: string;
  /** Pod IPs by UID, from `podCIDR` (unused when `podIP` gives every pod the same). */
  readonly #pool: PodAddressPool;
  readonly #pods = new Map<string, Entry>();
  readonly #startedAt: Date;
  /** CPU used by every stopped run, in core-nanoseconds, so the node's counter never drops. */
  #retiredCpu = 0;
  // Aborts latency waits on close().
  readonly #closing = new AbortController();
  #podCallback: ((pod: V1Pod) => void) | undefined;
  #nodeCallback: ((node: V1Node) => void) | undefined;
  #node: V1Node | undefined;
  readonly #journal: MockStateJournal | undefined;

  /**
   * Throws `InvalidInput` for a bad configuration or an unreadable `stateFile`, whose pods it
   * reads (synchronously) and runs again.
   */
  constructor(options: MockProviderOptions) {
    if (!options.nodeName) throw invalidInput('MockProvider: nodeName must not be empty');
    this.#nodeName = options.nodeName;
    this.#config = parseMockConfig(options.config ?? {});
    this.#log = (options.logger ?? silentLogger).child({
      provider: 'mock',
      node: options.nodeName,
    });
    this.#clock = options.clock ?? (() => new Date());
    this.#random = options.random ?? Math.random;
    this.#startedAt = this.#clock();
    this.#hostIP = this.#config.hostIP ?? DEFAULT_HOST_IP;
    this.#pool = new PodAddressPool(this.#config.podCIDR ?? DEFAULT_POD_CIDR);
    if (options.notify ?? true) {
      this.notifyPods = (callback) => {
        this.#podCallback = callback;
      };
    }
    const stateFile = this.#config.stateFile;
    if (stateFile !== undefined) {
      this.#restore(stateFile);
      this.#journal = new MockStateJournal(stateFile);
    }
  }

  /**
   * Starts the pod: it is Running at once. A pod already known (same namespace, name and UID) is
   * left as it is; one with the same name and another UID replaces the old one.
   */
  async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    if (this.#closing.signal.aborted) throw unavailable('the mock provider is closed');
    await this.#fault('createPod', signal);
    const key = requirePodKey(pod);
    if (!pod.spec) throw invalidInput(`pod ${key} has no spec`);
    const existing = this.#pods.get(key);
    if (existing) {
      const uid = pod.metadata?.uid;
      if (uid === undefined || existing.pod.metadata?.uid === uid) {
        this.#log.debug({ pod: key }, 'createPod: already running');
        return;
      }
      // Same name, another UID: the old pod was deleted in the API and a new one took its name.
      this.#log.info({ pod: key }, 'createPod: replacing a pod of the same name');
      this.#pods.delete(key);
      this.#dispose(key, existing, this.#clock());
      this.#release(holderOf(existing.pod, key));
    }
    const stored = withoutStatus(pod);
    const now = this.#clock();
    const addresses: PodAddresses = { podIP: this.#podIP(pod, key), hostIP: this.#hostIP };
    const entry: Entry = {
      pod: stored,
      status: startedStatus(pod, now.toISOString(), addresses),
      timers: new Map(),
      runs: new Map(),
      retiredCpu: 0,
      gone: new AbortController(),
    };
    this.#pods.set(key, entry);
    this.#journal?.created(stored, entry.status);
    this.#run(key, entry, now);
    this.#log.debug({ pod: key }, 'createPod: running');
    this.#emit(entry);
  }

  /**
   * The pod's address, before it is created: from `podCIDR`, one per UID, the same on every
   * call (a retry, a restart of the agent, or of the provider with a `stateFile`), until
   * `deletePod` frees it, whether or not `createPod` ran. `podIP`, when configured, for all;
   * the host's address for a `hostNetwork` pod.
   */
  async preparePod(pod: V1Pod, signal: AbortSignal): Promise<ContractPodAddresses> {
    this.#throwIfClosed();
    await this.#fault('preparePod', signal);
    const key = requirePodKey(pod);
    return { podIPs: [this.#podIP(pod, key)], hostIP: this.#hostIP };
  }

  /** The address of `pod`, taken (and written to the state file) if it has none yet. */
  #podIP(pod: V1Pod, key: string): string {
    // A pod on the host's network has the host's address, as under a kubelet.
    if (pod.spec?.hostNetwork) return this.#hostIP;
    if (this.#config.podIP !== undefined) return this.#config.podIP;
    const holder = holderOf(pod, key);
    const known = this.#pool.get(holder);
    if (known !== undefined) return known;
    const ip = this.#pool.take(holder);
    this.#journal?.addressed(holder, ip);
    return ip;
  }

  /** Frees the address of `holder`; whether it had one. */
  #release(holder: string): boolean {
    if (!this.#pool.release(holder)) return false;
    this.#journal?.released(holder);
    return true;
  }

  /** Starts the pod's containers, and the timers of those configured to exit. */
  #run(key: string, entry: Entry, now: Date): void {
    this.#startRuns(key, entry, now);
    for (const c of entry.pod.spec?.containers ?? []) {
      const after = this.#config.containers?.[c.name]?.exitAfterSeconds;
      if (after !== undefined) this.#scheduleExit(key, entry, c.name, after * 1000);
    }
  }

  /** Runs again the pods of the state file, as they were recorded. */
  #restore(path: string): void {
    const now = this.#clock();
    const state = readMockState(path);
    for (const [holder, ip] of state.addresses) this.#pool.restore(holder, ip);
    for (const [key, stored] of state.pods) {
      // A file written before addresses were recorded has them only in the statuses.
      const ip = stored.status.podIP;
      if (ip !== undefined) this.#pool.restore(holderOf(stored.pod, key), ip);
      const entry: Entry = {
        pod: stored.pod,
        status: stored.status,
        timers: new Map(),
        runs: new Map(),
        retiredCpu: 0,
        gone: new AbortController(),
      };
      this.#pods.set(key, entry);
      this.#run(key, entry, now);
    }
    if (this.#pods.size > 0)
      this.#log.info(
        { pods: this.#pods.size, stateFile: path },
        'pods restored from the state file',
      );
  }

  /**
   * Replaces the pod's metadata and spec and keeps its status. A container whose image changed
   * restarts with the new image, as under a kubelet.
   */
  async updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#fault('updatePod', signal);
    const key = requirePodKey(pod);
    const entry = this.#pods.get(key);
    if (!entry) throw notFound(`pod ${key} is not known to the mock provider`);
    entry.pod = withoutStatus(pod);
    this.#journal?.updated(entry.pod);
    const now = this.#clock();
    let changed = false;
    for (const cs of entry.status.containerStatuses ?? []) {
      const image = entry.pod.spec?.containers.find((c) => c.name === cs.name)?.image;
      if (image === undefined || image === cs.image) continue;
      cs.image = image;
      changed = true;
      if (cs.state?.running === undefined) continue;
      cs.lastState = { terminated: terminatedState(cs, 0, now.toISOString()) };
      cs.state = { running: { startedAt: now.toISOString() } };
      cs.restartCount += 1;
      this.#restartRun(key, entry, cs.name, now);
    }
    // `kubectl debug` adds ephemeral containers to a running pod: they start at once.
    if (!isTerminalPhase(entry.status.phase)) {
      for (const name of addEphemeralStatuses(entry.pod, entry.status, now.toISOString())) {
        entry.runs.set(name, { current: this.#newRun(key, name, now, true), previous: undefined });
        changed = true;
      }
    }
    this.#log.debug({ pod: key, changed }, 'updatePod');
    if (changed) this.#emit(entry);
  }

  /**
   * Stops every container at once (exit code 0, reason Completed), reports the terminal status,
   * then forgets the pod. A pod the provider does not know throws `NotFound`, so a second call
   * for the same pod does too. Containers with `stopAfterSeconds` take that long (at most the
   * grace period); a later call with a shorter grace period brings their stop forward (grace
   * 0: at once). Never waits for the stop: `signal` bounds only injected latency.
   */
  async deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#fault('deletePod', signal);
    const key = requirePodKey(pod);
    const entry = this.#pods.get(key);
    const uid = pod.metadata?.uid;
    // A newer pod of the same name is not the one being deleted.
    const other = uid && entry?.pod.metadata?.uid && uid !== entry.pod.metadata.uid;
    if (!entry || other) {
      // Prepared but never created: its address is all it holds.
      if (this.#release(holderOf(pod, key))) return;
      throw notFound(
        other
          ? `pod ${key} with UID ${uid} is not known to the mock provider`
          : `pod ${key} is not known to the mock provider`,
      );
    }
    // Containers that handle SIGTERM slowly take their time, up to the grace period.
    const grace =
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const stopping = entry.timers.get(STOPPING);
    if (stopping !== undefined) {
      // Already stopping (deletePod may repeat): a shorter grace period brings the stop forward.
      const atMs = Date.now() + grace * 1000;
      if (entry.stopAtMs === undefined || atMs >= entry.stopAtMs) return;
      clearTimeout(stopping);
      entry.timers.delete(STOPPING);
      entry.stopAtMs = atMs;
      this.#stopLater(entry, atMs - Date.now(), () => this.#stopDeleted(key, entry));
      return;
    }
    this.#clearTimers(entry);
    const slowest = Math.max(
      0,
      ...(entry.pod.spec?.containers ?? []).map(
        (c) => this.#config.containers?.[c.name]?.stopAfterSeconds ?? 0,
      ),
    );
    const delayMs = Math.min(slowest, grace) * 1000;
    entry.stopAtMs = Date.now() + delayMs;
    this.#stopLater(entry, delayMs, () => this.#stopDeleted(key, entry));
  }

  #stopLater(entry: Entry, delayMs: number, stop: () => void): void {
    if (delayMs <= 0) stop();
    // A delay past 2^31-1 ms would fire at once: cap it (about 24.8 days).
    else entry.timers.set(STOPPING, setTimeout(stop, Math.min(delayMs, 2_147_483_647)).unref());
  }

  #stopDeleted(key: string, entry: Entry): void {
    this.#clearTimers(entry);
    const now = this.#clock();
    const at = now.toISOString();
    for (const cs of entry.status.initContainerStatuses ?? []) stopContainer(cs, 0, at);
    for (const cs of entry.status.containerStatuses ?? []) stopContainer(cs, 0, at);
    for (const cs of entry.status.ephemeralContainerStatuses ?? []) stopContainer(cs, 0, at);
    settle(entry.status, at);
    this.#pods.delete(key);
    this.#journal?.forgotten(key, entry.pod.metadata?.uid);
    this.#pool.release(holderOf(entry.pod, key));
    this.#dispose(key, entry, now);
    this.#log.debug({ pod: key, phase: entry.status.phase }, 'deletePod: stopped and forgotten');
    this.#emit(entry);
  }

  async getPod(namespace: string, name: string, signal: AbortSignal): Promise<V1Pod | undefined> {
    await this.#fault('getPod', signal);
    const entry = this.#pods.get(`${namespace}/${name}`);
    return entry && view(entry);
  }

  async getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    await this.#fault('getPodStatus', signal);
    const entry = this.#pods.get(`${namespace}/${name}`);
    return entry && structuredClone(entry.status);
  }

  async getPods(signal: AbortSignal): Promise<V1Pod[]> {
    await this.#fault('getPods', signal);
    return [...this.#pods.values()].map(view);
  }

  /** Resolves unless the `ping` fault says otherwise. */
  async ping(signal: AbortSignal): Promise<void> {
    await this.#fault('ping', signal);
  }

  /** The mock never changes the node on its own; `setNodeCondition` does, for tests. */
  notifyNodeStatus(callback: (node: V1Node) => void): void {
    this.#nodeCallback = callback;
  }

  /**
   * Sets capacity and allocatable (cpu, memory, pods, ephemeral-storage and `others`, over what
   * the core set), `nodeInfo.operatingSystem` (linux) and `architecture` (this machine's, in Go's
   * names), and `spec.providerID` when configured. Adds no labels.
   */
  configureNode(node: V1Node): void {
    const c = this.#config;
    const resources: Record<string, string> = {
      cpu: c.cpu ?? DEFAULTS.cpu,
      memory: c.memory ?? DEFAULTS.memory,
      pods: c.pods ?? DEFAULTS.pods,
      'ephemeral-storage': c.ephemeralStorage ?? DEFAULTS.ephemeralStorage,
      ...c.others,
    };
    node.status ??= {};
    node.status.capacity = { ...node.status.capacity, ...resources };
    node.status.allocatable = { ...node.status.allocatable, ...resources };
    node.status.nodeInfo = {
      bootID: '',
      containerRuntimeVersion: '',
      kernelVersion: '',
      kubeProxyVersion: '',
      kubeletVersion: '',
      machineID: '',
      osImage: '',
      systemUUID: '',
      ...node.status.nodeInfo,
      operatingSystem: 'linux',
      architecture: goArch(),
    };
    if (c.providerID !== undefined) {
      node.spec ??= {};
      node.spec.providerID = c.providerID;
    }
    this.#node = structuredClone(node);
  }

  /**
   * Test hook: sets (adds or replaces by type) a condition on the node last seen by
   * `configureNode` and reports that node through the `notifyNodeStatus` callback.
   */
  setNodeCondition(condition: V1NodeCondition): void {
    const node = this.#node ?? { metadata: { name: this.#nodeName }, status: {} };
    node.status ??= {};
    node.status.conditions = [
      ...(node.status.conditions ?? []).filter((c) => c.type !== condition.type),
      structuredClone(condition),
    ];
    this.#node = node;
    this.#nodeCallback?.(structuredClone(node));
  }

  /**
   * The log of a container (or init container) in memory: `mock: container <name> of <ns>/<pod>
   * started`, then `mock: <name> tick <n>` every `logIntervalMs`, plus what `writeLog` and attach
   * sessions add; the last `MAX_LOG_LINES` lines are kept. Options as the kubelet's (see
   * `readLog`). With `follow`, the stream ends when the container stops (exit, restart, pod
   * deleted or forgotten, `close()`) or `signal` fires. `previous` reads the run before the last
   * restart. Throws `NotFound` for an unknown pod or container, `InvalidInput` for `previous`
   * without a previous run or for out-of-range options.
   */
  getContainerLogs(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Promise<Readable> {
    return attempt(() => this.#openLog(namespace, pod, container, options, signal));
  }

  /**
   * Runs one of the built-in commands (see exec.ts: echo, cat, head -c, sh -c, env, printenv,
   * hostname, stty size, tty-size, sleep, true, false, yes) in-process and resolves to its exit
   * code; an unknown command prints `mock: <cmd>: command not found` and exits 127. `env` is
   * the container's `env` from the pod spec. Resolves to 137 when the container stops meanwhile;
   * rejects with `signal.reason` when `signal` fires. Never ends the streams. Throws `NotFound`
   * for an unknown pod or container, `InvalidInput` when it does not run or `command` is empty,
   * `Unavailable` after `close()`.
   */
  async runInContainer(
    namespace: string,
    pod: string,
    container: string,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number> {
    signal.throwIfAborted();
    const { entry, run } = this.#running(namespace, pod, container);
    if (command.length === 0) throw invalidInput('the command is empty');
    const spec = entry.pod.spec;
    const env = new Map<string, string>();
    for (const e of this.#containerSpec(entry, container)?.env ?? [])
      env.set(e.name, e.value ?? '');
    const sizes =
      streams.tty && streams.resize !== undefined ? new TerminalSizes(streams.resize) : undefined;
    try {
      const code = await runCommand(command, {
        hostname: spec?.hostname ?? pod,
        env,
        stdin: streams.stdin,
        stdout: streams.stdout,
        stderr: streams.tty ? undefined : streams.stderr,
        tty: streams.tty,
        sizes,
        signal: AbortSignal.any([signal, run.stopped]),
      });
      if (signal.aborted) throw signal.reason;
      return run.stopped.aborted ? KILLED_EXIT_CODE : code;
    } finally {
      sizes?.close();
    }
  }

  /**
   * Attaches to the container's main process, which echoes every line of stdin to its log; the
   * session's stdout gets every log line written from now on. Resolves when stdin ends (when
   * given) or the container stops; rejects with `signal.reason` when `signal` fires. Never ends
   * the streams. Throws as `runInContainer` does.
   */
  async attachToContainer(
    namespace: string,
    pod: string,
    container: string,
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<void> {
    signal.throwIfAborted();
    const { run } = this.#running(namespace, pod, container);
    await attach(run, streams, this.#clock, signal);
    if (signal.aborted) throw signal.reason;
  }

  /**
   * Every port of a running pod is an echo server: what is read from `stream` is written back.
   * Ends `stream` when the client has ended its side or the pod goes away, then resolves;
   * rejects with `signal.reason` when `signal` fires (leaving `stream` to the caller). Throws
   * `NotFound` for an unknown pod, `InvalidInput` for a port outside 1-65535 or a terminal pod,
   * `Unavailable` after `close()`.
   */
  async portForward(
    namespace: string,
    pod: string,
    port: number,
    stream: Duplex,
    signal: AbortSignal,
  ): Promise<void> {
    signal.throwIfAborted();
    const entry = this.#entry(namespace, pod);
    this.#throwIfClosed();
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw invalidInput(`port ${String(port)} is not between 1 and 65535`);
    }
    if (isTerminalPhase(entry.status.phase)) throw invalidInput(`pod "${pod}" is not running`);
    await echo(stream, entry.gone.signal, signal);
    if (signal.aborted) throw signal.reason;
  }

  /**
   * The kubelet Summary (`stats.k8s.io/v1alpha1`): node and pod CPU and memory, with synthetic,
   * non-zero figures per running container (see stats.ts) of every pod that is not terminal.
   * Times come from the `clock` option.
   */
  getStatsSummary(signal: AbortSignal): Promise<Summary> {
    return attempt(() => {
      signal.throwIfAborted();
      return statsSummary(this.#snapshot());
    });
  }

  /**
   * `/metrics/resource` in the Prometheus text format, from the same figures as
   * `getStatsSummary`: what metrics-server reads (node, container and pod CPU counters and
   * working sets, container start times, `resource_scrape_error 0`). Not part of provider.ts.
   */
  getMetricsResource(signal: AbortSignal): Promise<string> {
    return attempt(() => {
      signal.throwIfAborted();
      return metricsResource(this.#snapshot());
    });
  }

  /**
   * Test hook: the container writes `text` to its log, one line per `\n`-separated part (a final
   * line break adds no empty line), stamped by the `clock` option. Throws `NotFound` for an
   * unknown pod or container and `InvalidInput` when the container does not run.
   */
  writeLog(namespace: string, pod: string, container: string, text: string): void {
    const { run } = this.#running(namespace, pod, container, false);
    const lines = text.split('\n');
    if (lines.length > 1 && lines.at(-1) === '') lines.pop();
    const now = this.#clock();
    for (const line of lines) run.log.append(line, now);
  }

  /** How many pods hold an address of `podCIDR` (created, or prepared and not yet deleted). */
  get addressesInUse(): number {
    return this.#pool.size;
  }

  /**
   * Test hook: drops a pod without stopping it or reporting anything, as a backend that lost it
   * would. Returns whether the pod was known.
   */
  forgetPod(namespace: string, name: string): boolean {
    const key = `${namespace}/${name}`;
    const entry = this.#pods.get(key);
    if (!entry) return false;
    this.#pods.delete(key);
    this.#journal?.forgotten(key, entry.pod.metadata?.uid);
    this.#pool.release(holderOf(entry.pod, key));
    this.#dispose(key, entry, this.#clock());
    return true;
  }

  /**
   * Clears every timer and aborts calls waiting on injected latency; log streams that follow,
   * exec, attach and port-forward sessions end. Pods and their logs stay readable; `createPod`,
   * `runInContainer`, `attachToContainer` and `portForward` then throw `Unavailable`. Idempotent.
   */
  close(): Promise<void> {
    this.#closing.abort(unavailable('the mock provider is closed'));
    const now = this.#clock();
    for (const [key, entry] of this.#pods) this.#dispose(key, entry, now);
    return Promise.resolve();
  }

  async #fault(op: FaultOperation, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const fault = this.#config.faults?.[op];
    if (fault === undefined) return;
    const latencyMs = fault.latencyMs ?? 0;
    const either = AbortSignal.any([signal, this.#closing.signal]);
    if (latencyMs > 0) {
      try {
        await delay(latencyMs, undefined, { signal: either });
      } catch (err) {
        throw either.aborted ? either.reason : err;
      }
    }
    const hangRate = fault.hangRate ?? 0;
    if (hangRate > 0 && this.#random() < hangRate) {
      await new Promise<never>((_, reject) => {
        const fail = (): void => {
          reject(either.reason as Error);
        };
        if (either.aborted) fail();
        else either.addEventListener('abort', fail, { once: true });
      });
    }
    const errorRate = fault.errorRate ?? 0;
    if (errorRate > 0 && this.#random() < errorRate) {
      throw FAULT_FACTORIES[fault.error ?? 'unavailable'](`mock: injected ${op} fault`);
    }
  }

  #scheduleExit(key: string, entry: Entry, container: string, afterMs: number): void {
    const timer = setTimeout(() => {
      entry.timers.delete(container);
      this.#exit(key, entry, container, afterMs);
    }, afterMs);
    // The timers stand for a backend's containers; they must not keep a process alive.
    timer.unref();
    entry.timers.set(container, timer);
  }

  #exit(key: string, entry: Entry, container: string, afterMs: number): void {
    if (this.#pods.get(key) !== entry || this.#closing.signal.aborted) return;
    const cs = entry.status.containerStatuses?.find((c) => c.name === container);
    if (cs?.state?.running === undefined) return;
    const exitCode = this.#config.containers?.[container]?.exitCode ?? 0;
    const now = this.#clock();
    const policy = entry.pod.spec?.restartPolicy ?? 'Always';
    stopContainer(cs, exitCode, now.toISOString());
    this.#stopRun(key, entry, container, now);
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      // Restart at once: the container is running again, with the exit as its last state.
      cs.lastState = cs.state;
      cs.state = { running: { startedAt: now.toISOString() } };
      cs.ready = true;
      cs.started = true;
      cs.restartCount += 1;
      this.#restartRun(key, entry, container, now);
      this.#scheduleExit(key, entry, container, Math.max(afterMs, MIN_RERUN_MS));
    } else {
      settle(entry.status, now.toISOString());
    }
    this.#log.debug(
      { pod: key, container, exitCode, restartCount: cs.restartCount, phase: entry.status.phase },
      'container exited',
    );
    this.#emit(entry);
  }

  #openLog(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Readable {
    signal.throwIfAborted();
    const { runs } = this.#container(namespace, pod, container);
    const invalid = (value: number | undefined, min: number): boolean =>
      value !== undefined && !(Number.isFinite(value) && value >= min);
    if (invalid(options.tailLines, 0) || invalid(options.limitBytes, 1)) {
      throw invalidInput('tailLines must be at least 0 and limitBytes at least 1');
    }
    if (invalid(options.sinceSeconds, 0)) throw invalidInput('sinceSeconds must not be negative');
    const run = options.previous ? runs.previous : runs.current;
    if (run === undefined) {
      throw invalidInput(`previous terminated container "${container}" in pod "${pod}" not found`);
    }
    return readLog(run.log, options, this.#clock(), signal);
  }

  #throwIfClosed(): void {
    if (this.#closing.signal.aborted) throw unavailable('the mock provider is closed');
  }

  #entry(namespace: string, pod: string): Entry {
    const entry = this.#pods.get(`${namespace}/${pod}`);
    if (!entry) throw notFound(`pod "${pod}" does not exist`);
    return entry;
  }

  #container(namespace: string, pod: string, container: string): { entry: Entry; runs: Runs } {
    const entry = this.#entry(namespace, pod);
    const runs = entry.runs.get(container);
    if (!runs) throw notFound(`container "${container}" not found in pod "${pod}"`);
    return { entry, runs };
  }

  /** The container's current run, which must be running; the provider must be open for a session. */
  #running(
    namespace: string,
    pod: string,
    container: string,
    session = true,
  ): { entry: Entry; run: ContainerRun } {
    const { entry, runs } = this.#container(namespace, pod, container);
    if (session) this.#throwIfClosed();
    if (!runs.current.running) {
      throw invalidInput(`container "${container}" in pod "${pod}" is not running`);
    }
    return { entry, run: runs.current };
  }

  #containerSpec(entry: Entry, name: string): V1Container | undefined {
    const spec = entry.pod.spec;
    return [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])].find(
      (c) => c.name === name,
    );
  }

  #newRun(key: string, container: string, now: Date, running: boolean): ContainerRun {
    return new ContainerRun({
      container,
      pod: key,
      startedAt: now,
      logIntervalMs: running ? (this.#config.logIntervalMs ?? DEFAULT_LOG_INTERVAL_MS) : 0,
      logFillBytes: running ? (this.#config.logFillBytes ?? 0) : 0,
      clock: this.#clock,
    });
  }

  /** A run per container as the fresh status says: running, or (init containers) completed. */
  #startRuns(key: string, entry: Entry, now: Date): void {
    const statuses = [
      ...(entry.status.initContainerStatuses ?? []),
      ...(entry.status.containerStatuses ?? []),
    ];
    for (const cs of statuses) {
      const running = cs.state?.running !== undefined;
      const run = this.#newRun(key, cs.name, now, running);
      entry.runs.set(cs.name, { current: run, previous: undefined });
      if (!running) this.#stopRun(key, entry, cs.name, now);
    }
  }

  /** Stops the container's current run and accounts for the CPU it used. */
  #stopRun(key: string, entry: Entry, container: string, now: Date): void {
    const run = entry.runs.get(container)?.current;
    if (run === undefined || !run.stop(now)) return;
    const used = cpuCoreNanoSeconds(`${key}/${container}`, run.startedAt, now);
    entry.retiredCpu += used;
    this.#retiredCpu += used;
  }

  /** Stops the current run and starts a new one; the stopped one becomes the previous run. */
  #restartRun(key: string, entry: Entry, container: string, now: Date): void {
    this.#stopRun(key, entry, container, now);
    const runs = entry.runs.get(container);
    const fresh = this.#newRun(key, container, now, true);
    if (runs === undefined) entry.runs.set(container, { current: fresh, previous: undefined });
    else {
      runs.previous = runs.current;
      runs.current = fresh;
    }
  }

  /**
   * Ends everything a pod holds: its timers, its runs (so follow streams, exec and attach
   * sessions end) and its port-forward sessions. Idempotent.
   */
  #dispose(key: string, entry: Entry, now: Date): void {
    this.#clearTimers(entry);
    for (const container of entry.runs.keys()) this.#stopRun(key, entry, container, now);
    entry.gone.abort(unavailable(`pod ${key} is gone`));
  }

  #snapshot(): Snapshot {
    const pods: RunningPodInput[] = [];
    for (const entry of this.#pods.values()) {
      if (isTerminalPhase(entry.status.phase)) continue;
      const containers = [...entry.runs.values()]
        .map((runs) => runs.current)
        .filter((run) => run.running)
        .map((run) => ({ name: run.container, startedAt: run.startedAt }));
      if (containers.length === 0) continue;
      const meta = entry.pod.metadata;
      pods.push({
        namespace: meta?.namespace ?? '',
        name: meta?.name ?? '',
        uid: meta?.uid ?? '',
        startTime:
          entry.status.startTime === undefined ? this.#startedAt : new Date(entry.status.startTime),
        retiredCoreNanoSeconds: entry.retiredCpu,
        containers,
      });
    }
    return takeSnapshot({
      nodeName: this.#nodeName,
      nodeStartTime: this.#startedAt,
      now: this.#clock(),
      memoryCapacityBytes: parseQuantity(this.#config.memory ?? DEFAULTS.memory),
      retiredCoreNanoSeconds: this.#retiredCpu,
      pods,
    });
  }

  #clearTimers(entry: Entry): void {
    for (const timer of entry.timers.values()) clearTimeout(timer);
    entry.timers.clear();
  }

  #emit(entry: Entry): void {
    const callback = this.#podCallback;
    if (!callback) return;
    try {
      callback(view(entry));
    } catch (err) {
      // The contract says the callback never throws; a bug there must not break the mock.
      this.#log.error({ err }, 'the pod status callback threw');
    }
  }
}

/**
 * The mock provider: runs pods in memory, as the Go virtual-kubelet's mock does. Pods go straight
 * to Running; containers can be made to exit, and operations to be slow or to fail, through
 * `MockConfig`. It is the provider the core's tests run against, in a push (`notify: true`) and
 * a polling (`notify: false`) variant.
 */
import type { V1Node, V1NodeCondition, V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { setTimeout as delay } from 'node:timers/promises';
import {
  invalidInput,
  notFound,
  permanent,
  unavailable,
  type VirtualKubeletError,
} from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { NodeConfigurer, NodeProvider, Provider } from '../../provider.js';
import {
  parseMockConfig,
  type FaultError,
  type FaultOperation,
  type MockConfig,
} from './config.js';
import {
  settle,
  startedStatus,
  stopContainer,
  terminatedState,
  type PodAddresses,
} from './status.js';

export {
  FAULT_OPERATIONS,
  loadMockConfig,
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
  /** The time stamped on statuses. Timers still run on real time. Default: `() => new Date()`. */
  readonly clock?: () => Date;
  /** Decides injected faults: a call fails when `random() < errorRate`. Default: `Math.random`. */
  readonly random?: () => number;
}

interface Entry {
  /** The pod as last created or updated, without status. */
  pod: V1Pod;
  /** The status the provider reports; mutated in place, copied on the way out. */
  readonly status: V1PodStatus;
  /** Pending container exits, by container name. */
  readonly timers: Map<string, NodeJS.Timeout>;
}

const DEFAULTS = { cpu: '20', memory: '100Gi', pods: '110', ephemeralStorage: '100Gi' } as const;
const DEFAULT_IP = '127.0.0.1';
/** Timer key of a pod whose containers are shutting down after deletePod. */
const STOPPING = '\u0000stopping';
/** A restarted container runs at least this long, so `exitAfterSeconds: 0` cannot spin. */
const MIN_RERUN_MS = 100;

const FAULT_FACTORIES: Record<FaultError, (message: string) => VirtualKubeletError> = {
  unavailable,
  permanent,
  invalidInput,
};

// Go's GOARCH names, which the kubelet reports as nodeInfo.architecture.
const GO_ARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mipsel: 'mipsle',
};

function podKey(pod: V1Pod): string {
  const namespace = pod.metadata?.namespace;
  const name = pod.metadata?.name;
  if (!namespace || !name) throw invalidInput('the pod has no metadata.namespace or metadata.name');
  return `${namespace}/${name}`;
}

const view = (entry: Entry): V1Pod => structuredClone({ ...entry.pod, status: entry.status });

const withoutStatus = (pod: V1Pod): V1Pod => {
  const copy = structuredClone(pod);
  delete copy.status;
  return copy;
};

/**
 * Runs pods in memory. Every method copies what it keeps and what it returns, so callers may do
 * what they like with their objects. `close()` clears every timer; the instance then starts no
 * new pods.
 *
 * `notifyPods` is present only when the `notify` option is true (the default): the same class
 * serves as a push and as a polling provider, and `isPodNotifier()` tells them apart.
 */
export class MockProvider implements Provider, NodeProvider, NodeConfigurer {
  /** Present only with `notify: true`; see the class comment. */
  declare readonly notifyPods?: (callback: (pod: V1Pod) => void) => void;

  readonly #nodeName: string;
  readonly #config: MockConfig;
  readonly #log: Logger;
  readonly #clock: () => Date;
  readonly #random: () => number;
  readonly #addresses: PodAddresses;
  readonly #pods = new Map<string, Entry>();
  // Aborts latency waits on close().
  readonly #closing = new AbortController();
  #podCallback: ((pod: V1Pod) => void) | undefined;
  #nodeCallback: ((node: V1Node) => void) | undefined;
  #node: V1Node | undefined;

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
    this.#addresses = {
      podIP: this.#config.podIP ?? DEFAULT_IP,
      hostIP: this.#config.hostIP ?? DEFAULT_IP,
    };
    if (options.notify ?? true) {
      this.notifyPods = (callback) => {
        this.#podCallback = callback;
      };
    }
  }

  /**
   * Starts the pod: it is Running at once. A pod already known (same namespace, name and UID) is
   * left as it is; one with the same name and another UID replaces the old one.
   */
  async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    if (this.#closing.signal.aborted) throw unavailable('the mock provider is closed');
    await this.#fault('createPod', signal);
    const key = podKey(pod);
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
      this.#clearTimers(existing);
      this.#pods.delete(key);
    }
    const stored = withoutStatus(pod);
    const entry: Entry = {
      pod: stored,
      status: startedStatus(pod, this.#clock(), this.#addresses),
      timers: new Map(),
    };
    this.#pods.set(key, entry);
    for (const c of stored.spec?.containers ?? []) {
      const after = this.#config.containers?.[c.name]?.exitAfterSeconds;
      if (after !== undefined) this.#scheduleExit(key, entry, c.name, after * 1000);
    }
    this.#log.debug({ pod: key }, 'createPod: running');
    this.#emit(entry);
  }

  /**
   * Replaces the pod's metadata and spec and keeps its status. A container whose image changed
   * restarts with the new image, as under a kubelet.
   */
  async updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#fault('updatePod', signal);
    const key = podKey(pod);
    const entry = this.#pods.get(key);
    if (!entry) throw notFound(`pod ${key} is not known to the mock provider`);
    entry.pod = withoutStatus(pod);
    const now = this.#clock();
    let changed = false;
    for (const cs of entry.status.containerStatuses ?? []) {
      const image = entry.pod.spec?.containers.find((c) => c.name === cs.name)?.image;
      if (image === undefined || image === cs.image) continue;
      cs.image = image;
      changed = true;
      if (cs.state?.running === undefined) continue;
      cs.lastState = { terminated: terminatedState(cs, 0, now) };
      cs.state = { running: { startedAt: now } };
      cs.restartCount += 1;
    }
    this.#log.debug({ pod: key, changed }, 'updatePod');
    if (changed) this.#emit(entry);
  }

  /**
   * Stops every container at once (exit code 0, reason Completed), reports the terminal status,
   * then forgets the pod. A pod the provider does not know throws `NotFound`, so a second call
   * for the same pod does too.
   */
  async deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#fault('deletePod', signal);
    const key = podKey(pod);
    const entry = this.#pods.get(key);
    if (!entry) throw notFound(`pod ${key} is not known to the mock provider`);
    if (entry.timers.has(STOPPING)) return; // already stopping: deletePod may repeat
    this.#clearTimers(entry);
    // Containers that handle SIGTERM slowly take their time, up to the grace period.
    const grace =
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const slowest = Math.max(
      0,
      ...(entry.pod.spec?.containers ?? []).map(
        (c) => this.#config.containers?.[c.name]?.stopAfterSeconds ?? 0,
      ),
    );
    const stop = (): void => {
      this.#clearTimers(entry);
      const now = this.#clock();
      for (const cs of entry.status.initContainerStatuses ?? []) stopContainer(cs, 0, now);
      for (const cs of entry.status.containerStatuses ?? []) stopContainer(cs, 0, now);
      settle(entry.status, now);
      this.#pods.delete(key);
      this.#log.debug({ pod: key, phase: entry.status.phase }, 'deletePod: stopped and forgotten');
      this.#emit(entry);
    };
    const delayMs = Math.min(slowest, grace) * 1000;
    if (delayMs === 0) stop();
    else entry.timers.set(STOPPING, setTimeout(stop, delayMs).unref());
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
      architecture: GO_ARCH[process.arch] ?? process.arch,
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
   * Test hook: drops a pod without stopping it or reporting anything, as a backend that lost it
   * would. Returns whether the pod was known.
   */
  forgetPod(namespace: string, name: string): boolean {
    const key = `${namespace}/${name}`;
    const entry = this.#pods.get(key);
    if (!entry) return false;
    this.#clearTimers(entry);
    return this.#pods.delete(key);
  }

  /**
   * Clears every timer and aborts calls waiting on injected latency. Pods stay readable;
   * `createPod` then throws `Unavailable`. Idempotent.
   */
  close(): Promise<void> {
    this.#closing.abort(unavailable('the mock provider is closed'));
    for (const entry of this.#pods.values()) this.#clearTimers(entry);
    return Promise.resolve();
  }

  async #fault(op: FaultOperation, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const fault = this.#config.faults?.[op];
    if (fault === undefined) return;
    const latencyMs = fault.latencyMs ?? 0;
    if (latencyMs > 0) {
      const either = AbortSignal.any([signal, this.#closing.signal]);
      try {
        await delay(latencyMs, undefined, { signal: either });
      } catch (err) {
        throw either.aborted ? either.reason : err;
      }
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
    stopContainer(cs, exitCode, now);
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      // Restart at once: the container is running again, with the exit as its last state.
      cs.lastState = cs.state;
      cs.state = { running: { startedAt: now } };
      cs.ready = true;
      cs.started = true;
      cs.restartCount += 1;
      this.#scheduleExit(key, entry, container, Math.max(afterMs, MIN_RERUN_MS));
    } else {
      settle(entry.status, now);
    }
    this.#log.debug(
      { pod: key, container, exitCode, restartCount: cs.restartCount, phase: entry.status.phase },
      'container exited',
    );
    this.#emit(entry);
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

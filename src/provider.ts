/**
 * The provider contract: what a backend implements to become a Kubernetes node.
 *
 * Rules that hold for every method:
 * - The core owns the objects it passes in. A provider must not mutate them; it copies what it
 *   keeps (`structuredClone`). Objects a provider returns are treated as read-only by the core.
 * - Every method takes an AbortSignal: it aborts when the agent shuts down or the operation
 *   times out. Long work should stop when it fires.
 * - Errors are reported by throwing; see `errors.ts` for which codes the core retries (with
 *   backoff) and which are final. An error without a code is retried.
 * - Providers never talk to the API server of the cluster they serve. The core resolves
 *   everything a pod refers to (env from config maps, secrets, the downward API, service links)
 *   before calling `createPod` or `updatePod`: `env` is complete and `envFrom` is empty. A
 *   provider with `preparePod` gives the pod its addresses first, so `status.podIP` resolves.
 */
import type { V1Node, V1Pod, V1PodStatus, V1Service } from './wire.js';
import type { Duplex, Readable, Writable } from 'node:stream';

/** Runs pods. Required of every provider. */
export interface PodLifecycleHandler {
  /**
   * Starts running `pod`. Called once per pod the provider does not know yet, and again with
   * backoff after a retryable error. If the pod already runs (for instance after the agent
   * restarted), it must not be started twice: return, or throw `AlreadyExists`.
   */
  createPod(pod: V1Pod, signal: AbortSignal): Promise<void>;
  /**
   * Applies a change to a running pod. Called only when a field Kubernetes lets a pod change has
   * changed (container images, activeDeadlineSeconds, tolerations, labels, annotations).
   */
  updatePod(pod: V1Pod, signal: AbortSignal): Promise<void>;
  /**
   * Stops the pod, giving its containers `pod.metadata.deletionGracePeriodSeconds` (or the
   * spec's `terminationGracePeriodSeconds`) to exit. May be called more than once for the same
   * pod; a pod that is already gone is not an error (throwing `NotFound` is fine too). Afterwards
   * the provider either reports a terminal status (Succeeded or Failed) or forgets the pod.
   */
  deletePod(pod: V1Pod, signal: AbortSignal): Promise<void>;
  /** The pod as the provider runs it, or undefined when it does not know it. */
  getPod(namespace: string, name: string, signal: AbortSignal): Promise<V1Pod | undefined>;
  /** The pod's current status, or undefined when the provider does not know the pod. */
  getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined>;
  /** Every pod the provider runs for this node, with their statuses. */
  getPods(signal: AbortSignal): Promise<V1Pod[]>;
}

/**
 * Optional: pushes pod status changes instead of being polled. Providers without it are polled
 * through `getPodStatus` (every 5 s by default), so the core sees one push-based shape.
 */
export interface PodNotifier {
  /**
   * Called once, before the first `createPod`. The provider then calls `callback` with the pod
   * (metadata and status) every time a status changes. The callback never throws and never
   * blocks; the pod passed to it must not be mutated afterwards.
   */
  notifyPods(callback: (pod: V1Pod) => void): void;
}

/**
 * Optional: the node's health and status. Providers without it get a naive one: always healthy,
 * status as configured at start.
 */
export interface NodeProvider {
  /** Resolves while the backend is healthy; a rejection turns the node's Ready condition False. */
  ping(signal: AbortSignal): Promise<void>;
  /**
   * Called once. The provider calls `callback` with a Node whose status (capacity,
   * allocatable, conditions, addresses) changed; the core writes it at once.
   */
  notifyNodeStatus(callback: (node: V1Node) => void): void;
}

/**
 * Optional: shapes the Node before it is registered: capacity and allocatable (cpu, memory,
 * pods, ephemeral-storage, extended resources), node info, extra labels and annotations. The
 * core fills defaults first; the provider may change what it knows better.
 */
export interface NodeConfigurer {
  configureNode(node: V1Node): void | Promise<void>;
}

/** Options of a container log request, as the kubelet API receives them. */
export interface ContainerLogOptions {
  readonly follow: boolean;
  readonly previous: boolean;
  readonly timestamps: boolean;
  readonly tailLines?: number;
  readonly limitBytes?: number;
  readonly sinceSeconds?: number;
  readonly sinceTime?: Date;
}

/** Optional: `kubectl logs`. */
export interface ContainerLogs {
  /** A stream of the container's log; with `follow`, it ends when the container stops. */
  getContainerLogs(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Promise<Readable>;
}

export interface TerminalSize {
  readonly width: number;
  readonly height: number;
}

/** The streams of an exec or attach session; each is present only when the client asked for it. */
export interface AttachStreams {
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  /** Terminal size changes, when `tty` is set. */
  readonly resize?: AsyncIterable<TerminalSize>;
}

/** Optional: `kubectl exec`. */
export interface ContainerExec {
  /** Runs `command` in the container; resolves to its exit code. */
  runInContainer(
    namespace: string,
    pod: string,
    container: string,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number>;
}

/** Optional: `kubectl attach`. */
export interface ContainerAttach {
  /** Connects the streams to the container's main process until it exits or `signal` fires. */
  attachToContainer(
    namespace: string,
    pod: string,
    container: string,
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<void>;
}

/** Optional: `kubectl port-forward`. */
export interface PortForwarder {
  /** Pipes `stream` to `port` of the pod until either side ends. */
  portForward(
    namespace: string,
    pod: string,
    port: number,
    stream: Duplex,
    signal: AbortSignal,
  ): Promise<void>;
}

/** CPU usage at `time` (RFC 3339), as `stats.k8s.io/v1alpha1` writes it. */
export interface CPUStats {
  readonly time: string;
  /** Average over a short window, in billionths of a core. */
  readonly usageNanoCores?: number;
  /** Cumulative, across all cores, since the object started. */
  readonly usageCoreNanoSeconds?: number;
}

/** Memory usage at `time` (RFC 3339). */
export interface MemoryStats {
  readonly time: string;
  readonly availableBytes?: number;
  readonly usageBytes?: number;
  /** What metrics-server and eviction read: usage minus inactive file pages. */
  readonly workingSetBytes?: number;
  readonly rssBytes?: number;
  readonly pageFaults?: number;
  readonly majorPageFaults?: number;
}

/** Traffic of one network interface. */
export interface InterfaceStats {
  readonly name: string;
  readonly rxBytes?: number;
  readonly rxErrors?: number;
  readonly txBytes?: number;
  readonly txErrors?: number;
}

/** Network usage at `time` (RFC 3339): the default interface's figures, and every interface. */
export interface NetworkStats extends Partial<InterfaceStats> {
  readonly time: string;
  readonly interfaces?: InterfaceStats[];
}

/** A filesystem's usage at `time` (RFC 3339). */
export interface FsStats {
  readonly time: string;
  readonly availableBytes?: number;
  readonly capacityBytes?: number;
  readonly usedBytes?: number;
  readonly inodesFree?: number;
  readonly inodes?: number;
  readonly inodesUsed?: number;
}

/** A pod volume's filesystem usage. */
export interface VolumeStats extends FsStats {
  /** `spec.volumes[].name`. */
  readonly name: string;
  readonly pvcRef?: { readonly name: string; readonly namespace: string };
}

/** The filesystems the runtime keeps images and containers on. */
export interface RuntimeStats {
  readonly imageFs?: FsStats;
  readonly containerFs?: FsStats;
}

/** Process limits of the node at `time` (RFC 3339). */
export interface RlimitStats {
  readonly time: string;
  readonly maxpid?: number;
  readonly curproc?: number;
}

/** Swap usage at `time` (RFC 3339). */
export interface SwapStats {
  readonly time: string;
  readonly swapAvailableBytes?: number;
  readonly swapUsageBytes?: number;
}

/** One container of a pod. */
export interface ContainerStats {
  readonly name: string;
  /** RFC 3339: when this run of the container started. */
  readonly startTime: string;
  readonly cpu?: CPUStats;
  readonly memory?: MemoryStats;
  readonly swap?: SwapStats;
  readonly rootfs?: FsStats;
  readonly logs?: FsStats;
}

/** One pod: its containers and its own totals. */
export interface PodStats {
  readonly podRef: { readonly name: string; readonly namespace: string; readonly uid: string };
  /** RFC 3339: when the provider started the pod. */
  readonly startTime: string;
  readonly containers: ContainerStats[];
  readonly cpu?: CPUStats;
  readonly memory?: MemoryStats;
  readonly swap?: SwapStats;
  readonly network?: NetworkStats;
  readonly volume?: VolumeStats[];
  readonly 'ephemeral-storage'?: FsStats;
  readonly process_stats?: { readonly process_count?: number };
}

/** The node as a whole. */
export interface NodeStats {
  readonly nodeName: string;
  /** RFC 3339: when the node (or the machine it stands for) started. */
  readonly startTime: string;
  readonly systemContainers?: ContainerStats[];
  readonly cpu?: CPUStats;
  readonly memory?: MemoryStats;
  readonly swap?: SwapStats;
  readonly network?: NetworkStats;
  readonly fs?: FsStats;
  readonly runtime?: RuntimeStats;
  readonly rlimit?: RlimitStats;
}

/**
 * The kubelet Summary API (`/stats/summary`, `stats.k8s.io/v1alpha1`), with the fields providers
 * fill. Every figure is optional: a provider reports what its backend measures.
 */
export interface Summary {
  readonly node: NodeStats;
  readonly pods: PodStats[];
}

/** Optional: `/stats/summary`, what `kubectl top` and the Summary API clients read. */
export interface StatsProvider {
  getStatsSummary(signal: AbortSignal): Promise<Summary>;
}

/** Optional: `/metrics/resource`, what metrics-server reads. */
export interface ResourceMetricsProvider {
  /**
   * The Prometheus text exposition (version 0.0.4) the kubelet writes there: node, pod and
   * container CPU counters and working sets with millisecond timestamps, container start times
   * and `resource_scrape_error`.
   */
  getMetricsResource(signal: AbortSignal): Promise<string>;
}

/** One file of a volume whose content the core resolved. */
export interface VolumeFile {
  /** Relative to the volume's root, `/`-separated, never `..` or absolute (`items[].path`). */
  readonly path: string;
  readonly data: Uint8Array;
  /** File mode (`defaultMode` or `items[].mode`), for example 0o644. */
  readonly mode: number;
  /**
   * The user that owns the file, when not the node agent's: a service-account token's when
   * every container runs as the same `runAsUser` (the kubelet's FsUser; the token is 0600 then).
   */
  readonly owner?: number;
}

/**
 * The content of one of a pod's `configMap`, `secret`, `downwardAPI` or `projected` volumes
 * (service-account tokens included), as the kubelet would write it into the volume directory.
 */
export interface ResolvedVolume {
  /** `spec.volumes[].name`. */
  readonly name: string;
  readonly files: readonly VolumeFile[];
  /**
   * The ConfigMaps and Secrets the content came from, with their annotations (an `optional`
   * one that does not exist is not listed). Set by the core; absent in older callers.
   */
  readonly sources?: readonly VolumeSourceObject[];
}

/** A ConfigMap or Secret a volume's content came from. */
export interface VolumeSourceObject {
  readonly kind: 'ConfigMap' | 'Secret';
  readonly name: string;
  readonly annotations: Readonly<Record<string, string>>;
}

/**
 * Optional: receives volume content. Only providers with it make the core resolve volumes (so
 * a provider that does not mount anything costs no API calls). The core calls `setPodVolumes`
 * before `createPod` with every such volume of the pod, and again, with just the volumes whose
 * content changed, when a config map or secret changes or a service-account token is refreshed
 * (within a minute of the change; tokens well before they expire). Each call replaces the
 * whole content of the volumes it names.
 */
export interface PodVolumes {
  setPodVolumes(pod: V1Pod, volumes: readonly ResolvedVolume[], signal: AbortSignal): Promise<void>;
}

/**
 * Credentials for one registry, from one entry of a pod's `kubernetes.io/dockerconfigjson` or
 * `kubernetes.io/dockercfg` image pull secret. Fields are as the docker config carries them;
 * absent ones were absent (or empty) there.
 */
export interface RegistryCredential {
  /**
   * The entry's key as the secret has it: a registry host with an optional port and path
   * prefix (`registry.example.com:5000/team`), possibly with a scheme and a trailing slash
   * (`https://index.docker.io/v1/`). Matching it to an image is the provider's (see
   * `credentialsForImage` in kubelet/).
   */
  readonly registry: string;
  /** From `username`, or from `auth` when the entry has no username and password. */
  readonly username?: string;
  /** From `password`, or from `auth` when the entry has no username and password. */
  readonly password?: string;
  /** `auth` as the entry has it: base64 of `username:password`. */
  readonly auth?: string;
  /** `identitytoken`: a token exchanged with the registry's token service for access. */
  readonly identityToken?: string;
  /** `registrytoken`: a bearer token sent to the registry as is. */
  readonly registryToken?: string;
}

/**
 * Optional: receives the credentials of a pod's `spec.imagePullSecrets`, for a provider that
 * pulls images from registries that need them. Only providers with it make the core read those
 * Secrets. The core calls `setPodPullCredentials` once per create attempt, after `preparePod`
 * and `setPodVolumes` and right before `createPod` (under the `createPod` deadline, for a pod
 * the provider may not have yet), and again right before each `updatePod` (an image may have
 * changed, and so may the Secrets). While a Secret the pod names is missing or unusable, the
 * core reads them again at each resync of the pod (every minute by default) and calls it again,
 * as the kubelet reads them at each sync, so a Secret created later serves the next pull. After
 * a restart of the agent, each pod the provider already runs gets them again once. Each call
 * replaces what the provider keeps for the pod; `deletePod` lets go of it.
 *
 * `credentials` holds every entry of every Secret the pod names, in the pod's order of
 * Secrets and each Secret's order of entries; a provider tries the entries that match an image
 * in that order (the kubelet's rule). An empty list means the pod names no pull secrets or none
 * of them could be read: images are pulled anonymously. A Secret that is missing or cannot be
 * parsed is left out (the core records a `FailedToRetrieveImagePullSecret` Warning Event naming
 * it, as the kubelet does) and the pod is created all the same.
 *
 * The values are secrets: a provider never logs them, nor puts them in Events, statuses or
 * error messages.
 */
export interface PodPullCredentials {
  setPodPullCredentials(
    pod: V1Pod,
    credentials: readonly RegistryCredential[],
    signal: AbortSignal,
  ): Promise<void>;
}

/**
 * Optional: receives the Services of the namespaces that hold pods of this node, for a backend
 * that makes them reachable where the pods run (the kubernetes provider reflects them into the
 * remote cluster). The core calls `setServices` with every Service of a namespace once a pod of
 * the node is seen there and again whenever one of that namespace's Services is added, changed
 * or deleted, and with `[]` once no pod of the node is left in it. Each call replaces what the
 * provider knows of that namespace; calls for one namespace never overlap. A failed call is
 * retried with backoff.
 */
export interface ServiceReflection {
  setServices(
    namespace: string,
    services: readonly V1Service[],
    signal: AbortSignal,
  ): Promise<void>;
}

/** An Event about a pod, as a provider reports it (the core writes it as a core/v1 Event). */
export interface PodEvent {
  readonly type: 'Normal' | 'Warning';
  /** A short CamelCase reason, like the kubelet's: `Started`, `BackOff`, `Unhealthy`, `Killing`. */
  readonly reason: string;
  readonly message: string;
}

/**
 * Optional: Events about pods (a container started, a probe failed, a back-off), which the core
 * records on the pod as the kubelet would, rate-limited and aggregated with the core's own.
 */
export interface PodEventNotifier {
  /**
   * Called once, before the first `createPod`. The provider calls `callback` with the pod (its
   * metadata: namespace, name and UID at least) and the event. The callback never throws and
   * never blocks.
   */
  notifyPodEvents(callback: (pod: V1Pod, event: PodEvent) => void): void;
}

/** The addresses a pod has before its containers start. */
export interface PodAddresses {
  /**
   * The pod's IPs, the primary first (at most one per IP family, as the kubelet reports them).
   * Never empty: a provider that has no address for the pod throws instead.
   */
  readonly podIPs: readonly string[];
  /** The address of the node the pod runs on. Default: the node's address (`nodeIP`). */
  readonly hostIP?: string;
}

/**
 * Optional: gives a pod its addresses before its environment is resolved, as the kubelet makes
 * a pod's sandbox (and so its network) before it starts any container. Without it, a pod whose
 * environment reads `status.podIP` or `status.podIPs` cannot be started (see the provider guide).
 */
export interface PodAddressProvider {
  /**
   * Called before `createPod` (and before `setPodVolumes`), once per create attempt. The
   * provider may set up the pod's sandbox or network here. Idempotent per pod UID: called again
   * (after a retry, or a restart of the agent) it returns the same addresses and creates
   * nothing twice. `deletePod` releases whatever it set up, also when `createPod` never ran.
   * The status the provider reports for the pod carries the same `podIP`. Errors as for
   * `createPod`: `Unavailable` is retried with backoff, `InvalidInput` is final.
   */
  preparePod(pod: V1Pod, signal: AbortSignal): Promise<PodAddresses>;
}

/**
 * Optional: releases what the provider holds (timers, sessions, connections) when the agent
 * stops, after every node that uses it has stopped. Pods it runs keep running unless the
 * provider says otherwise. `signal` aborts when shutdown must not wait any longer.
 */
export interface Closable {
  close(signal: AbortSignal): Promise<void>;
}

/** A provider: the pod lifecycle, plus any of the optional parts, detected at run time. */
export type Provider = PodLifecycleHandler &
  Partial<
    PodNotifier &
      NodeProvider &
      NodeConfigurer &
      ContainerLogs &
      ContainerExec &
      ContainerAttach &
      PortForwarder &
      StatsProvider &
      ResourceMetricsProvider &
      PodVolumes &
      PodPullCredentials &
      ServiceReflection &
      PodEventNotifier &
      PodAddressProvider &
      Closable
  >;

/** The methods every provider has. */
export const LIFECYCLE_METHODS = [
  'createPod',
  'updatePod',
  'deletePod',
  'getPod',
  'getPodStatus',
  'getPods',
] as const satisfies readonly (keyof PodLifecycleHandler)[];

/** Each optional capability by name, with the part of the contract it stands for. */
export interface CapabilityInterfaces {
  readonly podNotifier: PodNotifier;
  readonly nodeProvider: NodeProvider;
  readonly nodeConfigurer: NodeConfigurer;
  readonly logs: ContainerLogs;
  readonly exec: ContainerExec;
  readonly attach: ContainerAttach;
  readonly portForward: PortForwarder;
  readonly stats: StatsProvider;
  readonly metricsResource: ResourceMetricsProvider;
  readonly volumes: PodVolumes;
  readonly pullCredentials: PodPullCredentials;
  readonly services: ServiceReflection;
  readonly events: PodEventNotifier;
  readonly podAddresses: PodAddressProvider;
  readonly close: Closable;
}

/**
 * The optional capabilities, each with the methods a provider must have for it (all of them)
 * and how messages name it. The type guards below, the agent's provider metrics and the
 * kubelet API's 501 answers all read this one list.
 */
export const CAPABILITIES = {
  podNotifier: { title: 'pod status notifications', methods: ['notifyPods'] },
  nodeProvider: { title: 'node status', methods: ['ping', 'notifyNodeStatus'] },
  nodeConfigurer: { title: 'node configuration', methods: ['configureNode'] },
  logs: { title: 'container logs', methods: ['getContainerLogs'] },
  exec: { title: 'exec', methods: ['runInContainer'] },
  attach: { title: 'attach', methods: ['attachToContainer'] },
  portForward: { title: 'port-forward', methods: ['portForward'] },
  stats: { title: 'stats', methods: ['getStatsSummary'] },
  metricsResource: { title: 'resource metrics', methods: ['getMetricsResource'] },
  volumes: { title: 'volumes', methods: ['setPodVolumes'] },
  pullCredentials: { title: 'image pull credentials', methods: ['setPodPullCredentials'] },
  services: { title: 'services', methods: ['setServices'] },
  events: { title: 'pod events', methods: ['notifyPodEvents'] },
  podAddresses: { title: 'pod addresses before start', methods: ['preparePod'] },
  close: { title: 'close', methods: ['close'] },
} as const satisfies {
  readonly [C in keyof CapabilityInterfaces]: {
    readonly title: string;
    readonly methods: readonly (keyof CapabilityInterfaces[C])[];
  };
};

/** The name of an optional capability: a key of {@link CAPABILITIES}. */
export type Capability = keyof typeof CAPABILITIES;

/** Every capability name, in the order of {@link CAPABILITIES}. */
export const CAPABILITY_NAMES = Object.keys(CAPABILITIES) as readonly Capability[];

/** Every method of the contract: the lifecycle's and every capability's. */
export const CONTRACT_METHODS: readonly (keyof Provider)[] = [
  ...LIFECYCLE_METHODS,
  ...CAPABILITY_NAMES.flatMap((c): readonly (keyof Provider)[] => CAPABILITIES[c].methods),
];

/** Whether `provider` has every method `capability` needs. */
export function hasCapability<C extends Capability>(
  provider: Provider,
  capability: C,
): provider is Provider & CapabilityInterfaces[C] {
  const methods: readonly string[] = CAPABILITIES[capability].methods;
  return methods.every(
    (m) => typeof (provider as unknown as Record<string, unknown>)[m] === 'function',
  );
}

/** What the kubelet API answers (501) when a request needs a capability the provider lacks. */
export function notImplementedMessage(capability: Capability): string {
  const { title, methods } = CAPABILITIES[capability];
  return `the provider does not implement ${title} (${methods.join(', ')})`;
}

export const isPodNotifier = (p: Provider): p is Provider & PodNotifier =>
  hasCapability(p, 'podNotifier');
export const isNodeProvider = (p: Provider): p is Provider & NodeProvider =>
  hasCapability(p, 'nodeProvider');
export const isNodeConfigurer = (p: Provider): p is Provider & NodeConfigurer =>
  hasCapability(p, 'nodeConfigurer');
export const hasContainerLogs = (p: Provider): p is Provider & ContainerLogs =>
  hasCapability(p, 'logs');
export const hasContainerExec = (p: Provider): p is Provider & ContainerExec =>
  hasCapability(p, 'exec');
export const hasContainerAttach = (p: Provider): p is Provider & ContainerAttach =>
  hasCapability(p, 'attach');
export const hasPortForward = (p: Provider): p is Provider & PortForwarder =>
  hasCapability(p, 'portForward');
export const hasStats = (p: Provider): p is Provider & StatsProvider => hasCapability(p, 'stats');
export const hasResourceMetrics = (p: Provider): p is Provider & ResourceMetricsProvider =>
  hasCapability(p, 'metricsResource');
export const hasPodVolumes = (p: Provider): p is Provider & PodVolumes =>
  hasCapability(p, 'volumes');
export const hasPullCredentials = (p: Provider): p is Provider & PodPullCredentials =>
  hasCapability(p, 'pullCredentials');
export const hasServiceReflection = (p: Provider): p is Provider & ServiceReflection =>
  hasCapability(p, 'services');
export const hasPodEvents = (p: Provider): p is Provider & PodEventNotifier =>
  hasCapability(p, 'events');
export const hasPodAddresses = (p: Provider): p is Provider & PodAddressProvider =>
  hasCapability(p, 'podAddresses');
export const isClosable = (p: Provider): p is Provider & Closable => hasCapability(p, 'close');

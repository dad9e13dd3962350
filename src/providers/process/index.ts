/**
 * The process provider: every container is a host process, isolated with Linux namespaces
 * (one mount, PID, UTS and IPC namespace per pod, a mount namespace per container for its
 * volumes) and limited with cgroups where the machine allows; otherwise plain processes, which
 * the log and the Node's `virtual-kubelet.io/process-isolation` annotation say. Each pod gets a
 * network namespace and an address of the node's pod CIDR through CNI plugins (network.ts), or
 * uses the host's network (pod IP = node IP) where that cannot work. Processes outlive the
 * agent: a restarted agent adopts them from the state directory. See docs/provider-guide.md for the details and limits.
 */
import type { V1Node, V1Pod, V1PodStatus } from '../../wire.js';
import { chmodSync, mkdirSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { abortOf } from '../../abort.js';
import { errorMessage, invalidInput, notFound, permanent, unavailable } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type {
  AttachStreams,
  ContainerAttach,
  ContainerExec,
  ContainerLogOptions,
  ContainerLogs,
  NodeConfigurer,
  PodEvent,
  PodEventNotifier,
  PodVolumes,
  PodAddressProvider,
  PodAddresses,
  PortForwarder,
  Provider,
  ResolvedVolume,
  StatsProvider,
  Summary,
} from '../../provider.js';
import { Cgroups } from './cgroups.js';
import { writeEtcFiles } from './etc-files.js';
import {
  DEFAULT_IMAGES,
  defaultStateDir,
  parseProcessConfig,
  type ImageEntrypoint,
  type ProcessConfig,
} from './config.js';
import { attachSession, execArgv, forwardPort, runSession } from './exec.js';
import { containerEnv, findTools, lookupImage, type Mount, type Tools } from './launch.js';
import { LogStamper, readLogFile } from './logs.js';
import { PodRunner, type RunnerContext } from './pod.js';
import { Probing } from './probing.js';
import { bootTime, isAlive, type ProcessRef } from './proc.js';
import { detectNamespaces, killSandbox, startSandbox } from './sandbox.js';
import { DEFAULT_HIDDEN_PATHS, expandHiddenPaths } from './isolation.js';
import { containerPrivileges } from './security.js';
import {
  CNI_BIN_DIRS,
  DEFAULT_SERVICE_CIDR,
  NETNS_DIR,
  NodeNetwork,
  cidrsOverlap,
  defaultPodCidr,
  findCniBinDir,
  netnsName,
  parseCidr,
  routeConflict,
  type Cidr,
  type PortMapping,
} from './network.js';
import {
  killNoted,
  loadRecords,
  noteProcesses,
  stopUnreadable,
  podDirName,
  saveRecord,
  STATE_VERSION,
  type ContainerRecord,
  type PodRecord,
} from './state.js';
import { metricsResource, podUsage, RateTracker, snapshot, statsSummary } from './stats.js';
import {
  type PreparedVolume,
  applyEmptyDirAccess,
  containerMounts,
  createMountTargets,
  MountTargets,
  podFsGroup,
  prepareVolumes,
  volumeDir,
  writeVolume,
} from './volumes.js';
import { goArch } from '../../kubelet/go-arch.js';
import { podHostname } from '../../kubelet/hostname.js';
import { podSpecProblems } from '../../kubelet/pod-validation.js';
import { resolvePort } from '../../probes/common.js';
import { httpCheck } from '../../probes/http.js';
import { processLimitProblem } from './launch.js';
import { parseQuantity } from '../../kubelet/quantity.js';
import { namespacedKey, podKey } from '../../kubelet/pod-key.js';
import { withoutStatus } from '../../kubelet/pod-status.js';

export { parseProcessConfig, type ImageEntrypoint, type ProcessConfig } from './config.js';
export { parseCidr } from './network.js';

export const ISOLATION_ANNOTATION = 'virtual-kubelet.io/process-isolation';

/** The `User-Agent` of preStop httpGet requests, as the kubelet of the pinned release sends it. */
const LIFECYCLE_USER_AGENT = 'kube-lifecycle/1.37';

export interface ProcessProviderOptions {
  readonly nodeName: string;
  /** The node's InternalIP, also the IP of host-network pods. Default: `127.0.0.1`. */
  readonly nodeIP?: string;
  /** The node's pod CIDR (the `--pod-cidr` flag); the config's `podCIDR` wins. */
  readonly podCIDR?: string;
  /**
   * The cluster DNS servers (`--cluster-dns`) written into the resolv.conf of pods with
   * dnsPolicy ClusterFirst. Default: none (such pods fall back to Default, with an Event).
   */
  readonly clusterDNS?: readonly string[];
  /** The cluster's DNS domain (`--cluster-domain`). Default: `cluster.local`. */
  readonly clusterDomain?: string;
  /** Validated like a file. Default: `{}`. */
  readonly config?: ProcessConfig;
  /** Default: `silentLogger`. */
  readonly logger?: Logger;
}

/**
 * A pod's start in flight (`createPod`, or a sandbox made again): `close()` and `deletePod` abort
 * it and wait for it to end, so that none spawns a process after them that nobody notes.
 */
interface PodStart {
  readonly key: string;
  readonly uid: string;
  readonly abort: AbortController;
  /** Resolves when the start has ended, either way. */
  readonly ended: Promise<void>;
}

/**
 * Runs pods as local processes. `close()` stops the agent's side (monitoring, sessions) and
 * leaves the pods' processes running on purpose: the next agent with the same state directory
 * adopts them. Delete pods to stop their processes.
 */
export class ProcessProvider
  implements
    Provider,
    NodeConfigurer,
    ContainerLogs,
    ContainerExec,
    ContainerAttach,
    PortForwarder,
    StatsProvider,
    PodVolumes,
    PodEventNotifier,
    PodAddressProvider
{
  readonly #nodeName: string;
  readonly #config: ProcessConfig;
  readonly #log: Logger;
  readonly #stateDir: string;
  readonly #podsDir: string;
  readonly #tools: Tools;
  readonly #namespaces: string | true;
  readonly #cgroups: Cgroups | string;
  readonly #ctx: RunnerContext;
  readonly #runners = new Map<string, PodRunner>();
  /** The host paths the pods mount onto, shared: see {@link MountTargets}. */
  readonly #targets = new MountTargets((dir) => {
    for (const r of this.#runners.values()) if (r.record.dir === dir) r.markDirty();
  });
  /** The last failure of each pod's check, reported once. */
  readonly #tickFailures = new WeakMap<PodRunner, string>();
  /** Pods whose sandbox is being made again. */
  readonly #reviving = new Set<string>();
  readonly #starts = new Set<PodStart>();
  readonly #probing: Probing;
  readonly #rates = new RateTracker();
  readonly #closing = new AbortController();
  readonly #privateTmp: boolean;
  /** The pod network, or why pods use the host's. */
  readonly #network: NodeNetwork | string;
  readonly #podCidr: Cidr;
  readonly #clusterDNS: readonly string[];
  readonly #clusterDomain: string;
  readonly #nodeIP: string;
  #monitor: NodeJS.Timeout | undefined;
  #callback: ((pod: V1Pod) => void) | undefined;
  #eventCallback: ((pod: V1Pod, event: PodEvent) => void) | undefined;

  constructor(options: ProcessProviderOptions) {
    if (!options.nodeName) throw invalidInput('ProcessProvider: nodeName must not be empty');
    this.#nodeName = options.nodeName;
    this.#config = parseProcessConfig(options.config ?? {});
    this.#log = (options.logger ?? silentLogger).child({ provider: 'process' });
    const tools = findTools();
    if (typeof tools === 'string') throw permanent(`the process provider cannot run: ${tools}`);
    this.#tools = tools;
    this.#stateDir = this.#config.stateDir ?? defaultStateDir(options.nodeName);
    this.#podsDir = join(this.#stateDir, 'pods');
    // The agent's alone: pods hold secrets, and every pod's volumes live below.
    mkdirSync(this.#podsDir, { recursive: true, mode: 0o700 });
    chmodSync(this.#stateDir, 0o700);
    chmodSync(this.#podsDir, 0o700);
    this.#namespaces =
      this.#config.isolation === 'none' ? 'disabled by config' : detectNamespaces(tools);
    this.#cgroups =
      this.#config.cgroups === 'none'
        ? 'disabled by config'
        : Cgroups.detect(this.#config.cgroupParent ?? join('virtual-kubelet', options.nodeName));
    // A private /tmp would hide a state directory below /tmp from the pod's mounts.
    const underTmp = relative('/tmp', resolve(this.#stateDir));
    this.#privateTmp = underTmp.startsWith('..') || isAbsolute(underTmp);
    if (this.#namespaces !== true) {
      this.#log.warn(
        { reason: this.#namespaces },
        'namespaces unavailable: pods run as plain processes (no hostname, /tmp or volume mounts)',
      );
    }
    if (typeof this.#cgroups === 'string') {
      this.#log.warn(
        { reason: this.#cgroups },
        'cgroups unavailable: no resource limits, stats from /proc',
      );
    }
    if (this.#namespaces === true && !this.#privateTmp) {
      this.#log.warn(
        { stateDir: this.#stateDir },
        'the state directory is under /tmp: pods share the host /tmp',
      );
    }
    const nodeIP = options.nodeIP ?? '127.0.0.1';
    this.#nodeIP = nodeIP;
    this.#podCidr = parseCidr(
      this.#config.podCIDR ?? options.podCIDR ?? defaultPodCidr(options.nodeName),
      'pod CIDR',
    );
    const serviceCidr = parseCidr(this.#config.serviceCIDR ?? DEFAULT_SERVICE_CIDR, 'service CIDR');
    if (cidrsOverlap(this.#podCidr, serviceCidr))
      throw invalidInput(
        `the pod CIDR ${this.#podCidr.text} overlaps the service CIDR ${serviceCidr.text}`,
      );
    this.#network = this.#setUpNetwork(serviceCidr);
    if (typeof this.#network === 'string') {
      if (this.#config.network === 'cni')
        throw permanent(`network "cni" cannot work: ${this.#network}`);
      if (this.#config.network !== 'host')
        this.#log.warn(
          { reason: this.#network },
          'no pod network: pods use the host network (pod IP = node IP)',
        );
    } else {
      this.#log.info(
        { podCIDR: this.#podCidr.text, bridge: this.#network.bridge },
        'pod network through CNI',
      );
    }
    this.#clusterDNS = [...(options.clusterDNS ?? [])];
    this.#clusterDomain = options.clusterDomain ?? 'cluster.local';
    this.#ctx = {
      tools,
      namespaces: this.#namespaces === true,
      cgroups: typeof this.#cgroups === 'string' ? undefined : this.#cgroups,
      images: withDefaults(this.#config.images ?? {}),
      stamper: new LogStamper(
        this.#config.maxLogBytes ?? 10 * 1024 * 1024,
        this.#config.maxLogFiles ?? 2,
      ),
      podIP: nodeIP,
      hostIP: nodeIP,
      backoffInitialSeconds: this.#config.backoffInitialSeconds ?? 10,
      backoffMaxSeconds: this.#config.backoffMaxSeconds ?? 300,
      hiddenPaths: [
        resolve(this.#stateDir),
        ...expandHiddenPaths(this.#config.hiddenPaths ?? DEFAULT_HIDDEN_PATHS),
      ],
      log: this.#log,
      probeState: (record, name) => this.#probing.state(record, name),
      event: (pod, e) => this.#eventCallback?.(pod, e),
    };
    this.#probing = new Probing({
      podIP: (runner) => this.#podIP(runner),
      log: this.#log,
      exec: (runner, c, command, streams, signal) =>
        this.#exec(runner, c, command, streams, signal),
      changed: (runner) => {
        if (runner.tick()) this.#emit(runner);
      },
      event: (pod, e) => this.#eventCallback?.(pod, e),
    });
    this.#adopt();
    this.#monitor = setInterval(() => {
      this.#tickAll();
    }, this.#config.monitorIntervalMs ?? 500);
    this.#monitor.unref();
  }

  /**
   * The pod's network, made before its environment is resolved (as the kubelet makes the sandbox
   * first): with CNI its own namespace and an address of the pod CIDR, else the node's address.
   * Idempotent per pod UID; `deletePod` removes it also when `createPod` never ran.
   */
  async preparePod(pod: V1Pod, signal: AbortSignal): Promise<PodAddresses> {
    const { podIPs, hostIP } = await this.ensurePodNetwork(pod, signal);
    return { podIPs, hostIP };
  }

  /** A short description of the isolation in use, also the Node annotation. */
  get isolation(): string {
    const ns = this.#namespaces === true ? 'namespaces' : `no-namespaces (${this.#namespaces})`;
    const cg =
      typeof this.#cgroups === 'string'
        ? `no-cgroups (${this.#cgroups})`
        : `cgroups-${this.#cgroups.version}`;
    const net =
      typeof this.#network === 'string'
        ? `host-network (${this.#network})`
        : `cni-network ${this.#podCidr.text}`;
    return `${ns}, ${cg}, ${net}`;
  }

  /** The pod CIDR pods get addresses from, when they have a network of their own. */
  get podCIDR(): string | undefined {
    return typeof this.#network === 'string' ? undefined : this.#podCidr.text;
  }

  /** The node network, or why there is none (then pods use the host's network). */
  #setUpNetwork(serviceCidr: Cidr): NodeNetwork | string {
    if (this.#config.network === 'host') return 'disabled by config';
    if (process.getuid?.() !== 0) return 'the agent does not run as root';
    if (this.#namespaces !== true) return `no namespaces: ${this.#namespaces}`;
    const binDir = this.#config.cniBinDir
      ? findCniBinDir([this.#config.cniBinDir])
      : findCniBinDir(CNI_BIN_DIRS);
    if (binDir === undefined)
      return `no CNI plugins (bridge, host-local, portmap, loopback) in ${this.#config.cniBinDir ?? CNI_BIN_DIRS.join(' or ')}`;
    const network = new NodeNetwork({
      nodeName: this.#nodeName,
      podCidr: this.#podCidr,
      serviceCidr,
      binDir,
      dir: join(this.#stateDir, 'network'),
      log: this.#log,
    });
    const conflict = routeConflict(this.#podCidr, network.bridge);
    if (conflict !== undefined)
      return `the pod CIDR ${this.#podCidr.text} overlaps a route of this machine: ${conflict}`;
    try {
      network.setUp();
    } catch (err) {
      return errorMessage(err);
    }
    return network;
  }

  /** The IP of a pod: its own, else (host network) the node's. */
  #podIP(runner: PodRunner): string {
    return runner.record.podIPs?.[0] ?? this.#nodeIP;
  }

  /**
   * The pod's network: a network namespace with an address of the pod CIDR, made once per pod
   * UID (calls after the first give the same addresses without a second ADD; one whose netns is
   * gone, after a reboot, is made again). Host-network pods, and every pod without a pod
   * network, get the node's IP and no namespace.
   */
  async ensurePodNetwork(
    pod: V1Pod,
    signal: AbortSignal,
  ): Promise<{ podIPs: readonly string[]; hostIP: string; netns?: string }> {
    signal.throwIfAborted();
    const network = this.#network;
    const uid = pod.metadata?.uid ?? '';
    if (typeof network === 'string' || pod.spec?.hostNetwork === true || uid === '')
      return { podIPs: [this.#nodeIP], hostIP: this.#nodeIP };
    const { ips } = await network.ensurePod(uid, hostPorts(pod));
    return { podIPs: ips, hostIP: this.#nodeIP, netns: join(NETNS_DIR, netnsName(uid)) };
  }

  /** Removes the pod's network (CNI DEL, netns); logged, never thrown: it is retried on start. */
  async #removePodNetwork(uid: string): Promise<void> {
    if (typeof this.#network === 'string' || uid === '') return;
    try {
      await this.#network.removePod(uid);
    } catch (err) {
      this.#log.error({ uid, err: errorMessage(err) }, 'cannot remove the pod network');
    }
  }

  get stateDir(): string {
    return this.#stateDir;
  }

  #adopt(): void {
    const { records, unreadable, unfinished } = loadRecords(this.#podsDir);
    for (const dir of unfinished) {
      // A createPod the agent before did not finish: its sandbox, maybe still being set up.
      const stopped = killNoted(dir).length;
      if (stopped > 0)
        this.#log.warn({ dir, stopped }, 'stopped the processes of a pod whose start never ended');
    }
    for (const { dir, error } of unreadable) {
      // Adopting what cannot be read is impossible, and leaving it would orphan the processes.
      const stopped = stopUnreadable(dir);
      this.#log.error(
        { dir, err: errorMessage(error), stopped },
        'cannot read a pod state: its processes were stopped and the pod is reported lost',
      );
    }
    for (const record of records) {
      const runner = new PodRunner(record, this.#ctx);
      this.#runners.set(runner.key, runner);
      this.#targets.use(record.dir, Object.values(record.mounts).flat(), record.createdTargets);
      const alive = record.containers.filter((c) => c.run && isAlive(c.run.wrapper)).length;
      this.#log.info({ pod: runner.key, running: alive, phase: record.phase }, 'adopted pod');
      if (record.deletingSince !== undefined) void this.#finishDelete(runner, record.pod);
    }
    // Networks of pods that are gone (deleted while the agent was down, or unreadable).
    if (typeof this.#network !== 'string') {
      const known = new Set(records.map((r) => r.pod.metadata?.uid ?? ''));
      for (const n of this.#network.records()) {
        if (known.has(n.uid)) continue;
        this.#log.info({ uid: n.uid }, 'removing the network of a pod that is gone');
        void this.#removePodNetwork(n.uid);
      }
    }
  }

  #tickAll(): void {
    for (const runner of this.#runners.values()) {
      try {
        this.#reviveSandbox(runner);
        this.#probing.sync(runner);
        if (runner.tick()) this.#emit(runner);
        this.#tickFailures.delete(runner);
      } catch (err) {
        // Once per pod and message: the check runs every monitor interval.
        const message = errorMessage(err);
        if (this.#tickFailures.get(runner) === message) continue;
        this.#tickFailures.set(runner, message);
        this.#log.error({ pod: runner.key, err: message }, 'pod check failed');
        this.#eventCallback?.(runner.record.pod, {
          type: 'Warning',
          reason: 'FailedSync',
          message: `error checking the pod: ${message}`,
        });
      }
    }
  }

  #emit(runner: PodRunner): void {
    const cb = this.#callback;
    if (!cb) return;
    try {
      cb(this.#view(runner));
    } catch (err) {
      this.#log.error({ err }, 'the pod status callback threw');
    }
  }

  #view(runner: PodRunner): V1Pod {
    return { ...structuredClone(runner.record.pod), status: runner.status() };
  }

  #runner(namespace: string, name: string): PodRunner {
    const r = this.#runners.get(namespacedKey(namespace, name));
    if (!r) throw notFound(`pod "${name}" does not exist`);
    return r;
  }

  #throwIfClosed(): void {
    if (this.#closing.signal.aborted) throw unavailable('the process provider is closed');
  }

  /**
   * Sets the pod up (volumes, sandbox) and starts its first containers. A pod already known
   * with the same UID (also one adopted after an agent restart) is left as it is. A container
   * with no command to run stays Waiting (CreateContainerConfigError); the first call then
   * throws `Unavailable` with the reason, so the core records an Event. `close()` and a
   * `deletePod` of the pod abort the call and wait for it to end.
   */
  createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    return this.#tracked(pod, signal, (s) => this.#create(pod, s));
  }

  /**
   * Runs `start` for `pod` as a {@link PodStart}, under a signal that `signal`, `close()` and a
   * `deletePod` of the pod abort.
   */
  #tracked<T>(
    pod: V1Pod,
    signal: AbortSignal,
    start: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const abort = new AbortController();
    const result = start(AbortSignal.any([signal, this.#closing.signal, abort.signal]));
    const ended = result.then(ignore, ignore);
    const entry: PodStart = { key: podKey(pod), uid: pod.metadata?.uid ?? '', abort, ended };
    this.#starts.add(entry);
    void ended.then(() => this.#starts.delete(entry));
    return result;
  }

  async #create(pod: V1Pod, signal: AbortSignal): Promise<void> {
    this.#throwIfClosed();
    signal.throwIfAborted();
    const namespace = pod.metadata?.namespace;
    const name = pod.metadata?.name;
    const uid = pod.metadata?.uid ?? '';
    if (!namespace || !name || !pod.spec)
      throw invalidInput('the pod has no namespace, name or spec');
    const problem = podSpecProblems(pod) ?? processLimitProblem(pod);
    if (problem !== undefined) throw invalidInput(`invalid pod spec: ${problem}`);
    const k = namespacedKey(namespace, name);
    const existing = this.#runners.get(k);
    if (existing) {
      if (existing.record.pod.metadata?.uid === uid) return;
      this.#log.info({ pod: k }, 'createPod: replacing a pod of the same name');
      await existing.delete({
        ...existing.record.pod,
        metadata: { ...existing.record.pod.metadata, deletionGracePeriodSeconds: 0 },
      });
      await this.#forget(existing);
    }
    const dir = join(this.#podsDir, podDirName(pod));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const volumes = prepareVolumes(pod, dir);
    const all = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
    const mounts = Object.fromEntries(all.map((c) => [c.name, containerMounts(c, volumes)]));
    const anyMounts = Object.values(mounts).some((m) => m.length > 0);
    if (anyMounts && this.#namespaces !== true) {
      throw permanent(`pod ${k} mounts volumes, which needs mount namespaces: ${this.#namespaces}`);
    }
    if (
      all.some((c) => c.securityContext?.readOnlyRootFilesystem === true) &&
      this.#namespaces !== true
    ) {
      throw permanent(
        `pod ${k} has a container with readOnlyRootFilesystem, which needs mount namespaces: ${this.#namespaces}`,
      );
    }
    // Before the sandbox, which starts in the pod's network namespace. Kept when a later step
    // fails: a retry of createPod finds it, and deletePod removes it.
    const net = await this.ensurePodNetwork(pod, signal);
    const createdTargets = createMountTargets(Object.values(mounts).flat());
    this.#targets.use(dir, Object.values(mounts).flat(), createdTargets);
    let sandbox: ProcessRef | undefined;
    if (this.#namespaces === true) {
      try {
        sandbox = await this.#startSandbox(pod, dir, volumes, net.netns, signal);
      } catch (err) {
        this.#targets.release(dir);
        throw err;
      }
    }
    const record: PodRecord = {
      version: STATE_VERSION,
      pod: withoutStatus(pod),
      dir,
      ...(sandbox ? { sandbox } : {}),
      ...(net.netns !== undefined ? { netns: net.netns, podIPs: [...net.podIPs] } : {}),
      startTime: Date.now(),
      containers: [
        ...(pod.spec.initContainers ?? []).map((c) => this.#fresh(c.name, true)),
        ...pod.spec.containers.map((c) => this.#fresh(c.name, false)),
      ],
      phase: 'Pending',
      volumes,
      mounts,
      createdTargets,
    };
    if (pod.status?.qosClass !== undefined) record.pod.status = { qosClass: pod.status.qosClass };
    try {
      saveRecord(record);
      if (sandbox) noteProcesses(dir, sandbox);
    } catch (err) {
      // A sandbox of no record would be adopted by nobody.
      if (sandbox) killSandbox(sandbox);
      this.#targets.release(dir);
      throw err;
    }
    const runner = new PodRunner(record, this.#ctx);
    if (sandbox) this.#writeEtcFiles(runner);
    this.#runners.set(k, runner);
    runner.tick();
    this.#emit(runner);
    this.#log.info({ pod: k, sandbox: sandbox?.pid, podIP: net.podIPs[0] }, 'pod created');
    const config = record.containers.find(
      (c) =>
        c.state.kind === 'waiting' &&
        (c.state.reason === 'CreateContainerConfigError' ||
          c.state.reason === 'CreateContainerError'),
    );
    if (config?.state.kind === 'waiting')
      throw unavailable(config.state.message ?? config.state.reason);
  }

  /**
   * The pod's resolv.conf and hosts, for its containers' mount namespaces; the pod IPs are
   * those its status reports. DNS Events (MissingClusterDNS) go to the pod.
   */
  #writeEtcFiles(runner: PodRunner): void {
    const pod = runner.record.pod;
    const status = runner.status();
    const podIPs = (status.podIPs ?? []).map((p) => p.ip).filter((ip) => ip !== '');
    const events = writeEtcFiles(pod, runner.record.dir, {
      clusterDNS: this.#clusterDNS,
      clusterDomain: this.#clusterDomain,
      podIPs: podIPs.length > 0 ? podIPs : status.podIP ? [status.podIP] : [],
      nodeIPs: [this.#nodeIP],
    });
    for (const e of events) {
      this.#log.warn({ pod: runner.key, reason: e.reason }, e.message);
      this.#eventCallback?.(pod, e);
    }
  }

  async #startSandbox(
    pod: V1Pod,
    dir: string,
    volumes: readonly PreparedVolume[],
    netns: string | undefined,
    signal: AbortSignal,
  ): Promise<ProcessRef> {
    const fd = openSync(join(dir, 'sandbox.log'), 'a');
    try {
      const ref = await startSandbox(
        {
          ...(netns !== undefined ? { netns } : {}),
          hostname: podHostname(pod),
          privateTmp: this.#privateTmp,
          tmpfsDirs: volumes.filter((v) => v.tmpfs).map((v) => v.source),
          readyFile: join(dir, 'sandbox.ready'),
          logFd: fd,
          podDir: dir,
        },
        this.#tools,
        signal,
      );
      // A memory emptyDir is a tmpfs of the sandbox's mount namespace, reached from here
      // through its root.
      for (const v of volumes.filter((x) => x.tmpfs))
        applyEmptyDirAccess(join('/proc', String(ref.pid), 'root', v.source), pod);
      return ref;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Makes a pod's sandbox again when it is gone while the pod should run (the machine
   * rebooted, or someone killed it); its containers then restart as their policy says.
   */
  #reviveSandbox(runner: PodRunner): void {
    const r = runner.record;
    if (!r.sandbox || isAlive(r.sandbox) || runner.terminal || r.deletingSince !== undefined)
      return;
    if (this.#reviving.has(runner.key)) return;
    this.#reviving.add(runner.key);
    this.#log.warn({ pod: runner.key }, 'the pod sandbox is gone: making it again');
    // The network namespace went with a reboot too: made again (same pod, maybe a new IP).
    const made = this.#tracked(r.pod, this.#closing.signal, async (signal) => {
      let netns: string | undefined;
      if (r.netns !== undefined) {
        const net = await this.ensurePodNetwork(r.pod, signal);
        r.podIPs = [...net.podIPs];
        netns = net.netns;
      }
      const ref = await this.#startSandbox(r.pod, r.dir, r.volumes, netns, signal);
      try {
        noteProcesses(r.dir, ref);
      } catch (err) {
        killSandbox(ref);
        throw err;
      }
      return ref;
    });
    made
      .then((ref) => {
        r.sandbox = ref;
        runner.markDirty();
      })
      .catch((err: unknown) => {
        this.#log.error({ pod: runner.key, err: errorMessage(err) }, 'cannot make the pod sandbox');
      })
      .finally(() => this.#reviving.delete(runner.key));
  }

  #fresh(name: string, init: boolean): ContainerRecord {
    return {
      name,
      init,
      restartCount: 0,
      state: { kind: 'waiting', reason: init ? 'PodInitializing' : 'ContainerCreating' },
      backoffSeconds: 0,
      ready: false,
      started: false,
    };
  }

  /**
   * Keeps the new spec (activeDeadlineSeconds, labels, annotations); images change nothing. An
   * ephemeral container new in the spec starts at once, in the pod's namespaces (it shares the
   * pod's PID namespace, so `targetContainerName` needs nothing more), and never restarts.
   */
  updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const runner = this.#runner(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
    const qos = runner.record.pod.status?.qosClass;
    runner.record.pod = withoutStatus(pod);
    if (qos !== undefined) runner.record.pod.status = { qosClass: qos };
    if (!runner.terminal && runner.record.deletingSince === undefined) this.#addEphemeral(runner);
    runner.markDirty();
    if (runner.tick()) this.#emit(runner);
    return Promise.resolve();
  }

  /** Records the ephemeral containers of the spec the pod does not have yet, with their mounts. */
  #addEphemeral(runner: PodRunner): void {
    const r = runner.record;
    for (const c of r.pod.spec?.ephemeralContainers ?? []) {
      if (runner.container(c.name)) continue;
      let mounts: Mount[];
      try {
        mounts = containerMounts(c, r.volumes);
        if (mounts.length > 0 && this.#namespaces !== true)
          throw permanent(`mounting volumes needs mount namespaces: ${this.#namespaces}`);
        r.createdTargets.push(...createMountTargets(mounts));
        this.#targets.use(r.dir, mounts, r.createdTargets);
      } catch (err) {
        // As a container the kubelet cannot make: it stays Waiting, with the reason.
        r.containers.push({
          ...this.#fresh(c.name, false),
          ephemeral: true,
          state: { kind: 'waiting', reason: 'CreateContainerError', message: errorMessage(err) },
        });
        continue;
      }
      r.mounts[c.name] = mounts;
      r.containers.push({ ...this.#fresh(c.name, false), ephemeral: true });
      this.#log.info({ pod: runner.key, container: c.name }, 'ephemeral container added');
    }
  }

  /**
   * Runs preStop hooks, sends SIGTERM to every container's process group, SIGKILL after the
   * grace period, then reports the terminal status and forgets the pod (its files go too).
   * An unknown pod is not an error. A later call with a shorter grace period brings the SIGKILL
   * forward; when `signal` aborts the containers get SIGKILL at once, and the call resolves once
   * they are gone (within about a second), not at the end of the grace period. A start of the
   * pod in flight (`createPod`, a sandbox made again) is aborted first, and waited for until it
   * has killed what it spawned or `signal` aborts.
   */
  async deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    await this.#endStarts(pod, signal);
    const runner = this.#runners.get(podKey(pod));
    if (!runner) {
      // Volume content and network of a pod that was never created (createPod failed).
      if (pod.metadata?.uid !== undefined) {
        rmSync(join(this.#podsDir, podDirName(pod)), { recursive: true, force: true });
        await this.#removePodNetwork(pod.metadata.uid);
      }
      return;
    }
    if (pod.metadata?.uid !== undefined && runner.record.pod.metadata?.uid !== pod.metadata.uid)
      return;
    await this.#finishDelete(runner, pod, signal);
  }

  /** Aborts the starts in flight of `pod` (of its UID, when it has one) and waits for them. */
  async #endStarts(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const key = podKey(pod);
    const uid = pod.metadata?.uid;
    const starts = [...this.#starts].filter(
      (s) => s.key === key && (uid === undefined || s.uid === uid),
    );
    if (starts.length === 0) return;
    for (const s of starts) s.abort.abort(unavailable('the pod is being deleted'));
    await Promise.race([Promise.all(starts.map((s) => s.ended)), abortOf(signal)]);
  }

  async #finishDelete(runner: PodRunner, pod: V1Pod, signal?: AbortSignal): Promise<void> {
    await runner.delete(pod, (c, ms, killed) => this.#preStop(runner, c, ms, killed), signal);
    runner.tick();
    this.#emit(runner);
    await this.#forget(runner);
  }

  async #forget(runner: PodRunner): Promise<void> {
    if (this.#runners.get(runner.key) === runner) this.#runners.delete(runner.key);
    const uid = runner.record.pod.metadata?.uid ?? '';
    this.#probing.forget(uid);
    // The sandbox is gone (delete killed it): nothing uses the namespace any more.
    if (runner.record.netns !== undefined) await this.#removePodNetwork(uid);
    this.#targets.release(runner.record.dir);
    rmSync(runner.record.dir, { recursive: true, force: true });
    this.#log.info({ pod: runner.key }, 'pod stopped and forgotten');
  }

  async #preStop(
    runner: PodRunner,
    c: ContainerRecord,
    ms: number,
    killed: AbortSignal,
  ): Promise<void> {
    const hook = runner.spec(c.name)?.lifecycle?.preStop;
    if (!hook) return;
    // A timeout past 2^31-1 ms would fire at once: such a grace period has no end.
    const signal =
      ms > 2_147_483_647 ? killed : AbortSignal.any([AbortSignal.timeout(Math.max(1, ms)), killed]);
    if (hook.exec?.command) {
      await this.#exec(runner, c, hook.exec.command, { tty: false }, signal);
    } else if (hook.httpGet) {
      const spec = runner.spec(c.name);
      // As the kubelet's lifecycle client: a named port is the container's, redirects are
      // followed only on the same host (one elsewhere ends the hook), certificates unchecked.
      const port = spec ? resolvePort(hook.httpGet.port, spec) : Number.NaN;
      const result = await httpCheck(
        {
          action: hook.httpGet,
          host: hook.httpGet.host || this.#podIP(runner),
          port,
          userAgent: LIFECYCLE_USER_AGENT,
        },
        Math.max(1, ms),
        signal,
      );
      if (result.outcome === 'failure') throw new Error(`preStop hook: ${result.output}`);
    } else if (hook.sleep) {
      await delay(hook.sleep.seconds * 1000, undefined, { signal });
    }
  }

  getPod(namespace: string, name: string, signal: AbortSignal): Promise<V1Pod | undefined> {
    signal.throwIfAborted();
    const r = this.#runners.get(namespacedKey(namespace, name));
    return Promise.resolve(r && this.#view(r));
  }

  getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    signal.throwIfAborted();
    const r = this.#runners.get(namespacedKey(namespace, name));
    if (r) r.tick();
    return Promise.resolve(r?.status());
  }

  getPods(signal: AbortSignal): Promise<V1Pod[]> {
    signal.throwIfAborted();
    return Promise.resolve([...this.#runners.values()].map((r) => this.#view(r)));
  }

  notifyPods(callback: (pod: V1Pod) => void): void {
    this.#callback = callback;
  }

  /** Container starts, back-offs, probe failures and stops, as the kubelet reports them. */
  notifyPodEvents(callback: (pod: V1Pod, event: PodEvent) => void): void {
    this.#eventCallback = callback;
  }

  /**
   * Writes volume content (configMap, secret, downwardAPI, projected) into the pod's volume
   * directories, atomically; containers see it through their bind mounts at once.
   */
  setPodVolumes(
    pod: V1Pod,
    volumes: readonly ResolvedVolume[],
    signal: AbortSignal,
  ): Promise<void> {
    signal.throwIfAborted();
    const runner = this.#runners.get(podKey(pod));
    const dir =
      runner && runner.record.pod.metadata?.uid === pod.metadata?.uid
        ? runner.record.dir
        : join(this.#podsDir, podDirName(pod));
    const fsGroup = podFsGroup(pod);
    for (const v of volumes)
      writeVolume(volumeDir(dir, v.name), v, fsGroup !== undefined ? { fsGroup } : {});
    return Promise.resolve();
  }

  /** Capacity from this machine (or the config), allocatable less the reserve, and the isolation. */
  configureNode(node: V1Node): void {
    const c = this.#config;
    const cpu = c.cpu ?? String(cpus().length);
    const memory = c.memory ?? String(totalmem());
    const pods = c.pods ?? '110';
    const reservedCpu = parseQuantity(c.reserved?.cpu ?? '100m');
    const reservedMem = parseQuantity(c.reserved?.memory ?? '256Mi');
    const allocCpu = Math.max(0, Math.round((parseQuantity(cpu) - reservedCpu) * 1000));
    const allocMem = Math.max(0, Math.floor(parseQuantity(memory) - reservedMem));
    node.status ??= {};
    node.status.capacity = { ...node.status.capacity, cpu, memory, pods };
    node.status.allocatable = {
      ...node.status.allocatable,
      cpu: `${String(allocCpu)}m`,
      memory: String(allocMem),
      pods,
    };
    // The machine's, as a kubelet reports its host's.
    node.status.nodeInfo = {
      bootID: '',
      kubeProxyVersion: '',
      kubeletVersion: '',
      machineID: '',
      systemUUID: '',
      ...node.status.nodeInfo,
      containerRuntimeVersion: 'process://1',
      kernelVersion: release(),
      osImage: osImage(),
      operatingSystem: 'linux',
      architecture: goArch(),
    };
    if (this.podCIDR !== undefined) {
      node.spec = { ...node.spec, podCIDR: this.podCIDR, podCIDRs: [this.podCIDR] };
    }
    node.metadata ??= {};
    node.metadata.annotations = {
      ...node.metadata.annotations,
      [ISOLATION_ANNOTATION]: this.isolation,
    };
  }

  /**
   * The container's log file of the current run (or the one before with `previous`), with the
   * kubelet's options; `follow` ends when the run ends. See logs.ts for timestamps and rotation.
   */
  getContainerLogs(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Promise<Readable> {
    return new Promise((resolve) => {
      signal.throwIfAborted();
      const runner = this.#runner(namespace, pod);
      const c = runner.container(container);
      if (!c) throw notFound(`container "${container}" not found in pod "${pod}"`);
      const path = options.previous ? c.previousLog : c.run?.logPath;
      if (path === undefined) {
        throw invalidInput(
          options.previous
            ? `previous terminated container "${container}" in pod "${pod}" not found`
            : `container "${container}" in pod "${pod}" is waiting to start`,
        );
      }
      resolve(
        readLogFile(
          {
            path,
            maxFiles: this.#config.maxLogFiles ?? 2,
            ended: () => c.run?.logPath !== path || !runner.isRunning(c),
          },
          options,
          AbortSignal.any([signal, this.#closing.signal]),
        ),
      );
    });
  }

  async #running(
    namespace: string,
    pod: string,
    container: string,
  ): Promise<{ runner: PodRunner; c: ContainerRecord; main: ProcessRef }> {
    this.#throwIfClosed();
    const runner = this.#runner(namespace, pod);
    const c = runner.container(container);
    if (!c) throw notFound(`container "${container}" not found in pod "${pod}"`);
    for (let i = 0; i < 40; i++) {
      if (!runner.isRunning(c)) break;
      const main = runner.findMain(c);
      if (main) return { runner, c, main };
      await delay(50);
    }
    throw invalidInput(`container "${container}" in pod "${pod}" is not running`);
  }

  async #exec(
    runner: PodRunner,
    c: ContainerRecord,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number> {
    const main = runner.findMain(c);
    if (!main) throw invalidInput(`container "${c.name}" is not running`);
    const spec = runner.spec(c.name);
    if (!spec) throw notFound(`container "${c.name}" not found`);
    const pod = runner.record.pod;
    const env = containerEnv(spec, pod.spec?.hostname ?? pod.metadata?.name ?? '');
    const privileges = containerPrivileges(pod, spec);
    if ('error' in privileges) throw invalidInput(privileges.error);
    const cg = this.#ctx.cgroups;
    const argv = execArgv(
      {
        main,
        namespaces: runner.record.sandbox !== undefined,
        env,
        workingDir:
          spec.workingDir ?? lookupImage(spec.image ?? '', this.#ctx.images)?.workingDir ?? '/',
        privileges,
        cgroupProcs: cg ? cg.prepare(pod.metadata?.uid ?? '', c.name, limitsOf(spec)) : [],
      },
      command,
      streams.tty,
      this.#tools,
    );
    return runSession(argv, env, streams, signal);
  }

  /**
   * Runs `command` in the container's namespaces and cgroup, with its env, working directory
   * and user; a TTY is a pty from `script`. Resolves to the exit code.
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
    if (command.length === 0) throw invalidInput('the command is empty');
    const { runner, c } = await this.#running(namespace, pod, container);
    return this.#exec(runner, c, command, streams, AbortSignal.any([signal, this.#closing.signal]));
  }

  /**
   * Connects to the main process: stdin goes to its stdin FIFO (containers with `stdin: true`),
   * stdout gets what it writes from now on. Ends when it exits, stdin ends or `signal` fires.
   */
  async attachToContainer(
    namespace: string,
    pod: string,
    container: string,
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<void> {
    signal.throwIfAborted();
    const { runner, c, main } = await this.#running(namespace, pod, container);
    const run = c.run;
    if (!run) throw invalidInput(`container "${container}" is not running`);
    await attachSession(
      {
        main,
        logPath: run.logPath,
        stdinPath: run.stdinPath,
        running: () => c.run === run && runner.isRunning(c),
      },
      streams,
      AbortSignal.any([signal, this.#closing.signal]),
    );
  }

  /**
   * Dials `port` at the pod's IP (routed to the node's bridge), or on 127.0.0.1 for a pod on
   * the host's network.
   */
  async portForward(
    namespace: string,
    pod: string,
    port: number,
    stream: Duplex,
    signal: AbortSignal,
  ): Promise<void> {
    this.#throwIfClosed();
    const runner = this.#runner(namespace, pod);
    if (runner.terminal) throw invalidInput(`pod "${pod}" is not running`);
    const host = runner.record.netns !== undefined ? this.#podIP(runner) : '127.0.0.1';
    await forwardPort(host, port, stream, AbortSignal.any([signal, this.#closing.signal]));
  }

  /** The Summary API from cgroups (or /proc) and the node's /proc figures. */
  getStatsSummary(signal: AbortSignal): Promise<Summary> {
    signal.throwIfAborted();
    return Promise.resolve(
      statsSummary(
        snapshot(
          this.#nodeName,
          bootTime(),
          podUsage(this.#runners.values(), this.#ctx.cgroups),
          this.#rates,
        ),
      ),
    );
  }

  /** `/metrics/resource` (what metrics-server reads), from the same figures. */
  getMetricsResource(signal: AbortSignal): Promise<string> {
    signal.throwIfAborted();
    return Promise.resolve(
      metricsResource(
        snapshot(
          this.#nodeName,
          bootTime(),
          podUsage(this.#runners.values(), this.#ctx.cgroups),
          this.#rates,
        ),
      ),
    );
  }

  /**
   * Stops monitoring and ends sessions; pod processes keep running (see the class comment).
   * Starts in flight are aborted and waited for (until `signal` aborts): each ends with what it
   * spawned killed, or with the pod recorded. Idempotent.
   */
  async close(signal?: AbortSignal): Promise<void> {
    this.#closing.abort(unavailable('the process provider is closed'));
    if (this.#monitor) clearInterval(this.#monitor);
    this.#monitor = undefined;
    const probing = this.#probing.close();
    const starts = Promise.all([...this.#starts].map((s) => s.ended));
    await (signal ? Promise.race([starts, abortOf(signal)]) : starts);
    for (const runner of this.#runners.values()) {
      try {
        runner.tick();
      } catch {
        // Saved on the next start.
      }
    }
    await probing;
    // The bridge and the guard stay while pods have a network (their processes outlive us).
    if (typeof this.#network !== 'string' && this.#runners.size === 0) this.#network.tearDown();
  }

  /** Test and operations hook: the pods known, by `namespace/name`. */
  podKeys(): string[] {
    return [...this.#runners.keys()];
  }

  /** Test hook: the record of a pod (processes, runs), read-only. */
  podRecord(namespace: string, name: string): Readonly<PodRecord> | undefined {
    return this.#runners.get(namespacedKey(namespace, name))?.record;
  }

  /** The main process of a running container, for tests and tools. */
  mainProcess(namespace: string, name: string, container: string): ProcessRef | undefined {
    const r = this.#runners.get(namespacedKey(namespace, name));
    const c = r?.container(container);
    return r && c && r.isRunning(c) ? r.findMain(c) : undefined;
  }
}

const ignore = (): void => undefined;

/** PRETTY_NAME of /etc/os-release, as the kubelet reports the OS image. */
function osImage(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    return m?.[1] ?? 'Linux';
  } catch {
    return 'Linux';
  }
}

/** The configured images first (they win), then the defaults they do not name. */
function withDefaults(
  images: Readonly<Record<string, ImageEntrypoint>>,
): Readonly<Record<string, ImageEntrypoint>> {
  const defaults = Object.entries(DEFAULT_IMAGES).filter(([name]) => !(name in images));
  return { ...images, ...Object.fromEntries(defaults) };
}

/** The pod's hostPorts, for the portmap plugin. */
function hostPorts(pod: V1Pod): PortMapping[] {
  const out: PortMapping[] = [];
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    for (const p of c.ports ?? []) {
      if (p.hostPort === undefined || p.hostPort === 0) continue;
      out.push({
        hostPort: p.hostPort,
        containerPort: p.containerPort,
        protocol: (p.protocol ?? 'TCP').toLowerCase(),
        ...(p.hostIP ? { hostIP: p.hostIP } : {}),
      });
    }
  }
  return out;
}

function limitsOf(spec: { resources?: { limits?: Record<string, string> } }): {
  memoryBytes?: number;
  cpuCores?: number;
} {
  const l = spec.resources?.limits ?? {};
  return {
    ...(l.memory !== undefined ? { memoryBytes: parseQuantity(l.memory) } : {}),
    ...(l.cpu !== undefined ? { cpuCores: parseQuantity(l.cpu) } : {}),
  };
}

/**
 * The cri provider: pods run as real containers from OCI images, through a container runtime
 * that speaks CRI v1 (containerd's CRI plugin, CRI-O). Each pod is a sandbox (the runtime makes
 * its network through CNI, with addresses from the node's pod CIDR) with one container per pod
 * container, run as the kubelet runs them: image pulls by `imagePullPolicy` with back-off, init
 * containers in order (sidecars among them run on), restarts by `restartPolicy` with the
 * kubelet's crash back-off, postStart and preStop hooks, graceful stops, `activeDeadlineSeconds`
 * (see lifecycle.ts). Sandboxes and containers carry labels naming the node and the pod, and
 * each pod's spec is kept in the state directory, so a restarted agent finds what it ran and
 * runs it on.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { connect } from 'node:net';
import { pipeline, Readable, type Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { errorMessage, invalidInput, notFound, unavailable } from '../../errors.js';
import { expandEnvValue } from '../../kubelet/env-expansion.js';
import { podHostsFile } from '../../kubelet/dns.js';
import { podHostname } from '../../kubelet/hostname.js';
import { credentialsForImage } from '../../kubelet/image-credentials.js';
import { quantityMilliValue, quantityValue } from '../../kubelet/quantity.js';
import type { Logger } from '../../log.js';
import type {
  AttachStreams,
  ContainerLogOptions,
  PodAddresses,
  PodEvent,
  RegistryCredential,
  ResolvedVolume,
  Summary,
} from '../../provider.js';
import type {
  V1Container,
  V1ContainerStatus,
  V1Node,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
} from '../../wire.js';
import { CriClient, nanosToIso, type Message } from './client.js';
import type { CriConfig } from './config.js';
import { readCriLog } from './logs.js';
import {
  asContainer,
  ephemeralContainers,
  ephemeralStatus,
  ephemeralStep,
  withTargetPid,
} from './ephemeral.js';
import { runStream, streamFlags } from './streaming.js';
import { containerSamples, resourceMetricsOf, summaryOf } from './stats.js';
import { ETC_HOSTS, mountsManagedHosts, sandboxDnsConfig } from './pod-files.js';
import { imageUserOf, needsImageUser, runAsNonRootError } from './non-root.js';
import { GarbageCollector, type GcLive } from './gc.js';
import { ProbeManager, type ProbeRuntime } from '../../probes/index.js';
import {
  DEADLINE_MESSAGE,
  DEADLINE_REASON,
  deadlineAt,
  isSidecar,
  runHook,
  stopOrder,
  stopTimeoutSeconds,
  type HookRuntime,
} from './lifecycle.js';

/** The most output of an exec probe that is kept, as the kubelet keeps it. */
const MAX_PROBE_OUTPUT_BYTES = 10_240;

export { parseCriConfig } from './config.js';
export type { CriConfig } from './config.js';
export { parseLogLine, readCriLog, tailOffset } from './logs.js';

/** Labels of sandboxes and containers (the kubelet's, plus the node that owns them). */
const L_NODE = 'virtual-kubelet.io/node';
const L_POD_NAME = 'io.kubernetes.pod.name';
const L_POD_NS = 'io.kubernetes.pod.namespace';
const L_POD_UID = 'io.kubernetes.pod.uid';
const L_CONTAINER = 'io.kubernetes.container.name';

export interface CriProviderOptions {
  readonly nodeName: string;
  readonly nodeIP: string;
  readonly config: CriConfig;
  /** `--pod-cidr`, used when the config has none. */
  readonly podCIDR?: string;
  /** `--cluster-dns`. Default: none (ClusterFirst pods get the host's resolv.conf, as Default). */
  readonly clusterDNS?: readonly string[];
  /** Default: `cluster.local`. */
  readonly clusterDomain?: string;
  readonly logger: Logger;
}

interface ContainerRun {
  readonly id: string;
  readonly attempt: number;
  readonly logPath: string;
}

/** What the provider knows of one container of a pod. */
interface ContainerRecord {
  current?: ContainerRun;
  /** The run before the current one (what `--previous` reads). */
  previous?: ContainerRun;
  restarts: number;
  /** The status of the current run, as last read from the runtime. */
  status?: Message;
  /** When set, the container waits (image pull or crash back-off) until this time. */
  backoffUntil?: number;
  backoffSeconds?: number;
  waiting?: { reason: string; message: string };
  lastTerminated?: V1ContainerStatus['lastState'];
  /** While its postStart hook runs: not reported running (nor started) until it returns. */
  postStarting?: boolean;
}

interface PodRecord {
  pod: V1Pod;
  sandboxId?: string;
  podIP?: string;
  readonly containers: Map<string, ContainerRecord>;
  readonly abort: AbortController;
  loop?: Promise<void>;
  deleting: boolean;
  startTime: string;
  status?: V1PodStatus;
  /** From the pod's image pull secrets (`setPodPullCredentials`); secret, never logged. */
  pullCredentials: readonly RegistryCredential[];
  /** Set when the main containers ended for good: the sidecars are stopped, not restarted. */
  ending?: boolean;
  /** Past `activeDeadlineSeconds`: its containers are being stopped, then have been. */
  deadline?: 'stopping' | 'stopped';
}

const key = (ns: string, name: string): string => `${ns}/${name}`;
const podKeyOf = (pod: V1Pod): string =>
  key(pod.metadata?.namespace ?? 'default', pod.metadata?.name ?? '');

/** The pod-level image pull policy default: Always for `:latest` or no tag, else IfNotPresent. */
export function pullPolicy(c: V1Container): string {
  if (c.imagePullPolicy) return c.imagePullPolicy;
  const image = c.image ?? '';
  const afterSlash = image.slice(image.lastIndexOf('/') + 1);
  if (image.includes('@')) return 'IfNotPresent';
  const tag = afterSlash.includes(':') ? afterSlash.slice(afterSlash.indexOf(':') + 1) : '';
  return tag === '' || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/**
 * The CRI `AuthConfig`s to pull `image` with, one per credential that matches it, in the order
 * to try them; empty when none matches (the pull is anonymous). `server_address` stays empty,
 * as the kubelet leaves it for pull secrets: the runtime sends the credentials to the image's
 * registry.
 */
export function pullAuths(image: string, credentials: readonly RegistryCredential[]): Message[] {
  return credentialsForImage(image, credentials).map((c) => ({
    ...(c.username === undefined ? {} : { username: c.username }),
    ...(c.password === undefined ? {} : { password: c.password }),
    ...(c.auth === undefined ? {} : { auth: c.auth }),
    ...(c.identityToken === undefined ? {} : { identity_token: c.identityToken }),
    ...(c.registryToken === undefined ? {} : { registry_token: c.registryToken }),
  }));
}

/** The kubelet's LinuxContainerResources for a container (CPU shares and quota, memory limit). */
export function linuxResources(c: V1Container): Message {
  const req = c.resources?.requests ?? {};
  const lim = c.resources?.limits ?? {};
  const cpuRequest = req.cpu ?? lim.cpu;
  const out: Message = { cpu_shares: '2' };
  if (cpuRequest !== undefined) {
    const milli = Number(quantityMilliValue(cpuRequest));
    out.cpu_shares = String(Math.max(2, Math.floor((milli * 1024) / 1000)));
  }
  if (lim.cpu !== undefined) {
    const milli = Number(quantityMilliValue(lim.cpu));
    out.cpu_period = '100000';
    out.cpu_quota = String(Math.max(1000, Math.floor((milli * 100000) / 1000)));
  }
  if (lim.memory !== undefined) out.memory_limit_in_bytes = String(quantityValue(lim.memory));
  return out;
}

/**
 * The nftables table (family `inet`) of a node's guard, which drops what its pods send out of the
 * pod CIDR. It outlives the provider, as the pods do: a restarted agent adopts both.
 */
export function guardTable(nodeName: string): string {
  return `vk_cri_${nodeName.replace(/[^a-zA-Z0-9]/g, '_').slice(0, 40)}`;
}

/**
 * Removes a node's guard: for whoever knows the node's pods are gone for good with the runtime
 * they ran in. Idempotent; never throws.
 */
export function removeGuard(nodeName: string): void {
  spawnSync('nft', ['delete', 'table', 'inet', guardTable(nodeName)], { stdio: 'ignore' });
}

export class CriProvider {
  readonly #o: CriProviderOptions;
  readonly #log: Logger;
  readonly #cri: CriClient;
  readonly #pods = new Map<string, PodRecord>();
  readonly #stateDir: string;
  readonly #podCidr: string | undefined;
  #notify: (pod: V1Pod) => void = () => undefined;
  #event: (pod: V1Pod, event: PodEvent) => void = () => undefined;
  #runtimeConfigured?: Promise<void>;
  #adopted?: Promise<void>;
  #closed = false;
  readonly #probes: ProbeManager;
  readonly #gc: GarbageCollector;
  /** Set once the runtime's sandboxes of this node are known: GC never runs before. */
  #adoptedOk = false;

  constructor(options: CriProviderOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#probes = new ProbeManager({
      logger: options.logger,
      onChange: (pod) => {
        const rec = this.#pods.get(podKeyOf(pod));
        if (rec) this.#push(rec);
      },
      onRestartNeeded: (restart) => {
        const rec = this.#pods.get(podKeyOf(restart.pod));
        const r = rec?.containers.get(restart.container);
        if (r?.current?.id !== restart.instance) return;
        // The restart policy applies once it has stopped.
        void this.#cri
          .runtime(
            'StopContainer',
            { container_id: restart.instance, timeout: String(restart.gracePeriodSeconds) },
            undefined,
            (restart.gracePeriodSeconds + 30) * 1000,
          )
          .catch((err: unknown) => {
            this.#log.warn({ err: errorMessage(err) }, 'stopping a container for a probe failed');
          });
      },
      onEvent: (pod, event) => {
        this.#event(pod, event);
      },
    });
    this.#cri = new CriClient({
      runtimeEndpoint: options.config.runtimeEndpoint,
      ...(options.config.imageEndpoint ? { imageEndpoint: options.config.imageEndpoint } : {}),
    });
    this.#stateDir =
      options.config.stateDir ?? join('/var/lib/virtual-kubelet/cri', options.nodeName);
    this.#podCidr = options.config.podCIDR ?? options.podCIDR;
    const c = options.config;
    this.#gc = new GarbageCollector({
      cri: this.#cri,
      nodeName: options.nodeName,
      live: () => this.#gcLive(),
      ...(c.containerGcIntervalMs === undefined
        ? {}
        : { containerIntervalMs: c.containerGcIntervalMs }),
      ...(c.imageGcIntervalMs === undefined ? {} : { imageIntervalMs: c.imageGcIntervalMs }),
      imagePolicy: {
        ...(c.imageGcHighThresholdPercent === undefined
          ? {}
          : { highThresholdPercent: c.imageGcHighThresholdPercent }),
        ...(c.imageGcLowThresholdPercent === undefined
          ? {}
          : { lowThresholdPercent: c.imageGcLowThresholdPercent }),
        ...(c.imageMinimumGcAgeSeconds === undefined
          ? {}
          : { minimumAgeMs: c.imageMinimumGcAgeSeconds * 1000 }),
      },
      logger: options.logger,
    });
  }

  /** The pods GC must leave alone, with the runs of containers the provider still reads. */
  #gcLive(): GcLive | undefined {
    if (!this.#adoptedOk || this.#closed) return undefined;
    const pods = new Map<string, { sandboxId?: string }>();
    const keepIds = new Set<string>();
    for (const rec of this.#pods.values()) {
      pods.set(rec.pod.metadata?.uid ?? '', rec.sandboxId ? { sandboxId: rec.sandboxId } : {});
      for (const r of rec.containers.values())
        for (const run of [r.current, r.previous]) if (run) keepIds.add(run.id);
    }
    return { pods, keepIds };
  }

  /**
   * Hands the pod CIDR to the runtime (its CNI configuration takes addresses from it) and puts
   * the guard in place: forwarded packets from the pod CIDR to outside it are dropped, so
   * nothing a pod sends leaves the machine.
   */
  #configureRuntime(signal: AbortSignal): Promise<void> {
    this.#runtimeConfigured ??= (async () => {
      if (this.#podCidr === undefined) return;
      await this.#cri.runtime(
        'UpdateRuntimeConfig',
        { runtime_config: { network_config: { pod_cidr: this.#podCidr } } },
        signal,
      );
      const cidr = this.#podCidr;
      const table = guardTable(this.#o.nodeName);
      removeGuard(this.#o.nodeName);
      const script = [
        `table inet ${table} {`,
        '  chain forward {',
        '    type filter hook forward priority filter; policy accept;',
        `    ip saddr ${cidr} ip daddr ${cidr} accept`,
        `    ip saddr ${cidr} ct state established,related accept`,
        `    ip saddr ${cidr} drop`,
        '  }',
        '}',
      ].join('\n');
      const r = spawnSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
      if (r.status !== 0)
        throw unavailable(`cannot add the nftables table inet ${table}: ${r.stderr.toString()}`);
    })().catch((err: unknown) => {
      this.#runtimeConfigured = undefined;
      throw err;
    });
    return this.#runtimeConfigured;
  }

  #podDir(pod: V1Pod): string {
    return join(this.#stateDir, 'pods', pod.metadata?.uid ?? 'none');
  }

  #logDir(pod: V1Pod): string {
    const m = pod.metadata ?? {};
    return join(
      this.#stateDir,
      'logs',
      `${m.namespace ?? 'default'}_${m.name ?? ''}_${m.uid ?? ''}`,
    );
  }

  #sandboxConfig(pod: V1Pod): Message {
    const m = pod.metadata ?? {};
    const spec = pod.spec ?? { containers: [] };
    const ns = m.namespace ?? 'default';
    const ports = spec.containers.flatMap((c) =>
      (c.ports ?? [])
        .filter((p) => p.hostPort)
        .map((p) => ({
          protocol: p.protocol ?? 'TCP',
          container_port: p.containerPort,
          host_port: p.hostPort,
          host_ip: p.hostIP ?? '',
        })),
    );
    return {
      metadata: { name: m.name, uid: m.uid, namespace: ns, attempt: 0 },
      hostname: spec.hostNetwork ? '' : podHostname(pod),
      log_directory: this.#logDir(pod),
      dns_config: this.#dns(pod).dnsConfig,
      port_mappings: ports,
      labels: {
        ...(m.labels ?? {}),
        [L_NODE]: this.#o.nodeName,
        [L_POD_NAME]: m.name ?? '',
        [L_POD_NS]: ns,
        [L_POD_UID]: m.uid ?? '',
      },
      annotations: m.annotations ?? {},
      linux: {
        security_context: {
          namespace_options: {
            network: spec.hostNetwork ? 'NODE' : 'POD',
            pid: spec.hostPID ? 'NODE' : spec.shareProcessNamespace ? 'POD' : 'CONTAINER',
            ipc: spec.hostIPC ? 'NODE' : 'POD',
          },
          ...(spec.securityContext?.runAsUser !== undefined
            ? { run_as_user: { value: String(spec.securityContext.runAsUser) } }
            : {}),
          supplemental_groups: (spec.securityContext?.supplementalGroups ?? []).map(String),
        },
        sysctls: Object.fromEntries(
          (spec.securityContext?.sysctls ?? []).map((s) => [s.name, s.value]),
        ),
      },
    };
  }

  /** The pod's DNS as the kubelet forms it, from the host's resolv.conf as it is now. */
  #dns(pod: V1Pod): ReturnType<typeof sandboxDnsConfig> {
    return sandboxDnsConfig(pod, {
      clusterDNS: this.#o.clusterDNS ?? [],
      clusterDomain: this.#o.clusterDomain ?? 'cluster.local',
      hostResolvConf: readHostFile('/etc/resolv.conf'),
    });
  }

  /**
   * Writes the pod's managed /etc/hosts (its address with its hostname, and the FQDN with
   * `subdomain`), which every container mounts, as the kubelet's `ensureHostsFile`.
   */
  async #writeHostsFile(rec: PodRecord): Promise<void> {
    if (!rec.podIP) return;
    const dir = this.#podDir(rec.pod);
    await mkdir(dir, { recursive: true });
    const text = podHostsFile(rec.pod, {
      podIPs: [rec.podIP],
      clusterDomain: this.#o.clusterDomain ?? 'cluster.local',
      hostHosts: readHostFile('/etc/hosts'),
    });
    await writeFile(join(dir, 'etc-hosts'), text, { mode: 0o644 });
  }

  async #adopt(signal: AbortSignal): Promise<void> {
    this.#adopted ??= (async () => {
      const res = await this.#cri.runtime<{ items: Message[] }>(
        'ListPodSandbox',
        { filter: { label_selector: { [L_NODE]: this.#o.nodeName } } },
        signal,
      );
      // Pods this node ran before a restart, as the kubelet finds them: from the runtime's
      // sandboxes and containers (same IDs, restart counts from their attempts), with the spec
      // saved at creation. Their sync goes on at once, so the core adopts them as they run (it
      // never creates them again) or deletes those the API no longer has. A pod's ready
      // sandbox comes first: the one its containers run in.
      const ready = (sb: Message): number => (sb.state === 'SANDBOX_READY' ? 0 : 1);
      for (const sb of [...res.items].sort((a, b) => ready(a) - ready(b))) {
        const m = sb.metadata as { name?: string; namespace?: string; uid?: string } | undefined;
        if (!m?.name || !m.uid) continue;
        const k = key(m.namespace ?? 'default', m.name);
        if (this.#pods.has(k)) continue;
        const saved = await this.#readSaved(m.uid);
        const rec = this.#newRecord(
          saved?.pod ?? {
            metadata: { name: m.name, namespace: m.namespace ?? 'default', uid: m.uid },
            spec: { containers: [] },
          },
        );
        if (saved) rec.startTime = saved.startTime;
        this.#pods.set(k, rec);
        if (!saved || sb.state !== 'SANDBOX_READY') continue;
        await this.#ensureSandbox(rec, signal);
        await this.#refresh(rec, signal);
        this.#startLoop(rec);
      }
      this.#log.info({ sandboxes: res.items.length }, 'found sandboxes of this node');
      this.#adoptedOk = true;
      if (!this.#closed) this.#gc.start();
    })().catch((err: unknown) => {
      this.#adopted = undefined;
      throw err;
    });
    return this.#adopted;
  }

  /** Finds the pod's ready sandbox by its labels, or runs one. */
  async #ensureSandbox(rec: PodRecord, signal: AbortSignal): Promise<string> {
    if (rec.sandboxId) return rec.sandboxId;
    const uid = rec.pod.metadata?.uid ?? '';
    const found = await this.#cri.runtime<{ items: Message[] }>(
      'ListPodSandbox',
      {
        filter: {
          label_selector: { [L_NODE]: this.#o.nodeName, [L_POD_UID]: uid },
          state: { state: 'SANDBOX_READY' },
        },
      },
      signal,
    );
    let id = found.items[0]?.id as string | undefined;
    if (!id) {
      await this.#configureRuntime(signal);
      await mkdir(this.#logDir(rec.pod), { recursive: true });
      for (const event of this.#dns(rec.pod).events) this.#event(rec.pod, event);
      const res = await this.#cri.runtime<{ pod_sandbox_id: string }>(
        'RunPodSandbox',
        { config: this.#sandboxConfig(rec.pod) },
        signal,
        240_000,
      );
      id = res.pod_sandbox_id;
      this.#log.info({ pod: podKeyOf(rec.pod), sandbox: id }, 'sandbox running');
    }
    const st = await this.#cri.runtime<{ status: { network?: { ip?: string } } }>(
      'PodSandboxStatus',
      { pod_sandbox_id: id },
      signal,
    );
    rec.sandboxId = id;
    rec.podIP = rec.pod.spec?.hostNetwork ? this.#o.nodeIP : st.status.network?.ip || undefined;
    // Containers this node made in the sandbox before a restart: adopt the newest of each name.
    const list = await this.#cri.runtime<{ containers: Message[] }>(
      'ListContainers',
      { filter: { pod_sandbox_id: id } },
      signal,
    );
    const byName = new Map<string, Message[]>();
    for (const c of list.containers) {
      const name = (c.labels as Record<string, string>)[L_CONTAINER] ?? '';
      byName.set(name, [...(byName.get(name) ?? []), c]);
    }
    for (const [name, cs] of byName) {
      cs.sort((a, b) => attemptOf(a) - attemptOf(b));
      const r = this.#record(rec, name);
      const last = cs[cs.length - 1];
      const prev = cs[cs.length - 2];
      if (last && !r.current) {
        r.current = { id: last.id as string, attempt: attemptOf(last), logPath: '' };
        r.restarts = attemptOf(last);
        if (prev) {
          r.previous = { id: prev.id as string, attempt: attemptOf(prev), logPath: '' };
          // The kubelet's lastState comes from the exited run before the current one.
          const res = await this.#cri
            .runtime<{ status: Message }>('ContainerStatus', { container_id: prev.id }, signal)
            .catch(() => undefined);
          if (res?.status.state === 'CONTAINER_EXITED')
            r.lastTerminated = { terminated: terminatedOf(res.status) };
        }
      }
    }
    await this.#writeHostsFile(rec);
    return id;
  }

  /** What `createPod` saved of the pod for a restarted agent: its spec and start time. */
  async #readSaved(uid: string): Promise<{ pod: V1Pod; startTime: string } | undefined> {
    const path = join(this.#stateDir, 'pods', uid, 'pod.json');
    try {
      const saved = JSON.parse(await readFile(path, 'utf8')) as { pod?: V1Pod; startTime?: string };
      if (saved.pod?.metadata?.uid !== uid || typeof saved.startTime !== 'string') return undefined;
      return { pod: saved.pod, startTime: saved.startTime };
    } catch {
      return undefined;
    }
  }

  async #save(rec: PodRecord): Promise<void> {
    const dir = this.#podDir(rec.pod);
    await mkdir(dir, { recursive: true });
    // Owner only: the spec holds the resolved environment, secrets included.
    await writeFile(
      join(dir, 'pod.json'),
      JSON.stringify({
        pod: { metadata: rec.pod.metadata, spec: rec.pod.spec },
        startTime: rec.startTime,
      }),
      { mode: 0o600 },
    );
  }

  #startLoop(rec: PodRecord): void {
    rec.loop = this.#syncLoop(rec).catch((err: unknown) => {
      this.#log.error({ pod: podKeyOf(rec.pod), err: errorMessage(err) }, 'pod sync loop failed');
    });
  }

  #record(rec: PodRecord, name: string): ContainerRecord {
    let r = rec.containers.get(name);
    if (!r) {
      r = { restarts: 0 };
      rec.containers.set(name, r);
    }
    return r;
  }

  #newRecord(pod: V1Pod): PodRecord {
    return {
      pod: structuredClone(pod),
      containers: new Map(),
      abort: new AbortController(),
      deleting: false,
      startTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      pullCredentials: [],
    };
  }

  async preparePod(pod: V1Pod, signal: AbortSignal): Promise<PodAddresses> {
    await this.#adopt(signal);
    const k = podKeyOf(pod);
    let rec = this.#pods.get(k);
    if (!rec || rec.pod.metadata?.uid !== pod.metadata?.uid) {
      rec = this.#newRecord(pod);
      this.#pods.set(k, rec);
    } else if (!rec.loop) rec.pod = structuredClone(pod);
    await this.#ensureSandbox(rec, signal);
    if (!rec.podIP) throw unavailable(`the runtime gave pod ${k} no IP address`);
    return { podIPs: [rec.podIP], hostIP: this.#o.nodeIP };
  }

  /**
   * Keeps the credentials of the pod's image pull secrets with its record, for every pull of
   * its images from now on (see {@link pullAuths}). Called before `createPod`.
   */
  async setPodPullCredentials(
    pod: V1Pod,
    credentials: readonly RegistryCredential[],
    signal: AbortSignal,
  ): Promise<void> {
    await this.#adopt(signal);
    const k = podKeyOf(pod);
    let rec = this.#pods.get(k);
    if (!rec || rec.pod.metadata?.uid !== pod.metadata?.uid) {
      rec = this.#newRecord(pod);
      this.#pods.set(k, rec);
    }
    rec.pullCredentials = structuredClone(credentials);
  }

  async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    if (this.#closed) throw unavailable('the cri provider is closed');
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])])
      if (!c.image) throw invalidInput(`container ${c.name} has no image`);
    const k = podKeyOf(pod);
    await this.#adopt(signal);
    let rec = this.#pods.get(k);
    if (rec?.loop && rec.pod.metadata?.uid === pod.metadata?.uid) return;
    if (!rec || rec.pod.metadata?.uid !== pod.metadata?.uid) {
      rec = this.#newRecord(pod);
      this.#pods.set(k, rec);
    } else rec.pod = structuredClone(pod);
    await this.#ensureSandbox(rec, signal);
    await this.#save(rec);
    this.#startLoop(rec);
  }

  async updatePod(pod: V1Pod): Promise<void> {
    const rec = this.#pods.get(podKeyOf(pod));
    if (!rec || rec.pod.metadata?.uid !== pod.metadata?.uid || rec.deleting) return;
    // Only images, labels, annotations, activeDeadlineSeconds and ephemeral containers can
    // change: the next sync sees a changed image and restarts that container, and starts the
    // new ephemeral containers.
    rec.pod = structuredClone(pod);
    if (rec.sandboxId) await this.#save(rec);
    // A pod found in the runtime without its saved spec runs on from here.
    if (!rec.loop && !this.#closed) this.#startLoop(rec);
  }

  async deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const k = podKeyOf(pod);
    const rec = this.#pods.get(k) ?? this.#newRecord(pod);
    rec.deleting = true;
    rec.abort.abort();
    await rec.loop;
    this.#probes.forget(pod.metadata?.uid ?? '');
    const grace = this.#grace(pod);
    const uid = pod.metadata?.uid ?? '';
    const sandboxes = await this.#cri.runtime<{ items: Message[] }>(
      'ListPodSandbox',
      { filter: { label_selector: { [L_NODE]: this.#o.nodeName, [L_POD_UID]: uid } } },
      signal,
    );
    for (const sb of sandboxes.items) {
      const id = sb.id as string;
      const list = await this.#cri.runtime<{ containers: Message[] }>(
        'ListContainers',
        { filter: { pod_sandbox_id: id } },
        signal,
      );
      const running = list.containers
        .filter((c) => c.state === 'CONTAINER_RUNNING')
        .map((c) => ({
          id: c.id as string,
          name: (c.labels as Record<string, string>)[L_CONTAINER] ?? '',
        }));
      await this.#stopContainers(rec, pod.spec ? pod : rec.pod, running, grace, signal);
      await this.#cri.runtime('StopPodSandbox', { pod_sandbox_id: id }, signal);
      await this.#cri.runtime('RemovePodSandbox', { pod_sandbox_id: id }, signal);
    }
    await rm(this.#podDir(pod), { recursive: true, force: true });
    await rm(this.#logDir(pod), { recursive: true, force: true });
    if (this.#pods.get(k) === rec) this.#pods.delete(k);
  }

  /**
   * Stops `running` containers of the pod as the kubelet kills them: the main containers
   * together, then the sidecars one by one in reverse order (see {@link stopOrder}); each runs
   * its preStop hook first (a failure is a FailedPreStopHook Event), within the grace period
   * that all of them share, and gets what is left of it (at least 2 s) to stop.
   */
  async #stopContainers(
    rec: PodRecord,
    pod: V1Pod,
    running: readonly { readonly id: string; readonly name: string }[],
    graceSeconds: number,
    signal: AbortSignal,
  ): Promise<void> {
    const began = Date.now();
    const specs = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
    const byName = new Map(running.map((c) => [c.name, c]));
    for (const group of stopOrder(
      pod,
      running.map((c) => c.name),
    )) {
      await Promise.all(
        group.flatMap((name) => {
          const c = byName.get(name);
          return c ? [this.#stopOne(rec, pod, specs, c, graceSeconds, began, signal)] : [];
        }),
      );
    }
  }

  async #stopOne(
    rec: PodRecord,
    pod: V1Pod,
    specs: readonly V1Container[],
    c: { readonly id: string; readonly name: string },
    graceSeconds: number,
    began: number,
    signal: AbortSignal,
  ): Promise<void> {
    const spec = specs.find((s) => s.name === c.name);
    const hook = spec?.lifecycle?.preStop;
    if (spec && hook && graceSeconds > 0) {
      const leftMs = graceSeconds * 1000 - (Date.now() - began);
      await runHook(hook, spec, this.#hookRuntime(rec, c.id), Math.max(1, leftMs), signal).catch(
        (err: unknown) => {
          if (signal.aborted) throw err;
          this.#log.warn(
            { pod: podKeyOf(pod), container: c.name, err: errorMessage(err) },
            'preStop hook failed',
          );
          // As the kubelet: the reason stays out of the event, it could show secrets.
          this.#event(pod, {
            type: 'Warning',
            reason: 'FailedPreStopHook',
            message: 'PreStopHook failed',
          });
        },
      );
    }
    const timeout = stopTimeoutSeconds(graceSeconds, Date.now() - began);
    await this.#cri.runtime(
      'StopContainer',
      { container_id: c.id, timeout: String(timeout) },
      signal,
      (timeout + 30) * 1000,
    );
  }

  /** The running containers of the pod as the provider last saw them, sidecars included. */
  #runningContainers(rec: PodRecord): { id: string; name: string }[] {
    return [...rec.containers.entries()].flatMap(([name, r]) =>
      r.current && r.status?.state === 'CONTAINER_RUNNING' ? [{ id: r.current.id, name }] : [],
    );
  }

  #hookRuntime(rec: PodRecord, containerId: string): HookRuntime {
    return {
      podIP: rec.podIP ?? this.#o.nodeIP,
      exec: async (command, timeoutSeconds, signal) => {
        const res = await this.#cri.runtime<{ stdout: Buffer; stderr: Buffer; exit_code: number }>(
          'ExecSync',
          { container_id: containerId, cmd: [...command], timeout: String(timeoutSeconds) },
          signal,
          // No deadline of its own without a timeout: the hook's signal ends it.
          timeoutSeconds > 0 ? timeoutSeconds * 1000 + 5000 : 2_000_000_000,
        );
        const output = Buffer.concat([res.stdout, res.stderr])
          .subarray(0, MAX_PROBE_OUTPUT_BYTES)
          .toString();
        return { exitCode: res.exit_code, output };
      },
    };
  }

  getPod(namespace: string, name: string): Promise<V1Pod | undefined> {
    const rec = this.#pods.get(key(namespace, name));
    return Promise.resolve(
      rec ? { ...structuredClone(rec.pod), status: this.#status(rec) } : undefined,
    );
  }

  getPodStatus(namespace: string, name: string): Promise<V1PodStatus | undefined> {
    const rec = this.#pods.get(key(namespace, name));
    return Promise.resolve(rec ? this.#status(rec) : undefined);
  }

  /** Every pod of this node, those found in the runtime after a restart included. */
  async getPods(signal?: AbortSignal): Promise<V1Pod[]> {
    await this.#adopt(signal ?? AbortSignal.timeout(60_000)).catch((err: unknown) => {
      this.#log.warn({ err: errorMessage(err) }, 'cannot list the sandboxes of the runtime');
    });
    return [...this.#pods.values()].map((rec) => ({
      ...structuredClone(rec.pod),
      status: this.#status(rec),
    }));
  }

  notifyPods(callback: (pod: V1Pod) => void): void {
    this.#notify = callback;
  }

  notifyPodEvents(callback: (pod: V1Pod, event: PodEvent) => void): void {
    this.#event = callback;
  }

  async ping(signal: AbortSignal): Promise<void> {
    await this.#cri.runtime('Version', { version: 'v1' }, signal, 10_000);
  }

  notifyNodeStatus(): void {
    // The node's status is set once, by configureNode.
  }

  configureNode(node: V1Node): void {
    const c = this.#o.config;
    const cap = {
      cpu: c.cpu ?? String(cpus().length),
      memory: c.memory ?? `${String(Math.floor(totalmem() / 1024))}Ki`,
      pods: c.pods ?? '110',
    };
    node.status ??= {};
    node.status.capacity = { ...(node.status.capacity ?? {}), ...cap };
    node.status.allocatable = { ...(node.status.allocatable ?? {}), ...cap };
    if (node.status.nodeInfo) node.status.nodeInfo.containerRuntimeVersion = 'cri';
    if (this.#podCidr && node.spec) node.spec.podCIDR ??= this.#podCidr;
  }

  /**
   * Writes the content of the pod's configMap, secret, downwardAPI and projected volumes below
   * the pod's directory; containers mount it. Files are replaced whole.
   */
  async setPodVolumes(pod: V1Pod, volumes: readonly ResolvedVolume[]): Promise<void> {
    // As the kubelet: a file with an owner (a token of a pod whose containers share one user)
    // belongs to that user, and with fsGroup every file belongs to that group.
    const fsGroup = pod.spec?.securityContext?.fsGroup ?? -1;
    const root = process.getuid?.() === 0;
    for (const v of volumes) {
      const dir = join(this.#podDir(pod), 'volumes', v.name);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      for (const f of v.files) {
        const path = join(dir, normalize(f.path));
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, f.data, { mode: f.mode });
        if (root && (f.owner !== undefined || fsGroup !== -1))
          await chown(path, f.owner ?? -1, fsGroup);
      }
    }
  }

  getContainerLogs(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Promise<Readable> {
    const rec = this.#pods.get(key(namespace, pod));
    const r = rec?.containers.get(container);
    if (!rec || !r) throw notFound(`container ${container} of pod ${namespace}/${pod} not found`);
    const run = options.previous ? r.previous : r.current;
    if (!run)
      throw invalidInput(
        options.previous
          ? `previous terminated container "${container}" in pod "${pod}" not found`
          : `container "${container}" in pod "${pod}" is waiting to start`,
      );
    const path =
      run.logPath || join(this.#logDir(rec.pod), container, `${String(run.attempt)}.log`);
    const current = r.current;
    return Promise.resolve(
      readCriLog(
        path,
        {
          ...options,
          running: () =>
            !options.previous &&
            r.current === current &&
            r.status?.state === 'CONTAINER_RUNNING' &&
            !rec.deleting,
        },
        signal,
      ),
    );
  }

  /**
   * Runs a command through the runtime's `Exec` and its streaming server: output as it comes,
   * stdin (its end reaches the process as end of file), a terminal and its size (see
   * streaming.ts). Probes use `ExecSync`.
   */
  async runInContainer(
    namespace: string,
    pod: string,
    container: string,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number> {
    const id = this.#containerId(namespace, pod, container);
    const { url } = await this.#cri.runtime<{ url: string }>(
      'Exec',
      { container_id: id, cmd: [...command], ...streamFlags(streams) },
      signal,
    );
    const { exitCode } = await runStream(url, streams, signal);
    if (exitCode === undefined && !signal.aborted)
      throw unavailable(
        `exec in ${namespace}/${pod}/${container}: the runtime sent no exit status`,
      );
    return exitCode ?? 0;
  }

  /**
   * Connects the streams to the container's main process through the runtime's `Attach` and
   * its streaming server, until the process exits or `signal` fires. The container must have
   * been created with `stdin` (and `tty`) for those streams.
   */
  async attachToContainer(
    namespace: string,
    pod: string,
    container: string,
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<void> {
    const id = this.#containerId(namespace, pod, container);
    const { url } = await this.#cri.runtime<{ url: string }>(
      'Attach',
      { container_id: id, ...streamFlags(streams) },
      signal,
    );
    await runStream(url, streams, signal);
  }

  /**
   * Pipes `stream` to `port` of the pod: a TCP connection to the pod's address, which the node
   * routes to the runtime's bridge (the loopback address for a pod on the host's network).
   */
  async portForward(
    namespace: string,
    pod: string,
    port: number,
    stream: Duplex,
    signal: AbortSignal,
  ): Promise<void> {
    const rec = this.#pods.get(key(namespace, pod));
    if (!rec?.podIP) throw notFound(`pod ${namespace}/${pod} has no address`);
    const host = rec.pod.spec?.hostNetwork ? '127.0.0.1' : rec.podIP;
    const socket = connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err) => {
        reject(unavailable(`cannot connect to ${host}:${String(port)}: ${err.message}`, err));
      });
    });
    await new Promise<void>((resolve) => {
      const onAbort = (): void => {
        socket.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pipeline(stream, socket, stream, () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  #containerId(namespace: string, pod: string, container: string): string {
    const r = this.#pods.get(key(namespace, pod))?.containers.get(container);
    if (!r?.current || r.status?.state !== 'CONTAINER_RUNNING')
      throw invalidInput(`container ${container} of pod ${namespace}/${pod} is not running`);
    return r.current.id;
  }

  async #samples(signal: AbortSignal): Promise<ReturnType<typeof containerSamples>> {
    const res = await this.#cri.runtime<{ stats: Message[] }>(
      'ListContainerStats',
      { filter: { label_selector: { [L_NODE]: this.#o.nodeName } } },
      signal,
      30_000,
    );
    // Only the current run of each container of a pod this provider runs.
    const current = new Set(
      [...this.#pods.values()].flatMap((rec) =>
        [...rec.containers.values()].flatMap((r) =>
          r.current && r.status?.state === 'CONTAINER_RUNNING' ? [r.current.id] : [],
        ),
      ),
    );
    return containerSamples(
      res.stats.filter((s) => current.has((s.attributes as { id?: string } | null)?.id ?? '')),
    );
  }

  #startTimes(): Map<string, { pod: string; containers: Map<string, unknown> }> {
    return new Map(
      [...this.#pods.values()].map((rec) => [
        rec.pod.metadata?.uid ?? '',
        {
          pod: rec.startTime,
          containers: new Map(
            [...rec.containers.entries()].map(([name, r]) => [name, r.status?.started_at]),
          ),
        },
      ]),
    );
  }

  /** `/stats/summary` from the runtime's container stats. */
  async getStatsSummary(signal: AbortSignal): Promise<Summary> {
    return summaryOf(this.#o.nodeName, await this.#samples(signal), this.#startTimes());
  }

  /** `/metrics/resource` (what metrics-server and `kubectl top` read). */
  async getMetricsResource(signal: AbortSignal): Promise<string> {
    return resourceMetricsOf(await this.#samples(signal), this.#startTimes());
  }

  /**
   * Stops watching the runtime. Pods keep running in it; a restarted agent adopts them. The
   * network guard stays for them.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const rec of this.#pods.values()) rec.abort.abort();
    await this.#gc.close();
    this.#cri.close();
    await this.#probes.close();
  }

  // The pod's containers, synced every syncIntervalMs until the pod is deleted.

  async #syncLoop(rec: PodRecord): Promise<void> {
    const signal = rec.abort.signal;
    const aborted = (): boolean => signal.aborted;
    const interval = this.#o.config.syncIntervalMs ?? 1000;
    while (!aborted()) {
      try {
        const deadline = deadlineAt(rec.pod, rec.startTime);
        if (rec.deadline !== undefined || (deadline !== undefined && Date.now() >= deadline))
          await this.#deadlineExceeded(rec, signal);
        else await this.#sync(rec, signal);
      } catch (err) {
        if (aborted()) return;
        this.#log.warn({ pod: podKeyOf(rec.pod), err: errorMessage(err) }, 'pod sync failed');
      }
      this.#syncProbes(rec);
      const status = this.#push(rec);
      if (status.phase === 'Succeeded' || status.phase === 'Failed') {
        this.#probes.forget(rec.pod.metadata?.uid ?? '');
        return;
      }
      await delay(interval, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * Past `activeDeadlineSeconds` (from the pod's start; an update that shortens it counts): as
   * the kubelet, a DeadlineExceeded Event, every container stopped (preStop hooks, grace
   * period), then the pod Failed with reason DeadlineExceeded. Nothing is started again.
   */
  async #deadlineExceeded(rec: PodRecord, signal: AbortSignal): Promise<void> {
    if (rec.deadline === 'stopped') return;
    if (rec.deadline === undefined) {
      rec.deadline = 'stopping';
      this.#log.info(
        { pod: podKeyOf(rec.pod), activeDeadlineSeconds: rec.pod.spec?.activeDeadlineSeconds },
        'active deadline exceeded: stopping the pod',
      );
      this.#event(rec.pod, { type: 'Warning', reason: DEADLINE_REASON, message: DEADLINE_MESSAGE });
    }
    await this.#refresh(rec, signal);
    await this.#stopContainers(
      rec,
      rec.pod,
      this.#runningContainers(rec),
      this.#grace(rec.pod),
      signal,
    );
    await this.#refresh(rec, signal);
    rec.deadline = 'stopped';
  }

  /** Pushes the pod's status when it changed; returns it. */
  #push(rec: PodRecord): V1PodStatus {
    const status = this.#status(rec);
    if (JSON.stringify(status) !== JSON.stringify(rec.status)) {
      rec.status = status;
      this.#notify({ metadata: rec.pod.metadata ?? {}, status });
    }
    return status;
  }

  /** Starts a prober per running container with probes (a new one per container ID). */
  #syncProbes(rec: PodRecord): void {
    const running = [];
    const spec = rec.pod.spec;
    for (const c of [
      ...(spec?.initContainers ?? []).filter(isSidecar),
      ...(spec?.containers ?? []),
    ]) {
      const r = rec.containers.get(c.name);
      if (r?.current && r.status?.state === 'CONTAINER_RUNNING' && !r.postStarting)
        running.push({
          name: c.name,
          instance: r.current.id,
          startedAt: new Date(nanosToIso(r.status.started_at) ?? Date.now()),
        });
    }
    this.#probes.sync(rec.pod, this.#probeRuntime(rec), running, rec.deleting);
  }

  #probeRuntime(rec: PodRecord): ProbeRuntime {
    return {
      podIP: rec.podIP ?? this.#o.nodeIP,
      exec: async (name, command, { timeoutMs, signal }) => {
        const id = rec.containers.get(name)?.current?.id;
        if (!id) throw new Error(`container ${name} is not running`);
        const res = await this.#cri.runtime<{ stdout: Buffer; stderr: Buffer; exit_code: number }>(
          'ExecSync',
          { container_id: id, cmd: [...command], timeout: String(Math.ceil(timeoutMs / 1000)) },
          signal,
          timeoutMs + 5000,
        );
        const output = Buffer.concat([res.stdout, res.stderr])
          .subarray(0, MAX_PROBE_OUTPUT_BYTES)
          .toString();
        return { exitCode: res.exit_code, output };
      },
    };
  }

  async #refresh(rec: PodRecord, signal: AbortSignal): Promise<void> {
    for (const r of rec.containers.values()) {
      if (!r.current) continue;
      try {
        const res = await this.#cri.runtime<{ status: Message }>(
          'ContainerStatus',
          { container_id: r.current.id },
          signal,
        );
        r.status = res.status;
        if (!r.current.logPath && typeof res.status.log_path === 'string')
          r.current = { ...r.current, logPath: res.status.log_path };
      } catch (err) {
        if ((err as { code?: string }).code !== 'NotFound') throw err;
        r.current = undefined;
        r.status = undefined;
      }
    }
  }

  async #sync(rec: PodRecord, signal: AbortSignal): Promise<void> {
    const sandbox = await this.#ensureSandbox(rec, signal);
    await this.#refresh(rec, signal);
    const spec = rec.pod.spec ?? { containers: [] };
    const policy = spec.restartPolicy ?? 'Always';
    // Before the init containers, as the kubelet: a pod stuck in an init container can be debugged.
    await this.#startEphemeral(rec, sandbox, signal);
    const inits = spec.initContainers ?? [];
    const initialized = await this.#syncInits(rec, sandbox, inits, policy, signal);
    if (initialized) await this.#syncMains(rec, sandbox, spec.containers, policy, signal);
    if (!rec.ending && this.#mainsEnded(rec, policy)) rec.ending = true;
    if (rec.ending) {
      // The pod ends: what still runs (its sidecars) stops, after the main containers.
      await this.#refresh(rec, signal);
      await this.#stopContainers(
        rec,
        rec.pod,
        this.#runningContainers(rec),
        this.#grace(rec.pod),
        signal,
      );
      await this.#refresh(rec, signal);
    }
  }

  /**
   * Whether the pod's containers are done for good, so its sidecars stop: a failed init
   * container of a `Never` pod, or main containers that all exited and are not restarted.
   */
  #mainsEnded(rec: PodRecord, policy: string): boolean {
    if (policy === 'Always') return false;
    const spec = rec.pod.spec ?? { containers: [] };
    const exit = (name: string): number | undefined => {
      const st = rec.containers.get(name)?.status;
      return st?.state === 'CONTAINER_EXITED' ? Number(st.exit_code) : undefined;
    };
    if (
      policy === 'Never' &&
      (spec.initContainers ?? []).some((c) => {
        const code = exit(c.name);
        return !isSidecar(c) && code !== undefined && code !== 0;
      })
    )
      return true;
    return (
      spec.containers.length > 0 &&
      spec.containers.every((c) => {
        const code = exit(c.name);
        return code !== undefined && (policy === 'Never' || code === 0);
      })
    );
  }

  /**
   * Runs the init containers in order; true once the pod is initialized. A regular one must
   * exit 0 before the next starts. A sidecar (`restartPolicy: Always`) lets the next one start
   * once it runs and its startup probe succeeded; it is restarted whenever it exits, whatever
   * the pod's restart policy, until the pod ends.
   */
  async #syncInits(
    rec: PodRecord,
    sandbox: string,
    inits: readonly V1Container[],
    policy: string,
    signal: AbortSignal,
  ): Promise<boolean> {
    // Once the regular init containers are done, a sidecar's restarts hold nothing up.
    const done = inits.every(
      (c) =>
        isSidecar(c) ||
        (rec.containers.get(c.name)?.status?.state === 'CONTAINER_EXITED' &&
          Number(rec.containers.get(c.name)?.status?.exit_code) === 0),
    );
    for (const c of inits) {
      const r = this.#record(rec, c.name);
      const state = r.status?.state;
      if (isSidecar(c)) {
        if (rec.ending) continue;
        if (state === 'CONTAINER_RUNNING') {
          const started =
            this.#probes.state(rec.pod, c.name, r.current?.id)?.started ?? !r.postStarting;
          if (started || done) continue;
          return false;
        }
        if (state === 'CONTAINER_CREATED') {
          if (done) continue;
          return false;
        }
        const waits =
          state === 'CONTAINER_EXITED'
            ? !this.#backoffOver(rec, c, r)
            : r.backoffUntil !== undefined && Date.now() < r.backoffUntil;
        if (!waits)
          await this.#start(rec, sandbox, c, r, signal).catch((err: unknown) => {
            if (signal.aborted) throw err;
            this.#log.warn(
              { pod: podKeyOf(rec.pod), container: c.name, err: errorMessage(err) },
              'start failed',
            );
          });
        if (done) continue;
        return false;
      }
      if (state === 'CONTAINER_EXITED' && Number(r.status?.exit_code) === 0) continue;
      if (state === 'CONTAINER_RUNNING' || state === 'CONTAINER_CREATED') return false;
      if (state === 'CONTAINER_EXITED') {
        if (policy === 'Never') return false;
        if (!this.#backoffOver(rec, c, r)) return false;
      }
      await this.#start(rec, sandbox, c, r, signal);
      return false;
    }
    return true;
  }

  async #syncMains(
    rec: PodRecord,
    sandbox: string,
    containers: readonly V1Container[],
    policy: string,
    signal: AbortSignal,
  ): Promise<void> {
    for (const c of containers) {
      const r = this.#record(rec, c.name);
      const state = r.status?.state;
      if (state === 'CONTAINER_RUNNING' || state === 'CONTAINER_CREATED') {
        if (r.waiting?.reason !== undefined) r.waiting = undefined;
        continue;
      }
      if (state === 'CONTAINER_EXITED') {
        const code = Number(r.status?.exit_code);
        const restart = policy === 'Always' || (policy === 'OnFailure' && code !== 0);
        if (!restart) continue;
        if (!this.#backoffOver(rec, c, r)) continue;
      } else if (r.backoffUntil !== undefined && Date.now() < r.backoffUntil) {
        if (r.waiting?.reason === 'ErrImagePull') {
          r.waiting = {
            reason: 'ImagePullBackOff',
            message: `Back-off pulling image "${c.image ?? ''}"`,
          };
          this.#event(rec.pod, { type: 'Normal', reason: 'BackOff', message: r.waiting.message });
        }
        continue;
      }
      await this.#start(rec, sandbox, c, r, signal).catch((err: unknown) => {
        if (signal.aborted) throw err;
        this.#log.warn(
          { pod: podKeyOf(rec.pod), container: c.name, err: errorMessage(err) },
          'start failed',
        );
      });
    }
  }

  /** Starts each ephemeral container not created yet (see ephemeral.ts); never restarts one. */
  async #startEphemeral(rec: PodRecord, sandbox: string, signal: AbortSignal): Promise<void> {
    for (const e of ephemeralContainers(rec.pod)) {
      const r = this.#record(rec, e.name);
      const step = ephemeralStep(e, r.current !== undefined, (name) => {
        const t = rec.containers.get(name);
        return t?.status?.state === 'CONTAINER_RUNNING' ? t.current?.id : undefined;
      });
      if (!step.start) continue;
      await this.#start(rec, sandbox, asContainer(e), r, signal, step.targetId).catch(
        (err: unknown) => {
          if (signal.aborted) throw err;
          this.#log.warn(
            { pod: podKeyOf(rec.pod), container: e.name, err: errorMessage(err) },
            'starting an ephemeral container failed',
          );
        },
      );
    }
  }

  /** Whether a crashed container's back-off is over; starts one (CrashLoopBackOff) if none runs. */
  #backoffOver(rec: PodRecord, c: V1Container, r: ContainerRecord): boolean {
    const now = Date.now();
    if (r.backoffUntil === undefined) {
      const initial = this.#o.config.backoffInitialSeconds ?? 10;
      const max = this.#o.config.backoffMaxSeconds ?? 300;
      // The first restart is immediate, as the kubelet's; the next ones wait, doubling.
      r.backoffSeconds =
        r.restarts === 0 ? 0 : Math.min(max, r.backoffSeconds ? r.backoffSeconds * 2 : initial);
      r.backoffUntil = now + r.backoffSeconds * 1000;
    }
    if (now < r.backoffUntil) {
      const message = `back-off ${String(r.backoffSeconds)}s restarting failed container=${c.name} pod=${rec.pod.metadata?.name ?? ''}_${rec.pod.metadata?.namespace ?? ''}(${rec.pod.metadata?.uid ?? ''})`;
      if (r.waiting?.reason !== 'CrashLoopBackOff')
        this.#event(rec.pod, {
          type: 'Warning',
          reason: 'BackOff',
          message: `Back-off restarting failed container ${c.name}`,
        });
      r.waiting = { reason: 'CrashLoopBackOff', message };
      return false;
    }
    return true;
  }

  async #pull(
    rec: PodRecord,
    c: V1Container,
    r: ContainerRecord,
    signal: AbortSignal,
  ): Promise<boolean> {
    const image = c.image ?? '';
    const policy = pullPolicy(c);
    if (policy !== 'Always') {
      const st = await this.#cri.image<{ image: Message | null }>(
        'ImageStatus',
        { image: { image } },
        signal,
      );
      if (st.image) return true;
      if (policy === 'Never') {
        r.waiting = {
          reason: 'ErrImageNeverPull',
          message: `Container image "${image}" is not present with pull policy of Never`,
        };
        this.#event(rec.pod, {
          type: 'Warning',
          reason: 'ErrImageNeverPull',
          message: r.waiting.message,
        });
        return false;
      }
    }
    if (r.backoffUntil !== undefined && Date.now() < r.backoffUntil) {
      r.waiting = { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}"` };
      this.#event(rec.pod, { type: 'Normal', reason: 'BackOff', message: r.waiting.message });
      return false;
    }
    this.#event(rec.pod, {
      type: 'Normal',
      reason: 'Pulling',
      message: `Pulling image "${image}"`,
    });
    const started = Date.now();
    try {
      await this.#pullWithCredentials(rec, image, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      const max = this.#o.config.backoffMaxSeconds ?? 300;
      r.backoffSeconds = Math.min(
        max,
        r.backoffSeconds ? r.backoffSeconds * 2 : (this.#o.config.backoffInitialSeconds ?? 10),
      );
      r.backoffUntil = Date.now() + r.backoffSeconds * 1000;
      const message = `Failed to pull image "${image}": ${errorMessage(err)}`;
      r.waiting = { reason: 'ErrImagePull', message };
      this.#event(rec.pod, { type: 'Warning', reason: 'Failed', message });
      return false;
    }
    r.backoffUntil = undefined;
    r.backoffSeconds = undefined;
    this.#event(rec.pod, {
      type: 'Normal',
      reason: 'Pulled',
      message: `Successfully pulled image "${image}" in ${String(Date.now() - started)}ms`,
    });
    return true;
  }

  /**
   * PullImage with each of the pod's credentials that match the image in turn, until one pull
   * succeeds (the kubelet's rule); anonymously when none matches. Throws the last failure.
   */
  async #pullWithCredentials(rec: PodRecord, image: string, signal: AbortSignal): Promise<void> {
    const sandbox_config = this.#sandboxConfig(rec.pod);
    const auths = pullAuths(image, rec.pullCredentials);
    let failure: unknown;
    for (const auth of auths.length > 0 ? auths : [undefined]) {
      try {
        await this.#cri.image(
          'PullImage',
          { image: { image }, ...(auth ? { auth } : {}), sandbox_config },
          signal,
          600_000,
        );
        return;
      } catch (err) {
        if (signal.aborted) throw err;
        failure = err;
      }
    }
    throw failure;
  }

  async #start(
    rec: PodRecord,
    sandbox: string,
    c: V1Container,
    r: ContainerRecord,
    signal: AbortSignal,
    /** For an ephemeral container with a target: the target's container ID. */
    targetId?: string,
  ): Promise<void> {
    if (!(await this.#pull(rec, c, r, signal))) return;
    const refusal = await this.#nonRootRefusal(rec.pod, c, signal);
    if (refusal !== undefined) {
      // As the kubelet: not created; tried again on each sync, with one Event per new refusal.
      if (r.waiting?.message !== refusal)
        this.#event(rec.pod, { type: 'Warning', reason: 'Failed', message: `Error: ${refusal}` });
      r.waiting = { reason: 'CreateContainerConfigError', message: refusal };
      return;
    }
    for (const v of rec.pod.spec?.volumes ?? [])
      if (v.emptyDir) {
        // As the kubelet's: writable by any user the container runs as (umask aside).
        const path = join(this.#podDir(rec.pod), 'empty', v.name);
        await mkdir(path, { recursive: true });
        await chmod(path, 0o777);
      }
    const attempt = r.current ? r.current.attempt + 1 : 0;
    if (r.current && r.status) {
      r.lastTerminated = { terminated: terminatedOf(r.status) };
      // Keep one exited run (for --previous); remove the one before it.
      if (r.previous)
        await this.#cri
          .runtime('RemoveContainer', { container_id: r.previous.id }, signal)
          .catch(() => undefined);
      r.previous = r.current;
      r.restarts = attempt;
    }
    const config = withTargetPid(this.#containerConfig(rec, c, attempt), targetId);
    const created = await this.#cri
      .runtime<{ container_id: string }>(
        'CreateContainer',
        { pod_sandbox_id: sandbox, config, sandbox_config: this.#sandboxConfig(rec.pod) },
        signal,
      )
      .catch((err: unknown) => {
        r.waiting = { reason: 'CreateContainerError', message: errorMessage(err) };
        this.#event(rec.pod, {
          type: 'Warning',
          reason: 'Failed',
          message: `Error: ${errorMessage(err)}`,
        });
        throw err;
      });
    r.current = {
      id: created.container_id,
      attempt,
      logPath: join(this.#logDir(rec.pod), c.name, `${String(attempt)}.log`),
    };
    r.status = undefined;
    this.#event(rec.pod, {
      type: 'Normal',
      reason: 'Created',
      message: `Created container ${c.name}`,
    });
    try {
      await this.#cri.runtime('StartContainer', { container_id: created.container_id }, signal);
    } catch (err) {
      r.waiting = { reason: 'RunContainerError', message: errorMessage(err) };
      this.#event(rec.pod, {
        type: 'Warning',
        reason: 'Failed',
        message: `Error: ${errorMessage(err)}`,
      });
      throw err;
    }
    r.waiting = undefined;
    r.backoffUntil = undefined;
    this.#event(rec.pod, {
      type: 'Normal',
      reason: 'Started',
      message: `Started container ${c.name}`,
    });
    const hook = c.lifecycle?.postStart;
    if (hook) await this.#postStart(rec, c, r, hook, created.container_id, signal);
    await this.#refresh(rec, signal);
  }

  /** The kubelet's `runAsNonRoot` refusal of the container, reading the image's user if needed. */
  async #nonRootRefusal(
    pod: V1Pod,
    c: V1Container,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    if (!needsImageUser(pod, c)) return runAsNonRootError(pod, c, undefined);
    const st = await this.#cri.image<{ image: Message | null }>(
      'ImageStatus',
      { image: { image: c.image ?? '' } },
      signal,
    );
    return runAsNonRootError(pod, c, imageUserOf(st.image));
  }

  /**
   * Runs the container's postStart hook, as the kubelet right after StartContainer: the
   * container counts as created (not running, not started) until it returns, and the next
   * container waits for it. A failed hook is a FailedPostStartHook Event and the container is
   * killed (preStop, grace period); its restart policy applies then.
   */
  async #postStart(
    rec: PodRecord,
    c: V1Container,
    r: ContainerRecord,
    hook: NonNullable<NonNullable<V1Container['lifecycle']>['postStart']>,
    id: string,
    signal: AbortSignal,
  ): Promise<void> {
    r.postStarting = true;
    try {
      await runHook(hook, c, this.#hookRuntime(rec, id), undefined, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      this.#log.warn(
        { pod: podKeyOf(rec.pod), container: c.name, err: errorMessage(err) },
        'postStart hook failed',
      );
      // As the kubelet: the reason stays out of the event, it could show secrets.
      this.#event(rec.pod, {
        type: 'Warning',
        reason: 'FailedPostStartHook',
        message: 'PostStartHook failed',
      });
      await this.#stopContainers(
        rec,
        rec.pod,
        [{ id, name: c.name }],
        this.#grace(rec.pod),
        signal,
      );
    } finally {
      r.postStarting = false;
    }
  }

  /** The pod's termination grace period (seconds). */
  #grace(pod: V1Pod): number {
    return (
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30
    );
  }

  #containerConfig(rec: PodRecord, c: V1Container, attempt: number): Message {
    const pod = rec.pod;
    const podDir = this.#podDir(pod);
    const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
    const mounts: Message[] = [];
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.get(m.name);
      if (!v) throw invalidInput(`volume mount ${m.name} names no volume of the pod`);
      let host: string;
      if (v.hostPath) host = v.hostPath.path;
      else if (v.emptyDir) host = join(podDir, 'empty', v.name);
      else host = join(podDir, 'volumes', v.name);
      if (m.subPath) host = join(host, normalize(m.subPath));
      mounts.push({ container_path: m.mountPath, host_path: host, readonly: m.readOnly === true });
    }
    if (mountsManagedHosts(c, rec.podIP ? [rec.podIP] : []))
      mounts.push({ container_path: ETC_HOSTS, host_path: join(podDir, 'etc-hosts') });
    const sc = c.securityContext ?? {};
    const psc = pod.spec?.securityContext ?? {};
    const runAsUser = sc.runAsUser ?? psc.runAsUser;
    const runAsGroup = sc.runAsGroup ?? psc.runAsGroup;
    const vars = new Map((c.env ?? []).map((e) => [e.name, e.value ?? '']));
    return {
      metadata: { name: c.name, attempt },
      image: { image: c.image ?? '' },
      // As the kubelet: `$(VAR)` in command and args names one of the container's variables.
      command: (c.command ?? []).map((a) => expandEnvValue(a, (n) => vars.get(n))),
      args: (c.args ?? []).map((a) => expandEnvValue(a, (n) => vars.get(n))),
      working_dir: c.workingDir ?? '',
      envs: (c.env ?? []).map((e) => ({ key: e.name, value: e.value ?? '' })),
      mounts,
      labels: {
        [L_NODE]: this.#o.nodeName,
        [L_POD_NAME]: pod.metadata?.name ?? '',
        [L_POD_NS]: pod.metadata?.namespace ?? 'default',
        [L_POD_UID]: pod.metadata?.uid ?? '',
        [L_CONTAINER]: c.name,
      },
      annotations: { 'io.kubernetes.container.restartCount': String(attempt) },
      log_path: join(c.name, `${String(attempt)}.log`),
      stdin: c.stdin === true,
      stdin_once: c.stdinOnce === true,
      tty: c.tty === true,
      linux: {
        resources: linuxResources(c),
        security_context: {
          capabilities: {
            add_capabilities: sc.capabilities?.add ?? [],
            drop_capabilities: sc.capabilities?.drop ?? [],
          },
          privileged: sc.privileged === true,
          namespace_options: {
            network: pod.spec?.hostNetwork ? 'NODE' : 'POD',
            pid: pod.spec?.hostPID ? 'NODE' : pod.spec?.shareProcessNamespace ? 'POD' : 'CONTAINER',
            ipc: pod.spec?.hostIPC ? 'NODE' : 'POD',
          },
          ...(runAsUser !== undefined ? { run_as_user: { value: String(runAsUser) } } : {}),
          ...(runAsGroup !== undefined ? { run_as_group: { value: String(runAsGroup) } } : {}),
          readonly_rootfs: sc.readOnlyRootFilesystem === true,
          no_new_privs: sc.allowPrivilegeEscalation === false,
          supplemental_groups: (psc.supplementalGroups ?? []).map(String),
        },
      },
    };
  }

  #containerStatus(
    rec: PodRecord,
    c: V1Container,
    r: ContainerRecord | undefined,
    init: boolean,
  ): V1ContainerStatus {
    const base = {
      name: c.name,
      image: c.image ?? '',
      imageID: typeof r?.status?.image_ref === 'string' ? r.status.image_ref : '',
      restartCount: r?.restarts ?? 0,
      ...(r?.current ? { containerID: `containerd://${r.current.id}` } : {}),
      ...(r?.lastTerminated ? { lastState: r.lastTerminated } : {}),
    };
    const st = r?.postStarting ? undefined : r?.status;
    if (r?.waiting) return { ...base, ready: false, started: false, state: { waiting: r.waiting } };
    if (st?.state === 'CONTAINER_RUNNING') {
      const probed = init ? undefined : this.#probes.state(rec.pod, c.name, r?.current?.id);
      return {
        ...base,
        ready: !init && (probed?.ready ?? true),
        started: probed?.started ?? true,
        state: { running: { startedAt: nanosToIso(st.started_at) ?? '' } },
      };
    }
    if (st?.state === 'CONTAINER_EXITED')
      return { ...base, ready: false, started: false, state: { terminated: terminatedOf(st) } };
    return {
      ...base,
      ready: false,
      started: false,
      state: { waiting: { reason: init ? 'PodInitializing' : 'ContainerCreating' } },
    };
  }

  #status(rec: PodRecord): V1PodStatus {
    const spec = rec.pod.spec ?? { containers: [] };
    const policy = spec.restartPolicy ?? 'Always';
    const initSpecs = spec.initContainers ?? [];
    // Sidecars are reported as main containers are (started, ready by their probes).
    const inits = initSpecs.map((c) =>
      this.#containerStatus(rec, c, rec.containers.get(c.name), !isSidecar(c)),
    );
    const sidecars = inits.filter((_, i) => isSidecar(initSpecs[i] ?? { name: '' }));
    const regular = inits.filter((_, i) => !isSidecar(initSpecs[i] ?? { name: '' }));
    const mains = spec.containers.map((c) =>
      this.#containerStatus(rec, c, rec.containers.get(c.name), false),
    );
    const ephemeral = ephemeralContainers(rec.pod).map((e) =>
      ephemeralStatus(
        this.#containerStatus(rec, asContainer(e), rec.containers.get(e.name), false),
      ),
    );
    const initFailed =
      policy === 'Never' &&
      regular.some((s) => s.state?.terminated && s.state.terminated.exitCode !== 0);
    // A sidecar initializes once started; its later exits and restarts do not undo that.
    const initialized =
      regular.every((s) => s.state?.terminated?.exitCode === 0) &&
      sidecars.every((s) => s.started === true || s.restartCount > 0 || rec.ending === true);
    const terminated = mains.flatMap((s) => (s.state?.terminated ? [s.state.terminated] : []));
    const allDone = mains.length > 0 && terminated.length === mains.length;
    let phase = 'Pending';
    if (initFailed) phase = 'Failed';
    else if (!initialized) phase = 'Pending';
    else if (allDone && policy === 'Never')
      phase = terminated.every((t) => t.exitCode === 0) ? 'Succeeded' : 'Failed';
    else if (allDone && policy === 'OnFailure' && terminated.every((t) => t.exitCode === 0))
      phase = 'Succeeded';
    else if (mains.some((s) => s.state?.running || s.state?.terminated || s.lastState))
      phase = 'Running';
    // The pod ends only once its sidecars have stopped (see #endSidecars).
    if ((phase === 'Succeeded' || phase === 'Failed') && sidecars.some((s) => s.state?.running))
      phase = initialized ? 'Running' : 'Pending';
    if (rec.deadline === 'stopped') phase = 'Failed';
    const ready = initialized && mains.every((s) => s.ready) && sidecars.every((s) => s.ready);
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const cond = (type: string, ok: boolean): V1PodCondition => {
      const old = rec.status?.conditions?.find((c) => c.type === type);
      const status = ok ? 'True' : 'False';
      return {
        type,
        status,
        lastTransitionTime: old?.status === status ? (old.lastTransitionTime ?? now) : now,
      };
    };
    return {
      phase,
      ...(rec.deadline === 'stopped' ? { reason: DEADLINE_REASON, message: DEADLINE_MESSAGE } : {}),
      conditions: [
        cond('PodReadyToStartContainers', rec.sandboxId !== undefined),
        cond('Initialized', initialized),
        cond('ContainersReady', ready),
        cond('Ready', ready),
      ],
      ...(rec.podIP ? { podIP: rec.podIP, podIPs: [{ ip: rec.podIP }] } : {}),
      hostIP: this.#o.nodeIP,
      hostIPs: [{ ip: this.#o.nodeIP }],
      startTime: rec.startTime,
      ...(inits.length > 0 ? { initContainerStatuses: inits } : {}),
      containerStatuses: mains,
      ...(ephemeral.length > 0 ? { ephemeralContainerStatuses: ephemeral } : {}),
    };
  }
}

/** A file of the host, or empty text when it cannot be read. */
function readHostFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function attemptOf(c: Message): number {
  return (c.metadata as { attempt?: number } | undefined)?.attempt ?? 0;
}

function terminatedOf(st: Message): NonNullable<V1ContainerStatus['state']>['terminated'] {
  const code = Number(st.exit_code);
  const reason =
    typeof st.reason === 'string' && st.reason ? st.reason : code === 0 ? 'Completed' : 'Error';
  return {
    exitCode: code,
    reason,
    ...(typeof st.message === 'string' && st.message ? { message: st.message } : {}),
    startedAt: nanosToIso(st.started_at) ?? '',
    finishedAt: nanosToIso(st.finished_at) ?? '',
    containerID: `containerd://${String(st.id)}`,
  };
}

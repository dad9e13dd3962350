import type { V1Lease, V1Node, V1NodeCondition, V1Taint } from '../wire.js';
import { setTimeout as delay } from 'node:timers/promises';
import { aborted, sleep } from '../abort.js';
import { errorCode, errorMessage, invalidInput, permanent } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import { Informer, type InformerHandlers } from '../kube/informer.js';
import type { ObjectCache, SharedInformer } from '../kube/shared-informer.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { isNodeConfigurer, isNodeProvider, type Provider } from '../provider.js';
import { Wakeup } from './wakeup.js';
import { goArch } from '../kubelet/go-arch.js';
import { formatMicroTime, formatRfc3339 } from '../kubelet/time.js';

export interface NodeControllerOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly provider: Provider;
  readonly logger?: Logger;
  /** Extra labels, on top of `type=virtual-kubelet` and the well-known os/arch/hostname labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Taints set when the Node is created. Default: none (the CLI passes the provider taint). */
  readonly taints?: readonly V1Taint[];
  /** The node's InternalIP. Default: 127.0.0.1. */
  readonly nodeIP?: string;
  /** Port of the kubelet API, published in `status.daemonEndpoints`. Default: 10250. */
  readonly kubeletPort?: number;
  /** `kubernetes.io/os` and nodeInfo. Default: linux. */
  readonly operatingSystem?: string;
  /** nodeInfo.kubeletVersion. Default: `v0.0.0-vk-unknown`. */
  readonly kubeletVersion?: string;
  /** Default: 40. */
  readonly leaseDurationSeconds?: number;
  /**
   * Create and renew the node's Lease (`kube-node-lease/<nodeName>`, its heartbeat). False when
   * another part keeps that Lease renewed: a leader elector whose lock it is. Default: true.
   */
  readonly renewLease?: boolean;
  /** Default: a quarter of the lease duration (10 000 ms). */
  readonly leaseRenewIntervalMs?: number;
  /** Status written at least this often. Default: 60 000 ms. */
  readonly statusUpdateIntervalMs?: number;
  /** Default: 10 000 ms. */
  readonly pingIntervalMs?: number;
  /** A ping slower than this counts as failed. Default: 5 000 ms. */
  readonly pingTimeoutMs?: number;
  /**
   * A watch of Nodes shared by the nodes of one process (partitioned by name; its owner runs
   * it). Default: the controller watches its own Node.
   */
  readonly sharedNodes?: SharedInformer<V1Node>;
}

const LEASE_NS = 'kube-node-lease';

/**
 * Makes the provider a Node: registers it (or adopts an existing virtual node of that name),
 * renews its Lease, keeps its status and conditions current, and re-creates it when someone
 * deletes it. Conditions that other actors add to the Node are left alone.
 */
export class NodeController {
  readonly #o: NodeControllerOptions;
  readonly #log: Logger;
  readonly #wakeStatus = new Wakeup();
  #node: V1Node;
  #uid = '';
  #lease: V1Lease | undefined;
  #pingError: string | undefined;
  #markReady: () => void = () => undefined;
  readonly #ready = new Promise<void>((resolve) => (this.#markReady = resolve));
  readonly #transitions = new Map<string, { status: string; at: string }>();
  /** Watches this Node, to register it again at once when someone deletes it. */
  readonly #watcher: ObjectCache<V1Node>;

  constructor(options: NodeControllerOptions) {
    const d = options.leaseDurationSeconds ?? 40;
    if (!Number.isInteger(d) || d < 1)
      throw invalidInput(
        `NodeController: leaseDurationSeconds must be an integer >= 1, got ${String(d)}`,
      );
    if (!options.nodeName) throw invalidInput('NodeController: nodeName must not be empty');
    for (const [name, value] of Object.entries({
      leaseRenewIntervalMs: options.leaseRenewIntervalMs,
      statusUpdateIntervalMs: options.statusUpdateIntervalMs,
      pingIntervalMs: options.pingIntervalMs,
      pingTimeoutMs: options.pingTimeoutMs,
    })) {
      if (value !== undefined && !(value > 0))
        throw invalidInput(`NodeController: ${name} must be greater than 0, got ${String(value)}`);
    }
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({ node: options.nodeName });
    this.#node = this.#initialNode();
    const handlers: InformerHandlers<V1Node> = {
      onDelete: () => {
        this.#log.warn('the node was deleted: registering it again');
        this.#uid = '';
        this.#wakeStatus.fire();
      },
    };
    this.#watcher =
      options.sharedNodes?.view(options.nodeName, handlers) ??
      new Informer<V1Node>({
        client: options.client,
        path: '/api/v1/nodes',
        fieldSelector: `metadata.name=${options.nodeName}`,
        logger: this.#log,
        handlers,
      });
  }

  /**
   * Sets the kubelet API port published in `status.daemonEndpoints`, for a server that listens
   * on a port chosen at start. Call it before {@link run}.
   */
  setKubeletPort(port: number): void {
    const endpoints = this.#node.status?.daemonEndpoints;
    if (endpoints) endpoints.kubeletEndpoint = { Port: port };
  }

  /** The Node as last written. */
  get node(): V1Node {
    return this.#node;
  }

  /** Resolves once the Node is registered and its Lease exists (when it keeps the Lease). */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  /**
   * Registers the node and keeps it alive until `signal` aborts. Rejects only for errors a
   * person must fix (code `Permanent`: the name belongs to a real kubelet); API errors, whatever
   * their code, are retried.
   */
  async run(signal: AbortSignal): Promise<void> {
    const p = this.#o.provider;
    if (isNodeConfigurer(p)) await p.configureNode(this.#node);
    if (isNodeProvider(p)) {
      p.notifyNodeStatus((node) => {
        this.#mergeProviderStatus(node);
        this.#wakeStatus.fire();
      });
    }
    const renewLease = this.#o.renewLease ?? true;
    await this.#retry(signal, 'register the node', () => this.#register(signal));
    if (renewLease)
      await this.#retry(signal, 'create the node lease', () => this.#renewLease(signal));
    this.#log.info({ uid: this.#uid }, 'node registered');
    this.#markReady();

    await Promise.all([
      this.#watcher.run(signal),
      renewLease ? this.#leaseLoop(signal) : Promise.resolve(),
      this.#statusLoop(signal),
      isNodeProvider(p) ? this.#pingLoop(signal, p) : Promise.resolve(),
    ]);
  }

  #initialNode(): V1Node {
    const o = this.#o;
    const os = o.operatingSystem ?? 'linux';
    const arch = goArch();
    const port = o.kubeletPort ?? 10250;
    return {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: o.nodeName,
        labels: {
          type: 'virtual-kubelet',
          'kubernetes.io/os': os,
          'kubernetes.io/arch': arch,
          'kubernetes.io/hostname': o.nodeName,
          ...o.labels,
        },
      },
      spec: { taints: o.taints ? [...o.taints] : [] },
      status: {
        capacity: { cpu: '20', memory: '100Gi', pods: '110' },
        allocatable: { cpu: '20', memory: '100Gi', pods: '110' },
        addresses: [
          { type: 'InternalIP', address: o.nodeIP ?? '127.0.0.1' },
          { type: 'Hostname', address: o.nodeName },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: port } },
        nodeInfo: {
          kubeletVersion: o.kubeletVersion ?? 'v0.0.0-vk-unknown',
          kubeProxyVersion: '',
          operatingSystem: os,
          architecture: arch,
          osImage: '',
          kernelVersion: '',
          containerRuntimeVersion: '',
          bootID: '',
          machineID: '',
          systemUUID: '',
        },
        conditions: [],
      },
    };
  }

  #conditions(now: Date): V1NodeCondition[] {
    const at = formatRfc3339(now);
    const ready: [string, string, string] = this.#pingError
      ? ['False', 'ProviderUnhealthy', `the provider failed its health check: ${this.#pingError}`]
      : ['True', 'KubeletReady', 'virtual-kubelet is ready'];
    const own: [string, string, string, string][] = [
      ['Ready', ...ready],
      [
        'MemoryPressure',
        'False',
        'KubeletHasSufficientMemory',
        'kubelet has sufficient memory available',
      ],
      ['DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'],
      ['PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'],
      ['NetworkUnavailable', 'False', 'RouteCreated', 'the provider manages the pod network'],
    ];
    // Conditions a provider reports override the defaults of the same type.
    const fromProvider = new Map((this.#node.status?.conditions ?? []).map((c) => [c.type, c]));
    const out: V1NodeCondition[] = own.map(([type, status, reason, message]) => {
      const p = fromProvider.get(type);
      fromProvider.delete(type);
      return p && !(type === 'Ready' && this.#pingError)
        ? { ...p, lastHeartbeatTime: at }
        : { type, status, reason, message, lastHeartbeatTime: at };
    });
    for (const c of fromProvider.values()) out.push({ ...c, lastHeartbeatTime: at });
    for (const c of out) {
      const prev = this.#transitions.get(c.type);
      if (!prev || prev.status !== c.status)
        this.#transitions.set(c.type, { status: c.status, at });
      c.lastTransitionTime = this.#transitions.get(c.type)?.at ?? at;
    }
    return out;
  }

  #mergeProviderStatus(node: V1Node): void {
    const s = node.status ?? {};
    const mine = (this.#node.status ??= {});
    if (s.capacity) mine.capacity = { ...s.capacity };
    if (s.allocatable) mine.allocatable = { ...s.allocatable };
    if (s.conditions) mine.conditions = s.conditions.map((c) => ({ ...c }));
    if (s.addresses) mine.addresses = s.addresses.map((a) => ({ ...a }));
  }

  async #register(signal: AbortSignal): Promise<void> {
    const { client, nodeName } = this.#o;
    const path = `/api/v1/nodes/${nodeName}`;
    const existing = await client.get<V1Node>(path, signal);
    if (!existing) {
      const body = structuredClone(this.#node);
      body.status = { ...body.status, conditions: this.#conditions(new Date()) };
      try {
        const created = await client.create<V1Node>('/api/v1/nodes', body, signal);
        this.#uid = created.metadata?.uid ?? '';
        return;
      } catch (err) {
        if (errorCode(err) !== 'AlreadyExists') throw err;
        // Someone created it between our get and create: adopt it.
        await this.#register(signal);
        return;
      }
    }
    assertVirtual(existing);
    this.#uid = existing.metadata?.uid ?? '';
    const labels = this.#node.metadata?.labels ?? {};
    const missing = Object.entries(labels).filter(([k, v]) => existing.metadata?.labels?.[k] !== v);
    const patch: V1Node = {};
    if (missing.length > 0) patch.metadata = { labels: Object.fromEntries(missing) };
    // The API server lets spec.podCIDR be set once: a node without one gets the provider's, a
    // node with another keeps it (said in the log; the provider's pods use its own).
    const podCIDR = this.#node.spec?.podCIDR;
    const had = existing.spec?.podCIDR;
    if (podCIDR !== undefined && !had)
      patch.spec = { podCIDR, podCIDRs: this.#node.spec?.podCIDRs ?? [podCIDR] };
    else if (podCIDR !== undefined && had !== podCIDR)
      this.#log.warn(
        { podCIDR, registered: had },
        'the Node has another spec.podCIDR, which cannot change: it keeps it',
      );
    if (patch.metadata || patch.spec) await client.patch(path, 'merge', patch, signal);
    this.#log.info('adopted an existing node of the same name');
    await this.#writeStatus(signal);
  }

  async #writeStatus(signal: AbortSignal): Promise<void> {
    const s = this.#node.status ?? {};
    const status = {
      conditions: this.#conditions(new Date()),
      capacity: s.capacity,
      allocatable: s.allocatable,
      addresses: s.addresses,
      daemonEndpoints: s.daemonEndpoints,
      nodeInfo: s.nodeInfo,
    };
    // A strategic merge patch merges conditions by type: those other actors own survive.
    const node = await this.#o.client.patch<V1Node>(
      `/api/v1/nodes/${this.#o.nodeName}/status`,
      'strategic',
      { status },
      signal,
      true,
    );
    this.#uid = node.metadata?.uid ?? this.#uid;
  }

  async #statusLoop(signal: AbortSignal): Promise<void> {
    const interval = this.#o.statusUpdateIntervalMs ?? 60_000;
    while (!signal.aborted) {
      await this.#wakeStatus.wait(interval, signal);
      if (aborted(signal)) return;
      try {
        if (!this.#uid) {
          await this.#register(signal);
          if (this.#o.renewLease ?? true) await this.#renewLease(signal);
        } else await this.#writeStatus(signal);
      } catch (err) {
        if (aborted(signal)) return;
        if (errorCode(err) === 'NotFound') {
          this.#uid = '';
          this.#wakeStatus.fire();
        } else if (errorCode(err) === 'Permanent') {
          throw err;
        }
        this.#log.warn({ err: errorMessage(err) }, 'node status update failed');
        await sleep(1000, signal);
      }
    }
  }

  async #renewLease(signal: AbortSignal): Promise<void> {
    const { client, nodeName } = this.#o;
    const path = `/apis/coordination.k8s.io/v1/namespaces/${LEASE_NS}/leases/${nodeName}`;
    const spec = {
      holderIdentity: nodeName,
      leaseDurationSeconds: this.#o.leaseDurationSeconds ?? 40,
      renewTime: formatMicroTime(new Date()),
    };
    const owner = this.#uid
      ? [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: this.#uid }]
      : undefined;
    const lease = this.#lease ?? (await client.get<V1Lease>(path, signal, true));
    if (!lease) {
      this.#lease = await client.create<V1Lease>(
        `/apis/coordination.k8s.io/v1/namespaces/${LEASE_NS}/leases`,
        {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: nodeName, namespace: LEASE_NS, ownerReferences: owner },
          spec,
        },
        signal,
        true,
      );
      return;
    }
    const next: V1Lease = { ...lease, spec: { ...lease.spec, ...spec } };
    const refs = lease.metadata?.ownerReferences ?? [];
    if (owner && !refs.some((r) => r.uid === this.#uid))
      next.metadata = { ...lease.metadata, ownerReferences: owner };
    try {
      this.#lease = await client.replace<V1Lease>(path, next, signal, true);
    } catch (err) {
      this.#lease = undefined;
      if (errorCode(err) === 'Conflict' || errorCode(err) === 'NotFound') {
        await this.#renewLease(signal);
        return;
      }
      throw err;
    }
  }

  async #leaseLoop(signal: AbortSignal): Promise<void> {
    const d = this.#o.leaseDurationSeconds ?? 40;
    const interval = this.#o.leaseRenewIntervalMs ?? d * 250;
    while (!signal.aborted) {
      await sleep(interval, signal);
      if (aborted(signal)) return;
      try {
        await this.#renewLease(signal);
      } catch (err) {
        if (!aborted(signal)) this.#log.warn({ err: errorMessage(err) }, 'lease renewal failed');
      }
    }
  }

  async #pingLoop(
    signal: AbortSignal,
    p: { ping(signal: AbortSignal): Promise<void> },
  ): Promise<void> {
    const interval = this.#o.pingIntervalMs ?? 10_000;
    const timeout = this.#o.pingTimeoutMs ?? 5_000;
    while (!signal.aborted) {
      let error: string | undefined;
      try {
        await p.ping(AbortSignal.any([signal, AbortSignal.timeout(timeout)]));
      } catch (err) {
        error = aborted(signal) ? undefined : errorMessage(err);
      }
      if (aborted(signal)) return;
      if (error !== this.#pingError) {
        if (error) this.#log.warn({ err: error }, 'provider ping failed: node not ready');
        else this.#log.info('provider ping succeeded: node ready');
        this.#pingError = error;
        this.#wakeStatus.fire();
      }
      await sleep(interval, signal);
    }
  }

  async #retry(signal: AbortSignal, what: string, fn: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      try {
        await fn();
        return;
      } catch (err) {
        if (errorCode(err) === 'Permanent' || aborted(signal)) throw err;
        const wait = Math.min(7_000, 200 * 2 ** (attempt - 1));
        this.#log.warn({ err: errorMessage(err), retryInMs: wait }, `could not ${what}`);
        await delay(wait, undefined, { signal });
      }
    }
  }
}

/** Refuses to take over a Node that a real kubelet keeps alive. */
function assertVirtual(node: V1Node): void {
  const version = node.status?.nodeInfo?.kubeletVersion ?? '';
  const isVirtual = node.metadata?.labels?.type === 'virtual-kubelet' || version.includes('-vk-');
  if (!isVirtual && version !== '') {
    throw permanent(
      `node ${node.metadata?.name ?? '?'} is registered by a real kubelet (${version}): choose another --nodename`,
    );
  }
}

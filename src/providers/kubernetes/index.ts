/**
 * The kubernetes provider: the pods bound to the virtual node run in another Kubernetes cluster
 * (the remote cluster), and the node offers that cluster's free capacity. Remote pods carry
 * origin labels (`virtual-kubelet.io/origin-node`, `origin-uid`, `origin-cluster`) and
 * annotations (also `origin-namespace`, `origin-name`); a watch of the remote pods with this
 * node's origin label pushes their status to the local pods. The config maps, secrets and
 * service accounts the pods name are created in the remote namespaces (see `reflector.ts`).
 *
 * It talks to the remote cluster's API server only: the core resolves everything of the local
 * cluster a pod refers to, as for any provider.
 */
import { isAbsolute, resolve as resolvePath } from 'node:path';
import type { Duplex, Readable } from 'node:stream';
import { aborted, sleep } from '../../abort.js';
import {
  errorCode,
  errorMessage,
  invalidInput,
  isVirtualKubeletError,
  notFound,
  permanent,
  unavailable,
  VirtualKubeletError,
} from '../../errors.js';
import { ApiError, KubeClient, loadKubeConfig } from '../../kube/client.js';
import { Informer } from '../../kube/informer.js';
import { namespacedKey } from '../../kubelet/pod-key.js';
import { isTerminalPhase } from '../../kubelet/pod-status.js';
import { formatRfc3339 } from '../../kubelet/time.js';
import { silentLogger, type Logger } from '../../log.js';
import type {
  AttachStreams,
  ContainerLogOptions,
  PodEvent,
  Provider,
  ResolvedVolume,
  Summary,
} from '../../provider.js';
import type {
  CoreV1Event,
  V1Namespace,
  V1Node,
  V1Pod,
  V1PodStatus,
  V1Service,
  V1Taint,
} from '../../wire.js';
import { freeCapacity } from './capacity.js';
import type { KubernetesConfig } from './config.js';
import { Reflector } from './reflector.js';
import { ServiceReflector } from './service-reflector.js';
import { mapSummaries, metricsResourceOf } from './stats.js';
import { remoteCommand, remotePortForward, type RemoteEndpoint } from './streams.js';
import { BackgroundTasks } from './tasks.js';
import {
  ORIGIN_NODE,
  ORIGIN_UID,
  originOf,
  REFLECTED,
  remoteMetadataOf,
  remoteNamespace,
  RestartCounter,
  toLocalStatus,
  toRemotePod,
  type TranslateContext,
} from './translate.js';

export { DEFAULT_REFLECTED_KINDS, parseKubernetesConfig, REFLECTED_KINDS } from './config.js';
export type {
  HostIPMode,
  KubernetesConfig,
  NamespaceMapping,
  ReflectedKind,
  ServiceAccountMode,
} from './config.js';
export {
  ORIGIN_CLUSTER,
  ORIGIN_NAME,
  ORIGIN_NAMESPACE,
  ORIGIN_NODE,
  ORIGIN_UID,
  REFLECT_ANNOTATION,
  REFLECTED,
} from './translate.js';

export interface KubernetesProviderOptions {
  /** The virtual node's name; remote pods carry it as `virtual-kubelet.io/origin-node`. */
  readonly nodeName: string;
  /** The virtual node's address: the pods' hostIP with `hostIP: Node`. */
  readonly nodeIP: string;
  readonly config: KubernetesConfig;
  /** A client of the remote cluster. Default: one made from `config.kubeconfig`. */
  readonly client?: KubeClient;
  /** Default: `silentLogger`. */
  readonly logger?: Logger;
}

/** One local pod the provider runs. */
interface Entry {
  /** The local pod's metadata (namespace, name, uid) and spec. */
  pod: V1Pod;
  readonly remoteNamespace: string;
  /** The pod as created remotely, without server fields: what a re-creation sends again. */
  remote: V1Pod;
  readonly restarts: RestartCounter;
  /** The UID of the remote pod last seen. */
  remoteUid?: string;
  deleting: boolean;
  /** Set while a re-creation runs, so that events do not start a second one. */
  recreating: boolean;
}

/**
 * A denial by an admission webhook (`admission webhook "<name>" denied the request`) or a
 * ValidatingAdmissionPolicy (`ValidatingAdmissionPolicy '<name>' ... denied request`), under
 * whatever status the webhook or the policy chose (a webhook's default is 400, a policy's 422).
 */
const ADMISSION_DENIAL =
  /(?:^|: )admission webhook "[^"]*" denied the request|ValidatingAdmissionPolicy '[^']*'(?: with binding '[^']*')? denied request/;
/**
 * An admission webhook the API server could not ask (down, timed out, a bad answer) under
 * `failurePolicy: Fail`: a 500 `Internal error occurred: failed calling webhook "<name>"`.
 */
const WEBHOOK_UNREACHABLE = /failed calling webhook "/;

/** A remote refusal, mapped to the contract's codes with a message people can act on. */
export function refusalOf(err: unknown, what: string): VirtualKubeletError {
  if (!(err instanceof ApiError))
    return isVirtualKubeletError(err)
      ? new VirtualKubeletError(err.code, `${what}: ${err.message}`, { cause: err })
      : unavailable(`${what}: ${errorMessage(err)}`, err);
  const answered = err.reason ? `${String(err.status)} ${err.reason}` : String(err.status);
  const detail = `${what}: the remote cluster answered ${answered}: ${err.message}`;
  // An admission webhook or policy said no to this pod, and asking again gets the same answer;
  // unless it chose 429 or a 5xx, its own way of saying "later".
  if (ADMISSION_DENIAL.test(err.message))
    return err.status === 429 || err.status >= 500
      ? unavailable(detail, err)
      : permanent(detail, err);
  // The webhook may answer once it is back.
  if (WEBHOOK_UNREACHABLE.test(err.message)) return unavailable(detail, err);
  if (err.status === 403 && /exceeded quota|forbidden: exceeded/i.test(err.message))
    // Quota frees up when other pods end: retried with backoff.
    return unavailable(detail, err);
  if (err.status === 400 || err.status === 422) return invalidInput(detail, err);
  if (err.status === 403 || err.status === 401) return unavailable(detail, err);
  return new VirtualKubeletError(errorCode(err), detail, { cause: err });
}

/** How long a remote node's Summary is reused: metrics-server and `kubectl top` poll often. */
const STATS_CACHE_MS = 5_000;
/** The longest wait for one remote node's Summary; a node that does not answer is left out. */
const STATS_TIMEOUT_MS = 5_000;
/** How many remote nodes' Summaries are read at once. */
const STATS_CONCURRENCY = 4;

/** The HTTP path of a remote pod (or of one of its subresources). */
const podPath = (namespace: string, name: string, sub = ''): string =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}${sub ? `/${sub}` : ''}`;

export class KubernetesProvider implements Provider {
  readonly #nodeName: string;
  readonly #nodeIP: string;
  readonly #config: KubernetesConfig;
  readonly #client: KubeClient;
  readonly #log: Logger;
  readonly #entries = new Map<string, Entry>();
  /** Local pod UID to entry key. */
  readonly #byUid = new Map<string, string>();
  readonly #informer: Informer<V1Pod>;
  /** The remote pods' UIDs, to find the local pod a remote Event is about. */
  readonly #byRemoteUid = new Map<string, Entry>();
  /** Remote Events already copied, by UID and count. */
  readonly #copiedEvents = new Set<string>();
  readonly #started = Date.now();
  readonly #reflector: Reflector;
  readonly #services: ServiceReflector;
  readonly #stop = new AbortController();
  /** The watches, the capacity loop and re-creations under way; close() waits for them. */
  readonly #tasks = new BackgroundTasks();
  /** Removals of unused remote namespaces under way, by namespace (see #namespaceMayBeUnused). */
  readonly #removals = new Map<string, Promise<void>>();
  /** Namespaces to look at again once the removal under way has ended. */
  readonly #lookAgain = new Set<string>();
  #notify: ((pod: V1Pod) => void) | undefined;
  #events: ((pod: V1Pod, event: PodEvent) => void) | undefined;
  #nodeLabels: Record<string, string> = {};
  #nodeTaints: V1Taint[] = [];
  #node: V1Node | undefined;
  #capacity = '';
  /** Remote nodes' Summaries by node name: the read (pending or done) and when it started. */
  readonly #summaries = new Map<string, { at: number; read: Promise<Summary | undefined> }>();
  /** Remote nodes whose last Summary read failed (warned about once). */
  readonly #summariesFailing = new Set<string>();
  /** Whether `close()` closes the client (it made it). */
  #closeClient = false;

  constructor(options: KubernetesProviderOptions) {
    if (options.nodeName.length > 63)
      throw invalidInput(`node name ${options.nodeName} is longer than a label value (63)`);
    this.#nodeName = options.nodeName;
    this.#nodeIP = options.nodeIP;
    this.#config = options.config;
    this.#log = options.logger ?? silentLogger;
    if (!options.client) throw invalidInput('KubernetesProvider needs a client: use create()');
    this.#client = options.client;
    this.#reflector = new Reflector({
      client: this.#client,
      nodeName: this.#nodeName,
      config: this.#config,
      logger: this.#log,
    });
    this.#services = new ServiceReflector({
      client: this.#client,
      nodeName: this.#nodeName,
      config: this.#config,
      logger: this.#log,
      ensureNamespace: (ns, signal) => this.#reflector.ensureNamespace(ns, signal),
    });
    this.#informer = new Informer<V1Pod>({
      client: this.#client,
      path: '/api/v1/pods',
      labelSelector: `${ORIGIN_NODE}=${this.#nodeName}`,
      logger: this.#log,
      handlers: {
        onAdd: (p) => this.#onRemote(p),
        onUpdate: (_old, p) => this.#onRemote(p),
        onDelete: (p) => {
          this.#onRemoteGone(p);
          this.#namespaceMayBeUnused(p.metadata?.namespace);
        },
      },
    });
    this.#tasks.add(this.#informer.run(this.#stop.signal));
    if (this.#config.remoteEvents ?? true) {
      const events = new Informer<CoreV1Event>({
        client: this.#client,
        path: '/api/v1/events',
        fieldSelector: 'involvedObject.kind=Pod',
        logger: this.#log,
        // Only what the handlers read is kept.
        transform: (e) => ({
          metadata: e.metadata,
          involvedObject: { uid: e.involvedObject.uid },
          type: e.type,
          reason: e.reason,
          message: e.message,
          count: e.count,
          lastTimestamp: e.lastTimestamp,
          eventTime: e.eventTime,
        }),
        handlers: {
          onAdd: (e) => this.#onRemoteEvent(e),
          onUpdate: (_old, e) => this.#onRemoteEvent(e),
        },
      });
      this.#tasks.add(events.run(this.#stop.signal));
    }
  }

  /** Copies a remote Event about an offloaded pod onto the local pod, once per occurrence. */
  #onRemoteEvent(e: CoreV1Event): void {
    const entry = this.#byRemoteUid.get(e.involvedObject.uid ?? '');
    if (!entry || entry.deleting) return;
    const at = Date.parse(e.lastTimestamp ?? e.eventTime ?? '');
    // Events from before the provider started were copied by the agent that ran then.
    if (Number.isFinite(at) && at < this.#started - 1_000) return;
    const key = `${e.metadata.uid ?? ''}/${String(e.count ?? 1)}`;
    if (this.#copiedEvents.has(key)) return;
    this.#copiedEvents.add(key);
    if (this.#copiedEvents.size > 10_000) this.#copiedEvents.clear();
    this.#emit(entry.pod, {
      type: e.type === 'Warning' ? 'Warning' : 'Normal',
      reason: e.reason ?? 'Remote',
      message: `remote: ${e.message ?? ''}`,
    });
  }

  /**
   * A provider whose client is made from `config.kubeconfig` (relative paths resolve against
   * `baseDir`, default the working directory) and closed by `close()`.
   */
  static async create(
    options: Omit<KubernetesProviderOptions, 'client'> & { readonly baseDir?: string },
  ): Promise<KubernetesProvider> {
    const path = isAbsolute(options.config.kubeconfig)
      ? options.config.kubeconfig
      : resolvePath(options.baseDir ?? process.cwd(), options.config.kubeconfig);
    let client: KubeClient;
    try {
      client = await KubeClient.create(loadKubeConfig(path), {
        userAgent: 'virtual-kubelet/kubernetes-provider',
      });
    } catch (err) {
      throw invalidInput(`kubeconfig ${path}: ${errorMessage(err)}`, err);
    }
    const provider = new KubernetesProvider({ ...options, client });
    provider.#closeClient = true;
    return provider;
  }

  #ctx(pod: V1Pod): TranslateContext {
    return {
      config: this.#config,
      nodeName: this.#nodeName,
      remoteNamespace: remoteNamespace(this.#config, this.#nodeName, pod.metadata?.namespace ?? ''),
      nodeLabels: this.#nodeLabels,
      nodeTaints: this.#nodeTaints,
    };
  }

  #emit(pod: V1Pod, event: PodEvent): void {
    this.#events?.(
      {
        metadata: {
          namespace: pod.metadata?.namespace,
          name: pod.metadata?.name,
          uid: pod.metadata?.uid,
        },
      },
      event,
    );
  }

  #localStatus(entry: Entry, remote: V1Pod): V1PodStatus {
    return toLocalStatus(
      remote,
      entry.restarts,
      (this.#config.hostIP ?? 'Remote') === 'Node' ? this.#nodeIP : undefined,
    );
  }

  #entryOf(remote: V1Pod): Entry | undefined {
    const uid = remote.metadata?.labels?.[ORIGIN_UID];
    const key = uid === undefined ? undefined : this.#byUid.get(uid);
    return key === undefined ? undefined : this.#entries.get(key);
  }

  #onRemote(remote: V1Pod): void {
    const entry = this.#entryOf(remote);
    if (!entry) return;
    entry.remoteUid = remote.metadata?.uid;
    if (entry.remoteUid !== undefined) this.#byRemoteUid.set(entry.remoteUid, entry);
    this.#notify?.({
      metadata: { ...entry.pod.metadata },
      status: this.#localStatus(entry, remote),
    });
  }

  /**
   * A remote pod of this node is gone: its namespace may be unused now. A deletion that found the
   * pod still there (it took longer than its grace period to go) left the namespace for later.
   */
  #namespaceMayBeUnused(ns: string | undefined): void {
    if (ns === undefined || aborted(this.#stop.signal)) return;
    for (const e of this.#entries.values()) if (e.remoteNamespace === ns) return;
    // One look at a time per namespace; a reason to look again meanwhile gets one more.
    if (this.#removals.has(ns)) {
      this.#lookAgain.add(ns);
      return;
    }
    const removal = this.#removeNamespaceIfUnused(ns, this.#stop.signal)
      .catch(() => undefined)
      .finally(() => {
        this.#removals.delete(ns);
        if (this.#lookAgain.delete(ns)) this.#namespaceMayBeUnused(ns);
      });
    this.#removals.set(ns, removal);
  }

  #onRemoteGone(remote: V1Pod): void {
    const entry = this.#entryOf(remote);
    if (!entry || entry.deleting || entry.recreating) return;
    if (remote.metadata?.uid !== entry.remoteUid) return;
    // A pod whose containers ended for good stays ended: nothing runs it again locally either.
    if (isTerminalPhase(remote.status?.phase)) return;
    entry.recreating = true;
    this.#log.warn(
      { pod: namespacedKey(entry.remoteNamespace, remote.metadata?.name ?? '') },
      'remote pod deleted by someone else: creating it again',
    );
    this.#emit(entry.pod, {
      type: 'Warning',
      reason: 'RemotePodRecreated',
      message: `the remote pod ${entry.remoteNamespace}/${remote.metadata?.name ?? ''} was deleted in the remote cluster; creating it again`,
    });
    this.#tasks.add(this.#recreate(entry));
  }

  /** Creates the remote pod again until it exists, the local pod goes, or the provider closes. */
  async #recreate(entry: Entry): Promise<void> {
    const signal = this.#stop.signal;
    try {
      for (let attempt = 0; !aborted(signal) && !entry.deleting; attempt++) {
        try {
          await this.#createRemote(entry, signal);
          return;
        } catch (err) {
          if (errorCode(err) === 'AlreadyExists') return;
          this.#log.warn({ err: errorMessage(err) }, 'could not create the remote pod again');
          await sleep(Math.min(30_000, 500 * 2 ** attempt), signal);
        }
      }
    } finally {
      entry.recreating = false;
    }
  }

  async #createRemote(entry: Entry, signal: AbortSignal): Promise<void> {
    const { remoteNamespace: ns } = entry;
    const name = entry.remote.metadata?.name ?? '';
    const uid = entry.pod.metadata?.uid;
    // Known from the watch already (a retried create, a restart): nothing to do.
    const seen = this.#remoteOf(ns, name)?.metadata;
    if (seen && seen.labels?.[ORIGIN_UID] === uid && seen.deletionTimestamp === undefined) return;
    try {
      await this.#client.create(
        `/api/v1/namespaces/${encodeURIComponent(ns)}/pods`,
        entry.remote,
        signal,
      );
      return;
    } catch (err) {
      if (errorCode(err) !== 'AlreadyExists') throw err;
    }
    // A pod of that name exists: ours (same origin UID) is adopted; another is in the way.
    const existing = await this.#client.get<V1Pod>(podPath(ns, name), signal);
    if (!existing) throw unavailable(`remote pod ${ns}/${name} exists and vanished: retrying`);
    if (existing.metadata?.labels?.[ORIGIN_UID] === uid) return;
    if (existing.metadata?.labels?.[ORIGIN_NODE] === this.#nodeName) {
      // An older pod of the same name that this node offloaded: it goes first.
      if (existing.metadata.deletionTimestamp === undefined)
        await this.#client.delete(podPath(ns, name), undefined, signal).catch(() => undefined);
      throw unavailable(`remote pod ${ns}/${name} of an earlier pod is still terminating`);
    }
    throw permanent(
      `a remote pod ${ns}/${name} exists that this node did not create: it is left alone`,
    );
  }

  // --- PodLifecycleHandler

  async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const key = namespacedKey(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
    const uid = pod.metadata?.uid ?? '';
    const ctx = this.#ctx(pod);
    const remote = toRemotePod(pod, ctx);
    const old = this.#entries.get(key);
    const same = old?.pod.metadata?.uid === uid;
    if (old && !same) this.#byUid.delete(old.pod.metadata?.uid ?? '');
    const entry: Entry = {
      pod: { metadata: structuredClone(pod.metadata), spec: structuredClone(pod.spec) },
      remoteNamespace: ctx.remoteNamespace,
      remote,
      // A retried create keeps what the watch has seen of the pod already.
      restarts: same ? old.restarts : new RestartCounter(),
      ...(same && old.remoteUid !== undefined ? { remoteUid: old.remoteUid } : {}),
      deleting: false,
      recreating: false,
    };
    this.#entries.set(key, entry);
    this.#byUid.set(uid, key);
    try {
      await this.#reflector.ensureNamespace(ctx.remoteNamespace, signal);
      await this.#reflector.ensureServiceAccount(pod, ctx.remoteNamespace, signal);
      await this.#createRemote(entry, signal);
    } catch (err) {
      // The namespace may have been removed meanwhile: the next attempt looks again.
      this.#reflector.forgetNamespace(ctx.remoteNamespace);
      // Not created: until a create goes through the pod is not this provider's, so getPod
      // answers that it has none and the core creates it again (with backoff) instead of taking
      // it for created. A create that went through without an answer shows in the watch, and
      // the next attempt adopts it.
      const seen = this.#remoteOf(ctx.remoteNamespace, pod.metadata?.name ?? '');
      if (this.#entries.get(key) === entry && seen?.metadata?.labels?.[ORIGIN_UID] !== uid) {
        this.#entries.delete(key);
        this.#byUid.delete(uid);
      }
      const refusal = refusalOf(
        err,
        `creating the remote pod ${ctx.remoteNamespace}/${pod.metadata?.name ?? ''}`,
      );
      this.#emit(pod, {
        type: 'Warning',
        reason: refusal.retryable ? 'RemoteCreateFailed' : 'RemoteRefused',
        message: refusal.message,
      });
      throw refusal;
    }
  }

  async updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const key = namespacedKey(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
    const entry = this.#entries.get(key);
    if (!entry) throw notFound(`pod ${key} is not known`);
    const ctx = this.#ctx(pod);
    const remote = toRemotePod(pod, ctx);
    entry.pod = { metadata: structuredClone(pod.metadata), spec: structuredClone(pod.spec) };
    entry.remote = remote;
    const meta = remoteMetadataOf(pod, ctx);
    const patch = {
      metadata: meta,
      spec: {
        containers: (remote.spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image })),
        ...(remote.spec?.activeDeadlineSeconds !== undefined
          ? { activeDeadlineSeconds: remote.spec.activeDeadlineSeconds }
          : {}),
        ...(remote.spec?.tolerations ? { tolerations: remote.spec.tolerations } : {}),
      },
    };
    try {
      await this.#client.patch(
        podPath(entry.remoteNamespace, pod.metadata?.name ?? ''),
        'strategic',
        patch,
        signal,
      );
    } catch (err) {
      throw refusalOf(
        err,
        `updating the remote pod ${entry.remoteNamespace}/${pod.metadata?.name ?? ''}`,
      );
    }
  }

  async deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const key = namespacedKey(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
    const entry = this.#entries.get(key);
    const ns =
      entry?.remoteNamespace ??
      remoteNamespace(this.#config, this.#nodeName, pod.metadata?.namespace ?? '');
    const name = pod.metadata?.name ?? '';
    if (entry) entry.deleting = true;
    const grace =
      pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    const uid = pod.metadata?.uid ?? '';
    const remote = this.#remoteOf(ns, name);
    if (remote === undefined || remote.metadata?.labels?.[ORIGIN_UID] === uid) {
      try {
        await this.#client.delete(
          podPath(ns, name),
          {
            gracePeriodSeconds: grace,
            // Only the remote pod of this local pod: never a newer one of the same name.
            ...(remote?.metadata?.uid ? { preconditions: { uid: remote.metadata.uid } } : {}),
          },
          signal,
        );
      } catch (err) {
        const code = errorCode(err);
        if (code !== 'NotFound' && code !== 'Conflict')
          throw refusalOf(err, `deleting the remote pod ${ns}/${name}`);
      }
    }
    // The local pod goes when the remote one has: its containers got their grace period there.
    const deadline = Date.now() + (grace + 10) * 1000;
    while (Date.now() < deadline && !signal.aborted) {
      const current = this.#remoteOf(ns, name);
      if (current?.metadata?.labels?.[ORIGIN_UID] !== uid) break;
      await sleep(200, signal);
    }
    if (this.#entries.get(key)?.pod.metadata?.uid === uid) {
      this.#entries.delete(key);
      this.#byUid.delete(uid);
    }
    for (const [remoteUid, e] of this.#byRemoteUid)
      if (e.pod.metadata?.uid === uid) this.#byRemoteUid.delete(remoteUid);
    await this.#reflector.release(uid, signal);
    // In the background, under the provider's lifetime rather than this call's: a deletion the
    // core gives up waiting for, or supersedes, still leaves no unused namespace behind.
    this.#namespaceMayBeUnused(ns);
  }

  /**
   * Deletes remote namespace `ns` when this node made it (its reflection and origin-node labels)
   * and nothing is left in it: no pod of this node runs there, no object reflected by this node
   * remains, and it holds no pod and no Service at all. Best effort: failures are logged.
   */
  async #removeNamespaceIfUnused(ns: string, signal: AbortSignal): Promise<void> {
    for (const e of this.#entries.values()) if (e.remoteNamespace === ns) return;
    if (this.#reflector.holds(ns) || this.#services.holds(ns)) return;
    const path = `/api/v1/namespaces/${encodeURIComponent(ns)}`;
    try {
      const current = await this.#client.get<V1Namespace>(path, signal);
      const labels = current?.metadata?.labels ?? {};
      if (labels[REFLECTED] !== 'true' || labels[ORIGIN_NODE] !== this.#nodeName) return;
      if (current?.metadata?.deletionTimestamp !== undefined) return;
      for (const kind of ['pods', 'services']) {
        const list = await this.#client.request<{ items?: unknown[] }>('GET', `${path}/${kind}`, {
          query: { limit: 1 },
          signal,
        });
        if ((list.items ?? []).length > 0) return;
      }
      // Only the version read above: never one made again meanwhile.
      await this.#client.delete(
        path,
        current?.metadata?.uid ? { preconditions: { uid: current.metadata.uid } } : undefined,
        signal,
      );
      this.#reflector.forgetNamespace(ns);
      this.#log.info({ namespace: ns }, 'unused remote namespace deleted');
    } catch (err) {
      if (errorCode(err) !== 'NotFound' && errorCode(err) !== 'Conflict')
        this.#log.warn(
          { namespace: ns, err: errorMessage(err) },
          'could not delete the remote namespace',
        );
    }
  }

  #remoteOf(namespace: string, name: string): V1Pod | undefined {
    return this.#informer.get(namespacedKey(namespace, name));
  }

  getPod(namespace: string, name: string, _signal: AbortSignal): Promise<V1Pod | undefined> {
    const entry = this.#entries.get(namespacedKey(namespace, name));
    if (!entry) return Promise.resolve(undefined);
    const remote = this.#remoteOf(entry.remoteNamespace, name);
    const pod = structuredClone(entry.pod);
    if (remote && remote.metadata?.labels?.[ORIGIN_UID] === entry.pod.metadata?.uid)
      pod.status = this.#localStatus(entry, remote);
    return Promise.resolve(pod);
  }

  async getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    return (await this.getPod(namespace, name, signal))?.status;
  }

  /**
   * Every remote pod of this node, as the local pod it stands for. Pods not known yet (after a
   * restart of the agent) are adopted by their origin UID label: nothing is created twice.
   */
  async getPods(signal: AbortSignal): Promise<V1Pod[]> {
    await Promise.race([
      this.#informer.whenSynced(),
      new Promise((_, reject) => {
        signal.addEventListener(
          'abort',
          () => reject(unavailable('the remote pods are not listed yet')),
          { once: true },
        );
      }),
    ]);
    const out: V1Pod[] = [];
    for (const remote of this.#informer.list()) {
      const origin = originOf(remote);
      if (!origin) continue;
      const key = namespacedKey(origin.namespace, origin.name);
      let entry = this.#entries.get(key);
      if (!entry || entry.pod.metadata?.uid !== origin.uid) {
        const template = structuredClone(remote);
        template.metadata = {
          name: remote.metadata?.name,
          namespace: remote.metadata?.namespace,
          labels: remote.metadata?.labels,
          annotations: remote.metadata?.annotations,
        };
        delete template.status;
        delete template.spec?.nodeName;
        entry = {
          pod: { metadata: { namespace: origin.namespace, name: origin.name, uid: origin.uid } },
          remoteNamespace: remote.metadata?.namespace ?? '',
          remote: template,
          restarts: new RestartCounter(),
          remoteUid: remote.metadata?.uid,
          deleting: false,
          recreating: false,
        };
        this.#entries.set(key, entry);
        this.#byUid.set(origin.uid, key);
      }
      out.push({ metadata: { ...entry.pod.metadata }, status: this.#localStatus(entry, remote) });
    }
    return out;
  }

  // --- PodNotifier, PodEventNotifier

  notifyPods(callback: (pod: V1Pod) => void): void {
    this.#notify = callback;
  }

  notifyPodEvents(callback: (pod: V1Pod, event: PodEvent) => void): void {
    this.#events = callback;
  }

  // --- PodVolumes: the content of config maps and secrets, reflected into the remote namespace

  async setPodVolumes(
    pod: V1Pod,
    volumes: readonly ResolvedVolume[],
    signal: AbortSignal,
  ): Promise<void> {
    const ns = remoteNamespace(this.#config, this.#nodeName, pod.metadata?.namespace ?? '');
    await this.#reflector.ensureNamespace(ns, signal);
    const skipped = await this.#reflector.reflect(pod, ns, volumes, signal);
    if (skipped.length > 0)
      this.#emit(pod, {
        type: 'Warning',
        reason: 'ReflectionSkipped',
        message: `not reflected into the remote cluster (ambiguous projected volume): ${skipped.join(', ')}`,
      });
  }

  // --- ServiceReflection: the Services of namespaces with offloaded pods, in the remote cluster

  async setServices(
    namespace: string,
    services: readonly V1Service[],
    signal: AbortSignal,
  ): Promise<void> {
    let ns: string;
    try {
      ns = remoteNamespace(this.#config, this.#nodeName, namespace);
    } catch {
      // A namespace without a remote one (namespaceMap): none of its pods is offloaded either.
      return;
    }
    try {
      await this.#services.set(ns, services, signal);
    } catch (err) {
      throw refusalOf(err, `reflecting the Services of ${namespace} into ${ns}`);
    }
    if (services.length === 0) this.#namespaceMayBeUnused(ns);
  }

  // --- NodeConfigurer, NodeProvider

  async configureNode(node: V1Node): Promise<void> {
    this.#nodeLabels = { ...(node.metadata?.labels ?? {}) };
    this.#nodeTaints = [...(node.spec?.taints ?? [])];
    node.metadata ??= {};
    node.metadata.labels = { ...node.metadata.labels, 'virtual-kubelet.io/provider': 'kubernetes' };
    this.#nodeLabels = { ...node.metadata.labels };
    try {
      const capacity = await this.#readCapacity(AbortSignal.timeout(10_000));
      node.status ??= {};
      node.status.capacity = { ...node.status.capacity, ...capacity };
      node.status.allocatable = { ...node.status.allocatable, ...capacity };
      this.#capacity = JSON.stringify(capacity);
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, 'could not read the remote capacity yet');
    }
    this.#node = structuredClone(node);
  }

  async ping(signal: AbortSignal): Promise<void> {
    let body = '';
    try {
      const res = await this.#client.stream('/readyz', {}, signal);
      for await (const chunk of res) body += String(chunk);
    } catch (err) {
      throw unavailable(`remote API server not ready: ${errorMessage(err)}`, err);
    }
    if (body.trim() !== 'ok')
      throw unavailable(`remote API server not ready: ${body.slice(0, 200)}`);
  }

  notifyNodeStatus(callback: (node: V1Node) => void): void {
    this.#tasks.add(this.#capacityLoop(callback, this.#stop.signal));
  }

  async #readCapacity(signal: AbortSignal): Promise<Record<string, string>> {
    const selector = Object.entries(this.#config.nodeSelector ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const nodes = await this.#client.request<{ items?: V1Node[] }>('GET', '/api/v1/nodes', {
      query: { labelSelector: selector || undefined },
      signal,
    });
    const pods = await this.#client.request<{ items?: V1Pod[] }>('GET', '/api/v1/pods', {
      query: { fieldSelector: 'status.phase!=Succeeded,status.phase!=Failed' },
      signal,
    });
    return freeCapacity(nodes.items ?? [], pods.items ?? [], this.#nodeName);
  }

  async #capacityLoop(callback: (node: V1Node) => void, signal: AbortSignal): Promise<void> {
    const period = (this.#config.capacityRefreshSeconds ?? 10) * 1000;
    while (!aborted(signal)) {
      try {
        const capacity = await this.#readCapacity(
          AbortSignal.any([signal, AbortSignal.timeout(period * 3)]),
        );
        const text = JSON.stringify(capacity);
        if (text !== this.#capacity) {
          this.#capacity = text;
          const node: V1Node = structuredClone(this.#node ?? {});
          node.status = { capacity, allocatable: capacity };
          callback(node);
        }
      } catch (err) {
        if (aborted(signal)) break;
        this.#log.debug({ err: errorMessage(err) }, 'could not read the remote capacity');
      }
      await sleep(period, signal);
    }
  }

  // --- Streams

  #endpoint(): RemoteEndpoint {
    const kc = this.#client.kubeConfig;
    return { server: this.#client.server, applyToHTTPSOptions: (o) => kc.applyToHTTPSOptions(o) };
  }

  #remoteName(namespace: string, pod: string): { ns: string; entry: Entry } {
    const entry = this.#entries.get(namespacedKey(namespace, pod));
    if (!entry) throw notFound(`pod ${namespace}/${pod} is not known`);
    return { ns: entry.remoteNamespace, entry };
  }

  async getContainerLogs(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Promise<Readable> {
    const { ns } = this.#remoteName(namespace, pod);
    try {
      return await this.#client.stream(
        podPath(ns, pod, 'log'),
        {
          container,
          follow: options.follow || undefined,
          previous: options.previous || undefined,
          timestamps: options.timestamps || undefined,
          tailLines: options.tailLines,
          limitBytes: options.limitBytes,
          sinceSeconds: options.sinceSeconds,
          sinceTime: options.sinceTime?.toISOString().replace(/\.\d+Z$/, 'Z'),
        },
        signal,
      );
    } catch (err) {
      throw refusalOf(err, `logs of the remote pod ${ns}/${pod}`);
    }
  }

  async runInContainer(
    namespace: string,
    pod: string,
    container: string,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number> {
    const { ns } = this.#remoteName(namespace, pod);
    return remoteCommand(
      this.#endpoint(),
      podPath(ns, pod, 'exec'),
      container,
      command,
      streams,
      signal,
    );
  }

  async attachToContainer(
    namespace: string,
    pod: string,
    container: string,
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<void> {
    const { ns } = this.#remoteName(namespace, pod);
    await remoteCommand(
      this.#endpoint(),
      podPath(ns, pod, 'attach'),
      container,
      undefined,
      streams,
      signal,
    );
  }

  async portForward(
    namespace: string,
    pod: string,
    port: number,
    stream: Duplex,
    signal: AbortSignal,
  ): Promise<void> {
    const { ns } = this.#remoteName(namespace, pod);
    await remotePortForward(
      this.#endpoint(),
      podPath(ns, pod, 'portforward'),
      port,
      stream,
      signal,
    );
  }

  // --- StatsProvider, ResourceMetricsProvider

  /** A remote node's Summary through its API server's node proxy; cached for STATS_CACHE_MS. */
  #remoteSummary(node: string, signal: AbortSignal): Promise<Summary | undefined> {
    const now = Date.now();
    const cached = this.#summaries.get(node);
    if (cached && now - cached.at < STATS_CACHE_MS) return cached.read;
    const read = this.#client
      .request<Summary>('GET', `/api/v1/nodes/${encodeURIComponent(node)}/proxy/stats/summary`, {
        signal: AbortSignal.any([signal, this.#stop.signal, AbortSignal.timeout(STATS_TIMEOUT_MS)]),
      })
      .then((summary) => {
        this.#summariesFailing.delete(node);
        return summary;
      })
      .catch((err: unknown) => {
        // Once per node until it answers again: a missing right (nodes/proxy) or an address the
        // remote API server will not proxy to (loopback) fails every scrape.
        if (!this.#summariesFailing.has(node))
          this.#log.warn(
            { node, err: errorMessage(err) },
            'could not read the Summary of a remote node: its offloaded pods have no stats',
          );
        this.#summariesFailing.add(node);
        // A failure is not kept: the next scrape asks again.
        if (this.#summaries.get(node)?.read === read) this.#summaries.delete(node);
        return undefined;
      });
    this.#summaries.set(node, { at: now, read });
    for (const [name, c] of this.#summaries)
      if (now - c.at >= STATS_CACHE_MS) this.#summaries.delete(name);
    return read;
  }

  /**
   * The offloaded pods' figures as the remote kubelets measure them, read from each remote node
   * that runs one (`nodes/<n>/proxy/stats/summary`, at most STATS_CONCURRENCY at once, each
   * within STATS_TIMEOUT_MS, reused for STATS_CACHE_MS) and named as the local pods. The node
   * part sums the offloaded pods. A remote node that does not answer leaves its pods out.
   */
  async getStatsSummary(signal: AbortSignal): Promise<Summary> {
    const nodes = new Set<string>();
    for (const entry of this.#entries.values()) {
      const remote = this.#remoteOf(entry.remoteNamespace, entry.pod.metadata?.name ?? '');
      if (remote?.metadata?.labels?.[ORIGIN_UID] !== entry.pod.metadata?.uid) continue;
      if (remote?.spec?.nodeName) nodes.add(remote.spec.nodeName);
    }
    const queue = [...nodes];
    const summaries: Summary[] = [];
    const worker = async (): Promise<void> => {
      for (let node = queue.shift(); node !== undefined; node = queue.shift()) {
        const summary = await this.#remoteSummary(node, signal);
        if (summary) summaries.push(summary);
      }
    };
    await Promise.all(Array.from({ length: Math.min(STATS_CONCURRENCY, queue.length) }, worker));
    signal.throwIfAborted();
    return mapSummaries({
      nodeName: this.#nodeName,
      startTime: formatRfc3339(new Date(this.#started)),
      now: formatRfc3339(new Date()),
      summaries,
      localOf: (ref) => {
        const remote = this.#remoteOf(ref.namespace, ref.name);
        if (remote?.metadata?.uid !== ref.uid) return undefined;
        const entry = this.#entryOf(remote);
        const meta = entry?.pod.metadata;
        if (!meta?.namespace || !meta.name || !meta.uid) return undefined;
        return { namespace: meta.namespace, name: meta.name, uid: meta.uid };
      },
    });
  }

  /** `/metrics/resource` from the same figures as `getStatsSummary`. */
  async getMetricsResource(signal: AbortSignal): Promise<string> {
    return metricsResourceOf(await this.getStatsSummary(signal), Date.now());
  }

  // --- Closable

  /** Stops the watch and the loops; remote pods keep running. */
  async close(_signal: AbortSignal): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([this.#tasks.settled(), ...this.#removals.values()]);
    if (this.#closeClient) this.#client.close();
  }
}

import type { V1ConfigMap, V1Pod, V1PodStatus, V1Secret } from '../wire.js';
import { isIP } from 'node:net';
import { abortOf, aborted, sleep } from '../abort.js';
import { errorCode, errorMessage, invalidInput, isRetryable, unavailable } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import type { EventRecorder } from '../kube/events.js';
import { Informer, type InformerHandlers } from '../kube/informer.js';
import type { ObjectCache, SharedInformer } from '../kube/shared-informer.js';
import { ServiceFeed } from './service-feed.js';
import { ServiceIndex } from './services.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import {
  hasPodAddresses,
  hasPodEvents,
  hasPodVolumes,
  hasPullCredentials,
  hasServiceReflection,
  isPodNotifier,
  type PodAddresses,
  type Provider,
  type RegistryCredential,
  type ResolvedVolume,
} from '../provider.js';
import { WorkQueue } from '../queue/index.js';
import { EnvResolutionError } from '../kubelet/env-error.js';
import { readsPodIP } from '../kubelet/downward-api.js';
import { resolvePodEnv, type EnvSource } from './env.js';
import { resolvePullCredentials } from './pull-credentials.js';
import { deletedPodStatus, lostPodStatus, PollNotifier } from './poll-notifier.js';
import { PodVolumeManager } from './volume-manager.js';
import { checkVolumeObjects } from './volumes.js';
import { VolumeResolutionError } from '../kubelet/volume-projection.js';
import { podKey } from '../kubelet/pod-key.js';
import {
  configErrorStatus,
  mountPendingStatus,
  isTerminal,
  mergeStatus,
  providerFailedStatus,
  sameStatus,
  statusFingerprint,
} from '../kubelet/pod-status.js';
import { mutableFingerprint, needsSync } from './status.js';
import {
  ATTR,
  endSpan,
  KeyedContexts,
  podAttributes,
  podKeyAttributes,
  rootContext,
  startSpan,
  withSpan,
  type Context,
} from '../tracing.js';
import { podSpecProblems } from '../kubelet/pod-validation.js';
import { rejectSpec, type SpecRejection } from './spec-check.js';

export interface PodControllerOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly provider: Provider;
  readonly events: EventRecorder;
  readonly logger?: Logger;
  /** The node's address: hostIP of its pods, and for the downward API. Default: 127.0.0.1. */
  readonly nodeIP?: string;
  /**
   * Workers of the sync queue (provider calls, and the API reads and writes of a pod's create:
   * its volumes' tokens and config). A pass waits on the API server and the provider, not the
   * CPU, so there are enough to keep up with 10 creates and 10 deletes a second while the API
   * server takes half a second a request. Default: 50.
   */
  readonly workers?: number;
  /**
   * Workers of the status queue (status writes to the API server, which are many and short).
   * Default: 50.
   */
  readonly statusWorkers?: number;
  /** Polling period for providers without `notifyPods`. Default: 5 000 ms. */
  readonly pollIntervalMs?: number;
  /** Every pod is synced again this often, to repair anything missed; 0 turns it off. Default: 60 000 ms. */
  readonly fullResyncPeriodMs?: number;
  /** Longest backoff between retries of one pod. Default: 300 000 ms. */
  readonly maxBackoffMs?: number;
  /**
   * Informers shared by many nodes of one process (see `NodeGroup`); their owner runs them.
   * Default: this controller watches its own pods and the cluster's Services.
   */
  readonly shared?: SharedPodSources;
  /**
   * For providers with `setPodVolumes`: how often each pod's volumes are resolved again so that
   * config map, secret and downward API changes reach the provider (jittered to 0.75-1.125
   * times this). Default: 40 000 ms.
   */
  readonly volumeRefreshPeriodMs?: number;
  /** For providers with `setPodVolumes`: pods whose volumes are refreshed at once. Default: 4. */
  readonly volumeWorkers?: number;
  /** Called after every handler pass, with its queue, duration and outcome (for metrics). */
  readonly onHandled?: (queue: string, seconds: number, ok: boolean) => void;
  /*
   * Deadlines of provider calls. Past its deadline a call's signal aborts, the worker that waited
   * for it moves on and the pod is retried with backoff; whatever the call returns late is
   * discarded (the next sync reads the provider again). A pod has at most one call in flight:
   * until a late call settles, the pod's other calls wait (with backoff), except a deletion,
   * which aborts it.
   */
  /** Deadline of `preparePod`, `createPod` and `setPodVolumes`. Default: 60 000 ms. */
  readonly createTimeoutMs?: number;
  /** Deadline of `updatePod`. Default: 60 000 ms. */
  readonly updateTimeoutMs?: number;
  /** Deadline of `getPod`, `getPodStatus` and `getPods`. Default: 10 000 ms. */
  readonly getTimeoutMs?: number;
  /**
   * Deadline of `deletePod`: the grace period it was given plus this (a grace-0 delete gets this
   * alone). Default: 30 000 ms.
   */
  readonly deleteTimeoutMarginMs?: number;
  /**
   * A graceful `deletePod` may take its whole grace period: a sync worker waits this long for it,
   * then leaves it running under its deadline (its end queues the pod again). Short, so that
   * deletes slower than this (a process that stops on SIGTERM, a remote call) do not hold the
   * workers that creates need under churn. Default: 100 ms.
   */
  readonly deleteWaitMs?: number;
  /**
   * How long a deletion waits for the provider call it aborted (a hung create, a graceful
   * delete given a shorter grace period) to let go before it retries with backoff. Default:
   * 1 000 ms.
   */
  readonly abortWaitMs?: number;
}

/** The longest delay `setTimeout` honours (2^31-1 ms); a deadline past it is no deadline. */
const MAX_TIMER_MS = 2_147_483_647;

/** How a provider call ended. */
type Outcome<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** A provider call in flight for one pod. */
interface ProviderCall {
  readonly method: string;
  /** Aborts the call's signal (its deadline, a deletion that supersedes it, or shutdown). */
  readonly controller: AbortController;
  /** Resolves once the call settled and its pod's record let go of it. */
  readonly settled: Promise<void>;
  /** Nobody waits for it any more: when it settles, its pod is synced again. */
  detached: boolean;
  /** Called with a detached call's outcome, just before its pod is queued again. */
  onLate?: (outcome: Outcome<unknown>) => void;
}

/** What nodes of one process can share: one watch of their pods, one index of Services. */
export interface SharedPodSources {
  readonly pods: SharedInformer<V1Pod>;
  readonly services: ServiceIndex;
}

/**
 * Where one pod stands between the API and the provider:
 * - `new`: known from the API, not handed to the provider (waiting for a config map or volume,
 *   or its create failed and is retried);
 * - `creating`: `createPod` (and `setPodVolumes`) in flight;
 * - `created`: handed to the provider by this agent;
 * - `adopted`: found in the provider at start, with the API's UID (never created again);
 * - `deleting`: `deletePod` called; waiting for the containers to stop or the grace period;
 * - `finalizing`: stopped; the status queue writes its final status and removes the API object;
 * - `removed`: the API object's final DELETE was sent; waiting for the informer to drop it;
 * - `gone`: the API object is gone (deleted, or replaced by a pod of the same name and another
 *   UID); the provider must drop it too, then the record is forgotten.
 */
type PodRecordPhase =
  'new' | 'creating' | 'created' | 'adopted' | 'deleting' | 'finalizing' | 'removed' | 'gone';

/** Everything the controller knows about one pod (one UID). */
interface PodRecord {
  readonly uid: string;
  /** `namespace/name`: the key of both queues. */
  readonly key: string;
  phase: PodRecordPhase;
  /** The pod as last seen; kept only once it left the API (`gone`), when no cache holds it. */
  lastSeen?: V1Pod;
  /** Fingerprint of the mutable fields the provider has (see `mutableFingerprint`). */
  fingerprint?: string;
  /** Grace period (s) of the last `deletePod` call. */
  deleteGraceSeconds?: number;
  /** When this agent first saw the pod's deletion (ms since the epoch): its grace period's start. */
  deletionSeenAtMs?: number;
  /**
   * Fingerprint of the status this agent last wrote. The informer cache lags behind our own
   * writes; comparing with it alone would send the same status again and again under load.
   */
  written?: string;
  /** The provider's latest status report (only the status: a whole pod would double memory). */
  reported?: V1PodStatus;
  /** `finalizing`: the status to write before the API object is removed. */
  finalStatus?: V1PodStatus;
  /** Why the spec can never run (see `podSpecProblems`), once reported: not reported again. */
  rejected?: string;
  /** The provider call in flight for this pod: never more than one. */
  call?: ProviderCall;
  /** `preparePod` was called: a `deletePod` must release what it set up, created or not. */
  prepared?: boolean;
  /** What `preparePod` gave: the pod's addresses for its environment and its status. */
  addresses?: PodAddresses;
  /**
   * The pod's image pull secrets are read and handed to the provider again at its next pass:
   * some could not be read or used when last read (as the kubelet reads them at every sync, so
   * one created later serves the next pull), or the pod was adopted after a restart of the agent.
   */
  pullCredentialsDue?: boolean;
}

/** The phases in which the provider has the pod (as far as the controller knows). */
const HANDED_OVER: ReadonlySet<PodRecordPhase> = new Set(['created', 'adopted']);
/** The phases a deletion goes through after `deleting`, or that end it. */
const AFTER_DELETING: ReadonlySet<PodRecordPhase> = new Set(['finalizing', 'removed', 'gone']);

/**
 * The phase as it is now. The informer's handlers change it while a provider call awaits, which
 * the compiler's narrowing of `record.phase` cannot know.
 */
const phaseOf = (record: PodRecord): PodRecordPhase => record.phase;

/** The record id of a pod: its UID (a provider may report a pod without one: then its key). */
const idOf = (pod: V1Pod): string => pod.metadata?.uid ?? `key:${podKey(pod)}`;

/**
 * Keeps the provider in step with the pods bound to the node, and the API in step with the
 * provider. Two keyed queues, one per direction of data flow:
 * - sync: API -> provider (create, update, graceful deletion, and removal from the provider
 *   once the API object is gone). One queue, so work on one pod name never runs twice at once.
 * - status: provider -> API (status writes through the `pods/status` subresource).
 * Handlers re-read the informer cache by key, so a burst of changes costs one pass. What the
 * controller knows of each pod is one record, by UID, whose phase says where the pod stands.
 */
export class PodController {
  readonly #o: PodControllerOptions;
  readonly #log: Logger;
  readonly #pods: ObjectCache<V1Pod>;
  readonly #services: ServiceIndex;
  /** The services index is this controller's to run (not shared with other nodes). */
  readonly #ownsServices: boolean;
  readonly #sync: WorkQueue;
  readonly #status: WorkQueue;
  /** One record per pod, by UID. */
  readonly #records = new Map<string, PodRecord>();
  /**
   * The UIDs of the records of each `namespace/name`. A name has more than one while a pod that
   * left the API (or was replaced) is still being removed from the provider.
   */
  readonly #byKey = new Map<string, Set<string>>();
  readonly #poller: PollNotifier | undefined;
  /** Volume content for providers with `setPodVolumes`; undefined for the others (no cost). */
  readonly #volumes: PodVolumeManager | undefined;
  /** For providers with `setServices`. */
  readonly #serviceFeed: ServiceFeed | undefined;
  readonly #nodeIP: string;
  readonly #specReject: SpecRejection = {
    event: (pod, reason, message) =>
      this.#o.events.record(podSubject(pod), 'Warning', reason, message),
    putStatus: (record, pod, status, signal) =>
      this.#putStatus(record as PodRecord, pod, status, signal),
  };
  readonly #timeouts: Readonly<
    Record<'create' | 'update' | 'get' | 'deleteMargin' | 'deleteWait' | 'abortWait', number>
  >;
  /** The controllers of the calls in flight, by the signal that aborts them (see `#link`). */
  readonly #linked = new WeakMap<AbortSignal, Set<AbortController>>();
  /** The trace context that queued each key, per queue (empty with tracing off). */
  readonly #syncContexts = new KeyedContexts();
  readonly #statusContexts = new KeyedContexts();
  #markReady: () => void = () => undefined;
  readonly #ready = new Promise<void>((resolve) => (this.#markReady = resolve));

  constructor(options: PodControllerOptions) {
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({ node: options.nodeName });
    this.#nodeIP = options.nodeIP ?? '127.0.0.1';
    const workers = options.workers ?? 50;
    if (!Number.isInteger(workers) || workers < 1)
      throw invalidInput(`PodController: workers must be an integer >= 1, got ${String(workers)}`);
    if (options.fullResyncPeriodMs !== undefined && options.fullResyncPeriodMs < 0)
      throw invalidInput(
        `PodController: fullResyncPeriodMs must be 0 (off) or more, got ${String(options.fullResyncPeriodMs)}`,
      );
    const timeout = (
      option: keyof PodControllerOptions,
      value: number | undefined,
      fallback: number,
    ): number => {
      if (value === undefined) return fallback;
      if (!(value >= 0))
        throw invalidInput(`PodController: ${option} must be a number >= 0, got ${String(value)}`);
      return value;
    };
    this.#timeouts = {
      create: timeout('createTimeoutMs', options.createTimeoutMs, 60_000),
      update: timeout('updateTimeoutMs', options.updateTimeoutMs, 60_000),
      get: timeout('getTimeoutMs', options.getTimeoutMs, 10_000),
      deleteMargin: timeout('deleteTimeoutMarginMs', options.deleteTimeoutMarginMs, 30_000),
      deleteWait: timeout('deleteWaitMs', options.deleteWaitMs, 100),
      abortWait: timeout('abortWaitMs', options.abortWaitMs, 1_000),
    };
    const queue = (
      name: 'sync' | 'status',
      untraced: (key: string, signal: AbortSignal) => Promise<void>,
      workers: number,
    ): WorkQueue => {
      const handler = this.#traced(name, untraced);
      return new WorkQueue({
        name,
        workers,
        handler: options.onHandled
          ? async (key, signal) => {
              const started = performance.now();
              let ok = false;
              try {
                await handler(key, signal);
                ok = true;
              } finally {
                options.onHandled?.(name, (performance.now() - started) / 1000, ok);
              }
            }
          : handler,
        maxBackoffMs: options.maxBackoffMs ?? 300_000,
        onError: (key, err, attempt, willRetry) => {
          this.#log.warn(
            { queue: name, pod: key, attempt, willRetry, err: errorMessage(err) },
            'pod handler failed',
          );
        },
      });
    };
    this.#sync = queue('sync', (key, signal) => this.#syncPod(key, signal), workers);
    this.#status = queue(
      'status',
      (key, signal) => this.#writeStatus(key, signal),
      options.statusWorkers ?? 50,
    );
    const handlers: InformerHandlers<V1Pod> = {
      onAdd: (pod) => {
        // A pod seen leaving (a relist that missed it) and back under the same UID never left.
        const record = this.#records.get(idOf(pod));
        if (record?.phase === 'gone') {
          record.phase = 'new';
          delete record.lastSeen;
        }
        this.#watched('ADDED', pod, () => this.#addSync(podKey(pod)));
        this.#serviceFeed?.touch(pod.metadata?.namespace ?? '');
      },
      onUpdate: (oldPod, newPod) => {
        const key = podKey(newPod);
        const replaced = oldPod.metadata?.uid !== newPod.metadata?.uid;
        if (replaced) this.#markGone(oldPod);
        const sync = replaced || needsSync(oldPod, newPod);
        // A status we did not write (or wrote from an older report) may need correcting.
        const status = this.#records.get(idOf(newPod))?.reported !== undefined;
        if (!sync && !status) return;
        this.#watched('MODIFIED', newPod, () => {
          if (sync) this.#addSync(key);
          if (status) this.#addStatus(key);
        });
      },
      onDelete: (pod) => {
        this.#markGone(pod);
        this.#watched('DELETED', pod, () => this.#addSync(podKey(pod)));
        this.#serviceFeed?.touch(pod.metadata?.namespace ?? '');
      },
    };
    this.#pods = options.shared
      ? options.shared.pods.view(options.nodeName, handlers)
      : new Informer<V1Pod>({
          client: options.client,
          path: '/api/v1/pods',
          fieldSelector: `spec.nodeName=${options.nodeName}`,
          logger: this.#log,
          handlers,
        });
    this.#ownsServices = !options.shared;
    this.#services = options.shared?.services ?? new ServiceIndex(options.client, this.#log);
    const provider = options.provider;
    this.#volumes = hasPodVolumes(provider)
      ? new PodVolumeManager({
          client: options.client,
          provider: this.#guarded(provider, {
            setPodVolumes: (pod, volumes, signal) =>
              this.#callFor(pod, 'setPodVolumes', this.#timeouts.create, signal, (s) =>
                provider.setPodVolumes(pod, volumes, s),
              ),
          }),
          events: options.events,
          logger: this.#log,
          getPod: (key) => this.#pods.get(key),
          ...(options.volumeRefreshPeriodMs === undefined
            ? {}
            : { refreshPeriodMs: options.volumeRefreshPeriodMs }),
          ...(options.volumeWorkers === undefined ? {} : { workers: options.volumeWorkers }),
          ...(options.onHandled ? { onHandled: options.onHandled } : {}),
        })
      : undefined;
    this.#serviceFeed = hasServiceReflection(provider)
      ? new ServiceFeed({
          provider,
          list: (ns) => this.#services.list(ns),
          onChange: (listener) => this.#services.onChange(listener),
          hasPods: (ns) => [...this.#pods.list()].some((p) => p.metadata?.namespace === ns),
          callTimeoutMs: this.#timeouts.update,
          maxBackoffMs: options.maxBackoffMs ?? 300_000,
          logger: this.#log,
        })
      : undefined;
    if (!isPodNotifier(provider)) {
      this.#poller = new PollNotifier({
        // A poll never adds a call to a pod that has one in flight, nor waits past a deadline.
        provider: this.#guarded(provider, {
          getPodStatus: (namespace, name, signal) => {
            const pod = this.#pods.get(`${namespace}/${name}`);
            const call = (s: AbortSignal): Promise<V1PodStatus | undefined> =>
              provider.getPodStatus(namespace, name, s);
            return pod
              ? this.#callFor(pod, 'getPodStatus', this.#timeouts.get, signal, call)
              : this.#call(undefined, 'getPodStatus', this.#timeouts.get, signal, call);
          },
        }),
        listPods: () => this.#pods.list(),
        intervalMs: options.pollIntervalMs ?? 5_000,
        logger: this.#log,
        handedOver: (pod) => HANDED_OVER.has(this.#records.get(idOf(pod))?.phase ?? 'new'),
      });
    }
  }

  /** The pod bound to this node as the API server has it, from the informer cache. */
  getPod(namespace: string, name: string): V1Pod | undefined {
    return this.#pods.get(`${namespace}/${name}`);
  }

  /** Every pod bound to this node, from the informer cache. */
  listPods(): V1Pod[] {
    return [...this.#pods.list()];
  }

  /** Resolves when the pod cache is filled and the provider reconciled against it. */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  /** Queue depths and counters, for metrics and tests (`volumes` only with `setPodVolumes`). */
  stats(): Record<'sync' | 'status', ReturnType<WorkQueue['stats']>> & {
    volumes?: ReturnType<WorkQueue['stats']>;
  } {
    const out = { sync: this.#sync.stats(), status: this.#status.stats() };
    return this.#volumes ? { ...out, volumes: this.#volumes.stats() } : out;
  }

  async run(signal: AbortSignal): Promise<void> {
    const onReport = (pod: V1Pod): void => {
      const key = podKey(pod);
      // Reports about pods the API no longer has are of no use (and would pile up).
      const api = this.#pods.get(key);
      if (api) this.#noteReport(api, pod);
    };
    const provider = this.#o.provider;
    if (hasPodEvents(provider))
      provider.notifyPodEvents((pod, e) => {
        this.#o.events.record(podSubject(pod), e.type, e.reason, e.message);
      });
    if (isPodNotifier(provider)) provider.notifyPods(onReport);
    else this.#poller?.notifyPods(onReport);

    const informers = Promise.all([
      this.#pods.run(signal),
      this.#ownsServices ? this.#services.run(signal) : Promise.resolve(),
    ]);
    await Promise.race([
      Promise.all([this.#pods.whenSynced(), this.#services.whenSynced()]),
      abortOf(signal),
    ]);
    if (aborted(signal)) {
      await informers;
      return;
    }
    await this.#adoptProviderPods(signal);
    this.#markReady();
    this.#log.info({ pods: this.#pods.size }, 'pod controller ready');
    await Promise.all([
      informers,
      this.#sync.run(signal),
      this.#status.run(signal),
      this.#poller?.run(signal),
      this.#volumes?.run(signal),
      this.#serviceFeed?.run(signal),
      this.#resyncLoop(signal),
    ]);
  }

  /**
   * Runs `queue` (which adds the pod's key to the queues) under a span for the watch event that
   * changed the pod: the root of the trace its handlers continue.
   */
  #watched(event: string, pod: V1Pod, queue: () => void): void {
    const span = startSpan(`pod ${event}`, {
      parent: rootContext,
      attributes: () => ({
        [ATTR.node]: this.#o.nodeName,
        [ATTR.watchEvent]: event,
        ...podAttributes(pod.metadata?.namespace, pod.metadata?.name, pod.metadata?.uid),
      }),
    });
    withSpan(span, queue);
    span.end();
  }

  /** Queues `key` for a sync, keeping the active trace context for the handler. */
  #addSync(key: string): void {
    this.#syncContexts.remember(key);
    this.#sync.add(key);
  }

  #addSyncAfter(key: string, delayMs: number): void {
    this.#syncContexts.remember(key);
    this.#sync.addAfter(key, delayMs);
  }

  /** Queues `key` for a status write, keeping the active trace context for the handler. */
  #addStatus(key: string): void {
    this.#statusContexts.remember(key);
    this.#status.add(key);
  }

  /**
   * `handler` under a span per pass (`pod sync`, `pod status`), the child of the context that
   * queued the key; a failed pass gives that context back, so its retry joins the same trace.
   */
  #traced(
    queue: 'sync' | 'status',
    handler: (key: string, signal: AbortSignal) => Promise<void>,
  ): (key: string, signal: AbortSignal) => Promise<void> {
    const contexts = queue === 'sync' ? this.#syncContexts : this.#statusContexts;
    return async (key, signal) => {
      const parent: Context | undefined = contexts.take(key);
      const span = startSpan(`pod ${queue}`, {
        parent: parent ?? rootContext,
        attributes: () => ({
          [ATTR.node]: this.#o.nodeName,
          [ATTR.queue]: queue,
          ...podKeyAttributes(key, this.#pods.get(key)?.metadata?.uid),
        }),
      });
      try {
        await withSpan(span, () => handler(key, signal));
      } catch (err) {
        if (parent) contexts.restore(key, parent);
        endSpan(span, err);
        throw err;
      }
      span.end();
    };
  }

  /** The record of `pod`, made (phase `new`) if it has none. */
  #recordOf(pod: V1Pod): PodRecord {
    const uid = idOf(pod);
    let record = this.#records.get(uid);
    if (!record) {
      record = { uid, key: podKey(pod), phase: 'new' };
      this.#records.set(uid, record);
      let uids = this.#byKey.get(record.key);
      if (!uids) this.#byKey.set(record.key, (uids = new Set()));
      uids.add(uid);
    }
    return record;
  }

  #forget(record: PodRecord): void {
    if (this.#records.get(record.uid) !== record) return;
    this.#records.delete(record.uid);
    const uids = this.#byKey.get(record.key);
    uids?.delete(record.uid);
    if (uids?.size === 0) this.#byKey.delete(record.key);
  }

  /**
   * Starts a provider call for `record` (undefined: a call about no one pod) under a deadline of
   * `timeoutMs`; its signal also aborts with `signal`. Refused (Unavailable, retried) while the
   * record has a call in flight.
   */
  #start<T>(
    record: PodRecord | undefined,
    method: string,
    timeoutMs: number,
    signal: AbortSignal,
    fn: (signal: AbortSignal) => Promise<T>,
  ): { call: ProviderCall; outcome: Promise<Outcome<T>> } {
    if (record?.call)
      throw unavailable(
        `pod ${record.key}: the provider's ${record.call.method} call is still in flight`,
      );
    signal.throwIfAborted();
    const controller = new AbortController();
    const unlink = this.#link(signal, controller);
    const span = startSpan(`provider ${method}`, {
      attributes: () => ({
        [ATTR.node]: this.#o.nodeName,
        [ATTR.providerMethod]: method,
        ...(record ? podKeyAttributes(record.key, record.uid) : {}),
      }),
    });
    const timer =
      timeoutMs <= MAX_TIMER_MS
        ? setTimeout(() => {
            span.addEvent('deadline exceeded', { 'virtual_kubelet.deadline_ms': timeoutMs });
            controller.abort(
              unavailable(
                `the provider's ${method} call did not end within ${String(timeoutMs)} ms`,
              ),
            );
          }, timeoutMs)
        : undefined;
    let settle = (): void => undefined;
    const call: ProviderCall = {
      method,
      controller,
      settled: new Promise<void>((resolve) => (settle = resolve)),
      detached: false,
    };
    if (record) record.call = call;
    let result: Promise<T>;
    try {
      result = withSpan(span, () => fn(controller.signal));
    } catch (err) {
      result = Promise.reject(err instanceof Error ? err : new Error(errorMessage(err)));
    }
    const outcome = result
      .then(
        (value): Outcome<T> => ({ ok: true, value }),
        (error: unknown): Outcome<T> => ({ ok: false, error }),
      )
      .then((done) => {
        clearTimeout(timer);
        unlink();
        if (call.detached && span.isRecording())
          span.setAttribute('virtual_kubelet.provider.detached', true);
        endSpan(span, done.ok ? undefined : done.error);
        if (record && record.call === call) delete record.call;
        settle();
        if (call.detached) {
          call.onLate?.(done);
          // Level-triggered: what the call did (or did not do) is read again by the next sync.
          if (record && !aborted(signal)) this.#addSync(record.key);
        }
        return done;
      });
    return { call, outcome };
  }

  /**
   * A provider call under a deadline: its result, or its error. Past the deadline (or when
   * `signal` fires) it throws the abort's reason at once and leaves the call to settle alone.
   */
  async #call<T>(
    record: PodRecord | undefined,
    method: string,
    timeoutMs: number,
    signal: AbortSignal,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const { call, outcome } = this.#start(record, method, timeoutMs, signal, fn);
    const done = await Promise.race([outcome, abortOf(call.controller.signal)]);
    const reason: unknown = call.controller.signal.reason;
    if (!done) {
      call.detached = true;
      throw reason;
    }
    if (!done.ok) throw call.controller.signal.aborted ? reason : done.error;
    return done.value;
  }

  /**
   * Makes `signal` abort `controller` too, until the returned function is called. One listener
   * per signal, however many calls are in flight.
   */
  #link(signal: AbortSignal, controller: AbortController): () => void {
    let linked = this.#linked.get(signal);
    if (!linked) {
      const set = (linked = new Set());
      this.#linked.set(signal, set);
      signal.addEventListener(
        'abort',
        () => {
          for (const c of set) c.abort(signal.reason);
        },
        { once: true },
      );
    }
    const set = linked;
    set.add(controller);
    return () => set.delete(controller);
  }

  /** {@link #call} on behalf of the record of the API pod `pod`. */
  #callFor<T>(
    pod: V1Pod,
    method: string,
    timeoutMs: number,
    signal: AbortSignal,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    return this.#call(this.#records.get(idOf(pod)), method, timeoutMs, signal, fn);
  }

  /**
   * Starts `deletePod` (or another long call) and waits for it at most `deleteWaitMs`. Undefined
   * when it is still running: it goes on under its deadline, and its end queues the pod again.
   */
  async #startLong<T>(
    record: PodRecord,
    method: string,
    timeoutMs: number,
    signal: AbortSignal,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<{ call: ProviderCall; outcome: Outcome<T> | undefined }> {
    const { call, outcome } = this.#start(record, method, timeoutMs, signal, fn);
    const done = await Promise.race([
      outcome,
      sleep(this.#timeouts.deleteWait, call.controller.signal).then(() => undefined),
    ]);
    if (!done) call.detached = true;
    return { call, outcome: done };
  }

  /** The deadline of a `deletePod` of `pod`: its grace period plus the margin. */
  #deleteTimeoutMs(pod: V1Pod): number {
    return graceOf(pod) * 1000 + this.#timeouts.deleteMargin;
  }

  /**
   * Aborts the call in flight for `record`, if any, and waits (at most `abortWaitMs`) for it
   * to let go; throws Unavailable (retried) when it does not. Its result is discarded.
   */
  async #supersede(record: PodRecord, signal: AbortSignal): Promise<void> {
    const call = record.call;
    if (!call) return;
    call.detached = true;
    call.controller.abort(unavailable(`the provider's ${call.method} call was superseded`));
    await Promise.race([call.settled, sleep(this.#timeouts.abortWait, signal)]);
    if (record.call)
      throw unavailable(
        `pod ${record.key}: the provider has not yet ended its ${call.method} call`,
      );
  }

  /** `provider` with `overrides` in place of its methods of those names (the rest bound to it). */
  #guarded<P extends object>(provider: P, overrides: Partial<P>): P {
    return new Proxy(provider, {
      get(target, prop) {
        if (Object.hasOwn(overrides, prop))
          return (overrides as Record<PropertyKey, unknown>)[prop];
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function'
          ? (value as (...a: unknown[]) => unknown).bind(target)
          : value;
      },
    });
  }

  /** `pod` left the API (or was replaced): the next sync of its key takes it out of the provider. */
  #markGone(pod: V1Pod): void {
    const record = this.#recordOf(pod);
    record.phase = 'gone';
    record.lastSeen = pod;
    delete record.reported;
    delete record.finalStatus;
  }

  /**
   * Keeps the provider's latest report about the API pod `api` and queues its status write. A
   * report about an older pod of the same name goes to that pod's record, where nothing reads it.
   */
  #noteReport(api: V1Pod, pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    const record =
      uid === undefined || uid === api.metadata?.uid ? this.#recordOf(api) : this.#records.get(uid);
    if (!record || record.phase === 'gone') return;
    if (pod.status) record.reported = pod.status;
    this.#addStatus(record.key);
  }

  /**
   * After a restart: pods the provider already runs are adopted (never created twice); those
   * the API no longer has are removed from the provider. Retried until the provider answers.
   */
  async #adoptProviderPods(signal: AbortSignal): Promise<void> {
    for (let attempt = 1; !aborted(signal); attempt++) {
      let pods: V1Pod[];
      try {
        pods = await this.#call(undefined, 'getPods', this.#timeouts.get, signal, (s) =>
          this.#o.provider.getPods(s),
        );
      } catch (err) {
        const wait = Math.min(30_000, 500 * 2 ** attempt);
        this.#log.warn(
          { err: errorMessage(err), retryInMs: wait },
          'could not list the provider pods at start',
        );
        await sleep(wait, signal);
        continue;
      }
      for (const pod of pods) {
        const key = podKey(pod);
        const api = this.#pods.get(key);
        if (api && api.metadata?.uid === pod.metadata?.uid) {
          const record = this.#recordOf(api);
          if (record.phase === 'new') record.phase = 'adopted';
          record.fingerprint = mutableFingerprint(pod);
          this.#volumes?.adopt(api);
          record.pullCredentialsDue = true;
          // What changed while the agent was away (a container that ended, say) may have been
          // reported before the pod cache was filled, when such reports are dropped.
          if (pod.status) this.#noteReport(api, pod);
          continue;
        }
        if (!api) {
          this.#markGone(pod);
          this.#addSync(key);
        }
      }
      return;
    }
  }

  async #resyncLoop(signal: AbortSignal): Promise<void> {
    const period = this.#o.fullResyncPeriodMs ?? 60_000;
    if (period === 0) return;
    while (!aborted(signal)) {
      await sleep(period, signal);
      for (const pod of this.#pods.list()) this.#addSync(podKey(pod));
    }
  }

  async #syncPod(key: string, signal: AbortSignal): Promise<void> {
    const pod = this.#pods.get(key);
    for (const uid of [...(this.#byKey.get(key) ?? [])]) {
      const record = this.#records.get(uid);
      if (record?.phase === 'gone' && record.uid !== pod?.metadata?.uid)
        await this.#removeFromProvider(record, signal);
    }
    if (!pod) return;
    const record = this.#recordOf(pod);
    if (pod.metadata?.deletionTimestamp) {
      await this.#deletePod(record, pod, signal);
      return;
    }
    if (isTerminal(pod.status)) return;
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    const provider = this.#o.provider;
    const running = await this.#call(record, 'getPod', this.#timeouts.get, signal, (s) =>
      provider.getPod(namespace, name, s),
    );
    if (running?.metadata?.uid && running.metadata.uid !== pod.metadata?.uid) {
      // A pod of the same name from before: remove it first, then create this one.
      const { outcome } = await this.#startLong(
        record,
        'deletePod',
        this.#deleteTimeoutMs(running),
        signal,
        (s) => provider.deletePod(running, s),
      );
      if (outcome && !outcome.ok) ignoreNotFound(outcome.error);
      throw new Error('an older pod of the same name is still being removed from the provider');
    }
    if (record.phase === 'gone') return; // deleted meanwhile: the next pass removes it
    if (!running) {
      if (HANDED_OVER.has(record.phase) || pod.status?.phase === 'Running') {
        // It ran, and the provider no longer has it: never create a pod twice.
        await this.#putStatus(record, pod, lostPodStatus(pod, new Date()), signal);
        this.#o.events.record(
          podSubject(pod),
          'Warning',
          'ProviderPodNotFound',
          'the provider lost the pod; it is marked Failed',
        );
        return;
      }
      await this.#createPod(record, pod, signal);
      return;
    }
    if (record.phase === 'new') {
      // The provider has it already (a create that went through although it failed to answer).
      record.phase = 'created';
      record.fingerprint = mutableFingerprint(running);
    }
    const fingerprint = mutableFingerprint(pod);
    if (fingerprint === record.fingerprint) {
      if (record.pullCredentialsDue) await this.#refreshPullCredentials(record, pod, signal);
      return;
    }
    const resolved = await this.#resolve(record, pod, signal, false);
    const pullCredentials = await this.#pullCredentials(record, pod, signal);
    try {
      if (pullCredentials && provider.setPodPullCredentials) {
        // An image may have changed: its pull uses the Secrets as they are now.
        const setPodPullCredentials = provider.setPodPullCredentials.bind(provider);
        await this.#call(record, 'setPodPullCredentials', this.#timeouts.update, signal, (s) =>
          setPodPullCredentials(resolved, pullCredentials, s),
        );
      }
      await this.#call(record, 'updatePod', this.#timeouts.update, signal, (s) =>
        provider.updatePod(resolved, s),
      );
    } catch (err) {
      this.#o.events.record(podSubject(pod), 'Warning', 'ProviderUpdateFailed', errorMessage(err));
      // Unlike the Go virtual-kubelet, a failed update never turns a running pod back to Pending.
      if (isRetryable(err)) throw err;
      return;
    }
    record.fingerprint = fingerprint;
    // Labels and annotations may feed downward API volumes.
    this.#volumes?.refreshSoon(key);
  }

  /** Hands a pod the provider does not have to it: `new` -> `creating` -> `created`. */
  async #createPod(record: PodRecord, pod: V1Pod, signal: AbortSignal): Promise<void> {
    const provider = this.#o.provider;
    const invalid = podSpecProblems(pod);
    if (invalid !== undefined) return rejectSpec(this.#specReject, record, pod, invalid, signal);
    if (!(await this.#prepare(record, pod, signal))) return;
    const resolved = await this.#resolve(record, pod, signal, true);
    const volumes = await this.#resolveVolumes(record, pod, signal);
    const pullCredentials = await this.#pullCredentials(record, pod, signal);
    if (record.phase === 'gone') return; // deleted meanwhile: the next pass removes it
    record.phase = 'creating';
    try {
      // Volumes first: the provider may need their content to start the containers.
      const create = this.#timeouts.create;
      if (volumes && provider.setPodVolumes) {
        const setPodVolumes = provider.setPodVolumes.bind(provider);
        await this.#call(record, 'setPodVolumes', create, signal, (s) =>
          setPodVolumes(resolved, volumes, s),
        );
      }
      if (pullCredentials && provider.setPodPullCredentials) {
        const setPodPullCredentials = provider.setPodPullCredentials.bind(provider);
        await this.#call(record, 'setPodPullCredentials', create, signal, (s) =>
          setPodPullCredentials(resolved, pullCredentials, s),
        );
      }
      await this.#call(record, 'createPod', create, signal, (s) => provider.createPod(resolved, s));
    } catch (err) {
      if (aborted(signal)) throw err;
      if (errorCode(err) !== 'AlreadyExists') {
        if (phaseOf(record) === 'creating') record.phase = 'new';
        await this.#createFailed(record, pod, err, signal);
        return;
      }
    }
    record.fingerprint = mutableFingerprint(pod);
    if (phaseOf(record) !== 'creating') {
      // Deleted (or replaced) while the provider was creating it: the informer marked the
      // record gone, and the next pass of its key takes it back out of the provider.
      this.#addSync(record.key);
      return;
    }
    record.phase = 'created';
    if (volumes) this.#volumes?.track(pod, volumes);
    this.#o.events.record(
      podSubject(pod),
      'Normal',
      'ProviderCreateSuccess',
      `pod handed to the provider on node ${this.#o.nodeName}`,
    );
  }

  /**
   * The pod with its environment resolved. When that fails for a pod not yet created, its
   * status says why (CreateContainerConfigError); a running pod's status is left alone.
   */
  async #resolve(
    record: PodRecord,
    pod: V1Pod,
    signal: AbortSignal,
    creating: boolean,
  ): Promise<V1Pod> {
    try {
      // Without addresses from preparePod, the pod status's (a pod created before) count.
      const podIPs = record.addresses?.podIPs ?? (pod.spec?.hostNetwork ? [this.#nodeIP] : []);
      const { pod: resolved, events } = await resolvePodEnv(pod, this.#envSource(signal), {
        hostIP: record.addresses?.hostIP ?? this.#nodeIP,
        podIPs,
        nodeName: this.#o.nodeName,
      });
      for (const e of events) this.#o.events.record(podSubject(pod), e.type, e.reason, e.message);
      return resolved;
    } catch (err) {
      if (err instanceof EnvResolutionError) {
        this.#o.events.record(podSubject(pod), 'Warning', err.reason, err.message);
        if (creating) {
          const status = err.retryable
            ? configErrorStatus(pod, err.message)
            : providerFailedStatus(pod, err.message, true);
          await this.#putStatus(record, pod, status, signal).catch(ignoreStale);
        }
      }
      throw err;
    }
  }

  /**
   * Gives the pod its addresses before its environment is resolved: `preparePod` of a provider
   * with `podAddresses`, as the kubelet makes the sandbox first. Another provider has no address
   * for a pod before it starts: a pod whose environment reads its own IP then fails (an empty
   * value would be a silent misconfiguration), unless it uses the host's network, whose address
   * is the node's. False when the pod failed for good (its status says why).
   */
  async #prepare(record: PodRecord, pod: V1Pod, signal: AbortSignal): Promise<boolean> {
    const provider = this.#o.provider;
    if (!hasPodAddresses(provider)) {
      if (pod.spec?.hostNetwork || pod.status?.podIP || !readsPodIP(pod)) return true;
      const message =
        'the provider cannot give a pod its address before it starts (it has no preparePod), ' +
        "and the pod's environment reads status.podIP";
      this.#o.events.record(podSubject(pod), 'Warning', 'PodAddressUnavailable', message);
      const status = {
        ...providerFailedStatus(pod, message, true),
        reason: 'PodAddressUnavailable',
      };
      await this.#putStatus(record, pod, status, signal).catch(ignoreStale);
      return false;
    }
    record.prepared = true;
    try {
      const got = await this.#call(record, 'preparePod', this.#timeouts.create, signal, (s) =>
        provider.preparePod(pod, s),
      );
      if (got.podIPs.length === 0 || !got.podIPs.every((ip) => isIP(ip) !== 0))
        throw invalidInput(`preparePod gave no valid pod IPs: ${JSON.stringify(got.podIPs)}`);
      const hostIP = got.hostIP && isIP(got.hostIP) !== 0 ? got.hostIP : this.#nodeIP;
      record.addresses = { podIPs: [...got.podIPs], hostIP };
      return true;
    } catch (err) {
      if (aborted(signal)) throw err;
      await this.#createFailed(record, pod, err, signal);
      return false;
    }
  }

  /**
   * The content of the pod's volumes for a provider with `setPodVolumes` (undefined for other
   * providers, or a pod without such volumes); for other providers, only a check that the config
   * maps and secrets the volumes name exist. When a volume cannot be resolved the pod is not
   * created: a FailedMount Event says why, as a kubelet's does, and the pod stays Pending
   * (containers waiting, ContainerCreating) while the sync queue retries with backoff; a volume
   * that can never be resolved fails the pod.
   */
  async #resolveVolumes(
    record: PodRecord,
    pod: V1Pod,
    signal: AbortSignal,
  ): Promise<ResolvedVolume[] | undefined> {
    try {
      if (this.#volumes) {
        if (!PodVolumeManager.needed(pod)) return undefined;
        return await this.#volumes.resolve(pod, signal);
      }
      await checkVolumeObjects(pod, this.#envSource(signal));
      return undefined;
    } catch (err) {
      if (err instanceof VolumeResolutionError) {
        this.#o.events.record(podSubject(pod), 'Warning', 'FailedMount', err.message);
        const status = err.retryable
          ? mountPendingStatus(pod, err.message)
          : providerFailedStatus(pod, err.message, true);
        await this.#putStatus(record, pod, status, signal).catch(ignoreStale);
      }
      throw err;
    }
  }

  /**
   * The credentials of the pod's image pull secrets for a provider with
   * `setPodPullCredentials` (undefined for the others: no Secret is read). A Secret that cannot
   * be read or used is left out with a FailedToRetrieveImagePullSecret Warning Event, as the
   * kubelet does; the pod is created all the same.
   */
  async #pullCredentials(
    record: PodRecord,
    pod: V1Pod,
    signal: AbortSignal,
  ): Promise<RegistryCredential[] | undefined> {
    if (!hasPullCredentials(this.#o.provider)) return undefined;
    const { credentials, events } = await resolvePullCredentials(
      pod,
      this.#envSource(signal),
      signal,
    );
    for (const e of events) this.#o.events.record(podSubject(pod), e.type, e.reason, e.message);
    record.pullCredentialsDue = events.length > 0;
    return credentials;
  }

  /** Reads the pull secrets of a pod the provider runs again, and hands them over. */
  async #refreshPullCredentials(record: PodRecord, pod: V1Pod, signal: AbortSignal): Promise<void> {
    const credentials = await this.#pullCredentials(record, pod, signal);
    const provider = this.#o.provider;
    if (!credentials || !provider.setPodPullCredentials) return;
    const setPodPullCredentials = provider.setPodPullCredentials.bind(provider);
    await this.#call(record, 'setPodPullCredentials', this.#timeouts.update, signal, (s) =>
      setPodPullCredentials(pod, credentials, s),
    );
  }

  #envSource(signal: AbortSignal): EnvSource {
    const { client } = this.#o;
    return {
      getConfigMap: (ns, name) =>
        client.get<V1ConfigMap>(`/api/v1/namespaces/${ns}/configmaps/${name}`, signal),
      getSecret: (ns, name) =>
        client.get<V1Secret>(`/api/v1/namespaces/${ns}/secrets/${name}`, signal),
      listServices: (ns) => Promise.resolve(this.#services.list(ns)),
    };
  }

  async #createFailed(
    record: PodRecord,
    pod: V1Pod,
    err: unknown,
    signal: AbortSignal,
  ): Promise<void> {
    const retry = isRetryable(err) && pod.spec?.restartPolicy !== 'Never';
    const message = `the provider could not create the pod: ${errorMessage(err)}`;
    this.#o.events.record(podSubject(pod), 'Warning', 'ProviderCreateFailed', message);
    await this.#putStatus(record, pod, providerFailedStatus(pod, message, !retry), signal).catch(
      ignoreStale,
    );
    if (retry) throw err;
  }

  /**
   * Graceful deletion: ask the provider to stop the pod (`deleting`), then, once it stopped or
   * the grace period is over, hand the final status write and the removal of the API object
   * (grace 0, UID precondition) to the status queue (`finalizing`). A shorter grace period
   * given later aborts the call in flight and is passed on; a worker never waits out a grace
   * period (see `deleteWaitMs`).
   */
  async #deletePod(record: PodRecord, pod: V1Pod, signal: AbortSignal): Promise<void> {
    const provider = this.#o.provider;
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    const grace = graceOf(pod);
    // The deadline counts from when this agent saw the deletion, not the API server's clock.
    record.deletionSeenAtMs ??= Date.now();
    const deadline = record.deletionSeenAtMs + grace * 1000;
    const later = (): void =>
      this.#addSyncAfter(
        record.key,
        Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now()) + 50),
      );
    if (record.deleteGraceSeconds === undefined || grace < record.deleteGraceSeconds) {
      // Whatever is in flight (a hung create, a graceful delete) gives way to the deletion.
      await this.#supersede(record, signal);
      record.deleteGraceSeconds = grace;
      if (!AFTER_DELETING.has(record.phase)) record.phase = 'deleting';
      const { call, outcome } = await this.#startLong(
        record,
        'deletePod',
        this.#deleteTimeoutMs(pod),
        signal,
        (s) => provider.deletePod(pod, s),
      );
      if (!outcome) {
        call.onLate = (late) => {
          if (late.ok || call.controller.signal.aborted) return;
          // Asked again by the pass this end queues (unless the deletion moved on meanwhile).
          if (record.deleteGraceSeconds === grace) delete record.deleteGraceSeconds;
          this.#deleteFailed(pod, late.error);
        };
        later();
        return;
      }
      if (!outcome.ok) {
        if (aborted(signal)) throw outcome.error;
        if (errorCode(outcome.error) !== 'NotFound' && isRetryable(outcome.error)) {
          delete record.deleteGraceSeconds;
          throw outcome.error;
        }
        this.#deleteFailed(pod, outcome.error);
      }
    }
    if (record.call) {
      // The delete is still in flight: its end, or the grace period's, brings the pod back.
      later();
      return;
    }
    let status: V1PodStatus | undefined;
    let done = false;
    try {
      status = await this.#call(record, 'getPodStatus', this.#timeouts.get, signal, (s) =>
        provider.getPodStatus(namespace, name, s),
      );
      done = !status || isTerminal(status) || allContainersStopped(status);
    } catch (err) {
      if (aborted(signal)) throw err;
      if (errorCode(err) === 'NotFound') done = true;
      else
        this.#log.warn(
          { pod: record.key, err: errorMessage(err) },
          'could not read the status of a pod being deleted',
        );
    }
    if (!done && Date.now() < deadline) {
      // Looked at again when the provider reports the end, or at the deadline at the latest.
      later();
      return;
    }
    if (record.phase === 'removed' || record.phase === 'gone') return;
    // The final status and the removal are API writes: the status queue, with more workers,
    // does them, so a mass deletion is not held to the sync workers' round trips.
    record.phase = 'finalizing';
    const final = status ?? record.reported;
    if (final) record.finalStatus = final;
    else delete record.finalStatus;
    this.#addStatus(record.key);
  }

  /** A pod the provider cannot stop still leaves the API when its grace period is over. */
  #deleteFailed(pod: V1Pod, err: unknown): void {
    if (errorCode(err) === 'NotFound') return;
    this.#o.events.record(podSubject(pod), 'Warning', 'ProviderDeleteFailed', errorMessage(err));
  }

  /** Writes the final status of a stopped, deleted pod and removes its API object: `removed`. */
  async #finalize(record: PodRecord, pod: V1Pod, signal: AbortSignal): Promise<void> {
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    const final = record.finalStatus;
    const last = final && isTerminal(final) ? final : deletedPodStatus(pod, new Date());
    await this.#putStatus(record, pod, last, signal).catch(ignoreStale);
    try {
      await this.#o.client.delete(
        `/api/v1/namespaces/${namespace}/pods/${name}`,
        {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          gracePeriodSeconds: 0,
          preconditions: { uid: pod.metadata?.uid },
        },
        signal,
      );
    } catch (err) {
      if (errorCode(err) !== 'NotFound' && errorCode(err) !== 'Conflict') throw err;
    }
    if (record.phase === 'finalizing') record.phase = 'removed';
  }

  /**
   * The API object of `record` is gone: make sure the provider has dropped it too (with grace
   * 0). A call still
   * in flight for it (a graceful delete whose grace period is over, a forced delete's
   * predecessor) is aborted first.
   */
  async #removeFromProvider(record: PodRecord, signal: AbortSignal): Promise<void> {
    const seen = record.lastSeen ?? { metadata: { uid: record.uid } };
    // Nothing waits for a pod whose API object is gone (force-deleted, or its grace period
    // over): it stops at once, whatever grace period it was last seen with.
    const pod: V1Pod = { ...seen, metadata: { ...seen.metadata, deletionGracePeriodSeconds: 0 } };
    await this.#supersede(record, signal);
    const provider = this.#o.provider;
    const running = await this.#call(record, 'getPod', this.#timeouts.get, signal, (s) =>
      provider.getPod(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '', s),
    );
    const uid = pod.metadata?.uid;
    const same = running && (!running.metadata?.uid || running.metadata.uid === uid);
    // A pod prepared but never created still holds what preparePod set up.
    const unreleased = !running && record.prepared && record.deleteGraceSeconds === undefined;
    if ((same && !isTerminal(running.status)) || unreleased) {
      const { outcome } = await this.#startLong(
        record,
        'deletePod',
        this.#deleteTimeoutMs(pod),
        signal,
        (s) => provider.deletePod(pod, s),
      );
      // Still stopping: the call's end queues the key again, and this runs once more.
      if (!outcome) return;
      if (!outcome.ok) ignoreNotFound(outcome.error);
    }
    this.#volumes?.forget(record.key, uid);
    // Back in the API meanwhile (see onAdd): the record lives on.
    if (record.phase === 'gone') this.#forget(record);
  }

  /** Writes the provider's latest report for `key` through the status subresource. */
  async #writeStatus(key: string, signal: AbortSignal): Promise<void> {
    const pod = this.#pods.get(key);
    if (!pod) return;
    const record = this.#records.get(idOf(pod));
    // Once the final DELETE is sent, the status the deletion wrote is the last one.
    if (!record || record.phase === 'removed') return;
    if (record.phase === 'finalizing' && pod.metadata?.deletionTimestamp) {
      await this.#finalize(record, pod, signal);
      return;
    }
    const reported = record.reported;
    if (!reported) return;
    if (
      pod.metadata?.deletionTimestamp &&
      (isTerminal(reported) || allContainersStopped(reported))
    ) {
      // The deletion writes this final status itself, just before removing the object.
      this.#addSync(key);
      return;
    }
    if (isTerminal(pod.status)) return; // a terminal status is final
    await this.#putStatus(record, pod, reported, signal).catch(ignoreStale);
  }

  /**
   * Patches the pod's status. The patch carries the pod's UID, so it can never land on a newer
   * pod of the same name (the API server refuses it); fields the new status drops are cleared.
   */
  async #putStatus(
    record: PodRecord,
    pod: V1Pod,
    reported: V1PodStatus,
    signal: AbortSignal,
  ): Promise<void> {
    const status = mergeStatus(pod, withAddresses(reported, record.addresses), {
      nodeIP: this.#nodeIP,
    });
    if (sameStatus(status, pod.status)) return;
    const fingerprint = statusFingerprint(status);
    if (record.written === fingerprint) return;
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    const body: Record<string, unknown> = { ...status };
    for (const field of ['reason', 'message'] as const) {
      if (status[field] === undefined && pod.status?.[field] !== undefined) body[field] = null;
    }
    // A strategic merge patch merges podIPs and hostIPs by address: a new address would be added
    // beside the old one, which the API server refuses (two addresses of one family). The
    // provider's list is the whole truth, so it replaces the stored one.
    for (const field of ['podIPs', 'hostIPs'] as const) {
      const list = status[field];
      if (list) body[field] = [...list, { $patch: 'replace' }];
    }
    const span = startSpan('pod status write', {
      attributes: () => ({
        [ATTR.node]: this.#o.nodeName,
        ...podAttributes(namespace, name, pod.metadata?.uid),
        'k8s.pod.phase': status.phase ?? '',
      }),
    });
    try {
      await withSpan(span, () =>
        this.#o.client.patch(
          `/api/v1/namespaces/${namespace}/pods/${name}/status`,
          'strategic',
          { metadata: { uid: pod.metadata?.uid }, status: body },
          signal,
        ),
      );
      record.written = fingerprint;
      span.end();
    } catch (err) {
      endSpan(span, errorCode(err) === 'NotFound' ? undefined : err);
      if (errorCode(err) === 'NotFound') return;
      throw err;
    }
  }
}

/** `status` with the addresses `preparePod` gave, where the provider reports none. */
function withAddresses(status: V1PodStatus, addresses: PodAddresses | undefined): V1PodStatus {
  if (!addresses || status.podIP) return status;
  const out: V1PodStatus = { ...status, podIPs: addresses.podIPs.map((ip) => ({ ip })) };
  out.podIP = addresses.podIPs[0];
  if (!status.hostIP && addresses.hostIP) {
    out.hostIP = addresses.hostIP;
    out.hostIPs = [{ ip: addresses.hostIP }];
  }
  return out;
}

/** The grace period (s) a deletion of `pod` gives it, as the kubelet reads it. */
function graceOf(pod: V1Pod): number {
  return pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
}

function allContainersStopped(status: V1PodStatus): boolean {
  const cs = status.containerStatuses ?? [];
  return cs.length > 0 && cs.every((c) => !c.state?.running && !c.state?.waiting);
}

function podSubject(pod: V1Pod): { kind: string; metadata?: V1Pod['metadata'] } {
  return { kind: 'Pod', metadata: pod.metadata };
}

function ignoreNotFound(err: unknown): void {
  if (errorCode(err) !== 'NotFound') throw err;
}

/**
 * A status write aimed at a pod that changed or was replaced meanwhile (Conflict), or that the
 * pod's state now refuses (InvalidInput: a terminal pod's phase cannot change): the next sync
 * redoes it from the state it reads then.
 */
function ignoreStale(err: unknown): void {
  if (errorCode(err) === 'Conflict' || errorCode(err) === 'InvalidInput') return;
  throw err;
}

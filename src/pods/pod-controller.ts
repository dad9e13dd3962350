import type { V1ConfigMap, V1Pod, V1PodStatus, V1Secret, V1Service } from '@kubernetes/client-node';
import { abortOf, sleep } from '../abort.js';
import { errorCode, errorMessage, isRetryable } from '../errors.js';
import { isConflict, isNotFound, type KubeClient } from '../kube/client.js';
import type { EventRecorder } from '../kube/events.js';
import { Informer } from '../kube/informer.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { isPodNotifier, type Provider } from '../provider.js';
import { WorkQueue } from '../queue/index.js';
import { EnvResolutionError } from './env-error.js';
import { resolvePodEnv, type EnvSource } from './env.js';
import { lostPodStatus, PollNotifier } from './poll-notifier.js';
import {
  configErrorStatus,
  isTerminal,
  mergeStatus,
  mutableFingerprint,
  needsSync,
  podKey,
  providerFailedStatus,
  sameStatus,
} from './status.js';

export interface PodControllerOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly provider: Provider;
  readonly events: EventRecorder;
  readonly logger?: Logger;
  /** The node's address: hostIP of its pods, and for the downward API. Default: 127.0.0.1. */
  readonly nodeIP?: string;
  /** Workers of each queue. Default: 10. */
  readonly workers?: number;
  /** Polling period for providers without `notifyPods`. Default: 5 000 ms. */
  readonly pollIntervalMs?: number;
  /** Every pod is synced again this often, to repair anything missed. Default: 60 000 ms. */
  readonly fullResyncPeriodMs?: number;
  /** Longest backoff between retries of one pod. Default: 300 000 ms. */
  readonly maxBackoffMs?: number;
}

interface Tracked {
  /** Fingerprint of the mutable fields last handed to the provider. */
  fingerprint?: string;
  /** deletePod was called for this UID. */
  deleteRequested?: boolean;
}

/**
 * Keeps the provider in step with the pods bound to the node, and the API in step with the
 * provider. Three keyed queues, one per direction of data flow:
 * - sync: API -> provider (create, update, graceful deletion);
 * - status: provider -> API (status writes through the `pods/status` subresource);
 * - cleanup: removes pods from the provider once their API object is gone.
 * Handlers re-read the informer cache by key, so a burst of changes costs one pass.
 */
export class PodController {
  readonly #o: PodControllerOptions;
  readonly #log: Logger;
  readonly #pods: Informer<V1Pod>;
  readonly #services: Informer<V1Service>;
  readonly #sync: WorkQueue;
  readonly #status: WorkQueue;
  readonly #cleanup: WorkQueue;
  readonly #tracked = new Map<string, Tracked>();
  /** Latest status the provider reported, by pod key. */
  readonly #reported = new Map<string, V1Pod>();
  /** Pods deleted from the API, kept until the provider has dropped them. */
  readonly #deleted = new Map<string, V1Pod>();
  readonly #poller: PollNotifier | undefined;
  readonly #nodeIP: string;
  #markReady: () => void = () => undefined;
  readonly #ready = new Promise<void>((resolve) => (this.#markReady = resolve));

  constructor(options: PodControllerOptions) {
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({ node: options.nodeName });
    this.#nodeIP = options.nodeIP ?? '127.0.0.1';
    const workers = options.workers ?? 10;
    if (!Number.isInteger(workers) || workers < 1)
      throw new RangeError('workers must be a positive integer');
    const queue = (
      name: string,
      handler: (key: string, signal: AbortSignal) => Promise<void>,
    ): WorkQueue =>
      new WorkQueue({
        name,
        workers,
        handler,
        maxBackoffMs: options.maxBackoffMs ?? 300_000,
        onError: (key, err, attempt, willRetry) => {
          this.#log.warn(
            { queue: name, pod: key, attempt, willRetry, err: errorMessage(err) },
            'pod handler failed',
          );
        },
      });
    this.#sync = queue('sync', (key, signal) => this.#syncPod(key, signal));
    this.#status = queue('status', (key, signal) => this.#writeStatus(key, signal));
    this.#cleanup = queue('cleanup', (key, signal) => this.#cleanupPod(key, signal));
    this.#pods = new Informer<V1Pod>({
      client: options.client,
      path: '/api/v1/pods',
      fieldSelector: `spec.nodeName=${options.nodeName}`,
      logger: this.#log,
      handlers: {
        onAdd: (pod) => {
          this.#sync.add(podKey(pod));
        },
        onUpdate: (oldPod, newPod) => {
          const key = podKey(newPod);
          if (oldPod.metadata?.uid !== newPod.metadata?.uid) {
            this.#deleted.set(key, oldPod);
            this.#cleanup.add(key);
          }
          if (needsSync(oldPod, newPod) || oldPod.metadata?.uid !== newPod.metadata?.uid)
            this.#sync.add(key);
          // A status we did not write (or wrote from an older report) may need correcting.
          if (this.#reported.has(key)) this.#status.add(key);
        },
        onDelete: (pod) => {
          const key = podKey(pod);
          this.#deleted.set(key, pod);
          this.#reported.delete(key);
          this.#cleanup.add(key);
        },
      },
    });
    this.#services = new Informer<V1Service>({
      client: options.client,
      path: '/api/v1/services',
      logger: this.#log,
    });
    const provider = options.provider;
    if (!isPodNotifier(provider)) {
      this.#poller = new PollNotifier({
        provider,
        listPods: () => this.#pods.list(),
        intervalMs: options.pollIntervalMs ?? 5_000,
        logger: this.#log,
      });
    }
  }

  /** Resolves when the pod cache is filled and the provider reconciled against it. */
  whenReady(): Promise<void> {
    return this.#ready;
  }

  /** Queue depths and counters, for metrics and tests. */
  stats(): Record<'sync' | 'status' | 'cleanup', ReturnType<WorkQueue['stats']>> {
    return {
      sync: this.#sync.stats(),
      status: this.#status.stats(),
      cleanup: this.#cleanup.stats(),
    };
  }

  async run(signal: AbortSignal): Promise<void> {
    const onReport = (pod: V1Pod): void => {
      const key = podKey(pod);
      this.#reported.set(key, pod);
      this.#status.add(key);
    };
    const provider = this.#o.provider;
    if (isPodNotifier(provider)) provider.notifyPods(onReport);
    else this.#poller?.notifyPods(onReport);

    const informers = Promise.all([this.#pods.run(signal), this.#services.run(signal)]);
    await Promise.race([
      Promise.all([this.#pods.whenSynced(), this.#services.whenSynced()]),
      abortOf(signal),
    ]);
    if (signal.aborted) {
      await informers;
      return;
    }
    await this.#deleteDangling(signal);
    this.#markReady();
    this.#log.info({ pods: this.#pods.size }, 'pod controller ready');
    await Promise.all([
      informers,
      this.#sync.run(signal),
      this.#status.run(signal),
      this.#cleanup.run(signal),
      this.#poller?.run(signal),
      this.#resyncLoop(signal),
    ]);
  }

  /** After a restart: pods the provider runs that no longer exist in the API are removed. */
  async #deleteDangling(signal: AbortSignal): Promise<void> {
    let pods: V1Pod[];
    try {
      pods = await this.#o.provider.getPods(signal);
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, 'could not list the provider pods at start');
      return;
    }
    for (const pod of pods) {
      const key = podKey(pod);
      const api = this.#pods.get(key);
      if (api && api.metadata?.uid === pod.metadata?.uid) {
        // Already handed to the provider: remember it so nothing is created twice.
        this.#tracked.set(api.metadata?.uid ?? key, { fingerprint: mutableFingerprint(pod) });
        continue;
      }
      this.#deleted.set(key, pod);
      this.#cleanup.add(key);
    }
  }

  async #resyncLoop(signal: AbortSignal): Promise<void> {
    const period = this.#o.fullResyncPeriodMs ?? 60_000;
    while (!signal.aborted) {
      await sleep(period, signal);
      for (const pod of this.#pods.list()) this.#sync.add(podKey(pod));
    }
  }

  #trackedOf(pod: V1Pod): Tracked {
    const uid = pod.metadata?.uid ?? podKey(pod);
    let t = this.#tracked.get(uid);
    if (!t) this.#tracked.set(uid, (t = {}));
    return t;
  }

  async #syncPod(key: string, signal: AbortSignal): Promise<void> {
    const pod = this.#pods.get(key);
    if (!pod) return;
    if (pod.metadata?.deletionTimestamp) return this.#deletePod(key, pod, signal);
    if (isTerminal(pod.status)) return;
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    const provider = this.#o.provider;
    const tracked = this.#trackedOf(pod);
    const running = await provider.getPod(namespace, name, signal);
    if (running && running.metadata?.uid && running.metadata.uid !== pod.metadata?.uid) {
      // A pod of the same name from before: remove it first, then create this one.
      await provider.deletePod(running, signal).catch(ignoreNotFound);
      throw new Error('an older pod of the same name is still being removed from the provider');
    }
    if (!running) {
      if (pod.status?.phase === 'Running' || tracked.fingerprint !== undefined) {
        // It ran, and the provider no longer has it: never create a pod twice.
        await this.#putStatus(pod, lostPodStatus(pod, new Date()), signal);
        this.#o.events.record(
          podSubject(pod),
          'Warning',
          'ProviderPodNotFound',
          'the provider lost the pod; it is marked Failed',
        );
        return;
      }
      const resolved = await this.#resolve(pod, signal);
      try {
        await provider.createPod(resolved, signal);
      } catch (err) {
        if (errorCode(err) !== 'AlreadyExists') return this.#createFailed(pod, err, signal);
      }
      tracked.fingerprint = mutableFingerprint(pod);
      this.#o.events.record(
        podSubject(pod),
        'Normal',
        'ProviderCreated',
        `pod handed to the provider on node ${this.#o.nodeName}`,
      );
      return;
    }
    const fingerprint = mutableFingerprint(pod);
    if (tracked.fingerprint === undefined) tracked.fingerprint = mutableFingerprint(running);
    if (fingerprint === tracked.fingerprint) return;
    const resolved = await this.#resolve(pod, signal);
    try {
      await provider.updatePod(resolved, signal);
    } catch (err) {
      this.#o.events.record(podSubject(pod), 'Warning', 'ProviderUpdateFailed', errorMessage(err));
      // Unlike the Go virtual-kubelet, a failed update never turns a running pod back to Pending.
      if (isRetryable(err)) throw err;
      return;
    }
    tracked.fingerprint = fingerprint;
  }

  async #resolve(pod: V1Pod, signal: AbortSignal): Promise<V1Pod> {
    try {
      const { pod: resolved, events } = await resolvePodEnv(pod, this.#envSource(signal), {
        hostIP: this.#nodeIP,
        podIP: pod.status?.podIP,
        nodeName: this.#o.nodeName,
      });
      for (const e of events) this.#o.events.record(podSubject(pod), e.type, e.reason, e.message);
      return resolved;
    } catch (err) {
      if (err instanceof EnvResolutionError) {
        this.#o.events.record(podSubject(pod), 'Warning', err.reason, err.message);
        await this.#putStatus(pod, configErrorStatus(pod, err.message), signal).catch(
          ignoreConflict,
        );
        if (!err.retryable) {
          await this.#putStatus(pod, providerFailedStatus(pod, err.message, true), signal).catch(
            ignoreConflict,
          );
        }
      }
      throw err;
    }
  }

  #envSource(signal: AbortSignal): EnvSource {
    const { client } = this.#o;
    return {
      getConfigMap: (ns, name) =>
        client.get<V1ConfigMap>(`/api/v1/namespaces/${ns}/configmaps/${name}`, signal),
      getSecret: (ns, name) =>
        client.get<V1Secret>(`/api/v1/namespaces/${ns}/secrets/${name}`, signal),
      listServices: (ns) =>
        Promise.resolve([...this.#services.list()].filter((s) => s.metadata?.namespace === ns)),
    };
  }

  async #createFailed(pod: V1Pod, err: unknown, signal: AbortSignal): Promise<void> {
    const retry = isRetryable(err) && pod.spec?.restartPolicy !== 'Never';
    const message = `the provider could not create the pod: ${errorMessage(err)}`;
    this.#o.events.record(podSubject(pod), 'Warning', 'ProviderCreateFailed', message);
    await this.#putStatus(pod, providerFailedStatus(pod, message, !retry), signal).catch(
      ignoreConflict,
    );
    if (retry) throw err;
  }

  /** Graceful deletion: ask the provider, then remove the API object once the pod is done. */
  async #deletePod(key: string, pod: V1Pod, signal: AbortSignal): Promise<void> {
    const tracked = this.#trackedOf(pod);
    const provider = this.#o.provider;
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    if (!tracked.deleteRequested) {
      try {
        await provider.deletePod(pod, signal);
      } catch (err) {
        if (errorCode(err) !== 'NotFound') throw err;
      }
      tracked.deleteRequested = true;
    }
    const status = await provider.getPodStatus(namespace, name, signal);
    const done = !status || isTerminal(status) || allContainersStopped(status);
    const deadline =
      Date.parse(String(pod.metadata?.deletionTimestamp)) ||
      Date.now() + (pod.metadata?.deletionGracePeriodSeconds ?? 30) * 1000;
    if (!done && Date.now() < deadline) {
      // Looked at again when the provider reports the end, or at the deadline at the latest.
      this.#sync.addAfter(key, Math.max(0, deadline - Date.now()) + 50);
      return;
    }
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
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }

  /** The API object is gone: make sure the provider has dropped the pod too. */
  async #cleanupPod(key: string, signal: AbortSignal): Promise<void> {
    const pod = this.#deleted.get(key);
    if (!pod) return;
    const current = this.#pods.get(key);
    const uid = pod.metadata?.uid;
    if (current && current.metadata?.uid === uid) return; // it came back (relist)
    const tracked = uid ? this.#tracked.get(uid) : undefined;
    const running = await this.#o.provider.getPod(
      pod.metadata?.namespace ?? '',
      pod.metadata?.name ?? '',
      signal,
    );
    if (
      running &&
      (!running.metadata?.uid || running.metadata.uid === uid) &&
      !(tracked?.deleteRequested && isTerminal(running.status))
    ) {
      try {
        await this.#o.provider.deletePod(pod, signal);
      } catch (err) {
        if (errorCode(err) !== 'NotFound') throw err;
      }
    }
    this.#deleted.delete(key);
    if (uid) this.#tracked.delete(uid);
  }

  /** Writes the provider's latest report for `key` through the status subresource. */
  async #writeStatus(key: string, signal: AbortSignal): Promise<void> {
    const reported = this.#reported.get(key);
    const pod = this.#pods.get(key);
    if (!reported || !pod) return;
    if (reported.metadata?.uid && reported.metadata.uid !== pod.metadata?.uid) return;
    if (
      pod.metadata?.deletionTimestamp &&
      (isTerminal(reported.status) || allContainersStopped(reported.status ?? {}))
    ) {
      this.#sync.add(key);
    }
    if (isTerminal(pod.status)) return; // a terminal status is final
    if (!reported.status) return;
    await this.#putStatus(pod, reported.status, signal);
  }

  async #putStatus(pod: V1Pod, reported: V1PodStatus, signal: AbortSignal): Promise<void> {
    const status = mergeStatus(pod, reported, { nodeIP: this.#nodeIP });
    if (sameStatus(status, pod.status)) return;
    const [namespace, name] = [pod.metadata?.namespace ?? '', pod.metadata?.name ?? ''];
    try {
      await this.#o.client.patch(
        `/api/v1/namespaces/${namespace}/pods/${name}/status`,
        'strategic',
        { status },
        signal,
      );
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
  }
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

function ignoreConflict(err: unknown): void {
  if (!isConflict(err)) throw err;
}

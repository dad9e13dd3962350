/**
 * A provider that keeps its pods in memory and reports every container running at once: the
 * smallest backend that passes the conformance suite. It is written against the published entry
 * point `virtual-kubelet/provider` only, as a provider in its own repository would be.
 */
import {
  alreadyExists,
  invalidInput,
  unavailable,
  type PodNotifier,
  type Provider,
  type V1Pod,
  type V1PodStatus,
} from 'virtual-kubelet/provider';

export interface MemoryProviderOptions {
  /** The node's name, written into every pod status the provider reports. */
  readonly nodeName: string;
  /** The pod IP reported for every pod. Default: `10.0.0.1`. */
  readonly podIP?: string;
}

const keyOf = (namespace: string, name: string): string => `${namespace}/${name}`;

/**
 * Pods live in a map keyed by namespace/name. `createPod` marks the pod Running, `deletePod`
 * marks it Succeeded (the core then deletes it from the API server and the provider forgets it
 * on the next delete). Status changes are pushed to the callback given to `notifyPods`.
 */
export class MemoryProvider implements Provider, PodNotifier {
  readonly #options: MemoryProviderOptions;
  readonly #pods = new Map<string, V1Pod>();
  #notify: (pod: V1Pod) => void = () => undefined;
  #closed = false;

  constructor(options: MemoryProviderOptions) {
    if (options.nodeName === '') throw invalidInput('nodeName: must not be empty');
    this.#options = options;
  }

  notifyPods(callback: (pod: V1Pod) => void): void {
    this.#notify = callback;
  }

  createPod(pod: V1Pod, _signal: AbortSignal): Promise<void> {
    const key = this.#key(pod);
    if (this.#pods.has(key)) return Promise.reject(alreadyExists(`pod ${key} exists`));
    const now = new Date();
    const running: V1Pod = structuredClone(pod);
    running.status = {
      phase: 'Running',
      podIP: this.#options.podIP ?? '10.0.0.1',
      startTime: now,
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: now },
        { type: 'Ready', status: 'True', lastTransitionTime: now },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
        { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
      ],
      containerStatuses: (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        ready: true,
        restartCount: 0,
        started: true,
        state: { running: { startedAt: now } },
      })),
    };
    this.#pods.set(key, running);
    this.#report(running);
    return Promise.resolve();
  }

  updatePod(pod: V1Pod, _signal: AbortSignal): Promise<void> {
    const known = this.#pods.get(this.#key(pod));
    if (known) {
      // Keep the status the provider reports; take everything else from the new pod.
      this.#pods.set(this.#key(pod), { ...structuredClone(pod), status: known.status });
    }
    return Promise.resolve();
  }

  deletePod(pod: V1Pod, _signal: AbortSignal): Promise<void> {
    const key = this.#key(pod);
    const known = this.#pods.get(key);
    if (!known) return Promise.resolve();
    const now = new Date();
    const done: V1Pod = structuredClone(known);
    const status: V1PodStatus = done.status ?? {};
    status.phase = 'Succeeded';
    status.conditions = (status.conditions ?? []).map((c) =>
      c.type === 'Ready' || c.type === 'ContainersReady'
        ? { ...c, status: 'False', lastTransitionTime: now }
        : c,
    );
    status.containerStatuses = (status.containerStatuses ?? []).map((c) => ({
      ...c,
      ready: false,
      started: false,
      state: { terminated: { exitCode: 0, reason: 'Completed', finishedAt: now } },
    }));
    done.status = status;
    this.#pods.set(key, done);
    this.#report(done);
    return Promise.resolve();
  }

  getPod(namespace: string, name: string, _signal: AbortSignal): Promise<V1Pod | undefined> {
    const pod = this.#pods.get(keyOf(namespace, name));
    return Promise.resolve(pod && structuredClone(pod));
  }

  getPodStatus(
    namespace: string,
    name: string,
    _signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    const status = this.#pods.get(keyOf(namespace, name))?.status;
    return Promise.resolve(status && structuredClone(status));
  }

  getPods(_signal: AbortSignal): Promise<V1Pod[]> {
    return Promise.resolve([...this.#pods.values()].map((p) => structuredClone(p)));
  }

  /** Forgets every pod; calls after this one fail with `Unavailable`. */
  close(): Promise<void> {
    this.#closed = true;
    this.#pods.clear();
    return Promise.resolve();
  }

  #key(pod: V1Pod): string {
    if (this.#closed) throw unavailable('the provider is closed');
    return keyOf(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
  }

  #report(pod: V1Pod): void {
    this.#notify(structuredClone(pod));
  }
}

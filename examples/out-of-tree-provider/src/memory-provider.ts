/**
 * A provider that keeps its pods in memory and reports every container running at once: the
 * smallest backend that passes the conformance suite. It is written against the published entry
 * point `virtual-kubelet/provider` only, as a provider in its own repository would be.
 */
import {
  alreadyExists,
  formatRfc3339,
  invalidInput,
  unavailable,
  type PodNotifier,
  type Provider,
  type V1Pod,
  type V1PodStatus,
} from 'virtual-kubelet/provider';

export interface MemoryProviderOptions {
  /** The node this provider runs pods for; `createPod` refuses a pod bound to another. */
  readonly nodeName: string;
  /** The pod IP reported for every pod. Default: `10.0.0.1`. */
  readonly podIP?: string;
}

/**
 * Pods live in a map keyed by namespace/name. `createPod` marks the pod Running, `deletePod`
 * marks it Succeeded, and a second `deletePod` forgets it. Status changes are pushed to the
 * callback given to `notifyPods`.
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

  async createPod(pod: V1Pod, _signal: AbortSignal): Promise<void> {
    const key = this.#key(pod);
    if (this.#pods.has(key)) throw alreadyExists(`pod ${key} exists`);
    if (pod.spec?.nodeName !== this.#options.nodeName) {
      throw invalidInput(`pod ${key} is bound to ${pod.spec?.nodeName ?? 'no node'}`);
    }
    // Times travel as RFC 3339 strings, as the API server sends them.
    const now = formatRfc3339(Date.now());
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
  }

  async updatePod(pod: V1Pod, _signal: AbortSignal): Promise<void> {
    const key = this.#key(pod);
    const known = this.#pods.get(key);
    // Keep the status the provider reports; take everything else from the new pod.
    if (known) this.#pods.set(key, { ...structuredClone(pod), status: known.status });
  }

  async deletePod(pod: V1Pod, _signal: AbortSignal): Promise<void> {
    const key = this.#key(pod);
    const known = this.#pods.get(key);
    if (!known) return;
    if (known.status?.phase === 'Succeeded') {
      this.#pods.delete(key);
      return;
    }
    const now = formatRfc3339(Date.now());
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
  }

  async getPod(namespace: string, name: string, _signal: AbortSignal): Promise<V1Pod | undefined> {
    const pod = this.#pods.get(this.#keyOf(namespace, name));
    return pod && structuredClone(pod);
  }

  async getPodStatus(
    namespace: string,
    name: string,
    _signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    const status = this.#pods.get(this.#keyOf(namespace, name))?.status;
    return status && structuredClone(status);
  }

  async getPods(_signal: AbortSignal): Promise<V1Pod[]> {
    this.#checkOpen();
    return [...this.#pods.values()].map((p) => structuredClone(p));
  }

  /** Forgets every pod; every call after this one fails with `Unavailable`. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pods.clear();
  }

  #key(pod: V1Pod): string {
    return this.#keyOf(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
  }

  #keyOf(namespace: string, name: string): string {
    this.#checkOpen();
    return `${namespace}/${name}`;
  }

  #checkOpen(): void {
    if (this.#closed) throw unavailable('the provider is closed');
  }

  #report(pod: V1Pod): void {
    this.#notify(structuredClone(pod));
  }
}

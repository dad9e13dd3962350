import type { V1Service } from '../wire.js';
import type { KubeClient } from '../kube/client.js';
import { Informer } from '../kube/informer.js';
import type { Logger } from '../log.js';

/** Every Service of the cluster by namespace, for service-link variables. Shareable by nodes. */
export class ServiceIndex {
  readonly #byNs = new Map<string, Map<string, V1Service>>();
  readonly #informer: Informer<V1Service>;
  readonly #listeners = new Set<(namespace: string) => void>();

  constructor(client: KubeClient, logger?: Logger) {
    this.#informer = new Informer<V1Service>({
      client,
      path: '/api/v1/services',
      ...(logger ? { logger } : {}),
      handlers: {
        onAdd: (s) => this.#index(s, true),
        onUpdate: (_old, s) => this.#index(s, true),
        onDelete: (s) => this.#index(s, false),
      },
    });
  }

  #index(s: V1Service, present: boolean): void {
    const ns = s.metadata?.namespace ?? '';
    const name = s.metadata?.name ?? '';
    let byName = this.#byNs.get(ns);
    if (present) {
      if (!byName) this.#byNs.set(ns, (byName = new Map<string, V1Service>()));
      byName.set(name, s);
    } else {
      byName?.delete(name);
      if (byName?.size === 0) this.#byNs.delete(ns);
    }
    for (const fn of this.#listeners) fn(ns);
  }

  /**
   * Calls `listener` with the namespace of every Service added, changed or deleted (the initial
   * list included). It must not throw. Returns the function that removes it.
   */
  onChange(listener: (namespace: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The Services of `namespace`. */
  list(namespace: string): V1Service[] {
    return [...(this.#byNs.get(namespace)?.values() ?? [])];
  }

  whenSynced(): Promise<void> {
    return this.#informer.whenSynced();
  }

  run(signal: AbortSignal): Promise<void> {
    return this.#informer.run(signal);
  }
}

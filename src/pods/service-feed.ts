/**
 * The Services of the namespaces that hold pods of one node, handed to a provider with
 * `setServices` (see `ServiceReflection` in provider.ts). One queue keyed by namespace: a change
 * of any Service of a namespace, or a pod of the node appearing there or leaving it, queues the
 * namespace; its run hands over the namespace's whole list (`[]` once no pod of the node is left
 * there), unless it is the list handed over last.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ServiceReflection } from '../provider.js';
import { WorkQueue } from '../queue/index.js';
import type { V1Service } from '../wire.js';

export interface ServiceFeedOptions {
  readonly provider: ServiceReflection;
  /** The cluster's Services of `namespace`. */
  readonly list: (namespace: string) => readonly V1Service[];
  /** Registers the listener called with the namespace of every Service change; returns its removal. */
  readonly onChange: (listener: (namespace: string) => void) => () => void;
  /** Whether a pod of the node is in `namespace`. */
  readonly hasPods: (namespace: string) => boolean;
  /** Deadline of one `setServices` call. Default: 60 000 ms. */
  readonly callTimeoutMs?: number;
  /** Longest backoff between retries of one namespace. Default: 300 000 ms. */
  readonly maxBackoffMs?: number;
  readonly logger: Logger;
}

/** What identifies one version of a namespace's list: each Service's UID and resource version. */
const versionOf = (services: readonly V1Service[]): string =>
  JSON.stringify(
    services.map((s) => `${s.metadata?.uid ?? ''}/${s.metadata?.resourceVersion ?? ''}`).sort(),
  );

export class ServiceFeed {
  readonly #o: ServiceFeedOptions;
  readonly #queue: WorkQueue;
  /** Namespace to the version of the list handed over last (absent: nothing, or `[]`). */
  readonly #handed = new Map<string, string>();

  constructor(options: ServiceFeedOptions) {
    this.#o = options;
    this.#queue = new WorkQueue({
      name: 'services',
      workers: 2,
      handler: (ns, signal) => this.#sync(ns, signal),
      maxBackoffMs: options.maxBackoffMs ?? 300_000,
      onError: (ns, err, attempt, willRetry) => {
        options.logger.warn(
          { namespace: ns, attempt, willRetry, err: errorMessage(err) },
          'setServices failed',
        );
      },
    });
  }

  /** A pod of the node appeared in `namespace` or left it. */
  touch(namespace: string): void {
    this.#queue.add(namespace);
  }

  async run(signal: AbortSignal): Promise<void> {
    const off = this.#o.onChange((ns) => {
      if (this.#handed.has(ns) || this.#o.hasPods(ns)) this.#queue.add(ns);
    });
    try {
      await this.#queue.run(signal);
    } finally {
      off();
    }
  }

  async #sync(namespace: string, signal: AbortSignal): Promise<void> {
    const services = this.#o.hasPods(namespace) ? this.#o.list(namespace) : [];
    const version = versionOf(services);
    if (services.length === 0 && !this.#handed.has(namespace)) return;
    if (this.#handed.get(namespace) === version) return;
    await this.#o.provider.setServices(
      namespace,
      services,
      AbortSignal.any([signal, AbortSignal.timeout(this.#o.callTimeoutMs ?? 60_000)]),
    );
    if (services.length === 0) this.#handed.delete(namespace);
    else this.#handed.set(namespace, version);
  }
}

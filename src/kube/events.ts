import { randomBytes } from 'node:crypto';
import type { CoreV1Event, V1ObjectReference } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { KubeClient } from './client.js';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  readonly client: KubeClient;
  /** `source.component` and `reportingComponent`. Default: `virtual-kubelet`. */
  readonly component?: string;
  /** `source.host`: the node name. */
  readonly host: string;
  /** Repeats of one event within this window raise its count instead of adding one. Default: 600 000 ms. */
  readonly aggregateWindowMs?: number;
  readonly logger?: Logger;
}

interface Seen {
  name: string;
  namespace: string;
  count: number;
  last: number;
}

/** The object an event is about. */
export interface EventSubject {
  readonly kind: string;
  readonly apiVersion?: string;
  readonly metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

/**
 * Writes core/v1 Events. Fire and forget: `record` never throws and never waits for the API
 * server; failures are logged. An event repeated for the same object, reason and message within
 * the window is counted on the existing Event, as the kubelet's recorder does.
 */
export class EventRecorder {
  readonly #o: EventRecorderOptions;
  readonly #seen = new Map<string, Seen>();
  readonly #log: Logger;
  #pending = new Set<Promise<void>>();

  constructor(options: EventRecorderOptions) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
  }

  record(subject: EventSubject, type: EventType, reason: string, message: string): void {
    const p = this.#write(subject, type, reason, message).catch((err: unknown) => {
      this.#log.warn({ reason, err: (err as Error).message }, 'could not record an event');
    });
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** Resolves when every event recorded so far has been written (or failed). */
  async flush(): Promise<void> {
    await Promise.all([...this.#pending]);
  }

  async #write(
    subject: EventSubject,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    const m = subject.metadata ?? {};
    const namespace = m.namespace ?? 'default';
    const key = `${m.uid ?? `${namespace}/${m.name ?? ''}`}\u0000${type}\u0000${reason}\u0000${message}`;
    const now = Date.now();
    const nowIso = new Date(now).toISOString();
    const window = this.#o.aggregateWindowMs ?? 600_000;
    this.#prune(now, window);
    const seen = this.#seen.get(key);
    if (seen && now - seen.last < window) {
      seen.count++;
      seen.last = now;
      try {
        await this.#o.client.patch(
          `/api/v1/namespaces/${seen.namespace}/events/${seen.name}`,
          'merge',
          { count: seen.count, lastTimestamp: nowIso },
        );
        return;
      } catch {
        // The event expired or was deleted: write a new one.
      }
    }
    const involvedObject: V1ObjectReference = {
      kind: subject.kind,
      apiVersion: subject.apiVersion ?? 'v1',
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
    };
    const component = this.#o.component ?? 'virtual-kubelet';
    const name = `${m.name ?? 'object'}.${now.toString(16)}${randomBytes(2).toString('hex')}`;
    const event: CoreV1Event = {
      metadata: { name, namespace },
      involvedObject,
      type,
      reason,
      message,
      count: 1,
      firstTimestamp: nowIso as unknown as Date,
      lastTimestamp: nowIso as unknown as Date,
      source: { component, host: this.#o.host },
      reportingComponent: component,
      reportingInstance: this.#o.host,
    };
    await this.#o.client.create(`/api/v1/namespaces/${namespace}/events`, event);
    this.#seen.set(key, { name, namespace, count: 1, last: now });
  }

  #prune(now: number, window: number): void {
    if (this.#seen.size < 4096) return;
    for (const [k, s] of this.#seen) if (now - s.last >= window) this.#seen.delete(k);
  }
}

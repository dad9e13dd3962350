import { randomBytes } from 'node:crypto';
import type { CoreV1Event, V1ObjectReference } from '../wire.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { TokenBucket, type KubeClient } from './client.js';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  readonly client: KubeClient;
  /** `source.component` and `reportingComponent`. Default: `virtual-kubelet`. */
  readonly component?: string;
  /** `source.host`: the node name. */
  readonly host: string;
  /**
   * Repeats of one event within this window raise its count instead of adding one. Default:
   * 600 000 ms. The events counted so are the last {@link MAX_SEEN} (the kubelet's correlator
   * keeps as many): an event that fell out is written anew.
   */
  readonly aggregateWindowMs?: number;
  /**
   * Events written per second, with bursts up to `burst`, apart from the client's own limit
   * (the kubelet's `eventRecordQPS` and `eventBurst`); qps 0: no limit. Default: 50 and 100.
   */
  readonly qps?: number;
  readonly burst?: number;
  readonly logger?: Logger;
}

/**
 * How many distinct events are remembered for counting repeats, least recently used out first:
 * the kubelet's event correlator keeps an LRU cache of this size. Bounds the recorder's memory
 * under any churn (10 pods a second with four events each would otherwise keep 24 000 for the
 * 10-minute window).
 */
export const MAX_SEEN = 4096;

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
  /** The write under way of each event being written (its last one), by key. */
  readonly #writing = new Map<string, Promise<void>>();
  readonly #log: Logger;
  readonly #queue: [EventSubject, EventType, string, string][] = [];
  #writers = 0;
  #dropped = 0;
  #idle: (() => void)[] = [];
  readonly #bucket: TokenBucket | undefined;
  readonly #closed = new AbortController();

  constructor(options: EventRecorderOptions) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    const qps = options.qps ?? 50;
    this.#bucket = qps > 0 ? new TokenBucket(qps, Math.max(1, options.burst ?? 100)) : undefined;
  }

  /** Drops what is still queued and writes nothing more. */
  close(): void {
    this.#queue.length = 0;
    this.#closed.abort();
  }

  /**
   * Queues an event. At most `maxQueued` (1 000) wait; beyond that events are dropped and the
   * drop is logged, so a storm of events can never hold memory or starve other API traffic.
   */
  record(subject: EventSubject, type: EventType, reason: string, message: string): void {
    if (this.#closed.signal.aborted) return;
    if (this.#queue.length >= 1000) {
      if (this.#dropped++ % 1000 === 0)
        this.#log.warn({ dropped: this.#dropped }, 'too many events queued: dropping');
      return;
    }
    this.#queue.push([subject, type, reason, message]);
    while (this.#writers < 4 && this.#queue.length > 0) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writers++;
    for (let e = this.#queue.shift(); e; e = this.#queue.shift()) {
      try {
        await this.#bucket?.take(this.#closed.signal);
        await this.#write(...e);
      } catch (err) {
        if (this.#closed.signal.aborted) break;
        this.#log.warn({ reason: e[2], err: (err as Error).message }, 'could not record an event');
      }
    }
    this.#writers--;
    if (this.#writers === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** Resolves when every queued event has been written (or failed), or after `timeoutMs`. */
  async flush(timeoutMs = 5_000): Promise<void> {
    if (this.#writers === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Writes one event. Writes of the same event (object, type, reason and message) run one after
   * the other, so that a repeat counts on the Event the first one creates rather than creating a
   * second (the writers run side by side).
   */
  async #write(
    subject: EventSubject,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    const m = subject.metadata ?? {};
    const namespace = m.namespace ?? 'default';
    const key = `${m.uid ?? `${namespace}/${m.name ?? ''}`}\u0000${type}\u0000${reason}\u0000${message}`;
    const before = this.#writing.get(key);
    const write = (before ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.#writeOne(key, subject, type, reason, message));
    this.#writing.set(key, write);
    try {
      await write;
    } finally {
      if (this.#writing.get(key) === write) this.#writing.delete(key);
    }
  }

  async #writeOne(
    key: string,
    subject: EventSubject,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<void> {
    const m = subject.metadata ?? {};
    const namespace = m.namespace ?? 'default';
    const now = Date.now();
    const nowIso = new Date(now).toISOString();
    const window = this.#o.aggregateWindowMs ?? 600_000;
    const seen = this.#seen.get(key);
    if (seen && now - seen.last < window) {
      // Most recently used last: the least recently used goes first when the cache is full.
      this.#seen.delete(key);
      this.#seen.set(key, seen);
      seen.count++;
      seen.last = now;
      try {
        await this.#o.client.patch(
          `/api/v1/namespaces/${seen.namespace}/events/${seen.name}`,
          'merge',
          { count: seen.count, lastTimestamp: nowIso },
          this.#closed.signal,
          true,
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
      firstTimestamp: nowIso,
      lastTimestamp: nowIso,
      source: { component, host: this.#o.host },
      reportingComponent: component,
      reportingInstance: this.#o.host,
    };
    await this.#o.client.create(
      `/api/v1/namespaces/${namespace}/events`,
      event,
      this.#closed.signal,
      true,
    );
    this.#seen.delete(key);
    this.#seen.set(key, { name, namespace, count: 1, last: now });
    if (this.#seen.size > MAX_SEEN) {
      const oldest = this.#seen.keys().next();
      if (!oldest.done) this.#seen.delete(oldest.value);
    }
  }
}

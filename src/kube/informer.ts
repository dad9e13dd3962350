import { aborted, sleep } from '../abort.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { V1Status } from '../wire.js';
import { ApiError, type KubeClient } from './client.js';

/** The part of every Kubernetes object an informer needs. */
export interface KubeObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    managedFields?: unknown;
  };
}

export interface InformerHandlers<T> {
  onAdd?(obj: T): void;
  /** Called with the cached object before the change and the object after it. */
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions<T> {
  readonly client: KubeClient;
  /** Collection path, e.g. `/api/v1/pods` or `/api/v1/namespaces/x/configmaps`. */
  readonly path: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
  readonly handlers?: InformerHandlers<T>;
  /**
   * Applied to every object before it is cached and handed out. Default: drops
   * `metadata.managedFields`, which the agent never reads and which dominates object size.
   */
  readonly transform?: (obj: T) => T;
  /** Objects for which this returns false are neither cached nor handed to handlers. */
  readonly filter?: (obj: T) => boolean;
  /** Items per list page. Default: 500. */
  readonly pageSize?: number;
  /** Longest backoff between failed list/watch attempts. Default: 30 000 ms. */
  readonly maxBackoffMs?: number;
  readonly logger?: Logger;
}

const stripManagedFields = <T extends KubeObject>(obj: T): T => {
  if (obj.metadata?.managedFields !== undefined) delete obj.metadata.managedFields;
  return obj;
};

/** `namespace/name`, or `name` for cluster-scoped objects. */
export function keyOf(obj: KubeObject): string {
  const m = obj.metadata;
  return m?.namespace ? `${m.namespace}/${m.name ?? ''}` : (m?.name ?? '');
}

interface ListResult<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

/**
 * A cache of the objects at `path` kept current by list + watch. Unlike the client-node
 * informer it hands out the old object on update, resumes a watch from the last resource version
 * (with bookmarks), relists on 410 Gone, and restarts with backoff after any error instead of
 * stopping. Handlers run synchronously in event order and must not throw.
 */
export class Informer<T extends KubeObject> {
  readonly #o: InformerOptions<T>;
  readonly #cache = new Map<string, T>();
  readonly #log: Logger;
  readonly #transform: (obj: T) => T;
  #resourceVersion = '';
  #synced = false;
  #syncedWaiters: (() => void)[] = [];
  #running = false;

  constructor(options: InformerOptions<T>) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#transform = options.transform ?? stripManagedFields;
  }

  /** The cached object, or undefined. */
  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  /** Every cached object. */
  list(): IterableIterator<T> {
    return this.#cache.values();
  }

  get size(): number {
    return this.#cache.size;
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Resolves once the first list has filled the cache. */
  whenSynced(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve) => this.#syncedWaiters.push(resolve));
  }

  /** Lists and watches until `signal` aborts. Never rejects for API errors: it retries. */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#running) throw new Error('Informer.run called twice');
    this.#running = true;
    let failures = 0;
    while (!aborted(signal)) {
      const started = Date.now();
      try {
        if (!this.#resourceVersion) await this.#list(signal);
        await this.#watch(signal);
        failures = 0;
        // A watch the server ends at once (it may, under load) must not turn into a busy loop.
        if (Date.now() - started < 1_000) await sleep(1_000, signal);
      } catch (err) {
        if (aborted(signal)) break;
        if (expired(err)) {
          this.#log.debug({ path: this.#o.path }, 'watch expired (410 Gone): relisting');
          this.#resourceVersion = '';
          continue;
        }
        failures++;
        const backoff = Math.min(this.#o.maxBackoffMs ?? 30_000, 200 * 2 ** Math.min(failures, 10));
        this.#log.warn(
          { path: this.#o.path, err: (err as Error).message, retryInMs: backoff },
          'list/watch failed',
        );
        // The watch resumes from the last resource version; only 410 Gone forces a relist.
        await sleep(backoff, signal);
      }
    }
  }

  #query(): Record<string, string | undefined> {
    return { fieldSelector: this.#o.fieldSelector, labelSelector: this.#o.labelSelector };
  }

  async #list(signal: AbortSignal): Promise<void> {
    const fresh = new Map<string, T>();
    let cont: string | undefined;
    let rv = '';
    do {
      const page: ListResult<T> = await this.#o.client.request<ListResult<T>>('GET', this.#o.path, {
        query: { ...this.#query(), limit: this.#o.pageSize ?? 500, continue: cont },
        signal,
      });
      for (const item of page.items ?? []) {
        if (this.#o.filter && !this.#o.filter(item)) continue;
        const obj = this.#transform(item);
        fresh.set(keyOf(obj), obj);
      }
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion ?? rv;
    } while (cont);
    // Replace the cache, telling handlers what changed since the last list.
    const h = this.#o.handlers;
    for (const [key, old] of this.#cache) {
      if (!fresh.has(key)) {
        this.#cache.delete(key);
        h?.onDelete?.(old);
      }
    }
    for (const [key, obj] of fresh) {
      const old = this.#cache.get(key);
      this.#cache.set(key, obj);
      if (!old) h?.onAdd?.(obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
        h?.onUpdate?.(old, obj);
    }
    this.#resourceVersion = rv;
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncedWaiters) w();
      this.#syncedWaiters = [];
    }
  }

  async #watch(signal: AbortSignal): Promise<void> {
    let failure: Error | undefined;
    await this.#o.client.watch<T>(
      this.#o.path,
      {
        ...this.#query(),
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        // Spread reconnects of many agents over time, as client-go does.
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      },
      (event) => {
        if (failure !== undefined) return;
        if (event.type === 'ERROR') {
          const status = event.object as V1Status;
          failure = new ApiError(
            status.code ?? 0,
            `watch error: ${status.message ?? JSON.stringify(status)}`,
            { body: status },
          );
          return;
        }
        const rv = event.object.metadata?.resourceVersion;
        if (rv) this.#resourceVersion = rv;
        if (event.type === 'BOOKMARK') return;
        if (this.#o.filter && !this.#o.filter(event.object)) return;
        const obj = this.#transform(event.object);
        const key = keyOf(obj);
        const old = this.#cache.get(key);
        const h = this.#o.handlers;
        if (event.type === 'DELETED') {
          this.#cache.delete(key);
          h?.onDelete?.(old ?? obj);
        } else {
          this.#cache.set(key, obj);
          if (old) h?.onUpdate?.(old, obj);
          else h?.onAdd?.(obj);
        }
      },
      signal,
    );
    if (failure !== undefined) {
      if (expired(failure)) {
        this.#resourceVersion = '';
        return;
      }
      throw failure;
    }
  }
}

/** 410 Gone: the resourceVersion a watch starts from is older than the server keeps; list again. */
function expired(err: unknown): boolean {
  return err instanceof ApiError && err.status === 410;
}

import { abortOf } from '../abort.js';
import type { Logger } from '../log.js';
import type { KubeClient } from './client.js';
import { Informer, keyOf, type InformerHandlers, type KubeObject } from './informer.js';

/** What a controller reads from an informer: its own, or its part of a shared one. */
export interface ObjectCache<T> {
  get(key: string): T | undefined;
  list(): IterableIterator<T>;
  readonly size: number;
  whenSynced(): Promise<void>;
  /** Keeps the cache current until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
}

export interface SharedInformerOptions<T> {
  readonly client: KubeClient;
  readonly path: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
  /** Which view an object belongs to (for pods: `spec.nodeName`), or undefined for none. */
  readonly partition: (obj: T) => string | undefined;
  readonly logger?: Logger;
}

/**
 * One list + watch split into views by a partition key, so many nodes in one process share a
 * single watch of their pods (or Nodes) instead of one each. Objects of no registered view are
 * not cached. Views are registered before `run`; the partition key of an object never changes
 * (a pod's node, a Node's name).
 */
export class SharedInformer<T extends KubeObject> {
  readonly #informer: Informer<T>;
  readonly #views = new Map<string, View<T>>();
  readonly #partition: (obj: T) => string | undefined;
  #started = false;

  constructor(options: SharedInformerOptions<T>) {
    this.#partition = options.partition;
    const viewOf = (obj: T): View<T> | undefined => {
      const part = this.#partition(obj);
      return part === undefined ? undefined : this.#views.get(part);
    };
    this.#informer = new Informer<T>({
      client: options.client,
      path: options.path,
      ...(options.fieldSelector ? { fieldSelector: options.fieldSelector } : {}),
      ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      filter: (obj) => viewOf(obj) !== undefined,
      handlers: {
        onAdd: (obj) => viewOf(obj)?.add(obj),
        onUpdate: (old, obj) => viewOf(obj)?.update(old, obj),
        onDelete: (obj) => viewOf(obj)?.delete(obj),
      },
    });
  }

  /** The objects of partition `part`, with their own handlers. */
  view(part: string, handlers: InformerHandlers<T> = {}): ObjectCache<T> {
    // Objects listed before a view exists are not kept: a late view would miss them.
    if (this.#started) throw new Error(`the view of '${part}' must be made before run`);
    if (this.#views.has(part)) throw new Error(`a view of '${part}' exists already`);
    const v = new View<T>(handlers, this.#informer);
    this.#views.set(part, v);
    return v;
  }

  get size(): number {
    return this.#informer.size;
  }

  run(signal: AbortSignal): Promise<void> {
    this.#started = true;
    return this.#informer.run(signal);
  }
}

class View<T extends KubeObject> implements ObjectCache<T> {
  readonly #cache = new Map<string, T>();
  readonly #handlers: InformerHandlers<T>;
  readonly #shared: Informer<T>;

  constructor(handlers: InformerHandlers<T>, shared: Informer<T>) {
    this.#handlers = handlers;
    this.#shared = shared;
  }

  add(obj: T): void {
    this.#cache.set(keyOf(obj), obj);
    this.#handlers.onAdd?.(obj);
  }

  update(old: T, obj: T): void {
    this.#cache.set(keyOf(obj), obj);
    this.#handlers.onUpdate?.(old, obj);
  }

  delete(obj: T): void {
    this.#cache.delete(keyOf(obj));
    this.#handlers.onDelete?.(obj);
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  list(): IterableIterator<T> {
    return this.#cache.values();
  }

  get size(): number {
    return this.#cache.size;
  }

  whenSynced(): Promise<void> {
    return this.#shared.whenSynced();
  }

  /** The shared informer is run by its owner; a view only lasts as long as `signal`. */
  async run(signal: AbortSignal): Promise<void> {
    await abortOf(signal);
  }
}

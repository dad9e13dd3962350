/** Options of a {@link LruCache}. */
export interface LruCacheOptions {
  /** At most this many entries; past it the least recently used goes. At least 1. */
  readonly maxEntries: number;
}

/**
 * A bounded map whose entries expire: a hit refreshes the entry's recency (not its expiry), and
 * a full cache drops its least recently used entry, so entries in use survive a flood of new ones.
 */
export class LruCache<V> {
  readonly #max: number;
  // A Map iterates in insertion order: re-inserting on a hit keeps the coldest entry first.
  readonly #entries = new Map<string, { value: V; untilMs: number }>();

  constructor(options: LruCacheOptions) {
    if (!Number.isInteger(options.maxEntries) || options.maxEntries < 1)
      throw new RangeError(
        `maxEntries must be a positive integer, not ${String(options.maxEntries)}`,
      );
    this.#max = options.maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The live value under `key`, or undefined (expired entries are dropped on the way). */
  get(key: string, nowMs = Date.now()): V | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    if (e.untilMs <= nowMs) return undefined;
    this.#entries.set(key, e);
    return e.value;
  }

  /** Stores `value` for `ttlMs` milliseconds as the most recently used entry. */
  set(key: string, value: V, ttlMs: number, nowMs = Date.now()): void {
    this.#entries.delete(key);
    while (this.#entries.size >= this.#max) {
      const coldest = this.#entries.keys().next();
      if (coldest.done) break;
      this.#entries.delete(coldest.value);
    }
    this.#entries.set(key, { value, untilMs: nowMs + ttlMs });
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}

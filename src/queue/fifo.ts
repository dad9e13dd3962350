/**
 * A first-in first-out list with O(1) amortised `push` and `shift`. `Array.prototype.shift` moves
 * every remaining element, which is quadratic for a queue of tens of thousands of keys; this one
 * advances a head index instead and compacts the array once the consumed prefix is at least half
 * of it.
 */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** The number of items in the list. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Appends `item` at the tail. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** Removes and returns the item at the head, or `undefined` when the list is empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    // Drop the reference so a consumed item can be garbage-collected before the next compaction.
    this.#items[this.#head] = undefined;
    this.#head += 1;
    if (this.#head === this.#items.length) {
      this.clear();
    } else if (this.#head >= COMPACT_MIN && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes every item. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

// Below this many consumed slots compaction would cost more than the memory it returns.
const COMPACT_MIN = 1024;

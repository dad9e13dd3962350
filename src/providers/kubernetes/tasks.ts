/**
 * The work a provider runs in the background (its watches, its capacity loop, the re-creation of
 * a remote pod deleted behind its back) and waits for when it closes. A task is held only while
 * it runs: one that settled leaves at once, so a provider that re-creates pods for months holds
 * no more than the tasks still running.
 */
export class BackgroundTasks {
  readonly #running = new Set<Promise<void>>();

  /** Tasks that have not settled yet. */
  get size(): number {
    return this.#running.size;
  }

  /**
   * Holds `task` until it settles. Its rejection is dropped: a task reports its own failures
   * (the provider logs them) and nothing awaits its outcome but {@link settled}.
   */
  add(task: Promise<unknown>): void {
    const held: Promise<void> = task.then(
      () => {
        this.#running.delete(held);
      },
      () => {
        this.#running.delete(held);
      },
    );
    this.#running.add(held);
  }

  /** Resolves once every task added so far (and any added meanwhile) has settled; never rejects. */
  async settled(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running);
  }
}

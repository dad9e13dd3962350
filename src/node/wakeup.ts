/**
 * A sleep that can be cut short: `wait(ms)` resolves after `ms` or at the next `fire()`, whichever
 * comes first. A `fire()` while nobody waits is remembered for the next `wait`.
 */
export class Wakeup {
  #pending = false;
  #wake: (() => void) | undefined;

  fire(): void {
    if (this.#wake) this.#wake();
    else this.#pending = true;
  }

  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#pending || signal.aborted) {
      this.#pending = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }
}

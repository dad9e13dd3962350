import { invalidInput, isRetryable } from '../errors.js';
import { Fifo } from './fifo.js';

/**
 * The longest delay `setTimeout` honours (2^31-1 ms, about 24.8 days); a longer one fires at once.
 */
const MAX_TIMER_DELAY_MS = 2_147_483_647;

export interface WorkQueueOptions {
  /** Names the queue in error messages, logs and metrics. A non-empty string. */
  readonly name: string;
  /**
   * Processes one key. It should re-read the current state of the object the key names rather than
   * rely on why the key was added: adds are coalesced, so one run may stand for many events.
   * Resolving is success; rejecting (or throwing) is a failure, retried as `shouldRetry` decides.
   * `signal` is the one passed to {@link WorkQueue.run}: it aborts when the queue shuts down, and
   * the run is awaited even then, so the handler should stop early when it can.
   */
  readonly handler: (key: string, signal: AbortSignal) => Promise<void>;
  /** How many keys are processed at once. A positive integer. Default: 10. */
  readonly workers?: number;
  /**
   * The delay before the first retry of a key; it doubles with every further consecutive failure
   * of that key (`baseBackoffMs * 2^(attempt-1)`, capped at `maxBackoffMs`). No jitter is added:
   * failures of different keys are already spread out by the workers limit, and it keeps the
   * schedule predictable. Positive, at most `maxBackoffMs`. Default: 100 ms.
   */
  readonly baseBackoffMs?: number;
  /**
   * The cap of the retry delay. At least `baseBackoffMs`, at most 2^31-1. Default: 300 000 ms
   * (5 minutes).
   */
  readonly maxBackoffMs?: number;
  /**
   * Whether a failed run is retried. `attempt` counts the key's consecutive failed runs, this one
   * included (1 for the first failure). Not called once `maxAttempts` is reached, nor during
   * shutdown. Must not throw: an exception is rethrown as an uncaught exception, and the key is
   * dropped. Default: {@link isRetryable} (`Unavailable`, `Internal` and foreign errors are
   * retried; `NotFound`, `InvalidInput` and the other final codes are not).
   */
  readonly shouldRetry?: (error: unknown, key: string, attempt: number) => boolean;
  /**
   * The most runs of a key that may fail in a row; the failure that reaches it is not retried. A
   * positive integer or `Infinity`. Default: `Infinity` (`shouldRetry` alone decides).
   */
  readonly maxAttempts?: number;
  /**
   * Called after every failed run, once the retry (if any) is scheduled: the place to log. Must not
   * throw: an exception is rethrown as an uncaught exception. Default: none.
   */
  readonly onError?: (key: string, error: unknown, attempt: number, willRetry: boolean) => void;
}

/** A snapshot of a queue's counters; see {@link WorkQueue.stats}. */
export interface WorkQueueStats {
  /** Keys waiting for a worker. */
  readonly queued: number;
  /** Keys whose handler is running. */
  readonly inFlight: number;
  /** Keys with a pending delayed add (from `addAfter` or a scheduled retry). */
  readonly delayed: number;
  /** Handler runs that resolved, since construction. */
  readonly processed: number;
  /** Handler runs that rejected, since construction. */
  readonly failed: number;
  /** Failed runs that were retried, since construction. */
  readonly retried: number;
}

/**
 * The delay before retrying a key that failed `attempt` times in a row: `baseBackoffMs` doubled
 * `attempt - 1` times, capped at `maxBackoffMs`.
 */
export function backoffDelayMs(
  attempt: number,
  baseBackoffMs: number,
  maxBackoffMs: number,
): number {
  // 2 ** attempt overflows to Infinity for a very large attempt, which Math.min caps as well.
  return Math.min(maxBackoffMs, baseBackoffMs * 2 ** (attempt - 1));
}

type State = 'new' | 'running' | 'stopping' | 'stopped';

interface DelayedAdd {
  /** On the `performance.now()` clock, which does not jump with the wall clock. */
  readonly dueAtMs: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * A keyed work queue for controllers, after client-go's workqueue and the Go virtual-kubelet's
 * queue: it carries keys (`namespace/name`), not objects, and a handler re-reads the state by key.
 *
 * - A key is queued at most once: adding a queued key does nothing.
 * - A key is never processed by two workers at once. Adding a key while its handler runs marks it
 *   dirty: it is queued again when that run ends, so the change that caused the add is seen, and
 *   any number of adds during one run cause one more run.
 * - Distinct keys are started in the order they were queued (FIFO); with more than one worker they
 *   may finish in any order.
 * - A failed run is retried after a per-key exponential backoff while `shouldRetry` says so and
 *   `maxAttempts` is not reached; a success resets the key's backoff. A key that was added again
 *   during the failed run runs again at once instead, which stands in for the retry.
 * - Nothing here blocks: `add`, `addAfter` and `forget` are O(1) and synchronous; handlers start
 *   in a later microtask, never inside the caller's `add`.
 *
 * Lifecycle: keys may be added before {@link run}; they are processed once it starts. Aborting
 * the run's signal stops the queue for good: queued keys are dropped, timers are cleared, running
 * handlers are awaited, and later adds are ignored.
 */
export class WorkQueue {
  readonly #name: string;
  readonly #handler: (key: string, signal: AbortSignal) => Promise<void>;
  readonly #workers: number;
  readonly #baseBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #shouldRetry: (error: unknown, key: string, attempt: number) => boolean;
  readonly #maxAttempts: number;
  readonly #onError:
    ((key: string, error: unknown, attempt: number, willRetry: boolean) => void) | undefined;

  // `#fifo` holds exactly the keys of `#queued`, in order; the set answers "is it queued" in O(1).
  // A key is in at most one of `#queued` and `#inFlight`.
  readonly #fifo = new Fifo<string>();
  readonly #queued = new Set<string>();
  readonly #inFlight = new Set<string>();
  /** In-flight keys that were added again during their run. */
  readonly #dirty = new Set<string>();
  /** In-flight keys forgotten during their run: a failure of that run is not retried. */
  readonly #forgotten = new Set<string>();
  readonly #delayed = new Map<string, DelayedAdd>();
  /** Consecutive failed runs per key; a key without failures has no entry. */
  readonly #failures = new Map<string, number>();

  #state: State = 'new';
  #signal: AbortSignal | undefined;
  #pumpScheduled = false;
  #idleWaiters: (() => void)[] = [];
  #resolveStopped: (() => void) | undefined;
  #processed = 0;
  #failed = 0;
  #retried = 0;

  constructor(options: WorkQueueOptions) {
    const name: unknown = options.name;
    if (typeof name !== 'string' || name === '') {
      throw invalidInput(`WorkQueue: name must be a non-empty string, got ${describe(name)}`);
    }
    const where = `WorkQueue "${name}"`;
    this.#name = name;
    this.#handler = requireFunction(options.handler, `${where}: handler`);
    this.#workers = options.workers ?? 10;
    if (!Number.isSafeInteger(this.#workers) || this.#workers < 1) {
      throw invalidInput(
        `${where}: workers must be a positive integer, got ${describe(this.#workers)}`,
      );
    }
    this.#baseBackoffMs = options.baseBackoffMs ?? 100;
    this.#maxBackoffMs = options.maxBackoffMs ?? 300_000;
    if (!isDelayMs(this.#maxBackoffMs) || this.#maxBackoffMs <= 0) {
      throw invalidInput(
        `${where}: maxBackoffMs must be a positive number of at most ${String(MAX_TIMER_DELAY_MS)}, got ${describe(this.#maxBackoffMs)}`,
      );
    }
    if (!isDelayMs(this.#baseBackoffMs) || this.#baseBackoffMs <= 0) {
      throw invalidInput(
        `${where}: baseBackoffMs must be a positive number, got ${describe(this.#baseBackoffMs)}`,
      );
    }
    if (this.#baseBackoffMs > this.#maxBackoffMs) {
      throw invalidInput(
        `${where}: baseBackoffMs (${String(this.#baseBackoffMs)}) must not exceed maxBackoffMs (${String(this.#maxBackoffMs)})`,
      );
    }
    this.#maxAttempts = options.maxAttempts ?? Infinity;
    if (
      !(Number.isSafeInteger(this.#maxAttempts) && this.#maxAttempts >= 1) &&
      this.#maxAttempts !== Infinity
    ) {
      throw invalidInput(
        `${where}: maxAttempts must be a positive integer or Infinity, got ${describe(this.#maxAttempts)}`,
      );
    }
    this.#shouldRetry =
      options.shouldRetry === undefined
        ? isRetryable
        : requireFunction(options.shouldRetry, `${where}: shouldRetry`);
    this.#onError =
      options.onError === undefined
        ? undefined
        : requireFunction(options.onError, `${where}: onError`);
  }

  /** The queue's name, as given in the options. */
  get name(): string {
    return this.#name;
  }

  /**
   * Queues `key` to be processed as soon as a worker is free. Idempotent: a key that is already
   * queued keeps its place. If the key is being processed, it is queued again once that run ends
   * (once, however many times it is added meanwhile). Cancels the key's pending delayed add or
   * retry, since the key now runs sooner. Ignored once the queue is stopping.
   */
  add(key: string): void {
    if (this.#closed) return;
    this.#cancelDelayed(key);
    this.#enqueue(key);
  }

  /**
   * Queues `key` (as {@link add} does) once `delayMs` milliseconds have passed, whether or not it
   * is queued or running now: it is a request to look at the key again later. A key has at most
   * one pending delayed add; when it already has one, the earlier deadline wins. A `delayMs` of 0
   * or less is {@link add}. A delay beyond 2^31-1 ms (about 24.8 days, the longest a timer waits)
   * is shortened to that: the handler re-reads the state and may ask again. Until it fires, the
   * timer keeps the process alive; stopping the run clears it. Ignored once the queue is stopping.
   *
   * @throws RangeError when `delayMs` is NaN.
   */
  addAfter(key: string, delayMs: number): void {
    if (Number.isNaN(delayMs)) {
      throw new RangeError(`WorkQueue "${this.#name}": addAfter delayMs must be a number, got NaN`);
    }
    if (this.#closed) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    this.#addLater(key, Math.min(delayMs, MAX_TIMER_DELAY_MS));
  }

  /**
   * Forgets the key's failures: resets its backoff and cancels its pending delayed add or retry.
   * If the key is running, a failure of that run is not retried. A key that is queued, or was
   * added again while running, stays so: `forget` undoes delays and retries, not adds. Call it
   * when the object behind the key is gone. Idempotent.
   */
  forget(key: string): void {
    this.#cancelDelayed(key);
    this.#failures.delete(key);
    if (this.#inFlight.has(key)) this.#forgotten.add(key);
  }

  /** Whether `key` is queued, being processed, or has a pending delayed add or retry. */
  has(key: string): boolean {
    return this.#queued.has(key) || this.#inFlight.has(key) || this.#delayed.has(key);
  }

  /** A snapshot of the queue's sizes and counters. O(1). */
  stats(): WorkQueueStats {
    return {
      queued: this.#fifo.length,
      inFlight: this.#inFlight.size,
      delayed: this.#delayed.size,
      processed: this.#processed,
      failed: this.#failed,
      retried: this.#retried,
    };
  }

  /**
   * Starts `workers` workers and resolves once `signal` has aborted and every running handler
   * has settled. On abort, queued keys are dropped (not started), pending delayed adds and retries
   * are cancelled, and later adds are ignored; handlers see the abort through the same signal. A
   * queue runs once.
   *
   * @throws Error (as a rejection) when called a second time.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.#state !== 'new') {
      throw new Error(`WorkQueue "${this.#name}": run() may be called only once`);
    }
    this.#state = 'running';
    this.#signal = signal;
    const stopped = new Promise<void>((resolve) => {
      this.#resolveStopped = resolve;
    });
    const onAbort = (): void => {
      this.#stop();
    };
    if (signal.aborted) {
      this.#stop();
    } else {
      signal.addEventListener('abort', onAbort, { once: true });
      this.#schedulePump();
    }
    try {
      await stopped;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Resolves once no key is queued or being processed (keys that are only delayed do not count),
   * or once the queue has stopped. Before {@link run}, queued keys wait for it.
   */
  whenIdle(): Promise<void> {
    if (this.#isIdle) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idleWaiters.push(resolve);
    });
  }

  get #closed(): boolean {
    return this.#state === 'stopping' || this.#state === 'stopped';
  }

  get #isIdle(): boolean {
    return this.#fifo.length === 0 && this.#inFlight.size === 0;
  }

  #enqueue(key: string): void {
    if (this.#inFlight.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#fifo.push(key);
    this.#schedulePump();
  }

  #addLater(key: string, delayMs: number): void {
    const dueAtMs = performance.now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined) {
      if (pending.dueAtMs <= dueAtMs) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.#enqueue(key);
    }, delayMs);
    this.#delayed.set(key, { dueAtMs, timer });
  }

  #cancelDelayed(key: string): void {
    const pending = this.#delayed.get(key);
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    this.#delayed.delete(key);
  }

  // Starting handlers from a microtask coalesces a burst of adds into one pass and keeps handler
  // code from running inside the caller's add().
  #schedulePump(): void {
    if (this.#pumpScheduled || this.#state !== 'running') return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    const signal = this.#signal;
    if (signal === undefined) return;
    // Re-checks the state on every turn: a handler may abort the run synchronously.
    while (this.#state === 'running' && this.#inFlight.size < this.#workers) {
      const key = this.#fifo.shift();
      if (key === undefined) return;
      this.#queued.delete(key);
      this.#inFlight.add(key);
      void this.#process(key, signal);
    }
  }

  async #process(key: string, signal: AbortSignal): Promise<void> {
    let failed = false;
    let error: unknown;
    try {
      await this.#handler(key, signal);
    } catch (err) {
      failed = true;
      error = err;
    }
    this.#inFlight.delete(key);
    const dirty = this.#dirty.delete(key);
    const forgotten = this.#forgotten.delete(key);
    const running = this.#state === 'running';

    let report: (() => void) | undefined;
    if (!failed) {
      this.#processed += 1;
      this.#failures.delete(key);
    } else {
      this.#failed += 1;
      const attempt = (this.#failures.get(key) ?? 0) + 1;
      let willRetry = false;
      if (running && !forgotten && attempt < this.#maxAttempts) {
        try {
          willRetry = this.#shouldRetry(error, key, attempt);
        } catch (err) {
          raise(err);
        }
      }
      if (willRetry) {
        this.#failures.set(key, attempt);
        this.#retried += 1;
        // A dirty key runs again right away, which serves as the retry; its failure count stays,
        // so the backoff resumes if that run fails too.
        if (!dirty)
          this.#addLater(key, backoffDelayMs(attempt, this.#baseBackoffMs, this.#maxBackoffMs));
      } else {
        this.#failures.delete(key);
      }
      const onError = this.#onError;
      if (onError !== undefined) report = () => onError(key, error, attempt, willRetry);
    }

    if (dirty && running) this.#enqueue(key);
    this.#schedulePump();
    this.#settle();
    if (report !== undefined) {
      try {
        report();
      } catch (err) {
        raise(err);
      }
    }
  }

  #stop(): void {
    if (this.#state !== 'running') return;
    this.#state = 'stopping';
    for (const { timer } of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    this.#dirty.clear();
    this.#fifo.clear();
    this.#queued.clear();
    this.#settle();
  }

  /** Wakes idle waiters, and ends a stopping run once its last handler has settled. */
  #settle(): void {
    if (this.#state === 'stopping' && this.#inFlight.size === 0) {
      this.#state = 'stopped';
      this.#failures.clear();
      this.#forgotten.clear();
      this.#resolveStopped?.();
    }
    if (this.#isIdle && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

function isDelayMs(value: unknown): value is number {
  return typeof value === 'number' && value >= 0 && value <= MAX_TIMER_DELAY_MS;
}

function requireFunction<F>(value: F, what: string): F {
  if (typeof value !== 'function') {
    throw invalidInput(`${what} must be a function, got ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

// A throwing callback is a bug in the caller; surface it the way a throwing event listener is
// surfaced, without leaving the queue's state half updated.
function raise(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}

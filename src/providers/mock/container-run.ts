/**
 * One run of a container, from start to exit: what a container runtime would keep per container
 * instance. A restart makes a new run; the provider keeps the previous one for `previous` logs.
 */
import { LOG_FILL_LINE_BYTES } from './config.js';
import { ContainerLog } from './logs.js';

// One filler line shared by every log (lines are immutable strings): 100 MiB of filler costs a
// few thousand references, not 100 MiB.
const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789'
  .repeat(Math.ceil(LOG_FILL_LINE_BYTES / 36))
  .slice(0, LOG_FILL_LINE_BYTES - 1);

/** Appends `bytes` of filler, line breaks included, in lines of `LOG_FILL_LINE_BYTES`. */
function appendFiller(log: ContainerLog, bytes: number, at: Date): void {
  for (let left = bytes; left > 0; left -= LOG_FILL_LINE_BYTES) {
    log.append(left >= LOG_FILL_LINE_BYTES ? FILLER : FILLER.slice(0, left - 1), at);
  }
}

export interface ContainerRunOptions {
  readonly container: string;
  /** `namespace/name` of the pod, for the first log line. */
  readonly pod: string;
  readonly startedAt: Date;
  /** Milliseconds between tick lines; 0 for none. */
  readonly logIntervalMs: number;
  /** Bytes of filler lines written after the first line (see `MockConfig.logFillBytes`). */
  readonly logFillBytes?: number;
  /** Stamps the tick lines. */
  readonly clock: () => Date;
}

/**
 * A running container: it writes `mock: container <name> of <ns>/<pod> started` to its log at
 * once and `mock: <name> tick <n>` every `logIntervalMs` (an unref'd timer) until `stop()`, which
 * ends the log and fires `stopped`, so sessions with the container (follow, exec, attach) end.
 */
export class ContainerRun {
  readonly container: string;
  readonly startedAt: Date;
  readonly log = new ContainerLog();
  readonly #stopped = new AbortController();
  #stoppedAt: Date | undefined;
  #ticker: NodeJS.Timeout | undefined;

  constructor(options: ContainerRunOptions) {
    this.container = options.container;
    this.startedAt = options.startedAt;
    this.log.append(
      `mock: container ${options.container} of ${options.pod} started`,
      options.startedAt,
    );
    appendFiller(this.log, options.logFillBytes ?? 0, options.startedAt);
    if (options.logIntervalMs > 0) {
      let tick = 0;
      this.#ticker = setInterval(() => {
        tick += 1;
        this.log.append(`mock: ${options.container} tick ${String(tick)}`, options.clock());
      }, options.logIntervalMs);
      // The timers stand for a backend's containers; they must not keep a process alive.
      this.#ticker.unref();
    }
  }

  get running(): boolean {
    return this.#stoppedAt === undefined;
  }

  /** When the run stopped; undefined while it runs. */
  get stoppedAt(): Date | undefined {
    return this.#stoppedAt;
  }

  /** Fires when the run stops. */
  get stopped(): AbortSignal {
    return this.#stopped.signal;
  }

  /** Stops the run at `now`: no more ticks, the log ends, `stopped` fires. False if it had. */
  stop(now: Date): boolean {
    if (this.#stoppedAt !== undefined) return false;
    this.#stoppedAt = now;
    clearInterval(this.#ticker);
    this.#ticker = undefined;
    // The log first: followers woken by `stopped` must find it ended.
    this.log.end();
    this.#stopped.abort(new Error(`container ${this.container} stopped`));
    return true;
  }
}

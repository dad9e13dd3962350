/**
 * Container logs in memory, and reading them as the kubelet's CRI log reader does
 * (k8s: pkg/kubelet/kuberuntime/logs/logs.go).
 */
import { Readable } from 'node:stream';
import type { ContainerLogOptions } from '../../provider.js';
import { formatRfc3339NanoFixed } from '../../kubelet/time.js';

/** How many lines a container's log keeps; older lines are dropped, as by log rotation. */
export const MAX_LOG_LINES = 10_000;

export interface LogLine {
  readonly time: Date;
  /** Without the line break. */
  readonly text: string;
}

/**
 * The log of one container run: lines numbered from 0 in the order they were written, of which
 * the last `maxLines` are kept. Readers keep their own position (a line number), so a slow reader
 * slows nobody; one that falls behind the oldest kept line skips to it. Ends once, when the run
 * stops; nothing is appended afterwards.
 */
export class ContainerLog {
  readonly #maxLines: number;
  readonly #lines: LogLine[] = [];
  #first = 0;
  #ended = false;
  readonly #waiters = new Set<() => void>();

  /** `maxLines` defaults to `MAX_LOG_LINES`. */
  constructor(maxLines: number = MAX_LOG_LINES) {
    this.#maxLines = Math.max(1, maxLines);
  }

  /** The number of the oldest line kept. */
  get firstLine(): number {
    return this.#first;
  }

  /** The number the next line will get. */
  get nextLine(): number {
    return this.#first + this.#lines.length;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Line `n`, or undefined when it was dropped or is not written yet. */
  line(n: number): LogLine | undefined {
    return n < this.#first ? undefined : this.#lines[n - this.#first];
  }

  /** Appends a line (`text` without a line break); ignored once the log has ended. */
  append(text: string, time: Date): void {
    if (this.#ended) return;
    this.#lines.push({ time, text });
    const excess = this.#lines.length - this.#maxLines;
    if (excess > 0) {
      this.#lines.splice(0, excess);
      this.#first += excess;
    }
    this.#wake();
  }

  /** Ends the log: readers that follow it stop once they have read every line. Idempotent. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#wake();
  }

  /**
   * Resolves to true at the next append or at the end of the log (at once if it has ended), or
   * to false when `signal` fires first.
   */
  changed(signal: AbortSignal): Promise<boolean> {
    if (this.#ended) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.#waiters.delete(wake);
        resolve(false);
      };
      const wake = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      };
      this.#waiters.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }
}

async function* render(
  log: ContainerLog,
  options: ContainerLogOptions,
  now: Date,
  stop: AbortSignal,
): AsyncGenerator<Buffer> {
  // Without follow, the log is read as it is now; lines written meanwhile are not part of it.
  const end = log.nextLine;
  let next =
    options.tailLines === undefined
      ? log.firstLine
      : Math.max(log.firstLine, end - Math.floor(options.tailLines));
  // When both are given, the later instant wins.
  const since = Math.max(
    options.sinceTime?.getTime() ?? -Infinity,
    options.sinceSeconds === undefined ? -Infinity : now.getTime() - options.sinceSeconds * 1000,
  );
  let budget = options.limitBytes ?? Infinity;
  while (budget > 0 && !stop.aborted && (options.follow || next < end)) {
    next = Math.max(next, log.firstLine);
    const line = log.line(next);
    if (line === undefined) {
      if (!options.follow || log.ended) return;
      if (!(await log.changed(stop))) return;
      continue;
    }
    next += 1;
    if (line.time.getTime() < since) continue;
    const text = options.timestamps
      ? `${formatRfc3339NanoFixed(line.time)} ${line.text}\n`
      : `${line.text}\n`;
    let bytes = Buffer.from(text);
    // The byte limit counts the prefix and cuts the last line short.
    if (bytes.length > budget) bytes = bytes.subarray(0, budget);
    budget -= bytes.length;
    yield bytes;
  }
}

/**
 * A stream of `log` with the kubelet's options: `tailLines` is applied first, then the since
 * filter (lines stamped before the later of `sinceTime` and `now - sinceSeconds` are skipped),
 * then the `timestamps` prefix and the `limitBytes` budget. With `follow`, the stream waits for
 * new lines and ends when the log ends (the container stopped), when `signal` fires, or when the
 * consumer destroys it. The stream pulls lines only as fast as its consumer reads.
 */
export function readLog(
  log: ContainerLog,
  options: ContainerLogOptions,
  now: Date,
  signal: AbortSignal,
): Readable {
  const destroyed = new AbortController();
  const stop = AbortSignal.any([signal, destroyed.signal]);
  const stream = Readable.from(render(log, options, now, stop), { objectMode: false });
  // A generator waiting for new lines would otherwise hold on until the next line.
  stream.once('close', () => {
    destroyed.abort();
  });
  return stream;
}

import { setTimeout as delay } from 'node:timers/promises';

export interface WaitOptions {
  /** Default: 30 000 ms. */
  readonly timeoutMs?: number;
  /** Default: 100 ms. */
  readonly intervalMs?: number;
  /** What is being waited for, for the timeout message. */
  readonly what?: string;
}

/**
 * Polls `check` until it returns a value other than `undefined`/`false` and resolves to it.
 * Errors thrown by `check` count as "not yet"; the last one is reported on timeout.
 */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let lastError: unknown;
  let lastErrorAt = 0;
  let lastCheckFailed: boolean;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      lastCheckFailed = false;
    } catch (err) {
      lastError = err;
      lastErrorAt = Date.now();
      lastCheckFailed = true;
    }
    if (Date.now() > deadline) {
      // An error older than the last check is said to be so: it may not be the state at the end.
      const age = lastCheckFailed
        ? ''
        : `, ${String(Math.round((Date.now() - lastErrorAt) / 1000))} s before the end`;
      const why = lastError instanceof Error ? ` (last error${age}: ${lastError.message})` : '';
      throw new Error(
        `timed out after ${String(options.timeoutMs ?? 30_000)} ms waiting for ${options.what ?? 'a condition'}${why}`,
      );
    }
    await delay(options.intervalMs ?? 100);
  }
}

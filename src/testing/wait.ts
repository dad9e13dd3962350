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
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(
        `timed out after ${String(options.timeoutMs ?? 30_000)} ms waiting for ${options.what ?? 'a condition'}${why}`,
      );
    }
    await delay(options.intervalMs ?? 100);
  }
}

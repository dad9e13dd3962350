/**
 * Reading the core's streams with back-pressure, stopping on abort, never ending them.
 */
import type { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';

/** Resolves on the first of `events` or on abort. */
export function either(
  emitter: EventEmitter,
  events: readonly string[],
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      for (const event of events) emitter.off(event, done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    if (signal.aborted) {
      resolve();
      return;
    }
    for (const event of events) emitter.on(event, done);
    signal.addEventListener('abort', done, { once: true });
  });
}

const toBuffer = (chunk: unknown): Buffer =>
  Buffer.isBuffer(chunk)
    ? chunk
    : chunk instanceof Uint8Array
      ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      : Buffer.from(String(chunk));

/**
 * The next chunk of `stream` (paused mode), or undefined once it has ended, failed or been
 * destroyed, or `signal` fired.
 */
export async function nextChunk(
  stream: Readable,
  signal: AbortSignal,
): Promise<Buffer | undefined> {
  for (;;) {
    if (signal.aborted || stream.destroyed) return undefined;
    const chunk: unknown = stream.read();
    if (chunk !== null) return toBuffer(chunk);
    if (stream.readableEnded) return undefined;
    await either(stream, ['readable', 'end', 'close', 'error'], signal);
  }
}

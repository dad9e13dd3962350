/**
 * Reading and writing streams the mock does not own (the core's exec, attach and port-forward
 * streams): with back-pressure, stopping on abort, and never ending or destroying them.
 */
import type { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/** Resolves on the first of `events` or on abort. An 'error' among them is swallowed here. */
function either(
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
 * destroyed, or `signal` fired. Reads only when called, so a slow writer slows the reader.
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

/**
 * Writes `chunk`, waiting for 'drain' when the stream asks to. Resolves to false when the stream
 * is gone (ended, destroyed, failed) or `signal` fired; an absent stream swallows everything.
 */
export async function write(
  stream: Writable | undefined,
  chunk: string | Uint8Array,
  signal: AbortSignal,
): Promise<boolean> {
  if (stream === undefined) return !signal.aborted;
  const open = (): boolean => !signal.aborted && !stream.destroyed && !stream.writableEnded;
  if (!open()) return false;
  if (stream.write(chunk)) return true;
  await either(stream, ['drain', 'close', 'error'], signal);
  return open();
}

/** Resolves when `signal` fires. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

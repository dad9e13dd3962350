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
 * The most bytes {@link nextChunk} hands over at once: what one message of stdin or port-forward
 * data carries at most. Each message costs the same whatever its size (framing, a trip through
 * both gRPC stacks, a wake-up of the other process), so what has piled up goes in one message;
 * it stays well below gRPC's default limit of a received message (4 MiB).
 */
export const MAX_CHUNK_BYTES = 1024 * 1024;

/**
 * Everything `stream` holds now, up to `maxBytes` (the rest stays in it), or undefined when it
 * holds nothing. A stream in object mode gives its chunks one by one: they are joined.
 */
function readBuffered(stream: Readable, maxBytes: number): Buffer | undefined {
  if (!stream.readableObjectMode) {
    const waiting = stream.readableLength;
    const chunk: unknown = waiting > 0 ? stream.read(Math.min(waiting, maxBytes)) : stream.read();
    return chunk === null ? undefined : toBuffer(chunk);
  }
  const parts: Buffer[] = [];
  let size = 0;
  while (size < maxBytes) {
    const chunk: unknown = stream.read();
    if (chunk === null) break;
    const bytes = toBuffer(chunk);
    parts.push(bytes);
    size += bytes.length;
    if (stream.readableLength === 0) break;
  }
  if (parts.length === 0) return undefined;
  const all = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
  if (all.length <= maxBytes) return all;
  stream.unshift(all.subarray(maxBytes));
  return all.subarray(0, maxBytes);
}

/**
 * The next chunk of `stream` (paused mode): everything it holds, up to `maxBytes`, joined; or
 * undefined once it has ended, failed or been destroyed, or `signal` fired.
 */
export async function nextChunk(
  stream: Readable,
  signal: AbortSignal,
  maxBytes: number = MAX_CHUNK_BYTES,
): Promise<Buffer | undefined> {
  for (;;) {
    if (signal.aborted || stream.destroyed) return undefined;
    const chunk = readBuffered(stream, maxBytes);
    if (chunk !== undefined) return chunk;
    if (stream.readableEnded) return undefined;
    await either(stream, ['readable', 'end', 'close', 'error'], signal);
  }
}

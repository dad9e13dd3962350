/**
 * Port forwarding to a mock pod: every port of every pod answers as an echo server.
 */
import type { Duplex } from 'node:stream';
import { nextChunk, write } from './streams.js';

/**
 * Writes back to `stream` everything read from it, with back-pressure. When the client ends its
 * side, or `gone` fires (the pod went away), ends ours. When `signal` fires it stops and leaves
 * the stream to the caller. Never rejects.
 */
export async function echo(stream: Duplex, gone: AbortSignal, signal: AbortSignal): Promise<void> {
  const stop = AbortSignal.any([signal, gone]);
  for (;;) {
    const chunk = await nextChunk(stream, stop);
    if (chunk === undefined) break;
    if (!(await write(stream, chunk, stop))) break;
  }
  if (!signal.aborted && !stream.destroyed && !stream.writableEnded) stream.end();
}

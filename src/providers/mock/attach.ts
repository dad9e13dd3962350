/**
 * `kubectl attach` to a mock container. Its main process behaves like `cat` writing to its log:
 * every line read from stdin is appended to the container's log, and the session's stdout gets
 * every line the log receives from the moment of attaching (the container's own lines and the
 * echoed ones, so other sessions and `kubectl logs` see them too).
 */
import { StringDecoder } from 'node:string_decoder';
import type { AttachStreams } from '../../provider.js';
import type { ContainerRun } from './container-run.js';
import { aborted, nextChunk, write } from './streams.js';

/**
 * The longest log line an attach session writes, in UTF-16 code units: longer input lines are
 * split, as container runtimes split log lines of more than 16 KiB (the CRI log format).
 */
export const MAX_LINE_CHARS = 16 * 1024;

/**
 * Runs an attach session until stdin ends (when given; the lines read so far are written out
 * first), the container stops (its last lines are written out first) or `signal` fires.
 * Never rejects; the caller tells apart why it ended.
 */
export async function attach(
  run: ContainerRun,
  streams: AttachStreams,
  clock: () => Date,
  signal: AbortSignal,
): Promise<void> {
  const log = run.log;
  const stop = AbortSignal.any([signal, run.stopped]);
  const newline = streams.tty ? '\r\n' : '\n';
  const inputDone = new AbortController();
  const wake = AbortSignal.any([stop, inputDone.signal]);
  let drainTo = Infinity;
  let next = log.nextLine;

  const output = async (): Promise<void> => {
    const stdout = streams.stdout;
    if (stdout === undefined) return;
    while (!signal.aborted && next < drainTo) {
      next = Math.max(next, log.firstLine);
      const line = log.line(next);
      if (line === undefined) {
        if (log.ended) return;
        await log.changed(wake);
        continue;
      }
      next += 1;
      if (!(await write(stdout, `${line.text}${newline}`, signal))) return;
    }
  };

  const input = async (): Promise<void> => {
    const stdin = streams.stdin;
    if (stdin === undefined) return;
    const decoder = new StringDecoder('utf8');
    const appendSplit = (line: string): void => {
      for (let at = 0; at < line.length || at === 0; at += MAX_LINE_CHARS)
        log.append(line.slice(at, at + MAX_LINE_CHARS), clock());
    };
    let pending = '';
    let lastWasCR = false;
    for (;;) {
      const chunk = await nextChunk(stdin, stop);
      if (chunk === undefined) break;
      let text = decoder.write(chunk);
      // A CR LF split between two chunks is one line break.
      if (lastWasCR && text.startsWith('\n')) text = text.slice(1);
      if (text === '') continue;
      lastWasCR = text.endsWith('\r');
      const lines = (pending + text).split(/\r\n|\r|\n/);
      pending = lines.pop() ?? '';
      for (const line of lines) appendSplit(line);
      // Input without line breaks must not grow a buffer without bound: a partial line is
      // written out in parts of at most MAX_LINE_CHARS, as a runtime splits long log lines.
      while (pending.length >= MAX_LINE_CHARS) {
        log.append(pending.slice(0, MAX_LINE_CHARS), clock());
        pending = pending.slice(MAX_LINE_CHARS);
      }
    }
    if (stop.aborted) return;
    pending += decoder.end();
    if (pending !== '') appendSplit(pending);
    // Stdin ended: write out what was echoed, then end the session.
    drainTo = log.nextLine;
    inputDone.abort();
  };

  const out = output();
  if (streams.stdin !== undefined) await input();
  else if (streams.stdout === undefined) await aborted(stop);
  await out;
}

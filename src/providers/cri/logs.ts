/**
 * Container logs as the runtime writes them for the kubelet: one file per container run, one
 * record per line, `<RFC 3339 nano time> <stdout|stderr> <P|F> <content>` (P: a partial line
 * continued by the next record, F: the line's end).
 *
 * Reading never loads a whole file: `tailLines` is found from the end backwards in chunks of
 * {@link CHUNK_BYTES}; output stops at `limitBytes`; `follow` reads only what was appended since
 * its last position, every `pollMs`, until the container is no longer running.
 */
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { ContainerLogOptions } from '../../provider.js';

export const CHUNK_BYTES = 64 * 1024;

/** One record of a CRI log file. */
export interface LogRecord {
  readonly time: string;
  readonly stream: 'stdout' | 'stderr';
  readonly partial: boolean;
  readonly content: string;
}

/** Parses one line of a CRI log file (without its newline); undefined for a malformed one. */
export function parseLogLine(line: string): LogRecord | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  if (a <= 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = line.slice(b + 1, b + 2);
  const content = line.charAt(b + 2) === ' ' ? line.slice(b + 3) : '';
  return { time: line.slice(0, a), stream, partial: tag === 'P', content };
}

/** What `kubectl logs` prints for a record. */
export function formatRecord(r: LogRecord, timestamps: boolean, atLineStart: boolean): string {
  const prefix = timestamps && atLineStart ? `${r.time} ` : '';
  return `${prefix}${r.content}${r.partial ? '' : '\n'}`;
}

/** The byte offset where the last `lines` lines of the file start (0 for the whole file). */
export async function tailOffset(path: string, lines: number): Promise<number> {
  const fh = await open(path, 'r');
  try {
    let pos = (await fh.stat()).size;
    let newlines = 0;
    const buf = Buffer.alloc(CHUNK_BYTES);
    // The file's last byte is a newline when the last record is complete: not a separator.
    let skipLast = true;
    while (pos > 0) {
      const len = Math.min(CHUNK_BYTES, pos);
      pos -= len;
      await fh.read(buf, 0, len, pos);
      for (let i = len - 1; i >= 0; i--) {
        if (buf[i] !== 0x0a) {
          skipLast = false;
          continue;
        }
        if (skipLast) {
          skipLast = false;
          continue;
        }
        newlines++;
        if (newlines === lines) return pos + i + 1;
      }
    }
    return 0;
  } finally {
    await fh.close();
  }
}

export interface ReadLogOptions extends ContainerLogOptions {
  /** While true, `follow` keeps reading. */
  readonly running: () => boolean;
  /** Default: 250. */
  readonly pollMs?: number;
}

/** A stream of the log at `path`, shaped by `options`. */
export function readCriLog(path: string, options: ReadLogOptions, signal: AbortSignal): Readable {
  const sinceMs =
    options.sinceTime?.getTime() ??
    (options.sinceSeconds !== undefined ? Date.now() - options.sinceSeconds * 1000 : undefined);
  let budget = options.limitBytes ?? Number.POSITIVE_INFINITY;
  async function* lines(): AsyncGenerator<Buffer> {
    let pos = options.tailLines !== undefined ? await tailOffset(path, options.tailLines) : 0;
    if (options.tailLines === 0) pos = (await stat(path)).size;
    let rest = '';
    let atLineStart = true;
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(CHUNK_BYTES);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK_BYTES, pos);
        if (bytesRead === 0) {
          if (!options.follow || signal.aborted || !options.running()) {
            // One last read: the container may have written just before it stopped.
            const again = await fh.read(buf, 0, CHUNK_BYTES, pos);
            if (again.bytesRead === 0) return;
            pos += again.bytesRead;
            rest += buf.subarray(0, again.bytesRead).toString('utf8');
          } else {
            await delay(options.pollMs ?? 250, undefined, { signal }).catch(() => undefined);
            continue;
          }
        } else {
          pos += bytesRead;
          rest += buf.subarray(0, bytesRead).toString('utf8');
        }
        const parts = rest.split('\n');
        rest = parts.pop() ?? '';
        const out: string[] = [];
        for (const line of parts) {
          const r = parseLogLine(line);
          if (!r) continue;
          if (sinceMs !== undefined && Date.parse(r.time) < sinceMs) continue;
          out.push(formatRecord(r, options.timestamps, atLineStart));
          atLineStart = !r.partial;
        }
        if (out.length === 0) continue;
        let chunk = Buffer.from(out.join(''));
        if (chunk.length >= budget) {
          chunk = chunk.subarray(0, budget);
          budget = 0;
          yield chunk;
          return;
        }
        budget -= chunk.length;
        yield chunk;
      }
    } finally {
      await fh.close();
    }
  }
  return Readable.from(lines(), { objectMode: false });
}

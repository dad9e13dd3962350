/**
 * Container logs as files. A container's stdout and stderr are one `O_APPEND` file per run
 * (`logs/<container>/<run>.log`) that the process writes directly, so logging goes on while the
 * agent is down and no pipe ties the process to the agent.
 *
 * Timestamps: the process writes raw bytes, so the agent stamps them when it sees them. While
 * it runs, it checks every running log every `monitorIntervalMs` and appends `<end offset>
 * <epoch ms>` to `<run>.log.idx`: every byte before that offset was written by then. A line's
 * time is that of the first entry that covers its end. Limits: times are as fine as the check
 * interval, and bytes written while the agent was down get the time it saw them on its return.
 *
 * Rotation: when a log passes `maxLogBytes`, the agent copies it to `<run>.log.1` (older copies
 * shift to `.2`, ...; `maxLogFiles` are kept) and truncates it; the process keeps appending to
 * the same file. Limits: bytes written between the copy and the truncation are lost, and a log
 * grows unbounded while the agent is down.
 */
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { invalidInput } from '../../errors.js';
import type { ContainerLogOptions } from '../../provider.js';
import { formatRfc3339NanoFixed } from '../../kubelet/time.js';

export const logPath = (podDir: string, container: string, run: number): string =>
  join(podDir, 'logs', container, `${String(run)}.log`);

export function ensureLogDir(podDir: string, container: string): void {
  mkdirSync(join(podDir, 'logs', container), { recursive: true });
}

const FOLLOW_POLL_MS = 200;

interface Entry {
  readonly end: number;
  readonly ms: number;
}

function readIndex(path: string): Entry[] {
  let text: string;
  try {
    text = readFileSync(`${path}.idx`, 'utf8');
  } catch {
    return [];
  }
  const out: Entry[] = [];
  for (const line of text.split('\n')) {
    const [end, ms] = line.split(' ').map(Number);
    if (end !== undefined && ms !== undefined && Number.isFinite(end) && Number.isFinite(ms))
      out.push({ end, ms });
  }
  return out;
}

const size = (path: string): number => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

/**
 * Stamps and rotates the logs of running containers (see the module comment). Keeps the size
 * it last saw per file; after an agent restart it starts from the index's last entry.
 */
export class LogStamper {
  readonly #seen = new Map<string, number>();
  readonly #maxBytes: number;
  readonly #maxFiles: number;

  constructor(maxBytes: number, maxFiles: number) {
    this.#maxBytes = maxBytes;
    this.#maxFiles = maxFiles;
  }

  /** Records that the bytes of `path` up to its current size exist at `now`; rotates. */
  stamp(path: string, now: number = Date.now()): void {
    const current = size(path);
    let seen = this.#seen.get(path);
    if (seen === undefined) seen = readIndex(path).at(-1)?.end ?? 0;
    if (current < seen) seen = 0; // truncated by someone else
    if (current > seen) {
      appendFileSync(`${path}.idx`, `${String(current)} ${String(now)}\n`);
      seen = current;
    }
    this.#seen.set(path, seen);
    if (current > this.#maxBytes) this.#rotate(path);
  }

  /** Forgets a file (its run ended and it was stamped a last time). */
  forget(path: string): void {
    this.#seen.delete(path);
  }

  #rotate(path: string): void {
    for (let i = this.#maxFiles; i >= 1; i--) {
      const from = i === 1 ? path : `${path}.${String(i - 1)}`;
      const to = `${path}.${String(i)}`;
      if (i === this.#maxFiles) {
        rmSync(to, { force: true });
        rmSync(`${to}.idx`, { force: true });
      }
      if (i > 1 && existsSync(from)) {
        renameSync(from, to);
        if (existsSync(`${from}.idx`)) renameSync(`${from}.idx`, `${to}.idx`);
      }
    }
    copyFileSync(path, `${path}.1`);
    if (existsSync(`${path}.idx`)) copyFileSync(`${path}.idx`, `${path}.1.idx`);
    truncateSync(path, 0);
    rmSync(`${path}.idx`, { force: true });
    this.#seen.set(path, 0);
  }
}

interface Line {
  readonly bytes: Buffer;
  readonly ms: number;
}

/** The lines of one file with their times; a last line without a line break is included. */
function linesOf(path: string, from: number, fallbackMs: number): { lines: Line[]; end: number } {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch {
    return { lines: [], end: from };
  }
  const index = readIndex(path);
  const lines: Line[] = [];
  let start = from;
  let k = 0;
  while (start < data.length) {
    const nl = data.indexOf(10, start);
    const end = nl === -1 ? data.length : nl + 1;
    while (k < index.length && (index[k]?.end ?? 0) < end) k++;
    lines.push({ bytes: data.subarray(start, end), ms: index[k]?.ms ?? fallbackMs });
    start = end;
  }
  return { lines, end: data.length };
}

export interface LogSource {
  /** The current file of the run. */
  readonly path: string;
  /** Rotated files kept (they are `path.1` ... `path.N`). */
  readonly maxFiles: number;
  /** Whether the run has ended (then `follow` stops at the end of the file). */
  readonly ended: () => boolean;
}

/**
 * A stream of a run's log with the kubelet's options (tail first, then since, then the
 * timestamps prefix and the byte limit). With `follow` it waits for new bytes until the run
 * ends, `signal` fires or the consumer destroys the stream.
 */
export function readLogFile(
  source: LogSource,
  options: ContainerLogOptions,
  signal: AbortSignal,
): Readable {
  const invalid = (value: number | undefined, min: number): boolean =>
    value !== undefined && !(Number.isFinite(value) && value >= min);
  if (invalid(options.tailLines, 0) || invalid(options.limitBytes, 1)) {
    throw invalidInput('tailLines must be at least 0 and limitBytes at least 1');
  }
  if (invalid(options.sinceSeconds, 0)) throw invalidInput('sinceSeconds must not be negative');
  const destroyed = new AbortController();
  const stop = AbortSignal.any([signal, destroyed.signal]);
  const stream = Readable.from(render(source, options, stop), { objectMode: false });
  stream.once('close', () => {
    destroyed.abort();
  });
  return stream;
}

async function* render(
  source: LogSource,
  options: ContainerLogOptions,
  stop: AbortSignal,
): AsyncGenerator<Buffer> {
  const now = Date.now();
  const since = Math.max(
    options.sinceTime?.getTime() ?? -Infinity,
    options.sinceSeconds === undefined ? -Infinity : now - options.sinceSeconds * 1000,
  );
  let budget = options.limitBytes ?? Infinity;
  const emit = (line: Line): Buffer | undefined => {
    if (line.ms < since || budget <= 0) return undefined;
    let bytes = options.timestamps
      ? Buffer.concat([Buffer.from(`${formatRfc3339NanoFixed(line.ms)} `), line.bytes])
      : line.bytes;
    if (bytes.length > budget) bytes = bytes.subarray(0, budget);
    budget -= bytes.length;
    return bytes;
  };
  const ended = source.ended();
  let all: Line[] = [];
  for (let i = source.maxFiles; i >= 1; i--) {
    all = all.concat(linesOf(`${source.path}.${String(i)}`, 0, now).lines);
  }
  const current = linesOf(source.path, 0, now);
  all = all.concat(current.lines);
  let position = current.end;
  // A last line still being written is left for follow to finish.
  let partial: Buffer = Buffer.alloc(0);
  if (options.follow && !ended && all.length > 0 && all.at(-1)?.bytes.at(-1) !== 10) {
    const last = all.pop();
    if (last) position -= last.bytes.length;
  }
  if (options.tailLines !== undefined) all = all.slice(Math.max(0, all.length - options.tailLines));
  for (const line of all) {
    const out = emit(line);
    if (out) yield out;
    if (budget <= 0) return;
  }
  if (!options.follow) return;
  while (!stop.aborted && budget > 0) {
    const runEnded = source.ended();
    const s = size(source.path);
    if (s < position) {
      // Rotated: the rest of what we were reading is at the start of `.1`.
      const rest = linesOf(`${source.path}.1`, position, Date.now()).lines;
      for (const line of rest) {
        const out = emit(line);
        if (out) yield out;
      }
      position = 0;
      continue;
    }
    if (s > position) {
      const { lines, end } = linesOf(source.path, position, Date.now());
      position = end;
      for (const line of lines) {
        const joined = partial.length > 0 ? Buffer.concat([partial, line.bytes]) : line.bytes;
        if (joined.at(-1) !== 10 && !runEnded) {
          partial = joined;
          continue;
        }
        partial = Buffer.alloc(0);
        const out = emit({ bytes: joined, ms: line.ms });
        if (out) yield out;
      }
      continue;
    }
    if (runEnded) {
      if (partial.length > 0) {
        const out = emit({ bytes: partial, ms: Date.now() });
        if (out) yield out;
      }
      return;
    }
    try {
      await delay(FOLLOW_POLL_MS, undefined, { signal: stop });
    } catch {
      return;
    }
  }
}

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
 * Rotation: when a check finds a log past `maxLogBytes`, the agent copies its last
 * `maxLogBytes` (whole lines when there are any) to `<run>.log.1` (older copies shift to
 * `.2`, ...; `maxLogFiles` are kept) and truncates it; the process keeps appending to the same
 * file. The copy is asynchronous, in chunks, and never more than `maxLogBytes`, so rotated
 * files stay within the limit. Limits: the current file grows past the limit by what the
 * process writes in one check interval (and without bound while the agent is down); a rotation
 * drops what came before its last `maxLogBytes` and the bytes written between the size check
 * and the truncation.
 *
 * Reading never loads a whole file: `tailLines` is found from the end backwards, newest file
 * first, and `since` from the index (up to its first entry not older), in chunks of
 * `CHUNK_BYTES`; output stops at `limitBytes`. `follow` reads only the bytes appended since its
 * last position. The stamping itself (a `stat` and a short append per running log and check)
 * stays synchronous; nothing that grows with a log is.
 */
import { appendFileSync, closeSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { open, rename, rm, stat, truncate } from 'node:fs/promises';
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
/** Bytes read (and buffered) at a time, per file. */
const CHUNK_BYTES = 64 * 1024;

/**
 * A rotation of a log file: `[base, end)` of the file went to `.1`, then the file was
 * truncated. Recorded (before anything is touched) for the followers in this process, which
 * stop reading the file once it changes and go on from `.1`.
 */
class Rotation {
  base = 0;
  end = 0;
  /** Whether the file was truncated (a rotation that failed before leaves it as it was). */
  truncated = false;
  /** Counts the rotations of the file, from 1. */
  readonly seq: number;
  readonly settled: Promise<void>;

  constructor(seq: number, run: (r: Rotation) => Promise<void>) {
    this.seq = seq;
    this.settled = run(this);
  }
}

/**
 * The last rotations of each log file being stamped, oldest first (as many as there are
 * rotated files, plus the one under way). A file's rotations run one at a time.
 */
const rotations = new Map<string, Rotation[]>();
const lastRotation = (path: string): Rotation | undefined => rotations.get(path)?.at(-1);

/** The part of a file handle the readers use. */
export interface LogFile {
  read(
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  stat(): Promise<{ readonly size: number; readonly ino: number }>;
  close(): Promise<void>;
}

/** Opens a log file for reading (rejects when it does not exist). */
export type OpenLogFile = (path: string) => Promise<LogFile>;

const openForReading: OpenLogFile = (path) => open(path, 'r');

const inode = async (path: string): Promise<number | undefined> => {
  try {
    return (await stat(path)).ino;
  } catch {
    return undefined;
  }
};

interface IndexBatch {
  readonly ends: number[];
  readonly ms: number[];
  /** The offset in the index file after the last entry in the batch. */
  readonly read: number;
}

/**
 * The entries of a log file's `.idx` (see the module comment) from byte `offset` on, a chunk
 * at a time; a last line without a break is left for later. A rotated file's index starts
 * with `base <offset>` (where its bytes were in the file it was copied from), skipped here.
 */
async function* indexBatches(logFile: string, offset: number): AsyncGenerator<IndexBatch> {
  let file;
  try {
    file = await open(`${logFile}.idx`, 'r');
  } catch {
    return;
  }
  try {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    let at = offset;
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, CHUNK_BYTES, at);
      const last = buffer.subarray(0, bytesRead).lastIndexOf(10);
      if (last === -1) return;
      const ends: number[] = [];
      const ms: number[] = [];
      for (const line of buffer.toString('latin1', 0, last).split('\n')) {
        const [a, b] = line.split(' ');
        const end = Number(a);
        const time = Number(b);
        if (a === '' || b === undefined || !Number.isFinite(end) || !Number.isFinite(time))
          continue;
        ends.push(end);
        ms.push(time);
      }
      at += last + 1;
      yield { ends, ms, read: at };
    }
  } finally {
    await file.close();
  }
}

/**
 * The times of one log file, read from its index as far as the reader has come: it holds the
 * entries from the reader's position to the end of what it is about to read.
 */
class TimeIndex {
  readonly #logFile: string;
  readonly #ends: number[] = [];
  readonly #ms: number[] = [];
  #read = 0;
  #lastMs = -Infinity;

  constructor(logFile: string) {
    this.#logFile = logFile;
  }

  /**
   * Makes `timeOf` right for line ends in `(from, to]` as far as the index has them, and
   * forgets the entries that end at or before `from`.
   */
  async cover(from: number, to: number): Promise<void> {
    let drop = 0;
    while (drop < this.#ends.length && (this.#ends[drop] ?? 0) <= from) drop++;
    if (drop > 0) {
      this.#ends.splice(0, drop);
      this.#ms.splice(0, drop);
    }
    if ((this.#ends.at(-1) ?? -Infinity) >= to) return;
    for await (const batch of indexBatches(this.#logFile, this.#read)) {
      this.#read = batch.read;
      for (const [i, end] of batch.ends.entries()) {
        // Times only go forward, so a clock step back cannot reorder lines.
        this.#lastMs = Math.max(batch.ms[i] ?? 0, this.#lastMs);
        if (end <= from) continue;
        this.#ends.push(end);
        this.#ms.push(this.#lastMs);
      }
      if ((this.#ends.at(-1) ?? -Infinity) >= to) break;
    }
  }

  /** The time of a line that ends at `end` (exclusive); `fallbackMs` when not stamped yet. */
  timeOf(end: number, fallbackMs: number): number {
    let lo = 0;
    let hi = this.#ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#ends[mid] ?? 0) < end) lo = mid + 1;
      else hi = mid;
    }
    return this.#ms[lo] ?? fallbackMs;
  }
}

/** An offset of `logFile` such that the lines ending at or before it are older than `sinceMs`. */
async function sinceBoundary(logFile: string, sinceMs: number): Promise<number> {
  let older = 0;
  let lastMs = -Infinity;
  for await (const batch of indexBatches(logFile, 0)) {
    for (const [i, end] of batch.ends.entries()) {
      lastMs = Math.max(batch.ms[i] ?? 0, lastMs);
      if (lastMs >= sinceMs) return older;
      older = end;
    }
  }
  return older;
}

/** Writes the index of a copy of `[start, end)` of `logFile` to `target`. */
async function writeShiftedIndex(
  logFile: string,
  target: string,
  start: number,
  end: number,
  nowMs: number,
): Promise<void> {
  const out = await open(target, 'w');
  try {
    let text = `base ${String(start)}\n`;
    let covered = false;
    for await (const batch of indexBatches(logFile, 0)) {
      for (const [i, e] of batch.ends.entries()) {
        if (e <= start) continue;
        covered = e >= end;
        text += `${String(Math.min(e, end) - start)} ${String(batch.ms[i] ?? nowMs)}\n`;
        if (covered) break;
      }
      await out.write(text);
      text = '';
      if (covered) break;
    }
    if (!covered) text += `${String(end - start)} ${String(nowMs)}\n`;
    await out.write(text);
  } finally {
    await out.close();
  }
}

/** The end offset in the last complete entry of an index (read from its end), or 0. */
function lastIndexedEnd(path: string): number {
  let fd: number;
  try {
    fd = openSync(`${path}.idx`, 'r');
  } catch {
    return 0;
  }
  try {
    const size = statSync(`${path}.idx`).size;
    const buffer = Buffer.alloc(Math.min(size, 256));
    readSync(fd, buffer, 0, buffer.length, size - buffer.length);
    const lines = buffer.toString('latin1').split('\n');
    lines.pop();
    const [end, ms] = (lines.at(-1) ?? '').split(' ').map(Number);
    return end !== undefined && Number.isFinite(end) && Number.isFinite(ms) ? end : 0;
  } finally {
    closeSync(fd);
  }
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
  readonly #rotating = new Map<string, Promise<void>>();
  readonly #maxBytes: number;
  readonly #maxFiles: number;

  constructor(maxBytes: number, maxFiles: number) {
    this.#maxBytes = maxBytes;
    this.#maxFiles = maxFiles;
  }

  /**
   * Records that the bytes of `path` up to its current size exist at `now` (one `stat` and a
   * short append); starts a rotation in the background when the file is past the limit. A file
   * being rotated is skipped.
   */
  stamp(path: string, now: number = Date.now()): void {
    if (this.#rotating.has(path)) return;
    const current = size(path);
    let seen = this.#seen.get(path);
    if (seen === undefined) seen = lastIndexedEnd(path);
    if (current < seen) seen = 0; // truncated by someone else
    if (current > seen) {
      appendFileSync(`${path}.idx`, `${String(current)} ${String(now)}\n`);
      seen = current;
    }
    this.#seen.set(path, seen);
    if (current > this.#maxBytes) {
      const kept = rotations.get(path) ?? [];
      const rotation = new Rotation((kept.at(-1)?.seq ?? 0) + 1, (r) =>
        this.#rotate(path, r, now)
          // A failed rotation is tried again at the next check.
          .catch(() => undefined)
          .finally(() => {
            this.#rotating.delete(path);
            if (this.#seen.has(path)) this.#seen.set(path, 0);
          }),
      );
      kept.push(rotation);
      if (kept.length > this.#maxFiles + 1) kept.shift();
      rotations.set(path, kept);
      this.#rotating.set(path, rotation.settled);
    }
  }

  /** Forgets a file (its run ended and it was stamped a last time). */
  forget(path: string): void {
    this.#seen.delete(path);
    rotations.delete(path);
  }

  /** Resolves when the rotations under way have finished. */
  async idle(): Promise<void> {
    await Promise.all(this.#rotating.values());
  }

  async #rotate(path: string, rotation: Rotation, now: number): Promise<void> {
    if (this.#maxFiles < 1) {
      rotation.end = Infinity;
      await truncate(path, 0);
      rotation.truncated = true;
      await rm(`${path}.idx`, { force: true });
      return;
    }
    const copy = `${path}.1.tmp`;
    const source = await open(path, 'r');
    let start: number;
    let end: number;
    try {
      end = (await source.stat()).size;
      start = Math.max(0, end - this.#maxBytes);
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, end - start));
      if (start > 0) {
        // Begin at a line start when the first chunk has one.
        const { bytesRead } = await source.read(buffer, 0, buffer.length, start - 1);
        const nl = buffer.subarray(0, bytesRead).indexOf(10);
        if (nl !== -1) start += nl;
      }
      if (end > start) {
        // End after the last line break in the last chunk: a write under way can show half.
        const from = Math.max(start, end - buffer.length);
        const { bytesRead } = await source.read(buffer, 0, end - from, from);
        const nl = buffer.subarray(0, bytesRead).lastIndexOf(10);
        if (nl !== -1) end = from + nl + 1;
      }
      const target = await open(copy, 'w');
      try {
        for (let at = start; at < end;) {
          const { bytesRead } = await source.read(buffer, 0, Math.min(buffer.length, end - at), at);
          if (bytesRead === 0) break;
          await target.write(buffer, 0, bytesRead, at - start);
          at += bytesRead;
        }
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
    rotation.base = start;
    rotation.end = end;
    await writeShiftedIndex(path, `${copy}.idx`, start, end, now);
    await truncate(path, 0);
    rotation.truncated = true;
    await rm(`${path}.idx`, { force: true });
    for (let i = this.#maxFiles; i >= 2; i--) {
      const from = `${path}.${String(i - 1)}`;
      const to = `${path}.${String(i)}`;
      await rm(`${to}.idx`, { force: true });
      await rename(`${from}.idx`, `${to}.idx`).catch(() => undefined);
      await rename(from, to).catch(() => undefined);
    }
    await rename(`${copy}.idx`, `${path}.1.idx`);
    await rename(copy, `${path}.1`);
  }
}

export interface LogSource {
  /** The current file of the run. */
  readonly path: string;
  /** Rotated files kept (they are `path.1` ... `path.N`). */
  readonly maxFiles: number;
  /** Whether the run has ended (then `follow` stops at the end of the file). */
  readonly ended: () => boolean;
  /** How log files are opened. Default: `fs/promises` `open` for reading. */
  readonly open?: OpenLogFile;
}

/** One chunk of a file, moved as the readers go; views into it are valid until it moves. */
class Window {
  readonly file: LogFile;
  readonly #buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  view: Buffer = Buffer.alloc(0);
  start = 0;

  constructor(file: LogFile) {
    this.file = file;
  }

  get end(): number {
    return this.start + this.view.length;
  }

  has(position: number): boolean {
    return position >= this.start && position < this.end;
  }

  /** Reads `[from, min(to, from + CHUNK_BYTES))`; false when nothing was there. */
  async load(from: number, to: number): Promise<boolean> {
    const length = Math.min(CHUNK_BYTES, to - from);
    const { bytesRead } =
      length > 0 ? await this.file.read(this.#buffer, 0, length, from) : { bytesRead: 0 };
    this.start = from;
    this.view = this.#buffer.subarray(0, bytesRead);
    return bytesRead === length && length > 0;
  }
}

/** The last line break in `[floor, at]`, or -1. */
async function lastNewline(w: Window, at: number, floor: number): Promise<number> {
  while (at >= floor) {
    if (!w.has(at)) {
      if (!(await w.load(Math.max(floor, at + 1 - CHUNK_BYTES), at + 1))) return -1;
    }
    const found = w.view.lastIndexOf(10, at - w.start);
    if (found !== -1 && w.start + found >= floor) return w.start + found;
    at = w.start - 1;
  }
  return -1;
}

/** The first line break in `[from, to)`, or -1. */
async function firstNewline(w: Window, from: number, to: number): Promise<number> {
  while (from < to) {
    if (!w.has(from) && !(await w.load(from, to))) return -1;
    const found = w.view.indexOf(10, from - w.start);
    if (found !== -1) return w.start + found < to ? w.start + found : -1;
    from = w.end;
  }
  return -1;
}

/**
 * Where the `need`-th line from the end of `[floor, end)` starts, or how many lines the range
 * has when it has fewer.
 */
async function tailStart(
  w: Window,
  end: number,
  floor: number,
  need: number,
): Promise<{ readonly start?: number; readonly lines: number }> {
  let count = 0;
  // A break at end - 1 ends the last line; every earlier one starts a line.
  let at = end - 2;
  while (at >= floor) {
    if (!w.has(at)) {
      if (!(await w.load(Math.max(floor, at + 1 - CHUNK_BYTES), at + 1))) break;
    }
    let i = at - w.start;
    while (i >= 0) {
      const found = w.view.lastIndexOf(10, i);
      if (found === -1 || w.start + found < floor) break;
      count++;
      if (count === need) return { start: w.start + found + 1, lines: count };
      i = found - 1;
    }
    at = w.start - 1;
  }
  return { lines: count + (end > floor ? 1 : 0) };
}

/** Output in chunks of about `CHUNK_BYTES`, cut at the byte limit. */
class Output {
  #budget: number;
  #buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  #length = 0;
  readonly #ready: Buffer[] = [];

  constructor(limitBytes: number) {
    this.#budget = limitBytes;
  }

  full(): boolean {
    return this.#budget <= 0;
  }

  /** Bytes left under the limit. */
  get remaining(): number {
    return this.#budget;
  }

  /** Copies `bytes` (they may be a view that changes later). */
  push(bytes: Buffer): void {
    this.pushRange(bytes, 0, bytes.length);
  }

  /** Copies `[start, end)` of `bytes`. */
  pushRange(bytes: Buffer, start: number, end: number): void {
    let from = start;
    const to = Math.min(end, start + this.#budget);
    this.#budget -= to - from;
    while (from < to) {
      const n = Math.min(CHUNK_BYTES - this.#length, to - from);
      bytes.copy(this.#buffer, this.#length, from, from + n);
      this.#length += n;
      from += n;
      if (this.#length === CHUNK_BYTES) {
        this.#ready.push(this.#buffer);
        this.#buffer = Buffer.allocUnsafe(CHUNK_BYTES);
        this.#length = 0;
      }
    }
  }

  /** What was pushed so far, to be yielded. */
  *take(): Generator<Buffer> {
    while (this.#ready.length > 0) {
      const chunk = this.#ready.shift();
      if (chunk) yield chunk;
    }
    if (this.#length > 0) {
      const last = Buffer.from(this.#buffer.subarray(0, this.#length));
      this.#length = 0;
      yield last;
    }
  }
}

interface Filter {
  readonly out: Output;
  readonly sinceMs: number;
  readonly timestamps: boolean;
  /** Whether bytes just read are still the file's (false once a rotation has begun). */
  readonly valid: () => boolean;
}

/** A file of the run, open for reading. */
interface Piece {
  readonly path: string;
  readonly window: Window | undefined;
  readonly size: number;
  readonly index: TimeIndex;
}

let prefixMs = NaN;
let prefix = Buffer.alloc(0);
const timestampPrefix = (ms: number): Buffer => {
  if (ms !== prefixMs) {
    prefixMs = ms;
    prefix = Buffer.from(`${formatRfc3339NanoFixed(ms)} `);
  }
  return prefix;
};

/**
 * The lines of `[from, to)` of a file through the filter (a last line without a break is one
 * too); returns the offset reached (`to` unless the byte limit or the file ran out first).
 */
async function* forward(
  w: Window,
  index: TimeIndex,
  from: number,
  to: number,
  fallbackMs: number,
  f: Filter,
): AsyncGenerator<Buffer, number> {
  const { out } = f;
  const load = async (start: number, end: number): Promise<boolean> =>
    (await w.load(start, end)) && f.valid();
  if (!f.valid()) return from;
  if (f.sinceMs === -Infinity && !f.timestamps) {
    // Lines need no splitting: copy the bytes through.
    let at = from;
    while (at < to && !out.full()) {
      // No more is read than the limit lets through.
      if (!w.has(at) && !(await load(at, Math.min(to, at + out.remaining)))) break;
      let stop = Math.min(w.end, to);
      if (stop < to && stop - at < out.remaining) {
        // Whole lines only: a rotation can end the range before the rest of a line is read,
        // and a follower then goes on elsewhere. A line longer than a chunk goes in pieces;
        // the byte limit cuts where it falls.
        const nl = w.view.lastIndexOf(10, stop - w.start - 1);
        if (nl >= at - w.start) stop = w.start + nl + 1;
        else if (at > w.start) {
          if (!(await load(at, Math.min(to, at + out.remaining)))) break;
          continue;
        }
      }
      out.pushRange(w.view, at - w.start, stop - w.start);
      at = stop;
      yield* out.take();
    }
    return at;
  }
  const line = (start: number, end: number): void => {
    const ms = index.timeOf(end, fallbackMs);
    if (ms < f.sinceMs) return;
    if (f.timestamps) out.push(timestampPrefix(ms));
    out.pushRange(w.view, start - w.start, end - w.start);
  };
  let at = from;
  while (at < to && !out.full()) {
    if (!w.has(at) && !(await load(at, to))) break;
    const windowEnd = Math.min(w.end, to);
    await index.cover(at, windowEnd);
    for (;;) {
      const found = w.view.indexOf(10, at - w.start);
      if (found === -1 || w.start + found + 1 > windowEnd) break;
      line(at, w.start + found + 1);
      at = w.start + found + 1;
      if (out.full()) break;
    }
    yield* out.take();
    if (out.full() || at >= to) break;
    if (windowEnd === to) {
      // A last line without a break.
      line(at, to);
      at = to;
      yield* out.take();
      break;
    }
    if (at > w.start || w.view.length < CHUNK_BYTES) {
      if (!(await load(at, to))) break;
      continue;
    }
    // A line longer than a chunk: find its end, then copy it through.
    const nl = await firstNewline(w, w.end, to);
    if (!f.valid()) break;
    const end = nl === -1 ? to : nl + 1;
    await index.cover(at, end);
    const ms = index.timeOf(end, fallbackMs);
    if (ms >= f.sinceMs) {
      if (f.timestamps) out.push(timestampPrefix(ms));
      for (let p = at; p < end && !out.full();) {
        if (!(await load(p, end))) break;
        out.push(w.view);
        p = w.end;
        yield* out.take();
      }
    }
    at = end;
  }
  return at;
}

async function openPiece(openFile: OpenLogFile, path: string): Promise<Piece> {
  const index = new TimeIndex(path);
  let file: LogFile;
  try {
    file = await openFile(path);
  } catch {
    return { path, window: undefined, size: 0, index };
  }
  const { size } = await file.stat();
  return { path, window: new Window(file), size, index };
}

const closePiece = async (piece: Piece | undefined): Promise<void> => {
  await piece?.window?.file.close().catch(() => undefined);
};

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

/** The run's files, newest first, opened with no rotation under way. */
async function openPieces(
  source: LogSource,
  openFile: OpenLogFile,
): Promise<{ pieces: Piece[]; rotation: Rotation | undefined }> {
  for (let attempt = 1; ; attempt++) {
    const rotation = lastRotation(source.path);
    await rotation?.settled;
    const pieces: Piece[] = [];
    for (let i = 0; i <= source.maxFiles; i++) {
      pieces.push(await openPiece(openFile, i === 0 ? source.path : `${source.path}.${String(i)}`));
    }
    // A rotation in between could show lines twice; a few tries find a quiet moment.
    if (lastRotation(source.path) === rotation || attempt === 3) return { pieces, rotation };
    await Promise.all(pieces.map(closePiece));
  }
}

async function* render(
  source: LogSource,
  options: ContainerLogOptions,
  stop: AbortSignal,
): AsyncGenerator<Buffer> {
  const openFile = source.open ?? openForReading;
  const now = Date.now();
  const sinceMs = Math.max(
    options.sinceTime?.getTime() ?? -Infinity,
    options.sinceSeconds === undefined ? -Infinity : now - options.sinceSeconds * 1000,
  );
  const f: Filter = {
    out: new Output(options.limitBytes ?? Infinity),
    sinceMs,
    timestamps: options.timestamps,
    valid: () => true,
  };
  const ended = source.ended();
  const { pieces, rotation } = await openPieces(source, openFile);
  const opened = new Set(pieces);
  try {
    const current = pieces[0];
    // Each file's end: a last line still being written is left for follow to finish.
    const ends = pieces.map((p) => p.size);
    if (options.follow && !ended && current?.window) {
      ends[0] = (await lastNewline(current.window, current.size - 1, 0)) + 1;
    }
    // Where output starts: the oldest file, or later for tail and since.
    let first = pieces.length - 1;
    let offset = 0;
    const tail = options.tailLines ?? Infinity;
    if (tail === 0) {
      first = 0;
      offset = ends[0] ?? 0;
    } else if (tail !== Infinity || sinceMs !== -Infinity) {
      let need = tail;
      for (const [i, piece] of pieces.entries()) {
        const end = ends[i] ?? 0;
        const w = piece.window;
        if (!w || end === 0) continue;
        let floor = 0;
        if (sinceMs !== -Infinity) {
          const boundary = Math.min(await sinceBoundary(piece.path, sinceMs), end);
          // The line that holds the boundary's byte is the first one not older.
          if (boundary >= end) floor = end;
          else if (boundary > 0) floor = (await lastNewline(w, boundary - 1, 0)) + 1;
        }
        first = i;
        offset = floor;
        if (need !== Infinity) {
          const found = await tailStart(w, end, floor, need);
          if (found.start !== undefined) {
            offset = found.start;
            break;
          }
          need -= found.lines;
          if (need <= 0) break;
        }
        if (floor > 0) break;
      }
    }
    for (let i = first; i >= 0; i--) {
      const piece = pieces[i];
      if (!piece?.window || f.out.full()) continue;
      yield* forward(piece.window, piece.index, i === first ? offset : 0, ends[i] ?? 0, now, f);
    }
    if (!options.follow || f.out.full()) return;
    yield* follow(source, openFile, current, ends[0] ?? 0, rotation, f, stop, opened);
  } finally {
    await Promise.all([...opened].map(closePiece));
  }
}

/**
 * The bytes appended to the current file from `from` on; after a rotation, the rest of the
 * old bytes from `.1`, then the file from its start.
 */
async function* follow(
  source: LogSource,
  openFile: OpenLogFile,
  start: Piece | undefined,
  from: number,
  rotationAtStart: Rotation | undefined,
  filter: Filter,
  stop: AbortSignal,
  opened: Set<Piece>,
): AsyncGenerator<Buffer> {
  let piece = start;
  let position = from;
  // Bytes from `position` up to this are known to hold no line break.
  let scanned = from;
  let seen = rotationAtStart;
  // A record forgotten at the end of the run is no new rotation.
  const f: Filter = {
    ...filter,
    valid: () => (lastRotation(source.path) ?? seen) === seen,
  };
  const startOver = (next: Piece | undefined): void => {
    if (next) opened.add(next);
    piece = next;
    position = 0;
    scanned = 0;
  };
  while (!stop.aborted && !f.out.full()) {
    const runEnded = source.ended();
    const now = Date.now();
    const rotation = lastRotation(source.path);
    if (rotation !== undefined && rotation !== seen) {
      await rotation.settled;
      if (!rotation.truncated) {
        seen = rotation;
        continue;
      }
      // Oldest first, the copies made since: the first holds the rest of what was being read,
      // from `position - base` on (what was written after its `end` is gone); the others
      // are read whole; then the file from its start.
      const missed = (rotations.get(source.path) ?? []).filter(
        (r) => r.truncated && r.seq > (seen?.seq ?? 0),
      );
      const copies: (Piece | undefined)[] = [];
      for (const [i] of missed.entries()) {
        const n = missed.length - i;
        copies.push(
          n <= source.maxFiles
            ? await openPiece(openFile, `${source.path}.${String(n)}`)
            : undefined,
        );
      }
      try {
        if (lastRotation(source.path) !== rotation) continue;
        seen = rotation;
        for (const [i, copy] of copies.entries()) {
          const r = missed[i];
          if (!copy?.window || !r) continue;
          let from = 0;
          if (r === missed[0]) {
            if (position >= r.end) continue;
            from = Math.max(0, position - r.base);
          }
          // A copy can end inside a line the writer was writing when the size was read; the
          // rest of that line went to the truncated file's lost bytes: only whole lines are
          // passed on. Open copies stay whole whatever rotates next.
          const nl = await lastNewline(copy.window, copy.size - 1, from);
          if (nl === -1) continue;
          yield* forward(copy.window, copy.index, from, nl + 1, now, filter);
        }
      } finally {
        await Promise.all(copies.map(closePiece));
      }
      // The same file, truncated: its index starts over too.
      startOver(piece && { ...piece, index: new TimeIndex(source.path) });
      continue;
    }
    if (!piece?.window) startOver(await openPiece(openFile, source.path));
    const w = piece?.window;
    if (!piece || !w) {
      if (runEnded) return;
    } else {
      const onDisk = await inode(source.path);
      const { size, ino } = await w.file.stat();
      if (onDisk !== undefined && onDisk !== ino) {
        // Replaced: finish the old file, then start the new one from its beginning.
        yield* forward(w, piece.index, position, size, now, f);
        startOver(await openPiece(openFile, source.path));
        continue;
      }
      if (size < position) {
        // Truncated, and not by a rotation here: start over.
        if (f.valid()) startOver(piece);
        continue;
      }
      if (size > scanned || (runEnded && size > position)) {
        let to = size;
        if (!runEnded) {
          const nl = await lastNewline(w, size - 1, scanned);
          to = nl === -1 ? position : nl + 1;
        }
        if (f.valid()) scanned = size;
        if (to > position) position = yield* forward(w, piece.index, position, to, now, f);
        continue;
      }
      if (runEnded) return;
    }
    try {
      await delay(FOLLOW_POLL_MS, undefined, { signal: stop });
    } catch {
      return;
    }
  }
}

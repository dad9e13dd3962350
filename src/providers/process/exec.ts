/**
 * Sessions with a running container: exec (a new process in the container's namespaces and
 * cgroup, with its env, working directory and user), attach (the main process's stdin FIFO and
 * its log), port-forward (to the pod's IP) and lifecycle hooks.
 *
 * A TTY is a pty made by `script` (util-linux) around the command; terminal sizes are applied
 * with `stty -F <pty>` on the pty that the command's process has as stdin, which delivers
 * SIGWINCH to its foreground process group.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { connect } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { invalidInput, unavailable } from '../../errors.js';
import type { AttachStreams, TerminalSize } from '../../provider.js';
import { privilegePrefix, shellQuote, type Tools } from './launch.js';
import type { Privileges } from './security.js';
import { descendants, isAlive, terminalOf, type ProcessRef } from './proc.js';

/** How long attach keeps copying output after stdin ended. */
const STDIN_SETTLE_MS = 300;

export interface ExecTarget {
  /** The container's main process, whose namespaces and working directory exec joins. */
  readonly main: ProcessRef;
  /** Whether the pod has namespaces to enter. */
  readonly namespaces: boolean;
  readonly env: ReadonlyMap<string, string>;
  readonly workingDir: string;
  /** The container's user, groups and capabilities (security.ts). Default: the agent's. */
  readonly privileges?: Privileges;
  /** `cgroup.procs` files the exec'd process joins. */
  readonly cgroupProcs: readonly string[];
}

/** The argv that runs `command` as described by `target`. */
export function execArgv(
  target: ExecTarget,
  command: readonly string[],
  tty: boolean,
  tools: Tools,
): string[] {
  const q = shellQuote;
  let cmd = command.map(q).join(' ');
  if (tty) cmd = `${q(tools.script)} -q -e -c ${q(cmd)} /dev/null`;
  const runAs = privilegePrefix(target.privileges, tools);
  const script = [
    ...target.cgroupProcs.map((f) => `echo 0 > ${q(f)} 2>/dev/null`),
    // In the container's mount namespace, so a working directory in a volume is the volume.
    `cd ${q(target.workingDir)} || exit 126`,
    `exec ${runAs}${cmd}`,
  ].join('\n');
  const inner = [tools.sh, '-c', script, 'vk-exec'];
  if (!target.namespaces) return inner;
  return [
    tools.nsenter,
    `--target=${String(target.main.pid)}`,
    '--mount',
    '--uts',
    '--ipc',
    '--pid',
    '--net',
    '--',
    ...inner,
  ];
}

/** Applies terminal sizes from `resize` to the pty of the first process below `root` that has one. */
async function applySizes(
  root: number,
  resize: AsyncIterable<TerminalSize>,
  stop: AbortSignal,
): Promise<void> {
  let pty: string | undefined;
  const find = async (): Promise<string | undefined> => {
    for (let i = 0; i < 40 && !stop.aborted; i++) {
      for (const pid of descendants(root)) {
        const t = terminalOf(pid);
        if (t) return t;
      }
      await delay(50);
    }
    return undefined;
  };
  try {
    for await (const size of resize) {
      if (stop.aborted) break;
      pty ??= await find();
      if (pty === undefined) continue;
      spawnSync('stty', ['-F', pty, 'rows', String(size.height), 'cols', String(size.width)]);
    }
  } catch {
    // The session's resize stream failed: sizes stay as they are.
  }
}

/**
 * Runs `argv` with the session's streams; resolves to its exit code. `signal` kills it (and
 * everything it started) and rejects with the signal's reason. Never ends the caller's streams.
 */
export async function runSession(
  argv: readonly string[],
  env: ReadonlyMap<string, string>,
  streams: AttachStreams,
  signal: AbortSignal,
): Promise<number> {
  signal.throwIfAborted();
  const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
    detached: true,
    stdio: [streams.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: Object.fromEntries(env),
  });
  const done = new AbortController();
  const exit = new Promise<number>((resolve, reject) => {
    child.once('error', (err) => {
      reject(unavailable(`cannot start the exec session: ${err.message}`, err));
    });
    child.once('close', (code, sig) => {
      resolve(code ?? (sig ? 128 + (signalNumber(sig) ?? 9) : 1));
    });
  });
  const kill = (): void => {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  };
  signal.addEventListener('abort', kill, { once: true });
  if (streams.stdin && child.stdin) {
    const stdin = streams.stdin;
    const sink = child.stdin;
    sink.on('error', () => undefined);
    stdin.pipe(sink);
  }
  pipeOut(child.stdout, streams.stdout);
  pipeOut(child.stderr, streams.tty ? streams.stdout : streams.stderr);
  if (streams.tty && streams.resize && child.pid !== undefined) {
    void applySizes(child.pid, streams.resize, AbortSignal.any([signal, done.signal]));
  }
  try {
    const code = await exit;
    if (signal.aborted) throw signal.reason;
    return code;
  } finally {
    done.abort();
    signal.removeEventListener('abort', kill);
    if (streams.stdin && child.stdin) streams.stdin.unpipe(child.stdin);
  }
}

function pipeOut(from: Readable | null, to: Writable | undefined): void {
  if (!from) return;
  if (!to) {
    from.resume();
    return;
  }
  from.pipe(to, { end: false });
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  const table: Partial<Record<NodeJS.Signals, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGTERM: 15,
  };
  return table[sig];
}

/**
 * Attach: writes stdin to the container's stdin FIFO (when it has one) and copies what the
 * container writes to its log from now on to stdout. Ends when `running()` turns false, stdin
 * ends, or `signal` fires. Resizes apply to the pty of the main process (tty containers).
 */
export async function attachSession(
  opts: {
    readonly main: ProcessRef | undefined;
    readonly logPath: string;
    readonly stdinPath: string | undefined;
    readonly running: () => boolean;
  },
  streams: AttachStreams,
  signal: AbortSignal,
): Promise<void> {
  if (streams.stdin && opts.stdinPath === undefined) {
    throw invalidInput('the container was not started with stdin: true; attach without stdin');
  }
  const done = new AbortController();
  const stop = AbortSignal.any([signal, done.signal]);
  let position = (() => {
    try {
      return statSync(opts.logPath).size;
    } catch {
      return 0;
    }
  })();
  const output = async (): Promise<void> => {
    while (!stop.aborted) {
      let size = 0;
      try {
        size = statSync(opts.logPath).size;
      } catch {
        // Not there yet.
      }
      if (size < position) position = 0;
      if (size > position && streams.stdout) {
        const chunk = await readRange(opts.logPath, position, size);
        position = size;
        if (!streams.stdout.write(chunk)) {
          await once(streams.stdout, 'drain', { signal: stop }).catch(() => undefined);
        }
        continue;
      }
      if (!opts.running()) return;
      await delay(100, undefined, { signal: stop }).catch(() => undefined);
    }
  };
  const input = async (): Promise<void> => {
    if (!streams.stdin || opts.stdinPath === undefined) return;
    const fifo = createWriteStream(opts.stdinPath, { flags: 'a' });
    fifo.on('error', () => undefined);
    await new Promise<void>((resolve) => {
      streams.stdin?.once('end', resolve);
      streams.stdin?.once('close', resolve);
      stop.addEventListener('abort', () => resolve(), { once: true });
      streams.stdin?.pipe(fifo, { end: false });
    });
    streams.stdin.unpipe(fifo);
    fifo.end();
  };
  if (streams.tty && streams.resize && opts.main)
    void applySizes(opts.main.pid, streams.resize, stop);
  const watch = (async (): Promise<void> => {
    while (!stop.aborted && opts.running())
      await delay(200, undefined, { signal: stop }).catch(() => undefined);
  })();
  const out = output();
  try {
    if (streams.stdin) {
      await Promise.race([input(), watch]);
      // What the process answered to the last input is still on its way to the log.
      await delay(STDIN_SETTLE_MS, undefined, { signal }).catch(() => undefined);
    } else await Promise.race([out, watch]);
  } finally {
    done.abort();
    await out;
  }
  if (signal.aborted) throw signal.reason;
}

async function readRange(path: string, start: number, end: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(path, { start, end: end - 1 }))
    chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Port-forward: dials `port` at `host` (the pod's IP, which the host routes to the node's
 * bridge, or 127.0.0.1 for a pod on the host's network). Ends when either side ends; rejects
 * with `Unavailable` when nothing listens.
 */
export async function forwardPort(
  host: string,
  port: number,
  stream: Duplex,
  signal: AbortSignal,
): Promise<void> {
  signal.throwIfAborted();
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw invalidInput(`port ${String(port)} is not between 1 and 65535`);
  }
  const socket = connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (err) => {
      reject(unavailable(`cannot connect to port ${String(port)} of the pod: ${err.message}`, err));
    });
  });
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      socket.destroy();
      resolve();
    };
    socket.on('error', finish);
    socket.once('close', finish);
    stream.once('close', finish);
    stream.on('error', finish);
    signal.addEventListener('abort', finish, { once: true });
    stream.pipe(socket);
    socket.pipe(stream);
  });
  if (signal.aborted) throw signal.reason;
}

/** Whether `ref` still runs (exported for the provider's attach checks). */
export const stillRunning = (ref: ProcessRef | undefined): boolean =>
  ref !== undefined && isAlive(ref);

import { InvalidArgumentError } from 'commander';

/** Where a command writes, and the exit code it asks for. */
export interface Io {
  /** Results (stdout). */
  readonly out: (line: string) => void;
  /** Progress and diagnostics (stderr). */
  readonly err: (line: string) => void;
  exitCode: number;
}

export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535)
    throw new InvalidArgumentError(`expected a port number between 1 and 65535, got '${value}'`);
  return n;
}

/**
 * Aborts on the first SIGINT or SIGTERM so every loop can drain; a second signal exits at once
 * (the exit hook of the process module still kills any child process).
 */
export function shutdownSignal(io: Io): AbortSignal {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      io.err(`${sig} again: exiting now`);
      process.exit(130);
    }
    io.err(`${sig}: shutting down (send it again to exit at once)`);
    controller.abort(new Error(sig));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}

/**
 * Aborts when the process that started this one goes away (the process is handed to another
 * parent). `npm start` does not pass SIGTERM on to its script, so `kill <pid of npm>`, which is
 * what a supervisor sends, would otherwise leave the agent and its control plane running.
 */
export function parentGoneSignal(io: Io, intervalMs = 1000): AbortSignal {
  const controller = new AbortController();
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    io.err(`the parent process (${String(parent)}) is gone: shutting down`);
    controller.abort(new Error('parent gone'));
  }, intervalMs);
  timer.unref();
  return controller.signal;
}

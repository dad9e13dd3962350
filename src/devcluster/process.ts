import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/** True when a process with this pid exists and has not exited (a zombie counts as exited). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // Field 3 of /proc/<pid>/stat is the state; the command name before it may contain spaces.
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

let pdeathsigWrapper: string | null | undefined;

/**
 * `setpriv` from util-linux can ask the kernel to SIGKILL a child when its parent dies
 * (PR_SET_PDEATHSIG), which is what keeps control-plane processes from outliving a killed owner.
 * Null when it is not installed; callers then rely on the exit hooks alone.
 */
function wrapper(): string | null {
  if (pdeathsigWrapper === undefined) {
    const probe = spawnSync('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'true'], {
      stdio: 'ignore',
    });
    pdeathsigWrapper = probe.status === 0 ? 'setpriv' : null;
  }
  return pdeathsigWrapper;
}

const owned = new Set<ChildProcess>();
let hooksInstalled = false;

function killOwnedNow(): void {
  for (const child of owned) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // Last resort for an owner that exits without stopping its children (an uncaught error, a
  // test runner that calls process.exit): the 'exit' hook is synchronous, so SIGKILL it is.
  process.on('exit', killOwnedNow);
}

export interface OwnedProcessOptions {
  readonly args: readonly string[];
  /** File that receives stdout and stderr (appended), or `inherit` to share this process's. */
  readonly logPath: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/**
 * Starts a process that cannot outlive this one: it gets its own process group (so a terminal's
 * Ctrl-C does not reach it before its owner decides the shutdown order), the kernel kills it if
 * this process dies, and this process kills it on exit.
 */
export function spawnOwned(command: string, options: OwnedProcessOptions): ChildProcess {
  installHooks();
  const fd = options.logPath === 'inherit' ? 'inherit' : openSync(options.logPath, 'a');
  try {
    const w = wrapper();
    const [cmd, args] =
      w === null
        ? [command, options.args]
        : [w, ['--pdeathsig', 'SIGKILL', '--', command, ...options.args]];
    const child = spawn(cmd, args, {
      stdio: ['ignore', fd, fd],
      detached: true,
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    owned.add(child);
    child.once('exit', () => owned.delete(child));
    // A binary that cannot start shows as an exit (code null); it must not crash the owner.
    child.once('error', () => owned.delete(child));
    return child;
  } finally {
    if (typeof fd === 'number') closeSync(fd);
  }
}

/**
 * Sends SIGTERM to the child's process group, then SIGKILL after `graceMs`. Resolves once the
 * child has exited.
 */
export async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalGroup(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/**
 * True when `pid` is alive and its command line mentions `needle` (e.g. a binary name). Guards
 * against signalling an unrelated process that reused the pid of one we started long ago.
 */
export function isAliveAs(pid: number, needle: string): boolean {
  if (!isAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').includes(needle);
  } catch {
    // No procfs: trust the pid.
    return true;
  }
}

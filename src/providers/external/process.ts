/**
 * The provider process an `external` provider with `command` starts: restarted with back-off
 * when it dies, stopped (SIGTERM, then SIGKILL) on shutdown, and never outliving the agent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { aborted, sleep } from '../../abort.js';
import type { Logger } from '../../log.js';

export interface ProviderProcessOptions {
  /** The program and its arguments. */
  readonly command: readonly string[];
  /** Added to the agent's environment; `VK_PROVIDER_ADDRESS` among them. */
  readonly env: Readonly<Record<string, string>>;
  readonly logger: Logger;
  /** The first restart's delay, doubled after each quick death, in milliseconds. Default: 200. */
  readonly restartInitialMs?: number;
  /** The longest delay between restarts, in milliseconds. Default: 10 000. */
  readonly restartMaxMs?: number;
  /** How long the process may take to exit after SIGTERM, in milliseconds. Default: 5 000. */
  readonly stopGraceMs?: number;
}

/** A run that lasted this long resets the back-off. */
const STABLE_MS = 10_000;

let pdeathsig: boolean | undefined;

/**
 * Whether `setpriv` (util-linux) can ask the kernel to kill the child when the agent dies
 * (PR_SET_PDEATHSIG): what keeps a killed agent from leaving its provider behind.
 */
function hasSetpriv(): boolean {
  if (pdeathsig === undefined) {
    const probe = spawnSync('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'true'], {
      stdio: 'ignore',
    });
    pdeathsig = probe.status === 0;
  }
  return pdeathsig;
}

const live = new Set<ChildProcess>();
let hooked = false;

function killLiveNow(): void {
  for (const child of live) signalGroup(child, 'SIGKILL');
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/**
 * Runs the provider's command until `run`'s signal fires. Its output goes to the agent's log
 * (stderr and stdout, line by line, at info level).
 */
export class ProviderProcess {
  readonly #options: ProviderProcessOptions;
  #child: ChildProcess | undefined;
  #restarts = 0;

  constructor(options: ProviderProcessOptions) {
    if (options.command.length === 0) throw new Error('command must not be empty');
    this.#options = options;
  }

  /** How many times the process was started again after it died. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The pid of the running process, if one runs. */
  get pid(): number | undefined {
    const c = this.#child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /**
   * Starts the process and keeps it running: after it dies, it is started again after a delay
   * that doubles (from `restartInitialMs` to `restartMaxMs`) while it keeps dying quickly. When
   * `signal` fires, stops it (SIGTERM to its process group, SIGKILL after `stopGraceMs`) and
   * resolves once it has exited.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (!hooked) {
      hooked = true;
      // Last resort for an agent that exits without stopping (process.exit, an uncaught error).
      process.on('exit', killLiveNow);
    }
    const log = this.#options.logger;
    const initial = this.#options.restartInitialMs ?? 200;
    const max = this.#options.restartMaxMs ?? 10_000;
    let delayMs = initial;
    while (!signal.aborted) {
      const started = Date.now();
      const child = this.#spawn();
      const exited = new Promise<void>((resolve) => {
        child.once('exit', (code, sig) => {
          log.warn({ code, signal: sig, pid: child.pid }, 'the provider process exited');
          resolve();
        });
        child.once('error', (err) => {
          log.error({ err }, 'the provider process could not start');
          resolve();
        });
      });
      const stop = (): void => {
        signalGroup(child, 'SIGTERM');
        setTimeout(() => {
          signalGroup(child, 'SIGKILL');
        }, this.#options.stopGraceMs ?? 5000).unref();
      };
      signal.addEventListener('abort', stop, { once: true });
      await exited;
      signal.removeEventListener('abort', stop);
      live.delete(child);
      if (aborted(signal)) return;
      delayMs = Date.now() - started > STABLE_MS ? initial : delayMs;
      log.info({ delayMs }, 'restarting the provider process');
      await sleep(delayMs, signal);
      delayMs = Math.min(max, delayMs * 2);
      if (!aborted(signal)) this.#restarts++;
    }
  }

  #spawn(): ChildProcess {
    const [program = '', ...args] = this.#options.command;
    const [cmd, argv] = hasSetpriv()
      ? ['setpriv', ['--pdeathsig', 'SIGKILL', '--', program, ...args]]
      : [program, args];
    const child = spawn(cmd, argv, {
      // Its own process group: a terminal's Ctrl-C reaches the agent, which stops it in order.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.#options.env },
    });
    this.#child = child;
    live.add(child);
    const log = this.#options.logger;
    for (const out of [child.stdout, child.stderr]) {
      let rest = '';
      out.setEncoding('utf8');
      out.on('data', (text: string) => {
        const lines = (rest + text).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line) log.info({ pid: child.pid }, line);
      });
    }
    return child;
  }
}

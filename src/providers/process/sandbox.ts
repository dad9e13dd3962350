/**
 * The pod sandbox: a small init process in new mount, PID, UTS and IPC namespaces (and the pod's
 * network namespace, when it has one), whose hostname is the pod's, with a private /tmp and tmpfs for `emptyDir.medium: Memory`. The
 * containers join its namespaces with nsenter; killing it ends every process of the pod (it is
 * PID 1 of the pod's PID namespace). It runs in its own session, so it outlives the agent.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { errorMessage, unavailable } from '../../errors.js';
import { shellQuote, type Tools } from './launch.js';
import { NETNS_DIR } from './network.js';
import { childrenOf, isAlive, processRef, type ProcessRef } from './proc.js';
import { noteProcesses } from './state.js';

/**
 * The namespaces of a sandbox, as `unshare` flags: the detection tries exactly what
 * `startSandbox` asks for.
 */
const UNSHARE_FLAGS = ['--mount', '--uts', '--ipc', '--pid', '--fork', '--mount-proc'] as const;

/** Whether the kernel lets us make the namespaces a sandbox needs; the reason when not. */
export function detectNamespaces(tools: Tools): true | string {
  const r = spawnSync(tools.unshare, [...UNSHARE_FLAGS, tools.sh, '-c', 'hostname vk-probe'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 10_000,
  });
  if (r.status === 0) return true;
  return `unshare failed: ${r.stderr.toString().trim() || `exit ${String(r.status)}`}`;
}

export interface SandboxSpec {
  readonly hostname: string;
  /** The network namespace (a path under /var/run/netns) to start in. Default: the host's. */
  readonly netns?: string;
  /** Mount a tmpfs at /tmp. */
  readonly privateTmp: boolean;
  /** Directories that get a tmpfs (emptyDir with medium Memory). */
  readonly tmpfsDirs: readonly string[];
  /** Created once the sandbox is set up. */
  readonly readyFile: string;
  /** The sandbox's output (errors from hostname and mount). */
  readonly logFd: number;
  /**
   * The pod's directory: the sandbox's first process, which leads the process group of all of
   * them, is noted in its `processes` file as soon as it is spawned, before anything is waited
   * for, so that an agent that stops or dies meanwhile leaves no sandbox nobody knows of.
   */
  readonly podDir: string;
}

/**
 * Starts a sandbox and resolves to its init process once it is set up. Throws `Unavailable`
 * when it dies or is not ready within 10 s (its log says why), or when it cannot be noted; a
 * sandbox that is not returned is killed (`signal` aborting kills it too).
 */
export async function startSandbox(
  spec: SandboxSpec,
  tools: Tools,
  signal: AbortSignal,
): Promise<ProcessRef> {
  signal.throwIfAborted();
  const q = shellQuote;
  rmSync(spec.readyFile, { force: true });
  const lines = [`hostname ${q(spec.hostname)} || exit 1`];
  // The copies of other pods' netns mounts would keep those namespaces alive after their pods
  // are gone: the pod needs none of them (it is in its own already).
  lines.push(`umount -l ${q(NETNS_DIR)} 2>/dev/null || :`);
  if (spec.privateTmp) lines.push(`${q(tools.mount)} -t tmpfs -o mode=1777 tmpfs /tmp || exit 1`);
  for (const d of spec.tmpfsDirs) {
    lines.push(`${q(tools.mount)} -t tmpfs -o mode=0777 tmpfs ${q(d)} || exit 1`);
  }
  lines.push(`: > ${q(spec.readyFile)}`);
  // PID 1 of the pod: waits (and so reaps orphans) until it is killed.
  lines.push(`trap 'exit 0' TERM; while :; do sleep 2147483647 & wait; done`);
  const enterNet = spec.netns === undefined ? [] : [`--net=${spec.netns}`, '--', tools.unshare];
  const child = spawn(
    spec.netns === undefined ? tools.unshare : tools.nsenter,
    [
      ...enterNet,
      ...UNSHARE_FLAGS,
      '--propagation',
      'private',
      '--',
      tools.sh,
      '-c',
      lines.join('\n'),
      'vk-sandbox',
    ],
    { detached: true, stdio: ['ignore', spec.logFd, spec.logFd] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);
  child.unref();
  const outer = child.pid;
  if (outer === undefined) throw unavailable('cannot start the pod sandbox (unshare)');
  // Right after the spawn, with no await between: nothing of the agent's (a stop, the exit on a
  // second signal) runs before the note.
  const leader = processRef(outer);
  try {
    if (leader) noteProcesses(spec.podDir, leader);
  } catch (err) {
    await killGroup(outer);
    throw unavailable(`cannot note the pod sandbox's process: ${errorMessage(err)}`);
  }
  const deadline = Date.now() + 10_000;
  const state = { dead: false };
  void exited.then(() => (state.dead = true));
  while (Date.now() < deadline && !signal.aborted && !state.dead) {
    if (existsSync(spec.readyFile)) {
      const init = childrenOf(outer)[0];
      const ref = init === undefined ? undefined : processRef(init);
      if (ref) return ref;
    }
    await delay(20);
  }
  await killGroup(outer);
  signal.throwIfAborted();
  throw unavailable(
    state.dead
      ? 'the pod sandbox exited while being set up'
      : 'the pod sandbox was not ready within 10 s',
  );
}

/**
 * SIGKILL to the process group `leader` leads; resolves once the group is empty (at most 2 s),
 * so that none of its processes still writes into the pod's directory (which a delete removes).
 */
async function killGroup(leader: number): Promise<void> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    try {
      process.kill(-leader, 'SIGKILL');
    } catch {
      return; // No process left in the group.
    }
    if (Date.now() > deadline) return;
    await delay(10);
  }
}

/** Kills the sandbox and so every process in its PID namespace. */
export function killSandbox(init: ProcessRef): void {
  if (!isAlive(init)) return;
  try {
    process.kill(init.pid, 'SIGKILL');
  } catch {
    // Gone meanwhile.
  }
}

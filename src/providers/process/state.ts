/**
 * What the provider knows about a pod, as JSON under the state directory
 * (`<stateDir>/pods/<namespace>_<name>_<uid>/state.json`, readable by the agent only), written
 * on every change to a temporary file that is flushed to disk, renamed over the old one, and the
 * directory flushed too, so a restarted agent (or a machine that lost power) finds the old
 * record or the new one, whole. Every process the pod starts is also appended to a small
 * `processes` file, so that an agent that cannot read a record still stops the pod's processes.
 */
import type { V1Pod } from '../../wire.js';
import {
  appendFileSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Mount } from './launch.js';
import { isAlive, type ProcessRef } from './proc.js';
import type { PreparedVolume } from './volumes.js';

export const STATE_VERSION = 1;

export type ContainerState =
  | { readonly kind: 'waiting'; readonly reason: string; readonly message?: string }
  | { readonly kind: 'running'; readonly startedAt: number }
  | {
      readonly kind: 'terminated';
      readonly exitCode: number;
      readonly reason: string;
      readonly message?: string;
      readonly startedAt?: number;
      readonly finishedAt: number;
      readonly containerID?: string;
    };

/** One run (start to exit) of a container. */
export interface RunRecord {
  /** 0 for the first run, then the restart count at its start. */
  readonly run: number;
  /** The wrapper shell that waits for the process and writes its exit code. */
  readonly wrapper: ProcessRef;
  /** The command's process (leader of its own process group), once found. */
  main?: ProcessRef;
  readonly startedAt: number;
  readonly logPath: string;
  readonly exitFile: string;
  readonly errorFile: string;
  /** The cgroup's OOM kill count at start: more at exit means the run was OOM-killed. */
  readonly oomBase: number;
  readonly containerID: string;
  /** A FIFO that is the process's stdin (`stdin: true`). */
  readonly stdinPath?: string;
}

export interface ContainerRecord {
  readonly name: string;
  readonly init: boolean;
  /**
   * An ephemeral container (`kubectl debug`): started once when it appears in the spec, never
   * restarted, not counted in the pod's phase or readiness.
   */
  readonly ephemeral?: boolean;
  restartCount: number;
  state: ContainerState;
  lastState?: ContainerState;
  /** The current or last run. */
  run?: RunRecord;
  /** The log of the run before, for `previous`. */
  previousLog?: string;
  /** The back-off before the next restart, in seconds (0 until the first restart). */
  backoffSeconds: number;
  /** When the back-off was last raised (epoch ms), to reset it after a long good run. */
  backoffUpdatedAt?: number;
  /** The back-off being waited out now, in seconds, as the CrashLoopBackOff message says. */
  waitSeconds?: number;
  /** The earliest restart (epoch ms). */
  notBefore?: number;
  ready: boolean;
  started: boolean;
}

export interface PodRecord {
  readonly version: number;
  /** The pod as last created or updated, without status. */
  pod: V1Pod;
  readonly dir: string;
  /** PID 1 of the pod's namespaces, when it has them. */
  sandbox?: ProcessRef;
  /** The pod's network namespace (`/var/run/netns/...`), when it has a network of its own. */
  readonly netns?: string;
  /** The pod's addresses from CNI, when it has a network of its own. */
  podIPs?: string[];
  readonly startTime: number;
  readonly containers: ContainerRecord[];
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  reason?: string;
  message?: string;
  /** Set once deletion started. */
  deletingSince?: number;
  readonly volumes: PreparedVolume[];
  readonly mounts: Record<string, Mount[]>;
  /** Mount targets created on the host, removed with the pod. */
  readonly createdTargets: string[];
}

/** The longest file name Linux file systems take (NAME_MAX), in bytes. */
const MAX_FILE_NAME_BYTES = 255;

/**
 * The name of a pod's directory: `<namespace>_<name>_<uid>`, or, when that is longer than a
 * file name may be (a 253-character pod name), the name cut and followed by a digest of it.
 */
export function podDirName(pod: V1Pod): string {
  const [namespace, name, uid] = [
    pod.metadata?.namespace ?? '',
    pod.metadata?.name ?? '',
    pod.metadata?.uid ?? '',
  ];
  const full = `${namespace}_${name}_${uid}`;
  if (Buffer.byteLength(full) <= MAX_FILE_NAME_BYTES) return full;
  const digest = createHash('sha256').update(name).digest('hex').slice(0, 16);
  const room = MAX_FILE_NAME_BYTES - Buffer.byteLength(`${namespace}__${uid}-${digest}`);
  return `${namespace}_${name.slice(0, Math.max(0, room))}-${digest}_${uid}`;
}

/** The state file of a pod directory. */
export const STATE_FILE = 'state.json';
/** The processes a pod started (`<pid> <start>` lines), whatever its state file says. */
export const PROCESSES_FILE = 'processes';
/** A state file that could not be read is kept under this name, for a person to look at. */
export const CORRUPT_STATE_FILE = 'state.json.corrupt';

export function saveRecord(record: PodRecord): void {
  mkdirSync(record.dir, { recursive: true });
  const path = join(record.dir, STATE_FILE);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(record));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  syncDir(record.dir);
}

/** Flushes a directory's entries (a rename in it) to disk. */
function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } catch {
    // Some file systems cannot sync a directory; the rename is as durable as they allow.
  } finally {
    closeSync(fd);
  }
}

/** Appends processes a pod started to its `processes` file. */
export function noteProcesses(dir: string, ...refs: readonly ProcessRef[]): void {
  if (refs.length === 0) return;
  appendFileSync(
    join(dir, PROCESSES_FILE),
    refs.map((r) => `${String(r.pid)} ${String(r.start)}\n`).join(''),
    { mode: 0o600 },
  );
}

/** The processes of `dir`'s `processes` file that still run (pid reuse ruled out). */
export function notedProcesses(dir: string): ProcessRef[] {
  let text: string;
  try {
    text = readFileSync(join(dir, PROCESSES_FILE), 'utf8');
  } catch {
    return [];
  }
  const out: ProcessRef[] = [];
  for (const line of text.split('\n')) {
    const [pid, start] = line.split(' ').map(Number);
    if (!Number.isInteger(pid) || !Number.isInteger(start) || pid === undefined || pid <= 1)
      continue;
    const ref = { pid, start: start ?? 0 };
    if (isAlive(ref)) out.push(ref);
  }
  return out;
}

/**
 * SIGKILL to each process noted for the pod directory `dir` that is still that process (a PID
 * that ended may name another process by now) and to its process group; returns those processes.
 */
export function killNoted(dir: string): ProcessRef[] {
  const running = notedProcesses(dir);
  for (const ref of running) {
    for (const target of [-ref.pid, ref.pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // Not a group leader, or gone meanwhile.
      }
    }
  }
  return running;
}

/** A pod directory whose state file could not be read. */
export interface UnreadableRecord {
  readonly dir: string;
  readonly error: unknown;
}

/**
 * Every pod record under `podsDir`, the directories whose state file could not be read
 * (truncated, not JSON, another version), and those with no state file: volume content that
 * arrived before createPod, or a createPod that never ended (its noted processes, a sandbox
 * being set up, belong to no pod).
 */
export function loadRecords(podsDir: string): {
  records: PodRecord[];
  unreadable: UnreadableRecord[];
  unfinished: string[];
} {
  const records: PodRecord[] = [];
  const unreadable: UnreadableRecord[] = [];
  const unfinished: string[] = [];
  let dirs: string[];
  try {
    dirs = readdirSync(podsDir);
  } catch {
    return { records, unreadable, unfinished };
  }
  for (const d of dirs) {
    const dir = join(podsDir, d);
    if (!existsSync(join(dir, STATE_FILE))) {
      unfinished.push(dir);
      continue;
    }
    try {
      const parsed: unknown = JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8'));
      if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object');
      const record = parsed as PodRecord;
      if (record.version !== STATE_VERSION)
        throw new Error(`unknown version ${String(record.version)}`);
      if (!Array.isArray(record.containers) || typeof record.pod !== 'object')
        throw new Error('no pod or containers');
      records.push(record);
    } catch (error) {
      unreadable.push({ dir, error });
    }
  }
  return { records, unreadable, unfinished };
}

/**
 * Stops the processes of a pod whose state file is unreadable (SIGKILL to each noted process
 * and its process group) and moves the state file aside, so the directory is not read again;
 * the pod is then unknown to the provider, which the core reports (the pod is lost). Returns
 * how many processes were stopped.
 */
export function stopUnreadable(dir: string): number {
  const running = killNoted(dir);
  try {
    renameSync(join(dir, STATE_FILE), join(dir, CORRUPT_STATE_FILE));
  } catch {
    // Gone meanwhile.
  }
  return running.length;
}

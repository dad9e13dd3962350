/**
 * What the provider knows about a pod, as JSON under the state directory
 * (`<stateDir>/pods/<namespace>_<name>_<uid>/state.json`), written atomically (temporary file
 * and rename) on every change, so a restarted agent can adopt the pod's processes.
 */
import type { V1Pod } from '../../wire.js';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Mount } from './launch.js';
import type { ProcessRef } from './proc.js';
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

export const podDirName = (pod: V1Pod): string =>
  `${pod.metadata?.namespace ?? ''}_${pod.metadata?.name ?? ''}_${pod.metadata?.uid ?? ''}`;

export function saveRecord(record: PodRecord): void {
  mkdirSync(record.dir, { recursive: true });
  const path = join(record.dir, 'state.json');
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(record));
  renameSync(tmp, path);
}

/** Every pod record under `podsDir`; unreadable ones are reported through `onError`. */
export function loadRecords(
  podsDir: string,
  onError: (dir: string, err: unknown) => void,
): PodRecord[] {
  let dirs: string[];
  try {
    dirs = readdirSync(podsDir);
  } catch {
    return [];
  }
  const out: PodRecord[] = [];
  for (const d of dirs) {
    const dir = join(podsDir, d);
    // Volume content can arrive before createPod: such a directory has no state yet.
    if (!existsSync(join(dir, 'state.json'))) continue;
    try {
      const record = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as PodRecord;
      if (record.version !== STATE_VERSION)
        throw new Error(`unknown version ${String(record.version)}`);
      out.push(record);
    } catch (err) {
      onError(dir, err);
    }
  }
  return out;
}

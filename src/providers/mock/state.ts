/**
 * The mock provider's state file (`MockConfig.stateFile`): a journal of JSON lines, one per
 * change, appended synchronously before the change is reported, so the pods outlive the process
 * that ran them (a kill -9 included; a power cut is another matter: there is no fsync). The
 * provider replays it at construction. Lines:
 *
 * - `{"op":"create","pod":{...},"status":{...}}`: the pod was started (the pod without status,
 *   and its status then); a create of another UID under the same name replaces the old pod;
 * - `{"op":"update","pod":{...}}`: its metadata and spec were replaced;
 * - `{"op":"forget","key":"<ns>/<name>","uid":"..."}`: it was stopped and forgotten (and its
 *   address freed);
 * - `{"op":"address","uid":"...","ip":"10.244.0.2"}`: the pod of that UID got the address
 *   (`preparePod`, or `createPod` of a pod not prepared);
 * - `{"op":"release","uid":"..."}`: the address of a pod that was never created, or was
 *   replaced, was freed.
 *
 * The file only grows (it also tells how many times each UID was created): it is meant for
 * tests and benchmarks, not for a long-lived node.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { invalidInput } from '../../errors.js';
import type { V1Pod, V1PodStatus } from '../../wire.js';

/** A pod as the state file last recorded it. */
export interface StoredPod {
  /** Without status. */
  readonly pod: V1Pod;
  /** As it was when the pod was created. */
  readonly status: V1PodStatus;
}

/** What a state file holds. */
export interface MockState {
  /** The pods the provider runs, by `<namespace>/<name>`. */
  readonly pods: ReadonlyMap<string, StoredPod>;
  /** How many times each pod UID was created (started afresh), forgotten pods included. */
  readonly creates: ReadonlyMap<string, number>;
  /** The address each pod UID holds (see `addresses.ts`). */
  readonly addresses: ReadonlyMap<string, string>;
}

type Line =
  | { readonly op: 'create'; readonly pod: V1Pod; readonly status: V1PodStatus }
  | { readonly op: 'update'; readonly pod: V1Pod }
  | { readonly op: 'forget'; readonly key: string; readonly uid?: string }
  | { readonly op: 'address'; readonly uid: string; readonly ip: string }
  | { readonly op: 'release'; readonly uid: string };

const keyOf = (pod: V1Pod): string =>
  `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;

function parseLine(text: string): Line | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null) return undefined;
    const line = value as {
      op?: unknown;
      pod?: unknown;
      status?: unknown;
      key?: unknown;
      uid?: unknown;
      ip?: unknown;
    };
    const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null;
    if (line.op === 'create' && isObject(line.pod) && isObject(line.status)) return value as Line;
    if (line.op === 'update' && isObject(line.pod)) return value as Line;
    if (line.op === 'forget' && typeof line.key === 'string') return value as Line;
    if (line.op === 'address' && typeof line.uid === 'string' && typeof line.ip === 'string')
      return value as Line;
    if (line.op === 'release' && typeof line.uid === 'string') return value as Line;
    return undefined;
  } catch {
    return undefined;
  }
}

/**
 * Replays a state file. A missing file is an empty state. A last line cut short (the process
 * died while writing it) is ignored; any other unreadable line throws `InvalidInput` naming it.
 */
export function readMockState(path: string): MockState {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return { pods: new Map(), creates: new Map(), addresses: new Map() };
    throw err;
  }
  const pods = new Map<string, StoredPod>();
  const creates = new Map<string, number>();
  const addresses = new Map<string, string>();
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    if (raw === '') continue;
    const line = parseLine(raw);
    if (!line) {
      // Only the last line can be torn: every earlier one ended with its line break.
      if (i === lines.length - 1) break;
      throw invalidInput(`${path}: line ${String(i + 1)} is not a mock state record`);
    }
    if (line.op === 'create') {
      pods.set(keyOf(line.pod), { pod: line.pod, status: line.status });
      const uid = line.pod.metadata?.uid ?? '';
      creates.set(uid, (creates.get(uid) ?? 0) + 1);
    } else if (line.op === 'update') {
      const key = keyOf(line.pod);
      const known = pods.get(key);
      if (known) pods.set(key, { pod: line.pod, status: known.status });
    } else if (line.op === 'address') addresses.set(line.uid, line.ip);
    else if (line.op === 'release') addresses.delete(line.uid);
    else {
      pods.delete(line.key);
      if (line.uid !== undefined) addresses.delete(line.uid);
    }
  }
  return { pods, creates, addresses };
}

/** Appends the provider's changes to its state file. */
export class MockStateJournal {
  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  created(pod: V1Pod, status: V1PodStatus): void {
    this.#append({ op: 'create', pod, status });
  }

  updated(pod: V1Pod): void {
    this.#append({ op: 'update', pod });
  }

  forgotten(key: string, uid: string | undefined): void {
    this.#append({ op: 'forget', key, ...(uid === undefined ? {} : { uid }) });
  }

  addressed(uid: string, ip: string): void {
    this.#append({ op: 'address', uid, ip });
  }

  released(uid: string): void {
    this.#append({ op: 'release', uid });
  }

  #append(line: Line): void {
    // One write per line, so a process killed mid-way tears at most the last line.
    appendFileSync(this.#path, `${JSON.stringify(line)}\n`);
  }
}

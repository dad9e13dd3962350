/**
 * Makes a provider without `notifyPods` look push-based, like the Go virtual-kubelet's
 * `syncProviderWrapper` (node/sync.go): every round it asks the provider for the status of each
 * pod the API server has on this node and reports the ones that changed.
 */
import type { V1ContainerStatus, V1Pod, V1PodStatus } from '../wire.js';
import { setTimeout as delay } from 'node:timers/promises';
import { errorCode, invalidInput } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { PodLifecycleHandler, PodNotifier } from '../provider.js';
import { podKey } from '../kubelet/pod-key.js';
import { isTerminal } from '../kubelet/pod-status.js';
import { formatRfc3339 } from '../kubelet/time.js';

export interface PollNotifierOptions {
  /** Asked for `getPodStatus` of every pod, and nothing else. */
  readonly provider: PodLifecycleHandler;
  /**
   * The pods bound to this node as the API server knows them (the informer's cache). Called
   * once per round; the pods are read, never mutated.
   */
  readonly listPods: () => Iterable<V1Pod>;
  /** Time from the end of one round to the start of the next, in ms. Default: 5000 (as in Go). */
  readonly intervalMs?: number;
  /** Default: `silentLogger`. */
  readonly logger?: Logger;
  /** `getPodStatus` calls in flight at once. Default: 10. */
  readonly concurrency?: number;
  /** Now, for the age of pods and the times in made-up statuses. Default: `() => new Date()`. */
  readonly clock?: () => Date;
  /**
   * Whether the core has handed this pod to the provider. A pod it never handed over (still
   * waiting for a config map, or for a create to succeed) is never reported lost, however old.
   * Default: every pod counts as handed over when it is Running or older than a minute.
   */
  readonly handedOver?: (pod: V1Pod) => boolean;
}

/**
 * A pod the provider does not know is failed only when it was Running or is older than this:
 * a younger pod may still be on its way into the provider (Go uses the same minute).
 */
const LOST_POD_GRACE_MS = 60_000;

const LOST = {
  reason: 'NotFound',
  message: 'The pod status was not found and may have been deleted from the provider',
  containerMessage: 'Container was not found and was likely deleted',
  exitCode: 137,
} as const;

const DELETED = {
  reason: 'Terminated',
  containerMessage: 'Container was terminated. The exit code may not reflect the real exit code',
} as const;

/** Terminates the containers that were running, leaving the others as they were. */
function terminateRunning(
  statuses: V1ContainerStatus[] | undefined,
  now: Date,
  how: { exitCode: number; reason: string; message: string },
): V1ContainerStatus[] | undefined {
  return statuses?.map((cs) => {
    const running = cs.state?.running;
    if (running === undefined) return cs;
    return {
      ...cs,
      ready: false,
      started: false,
      state: {
        terminated: {
          exitCode: how.exitCode,
          reason: how.reason,
          message: how.message,
          finishedAt: formatRfc3339(now),
          ...(running.startedAt === undefined ? {} : { startedAt: running.startedAt }),
          ...(cs.containerID === undefined ? {} : { containerID: cs.containerID }),
        },
      },
    };
  });
}

/** The status of a pod the provider lost while it ran: Failed, running containers killed. */
export function lostPodStatus(pod: V1Pod, now: Date): V1PodStatus {
  const status = structuredClone(pod.status ?? {});
  status.phase = 'Failed';
  status.reason = LOST.reason;
  status.message = LOST.message;
  status.containerStatuses = terminateRunning(status.containerStatuses, now, {
    exitCode: LOST.exitCode,
    reason: LOST.reason,
    message: LOST.containerMessage,
  });
  return status;
}

/**
 * The status of a pod being deleted that the provider has already forgotten (which the contract
 * allows after `deletePod`): its running containers stopped, exit codes unknown and taken as 0.
 */
export function deletedPodStatus(pod: V1Pod, now: Date): V1PodStatus {
  const status = structuredClone(pod.status ?? {});
  status.containerStatuses = terminateRunning(status.containerStatuses, now, {
    exitCode: 0,
    reason: DELETED.reason,
    message: DELETED.containerMessage,
  });
  const failed = (status.containerStatuses ?? []).some(
    (cs) => (cs.state?.terminated?.exitCode ?? 0) !== 0,
  );
  status.phase = failed ? 'Failed' : 'Succeeded';
  status.reason = DELETED.reason;
  return status;
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) {
      const item = items[i];
      if (item !== undefined) await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Polls `getPodStatus` for every pod that is not terminal (Succeeded or Failed), including pods
 * being deleted, whose terminal status the core waits for, and reports through the callback
 * given to `notifyPods`:
 * - the provider's status, when it differs from the last one reported for the pod's UID;
 * - when the provider does not know the pod (undefined, or a `NotFound` error):
 *   - for a pod being deleted, a terminal status (see `deletedPodStatus`);
 *   - for a pod that was Running or is older than a minute, Failed with reason `NotFound` and
 *     its running containers terminated with exit code 137 (see `lostPodStatus`);
 *   - for a younger pod, nothing: it may not have reached the provider yet.
 * Other errors are logged and the pod is tried again next round. Rounds never overlap.
 */
export class PollNotifier implements PodNotifier {
  readonly #provider: PodLifecycleHandler;
  readonly #listPods: () => Iterable<V1Pod>;
  readonly #intervalMs: number;
  readonly #concurrency: number;
  readonly #log: Logger;
  readonly #clock: () => Date;
  readonly #handedOver: ((pod: V1Pod) => boolean) | undefined;
  /** What was last reported, by pod UID: a status as JSON, or `lost` / `deleted`. */
  readonly #reported = new Map<string, string>();
  #callback: ((pod: V1Pod) => void) | undefined;
  #rounds: Promise<void> = Promise.resolve();

  constructor(options: PollNotifierOptions) {
    const intervalMs = options.intervalMs ?? 5000;
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
      throw invalidInput('PollNotifier: intervalMs must be a positive number');
    }
    const concurrency = options.concurrency ?? 10;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw invalidInput('PollNotifier: concurrency must be a positive integer');
    }
    this.#provider = options.provider;
    this.#listPods = options.listPods;
    this.#intervalMs = intervalMs;
    this.#concurrency = concurrency;
    this.#log = (options.logger ?? silentLogger).child({ component: 'poll-notifier' });
    this.#clock = options.clock ?? (() => new Date());
    this.#handedOver = options.handedOver;
  }

  /** Sets the callback; rounds before it is set report nothing and call nothing. */
  notifyPods(callback: (pod: V1Pod) => void): void {
    this.#callback = callback;
  }

  /**
   * Polls every `intervalMs` (the first round after one interval) until `signal` aborts;
   * resolves once the round in progress, if any, has finished. `signal` is passed on to the
   * provider, so that round ends early.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await delay(this.#intervalMs, undefined, { signal });
      } catch {
        break; // aborted
      }
      await this.pollNow(signal);
    }
    await this.#rounds;
  }

  /**
   * Runs one round, after any round in progress, and resolves when it is done. Never rejects.
   * `signal` (default: never aborts) is passed to the provider.
   */
  pollNow(signal: AbortSignal = new AbortController().signal): Promise<void> {
    const round = this.#rounds
      .then(() => this.#poll(signal))
      .catch((err: unknown) => {
        this.#log.error({ err }, 'a poll round failed');
      });
    this.#rounds = round;
    return round;
  }

  async #poll(signal: AbortSignal): Promise<void> {
    const callback = this.#callback;
    if (!callback || signal.aborted) return;
    let pods: V1Pod[];
    try {
      pods = [...this.#listPods()].filter((pod) => !isTerminal(pod.status));
    } catch (err) {
      this.#log.error({ err }, 'could not list pods; skipping this round');
      return;
    }
    const current = new Set(pods.map((pod) => pod.metadata?.uid ?? podKey(pod)));
    await eachLimited(pods, this.#concurrency, async (pod) => {
      if (!signal.aborted) await this.#pollPod(pod, callback, signal);
    });
    // Forget pods that left the cache or became terminal, so the map does not grow forever.
    for (const id of this.#reported.keys()) if (!current.has(id)) this.#reported.delete(id);
  }

  async #pollPod(pod: V1Pod, callback: (pod: V1Pod) => void, signal: AbortSignal): Promise<void> {
    const key = podKey(pod);
    let status: V1PodStatus | undefined;
    try {
      status = await this.#provider.getPodStatus(
        pod.metadata?.namespace ?? '',
        pod.metadata?.name ?? '',
        signal,
      );
    } catch (err) {
      if (errorCode(err) !== 'NotFound') {
        if (!signal.aborted) {
          this.#log.warn(
            { pod: key, err },
            'could not get the pod status; trying again next round',
          );
        }
        return;
      }
    }
    const now = this.#clock();
    let next: V1PodStatus;
    let fingerprint: string;
    if (status !== undefined) {
      next = structuredClone(status);
      fingerprint = JSON.stringify(status);
    } else if (pod.metadata?.deletionTimestamp !== undefined) {
      next = deletedPodStatus(pod, now);
      fingerprint = 'deleted';
    } else if (
      this.#handedOver
        ? this.#handedOver(pod)
        : pod.status?.phase === 'Running' || this.#ageMs(pod, now) > LOST_POD_GRACE_MS
    ) {
      next = lostPodStatus(pod, now);
      fingerprint = 'lost';
    } else {
      this.#log.debug({ pod: key }, 'the provider does not know the pod yet');
      return;
    }
    const id = pod.metadata?.uid ?? key;
    if (this.#reported.get(id) === fingerprint) return;
    this.#reported.set(id, fingerprint);
    if (fingerprint === 'lost') {
      this.#log.info({ pod: key }, 'the provider lost the pod; reporting it Failed');
    }
    // A fresh object: the core may keep it, and we never touch it again.
    const out: V1Pod = structuredClone({ ...pod, status: {} });
    out.status = next;
    try {
      callback(out);
    } catch (err) {
      // The contract says the callback never throws; a bug there must not stop the round.
      this.#log.error({ pod: key, err }, 'the pod status callback threw');
    }
  }

  /** A pod without a creation time counts as old, as in Go (its zero time is long ago). */
  #ageMs(pod: V1Pod, now: Date): number {
    const created = pod.metadata?.creationTimestamp;
    if (created === undefined) return Number.POSITIVE_INFINITY;
    return now.getTime() - new Date(created).getTime();
  }
}

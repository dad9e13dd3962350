/**
 * Lifecycle hooks (`postStart`, `preStop`), sidecar containers and the active deadline, as the
 * kubelet has them: the pure rules, and the hook runner over a small runtime interface (run a
 * command in the container, the pod's address) so it is tested without a runtime.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { resolvePort } from '../../probes/common.js';
import { httpCheck } from '../../probes/http.js';
import type { V1Container, V1Pod } from '../../wire.js';

/** A `postStart` or `preStop` handler. */
export type LifecycleHandler = NonNullable<NonNullable<V1Container['lifecycle']>['preStop']>;

/** The `User-Agent` of lifecycle httpGet requests, as the kubelet of the pinned release sends it. */
export const LIFECYCLE_USER_AGENT = 'kube-lifecycle/1.37';

/** The kubelet's least time a container gets to stop after its preStop hook. */
export const MIN_STOP_SECONDS = 2;

export const DEADLINE_REASON = 'DeadlineExceeded';
export const DEADLINE_MESSAGE = 'Pod was active on the node longer than the specified deadline';

/** What a hook needs of the container it runs for. */
export interface HookRuntime {
  /** The host of httpGet hooks that name none. */
  readonly podIP: string;
  /**
   * Runs `command` in the container (CRI `ExecSync`); `timeoutSeconds` 0 is no timeout. Resolves
   * to the exit code and output; rejects when the command could not be run.
   */
  exec(
    command: readonly string[],
    timeoutSeconds: number,
    signal: AbortSignal,
  ): Promise<{ readonly exitCode: number; readonly output: string }>;
}

/**
 * Runs one lifecycle handler for `container` and resolves when it is done; rejects with the
 * reason when it failed (for the log: the kubelet keeps the reason out of events, which could
 * show secrets). `timeoutMs` bounds it (a preStop hook has the grace period); none for postStart.
 * As the kubelet: an exec hook fails on a non-zero exit; an httpGet hook fails only when no
 * response comes (the status code does not matter); `sleep` waits; `tcpSocket` is kept in the
 * API for compatibility only and fails.
 */
export async function runHook(
  handler: LifecycleHandler,
  container: V1Container,
  runtime: HookRuntime,
  timeoutMs: number | undefined,
  signal: AbortSignal,
): Promise<void> {
  const limit =
    // A timeout past 2^31-1 ms would fire at once: such a grace period has no end.
    timeoutMs === undefined || timeoutMs > 2_147_483_647
      ? signal
      : AbortSignal.any([signal, AbortSignal.timeout(Math.max(1, timeoutMs))]);
  if (handler.exec) {
    const command = handler.exec.command ?? [];
    if (command.length === 0) throw new Error('exec hook has no command');
    const seconds = timeoutMs === undefined ? 0 : Math.max(1, Math.ceil(timeoutMs / 1000));
    const { exitCode, output } = await runtime.exec(command, seconds, limit);
    if (exitCode !== 0)
      throw new Error(
        `command '${command.join(' ')}' exited with ${String(exitCode)}: ${output.trim()}`,
      );
  } else if (handler.httpGet) {
    const action = handler.httpGet;
    const result = await httpCheck(
      {
        action,
        host: action.host || runtime.podIP,
        port: resolvePort(action.port, container),
        userAgent: LIFECYCLE_USER_AGENT,
      },
      timeoutMs === undefined ? 2_147_483_647 : Math.max(1, timeoutMs),
      limit,
    );
    if (result.outcome === 'failure' && !result.output.startsWith('HTTP probe failed'))
      throw new Error(result.output);
  } else if (handler.sleep) {
    await delay(handler.sleep.seconds * 1000, undefined, { signal: limit });
  } else {
    throw new Error(`invalid handler: ${JSON.stringify(handler)}`);
  }
}

/** Whether `c`, an init container, is a sidecar: it runs on beside the main containers. */
export function isSidecar(c: V1Container): boolean {
  return c.restartPolicy === 'Always';
}

/**
 * The order containers stop in when the pod ends, as the kubelet's: the main (and ephemeral)
 * containers together first, then the sidecars one at a time in reverse order of the spec.
 * `names` are the containers that run; each group lists those of them it holds.
 */
export function stopOrder(pod: V1Pod, names: readonly string[]): string[][] {
  const sidecars = (pod.spec?.initContainers ?? []).filter(isSidecar).map((c) => c.name);
  const running = new Set(names);
  const first = names.filter((n) => !sidecars.includes(n));
  const groups = first.length > 0 ? [first] : [];
  for (const name of [...sidecars].reverse()) if (running.has(name)) groups.push([name]);
  return groups;
}

/**
 * When the pod's active deadline passes (ms since the epoch), from its start; undefined without
 * `activeDeadlineSeconds`. An update of the pod that shortens it moves this.
 */
export function deadlineAt(pod: V1Pod, startTime: string): number | undefined {
  const seconds = pod.spec?.activeDeadlineSeconds;
  if (seconds === undefined) return undefined;
  return Date.parse(startTime) + seconds * 1000;
}

/**
 * The StopContainer timeout after a preStop hook that took `elapsedMs` of `graceSeconds`: what
 * is left, at least {@link MIN_STOP_SECONDS}, as the kubelet's `killContainer`.
 */
export function stopTimeoutSeconds(graceSeconds: number, elapsedMs: number): number {
  return Math.max(MIN_STOP_SECONDS, Math.ceil(graceSeconds - elapsedMs / 1000));
}

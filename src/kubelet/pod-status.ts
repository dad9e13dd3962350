/**
 * Pod phases and statuses as the kubelet writes them: the standard conditions, terminal phases,
 * and the statuses of pods that could not be started.
 */
import type { V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '../wire.js';
import { formatRfc3339 } from './time.js';

/** Whether `phase` is final: `Succeeded` or `Failed`. A pod never leaves a terminal phase. */
export function isTerminalPhase(phase: string | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed';
}

/** Whether the status has a terminal phase (see {@link isTerminalPhase}). */
export function isTerminal(status: V1PodStatus | undefined): boolean {
  return isTerminalPhase(status?.phase);
}

/** A deep copy of `pod` without its status: the spec and metadata a provider keeps. */
export function withoutStatus(pod: V1Pod): V1Pod {
  const copy = structuredClone(pod);
  delete copy.status;
  return copy;
}

export interface MergeOptions {
  /** The node's address, used as hostIP when the provider gives none. */
  readonly nodeIP: string;
  readonly now?: Date;
}

/**
 * The status to write for `apiPod` given what the provider reports, filled as a kubelet fills
 * it: the four standard conditions derived from the container statuses when the provider does
 * not set them, hostIP/hostIPs, podIPs from podIP, startTime, qosClass kept. Conditions keep
 * their lastTransitionTime while their status does not change. Conditions other actors own
 * (readiness gates, DisruptionTarget) are kept.
 */
export function mergeStatus(
  apiPod: V1Pod,
  reported: V1PodStatus,
  options: MergeOptions,
): V1PodStatus {
  const now = formatRfc3339(options.now ?? new Date());
  const api = apiPod.status ?? {};
  const out: V1PodStatus = { ...api, ...structuredClone(reported) };
  // A report with a phase describes the pod as it is now: an old reason (ProviderFailed after a
  // retry that worked) must not linger.
  if (reported.phase) {
    out.reason = reported.reason;
    out.message = reported.message;
  }
  out.qosClass = api.qosClass ?? reported.qosClass;
  out.hostIP = reported.hostIP ?? api.hostIP ?? options.nodeIP;
  out.hostIPs = reported.hostIPs ?? (out.hostIP ? [{ ip: out.hostIP }] : undefined);
  if (out.podIP && !reported.podIPs) out.podIPs = [{ ip: out.podIP }];
  if (!out.startTime && (out.phase === 'Running' || isTerminal(out)))
    out.startTime = api.startTime ?? now;

  const containers = out.containerStatuses ?? [];
  const specCount = apiPod.spec?.containers.length ?? containers.length;
  const allReady = containers.length >= specCount && containers.every((c) => c.ready);
  const inits = out.initContainerStatuses ?? [];
  const initsDone = inits.every((c) => c.state?.terminated?.exitCode === 0);
  const derived: Record<string, [string, string | undefined]> = {
    PodScheduled: ['True', undefined],
    Initialized: [initsDone ? 'True' : 'False', initsDone ? undefined : 'ContainersNotInitialized'],
    ContainersReady: [
      allReady && !isTerminal(out) ? 'True' : 'False',
      allReady && !isTerminal(out)
        ? undefined
        : isTerminal(out)
          ? 'PodCompleted'
          : 'ContainersNotReady',
    ],
  };
  // Ready also needs every readiness gate's condition to be True.
  const gatesOpen = (apiPod.spec?.readinessGates ?? []).every(
    (g) => (api.conditions ?? []).find((c) => c.type === g.conditionType)?.status === 'True',
  );
  const containersReady = derived.ContainersReady ?? ['False', undefined];
  derived.Ready =
    containersReady[0] === 'True' && !gatesOpen
      ? ['False', 'ReadinessGatesNotReady']
      : containersReady;

  const previous = new Map((api.conditions ?? []).map((c) => [c.type, c]));
  const fromProvider = new Map((reported.conditions ?? []).map((c) => [c.type, c]));
  const conditions: V1PodCondition[] = [];
  for (const [type, [status, reason]] of Object.entries(derived)) {
    const c: V1PodCondition = fromProvider.get(type) ?? {
      type,
      status,
      ...(reason ? { reason } : {}),
    };
    fromProvider.delete(type);
    conditions.push(withTransition(c, previous.get(type), now));
  }
  for (const c of fromProvider.values())
    conditions.push(withTransition(c, previous.get(c.type), now));
  const ours = new Set(conditions.map((c) => c.type));
  for (const c of api.conditions ?? []) if (!ours.has(c.type)) conditions.push(c);
  out.conditions = conditions;
  return out;
}

function withTransition(
  c: V1PodCondition,
  prev: V1PodCondition | undefined,
  now: string,
): V1PodCondition {
  const at = prev && prev.status === c.status ? prev.lastTransitionTime : c.lastTransitionTime;
  return { ...c, lastTransitionTime: at ?? now };
}

/** Status equality on what a status write would change; times compared as written. */
export function sameStatus(a: V1PodStatus | undefined, b: V1PodStatus | undefined): boolean {
  return canonical(a) === canonical(b);
}

/** A string that is equal for two statuses exactly when {@link sameStatus} holds. */
export function statusFingerprint(s: V1PodStatus | undefined): string {
  return canonical(s);
}

/**
 * A time as the API server keeps it: RFC 3339 at whole seconds. Statuses are compared at that
 * precision, so a provider's millisecond times do not make a written status look changed.
 */
function time(t: unknown): string {
  if (!t) return '';
  const ms = new Date(t as string).getTime();
  return Number.isNaN(ms) ? 'invalid' : new Date(Math.floor(ms / 1000) * 1000).toISOString();
}

/** `JSON.stringify` replacer for container states: their times at second precision. */
function stateTimes(this: unknown, key: string, value: unknown): unknown {
  if (key !== 'startedAt' && key !== 'finishedAt') return value;
  // The replacer sees a Date already turned into its ISO string; the holder has the original.
  const original = (this as Record<string, unknown>)[key];
  return time(original);
}

function canonical(s: V1PodStatus | undefined): string {
  if (!s) return '';
  const container = (c: V1ContainerStatus): unknown => [
    c.name,
    c.ready,
    c.started,
    c.restartCount,
    c.image,
    c.containerID,
    JSON.stringify(c.state, stateTimes),
    JSON.stringify(c.lastState, stateTimes),
  ];
  return JSON.stringify([
    s.phase,
    s.reason,
    s.message,
    s.podIP,
    s.hostIP,
    time(s.startTime),
    [...(s.conditions ?? [])]
      .sort((x, y) => (x.type < y.type ? -1 : 1))
      .map((c) => [c.type, c.status, c.reason, c.message, time(c.lastTransitionTime)]),
    (s.containerStatuses ?? []).map(container),
    (s.initContainerStatuses ?? []).map(container),
    (s.ephemeralContainerStatuses ?? []).map(container),
    (s.podIPs ?? []).map((p) => p.ip),
    (s.hostIPs ?? []).map((p) => p.ip),
  ]);
}

/**
 * The status of a pod whose creation in the provider failed. `final` marks it Failed (no retry
 * will be made, or the restart policy forbids one); otherwise it stays Pending with the reason.
 */
export function providerFailedStatus(pod: V1Pod, message: string, final: boolean): V1PodStatus {
  return {
    ...pod.status,
    phase: final ? 'Failed' : 'Pending',
    reason: 'ProviderFailed',
    message,
  };
}

/**
 * A pod that cannot start yet: Pending, each container waiting with `reason` and `message`, as a
 * kubelet shows it (CreateContainerConfigError for a missing env source, ContainerCreating for a
 * volume that cannot be mounted).
 */
export function waitingStatus(pod: V1Pod, reason: string, message: string): V1PodStatus {
  return {
    ...pod.status,
    phase: 'Pending',
    containerStatuses: (pod.spec?.containers ?? []).map((c) => ({
      name: c.name,
      image: c.image ?? '',
      imageID: '',
      ready: false,
      restartCount: 0,
      state: { waiting: { reason, message } },
    })),
  };
}

/**
 * The status of a pod whose environment could not be resolved (a missing config map or secret):
 * every container waiting with reason CreateContainerConfigError.
 */
export function configErrorStatus(pod: V1Pod, message: string): V1PodStatus {
  return waitingStatus(pod, 'CreateContainerConfigError', message);
}

/**
 * The status of a pod whose volumes cannot be mounted yet (a missing config map or secret):
 * every container waiting with reason ContainerCreating, the message saying what is missing.
 */
export function mountPendingStatus(pod: V1Pod, message: string): V1PodStatus {
  return waitingStatus(pod, 'ContainerCreating', message);
}

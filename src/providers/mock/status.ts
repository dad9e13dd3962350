/**
 * Pure functions that build and change the statuses the mock reports. They mutate only the
 * status objects passed to them, which the provider owns.
 */
import type {
  V1Container,
  V1ContainerStateTerminated,
  V1ContainerStatus,
  V1Pod,
  V1PodStatus,
} from '../../wire.js';
import { isTerminalPhase } from '../../kubelet/pod-status.js';

export interface PodAddresses {
  readonly podIP: string;
  readonly hostIP: string;
}

type ConditionType = 'PodScheduled' | 'Initialized' | 'ContainersReady' | 'Ready';

/** `mock://<uid>/<container>`, the ID a container runtime would report. */
export function containerID(pod: V1Pod, container: string): string {
  const m = pod.metadata;
  return `mock://${m?.uid ?? `${m?.namespace ?? ''}.${m?.name ?? ''}`}/${container}`;
}

function runningContainer(pod: V1Pod, c: V1Container, now: string): V1ContainerStatus {
  return {
    name: c.name,
    image: c.image ?? '',
    imageID: '',
    containerID: containerID(pod, c.name),
    ready: true,
    started: true,
    restartCount: 0,
    state: { running: { startedAt: now } },
  };
}

/**
 * The status of a pod that has just started: Running, every condition True, init containers
 * Completed (sidecars, init containers with `restartPolicy: Always`, running), every container
 * running and ready. `qosClass` is kept: the API server set it and it cannot change.
 */
export function startedStatus(pod: V1Pod, now: string, addresses: PodAddresses): V1PodStatus {
  const spec = pod.spec;
  const conditions: ConditionType[] = ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'];
  const status: V1PodStatus = {
    phase: 'Running',
    conditions: conditions.map((type) => ({ type, status: 'True', lastTransitionTime: now })),
    hostIP: addresses.hostIP,
    hostIPs: [{ ip: addresses.hostIP }],
    podIP: addresses.podIP,
    podIPs: [{ ip: addresses.podIP }],
    startTime: now,
    containerStatuses: (spec?.containers ?? []).map((c) => runningContainer(pod, c, now)),
  };
  const init = spec?.initContainers ?? [];
  if (init.length > 0) {
    status.initContainerStatuses = init.map((c) => {
      if (c.restartPolicy === 'Always') return runningContainer(pod, c, now);
      const id = containerID(pod, c.name);
      return {
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        containerID: id,
        ready: true,
        started: false,
        restartCount: 0,
        state: {
          terminated: {
            exitCode: 0,
            reason: 'Completed',
            startedAt: now,
            finishedAt: now,
            containerID: id,
          },
        },
      };
    });
  }
  if (pod.status?.qosClass !== undefined) status.qosClass = pod.status.qosClass;
  return status;
}

/** The terminated state of a container that was running until `now`. */
export function terminatedState(
  cs: V1ContainerStatus,
  exitCode: number,
  now: string,
): V1ContainerStateTerminated {
  const terminated: V1ContainerStateTerminated = {
    exitCode,
    reason: exitCode === 0 ? 'Completed' : 'Error',
    finishedAt: now,
  };
  if (cs.containerID !== undefined) terminated.containerID = cs.containerID;
  const startedAt = cs.state?.running?.startedAt;
  if (startedAt !== undefined) terminated.startedAt = startedAt;
  return terminated;
}

/**
 * Adds a running status for each ephemeral container of the spec that has none yet (the
 * kubelet starts them once and never again; they are never ready). Returns the names added.
 */
export function addEphemeralStatuses(pod: V1Pod, status: V1PodStatus, now: string): string[] {
  const known = new Set((status.ephemeralContainerStatuses ?? []).map((cs) => cs.name));
  const added: string[] = [];
  for (const c of pod.spec?.ephemeralContainers ?? []) {
    if (known.has(c.name)) continue;
    status.ephemeralContainerStatuses = [
      ...(status.ephemeralContainerStatuses ?? []),
      {
        name: c.name,
        image: c.image ?? '',
        imageID: '',
        containerID: containerID(pod, c.name),
        ready: false,
        restartCount: 0,
        state: { running: { startedAt: now } },
      },
    ];
    added.push(c.name);
  }
  return added;
}

/** Stops a running container with `exitCode`; returns whether it was running. */
export function stopContainer(cs: V1ContainerStatus, exitCode: number, now: string): boolean {
  if (cs.state?.running === undefined) return false;
  cs.state = { terminated: terminatedState(cs, exitCode, now) };
  cs.ready = false;
  cs.started = false;
  return true;
}

/** Sets a pod condition, moving its `lastTransitionTime` only when its value changes. */
export function setCondition(
  status: V1PodStatus,
  type: ConditionType,
  value: 'True' | 'False',
  now: string,
  reason?: string,
): void {
  status.conditions ??= [];
  let condition = status.conditions.find((c) => c.type === type);
  if (condition === undefined) {
    condition = { type, status: value, lastTransitionTime: now };
    status.conditions.push(condition);
  } else if (condition.status !== value) {
    condition.status = value;
    condition.lastTransitionTime = now;
  }
  if (reason === undefined) delete condition.reason;
  else condition.reason = reason;
}

/**
 * Recomputes the phase and the readiness conditions from the container statuses, as the kubelet
 * does: a pod whose containers have all terminated is Succeeded when every exit code is 0 and
 * Failed otherwise; a terminal phase never changes again.
 */
export function settle(status: V1PodStatus, now: string): void {
  const containers = status.containerStatuses ?? [];
  if (!isTerminalPhase(status.phase) && containers.every((c) => c.state?.terminated)) {
    status.phase = containers.every((c) => c.state?.terminated?.exitCode === 0)
      ? 'Succeeded'
      : 'Failed';
  }
  const ready = !isTerminalPhase(status.phase) && containers.every((c) => c.ready);
  const reason = ready
    ? undefined
    : status.phase === 'Succeeded'
      ? 'PodCompleted'
      : 'ContainersNotReady';
  setCondition(status, 'ContainersReady', ready ? 'True' : 'False', now, reason);
  setCondition(status, 'Ready', ready ? 'True' : 'False', now, reason);
}

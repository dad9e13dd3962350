/**
 * Pods whose spec can never run: reported once (an Event and a Pending status with reason
 * InvalidPodSpec whose containers wait with reason CreateContainerConfigError, as a kubelet
 * shows a container it cannot configure), never handed to the provider and never retried. A change of the spec syncs the
 * pod again, which checks it again.
 */
import type { V1Pod, V1PodStatus } from '../wire.js';
import { errorCode } from '../errors.js';
import { configErrorStatus } from '../kubelet/pod-status.js';

/** The Event reason of a pod whose spec the node refuses. */
export const INVALID_SPEC_REASON = 'InvalidPodSpec';
/** Longest message in the status and the Event: one per container would add up. */
const MAX_MESSAGE_CHARS = 1024;

/** What the check needs of the controller. */
export interface SpecRejection {
  event(pod: V1Pod, reason: string, message: string): void;
  putStatus(
    record: { rejected?: string },
    pod: V1Pod,
    status: V1PodStatus,
    signal: AbortSignal,
  ): Promise<void>;
}

/**
 * Reports that `pod` cannot run because of `problems` (see `podSpecProblems`), unless the same
 * problems were reported for this record already. Status writes the API refuses as stale are
 * left to the next sync.
 */
export async function rejectSpec(
  to: SpecRejection,
  record: { rejected?: string },
  pod: V1Pod,
  problems: string,
  signal: AbortSignal,
): Promise<void> {
  if (record.rejected === problems) return;
  const text = `invalid pod spec: ${problems}`;
  const message = text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text;
  to.event(pod, INVALID_SPEC_REASON, message);
  try {
    // The pod's own reason too: a pod without containers has no container status to carry it.
    const status = { ...configErrorStatus(pod, message), reason: INVALID_SPEC_REASON, message };
    await to.putStatus(record, pod, status, signal);
  } catch (err) {
    if (errorCode(err) !== 'Conflict' && errorCode(err) !== 'InvalidInput') throw err;
  }
  record.rejected = problems;
}

import type { V1Pod } from '../wire.js';

/**
 * The parts of a pod Kubernetes lets change after creation and a provider may act on
 * (containers' images, activeDeadlineSeconds, tolerations, labels, annotations), as one string.
 * Two pods with the same fingerprint need no `updatePod`.
 */
export function mutableFingerprint(pod: V1Pod): string {
  const images = (cs: { name: string; image?: string }[] | undefined): [string, string][] =>
    (cs ?? []).map((c) => [c.name, c.image ?? '']);
  return JSON.stringify([
    images(pod.spec?.containers),
    images(pod.spec?.initContainers),
    (pod.spec?.ephemeralContainers ?? []).map((c) => c.name),
    pod.spec?.activeDeadlineSeconds ?? null,
    pod.spec?.tolerations ?? [],
    sorted(pod.metadata?.labels),
    sorted(pod.metadata?.annotations),
  ]);
}

function sorted(m: Record<string, string> | undefined): [string, string][] {
  return Object.entries(m ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Whether an informer update needs the pod synced into the provider: a change of a mutable
 * field, or the start of its deletion. Status-only changes (our own writes) do not.
 */
export function needsSync(oldPod: V1Pod, newPod: V1Pod): boolean {
  const o = oldPod.metadata;
  const n = newPod.metadata;
  return (
    o?.deletionTimestamp !== n?.deletionTimestamp ||
    o?.deletionGracePeriodSeconds !== n?.deletionGracePeriodSeconds ||
    mutableFingerprint(oldPod) !== mutableFingerprint(newPod)
  );
}

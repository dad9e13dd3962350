/**
 * `runAsNonRoot` as the kubelet enforces it: with no `runAsUser`, the image's user decides, and
 * a container that would run as root (or as a user name that cannot be checked) is not created.
 */
import type { V1Container, V1Pod } from '../../wire.js';

/** The image's user, as the runtime's `ImageStatus` reports it. */
export interface ImageUser {
  /** The numeric user of the image's config, when it names one. */
  readonly uid?: bigint;
  /** The user name of the image's config, when it is not numeric. */
  readonly username?: string;
}

/**
 * Whether the decision needs the image's user: the effective `runAsNonRoot` (the container's
 * over the pod's) is true and no `runAsUser` is set.
 */
export function needsImageUser(pod: V1Pod, c: V1Container): boolean {
  const { runAsNonRoot, runAsUser } = effective(pod, c);
  return runAsNonRoot === true && runAsUser === undefined;
}

/**
 * The kubelet's refusal of a container under `runAsNonRoot`, or undefined when it may run.
 * `image` is the image's user (see {@link needsImageUser}); an image that names no user runs as
 * root, as the kubelet treats it.
 */
export function runAsNonRootError(
  pod: V1Pod,
  c: V1Container,
  image: ImageUser | undefined,
): string | undefined {
  const { runAsNonRoot, runAsUser } = effective(pod, c);
  if (runAsNonRoot !== true) return undefined;
  const m = pod.metadata ?? {};
  const where = `(pod: "${m.name ?? ''}_${m.namespace ?? ''}(${m.uid ?? ''})", container: ${c.name})`;
  if (runAsUser !== undefined)
    return runAsUser === 0 ? `container's runAsUser breaks non-root policy ${where}` : undefined;
  const uid = image?.uid ?? (image?.username ? undefined : 0n);
  if (uid === 0n) return `container has runAsNonRoot and image will run as root ${where}`;
  if (uid === undefined && image?.username)
    return `container has runAsNonRoot and image has non-numeric user (${image.username}), cannot verify user is non-root ${where}`;
  return undefined;
}

/** The image's user from a CRI `Image` message (`uid` an Int64Value, `username` a string). */
export function imageUserOf(image: Record<string, unknown> | null | undefined): ImageUser {
  const uid = (image?.uid as { value?: unknown } | null | undefined)?.value;
  const username = typeof image?.username === 'string' ? image.username : '';
  return {
    ...(typeof uid === 'string' || typeof uid === 'number' ? { uid: BigInt(uid) } : {}),
    ...(username ? { username } : {}),
  };
}

function effective(
  pod: V1Pod,
  c: V1Container,
): { runAsNonRoot: boolean | undefined; runAsUser: number | undefined } {
  const sc = c.securityContext ?? {};
  const psc = pod.spec?.securityContext ?? {};
  return {
    runAsNonRoot: sc.runAsNonRoot ?? psc.runAsNonRoot,
    runAsUser: sc.runAsUser ?? psc.runAsUser,
  };
}

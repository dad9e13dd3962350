/**
 * A pod's image pull credentials, read from the Secrets of its `spec.imagePullSecrets` for a
 * provider with `setPodPullCredentials`. As the kubelet: a Secret that cannot be read or used is
 * left out with a Warning Event, and the pull goes on with what was found.
 */
import type { PodEvent, RegistryCredential } from '../provider.js';
import type { V1Pod } from '../wire.js';
import { parsePullSecret, PullSecretError } from '../kubelet/pull-secrets.js';
import type { ObjectSource } from './env.js';

/** The reason of the Warning Event about a pull secret left out, as the kubelet's. */
export const FAILED_PULL_SECRET_REASON = 'FailedToRetrieveImagePullSecret';

export interface PodPullCredentials {
  /** Every entry of every Secret that could be used, in the pod's order of Secrets. */
  readonly credentials: RegistryCredential[];
  /** Warning Events to record on the pod; they name Secrets, never their content. */
  readonly events: PodEvent[];
}

/**
 * Reads the pod's image pull secrets from `source` (in the pod's namespace, each name once).
 * Never throws for a Secret: a missing or unreadable one, or one that is not a docker config,
 * becomes a Warning Event. Throws only when `signal` aborted.
 */
export async function resolvePullCredentials(
  pod: V1Pod,
  source: Pick<ObjectSource, 'getSecret'>,
  signal?: AbortSignal,
): Promise<PodPullCredentials> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const names = [
    ...new Set((pod.spec?.imagePullSecrets ?? []).map((r) => r.name ?? '').filter(Boolean)),
  ];
  const read = await Promise.allSettled(names.map((name) => source.getSecret(namespace, name)));
  signal?.throwIfAborted();
  const credentials: RegistryCredential[] = [];
  const unretrieved: string[] = [];
  const events: PodEvent[] = [];
  names.forEach((name, i) => {
    const result = read[i];
    const secret = result?.status === 'fulfilled' ? result.value : undefined;
    if (secret === undefined) {
      unretrieved.push(name);
      return;
    }
    try {
      credentials.push(...parsePullSecret(secret));
    } catch (err) {
      if (!(err instanceof PullSecretError)) throw err;
      events.push({
        type: 'Warning',
        reason: FAILED_PULL_SECRET_REASON,
        message: `Unable to use an image pull secret: ${err.message}; attempting to pull the image may not succeed.`,
      });
    }
  });
  if (unretrieved.length > 0)
    events.unshift({
      type: 'Warning',
      reason: FAILED_PULL_SECRET_REASON,
      message: `Unable to retrieve some image pull secrets (${unretrieved.join(', ')}); attempting to pull the image may not succeed.`,
    });
  return { credentials, events };
}

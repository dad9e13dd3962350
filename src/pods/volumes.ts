/**
 * Volume content resolution against the API: reads the ConfigMaps and Secrets a pod's volumes
 * refer to and requests their service-account tokens, then projects them into files with the
 * kubelet's rules (kubelet/volume-projection.ts).
 */
import type { V1Pod } from '../wire.js';
import type { ResolvedVolume } from '../provider.js';
import {
  podTokenRequests,
  podVolumeObjects,
  projectPodVolumes,
  tokenRequestKey,
  type ResolveVolumesOptions,
  type TokenRequestSpec,
} from '../kubelet/volume-projection.js';
import { readAll, settled, type ObjectSource } from './env.js';

/**
 * Where the resolver reads API objects (in the pod's namespace) and gets tokens. Calls are made
 * at most once per object and per token spec during one {@link resolvePodVolumes} call.
 */
export interface VolumeSource extends ObjectSource {
  /**
   * A token of the pod's service account bound to `pod` (TokenRequest API). Implementations
   * cache tokens and return the same one until it is due for refresh. Failures throw.
   */
  getServiceAccountToken(pod: V1Pod, spec: TokenRequestSpec): Promise<string>;
}

/**
 * The content of every configMap, secret, downwardAPI and projected volume of `pod` (see
 * {@link projectPodVolumes}), reading what they refer to from `source` first. The input is never
 * mutated.
 *
 * Throws `VolumeResolutionError` for the first volume that cannot be resolved; a failed read
 * fails the volume that needs it with reason `SourceFailed`.
 */
export async function resolvePodVolumes(
  pod: V1Pod,
  source: VolumeSource,
  options: ResolveVolumesOptions = {},
): Promise<ResolvedVolume[]> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const refs = podVolumeObjects(pod);
  const tokenSpecs = podTokenRequests(pod);
  const [configMaps, secrets, tokens] = await Promise.all([
    readAll(refs.configMaps, (name) => source.getConfigMap(namespace, name)),
    readAll(refs.secrets, (name) => source.getSecret(namespace, name)),
    readAll(tokenSpecs, (spec) => source.getServiceAccountToken(pod, spec), tokenRequestKey),
  ]);
  return projectPodVolumes(
    pod,
    {
      configMap: (name) => settled(configMaps, name),
      secret: (name) => settled(secrets, name),
      token: (spec) => settled(tokens, tokenRequestKey(spec)) ?? '',
    },
    options,
  );
}

/**
 * Volume content resolution against the API: reads the ConfigMaps and Secrets a pod's volumes
 * refer to and requests their service-account tokens, then projects them into files with the
 * kubelet's rules (kubelet/volume-projection.ts).
 */
import type { V1Pod } from '../wire.js';
import type { ResolvedVolume } from '../provider.js';
import {
  VolumeResolutionError,
  podTokenRequests,
  podVolumeObjects,
  projectPodVolumes,
  tokenRequestKey,
  type ResolveVolumesOptions,
  type TokenRequestSpec,
} from '../kubelet/volume-projection.js';
import { errorMessage } from '../errors.js';
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

/**
 * Checks that every non-optional ConfigMap and Secret that `pod`'s volumes (plain or projected)
 * name exists in the pod's namespace, for a provider that does not take volume content: a
 * kubelet mounts nothing before they all exist, so the pod must not start without them either.
 * Items, keys and tokens are not checked (the provider never gets the files).
 *
 * Throws `VolumeResolutionError` (`ObjectNotFound`, retryable) for the first volume, in spec
 * order, that names a missing object; a failed read throws it with reason `SourceFailed`.
 */
export async function checkVolumeObjects(pod: V1Pod, source: ObjectSource): Promise<void> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const needs: { volume: string; kind: 'configmap' | 'secret'; name: string }[] = [];
  for (const volume of pod.spec?.volumes ?? []) {
    const add = (kind: 'configmap' | 'secret', name?: string, optional?: boolean): void => {
      if (name !== undefined && name !== '' && optional !== true)
        needs.push({ volume: volume.name, kind, name });
    };
    add('configmap', volume.configMap?.name, volume.configMap?.optional);
    add('secret', volume.secret?.secretName, volume.secret?.optional);
    for (const projection of volume.projected?.sources ?? []) {
      add('configmap', projection.configMap?.name, projection.configMap?.optional);
      add('secret', projection.secret?.name, projection.secret?.optional);
    }
  }
  if (needs.length === 0) return;
  const read = (key: string): Promise<unknown> => {
    const [kind, name] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
    return kind === 'configmap'
      ? source.getConfigMap(namespace, name)
      : source.getSecret(namespace, name);
  };
  const found = await readAll([...new Set(needs.map((n) => `${n.kind}/${n.name}`))], read);
  for (const need of needs) {
    let obj: unknown;
    try {
      obj = settled(found, `${need.kind}/${need.name}`);
    } catch (err) {
      throw new VolumeResolutionError(
        'SourceFailed',
        need.volume,
        `cannot read ${need.kind} ${JSON.stringify(need.name)}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    if (obj === undefined)
      throw new VolumeResolutionError(
        'ObjectNotFound',
        need.volume,
        `${need.kind} ${JSON.stringify(need.name)} not found`,
      );
  }
}

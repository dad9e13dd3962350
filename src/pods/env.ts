/**
 * Container environment resolution against the API: reads what a pod's environment refers to,
 * then applies the kubelet's rules (kubelet/container-env.ts), so that providers never talk to
 * the API server.
 */
import type { V1ConfigMap, V1Pod, V1Secret, V1Service } from '../wire.js';
import {
  envServiceNamespaces,
  podEnvObjects,
  resolvePodEnvFrom,
  type EnvObjects,
  type ResolveEnvOptions,
  type ResolvedPodEnv,
} from '../kubelet/container-env.js';

/** Where ConfigMaps and Secrets are read; implementations usually read an informer cache. */
export interface ObjectSource {
  /** The ConfigMap, or undefined when it does not exist (404). Other failures throw. */
  getConfigMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  /** The Secret, or undefined when it does not exist (404). Other failures throw. */
  getSecret(namespace: string, name: string): Promise<V1Secret | undefined>;
}

/**
 * Where the resolver reads API objects, all in the pod's namespace except the master service.
 * Calls are made at most once per object (or per namespace for services) during one
 * {@link resolvePodEnv} call.
 */
export interface EnvSource extends ObjectSource {
  /** The Services of `namespace`. Failures throw. */
  listServices(namespace: string): Promise<V1Service[]>;
}

/**
 * Resolves the environment of every container of `pod`, reading every ConfigMap, Secret and
 * Service it refers to from `source` first. The input is never mutated.
 *
 * Throws what {@link resolvePodEnvFrom} throws; errors thrown by `source` propagate unchanged,
 * a failed Service list first, then a failed ConfigMap or Secret read where the resolution
 * reaches it.
 */
export async function resolvePodEnv(
  pod: V1Pod,
  source: EnvSource,
  options: ResolveEnvOptions = {},
): Promise<ResolvedPodEnv> {
  if (pod.spec === undefined) return resolvePodEnvFrom(pod, NO_OBJECTS, options);
  const namespace = pod.metadata?.namespace ?? 'default';
  const services = new Map<string, V1Service[]>();
  for (const ns of envServiceNamespaces(pod, options)) {
    if (ns !== undefined && !services.has(ns)) services.set(ns, await source.listServices(ns));
  }
  const refs = podEnvObjects(pod);
  const [configMaps, secrets] = await Promise.all([
    readAll(refs.configMaps, (name) => source.getConfigMap(namespace, name)),
    readAll(refs.secrets, (name) => source.getSecret(namespace, name)),
  ]);
  return resolvePodEnvFrom(
    pod,
    {
      configMap: (name) => settled(configMaps, name),
      secret: (name) => settled(secrets, name),
      services: (ns) => services.get(ns) ?? [],
    },
    options,
  );
}

const NO_OBJECTS: EnvObjects = {
  configMap: () => undefined,
  secret: () => undefined,
  services: () => [],
};

/** Every read's outcome by key, failures kept to be thrown where the resolver needs them. */
export async function readAll<I, T>(
  items: readonly I[],
  read: (item: I) => Promise<T | undefined>,
  keyOf: (item: I) => string = String,
): Promise<Map<string, PromiseSettledResult<T | undefined>>> {
  const results = await Promise.allSettled(items.map(read));
  const byKey = new Map<string, PromiseSettledResult<T | undefined>>();
  items.forEach((item, i) => {
    const result = results[i];
    if (result !== undefined) byKey.set(keyOf(item), result);
  });
  return byKey;
}

/** The value read for `key`, or its failure thrown; undefined for a key never read. */
export function settled<T>(
  results: ReadonlyMap<string, PromiseSettledResult<T | undefined>>,
  key: string,
): T | undefined {
  const result = results.get(key);
  if (result === undefined) return undefined;
  if (result.status === 'rejected') throw result.reason;
  return result.value;
}

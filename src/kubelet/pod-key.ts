/**
 * Pod keys: `namespace/name`, how the kubelet, informers and work queues name a pod. A key is
 * not an identity across re-creation (the UID is); it names the pod the API serves now.
 */
import type { V1Pod } from '../wire.js';

/** `namespace/name`. */
export function namespacedKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The key of `pod`; missing metadata gives empty parts (`/name`, `ns/`). */
export function podKey(pod: V1Pod): string {
  return namespacedKey(pod.metadata?.namespace ?? '', pod.metadata?.name ?? '');
}

/** The namespace and name of a key made by {@link namespacedKey}; undefined without a `/`. */
export function splitPodKey(key: string): { namespace: string; name: string } | undefined {
  const slash = key.indexOf('/');
  if (slash < 0) return undefined;
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

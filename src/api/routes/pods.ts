import type { V1Pod } from '../../wire.js';

/** A `v1` `PodList` of `items`, as the kubelet encodes one. */
export function podList(items: readonly V1Pod[]): {
  kind: 'PodList';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  items: V1Pod[];
} {
  return { kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [...items] };
}

/**
 * The runtime's view of a pod, as the kubelet serves it on `/runningpods`: the pod's name,
 * namespace and UID, and each container's name and image, nothing else. A provider's pods are
 * the pods it was given, with their environment resolved (values from Secrets included), so
 * nothing else of them may leave the node.
 */
export function runtimePodOf(pod: V1Pod): V1Pod {
  const { name, namespace, uid } = pod.metadata ?? {};
  return {
    metadata: {
      ...(name !== undefined ? { name } : {}),
      ...(namespace !== undefined ? { namespace } : {}),
      ...(uid !== undefined ? { uid } : {}),
    },
    spec: {
      containers: (pod.spec?.containers ?? []).map((c) => ({
        name: c.name,
        ...(c.image !== undefined ? { image: c.image } : {}),
      })),
    },
  };
}

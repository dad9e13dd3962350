/**
 * Ephemeral containers (`kubectl debug`) on the cri provider, as the kubelet runs them: each one
 * new in the pod's spec is created once in the pod's running sandbox and never restarted; with
 * `targetContainerName` it joins the target container's PID namespace (`NamespaceMode TARGET`,
 * the target's container ID in `target_id`), so it sees and can trace the target's processes.
 */
import type { V1Container, V1ContainerStatus, V1EphemeralContainer, V1Pod } from '../../wire.js';
import type { Message } from './client.js';

/** What decides about one ephemeral container on a sync. */
export type EphemeralStep =
  /** Create and start it now, with these runtime options. */
  | { readonly start: true; readonly targetId: string | undefined }
  /** Leave it: it was created once already, or its target has no running container yet. */
  | { readonly start: false };

/**
 * Whether the ephemeral container `c` is to be started now. `created` says whether it has been
 * created before (it is never created again, whatever became of it); `targetIdOf` gives the
 * running container ID of a container of the pod by name.
 */
export function ephemeralStep(
  c: V1EphemeralContainer,
  created: boolean,
  targetIdOf: (name: string) => string | undefined,
): EphemeralStep {
  if (created) return { start: false };
  if (!c.targetContainerName) return { start: true, targetId: undefined };
  const targetId = targetIdOf(c.targetContainerName);
  return targetId === undefined ? { start: false } : { start: true, targetId };
}

/** The fields an ephemeral container shares with an ordinary one, for the container config. */
export function asContainer(c: V1EphemeralContainer): V1Container {
  // An ephemeral container has no ports, probes or resources (the API server rejects them);
  // the rest of its fields are those of a container.
  const rest = { ...c };
  delete rest.targetContainerName;
  return rest;
}

/**
 * `config` (a CRI `ContainerConfig`) with the PID namespace of the target container when
 * `targetId` is given, as the kubelet sets it for `kubectl debug --target`.
 */
export function withTargetPid(config: Message, targetId: string | undefined): Message {
  if (targetId === undefined) return config;
  const linux = (config.linux ?? {}) as Message;
  const security = (linux.security_context ?? {}) as Message;
  const namespaces = (security.namespace_options ?? {}) as Message;
  return {
    ...config,
    linux: {
      ...linux,
      security_context: {
        ...security,
        namespace_options: { ...namespaces, pid: 'TARGET', target_id: targetId },
      },
    },
  };
}

/** The ephemeral containers of the pod's spec. */
export function ephemeralContainers(pod: V1Pod): readonly V1EphemeralContainer[] {
  return pod.spec?.ephemeralContainers ?? [];
}

/**
 * An ephemeral container's status from the status an ordinary one would have: as the kubelet
 * reports them, never ready and without `started`.
 */
export function ephemeralStatus(status: V1ContainerStatus): V1ContainerStatus {
  const rest = { ...status, ready: false };
  delete rest.started;
  return rest;
}

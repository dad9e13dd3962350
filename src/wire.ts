/**
 * Kubernetes objects as the API server sends and receives them: JSON, so every time is a string
 * (RFC 3339, `metav1.Time` to the second, `metav1.MicroTime` to the microsecond).
 *
 * `@kubernetes/client-node` describes the same objects with `Date` fields because its own client
 * converts them; ours does not (it passes the JSON through), so its model types would lie about
 * what the code holds. These are its models with every `Date` turned into `string`, under the
 * same names. Types only: this module has no runtime code.
 */
import type * as k8s from '@kubernetes/client-node';

/** `T` as it travels as JSON: `Date` fields become strings, recursively. */
export type Wire<T> = T extends Date
  ? string
  : T extends readonly (infer U)[]
    ? Wire<U>[]
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

/** An int-or-string field (ports, maxUnavailable): no times, so the same as client-node's. */
export type IntOrString = k8s.IntOrString;

export type CoreV1Event = Wire<k8s.CoreV1Event>;
export type V1ConfigMap = Wire<k8s.V1ConfigMap>;
export type V1Container = Wire<k8s.V1Container>;
export type V1ContainerPort = Wire<k8s.V1ContainerPort>;
export type V1ContainerState = Wire<k8s.V1ContainerState>;
export type V1ContainerStateRunning = Wire<k8s.V1ContainerStateRunning>;
export type V1ContainerStateTerminated = Wire<k8s.V1ContainerStateTerminated>;
export type V1ContainerStateWaiting = Wire<k8s.V1ContainerStateWaiting>;
export type V1ContainerStatus = Wire<k8s.V1ContainerStatus>;
export type V1DownwardAPIVolumeFile = Wire<k8s.V1DownwardAPIVolumeFile>;
export type V1EnvFromSource = Wire<k8s.V1EnvFromSource>;
export type V1EnvVar = Wire<k8s.V1EnvVar>;
export type V1EphemeralContainer = Wire<k8s.V1EphemeralContainer>;
export type V1HTTPGetAction = Wire<k8s.V1HTTPGetAction>;
export type V1KeyToPath = Wire<k8s.V1KeyToPath>;
export type V1Lease = Wire<k8s.V1Lease>;
export type V1Node = Wire<k8s.V1Node>;
export type V1NodeCondition = Wire<k8s.V1NodeCondition>;
export type V1NodeStatus = Wire<k8s.V1NodeStatus>;
export type V1ObjectFieldSelector = Wire<k8s.V1ObjectFieldSelector>;
export type V1ObjectMeta = Wire<k8s.V1ObjectMeta>;
export type V1ObjectReference = Wire<k8s.V1ObjectReference>;
export type V1Pod = Wire<k8s.V1Pod>;
export type V1PodCondition = Wire<k8s.V1PodCondition>;
export type V1PodSpec = Wire<k8s.V1PodSpec>;
export type V1HostAlias = Wire<k8s.V1HostAlias>;
export type V1PodStatus = Wire<k8s.V1PodStatus>;
export type V1Probe = Wire<k8s.V1Probe>;
export type V1ResourceFieldSelector = Wire<k8s.V1ResourceFieldSelector>;
export type V1Secret = Wire<k8s.V1Secret>;
export type V1Service = Wire<k8s.V1Service>;
export type V1ServiceAccountTokenProjection = Wire<k8s.V1ServiceAccountTokenProjection>;
export type V1Status = Wire<k8s.V1Status>;
export type V1Taint = Wire<k8s.V1Taint>;
export type V1Volume = Wire<k8s.V1Volume>;
export type V1VolumeProjection = Wire<k8s.V1VolumeProjection>;
export type V1Toleration = Wire<k8s.V1Toleration>;
export type V1ServiceAccount = Wire<k8s.V1ServiceAccount>;
export type V1Namespace = Wire<k8s.V1Namespace>;

// The public API of the library. Everything else is internal and may change.
// The API objects as the API server sends them (every time an RFC 3339 string).
export type {
  CoreV1Event,
  V1ConfigMap,
  V1Container,
  V1ContainerPort,
  V1ContainerState,
  V1ContainerStateRunning,
  V1ContainerStateTerminated,
  V1ContainerStateWaiting,
  V1ContainerStatus,
  V1DownwardAPIVolumeFile,
  V1EnvFromSource,
  V1EnvVar,
  V1EphemeralContainer,
  IntOrString,
  V1HTTPGetAction,
  V1KeyToPath,
  V1Lease,
  V1Node,
  V1NodeCondition,
  V1NodeStatus,
  V1ObjectFieldSelector,
  V1ObjectMeta,
  V1ObjectReference,
  V1Pod,
  V1PodCondition,
  V1PodSpec,
  V1PodStatus,
  V1Probe,
  V1ResourceFieldSelector,
  V1Secret,
  V1Service,
  V1ServiceAccountTokenProjection,
  V1Status,
  V1Taint,
  V1Volume,
  V1VolumeProjection,
  Wire,
} from './wire.js';
export type {
  AttachStreams,
  Capability,
  CapabilityInterfaces,
  Closable,
  ContainerAttach,
  ContainerExec,
  ContainerLogOptions,
  ContainerLogs,
  ContainerStats,
  CPUStats,
  FsStats,
  InterfaceStats,
  MemoryStats,
  NetworkStats,
  NodeConfigurer,
  NodeProvider,
  NodeStats,
  PodAddresses,
  PodAddressProvider,
  PodLifecycleHandler,
  PodEvent,
  PodEventNotifier,
  PodNotifier,
  PodStats,
  PodPullCredentials,
  PodVolumes,
  PortForwarder,
  Provider,
  RegistryCredential,
  ResolvedVolume,
  ResourceMetricsProvider,
  RlimitStats,
  RuntimeStats,
  ServiceReflection,
  StatsProvider,
  Summary,
  SwapStats,
  TerminalSize,
  VolumeFile,
  VolumeStats,
} from './provider.js';
export {
  CAPABILITIES,
  CAPABILITY_NAMES,
  hasCapability,
  hasContainerAttach,
  hasContainerExec,
  hasContainerLogs,
  hasPodAddresses,
  hasPodEvents,
  hasPodVolumes,
  hasPortForward,
  hasPullCredentials,
  hasResourceMetrics,
  hasServiceReflection,
  hasStats,
  isClosable,
  isNodeConfigurer,
  isNodeProvider,
  isPodNotifier,
} from './provider.js';
export {
  VirtualKubeletError,
  alreadyExists,
  conflict,
  errorCode,
  errorMessage,
  httpStatusOf,
  invalidInput,
  isRetryable,
  isVirtualKubeletError,
  notFound,
  notImplemented,
  permanent,
  unavailable,
} from './errors.js';
export type { CodedError, ErrorCode } from './errors.js';
export type { Logger } from './log.js';
export { silentLogger } from './log.js';
export { VirtualNode } from './agent/virtual-node.js';
export { NodeGroup } from './agent/node-group.js';
export type { NodeGroupOptions } from './agent/node-group.js';
export type { VirtualNodeOptions } from './agent/virtual-node.js';
export { NodeController } from './node/node-controller.js';
export type { NodeControllerOptions } from './node/node-controller.js';
export { PodController } from './pods/pod-controller.js';
export type { PodControllerOptions } from './pods/pod-controller.js';
export { PollNotifier } from './pods/poll-notifier.js';
export { resolvePodEnv } from './pods/env.js';
export type { EnvSource } from './pods/env.js';
export { EnvResolutionError } from './kubelet/env-error.js';
export type { ResolveEnvOptions } from './kubelet/container-env.js';
export { resolvePodVolumes } from './pods/volumes.js';
export type { VolumeSource } from './pods/volumes.js';
export { VolumeResolutionError } from './kubelet/volume-projection.js';
export type {
  ResolveVolumesOptions,
  TokenRequestSpec,
  VolumeResolutionReason,
} from './kubelet/volume-projection.js';
// The kubelet API, for `VirtualNodeOptions.api` or a server of one's own: who may call it, and
// the serving certificate it presents.
export { KubeletServer } from './api/server.js';
export type { KubeletServerOptions, PodSource } from './api/server.js';
export type { StreamTimeouts } from './api/streams/types.js';
export { WebhookAuthorizer, allowAll, userFromCertificate } from './api/auth.js';
export type {
  Authorizer,
  RequestAttributes,
  RequestUser,
  WebhookAuthorizerOptions,
} from './api/auth.js';
export {
  certificateFromCsr,
  certificateFromFiles,
  rotateCertificate,
  selfSignedCertificate,
} from './api/certs.js';
export type { CsrOptions, ServingCertificate, ServingNames } from './api/certs.js';
export { KubeClient, ApiError, loadKubeConfig } from './kube/client.js';
export type { ApiErrorOptions, KubeClientOptions } from './kube/client.js';
export { KubeConfig } from './kube/kubeconfig.js';
export type {
  KubeConfigSource,
  KubeConfigOptions,
  KubeCluster,
  KubeUser,
  KubeContext,
} from './kube/kubeconfig.js';
export { Informer } from './kube/informer.js';
export { SharedInformer } from './kube/shared-informer.js';
export type { ObjectCache, SharedInformerOptions } from './kube/shared-informer.js';
export { EventRecorder } from './kube/events.js';
export { WorkQueue } from './queue/index.js';
export type { WorkQueueOptions, WorkQueueStats } from './queue/index.js';
export { MockProvider } from './providers/mock/index.js';
export {
  ExternalProvider,
  ProviderServer,
  PROTOCOL_VERSION,
  PROTO_PATH,
  startExternalProvider,
} from './providers/external/index.js';
export type {
  ExternalConfig,
  ExternalProviderOptions,
  ProviderServerOptions,
  StartExternalOptions,
} from './providers/external/index.js';
export type { MockProviderOptions, MockConfig } from './providers/mock/index.js';

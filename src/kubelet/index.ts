/**
 * The kubelet's rules as pure functions, for providers: what a kubelet computes from a pod and
 * the objects it refers to, without talking to an API server.
 */
export {
  envServiceNamespaces,
  isValidEnvVarName,
  podNeedsObjects,
  resolvePodEnvFrom,
} from './container-env.js';
export type {
  EnvEvent,
  EnvObjects,
  PodObjectRefs,
  ResolvedPodEnv,
  ResolveEnvOptions,
} from './container-env.js';
export {
  formatResolvConf,
  MAX_DNS_NAMESERVERS,
  MAX_DNS_SEARCH_LIST_CHARS,
  MAX_DNS_SEARCH_PATHS,
  parseResolvConf,
  podDnsConfig,
  podHostsFile,
  podResolvConf,
} from './dns.js';
export type { DnsConfig, DnsEvent, HostsFileOptions, PodDns, PodDnsOptions } from './dns.js';
export { fieldRefValue, readsPodIP, resourceFieldRefValue } from './downward-api.js';
export type { DownwardApiAddresses, ResourceDefaults } from './downward-api.js';
export { EnvResolutionError } from './env-error.js';
export type { EnvResolutionReason } from './env-error.js';
export { expandEnvValue } from './env-expansion.js';
export { goArch } from './go-arch.js';
export { podHostname } from './hostname.js';
export {
  credentialsForImage,
  imageRepository,
  normalizeRegistryKey,
  registryKeyMatches,
} from './image-credentials.js';
export type { ImageRepository } from './image-credentials.js';
export { namespacedKey, podKey, splitPodKey } from './pod-key.js';
export { parsePullSecret, PullSecretError } from './pull-secrets.js';
export type { PullSecretProblem } from './pull-secrets.js';
export {
  configErrorStatus,
  mountPendingStatus,
  waitingStatus,
  isTerminal,
  isTerminalPhase,
  mergeStatus,
  providerFailedStatus,
  sameStatus,
  withoutStatus,
} from './pod-status.js';
export type { MergeOptions } from './pod-status.js';
export {
  MAX_ANNOTATION_BYTES,
  MAX_LABEL_LENGTH,
  MAX_SUBDOMAIN_LENGTH,
  podSpecProblems,
} from './pod-validation.js';
export {
  ceilDiv,
  parseQuantity,
  parseQuantityExact,
  quantityMilliValue,
  quantityValue,
} from './quantity.js';
export type { ExactQuantity } from './quantity.js';
export {
  escapeLabelValue,
  formatResourceMetrics,
  summaryCpuStats,
  summaryMemoryStats,
} from './resource-metrics.js';
export type {
  ContainerResourceUsage,
  MemoryUsage,
  PodResourceUsage,
  ResourceMetricsInput,
  ResourceUsage,
} from './resource-metrics.js';
export { serviceLinkEnvVars } from './service-links.js';
export {
  formatGoDuration,
  formatMicroTime,
  formatRfc3339,
  formatRfc3339NanoFixed,
} from './time.js';
export {
  DEFAULT_VOLUME_FILE_MODE,
  isResolvedVolume,
  projectPodVolumes,
  podTokenRequests,
  tokenRequestKey,
  volumeDigest,
  volumePathError,
  VolumeResolutionError,
} from './volume-projection.js';
export type {
  ResolveVolumesOptions,
  TokenRequestSpec,
  VolumeObjects,
  VolumeResolutionReason,
} from './volume-projection.js';

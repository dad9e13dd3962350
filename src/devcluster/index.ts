export { ensureBinaries, ensureKubelet, binaryPaths, formatSeconds, kubeletPath } from './build.js';
export type { Binaries, BuildOptions } from './build.js';
export { DevCluster, freePorts, assertPortFree } from './cluster.js';
export type { ClusterInfo, Component, DevClusterOptions } from './cluster.js';
export { up, down, serve, readState, liveState } from './background.js';
export type { ClusterState, ServeOptions, UpOptions } from './background.js';
export { DevClusterError } from './errors.js';
export type { DevClusterErrorCode } from './errors.js';
export {
  ensurePki,
  issueCert,
  renderKubeconfig,
  writeNodeKubeconfig,
  writeNodeServingCertificate,
  PKI,
} from './pki.js';
export type {
  CertRequest,
  KubeconfigOptions,
  NodeKubeconfigOptions,
  NodeServingCertificateOptions,
} from './pki.js';
export {
  isDecided,
  KUBELET_SERVING_SIGNER,
  ServingCsrApprover,
  servingCsrDecision,
} from './csr-approver.js';
export type {
  ServingCsr,
  ServingCsrApproverOptions,
  ServingCsrDecision,
  ServingNode,
} from './csr-approver.js';
export { ensureHelm, helmPath, HELM_VERSION } from './helm.js';
export { cacheRoot, defaultClusterDir } from './paths.js';
export {
  cleanUpServices,
  CLUSTER_DNS_IP,
  CLUSTER_DOMAIN,
  DEFAULT_DNS_SERVER_ADDRESS,
  DEFAULT_POD_CIDR,
  DNS_INTERFACE,
  ENDPOINTSLICE_MANAGER,
  KUBE_PROXY_NFT_TABLES,
  SERVICE_CIDR,
} from './services.js';
export type { ServicesInfo, ServicesOptions } from './services.js';
export { spawnOwned, stopProcess, isAlive, isAliveAs } from './process.js';
export {
  KUBERNETES_VERSION,
  ETCD_VERSION,
  METRICS_SERVER_VERSION,
  COREDNS_VERSION,
} from './versions.js';
export {
  DevRuntime,
  CRI_NAMESPACE,
  liveRuntimeState,
  readRuntimeState,
  runtimeDown,
  runtimeUp,
  serveRuntime,
} from './runtime.js';
export type { DevRuntimeOptions, RuntimeComponent, RuntimeInfo, RuntimeState } from './runtime.js';
export {
  BUSYBOX_OS_RELEASE,
  ensureTestImage,
  pushImage,
  TEST_IMAGE_NAMES,
  TEST_IMAGE_TAG,
} from './images.js';
export type { RegistryCredentials, TestImageName } from './images.js';
export { defaultRuntimeDir } from './paths.js';

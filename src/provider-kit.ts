// `virtual-kubelet/provider`: what a provider author needs, and nothing of the core. A provider
// written against this entry point keeps working while the core changes: the contract, the error
// family the core reads codes from, the Logger it is handed, and the kubelet's rules as pure
// functions (so a provider does what a kubelet does without copying it).

// The contract, and the API objects it passes as the API server sends them.
export type { V1Container, V1Node, V1Pod, V1PodStatus } from './wire.js';
export type {
  AttachStreams,
  ContainerAttach,
  ContainerExec,
  ContainerLogOptions,
  ContainerLogs,
  NodeConfigurer,
  NodeProvider,
  PodLifecycleHandler,
  PodEvent,
  PodEventNotifier,
  PodNotifier,
  PodVolumes,
  PortForwarder,
  Provider,
  ResolvedVolume,
  StatsProvider,
  TerminalSize,
  VolumeFile,
} from './provider.js';
export {
  hasContainerAttach,
  hasContainerExec,
  hasContainerLogs,
  hasPodEvents,
  hasPodVolumes,
  hasPortForward,
  hasStats,
  isNodeConfigurer,
  isNodeProvider,
  isPodNotifier,
} from './provider.js';

// The errors: the code of what a provider throws tells the core whether to retry.
export {
  VirtualKubeletError,
  alreadyExists,
  errorCode,
  invalidInput,
  isRetryable,
  notFound,
  notImplemented,
  permanent,
  unavailable,
} from './errors.js';
export type { ErrorCode } from './errors.js';

// The logger a provider is handed (pino-compatible).
export type { Logger } from './log.js';
export { silentLogger } from './log.js';

// The kubelet's rules, pure functions without I/O.
export { expandEnvValue } from './kubelet/env-expansion.js';

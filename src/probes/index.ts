/**
 * The probe engine for local providers: startup, readiness and liveness probes (exec, httpGet,
 * tcpSocket, grpc) with the kubelet's timing, thresholds, messages and events. A provider
 * implements {@link ProbeRuntime} (the pod's IP, running a command in a container) and turns
 * what the engine reports into container state.
 */
export {
  ProbeManager,
  type ContainerStart,
  type ProbeManagerOptions,
  type ProbeRestart,
} from './manager.js';
export {
  ContainerProber,
  type ContainerProberOptions,
  type ProbeEventReason,
  type ProbeState,
  type RestartReason,
} from './prober.js';
export type { ExecOptions, ExecResult, ProbeRuntime } from './runtime.js';
export { runProbe, type ProbeTarget } from './check.js';
export type { ProbeOutcome, ProbeResult } from './common.js';
export { validateProbe, validateProbes, type ProbeKind } from './validate.js';

/**
 * What a local provider gives the probe engine: the pod's address and a way to run a command in
 * one of its containers. Everything else (timing, thresholds, HTTP, TCP and gRPC checks, events)
 * is the engine's.
 */

/** What a command run for an exec probe did. */
export interface ExecResult {
  readonly exitCode: number;
  /** Combined stdout and stderr; only the first 10 KiB are kept. */
  readonly output?: string;
}

export interface ExecOptions {
  /**
   * The probe's timeout, for information only: the engine enforces it by firing `signal`. A
   * runtime that takes a timeout of its own (CRI's `ExecSync`) may pass it on.
   */
  readonly timeoutMs: number;
  /** Fires when the timeout elapsed or probing stopped. */
  readonly signal: AbortSignal;
}

/** The pod a prober probes, as its provider runs it. */
export interface ProbeRuntime {
  /**
   * The pod's IP: the host of grpc probes, and of httpGet and tcpSocket probes that set none.
   * An IPv6 address is written without brackets.
   */
  readonly podIP: string;
  /**
   * Runs `command` (already `$(VAR)`-expanded) in the container named `container` (its
   * namespaces, environment and user) and resolves to its exit code and output. When
   * `options.signal` fires it must kill the command and settle soon. A rejection means the
   * command could not be run at all (not that it failed): the engine discards such an attempt
   * instead of counting it. Without it, containers with exec probes cannot be probed.
   */
  exec?(container: string, command: readonly string[], options: ExecOptions): Promise<ExecResult>;
}

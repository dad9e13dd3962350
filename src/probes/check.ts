import type { V1Container, V1Probe } from '../wire.js';
import { resolvePort, type ProbeResult } from './common.js';
import { execCheck, expandCommand } from './exec.js';
import { grpcCheck } from './grpc.js';
import { httpCheck } from './http.js';
import type { ProbeRuntime } from './runtime.js';
import { tcpCheck } from './tcp.js';

/** What a probe attempt needs to know about the container it probes. */
export interface ProbeTarget {
  readonly container: V1Container;
  /** The pod's address, and the exec of exec probes (an exec probe without it throws). */
  readonly runtime: ProbeRuntime;
  /** `User-Agent` of HTTP and gRPC probes. */
  readonly userAgent: string;
}

/**
 * Makes one attempt of `probe` (whichever handler it has) and classifies it. `timeoutMs` bounds
 * the attempt; `signal` cancels it (resolving to a failure nobody should count). Throws when the
 * attempt could not be made: no handler, an unresolvable port, no `exec` for an exec probe, or
 * `exec` rejecting; the kubelet discards such attempts instead of counting them as failures.
 * An exec probe's command has `$(VAR)` expanded from the container's `env` first.
 */
export async function runProbe(
  probe: V1Probe,
  target: ProbeTarget,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  if (probe.exec) {
    const { runtime, container } = target;
    if (!runtime.exec) throw new Error('exec probes are not supported here');
    const command = expandCommand(probe.exec.command ?? [], container.env);
    const exec = runtime.exec.bind(runtime, container.name);
    return execCheck(exec, command, timeoutMs, signal);
  }
  if (probe.httpGet) {
    const port = resolvePort(probe.httpGet.port, target.container);
    const host = probe.httpGet.host || target.runtime.podIP;
    return httpCheck(
      { action: probe.httpGet, host, port, userAgent: target.userAgent },
      timeoutMs,
      signal,
    );
  }
  if (probe.tcpSocket) {
    const port = resolvePort(probe.tcpSocket.port, target.container);
    return tcpCheck(probe.tcpSocket.host || target.runtime.podIP, port, timeoutMs, signal);
  }
  if (probe.grpc) {
    const port = resolvePort(probe.grpc.port, target.container);
    return grpcCheck(
      target.runtime.podIP,
      port,
      probe.grpc.service ?? '',
      target.userAgent,
      timeoutMs,
      signal,
    );
  }
  throw new Error('probe has no handler');
}

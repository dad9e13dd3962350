/**
 * What the single-shot probe checks share: their result shape, the per-attempt deadline, and the
 * kubelet's ways of naming addresses, ports, durations and network errors in probe messages.
 */
import type { IntOrString, V1Container } from '../wire.js';

/**
 * The outcome of one probe attempt, as the kubelet's probers classify it. `warning` counts as a
 * success (the kubelet records a `ProbeWarning` event, for instance for an off-host redirect).
 * An attempt that could not be made at all (an unresolvable port, an exec that threw) is not a
 * result: the check throws, and the kubelet discards such attempts.
 */
export type ProbeOutcome = 'success' | 'warning' | 'failure';

export interface ProbeResult {
  readonly outcome: ProbeOutcome;
  /** The probe's output (exec output, HTTP body) or the reason of its failure, for events. */
  readonly output: string;
}

/** The kubelet keeps at most this much of a probe's output (exec output, HTTP response body). */
export const MAX_OUTPUT_BYTES = 10 * 1024;

export const success = (output = ''): ProbeResult => ({ outcome: 'success', output });
export const warning = (output: string): ProbeResult => ({ outcome: 'warning', output });
export const failure = (output: string): ProbeResult => ({ outcome: 'failure', output });

/** One probe attempt's deadline: fires on `timeoutMs` or when the outer signal fires. */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Whether the deadline fired because `timeoutMs` elapsed (rather than the outer signal). */
  timedOut(): boolean;
  /** Clears the timer and the listener on the outer signal. Idempotent. */
  dispose(): void;
}

export function deadline(outer: AbortSignal, timeoutMs: number): Deadline {
  const controller = new AbortController();
  let expired = false;
  const onOuter = (): void => controller.abort(outer.reason);
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new Error('probe timed out'));
  }, timeoutMs);
  if (outer.aborted) onOuter();
  else outer.addEventListener('abort', onOuter, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => expired,
    dispose: () => {
      clearTimeout(timer);
      outer.removeEventListener('abort', onOuter);
    },
  };
}

/** `host:port`, with an IPv6 host in brackets (Go's `net.JoinHostPort`). */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${String(port)}` : `${host}:${String(port)}`;
}

/**
 * The container port `port` names: a number, or the name of one of `container.ports` (a string
 * holding a number is accepted too, as the kubelet does). Throws when it resolves to nothing or
 * to a number outside 1-65535.
 */
export function resolvePort(port: IntOrString, container: V1Container): number {
  let n: number;
  if (typeof port === 'number') n = port;
  else {
    const named = container.ports?.find((p) => p.name === port);
    if (named) n = named.containerPort;
    else if (/^\d+$/.test(port)) n = Number(port);
    else throw new Error(`port ${port} not found`);
  }
  if (!Number.isInteger(n) || n <= 0 || n >= 65536) throw new Error(`invalid port number: ${n}`);
  return n;
}

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connect: connection refused',
  EHOSTUNREACH: 'connect: no route to host',
  ENETUNREACH: 'connect: network is unreachable',
  ECONNRESET: 'read: connection reset by peer',
  EPIPE: 'write: broken pipe',
  ETIMEDOUT: 'i/o timeout',
};

/**
 * A network error in the words of Go's `net` package (`dial tcp 10.0.0.7:80: connect: connection
 * refused`), which is what users see in kubelet probe events and search for.
 */
export function dialError(address: string, err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  const text = typeof code === 'string' ? ERRNO_TEXT[code] : undefined;
  if (text) return `dial tcp ${address}: ${text}`;
  const message = err instanceof Error ? err.message : String(err);
  return `dial tcp ${address}: ${message}`;
}

/**
 * The seam between the kubelet API routes and the streaming protocols (SPDY/3.1 and the
 * WebSocket channel protocols). A route authenticates and validates a request, then hands the
 * upgrade to a protocol module, which negotiates, collects the client's streams and gives back a
 * session the route connects to the provider.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
import type { TerminalSize } from '../../provider.js';

/** Which streams an exec or attach client asked for (query `input`, `output`, `error`, `tty`). */
export interface RemoteCommandOptions {
  readonly stdin: boolean;
  readonly stdout: boolean;
  /** False when `tty` is set: a terminal has no separate stderr (the kubelet drops it). */
  readonly stderr: boolean;
  readonly tty: boolean;
}

export interface StreamTimeouts {
  /** How long the client may take to open all its streams after the upgrade. Default: 30 000 ms. */
  readonly streamCreationTimeoutMs?: number;
  /** A connection without any traffic for this long is closed. Default: 4 h (the kubelet's). */
  readonly streamIdleTimeoutMs?: number;
}

/** How an exec or attach ended. */
export type RemoteCommandResult = { readonly exitCode: number } | { readonly error: Error };

/** An established exec or attach session. The fields match the provider's AttachStreams. */
export interface RemoteCommandSession {
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  /** Terminal sizes sent by the client (only with `tty`). Ends when the session ends. */
  readonly resize?: AsyncIterable<TerminalSize>;
  /** The negotiated protocol, e.g. `v5.channel.k8s.io`. */
  readonly protocol: string;
  /** Fires when the client goes away (connection closed, reset, idle timeout). */
  readonly signal: AbortSignal;
  /**
   * Ends the session: reports the result on the error channel in the negotiated protocol's form
   * (a `metav1.Status` for v4/v5, with reason `NonZeroExitCode` and an `ExitCode` cause for a
   * non-zero exit; plain text for v1-v3), flushes and closes stdout/stderr/error, and closes the
   * connection. Idempotent; resolves when the bytes are handed to the socket.
   */
  finish(result: RemoteCommandResult): Promise<void>;
}

/** One forwarded TCP connection of a port-forward session. */
export interface PortForwardStream {
  readonly port: number;
  /** Bytes to and from the pod's port. End it when the pod side ends. */
  readonly data: Duplex;
  /** Reports a failure to the client (kubectl prints it) and closes the pair. */
  fail(message: string): void;
}

/** Called for every forwarded connection; the handler pipes `stream.data` to the pod's port. */
export type PortForwardHandler = (stream: PortForwardStream) => void;

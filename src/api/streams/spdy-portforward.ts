/**
 * port-forward over SPDY/3.1 (protocol `portforward.k8s.io`), as the kubelet serves it (k8s
 * `portforward/httpstream.go`) and client-go's port forwarder (kubectl, directly or tunnelled
 * through the apiserver) uses it. One connection carries any number of forwarded TCP
 * connections; for each the client opens an `error` stream and then a `data` stream, both with
 * headers `port` and `requestid`. It half-closes the error stream at once and only reads it: a
 * message there is a failure kubectl reports, its FIN means "this forwarded connection is over".
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../../errors.js';
import type { SpdySession, SpdyStream } from '../../spdy/session.js';
import { resolveStreamTimeouts, upgradeSpdy } from './spdy-upgrade.js';
import type { PortForwardHandler, StreamTimeouts } from './types.js';

/** The only SPDY port-forward protocol. */
export const PORTFORWARD_SPDY_PROTOCOLS: readonly string[] = ['portforward.k8s.io'];

/**
 * Most streams one port-forward connection may have open: two per forwarded connection, so 128
 * forwarded connections at once. Past it a SYN_STREAM is answered RST_STREAM REFUSED_STREAM.
 */
export const PORTFORWARD_MAX_STREAMS = 256;

/**
 * Completes a SPDY port-forward upgrade and serves the connection until it closes: every pair
 * of streams becomes one call of `handler`. Returns `false` when the handshake failed (the
 * client got a raw HTTP 400/403 and the socket is closed), `true` otherwise.
 *
 * Streams without a valid `port` (1-65535) or with a `streamtype` other than `error`/`data` are
 * refused with RST_STREAM. A pair not complete within `streamCreationTimeoutMs` is answered
 * "timed out waiting for streams" on its error stream and both its streams are released. At most
 * `PORTFORWARD_MAX_STREAMS` streams are open at once. When the `data` stream closes
 * (both directions done, or reset by either side) the error stream is closed, which tells the
 * client the forwarded connection is over.
 *
 * Throws (before touching the socket) only for invalid `timeouts`.
 */
export function acceptSpdyPortForward(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  handler: PortForwardHandler,
  timeouts?: StreamTimeouts,
): boolean {
  const { streamCreationTimeoutMs, streamIdleTimeoutMs } = resolveStreamTimeouts(timeouts);
  const pairs = new PairTable(handler, streamCreationTimeoutMs);
  const upgraded = upgradeSpdy(req, socket, head, PORTFORWARD_SPDY_PROTOCOLS, {
    idleTimeoutMs: streamIdleTimeoutMs,
    maxStreams: PORTFORWARD_MAX_STREAMS,
    onStream: (stream) => pairs.add(stream),
  });
  if (upgraded === undefined) return false;
  pairs.attach(upgraded.session);
  return true;
}

/** The streams of one forwarded connection, keyed by request id. */
class StreamPair {
  readonly requestId: string;
  error: SpdyStream | undefined;
  data: SpdyStream | undefined;
  timer: NodeJS.Timeout | undefined;
  #failed = false;

  constructor(requestId: string) {
    this.requestId = requestId;
  }

  /**
   * Reports `message` on the error stream (if there is one) and closes both streams. With
   * `release`, the error stream is also destroyed once the message is written, rather than
   * waiting for a FIN the client may never send.
   */
  fail(message: string, release = false): void {
    if (this.#failed) return;
    this.#failed = true;
    clearTimeout(this.timer);
    const error = this.error;
    if (error !== undefined && !error.destroyed && !error.writableEnded) {
      error.end(Buffer.from(message, 'utf8'), () => {
        if (release) error.destroy();
      });
    } else if (release) {
      error?.destroy();
    }
    this.data?.destroy();
  }
}

class PairTable {
  readonly #handler: PortForwardHandler;
  readonly #creationTimeoutMs: number;
  readonly #pending = new Map<string, StreamPair>();
  #closed = false;

  constructor(handler: PortForwardHandler, creationTimeoutMs: number) {
    this.#handler = handler;
    this.#creationTimeoutMs = creationTimeoutMs;
  }

  attach(session: SpdySession): void {
    session.on('close', () => {
      this.#closed = true;
      for (const pair of this.#pending.values()) clearTimeout(pair.timer);
      this.#pending.clear();
    });
  }

  /** The session's `onStream`: `false` refuses the stream. */
  add(stream: SpdyStream): boolean {
    if (this.#closed) return false;
    stream.on('error', ignore);
    const port = parsePort(stream.header('port'));
    const type = stream.header('streamtype');
    if (port === undefined || (type !== 'error' && type !== 'data')) return false;
    // Clients without request ids (before Kubernetes 1.6): the data stream follows its error
    // stream, two ids later.
    const requestId =
      stream.header('requestid') ?? String(type === 'error' ? stream.id : stream.id - 2);
    let pair = this.#pending.get(requestId);
    if (pair === undefined) {
      const created = new StreamPair(requestId);
      created.timer = setTimeout(() => {
        this.#pending.delete(requestId);
        created.fail(`(request=${requestId}) timed out waiting for streams`, true);
      }, this.#creationTimeoutMs);
      this.#pending.set(requestId, created);
      pair = created;
    }
    if (pair[type] !== undefined) {
      // The kubelet reports the duplicate on the pair's error stream and keeps the pair.
      pair.error?.write(
        `error processing stream for request ${requestId}: ${type} stream already assigned`,
      );
      return false;
    }
    pair[type] = stream;
    if (type === 'error') {
      // The client half-closes the error stream at once; read it so its FIN is noticed.
      stream.resume();
    }
    const { error, data } = pair;
    if (error !== undefined && data !== undefined) {
      this.#pending.delete(requestId);
      clearTimeout(pair.timer);
      // After the SYN_REPLY has gone out (the session sends it when this hook returns): a
      // client whose data stream is reset before the reply never reads the error stream, so a
      // handler failing at once would go unreported.
      queueMicrotask(() => {
        this.#start(pair, error, data, port);
      });
    }
    return true;
  }

  #start(pair: StreamPair, error: SpdyStream, data: SpdyStream, port: number): void {
    if (data.destroyed) {
      // Reset by the client, or the connection ended, before the handler's turn.
      if (!error.destroyed && !error.writableEnded) error.end();
      return;
    }
    // The forwarded connection is over once the data stream is: closing the error stream then
    // lets the client finish its side (it waits for that FIN).
    data.once('close', () => {
      if (!error.destroyed && !error.writableEnded) error.end();
    });
    try {
      this.#handler({
        port,
        data,
        fail: (message) => {
          pair.fail(message);
        },
      });
    } catch (err) {
      pair.fail(`error forwarding port ${String(port)}: ${errorMessage(err)}`);
    }
  }
}

function parsePort(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,5}$/.test(value)) return undefined;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : undefined;
}

function ignore(): void {
  // A stream of ours errs only when misused (e.g. written after its end); that must not take
  // the process down.
}

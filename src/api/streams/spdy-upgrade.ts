/**
 * The SPDY/3.1 upgrade handshake of the kubelet's streaming endpoints (k8s `httpstream.Handshake`
 * and `httpstream/spdy/upgrade.go`): protocol negotiation through `X-Stream-Protocol-Version`,
 * then `101 Switching Protocols` written raw on the socket Node's `'upgrade'` event hands over.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { invalidInput } from '../../errors.js';
import { SpdySession, type SpdySessionOptions } from '../../spdy/session.js';
import type { StreamTimeouts } from './types.js';

export const HEADER_PROTOCOL_VERSION = 'X-Stream-Protocol-Version';
export const HEADER_ACCEPTED_PROTOCOL_VERSIONS = 'X-Accepted-Stream-Protocol-Versions';

/** The kubelet's `DefaultStreamCreationTimeout`. */
export const DEFAULT_STREAM_CREATION_TIMEOUT_MS = 30_000;
/** The kubelet's default `streamingConnectionIdleTimeout`. */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 4 * 60 * 60 * 1000;

/** setTimeout's limit. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `timeouts` with the defaults filled in and clamped to what a timer can wait (about 24.8 days).
 * Throws `InvalidInput` for a value that is not a positive number.
 */
export function resolveStreamTimeouts(
  timeouts: StreamTimeouts | undefined,
): Required<StreamTimeouts> {
  const creation = timeouts?.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS;
  const idle = timeouts?.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
  for (const [name, value] of [
    ['streamCreationTimeoutMs', creation],
    ['streamIdleTimeoutMs', idle],
  ] as const) {
    if (!(value > 0)) throw invalidInput(`${name} must be a positive number, got ${String(value)}`);
  }
  return {
    streamCreationTimeoutMs: Math.min(creation, MAX_TIMER_MS),
    streamIdleTimeoutMs: Math.min(idle, MAX_TIMER_MS),
  };
}

export interface SpdyUpgrade {
  readonly session: SpdySession;
  /** The negotiated `X-Stream-Protocol-Version`, echoed in the 101 response. */
  readonly protocol: string;
}

/** Whether the request asks for a SPDY/3.1 upgrade (`Connection: Upgrade`, `Upgrade: SPDY/3.1`). */
export function isSpdyUpgrade(req: IncomingMessage): boolean {
  const connection = (req.headers.connection ?? '').toLowerCase();
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  return connection.includes('upgrade') && upgrade.includes('spdy/3.1');
}

/** The protocols the client offers, in its order: repeated and comma-joined headers alike. */
export function offeredStreamProtocols(req: IncomingMessage): string[] | undefined {
  const values = req.headersDistinct[HEADER_PROTOCOL_VERSION.toLowerCase()];
  if (values === undefined) return undefined;
  return values
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value.length > 0);
}

/**
 * Negotiates and completes a SPDY/3.1 upgrade. The first protocol in the client's list that
 * `supported` contains wins. On success writes the 101 response, disables Nagle and returns a
 * session that processes `head` and then the socket (see `SpdySession`); the session writes
 * nothing until the client's first frame.
 *
 * Returns `undefined` after answering with a raw HTTP error and closing the socket:
 * 400 when `X-Stream-Protocol-Version` is missing or empty, 403 with one
 * `X-Accepted-Stream-Protocol-Versions` header per supported protocol when nothing matches, 400
 * "unable to upgrade: missing upgrade headers in request" without the SPDY upgrade headers
 * (checked after negotiation, as the kubelet does).
 */
export function upgradeSpdy(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  supported: readonly string[],
  options: SpdySessionOptions,
): SpdyUpgrade | undefined {
  const offered = offeredStreamProtocols(req);
  if (offered === undefined) {
    rejectUpgrade(
      socket,
      400,
      `unable to upgrade: header ${HEADER_PROTOCOL_VERSION} does not exist in request`,
    );
    return undefined;
  }
  if (offered.length === 0) {
    rejectUpgrade(
      socket,
      400,
      `unable to upgrade: header ${HEADER_PROTOCOL_VERSION} contains no valid protocols`,
    );
    return undefined;
  }
  const protocol = offered.find((p) => supported.includes(p));
  if (protocol === undefined) {
    rejectUpgrade(
      socket,
      403,
      `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], server accepts [${supported.join(' ')}]`,
      supported.map((p) => [HEADER_ACCEPTED_PROTOCOL_VERSIONS, p] as const),
    );
    return undefined;
  }
  if (!isSpdyUpgrade(req)) {
    rejectUpgrade(socket, 400, 'unable to upgrade: missing upgrade headers in request');
    return undefined;
  }
  const setNoDelay = (socket as Partial<{ setNoDelay(noDelay: boolean): unknown }>).setNoDelay;
  if (typeof setNoDelay === 'function') setNoDelay.call(socket, true);
  const setTimeout = (socket as Partial<{ setTimeout(ms: number): unknown }>).setTimeout;
  // Our idle timer replaces any socket timeout the HTTP server may have set.
  if (typeof setTimeout === 'function') setTimeout.call(socket, 0);
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Connection: Upgrade\r\n' +
      'Upgrade: SPDY/3.1\r\n' +
      `${HEADER_PROTOCOL_VERSION}: ${sanitize(protocol)}\r\n\r\n`,
  );
  return { session: new SpdySession(socket, options, head), protocol };
}

const REASONS: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  403: 'Forbidden',
};

/**
 * Answers an upgrade request with a plain-text HTTP error (as Go's `http.Error` writes it) and
 * closes the socket once the response is flushed.
 */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  message: string,
  headers: readonly (readonly [string, string])[] = [],
): void {
  const body = Buffer.from(`${message}\n`, 'utf8');
  const lines = [
    `HTTP/1.1 ${String(status)} ${REASONS[status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    'X-Content-Type-Options: nosniff',
    ...headers.map(([name, value]) => `${name}: ${sanitize(value)}`),
    `Content-Length: ${String(body.length)}`,
    'Connection: close',
  ];
  socket.on('error', () => {
    // The client may be gone already; nothing more to tell it.
  });
  if (socket.destroyed || socket.writableEnded) return;
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]), () => {
    socket.destroy();
  });
}

/** Keeps a header value on one line. */
function sanitize(value: string): string {
  return value.replace(/[\r\n]/g, ' ');
}

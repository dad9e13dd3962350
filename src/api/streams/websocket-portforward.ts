/**
 * Port-forward over the WebSocket channel protocols, as the kubelet serves it: the ports come from
 * the `port` query; for the i-th port, channel 2i carries data both ways and channel 2i+1 carries
 * error text to the client. The first message on each of the two channels is the port number as
 * an unsigned 16-bit little-endian value. One forwarded connection per port per WebSocket; the
 * WebSocket closes once every connection has ended.
 */
import type { IncomingMessage } from 'node:http';
import { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { errorMessage } from '../../errors.js';
import type { PortForwardHandler, PortForwardStream, StreamTimeouts } from './types.js';
import {
  CLOSE_GRACE_MS,
  ChannelConnection,
  MAX_BASE64_CHANNEL,
  chooseProtocol,
  offeredProtocols,
  resolveIdleTimeoutMs,
  isWebSocketUpgrade,
  rejectUpgrade,
  upgradeToWebSocket,
} from './websocket-channels.js';

/** Server preference; the client's order decides among those it offers. `''`: no subprotocol. */
export const PORTFORWARD_WEBSOCKET_PROTOCOLS: readonly string[] = [
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'channel.k8s.io',
  'base64.channel.k8s.io',
  '',
];

/** Buffered client bytes per port before the socket stops being read. */
const DATA_HIGH_WATER_MARK_BYTES = 256 * 1024;

/**
 * Most ports one WebSocket port-forward request may name: each takes two channels, and binary
 * framing carries channels 0-255. A request past it is answered 400.
 */
export const MAX_PORTFORWARD_PORTS = 128;
/** Most ports under base64 framing, whose channels stop at `MAX_BASE64_CHANNEL` (207). */
export const MAX_BASE64_PORTFORWARD_PORTS = Math.floor((MAX_BASE64_CHANNEL + 1) / 2);

/**
 * The ports of a WebSocket port-forward request: every `port` query value, each a
 * comma-separated list of ports 1-65535, at most `maxPorts` (default `MAX_PORTFORWARD_PORTS`)
 * in all. Returns an error message instead when the list is missing, invalid or too long.
 */
export function parsePortQuery(
  url: string | undefined,
  maxPorts: number = MAX_PORTFORWARD_PORTS,
): number[] | string {
  const values = new URL(url ?? '/', 'http://localhost').searchParams.getAll('port');
  if (values.length === 0) return 'query parameter "port" is required';
  const ports: number[] = [];
  for (const value of values) {
    for (const text of value.split(',')) {
      if (ports.length === maxPorts) {
        return `too many ports: at most ${String(maxPorts)} per port-forward request`;
      }
      const trimmed = text.trim();
      const port = /^\d{1,5}$/.test(trimmed) ? Number(trimmed) : NaN;
      if (!(port >= 1 && port <= 65535)) {
        return `invalid port ${JSON.stringify(text)}: must be an integer from 1 to 65535`;
      }
      ports.push(port);
    }
  }
  return ports;
}

/**
 * Completes a WebSocket port-forward upgrade and calls `handler` once per requested port, in
 * query order, right after the port headers are queued.
 *
 * Returns `false` when the request was refused; the client has then been answered with a raw HTTP
 * error (400 without WebSocket upgrade headers, or with a missing or invalid `port` query or more
 * than `MAX_PORTFORWARD_PORTS` ports (`MAX_BASE64_PORTFORWARD_PORTS` under base64), 403 when
 * none of the offered subprotocols is supported) and the socket is closed. Returns `true` once the
 * connection is upgraded. `streamCreationTimeoutMs` does not apply to WebSocket.
 *
 * Throws (before touching the socket) only for invalid `timeouts`.
 */
export function acceptWebSocketPortForward(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  handler: PortForwardHandler,
  timeouts?: StreamTimeouts,
): boolean {
  const idleMs = resolveIdleTimeoutMs(timeouts);
  if (!isWebSocketUpgrade(req)) {
    rejectUpgrade(socket, 400, 'unable to upgrade: missing upgrade headers in request');
    return false;
  }
  // The framing bounds the channels, so the count: the protocol the upgrade will pick decides.
  const base64 =
    chooseProtocol(offeredProtocols(req), PORTFORWARD_WEBSOCKET_PROTOCOLS)?.includes('base64') ===
    true;
  const ports = parsePortQuery(
    req.url,
    base64 ? MAX_BASE64_PORTFORWARD_PORTS : MAX_PORTFORWARD_PORTS,
  );
  if (typeof ports === 'string') {
    rejectUpgrade(socket, 400, ports);
    return false;
  }
  const upgraded = upgradeToWebSocket(req, socket, head, PORTFORWARD_WEBSOCKET_PROTOCOLS);
  if (upgraded === undefined) return false;
  const session = new WebSocketPortForwardSession(upgraded.ws, upgraded.protocol, ports, idleMs);
  session.start(handler);
  return true;
}

/** One forwarded port: its Duplex and its channels. */
class ForwardedPort {
  readonly port: number;
  readonly data: Duplex;
  readonly #connection: ChannelConnection;
  readonly #dataChannel: number;
  readonly #onDone: () => void;
  #done = false;

  constructor(connection: ChannelConnection, index: number, port: number, onDone: () => void) {
    this.port = port;
    this.#connection = connection;
    this.#dataChannel = 2 * index;
    this.#onDone = onDone;
    const dataChannel = this.#dataChannel;
    this.data = new Duplex({
      highWaterMark: DATA_HIGH_WATER_MARK_BYTES,
      read: () => {
        connection.release(dataChannel);
      },
      write: (chunk: Buffer, _encoding, callback) => {
        // Waiting for the socket to take each chunk is the back-pressure; bytes for a client that
        // is gone are dropped (the Duplex is destroyed right after).
        void connection.sendData(dataChannel, chunk).then(() => {
          callback();
        });
      },
      final: (callback) => {
        this.#markDone();
        callback();
      },
      destroy: (err, callback) => {
        connection.release(dataChannel);
        this.#markDone();
        callback(err);
      },
    });
    // A provider's misuse must not become an unhandled 'error' that ends the process.
    this.data.on('error', () => undefined);
  }

  /** Queues the port header on the data and the error channel. */
  sendHeaders(): void {
    const header = Buffer.alloc(2);
    header.writeUInt16LE(this.port, 0);
    void this.#connection.send(this.#dataChannel, header);
    void this.#connection.send(this.#dataChannel + 1, header);
  }

  fail(message: string): void {
    if (this.#done) return;
    void this.#connection.send(this.#dataChannel + 1, Buffer.from(message, 'utf8'));
    this.data.destroy();
  }

  /** Client bytes for the pod. */
  receive(payload: Buffer): void {
    if (this.#done || this.data.destroyed || this.data.readableEnded || payload.length === 0) {
      return;
    }
    if (!this.data.push(payload)) this.#connection.hold(this.#dataChannel);
  }

  /** The client is gone: EOF to the pod side, then the pair is torn down. */
  disconnect(): void {
    if (this.data.destroyed) return;
    this.data.push(null);
    const data = this.data;
    // Let the handler read what the client sent before it went away, but not wait forever.
    if (data.readableLength === 0) {
      data.destroy();
      return;
    }
    const timer = setTimeout(() => data.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    data.once('end', () => {
      clearTimeout(timer);
      data.destroy();
    });
  }

  #markDone(): void {
    if (this.#done) return;
    this.#done = true;
    this.#onDone();
  }
}

class WebSocketPortForwardSession {
  readonly #connection: ChannelConnection;
  readonly #ports: ForwardedPort[];
  #open: number;

  constructor(ws: WebSocket, protocol: string, ports: readonly number[], idleMs: number) {
    this.#connection = new ChannelConnection(ws, {
      protocol,
      base64: protocol.includes('base64'),
      closeSignals: false,
      idleTimeoutMs: idleMs,
      onData: (channel, payload) => {
        // Odd channels are server-to-client error channels: client messages there are ignored.
        if (channel % 2 === 0) this.#ports[channel / 2]?.receive(payload);
      },
      onClose: () => {
        for (const port of this.#ports) port.disconnect();
      },
    });
    this.#open = ports.length;
    this.#ports = ports.map(
      (port, index) =>
        new ForwardedPort(this.#connection, index, port, () => {
          this.#open--;
          if (this.#open === 0) void this.#connection.close();
        }),
    );
  }

  start(handler: PortForwardHandler): void {
    for (const port of this.#ports) port.sendHeaders();
    for (const port of this.#ports) {
      // The handler sees only the contract, not the session's plumbing.
      const stream: PortForwardStream = {
        port: port.port,
        data: port.data,
        fail: (message) => {
          port.fail(message);
        },
      };
      try {
        handler(stream);
      } catch (err) {
        port.fail(errorMessage(err));
      }
    }
  }
}

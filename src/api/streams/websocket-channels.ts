/**
 * The Kubernetes WebSocket channel protocols (`channel.k8s.io` and relatives) shared by exec,
 * attach and port-forward: upgrade checks and subprotocol negotiation, message framing (binary or
 * base64), the v5 close signal, idle timeout, and flow control in both directions.
 *
 * Framing: binary protocols send binary messages whose first byte is the channel number; base64
 * protocols send text messages whose first character is `'0' + channel` followed by the payload
 * in standard base64. Under `v5.channel.k8s.io` a client message `0xFF <channel>` half-closes that
 * channel; any other message starting with `0xFF` is a protocol error.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { invalidInput } from '../../errors.js';
import type { StreamTimeouts } from './types.js';

/** How long a closing handshake (or a connection's last drain) may take before the socket is dropped. */
export const CLOSE_GRACE_MS = 5_000;
/** The kubelet's default `streamIdleTimeout`: 4 h. */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 4 * 60 * 60 * 1000;
/** Larger writes are split into messages of at most this many payload bytes. */
export const MAX_MESSAGE_PAYLOAD_BYTES = 64 * 1024;
/**
 * Largest message a client may send (`ws`'s `maxPayload`, whose default is 100 MiB); a larger
 * one closes the connection with 1009 (message too big). Clients send stdin and port-forward data
 * in chunks of at most 32 KiB, base64 included.
 */
export const WEBSOCKET_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Highest channel binary framing can carry: the channel is one byte. */
export const MAX_BINARY_CHANNEL = 0xff;
/** Highest channel base64 framing can carry: `'0' + channel` must stay one byte. */
export const MAX_BASE64_CHANNEL = 0xff - 0x30;

/** Node timers overflow above 2^31-1 ms and then fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const CLOSE_SIGNAL = 0xff;
const BASE64_CHANNEL_OFFSET = 0x30; // '0'
/** An HTTP token (RFC 7230), which is what a subprotocol must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Whether `req` asks for a WebSocket upgrade (`Upgrade: websocket`, `Connection: upgrade`). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade?.trim().toLowerCase();
  const connection = req.headers.connection ?? '';
  return (
    upgrade === 'websocket' &&
    connection.split(',').some((token) => token.trim().toLowerCase() === 'upgrade')
  );
}

/** The subprotocols the client offered, in its order (`Sec-WebSocket-Protocol`, comma-separated). */
export function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'] ?? '';
  return header
    .split(',')
    .map((protocol) => protocol.trim())
    .filter((protocol) => protocol !== '');
}

/**
 * The first protocol in the client's order that `supported` contains, as the kubelet's
 * `wsstream` chooses. No offer at all means the empty protocol (binary framing without a
 * subprotocol), when `supported` lists `''`. `undefined` when nothing matches.
 */
export function chooseProtocol(
  offered: readonly string[],
  supported: readonly string[],
): string | undefined {
  if (offered.length === 0) return supported.includes('') ? '' : undefined;
  return offered.find((protocol) => protocol !== '' && supported.includes(protocol));
}

/** Answers a failed upgrade with a raw HTTP response and closes the socket. */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  const body = Buffer.from(message, 'utf8');
  const lines = [
    `HTTP/1.1 ${String(status)} ${STATUS_CODES[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${String(body.length)}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.once('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]));
}

/**
 * Checks that `req` is a WebSocket upgrade offering one of `supported` and performs the
 * handshake. On failure the client has been answered (400 without upgrade headers, 403 when no
 * subprotocol matches, or whatever `ws` answers for a malformed handshake) and the result is
 * `undefined`.
 */
export function upgradeToWebSocket(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  supported: readonly string[],
): { readonly ws: WebSocket; readonly protocol: string } | undefined {
  if (!isWebSocketUpgrade(req)) {
    rejectUpgrade(socket, 400, 'unable to upgrade: missing upgrade headers in request');
    return undefined;
  }
  const offered = offeredProtocols(req);
  const protocol = chooseProtocol(offered, supported);
  if (protocol === undefined) {
    const wanted = supported.filter((p) => p !== '');
    rejectUpgrade(
      socket,
      403,
      `requested protocol(s) are not supported: [${offered.join(' ')}]; supports [${wanted.join(' ')}]`,
    );
    return undefined;
  }
  // ws refuses a whole offer when one entry is not an RFC 7230 token (e.g.
  // `SPDY/3.1+portforward.k8s.io`); Go's server just skips it. Keep only the tokens.
  const tokens = offered.filter((p) => TOKEN.test(p));
  if (tokens.length !== offered.length) {
    req.headers['sec-websocket-protocol'] = tokens.join(', ');
  }
  const server = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload: WEBSOCKET_MAX_PAYLOAD_BYTES,
    // The client's order wins, as in the kubelet (`wsstream.handshake`).
    handleProtocols: (protocols) => chooseProtocol([...protocols], supported) || false,
  });
  let ws: WebSocket | undefined;
  // Without `verifyClient`, ws completes (or aborts, answering the client itself) synchronously.
  server.handleUpgrade(req, socket, head, (accepted) => {
    ws = accepted;
  });
  return ws === undefined ? undefined : { ws, protocol };
}

/** The idle timeout of `timeouts`, validated. */
export function resolveIdleTimeoutMs(timeouts: StreamTimeouts | undefined): number {
  const value = timeouts?.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
  if (!(value > 0)) {
    throw invalidInput(`streamIdleTimeoutMs must be a positive number, got ${String(value)}`);
  }
  return Math.min(value, MAX_TIMER_MS);
}

export interface ChannelConnectionOptions {
  /** The negotiated subprotocol (`''` when none). */
  readonly protocol: string;
  /** Text messages with base64 payloads instead of binary messages. */
  readonly base64: boolean;
  /** Whether client messages `0xFF <channel>` half-close a channel (v5). */
  readonly closeSignals: boolean;
  readonly idleTimeoutMs: number;
  /** A message from the client; `channel` is not validated. The payload may be empty. */
  readonly onData: (channel: number, payload: Buffer) => void;
  /** The client finished sending on `channel` (v5 only). */
  readonly onCloseSignal?: (channel: number) => void;
  /**
   * The connection is gone. Called once; `reason` is set when the client went away (closed,
   * reset, idle timeout, protocol error) and `undefined` after our own `close()`.
   */
  readonly onClose: (reason: Error | undefined) => void;
}

/**
 * One upgraded WebSocket speaking a channel protocol. Owns the socket: every way the connection
 * can end funnels into `onClose` exactly once.
 */
export class ChannelConnection {
  readonly protocol: string;
  readonly #ws: WebSocket;
  readonly #options: ChannelConnectionOptions;
  readonly #idle: NodeJS.Timeout;
  /** Channels whose reader is full; the socket is paused while any is listed. */
  readonly #held = new Set<number>();
  #closing: Promise<void> | undefined;
  #failure: Error | undefined;
  #gone = false;
  readonly #closedPromise: Promise<void>;

  constructor(ws: WebSocket, options: ChannelConnectionOptions) {
    this.protocol = options.protocol;
    this.#ws = ws;
    this.#options = options;
    this.#idle = setTimeout(() => {
      this.#fail(
        new Error(`connection idle for ${String(options.idleTimeoutMs)} ms`),
        1001,
        'idle timeout',
      );
    }, options.idleTimeoutMs);
    this.#idle.unref();
    this.#closedPromise = new Promise((resolve) => {
      ws.once('close', (code: number) => {
        clearTimeout(this.#idle);
        this.#report(
          this.#closing === undefined
            ? (this.#failure ?? new Error(`client closed the connection (code ${String(code)})`))
            : undefined,
        );
        resolve();
      });
    });
    ws.on('error', (err: Error) => {
      this.#failure ??= err;
    });
    ws.on('message', (data: RawData) => {
      this.#onMessage(data);
    });
    ws.on('ping', () => this.#idle.refresh());
    ws.on('pong', () => this.#idle.refresh());
  }

  /** Highest channel the negotiated framing can carry. */
  get maxChannel(): number {
    return this.#options.base64 ? MAX_BASE64_CHANNEL : MAX_BINARY_CHANNEL;
  }

  /**
   * Sends `payload` as one message on `channel`. Resolves `true` once the message is handed to
   * the socket, `false` when the connection is closed or closing (the payload is dropped).
   * Throws `InvalidInput` for a channel the framing cannot carry (0 to `maxChannel`).
   */
  send(channel: number, payload: Uint8Array): Promise<boolean> {
    if (!Number.isInteger(channel) || channel < 0 || channel > this.maxChannel) {
      throw invalidInput(
        `channel ${String(channel)} is outside 0-${String(this.maxChannel)} for this framing`,
      );
    }
    if (this.#ws.readyState !== this.#ws.OPEN) return Promise.resolve(false);
    this.#idle.refresh();
    const base64 = this.#options.base64;
    const message = base64
      ? String.fromCharCode(BASE64_CHANNEL_OFFSET + channel) +
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64')
      : frameBinary(channel, payload);
    return new Promise((resolve) => {
      this.#ws.send(message, { binary: !base64 }, (err) => {
        resolve(err == null);
      });
    });
  }

  /** `send` for data of any size: splits it into messages of at most 64 KiB. */
  async sendData(channel: number, payload: Uint8Array): Promise<boolean> {
    if (payload.byteLength <= MAX_MESSAGE_PAYLOAD_BYTES) return this.send(channel, payload);
    const sent: Promise<boolean>[] = [];
    for (let at = 0; at < payload.byteLength; at += MAX_MESSAGE_PAYLOAD_BYTES) {
      sent.push(this.send(channel, payload.subarray(at, at + MAX_MESSAGE_PAYLOAD_BYTES)));
    }
    const results = await Promise.all(sent);
    return results.every(Boolean);
  }

  /** Stops reading from the socket until `release(channel)`: the reader of `channel` is full. */
  hold(channel: number): void {
    this.#held.add(channel);
    this.#ws.pause();
  }

  release(channel: number): void {
    if (!this.#held.delete(channel)) return;
    if (this.#held.size === 0) this.#ws.resume();
  }

  /**
   * Closes with a normal close frame and waits for the client's close frame, at most
   * `CLOSE_GRACE_MS`, then drops the socket. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#ws.readyState === this.#ws.CLOSED) return;
    // A paused socket would never read the client's close frame.
    this.#held.clear();
    this.#ws.resume();
    this.#ws.close(1000);
    const grace = setTimeout(() => this.#ws.terminate(), CLOSE_GRACE_MS);
    grace.unref();
    await this.#closedPromise;
    clearTimeout(grace);
  }

  /** Ends the connection because of `reason` (idle timeout, protocol error). */
  #fail(reason: Error, code: number, text: string): void {
    if (this.#gone || this.#closing !== undefined) {
      this.#ws.terminate();
      return;
    }
    this.#failure ??= reason;
    this.#report(reason);
    this.#held.clear();
    if (this.#ws.readyState === this.#ws.OPEN) {
      this.#ws.close(code, text);
      const grace = setTimeout(() => this.#ws.terminate(), CLOSE_GRACE_MS);
      grace.unref();
      void this.#closedPromise.then(() => clearTimeout(grace));
    } else {
      this.#ws.terminate();
    }
  }

  #report(reason: Error | undefined): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#options.onClose(reason);
  }

  #onMessage(raw: RawData): void {
    if (this.#gone) return;
    this.#idle.refresh();
    const data = toBuffer(raw);
    if (data.length === 0) return;
    const first = data.readUInt8(0);
    if (this.#options.closeSignals && first === CLOSE_SIGNAL) {
      if (data.length !== 2) {
        this.#fail(
          new Error(`protocol error: close signal with ${String(data.length - 1)} bytes`),
          1002,
          'invalid close signal',
        );
        return;
      }
      this.#options.onCloseSignal?.(data.readUInt8(1));
      return;
    }
    if (this.#options.base64) {
      this.#options.onData(
        first - BASE64_CHANNEL_OFFSET,
        Buffer.from(data.toString('latin1', 1), 'base64'),
      );
    } else {
      this.#options.onData(first, data.subarray(1));
    }
  }
}

function frameBinary(channel: number, payload: Uint8Array): Buffer {
  const message = Buffer.allocUnsafe(payload.byteLength + 1);
  message.writeUInt8(channel, 0);
  message.set(payload, 1);
  return message;
}

function toBuffer(raw: RawData): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (Array.isArray(raw)) return Buffer.concat(raw);
  return Buffer.from(raw);
}

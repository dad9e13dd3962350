/**
 * exec and attach over the WebSocket channel protocols (`v5.channel.k8s.io` down to
 * `channel.k8s.io`), as the kubelet's `wsstream` serves them. Channels: 0 stdin, 1 stdout,
 * 2 stderr, 3 error, 4 resize. Channels the client did not ask for are ignored: their messages are
 * dropped.
 */
import type { IncomingMessage } from 'node:http';
import { Readable, Writable, type Duplex } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { WebSocket } from 'ws';
import type { TerminalSize } from '../../provider.js';
import { errorStatus, exitStatus } from './status.js';
import type {
  RemoteCommandOptions,
  RemoteCommandResult,
  RemoteCommandSession,
  StreamTimeouts,
} from './types.js';
import { PushIterable, ResizeDecoder } from './resize.js';
import {
  ChannelConnection,
  resolveIdleTimeoutMs,
  upgradeToWebSocket,
} from './websocket-channels.js';

/** Server preference; the client's order decides among those it offers. `''`: no subprotocol. */
export const REMOTECOMMAND_WEBSOCKET_PROTOCOLS: readonly string[] = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'base64.channel.k8s.io',
  'channel.k8s.io',
  '',
];

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

/** Buffered client input before the socket stops being read. */
const STDIN_HIGH_WATER_MARK_BYTES = 256 * 1024;
/** A resize message larger than this is not a terminal size; the decoder drops it. */

/**
 * Completes a WebSocket exec/attach upgrade and returns the session, after sending the readiness
 * message (an empty message on stdout, else stderr, else the error channel).
 *
 * Resolves to `undefined` when the request could not be upgraded; the client has then been
 * answered with a raw HTTP error (400 without WebSocket upgrade headers, 403 when none of the
 * offered subprotocols is supported) and the socket is closed. `streamCreationTimeoutMs` does not
 * apply: every channel exists once the handshake is done.
 *
 * Throws (before touching the socket) only for invalid `timeouts`.
 */
export async function acceptWebSocketRemoteCommand(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  options: RemoteCommandOptions,
  timeouts?: StreamTimeouts,
): Promise<RemoteCommandSession | undefined> {
  const idleMs = resolveIdleTimeoutMs(timeouts);
  const upgraded = upgradeToWebSocket(req, socket, head, REMOTECOMMAND_WEBSOCKET_PROTOCOLS);
  if (upgraded === undefined) return undefined;
  // Listeners go on synchronously: the client may already be sending.
  const session = new WebSocketRemoteCommandSession(
    upgraded.ws,
    upgraded.protocol,
    options,
    idleMs,
  );
  await session.sendReadiness();
  return session;
}

/**
 * A session over one WebSocket. `signal` aborts when the client goes away before `finish()`;
 * after `finish()` the connection closing is not an abort.
 */
class WebSocketRemoteCommandSession implements RemoteCommandSession {
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  readonly resize?: AsyncIterable<TerminalSize>;
  readonly protocol: string;
  readonly signal: AbortSignal;

  readonly #connection: ChannelConnection;
  readonly #abort = new AbortController();
  readonly #resize: PushIterable<TerminalSize> | undefined;
  readonly #resizeDecoder = new ResizeDecoder();
  readonly #statusAsJson: boolean;
  #stdinEnded = false;
  #finishing: Promise<void> | undefined;

  constructor(ws: WebSocket, protocol: string, options: RemoteCommandOptions, idleMs: number) {
    this.protocol = protocol;
    this.tty = options.tty;
    this.signal = this.#abort.signal;
    this.#statusAsJson = protocol.startsWith('v4.') || protocol.startsWith('v5.');
    this.#connection = new ChannelConnection(ws, {
      protocol,
      base64: protocol.includes('base64'),
      closeSignals: protocol === 'v5.channel.k8s.io',
      idleTimeoutMs: idleMs,
      onData: (channel, payload) => {
        this.#onData(channel, payload);
      },
      onCloseSignal: (channel) => {
        if (channel === STDIN) this.#endStdin();
        else if (channel === RESIZE) this.#resize?.end();
      },
      onClose: (reason) => {
        this.#onClose(reason);
      },
    });
    if (options.stdin) {
      this.stdin = new Readable({
        highWaterMark: STDIN_HIGH_WATER_MARK_BYTES,
        read: () => {
          this.#connection.release(STDIN);
        },
        // A consumer that gives up on stdin must not leave the socket paused.
        destroy: (err, callback) => {
          this.#stdinEnded = true;
          this.#connection.release(STDIN);
          callback(err);
        },
      });
    }
    if (options.stdout) this.stdout = this.#output(STDOUT);
    // A terminal has no separate stderr (the kubelet drops it).
    if (options.stderr && !options.tty) this.stderr = this.#output(STDERR);
    // A provider's misuse (a write after end) must not become an unhandled 'error' that ends
    // the process; the session's signal and status report what matters.
    for (const s of [this.stdin, this.stdout, this.stderr]) s?.on('error', () => undefined);
    if (options.tty) {
      this.#resize = new PushIterable<TerminalSize>();
      this.resize = this.#resize;
    }
  }

  /** The empty message on the lowest writable requested channel that tells the client "ready". */
  async sendReadiness(): Promise<void> {
    const channel = this.stdout !== undefined ? STDOUT : this.stderr !== undefined ? STDERR : ERROR;
    await this.#connection.send(channel, new Uint8Array(0));
  }

  finish(result: RemoteCommandResult): Promise<void> {
    this.#finishing ??= this.#finish(result);
    return this.#finishing;
  }

  async #finish(result: RemoteCommandResult): Promise<void> {
    // Everything the command wrote goes out before the status: clients read the error channel
    // last and may stop reading after it.
    await Promise.all([drain(this.stdout), drain(this.stderr)]);
    const status = 'exitCode' in result ? exitStatus(result.exitCode) : errorStatus(result.error);
    if (this.#statusAsJson) {
      await this.#connection.send(ERROR, Buffer.from(JSON.stringify(status), 'utf8'));
    } else if (status.status !== 'Success') {
      await this.#connection.send(ERROR, Buffer.from(status.message ?? 'error', 'utf8'));
    }
    this.#endInputs();
    await this.#connection.close();
  }

  #output(channel: number): Writable {
    const connection = this.#connection;
    return new Writable({
      write(chunk: Buffer, _encoding, callback) {
        // Waiting for the socket to take each chunk is the back-pressure. Writes to a client
        // that is gone are dropped rather than failed: `signal` reports that, and an 'error'
        // nobody listens for would crash the process.
        void connection.sendData(channel, chunk).then(() => {
          callback();
        });
      },
    });
  }

  #onData(channel: number, payload: Buffer): void {
    if (channel === STDIN) {
      const stdin = this.stdin;
      if (stdin === undefined || this.#stdinEnded || stdin.destroyed || payload.length === 0) {
        return;
      }
      if (!stdin.push(payload)) this.#connection.hold(STDIN);
    } else if (channel === RESIZE && this.#resize !== undefined) {
      for (const size of this.#resizeDecoder.write(payload.toString('utf8'))) {
        this.#resize.push(size);
      }
    }
  }

  #endStdin(): void {
    if (this.#stdinEnded) return;
    this.#stdinEnded = true;
    this.#connection.release(STDIN);
    if (this.stdin !== undefined && !this.stdin.destroyed) this.stdin.push(null);
  }

  #endInputs(): void {
    this.#endStdin();
    this.#resize?.end();
  }

  #onClose(reason: Error | undefined): void {
    this.#endInputs();
    // Nothing can reach the client any more; destroying (without an error) stops pipes into
    // these streams and makes further writes fail quietly.
    this.stdout?.destroy();
    this.stderr?.destroy();
    if (reason !== undefined && this.#finishing === undefined) this.#abort.abort(reason);
  }
}

/** Waits until `stream` has handed everything to the socket (or is gone); ends it first. */
async function drain(stream: Writable | undefined): Promise<void> {
  if (stream === undefined || stream.destroyed) return;
  if (!stream.writableEnded) stream.end();
  try {
    await finished(stream);
  } catch {
    // Destroyed because the client went away: nothing left to flush.
  }
}

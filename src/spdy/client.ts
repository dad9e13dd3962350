/**
 * The client side of a SPDY/3.1 connection as client-go drives moby/spdystream: an HTTP/1.1
 * upgrade (`Upgrade: SPDY/3.1`, one `X-Stream-Protocol-Version` per protocol offered), then the
 * client opens odd-numbered streams, each named by its headers, and waits for each SYN_REPLY.
 * Used to reach a container runtime's streaming server (the URL of a CRI `Exec` or `Attach`).
 *
 * As on the server side (session.ts): no flow control (spdystream sends no WINDOW_UPDATE),
 * back-pressure is TCP's (the socket is paused while a stream's reader is behind, a stream's
 * writes wait for the socket to drain), DATA frames reach their stream in parts as they arrive,
 * and header blocks decompress to at most 64 KiB.
 */
import { EventEmitter } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { unavailable } from '../errors.js';
import { SpdyProtocolError } from './errors.js';
import {
  FrameParser,
  GoAwayStatus,
  RstStatus,
  encodeDataHeader,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSynStream,
  type SpdyFrame,
} from './frames.js';
import { HeaderCompressor, HeaderDecompressor, encodeHeaderBlock } from './header-codec.js';
import {
  DATA_FRAME_BYTES,
  DATA_PART_BYTES,
  DEFAULT_MAX_CONTROL_FRAME_BYTES,
  SpdyStream,
  type StreamHost,
} from './session.js';

/** The upgrade a server accepted. */
export interface SpdyConnection {
  readonly session: SpdyClientSession;
  /** The `X-Stream-Protocol-Version` the server chose (empty when it named none). */
  readonly protocol: string;
}

export interface SpdyConnectOptions {
  /** Protocols offered, in order of preference (`X-Stream-Protocol-Version`). */
  readonly protocols: readonly string[];
  /** Aborts the upgrade (and later the session: it is destroyed). */
  readonly signal: AbortSignal;
  /** Passed to the session. */
  readonly session?: SpdyClientSessionOptions;
}

/**
 * POSTs an upgrade request to `url` (`http:` or `https:`; for `https:` the server's certificate
 * is not verified, as the kubelet does not verify a runtime's self-signed streaming certificate)
 * and resolves once the server answered 101. Rejects with `Unavailable` when the server cannot
 * be reached or answers anything else (with the start of its body in the message).
 */
export function connectSpdy(url: string, options: SpdyConnectOptions): Promise<SpdyConnection> {
  const { signal } = options;
  return new Promise<SpdyConnection>((resolve, reject) => {
    const target = new URL(url);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(target, {
      method: 'POST',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'SPDY/3.1',
        'X-Stream-Protocol-Version': [...options.protocols],
        'Content-Length': '0',
      },
      ...(target.protocol === 'https:' ? { rejectUnauthorized: false } : {}),
      signal,
    });
    req.on('error', (err) => {
      reject(unavailable(`cannot reach the streaming server at ${target.host}: ${err.message}`));
    });
    req.on('response', (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 1024) body += d;
      });
      res.on('end', () => {
        reject(
          unavailable(
            `the streaming server answered ${String(res.statusCode)}: ${body.trim().slice(0, 1024)}`,
          ),
        );
      });
      res.on('error', () => {
        reject(unavailable(`the streaming server answered ${String(res.statusCode)}`));
      });
    });
    req.on('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
      const header = res.headers['x-stream-protocol-version'];
      const protocol = (Array.isArray(header) ? header[0] : header) ?? '';
      const session = new SpdyClientSession(socket, options.session, head);
      if (signal.aborted) {
        session.destroy();
        reject(unavailable('the streaming session was aborted'));
        return;
      }
      const onAbort = (): void => {
        session.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      session.once('close', () => {
        signal.removeEventListener('abort', onAbort);
      });
      resolve({ session, protocol });
    });
    req.end();
  });
}

export interface SpdyClientSessionOptions {
  /** Bytes buffered per stream for a slow reader before the socket is paused. Default: 256 KiB. */
  readonly streamHighWaterMarkBytes?: number;
  /** Largest accepted control frame payload. Default: `DEFAULT_MAX_CONTROL_FRAME_BYTES` (128 KiB). */
  readonly maxControlFrameBytes?: number;
  /** How long `close()` waits for the server to close its side before destroying. Default: 5 000 ms. */
  readonly closeTimeoutMs?: number;
}

export type SpdyClientSessionEvents = {
  /** The server sent GOAWAY: no new streams. */
  goAway: [lastGoodStreamId: number, status: number];
  /** The server reset `stream` (it is destroyed right after this event). */
  reset: [stream: SpdyStream, status: number];
  /** A protocol violation by the server (the session closes). Only emitted with a listener. */
  error: [err: Error];
  /** The socket is closed. Emitted once. */
  close: [];
};

interface ClientStreamState {
  readonly stream: SpdyStream;
  replied: boolean;
  localFin: boolean;
  remoteFin: boolean;
  reset: boolean;
  full: boolean;
  readonly reply: { resolve: () => void; reject: (err: Error) => void };
}

/**
 * A client-side SPDY/3.1 session over an upgraded socket, which it owns. A stream whose server
 * side has finished (FIN) outlives the connection until its reader has read what was buffered:
 * a server that writes its last output and closes at once loses nothing. Other streams are
 * destroyed when the connection closes.
 */
export class SpdyClientSession extends EventEmitter<SpdyClientSessionEvents> {
  readonly #socket: Duplex;
  readonly #highWaterMark: number;
  readonly #closeTimeoutMs: number;
  readonly #parser: FrameParser;
  readonly #decompressor = new HeaderDecompressor();
  readonly #compressor = new HeaderCompressor();
  readonly #streams = new Map<number, ClientStreamState>();
  readonly #host: StreamHost;
  #drainWaiters: (() => void)[] = [];
  #nextStreamId = 1;
  #fullStreams = 0;
  #goneAway = false;
  #closing = false;
  #closed = false;
  #closeReason: Error | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(socket: Duplex, options: SpdyClientSessionOptions = {}, head?: Buffer) {
    super();
    this.#socket = socket;
    this.#highWaterMark = options.streamHighWaterMarkBytes ?? 256 * 1024;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5_000;
    this.#parser = new FrameParser({
      maxControlBytes: options.maxControlFrameBytes ?? DEFAULT_MAX_CONTROL_FRAME_BYTES,
      dataPartBytes: DATA_PART_BYTES,
      // The server sends DATA only on the streams we opened.
      acceptDataStream: (id) => id % 2 === 1 && id < this.#nextStreamId,
    });
    this.#host = {
      read: (id) => {
        this.#unfull(this.#streams.get(id));
      },
      write: (id, chunk, callback) => {
        this.#writeData(id, chunk, callback);
      },
      final: (id, callback) => {
        this.#finishStream(id, callback);
      },
      destroyed: (id, stream) => {
        this.#onStreamDestroyed(id, stream);
      },
    };
    if ('setNoDelay' in socket && typeof socket.setNoDelay === 'function')
      (socket as unknown as { setNoDelay(on: boolean): void }).setNoDelay(true);
    socket.on('error', (err) => {
      this.#closeReason ??= err;
    });
    socket.on('close', () => {
      this.#onSocketClose();
    });
    socket.on('end', () => {
      this.#closeReason ??= new Error('the server closed the connection');
      if (!socket.writableEnded) socket.end();
    });
    socket.on('drain', () => {
      this.#flushDrainWaiters();
    });
    if (head !== undefined && head.length > 0) this.#onData(head);
    socket.on('data', (chunk: Buffer) => {
      this.#onData(chunk);
    });
  }

  /** Whether the socket is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why the connection ended early (socket error, protocol error, server gone), if it did. */
  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  /**
   * Opens a stream with `headers` (names are sent lower-case) and resolves once the server
   * replied. Rejects with `Unavailable` when the server resets it, sent GOAWAY, or the session
   * closes first.
   */
  openStream(headers: Iterable<readonly [string, string]>): Promise<SpdyStream> {
    if (this.#closing || this.#closed || this.#goneAway) {
      return Promise.reject(unavailable('the SPDY session is closed'));
    }
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const stream = new SpdyStream(this.#host, id, new Map(), this.#highWaterMark);
    return new Promise<SpdyStream>((resolve, reject) => {
      const state: ClientStreamState = {
        stream,
        replied: false,
        localFin: false,
        remoteFin: false,
        reset: false,
        full: false,
        reply: {
          resolve: () => {
            resolve(stream);
          },
          reject,
        },
      };
      this.#streams.set(id, state);
      this.#write(encodeSynStream(id, this.#compressor.compress(encodeHeaderBlock(headers))));
    });
  }

  /**
   * Graceful close: GOAWAY, end of the socket, and destruction after `closeTimeoutMs` if the
   * server does not close its side. Streams the server has not finished are destroyed.
   * Idempotent.
   */
  close(): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    this.#write(encodeGoAway(0, GoAwayStatus.Ok));
    this.#destroyUnfinished(new Error('the SPDY session was closed'));
    const socket = this.#socket;
    if (!socket.writableEnded && !socket.destroyed) socket.end();
    this.#closeTimer = setTimeout(() => {
      socket.destroy();
    }, this.#closeTimeoutMs);
  }

  /** Closes the socket at once; every stream is destroyed. Idempotent. */
  destroy(reason?: Error): void {
    if (reason !== undefined) this.#closeReason ??= reason;
    this.#closing = true;
    for (const state of [...this.#streams.values()]) state.stream.destroy();
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      for (const frame of this.#parser.push(chunk)) {
        this.#onFrame(frame);
        if (this.closed) return;
      }
    } catch (err) {
      const error =
        err instanceof SpdyProtocolError
          ? err
          : new SpdyProtocolError('SPDY session failed', { cause: err });
      this.#closeReason ??= error;
      this.destroy();
      if (this.listenerCount('error') > 0) this.emit('error', error);
    }
  }

  #onFrame(frame: SpdyFrame): void {
    switch (frame.kind) {
      case 'data':
        this.#onDataFrame(frame.streamId, frame.data, frame.fin);
        return;
      case 'synReply': {
        this.#decompressor.decompress(frame.headerBlock);
        const state = this.#streams.get(frame.streamId);
        if (state === undefined || state.replied) return;
        state.replied = true;
        state.reply.resolve();
        if (frame.fin) this.#onDataFrame(frame.streamId, Buffer.alloc(0), true);
        return;
      }
      case 'synStream':
        // The streaming server never opens streams; refuse any (the header block still goes
        // through the decompressor, whose state spans every block).
        this.#decompressor.decompress(frame.headerBlock);
        this.#write(encodeRstStream(frame.streamId, RstStatus.RefusedStream));
        return;
      case 'headers':
        this.#decompressor.decompress(frame.headerBlock);
        if (frame.fin) this.#onDataFrame(frame.streamId, Buffer.alloc(0), true);
        return;
      case 'rstStream':
        this.#onReset(frame.streamId, frame.status);
        return;
      case 'ping':
        // A server's pings are even; odd ids would answer pings of ours, and we send none.
        if (frame.id % 2 === 0) this.#write(encodePing(frame.id));
        return;
      case 'goAway':
        this.#goneAway = true;
        this.emit('goAway', frame.lastGoodStreamId, frame.status);
        return;
      case 'settings':
      case 'windowUpdate':
      case 'unknown':
        return;
    }
  }

  #onDataFrame(id: number, data: Buffer, fin: boolean): void {
    const state = this.#streams.get(id);
    if (state === undefined || state.remoteFin || state.reset) return;
    const stream = state.stream;
    if (data.length > 0 && !stream.push(data) && !state.full && !stream.destroyed) {
      state.full = true;
      this.#fullStreams++;
      this.#socket.pause();
    }
    if (fin) {
      state.remoteFin = true;
      stream.push(null);
    }
  }

  #onReset(id: number, status: number): void {
    const state = this.#streams.get(id);
    if (state === undefined) return;
    state.reset = true;
    if (!state.replied) {
      state.reply.reject(
        unavailable(`the streaming server refused a stream (RST_STREAM ${String(status)})`),
      );
    }
    this.emit('reset', state.stream, status);
    state.stream.destroy();
  }

  #unfull(state: ClientStreamState | undefined): void {
    if (state?.full !== true) return;
    state.full = false;
    this.#fullStreams--;
    if (this.#fullStreams === 0 && !this.#closed) this.#socket.resume();
  }

  #writeData(id: number, chunk: Buffer, callback: (err?: Error | null) => void): void {
    const state = this.#streams.get(id);
    // Writes to a stream that is gone are dropped, as on the server side.
    if (state === undefined || state.reset || state.localFin || this.#closed) {
      callback();
      return;
    }
    let flushed = true;
    this.#socket.cork();
    for (let offset = 0; offset < chunk.length; offset += DATA_FRAME_BYTES) {
      const part = chunk.subarray(offset, offset + DATA_FRAME_BYTES);
      this.#write(encodeDataHeader(id, part.length, false));
      flushed = this.#write(part);
    }
    this.#socket.uncork();
    if (flushed) callback();
    else this.#drainWaiters.push(() => callback());
  }

  #finishStream(id: number, callback: (err?: Error | null) => void): void {
    const state = this.#streams.get(id);
    if (state !== undefined && !state.reset && !state.localFin && !this.#closed) {
      state.localFin = true;
      this.#write(encodeDataHeader(id, 0, true));
    }
    callback();
  }

  #onStreamDestroyed(id: number, stream: SpdyStream): void {
    const state = this.#streams.get(id);
    if (state?.stream !== stream) return;
    this.#streams.delete(id);
    this.#unfull(state);
    if (!state.replied) state.reply.reject(unavailable('the SPDY stream was closed'));
    if (!state.reset && !(state.localFin && state.remoteFin) && !this.#closed) {
      state.reset = true;
      this.#write(encodeRstStream(id, RstStatus.Cancel));
    }
  }

  /** Destroys the streams the server has not finished; the others keep what they buffered. */
  #destroyUnfinished(reason: Error): void {
    for (const state of [...this.#streams.values()]) {
      if (!state.replied) state.reply.reject(unavailable(reason.message));
      if (!state.remoteFin) state.stream.destroy();
    }
  }

  #onSocketClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    clearTimeout(this.#closeTimer);
    this.#destroyUnfinished(this.#closeReason ?? new Error('the connection closed'));
    // What stays can no longer be written: end the writable sides without a frame.
    for (const state of this.#streams.values()) state.localFin = true;
    this.#fullStreams = 0;
    this.#flushDrainWaiters();
    this.emit('close');
  }

  #flushDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter();
  }

  #write(bytes: Buffer): boolean {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return true;
    return socket.write(bytes);
  }
}

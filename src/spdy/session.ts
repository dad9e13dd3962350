/**
 * The server side of a SPDY/3.1 connection as Kubernetes clients (moby/spdystream) use it: the
 * client opens odd-numbered streams, the server answers each with an empty SYN_REPLY and never
 * opens streams of its own.
 *
 * Deliberately absent, as in spdystream: flow control (SETTINGS and WINDOW_UPDATE are read and
 * ignored; spdystream never sends WINDOW_UPDATE, so honouring windows would stall every stream
 * after 64 KiB), priorities, server push. Back-pressure is TCP's: the socket is paused while a
 * stream's reader is behind, and a stream's writes wait for the socket to drain.
 *
 * Every input is bounded: a DATA frame reaches its stream in parts as it arrives (never buffered
 * whole), header blocks decompress to at most 64 KiB and 1 000 values, at most `maxStreams`
 * streams are open at once, and a client that stops reading while it makes us answer (PING,
 * SYN_STREAM) is disconnected once `maxPendingControlBytes` of answers wait for it.
 *
 * The server never speaks first: a Go client reads the 101 response through a throw-away buffer,
 * so nothing (not even a GOAWAY) is written before the client's first bytes have arrived.
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { invalidInput } from '../errors.js';
import { SpdyProtocolError } from './errors.js';
import {
  FrameParser,
  GoAwayStatus,
  RstStatus,
  encodeDataHeader,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSynReply,
  type SpdyFrame,
  type SynStreamFrame,
} from './frames.js';
import {
  HeaderCompressor,
  HeaderDecompressor,
  decodeHeaderBlock,
  encodeHeaderBlock,
  headerValue,
  type SpdyHeaders,
} from './header-codec.js';

/** Largest DATA frame the session writes; bigger writes are split. */
export const DATA_FRAME_BYTES = 32 * 1024;
/** Default `maxStreams`: streams open at once on one session. */
export const DEFAULT_MAX_STREAMS = 256;
/** Default `maxControlFrameBytes`: room for a 64 KiB header block even if it does not compress. */
export const DEFAULT_MAX_CONTROL_FRAME_BYTES = 128 * 1024;
/** Default `maxPendingControlBytes`. */
export const DEFAULT_MAX_PENDING_CONTROL_BYTES = 1024 * 1024;
/** Largest part of a client's DATA frame handed to its stream at once. */
export const DATA_PART_BYTES = 64 * 1024;

const EMPTY_HEADER_BLOCK = encodeHeaderBlock([]);
/** setTimeout's limit; longer idle timeouts are clamped to it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface SpdySessionOptions {
  /**
   * Decides about each stream the client opens, synchronously, before anything is sent on it:
   * `true` answers with SYN_REPLY, `false` (or a throw) with RST_STREAM CANCEL. Writes made
   * from inside the hook go out after the SYN_REPLY.
   */
  readonly onStream: (stream: SpdyStream) => boolean;
  /**
   * Closes the connection (resetting its streams) after this long without a frame read or
   * written, like spdystream's idle timer. 0 disables it. Default: 0.
   */
  readonly idleTimeoutMs?: number;
  /** How long `close()` waits for the client to close its side before destroying. Default: 5 000 ms. */
  readonly closeTimeoutMs?: number;
  /** Largest accepted control frame payload. Default: `DEFAULT_MAX_CONTROL_FRAME_BYTES` (128 KiB). */
  readonly maxControlFrameBytes?: number;
  /** Largest accepted DATA payload. Default: 16 MiB − 1 (the 24-bit maximum). */
  readonly maxDataFrameBytes?: number;
  /** Bytes buffered per stream for a slow reader before the socket is paused. Default: 256 KiB. */
  readonly streamHighWaterMarkBytes?: number;
  /**
   * Most streams open at once. A SYN_STREAM past it is answered RST_STREAM REFUSED_STREAM and
   * not kept (`onStream` is not called). Default: `DEFAULT_MAX_STREAMS` (256).
   */
  readonly maxStreams?: number;
  /**
   * Most bytes of control frames (PING replies, SYN_REPLY, RST_STREAM, GOAWAY) written while the
   * socket is backed up, since it last drained. Past it the client is taken not to read: the
   * session is destroyed (`closeReason` says why). Default:
   * `DEFAULT_MAX_PENDING_CONTROL_BYTES` (1 MiB).
   */
  readonly maxPendingControlBytes?: number;
}

export type SpdySessionEvents = {
  /** The client sent GOAWAY: no new streams; the session closes once its streams are gone. */
  goAway: [lastGoodStreamId: number, status: number];
  /** The client reset `stream` (it is destroyed right after this event). */
  reset: [stream: SpdyStream, status: number];
  /** The idle timeout expired; the session resets its streams and closes. */
  timeout: [];
  /**
   * A protocol violation (the session answers GOAWAY and closes) or a client that does not read
   * its answers (the session is destroyed). Only emitted with a listener.
   */
  error: [err: Error];
  /** The socket is closed and every stream destroyed. Emitted once. */
  close: [];
};

/** What a stream needs from its session (the server's, or a client's: see client.ts). */
export interface StreamHost {
  read(id: number): void;
  write(id: number, chunk: Buffer, callback: (err?: Error | null) => void): void;
  final(id: number, callback: (err?: Error | null) => void): void;
  destroyed(id: number, stream: SpdyStream): void;
}

/**
 * One client-opened stream. Readable: the peer's DATA (ends on its FIN; destroyed without an
 * error on its RST_STREAM). Writable: DATA frames to the peer; `end()` sends an empty DATA
 * frame with FIN. `destroy()` before both sides have finished sends RST_STREAM CANCEL.
 * Created only by `SpdySession` (streams the client opened) and `SpdyClientSession` (streams
 * it opens).
 */
export class SpdyStream extends Duplex {
  readonly id: number;
  /** The SYN_STREAM's headers, names lower-case. */
  readonly headers: SpdyHeaders;
  readonly #host: StreamHost;

  constructor(host: StreamHost, id: number, headers: SpdyHeaders, highWaterMarkBytes: number) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: highWaterMarkBytes,
      writableHighWaterMark: 64 * 1024,
      decodeStrings: true,
    });
    this.#host = host;
    this.id = id;
    this.headers = headers;
  }

  /** The first value of header `name` (lower-case), or `undefined`. */
  header(name: string): string | undefined {
    return headerValue(this.headers, name);
  }

  override _read(): void {
    this.#host.read(this.id);
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (err?: Error | null) => void,
  ): void {
    this.#host.write(this.id, chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#host.final(this.id, callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#host.destroyed(this.id, this);
    callback(err);
  }
}

interface StreamState {
  readonly stream: SpdyStream;
  replied: boolean;
  /** We sent FIN (or the client opened the stream unidirectional). */
  localFin: boolean;
  /** The client sent FIN. */
  remoteFin: boolean;
  /** RST_STREAM sent or received. */
  reset: boolean;
  /** Paused the socket because the reader is behind. */
  full: boolean;
  /** Writes made before the SYN_REPLY went out. */
  readonly pending: (() => void)[];
}

/**
 * A server-side SPDY/3.1 session over an upgraded socket. Takes ownership of the socket: it is
 * closed when the session closes, and socket errors end the session rather than the process.
 * Frames are processed in arrival order; `head` (bytes that came with the upgrade request) is
 * processed first, on the next tick, so listeners attached right after construction see
 * everything.
 */
export class SpdySession extends EventEmitter<SpdySessionEvents> {
  readonly #socket: Duplex;
  readonly #onStream: (stream: SpdyStream) => boolean;
  readonly #idleTimeoutMs: number;
  readonly #closeTimeoutMs: number;
  readonly #highWaterMark: number;
  readonly #maxStreams: number;
  readonly #maxPendingControlBytes: number;
  readonly #parser: FrameParser;
  readonly #decompressor = new HeaderDecompressor();
  readonly #compressor = new HeaderCompressor();
  readonly #streams = new Map<number, StreamState>();
  readonly #host: StreamHost;
  #drainWaiters: (() => void)[] = [];
  #lastStreamId = 0;
  #fullStreams = 0;
  /** Control bytes written since the socket last drained, while it was backed up. */
  #pendingControlBytes = 0;
  #peerSpoke = false;
  #goneAway = false;
  #closing = false;
  #closed = false;
  #closeReason: Error | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #closeTimer: NodeJS.Timeout | undefined;

  constructor(socket: Duplex, options: SpdySessionOptions, head?: Buffer) {
    super();
    this.#socket = socket;
    this.#onStream = options.onStream;
    this.#idleTimeoutMs = Math.min(options.idleTimeoutMs ?? 0, MAX_TIMER_MS);
    this.#closeTimeoutMs = Math.min(options.closeTimeoutMs ?? 5_000, MAX_TIMER_MS);
    this.#highWaterMark = options.streamHighWaterMarkBytes ?? 256 * 1024;
    this.#maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
    this.#maxPendingControlBytes =
      options.maxPendingControlBytes ?? DEFAULT_MAX_PENDING_CONTROL_BYTES;
    for (const [name, value] of [
      ['maxStreams', this.#maxStreams],
      ['maxPendingControlBytes', this.#maxPendingControlBytes],
    ] as const) {
      if (!(Number.isInteger(value) && value > 0)) {
        throw invalidInput(`${name} must be a positive integer, got ${String(value)}`);
      }
    }
    this.#parser = new FrameParser({
      maxControlBytes: options.maxControlFrameBytes ?? DEFAULT_MAX_CONTROL_FRAME_BYTES,
      maxDataBytes: options.maxDataFrameBytes,
      dataPartBytes: DATA_PART_BYTES,
      // The client can only send DATA on odd streams it has opened.
      acceptDataStream: (id) => id % 2 === 1 && id <= this.#lastStreamId,
    });
    this.#host = {
      read: (id) => {
        this.#onStreamRead(id);
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
    socket.on('error', (err) => {
      this.#closeReason ??= err;
    });
    socket.on('close', () => {
      this.#onSocketClose();
    });
    socket.on('end', () => {
      // The client will send nothing more; nothing it waits for can be acknowledged now.
      this.#closeReason ??= new Error('the client closed the connection');
      this.#shutdown(false);
    });
    socket.on('drain', () => {
      this.#pendingControlBytes = 0;
      this.#flushDrainWaiters();
    });
    if (this.#idleTimeoutMs > 0) {
      this.#idleTimer = setTimeout(() => {
        this.#onIdle();
      }, this.#idleTimeoutMs);
    }
    // `head` before anything the socket delivers later: 'data' is listened for only afterwards.
    process.nextTick(() => {
      if (socket.destroyed) {
        // Gone before we got it (the client left while the request was being authorized).
        this.#closeReason ??= new Error('the client closed the connection');
        this.#onSocketClose();
        return;
      }
      if (this.#ending()) return;
      if (head !== undefined && head.length > 0) this.#onData(head);
      if (this.#ending()) return;
      socket.on('data', (chunk: Buffer) => {
        this.#onData(chunk);
      });
      // Also when someone paused it explicitly, which a 'data' listener alone does not undo.
      if (this.#fullStreams === 0) socket.resume();
    });
  }

  /** Streams not yet destroyed. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /**
   * Client bytes held in memory: the frame parser's buffer plus what the streams' readers have
   * not consumed yet. Bounded by about one socket chunk plus `streamHighWaterMarkBytes` and one
   * DATA part per stream.
   */
  get bufferedInputBytes(): number {
    let total = this.#parser.bufferedBytes;
    for (const state of this.#streams.values()) total += state.stream.readableLength;
    return total;
  }

  /** Whether the socket is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why the connection ended early (socket error, protocol error, client gone), if it did. */
  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  /**
   * Graceful close: GOAWAY (only if the client has spoken), end of the socket, and destruction
   * after `closeTimeoutMs` if the client does not close its side. Open streams are destroyed
   * without RST_STREAM. Idempotent.
   */
  close(): void {
    this.#shutdown(true);
  }

  /** Closes the socket at once; open streams are destroyed. Idempotent. */
  destroy(reason?: Error): void {
    if (reason !== undefined) this.#closeReason ??= reason;
    this.#closing = true;
    this.#destroyStreams();
    this.#socket.destroy();
  }

  /** Closing or closed: no more frames are processed. (A method, so checks are not narrowed away.) */
  #ending(): boolean {
    return this.#closing || this.#closed;
  }

  #shutdown(goAway: boolean): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    this.#destroyStreams();
    if (goAway && this.#peerSpoke) {
      this.#writeControl(encodeGoAway(this.#lastStreamId, GoAwayStatus.Ok));
    }
    this.#endSocket();
  }

  #endSocket(): void {
    const socket = this.#socket;
    if (!socket.writableEnded && !socket.destroyed) socket.end();
    this.#closeTimer ??= setTimeout(() => {
      socket.destroy();
    }, this.#closeTimeoutMs);
  }

  #protocolError(err: unknown): void {
    const error =
      err instanceof SpdyProtocolError
        ? err
        : new SpdyProtocolError('SPDY session failed', { cause: err });
    if (this.#closing || this.#closed) return;
    this.#closeReason ??= error;
    this.#closing = true;
    this.#destroyStreams();
    if (this.#peerSpoke) {
      this.#writeControl(encodeGoAway(this.#lastStreamId, GoAwayStatus.ProtocolError));
    }
    this.#endSocket();
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  #onData(chunk: Buffer): void {
    if (this.#closing || this.#closed) return;
    this.#peerSpoke = true;
    try {
      for (const frame of this.#parser.push(chunk)) {
        this.#touch();
        this.#onFrame(frame);
        if (this.#ending()) return;
      }
    } catch (err) {
      this.#protocolError(err);
    }
  }

  #onFrame(frame: SpdyFrame): void {
    switch (frame.kind) {
      case 'data':
        this.#onDataFrame(frame.streamId, frame.data, frame.fin);
        return;
      case 'synStream':
        this.#onSynStream(frame);
        return;
      case 'synReply':
        // Only a stream's receiver replies; the client has nothing to reply to. Keep the
        // compression state in step all the same.
        this.#decodeHeaders(frame.headerBlock);
        return;
      case 'headers':
        this.#decodeHeaders(frame.headerBlock);
        if (frame.fin) this.#onDataFrame(frame.streamId, Buffer.alloc(0), true);
        return;
      case 'rstStream':
        this.#onReset(frame.streamId, frame.status);
        return;
      case 'ping':
        // Client pings are odd; an even id would answer a ping of ours, and we send none.
        if (frame.id % 2 === 1) this.#writeControl(encodePing(frame.id));
        return;
      case 'goAway':
        this.#goneAway = true;
        this.emit('goAway', frame.lastGoodStreamId, frame.status);
        if (this.#streams.size === 0) this.close();
        return;
      case 'settings':
      case 'windowUpdate':
      case 'unknown':
        // No flow control (see the module comment); unknown control frames are ignored.
        return;
    }
  }

  #decodeHeaders(block: Buffer): Map<string, string[]> {
    return decodeHeaderBlock(this.#decompressor.decompress(block));
  }

  #onSynStream(frame: SynStreamFrame): void {
    const headers = this.#decodeHeaders(frame.headerBlock);
    const id = frame.streamId;
    if (id % 2 === 0 || id <= this.#lastStreamId) {
      // spdystream's answer to an id that is not a new client id.
      this.#writeControl(encodeRstStream(id, RstStatus.ProtocolError));
      return;
    }
    this.#lastStreamId = id;
    if (this.#goneAway || this.#streams.size >= this.#maxStreams) {
      this.#writeControl(encodeRstStream(id, RstStatus.RefusedStream));
      return;
    }
    const stream = new SpdyStream(this.#host, id, headers, this.#highWaterMark);
    const state: StreamState = {
      stream,
      replied: false,
      localFin: frame.unidirectional,
      remoteFin: false,
      reset: false,
      full: false,
      pending: [],
    };
    this.#streams.set(id, state);
    if (frame.fin) {
      state.remoteFin = true;
      stream.push(null);
    }
    let accepted: boolean;
    try {
      accepted = this.#onStream(stream);
    } catch {
      accepted = false;
    }
    if (this.#streams.get(id) !== state) return; // destroyed (and reset) by the hook
    if (!accepted) {
      state.reset = true;
      this.#writeControl(encodeRstStream(id, RstStatus.Cancel));
      stream.destroy();
      return;
    }
    this.#writeControl(encodeSynReply(id, this.#compressor.compress(EMPTY_HEADER_BLOCK)));
    if (this.#ending()) return;
    state.replied = true;
    for (const write of state.pending.splice(0)) write();
    if (frame.unidirectional) stream.end();
  }

  #onDataFrame(id: number, data: Buffer, fin: boolean): void {
    const state = this.#streams.get(id);
    // DATA for a stream already reset, rejected or finished is dropped, as spdystream does.
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
    this.emit('reset', state.stream, status);
    state.stream.destroy();
  }

  #onStreamRead(id: number): void {
    const state = this.#streams.get(id);
    if (state?.full !== true) return;
    this.#unfull(state);
  }

  #unfull(state: StreamState): void {
    if (!state.full) return;
    state.full = false;
    this.#fullStreams--;
    if (this.#fullStreams === 0 && !this.#closing && !this.#closed) this.#socket.resume();
  }

  /**
   * The stream `id` when it can be written now. Otherwise undefined, after calling `callback`
   * when the write is dropped, or queueing `retry` until the SYN_REPLY is sent.
   */
  #writable(
    id: number,
    callback: (err?: Error | null) => void,
    retry: () => void,
  ): StreamState | undefined {
    const state = this.#streams.get(id);
    // Writes to a stream the client reset or to a closed session are dropped, not failed: an
    // 'error' nobody listens for would crash the process, and the reset is reported already.
    if (state === undefined || state.reset || state.localFin || this.#closing || this.#closed) {
      callback();
      return undefined;
    }
    if (!state.replied) {
      state.pending.push(retry);
      return undefined;
    }
    return state;
  }

  #writeData(id: number, chunk: Buffer, callback: (err?: Error | null) => void): void {
    const retry = (): void => this.#writeData(id, chunk, callback);
    if (this.#writable(id, callback, retry) === undefined) return;
    if (chunk.length === 0) {
      callback();
      return;
    }
    const socket = this.#socket;
    let flushed = true;
    socket.cork();
    for (let offset = 0; offset < chunk.length; offset += DATA_FRAME_BYTES) {
      const part = chunk.subarray(offset, offset + DATA_FRAME_BYTES);
      this.#write(encodeDataHeader(id, part.length, false));
      flushed = this.#write(part);
    }
    socket.uncork();
    if (flushed) callback();
    else this.#drainWaiters.push(() => callback());
  }

  #finishStream(id: number, callback: (err?: Error | null) => void): void {
    const state = this.#writable(id, callback, () => this.#finishStream(id, callback));
    if (state === undefined) return;
    state.localFin = true;
    this.#write(encodeDataHeader(id, 0, true));
    callback();
  }

  #onStreamDestroyed(id: number, stream: SpdyStream): void {
    const state = this.#streams.get(id);
    if (state?.stream !== stream) return;
    this.#streams.delete(id);
    this.#unfull(state);
    if (!state.reset && !(state.localFin && state.remoteFin) && !this.#closing && !this.#closed) {
      state.reset = true;
      this.#writeControl(encodeRstStream(id, RstStatus.Cancel));
    }
    if (this.#goneAway && this.#streams.size === 0) this.close();
  }

  #destroyStreams(): void {
    for (const state of [...this.#streams.values()]) state.stream.destroy();
    this.#streams.clear();
    this.#fullStreams = 0;
  }

  #onIdle(): void {
    if (this.#closing || this.#closed) return;
    this.#closeReason ??= new Error('the SPDY connection was idle for too long');
    this.emit('timeout');
    if (this.#peerSpoke) {
      // spdystream resets every stream when its idle timer fires, then closes.
      for (const [id, state] of this.#streams) {
        if (state.reset || (state.localFin && state.remoteFin)) continue;
        state.reset = true;
        this.#writeControl(encodeRstStream(id, RstStatus.Cancel));
      }
    }
    this.close();
  }

  #onSocketClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#closeTimer);
    this.#destroyStreams();
    this.#flushDrainWaiters();
    this.emit('close');
  }

  #flushDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Refreshes the idle timer: a frame was read or written. */
  #touch(): void {
    this.#idleTimer?.refresh();
  }

  /**
   * Writes a control frame, counting it against `maxPendingControlBytes` while the socket is
   * backed up; past the limit the session is destroyed.
   */
  #writeControl(bytes: Buffer): void {
    const socket = this.#socket;
    const backedUp = socket.writableNeedDrain;
    if (this.#write(bytes) && !backedUp) return;
    this.#pendingControlBytes += bytes.length;
    if (this.#pendingControlBytes <= this.#maxPendingControlBytes || this.#closed) return;
    const err = new Error(
      `the client does not read: ${String(this.#pendingControlBytes)} bytes of control frames wait for it`,
    );
    const reported = this.#ending(); // a failure already on its way out was reported once
    this.#closeReason ??= err;
    this.destroy();
    if (!reported && this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Writes if the socket still takes writes; returns `false` when the caller should wait for 'drain'. */
  #write(bytes: Buffer): boolean {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return true;
    this.#touch();
    return socket.write(bytes);
  }
}

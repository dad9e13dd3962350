/**
 * SPDY/3 framing as moby/spdystream speaks it (draft-mbelshe-httpbis-spdy-00, section 2.2): an
 * incremental parser for what the client sends and writers for what a server answers. All
 * integers are big-endian. Header blocks stay compressed here; `header-codec.ts` handles them.
 */
import { SpdyProtocolError } from './errors.js';

/** The only version spoken (and accepted in control frames). */
export const SPDY_VERSION = 3;

/** Control frame types. */
export const FrameType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

/** FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS. */
export const FLAG_FIN = 0x01;
/** FLAG_UNIDIRECTIONAL on SYN_STREAM: the sender will not receive on the stream. */
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. 0 is invalid. */
export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  FlowControlError: 7,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
  InvalidCredentials: 10,
  FrameTooLarge: 11,
} as const;

/** GOAWAY status codes. */
export const GoAwayStatus = { Ok: 0, ProtocolError: 1, InternalError: 2 } as const;

/** The largest payload the 24-bit length field can describe (16 MiB − 1). */
export const MAX_FRAME_PAYLOAD_BYTES = 0xffffff;
/** Highest stream id (31 bits). */
export const MAX_STREAM_ID = 0x7fffffff;

const FRAME_HEADER_BYTES = 8;

export interface DataFrame {
  readonly kind: 'data';
  readonly streamId: number;
  readonly fin: boolean;
  readonly data: Buffer;
}

export interface SynStreamFrame {
  readonly kind: 'synStream';
  readonly streamId: number;
  readonly associatedStreamId: number;
  /** 0 (highest) to 7. */
  readonly priority: number;
  readonly fin: boolean;
  readonly unidirectional: boolean;
  /** Compressed. */
  readonly headerBlock: Buffer;
}

export interface SynReplyFrame {
  readonly kind: 'synReply';
  readonly streamId: number;
  readonly fin: boolean;
  readonly headerBlock: Buffer;
}

export interface HeadersFrame {
  readonly kind: 'headers';
  readonly streamId: number;
  readonly fin: boolean;
  readonly headerBlock: Buffer;
}

export interface RstStreamFrame {
  readonly kind: 'rstStream';
  readonly streamId: number;
  readonly status: number;
}

export interface SettingsEntry {
  readonly flags: number;
  readonly id: number;
  readonly value: number;
}

export interface SettingsFrame {
  readonly kind: 'settings';
  readonly flags: number;
  readonly entries: readonly SettingsEntry[];
}

export interface PingFrame {
  readonly kind: 'ping';
  readonly id: number;
}

export interface GoAwayFrame {
  readonly kind: 'goAway';
  readonly lastGoodStreamId: number;
  readonly status: number;
}

export interface WindowUpdateFrame {
  readonly kind: 'windowUpdate';
  readonly streamId: number;
  readonly delta: number;
}

/** A control frame of a type SPDY/3 does not define (the spec says: ignore it). */
export interface UnknownControlFrame {
  readonly kind: 'unknown';
  readonly type: number;
  readonly flags: number;
  readonly payload: Buffer;
}

export type SpdyFrame =
  | DataFrame
  | SynStreamFrame
  | SynReplyFrame
  | HeadersFrame
  | RstStreamFrame
  | SettingsFrame
  | PingFrame
  | GoAwayFrame
  | WindowUpdateFrame
  | UnknownControlFrame;

export interface FrameParserOptions {
  /** Largest accepted DATA payload. Default (and maximum): 16 MiB − 1. */
  readonly maxDataBytes?: number;
  /** Largest accepted control frame payload. Default: 1 MiB (the kubelet's header limit). */
  readonly maxControlBytes?: number;
  /**
   * Consulted as soon as a DATA frame's 8-byte header is in, before its payload is buffered, so
   * garbage fails fast instead of waiting for megabytes that never come. `false` is a protocol
   * error. Default: every stream id is accepted.
   */
  readonly acceptDataStream?: (streamId: number) => boolean;
  /**
   * When set, a DATA frame's payload is returned in parts of at most this many bytes as they
   * arrive (FIN only on the last part) instead of once it is complete, so a large frame is never
   * buffered whole. Default: whole frames.
   */
  readonly dataPartBytes?: number;
}

/**
 * Accumulates socket bytes and cuts them into complete frames. `push` throws `SpdyProtocolError`
 * for malformed input; the parser is then failed and every later `push` throws again. Memory is
 * bounded by one frame plus one socket chunk (one control frame plus one socket chunk with
 * `dataPartBytes`).
 */
export class FrameParser {
  readonly #maxDataBytes: number;
  readonly #maxControlBytes: number;
  readonly #acceptDataStream: ((streamId: number) => boolean) | undefined;
  readonly #dataPartBytes: number | undefined;
  readonly #chunks: Buffer[] = [];
  /** Bytes of `#chunks[0]` already consumed. */
  #offset = 0;
  #buffered = 0;
  /** Payload length of the frame whose header has been checked, or -1. */
  #checkedLength = -1;
  /** Payload bytes still to come of the DATA frame being returned in parts, or -1. */
  #dataRemaining = -1;
  /** Stream and flags of that frame. */
  #dataStreamId = 0;
  #dataFin = false;
  #failure: SpdyProtocolError | undefined;

  constructor(options: FrameParserOptions = {}) {
    this.#maxDataBytes = Math.min(
      options.maxDataBytes ?? MAX_FRAME_PAYLOAD_BYTES,
      MAX_FRAME_PAYLOAD_BYTES,
    );
    this.#maxControlBytes = Math.min(
      options.maxControlBytes ?? 1024 * 1024,
      MAX_FRAME_PAYLOAD_BYTES,
    );
    this.#acceptDataStream = options.acceptDataStream;
    const part = options.dataPartBytes;
    if (part !== undefined && !(Number.isInteger(part) && part > 0)) {
      throw new RangeError(`dataPartBytes must be a positive integer, got ${String(part)}`);
    }
    this.#dataPartBytes = part;
  }

  /** Bytes received but not yet part of a complete frame. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Adds bytes and returns every frame they complete, in order. */
  push(chunk: Buffer): SpdyFrame[] {
    if (this.#failure !== undefined) throw this.#failure;
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const frames: SpdyFrame[] = [];
    try {
      for (;;) {
        const frame = this.#next();
        if (frame === undefined) break;
        frames.push(frame);
      }
    } catch (err) {
      this.#failure =
        err instanceof SpdyProtocolError
          ? err
          : new SpdyProtocolError('malformed SPDY frame', { cause: err });
      this.#chunks.length = 0;
      this.#buffered = 0;
      throw this.#failure;
    }
    return frames;
  }

  #next(): SpdyFrame | undefined {
    if (this.#dataRemaining >= 0) return this.#nextDataPart();
    if (this.#buffered < FRAME_HEADER_BYTES) return undefined;
    const header = this.#peek(FRAME_HEADER_BYTES);
    const word = header.readUInt32BE(0);
    const flags = header[4] ?? 0;
    const length = header.readUIntBE(5, 3);
    const control = (word & 0x80000000) !== 0;
    if (this.#checkedLength < 0) {
      if (control) {
        const version = (word >>> 16) & 0x7fff;
        if (version !== SPDY_VERSION) {
          throw new SpdyProtocolError(`unsupported SPDY version ${String(version)}`);
        }
        if (length > this.#maxControlBytes) {
          throw new SpdyProtocolError(`control frame of ${String(length)} bytes is too large`);
        }
      } else {
        const streamId = word & MAX_STREAM_ID;
        if (streamId === 0) throw new SpdyProtocolError('DATA frame for stream 0');
        if (length > this.#maxDataBytes) {
          throw new SpdyProtocolError(`DATA frame of ${String(length)} bytes is too large`);
        }
        if (this.#acceptDataStream !== undefined && !this.#acceptDataStream(streamId)) {
          throw new SpdyProtocolError(`DATA frame for stream ${String(streamId)} never opened`);
        }
      }
      this.#checkedLength = length;
    }
    if (!control && this.#dataPartBytes !== undefined && length > 0) {
      this.#take(FRAME_HEADER_BYTES);
      this.#checkedLength = -1;
      this.#dataRemaining = length;
      this.#dataStreamId = word & MAX_STREAM_ID;
      this.#dataFin = (flags & FLAG_FIN) !== 0;
      return this.#nextDataPart();
    }
    if (this.#buffered < FRAME_HEADER_BYTES + length) return undefined;
    this.#take(FRAME_HEADER_BYTES);
    const payload = this.#take(length);
    this.#checkedLength = -1;
    if (!control) {
      return {
        kind: 'data',
        streamId: word & MAX_STREAM_ID,
        fin: (flags & FLAG_FIN) !== 0,
        data: payload,
      };
    }
    return parseControl(word & 0xffff, flags, payload);
  }

  /** The next part of a DATA frame whose header is consumed, once at least a byte of it is in. */
  #nextDataPart(): SpdyFrame | undefined {
    const partBytes = this.#dataPartBytes ?? this.#dataRemaining;
    const n = Math.min(this.#dataRemaining, this.#buffered, partBytes);
    if (n === 0) return undefined;
    this.#dataRemaining -= n;
    const last = this.#dataRemaining === 0;
    if (last) this.#dataRemaining = -1;
    return {
      kind: 'data',
      streamId: this.#dataStreamId,
      fin: last && this.#dataFin,
      data: this.#take(n),
    };
  }

  /** The first `n` buffered bytes without consuming them (`n` ≤ buffered). */
  #peek(n: number): Buffer {
    const first = this.#chunks[0];
    if (first !== undefined && first.length - this.#offset >= n) {
      return first.subarray(this.#offset, this.#offset + n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let offset = this.#offset;
    for (const chunk of this.#chunks) {
      filled += chunk.copy(out, filled, offset, Math.min(chunk.length, offset + n - filled));
      offset = 0;
      if (filled === n) break;
    }
    return out;
  }

  /** Consumes and returns the first `n` buffered bytes (`n` ≤ buffered); no copy when possible. */
  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (first !== undefined && first.length - this.#offset >= n) {
      const out = first.subarray(this.#offset, this.#offset + n);
      this.#offset += n;
      if (this.#offset === first.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0];
      if (chunk === undefined) throw new SpdyProtocolError('frame parser buffer underrun');
      const copied = chunk.copy(
        out,
        filled,
        this.#offset,
        Math.min(chunk.length, this.#offset + n - filled),
      );
      filled += copied;
      this.#offset += copied;
      if (this.#offset === chunk.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
    }
    return out;
  }
}

function parseControl(type: number, flags: number, payload: Buffer): SpdyFrame {
  const fin = (flags & FLAG_FIN) !== 0;
  const need = (bytes: number, exact = false): void => {
    if (exact ? payload.length !== bytes : payload.length < bytes) {
      throw new SpdyProtocolError(
        `control frame type ${String(type)} has a payload of ${String(payload.length)} bytes`,
      );
    }
  };
  const streamId = (offset = 0): number => {
    const id = payload.readUInt32BE(offset) & MAX_STREAM_ID;
    if (id === 0) throw new SpdyProtocolError(`control frame type ${String(type)} for stream 0`);
    return id;
  };
  switch (type) {
    case FrameType.SynStream:
      need(10);
      return {
        kind: 'synStream',
        streamId: streamId(),
        associatedStreamId: payload.readUInt32BE(4) & MAX_STREAM_ID,
        priority: (payload[8] ?? 0) >>> 5,
        fin,
        unidirectional: (flags & FLAG_UNIDIRECTIONAL) !== 0,
        headerBlock: payload.subarray(10),
      };
    case FrameType.SynReply:
      need(4);
      return { kind: 'synReply', streamId: streamId(), fin, headerBlock: payload.subarray(4) };
    case FrameType.Headers:
      need(4);
      return { kind: 'headers', streamId: streamId(), fin, headerBlock: payload.subarray(4) };
    case FrameType.RstStream: {
      need(8, true);
      const status = payload.readUInt32BE(4);
      if (status === 0) throw new SpdyProtocolError('RST_STREAM with status 0');
      return { kind: 'rstStream', streamId: streamId(), status };
    }
    case FrameType.Settings: {
      need(4);
      const count = payload.readUInt32BE(0);
      if (count > (payload.length - 4) / 8) {
        throw new SpdyProtocolError(`SETTINGS claims ${String(count)} entries`);
      }
      const entries: SettingsEntry[] = [];
      for (let i = 0; i < count; i++) {
        const word = payload.readUInt32BE(4 + i * 8);
        entries.push({
          flags: word >>> 24,
          id: word & 0xffffff,
          value: payload.readUInt32BE(8 + i * 8),
        });
      }
      return { kind: 'settings', flags, entries };
    }
    case FrameType.Ping:
      need(4, true);
      return { kind: 'ping', id: payload.readUInt32BE(0) };
    case FrameType.GoAway:
      need(8, true);
      return {
        kind: 'goAway',
        lastGoodStreamId: payload.readUInt32BE(0) & MAX_STREAM_ID,
        status: payload.readUInt32BE(4),
      };
    case FrameType.WindowUpdate:
      need(8, true);
      return {
        kind: 'windowUpdate',
        streamId: payload.readUInt32BE(0) & MAX_STREAM_ID,
        delta: payload.readUInt32BE(4) & MAX_STREAM_ID,
      };
    default:
      return { kind: 'unknown', type, flags, payload };
  }
}

function controlHeader(type: number, flags: number, length: number): Buffer {
  if (length > MAX_FRAME_PAYLOAD_BYTES) {
    throw new RangeError(`control frame payload of ${String(length)} bytes is too large`);
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  header.writeUInt16BE(type, 2);
  header.writeUInt32BE(((flags << 24) | length) >>> 0, 4);
  return header;
}

function uint32(...values: number[]): Buffer {
  const out = Buffer.allocUnsafe(values.length * 4);
  values.forEach((value, i) => out.writeUInt32BE(value >>> 0, i * 4));
  return out;
}

function checkStreamId(streamId: number): void {
  if (!Number.isInteger(streamId) || streamId < 1 || streamId > MAX_STREAM_ID) {
    throw new RangeError(`invalid SPDY stream id ${String(streamId)}`);
  }
}

/** The 8-byte header of a DATA frame carrying `length` bytes. */
export function encodeDataHeader(streamId: number, length: number, fin: boolean): Buffer {
  checkStreamId(streamId);
  if (length > MAX_FRAME_PAYLOAD_BYTES) {
    throw new RangeError(`DATA payload of ${String(length)} bytes is too large`);
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(streamId, 0);
  header.writeUInt32BE((((fin ? FLAG_FIN : 0) << 24) | length) >>> 0, 4);
  return header;
}

/** A whole DATA frame (copies `data`; the session writes header and payload separately). */
export function encodeData(streamId: number, data: Uint8Array, fin: boolean): Buffer {
  return Buffer.concat([encodeDataHeader(streamId, data.length, fin), data]);
}

/** SYN_STREAM; only a client (and the tests' client) sends it. `headerBlock` is compressed. */
export function encodeSynStream(
  streamId: number,
  headerBlock: Uint8Array,
  options: {
    readonly associatedStreamId?: number;
    readonly priority?: number;
    readonly fin?: boolean;
    readonly unidirectional?: boolean;
  } = {},
): Buffer {
  checkStreamId(streamId);
  const flags =
    (options.fin === true ? FLAG_FIN : 0) |
    (options.unidirectional === true ? FLAG_UNIDIRECTIONAL : 0);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(streamId, 0);
  fixed.writeUInt32BE(options.associatedStreamId ?? 0, 4);
  fixed[8] = ((options.priority ?? 0) & 0x7) << 5;
  return Buffer.concat([
    controlHeader(FrameType.SynStream, flags, 10 + headerBlock.length),
    fixed,
    headerBlock,
  ]);
}

/** SYN_REPLY accepting a client stream. `headerBlock` is compressed. */
export function encodeSynReply(streamId: number, headerBlock: Uint8Array, fin = false): Buffer {
  checkStreamId(streamId);
  return Buffer.concat([
    controlHeader(FrameType.SynReply, fin ? FLAG_FIN : 0, 4 + headerBlock.length),
    uint32(streamId),
    headerBlock,
  ]);
}

/** HEADERS (used by tests only; the server never sends it). */
export function encodeHeaders(streamId: number, headerBlock: Uint8Array, fin = false): Buffer {
  checkStreamId(streamId);
  return Buffer.concat([
    controlHeader(FrameType.Headers, fin ? FLAG_FIN : 0, 4 + headerBlock.length),
    uint32(streamId),
    headerBlock,
  ]);
}

export function encodeRstStream(streamId: number, status: number): Buffer {
  checkStreamId(streamId);
  return Buffer.concat([controlHeader(FrameType.RstStream, 0, 8), uint32(streamId, status)]);
}

export function encodePing(id: number): Buffer {
  return Buffer.concat([controlHeader(FrameType.Ping, 0, 4), uint32(id)]);
}

export function encodeGoAway(lastGoodStreamId: number, status: number): Buffer {
  return Buffer.concat([controlHeader(FrameType.GoAway, 0, 8), uint32(lastGoodStreamId, status)]);
}

export function encodeSettings(entries: readonly SettingsEntry[], flags = 0): Buffer {
  const body = Buffer.allocUnsafe(4 + entries.length * 8);
  body.writeUInt32BE(entries.length, 0);
  entries.forEach((entry, i) => {
    body.writeUInt32BE(((entry.flags << 24) | (entry.id & 0xffffff)) >>> 0, 4 + i * 8);
    body.writeUInt32BE(entry.value >>> 0, 8 + i * 8);
  });
  return Buffer.concat([controlHeader(FrameType.Settings, flags, body.length), body]);
}

export function encodeWindowUpdate(streamId: number, delta: number): Buffer {
  return Buffer.concat([controlHeader(FrameType.WindowUpdate, 0, 8), uint32(streamId, delta)]);
}

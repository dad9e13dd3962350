/**
 * A small SPDY/3.1 *client* that behaves like moby/spdystream as client-go drives it: HTTP/1.1
 * upgrade request, SYN_STREAM with headers compressed by one continuous zlib stream (real
 * deflate with the SPDY dictionary, best compression, a sync flush per block), DATA, FIN, PING,
 * RST_STREAM, GOAWAY. Its frame reader is independent of the server's parser on purpose.
 * Test-only.
 */
import { EventEmitter, once } from 'node:events';
import type { IncomingMessage, Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { constants, createDeflate, createInflate, type Deflate, type Inflate } from 'node:zlib';
import { SPDY_DICTIONARY } from '../../../../../src/spdy/dictionary.js';

export interface UpgradeRequest {
  readonly path?: string;
  readonly method?: string;
  /** One `X-Stream-Protocol-Version` line each; `undefined`: no such header. */
  readonly protocols?: readonly string[];
  /** Default: `SPDY/3.1`. */
  readonly upgrade?: string;
  /** Raw bytes sent right after the request (they arrive as `head` or right after). */
  readonly trailing?: Buffer;
}

export interface UpgradeResponse {
  readonly status: number;
  /** Header lines in order, names lower-case. */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
  /** Present for a 101. */
  readonly client?: SpdyClient;
}

/** Sends an upgrade request to `port` and reads the response (and, for errors, the body). */
export async function requestUpgrade(
  port: number,
  request: UpgradeRequest,
): Promise<UpgradeResponse> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const lines = [
    `${request.method ?? 'POST'} ${request.path ?? '/exec/ns/pod/c'} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    `Upgrade: ${request.upgrade ?? 'SPDY/3.1'}`,
    ...(request.protocols ?? []).map((p) => `X-Stream-Protocol-Version: ${p}`),
    'Content-Length: 0',
  ];
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (request.trailing !== undefined) socket.write(request.trailing);

  let buffered = Buffer.alloc(0);
  let headerEnd = -1;
  while (headerEnd < 0) {
    const chunk = await readChunk(socket);
    if (chunk === undefined)
      throw new Error(`connection closed after ${String(buffered.length)} bytes`);
    buffered = Buffer.concat([buffered, chunk]);
    headerEnd = buffered.indexOf('\r\n\r\n');
  }
  const [statusLine = '', ...headerLines] = buffered
    .subarray(0, headerEnd)
    .toString('latin1')
    .split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers = headerLines.map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()] as const;
  });
  const rest = buffered.subarray(headerEnd + 4);
  if (status === 101) {
    return { status, headers, body: '', client: new SpdyClient(socket, rest) };
  }
  const body: Buffer[] = [rest];
  for (;;) {
    const chunk = await readChunk(socket);
    if (chunk === undefined) break;
    body.push(chunk);
  }
  return { status, headers, body: Buffer.concat(body).toString('utf8') };
}

/** The next chunk the socket delivers, or `undefined` at its end. */
function readChunk(socket: Socket): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      socket.pause();
    };
    const onData = (chunk: Buffer): void => {
      cleanup();
      resolve(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(undefined);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    if (socket.readableEnded || socket.destroyed) {
      resolve(undefined);
      return;
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}

export interface ReceivedFrame {
  readonly control: boolean;
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

type ClientStreamEvents = { data: [Buffer]; end: []; reset: [number] };

/** The client end of one stream. */
export class ClientStream extends EventEmitter<ClientStreamEvents> {
  readonly id: number;
  readonly #client: SpdyClient;
  readonly chunks: Buffer[] = [];
  /** Server FIN received. */
  ended = false;
  /** RST_STREAM status received. */
  resetStatus: number | undefined;
  /** Decoded SYN_REPLY headers. */
  replyHeaders: Map<string, string> | undefined;

  constructor(client: SpdyClient, id: number) {
    super();
    this.#client = client;
    this.id = id;
  }

  /** Everything received so far. */
  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.received.toString('utf8');
  }

  /** Sends DATA frames (≤ 32 KiB each) and waits for the socket to take them. */
  async write(data: Buffer | string, fin = false): Promise<void> {
    await this.#client.sendData(this.id, typeof data === 'string' ? Buffer.from(data) : data, fin);
  }

  /** Empty DATA with FIN, like spdystream's `Close()`. */
  async end(): Promise<void> {
    await this.#client.sendData(this.id, Buffer.alloc(0), true);
  }

  /** RST_STREAM (default CANCEL), like spdystream's `Reset()`. */
  reset(status = 5): void {
    this.#client.sendRaw(controlFrame(3, 0, u32(this.id, status)));
  }

  /** Resolves once the server's FIN (or RST) arrived. */
  async finished(): Promise<void> {
    if (this.ended || this.resetStatus !== undefined) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.off('end', done);
        this.off('reset', done);
        resolve();
      };
      this.on('end', done);
      this.on('reset', done);
    });
  }
}

/** A SPDY client over an upgraded socket. */
export class SpdyClient {
  readonly socket: Socket;
  /** Every frame received, in order. */
  readonly frames: ReceivedFrame[] = [];
  /** Bytes received after the 101 (raw). */
  receivedBytes = 0;
  readonly streams = new Map<number, ClientStream>();
  goAway: { lastGoodStreamId: number; status: number } | undefined;
  readonly closed: Promise<void>;
  #buffer = Buffer.alloc(0);
  #nextStreamId = 1;
  #nextPingId = 1;
  readonly #pings = new Map<number, () => void>();
  readonly #replies = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  readonly #replyPromises = new Map<number, Promise<void>>();
  readonly #deflate: Deflate = createDeflate({ dictionary: SPDY_DICTIONARY, level: 9 });
  readonly #inflate: Inflate = createInflate({ dictionary: SPDY_DICTIONARY });
  /** Header compression and decompression are serial, as each side is one zlib stream. */
  #compressChain: Promise<unknown> = Promise.resolve();
  #inflateChain: Promise<unknown> = Promise.resolve();

  constructor(socket: Socket, rest: Buffer) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {
      // Reported through `closed`.
    });
    socket.on('data', (chunk: Buffer) => {
      this.#onData(chunk);
    });
    socket.resume();
    if (rest.length > 0) this.#onData(rest);
  }

  /** Opens a stream (SYN_STREAM) and waits for its SYN_REPLY; rejects on RST_STREAM. */
  async openStream(
    headers: Record<string, string>,
    options: { fin?: boolean } = {},
  ): Promise<ClientStream> {
    const stream = this.openStreamNoWait(headers, options);
    await this.#awaitReply(stream.id);
    return stream;
  }

  /** Sends SYN_STREAM without waiting for the reply (the reply still lands in `replyHeaders`). */
  openStreamNoWait(headers: Record<string, string>, options: { fin?: boolean } = {}): ClientStream {
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const stream = new ClientStream(this, id);
    this.streams.set(id, stream);
    const replied = new Promise<void>((resolve, reject) => {
      this.#replies.set(id, { resolve, reject });
    });
    replied.catch(() => undefined);
    this.#replyPromises.set(id, replied);
    const block = headerBlock(headers);
    this.#compressChain = this.#compressChain.then(async () => {
      const compressed = await this.#compress(block);
      const fixed = Buffer.alloc(10);
      fixed.writeUInt32BE(id, 0);
      this.sendRaw(
        controlFrame(1, options.fin === true ? 1 : 0, Buffer.concat([fixed, compressed])),
      );
    });
    return stream;
  }

  #awaitReply(id: number): Promise<void> {
    return this.#replyPromises.get(id) ?? Promise.reject(new Error(`no stream ${String(id)}`));
  }

  /** Sends SYN_STREAM headers through the real compressor but with a chosen raw id. */
  async sendSynStreamWithId(id: number, headers: Record<string, string>): Promise<void> {
    const block = headerBlock(headers);
    await (this.#compressChain = this.#compressChain.then(async () => {
      const compressed = await this.#compress(block);
      const fixed = Buffer.alloc(10);
      fixed.writeUInt32BE(id, 0);
      this.sendRaw(controlFrame(1, 0, Buffer.concat([fixed, compressed])));
    }));
  }

  async sendData(id: number, data: Buffer, fin: boolean): Promise<void> {
    let offset = 0;
    do {
      const part = data.subarray(offset, offset + 32 * 1024);
      offset += part.length;
      const last = offset >= data.length;
      const header = Buffer.alloc(8);
      header.writeUInt32BE(id, 0);
      header.writeUInt32BE((((fin && last ? 1 : 0) << 24) | part.length) >>> 0, 4);
      if (!this.socket.write(Buffer.concat([header, part]))) await once(this.socket, 'drain');
    } while (offset < data.length);
  }

  /** PING with the next odd id; resolves when the echo comes back. */
  async ping(): Promise<number> {
    const id = this.#nextPingId;
    this.#nextPingId += 2;
    const echoed = new Promise<void>((resolve) => this.#pings.set(id, resolve));
    this.sendRaw(controlFrame(6, 0, u32(id)));
    await echoed;
    return id;
  }

  sendGoAway(lastGoodStreamId = 0): void {
    this.sendRaw(controlFrame(7, 0, u32(lastGoodStreamId, 0)));
  }

  sendRaw(bytes: Buffer): void {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(bytes);
  }

  /** client-go's `connection.Close()`: reset every stream, GOAWAY, close the socket. */
  close(): void {
    for (const stream of this.streams.values()) {
      if (!stream.ended && stream.resetStatus === undefined) stream.reset();
    }
    this.sendGoAway(Math.max(0, this.#nextStreamId - 4));
    this.socket.end();
  }

  async #compress(block: Buffer): Promise<Buffer> {
    const out = await syncFlush(this.#deflate, block);
    if (out.length === 0) throw new Error('deflate produced nothing');
    return out;
  }

  #inflateBlock(block: Buffer): Promise<Buffer> {
    const result = this.#inflateChain.then(() => syncFlush(this.#inflate, block));
    this.#inflateChain = result.catch(() => undefined);
    return result;
  }

  #onData(chunk: Buffer): void {
    this.receivedBytes += chunk.length;
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 8) {
      const length = this.#buffer.readUIntBE(5, 3);
      if (this.#buffer.length < 8 + length) break;
      const word = this.#buffer.readUInt32BE(0);
      const control = (word & 0x80000000) !== 0;
      const flags = this.#buffer[4] ?? 0;
      const payload = Buffer.from(this.#buffer.subarray(8, 8 + length));
      this.#buffer = this.#buffer.subarray(8 + length);
      const type = control ? word & 0xffff : 0;
      const streamId = control
        ? payload.length >= 4 && type !== 6
          ? payload.readUInt32BE(0) & 0x7fffffff
          : 0
        : word & 0x7fffffff;
      const frame = { control, type, flags, streamId, payload };
      this.frames.push(frame);
      this.#onFrame(frame);
    }
  }

  #onFrame(frame: ReceivedFrame): void {
    if (!frame.control) {
      const stream = this.streams.get(frame.streamId);
      if (stream === undefined) return;
      if (frame.payload.length > 0) {
        stream.chunks.push(frame.payload);
        stream.emit('data', frame.payload);
      }
      if ((frame.flags & 1) !== 0) {
        stream.ended = true;
        stream.emit('end');
      }
      return;
    }
    switch (frame.type) {
      case 2: {
        // SYN_REPLY: decode the header block through the continuous inflater, in order.
        const stream = this.streams.get(frame.streamId);
        const reply = this.#replies.get(frame.streamId);
        this.#replies.delete(frame.streamId);
        void this.#inflateBlock(frame.payload.subarray(4)).then(
          (raw) => {
            if (stream !== undefined) stream.replyHeaders = parseHeaderBlock(raw);
            reply?.resolve();
          },
          (err: unknown) => reply?.reject(err instanceof Error ? err : new Error(String(err))),
        );
        return;
      }
      case 3: {
        const status = frame.payload.readUInt32BE(4);
        const stream = this.streams.get(frame.streamId);
        if (stream !== undefined) {
          stream.resetStatus = status;
          stream.emit('reset', status);
        }
        const reply = this.#replies.get(frame.streamId);
        this.#replies.delete(frame.streamId);
        reply?.reject(
          new Error(`stream ${String(frame.streamId)} reset with status ${String(status)}`),
        );
        return;
      }
      case 6: {
        const id = frame.payload.readUInt32BE(0);
        this.#pings.get(id)?.();
        this.#pings.delete(id);
        return;
      }
      case 7:
        this.goAway = {
          lastGoodStreamId: frame.payload.readUInt32BE(0),
          status: frame.payload.readUInt32BE(4),
        };
        return;
      default:
        return;
    }
  }
}

/**
 * Feeds `input` to a zlib stream, sync-flushes, and resolves to the output of exactly that input.
 * The output is read as it comes: a zlib stream holds back the flush callback while its readable
 * side is above the high-water mark. Calls on one stream must not overlap.
 */
export function syncFlush(stream: Deflate | Inflate, input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const drain = (): void => {
      for (let c = stream.read() as Buffer | null; c !== null; c = stream.read() as Buffer | null) {
        out.push(c);
      }
    };
    const fail = (err: Error): void => {
      stream.off('readable', drain);
      reject(err);
    };
    stream.on('readable', drain);
    stream.once('error', fail);
    stream.write(input);
    stream.flush(constants.Z_SYNC_FLUSH, () => {
      drain();
      stream.off('readable', drain);
      stream.off('error', fail);
      resolve(Buffer.concat(out));
    });
  });
}

/** Uncompressed SPDY/3 header block; names lower-cased as spdystream writes them. */
export function headerBlock(headers: Record<string, string>): Buffer {
  const entries = Object.entries(headers);
  const parts = [u32(entries.length)];
  for (const [name, value] of entries) {
    const n = Buffer.from(name.toLowerCase());
    const v = Buffer.from(value);
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

function parseHeaderBlock(raw: Buffer): Map<string, string> {
  const headers = new Map<string, string>();
  const count = raw.readUInt32BE(0);
  let offset = 4;
  for (let i = 0; i < count; i++) {
    const nameLength = raw.readUInt32BE(offset);
    const name = raw.subarray(offset + 4, offset + 4 + nameLength).toString();
    offset += 4 + nameLength;
    const valueLength = raw.readUInt32BE(offset);
    headers.set(name, raw.subarray(offset + 4, offset + 4 + valueLength).toString());
    offset += 4 + valueLength;
  }
  if (offset !== raw.length) throw new Error('trailing bytes in header block');
  return headers;
}

export function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16BE(0x8003, 0);
  header.writeUInt16BE(type, 2);
  header.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
  return Buffer.concat([header, payload]);
}

export function u32(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeUInt32BE(v >>> 0, i * 4));
  return out;
}

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** A real HTTP server on port 0 whose 'upgrade' event calls `handler`. */
export interface TestServer {
  readonly server: Server;
  readonly port: number;
  /** Server-side sockets still open (upgraded ones included). */
  readonly sockets: ReadonlySet<Duplex>;
  close(): Promise<void>;
}

export async function startServer(handler: UpgradeHandler): Promise<TestServer> {
  const server = createServer((_req, res) => {
    res.statusCode = 404;
    res.end('not an upgrade\n');
  });
  // Upgraded sockets leave the HTTP server's bookkeeping but keep `close()` waiting.
  const sockets = new Set<Duplex>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('upgrade', handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * SPDY/3 header blocks: the uncompressed name/value layout and the per-connection zlib streams.
 *
 * Each direction of a connection is ONE zlib stream that spans every header block sent that way,
 * with a sync flush after each block (spdystream `spdy/read.go`, `spdy/write.go`).
 */
import { constants, inflateRawSync } from 'node:zlib';
import { SPDY_DICTIONARY, SPDY_DICTIONARY_ADLER32 } from './dictionary.js';
import { SpdyProtocolError } from './errors.js';

/** Header name → values (a NUL byte separates several values on the wire). Names are lower-case. */
export type SpdyHeaders = ReadonlyMap<string, readonly string[]>;

/** Deflate's window: a back-reference reaches at most this far into earlier output. */
const WINDOW_BYTES = 32 * 1024;
/** The largest stored (uncompressed) deflate block. */
const MAX_STORED_BLOCK_BYTES = 0xffff;

/** Most bytes one header block may decompress to (the session closes with GOAWAY past it). */
export const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/**
 * Most name/value pairs in one header block, counting every NUL-separated value: a block of
 * NUL bytes would otherwise become one string per byte.
 */
export const MAX_HEADER_VALUES = 1000;

export interface HeaderLimits {
  /** Most name/value pairs in one block, each NUL-separated value counted. Default: `MAX_HEADER_VALUES` (1 000). */
  readonly maxValues?: number;
  /** Most bytes of one decompressed header block. Default: `MAX_HEADER_BLOCK_BYTES` (64 KiB). */
  readonly maxBlockBytes?: number;
}

/**
 * Lays out a header block (before compression). Names are lower-cased; several values for one
 * name are joined with NUL. Later duplicates of a name (after lower-casing) are merged.
 */
export function encodeHeaderBlock(
  headers: Iterable<readonly [string, string | readonly string[]]> = [],
): Buffer {
  const merged = new Map<string, string[]>();
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    const values = typeof value === 'string' ? [value] : [...value];
    const existing = merged.get(key);
    if (existing === undefined) merged.set(key, values);
    else existing.push(...values);
  }
  const parts: Buffer[] = [uint32(merged.size)];
  for (const [name, values] of merged) {
    const nameBytes = Buffer.from(name, 'utf8');
    const valueBytes = Buffer.from(values.join('\0'), 'utf8');
    parts.push(uint32(nameBytes.length), nameBytes, uint32(valueBytes.length), valueBytes);
  }
  return Buffer.concat(parts);
}

/**
 * Reads an uncompressed header block. Throws `SpdyProtocolError` when it is truncated, has
 * trailing bytes, an empty name, or exceeds the limits (bytes, and name/value pairs with every
 * NUL-separated value counted). Upper-case names are lower-cased and
 * repeated names merged (spdystream rejects both; being lenient costs nothing here).
 */
export function decodeHeaderBlock(block: Buffer, limits: HeaderLimits = {}): Map<string, string[]> {
  const maxValues = limits.maxValues ?? MAX_HEADER_VALUES;
  const maxBlockBytes = limits.maxBlockBytes ?? MAX_HEADER_BLOCK_BYTES;
  if (block.length > maxBlockBytes) {
    throw new SpdyProtocolError(`SPDY header block of ${String(block.length)} bytes is too large`);
  }
  let offset = 0;
  const read = (): Buffer => {
    if (offset + 4 > block.length) throw new SpdyProtocolError('truncated SPDY header block');
    const length = block.readUInt32BE(offset);
    offset += 4;
    if (length > block.length - offset) throw new SpdyProtocolError('truncated SPDY header block');
    const bytes = block.subarray(offset, offset + length);
    offset += length;
    return bytes;
  };
  const tooMany = (): SpdyProtocolError =>
    new SpdyProtocolError(`SPDY header block with more than ${String(maxValues)} values`);
  if (block.length < 4) throw new SpdyProtocolError('truncated SPDY header block');
  const count = block.readUInt32BE(0);
  offset = 4;
  if (count > maxValues) throw tooMany();
  const headers = new Map<string, string[]>();
  let values = 0;
  for (let i = 0; i < count; i++) {
    const name = read().toString('utf8').toLowerCase();
    if (name.length === 0) throw new SpdyProtocolError('SPDY header with an empty name');
    const raw = read();
    // Counted before splitting, so a run of NUL bytes never becomes a million strings.
    values++;
    for (let at = raw.indexOf(0); at >= 0; at = raw.indexOf(0, at + 1)) {
      if (++values > maxValues) throw tooMany();
    }
    if (values > maxValues) throw tooMany();
    const split = raw.toString('utf8').split('\0');
    const existing = headers.get(name);
    if (existing === undefined) headers.set(name, split);
    else existing.push(...split);
  }
  if (offset !== block.length) {
    throw new SpdyProtocolError('trailing bytes after the SPDY header block');
  }
  return headers;
}

/** The first value of `name` (lower-case), or `undefined`. */
export function headerValue(headers: SpdyHeaders, name: string): string | undefined {
  return headers.get(name)?.[0];
}

/**
 * The inbound zlib stream of one connection. Synchronous and linear in the input: every block
 * starts on a byte boundary (the peer sync-flushes), and a deflate block refers back at most
 * 32 KiB, so inflating each block as raw deflate with the last 32 KiB of output (initially the
 * SPDY dictionary) as the preset window continues the stream exactly.
 *
 * Blocks must be passed in the order they were received. After a thrown error the connection's
 * compression state is lost; the caller must close the connection.
 */
export class HeaderDecompressor {
  readonly #maxBlockBytes: number;
  /** `undefined` until the zlib stream header has been read. */
  #window: Buffer | undefined;

  constructor(limits: HeaderLimits = {}) {
    this.#maxBlockBytes = limits.maxBlockBytes ?? MAX_HEADER_BLOCK_BYTES;
  }

  /**
   * Decompresses the next header block. Throws `SpdyProtocolError` for bad compression and for
   * output past `maxBlockBytes` (inflation stops there: a bomb costs at most the limit).
   */
  decompress(compressed: Buffer): Buffer {
    let input = compressed;
    let window = this.#window;
    if (window === undefined) {
      ({ input, window } = readZlibHeader(compressed));
    }
    let output: Buffer;
    try {
      output = inflateRawSync(input, {
        ...(window.length > 0 ? { dictionary: window } : {}),
        finishFlush: constants.Z_SYNC_FLUSH,
        maxOutputLength: this.#maxBlockBytes,
      });
    } catch (err) {
      throw new SpdyProtocolError('invalid SPDY header compression', { cause: err });
    }
    this.#window =
      output.length >= WINDOW_BYTES
        ? Buffer.from(output.subarray(output.length - WINDOW_BYTES))
        : Buffer.concat([
            window.subarray(Math.max(0, window.length + output.length - WINDOW_BYTES)),
            output,
          ]);
    return output;
  }
}

function readZlibHeader(block: Buffer): { input: Buffer; window: Buffer } {
  const cmf = block[0];
  const flg = block[1];
  if (cmf === undefined || flg === undefined) {
    throw new SpdyProtocolError('SPDY header block without a zlib header');
  }
  if ((cmf & 0x0f) !== 8 || cmf >>> 4 > 7 || ((cmf << 8) | flg) % 31 !== 0) {
    throw new SpdyProtocolError('SPDY header block with an invalid zlib header');
  }
  if ((flg & 0x20) === 0) return { input: block.subarray(2), window: Buffer.alloc(0) };
  if (block.length < 6)
    throw new SpdyProtocolError('SPDY header block with a truncated zlib header');
  if (block.readUInt32BE(2) !== SPDY_DICTIONARY_ADLER32) {
    throw new SpdyProtocolError('SPDY header compression uses an unknown dictionary');
  }
  return { input: block.subarray(6), window: SPDY_DICTIONARY };
}

/**
 * The outbound zlib stream of one connection. A server only ever sends SYN_REPLY with an empty
 * header set, so it needs no real compression: the stream starts with the zlib header `78 01`
 * (no preset dictionary, which a zlib reader only consults when the header asks for it) and
 * carries every block as stored (uncompressed) deflate blocks followed by the empty stored block
 * a sync flush emits (`00 00 00 ff ff`). That marker matters: Go's inflater hands out a stored
 * block's bytes only when it reaches the next block header, and it must find that header inside
 * the same frame — reading past the frame's end fails the connection for good ("unexpected EOF"
 * sticks). An empty header set costs 14 bytes (16 on the first reply).
 */
export class HeaderCompressor {
  #started = false;

  compress(block: Buffer): Buffer {
    const parts: Buffer[] = [];
    if (!this.#started) {
      this.#started = true;
      parts.push(Buffer.from([0x78, 0x01]));
    }
    for (let offset = 0; offset < block.length; offset += MAX_STORED_BLOCK_BYTES) {
      const data = block.subarray(offset, offset + MAX_STORED_BLOCK_BYTES);
      parts.push(storedBlockHeader(data.length), data);
    }
    parts.push(storedBlockHeader(0));
    return Buffer.concat(parts);
  }
}

/** BFINAL = 0, BTYPE = 00 (stored), padding to the byte boundary; then LEN and NLEN (LE). */
function storedBlockHeader(length: number): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt16LE(length, 1);
  header.writeUInt16LE(~length & 0xffff, 3);
  return header;
}

function uint32(value: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value >>> 0);
  return out;
}

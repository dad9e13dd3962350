import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { constants, createDeflate, createInflate, inflateSync } from 'node:zlib';
import { SPDY_DICTIONARY, SPDY_DICTIONARY_ADLER32 } from '../../../../../src/spdy/dictionary.js';
import { SpdyProtocolError } from '../../../../../src/spdy/errors.js';
import {
  FrameParser,
  encodeData,
  encodeGoAway,
  encodeHeaders,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynReply,
  encodeSynStream,
  encodeWindowUpdate,
  type SpdyFrame,
} from '../../../../../src/spdy/frames.js';
import {
  HeaderCompressor,
  HeaderDecompressor,
  decodeHeaderBlock,
  encodeHeaderBlock,
} from '../../../../../src/spdy/header-codec.js';
import { controlFrame, syncFlush, u32 } from './spdy-client.js';

function adler32(bytes: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (const byte of bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

describe('SPDY/3 dictionary', () => {
  test('is the 1423 bytes of spdystream spdy/dictionary.go', () => {
    assert.equal(SPDY_DICTIONARY.length, 1423);
    assert.equal(
      createHash('sha256').update(SPDY_DICTIONARY).digest('hex'),
      '51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02',
    );
    assert.deepEqual(
      [...SPDY_DICTIONARY.subarray(0, 16)],
      [0, 0, 0, 7, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0, 0, 0, 4, 0x68],
    );
    assert.equal(SPDY_DICTIONARY.subarray(-9).toString('latin1'), ',*,enq=0.');
    assert.equal(adler32(SPDY_DICTIONARY), SPDY_DICTIONARY_ADLER32);
  });

  test('a zlib stream compressed with it carries its checksum', async () => {
    const deflate = createDeflate({ dictionary: SPDY_DICTIONARY, level: 9 });
    const out = await syncFlush(deflate, encodeHeaderBlock([['streamtype', 'error']]));
    deflate.close();
    assert.equal(out[0], 0x78);
    assert.equal(((out[1] ?? 0) & 0x20) !== 0, true, 'FDICT');
    assert.equal(out.readUInt32BE(2), SPDY_DICTIONARY_ADLER32);
  });
});

describe('header blocks', () => {
  test('encode and decode round trip, names lower-cased, NUL-separated values', () => {
    const raw = encodeHeaderBlock([
      ['StreamType', 'error'],
      ['port', '8080'],
      ['multi', ['a', 'b']],
    ]);
    const decoded = decodeHeaderBlock(raw);
    assert.deepEqual(
      [...decoded],
      [
        ['streamtype', ['error']],
        ['port', ['8080']],
        ['multi', ['a', 'b']],
      ],
    );
    assert.deepEqual([...encodeHeaderBlock([])], [0, 0, 0, 0]);
  });

  test('truncated, trailing and oversized blocks are protocol errors', () => {
    const raw = encodeHeaderBlock([['a', 'b']]);
    assert.throws(() => decodeHeaderBlock(raw.subarray(0, raw.length - 1)), SpdyProtocolError);
    assert.throws(
      () => decodeHeaderBlock(Buffer.concat([raw, Buffer.from([0])])),
      SpdyProtocolError,
    );
    assert.throws(() => decodeHeaderBlock(Buffer.from([0, 0])), SpdyProtocolError);
    assert.throws(() => decodeHeaderBlock(u32(5000)), SpdyProtocolError);
    assert.throws(
      () => decodeHeaderBlock(Buffer.concat([u32(1, 0, 1), Buffer.from('x')])),
      SpdyProtocolError,
    );
  });

  test('one continuous deflate stream with the dictionary decodes block by block', async () => {
    const deflate = createDeflate({ dictionary: SPDY_DICTIONARY, level: 9 });
    const decompressor = new HeaderDecompressor();
    let total = 0;
    for (let i = 0; i < 400; i++) {
      const headers: [string, string][] = [
        ['streamtype', i % 2 === 0 ? 'error' : 'data'],
        ['port', String(8000 + (i % 3))],
        ['requestid', String(i)],
      ];
      // Now and then a large, incompressible value pushes the window past 32 KiB.
      if (i % 50 === 7)
        headers.push(['x-noise', createHash('sha512').update(String(i)).digest('hex').repeat(40)]);
      const raw = encodeHeaderBlock(headers);
      const compressed = await syncFlush(deflate, raw);
      const out = decompressor.decompress(compressed);
      assert.deepEqual(out, raw, `block ${String(i)}`);
      assert.deepEqual(decodeHeaderBlock(out).get('requestid'), [String(i)]);
      total += out.length;
    }
    deflate.close();
    assert.ok(total > 64 * 1024, `exercised the window (${String(total)} bytes)`);
  });

  test('a zlib stream without a preset dictionary decodes too', async () => {
    const deflate = createDeflate();
    const decompressor = new HeaderDecompressor();
    for (const value of ['one', 'two', 'one two']) {
      const raw = encodeHeaderBlock([['v', value]]);
      assert.deepEqual(decompressor.decompress(await syncFlush(deflate, raw)), raw);
    }
    deflate.close();
  });

  test('bad compression is a protocol error', () => {
    assert.throws(
      () => new HeaderDecompressor().decompress(Buffer.from([0x12, 0x34, 0x56])),
      SpdyProtocolError,
    );
    const wrongDictionary = Buffer.from([0x78, 0xbb, 1, 2, 3, 4, 0]);
    assert.throws(() => new HeaderDecompressor().decompress(wrongDictionary), SpdyProtocolError);
    const garbage = Buffer.concat([Buffer.from([0x78, 0x9c]), Buffer.alloc(20, 0xff)]);
    assert.throws(() => new HeaderDecompressor().decompress(garbage), SpdyProtocolError);
    const bomb = new HeaderDecompressor({ maxBlockBytes: 1024 });
    const big = encodeHeaderBlock([['x', 'a'.repeat(100_000)]]);
    const compressor = new HeaderCompressor();
    assert.throws(() => bomb.decompress(compressor.compress(big)), SpdyProtocolError);
  });

  test('the outbound stream is stored blocks after 78 01; a real inflater reads it', async () => {
    const compressor = new HeaderCompressor();
    const empty = encodeHeaderBlock([]);
    const first = compressor.compress(empty);
    // A stored block, then the empty stored block of a sync flush (Go's inflater needs it to
    // release the block's bytes without reading past the frame).
    const marker = [0x00, 0x00, 0x00, 0xff, 0xff];
    assert.deepEqual([...first], [0x78, 0x01, 0x00, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0, ...marker]);
    const second = compressor.compress(empty);
    assert.deepEqual([...second], [0x00, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0, ...marker]);
    const big = encodeHeaderBlock([['x', 'y'.repeat(70_000)]]);
    const third = compressor.compress(big);

    const inflate = createInflate({ dictionary: SPDY_DICTIONARY });
    assert.deepEqual(await syncFlush(inflate, first), empty);
    assert.deepEqual(await syncFlush(inflate, second), empty);
    assert.deepEqual(await syncFlush(inflate, third), big);
    inflate.close();
    const all = inflateSync(Buffer.concat([first, second, third]), {
      finishFlush: constants.Z_SYNC_FLUSH,
    });
    assert.deepEqual(all, Buffer.concat([empty, empty, big]));
    // Our own decompressor reads our own stream as well (with room for the 70 kB block).
    const decompressor = new HeaderDecompressor({ maxBlockBytes: 1024 * 1024 });
    assert.deepEqual(decompressor.decompress(first), empty);
    assert.deepEqual(decompressor.decompress(third), big);
  });
});

describe('FrameParser', () => {
  const block = Buffer.from([1, 2, 3, 4, 5]);
  const wire = Buffer.concat([
    encodeSynStream(1, block, { priority: 3, fin: false }),
    encodeData(1, Buffer.from('hello'), false),
    encodeData(1, Buffer.alloc(0), true),
    encodeSynStream(3, block, { fin: true, unidirectional: true, associatedStreamId: 1 }),
    encodeSynReply(3, block, true),
    encodeHeaders(3, block),
    encodeRstStream(3, 5),
    encodeSettings([{ flags: 1, id: 7, value: 65536 }]),
    encodePing(7),
    encodeGoAway(3, 0),
    encodeWindowUpdate(1, 1000),
    controlFrame(0x10, 0, Buffer.from('ignored')),
  ]);
  const expected: SpdyFrame[] = [
    {
      kind: 'synStream',
      streamId: 1,
      associatedStreamId: 0,
      priority: 3,
      fin: false,
      unidirectional: false,
      headerBlock: block,
    },
    { kind: 'data', streamId: 1, fin: false, data: Buffer.from('hello') },
    { kind: 'data', streamId: 1, fin: true, data: Buffer.alloc(0) },
    {
      kind: 'synStream',
      streamId: 3,
      associatedStreamId: 1,
      priority: 0,
      fin: true,
      unidirectional: true,
      headerBlock: block,
    },
    { kind: 'synReply', streamId: 3, fin: true, headerBlock: block },
    { kind: 'headers', streamId: 3, fin: false, headerBlock: block },
    { kind: 'rstStream', streamId: 3, status: 5 },
    { kind: 'settings', flags: 0, entries: [{ flags: 1, id: 7, value: 65536 }] },
    { kind: 'ping', id: 7 },
    { kind: 'goAway', lastGoodStreamId: 3, status: 0 },
    { kind: 'windowUpdate', streamId: 1, delta: 1000 },
    { kind: 'unknown', type: 0x10, flags: 0, payload: Buffer.from('ignored') },
  ];

  test('parses every frame type in one chunk', () => {
    assert.deepEqual(new FrameParser().push(wire), expected);
  });

  test('gives the same frames whatever the chunk boundaries', () => {
    for (let cut = 0; cut <= wire.length; cut++) {
      const parser = new FrameParser();
      const frames = [...parser.push(wire.subarray(0, cut)), ...parser.push(wire.subarray(cut))];
      assert.deepEqual(frames, expected, `cut at ${String(cut)}`);
      assert.equal(parser.bufferedBytes, 0);
    }
    const parser = new FrameParser();
    const frames: SpdyFrame[] = [];
    for (let i = 0; i < wire.length; i++) frames.push(...parser.push(wire.subarray(i, i + 1)));
    assert.deepEqual(frames, expected, 'byte by byte');
  });

  test('a large DATA frame is assembled from many chunks', () => {
    const payload = Buffer.alloc(200_000, 7);
    const frame = encodeData(5, payload, true);
    const parser = new FrameParser();
    const frames: SpdyFrame[] = [];
    for (let i = 0; i < frame.length; i += 1000)
      frames.push(...parser.push(frame.subarray(i, i + 1000)));
    assert.deepEqual(frames, [{ kind: 'data', streamId: 5, fin: true, data: payload }]);
  });

  test('with dataPartBytes a DATA frame comes in parts as it arrives, FIN on the last', () => {
    const payload = Buffer.alloc(200_000);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 253;
    const wire = Buffer.concat([
      encodeData(5, payload, true),
      encodeData(5, Buffer.alloc(0), false),
      encodePing(1),
    ]);
    const parser = new FrameParser({ dataPartBytes: 64 * 1024 });
    const frames: SpdyFrame[] = [];
    for (let i = 0; i < wire.length; i += 100_000) {
      frames.push(...parser.push(wire.subarray(i, i + 100_000)));
      assert.ok(parser.bufferedBytes <= 100_000, 'nothing waits for the whole frame');
    }
    const parts = frames.filter((f) => f.kind === 'data');
    assert.ok(parts.length > 3);
    assert.ok(parts.every((f) => f.data.length <= 64 * 1024));
    assert.deepEqual(
      parts.map((f) => f.fin),
      [...parts.slice(0, -2).map(() => false), true, false],
    );
    assert.deepEqual(Buffer.concat(parts.map((f) => f.data)), payload);
    assert.deepEqual(frames.at(-1), { kind: 'ping', id: 1 });
    assert.throws(() => new FrameParser({ dataPartBytes: 0 }), RangeError);
  });

  test('malformed input is a protocol error, and the parser stays failed', () => {
    const cases: [string, Buffer, ConstructorParameters<typeof FrameParser>[0]?][] = [
      ['version 2', Buffer.from([0x80, 0x02, 0, 1, 0, 0, 0, 0]), undefined],
      ['oversized control frame', controlFrame(1, 0, Buffer.alloc(100)), { maxControlBytes: 50 }],
      ['oversized DATA frame', encodeData(1, Buffer.alloc(100), false), { maxDataBytes: 50 }],
      ['DATA on stream 0', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), undefined],
      [
        'DATA on a refused stream id',
        encodeData(4, Buffer.alloc(1), false),
        { acceptDataStream: (id) => id % 2 === 1 },
      ],
      ['RST_STREAM status 0', controlFrame(3, 0, u32(1, 0)), undefined],
      ['short RST_STREAM', controlFrame(3, 0, u32(1)), undefined],
      ['PING of 8 bytes', controlFrame(6, 0, u32(1, 2)), undefined],
      ['GOAWAY of 4 bytes', controlFrame(7, 0, u32(1)), undefined],
      ['SYN_STREAM for stream 0', controlFrame(1, 0, Buffer.alloc(10)), undefined],
      ['short SYN_STREAM', controlFrame(1, 0, Buffer.alloc(6)), undefined],
      ['SETTINGS with too many entries', controlFrame(4, 0, u32(3, 1, 1)), undefined],
    ];
    for (const [name, bytes, options] of cases) {
      const parser = new FrameParser(options);
      assert.throws(() => parser.push(bytes), SpdyProtocolError, name);
      assert.throws(() => parser.push(encodePing(1)), SpdyProtocolError, `${name}: stays failed`);
    }
  });

  test('a garbage DATA header fails before its payload arrives', () => {
    const parser = new FrameParser({ acceptDataStream: () => false });
    // "GET / HTTP/1.1" reads as DATA for stream 0x47455420 with a 2 MiB length.
    assert.throws(() => parser.push(Buffer.from('GET / HT')), SpdyProtocolError);
  });
});

/**
 * The bounds a SPDY session keeps on what a client can make it hold: header blocks, streams,
 * answers the client does not read, DATA for a slow reader.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SpdyProtocolError } from '../../../../../src/spdy/errors.js';
import {
  MAX_HEADER_BLOCK_BYTES,
  MAX_HEADER_VALUES,
  decodeHeaderBlock,
  encodeHeaderBlock,
} from '../../../../../src/spdy/header-codec.js';
import {
  DEFAULT_MAX_STREAMS,
  type SpdySession,
  type SpdySessionOptions,
  type SpdyStream,
} from '../../../../../src/spdy/session.js';
import {
  PORTFORWARD_MAX_STREAMS,
  PORTFORWARD_SPDY_PROTOCOLS,
  acceptSpdyPortForward,
} from '../../../../../src/api/streams/spdy-portforward.js';
import { upgradeSpdy } from '../../../../../src/api/streams/spdy-upgrade.js';
import { waitFor } from '../../../../helpers/wait.js';
import {
  controlFrame,
  requestUpgrade,
  startServer,
  u32,
  type ClientStream,
  type SpdyClient,
  type TestServer,
} from './spdy-client.js';

const PROTOCOL = 'test.k8s.io';
const MiB = 1024 * 1024;

/** A full garbage collection, when V8 lets us ask for one; `undefined` otherwise. */
const gc = ((): (() => void) | undefined => {
  try {
    setFlagsFromString('--expose-gc');
    const fn: unknown = runInNewContext('gc');
    return typeof fn === 'function' ? (fn as () => void) : undefined;
  } catch {
    return undefined;
  }
})();

function heapUsed(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}

interface Harness {
  readonly server: TestServer;
  readonly sessions: SpdySession[];
  readonly streams: SpdyStream[];
  readonly errors: Error[];
  options: Partial<SpdySessionOptions>;
}

async function harness(): Promise<Harness> {
  const h: Omit<Harness, 'server'> = { sessions: [], streams: [], errors: [], options: {} };
  const server = await startServer((req, socket, head) => {
    const upgraded = upgradeSpdy(req, socket, head, [PROTOCOL], {
      onStream: (stream) => {
        h.streams.push(stream);
        return true;
      },
      ...h.options,
    });
    if (upgraded === undefined) return;
    upgraded.session.on('error', (err) => h.errors.push(err));
    h.sessions.push(upgraded.session);
  });
  return Object.assign(h, { server });
}

async function connectClient(port: number, protocol = PROTOCOL): Promise<SpdyClient> {
  const response = await requestUpgrade(port, { protocols: [protocol] });
  assert.equal(response.status, 101);
  assert.ok(response.client);
  return response.client;
}

/** RST_STREAM statuses the client received, by stream id. */
function resets(client: SpdyClient): Map<number, number> {
  const out = new Map<number, number>();
  for (const f of client.frames) {
    if (f.control && f.type === 3) out.set(f.streamId, f.payload.readUInt32BE(4));
  }
  return out;
}

describe('decodeHeaderBlock limits', () => {
  test('a block over MAX_HEADER_BLOCK_BYTES is refused', () => {
    const block = encodeHeaderBlock([['x', 'y'.repeat(MAX_HEADER_BLOCK_BYTES)]]);
    assert.throws(() => decodeHeaderBlock(block), SpdyProtocolError);
  });

  test('values are counted before they are split: NUL runs are refused', () => {
    const ok = encodeHeaderBlock([['x', '\0'.repeat(MAX_HEADER_VALUES - 1)]]);
    assert.equal(decodeHeaderBlock(ok).get('x')?.length, MAX_HEADER_VALUES);
    const bomb = encodeHeaderBlock([['x', '\0'.repeat(MAX_HEADER_VALUES)]]);
    assert.throws(() => decodeHeaderBlock(bomb), /more than 1000 values/);
    const spread = encodeHeaderBlock(
      Array.from({ length: 600 }, (_, i) => [`h${String(i)}`, 'a\0b'] as const),
    );
    assert.throws(() => decodeHeaderBlock(spread), /more than 1000 values/);
  });
});

describe('SpdySession limits', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(async () => {
    await h.server.close();
  });

  test('a header block of 1 MiB of NUL gets GOAWAY PROTOCOL_ERROR and the session closes', async () => {
    h.options = {};
    const client = await connectClient(h.server.port);
    const streamsBefore = h.streams.length;
    // About 1 KiB on the wire.
    client.openStreamNoWait({ bomb: '\0'.repeat(MiB) });
    await client.closed;
    assert.equal(client.goAway?.status, 1, 'GOAWAY PROTOCOL_ERROR');
    const session = h.sessions.at(-1);
    assert.ok(session);
    await waitFor(() => session.closed, { what: 'the session to close' });
    assert.ok(session.closeReason instanceof SpdyProtocolError);
    assert.equal(h.streams.length, streamsBefore, 'no stream was created');
  });

  test('a 60 KiB block of NUL (under the byte limit) is refused for its value count', async () => {
    const client = await connectClient(h.server.port);
    client.openStreamNoWait({ bomb: '\0'.repeat(60 * 1024) });
    await client.closed;
    assert.equal(client.goAway?.status, 1);
    assert.match(String(h.sessions.at(-1)?.closeReason?.message), /values/);
  });

  test('1 000 SYN_STREAMs: REFUSED_STREAM past maxStreams, nothing kept, heap growth < 20 MB', async () => {
    h.options = {};
    const client = await connectClient(h.server.port);
    const session = h.sessions.at(-1);
    assert.ok(session);
    const heapBefore = heapUsed();
    const opened: ClientStream[] = [];
    for (let i = 0; i < 1000; i++) opened.push(client.openStreamNoWait({ n: String(i) }));
    await waitFor(
      () => client.frames.filter((f) => f.control && (f.type === 2 || f.type === 3)).length >= 1000,
      { what: 'an answer to every SYN_STREAM' },
    );
    const status = resets(client);
    const replies = client.frames.filter((f) => f.control && f.type === 2).length;
    assert.equal(replies, DEFAULT_MAX_STREAMS);
    assert.equal(status.size, 1000 - DEFAULT_MAX_STREAMS);
    assert.ok(
      [...status.values()].every((s) => s === 3),
      'REFUSED_STREAM',
    );
    assert.equal(session.streamCount, DEFAULT_MAX_STREAMS);
    const growth = heapUsed() - heapBefore;
    assert.ok(growth < 20 * MiB, `heap grew by ${String(growth)} bytes`);
    // A closed stream frees its place.
    const first = opened[0];
    assert.ok(first);
    first.reset();
    await waitFor(() => session.streamCount === DEFAULT_MAX_STREAMS - 1, { what: 'the release' });
    await client.openStream({ n: 'again' });
    client.close();
    await client.closed;
  });

  test('a PING flood from a client that never reads closes the session', async () => {
    h.options = { maxPendingControlBytes: 64 * 1024 };
    const client = await connectClient(h.server.port);
    const session = h.sessions.at(-1);
    assert.ok(session);
    client.socket.pause();
    client.socket.removeAllListeners('data');
    const batch = Buffer.concat(Array.from({ length: 4096 }, (_, i) => pingFrame(2 * i + 1)));
    let sent = 0;
    // Far more than the kernel's socket buffers and the limit together.
    while (!session.closed && sent < 256 * MiB && !client.socket.destroyed) {
      sent += batch.length;
      if (!client.socket.write(batch)) {
        // The server's reset fails the wait: that is the outcome looked for.
        await Promise.race([once(client.socket, 'drain').catch(() => undefined), client.closed]);
      }
    }
    await waitFor(() => session.closed, { what: 'the session to close' });
    assert.match(String(session.closeReason?.message), /does not read/);
    client.socket.destroy();
    h.options = {};
  });

  test('a 16 MiB DATA frame reaches a slow reader in parts; the session holds about one window', async () => {
    h.options = {};
    const client = await connectClient(h.server.port);
    const session = h.sessions.at(-1);
    assert.ok(session);
    const stream = await client.openStream({ n: 'big' });
    const server = h.streams.at(-1);
    assert.ok(server);
    const length = 16 * MiB - 1;
    let received = 0;
    let maxHeld = 0;
    const slow = new Writable({
      highWaterMark: 16 * 1024,
      write: (chunk: Buffer, _encoding, callback) => {
        received += chunk.length;
        maxHeld = Math.max(maxHeld, session.bufferedInputBytes);
        setImmediate(callback);
      },
    });
    server.pipe(slow);
    const header = Buffer.alloc(8);
    header.writeUInt32BE(stream.id, 0);
    header.writeUInt32BE(((1 << 24) | length) >>> 0, 4);
    client.socket.write(header);
    const piece = Buffer.alloc(MiB, 'z');
    for (let left = length; left > 0; left -= piece.length) {
      if (!client.socket.write(piece.subarray(0, Math.min(left, piece.length)))) {
        await once(client.socket, 'drain');
      }
    }
    await waitFor(() => received === length, { what: 'every byte', timeoutMs: 60_000 });
    assert.ok(maxHeld < MiB, `the session held ${String(maxHeld)} bytes`);
    client.close();
    await client.closed;
  });
});

function pingFrame(id: number): Buffer {
  return controlFrame(6, 0, u32(id));
}

describe('SPDY port-forward limits', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer((req, socket, head) => {
      acceptSpdyPortForward(req, socket, head, (stream) => stream.data.resume(), {
        // Long enough for all 1 000 SYN_STREAMs to arrive before the first pair times out.
        streamCreationTimeoutMs: 10_000,
      });
    });
  });
  after(async () => {
    await server.close();
  });

  test('1 000 error streams: REFUSED_STREAM past the cap; the timeout releases the rest', async () => {
    const client = await connectClient(server.port, PORTFORWARD_SPDY_PROTOCOLS[0]);
    const heapBefore = heapUsed();
    const opened = Array.from({ length: 1000 }, (_, i) =>
      client.openStreamNoWait({ streamType: 'error', port: '80', requestID: String(i) }),
    );
    await waitFor(
      () => client.frames.filter((f) => f.control && (f.type === 2 || f.type === 3)).length >= 1000,
      { what: 'an answer to every SYN_STREAM' },
    );
    const refused = [...resets(client).values()].filter((s) => s === 3).length;
    assert.equal(refused, 1000 - PORTFORWARD_MAX_STREAMS);
    const growth = heapUsed() - heapBefore;
    assert.ok(growth < 20 * MiB, `heap grew by ${String(growth)} bytes`);
    // The pairs never complete: each error stream gets the timeout message and is released.
    const accepted = opened.slice(0, PORTFORWARD_MAX_STREAMS);
    await waitFor(() => accepted.every((s) => s.resetStatus !== undefined), {
      what: 'the pending error streams to be released',
    });
    assert.match(accepted[0]?.text ?? '', /timed out waiting for streams/);
    // Released on the server too: a new pair is served.
    const error = await client.openStream({ streamType: 'error', port: '80', requestID: 'new' });
    const data = await client.openStream({ streamType: 'data', port: '80', requestID: 'new' });
    await data.write('x');
    assert.equal(error.resetStatus, undefined);
    client.close();
    await client.closed;
  });
});

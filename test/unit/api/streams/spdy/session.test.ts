import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SpdyProtocolError } from '../../../../../src/spdy/errors.js';
import type {
  SpdySession,
  SpdySessionOptions,
  SpdyStream,
} from '../../../../../src/spdy/session.js';
import { upgradeSpdy } from '../../../../../src/api/streams/spdy-upgrade.js';
import { waitFor } from '../../../../helpers/wait.js';
import {
  controlFrame,
  requestUpgrade,
  startServer,
  u32,
  type SpdyClient,
  type TestServer,
} from './spdy-client.js';

const PROTOCOL = 'test.k8s.io';

interface Harness {
  readonly server: TestServer;
  readonly sessions: SpdySession[];
  readonly streams: SpdyStream[];
  readonly errors: Error[];
  /** Options for the next upgrades. */
  options: Partial<SpdySessionOptions>;
  /** Runs right after each upgrade. */
  onSession: (session: SpdySession) => void;
}

async function harness(): Promise<Harness> {
  const h: Omit<Harness, 'server'> = {
    sessions: [],
    streams: [],
    errors: [],
    options: {},
    onSession: () => undefined,
  };
  const server = await startServer((req, socket, head) => {
    const upgraded = upgradeSpdy(req, socket, head, [PROTOCOL], {
      onStream: (stream) => {
        h.streams.push(stream);
        return stream.header('accept') !== 'no';
      },
      ...h.options,
    });
    if (upgraded === undefined) return;
    upgraded.session.on('error', (err) => h.errors.push(err));
    h.sessions.push(upgraded.session);
    h.onSession(upgraded.session);
  });
  return Object.assign(h, { server });
}

async function connectClient(h: Harness, trailing?: Buffer): Promise<SpdyClient> {
  const response = await requestUpgrade(h.server.port, {
    protocols: [PROTOCOL],
    ...(trailing !== undefined ? { trailing } : {}),
  });
  assert.equal(response.status, 101);
  assert.ok(response.client);
  return response.client;
}

describe('SpdySession', () => {
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(async () => {
    await h.server.close();
  });

  test('replies to every stream with an empty SYN_REPLY; DATA flows both ways', async () => {
    h.options = {};
    const client = await connectClient(h);
    const before = h.streams.length;
    const a = await client.openStream({ streamType: 'one' });
    const b = await client.openStream({ streamType: 'two', Port: '80' });
    assert.deepEqual(a.replyHeaders, new Map());
    assert.deepEqual(b.replyHeaders, new Map());
    const [sa, sb] = h.streams.slice(before);
    assert.ok(sa && sb);
    assert.equal(sa.id, 1);
    assert.equal(sb.id, 3);
    assert.equal(sa.header('streamtype'), 'one');
    assert.equal(sb.header('port'), '80', 'header names arrive lower-case');

    // 1 MiB from the server goes out in DATA frames of at most 32 KiB.
    const payload = Buffer.alloc(1024 * 1024, 'x');
    sa.end(payload);
    await a.finished();
    assert.deepEqual(a.received, payload);
    const dataFrames = client.frames.filter((f) => !f.control && f.streamId === 1);
    assert.ok(dataFrames.every((f) => f.payload.length <= 32 * 1024));
    assert.equal(dataFrames.at(-1)?.payload.length, 0, 'end() is an empty DATA frame with FIN');
    assert.equal(dataFrames.at(-1)?.flags, 1);

    const chunks: Buffer[] = [];
    sb.on('data', (chunk: Buffer) => chunks.push(chunk));
    await b.write('hello ');
    await b.write('world', true);
    await waitFor(() => sb.readableEnded, { what: 'the client FIN' });
    assert.equal(Buffer.concat(chunks).toString(), 'hello world');
    client.close();
    await client.closed;
  });

  test('writes nothing before the client has sent its first frame', async () => {
    h.onSession = (session) => {
      session.close();
    };
    const client = await connectClient(h);
    await client.closed;
    assert.equal(client.receivedBytes, 0, 'not even a GOAWAY');
    h.onSession = () => undefined;
  });

  test('echoes odd PINGs byte for byte and ignores even ones', async () => {
    const client = await connectClient(h);
    assert.equal(await client.ping(), 1, 'a PING as the very first frame');
    client.sendRaw(controlFrame(6, 0, u32(2)));
    assert.equal(await client.ping(), 3);
    const pings = client.frames.filter((f) => f.control && f.type === 6);
    assert.deepEqual(
      pings.map((f) => f.payload.readUInt32BE(0)),
      [1, 3],
    );
    client.close();
    await client.closed;
  });

  test('SETTINGS and WINDOW_UPDATE are ignored; no flow control stalls a stream at 64 KiB', async () => {
    const client = await connectClient(h);
    client.sendRaw(controlFrame(4, 0, Buffer.concat([u32(1), u32(0x07, 1024)])));
    const stream = await client.openStream({ streamType: 'x' });
    client.sendRaw(controlFrame(9, 0, u32(1, 10)));
    const server = h.streams.at(-1);
    assert.ok(server);
    const payload = Buffer.alloc(3 * 1024 * 1024, 'y');
    server.end(payload);
    await stream.finished();
    assert.equal(stream.received.length, payload.length);
    client.close();
    await client.closed;
  });

  test('a slow reader pauses the socket without losing data', async () => {
    h.options = { streamHighWaterMarkBytes: 16 * 1024 };
    const client = await connectClient(h);
    const stream = await client.openStream({ streamType: 'slow' });
    const server = h.streams.at(-1);
    assert.ok(server);
    const payload = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    const sent = stream.write(payload, true);
    // Nobody reads yet: the server stops reading the socket, so the client's writes back up.
    await waitFor(() => server.readableLength >= 16 * 1024, { what: 'the stream buffer to fill' });
    const chunks: Buffer[] = [];
    server.on('data', (chunk: Buffer) => chunks.push(chunk));
    await sent;
    await waitFor(() => server.readableEnded, { what: 'all data' });
    assert.deepEqual(Buffer.concat(chunks), payload);
    client.close();
    await client.closed;
    h.options = {};
  });

  test('a refused stream gets RST_STREAM CANCEL and no reply; the session goes on', async () => {
    const client = await connectClient(h);
    await assert.rejects(client.openStream({ accept: 'no' }), /reset with status 5/);
    const ok = await client.openStream({ accept: 'yes' });
    assert.equal(ok.id, 3);
    assert.equal(client.frames.filter((f) => f.control && f.type === 2).length, 1);
    client.close();
    await client.closed;
  });

  test('a stream id that does not increase is reset with PROTOCOL_ERROR', async () => {
    const client = await connectClient(h);
    await client.openStream({ a: '1' });
    await client.openStream({ a: '2' });
    await client.sendSynStreamWithId(1, { a: '3' });
    await waitFor(() => client.frames.find((f) => f.control && f.type === 3), {
      what: 'RST_STREAM',
    });
    const rst = client.frames.find((f) => f.control && f.type === 3);
    assert.equal(rst?.payload.readUInt32BE(0), 1);
    assert.equal(rst?.payload.readUInt32BE(4), 1);
    client.close();
    await client.closed;
  });

  test('client RST destroys the stream and emits reset', async () => {
    const resets: number[] = [];
    h.onSession = (session) => {
      session.on('reset', (_stream, status) => resets.push(status));
    };
    const client = await connectClient(h);
    const stream = await client.openStream({ a: '1' });
    const server = h.streams.at(-1);
    assert.ok(server);
    stream.reset(5);
    await waitFor(() => server.destroyed, { what: 'the stream to be destroyed' });
    assert.deepEqual(resets, [5]);
    // Writing to a reset stream is dropped quietly.
    server.write('ignored');
    client.close();
    await client.closed;
    h.onSession = () => undefined;
  });

  test('client GOAWAY: the session closes once its streams are gone', async () => {
    let goAway: [number, number] | undefined;
    h.onSession = (session) => {
      session.on('goAway', (lastGood, status) => {
        goAway = [lastGood, status];
      });
    };
    const client = await connectClient(h);
    const stream = await client.openStream({ a: '1' });
    const server = h.streams.at(-1);
    const session = h.sessions.at(-1);
    assert.ok(server && session);
    client.sendGoAway(1);
    await waitFor(() => goAway, { what: 'the GOAWAY to arrive' });
    assert.deepEqual(goAway, [1, 0]);
    assert.equal(session.closed, false, 'a stream is still open');
    await assert.rejects(client.openStream({ a: '2' }), /reset with status 3/, 'REFUSED_STREAM');
    server.resume();
    server.end();
    await stream.end();
    await client.closed;
    await waitFor(() => session.closed, { what: 'the session to close' });
    assert.equal(session.streamCount, 0);
    h.onSession = () => undefined;
  });

  test('idle timeout resets open streams, sends GOAWAY and closes', async () => {
    h.options = { idleTimeoutMs: 300 };
    let timedOut = false;
    h.onSession = (session) => {
      session.on('timeout', () => {
        timedOut = true;
      });
    };
    const client = await connectClient(h);
    const stream = await client.openStream({ a: '1' });
    await client.closed;
    assert.equal(timedOut, true);
    assert.equal(stream.resetStatus, 5);
    assert.deepEqual(client.goAway, { lastGoodStreamId: 1, status: 0 });
    h.options = {};
    h.onSession = () => undefined;
  });

  const malformed: [string, Buffer][] = [
    ['garbage text', Buffer.from('hello, this is not SPDY at all\r\n\r\n')],
    ['random bytes', Buffer.from('8f1ea3c4d5e6f708192a3b4c5d6e7f80', 'hex')],
    [
      'an oversized control frame',
      Buffer.concat([Buffer.from([0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff])]),
    ],
    [
      'a SYN_STREAM with bad compression',
      controlFrame(1, 0, Buffer.concat([u32(1, 0), Buffer.from([0, 0, 1, 2, 3, 4, 5, 6])])),
    ],
    ['DATA on a stream never opened', Buffer.concat([u32(9, 5), Buffer.from('hello')])],
  ];
  for (const [name, bytes] of malformed) {
    test(`${name} after the upgrade closes the connection; the server keeps serving`, async () => {
      const errorsBefore = h.errors.length;
      const client = await connectClient(h);
      client.sendRaw(bytes);
      await client.closed;
      await waitFor(() => h.errors.length > errorsBefore, { what: 'the error event' });
      assert.ok(h.errors.at(-1) instanceof SpdyProtocolError);
      assert.equal(client.goAway?.status, 1, 'GOAWAY PROTOCOL_ERROR');
      const session = h.sessions.at(-1);
      await waitFor(() => session?.closed, { what: 'the session to close' });

      const next = await connectClient(h);
      await next.openStream({ a: 'b' });
      next.close();
      await next.closed;
    });
  }

  test('garbage that arrives with the upgrade request (head) is handled the same way', async () => {
    const errorsBefore = h.errors.length;
    const client = await connectClient(h, Buffer.from('\x80\x02\x00\x01garbage'));
    await client.closed;
    await waitFor(() => h.errors.length > errorsBefore, { what: 'the error event' });
  });

  test('frames that arrive with the upgrade request (head) are processed first', async () => {
    const client = await connectClient(h, controlFrame(6, 0, u32(41)));
    await waitFor(() => client.frames.find((f) => f.control && f.type === 6), { what: 'the echo' });
    client.close();
    await client.closed;
  });

  test('a socket that is gone before the upgrade ends the session at once', async () => {
    const closed: boolean[] = [];
    const other = await startServer((req, socket, head) => {
      socket.destroy();
      const upgraded = upgradeSpdy(req, socket, head, [PROTOCOL], { onStream: () => true });
      upgraded?.session.on('close', () => closed.push(true));
    });
    await requestUpgrade(other.port, { protocols: [PROTOCOL] }).catch(() => undefined);
    await waitFor(() => closed.length === 1, { what: 'the session to close' });
    await other.close();
  });

  test('no session leaks: every socket is closed once clients are gone', async () => {
    await waitFor(() => h.server.sockets.size === 0, { what: 'all server sockets to close' });
    for (const session of h.sessions) {
      await waitFor(() => session.closed, { what: 'every session to close' });
      assert.equal(session.streamCount, 0);
    }
  });
});

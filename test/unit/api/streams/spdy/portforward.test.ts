import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  PORTFORWARD_SPDY_PROTOCOLS,
  acceptSpdyPortForward,
} from '../../../../../src/api/streams/spdy-portforward.js';
import type { PortForwardStream, StreamTimeouts } from '../../../../../src/api/streams/types.js';
import { waitFor } from '../../../../helpers/wait.js';
import {
  requestUpgrade,
  startServer,
  type ClientStream,
  type SpdyClient,
  type TestServer,
} from './spdy-client.js';

/** What the fake pod does with a forwarded connection; chosen by the port. */
const ECHO_PORT = 8080;
const FAIL_PORT = 9090;
const THROW_PORT = 9191;
const HALF_CLOSE_PORT = 7070;
const HOLD_PORT = 6060;

interface ForwardServer {
  readonly server: TestServer;
  readonly forwarded: PortForwardStream[];
  readonly upgrades: boolean[];
  timeouts: StreamTimeouts | undefined;
}

async function forwardServer(): Promise<ForwardServer> {
  const state: Omit<ForwardServer, 'server'> = { forwarded: [], upgrades: [], timeouts: undefined };
  const server = await startServer((req, socket, head) => {
    const upgraded = acceptSpdyPortForward(
      req,
      socket,
      head,
      (stream) => {
        state.forwarded.push(stream);
        const { data } = stream;
        switch (stream.port) {
          case FAIL_PORT:
            stream.fail('connection refused by the pod');
            return;
          case THROW_PORT:
            throw new Error('handler exploded');
          case HALF_CLOSE_PORT: {
            // Reads to the end, then answers with the byte count (needs the client's FIN).
            let count = 0;
            data.on('data', (chunk: Buffer) => (count += chunk.length));
            data.on('end', () => data.end(`got ${String(count)} bytes`));
            return;
          }
          case HOLD_PORT:
            data.resume();
            return;
          default:
            // An echo server that prefixes every chunk with its port.
            data.on('data', (chunk: Buffer) =>
              data.write(`${String(stream.port)}:${chunk.toString()}`),
            );
            data.on('end', () => data.end());
        }
      },
      state.timeouts,
    );
    state.upgrades.push(upgraded);
  });
  return Object.assign(state, { server });
}

async function connectForward(port: number): Promise<SpdyClient> {
  const response = await requestUpgrade(port, {
    path: '/portForward/ns/pod',
    protocols: ['portforward.k8s.io'],
  });
  assert.equal(response.status, 101, response.body);
  assert.deepEqual(
    response.headers.find(([name]) => name === 'x-stream-protocol-version'),
    ['x-stream-protocol-version', 'portforward.k8s.io'],
  );
  assert.ok(response.client);
  return response.client;
}

interface Pair {
  readonly error: ClientStream;
  readonly data: ClientStream;
}

/** What client-go does per forwarded connection: error stream (half-closed at once), then data. */
async function openPair(client: SpdyClient, port: number, requestId: number): Promise<Pair> {
  const headers = { port: String(port), requestID: String(requestId) };
  const error = await client.openStream({ ...headers, streamType: 'error' });
  await error.end();
  const data = await client.openStream({ ...headers, streamType: 'data' });
  return { error, data };
}

describe('acceptSpdyPortForward', () => {
  let s: ForwardServer;
  before(async () => {
    s = await forwardServer();
  });
  after(async () => {
    await s.server.close();
  });

  test('pairs by request id on two concurrent connections', async () => {
    const clients = await Promise.all([
      connectForward(s.server.port),
      connectForward(s.server.port),
    ]);
    const runs = clients.flatMap((client, c) =>
      [0, 1, 2].map(async (i) => {
        const port = ECHO_PORT + i;
        const pair = await openPair(client, port, i);
        const message = `connection ${String(c)} request ${String(i)}`;
        await pair.data.write(message);
        await waitFor(() => pair.data.text.length >= message.length + 5, { what: 'the echo' });
        assert.equal(pair.data.text, `${String(port)}:${message}`);
        // The local side closes: FIN; the pod side ends too; then client-go resets the data stream.
        await pair.data.end();
        await pair.data.finished();
        assert.equal(pair.data.ended, true);
        pair.data.reset();
        await pair.error.finished();
        assert.equal(pair.error.ended, true, 'the error stream is closed');
        assert.equal(pair.error.received.length, 0, 'and carries no error');
      }),
    );
    await Promise.all(runs);
    assert.deepEqual(s.forwarded.map((f) => f.port).sort(), [8080, 8080, 8081, 8081, 8082, 8082]);
    for (const client of clients) client.close();
    await Promise.all(clients.map((client) => client.closed));
  });

  test('a large transfer in both directions is not held up by flow control', async () => {
    const client = await connectForward(s.server.port);
    const pair = await openPair(client, HALF_CLOSE_PORT, 1);
    const payload = Buffer.alloc(5 * 1024 * 1024, 'z');
    await pair.data.write(payload, true);
    await pair.data.finished();
    assert.equal(pair.data.text, `got ${String(payload.length)} bytes`);
    pair.data.reset();
    await pair.error.finished();
    client.close();
    await client.closed;
  });

  test('client FIN on data ends the readable side; the pod can still answer', async () => {
    const client = await connectForward(s.server.port);
    const pair = await openPair(client, HALF_CLOSE_PORT, 1);
    await pair.data.write('12345');
    await pair.data.end();
    await pair.data.finished();
    assert.equal(pair.data.text, 'got 5 bytes');
    pair.data.reset();
    await pair.error.finished();
    client.close();
    await client.closed;
  });

  test('client RST on data destroys the handler side and closes the error stream', async () => {
    const client = await connectForward(s.server.port);
    const before = s.forwarded.length;
    const pair = await openPair(client, HOLD_PORT, 1);
    await waitFor(() => s.forwarded.length > before, { what: 'the handler call' });
    const forwarded = s.forwarded.at(-1);
    assert.ok(forwarded);
    pair.data.reset();
    await waitFor(() => forwarded.data.destroyed, { what: 'the data stream to be destroyed' });
    await pair.error.finished();
    assert.equal(pair.error.received.length, 0);
    client.close();
    await client.closed;
  });

  test('fail(message) reports on the error stream and closes the pair', async () => {
    const client = await connectForward(s.server.port);
    const pair = await openPair(client, FAIL_PORT, 7);
    await pair.error.finished();
    assert.equal(pair.error.text, 'connection refused by the pod');
    await pair.data.finished();
    assert.equal(pair.data.resetStatus, 5);
    // The connection keeps serving new pairs.
    const next = await openPair(client, ECHO_PORT, 8);
    await next.data.write('still here');
    await waitFor(() => next.data.text === '8080:still here', { what: 'the echo' });
    client.close();
    await client.closed;
  });

  test('a handler that throws fails the pair', async () => {
    const client = await connectForward(s.server.port);
    const pair = await openPair(client, THROW_PORT, 1);
    await pair.error.finished();
    assert.match(pair.error.text, /handler exploded/);
    client.close();
    await client.closed;
  });

  test('an incomplete pair times out with "timed out waiting for streams"', async () => {
    s.timeouts = { streamCreationTimeoutMs: 200 };
    const client = await connectForward(s.server.port);
    const error = await client.openStream({ streamType: 'error', port: '80', requestID: '1' });
    const data = await client.openStream({ streamType: 'data', port: '80', requestID: '2' });
    await error.finished();
    assert.match(error.text, /timed out waiting for streams/);
    assert.equal(error.ended, true);
    await data.finished();
    assert.equal(data.resetStatus, 5, 'a lone data stream is reset');
    client.close();
    await client.closed;
    s.timeouts = undefined;
  });

  test('streams without a valid port or stream type are refused', async () => {
    const client = await connectForward(s.server.port);
    const invalid: Record<string, string>[] = [
      { streamType: 'data', requestID: '1' },
      { streamType: 'data', port: '0', requestID: '1' },
      { streamType: 'data', port: '65536', requestID: '1' },
      { streamType: 'data', port: 'http', requestID: '1' },
      { streamType: 'stdin', port: '80', requestID: '1' },
      { port: '80', requestID: '1' },
    ];
    for (const headers of invalid) {
      await assert.rejects(
        client.openStream(headers),
        /reset with status 5/,
        JSON.stringify(headers),
      );
    }
    client.close();
    await client.closed;
  });

  test('a duplicate stream for a request id is refused and reported', async () => {
    const client = await connectForward(s.server.port);
    const error = await client.openStream({ streamType: 'error', port: '80', requestID: '1' });
    await assert.rejects(
      client.openStream({ streamType: 'error', port: '80', requestID: '1' }),
      /reset with status 5/,
    );
    await waitFor(() => error.text.includes('error stream already assigned'), {
      what: 'the report',
    });
    client.close();
    await client.closed;
  });

  test('clients without request ids pair the data stream with the error stream two ids before', async () => {
    const client = await connectForward(s.server.port);
    const error = await client.openStream({ streamType: 'error', port: String(ECHO_PORT) });
    const data = await client.openStream({ streamType: 'data', port: String(ECHO_PORT) });
    await data.write('legacy');
    await waitFor(() => data.text === '8080:legacy', { what: 'the echo' });
    await data.end();
    await data.finished();
    data.reset();
    await error.finished();
    client.close();
    await client.closed;
  });

  test('closing the connection destroys the forwarded streams', async () => {
    const client = await connectForward(s.server.port);
    const before = s.forwarded.length;
    await openPair(client, HOLD_PORT, 1);
    await waitFor(() => s.forwarded.length > before, { what: 'the handler call' });
    const forwarded = s.forwarded.at(-1);
    assert.ok(forwarded);
    client.socket.destroy();
    await waitFor(() => forwarded.data.destroyed, { what: 'the data stream to be destroyed' });
  });

  test('negotiation: 403 for another protocol, 400 without the header', async () => {
    const upgradesBefore = s.upgrades.length;
    const rejected = await requestUpgrade(s.server.port, {
      path: '/portForward/ns/pod',
      protocols: ['v4.channel.k8s.io'],
    });
    assert.equal(rejected.status, 403);
    assert.deepEqual(
      rejected.headers
        .filter(([name]) => name === 'x-accepted-stream-protocol-versions')
        .map(([, v]) => v),
      [...PORTFORWARD_SPDY_PROTOCOLS],
    );
    const missing = await requestUpgrade(s.server.port, { path: '/portForward/ns/pod' });
    assert.equal(missing.status, 400);
    assert.deepEqual(s.upgrades.slice(upgradesBefore), [false, false]);
  });

  test('every server socket is closed once the clients are gone', async () => {
    await waitFor(() => s.server.sockets.size === 0, { what: 'all server sockets to close' });
  });
});

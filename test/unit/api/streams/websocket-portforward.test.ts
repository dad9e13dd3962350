import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { PortForwardStream } from '../../../../src/api/streams/types.js';
import { WEBSOCKET_MAX_PAYLOAD_BYTES } from '../../../../src/api/streams/websocket-channels.js';
import {
  MAX_BASE64_PORTFORWARD_PORTS,
  MAX_PORTFORWARD_PORTS,
  acceptWebSocketPortForward,
  parsePortQuery,
} from '../../../../src/api/streams/websocket-portforward.js';
import { waitFor } from '../../../helpers/wait.js';
import {
  connect,
  connectError,
  nonWebSocketUpgrade,
  refusedUpgrade,
  startServer,
} from './websocket-harness.js';

interface ForwardServer {
  readonly url: string;
  readonly streams: PortForwardStream[];
  readonly results: boolean[];
}

/** A server whose port-forward upgrades hand every stream to `handle`. */
async function forwardServer(
  t: TestContext,
  handle: (stream: PortForwardStream) => void = () => undefined,
): Promise<ForwardServer> {
  const streams: PortForwardStream[] = [];
  const results: boolean[] = [];
  const server = await startServer((req, socket, head) => {
    results.push(
      acceptWebSocketPortForward(req, socket, head, (stream) => {
        streams.push(stream);
        handle(stream);
      }),
    );
  });
  t.after(() => server.close());
  return { url: `${server.url}/portForward/ns/pod`, streams, results };
}

const portHeader = (port: number): Buffer => {
  const header = Buffer.alloc(2);
  header.writeUInt16LE(port);
  return header;
};

/** Answers every chunk with `<port>:<chunk>`. */
const echo = (stream: PortForwardStream): void => {
  stream.data.on('data', (chunk: Buffer) => {
    stream.data.write(`${String(stream.port)}:${chunk.toString()}`);
  });
};

test('two ports: little-endian port headers, data both ways, fail() on the error channel', async (t) => {
  const server = await forwardServer(t, echo);
  const client = await connect(`${server.url}?port=80,8080`, ['v4.channel.k8s.io']);
  await waitFor(() => client.messages.length >= 4, { what: 'port headers' });
  assert.deepEqual(
    client.messages.slice(0, 4).map((m) => [m.channel, [...m.payload]]),
    [
      [0, [80, 0]],
      [1, [80, 0]],
      [2, [0x90, 0x1f]],
      [3, [0x90, 0x1f]],
    ],
  );
  assert.deepEqual(
    server.streams.map((s) => s.port),
    [80, 8080],
  );
  client.send(0, 'ping');
  client.send(2, 'pong');
  await waitFor(() => client.received(0).length > 2 && client.received(2).length > 2);
  assert.equal(client.received(0).subarray(2).toString(), '80:ping');
  assert.equal(client.received(2).subarray(2).toString(), '8080:pong');

  const [first, second] = server.streams;
  assert.ok(first && second);
  second.fail('connection refused');
  await waitFor(() => client.received(3).length > 2);
  assert.equal(client.received(3).subarray(2).toString(), 'connection refused');
  assert.equal(second.data.destroyed, true);
  assert.equal(client.ws.readyState, client.ws.OPEN, 'the other port is still open');

  // Once every port has ended, the WebSocket closes normally.
  first.data.end();
  await waitFor(() => client.closed, { what: 'close' });
  assert.equal(client.closed?.code, 1000);
  assert.deepEqual(server.results, [true]);
});

test('repeated port parameters and base64 framing', async (t) => {
  const server = await forwardServer(t, echo);
  const client = await connect(`${server.url}?port=5432&port=6379`, ['v4.base64.channel.k8s.io']);
  await waitFor(() => client.messages.length >= 4);
  assert.ok(client.messages.every((m) => !m.binary));
  assert.deepEqual(client.messages[2]?.payload, portHeader(6379));
  client.send(2, 'hi');
  await waitFor(() => client.received(2).length > 2);
  assert.equal(client.received(2).subarray(2).toString(), '6379:hi');
});

test('a missing or invalid port query is a 400 before any upgrade', async (t) => {
  const server = await forwardServer(t);
  for (const query of ['', '?port=', '?port=abc', '?port=0', '?port=70000', '?port=80,', '?x=1']) {
    const err = await connectError(`${server.url}${query}`, ['v4.channel.k8s.io']);
    assert.match(err.message, /400/, query);
  }
  const response = await nonWebSocketUpgrade(`${server.url}?port=80`);
  assert.equal(response.status, 400);
  await waitFor(() => server.results.length === 8);
  assert.ok(server.results.every((accepted) => !accepted));
  assert.equal(server.streams.length, 0);
});

test('a client disconnect ends and destroys the streams', async (t) => {
  const received: string[] = [];
  const server = await forwardServer(t, (stream) => {
    stream.data.on('data', (chunk: Buffer) => received.push(chunk.toString()));
  });
  const client = await connect(`${server.url}?port=80&port=81`);
  assert.equal(client.ws.protocol, '');
  await waitFor(() => server.streams.length === 2);
  client.send(0, 'last words');
  await waitFor(() => received.length === 1);
  client.ws.terminate();
  await waitFor(() => server.streams.every((s) => s.data.destroyed), { what: 'destroyed' });
  assert.deepEqual(received, ['last words']);
  assert.equal(server.streams[0]?.data.readableEnded, true);
});

test('a throwing handler fails its port', async (t) => {
  const server = await forwardServer(t, () => {
    throw new Error('no such port');
  });
  const client = await connect(`${server.url}?port=80`, ['channel.k8s.io']);
  await waitFor(() => client.closed);
  assert.equal(client.received(1).subarray(2).toString(), 'no such port');
});

test('parsePortQuery', () => {
  assert.deepEqual(parsePortQuery('/p?port=1,2&port=3'), [1, 2, 3]);
  assert.deepEqual(parsePortQuery('/p?port=65535'), [65535]);
  assert.equal(typeof parsePortQuery('/p'), 'string');
  assert.equal(typeof parsePortQuery('/p?port=1.5'), 'string');
  assert.equal(typeof parsePortQuery('/p?port=-1'), 'string');
});

const portList = (count: number): string =>
  Array.from({ length: count }, (_, i) => String(1000 + i)).join(',');

test('at most 128 ports per request: 129 is a 400 that says so', async (t) => {
  assert.equal(MAX_PORTFORWARD_PORTS, 128);
  const server = await forwardServer(t);
  const refused = await refusedUpgrade(
    `${server.url}?port=${portList(MAX_PORTFORWARD_PORTS + 1)}`,
    'v4.channel.k8s.io',
  );
  assert.equal(refused.status, 400);
  assert.match(refused.body, /too many ports: at most 128 per port-forward request/);
  // base64 framing carries fewer channels, so fewer ports.
  const base64 = await refusedUpgrade(
    `${server.url}?port=${portList(MAX_BASE64_PORTFORWARD_PORTS + 1)}`,
    'v4.base64.channel.k8s.io',
  );
  assert.equal(base64.status, 400);
  assert.match(base64.body, /at most 104 per/);
  assert.equal(server.streams.length, 0);
  assert.equal(
    (parsePortQuery(`/p?port=${portList(MAX_PORTFORWARD_PORTS)}`) as number[]).length,
    128,
  );
  assert.equal(typeof parsePortQuery(`/p?port=1&port=${portList(128)}`), 'string');
});

test('128 ports: the last pair of channels (254, 255) is framed without error', async (t) => {
  const server = await forwardServer(t, echo);
  const client = await connect(`${server.url}?port=${portList(MAX_PORTFORWARD_PORTS)}`, [
    'v4.channel.k8s.io',
  ]);
  await waitFor(() => client.messages.length >= 2 * MAX_PORTFORWARD_PORTS, {
    what: 'every port header',
  });
  assert.deepEqual(client.received(255), portHeader(1127));
  client.send(254, 'hi');
  await waitFor(() => client.received(254).length > 2);
  assert.equal(client.received(254).subarray(2).toString(), '1127:hi');
  client.ws.close();
});

test('a client message over 1 MiB closes the connection with 1009', async (t) => {
  assert.ok(WEBSOCKET_MAX_PAYLOAD_BYTES <= 1024 * 1024);
  const received: number[] = [];
  const server = await forwardServer(t, (stream) => {
    stream.data.on('data', (chunk: Buffer) => received.push(chunk.length));
  });
  const client = await connect(`${server.url}?port=80`, ['v4.channel.k8s.io']);
  await waitFor(() => server.streams.length === 1);
  client.send(0, Buffer.alloc(WEBSOCKET_MAX_PAYLOAD_BYTES - 1));
  await waitFor(() => received.reduce((a, b) => a + b, 0) === WEBSOCKET_MAX_PAYLOAD_BYTES - 1, {
    what: 'a message at the limit',
  });
  client.send(0, Buffer.alloc(2 * 1024 * 1024));
  await waitFor(() => client.closed, { what: 'the close' });
  assert.equal(client.closed?.code, 1009);
  await waitFor(() => server.streams[0]?.data.destroyed, { what: 'the stream to be destroyed' });
});

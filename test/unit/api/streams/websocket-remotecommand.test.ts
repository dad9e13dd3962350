import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { test, type TestContext } from 'node:test';
import { errorStatus, exitStatus } from '../../../../src/api/streams/status.js';
import type {
  RemoteCommandOptions,
  RemoteCommandSession,
  StreamTimeouts,
} from '../../../../src/api/streams/types.js';
import { ResizeDecoder } from '../../../../src/api/streams/resize.js';
import { acceptWebSocketRemoteCommand } from '../../../../src/api/streams/websocket-remotecommand.js';
import type { TerminalSize } from '../../../../src/provider.js';
import { waitFor } from '../../../helpers/wait.js';
import {
  connect,
  connectError,
  nonWebSocketUpgrade,
  rawUpgrade,
  startServer,
} from './websocket-harness.js';

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;
const V5 = 'v5.channel.k8s.io';

const io: RemoteCommandOptions = { stdin: true, stdout: true, stderr: true, tty: false };

interface ExecServer {
  readonly url: string;
  readonly sessions: RemoteCommandSession[];
  /** What `acceptWebSocketRemoteCommand` resolved to, per upgrade request. */
  readonly results: (RemoteCommandSession | undefined)[];
}

/** A server whose upgrades become sessions that `run` drives. */
async function execServer(
  t: TestContext,
  options: RemoteCommandOptions,
  run: (session: RemoteCommandSession) => Promise<void> | void,
  timeouts?: StreamTimeouts,
): Promise<ExecServer> {
  const sessions: RemoteCommandSession[] = [];
  const results: (RemoteCommandSession | undefined)[] = [];
  const server = await startServer((req, socket, head) => {
    void acceptWebSocketRemoteCommand(req, socket, head, options, timeouts).then(
      async (session) => {
        results.push(session);
        if (session === undefined) return;
        sessions.push(session);
        await run(session);
      },
    );
  });
  t.after(() => server.close());
  return { url: `${server.url}/exec/ns/pod/c`, sessions, results };
}

const json = (payload: Buffer): unknown => JSON.parse(payload.toString('utf8'));

test('v5: 1 MiB of stdin comes back identical on stdout, then a Success status', async (t) => {
  const input = randomBytes(1024 * 1024);
  const server = await execServer(t, io, async (session) => {
    assert.ok(session.stdin && session.stdout);
    await pipeline(session.stdin, session.stdout);
    await session.finish({ exitCode: 0 });
  });
  const client = await connect(server.url, [V5]);
  assert.equal(client.ws.protocol, V5);
  for (let at = 0; at < input.length; at += 10_000) {
    client.send(STDIN, input.subarray(at, at + 10_000));
  }
  client.ws.send(Buffer.from([0xff, STDIN]));
  await waitFor(() => client.closed, { what: 'the server to close' });
  assert.equal(client.closed?.code, 1000);
  assert.deepEqual(client.messages[0], { channel: STDOUT, payload: Buffer.alloc(0), binary: true });
  assert.ok(client.received(STDOUT).equals(input), 'stdout differs from stdin');
  assert.deepEqual(json(client.received(ERROR)), { metadata: {}, status: 'Success' });
  assert.equal(server.sessions[0]?.protocol, V5);
  assert.equal(server.sessions[0]?.signal.aborted, false);
});

test('v5: the close signal ends stdin while the connection stays open', async (t) => {
  let seen: Buffer | undefined;
  const server = await execServer(
    t,
    { stdin: true, stdout: false, stderr: false, tty: false },
    async (session) => {
      assert.ok(session.stdin);
      const chunks: Buffer[] = [];
      for await (const chunk of session.stdin) chunks.push(chunk as Buffer);
      seen = Buffer.concat(chunks);
    },
  );
  const client = await connect(server.url, [V5]);
  client.send(STDIN, 'abc');
  client.send(STDIN, 'def');
  await waitFor(() => server.sessions.length > 0);
  client.ws.send(Buffer.from([0xff, STDIN]));
  await waitFor(() => seen, { what: 'stdin EOF' });
  assert.equal(seen?.toString(), 'abcdef');
  assert.equal(client.closed, undefined);
  assert.equal(server.sessions[0]?.signal.aborted, false);
  await server.sessions[0]?.finish({ exitCode: 0 });
  await waitFor(() => client.closed);
});

test('v5: a non-zero exit code is a NonZeroExitCode status on channel 3', async (t) => {
  const server = await execServer(t, io, (session) => session.finish({ exitCode: 3 }));
  const client = await connect(server.url, [V5]);
  await waitFor(() => client.closed);
  const errors = client.messages.filter((m) => m.channel === ERROR);
  assert.equal(errors.length, 1, 'one status message');
  assert.deepEqual(json(client.received(ERROR)), {
    metadata: {},
    status: 'Failure',
    message: 'command terminated with non-zero exit code: exit status 3',
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: '3' }] },
  });
});

test('v4: an error is an InternalError status with code 500', async (t) => {
  const server = await execServer(t, io, (session) =>
    session.finish({ error: new Error('no such container') }),
  );
  const client = await connect(server.url, ['v4.channel.k8s.io']);
  await waitFor(() => client.closed);
  assert.deepEqual(json(client.received(ERROR)), {
    metadata: {},
    status: 'Failure',
    message: 'Internal error occurred: error executing command in container: no such container',
    reason: 'InternalError',
    details: { causes: [{ message: 'error executing command in container: no such container' }] },
    code: 500,
  });
});

test('base64.channel.k8s.io: text messages, base64 payloads, plain-text error', async (t) => {
  const server = await execServer(t, io, async (session) => {
    assert.ok(session.stdin && session.stdout);
    for await (const chunk of session.stdin) {
      session.stdout.write((chunk as Buffer).toString().toUpperCase());
      break;
    }
    await session.finish({ exitCode: 2 });
  });
  const client = await connect(server.url, ['base64.channel.k8s.io']);
  client.send(STDIN, 'hello');
  await waitFor(() => client.closed);
  assert.ok(client.messages.length > 0 && client.messages.every((m) => !m.binary), 'text only');
  assert.deepEqual(client.messages[0], {
    channel: STDOUT,
    payload: Buffer.alloc(0),
    binary: false,
  });
  assert.equal(client.received(STDOUT).toString(), 'HELLO');
  assert.equal(
    client.received(ERROR).toString(),
    'command terminated with non-zero exit code: exit status 2',
  );
});

test('v4.base64: the status is JSON in base64 text', async (t) => {
  const server = await execServer(t, io, (session) => session.finish({ exitCode: 0 }));
  const client = await connect(server.url, ['v4.base64.channel.k8s.io']);
  await waitFor(() => client.closed);
  assert.ok(client.messages.every((m) => !m.binary));
  assert.deepEqual(json(client.received(ERROR)), { metadata: {}, status: 'Success' });
});

test('channel.k8s.io: nothing on the error channel on success', async (t) => {
  const server = await execServer(t, io, (session) => session.finish({ exitCode: 0 }));
  const client = await connect(server.url, ['channel.k8s.io']);
  await waitFor(() => client.closed);
  assert.equal(client.closed?.code, 1000);
  assert.equal(client.messages.filter((m) => m.channel === ERROR).length, 0);
});

test('the readiness message goes to the lowest requested writable channel', async (t) => {
  const cases: [RemoteCommandOptions, number][] = [
    [{ stdin: true, stdout: true, stderr: true, tty: false }, STDOUT],
    [{ stdin: true, stdout: false, stderr: true, tty: false }, STDERR],
    [{ stdin: true, stdout: false, stderr: false, tty: false }, ERROR],
  ];
  for (const [options, channel] of cases) {
    const server = await execServer(t, options, (session) => session.finish({ exitCode: 0 }));
    const client = await connect(server.url, [V5]);
    await waitFor(() => client.closed);
    assert.deepEqual(
      client.messages[0],
      { channel, payload: Buffer.alloc(0), binary: true },
      JSON.stringify(options),
    );
  }
});

test('resize messages become terminal sizes; tty drops stderr', async (t) => {
  const sizes: TerminalSize[] = [];
  const server = await execServer(t, { ...io, tty: true }, async (session) => {
    assert.equal(session.stderr, undefined);
    assert.equal(session.tty, true);
    assert.ok(session.resize);
    for await (const size of session.resize) sizes.push(size);
    await session.finish({ exitCode: 0 });
  });
  const client = await connect(server.url, [V5]);
  client.send(RESIZE, '{"Width":80,"Height":24}\n');
  client.send(RESIZE, '{"Width":1');
  client.send(RESIZE, '00,"Height":40}\n');
  client.send(RESIZE, '{"Width":-1,"Height":2}\n');
  client.send(RESIZE, '{"width":120,"height":50}\n');
  await waitFor(() => sizes.length === 3, { what: 'three sizes' });
  client.ws.send(Buffer.from([0xff, RESIZE]));
  await waitFor(() => client.closed);
  assert.deepEqual(sizes, [
    { width: 80, height: 24 },
    { width: 100, height: 40 },
    { width: 120, height: 50 },
  ]);
});

test('unread stdin pauses the socket; destroying stdin resumes it', async (t) => {
  const sizes: TerminalSize[] = [];
  const server = await execServer(t, { ...io, tty: true }, async (session) => {
    assert.ok(session.resize);
    for await (const size of session.resize) sizes.push(size);
  });
  const client = await connect(server.url, [V5]);
  const session = await waitFor(() => server.sessions[0]);
  // Two messages: one of 1 MiB would pass the message limit.
  client.send(STDIN, randomBytes(512 * 1024));
  client.send(STDIN, randomBytes(512 * 1024));
  await waitFor(() => (session.stdin?.readableLength ?? 0) >= 256 * 1024, { what: 'stdin full' });
  client.send(RESIZE, '{"Width":1,"Height":2}');
  session.stdin?.destroy();
  await waitFor(() => sizes.length === 1, { what: 'the resize behind the stdin data' });
  assert.deepEqual(sizes, [{ width: 1, height: 2 }]);
  await session.finish({ exitCode: 0 });
});

test('the subprotocol is chosen in the client order', async (t) => {
  const server = await execServer(t, io, (session) => session.finish({ exitCode: 0 }));
  const cases: [string[] | undefined, string][] = [
    [['channel.k8s.io', V5], 'channel.k8s.io'],
    [['v4.base64.channel.k8s.io', 'v4.channel.k8s.io', V5], 'v4.base64.channel.k8s.io'],
    [['v3.channel.k8s.io', V5, 'v4.channel.k8s.io'], V5],
    [['base64.channel.k8s.io', 'channel.k8s.io'], 'base64.channel.k8s.io'],
    [undefined, ''],
  ];
  for (const [offered, expected] of cases) {
    const client = await connect(server.url, offered);
    assert.equal(client.ws.protocol, expected, String(offered));
    await waitFor(() => client.closed);
    assert.equal(server.sessions.at(-1)?.protocol, expected);
  }
  // An offer that is not a token (the ws client will not even send it) is skipped, as in Go.
  const raw = await rawUpgrade(server.url, 'SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io');
  assert.deepEqual(raw, { status: 101, protocol: 'v4.channel.k8s.io' });
});

test('no supported subprotocol: 403; not a WebSocket upgrade: 400', async (t) => {
  const server = await execServer(t, io, (session) => session.finish({ exitCode: 0 }));
  const refused = await connectError(server.url, ['v3.channel.k8s.io']);
  assert.match(refused.message, /403/);
  const response = await nonWebSocketUpgrade(server.url);
  assert.equal(response.status, 400);
  assert.match(response.body, /unable to upgrade/);
  await waitFor(() => server.results.length === 2);
  assert.deepEqual(server.results, [undefined, undefined]);
});

test('a client disconnect aborts the signal, ends stdin and destroys stdout', async (t) => {
  const server = await execServer(t, io, () => undefined);
  const client = await connect(server.url, [V5]);
  const session = await waitFor(() => server.sessions[0]);
  assert.equal(session.signal.aborted, false);
  session.stdin?.resume();
  client.ws.terminate();
  await waitFor(() => session.signal.aborted, { what: 'abort' });
  assert.ok(session.signal.reason instanceof Error);
  await waitFor(() => session.stdin?.readableEnded, { what: 'stdin EOF' });
  assert.equal(session.stdout?.destroyed, true);
  await session.finish({ exitCode: 0 }); // still resolves
});

test('v5: a malformed close signal is a protocol error', async (t) => {
  const server = await execServer(t, io, () => undefined);
  const client = await connect(server.url, [V5]);
  const session = await waitFor(() => server.sessions[0]);
  client.ws.send(Buffer.from([0xff, 0, 1]));
  await waitFor(() => client.closed);
  assert.equal(client.closed?.code, 1002);
  assert.equal(session.signal.aborted, true);
});

test('the idle timeout closes the connection and aborts the signal', async (t) => {
  const server = await execServer(t, io, () => undefined, { streamIdleTimeoutMs: 200 });
  const client = await connect(server.url, [V5]);
  const session = await waitFor(() => server.sessions[0]);
  await waitFor(() => client.closed, { what: 'idle close' });
  assert.equal(client.closed?.code, 1001);
  assert.match(String(session.signal.reason), /idle/);
});

test('finish is idempotent and waits for buffered output', async (t) => {
  const big = randomBytes(512 * 1024);
  const server = await execServer(t, io, async (session) => {
    assert.ok(session.stdout);
    session.stdout.write(big);
    const first = session.finish({ exitCode: 0 });
    assert.equal(session.finish({ exitCode: 1 }), first);
    await first;
  });
  const client = await connect(server.url, [V5]);
  await waitFor(() => client.closed);
  assert.ok(client.received(STDOUT).equals(big));
  const last = client.messages.at(-1);
  assert.equal(last?.channel, ERROR);
  assert.deepEqual(json(client.received(ERROR)), { metadata: {}, status: 'Success' });
});

test('ResizeDecoder splits objects across writes and skips junk', () => {
  const decoder = new ResizeDecoder();
  assert.deepEqual(decoder.write('{"Width":1,"Height":2}\n{"Wid'), [{ width: 1, height: 2 }]);
  assert.deepEqual(decoder.write('th":3,"Height":4}{"Width":"x"}'), [{ width: 3, height: 4 }]);
  assert.deepEqual(decoder.write('garbage {"Height":6,"Width":5,"x":"}"}'), [
    { width: 5, height: 6 },
  ]);
  assert.deepEqual(decoder.write('{"Width":70000,"Height":1}'), []);
});

test('status helpers produce the kubelet JSON byte for byte', () => {
  assert.equal(JSON.stringify(exitStatus(0)), '{"metadata":{},"status":"Success"}');
  assert.equal(
    JSON.stringify(exitStatus(3, ['sh', '-c', 'exit 3'])),
    '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: ' +
      `command 'sh -c exit 3' exited with 3","reason":"NonZeroExitCode",` +
      '"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
  );
  assert.equal(exitStatus(300).details?.causes[0]?.message, '255');
  assert.equal(exitStatus(-1).details?.causes[0]?.message, '255');
  assert.equal(
    JSON.stringify(errorStatus(new Error('x'))),
    '{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing ' +
      'command in container: x","reason":"InternalError","details":{"causes":[{"message":' +
      '"error executing command in container: x"}]},"code":500}',
  );
});

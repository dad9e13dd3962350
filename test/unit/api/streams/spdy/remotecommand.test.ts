import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { TerminalSize } from '../../../../../src/provider.js';
import {
  REMOTECOMMAND_SPDY_PROTOCOLS,
  acceptSpdyRemoteCommand,
} from '../../../../../src/api/streams/spdy-remotecommand.js';
import type {
  RemoteCommandOptions,
  RemoteCommandSession,
  StreamTimeouts,
} from '../../../../../src/api/streams/types.js';
import { waitFor } from '../../../../helpers/wait.js';
import {
  requestUpgrade,
  startServer,
  type ClientStream,
  type SpdyClient,
  type TestServer,
} from './spdy-client.js';

/** What the fake provider does with a session; chosen by the `command` query parameter. */
type Behaviour = (session: RemoteCommandSession) => Promise<void>;

const behaviours: Record<string, Behaviour> = {
  /** stdin back to stdout; exit 0 at stdin's end. */
  echo: async (session) => {
    const { stdin, stdout } = session;
    assert.ok(stdin && stdout);
    stdin.pipe(stdout, { end: false });
    await new Promise((resolve) => stdin.once('end', resolve));
    await session.finish({ exitCode: 0 });
  },
  exit3: async (session) => {
    session.stdout?.write('out\n');
    session.stderr?.write('err\n');
    await session.finish({ exitCode: 3 });
  },
  exit0: async (session) => {
    session.stdout?.write('out\n');
    await session.finish({ exitCode: 0 });
  },
  fail: async (session) => {
    await session.finish({ error: new Error('boom') });
  },
  /** Reports the first two terminal sizes on stdout. */
  resize: async (session) => {
    assert.ok(session.resize);
    const sizes: TerminalSize[] = [];
    for await (const size of session.resize) {
      sizes.push(size);
      if (sizes.length === 2) break;
    }
    session.stdout?.write(JSON.stringify(sizes));
    await session.finish({ exitCode: 0 });
  },
  /** Waits for the client to go away. */
  wait: async (session) => {
    await new Promise((resolve) => session.signal.addEventListener('abort', resolve));
  },
};

interface ExecServer {
  readonly server: TestServer;
  readonly results: (RemoteCommandSession | undefined)[];
  timeouts: StreamTimeouts | undefined;
}

async function execServer(): Promise<ExecServer> {
  const state: Omit<ExecServer, 'server'> = { results: [], timeouts: undefined };
  const server = await startServer((req, socket, head) => {
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const tty = query.get('tty') === '1';
    const options: RemoteCommandOptions = {
      stdin: query.get('input') === '1',
      stdout: query.get('output') === '1',
      stderr: query.get('error') === '1' && !tty,
      tty,
    };
    void acceptSpdyRemoteCommand(req, socket, head, options, state.timeouts).then(
      async (session) => {
        state.results.push(session);
        if (session === undefined) return;
        const behaviour = behaviours[query.get('command') ?? ''];
        assert.ok(behaviour);
        await behaviour(session);
      },
    );
  });
  return Object.assign(state, { server });
}

interface Exec {
  readonly client: SpdyClient;
  readonly protocol: string | undefined;
  readonly streams: Record<string, ClientStream>;
}

/** Upgrades and opens the streams in client-go's order: error, stdin, stdout, stderr, resize. */
async function exec(
  port: number,
  query: string,
  types: readonly string[],
  protocols: readonly string[] = REMOTECOMMAND_SPDY_PROTOCOLS,
): Promise<Exec> {
  const response = await requestUpgrade(port, { path: `/exec/ns/pod/c?${query}`, protocols });
  assert.equal(response.status, 101, response.body);
  assert.ok(response.client);
  const protocol = response.headers.find(([name]) => name === 'x-stream-protocol-version')?.[1];
  const streams: Record<string, ClientStream> = {};
  for (const type of types) {
    streams[type] = await response.client.openStream({ streamType: type });
  }
  return { client: response.client, protocol, streams };
}

function stream(e: Exec, type: string): ClientStream {
  const s = e.streams[type];
  assert.ok(s, type);
  return s;
}

describe('acceptSpdyRemoteCommand', () => {
  let s: ExecServer;
  before(async () => {
    s = await execServer();
  });
  after(async () => {
    await s.server.close();
  });

  test('v5: 10 MiB through stdin comes back through stdout unchanged; status Success', async () => {
    const e = await exec(s.server.port, 'command=echo&input=1&output=1&error=1', [
      'error',
      'stdin',
      'stdout',
      'stderr',
    ]);
    assert.equal(e.protocol, 'v5.channel.k8s.io');
    for (const type of ['error', 'stdin', 'stdout', 'stderr']) {
      assert.deepEqual(stream(e, type).replyHeaders, new Map(), `empty SYN_REPLY for ${type}`);
    }
    const payload = Buffer.alloc(10 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i, i);
    await stream(e, 'stdin').write(payload, true);
    await Promise.all(['stdout', 'stderr', 'error', 'stdin'].map((t) => stream(e, t).finished()));
    const stdout = stream(e, 'stdout').received;
    assert.equal(stdout.length, payload.length);
    assert.equal(
      createHash('sha256').update(stdout).digest('hex'),
      createHash('sha256').update(payload).digest('hex'),
    );
    assert.equal(stream(e, 'stderr').received.length, 0);
    assert.equal(stream(e, 'error').text, '{"metadata":{},"status":"Success"}');
    e.client.close();
    await e.client.closed;
  });

  test('v4: a non-zero exit code is a NonZeroExitCode status with an ExitCode cause', async () => {
    const e = await exec(
      s.server.port,
      'command=exit3&output=1&error=1',
      ['error', 'stdout', 'stderr'],
      ['v4.channel.k8s.io'],
    );
    assert.equal(e.protocol, 'v4.channel.k8s.io');
    await Promise.all(['stdout', 'stderr', 'error'].map((t) => stream(e, t).finished()));
    assert.equal(stream(e, 'stdout').text, 'out\n');
    assert.equal(stream(e, 'stderr').text, 'err\n');
    assert.equal(
      stream(e, 'error').text,
      '{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}',
    );
    e.client.close();
    await e.client.closed;
  });

  test('v5: an error is an InternalError status', async () => {
    const e = await exec(s.server.port, 'command=fail&output=1', ['error', 'stdout']);
    await stream(e, 'error').finished();
    const status = JSON.parse(stream(e, 'error').text) as Record<string, unknown>;
    assert.equal(status.status, 'Failure');
    assert.equal(status.reason, 'InternalError');
    assert.equal(status.code, 500);
    assert.match(String(status.message), /error executing command in container: boom/);
    e.client.close();
    await e.client.closed;
  });

  test('v3: plain text for a failure, nothing for success', async () => {
    const failed = await exec(
      s.server.port,
      'command=exit3&output=1&error=1',
      ['error', 'stdout', 'stderr'],
      ['v3.channel.k8s.io'],
    );
    assert.equal(failed.protocol, 'v3.channel.k8s.io');
    await stream(failed, 'error').finished();
    assert.equal(
      stream(failed, 'error').text,
      'command terminated with non-zero exit code: exit status 3',
    );
    failed.client.close();

    const ok = await exec(
      s.server.port,
      'command=exit0&output=1',
      ['error', 'stdout'],
      ['v3.channel.k8s.io'],
    );
    await Promise.all([stream(ok, 'error').finished(), stream(ok, 'stdout').finished()]);
    assert.equal(stream(ok, 'error').ended, true, 'FIN');
    assert.equal(stream(ok, 'error').received.length, 0);
    assert.equal(stream(ok, 'stdout').text, 'out\n');
    ok.client.close();
    await Promise.all([failed.client.closed, ok.client.closed]);
  });

  test('tty: resize events split across frames become terminal sizes; no stderr stream', async () => {
    const e = await exec(s.server.port, 'command=resize&input=1&output=1&error=1&tty=1', [
      'error',
      'stdin',
      'stdout',
      'resize',
    ]);
    const resize = stream(e, 'resize');
    await resize.write('{"Width":80,');
    await resize.write('"Height":24}\n{"Wid');
    await resize.write('th":100,"Height":40}\n');
    await stream(e, 'stdout').finished();
    assert.equal(stream(e, 'stdout').text, '[{"width":80,"height":24},{"width":100,"height":40}]');
    await stream(e, 'error').finished();
    assert.equal(stream(e, 'error').text, '{"metadata":{},"status":"Success"}');
    // The server closes its side of stdin and resize too (client-go waits for stdin's).
    await stream(e, 'stdin').finished();
    await resize.finished();
    e.client.close();
    await e.client.closed;
  });

  test('the protocol is the first of the client list the server supports', async () => {
    const e = await exec(
      s.server.port,
      'command=exit0&output=1',
      ['error', 'stdout'],
      ['v9.channel.k8s.io, v2.channel.k8s.io', 'v4.channel.k8s.io'],
    );
    assert.equal(e.protocol, 'v2.channel.k8s.io');
    await stream(e, 'error').finished();
    e.client.close();
    await e.client.closed;
  });

  test('streams of unknown or unrequested types, duplicates and late extras are refused', async () => {
    const response = await requestUpgrade(s.server.port, {
      path: '/exec/ns/pod/c?command=exit0&input=1&output=1',
      protocols: REMOTECOMMAND_SPDY_PROTOCOLS,
    });
    const client = response.client;
    assert.ok(client);
    await client.openStream({ streamType: 'error' });
    await assert.rejects(client.openStream({ streamType: 'bogus' }), /reset with status 5/);
    await assert.rejects(client.openStream({ streamType: 'stderr' }), /reset with status 5/);
    await assert.rejects(client.openStream({ streamType: 'error' }), /reset with status 5/);
    const stdin = await client.openStream({ streamType: 'stdin' });
    const stdout = await client.openStream({ streamType: 'stdout' });
    await stdout.finished();
    assert.equal(stdout.text, 'out\n');
    await assert.rejects(client.openStream({ streamType: 'stdout' }), /reset with status 5/);
    assert.equal(stdin.resetStatus, undefined);
    client.close();
    await client.closed;
  });

  test('a flood of extra streams is refused and none is kept', async () => {
    const response = await requestUpgrade(s.server.port, {
      path: '/exec/ns/pod/c?command=wait&output=1',
      protocols: REMOTECOMMAND_SPDY_PROTOCOLS,
    });
    const client = response.client;
    assert.ok(client);
    await client.openStream({ streamType: 'error' });
    await client.openStream({ streamType: 'stdout' });
    const extras = Array.from({ length: 1000 }, () =>
      client.openStreamNoWait({ streamType: 'stdin' }),
    );
    await waitFor(() => extras.every((extra) => extra.resetStatus !== undefined), {
      what: 'every extra stream to be reset',
    });
    // Only the two requested streams were ever replied to.
    assert.equal(client.frames.filter((f) => f.control && f.type === 2).length, 2);
    await client.ping();
    client.close();
    await client.closed;
  });

  test('PING is echoed during a session', async () => {
    const e = await exec(s.server.port, 'command=wait&output=1', ['error', 'stdout']);
    await e.client.ping();
    await e.client.ping();
    e.client.close();
    await e.client.closed;
  });

  test('the signal aborts when the client goes away', async () => {
    const before = s.results.length;
    const e = await exec(s.server.port, 'command=wait&input=1&output=1', [
      'error',
      'stdin',
      'stdout',
    ]);
    await waitFor(() => s.results.length > before, { what: 'the session' });
    const session = s.results.at(-1);
    assert.ok(session);
    assert.equal(session.signal.aborted, false);
    e.client.socket.destroy();
    await waitFor(() => session.signal.aborted, { what: 'the abort' });
    assert.ok(session.signal.reason instanceof Error);
    // finish() after the client is gone resolves and writes nothing.
    await session.finish({ exitCode: 0 });
  });

  test('the signal aborts when the client resets a stream', async () => {
    const before = s.results.length;
    const e = await exec(s.server.port, 'command=wait&input=1&output=1', [
      'error',
      'stdin',
      'stdout',
    ]);
    await waitFor(() => s.results.length > before, { what: 'the session' });
    const session = s.results.at(-1);
    assert.ok(session);
    stream(e, 'stdin').reset();
    await waitFor(() => session.signal.aborted, { what: 'the abort' });
    e.client.close();
    await e.client.closed;
  });

  test('streams not opened within the creation timeout: no session, connection closed', async () => {
    s.timeouts = { streamCreationTimeoutMs: 200 };
    const before = s.results.length;
    const e = await exec(s.server.port, 'command=exit0&input=1&output=1', ['error', 'stdin']);
    await e.client.closed;
    assert.deepEqual(e.client.goAway, { lastGoodStreamId: 3, status: 0 });
    await waitFor(() => s.results.length > before, { what: 'the result' });
    assert.equal(s.results.at(-1), undefined);
    s.timeouts = undefined;
  });

  test('invalid timeouts throw before the socket is touched', async () => {
    await assert.rejects(
      acceptSpdyRemoteCommand(
        {} as never,
        {} as never,
        Buffer.alloc(0),
        { stdin: false, stdout: true, stderr: false, tty: false },
        { streamIdleTimeoutMs: -1 },
      ),
      { name: 'VirtualKubeletError', code: 'InvalidInput' },
    );
  });

  describe('negotiation', () => {
    test('no common protocol: 403 listing every supported protocol', async () => {
      const before = s.results.length;
      const response = await requestUpgrade(s.server.port, {
        path: '/exec/ns/pod/c?output=1',
        protocols: ['v9.channel.k8s.io', 'v10.channel.k8s.io'],
      });
      assert.equal(response.status, 403);
      assert.deepEqual(
        response.headers
          .filter(([name]) => name === 'x-accepted-stream-protocol-versions')
          .map(([, value]) => value),
        [...REMOTECOMMAND_SPDY_PROTOCOLS],
      );
      assert.match(response.body, /unable to upgrade: unable to negotiate protocol/);
      await waitFor(() => s.results.length > before);
      assert.equal(s.results.at(-1), undefined);
    });

    test('no X-Stream-Protocol-Version header: 400', async () => {
      const response = await requestUpgrade(s.server.port, { path: '/exec/ns/pod/c?output=1' });
      assert.equal(response.status, 400);
      assert.match(response.body, /X-Stream-Protocol-Version/);
    });

    test('an upgrade to something other than SPDY/3.1: 400 missing upgrade headers', async () => {
      const response = await requestUpgrade(s.server.port, {
        path: '/exec/ns/pod/c?output=1',
        protocols: ['v4.channel.k8s.io'],
        upgrade: 'websocket',
      });
      assert.equal(response.status, 400);
      assert.equal(response.body, 'unable to upgrade: missing upgrade headers in request\n');
    });
  });

  test('every server socket is closed once the clients are gone', async () => {
    await waitFor(() => s.server.sockets.size === 0, { what: 'all server sockets to close' });
  });
});

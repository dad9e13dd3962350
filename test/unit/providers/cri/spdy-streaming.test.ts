/**
 * The cri provider's client of a runtime's streaming server (SPDY/3.1, `v4.channel.k8s.io`)
 * against the kubelet API's own SPDY remotecommand server, which speaks what containerd's
 * streaming server speaks: stdin's end reaches the process, output keeps its bytes and order, a
 * slow reader holds the connection up, exit codes, terminal sizes and refusals.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { after, before, test } from 'node:test';
import { acceptSpdyRemoteCommand } from '../../../../src/api/streams/spdy-remotecommand.js';
import type { RemoteCommandSession } from '../../../../src/api/streams/types.js';
import { isVirtualKubeletError } from '../../../../src/errors.js';
import type { TerminalSize } from '../../../../src/provider.js';
import { runStream } from '../../../../src/providers/cri/streaming.js';

type Behaviour = (session: RemoteCommandSession) => Promise<void>;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const behaviours: Record<string, Behaviour> = {
  /** `wc -c` and a digest: reads stdin to its end, then reports what it read. */
  count: async (session) => {
    const chunks: Buffer[] = [];
    assert.ok(session.stdin);
    for await (const chunk of session.stdin) chunks.push(chunk as Buffer);
    const all = Buffer.concat(chunks);
    session.stdout?.write(`${String(all.length)} ${sha(all)}\n`);
    await session.finish({ exitCode: 0 });
  },
  /** Output on both streams, then exit 3. */
  exit3: async (session) => {
    session.stdout?.write('out\n');
    session.stderr?.write('err\n');
    await session.finish({ exitCode: 3 });
  },
  /** 4 MiB of output in one go (the session's writes wait for the socket). */
  flood: async (session) => {
    const data = Buffer.alloc(4 * 1024 * 1024, 'x');
    for (let i = 0; i < data.length; i += 64 * 1024) {
      if (session.stdout && !session.stdout.write(data.subarray(i, i + 64 * 1024)))
        await once(session.stdout, 'drain');
    }
    await session.finish({ exitCode: 0 });
  },
  /** Reports the first terminal size on stdout. */
  resize: async (session) => {
    assert.ok(session.resize);
    let first: TerminalSize | undefined;
    for await (const size of session.resize) {
      first = size;
      break;
    }
    session.stdout?.write(JSON.stringify(first));
    await session.finish({ exitCode: 0 });
  },
  fail: async (session) => {
    await session.finish({ error: new Error('no such command') });
  },
};

let server: Server;
let port = 0;
const sockets = new Set<import('node:net').Socket>();

before(async () => {
  server = createServer((_req, res) => {
    res.statusCode = 400;
    res.end('not an upgrade\n');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req, socket, head) => {
    if (req.url?.startsWith('/missing') === true) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 16\r\n\r\nno such session\n');
      return;
    }
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const tty = query.get('tty') === '1';
    void acceptSpdyRemoteCommand(req, socket, head, {
      stdin: query.get('stdin') === '1',
      stdout: true,
      stderr: !tty,
      tty,
    }).then(async (session) => {
      if (session === undefined) return;
      const behaviour = behaviours[query.get('command') ?? ''];
      assert.ok(behaviour);
      await behaviour(session);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const url = (query: string): string => `http://127.0.0.1:${String(port)}/exec/token?${query}`;

/** A writable that keeps what it is given, taking `delayMs` per chunk when set. */
function sink(delayMs = 0): Writable & { data(): Buffer } {
  const chunks: Buffer[] = [];
  const w = new Writable({
    highWaterMark: 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      if (delayMs > 0) setTimeout(cb, delayMs);
      else cb();
    },
  }) as Writable & { data(): Buffer };
  w.data = () => Buffer.concat(chunks);
  return w;
}

test('stdin reaches the process to its end: the end of the caller stdin half-closes the stream', async () => {
  const input = randomBytes(300 * 1024 + 7);
  const stdout = sink();
  const stderr = sink();
  const outcome = await runStream(
    url('command=count&stdin=1'),
    {
      stdin: Readable.from([input.subarray(0, 1000), input.subarray(1000)]),
      stdout,
      stderr,
      tty: false,
    },
    AbortSignal.timeout(20_000),
  );
  assert.equal(outcome.exitCode, 0);
  assert.equal(stdout.data().toString(), `${String(input.length)} ${sha(input)}\n`);
  assert.equal(stdout.writableEnded, false, 'the caller ends its own streams');
});

test('stdout and stderr are separate, and a non-zero exit code is the outcome', async () => {
  const stdout = sink();
  const stderr = sink();
  const outcome = await runStream(
    url('command=exit3'),
    { stdout, stderr, tty: false },
    AbortSignal.timeout(20_000),
  );
  assert.equal(outcome.exitCode, 3);
  assert.equal(stdout.data().toString(), 'out\n');
  assert.equal(stderr.data().toString(), 'err\n');
});

test('a slow reader gets every byte of a large output, with bounded buffering', async () => {
  const stdout = sink(1);
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, stdout.writableLength);
  }, 5);
  try {
    const outcome = await runStream(
      url('command=flood'),
      { stdout, stderr: sink(), tty: false },
      AbortSignal.timeout(60_000),
    );
    assert.equal(outcome.exitCode, 0);
  } finally {
    clearInterval(timer);
  }
  // What is still in the sink's buffer is written before its end (the caller ends it).
  stdout.end();
  await finished(stdout);
  assert.equal(stdout.data().length, 4 * 1024 * 1024);
  // The pipe stops reading at the sink's high-water mark; one DATA part may come on top.
  assert.ok(peak <= 16 * 1024 + 64 * 1024, `peak ${String(peak)}`);
});

test('a terminal: sizes go on the resize stream, and there is no stderr stream', async () => {
  const stdout = sink();
  const sizes = new PassThrough({ objectMode: true });
  sizes.write({ width: 101, height: 33 });
  const outcome = await runStream(
    url('command=resize&tty=1'),
    { stdout, tty: true, resize: sizes },
    AbortSignal.timeout(20_000),
  );
  sizes.end();
  assert.equal(outcome.exitCode, 0);
  assert.deepEqual(JSON.parse(stdout.data().toString()), { width: 101, height: 33 });
});

test('a failure on the error channel is InvalidInput; a refused upgrade is Unavailable', async () => {
  await assert.rejects(
    runStream(
      url('command=fail'),
      { stdout: sink(), stderr: sink(), tty: false },
      AbortSignal.timeout(20_000),
    ),
    (err: unknown) =>
      isVirtualKubeletError(err) &&
      err.code === 'InvalidInput' &&
      /no such command/.test(err.message),
  );
  await assert.rejects(
    runStream(
      `http://127.0.0.1:${String(port)}/missing`,
      { stdout: sink(), tty: false },
      AbortSignal.timeout(20_000),
    ).then(() => undefined),
    (err: unknown) =>
      isVirtualKubeletError(err) &&
      err.code === 'Unavailable' &&
      /404: no such session/.test(err.message),
  );
});

test('an aborted session ends at once without an exit code', async () => {
  const ac = new AbortController();
  const stdin = new PassThrough();
  const running = runStream(
    url('command=count&stdin=1'),
    { stdin, stdout: sink(), stderr: sink(), tty: false },
    ac.signal,
  );
  stdin.write('partial');
  setImmediate(() => {
    ac.abort();
  });
  assert.deepEqual(await running, { exitCode: undefined });
});

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Duplex, PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { hasContainerAttach, hasPortForward } from '../../../../src/provider.js';
import { MAX_LINE_CHARS } from '../../../../src/providers/mock/attach.js';
import { waitFor } from '../../../helpers/wait.js';
import { collect, mock, pod, signal, text } from './helpers.js';

const fast = { intervalMs: 10, timeoutMs: 5000 };
const PLAIN = { follow: false, previous: false, timestamps: false } as const;

/** Tracks a promise so tests can wait for it with `waitFor` (the mock's timers are unref'd). */
function track<T>(promise: Promise<T>): {
  readonly settled: boolean;
  readonly promise: Promise<T>;
} {
  let settled = false;
  const done = (): void => {
    settled = true;
  };
  promise.then(done, done);
  return {
    promise,
    get settled() {
      return settled;
    },
  };
}

/** The two ends of a connection: `pod` for the provider, `client` for the test. */
function connection(): {
  pod: Duplex;
  toPod: PassThrough;
  fromPod: PassThrough;
} {
  const toPod = new PassThrough();
  const fromPod = new PassThrough();
  return { pod: Duplex.from({ readable: toPod, writable: fromPod }), toPod, fromPod };
}

describe('MockProvider attach', () => {
  test('echoes stdin lines to stdout and the log, and ends when stdin ends', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    assert.equal(hasContainerAttach(provider), true);
    await provider.createPod(pod('a'), signal);
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const out = collect(stdout);
    const session = track(
      provider.attachToContainer('ns', 'a', 'main', { stdin, stdout, tty: false }, signal),
    );
    stdin.write('hello\nwor');
    await waitFor(() => out.text() === 'hello\n', fast);
    stdin.write('ld\r\nlast words');
    stdin.end();
    await waitFor(() => session.settled, fast);
    await session.promise;
    assert.equal(out.text(), 'hello\nworld\nlast words\n');
    assert.equal(
      await text(await provider.getContainerLogs('ns', 'a', 'main', PLAIN, signal)),
      'mock: container main of ns/a started\nhello\nworld\nlast words\n',
    );
    await provider.close();
  });

  test('stdin without line breaks is logged in parts of at most MAX_LINE_CHARS, nothing lost', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    await provider.createPod(pod('long'), signal);
    const stdin = new PassThrough();
    const session = track(
      provider.attachToContainer('ns', 'long', 'main', { stdin, tty: false }, signal),
    );
    const input = 'x'.repeat(MAX_LINE_CHARS * 64 + 5);
    for (let at = 0; at < input.length; at += 4096) stdin.write(input.slice(at, at + 4096));
    stdin.end('\n');
    await waitFor(() => session.settled, fast);
    await session.promise;
    const logged = (
      await text(await provider.getContainerLogs('ns', 'long', 'main', PLAIN, signal))
    )
      .split('\n')
      .slice(1, -1);
    assert.equal(logged.length, 65);
    assert.ok(logged.every((line) => line.length <= MAX_LINE_CHARS));
    assert.equal(logged.join(''), input);
    await provider.close();
  });

  test('writes new log lines (with CR LF on a tty) and ends when the pod is deleted', async () => {
    const { provider } = mock({ config: { logIntervalMs: 10 } });
    await provider.createPod(pod('b'), signal);
    const stdout = new PassThrough();
    const out = collect(stdout);
    const session = track(
      provider.attachToContainer('ns', 'b', 'main', { stdout, tty: true }, signal),
    );
    await waitFor(() => /tick \d+\r\n.*tick \d+\r\n/s.test(out.text()), fast);
    assert.doesNotMatch(out.text(), /started/, 'only lines written after attaching');
    await provider.deletePod(pod('b'), signal);
    await waitFor(() => session.settled, fast);
    await session.promise;
    await provider.close();
  });

  test('rejects with the reason on abort; ends on close; checks pod and container', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    await provider.createPod(pod('c'), signal);
    const controller = new AbortController();
    const aborted = track(
      provider.attachToContainer(
        'ns',
        'c',
        'main',
        { stdin: new PassThrough(), tty: false },
        controller.signal,
      ),
    );
    controller.abort(new Error('client gone'));
    await assert.rejects(aborted.promise, /client gone/);

    const closing = track(
      provider.attachToContainer(
        'ns',
        'c',
        'main',
        { stdout: new PassThrough(), tty: false },
        signal,
      ),
    );
    await provider.close();
    await waitFor(() => closing.settled, fast);
    await closing.promise;

    await assert.rejects(provider.attachToContainer('ns', 'c', 'main', { tty: false }, signal), {
      code: 'Unavailable',
    });
    await assert.rejects(provider.attachToContainer('ns', 'x', 'main', { tty: false }, signal), {
      code: 'NotFound',
    });
    await assert.rejects(provider.attachToContainer('ns', 'c', 'x', { tty: false }, signal), {
      code: 'NotFound',
    });
  });
});

describe('MockProvider port-forward', () => {
  test('every port echoes; ending the client side ends the pod side', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    assert.equal(hasPortForward(provider), true);
    await provider.createPod(pod('pf'), signal);
    const { pod: stream, toPod, fromPod } = connection();
    const back = collect(fromPod);
    const session = track(provider.portForward('ns', 'pf', 8080, stream, signal));
    toPod.write('ping\n');
    await waitFor(() => back.text() === 'ping\n', fast);
    const payload = randomBytes(4 * 1024 * 1024);
    toPod.end(payload);
    await waitFor(() => back.done && session.settled, fast);
    await session.promise;
    const expected = createHash('sha256').update('ping\n').update(payload).digest('hex');
    assert.equal(back.bytes().length, 5 + payload.length);
    assert.equal(createHash('sha256').update(back.bytes()).digest('hex'), expected);
    await provider.close();
  });

  test('a deleted pod ends the connection; abort rejects; unknown pod is NotFound', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    await provider.createPod(pod('pf'), signal);
    const first = connection();
    const ended = collect(first.fromPod);
    const session = track(provider.portForward('ns', 'pf', 80, first.pod, signal));
    await provider.deletePod(pod('pf'), signal);
    await waitFor(() => ended.done && session.settled, fast);
    await session.promise;

    await provider.createPod(pod('pf2'), signal);
    const controller = new AbortController();
    const aborted = provider.portForward('ns', 'pf2', 80, connection().pod, controller.signal);
    controller.abort(new Error('client gone'));
    await assert.rejects(aborted, /client gone/);
    await assert.rejects(provider.portForward('ns', 'pf2', 0, connection().pod, signal), {
      code: 'InvalidInput',
    });
    await assert.rejects(provider.portForward('ns', 'nobody', 80, connection().pod, signal), {
      code: 'NotFound',
      message: 'pod "nobody" does not exist',
    });
    await provider.close();
    await assert.rejects(provider.portForward('ns', 'pf2', 80, connection().pod, signal), {
      code: 'Unavailable',
    });
  });
});

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { hasContainerExec, type AttachStreams } from '../../../../src/provider.js';
import type { MockProvider } from '../../../../src/providers/mock/index.js';
import { parseScript } from '../../../../src/providers/mock/exec.js';
import { waitFor } from '../../../helpers/wait.js';
import { channel, collect, mock, pod, signal } from './helpers.js';

const fast = { intervalMs: 10, timeoutMs: 5000 };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command` in ns/web/main with the given stdin text (or none) and collects the output. */
async function exec(
  provider: MockProvider,
  command: string[],
  options: { stdin?: string; tty?: boolean; container?: string; pod?: string } = {},
): Promise<Result> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = collect(stdout);
  const err = collect(stderr);
  const streams: AttachStreams = {
    stdout,
    stderr,
    tty: options.tty ?? false,
    ...(options.stdin === undefined ? {} : { stdin: Readable.from([Buffer.from(options.stdin)]) }),
  };
  const code = await provider.runInContainer(
    'ns',
    options.pod ?? 'web',
    options.container ?? 'main',
    command,
    streams,
    signal,
  );
  return { code, stdout: out.text(), stderr: err.text() };
}

async function running(): Promise<MockProvider> {
  const { provider } = mock({ config: { logIntervalMs: 0 } });
  await provider.createPod(
    pod('web', {
      hostname: 'web-host',
      containers: [
        {
          name: 'main',
          env: [
            { name: 'GREETING', value: 'hello' },
            { name: 'SPACED', value: 'two words' },
            { name: 'EMPTY' },
          ],
        },
        { name: 'bare' },
      ],
    }),
    signal,
  );
  await provider.createPod(pod('plain'), signal);
  return provider;
}

describe('MockProvider exec', () => {
  test('echo, true, false, hostname, env, printenv', async () => {
    const provider = await running();
    assert.equal(hasContainerExec(provider), true);
    assert.deepEqual(await exec(provider, ['echo', 'hello', 'world']), {
      code: 0,
      stdout: 'hello world\n',
      stderr: '',
    });
    assert.equal((await exec(provider, ['/bin/echo', '-n', 'x'])).stdout, 'x');
    assert.equal((await exec(provider, ['true'])).code, 0);
    assert.equal((await exec(provider, ['false'])).code, 1);
    assert.equal((await exec(provider, ['hostname'])).stdout, 'web-host\n');
    assert.equal((await exec(provider, ['hostname'], { pod: 'plain' })).stdout, 'plain\n');
    assert.equal(
      (await exec(provider, ['env'])).stdout,
      'GREETING=hello\nSPACED=two words\nEMPTY=\n',
    );
    assert.equal((await exec(provider, ['env'], { container: 'bare' })).stdout, '');
    assert.deepEqual(await exec(provider, ['printenv', 'SPACED', 'NOPE']), {
      code: 1,
      stdout: 'two words\n',
      stderr: '',
    });
    await provider.close();
  });

  test('an unknown command exits 127 with a message on stderr, or stdout with a tty', async () => {
    const provider = await running();
    assert.deepEqual(await exec(provider, ['vim', 'x']), {
      code: 127,
      stdout: '',
      stderr: 'mock: vim: command not found\n',
    });
    assert.deepEqual(await exec(provider, ['vim'], { tty: true }), {
      code: 127,
      stdout: 'mock: vim: command not found\r\n',
      stderr: '',
    });
    await provider.close();
  });

  test('sh -c: exit codes, lists, quotes and variables', async () => {
    const provider = await running();
    const sh = (script: string): Promise<Result> => exec(provider, ['sh', '-c', script]);
    assert.equal((await sh('exit 3')).code, 3);
    assert.equal((await sh('exit 256')).code, 0);
    assert.deepEqual(await sh('echo x; exit 4'), { code: 4, stdout: 'x\n', stderr: '' });
    assert.deepEqual(await sh('false && echo no || echo yes'), {
      code: 0,
      stdout: 'yes\n',
      stderr: '',
    });
    assert.equal((await sh('false; echo $?')).stdout, '1\n');
    assert.equal(
      (await sh('echo "$GREETING, ${SPACED}" \'$GREETING\' a\\ b')).stdout,
      'hello, two words $GREETING a b\n',
    );
    assert.equal((await sh('true\n# a comment\nexit')).code, 0);
    assert.equal((await sh('false\nexit')).code, 1);
    const pipe = await sh('echo a | cat');
    assert.equal(pipe.code, 2);
    assert.match(pipe.stderr, /^sh: "\|" is not supported\n$/);
    assert.equal((await sh('echo "unterminated')).code, 2);
    assert.equal((await exec(provider, ['sh', '-c', 'cat'], { stdin: 'piped' })).stdout, 'piped');
    assert.throws(() => parseScript('&& true'), /syntax error/);
    await provider.close();
  });

  test('sh without arguments runs stdin line by line; with a tty it prompts and echoes', async () => {
    const provider = await running();
    assert.deepEqual(
      await exec(provider, ['sh'], { stdin: 'echo one\necho two\nexit 5\necho never\n' }),
      {
        code: 5,
        stdout: 'one\ntwo\n',
        stderr: '',
      },
    );
    assert.deepEqual(
      await exec(provider, ['sh'], { stdin: 'ech\u007fho hi\rfalse\r\u0004', tty: true }),
      {
        code: 1,
        stdout: '$ ech\b \bho hi\r\nhi\r\n$ false\r\n$ exit\r\n',
        stderr: '',
      },
    );
    await provider.close();
  });

  test('cat copies 10 MiB of stdin to stdout, with back-pressure', async () => {
    const provider = await running();
    const chunks = Array.from({ length: 161 }, () => randomBytes(65_536));
    const expected = createHash('sha256');
    for (const chunk of chunks) expected.update(chunk);
    let produced = 0;
    const stdin = Readable.from(
      (function* () {
        for (const chunk of chunks) {
          produced += 1;
          yield chunk;
        }
      })(),
    );
    const stdout = new PassThrough();
    const done = provider.runInContainer(
      'ns',
      'web',
      'main',
      ['cat'],
      { stdin, stdout, tty: false },
      signal,
    );
    // Nobody reads stdout yet: cat must stop reading stdin instead of buffering all of it.
    await delay(50);
    assert.ok(produced < 10, `cat read ${String(produced)} chunks while stdout was full`);
    const got = createHash('sha256');
    let bytes = 0;
    stdout.on('data', (chunk: Buffer) => {
      got.update(chunk);
      bytes += chunk.length;
    });
    assert.equal(await done, 0);
    assert.equal(bytes, 161 * 65_536);
    assert.equal(got.digest('hex'), expected.digest('hex'));
    await provider.close();
  });

  test('head -c reads N bytes; cat without stdin ends at once', async () => {
    const provider = await running();
    assert.deepEqual(await exec(provider, ['head', '-c', '5'], { stdin: 'hello world' }), {
      code: 0,
      stdout: 'hello',
      stderr: '',
    });
    assert.equal((await exec(provider, ['head', '-c3'], { stdin: 'ab' })).stdout, 'ab');
    assert.equal((await exec(provider, ['head'])).code, 1);
    assert.equal((await exec(provider, ['cat'])).code, 0);
    assert.equal((await exec(provider, ['cat', '/etc/passwd'])).code, 1);
    await provider.close();
  });

  test('stty size and tty-size print the latest terminal size, waiting for a first one', async () => {
    const provider = await running();
    const sizes = channel<{ width: number; height: number }>();
    const stdout = new PassThrough();
    const out = collect(stdout);
    const streams: AttachStreams = { stdout, tty: true, resize: sizes.iterable };
    const first = provider.runInContainer('ns', 'web', 'main', ['stty', 'size'], streams, signal);
    setTimeout(() => {
      sizes.push({ width: 80, height: 24 });
    }, 30);
    assert.equal(await first, 0);
    assert.equal(out.text(), '24 80\r\n');

    const later = channel<{ width: number; height: number }>();
    later.push({ width: 100, height: 30 });
    later.push({ width: 120, height: 40 });
    const stdout2 = new PassThrough();
    const out2 = collect(stdout2);
    const script = ['sh', '-c', 'sleep 0.05; tty-size'];
    const code = await provider.runInContainer(
      'ns',
      'web',
      'main',
      script,
      { stdout: stdout2, tty: true, resize: later.iterable },
      signal,
    );
    assert.equal(code, 0);
    assert.equal(out2.text(), '40 120\r\n');

    const noTty = await exec(provider, ['stty', 'size']);
    assert.equal(noTty.code, 1);
    assert.match(noTty.stderr, /Not a tty/);
    await provider.close();
  });

  test('sleep waits; an abort rejects with its reason; a stopped container exits 137', async () => {
    const provider = await running();
    const started = performance.now();
    assert.equal((await exec(provider, ['sleep', '0.05'])).code, 0);
    assert.ok(performance.now() - started >= 45);
    assert.equal((await exec(provider, ['sleep', 'soon'])).code, 1);

    const controller = new AbortController();
    const aborted = provider.runInContainer(
      'ns',
      'web',
      'main',
      ['sleep', '60'],
      { tty: false },
      controller.signal,
    );
    setTimeout(() => {
      controller.abort(new Error('client gone'));
    }, 20);
    await assert.rejects(aborted, /client gone/);

    const killed = provider.runInContainer(
      'ns',
      'web',
      'main',
      ['sleep', '60'],
      { tty: false },
      signal,
    );
    const yes = new PassThrough();
    let lines = 0;
    yes.on('data', (chunk: Buffer) => (lines += chunk.toString().split('\n').length - 1));
    const endless = provider.runInContainer(
      'ns',
      'web',
      'main',
      ['yes'],
      { stdout: yes, tty: false },
      signal,
    );
    await waitFor(() => lines > 100_000, fast);
    await provider.deletePod(pod('web'), signal);
    assert.equal(await killed, 137);
    assert.equal(await endless, 137);
    await provider.close();
  });

  test('unknown pod or container, a stopped container, an empty command, a closed provider', async () => {
    const { provider } = mock({
      config: { logIntervalMs: 0, containers: { short: { exitAfterSeconds: 0.02 } } },
    });
    await provider.createPod(
      pod('p', { restartPolicy: 'Never', containers: [{ name: 'short' }, { name: 'main' }] }),
      signal,
    );
    const run = (podName: string, container: string, command = ['true']): Promise<number> =>
      provider.runInContainer('ns', podName, container, command, { tty: false }, signal);
    await assert.rejects(run('nobody', 'main'), {
      code: 'NotFound',
      message: 'pod "nobody" does not exist',
    });
    await assert.rejects(run('p', 'other'), {
      code: 'NotFound',
      message: 'container "other" not found in pod "p"',
    });
    await assert.rejects(run('p', 'main', []), { code: 'InvalidInput' });
    await waitFor(
      async () =>
        (await provider.getPodStatus('ns', 'p', signal))?.containerStatuses?.[0]?.state?.terminated,
      fast,
    );
    await assert.rejects(run('p', 'short'), {
      code: 'InvalidInput',
      message: 'container "short" in pod "p" is not running',
    });
    await provider.close();
    await assert.rejects(run('p', 'main'), { code: 'Unavailable' });
  });
});

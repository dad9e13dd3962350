import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VirtualKubeletError } from '../../../../src/errors.js';
import type { ContainerLogOptions } from '../../../../src/provider.js';
import { hasContainerLogs } from '../../../../src/provider.js';
import {
  LOG_FILL_LINE_BYTES,
  MAX_LOG_FILL_BYTES,
  parseMockConfig,
} from '../../../../src/providers/mock/index.js';
import { ContainerLog, readLog } from '../../../../src/providers/mock/logs.js';
import { waitFor } from '../../../helpers/wait.js';
import { collect, mock, pod, signal, text } from './helpers.js';
import { formatRfc3339NanoFixed } from '../../../../src/kubelet/time.js';

const PLAIN: ContainerLogOptions = { follow: false, previous: false, timestamps: false };
const fast = { intervalMs: 10, timeoutMs: 5000 };

/** A clock the test moves by hand. */
function manualClock(start: string): { clock: () => Date; set(iso: string): void } {
  let now = new Date(start);
  return {
    clock: () => now,
    set(iso) {
      now = new Date(iso);
    },
  };
}

describe('logIntervalMs', () => {
  test('is validated like the rest of the configuration', () => {
    assert.deepEqual(parseMockConfig({ logIntervalMs: 0 }), { logIntervalMs: 0 });
    assert.deepEqual(parseMockConfig({ logIntervalMs: 250 }), { logIntervalMs: 250 });
    for (const bad of [-1, '20', 2 ** 31, Number.NaN]) {
      assert.throws(
        () => parseMockConfig({ logIntervalMs: bad }),
        (err: unknown) => {
          assert.ok(err instanceof VirtualKubeletError);
          assert.equal(err.code, 'InvalidInput');
          assert.match(err.message, /^logIntervalMs must be a number of milliseconds/);
          return true;
        },
      );
    }
  });
});

describe('ContainerLog', () => {
  test('keeps the last maxLines lines; a reader behind skips to the oldest kept', async () => {
    const log = new ContainerLog(3);
    const at = new Date(0);
    for (const line of ['a', 'b', 'c', 'd', 'e']) log.append(line, at);
    assert.equal(log.firstLine, 2);
    assert.equal(log.nextLine, 5);
    assert.equal(log.line(1), undefined);
    assert.equal(log.line(2)?.text, 'c');
    assert.equal(await text(readLog(log, PLAIN, at, signal)), 'c\nd\ne\n');
    log.end();
    log.append('f', at);
    assert.equal(log.nextLine, 5, 'nothing is appended after the end');
  });

  test('keeps 10 000 lines by default', async () => {
    const log = new ContainerLog();
    for (let i = 0; i < 10_050; i++) log.append(String(i), new Date(0));
    const lines = (await text(readLog(log, PLAIN, new Date(0), signal))).split('\n');
    assert.equal(lines.length, 10_001);
    assert.equal(lines[0], '50');
  });
});

describe('MockProvider logs', () => {
  test('a container writes a start line, then a tick every logIntervalMs', async () => {
    const { provider } = mock({ config: { logIntervalMs: 20 } });
    assert.equal(hasContainerLogs(provider), true);
    await provider.createPod(pod('web'), signal);
    const log = await waitFor(async () => {
      const got = await text(await provider.getContainerLogs('ns', 'web', 'main', PLAIN, signal));
      return got.includes('tick 2\n') && got;
    }, fast);
    const lines = log.split('\n');
    assert.equal(lines[0], 'mock: container main of ns/web started');
    assert.equal(lines[1], 'mock: main tick 1');
    assert.equal(lines[2], 'mock: main tick 2');
    await provider.close();
  });

  test('logIntervalMs 0 writes only the start line; init containers have logs too', async () => {
    const { provider } = mock({ config: { logIntervalMs: 0 } });
    await provider.createPod(pod('quiet', { initContainers: [{ name: 'setup' }] }), signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const read = async (c: string): Promise<string> =>
      text(await provider.getContainerLogs('ns', 'quiet', c, PLAIN, signal));
    assert.equal(await read('main'), 'mock: container main of ns/quiet started\n');
    assert.equal(await read('setup'), 'mock: container setup of ns/quiet started\n');
    await provider.close();
  });

  test('logFillBytes: filler lines of LOG_FILL_LINE_BYTES after the start line', async () => {
    const fill = 3 * LOG_FILL_LINE_BYTES + 10;
    const { provider } = mock({ config: { logIntervalMs: 0, logFillBytes: fill } });
    await provider.createPod(pod('big'), signal);
    const got = await text(await provider.getContainerLogs('ns', 'big', 'main', PLAIN, signal));
    const start = 'mock: container main of ns/big started\n';
    assert.ok(got.startsWith(start));
    assert.equal(Buffer.byteLength(got), start.length + fill);
    const lines = got.slice(start.length).split('\n');
    assert.deepEqual(
      lines.map((l) => l.length),
      [LOG_FILL_LINE_BYTES - 1, LOG_FILL_LINE_BYTES - 1, LOG_FILL_LINE_BYTES - 1, 9, 0],
    );
    await provider.close();
  });

  test('logFillBytes is validated: an integer the log keeps whole', () => {
    assert.deepEqual(parseMockConfig({ logFillBytes: 0 }), { logFillBytes: 0 });
    assert.deepEqual(parseMockConfig({ logFillBytes: MAX_LOG_FILL_BYTES }), {
      logFillBytes: MAX_LOG_FILL_BYTES,
    });
    assert.ok(MAX_LOG_FILL_BYTES >= 100 * 1024 * 1024, 'room for a 100 MiB log');
    for (const bad of [-1, 1.5, '10', MAX_LOG_FILL_BYTES + 1]) {
      assert.throws(
        () => parseMockConfig({ logFillBytes: bad }),
        /^.*logFillBytes must be an integer/,
      );
    }
  });

  test('timestamps: RFC 3339 with nine fractional digits and one space', async () => {
    const { provider } = mock({
      config: { logIntervalMs: 0 },
      clock: () => new Date('2026-11-23T10:00:00.123Z'),
    });
    await provider.createPod(pod('ts'), signal);
    provider.writeLog('ns', 'ts', 'main', 'hello\nworld\n');
    const got = await text(
      await provider.getContainerLogs('ns', 'ts', 'main', { ...PLAIN, timestamps: true }, signal),
    );
    assert.equal(
      got,
      '2026-11-23T10:00:00.123000000Z mock: container main of ns/ts started\n' +
        '2026-11-23T10:00:00.123000000Z hello\n' +
        '2026-11-23T10:00:00.123000000Z world\n',
    );
    for (const line of got.trimEnd().split('\n')) {
      assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \S/);
    }
    assert.equal(
      formatRfc3339NanoFixed(new Date('2030-01-02T03:04:05Z')),
      '2030-01-02T03:04:05.000000000Z',
    );
    await provider.close();
  });

  test('tailLines and limitBytes (which counts the prefix and cuts the last line)', async () => {
    const { provider } = mock({
      config: { logIntervalMs: 0 },
      clock: () => new Date('2026-01-01T00:00:00Z'),
    });
    await provider.createPod(pod('t'), signal);
    provider.writeLog('ns', 't', 'main', 'a\nb\nc\nd');
    const read = async (options: Partial<ContainerLogOptions>): Promise<string> =>
      text(await provider.getContainerLogs('ns', 't', 'main', { ...PLAIN, ...options }, signal));
    assert.equal(await read({ tailLines: 2 }), 'c\nd\n');
    assert.equal(await read({ tailLines: 0 }), '');
    assert.equal(
      await read({ tailLines: 100 }),
      `mock: container main of ns/t started\na\nb\nc\nd\n`,
    );
    assert.equal(await read({ tailLines: 3, limitBytes: 5 }), 'b\nc\nd');
    assert.equal(await read({ tailLines: 2, limitBytes: 3 }), 'c\nd');
    const prefix = '2026-01-01T00:00:00.000000000Z ';
    assert.equal(
      await read({ tailLines: 2, timestamps: true, limitBytes: prefix.length + 2 + 10 }),
      `${prefix}c\n${prefix.slice(0, 10)}`,
    );
    await assert.rejects(read({ tailLines: -1 }), { code: 'InvalidInput' });
    await assert.rejects(read({ limitBytes: 0 }), { code: 'InvalidInput' });
    await provider.close();
  });

  test('sinceSeconds and sinceTime; the later instant wins', async () => {
    const time = manualClock('2026-01-01T00:00:00Z');
    const { provider } = mock({ config: { logIntervalMs: 0 }, clock: time.clock });
    await provider.createPod(pod('s'), signal);
    time.set('2026-01-01T00:00:10Z');
    provider.writeLog('ns', 's', 'main', 'ten');
    time.set('2026-01-01T00:00:20Z');
    provider.writeLog('ns', 's', 'main', 'twenty');
    time.set('2026-01-01T00:00:25Z');
    const read = async (options: Partial<ContainerLogOptions>): Promise<string> =>
      text(await provider.getContainerLogs('ns', 's', 'main', { ...PLAIN, ...options }, signal));
    assert.equal(await read({ sinceSeconds: 10 }), 'twenty\n');
    assert.equal(await read({ sinceSeconds: 15 }), 'ten\ntwenty\n', 'a line at the instant counts');
    assert.equal(await read({ sinceTime: new Date('2026-01-01T00:00:05Z') }), 'ten\ntwenty\n');
    assert.equal(
      await read({ sinceTime: new Date('2026-01-01T00:00:05Z'), sinceSeconds: 10 }),
      'twenty\n',
    );
    assert.equal(
      await read({ sinceTime: new Date('2026-01-01T00:00:12Z'), sinceSeconds: 30 }),
      'twenty\n',
    );
    assert.equal(await read({ sinceSeconds: 15, tailLines: 1 }), 'twenty\n');
    await provider.close();
  });

  test('follow streams old and new lines and ends when the pod is deleted', async () => {
    const { provider } = mock({ config: { logIntervalMs: 20 } });
    await provider.createPod(pod('f'), signal);
    const stream = await provider.getContainerLogs(
      'ns',
      'f',
      'main',
      { ...PLAIN, follow: true },
      signal,
    );
    const got = collect(stream);
    await waitFor(() => got.text().includes('mock: main tick 3\n'), fast);
    provider.writeLog('ns', 'f', 'main', 'by hand');
    await waitFor(() => got.text().includes('by hand\n'), fast);
    await provider.deletePod(pod('f'), signal);
    await waitFor(() => got.done, fast);
    assert.ok(got.text().startsWith('mock: container main of ns/f started\nmock: main tick 1\n'));
    await provider.close();
  });

  test('follow ends when the container exits, on abort, on close, and honours limitBytes', async () => {
    const { provider } = mock({
      config: { logIntervalMs: 10, containers: { short: { exitAfterSeconds: 0.1 } } },
    });
    await provider.createPod(
      pod('e', { restartPolicy: 'Never', containers: [{ name: 'short' }, { name: 'main' }] }),
      signal,
    );
    const follow = { ...PLAIN, follow: true };
    const exits = collect(await provider.getContainerLogs('ns', 'e', 'short', follow, signal));
    await waitFor(() => exits.done, fast);
    assert.match(exits.text(), /^mock: container short of ns\/e started\n/);

    const controller = new AbortController();
    const aborted = collect(
      await provider.getContainerLogs('ns', 'e', 'main', follow, controller.signal),
    );
    await waitFor(() => aborted.text().includes('tick 1'), fast);
    controller.abort();
    await waitFor(() => aborted.done, fast);

    const limited = collect(
      await provider.getContainerLogs('ns', 'e', 'main', { ...follow, limitBytes: 60 }, signal),
    );
    await waitFor(() => limited.done, fast);
    assert.equal(limited.text().length, 60);

    const closing = collect(await provider.getContainerLogs('ns', 'e', 'main', follow, signal));
    await waitFor(() => closing.text().length > 0, fast);
    await provider.close();
    await waitFor(() => closing.done, fast);
    // After close, logs stay readable.
    assert.match(
      await text(await provider.getContainerLogs('ns', 'e', 'main', follow, signal)),
      /^mock: container main of ns\/e started\n/,
    );
  });

  test('previous reads the run before the last restart', async () => {
    const time = manualClock('2026-01-01T00:00:00Z');
    const { provider } = mock({
      config: { logIntervalMs: 0, containers: { main: { exitAfterSeconds: 0.3 } } },
      clock: time.clock,
    });
    await provider.createPod(pod('p', { restartPolicy: 'Always' }), signal);
    const options = { ...PLAIN, previous: true };
    await assert.rejects(provider.getContainerLogs('ns', 'p', 'main', options, signal), {
      code: 'InvalidInput',
      message: 'previous terminated container "main" in pod "p" not found',
    });
    provider.writeLog('ns', 'p', 'main', 'first run');
    time.set('2026-01-01T00:01:00Z');
    await waitFor(
      async () =>
        (await provider.getPodStatus('ns', 'p', signal))?.containerStatuses?.[0]?.restartCount ===
        1,
      fast,
    );
    provider.writeLog('ns', 'p', 'main', 'second run');
    assert.equal(
      await text(await provider.getContainerLogs('ns', 'p', 'main', options, signal)),
      'mock: container main of ns/p started\nfirst run\n',
    );
    assert.equal(
      await text(
        await provider.getContainerLogs('ns', 'p', 'main', { ...PLAIN, timestamps: true }, signal),
      ),
      '2026-01-01T00:01:00.000000000Z mock: container main of ns/p started\n' +
        '2026-01-01T00:01:00.000000000Z second run\n',
    );
    // Follow on the previous run ends at once: it has stopped.
    assert.equal(
      await text(
        await provider.getContainerLogs('ns', 'p', 'main', { ...options, follow: true }, signal),
      ),
      'mock: container main of ns/p started\nfirst run\n',
    );
    await provider.close();
  });

  test('an unknown pod or container is NotFound', async () => {
    const { provider } = mock();
    await provider.createPod(pod('x'), signal);
    await assert.rejects(provider.getContainerLogs('ns', 'nobody', 'main', PLAIN, signal), {
      code: 'NotFound',
      message: 'pod "nobody" does not exist',
    });
    await assert.rejects(provider.getContainerLogs('ns', 'x', 'sidecar', PLAIN, signal), {
      code: 'NotFound',
      message: 'container "sidecar" not found in pod "x"',
    });
    assert.throws(() => provider.writeLog('other', 'x', 'main', 'a'), { code: 'NotFound' });
    await provider.deletePod(pod('x'), signal);
    await assert.rejects(provider.getContainerLogs('ns', 'x', 'main', PLAIN, signal), {
      code: 'NotFound',
    });
    await provider.close();
  });
});

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { errorCode } from '../../../../src/errors.js';
import { silentLogger } from '../../../../src/log.js';
import {
  parseExternalConfig,
  ProviderProcess,
  startExternalProvider,
} from '../../../../src/providers/external/index.js';
import { waitFor } from '../../../helpers/wait.js';

describe('external provider config', () => {
  test('accepts a socket, a command, TCP with TLS, env and timeouts', () => {
    assert.deepEqual(parseExternalConfig({ address: 'unix:///run/p.sock' }), {
      address: 'unix:///run/p.sock',
    });
    assert.deepEqual(parseExternalConfig({ command: ['/bin/p', '-v'], env: { A: 'b' } }), {
      command: ['/bin/p', '-v'],
      env: { A: 'b' },
    });
    const tls = { ca: '/ca.pem', cert: '/c.pem', key: '/k.pem' };
    assert.deepEqual(
      parseExternalConfig({
        address: '127.0.0.1:9000',
        tls,
        callTimeoutMs: 5,
        connectTimeoutMs: 9,
      }),
      { address: '127.0.0.1:9000', tls, callTimeoutMs: 5, connectTimeoutMs: 9 },
    );
  });

  test('refuses bad input with one line', () => {
    for (const [bad, message] of [
      [{}, /address, command, or both/],
      [{ address: 'unix://relative.sock' }, /unix:\/\/\/absolute/],
      [{ address: 'nowhere' }, /neither unix/],
      [{ address: '127.0.0.1:9000' }, /tls .*required/],
      [{ command: [] }, /command must be/],
      [{ command: ['p'], bogus: 1 }, /unknown field "bogus"/],
      [{ address: 'h:1', tls: { ca: 'x' } }, /tls needs ca, cert and key/],
      [{ env: { A: 'b' }, address: 'unix:///x' }, /env is for command/],
      [{ command: ['p'], callTimeoutMs: -1 }, /callTimeoutMs must be a positive integer/],
    ] as const) {
      assert.throws(
        () => parseExternalConfig(bad),
        (err: unknown) => {
          assert.equal(errorCode(err), 'InvalidInput');
          assert.match((err as Error).message, message);
          assert.doesNotMatch((err as Error).message, /\n/);
          return true;
        },
      );
    }
  });
});

describe('the provider process', () => {
  test('restarts a process that dies, with back-off, and stops it (SIGTERM, then SIGKILL)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vk-provider-process-'));
    try {
      const pids = join(dir, 'pids');
      // Each run records its pid and ignores SIGTERM; the first two runs die at once.
      const script = `trap '' TERM; echo $$ >> ${pids}; n=$(wc -l < ${pids}); if [ "$n" -le 2 ]; then exit 3; fi; while :; do sleep 0.1; done`;
      const child = new ProviderProcess({
        command: ['sh', '-c', script],
        env: { VK_PROVIDER_ADDRESS: 'unix:///nowhere' },
        logger: silentLogger,
        restartInitialMs: 50,
        stopGraceMs: 300,
      });
      const controller = new AbortController();
      const running = child.run(controller.signal);
      const started = (): number =>
        existsSync(pids) ? readFileSync(pids, 'utf8').trim().split('\n').length : 0;
      // The third run has written its pid, so its trap is set.
      await waitFor(() => child.restarts === 2 && child.pid !== undefined && started() === 3, {
        what: 'two restarts and a running third process',
      });
      const last = child.pid ?? 0;
      controller.abort();
      await running;
      assert.equal(started(), 3);
      assert.throws(() => process.kill(last, 0), 'the process that ignored SIGTERM was killed');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a provider that never answers the handshake: one clear error, no process or socket left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vk-provider-silent-'));
    try {
      const marker = join(dir, 'pid');
      await assert.rejects(
        startExternalProvider({
          nodeName: 'n',
          config: {
            command: ['sh', '-c', `echo $$ > ${marker}; exec sleep 60`],
            connectTimeoutMs: 1500,
          },
        }),
        (err: unknown) => {
          assert.equal(errorCode(err), 'Unavailable');
          assert.match((err as Error).message, /did not answer the handshake/);
          return true;
        },
      );
      const pid = Number(readFileSync(marker, 'utf8'));
      assert.throws(() => process.kill(pid, 0), 'the provider process was stopped');
      assert.equal(existsSync(marker), true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

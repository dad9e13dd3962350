import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isVirtualKubeletError } from '../../../../src/errors.js';
import { exitCodeOf, streamFlags } from '../../../../src/providers/cri/streaming.js';

test('the error channel: Success is 0, NonZeroExitCode gives its ExitCode cause', () => {
  assert.equal(exitCodeOf('{"metadata":{},"status":"Success"}'), 0);
  assert.equal(
    exitCodeOf(
      JSON.stringify({
        status: 'Failure',
        message: 'command terminated with non-zero exit code',
        reason: 'NonZeroExitCode',
        details: { causes: [{ reason: 'ExitCode', message: '42' }] },
      }),
    ),
    42,
  );
});

test('the error channel: another failure is an InvalidInput error with the message', () => {
  assert.throws(
    () => exitCodeOf(JSON.stringify({ status: 'Failure', message: 'exec failed: no such file' })),
    (err: unknown) =>
      isVirtualKubeletError(err) && err.code === 'InvalidInput' && /no such file/.test(err.message),
  );
  assert.throws(() => exitCodeOf('not json'), /not json/);
});

test('a terminal merges stderr into stdout', () => {
  const out = process.stdout;
  assert.deepEqual(streamFlags({ stdout: out, stderr: out, tty: true }), {
    stdin: false,
    stdout: true,
    stderr: false,
    tty: true,
  });
  assert.deepEqual(streamFlags({ stdin: process.stdin, stderr: out, tty: false }), {
    stdin: true,
    stdout: false,
    stderr: true,
    tty: false,
  });
});

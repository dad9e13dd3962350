import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acquireLock } from '../../../src/devcluster/lock.js';
import { isAlive } from '../../../src/devcluster/process.js';
import { waitFor } from '../../helpers/wait.js';

const processModule = new URL('../../../src/devcluster/process.ts', import.meta.url).href;

/** Starts a node process that spawns an owned `sleep` and prints its pid. */
function ownerOf(
  exitHow: 'hang' | 'exit',
): Promise<{ owner: ReturnType<typeof spawn>; child: number }> {
  const script = `
    import { spawnOwned } from ${JSON.stringify(processModule)};
    const c = spawnOwned('sleep', { args: ['300'], logPath: '/dev/null' });
    console.log(c.pid);
    ${exitHow === 'exit' ? 'setTimeout(() => process.exit(0), 200);' : 'setInterval(() => {}, 1000);'}
  `;
  const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    owner.stdout.setEncoding('utf8').once('data', (d: string) => {
      resolve({ owner, child: Number.parseInt(d, 10) });
    });
    owner.once('error', reject);
  });
}

test('an owned process dies when its owner is SIGKILLed', async () => {
  const { owner, child } = await ownerOf('hang');
  assert.ok(isAlive(child));
  owner.kill('SIGKILL');
  await waitFor(() => !isAlive(child), { what: 'the owned process to die', timeoutMs: 5000 });
});

test('an owned process dies when its owner exits without stopping it', async () => {
  const { child } = await ownerOf('exit');
  await waitFor(() => !isAlive(child), { what: 'the owned process to die', timeoutMs: 5000 });
});

test('acquireLock waits for a live holder and takes over a dead one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-unit-lock-'));
  try {
    const path = join(dir, 'lock');
    const release = await acquireLock(path);
    let second = false;
    let waited = false;
    const pending = acquireLock(path, undefined, () => (waited = true)).then((r) => {
      second = true;
      return r;
    });
    await waitFor(() => waited, { what: 'the second locker to wait' });
    assert.equal(second, false);
    await release();
    const release2 = await pending;
    assert.equal(second, true);
    await release2();

    const { writeFile } = await import('node:fs/promises');
    await writeFile(path, '2147483646'); // no such process
    const release3 = await acquireLock(path);
    await release3();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

import { open, readFile, rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { isAlive } from './process.js';

/**
 * Takes an exclusive lock file holding this process's pid, waiting while a live process holds it.
 * A lock left by a dead process is taken over. Resolves to the release function.
 */
export async function acquireLock(
  path: string,
  signal?: AbortSignal,
  onWait?: () => void,
): Promise<() => Promise<void>> {
  let warned = false;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (!Number.isInteger(holder) || !isAlive(holder)) {
      await rm(path, { force: true });
      continue;
    }
    if (!warned) onWait?.();
    warned = true;
    await delay(1000, undefined, { signal });
  }
}

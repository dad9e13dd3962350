import { open, readFile, rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { isAlive } from './process.js';

/**
 * Takes the lock file (holding this process's pid) if it is free or was left by a dead process;
 * otherwise resolves to the pid of the live process that holds it (this one included).
 */
export async function tryLock(
  path: string,
): Promise<{ readonly release: () => Promise<void> } | { readonly holder: number }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return { release: () => rm(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (attempt >= 4) throw new Error(`cannot take the lock ${path}`);
    const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(holder) && isAlive(holder)) return { holder };
    // An empty lock may be one being written this instant: looked at again before it counts as
    // stale.
    if (!Number.isInteger(holder) && attempt === 0) {
      await delay(200);
      continue;
    }
    await rm(path, { force: true });
  }
}

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
    const lock = await tryLock(path);
    if ('release' in lock) return lock.release;
    if (!warned) onWait?.();
    warned = true;
    await delay(1000, undefined, { signal });
  }
}

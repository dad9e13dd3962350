// Loaded into every test process (`--import`). When the process that started it disappears (a
// test run killed with SIGKILL), it runs the registered cleanups, then exits; the exit hook of
// src/devcluster/process.ts then kills any process the test owned.
const cleanups = new Set<() => void>();
const parent = process.ppid;

setInterval(() => {
  if (process.ppid === parent) return;
  for (const fn of cleanups) {
    try {
      fn();
    } catch {
      // Best effort: the next cleanup still runs.
    }
  }
  process.exit(1);
}, 250).unref();

/** Registers a synchronous cleanup to run if this test process is orphaned. */
export function onOrphaned(fn: () => void): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

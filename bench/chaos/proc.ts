// What the chaos scenarios read of the agent's process from procfs (Linux).
import { readdirSync } from 'node:fs';
import { cpuSeconds, rssBytes } from '../proc.js';

export { cpuSeconds, rssBytes };

/** Open file descriptors of `pid`, or undefined when it is gone. */
export function openFds(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${String(pid)}/fd`).length;
  } catch {
    return undefined;
  }
}

/** Measures `pid`'s CPU over a span: call `stop()` at its end for % of one core. */
export function cpuMeter(pid: number): { stop(): number | undefined } {
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  return {
    stop: () => {
      const cpu1 = cpuSeconds(pid);
      const seconds = (performance.now() - t0) / 1000;
      if (cpu0 === undefined || cpu1 === undefined || seconds <= 0) return undefined;
      return ((cpu1 - cpu0) / seconds) * 100;
    },
  };
}

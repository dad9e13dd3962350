/**
 * What /proc says about processes: start times (to tell a pid from a reused one), children,
 * CPU time and memory. Every function answers "unknown" (undefined, empty) for a process that
 * is gone instead of throwing, since processes vanish between any two reads.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux we run on. */
export const CLOCK_TICKS = 100;

/** A process identity that survives pid reuse: its pid and its start time in clock ticks. */
export interface ProcessRef {
  readonly pid: number;
  readonly start: number;
}

interface Stat {
  readonly ppid: number;
  readonly pgrp: number;
  readonly state: string;
  readonly utime: number;
  readonly stime: number;
  readonly start: number;
  readonly rssPages: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number): number => Number(f[i - 3]);
  return {
    state: f[0] ?? '?',
    ppid: n(4),
    pgrp: n(5),
    utime: n(14),
    stime: n(15),
    start: n(22),
    rssPages: n(24),
  };
}

/** The process's identity, or undefined when it is gone (or a zombie). */
export function processRef(pid: number): ProcessRef | undefined {
  const s = readStat(pid);
  return s && s.state !== 'Z' ? { pid, start: s.start } : undefined;
}

/** Whether the process is the one `ref` names and has not exited. */
export function isAlive(ref: ProcessRef): boolean {
  const s = readStat(ref.pid);
  return s !== undefined && s.start === ref.start && s.state !== 'Z';
}

/** The process group of a live process. */
export function processGroup(pid: number): number | undefined {
  return readStat(pid)?.pgrp;
}

/** The direct children of `pid`. */
export function childrenOf(pid: number): number[] {
  try {
    const tasks = readdirSync(`/proc/${String(pid)}/task`);
    const out: number[] = [];
    for (const tid of tasks) {
      const text = readFileSync(`/proc/${String(pid)}/task/${tid}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(' ').map(Number));
    }
    return out;
  } catch {
    // No children file (CONFIG_PROC_CHILDREN off): scan every process's parent.
    return allPids().filter((p) => readStat(p)?.ppid === pid);
  }
}

/** `pid` and every process below it. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() ?? 0;
    if (readStat(p) === undefined) continue;
    out.push(p);
    queue.push(...childrenOf(p));
  }
  return out;
}

function allPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU time (user + system) of the processes, in nanoseconds, and their resident memory. */
export function processUsage(pids: readonly number[]): { cpuNs: number; rssBytes: number } {
  let ticks = 0;
  let pages = 0;
  for (const pid of pids) {
    const s = readStat(pid);
    if (!s) continue;
    ticks += s.utime + s.stime;
    pages += s.rssPages;
  }
  return { cpuNs: (ticks * 1e9) / CLOCK_TICKS, rssBytes: pages * 4096 };
}

/** The terminal a process's stdin is, such as `/dev/pts/3`, if it is one. */
export function terminalOf(pid: number): string | undefined {
  try {
    const target = readlinkSync(`/proc/${String(pid)}/fd/0`);
    return target.startsWith('/dev/pts/') ? target : undefined;
  } catch {
    return undefined;
  }
}

/** Machine uptime start as a Date, to turn clock-tick start times into instants. */
export function bootTime(): Date {
  const stat = readFileSync('/proc/stat', 'utf8');
  const m = /^btime (\d+)$/m.exec(stat);
  return new Date(Number(m?.[1] ?? 0) * 1000);
}

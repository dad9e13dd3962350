/**
 * What a program leaves on the host after it exits: processes, mounts, named network namespaces.
 * Taken while it runs (`processTree`, `namedNetnsOf`), checked after (`stillRunning`, ...).
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One process: its parent, and its start time, which tells it from a later one with its pid. */
export interface ProcessEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly startTime: string;
  /** The command line, arguments joined by spaces. */
  readonly cmdline: string;
}

/** Every live process of /proc (zombies are not: they have exited). */
export function processTable(): ProcessEntry[] {
  const out: ProcessEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The fields after the command name (which may hold spaces): state, ppid, ..., starttime.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      out.push({
        pid: Number(name),
        ppid: Number(fields[1]),
        startTime: fields[19] ?? '',
        cmdline,
      });
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/**
 * The processes below `rootPid`, with it, and below every process whose command line names
 * `dir`, with them: a container runtime's shims leave their parent but carry its socket's path,
 * and the containers run below them.
 */
export function processTree(rootPid: number, dir: string): ProcessEntry[] {
  const table = processTable();
  const children = new Map<number, ProcessEntry[]>();
  for (const p of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const found = new Map<number, ProcessEntry>();
  const visit = (p: ProcessEntry): void => {
    if (found.has(p.pid)) return;
    found.set(p.pid, p);
    for (const c of children.get(p.pid) ?? []) visit(c);
  };
  for (const p of table) if (p.pid === rootPid || p.cmdline.includes(dir)) visit(p);
  return [...found.values()];
}

/** Those of `procs` that still run (the same pid and start time). */
export function stillRunning(procs: readonly ProcessEntry[]): ProcessEntry[] {
  const now = new Map(processTable().map((p) => [p.pid, p]));
  return procs.filter((p) => now.get(p.pid)?.startTime === p.startTime);
}

/** The lines of /proc/self/mountinfo whose mount point is `dir` or below it. */
export async function mountsBelow(dir: string): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));
}

/** Where named network namespaces are bound (`ip netns`, CNI runtimes such as containerd). */
export const NETNS_DIR = '/var/run/netns';

function netnsInode(pid: number | 'self'): number | undefined {
  try {
    const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${String(pid)}/ns/net`));
    return m?.[1] ? Number(m[1]) : undefined;
  } catch {
    return undefined; // exited meanwhile
  }
}

/** The named network namespaces (in {@link NETNS_DIR}) that any of `procs` is in, the host's aside. */
export function namedNetnsOf(procs: readonly ProcessEntry[]): string[] {
  const inodes = new Set(procs.map((p) => netnsInode(p.pid)));
  inodes.delete(netnsInode('self'));
  inodes.delete(undefined);
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).filter((name) => {
    try {
      return inodes.has(statSync(join(NETNS_DIR, name)).ino);
    } catch {
      return false;
    }
  });
}

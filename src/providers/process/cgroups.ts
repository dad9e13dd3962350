/**
 * Resource limits and usage through cgroups, v1 (one hierarchy per controller) or v2 (one
 * unified tree), whichever the machine mounts writable at /sys/fs/cgroup. Every pod gets a
 * cgroup `<parent>/pod<uid>` and every container one below it; a container's process joins its
 * cgroup itself (by writing 0 to `cgroup.procs`) before it execs the command, so nothing it
 * starts escapes.
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../errors.js';

const ROOT = '/sys/fs/cgroup';
const CFS_PERIOD_US = 100_000;

export interface Limits {
  /** `resources.limits.memory`, in bytes. */
  readonly memoryBytes?: number;
  /** `resources.limits.cpu`, in cores. */
  readonly cpuCores?: number;
}

export interface CgroupUsage {
  readonly cpuNs: number;
  readonly usageBytes: number;
  /** Usage less inactive page cache: what the kubelet calls the working set. */
  readonly workingSetBytes: number;
  readonly rssBytes: number;
  readonly processes: number;
}

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

const num = (text: string | undefined): number => {
  const n = Number((text ?? '').trim());
  return Number.isFinite(n) ? n : 0;
};

/** `key value` lines (memory.stat, memory.events, cpu.stat) as a map. */
const keyed = (text: string | undefined): Map<string, number> =>
  new Map(
    (text ?? '')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((p) => p.length === 2)
      .map(([k, v]) => [k ?? '', Number(v)]),
  );

/**
 * The pod and container cgroups of one node. Construct with `Cgroups.detect`, which checks that
 * the tree is writable; every method after that tolerates missing files (a process may leave a
 * cgroup at any time).
 */
export class Cgroups {
  readonly version: 'v1' | 'v2';
  /** Per controller (v1) or the one tree (v2): the parent directory of pod cgroups. */
  readonly #bases: ReadonlyMap<string, string>;

  private constructor(version: 'v1' | 'v2', bases: ReadonlyMap<string, string>) {
    this.version = version;
    this.#bases = bases;
  }

  /**
   * The cgroups of `parent` (a path below each hierarchy), created when missing; or the reason
   * they cannot be used. `root` is where cgroup file systems are mounted (tests change it).
   */
  static detect(parent: string, root = ROOT): Cgroups | string {
    try {
      if (existsSync(join(root, 'cgroup.controllers'))) {
        const controllers = read(join(root, 'cgroup.controllers')) ?? '';
        for (const c of ['memory', 'cpu']) {
          if (!controllers.split(/\s+/).includes(c)) return `cgroup v2 lacks the ${c} controller`;
        }
        const base = join(root, parent);
        mkdirSync(base, { recursive: true });
        // Controllers must be enabled at every level down to the pods' parent.
        let dir = root;
        for (const part of parent.split('/').filter(Boolean)) {
          enableV2(dir);
          dir = join(dir, part);
        }
        enableV2(base);
        return new Cgroups('v2', new Map([['unified', base]]));
      }
      const bases = new Map<string, string>();
      const seen = new Set<string>();
      for (const c of ['memory', 'cpu', 'cpuacct', 'pids']) {
        const mount = join(root, c);
        if (!existsSync(mount)) {
          if (c === 'memory' || c === 'cpuacct') return `no cgroup v1 ${c} hierarchy at ${mount}`;
          continue;
        }
        const real = realpathSync(mount);
        const base = join(mount, parent);
        mkdirSync(base, { recursive: true });
        // cpu and cpuacct are often one hierarchy: one cgroup serves both.
        if (seen.has(real)) bases.set(c, base);
        else {
          seen.add(real);
          bases.set(c, base);
        }
      }
      return new Cgroups('v1', bases);
    } catch (err) {
      return `cgroups are not writable: ${errorMessage(err)}`;
    }
  }

  #dirs(podUid: string, container?: string): string[] {
    const rel = container === undefined ? `pod${podUid}` : join(`pod${podUid}`, container);
    return [...new Set([...this.#bases.values()].map((b) => join(b, rel)))];
  }

  #dir(controller: string, podUid: string, container?: string): string | undefined {
    const base = this.#bases.get(this.version === 'v2' ? 'unified' : controller);
    if (base === undefined) return undefined;
    return container === undefined
      ? join(base, `pod${podUid}`)
      : join(base, `pod${podUid}`, container);
  }

  /**
   * Creates (or keeps) the container's cgroup with `limits`; returns the `cgroup.procs` files
   * the container's process writes 0 to. Throws when a limit cannot be set.
   */
  prepare(podUid: string, container: string, limits: Limits): string[] {
    for (const dir of this.#dirs(podUid)) mkdirSync(dir, { recursive: true });
    if (this.version === 'v2') for (const dir of this.#dirs(podUid)) enableV2(dir);
    const dirs = this.#dirs(podUid, container);
    for (const dir of dirs) mkdirSync(dir, { recursive: true });
    const mem = this.#dir('memory', podUid, container);
    const cpu = this.#dir('cpu', podUid, container);
    if (this.version === 'v1') {
      if (mem) {
        writeFileSync(
          join(mem, 'memory.limit_in_bytes'),
          limits.memoryBytes === undefined ? '-1' : String(Math.floor(limits.memoryBytes)),
        );
        // No swap for a limited container, so the limit is the limit (as the kubelet sets it).
        if (limits.memoryBytes !== undefined) {
          try {
            writeFileSync(join(mem, 'memory.swappiness'), '0');
          } catch {
            // Not every kernel lets a child cgroup set it.
          }
        }
      }
      if (cpu && existsSync(join(cpu, 'cpu.cfs_quota_us'))) {
        writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
        writeFileSync(
          join(cpu, 'cpu.cfs_quota_us'),
          limits.cpuCores === undefined
            ? '-1'
            : String(Math.max(1000, Math.round(limits.cpuCores * CFS_PERIOD_US))),
        );
      }
    } else if (mem && cpu) {
      writeFileSync(
        join(mem, 'memory.max'),
        limits.memoryBytes === undefined ? 'max' : String(Math.floor(limits.memoryBytes)),
      );
      if (limits.memoryBytes !== undefined) {
        try {
          writeFileSync(join(mem, 'memory.swap.max'), '0');
        } catch {
          // No swap accounting.
        }
      }
      writeFileSync(
        join(cpu, 'cpu.max'),
        limits.cpuCores === undefined
          ? `max ${String(CFS_PERIOD_US)}`
          : `${String(Math.max(1000, Math.round(limits.cpuCores * CFS_PERIOD_US)))} ${String(CFS_PERIOD_US)}`,
      );
    }
    return dirs.map((d) => join(d, 'cgroup.procs'));
  }

  /** How many times the OOM killer has killed in the container's cgroup. */
  oomKills(podUid: string, container: string): number {
    const mem = this.#dir('memory', podUid, container);
    if (mem === undefined) return 0;
    if (this.version === 'v2') return keyed(read(join(mem, 'memory.events'))).get('oom_kill') ?? 0;
    return keyed(read(join(mem, 'memory.oom_control'))).get('oom_kill') ?? 0;
  }

  /** Usage of the pod (without `container`) or of one of its containers. */
  usage(podUid: string, container?: string): CgroupUsage | undefined {
    const mem = this.#dir('memory', podUid, container);
    if (mem === undefined || !existsSync(mem)) return undefined;
    let cpuNs: number;
    let usageBytes: number;
    let inactive: number;
    let rss: number;
    if (this.version === 'v1') {
      const acct = this.#dir('cpuacct', podUid, container);
      cpuNs = acct ? num(read(join(acct, 'cpuacct.usage'))) : 0;
      usageBytes = num(read(join(mem, 'memory.usage_in_bytes')));
      const stat = keyed(read(join(mem, 'memory.stat')));
      inactive = stat.get('total_inactive_file') ?? 0;
      rss = stat.get('total_rss') ?? 0;
    } else {
      cpuNs = (keyed(read(join(mem, 'cpu.stat'))).get('usage_usec') ?? 0) * 1000;
      usageBytes = num(read(join(mem, 'memory.current')));
      const stat = keyed(read(join(mem, 'memory.stat')));
      inactive = stat.get('inactive_file') ?? 0;
      rss = stat.get('anon') ?? 0;
    }
    const pidsDir = this.#dir('pids', podUid, container);
    const processes = pidsDir
      ? num(read(join(pidsDir, 'pids.current')))
      : this.#procs(podUid, container).length;
    return {
      cpuNs,
      usageBytes,
      workingSetBytes: Math.max(0, usageBytes - inactive),
      rssBytes: rss,
      processes,
    };
  }

  /** The processes in the container's (or the pod's) cgroups, as host pids. */
  #procs(podUid: string, container?: string): number[] {
    const out = new Set<number>();
    const walk = (dir: string): void => {
      for (const p of (read(join(dir, 'cgroup.procs')) ?? '').split('\n')) {
        if (p.trim() !== '') out.add(Number(p));
      }
      let entries: string[];
      try {
        entries = readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        return;
      }
      for (const e of entries) walk(join(dir, e));
    };
    for (const dir of this.#dirs(podUid, container)) walk(dir);
    return [...out];
  }

  /** Every process of the container (or the pod). */
  processes(podUid: string, container?: string): number[] {
    return this.#procs(podUid, container);
  }

  /**
   * Removes the pod's cgroups (containers first). Cgroups that still hold processes stay;
   * returns whether everything went.
   */
  remove(podUid: string): boolean {
    let clean = true;
    for (const dir of this.#dirs(podUid)) {
      if (!existsSync(dir)) continue;
      try {
        for (const e of readdirSync(dir, { withFileTypes: true })) {
          if (e.isDirectory()) rmdirSync(join(dir, e.name));
        }
        rmdirSync(dir);
      } catch {
        clean = false;
      }
    }
    return clean;
  }
}

function enableV2(dir: string): void {
  const available = (read(join(dir, 'cgroup.controllers')) ?? '').split(/\s+/);
  const wanted = ['memory', 'cpu', 'pids'].filter((c) => available.includes(c));
  if (wanted.length > 0)
    writeFileSync(join(dir, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' '));
}

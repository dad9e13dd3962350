/**
 * Clean-up for tests of the process provider, whose pods are real processes that outlive the
 * provider on purpose: `reap` kills what a state directory's pods still run and removes their
 * cgroups and the directory.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  bridgeName,
  netnsName,
  nftTableName,
  parseCidr,
  routeConflict,
} from '../../src/providers/process/network.js';
import type { TestContext } from 'node:test';
import { ProcessProvider, type ProcessProviderOptions } from '../../src/providers/process/index.js';
import { isAlive, type ProcessRef } from '../../src/providers/process/proc.js';
import { killNoted, type PodRecord } from '../../src/providers/process/state.js';
import { onOrphaned } from './orphan-watchdog.js';

/** A fresh state directory outside /tmp (pods get a private /tmp there). */
export function processStateDir(): string {
  return join('/var/tmp', `vk-process-test-${randomBytes(4).toString('hex')}`);
}

const sleepMs = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/**
 * SIGKILL to the process `ref` names (and its group with `group`), only while it is that process:
 * a recorded PID that has ended may be another test's process by now (PIDs wrap at 32768 here).
 */
const kill = (ref: ProcessRef | undefined, group = false): void => {
  if (ref === undefined || !isAlive(ref)) return;
  for (const target of group ? [-ref.pid, ref.pid] : [ref.pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // Not a group leader, or gone.
    }
  }
};

/**
 * Kills every process the pods of `dir` still have (a sandbox's init process takes its PID
 * namespace with it; wrappers and process groups go too), removes the cgroups of `nodeName`,
 * the pod network namespaces, the node's bridge and nftables table, and then `dir`.
 * Synchronous, so it can run from an orphan watchdog.
 */
export function reap(dir: string, nodeName: string): void {
  const pods = join(dir, 'pods');
  for (const d of existsSync(pods) ? readdirSync(pods) : []) {
    killNoted(join(pods, d));
    let r: PodRecord;
    try {
      r = JSON.parse(readFileSync(join(pods, d, 'state.json'), 'utf8')) as PodRecord;
    } catch {
      continue;
    }
    kill(r.sandbox);
    for (const c of r.containers) {
      kill(c.run?.main, true);
      kill(c.run?.wrapper);
    }
    // Mount points the pod made on the host, once nothing has them mounted.
    for (const path of [...r.createdTargets].reverse()) {
      try {
        if (statSync(path).isDirectory()) rmdirSync(path);
        else if (statSync(path).size === 0) rmSync(path);
      } catch {
        // Not empty, or gone.
      }
    }
  }
  const netPods = join(dir, 'network', 'pods');
  for (const f of existsSync(netPods) ? readdirSync(netPods) : []) {
    if (f.endsWith('.json'))
      spawnSync('ip', ['netns', 'del', netnsName(f.slice(0, -5))], { stdio: 'ignore' });
  }
  spawnSync('ip', ['link', 'del', bridgeName(nodeName)], { stdio: 'ignore' });
  spawnSync('nft', ['delete', 'table', 'inet', nftTableName(nodeName)], { stdio: 'ignore' });
  for (const controller of ['memory', 'cpu', 'cpuacct', 'pids', 'unified', '']) {
    removeTree(join('/sys/fs/cgroup', controller, 'virtual-kubelet', nodeName));
  }
  rmSync(dir, { recursive: true, force: true });
}

function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) removeTree(join(dir, e.name));
  }
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch {
      // Killed processes are still leaving the cgroup.
      sleepMs(20);
    }
  }
}

/**
 * A random /24 pod CIDR in 10.200.0.0-10.239.255.0 that no route of this machine overlaps, so
 * tests running at once do not collide.
 */
export function randomPodCidr(): string {
  for (let i = 0; i < 100; i++) {
    const text = `10.${String(randomInt(200, 240))}.${String(randomInt(0, 256))}.0/24`;
    if (routeConflict(parseCidr(text, 'test pod CIDR'), '') === undefined) return text;
  }
  throw new Error('no free /24 in 10.200.0.0/13 for a test pod CIDR');
}

/** Providers on one node name and state directory, reaped after the test. */
export interface ProcessFixture {
  /** The first provider, made at once. */
  readonly provider: ProcessProvider;
  /** Another provider on the same node and state directory (an agent restart). */
  readonly make: () => ProcessProvider;
  readonly nodeName: string;
  readonly dir: string;
}

let fixtures = 0;

/**
 * A process provider for a test: node `unit-<tag>-<pid>-<n>`, a fresh state directory, checks
 * every 100 ms unless `config` says otherwise. Every provider made is closed after the test,
 * and what its pods left is reaped (also when the test process is orphaned).
 */
export function processFixture(
  t: TestContext,
  tag: string,
  options: Omit<ProcessProviderOptions, 'nodeName'> = {},
): ProcessFixture {
  const nodeName = `unit-${tag}-${String(process.pid)}-${String(++fixtures)}`;
  const dir = processStateDir();
  const made: ProcessProvider[] = [];
  const make = (): ProcessProvider => {
    const p = new ProcessProvider({
      ...options,
      nodeName,
      config: { stateDir: dir, monitorIntervalMs: 100, ...options.config },
    });
    made.push(p);
    return p;
  };
  const forget = onOrphaned(() => {
    reap(dir, nodeName);
  });
  t.after(async () => {
    forget();
    for (const p of made) await p.close();
    reap(dir, nodeName);
  });
  return { provider: make(), make, nodeName, dir };
}

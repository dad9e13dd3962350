import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Binaries } from './build.js';
import { DevCluster, type Component } from './cluster.js';
import { DevClusterError } from './errors.js';
import { isAlive, isAliveAs } from './process.js';
import {
  cleanUpServices,
  SERVICES_LOCK,
  type ServicesInfo,
  type ServicesOptions,
} from './services.js';

/** What `state.json` in a cluster directory says about the cluster that lives there. */
export interface ClusterState {
  readonly status: 'starting' | 'ready' | 'failed' | 'stopped';
  /** Pid of the process that owns the components. */
  readonly pid: number;
  readonly server?: string;
  readonly kubeconfig?: string;
  readonly components?: Readonly<Partial<Record<Component, number>>>;
  /** Set when the cluster runs kube-proxy and CoreDNS: what `down` removes from the host. */
  readonly services?: ServicesInfo & { readonly kubeProxy: string };
  /** Whether matching kubelet-serving CSRs are approved automatically (set once ready). */
  readonly approvesServingCsrs?: boolean;
  readonly error?: string;
  readonly updatedAt: string;
}

const stateFile = (dir: string): string => join(dir, 'state.json');

export async function readState(dir: string): Promise<ClusterState | undefined> {
  try {
    return JSON.parse(await readFile(stateFile(dir), 'utf8')) as ClusterState;
  } catch {
    return undefined;
  }
}

async function writeState(dir: string, state: Omit<ClusterState, 'updatedAt'>): Promise<void> {
  const tmp = `${stateFile(dir)}.${String(process.pid)}`;
  await writeFile(tmp, JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2));
  await rename(tmp, stateFile(dir));
}

/** The state, if the process it names is still alive and the cluster is up or coming up. */
export async function liveState(dir: string): Promise<ClusterState | undefined> {
  const state = await readState(dir);
  if (!state || !isAliveAs(state.pid, 'dev-cluster')) return undefined;
  return state.status === 'ready' || state.status === 'starting' ? state : undefined;
}

export interface ServeOptions {
  readonly dir: string;
  readonly binaries: Binaries;
  readonly apiserverPort?: number;
  /** Run kube-proxy and CoreDNS too (see `DevClusterOptions.services`). Default: off. */
  readonly services?: ServicesOptions;
  /** See `DevClusterOptions.approveServingCsrs`. Default: true. */
  readonly approveServingCsrs?: boolean;
  readonly log: (line: string) => void;
  /** Ends the cluster. */
  readonly signal: AbortSignal;
}

/**
 * Runs a dev cluster in this process until `signal` aborts or a component dies, keeping
 * `state.json` current. Resolves after every component has stopped.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const { dir, log, signal } = options;
  await mkdir(dir, { recursive: true });
  await writeState(dir, { status: 'starting', pid: process.pid });
  const died = new AbortController();
  let death = '';
  const cluster = new DevCluster({
    dir,
    binaries: options.binaries,
    metricsServer: true,
    ...(options.apiserverPort === undefined ? {} : { apiserverPort: options.apiserverPort }),
    ...(options.services ? { services: options.services } : {}),
    approveServingCsrs: options.approveServingCsrs ?? true,
    log,
    onComponentExit: (component, code, sig) => {
      death = `${component} exited unexpectedly (${sig ?? `code ${String(code)}`}); log: ${cluster.logPath(component)}`;
      died.abort();
    },
  });
  const both = AbortSignal.any([signal, died.signal]);
  try {
    const info = await cluster.start(both);
    await writeState(dir, {
      status: 'ready',
      pid: process.pid,
      server: info.server,
      kubeconfig: info.adminKubeconfig,
      components: info.pids,
      approvesServingCsrs: info.approvesServingCsrs,
      ...(info.services
        ? { services: { ...info.services, kubeProxy: options.binaries.kubeProxy } }
        : {}),
    });
    await new Promise<void>((resolve) => {
      if (both.aborted) resolve();
      else both.addEventListener('abort', () => resolve(), { once: true });
    });
    if (death) throw new DevClusterError('StartFailed', death);
  } catch (err) {
    await cluster.stop();
    // A component that died explains a cancelled start better than the cancellation does.
    const error = death ? new DevClusterError('StartFailed', death) : err;
    await writeState(dir, { status: 'failed', pid: process.pid, error: (error as Error).message });
    throw error;
  }
  log('stopping the control plane');
  await cluster.stop();
  await writeState(dir, { status: 'stopped', pid: process.pid });
}

export interface UpOptions {
  readonly dir: string;
  /** The command that runs `dev-cluster serve --dir <dir>` in a new process. */
  readonly serveCommand: readonly [string, ...string[]];
  /** Default: 180 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Starts a dev cluster owned by a new background process and waits until it is ready. If one is
 * already running in `dir`, returns its state and starts nothing.
 */
export async function up(options: UpOptions): Promise<{ state: ClusterState; started: boolean }> {
  const { dir } = options;
  const existing = await liveState(dir);
  if (existing?.status === 'ready') return { state: existing, started: false };
  if (existing)
    throw new DevClusterError(
      'StartFailed',
      `a dev cluster in ${dir} is still starting (pid ${String(existing.pid)}); wait, or run dev-cluster down`,
    );
  await mkdir(dir, { recursive: true });
  const logPath = join(dir, 'supervisor.log');
  const logFile = await open(logPath, 'a');
  const [cmd, ...args] = options.serveCommand;
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', logFile.fd, logFile.fd] });
  await logFile.close();
  child.unref();
  const pid = child.pid ?? 0;
  const deadline = Date.now() + (options.timeoutMs ?? 180_000);
  for (;;) {
    await delay(200);
    const state = await readState(dir);
    if (state?.pid === pid && state.status === 'ready') return { state, started: true };
    if (state?.pid === pid && state.status === 'failed')
      throw new DevClusterError('StartFailed', state.error ?? 'the dev cluster failed to start', {
        logPath,
      });
    if (!isAlive(pid))
      throw new DevClusterError('StartFailed', `the dev cluster process exited; see ${logPath}`, {
        logPath,
      });
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGTERM');
      throw new DevClusterError(
        'StartFailed',
        `the dev cluster did not start in time; see ${logPath}`,
        {
          logPath,
        },
      );
    }
  }
}

/**
 * Stops the dev cluster in `dir` and waits until its owner and every component are gone; with
 * services, also removes kube-proxy's rules and the dummy interface if an owner that was killed
 * left them. Resolves to false when nothing was running.
 */
export async function down(dir: string, timeoutMs = 60_000): Promise<boolean> {
  const state = await readState(dir);
  if (!state) return false;
  try {
    return await stopOwner(state, timeoutMs);
  } finally {
    if (state.services) await sweepServices(state, state.services);
  }
}

/** Host leftovers of a services cluster whose owner is gone, unless another cluster owns them. */
async function sweepServices(
  state: ClusterState,
  services: NonNullable<ClusterState['services']>,
): Promise<void> {
  const holder = Number.parseInt(await readFile(SERVICES_LOCK, 'utf8').catch(() => ''), 10);
  if (Number.isInteger(holder) && holder !== state.pid && isAlive(holder)) return;
  await cleanUpServices(services.kubeProxy, services.dummyInterface);
  if (holder === state.pid || !isAlive(holder)) await rm(SERVICES_LOCK, { force: true });
}

async function stopOwner(state: ClusterState, timeoutMs: number): Promise<boolean> {
  // Each pid with the name its command line must carry, so a reused pid is left alone.
  const owned: [number, string][] = [
    [state.pid, 'dev-cluster'],
    ...Object.entries(state.components ?? {}).map(([name, pid]): [number, string] => [pid, name]),
  ];
  const alive = (): [number, string][] => owned.filter(([pid, name]) => isAliveAs(pid, name));
  if (alive().length === 0) return false;
  if (isAliveAs(state.pid, 'dev-cluster')) process.kill(state.pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (alive().length > 0) {
    if (Date.now() > deadline) {
      for (const [pid] of alive()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // It exited in the meantime.
        }
      }
    }
    await delay(100);
  }
  return true;
}

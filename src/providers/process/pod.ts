/**
 * One pod's life: its sandbox, init containers in order, then app containers, restarts with the
 * kubelet's back-off, graceful termination, activeDeadlineSeconds, and the status that results.
 * The provider calls `tick()` on every monitor interval; everything is level-triggered from the
 * record (state.ts), which is saved on every change, so an agent that restarts carries on.
 */
import type {
  V1Container,
  V1ContainerState,
  V1ContainerStatus,
  V1Pod,
  V1PodCondition,
  V1PodStatus,
} from '../../wire.js';
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { abortOf, sleep } from '../../abort.js';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { PodEvent } from '../../provider.js';
import type { Cgroups } from './cgroups.js';
import { type ImageEntrypoint } from './config.js';
import { parseQuantity } from '../../kubelet/quantity.js';
import { containerEnv, findExecutable, launchArgv, resolveCommand, type Tools } from './launch.js';
import { etcMounts } from './etc-files.js';
import { ensureLogDir, logPath, type LogStamper } from './logs.js';
import { childrenOf, isAlive, processGroup, processRef, type ProcessRef } from './proc.js';
import { killSandbox } from './sandbox.js';
import { existingHiddenPaths, mountPoints, readOnlyMounts, type HiddenPath } from './isolation.js';
import {
  containerPrivileges,
  effectiveSecurity,
  runAsNonRootProblem,
  type Privileges,
} from './security.js';
import {
  noteProcesses,
  saveRecord,
  type ContainerRecord,
  type ContainerState,
  type PodRecord,
} from './state.js';
import { podHostname } from '../../kubelet/hostname.js';
import { podKey } from '../../kubelet/pod-key.js';
import { isTerminalPhase } from '../../kubelet/pod-status.js';
import { formatGoDuration, formatRfc3339 } from '../../kubelet/time.js';

/** What every pod runner shares with the provider. */
export interface RunnerContext {
  readonly tools: Tools;
  readonly namespaces: boolean;
  readonly cgroups: Cgroups | undefined;
  readonly images: Readonly<Record<string, ImageEntrypoint>>;
  readonly stamper: LogStamper;
  readonly podIP: string;
  readonly hostIP: string;
  readonly backoffInitialSeconds: number;
  readonly backoffMaxSeconds: number;
  /** Paths hidden from every container (the state directory, the dev cluster's files). */
  readonly hiddenPaths: readonly string[];
  readonly log: Logger;
  /** Records an Event about the pod (through the core, which writes it as the kubelet would). */
  readonly event?: (pod: V1Pod, event: PodEvent) => void;
  /**
   * What the container's probes say about its current run: undefined when it has none (then a
   * running container is started and ready at once).
   */
  readonly probeState?: (
    pod: PodRecord,
    container: string,
  ) => { readonly started: boolean; readonly ready: boolean } | undefined;
}

const GRACE_DEFAULT_SECONDS = 30;

/** The longest delay `setTimeout` honours (2^31-1 ms); a grace period past it never ends. */
const MAX_TIMER_MS = 2_147_483_647;

/** A preStop hook runner: `ms` is what is left of the grace period; `signal` fires at SIGKILL. */
export type PreStop = (c: ContainerRecord, ms: number, signal: AbortSignal) => Promise<void>;

/** When the containers of a stop in progress get SIGKILL. */
interface KillClock {
  /** ms since the epoch; only ever brought forward. */
  atMs: number;
  /** Aborts at `atMs`. */
  readonly now: AbortController;
  timer?: NodeJS.Timeout;
}

/** An app container: neither an init nor an ephemeral one. */
function isApp(c: ContainerRecord): boolean {
  return !c.init && c.ephemeral !== true;
}

/** The restart policy of a container (sidecar init containers restart Always). */
function restartPolicy(pod: V1Pod, c: V1Container | undefined): string {
  return c?.restartPolicy ?? pod.spec?.restartPolicy ?? 'Always';
}

export class PodRunner {
  readonly record: PodRecord;
  readonly #ctx: RunnerContext;
  readonly #log: Logger;
  /** Containers being stopped (preStop, SIGTERM, grace): not restarted meanwhile. */
  #stopping: Promise<void> | undefined;
  /** The kill deadline of the stop in progress (see `stopAll`). */
  #kill: KillClock | undefined;
  #dirty = true;
  /** Condition type to [status, last transition], so a transition time moves only on change. */
  readonly #conditions = new Map<string, [string, string]>();

  constructor(record: PodRecord, ctx: RunnerContext) {
    this.record = record;
    this.#ctx = ctx;
    this.#log = ctx.log.child({ pod: this.key });
  }

  get key(): string {
    return podKey(this.record.pod);
  }

  get terminal(): boolean {
    return isTerminalPhase(this.record.phase);
  }

  get stopping(): boolean {
    return this.#stopping !== undefined;
  }

  spec(name: string): V1Container | undefined {
    const s = this.record.pod.spec;
    return [
      ...(s?.initContainers ?? []),
      ...(s?.containers ?? []),
      // The fields a process needs are the same; ports, probes and resources are never set.
      ...(s?.ephemeralContainers ?? []),
    ].find((c) => c.name === name);
  }

  container(name: string): ContainerRecord | undefined {
    return this.record.containers.find((c) => c.name === name);
  }

  /**
   * Checks processes, starts and restarts containers, enforces the deadline. Returns whether
   * the status changed (the record is saved then).
   */
  tick(now: number = Date.now()): boolean {
    for (const c of this.record.containers) {
      if (c.state.kind === 'running') this.#check(c, now);
    }
    if (!this.terminal && this.record.deletingSince === undefined && !this.#stopping) {
      this.#deadline(now);
      if (!this.stopping) this.#advance(now);
    }
    this.#settle();
    const changed = this.#dirty;
    if (changed) {
      saveRecord(this.record);
      this.#dirty = false;
    }
    return changed;
  }

  markDirty(): void {
    this.#dirty = true;
  }

  /** Whether the container's current process runs. */
  isRunning(c: ContainerRecord): boolean {
    return c.state.kind === 'running' && c.run !== undefined && isAlive(c.run.wrapper);
  }

  #deadline(now: number): void {
    const ads = this.record.pod.spec?.activeDeadlineSeconds;
    if (ads === undefined || now < this.record.startTime + ads * 1000) return;
    this.#log.info({ activeDeadlineSeconds: ads }, 'active deadline exceeded: stopping the pod');
    this.record.reason = 'DeadlineExceeded';
    this.record.message = `Pod was active on the node longer than the specified deadline`;
    this.#dirty = true;
    this.#stopping = this.stopAll(this.#graceSeconds(undefined)).then(() => {
      this.record.phase = 'Failed';
      this.#dirty = true;
      this.#stopping = undefined;
    });
  }

  #graceSeconds(deleting: V1Pod | undefined): number {
    return (
      deleting?.metadata?.deletionGracePeriodSeconds ??
      this.record.pod.spec?.terminationGracePeriodSeconds ??
      GRACE_DEFAULT_SECONDS
    );
  }

  /**
   * Starts what should run now: new ephemeral containers, the next init container, or the app
   * containers.
   */
  #advance(now: number): void {
    const pod = this.record.pod;
    for (const c of this.record.containers) {
      // Once only: one that ran (or failed to start) stays as it ended; CreateContainerError (its
      // volumes could not be set up, see the provider's updatePod) stays Waiting.
      const s = c.state;
      const due = s.kind === 'waiting' && s.reason !== 'CreateContainerError' && !c.run;
      if (c.ephemeral === true && due) this.#start(c, now);
    }
    const inits = this.record.containers.filter((c) => c.init);
    for (const c of inits) {
      const spec = this.spec(c.name);
      const sidecar = spec?.restartPolicy === 'Always';
      if (c.state.kind === 'running') {
        if (sidecar) continue;
        return;
      }
      if (c.state.kind === 'terminated' && c.state.exitCode === 0 && !sidecar) continue;
      if (c.restartCount > 0 || c.state.kind === 'terminated') {
        const policy = restartPolicy(pod, spec);
        if (policy === 'Never') return; // the pod fails (#settle)
      }
      this.#startIfDue(c, now);
      if (!sidecar || (c.state as ContainerState).kind !== 'running') return;
    }
    for (const c of this.record.containers.filter(isApp)) {
      if (c.state.kind === 'running') continue;
      const last = c.state.kind === 'terminated' ? c.state : c.lastState;
      if (last?.kind === 'terminated') {
        const policy = restartPolicy(pod, undefined);
        if (policy === 'Never') continue;
        if (policy === 'OnFailure' && last.exitCode === 0) continue;
      }
      this.#startIfDue(c, now);
    }
  }

  #event(type: PodEvent['type'], reason: string, message: string): void {
    this.#ctx.event?.(this.record.pod, { type, reason, message });
  }

  #startIfDue(c: ContainerRecord, now: number): void {
    if (c.notBefore !== undefined && now < c.notBefore) {
      if (c.state.kind === 'terminated') {
        c.lastState = c.state;
        const meta = this.record.pod.metadata;
        c.state = {
          kind: 'waiting',
          reason: 'CrashLoopBackOff',
          message: `back-off ${formatGoDuration(Math.round(c.waitSeconds ?? c.backoffSeconds) * 1000)} restarting failed container=${c.name} pod=${meta?.name ?? ''}_${meta?.namespace ?? ''}(${meta?.uid ?? ''})`,
        };
        this.#dirty = true;
        this.#event('Warning', 'BackOff', `Back-off restarting failed container ${c.name}`);
      }
      return;
    }
    this.#start(c, now);
  }

  /** Starts a run of `c` now. Failures to start end as a terminated StartError run. */
  #start(c: ContainerRecord, now: number): void {
    const spec = this.spec(c.name);
    if (!spec) return;
    // A sandbox that is gone (a reboot, a kill) is made again by the provider first.
    if (this.record.sandbox && !isAlive(this.record.sandbox)) return;
    const pod = this.record.pod;
    const env = containerEnv(spec, podHostname(pod));
    const resolved = resolveCommand(spec, env, this.#ctx.images);
    const security = containerSecurity(this.record, spec, this.#ctx.hiddenPaths);
    const blocked =
      'error' in security
        ? security
        : 'error' in resolved
          ? { reason: 'CreateContainerConfigError', error: resolved.error }
          : undefined;
    if (blocked) {
      // Tried again on every tick (the config may change with an agent restart); reported once.
      const s = c.state;
      if (!(s.kind === 'waiting' && s.reason === blocked.reason && s.message === blocked.error)) {
        c.state = { kind: 'waiting', reason: blocked.reason, message: blocked.error };
        this.#dirty = true;
        this.#event('Warning', 'Failed', `Error: ${blocked.error}`);
      }
      return;
    }
    if ('error' in resolved || 'error' in security) return;
    const restarting = c.state.kind === 'terminated' || c.lastState !== undefined;
    const run = restarting ? c.restartCount + 1 : 0;
    const workingDir = spec.workingDir ?? resolved.workingDir ?? '/';
    const containerID = `process://${pod.metadata?.uid ?? ''}/${c.name}/${String(run)}`;
    const fail = (message: string): void => {
      if (restarting) {
        c.restartCount = run;
        c.lastState = c.state.kind === 'terminated' ? c.state : c.lastState;
      }
      c.state = {
        kind: 'terminated',
        exitCode: 128,
        reason: 'StartError',
        message,
        startedAt: now,
        finishedAt: now,
        containerID,
      };
      c.ready = false;
      c.started = false;
      this.#afterExit(c, now, now);
      this.#dirty = true;
      this.#log.info({ container: c.name, message }, 'container could not start');
      this.#event('Warning', 'Failed', `Error: ${message}`);
    };
    const [file] = resolved.argv;
    if (
      file !== undefined &&
      findExecutable(file, env.get('PATH') ?? '', workingDir) === undefined &&
      !this.record.mounts[c.name]?.some((m) => file.startsWith(m.target))
    ) {
      fail(`exec: "${file}": executable file not found in $PATH`);
      return;
    }
    const limits = spec.resources?.limits ?? {};
    let cgroupProcs: string[] = [];
    let oomBase = 0;
    const uid = pod.metadata?.uid ?? '';
    if (this.#ctx.cgroups) {
      try {
        cgroupProcs = this.#ctx.cgroups.prepare(uid, c.name, {
          ...(limits.memory !== undefined ? { memoryBytes: parseQuantity(limits.memory) } : {}),
          ...(limits.cpu !== undefined ? { cpuCores: parseQuantity(limits.cpu) } : {}),
        });
        oomBase = this.#ctx.cgroups.oomKills(uid, c.name);
      } catch (err) {
        fail(`cannot set up the container's cgroup: ${errorMessage(err)}`);
        return;
      }
    }
    ensureLogDir(this.record.dir, c.name);
    const log = logPath(this.record.dir, c.name, run);
    const exitFile = join(this.record.dir, 'run', `${c.name}.${String(run)}.exit`);
    const errorFile = join(this.record.dir, 'run', `${c.name}.${String(run)}.error`);
    mkdirSync(join(this.record.dir, 'run'), { recursive: true });
    rmSync(exitFile, { force: true });
    rmSync(errorFile, { force: true });
    let stdinPath: string | undefined;
    if (spec.stdin === true) {
      stdinPath = join(this.record.dir, 'run', `${c.name}.stdin`);
      // Node has no mkfifo(3); the coreutils command makes it.
      if (!existsSync(stdinPath)) spawnSync('mkfifo', ['-m', '0600', stdinPath]);
      if (!existsSync(stdinPath)) {
        fail(`cannot make the stdin FIFO ${stdinPath}`);
        return;
      }
    }
    const argv = launchArgv(
      {
        argv: resolved.argv,
        workingDir,
        ...(this.record.sandbox ? { sandboxPid: this.record.sandbox.pid } : {}),
        cgroupProcs,
        mounts: [
          ...(this.record.sandbox ? etcMounts(this.record.dir) : []),
          ...(this.record.mounts[c.name] ?? []),
        ],
        ...security,
        exitFile,
        errorFile,
        tty: spec.tty === true,
      },
      this.#ctx.tools,
    );
    const out = openSync(log, 'a');
    // O_RDWR: opening a FIFO this way does not wait for a writer, and it never reads EOF.
    const stdin = stdinPath ? openSync(stdinPath, 'r+') : 'ignore';
    let pid: number | undefined;
    // spawn throws at once for arguments it refuses (a NUL byte: ERR_INVALID_ARG_VALUE); the
    // run then ends as a StartError and restarts with back-off, as any other failed start.
    let refused: unknown;
    try {
      const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
        detached: true,
        stdio: [stdin, out, out],
        env: Object.fromEntries(env),
        cwd: this.record.dir,
      });
      child.once('error', (err) => {
        // The error carries the expanded argv (Secret values maybe): its message only.
        this.#log.warn(
          { err: errorMessage(err), container: c.name },
          'cannot spawn the container wrapper',
        );
      });
      child.unref();
      pid = child.pid;
    } catch (err) {
      refused = err;
    } finally {
      closeSync(out);
      if (typeof stdin === 'number') closeSync(stdin);
    }
    const wrapper = pid === undefined ? undefined : processRef(pid);
    if (pid === undefined || wrapper === undefined) {
      fail(
        refused === undefined
          ? 'cannot start the container process'
          : `cannot start the container process: ${spawnRefusal(refused)}`,
      );
      return;
    }
    noteProcesses(this.record.dir, wrapper);
    if (restarting) {
      c.restartCount = run;
      if (c.state.kind === 'terminated') c.lastState = c.state;
      if (c.run) c.previousLog = c.run.logPath;
    }
    c.run = {
      run,
      wrapper,
      startedAt: now,
      logPath: log,
      exitFile,
      errorFile,
      oomBase,
      containerID,
      ...(stdinPath ? { stdinPath } : {}),
    };
    c.state = { kind: 'running', startedAt: now };
    // Without probes a running container is started and ready at once.
    const probed = this.#ctx.probeState?.(this.record, c.name);
    c.started = probed?.started ?? true;
    c.ready = probed?.ready ?? true;
    c.notBefore = undefined;
    this.#dirty = true;
    this.#log.info({ container: c.name, run, wrapper: wrapper.pid }, 'container started');
    this.#event('Normal', 'Started', `Started container ${c.name}`);
  }

  /** Finds the command's process of a run (below the wrapper, and nsenter with namespaces). */
  findMain(c: ContainerRecord): ProcessRef | undefined {
    const run = c.run;
    if (!run) return undefined;
    if (run.main && isAlive(run.main)) return run.main;
    if (run.main) return undefined;
    if (!isAlive(run.wrapper)) return undefined;
    let pid: number | undefined = childrenOf(run.wrapper.pid)[0];
    if (pid !== undefined && this.record.sandbox) pid = childrenOf(pid)[0];
    // Only once it leads its own process group has it passed setsid, the last step before the
    // command: its mounts and working directory are in place.
    if (pid === undefined || processGroup(pid) !== pid) return undefined;
    const ref = processRef(pid);
    if (ref) {
      noteProcesses(this.record.dir, ref);
      run.main = ref;
      this.#dirty = true;
    }
    return ref;
  }

  /** Notices the end of a running container's process. */
  #check(c: ContainerRecord, now: number): void {
    const run = c.run;
    if (!run) return;
    this.#ctx.stamper.stamp(run.logPath, now);
    this.findMain(c);
    const probed = this.#ctx.probeState?.(this.record, c.name);
    if (c.ready !== (probed?.ready ?? true) || c.started !== (probed?.started ?? true)) {
      c.ready = probed?.ready ?? true;
      c.started = probed?.started ?? true;
      this.#dirty = true;
    }
    let text = '';
    try {
      text = readFileSync(run.exitFile, 'utf8').trim();
    } catch {
      // Not written (yet).
    }
    let exitCode: number;
    let finishedAt = now;
    let message: string | undefined;
    if (text !== '') {
      exitCode = Number(text);
      try {
        finishedAt = Math.round(statSync(run.exitFile).mtimeMs);
      } catch {
        // Keep now.
      }
    } else if (!isAlive(run.wrapper)) {
      // The wrapper died without writing a code: killed, or the machine rebooted.
      exitCode = 137;
      message = 'the container process ended and its exit status is unknown';
    } else return;
    let reason = exitCode === 0 ? 'Completed' : 'Error';
    if (existsSync(run.errorFile)) {
      reason = 'StartError';
      message = readFileSync(run.errorFile, 'utf8').trim();
      exitCode = 128;
    } else if (
      this.#ctx.cgroups &&
      this.#ctx.cgroups.oomKills(this.record.pod.metadata?.uid ?? '', c.name) > run.oomBase
    ) {
      reason = 'OOMKilled';
    }
    // Whatever the command left behind goes with it, as with a container.
    this.#killLeftovers(c);
    this.#ctx.stamper.stamp(run.logPath, now);
    this.#ctx.stamper.forget(run.logPath);
    c.state = {
      kind: 'terminated',
      exitCode,
      reason,
      ...(message !== undefined ? { message } : {}),
      startedAt: run.startedAt,
      finishedAt,
      containerID: run.containerID,
    };
    c.ready = false;
    c.started = false;
    this.#dirty = true;
    this.#log.info(
      { container: c.name, exitCode, reason, ...(reason === 'StartError' ? { message } : {}) },
      'container exited',
    );
    if (this.record.deletingSince === undefined && !this.#stopping)
      this.#afterExit(c, finishedAt, now);
  }

  /**
   * Sets the restart back-off after an exit as the kubelet's does (pkg/kubelet/kuberuntime
   * doBackOff): the first restart is immediate, the next waits `backoffInitialSeconds` after the
   * exit, and each one after that twice as long, up to `backoffMaxSeconds`; an exit more than
   * twice that long after the last one starts over.
   */
  #afterExit(c: ContainerRecord, finishedAt: number, now: number): void {
    const max = this.#ctx.backoffMaxSeconds;
    if (c.backoffUpdatedAt !== undefined && finishedAt - c.backoffUpdatedAt > 2 * max * 1000) {
      c.backoffSeconds = 0;
    }
    if (c.backoffSeconds === 0) {
      // The first restart is immediate; the back-off starts with the next one.
      c.backoffSeconds = this.#ctx.backoffInitialSeconds;
      c.notBefore = undefined;
    } else {
      c.notBefore = finishedAt + c.backoffSeconds * 1000;
      c.waitSeconds = c.backoffSeconds;
      if (c.notBefore <= now) c.notBefore = undefined;
      c.backoffSeconds = Math.min(c.backoffSeconds * 2, max);
    }
    c.backoffUpdatedAt = finishedAt;
  }

  #killLeftovers(c: ContainerRecord): void {
    const cg = this.#ctx.cgroups;
    if (!cg) return;
    for (const pid of cg.processes(this.record.pod.metadata?.uid ?? '', c.name)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  }

  /** Sends `signal` to the container's process group (and its cgroup's processes for KILL). */
  signal(c: ContainerRecord, signal: NodeJS.Signals): void {
    const main = this.findMain(c);
    if (main) {
      try {
        process.kill(-main.pid, signal);
      } catch {
        try {
          process.kill(main.pid, signal);
        } catch {
          // Gone.
        }
      }
    }
    if (signal === 'SIGKILL') this.#killLeftovers(c);
  }

  /**
   * Stops every running container: preStop hooks, SIGTERM, SIGKILL after `graceSeconds` (or
   * sooner, when {@link hurry} brings the kill forward). Resolves once they have all exited.
   */
  async stopAll(graceSeconds: number, preStop?: PreStop): Promise<void> {
    const kill: KillClock = { atMs: Infinity, now: new AbortController() };
    this.#kill = kill;
    this.#schedule(kill, Date.now() + graceSeconds * 1000);
    const killed = kill.now.signal;
    try {
      const running = this.record.containers.filter((c) => c.state.kind === 'running');
      await Promise.all(
        running.map(async (c) => {
          if (preStop && this.spec(c.name)?.lifecycle?.preStop) {
            const hook = preStop(c, Math.max(0, kill.atMs - Date.now()), killed).catch(
              (err: unknown) => {
                this.#log.info(
                  { container: c.name, err: errorMessage(err) },
                  'preStop hook failed',
                );
                this.#event(
                  'Warning',
                  'FailedPreStopHook',
                  `PreStopHook failed for container ${c.name}: ${errorMessage(err)}`,
                );
              },
            );
            // A hook does not outlast the grace period, however it was brought forward.
            await Promise.race([hook, abortOf(killed)]);
          }
          this.#event('Normal', 'Killing', `Stopping container ${c.name}`);
          this.signal(c, 'SIGTERM');
        }),
      );
      while (!killed.aborted) {
        this.tick();
        if (this.record.containers.every((c) => c.state.kind !== 'running')) return;
        await sleep(100, killed);
      }
      for (const c of this.record.containers)
        if (c.state.kind === 'running') this.signal(c, 'SIGKILL');
      const until = Date.now() + 5000;
      while (Date.now() < until) {
        this.tick();
        if (this.record.containers.every((c) => c.state.kind !== 'running')) return;
        await delay(50);
      }
    } finally {
      clearTimeout(kill.timer);
      if (this.#kill === kill) this.#kill = undefined;
    }
  }

  /**
   * Brings the SIGKILL of the stop in progress forward to `graceSeconds` from now, when that is
   * sooner (a later delete with a shorter grace period; 0 kills at once). No stop: nothing.
   */
  hurry(graceSeconds: number): void {
    const kill = this.#kill;
    if (kill) this.#schedule(kill, Date.now() + graceSeconds * 1000);
  }

  #schedule(kill: KillClock, atMs: number): void {
    if (atMs >= kill.atMs) return;
    kill.atMs = atMs;
    clearTimeout(kill.timer);
    const ms = atMs - Date.now();
    if (ms <= 0) kill.now.abort();
    else if (ms <= MAX_TIMER_MS) kill.timer = setTimeout(() => kill.now.abort(), ms);
  }

  /**
   * Stops the pod for deletion and ends in a terminal phase. Idempotent: a second call waits
   * for the first, and brings its SIGKILL forward when its grace period is shorter. When
   * `signal` aborts the containers get SIGKILL at once, and the call resolves once they are
   * gone.
   */
  async delete(pod: V1Pod, preStop?: PreStop, signal?: AbortSignal): Promise<void> {
    let grace = this.#graceSeconds(pod);
    const onAbort = (): void => {
      grace = 0;
      this.hurry(0);
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (this.record.deletingSince === undefined) {
        this.record.deletingSince = Date.now();
        this.#dirty = true;
        if (this.#stopping) {
          this.hurry(grace);
          await this.#stopping;
        }
        this.#stopping = this.stopAll(grace, preStop);
      } else this.hurry(grace);
      await this.#stopping;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    for (const c of this.record.containers) {
      if (c.state.kind !== 'waiting') continue;
      // Waiting out a back-off: its last run is how it ended. Never started: as the kubelet
      // reports a container it cannot account for.
      c.state =
        c.lastState?.kind === 'terminated'
          ? c.lastState
          : {
              kind: 'terminated',
              exitCode: 137,
              reason: 'ContainerStatusUnknown',
              message: 'The container could not be located when the pod was terminated',
              finishedAt: Date.now(),
            };
    }
    if (!this.terminal) {
      const app = this.record.containers.filter(isApp);
      this.record.phase = app.every((c) => c.state.kind === 'terminated' && c.state.exitCode === 0)
        ? 'Succeeded'
        : 'Failed';
    }
    this.#dirty = true;
    this.#stopping = undefined;
    this.#teardown();
  }

  /** Kills the sandbox and removes cgroups of a pod with nothing left running. */
  #teardown(): void {
    if (this.record.sandbox) killSandbox(this.record.sandbox);
    this.#ctx.cgroups?.remove(this.record.pod.metadata?.uid ?? '');
  }

  /** Phase and readiness from the container states, as the kubelet's getPhase. */
  #settle(): void {
    const r = this.record;
    if (this.terminal) return;
    if (r.reason === 'DeadlineExceeded' && !this.#stopping) {
      this.#setPhase('Failed');
      return;
    }
    const pod = r.pod;
    const inits = r.containers.filter((c) => c.init);
    const apps = r.containers.filter(isApp);
    const initDone = inits.every((c) => {
      if (this.spec(c.name)?.restartPolicy === 'Always') return c.state.kind === 'running';
      return c.state.kind === 'terminated' && c.state.exitCode === 0;
    });
    const policy = pod.spec?.restartPolicy ?? 'Always';
    if (!initDone) {
      const failed = inits.some((c) => c.state.kind === 'terminated' && c.state.exitCode !== 0);
      this.#setPhase(failed && policy === 'Never' ? 'Failed' : 'Pending');
      return;
    }
    let running = 0;
    let waiting = 0;
    let stopped = 0;
    let succeeded = 0;
    for (const c of apps) {
      const s = c.state;
      if (s.kind === 'running') running++;
      else if (s.kind === 'terminated') {
        stopped++;
        if (s.exitCode === 0) succeeded++;
      } else if (c.lastState?.kind === 'terminated') {
        stopped++;
        if (c.lastState.exitCode === 0) succeeded++;
      } else waiting++;
    }
    let phase: PodRecord['phase'];
    if (waiting > 0) phase = 'Pending';
    else if (running > 0) phase = 'Running';
    else if (policy === 'Always') phase = 'Running';
    else if (policy === 'OnFailure') phase = stopped === succeeded ? 'Succeeded' : 'Running';
    else phase = stopped === succeeded ? 'Succeeded' : 'Failed';
    this.#setPhase(phase);
  }

  #setPhase(phase: PodRecord['phase']): void {
    if (this.record.phase === phase) return;
    this.record.phase = phase;
    this.#dirty = true;
    if (isTerminalPhase(phase)) {
      // Nothing restarts any more: stop what is left (sidecars) and the sandbox.
      for (const c of this.record.containers)
        if (c.state.kind === 'running') this.signal(c, 'SIGKILL');
      this.#teardown();
    }
  }

  /** The pod's status as the API wants it. */
  status(): V1PodStatus {
    const r = this.record;
    const pod = r.pod;
    const date = (ms: number | undefined): string | undefined =>
      ms === undefined ? undefined : formatRfc3339(ms);
    const render = (s: ContainerState | undefined): V1ContainerState | undefined => {
      if (!s) return undefined;
      if (s.kind === 'waiting')
        return { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } };
      if (s.kind === 'running') return { running: { startedAt: formatRfc3339(s.startedAt) } };
      const startedAt = date(s.startedAt);
      return {
        terminated: {
          exitCode: s.exitCode,
          reason: s.reason,
          ...(s.message ? { message: s.message } : {}),
          ...(startedAt ? { startedAt } : {}),
          finishedAt: formatRfc3339(s.finishedAt),
          ...(s.containerID ? { containerID: s.containerID } : {}),
        },
      };
    };
    const cs = (c: ContainerRecord): V1ContainerStatus => {
      const lastState = render(c.lastState);
      return {
        name: c.name,
        image: this.spec(c.name)?.image ?? '',
        imageID: '',
        ...(c.run ? { containerID: c.run.containerID } : {}),
        ready: c.state.kind === 'running' && c.ready,
        started: c.state.kind === 'running' && c.started,
        restartCount: c.restartCount,
        state: render(c.state) ?? {},
        ...(lastState ? { lastState } : {}),
      };
    };
    const apps = r.containers.filter(isApp);
    const inits = r.containers.filter((c) => c.init);
    const ephemeral = r.containers.filter((c) => c.ephemeral === true);
    const initialized = inits.every(
      (c) =>
        (c.state.kind === 'terminated' && c.state.exitCode === 0) ||
        (this.spec(c.name)?.restartPolicy === 'Always' && c.state.kind === 'running'),
    );
    const ready = !this.terminal && apps.every((c) => c.state.kind === 'running' && c.ready);
    const cond = (type: string, ok: boolean, reason?: string): V1PodCondition => {
      const value = ok ? 'True' : 'False';
      let seen = this.#conditions.get(type);
      if (seen?.[0] !== value) {
        seen = [value, formatRfc3339(Date.now())];
        this.#conditions.set(type, seen);
      }
      return {
        type,
        status: value,
        lastTransitionTime: seen[1],
        ...(ok || reason === undefined ? {} : { reason }),
      };
    };
    const notReady = r.phase === 'Succeeded' ? 'PodCompleted' : 'ContainersNotReady';
    const status: V1PodStatus = {
      phase: r.phase,
      conditions: [
        cond('PodScheduled', true),
        cond('Initialized', initialized || this.terminal, 'ContainersNotInitialized'),
        cond('ContainersReady', ready, notReady),
        cond('Ready', ready, notReady),
      ],
      hostIP: this.#ctx.hostIP,
      hostIPs: [{ ip: this.#ctx.hostIP }],
      podIP: r.podIPs?.[0] ?? this.#ctx.podIP,
      podIPs: (r.podIPs ?? [this.#ctx.podIP]).map((ip) => ({ ip })),
      startTime: formatRfc3339(r.startTime),
      containerStatuses: apps.map(cs),
      ...(inits.length > 0 ? { initContainerStatuses: inits.map(cs) } : {}),
      // As the kubelet reports them: never ready, no `started`.
      ...(ephemeral.length > 0
        ? {
            ephemeralContainerStatuses: ephemeral.map((c) => {
              const status = { ...cs(c), ready: false };
              delete status.started;
              return status;
            }),
          }
        : {}),
      ...(r.reason ? { reason: r.reason } : {}),
      ...(r.message ? { message: r.message } : {}),
    };
    if (pod.status?.qosClass !== undefined) status.qosClass = pod.status.qosClass;
    return status;
  }
}

/**
 * Why spawn refused to start a process, without the value it refused: Node's message quotes it
 * ("... Received 'value'"), and an env value or argument may come from a Secret.
 */
function spawnRefusal(err: unknown): string {
  return errorMessage(err).replace(/\. Received [\s\S]*$/, '');
}

/** The user and capabilities of a container's process, and what its mount namespace hides. */
interface ContainerSecurity {
  readonly privileges: Privileges;
  readonly readOnlyMounts: readonly string[];
  readonly hiddenPaths: readonly HiddenPath[];
}

/**
 * How `spec` of `record`'s pod is isolated, or why it cannot start: the kubelet's
 * runAsNonRoot check (CreateContainerConfigError, in the kubelet's words) or a capability a
 * runtime would refuse (CreateContainerError). `hidden` are the paths pods must not see.
 */
function containerSecurity(
  record: PodRecord,
  spec: V1Container,
  hidden: readonly string[],
): ContainerSecurity | { readonly reason: string; readonly error: string } {
  const pod = record.pod;
  const nonRoot = runAsNonRootProblem(pod, spec, process.getuid?.() ?? 0);
  if (nonRoot !== undefined) return { reason: 'CreateContainerConfigError', error: nonRoot };
  const privileges = containerPrivileges(pod, spec);
  if ('error' in privileges) return { reason: 'CreateContainerError', error: privileges.error };
  if (!record.sandbox) return { privileges, readOnlyMounts: [], hiddenPaths: [] };
  const targets = (record.mounts[spec.name] ?? []).map((m) => m.target);
  return {
    privileges,
    readOnlyMounts: effectiveSecurity(pod, spec).readOnlyRootFilesystem
      ? readOnlyMounts(mountPoints(record.sandbox.pid), [...targets, ...hidden])
      : [],
    hiddenPaths: existingHiddenPaths(hidden),
  };
}

/**
 * Container probes (startup, readiness, liveness) run the way the kubelet's prober runs them,
 * independent of how the container's processes are run: the provider hands in the container and
 * a {@link ProbeRuntime} (the pod's IP, a way to exec in the container), and hears back when
 * `started`/`ready` change, when the container must be restarted, and which events the kubelet
 * would record.
 *
 * Kubelet semantics kept (pkg/kubelet/prober/worker.go):
 * - One worker per probe, ticking every `periodSeconds` (fixed rate; a tick missed while a probe
 *   ran is run at once, later ones are dropped). The first tick is at `start()`.
 * - A tick does nothing while fewer than `initialDelaySeconds` whole seconds have passed since
 *   the container started, so the first probe is on the first tick after the delay.
 * - Until the startup probe succeeds, liveness and readiness do not run and `started` is false.
 *   Once it succeeds it stops, and readiness runs at once (the kubelet triggers it).
 * - A result takes effect after `successThreshold` consecutive successes or `failureThreshold`
 *   consecutive failures; the other result resets the count. Attempts that could not be made
 *   (an exec that threw, a port that does not resolve) are retried up to three times and then
 *   discarded: they neither count nor reset.
 * - Readiness starts false. A liveness or startup failure asks for a restart once and stops that
 *   probe for good: the next container start gets a new prober, as the kubelet waits for a new
 *   container ID.
 * - Every failed attempt yields a `Warning Unhealthy` event (`Liveness probe failed: …`), every
 *   success with a warning a `Warning ProbeWarning` event, as the kubelet records them.
 */
import type { V1Container, V1Probe } from '../wire.js';
import { sleep } from '../abort.js';
import { invalidInput } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { runProbe, type ProbeTarget } from './check.js';
import type { ProbeResult } from './common.js';
import type { ProbeRuntime } from './runtime.js';
import { PROBE_FIELD, validateProbes, type ProbeKind } from './validate.js';

/** What the probes say about a running container, as its status reports it. */
export interface ProbeState {
  /** The startup probe succeeded, or there is none. */
  readonly started: boolean;
  /** `started`, and the readiness probe's current result is success (or there is none). */
  readonly ready: boolean;
}

/** The reason the kubelet gives when it kills a container for a failed probe. */
export type RestartReason = 'LivenessProbe' | 'StartupProbe';

/** The reasons of the events the kubelet records for probes. */
export type ProbeEventReason = 'Unhealthy' | 'ProbeWarning';

export interface ContainerProberOptions {
  /** The container as in the pod spec; its probes and its named ports are read. */
  readonly container: V1Container;
  /** The pod's address, and how to run exec probes (required when the container has one). */
  readonly runtime: ProbeRuntime;
  /** Default: silent. A child logger with the container's name is made of it. */
  readonly logger?: Logger;
  /** Called with the new state each time `started` or `ready` changes; never for the initial one. */
  readonly onChange?: (state: ProbeState) => void;
  /**
   * Called once when the container must be restarted: `failureThreshold` consecutive liveness
   * failures, or a startup probe that failed `failureThreshold` times. `message` is the
   * kubelet's (`Container web failed liveness probe, will be restarted`), for the `Killing`
   * event. `terminationGracePeriodSeconds` is the failed probe's own grace period, which takes
   * precedence over the pod's when set.
   */
  readonly onRestartNeeded?: (
    reason: RestartReason,
    message: string,
    terminationGracePeriodSeconds: number | undefined,
  ) => void;
  /** Called for each event the kubelet would record (`Warning Unhealthy: Readiness probe failed: …`). */
  readonly onEvent?: (type: 'Warning', reason: ProbeEventReason, message: string) => void;
  /** Stops probing when it fires, as `stop()` does. */
  readonly signal?: AbortSignal;
  /** When the container started, for `initialDelaySeconds`. Default: when the prober is made. */
  readonly startedAt?: Date;
  /** Default: `kube-probe/1.37` (the Kubernetes release the project pins). */
  readonly userAgent?: string;
  /**
   * Milliseconds per second of the probes' `*Seconds` fields (periods, delays and timeouts).
   * Default: 1000. Only tests should change it, to run probes with the kubelet's integer fields
   * at a fraction of real time.
   */
  readonly msPerSecond?: number;
}

interface Timing {
  readonly initialDelaySeconds: number;
  readonly periodMs: number;
  readonly timeoutMs: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
}

const LABEL: Readonly<Record<ProbeKind, string>> = {
  startup: 'Startup',
  readiness: 'Readiness',
  liveness: 'Liveness',
};
/** The kubelet makes an attempt that errored this many times before giving up on the tick. */
const MAX_ATTEMPTS = 3;
/** The longest delay `setTimeout` honours; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The kubelet's defaults applied; zero means the default, as after API defaulting. */
function timingOf(probe: V1Probe, kind: ProbeKind, msPerSecond: number): Timing {
  const or = (value: number | undefined, fallback: number): number =>
    value === undefined || value <= 0 ? fallback : value;
  return {
    initialDelaySeconds: probe.initialDelaySeconds ?? 0,
    periodMs: or(probe.periodSeconds, 10) * msPerSecond,
    timeoutMs: Math.min(or(probe.timeoutSeconds, 1) * msPerSecond, MAX_TIMER_MS),
    successThreshold: kind === 'readiness' ? or(probe.successThreshold, 1) : 1,
    failureThreshold: or(probe.failureThreshold, 3),
  };
}

/** The run of equal results one probe worker has seen (the kubelet's lastResult/resultRun). */
interface Run {
  last: 'success' | 'failure' | undefined;
  count: number;
}

/**
 * Probes one start of one container. Make a new one for each start (a restarted container is a
 * new container to the kubelet: readiness false again, startup probe again, counts reset).
 *
 * Lifecycle: `start()` begins probing; `stop()` (or the `signal` option) ends it, cancelling
 * probes in flight, and resolves when every probe loop has ended: no timers, sockets or HTTP/2
 * sessions of it are left. An exec command in flight is told to stop through its signal; the
 * prober does not wait for it to exit. No callback is called after `stop()` was called. `markTerminating()` is for
 * a container being shut down: liveness and startup stop (no restart is asked for during a
 * graceful shutdown) while readiness goes on.
 *
 * Callbacks are called synchronously from the probe loop; one that throws is logged and
 * otherwise ignored.
 */
export class ContainerProber {
  readonly #o: ContainerProberOptions;
  readonly #log: Logger;
  readonly #target: ProbeTarget;
  readonly #msPerSecond: number;
  readonly #startedAtMs: number;
  readonly #stopper = new AbortController();
  readonly #loops: Promise<void>[] = [];
  /** Wakes a worker that waits for its next tick (the kubelet's manual trigger). */
  readonly #wakers = new Map<ProbeKind, AbortController>();
  readonly #triggered = new Set<ProbeKind>();
  readonly #lastFailure = new Map<ProbeKind, string>();
  #running = false;
  #terminating = false;
  #started: boolean;
  #readinessOk: boolean;
  #reported: ProbeState;
  #latestFailure: string | undefined;

  /** Throws `InvalidInput` when a probe is invalid or an exec probe has a runtime without exec. */
  constructor(options: ContainerProberOptions) {
    const c = options.container;
    const invalid = validateProbes(c);
    if (invalid) throw invalidInput(`container ${c.name}: ${invalid}`);
    const usesExec = [c.startupProbe, c.readinessProbe, c.livenessProbe].some((p) => p?.exec);
    if (usesExec && !options.runtime.exec) {
      throw invalidInput(`container ${c.name}: an exec probe needs a runtime with exec`);
    }
    const msPerSecond = options.msPerSecond ?? 1000;
    if (!(msPerSecond > 0)) throw invalidInput('msPerSecond must be positive');
    this.#o = options;
    this.#msPerSecond = msPerSecond;
    this.#log = (options.logger ?? silentLogger).child({ container: c.name });
    this.#target = {
      container: structuredClone(c),
      runtime: options.runtime,
      userAgent: options.userAgent ?? 'kube-probe/1.37',
    };
    this.#startedAtMs = (options.startedAt ?? new Date()).getTime();
    this.#started = !c.startupProbe;
    this.#readinessOk = !c.readinessProbe;
    this.#reported = this.state;
  }

  /**
   * The current state. At first `started` is false when there is a startup probe, and `ready`
   * is false when there is a startup or a readiness probe.
   */
  get state(): ProbeState {
    return { started: this.#started, ready: this.#started && this.#readinessOk };
  }

  /**
   * The message of the latest failed (or errored) attempt of `kind`, or of any probe without
   * `kind`, as in the event (`Readiness probe failed: HTTP probe failed with statuscode: 500`).
   * Kept after later successes, for diagnosis.
   */
  lastFailure(kind?: ProbeKind): string | undefined {
    return kind ? this.#lastFailure.get(kind) : this.#latestFailure;
  }

  /** Begins probing. Idempotent; does nothing after `stop()` or once `signal` fired. */
  start(): void {
    if (this.#running || this.#stopper.signal.aborted) return;
    const signal = this.#o.signal;
    if (signal?.aborted) return;
    this.#running = true;
    if (signal) {
      const onAbort = (): void => void this.stop();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#stopper.signal.addEventListener('abort', () =>
        signal.removeEventListener('abort', onAbort),
      );
    }
    for (const kind of ['startup', 'readiness', 'liveness'] as const) {
      const probe = this.#target.container[PROBE_FIELD[kind]];
      if (probe) this.#loops.push(this.#work(kind, probe));
    }
  }

  /** Stops liveness and startup probing for a graceful shutdown; readiness goes on. Idempotent. */
  markTerminating(): void {
    this.#terminating = true;
    this.#trigger('startup');
    this.#trigger('liveness');
  }

  /** Stops probing and resolves once every probe loop ended. Idempotent. */
  async stop(): Promise<void> {
    this.#stopper.abort();
    for (const wake of this.#wakers.values()) wake.abort();
    await Promise.allSettled(this.#loops);
  }

  /** A method, not a getter, so TypeScript does not keep a check narrowed across an await. */
  #stopped(): boolean {
    return this.#stopper.signal.aborted;
  }

  /** The worker of one probe: probe on each tick until it has nothing left to do. */
  async #work(kind: ProbeKind, probe: V1Probe): Promise<void> {
    const timing = timingOf(probe, kind, this.#msPerSecond);
    const run: Run = { last: undefined, count: 0 };
    let nextTick = performance.now() + timing.periodMs;
    try {
      while (!this.#stopped()) {
        if (!(await this.#tick(kind, probe, timing, run)) || this.#stopped()) return;
        // Wait for the next tick (in slices, as timers cannot wait longer than about 24 days).
        while (!this.#stopped() && !this.#triggered.has(kind)) {
          const now = performance.now();
          if (now >= nextTick) break;
          await this.#pause(kind, Math.min(nextTick - now, MAX_TIMER_MS));
        }
        this.#triggered.delete(kind);
        const after = performance.now();
        if (after >= nextTick) {
          nextTick += (Math.floor((after - nextTick) / timing.periodMs) + 1) * timing.periodMs;
        }
      }
    } catch (err) {
      this.#log.error({ err, probe: kind }, 'probe worker failed');
    }
  }

  /** Resolves after `ms`, on `stop()`, or when the worker is triggered. */
  async #pause(kind: ProbeKind, ms: number): Promise<void> {
    const wake = new AbortController();
    this.#wakers.set(kind, wake);
    await sleep(ms, wake.signal);
    this.#wakers.delete(kind);
  }

  #trigger(kind: ProbeKind): void {
    this.#triggered.add(kind);
    this.#wakers.get(kind)?.abort();
  }

  /** One tick of a worker (the kubelet's doProbe). False when the worker is done for good. */
  async #tick(kind: ProbeKind, probe: V1Probe, timing: Timing, run: Run): Promise<boolean> {
    if (this.#terminating && kind !== 'readiness') return false;
    const elapsedSeconds = Math.floor((Date.now() - this.#startedAtMs) / this.#msPerSecond);
    if (elapsedSeconds < timing.initialDelaySeconds) return true;
    if (kind === 'startup' ? this.#started : !this.#started) return kind !== 'startup';

    const result = await this.#attempt(kind, probe, timing);
    if (this.#stopped() || (this.#terminating && kind !== 'readiness')) return false;
    if (!result) return true;
    const outcome = result.outcome === 'failure' ? 'failure' : 'success';
    if (run.last === outcome) run.count++;
    else {
      run.last = outcome;
      run.count = 1;
    }
    if (outcome === 'failure' && run.count < timing.failureThreshold) return true;
    if (outcome === 'success' && run.count < timing.successThreshold) return true;

    if (kind === 'readiness') {
      if (this.#readinessOk !== (outcome === 'success')) {
        this.#readinessOk = outcome === 'success';
        this.#log.info({ probe: kind, ready: this.#readinessOk }, 'readiness changed');
        this.#report();
      }
      return true;
    }
    if (outcome === 'success') {
      if (kind === 'liveness') return true;
      this.#started = true;
      this.#log.info({ probe: kind }, 'container started');
      this.#report();
      if (!this.#stopped()) this.#trigger('readiness');
      return false;
    }
    const reason: RestartReason = kind === 'liveness' ? 'LivenessProbe' : 'StartupProbe';
    const message = `Container ${this.#target.container.name} failed ${kind} probe, will be restarted`;
    this.#log.info({ probe: kind, reason }, message);
    this.#call('onRestartNeeded', () =>
      this.#o.onRestartNeeded?.(reason, message, probe.terminationGracePeriodSeconds),
    );
    return false;
  }

  /** One attempt, retried while it errors; its events recorded. Undefined when it errored. */
  async #attempt(
    kind: ProbeKind,
    probe: V1Probe,
    timing: Timing,
  ): Promise<ProbeResult | undefined> {
    let error: unknown;
    for (let i = 0; i < MAX_ATTEMPTS && !this.#stopped(); i++) {
      let result: ProbeResult;
      try {
        result = await runProbe(probe, this.#target, timing.timeoutMs, this.#stopper.signal);
      } catch (err) {
        error = err;
        continue;
      }
      if (this.#stopped()) return undefined;
      this.#log.debug({ probe: kind, outcome: result.outcome, output: result.output }, 'probed');
      if (result.outcome === 'failure') {
        this.#failed(kind, `${LABEL[kind]} probe failed: ${result.output}`);
      } else if (result.outcome === 'warning') {
        this.#event('ProbeWarning', `${LABEL[kind]} probe warning: ${result.output}`);
      }
      return result;
    }
    if (this.#stopped()) return undefined;
    const text = error instanceof Error ? error.message : String(error);
    this.#log.warn({ probe: kind, err: error }, 'probe errored');
    this.#failed(kind, `${LABEL[kind]} probe errored and resulted in unknown state: ${text}`);
    return undefined;
  }

  #failed(kind: ProbeKind, message: string): void {
    this.#lastFailure.set(kind, message);
    this.#latestFailure = message;
    this.#event('Unhealthy', message);
  }

  #event(reason: ProbeEventReason, message: string): void {
    this.#call('onEvent', () => this.#o.onEvent?.('Warning', reason, message));
  }

  #report(): void {
    const state = this.state;
    if (state.started === this.#reported.started && state.ready === this.#reported.ready) return;
    this.#reported = state;
    this.#call('onChange', () => this.#o.onChange?.(state));
  }

  #call(name: string, fn: () => void): void {
    if (this.#stopped()) return;
    try {
      fn();
    } catch (err) {
      this.#log.error({ err, callback: name }, 'probe callback threw');
    }
  }
}

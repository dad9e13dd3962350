/**
 * The process provider's side of container probes (the engine is src/probes/): each run of a
 * container is a start to the engine's ProbeManager, exec probes run inside the pod's namespaces
 * through the provider's exec, and a failed liveness or startup probe kills the container so its
 * restart policy applies.
 */
import type { V1Pod } from '../../wire.js';
import { PassThrough } from 'node:stream';
import type { Logger } from '../../log.js';
import {
  ProbeManager,
  type ContainerStart,
  type ProbeRestart,
  type ProbeRuntime,
  type ProbeState,
} from '../../probes/index.js';
import type { AttachStreams, PodEvent } from '../../provider.js';
import type { PodRunner } from './pod.js';
import type { ContainerRecord, PodRecord } from './state.js';

/** The most output of an exec probe that is kept, as the kubelet keeps it. */
const MAX_OUTPUT_CHARS = 10_240;

export interface ProbingOptions {
  /** The address httpGet, tcpSocket and grpc probes dial. */
  readonly podIP: (runner: PodRunner) => string;
  readonly log: Logger;
  /** Runs a command in a running container; resolves to its exit code. */
  readonly exec: (
    runner: PodRunner,
    c: ContainerRecord,
    command: readonly string[],
    streams: AttachStreams,
    signal: AbortSignal,
  ) => Promise<number>;
  /** Called when a probe result changed a container's state. */
  readonly changed: (runner: PodRunner) => void;
  /** Records an Event about the pod (probe failures, restarts asked by a probe). */
  readonly event?: (pod: V1Pod, event: PodEvent) => void;
}

interface Probed {
  readonly runner: PodRunner;
  readonly runtime: ProbeRuntime;
}

/** The probers of every pod of a provider. `close()` stops them all. */
export class Probing {
  readonly #o: ProbingOptions;
  readonly #manager: ProbeManager;
  /** By pod UID. */
  readonly #pods = new Map<string, Probed>();
  /** SIGKILLs due after a probe asked for a restart. */
  readonly #killTimers = new Set<NodeJS.Timeout>();

  constructor(options: ProbingOptions) {
    this.#o = options;
    this.#manager = new ProbeManager({
      logger: options.log,
      onChange: (pod) => {
        const probed = this.#pods.get(pod.metadata?.uid ?? '');
        if (probed) options.changed(probed.runner);
      },
      onRestartNeeded: (restart) => {
        this.#kill(restart);
      },
      onEvent: (pod, event) => options.event?.(pod, event),
    });
  }

  /**
   * What the probes say about the container's current run: undefined when it has no probes;
   * not ready (and not started, with a startup probe) until its prober has a result.
   */
  state(record: PodRecord, name: string): ProbeState | undefined {
    const run = record.containers.find((x) => x.name === name)?.run?.run;
    return this.#manager.state(record.pod, name, run);
  }

  /**
   * Starts a prober for each running container with probes (a new one per run), tells those of
   * a pod being stopped that it terminates, and stops the others.
   */
  sync(runner: PodRunner): void {
    const uid = runner.record.pod.metadata?.uid ?? '';
    let probed = this.#pods.get(uid);
    if (probed?.runner !== runner) {
      probed = { runner, runtime: this.#runtime(runner) };
      this.#pods.set(uid, probed);
    }
    const running: ContainerStart[] = [];
    if (!runner.terminal) {
      for (const c of runner.record.containers) {
        if (c.state.kind !== 'running' || c.run === undefined) continue;
        running.push({ name: c.name, instance: c.run.run, startedAt: new Date(c.run.startedAt) });
      }
    }
    this.#manager.sync(runner.record.pod, probed.runtime, running, runner.stopping);
  }

  /** Exec probes run as `kubectl exec` does, their output kept up to the kubelet's limit. */
  #runtime(runner: PodRunner): ProbeRuntime {
    return {
      podIP: this.#o.podIP(runner),
      exec: async (name, command, { signal }) => {
        const c = runner.container(name);
        if (c?.state.kind !== 'running') throw new Error(`container ${name} is not running`);
        const out = new PassThrough();
        let output = '';
        out.on('data', (d: Buffer) => {
          if (output.length < MAX_OUTPUT_CHARS) output += d.toString();
        });
        const streams = { stdout: out, stderr: out, tty: false };
        const exitCode = await this.#o.exec(runner, c, command, streams, signal);
        return { exitCode, output };
      },
    };
  }

  /** SIGTERM now, SIGKILL after the grace period if the same run still runs. */
  #kill(restart: ProbeRestart): void {
    const probed = this.#pods.get(restart.pod.metadata?.uid ?? '');
    const c = probed?.runner.container(restart.container);
    if (!probed || c?.run?.run !== restart.instance) return;
    const { runner } = probed;
    runner.signal(c, 'SIGTERM');
    const timer = setTimeout(() => {
      this.#killTimers.delete(timer);
      if (c.run?.run === restart.instance && c.state.kind === 'running') {
        runner.signal(c, 'SIGKILL');
      }
    }, restart.gracePeriodSeconds * 1000);
    timer.unref();
    this.#killTimers.add(timer);
  }

  /** Stops the probers of the pod with `uid`. */
  forget(uid: string): void {
    this.#pods.delete(uid);
    this.#manager.forget(uid);
  }

  /** Stops every prober and pending kill; resolves when the probe loops have ended. */
  async close(): Promise<void> {
    for (const timer of this.#killTimers) clearTimeout(timer);
    this.#killTimers.clear();
    this.#pods.clear();
    await this.#manager.close();
  }
}

/**
 * The process provider's side of container probes (the prober itself is probes.ts): one
 * `ContainerProber` per run of each container with probes, as the kubelet makes one per
 * container ID; its state feeds the container's `started` and `ready`, and a failed liveness or
 * startup probe kills the container so its restart policy applies.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { PassThrough } from 'node:stream';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { AttachStreams, PodEvent } from '../../provider.js';
import type { PodRunner } from './pod.js';
import { ContainerProber, type ProbeState } from './probes.js';
import type { ContainerRecord, PodRecord } from './state.js';

/** The most output of an exec probe that is kept, as the kubelet keeps it. */
const MAX_OUTPUT_CHARS = 10_240;

export interface ProbingOptions {
  readonly podIP: string;
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

interface Entry {
  readonly run: number;
  readonly prober: ContainerProber;
  terminating: boolean;
}

const hasProbes = (c: V1Container | undefined): c is V1Container =>
  c !== undefined &&
  (c.startupProbe !== undefined || c.readinessProbe !== undefined || c.livenessProbe !== undefined);

/** The probers of every pod of a provider. `close()` stops them all. */
export class Probing {
  readonly #o: ProbingOptions;
  /** By `<pod uid>/<container>`: the prober of the container's current run. */
  readonly #entries = new Map<string, Entry>();
  /** SIGKILLs due after a probe asked for a restart. */
  readonly #killTimers = new Set<NodeJS.Timeout>();

  constructor(options: ProbingOptions) {
    this.#o = options;
  }

  /**
   * What the probes say about the container's current run: undefined when it has no probes;
   * not ready (and not started, with a startup probe) until its prober has a result.
   */
  state(record: PodRecord, name: string): ProbeState | undefined {
    const spec = [
      ...(record.pod.spec?.initContainers ?? []),
      ...(record.pod.spec?.containers ?? []),
    ].find((x) => x.name === name);
    if (!hasProbes(spec)) return undefined;
    const c = record.containers.find((x) => x.name === name);
    const entry = this.#entries.get(`${record.pod.metadata?.uid ?? ''}/${name}`);
    if (!entry || entry.run !== c?.run?.run) return { started: !spec.startupProbe, ready: false };
    return entry.prober.state;
  }

  /**
   * Starts a prober for each running container with probes (a new one per run), tells those of
   * a pod being stopped that it terminates, and stops the others.
   */
  sync(runner: PodRunner): void {
    const uid = runner.record.pod.metadata?.uid ?? '';
    for (const c of runner.record.containers) {
      const spec = runner.spec(c.name);
      if (!hasProbes(spec)) continue;
      const key = `${uid}/${c.name}`;
      const current = this.#entries.get(key);
      const run = c.run?.run;
      if (c.state.kind !== 'running' || run === undefined || runner.terminal) {
        if (current) {
          this.#entries.delete(key);
          void current.prober.stop();
        }
        continue;
      }
      if (current?.run === run) {
        if (runner.stopping && !current.terminating) {
          current.terminating = true;
          current.prober.markTerminating();
        }
        continue;
      }
      if (current) void current.prober.stop();
      this.#start(runner, c, spec, run, key);
    }
  }

  #start(runner: PodRunner, c: ContainerRecord, spec: V1Container, run: number, key: string): void {
    const log = this.#o.log.child({ pod: runner.key });
    try {
      const prober = new ContainerProber({
        container: spec,
        podIP: this.#o.podIP,
        startedAt: new Date(c.run?.startedAt ?? Date.now()),
        logger: log,
        exec: async (command, signal) => {
          const out = new PassThrough();
          let output = '';
          out.on('data', (d: Buffer) => {
            if (output.length < MAX_OUTPUT_CHARS) output += d.toString();
          });
          const streams = { stdout: out, stderr: out, tty: false };
          const exitCode = await this.#o.exec(runner, c, command, streams, signal);
          return { exitCode, output };
        },
        onChange: () => {
          this.#o.changed(runner);
        },
        onRestartNeeded: (reason, message, grace) => {
          log.info({ container: c.name, reason }, message);
          this.#o.event?.(runner.record.pod, { type: 'Normal', reason: 'Killing', message });
          this.#kill(runner, c, run, grace);
        },
        onEvent: (type, reason, message) => {
          log.info({ container: c.name, type, reason }, message);
          this.#o.event?.(runner.record.pod, { type, reason, message });
        },
      });
      this.#entries.set(key, { run, prober, terminating: false });
      prober.start();
    } catch (err) {
      log.error({ container: c.name, err: errorMessage(err) }, 'cannot probe the container');
    }
  }

  /** SIGTERM now, SIGKILL after the grace period if the same run still runs. */
  #kill(runner: PodRunner, c: ContainerRecord, run: number, grace: number | undefined): void {
    const seconds = grace ?? runner.record.pod.spec?.terminationGracePeriodSeconds ?? 30;
    runner.signal(c, 'SIGTERM');
    const timer = setTimeout(() => {
      this.#killTimers.delete(timer);
      if (c.run?.run === run && c.state.kind === 'running') runner.signal(c, 'SIGKILL');
    }, seconds * 1000);
    timer.unref();
    this.#killTimers.add(timer);
  }

  /** Stops the probers of the pod with `uid`. */
  forget(uid: string): void {
    for (const [key, entry] of this.#entries) {
      if (!key.startsWith(`${uid}/`)) continue;
      this.#entries.delete(key);
      void entry.prober.stop();
    }
  }

  /** Stops every prober and pending kill; resolves when the probe loops have ended. */
  async close(): Promise<void> {
    for (const timer of this.#killTimers) clearTimeout(timer);
    this.#killTimers.clear();
    const stopping = [...this.#entries.values()].map((e) => e.prober.stop());
    this.#entries.clear();
    await Promise.all(stopping);
  }
}

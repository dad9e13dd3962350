/**
 * The probers of every pod of a local provider (the kubelet's prober manager): one
 * {@link ContainerProber} per start of each container with probes, as the kubelet makes one per
 * container ID. The provider tells it which containers run ({@link ProbeManager.sync}), reads
 * their `started`/`ready` back ({@link ProbeManager.state}), and acts on the restarts it asks for.
 */
import type { V1Container, V1Pod } from '../wire.js';
import { errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { PodEvent } from '../provider.js';
import { ContainerProber, type ProbeState, type RestartReason } from './prober.js';
import type { ProbeRuntime } from './runtime.js';

/** One start of a container, as the provider runs it. */
export interface ContainerStart {
  /** The container's name in the pod spec. */
  readonly name: string;
  /**
   * Which start this is (a run number, a container ID). Another value is another container to
   * the prober: readiness false again, the startup probe again, counts reset.
   */
  readonly instance: string | number;
  /** When this start began, for `initialDelaySeconds`. */
  readonly startedAt: Date;
}

/** A restart a failed liveness or startup probe asks for. */
export interface ProbeRestart {
  readonly pod: V1Pod;
  readonly container: string;
  /** The start that failed: a provider kills it only while it still runs. */
  readonly instance: string | number;
  readonly reason: RestartReason;
  /** The kubelet's words, also the message of the `Killing` event already recorded. */
  readonly message: string;
  /**
   * How long the container may take to stop after SIGTERM: the failed probe's
   * `terminationGracePeriodSeconds`, else the pod's, else 30.
   */
  readonly gracePeriodSeconds: number;
}

export interface ProbeManagerOptions {
  /** Default: silent. Child loggers carry the pod's key and the container's name. */
  readonly logger?: Logger;
  /** Default: `kube-probe/1.37`. */
  readonly userAgent?: string;
  /** Milliseconds per probe second; see {@link ContainerProberOptions.msPerSecond}. Default: 1000. */
  readonly msPerSecond?: number;
  /** Called when the `started` or `ready` of a container of `pod` changed. */
  readonly onChange?: (pod: V1Pod, container: string) => void;
  /**
   * Called once per container start whose liveness or startup probe failed `failureThreshold`
   * times: the provider stops that start (SIGTERM, then a kill after `gracePeriodSeconds`) and
   * its restart policy applies.
   */
  readonly onRestartNeeded?: (restart: ProbeRestart) => void;
  /**
   * Called for each event the kubelet records about probes: `Warning Unhealthy` (a failed
   * attempt), `Warning ProbeWarning`, and `Normal Killing` before a restart is asked for.
   */
  readonly onEvent?: (pod: V1Pod, event: PodEvent) => void;
}

interface Entry {
  readonly instance: string | number;
  /** Undefined when the container's probes are invalid: it never becomes ready. */
  readonly prober: ContainerProber | undefined;
  terminating: boolean;
}

const hasProbes = (c: V1Container | undefined): c is V1Container =>
  c !== undefined &&
  (c.startupProbe !== undefined || c.readinessProbe !== undefined || c.livenessProbe !== undefined);

const specOf = (pod: V1Pod, name: string): V1Container | undefined =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
    (c) => c.name === name,
  );

/**
 * Lifecycle: probers start in `sync`, stop when their container is no longer listed as running,
 * on `forget` and on `close`. Callbacks are called synchronously from the probe loops; none is
 * called for a prober once it was stopped. Not safe to share between providers.
 */
export class ProbeManager {
  readonly #o: ProbeManagerOptions;
  readonly #log: Logger;
  /** By `<pod uid>/<container>`: the prober of the container's current start. */
  readonly #entries = new Map<string, Entry>();
  /** By pod UID: the latest pod object `sync` was given, for callbacks. */
  readonly #pods = new Map<string, V1Pod>();

  constructor(options: ProbeManagerOptions = {}) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
  }

  /**
   * What the probes say about the container's start `instance`: undefined when the container
   * has no probes (it is started and ready as soon as it runs); not ready (and not started, with
   * a startup probe) until that start's prober has a result.
   */
  state(
    pod: V1Pod,
    container: string,
    instance: string | number | undefined,
  ): ProbeState | undefined {
    const spec = specOf(pod, container);
    if (!hasProbes(spec)) return undefined;
    const entry = this.#entries.get(`${pod.metadata?.uid ?? ''}/${container}`);
    if (!entry?.prober || instance === undefined || entry.instance !== instance) {
      return { started: !spec.startupProbe, ready: false };
    }
    return entry.prober.state;
  }

  /**
   * Makes the probers of `pod` match `running`, the containers of it that run now: a prober for
   * each with probes (a new one for a new start), none for the others. With `terminating` (the
   * pod is being stopped) liveness and startup probing stop, readiness goes on. Idempotent;
   * call it whenever a container of the pod starts or stops (or on a regular tick).
   */
  sync(
    pod: V1Pod,
    runtime: ProbeRuntime,
    running: readonly ContainerStart[],
    terminating = false,
  ): void {
    const uid = pod.metadata?.uid ?? '';
    this.#pods.set(uid, pod);
    const seen = new Set<string>();
    for (const start of running) {
      const spec = specOf(pod, start.name);
      if (!hasProbes(spec)) continue;
      const key = `${uid}/${start.name}`;
      seen.add(key);
      const current = this.#entries.get(key);
      if (current?.instance === start.instance) {
        if (terminating && !current.terminating) {
          current.terminating = true;
          current.prober?.markTerminating();
        }
        continue;
      }
      if (current) void current.prober?.stop();
      this.#start(uid, runtime, spec, start, terminating, key);
    }
    for (const [key, entry] of this.#entries) {
      if (!key.startsWith(`${uid}/`) || seen.has(key)) continue;
      this.#entries.delete(key);
      void entry.prober?.stop();
    }
  }

  #start(
    uid: string,
    runtime: ProbeRuntime,
    spec: V1Container,
    start: ContainerStart,
    terminating: boolean,
    key: string,
  ): void {
    const podOf = (): V1Pod => this.#pods.get(uid) ?? {};
    const meta = podOf().metadata;
    const log = this.#log.child({ pod: `${meta?.namespace ?? ''}/${meta?.name ?? ''}` });
    let prober: ContainerProber | undefined;
    try {
      prober = new ContainerProber({
        container: spec,
        runtime,
        startedAt: start.startedAt,
        logger: log,
        ...(this.#o.userAgent === undefined ? {} : { userAgent: this.#o.userAgent }),
        ...(this.#o.msPerSecond === undefined ? {} : { msPerSecond: this.#o.msPerSecond }),
        onChange: () => this.#o.onChange?.(podOf(), spec.name),
        onRestartNeeded: (reason, message, probeGraceSeconds) => {
          const pod = podOf();
          this.#o.onEvent?.(pod, { type: 'Normal', reason: 'Killing', message });
          this.#o.onRestartNeeded?.({
            pod,
            container: spec.name,
            instance: start.instance,
            reason,
            message,
            gracePeriodSeconds: probeGraceSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30,
          });
        },
        onEvent: (type, reason, message) => {
          log.info({ container: spec.name, type, reason }, message);
          this.#o.onEvent?.(podOf(), { type, reason, message });
        },
      });
    } catch (err) {
      log.error({ container: spec.name, err: errorMessage(err) }, 'cannot probe the container');
    }
    // An invalid probe is remembered too, so that it is reported once per start, not per sync.
    this.#entries.set(key, { instance: start.instance, prober, terminating });
    if (terminating) prober?.markTerminating();
    prober?.start();
  }

  /** Stops the probers of the pod with `uid` and forgets it. */
  forget(uid: string): void {
    this.#pods.delete(uid);
    for (const [key, entry] of this.#entries) {
      if (!key.startsWith(`${uid}/`)) continue;
      this.#entries.delete(key);
      void entry.prober?.stop();
    }
  }

  /** Stops every prober; resolves when their probe loops have ended. */
  async close(): Promise<void> {
    const stopping = [...this.#entries.values()].map((e) => e.prober?.stop() ?? Promise.resolve());
    this.#entries.clear();
    this.#pods.clear();
    await Promise.all(stopping);
  }
}

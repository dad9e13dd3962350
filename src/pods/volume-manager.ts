import type { V1ConfigMap, V1Pod, V1Secret } from '../wire.js';
import { aborted } from '../abort.js';
import { errorCode, errorMessage, invalidInput } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import type { EventRecorder } from '../kube/events.js';
import { silentLogger, type Logger } from '../log.js';
import type { PodVolumes, Provider, ResolvedVolume } from '../provider.js';
import { WorkQueue, type WorkQueueStats } from '../queue/index.js';
import { podKey } from '../kubelet/pod-key.js';
import { isTerminal } from '../kubelet/pod-status.js';
import {
  podHasResolvedVolumes,
  volumeDigest,
  VolumeResolutionError,
  type TokenRequestSpec,
} from '../kubelet/volume-projection.js';
import { resolvePodVolumes, type VolumeSource } from './volumes.js';

export interface PodVolumeManagerOptions {
  readonly client: KubeClient;
  readonly provider: Provider & PodVolumes;
  readonly events: EventRecorder;
  readonly logger?: Logger;
  /** The pod bound to the node as the API server has it (the informer cache), by key. */
  readonly getPod: (key: string) => V1Pod | undefined;
  /**
   * How often the volumes of each pod are resolved again, so that config map, secret and
   * downward API changes reach the provider. Each pod waits a random 0.75 to 1.125 times this
   * between passes (30 to 45 s by default), which spreads the load. Objects read are shared
   * by all pods for a quarter of this (at most 10 s), so a change reaches the provider within
   * 1.375 times this (55 s by default). Default: 40 000 ms.
   */
  readonly refreshPeriodMs?: number;
  /** Pods resolved at once by the refresher. Default: 4. */
  readonly workers?: number;
  /** Called after every refresh pass of one pod (for metrics), like the pod queues' hook. */
  readonly onHandled?: (queue: string, seconds: number, ok: boolean) => void;
}

/** Longest a service-account token is used before it is refreshed, whatever its TTL (24 h). */
const MAX_TOKEN_AGE_MS = 24 * 3600_000;
/** Shortest wait between two passes over one pod that both succeeded. */
const MIN_WAIT_MS = 1_000;
/** Share of a token's lifetime after which it is refreshed (as the kubelet: at 80 %). */
const TOKEN_REFRESH_FRACTION = 0.8;

interface TrackedPod {
  readonly uid: string;
  /** Digest of each volume's content as the provider last received it; undefined: unknown. */
  digests: Map<string, string> | undefined;
  /** Failed passes in a row; each one doubles the wait before the next (1 s up to the period). */
  failures: number;
}

interface CachedToken {
  readonly token: string;
  /** When the token is due for refresh (epoch ms). */
  readonly refreshAtMs: number;
}

/** The answer of the TokenRequest API, as far as it is read here. */
interface TokenRequestAnswer {
  readonly spec?: { readonly expirationSeconds?: number };
  readonly status?: { readonly token?: string; readonly expirationTimestamp?: string };
}

/**
 * Resolves the content of the pods' configMap, secret, downwardAPI and projected volumes for a
 * provider with `setPodVolumes`, and keeps it current:
 * - before a pod is created, {@link resolve} gives every volume (the pod controller hands them
 *   to the provider, then creates the pod and calls {@link track});
 * - a refresher (one keyed queue with a few workers) resolves each tracked pod again every
 *   `refreshPeriodMs` (jittered) and when a service-account token is due, and passes the
 *   provider only the volumes whose content digest changed;
 * - tokens are requested through the TokenRequest API, bound to the pod, cached per pod and
 *   refreshed once 80 % of their lifetime (or 24 h) has passed, as the kubelet does.
 *
 * Memory per pod is one digest per volume and the pod's current tokens; the content itself is
 * not kept. {@link forget} drops a pod (called once the provider no longer runs it).
 */
export class PodVolumeManager {
  readonly #o: PodVolumeManagerOptions;
  readonly #log: Logger;
  readonly #periodMs: number;
  readonly #queue: WorkQueue;
  readonly #pods = new Map<string, TrackedPod>();
  /** Tokens by pod UID, then by request spec. */
  readonly #tokens = new Map<string, Map<string, CachedToken>>();
  /**
   * Config maps and secrets read in the last `#cacheMs`, by API path, shared by all pods: the
   * `kube-root-ca.crt` of a namespace is read once per period, not once per pod.
   */
  readonly #objects = new Map<
    string,
    { readonly atMs: number; readonly value: Promise<unknown> }
  >();
  readonly #cacheMs: number;
  #prunedAtMs = 0;

  constructor(options: PodVolumeManagerOptions) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
    this.#periodMs = options.refreshPeriodMs ?? 40_000;
    if (!(this.#periodMs > 0))
      throw invalidInput(
        `PodVolumeManager: refreshPeriodMs must be a positive number, got ${String(this.#periodMs)}`,
      );
    // Short enough that a change still reaches the provider within a period and a bit.
    this.#cacheMs = Math.min(10_000, this.#periodMs / 4);
    const workers = options.workers ?? 4;
    if (!Number.isInteger(workers) || workers < 1)
      throw invalidInput(
        `PodVolumeManager: workers must be an integer >= 1, got ${String(workers)}`,
      );
    const onHandled = options.onHandled;
    this.#queue = new WorkQueue({
      name: 'volumes',
      workers,
      // Failures are handled (and rescheduled) inside #refresh, which never throws: a failed
      // pod is looked at again after a period, not after the queue's growing backoff.
      handler: async (key, signal) => {
        const started = performance.now();
        const ok = await this.#refresh(key, signal);
        onHandled?.('volumes', (performance.now() - started) / 1000, ok);
      },
    });
  }

  /** Whether the core resolves any volume of `pod`. */
  static needed(pod: V1Pod): boolean {
    return podHasResolvedVolumes(pod);
  }

  /**
   * Every configMap, secret, downwardAPI and projected volume of `pod`. Throws
   * {@link VolumeResolutionError} (its message is the FailedMount Event message).
   */
  resolve(pod: V1Pod, signal: AbortSignal): Promise<ResolvedVolume[]> {
    return resolvePodVolumes(pod, this.#source(signal));
  }

  /** The provider now has `pod` with `volumes`: keep them current from now on. */
  track(pod: V1Pod, volumes: readonly ResolvedVolume[]): void {
    const key = podKey(pod);
    const digests = new Map(volumes.map((v) => [v.name, volumeDigest(v)]));
    this.#pods.set(key, { uid: pod.metadata?.uid ?? '', digests, failures: 0 });
    this.#schedule(key, pod.metadata?.uid ?? '');
  }

  /**
   * The provider already ran `pod` when the agent started: what it holds is unknown (and its
   * tokens may be old), so every volume is resolved and passed to it at once.
   */
  adopt(pod: V1Pod): void {
    if (!podHasResolvedVolumes(pod)) return;
    const key = podKey(pod);
    this.#pods.set(key, { uid: pod.metadata?.uid ?? '', digests: undefined, failures: 0 });
    this.#queue.add(key);
  }

  /** Resolves the pod's volumes again soon (its labels or annotations changed). */
  refreshSoon(key: string): void {
    if (this.#pods.has(key)) this.#queue.add(key);
  }

  /** Stops keeping the pod's volumes (with `uid`: only that pod) and drops its tokens. */
  forget(key: string, uid?: string): void {
    const entry = this.#pods.get(key);
    if (entry && (uid === undefined || entry.uid === uid)) {
      this.#pods.delete(key);
      this.#queue.forget(key);
      this.#tokens.delete(entry.uid);
    }
    if (uid !== undefined) this.#tokens.delete(uid);
  }

  /** Pods whose volumes are kept current. */
  get size(): number {
    return this.#pods.size;
  }

  stats(): WorkQueueStats {
    return this.#queue.stats();
  }

  /** Runs the refresher until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    return this.#queue.run(signal);
  }

  async #refresh(key: string, signal: AbortSignal): Promise<boolean> {
    const entry = this.#pods.get(key);
    if (!entry) return true;
    const pod = this.#o.getPod(key);
    if (!pod || pod.metadata?.uid !== entry.uid || isTerminal(pod.status)) {
      // Gone, replaced or finished: nothing will read its volumes again.
      this.forget(key, entry.uid);
      return true;
    }
    let volumes: ResolvedVolume[];
    try {
      volumes = await this.resolve(pod, signal);
    } catch (err) {
      if (aborted(signal)) return true;
      this.#log.warn({ pod: key, err: errorMessage(err) }, 'could not refresh the pod volumes');
      // A pod being deleted may lose its objects first (a namespace going away): no Event.
      if (err instanceof VolumeResolutionError && !pod.metadata.deletionTimestamp)
        this.#o.events.record(
          { kind: 'Pod', metadata: pod.metadata },
          'Warning',
          'FailedMount',
          err.message,
        );
      this.#retryLater(key, entry);
      return false;
    }
    if (this.#pods.get(key) !== entry) return true; // forgotten meanwhile
    const digests = new Map<string, string>();
    const changed: ResolvedVolume[] = [];
    for (const v of volumes) {
      const digest = volumeDigest(v);
      digests.set(v.name, digest);
      if (entry.digests?.get(v.name) !== digest) changed.push(v);
    }
    if (changed.length > 0) {
      try {
        await this.#o.provider.setPodVolumes(pod, changed, signal);
      } catch (err) {
        if (aborted(signal)) return true;
        if (errorCode(err) === 'NotFound') {
          this.forget(key, entry.uid);
          return true;
        }
        this.#log.warn(
          { pod: key, volumes: changed.map((v) => v.name), err: errorMessage(err) },
          'the provider did not take the new volume content',
        );
        this.#retryLater(key, entry);
        return false;
      }
      if (this.#pods.get(key) !== entry) return true;
      entry.digests = digests;
      this.#log.info(
        { pod: key, volumes: changed.map((v) => v.name) },
        'volume content changed: passed to the provider',
      );
    }
    entry.failures = 0;
    this.#schedule(key, entry.uid);
    return true;
  }

  /** Looks at the pod again after a jittered period, or when one of its tokens is due. */
  #schedule(key: string, uid: string): void {
    let delay = this.#periodMs * (0.75 + 0.375 * Math.random());
    const tokens = this.#tokens.get(uid);
    if (tokens) {
      const now = Date.now();
      for (const t of tokens.values()) delay = Math.min(delay, t.refreshAtMs - now);
    }
    this.#queue.addAfter(key, Math.max(MIN_WAIT_MS, delay));
  }

  /**
   * After a failed pass: again after 1 s, doubling up to the refresh period. A token already
   * due does not shorten this, so an API server that refuses TokenRequests is not asked again
   * and again.
   */
  #retryLater(key: string, entry: TrackedPod): void {
    entry.failures++;
    const delay = Math.min(this.#periodMs, 1_000 * 2 ** Math.min(entry.failures - 1, 16));
    this.#queue.addAfter(key, delay);
  }

  #source(signal: AbortSignal): VolumeSource {
    return {
      getConfigMap: (ns, name) =>
        this.#read<V1ConfigMap>(`/api/v1/namespaces/${ns}/configmaps/${name}`, signal),
      getSecret: (ns, name) =>
        this.#read<V1Secret>(`/api/v1/namespaces/${ns}/secrets/${name}`, signal),
      getServiceAccountToken: (pod, spec) => this.#token(pod, spec, signal),
    };
  }

  /**
   * GET `path` (one object the Node authorizer lets this node read), or the answer of a GET of
   * it in the last `#cacheMs`. Absent objects and failures are not kept: a missing object may
   * appear at any moment, and the pod waiting for it should see it at its next retry.
   */
  #read<T>(path: string, signal: AbortSignal): Promise<T | undefined> {
    const now = Date.now();
    const hit = this.#objects.get(path);
    if (hit && now - hit.atMs < this.#cacheMs) return hit.value as Promise<T | undefined>;
    const value = this.#o.client.get<T>(path, signal);
    const entry = { atMs: now, value };
    this.#objects.set(path, entry);
    const drop = (): void => {
      if (this.#objects.get(path) === entry) this.#objects.delete(path);
    };
    value.then((v) => {
      if (v === undefined) drop();
    }, drop);
    if (now - this.#prunedAtMs >= this.#cacheMs) {
      this.#prunedAtMs = now;
      for (const [k, e] of this.#objects)
        if (now - e.atMs >= this.#cacheMs) this.#objects.delete(k);
    }
    return value;
  }

  /**
   * A token for `spec` bound to `pod`: the cached one until it is due, else a new one from the
   * TokenRequest API (`POST serviceaccounts/<name>/token`), which the Node authorizer allows a
   * node for the pods bound to it.
   */
  async #token(pod: V1Pod, spec: TokenRequestSpec, signal: AbortSignal): Promise<string> {
    const uid = pod.metadata?.uid ?? '';
    const cacheKey = `${spec.serviceAccountName}\u0000${spec.audience ?? ''}\u0000${String(spec.expirationSeconds)}`;
    const cached = this.#tokens.get(uid)?.get(cacheKey);
    if (cached && Date.now() < cached.refreshAtMs) return cached.token;
    const ns = pod.metadata?.namespace ?? 'default';
    const requestedAt = Date.now();
    const answer = await this.#o.client.create<TokenRequestAnswer>(
      `/api/v1/namespaces/${ns}/serviceaccounts/${spec.serviceAccountName}/token`,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          // No audiences: the API server's own.
          ...(spec.audience === undefined ? {} : { audiences: [spec.audience] }),
          expirationSeconds: spec.expirationSeconds,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, uid },
        },
      },
      signal,
    );
    const status = answer.status;
    if (!status?.token) throw new Error('the TokenRequest answer has no token');
    const token = status.token;
    // The API server may grant a longer lifetime than asked (extended kube-api-access tokens).
    // Its answer's spec says how long; the lifetime never depends on the two clocks agreeing.
    const granted = answer.spec?.expirationSeconds;
    const expiresAt = Date.parse(status.expirationTimestamp ?? '');
    const ttlMs =
      granted !== undefined && granted > 0
        ? granted * 1000
        : Number.isFinite(expiresAt)
          ? expiresAt - requestedAt
          : spec.expirationSeconds * 1000;
    const refreshAtMs =
      requestedAt + Math.min(MAX_TOKEN_AGE_MS, Math.max(0, ttlMs) * TOKEN_REFRESH_FRACTION);
    let byPod = this.#tokens.get(uid);
    if (!byPod) this.#tokens.set(uid, (byPod = new Map<string, CachedToken>()));
    byPod.set(cacheKey, { token, refreshAtMs });
    this.#log.debug(
      { pod: podKey(pod), serviceAccount: spec.serviceAccountName, refreshAt: refreshAtMs },
      'service-account token issued',
    );
    return token;
  }
}

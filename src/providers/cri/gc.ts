/**
 * Garbage collection of the runtime's dead containers, sandboxes and unused images, with the
 * kubelet's defaults: the selection is pure functions (which containers, sandboxes and images
 * go), and {@link GarbageCollector} runs them periodically against the runtime.
 */
import { statfs } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { CriClient, Message } from './client.js';

/** A container of the runtime, as the collector sees it. */
export interface GcContainer {
  readonly id: string;
  readonly sandboxId: string;
  readonly podUid: string;
  /** The pod's container name. */
  readonly name: string;
  readonly attempt: number;
  /** Nanoseconds since the epoch. */
  readonly createdAt: bigint;
  /** The CRI state: `CONTAINER_CREATED`, `_RUNNING`, `_EXITED` or `_UNKNOWN`. */
  readonly state: string;
}

/** A sandbox of the runtime, as the collector sees it. */
export interface GcSandbox {
  readonly id: string;
  readonly podUid: string;
  readonly ready: boolean;
  /** Nanoseconds since the epoch. */
  readonly createdAt: bigint;
}

/** What the provider runs: the pods it has, and the runs of containers it still reads. */
export interface GcLive {
  /** Every pod the provider knows, by UID, with its current sandbox. */
  readonly pods: ReadonlyMap<string, { readonly sandboxId?: string }>;
  /** Containers never removed: each container's current run and the previous one (`--previous`). */
  readonly keepIds: ReadonlySet<string>;
}

/**
 * The dead containers to remove, as the kubelet's container GC chooses them: every dead
 * container of a pod that is gone; of a live pod, per container name, all but the newest
 * `maxPerPodContainer` dead ones. Running containers and `keepIds` always stay, and so does a
 * created one of a live pod (it may be starting).
 */
export function containersToRemove(
  containers: readonly GcContainer[],
  live: GcLive,
  maxPerPodContainer = 1,
): string[] {
  const groups = new Map<string, GcContainer[]>();
  const out: string[] = [];
  const dead = (c: GcContainer): boolean =>
    c.state !== 'CONTAINER_RUNNING' && c.state !== 'CONTAINER_CREATED';
  for (const c of containers) {
    if (c.state === 'CONTAINER_RUNNING' || live.keepIds.has(c.id)) continue;
    if (!live.pods.has(c.podUid)) {
      out.push(c.id);
      continue;
    }
    if (!dead(c)) continue;
    const k = `${c.podUid}/${c.name}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  for (const [k, group] of groups) {
    const kept = containers.filter(
      (c) => `${c.podUid}/${c.name}` === k && dead(c) && live.keepIds.has(c.id),
    ).length;
    group.sort((a, b) => b.attempt - a.attempt || (b.createdAt > a.createdAt ? 1 : -1));
    for (const c of group.slice(Math.max(0, maxPerPodContainer - kept))) out.push(c.id);
  }
  return out;
}

/**
 * The sandboxes to remove, as the kubelet's sandbox GC chooses them: not ready, with no
 * container left in them, and either of a pod that is gone or not the current (nor the newest)
 * sandbox of a live pod. `remaining` are the containers that stay after container GC.
 */
export function sandboxesToRemove(
  sandboxes: readonly GcSandbox[],
  remaining: readonly GcContainer[],
  live: GcLive,
): string[] {
  const used = new Set(remaining.map((c) => c.sandboxId));
  const newest = new Map<string, GcSandbox>();
  for (const s of sandboxes) {
    const n = newest.get(s.podUid);
    if (!n || s.createdAt > n.createdAt) newest.set(s.podUid, s);
  }
  return sandboxes
    .filter((s) => {
      if (s.ready || used.has(s.id)) return false;
      const pod = live.pods.get(s.podUid);
      if (!pod) return true;
      return s.id !== pod.sandboxId && newest.get(s.podUid) !== s;
    })
    .map((s) => s.id);
}

/** An image of the runtime, as the collector sees it. */
export interface GcImage {
  readonly id: string;
  /** Its tags and digests: names a container or the sandbox image may use. */
  readonly names: readonly string[];
  readonly sizeBytes: number;
  /** Pinned by the runtime (the sandbox image is): never removed. */
  readonly pinned: boolean;
}

/** What the collector remembers of an image between passes, as the kubelet's image records. */
export interface ImageRecord {
  readonly firstDetectedMs: number;
  /** When a container was last seen using it; 0 for never. */
  readonly lastUsedMs: number;
}

/** Whether the image is one of `names` (by ID, tag or digest). */
function imageIn(image: GcImage, names: ReadonlySet<string>): boolean {
  return names.has(image.id) || image.names.some((n) => names.has(n));
}

/**
 * The image records after a detection at `nowMs`: a new image is first detected now, an image
 * in use (named by a container) is used now, an image the runtime no longer has is forgotten.
 */
export function detectImages(
  records: ReadonlyMap<string, ImageRecord>,
  images: readonly GcImage[],
  inUse: ReadonlySet<string>,
  nowMs: number,
): Map<string, ImageRecord> {
  const out = new Map<string, ImageRecord>();
  for (const image of images) {
    const old = records.get(image.id);
    out.set(image.id, {
      firstDetectedMs: old?.firstDetectedMs ?? nowMs,
      lastUsedMs: imageIn(image, inUse) ? nowMs : (old?.lastUsedMs ?? 0),
    });
  }
  return out;
}

export interface ImageGcPolicy {
  /** Default: 85 (the kubelet's `imageGCHighThresholdPercent`); 100 turns image GC off. */
  readonly highThresholdPercent: number;
  /** Default: 80 (`imageGCLowThresholdPercent`). */
  readonly lowThresholdPercent: number;
  /** Default: 120 000 (`imageMinimumGCAge`, 2 minutes). */
  readonly minimumAgeMs: number;
}

/**
 * The images to remove, as the kubelet's image GC chooses them: nothing while the image
 * filesystem's usage is under `highThresholdPercent`; at or above it, unused images, least
 * recently used first (then first detected), until the bytes freed bring usage down to
 * `lowThresholdPercent`. An image in use, pinned, one of `protectedNames` (the sandbox image)
 * or first detected less than `minimumAgeMs` ago never goes.
 */
export function imagesToRemove(input: {
  readonly images: readonly GcImage[];
  readonly records: ReadonlyMap<string, ImageRecord>;
  readonly inUse: ReadonlySet<string>;
  readonly protectedNames: ReadonlySet<string>;
  readonly capacityBytes: number;
  readonly availableBytes: number;
  readonly policy: ImageGcPolicy;
  readonly nowMs: number;
}): string[] {
  const { capacityBytes, availableBytes, policy } = input;
  if (capacityBytes <= 0 || policy.highThresholdPercent >= 100) return [];
  const usagePercent = 100 - Math.floor((availableBytes * 100) / capacityBytes);
  if (usagePercent < policy.highThresholdPercent) return [];
  const toFree = (capacityBytes * (100 - policy.lowThresholdPercent)) / 100 - availableBytes;
  if (toFree <= 0) return [];
  const candidates = input.images
    .filter((i) => !i.pinned && !imageIn(i, input.inUse) && !imageIn(i, input.protectedNames))
    .map((i) => ({ image: i, record: input.records.get(i.id) }))
    .filter(
      (c): c is { image: GcImage; record: ImageRecord } =>
        c.record !== undefined && input.nowMs - c.record.firstDetectedMs >= policy.minimumAgeMs,
    )
    .sort(
      (a, b) =>
        a.record.lastUsedMs - b.record.lastUsedMs ||
        a.record.firstDetectedMs - b.record.firstDetectedMs,
    );
  const out: string[] = [];
  let freed = 0;
  for (const c of candidates) {
    if (freed >= toFree) break;
    out.push(c.image.id);
    freed += c.image.sizeBytes;
  }
  return out;
}

/** A string or number field of a CRI message as text (64-bit integers arrive as strings). */
function text(v: unknown, otherwise: string): string {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : otherwise;
}

/** The collector's parsing of CRI messages. */
export function gcContainerOf(c: Message): GcContainer {
  const labels = (c.labels ?? {}) as Record<string, string>;
  return {
    id: String(c.id),
    sandboxId: text(c.pod_sandbox_id, ''),
    podUid: labels['io.kubernetes.pod.uid'] ?? '',
    name: labels['io.kubernetes.container.name'] ?? '',
    attempt: (c.metadata as { attempt?: number } | null)?.attempt ?? 0,
    createdAt: BigInt(text(c.created_at, '0')),
    state: String(c.state),
  };
}

export function gcSandboxOf(s: Message): GcSandbox {
  return {
    id: String(s.id),
    podUid: (s.metadata as { uid?: string } | null)?.uid ?? '',
    ready: s.state === 'SANDBOX_READY',
    createdAt: BigInt(text(s.created_at, '0')),
  };
}

export function gcImageOf(i: Message): GcImage {
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  return {
    id: String(i.id),
    names: [...strings(i.repo_tags), ...strings(i.repo_digests)],
    sizeBytes: Number(i.size ?? 0),
    pinned: i.pinned === true,
  };
}

/**
 * The runtime's sandbox (pause) image, from its verbose status (containerd's `config`:
 * `sandboxImage`, or `pinnedImages.sandbox` from containerd 2), or undefined.
 */
export function sandboxImageOf(info: Readonly<Record<string, string>>): string | undefined {
  try {
    const config = JSON.parse(info.config ?? '{}') as {
      sandboxImage?: unknown;
      pinnedImages?: { sandbox?: unknown };
    };
    const name = config.sandboxImage ?? config.pinnedImages?.sandbox;
    return typeof name === 'string' && name ? name : undefined;
  } catch {
    return undefined;
  }
}

export interface GarbageCollectorOptions {
  readonly cri: CriClient;
  /** Only sandboxes and containers labelled with this node are collected. */
  readonly nodeName: string;
  /** What the provider runs now; undefined while it does not know yet (before adoption). */
  readonly live: () => GcLive | undefined;
  /** Default: 60 000 (the kubelet's container GC period). */
  readonly containerIntervalMs?: number;
  /** Default: 300 000 (the kubelet's image GC period). */
  readonly imageIntervalMs?: number;
  /** Dead containers kept per container name of a live pod, beyond `keepIds`. Default: 1. */
  readonly maxPerPodContainer?: number;
  readonly imagePolicy?: Partial<ImageGcPolicy>;
  readonly logger: Logger;
}

/**
 * Runs container and image GC periodically until `close()`. Each pass lists the runtime anew
 * (level-triggered); a failed pass is logged and the next one tries again.
 */
export class GarbageCollector {
  readonly #o: GarbageCollectorOptions;
  readonly #abort = new AbortController();
  readonly #policy: ImageGcPolicy;
  #records = new Map<string, ImageRecord>();
  #loops: Promise<unknown> | undefined;

  constructor(options: GarbageCollectorOptions) {
    this.#o = options;
    this.#policy = {
      highThresholdPercent: options.imagePolicy?.highThresholdPercent ?? 85,
      lowThresholdPercent: options.imagePolicy?.lowThresholdPercent ?? 80,
      minimumAgeMs: options.imagePolicy?.minimumAgeMs ?? 120_000,
    };
  }

  /** Starts both periodic passes (once; later calls do nothing). */
  start(): void {
    this.#loops ??= Promise.all([
      this.#every(this.#o.containerIntervalMs ?? 60_000, 'container', (s) =>
        this.collectContainers(s),
      ),
      this.#every(this.#o.imageIntervalMs ?? 300_000, 'image', (s) => this.collectImages(s)),
    ]).catch(() => undefined);
  }

  /** Stops the passes and waits for one in flight to end. */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#loops;
  }

  async #every(
    intervalMs: number,
    what: string,
    pass: (signal: AbortSignal) => Promise<unknown>,
  ): Promise<void> {
    const signal = this.#abort.signal;
    const stopped = (): boolean => signal.aborted;
    while (!stopped()) {
      await delay(intervalMs, undefined, { signal }).catch(() => undefined);
      if (stopped()) return;
      try {
        await pass(signal);
      } catch (err) {
        if (!stopped())
          this.#o.logger.warn({ err: errorMessage(err) }, `${what} garbage collection failed`);
      }
    }
  }

  /** One container GC pass: removes the chosen containers, then sandboxes; returns their IDs. */
  async collectContainers(
    signal: AbortSignal,
  ): Promise<{ containers: string[]; sandboxes: string[] }> {
    if (!this.#o.live()) return { containers: [], sandboxes: [] };
    const selector = { label_selector: { 'virtual-kubelet.io/node': this.#o.nodeName } };
    const [cs, sbs] = await Promise.all([
      this.#o.cri.runtime<{ containers: Message[] }>(
        'ListContainers',
        { filter: selector },
        signal,
      ),
      this.#o.cri.runtime<{ items: Message[] }>('ListPodSandbox', { filter: selector }, signal),
    ]);
    // Taken after the listing: a pod that made something listed is in it unless it is gone.
    const live = this.#o.live();
    if (!live) return { containers: [], sandboxes: [] };
    const containers = cs.containers.map(gcContainerOf);
    const doomed = containersToRemove(containers, live, this.#o.maxPerPodContainer ?? 1);
    const removed = new Set<string>();
    for (const id of doomed)
      await this.#o.cri.runtime('RemoveContainer', { container_id: id }, signal).then(
        () => removed.add(id),
        (err: unknown) => {
          if ((err as { code?: string }).code === 'NotFound') removed.add(id);
          else this.#o.logger.warn({ container: id, err: errorMessage(err) }, 'GC: cannot remove');
        },
      );
    const remaining = containers.filter((c) => !removed.has(c.id));
    const sandboxes = sandboxesToRemove(sbs.items.map(gcSandboxOf), remaining, live);
    for (const id of sandboxes)
      await this.#o.cri
        .runtime('RemovePodSandbox', { pod_sandbox_id: id }, signal)
        .catch((err: unknown) => {
          this.#o.logger.warn({ sandbox: id, err: errorMessage(err) }, 'GC: cannot remove');
        });
    if (removed.size > 0 || sandboxes.length > 0)
      this.#o.logger.info(
        { containers: removed.size, sandboxes: sandboxes.length },
        'removed dead containers and sandboxes',
      );
    return { containers: [...removed], sandboxes };
  }

  /** One image GC pass: detects images, removes the chosen ones; returns their IDs. */
  async collectImages(signal: AbortSignal): Promise<string[]> {
    const cri = this.#o.cri;
    const [list, all, fs, status] = await Promise.all([
      cri.image<{ images: Message[] }>('ListImages', {}, signal),
      // Any container of the runtime, this node's or not, keeps its image.
      cri.runtime<{ containers: Message[] }>('ListContainers', {}, signal),
      cri.image<{ image_filesystems: Message[] }>('ImageFsInfo', {}, signal),
      cri.runtime<{ info?: Record<string, string> }>('Status', { verbose: true }, signal),
    ]);
    const images = list.images.map(gcImageOf);
    const inUse = new Set<string>();
    for (const c of all.containers) {
      if (typeof c.image_ref === 'string' && c.image_ref) inUse.add(c.image_ref);
      const spec = (c.image as { image?: string } | null)?.image;
      if (spec) inUse.add(spec);
    }
    const now = Date.now();
    this.#records = detectImages(this.#records, images, inUse, now);
    const mountpoint = (fs.image_filesystems[0]?.fs_id as { mountpoint?: string } | null)
      ?.mountpoint;
    if (!mountpoint) return [];
    const st = await statfs(mountpoint);
    const sandboxImage = sandboxImageOf(status.info ?? {});
    const doomed = imagesToRemove({
      images,
      records: this.#records,
      inUse,
      protectedNames: new Set(sandboxImage ? [sandboxImage] : []),
      capacityBytes: st.blocks * st.bsize,
      availableBytes: st.bavail * st.bsize,
      policy: this.#policy,
      nowMs: now,
    });
    const removed: string[] = [];
    for (const id of doomed)
      await cri.image('RemoveImage', { image: { image: id } }, signal).then(
        () => removed.push(id),
        (err: unknown) => {
          this.#o.logger.warn({ image: id, err: errorMessage(err) }, 'GC: cannot remove image');
        },
      );
    if (removed.length > 0) this.#o.logger.info({ images: removed }, 'removed unused images');
    return removed;
  }
}

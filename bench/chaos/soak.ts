// soak (only when named): for each provider at the same time (the mock and the process
// provider, each with its own agent), a steady churn of R pod creates per second, each pod
// deleted after a short life, for a set duration; the agent's RSS and open descriptors are sampled after a warm-up. It holds when RSS
// grows by less than 10 %, descriptors by at most a few, and no pod is stuck (not Running within
// 60 s of its create, or not gone within 60 s of its delete).
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { isAborted, withRetries, type PodListObject, type PodObject } from '../common.js';
import { median, percentile } from '../util.js';
import { errorCode } from '../../src/errors.js';
import type { WatchEvent } from '../../src/kube/client.js';
import { killNoted } from '../../src/providers/process/state.js';
import { createNamespace } from './namespace.js';
import { rssBytes } from './proc.js';
import type { ChaosAgent, ChaosContext, ScenarioResult } from './types.js';

/** The providers a soak can churn. */
export const SOAK_PROVIDERS = ['mock', 'process'] as const;
export type SoakProvider = (typeof SOAK_PROVIDERS)[number];

/** How long and how hard to churn. */
export interface SoakSettings {
  /** Churn per provider, in seconds. */
  readonly seconds: number;
  /** Pod creates (and as many deletes) per second. */
  readonly ratePerSecond: number;
  readonly providers: readonly SoakProvider[];
}

/** The 2-hour soak of the issue; `--short` churns a minute. */
export const SOAK_DEFAULTS = { seconds: 7200, shortSeconds: 60, ratePerSecond: 10 } as const;

/** Environment variables the settings come from (the runner's flags set them). */
export const SOAK_ENV = {
  seconds: 'VK_CHAOS_SOAK_SECONDS',
  rate: 'VK_CHAOS_SOAK_RATE',
  providers: 'VK_CHAOS_SOAK_PROVIDERS',
} as const;

/** A pod not Running this long after its create, or not gone this long after its delete. */
export const STUCK_AFTER_MS = 60_000;
/** RSS growth over the sampled span that fails the soak, in percent. */
export const RSS_GROWTH_LIMIT_PERCENT = 10;
/** Open descriptors the agent may gain over the sampled span. */
export const FD_GROWTH_ALLOWANCE = 5;
/** Samples averaged (median) at each end of the span, so one GC swing is not a trend. */
export const SAMPLE_WINDOW = 3;

const SAMPLE_EVERY_MS = 5000;
/** A pod lives 5-10 s once Running. */
const LIFE_MS = { min: 5000, spread: 6 };
/** Pods in flight (created, not yet gone) at most, as seconds of the rate: a bound, not a goal. */
const IN_FLIGHT_SECONDS = 90;

/**
 * The settings from the environment (`VK_CHAOS_SOAK_SECONDS`, `VK_CHAOS_SOAK_RATE`,
 * `VK_CHAOS_SOAK_PROVIDERS` as `mock,process`); throws naming a variable that is not valid.
 */
export function soakSettings(env: NodeJS.ProcessEnv, short: boolean): SoakSettings {
  const positive = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number: ${raw}`);
    return n;
  };
  const rawProviders = env[SOAK_ENV.providers];
  const names = rawProviders ? rawProviders.split(',').filter(Boolean) : [...SOAK_PROVIDERS];
  const providers = names.filter((n): n is SoakProvider =>
    (SOAK_PROVIDERS as readonly string[]).includes(n),
  );
  if (providers.length !== names.length || providers.length === 0)
    throw new Error(
      `${SOAK_ENV.providers} must list ${SOAK_PROVIDERS.join(' and/or ')}: ${rawProviders ?? ''}`,
    );
  return {
    seconds: positive(SOAK_ENV.seconds, short ? SOAK_DEFAULTS.shortSeconds : SOAK_DEFAULTS.seconds),
    ratePerSecond: positive(SOAK_ENV.rate, SOAK_DEFAULTS.ratePerSecond),
    providers,
  };
}

/** How long a whole soak may take, in seconds: each provider's churn, drain and start-up. */
export const soakTimeoutSeconds = (s: SoakSettings): number =>
  s.seconds + 2 * (STUCK_AFTER_MS / 1000) + 180 + 120;

/** The warm-up before sampling: 10 % of the churn or 60 s, whichever is less, in ms. */
export const warmupMs = (seconds: number): number => Math.min(seconds * 100, 60_000);

/** One reading of the agent's process. */
export interface Sample {
  readonly atMs: number;
  readonly rssBytes: number;
  /** Open descriptors but the agent's connections to the API server. */
  readonly fds: number;
  /**
   * Its connections to the API server: a keep-alive pool that grows with the load up to the
   * client's limit (64), so not a leak; reported, not held to the allowance.
   */
  readonly apiConnections: number;
}

/** What the samples say: each end is the median of {@link SAMPLE_WINDOW} samples. */
export interface Growth {
  readonly samples: number;
  readonly rssStartBytes: number;
  readonly rssEndBytes: number;
  readonly rssMaxBytes: number;
  /** (end - start) / start, in percent. */
  readonly rssGrowthPercent: number;
  readonly fdStart: number;
  readonly fdEnd: number;
  readonly fdGrowth: number;
  readonly apiConnectionsStart: number;
  readonly apiConnectionsEnd: number;
}

/** The growth over `samples` (in time order), or undefined for fewer than two. */
export function growth(samples: readonly Sample[], window = SAMPLE_WINDOW): Growth | undefined {
  if (samples.length < 2) return undefined;
  const w = Math.max(1, Math.min(window, Math.floor(samples.length / 2)));
  const head = samples.slice(0, w);
  const tail = samples.slice(-w);
  const rssStartBytes = median(head.map((s) => s.rssBytes));
  const rssEndBytes = median(tail.map((s) => s.rssBytes));
  const fdStart = median(head.map((s) => s.fds));
  const fdEnd = median(tail.map((s) => s.fds));
  return {
    samples: samples.length,
    rssStartBytes,
    rssEndBytes,
    rssMaxBytes: Math.max(...samples.map((s) => s.rssBytes)),
    rssGrowthPercent: rssStartBytes > 0 ? ((rssEndBytes - rssStartBytes) / rssStartBytes) * 100 : 0,
    fdStart,
    fdEnd,
    fdGrowth: fdEnd - fdStart,
    apiConnectionsStart: median(head.map((s) => s.apiConnections)),
    apiConnectionsEnd: median(tail.map((s) => s.apiConnections)),
  };
}

/** The socket inodes of `procNetTcp` (`/proc/<pid>/net/tcp` text) connected to `remotePort`. */
export function socketsTo(procNetTcp: string, remotePort: number): Set<string> {
  const inodes = new Set<string>();
  for (const line of procNetTcp.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const remote = cols[2];
    const inode = cols[9];
    if (!remote || !inode) continue;
    const port = Number.parseInt(remote.slice(remote.lastIndexOf(':') + 1), 16);
    if (port === remotePort && inode !== '0') inodes.add(inode);
  }
  return inodes;
}

/** `pid`'s open descriptors, its connections to `apiPort` apart; undefined once it is gone. */
function readFds(
  pid: number,
  apiPort: number,
): { fds: number; apiConnections: number } | undefined {
  let links: string[];
  try {
    links = readdirSync(`/proc/${String(pid)}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${String(pid)}/fd/${fd}`);
      } catch {
        return '';
      }
    });
  } catch {
    return undefined;
  }
  const api = new Set<string>();
  for (const table of ['tcp', 'tcp6'])
    try {
      for (const inode of socketsTo(
        readFileSync(`/proc/${String(pid)}/net/${table}`, 'utf8'),
        apiPort,
      ))
        api.add(`socket:[${inode}]`);
    } catch {
      // No such table.
    }
  const apiConnections = links.filter((l) => api.has(l)).length;
  return { fds: links.length - apiConnections, apiConnections };
}

/** When one pod of the churn was created, seen Running, asked to go, and seen gone (ms). */
export interface PodTimes {
  readonly name: string;
  readonly createdAtMs: number;
  runningAtMs?: number;
  deletedAtMs?: number;
  goneAtMs?: number;
}

/**
 * Why `pod` is stuck at `nowMs`, or undefined: not Running within `limitMs` of its create
 * (whether it got there later or not yet), or not gone within `limitMs` of its delete.
 */
export function stuckReason(
  pod: PodTimes,
  nowMs: number,
  limitMs = STUCK_AFTER_MS,
): string | undefined {
  const late = (from: number, to: number | undefined): boolean => (to ?? nowMs) - from > limitMs;
  if (late(pod.createdAtMs, pod.runningAtMs))
    return `not Running within ${String(limitMs / 1000)} s of its create`;
  if (pod.deletedAtMs !== undefined && late(pod.deletedAtMs, pod.goneAtMs))
    return `not gone within ${String(limitMs / 1000)} s of its delete`;
  return undefined;
}

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const settings = soakSettings(process.env, ctx.short);
  ctx.log(
    `${String(settings.seconds)} s at ${String(settings.ratePerSecond)} pods/s on ${settings.providers.join(', ')}`,
  );
  const figures: Record<string, number | string | boolean> = {
    soakSeconds: settings.seconds,
    ratePerSecond: settings.ratePerSecond,
  };
  const reasons: string[] = [];
  // The providers churn side by side, each with its own agent and namespace, on one cluster.
  const results = await Promise.all(settings.providers.map((p) => soakOne(ctx, p, settings)));
  for (const [i, provider] of settings.providers.entries()) {
    const one = results[i] ?? { figures: {}, reasons: ['no result'] };
    for (const [k, v] of Object.entries(one.figures))
      figures[`${provider}${k[0]?.toUpperCase() ?? ''}${k.slice(1)}`] = v;
    reasons.push(...one.reasons.map((r) => `${provider}: ${r}`));
  }
  return {
    ok: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    ...figures,
  };
}

interface OneResult {
  readonly figures: Record<string, number | string | boolean>;
  readonly reasons: string[];
}

/** The churn on one provider's agent, started for it and stopped after it. */
async function soakOne(
  ctx: ChaosContext,
  provider: SoakProvider,
  settings: SoakSettings,
): Promise<OneResult> {
  const stateDir = join('/var/tmp', `vk-soak-${randomBytes(4).toString('hex')}`);
  const agent = await ctx.startAgent({
    provider,
    ...(provider === 'process'
      ? // The host network: a pod CIDR of 253 addresses would cap the churn's pods.
        { providerConfig: { stateDir, pods: '5000', monitorIntervalMs: 500, network: 'host' } }
      : {}),
  });
  try {
    await ctx.waitReady(agent, 90_000);
    const result = await churn(ctx, agent, provider, settings);
    await agent.stop();
    if (provider === 'process') {
      const left = reapProcessPods(stateDir, agent.nodeName);
      result.figures.podDirsLeft = left;
      if (left > 0) result.reasons.push(`${String(left)} pod directories left after every delete`);
    }
    return result;
  } finally {
    // Both idempotent: for a soak cut short.
    await agent.stop();
    if (provider === 'process') reapProcessPods(stateDir, agent.nodeName);
  }
}

async function churn(
  ctx: ChaosContext,
  agent: ChaosAgent,
  provider: SoakProvider,
  settings: SoakSettings,
): Promise<OneResult> {
  const namespace = `chaos-soak-${provider}`;
  await createNamespace(ctx.client, namespace, ctx.signal);
  const path = `/api/v1/namespaces/${namespace}/pods`;
  const pods = new Map<string, PodTimes>();
  const watchStop = new AbortController();
  const signal = AbortSignal.any([ctx.signal, watchStop.signal]);
  const watching = watchPods(ctx, path, pods, signal);
  const pid = agent.pid ?? 0;
  const apiPort = Number(new URL(ctx.info.server).port);
  const samples: Sample[] = [];
  const durationMs = settings.seconds * 1000;
  const intervalMs = 1000 / settings.ratePerSecond;
  const maxInFlight = Math.ceil(settings.ratePerSecond * IN_FLIGHT_SECONDS);
  const t0 = performance.now();
  const sampleFrom = t0 + warmupMs(settings.seconds);
  let nextSample = sampleFrom;
  let lastReport = t0;
  let created = 0;
  let deleted = 0;
  let createErrors = 0;
  let skipped = 0;
  let inFlight = 0;
  const lives: Promise<void>[] = [];
  let crashed: string | undefined;

  const life = async (i: number): Promise<void> => {
    const name = `soak-${String(i).padStart(6, '0')}`;
    const times: PodTimes = { name, createdAtMs: performance.now() };
    pods.set(name, times);
    try {
      await withRetries(() => ctx.client.create(path, soakPod(name, agent.nodeName)), ctx.signal);
      created++;
    } catch (err) {
      if (ctx.signal.aborted) return;
      createErrors++;
      pods.delete(name);
      ctx.log(`create ${name}: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    const runningBy = times.createdAtMs + STUCK_AFTER_MS;
    while (times.runningAtMs === undefined && performance.now() < runningBy)
      await delay(200, undefined, { signal: ctx.signal });
    const lifeMs = LIFE_MS.min + (i % LIFE_MS.spread) * 1000;
    const at = (times.runningAtMs ?? performance.now()) + lifeMs;
    await delay(Math.max(0, at - performance.now()), undefined, { signal: ctx.signal });
    times.deletedAtMs = performance.now();
    try {
      await withRetries(() => ctx.client.request('DELETE', `${path}/${name}`), ctx.signal);
      deleted++;
    } catch (err) {
      if (errorCode(err) === 'NotFound') deleted++;
      else if (!ctx.signal.aborted)
        ctx.log(`delete ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  try {
    for (let i = 0; ; i++) {
      const due = t0 + i * intervalMs;
      if (due - t0 >= durationMs) break;
      const wait = due - performance.now();
      if (wait > 0) await delay(wait, undefined, { signal: ctx.signal });
      const now = performance.now();
      crashed = agent.exited();
      if (crashed) break;
      if (now >= nextSample) {
        const rss = rssBytes(pid);
        const fds = readFds(pid, apiPort);
        if (rss !== undefined && fds !== undefined)
          samples.push({ atMs: now - t0, rssBytes: rss, ...fds });
        nextSample += SAMPLE_EVERY_MS;
      }
      if (now - lastReport > 30_000) {
        lastReport = now;
        ctx.log(
          `${provider}: ${String(Math.round((now - t0) / 1000))} s, ${String(created)} created, ${String(deleted)} deleted, ${String(inFlight)} in flight` +
            (samples.length > 0
              ? `, RSS ${String(Math.round((samples.at(-1)?.rssBytes ?? 0) / 2 ** 20))} MiB, ${String(samples.at(-1)?.fds ?? 0)} fds + ${String(samples.at(-1)?.apiConnections ?? 0)} API connections`
              : ''),
        );
      }
      if (inFlight >= maxInFlight) {
        skipped++;
        continue;
      }
      inFlight++;
      const one = life(i).finally(() => {
        inFlight--;
      });
      // Handled at once: when the soak is cut short its rejection is settled below, not lost.
      one.catch(() => undefined);
      lives.push(one);
    }
    const churnSeconds = (performance.now() - t0) / 1000;
    await Promise.all(lives);
    // Every deleted pod gets until its stuck limit to be seen gone.
    for (;;) {
      const now = performance.now();
      const waiting = [...pods.values()].some(
        (p) =>
          p.deletedAtMs !== undefined &&
          p.goneAtMs === undefined &&
          now - p.deletedAtMs <= STUCK_AFTER_MS,
      );
      if (!waiting) break;
      await delay(500, undefined, { signal: ctx.signal });
    }
    crashed ??= agent.exited();
    const afterDrain = { rss: rssBytes(pid), fds: readFds(pid, apiPort)?.fds };
    await writeFile(join(ctx.dir, `samples-${provider}.json`), JSON.stringify(samples));
    const now = performance.now();
    const stuck = [...pods.values()]
      .map((p) => ({ name: p.name, why: stuckReason(p, now) }))
      .filter((s): s is { name: string; why: string } => s.why !== undefined);
    const latencies = [...pods.values()]
      .filter((p) => p.runningAtMs !== undefined)
      .map((p) => (p.runningAtMs ?? 0) - p.createdAtMs);
    const gone = [...pods.values()].filter((p) => p.goneAtMs !== undefined).length;
    const g = growth(samples);
    const reasons: string[] = [];
    if (crashed) reasons.push(`the agent ${crashed}`);
    if (!g) reasons.push(`${String(samples.length)} samples of the agent (needs 2 or more)`);
    else {
      if (g.rssGrowthPercent >= RSS_GROWTH_LIMIT_PERCENT)
        reasons.push(
          `RSS grew ${g.rssGrowthPercent.toFixed(1)} % (limit ${String(RSS_GROWTH_LIMIT_PERCENT)} %)`,
        );
      if (g.fdGrowth > FD_GROWTH_ALLOWANCE)
        reasons.push(
          `open descriptors grew by ${String(g.fdGrowth)} (allowance ${String(FD_GROWTH_ALLOWANCE)})`,
        );
    }
    if (stuck.length > 0)
      reasons.push(
        `${String(stuck.length)} pods stuck, e.g. ${stuck
          .slice(0, 3)
          .map((s) => `${s.name} ${s.why}`)
          .join(', ')}`,
      );
    if (createErrors > 0) reasons.push(`${String(createErrors)} creates failed`);
    ctx.log(
      `${provider}: ${String(created)} created, ${String(deleted)} deleted, ${String(gone)} gone, ${String(stuck.length)} stuck; ` +
        (g
          ? `RSS ${mib(g.rssStartBytes)} -> ${mib(g.rssEndBytes)} MiB (max ${mib(g.rssMaxBytes)}, ${g.rssGrowthPercent.toFixed(1)} %), fds ${String(g.fdStart)} -> ${String(g.fdEnd)} and API connections ${String(g.apiConnectionsStart)} -> ${String(g.apiConnectionsEnd)}`
          : 'no growth figures'),
    );
    return {
      reasons,
      figures: {
        churnSeconds: Math.round(churnSeconds * 10) / 10,
        podsCreated: created,
        podsDeleted: deleted,
        podsGone: gone,
        podsStuck: stuck.length,
        createErrors,
        slotsSkipped: skipped,
        runningP50Ms: Math.round(percentile(latencies, 50)),
        runningP99Ms: Math.round(percentile(latencies, 99)),
        samples: samples.length,
        ...(g
          ? {
              rssStartBytes: g.rssStartBytes,
              rssEndBytes: g.rssEndBytes,
              rssMaxBytes: g.rssMaxBytes,
              rssGrowthPercent: Math.round(g.rssGrowthPercent * 10) / 10,
              fdStart: g.fdStart,
              fdEnd: g.fdEnd,
              apiConnectionsStart: g.apiConnectionsStart,
              apiConnectionsEnd: g.apiConnectionsEnd,
            }
          : {}),
        ...(afterDrain.rss !== undefined ? { rssAfterDrainBytes: afterDrain.rss } : {}),
        ...(afterDrain.fds !== undefined ? { fdAfterDrain: afterDrain.fds } : {}),
        agentAlive: crashed === undefined,
      },
    };
  } finally {
    // A soak cut short: the lives still waiting end with the signal's AbortError; settle them
    // here, so none is an unhandled rejection that ends the process before the agent, its pods
    // and the cluster are cleaned up.
    await Promise.allSettled(lives);
    watchStop.abort();
    await watching;
  }
}

const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

/** A pod that runs until deleted: `sleep 3600` (busybox's image maps to the host's commands). */
function soakPod(name: string, nodeName: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'soak' } },
    spec: {
      nodeName,
      tolerations: [{ operator: 'Exists' }],
      terminationGracePeriodSeconds: 5,
      containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
    },
  };
}

/** Marks each pod of `pods` Running and gone as the watch (relisting when it breaks) sees it. */
async function watchPods(
  ctx: ChaosContext,
  path: string,
  pods: Map<string, PodTimes>,
  signal: AbortSignal,
): Promise<void> {
  const see = (pod: PodObject, deleted: boolean): void => {
    const times = pods.get(pod.metadata.name);
    if (!times) return;
    const now = performance.now();
    if (deleted) times.goneAtMs ??= now;
    else if (pod.status?.phase === 'Running') times.runningAtMs ??= now;
  };
  let rv: string | undefined;
  while (!isAborted(signal)) {
    try {
      if (rv === undefined) {
        const list = await ctx.client.request<PodListObject>('GET', path, { signal });
        const present = new Set(list.items.map((p) => p.metadata.name));
        // Whatever was created before the list and is not in it is gone.
        for (const t of pods.values())
          if (t.deletedAtMs !== undefined && !present.has(t.name)) t.goneAtMs ??= performance.now();
        for (const pod of list.items) see(pod, false);
        rv = list.metadata.resourceVersion;
      }
      await ctx.client.watch<PodObject>(
        path,
        { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 600 },
        (event: WatchEvent<PodObject>) => {
          if (event.type === 'ERROR') throw new Error(JSON.stringify(event.object));
          if (event.object.metadata.resourceVersion) rv = event.object.metadata.resourceVersion;
          if (event.type !== 'BOOKMARK') see(event.object, event.type === 'DELETED');
        },
        signal,
      );
    } catch (err) {
      if (isAborted(signal)) break;
      ctx.log(`pod watch broke (${err instanceof Error ? err.message : String(err)}): relisting`);
      rv = undefined;
      await delay(200).catch(() => undefined);
    }
  }
}

/**
 * What the process provider's pods may have left once its agent is stopped: their processes
 * (killed), their cgroups and the state directory (removed); returns how many pod directories
 * were left. The churn deleted every pod, so this finds none unless the soak was cut short.
 */
function reapProcessPods(stateDir: string, nodeName: string): number {
  const podsDir = join(stateDir, 'pods');
  const left = existsSync(podsDir) ? readdirSync(podsDir) : [];
  // Only processes that are still the ones noted: an ended PID may be another's by now.
  for (const d of left) killNoted(join(podsDir, d));
  for (const controller of ['memory', 'cpu', 'cpuacct', 'pids', 'unified', ''])
    removeEmptyTree(join('/sys/fs/cgroup', controller, 'virtual-kubelet', nodeName));
  rmSync(stateDir, { recursive: true, force: true });
  return left.length;
}

/** Removes a tree of empty directories (a cgroup hierarchy), best effort. */
function removeEmptyTree(dir: string): void {
  if (!existsSync(dir)) return;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) removeEmptyTree(join(dir, e.name));
    rmdirSync(dir);
  } catch {
    // Still in use, or gone.
  }
}

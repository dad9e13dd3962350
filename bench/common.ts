// What the scenarios share: a watch on one namespace's pods, waits, retries, the pod every
// scenario creates, the apiserver's request counts, and writing result files.
import { execFile } from 'node:child_process';
import { request as httpsRequest, type RequestOptions as HttpsRequestOptions } from 'node:https';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ApiError, type KubeClient, type WatchEvent } from '../src/kube/client.js';
import { type AgentHandle, logTail } from './systems.js';
import { say } from './util.js';

export interface PodObject {
  readonly metadata: {
    readonly name: string;
    readonly resourceVersion?: string;
    readonly deletionTimestamp?: string;
  };
  readonly status?: {
    readonly phase?: string;
    readonly containerStatuses?: readonly {
      readonly name: string;
      readonly restartCount?: number;
    }[];
  };
}

export interface PodListObject {
  readonly metadata: { readonly resourceVersion: string };
  readonly items: readonly PodObject[];
}

/**
 * Follows the pods of one namespace through a watch (relisting if it breaks): when each was
 * first seen Running, which are gone, and (with `mark`) when each was first seen to hold `mark`.
 */
export class PodTracker {
  readonly #client: KubeClient;
  readonly #path: string;
  readonly #mark: ((pod: PodObject) => boolean) | undefined;
  readonly #runningAt = new Map<string, number>();
  readonly #markedAt = new Map<string, number>();
  readonly #phases = new Map<string, string>();
  readonly #gone = new Set<string>();
  /** MODIFIED events seen: every write to a pod, by anyone. */
  modified = 0;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #stop = new AbortController();

  constructor(
    client: KubeClient,
    namespace: string,
    options: { readonly mark?: (pod: PodObject) => boolean } = {},
  ) {
    this.#client = client;
    this.#path = `/api/v1/namespaces/${namespace}/pods`;
    this.#mark = options.mark;
  }

  get running(): number {
    return this.#runningAt.size;
  }

  get gone(): number {
    return this.#gone.size;
  }

  runningAt(name: string): number | undefined {
    return this.#runningAt.get(name);
  }

  /** Pods seen holding `mark`. */
  get marked(): number {
    return this.#markedAt.size;
  }

  /** When the pod was first seen holding `mark`. */
  markedAt(name: string): number | undefined {
    return this.#markedAt.get(name);
  }

  /** Counts of the phases last seen, for failure messages. */
  phases(): string {
    const counts = new Map<string, number>();
    for (const [name, phase] of this.#phases) {
      if (this.#gone.has(name)) continue;
      counts.set(phase, (counts.get(phase) ?? 0) + 1);
    }
    return [...counts].map(([p, c]) => `${p} ${String(c)}`).join(', ') || 'no pods';
  }

  /** Lists (to learn the resource version) and starts watching. */
  async start(): Promise<void> {
    const list = await this.#client.request<PodListObject>('GET', this.#path);
    for (const pod of list.items) this.#see(pod);
    this.#loop = this.#watch(list.metadata.resourceVersion);
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** Resolves when `done()` holds; rejects after `timeoutMs` or when `check()` throws. */
  async until(
    done: () => boolean,
    timeoutMs: number,
    signal: AbortSignal,
    check: () => void,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      signal.throwIfAborted();
      check();
      const left = deadline - performance.now();
      if (left <= 0) throw new Error('timed out');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  #see(pod: PodObject): void {
    const name = pod.metadata.name;
    const phase = pod.status?.phase ?? 'Pending';
    this.#phases.set(name, pod.metadata.deletionTimestamp ? `${phase}+deleting` : phase);
    if (phase === 'Running' && !this.#runningAt.has(name))
      this.#runningAt.set(name, performance.now());
    if (this.#mark?.(pod) && !this.#markedAt.has(name)) this.#markedAt.set(name, performance.now());
  }

  async #watch(resourceVersion: string): Promise<void> {
    let rv = resourceVersion;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#client.watch<PodObject>(
          this.#path,
          { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 3600 },
          (event: WatchEvent<PodObject>) => {
            if (event.type === 'ERROR') throw new Error(JSON.stringify(event.object));
            if (event.object.metadata.resourceVersion) rv = event.object.metadata.resourceVersion;
            if (event.type === 'BOOKMARK') return;
            if (event.type === 'DELETED') this.#gone.add(event.object.metadata.name);
            else {
              if (event.type === 'MODIFIED') this.modified++;
              this.#see(event.object);
            }
            this.#wake?.();
          },
          signal,
        );
      } catch (err) {
        if (isAborted(signal)) break;
        say(`pod watch broke (${err instanceof Error ? err.message : String(err)}): relisting`);
        await delay(200);
      }
      if (isAborted(signal)) break;
      // Relist: whatever the list lacks is gone; the rest is seen anew.
      try {
        const list = await this.#client.request<PodListObject>('GET', this.#path, { signal });
        const present = new Set(list.items.map((p) => p.metadata.name));
        for (const name of this.#phases.keys()) if (!present.has(name)) this.#gone.add(name);
        for (const pod of list.items) this.#see(pod);
        rv = list.metadata.resourceVersion;
        this.#wake?.();
      } catch {
        // Try the watch again from the last resource version.
      }
    }
  }
}

/**
 * Requests the apiserver has served so far, by `VERB resource[/subresource]` (every client: the
 * harness, the agent, the controller manager), from its `apiserver_request_total` metric.
 */
export async function requestCounts(client: KubeClient): Promise<Map<string, number> | undefined> {
  try {
    const res = await fetchText(client, '/metrics');
    const out = new Map<string, number>();
    for (const line of res.split('\n')) {
      if (!line.startsWith('apiserver_request_total{')) continue;
      const labels = line.slice(line.indexOf('{') + 1, line.lastIndexOf('}'));
      const get = (k: string): string =>
        new RegExp(`(?:^|,)${k}="([^"]*)"`).exec(labels)?.[1] ?? '';
      const resource = get('resource');
      if (!resource) continue;
      const sub = get('subresource');
      const key = `${get('verb')} ${resource}${sub ? `/${sub}` : ''}`;
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      out.set(key, (out.get(key) ?? 0) + value);
    }
    return out;
  } catch {
    return undefined;
  }
}

async function fetchText(client: KubeClient, path: string): Promise<string> {
  // The client parses JSON; the metrics are text, so read them through a raw request.
  const opts: HttpsRequestOptions = {};
  await client.kubeConfig.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(path, client.server), { ...opts, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        resolve(body);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export function diffCounts(
  a: Map<string, number> | undefined,
  b: Map<string, number> | undefined,
): Record<string, number> | undefined {
  if (!a || !b) return undefined;
  const out: [string, number][] = [];
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0) out.push([k, d]);
  }
  out.sort((x, y) => y[1] - x[1]);
  return Object.fromEntries(out);
}

/** Reads the flag anew (TypeScript narrows `signal.aborted` as if it could not change). */
export const isAborted = (signal: AbortSignal): boolean => signal.aborted;

const retriable = (err: unknown): boolean =>
  !(err instanceof ApiError) || err.status === 429 || err.status >= 500;

export async function withRetries<T>(op: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (attempt >= 6 || signal.aborted || !retriable(err)) throw err;
      await delay(100 * 2 ** attempt, undefined, { signal });
    }
  }
}

export function podBody(
  name: string,
  nodeName: string,
  app = 'rollout',
  image = 'registry.k8s.io/pause:3.10',
): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app } },
    spec: {
      nodeName,
      // Every taint tolerated: the agents' NoSchedule taints and any NoExecute one.
      tolerations: [{ operator: 'Exists' }],
      containers: [{ name: 'app', image }],
    },
  };
}

export interface Node {
  readonly status?: { readonly conditions?: readonly { type: string; status: string }[] };
}

export async function waitNodeReady(
  client: KubeClient,
  nodeName: string,
  agent: AgentHandle,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    signal.throwIfAborted();
    const exit = agent.exited();
    if (exit)
      throw new Error(
        `the agent ${exit} before its Node was Ready; log ${agent.logPath}:\n    ${await logTail(agent.logPath)}`,
      );
    const node = await client.get<Node>(`/api/v1/nodes/${nodeName}`, signal);
    if (node?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return;
    if (performance.now() > deadline)
      throw new Error(
        `its Node ${nodeName} was not Ready after ${String(timeoutMs / 1000)} s (${node ? 'registered' : 'not registered'}); log ${agent.logPath}:\n    ${await logTail(agent.logPath)}`,
      );
    await delay(200, undefined, { signal });
  }
}

export async function waitGone(
  client: KubeClient,
  path: string,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (!(await client.get(path).catch(() => true))) return true;
    await delay(500);
  }
  return false;
}

/** The checked-out commit (with `+dirty` when the tree has changes), if git is there. */
export async function gitCommit(): Promise<string | undefined> {
  const git = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile('git', args, (err, stdout) => {
        if (err) reject(new Error(err.message));
        else resolve(stdout.trim());
      });
    });
  try {
    const head = await git(['rev-parse', '--short', 'HEAD']);
    const dirty = (await git(['status', '--porcelain', '--', 'src'])) !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return undefined;
  }
}

/** Writes JSON, in the repository's format when prettier is installed. */
export async function writeJson(path: string, value: unknown): Promise<void> {
  let text = `${JSON.stringify(value, null, 2)}\n`;
  try {
    const prettier = await import('prettier');
    const config = (await prettier.resolveConfig(path)) ?? {};
    text = await prettier.format(text, { ...config, parser: 'json' });
  } catch {
    // Plain JSON.stringify output is fine too.
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

/**
 * After a run: stops the agent, deletes what is left at once (without an agent), then its Node,
 * Lease and the namespace, and waits for the namespace to be gone (the controller manager removes
 * its events) before the next system is measured.
 */
export async function teardownRun(
  client: KubeClient,
  agent: AgentHandle | undefined,
  namespace: string,
  nodeName: string,
  signal: AbortSignal,
): Promise<void> {
  if (agent?.podsOutliveAgent && agent.exited() === undefined && !signal.aborted) {
    // Its pods would run on after it stops: delete them (default grace, the agent stops them and
    // then removes the objects) and wait until none is left.
    await client.request('DELETE', `/api/v1/namespaces/${namespace}/pods`).catch(() => undefined);
    const deadline = performance.now() + 180_000;
    while (performance.now() < deadline && agent.exited() === undefined) {
      const list = await client
        .request<PodListObject>('GET', `/api/v1/namespaces/${namespace}/pods`)
        .catch(() => undefined);
      if (list?.items.length === 0) break;
      await delay(500);
    }
  }
  await agent?.stop();
  await client
    .request('DELETE', `/api/v1/namespaces/${namespace}/pods`, {
      query: { gracePeriodSeconds: 0 },
    })
    .catch(() => undefined);
  await client.delete(`/api/v1/nodes/${nodeName}`).catch(() => undefined);
  await client
    .delete(`/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`)
    .catch(() => undefined);
  await client.delete(`/api/v1/namespaces/${namespace}`).catch(() => undefined);
  if (!signal.aborted && !(await waitGone(client, `/api/v1/namespaces/${namespace}`, 180_000)))
    say(`namespace ${namespace} still terminating after 180 s; going on`);
}

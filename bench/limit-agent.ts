// The `limit` system of the benchmarks: an ideal node agent that does nothing but what the API
// server must see. It registers a Node (Ready at once) and renews its Lease, watches the pods
// bound to the node, and writes each pod's Running status the moment it sees the pod, many
// requests in flight; a pod marked for deletion is deleted with grace 0 at once. No informer
// cache, no provider, no events, no rate limit: no agent can get pods Running faster than the
// API server lets this one.
//
// With `--nodes FILE` (the `nodes` scenario) it serves many nodes and no pods: it registers every
// node in the file (`{"nodes": [{"name": ...}, ...]}`), renews every Lease each 10 s and writes
// every Node's status each 60 s, the writes spread evenly.
//
// Run as its own process (so its CPU and memory are measured like every other agent's):
//   node --import tsx bench/limit-agent.ts --kubeconfig FILE --nodename NAME [--concurrency 64]
//   node --import tsx bench/limit-agent.ts --kubeconfig FILE --nodes FILE
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { errorCode } from '../src/errors.js';
import { KubeClient, loadKubeConfig, type WatchEvent } from '../src/kube/client.js';

export interface LimitAgentOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  /** Requests in flight at most. Default: 64. */
  readonly concurrency?: number;
  /** The pods' IP and host IP. Default: 127.0.0.1. */
  readonly ip?: string;
  /** Pods the Node offers. Default: 20000. */
  readonly podCapacity?: number;
}

interface PodLite {
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly uid: string;
    readonly resourceVersion?: string;
    readonly deletionTimestamp?: string;
  };
  readonly spec?: { readonly containers?: readonly { name: string; image?: string }[] };
  readonly status?: { readonly phase?: string };
}

interface PodList {
  readonly metadata: { readonly resourceVersion: string };
  readonly items: readonly PodLite[];
}

/** Runs at most `max` tasks at once, the rest in arrival order. */
class Limiter {
  readonly #max: number;
  #active = 0;
  #queue: (() => Promise<void>)[] = [];
  #head = 0;

  constructor(max: number) {
    this.#max = max;
  }

  push(task: () => Promise<void>): void {
    this.#queue.push(task);
    this.#pump();
  }

  #pump(): void {
    while (this.#active < this.#max && this.#head < this.#queue.length) {
      const task = this.#queue[this.#head];
      this.#queue[this.#head++] = noop;
      if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (!task) continue;
      this.#active++;
      void task()
        .catch(() => undefined)
        .finally(() => {
          this.#active--;
          this.#pump();
        });
    }
  }
}

const noop = (): Promise<void> => Promise.resolve();

/** Reads the flag anew (TypeScript narrows `signal.aborted` as if it could not change). */
const isAborted = (signal: AbortSignal): boolean => signal.aborted;

export class LimitAgent {
  readonly #client: KubeClient;
  readonly #nodeName: string;
  readonly #ip: string;
  readonly #podCapacity: number;
  readonly #limiter: Limiter;
  /** UIDs whose Running status was written or is being written. */
  readonly #started = new Set<string>();
  /** UIDs whose deletion was sent or is being sent. */
  readonly #deleting = new Set<string>();
  /** When its conditions took their values (they never change). */
  readonly #since = new Date().toISOString();

  constructor(options: LimitAgentOptions) {
    this.#client = options.client;
    this.#nodeName = options.nodeName;
    this.#ip = options.ip ?? '127.0.0.1';
    this.#podCapacity = options.podCapacity ?? 20_000;
    this.#limiter = new Limiter(options.concurrency ?? 64);
  }

  /** The Node's status, Ready, with every heartbeat at `now`. */
  #nodeStatus(now: string): object {
    const capacity = { cpu: '1000', memory: '10000Gi', pods: String(this.#podCapacity) };
    const condition = (type: string, status: string, reason: string): object => ({
      type,
      status,
      reason,
      message: reason,
      lastHeartbeatTime: now,
      lastTransitionTime: this.#since,
    });
    const status = {
      capacity,
      allocatable: capacity,
      conditions: [
        condition('Ready', 'True', 'KubeletReady'),
        condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
        condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
        condition('PIDPressure', 'False', 'KubeletHasSufficientPID'),
      ],
      addresses: [
        { type: 'InternalIP', address: this.#ip },
        { type: 'Hostname', address: this.#nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: '',
        systemUUID: '',
        bootID: '',
        kernelVersion: '',
        osImage: '',
        containerRuntimeVersion: '',
        kubeletVersion: 'limit',
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: 'amd64',
      },
    };
    return status;
  }

  /** Creates the Node, Ready, or takes over one of the same name. */
  async register(): Promise<void> {
    const status = this.#nodeStatus(new Date().toISOString());
    try {
      await this.#client.create('/api/v1/nodes', {
        metadata: {
          name: this.#nodeName,
          labels: {
            type: 'virtual-kubelet',
            'kubernetes.io/hostname': this.#nodeName,
            'kubernetes.io/os': 'linux',
          },
        },
        spec: {
          taints: [{ key: 'virtual-kubelet.io/provider', value: 'limit', effect: 'NoSchedule' }],
        },
        status,
      });
    } catch (err) {
      if (errorCode(err) !== 'AlreadyExists') throw err;
    }
    // Status on create is kept for nodes, but an adopted Node needs it written.
    await this.#client.patch(`/api/v1/nodes/${this.#nodeName}/status`, 'merge', { status });
  }

  /** Writes the Node's status anew (the heartbeat a kubelet sends with its status). */
  async heartbeat(): Promise<void> {
    await this.#client.patch(`/api/v1/nodes/${this.#nodeName}/status`, 'merge', {
      status: this.#nodeStatus(new Date().toISOString()),
    });
  }

  /** Renews the node's Lease, or creates it. */
  async renewLease(): Promise<void> {
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${this.#nodeName}`;
    const spec = {
      holderIdentity: this.#nodeName,
      leaseDurationSeconds: 40,
      renewTime: new Date().toISOString().replace('Z', '000Z'),
    };
    try {
      await this.#client.patch(path, 'merge', { spec }, undefined, true);
    } catch (err) {
      if (errorCode(err) !== 'NotFound') throw err;
      await this.#client.create(
        '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
        { metadata: { name: this.#nodeName }, spec },
        undefined,
        true,
      );
    }
  }

  /** Registers the node, then serves its pods until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await this.register();
    await this.renewLease();
    const leases = (async () => {
      while (!signal.aborted) {
        await delay(10_000, undefined, { signal }).catch(() => undefined);
        if (!isAborted(signal)) await this.renewLease().catch(() => undefined);
      }
    })();
    const selector = `spec.nodeName=${this.#nodeName}`;
    while (!signal.aborted) {
      try {
        const list = await this.#client.request<PodList>('GET', '/api/v1/pods', {
          query: { fieldSelector: selector },
          signal,
        });
        for (const pod of list.items) this.#handle(pod);
        await this.#client.watch<PodLite>(
          '/api/v1/pods',
          {
            fieldSelector: selector,
            resourceVersion: list.metadata.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: 1800,
          },
          (event: WatchEvent<PodLite>) => {
            if (event.type === 'ADDED' || event.type === 'MODIFIED') this.#handle(event.object);
            else if (event.type === 'DELETED') {
              this.#started.delete(event.object.metadata.uid);
              this.#deleting.delete(event.object.metadata.uid);
            }
          },
          signal,
        );
      } catch (err) {
        if (isAborted(signal)) break;
        process.stderr.write(`limit agent: watch failed, relisting: ${String(err)}\n`);
        await delay(200);
      }
    }
    await leases;
  }

  #handle(pod: PodLite): void {
    const { uid, name, namespace } = pod.metadata;
    const path = `/api/v1/namespaces/${namespace}/pods/${name}`;
    if (pod.metadata.deletionTimestamp) {
      if (this.#deleting.has(uid)) return;
      this.#deleting.add(uid);
      this.#limiter.push(async () => {
        try {
          await this.#client.delete(path, {
            apiVersion: 'v1',
            kind: 'DeleteOptions',
            gracePeriodSeconds: 0,
            preconditions: { uid },
          });
        } catch (err) {
          if (errorCode(err) !== 'NotFound' && errorCode(err) !== 'Conflict')
            this.#deleting.delete(uid);
        }
      });
      return;
    }
    if (pod.status?.phase === 'Running' || this.#started.has(uid)) return;
    this.#started.add(uid);
    this.#limiter.push(async () => {
      const now = new Date().toISOString();
      const cond = (type: string): object => ({
        type,
        status: 'True',
        lastProbeTime: null,
        lastTransitionTime: now,
      });
      try {
        await this.#client.patch(`${path}/status`, 'merge', {
          status: {
            phase: 'Running',
            conditions: [
              cond('PodReadyToStartContainers'),
              cond('Initialized'),
              cond('Ready'),
              cond('ContainersReady'),
              cond('PodScheduled'),
            ],
            hostIP: this.#ip,
            hostIPs: [{ ip: this.#ip }],
            podIP: this.#ip,
            podIPs: [{ ip: this.#ip }],
            startTime: now,
            containerStatuses: (pod.spec?.containers ?? []).map((c) => ({
              name: c.name,
              image: c.image ?? '',
              imageID: '',
              containerID: `limit://${uid}/${c.name}`,
              ready: true,
              started: true,
              restartCount: 0,
              state: { running: { startedAt: now } },
            })),
          },
        });
      } catch (err) {
        // Gone pods need nothing; anything else is retried on the pod's next event.
        if (errorCode(err) !== 'NotFound') this.#started.delete(uid);
      }
    });
  }
}

/**
 * Many nodes and no pods (`--nodes FILE`): registers every node, then renews every Lease each
 * `leaseIntervalMs` and writes every Node's status each `statusIntervalMs`, the writes of each
 * kind spread evenly over their interval, `concurrency` requests in flight at most.
 */
export async function runFleet(
  client: KubeClient,
  names: readonly string[],
  options: {
    readonly ip: string;
    readonly concurrency: number;
    readonly leaseIntervalMs: number;
    readonly statusIntervalMs: number;
  },
  signal: AbortSignal,
): Promise<void> {
  const agents = names.map((nodeName) => new LimitAgent({ client, nodeName, ip: options.ip }));
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency, agents.length) }, async () => {
      while (next < agents.length && !signal.aborted) {
        const agent = agents[next++];
        await agent?.register();
        await agent?.renewLease();
      }
    }),
  );
  process.stderr.write(`limit agent: ${String(agents.length)} nodes registered\n`);
  const limiter = new Limiter(options.concurrency);
  const every = async (
    periodMs: number,
    write: (a: LimitAgent) => Promise<void>,
  ): Promise<void> => {
    let start = performance.now();
    while (!isAborted(signal)) {
      for (let i = 0; i < agents.length && !isAborted(signal); i++) {
        const wait = start + (i * periodMs) / agents.length - performance.now();
        if (wait > 1) await delay(wait, undefined, { signal }).catch(() => undefined);
        const agent = agents[i];
        if (agent && !isAborted(signal)) limiter.push(() => write(agent));
      }
      start += periodMs;
      const wait = start - performance.now();
      if (wait > 1) await delay(wait, undefined, { signal }).catch(() => undefined);
    }
  };
  await Promise.all([
    every(options.leaseIntervalMs, (a) => a.renewLease()),
    every(options.statusIntervalMs, (a) => a.heartbeat()),
  ]);
}

interface NodesFile {
  readonly nodes: readonly { readonly name: string }[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kubeconfig: { type: 'string' },
      nodename: { type: 'string' },
      concurrency: { type: 'string', default: '64' },
      'node-ip': { type: 'string', default: '127.0.0.1' },
      nodes: { type: 'string' },
      'lease-interval-ms': { type: 'string', default: '10000' },
      'status-interval-ms': { type: 'string', default: '60000' },
    },
  });
  if (!values.kubeconfig || (!values.nodename && !values.nodes)) {
    process.stderr.write(
      'usage: limit-agent --kubeconfig FILE (--nodename NAME [--concurrency N] | --nodes FILE)\n',
    );
    process.exit(2);
  }
  const kc = loadKubeConfig(values.kubeconfig);
  const concurrency = Number(values.concurrency);
  const client = await KubeClient.create(kc, {
    qps: 1e6,
    burst: 1e6,
    maxSockets: concurrency + 8,
    userAgent: 'bench-limit-agent',
  });
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort());
  if (values.nodes) {
    const file = JSON.parse(await readFile(values.nodes, 'utf8')) as NodesFile;
    await runFleet(
      client,
      file.nodes.map((n) => n.name),
      {
        ip: values['node-ip'],
        concurrency,
        leaseIntervalMs: Number(values['lease-interval-ms']),
        statusIntervalMs: Number(values['status-interval-ms']),
      },
      stop.signal,
    );
    client.close();
    return;
  }
  if (!values.nodename) return;
  const agent = new LimitAgent({
    client,
    nodeName: values.nodename,
    concurrency,
    ip: values['node-ip'],
  });
  process.stderr.write(`limit agent: node ${values.nodename}, ${String(concurrency)} in flight\n`);
  await agent.run(stop.signal);
  client.close();
}

const entry = process.argv[1];
if (entry && import.meta.url === pathToFileURL(entry).href) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `limit agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}

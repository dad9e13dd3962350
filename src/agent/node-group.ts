import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { setMaxListeners } from 'node:events';
import type { KubeClient } from '../kube/client.js';
import { SharedInformer } from '../kube/shared-informer.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { ServiceIndex } from '../pods/services.js';
import { VirtualNode, type VirtualNodeOptions } from './virtual-node.js';

export interface NodeGroupOptions {
  readonly client: KubeClient;
  readonly logger?: Logger;
  /** The nodes; each keeps its own Lease, status, queues and kubelet endpoint. */
  readonly nodes: readonly Omit<
    VirtualNodeOptions,
    'client' | 'logger' | 'shared' | 'observeClient'
  >[];
}

/**
 * Many virtual nodes in one process. They share one API client (and its rate limit), one
 * watch of the pods bound to any of them, one watch of their Nodes and one index of Services,
 * so the API server serves three watches instead of three per node.
 */
export class NodeGroup {
  readonly nodes: readonly VirtualNode[];
  readonly #pods: SharedInformer<V1Pod>;
  readonly #nodeWatch: SharedInformer<V1Node>;
  readonly #services: ServiceIndex;

  constructor(options: NodeGroupOptions) {
    const names = new Set<string>();
    for (const n of options.nodes) {
      if (names.has(n.nodeName)) throw new Error(`node '${n.nodeName}' is listed twice`);
      names.add(n.nodeName);
    }
    const logger = options.logger ?? silentLogger;
    const { client } = options;
    this.#pods = new SharedInformer<V1Pod>({
      client,
      path: '/api/v1/pods',
      fieldSelector: 'spec.nodeName!=',
      partition: (pod) => pod.spec?.nodeName,
      logger,
    });
    this.#nodeWatch = new SharedInformer<V1Node>({
      client,
      path: '/api/v1/nodes',
      partition: (node) => node.metadata?.name,
      logger,
    });
    this.#services = new ServiceIndex(client, logger);
    const shared = { pods: this.#pods, nodes: this.#nodeWatch, services: this.#services };
    this.nodes = options.nodes.map(
      (n, i) =>
        new VirtualNode({
          ...n,
          client,
          logger,
          shared,
          // One shared client: its requests are counted once, in the first node's metrics.
          observeClient: i === 0,
        }),
    );
  }

  /** Resolves when every node is registered and its pods reconciled. */
  async whenReady(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.whenReady()));
  }

  /**
   * Runs the shared watches and every node until `signal` aborts. One node failing (its port
   * taken, say) stops the group and rejects with that node's error.
   */
  async run(signal: AbortSignal): Promise<void> {
    const inner = new AbortController();
    setMaxListeners(0, inner.signal);
    const stopAll = (): void => {
      inner.abort();
    };
    if (signal.aborted) stopAll();
    else signal.addEventListener('abort', stopAll, { once: true });
    const own = inner.signal;
    const fail = (name: string) => (err: unknown) => {
      stopAll();
      // The node's name leads the message: the process stops with it, so it must say which.
      if (!(err instanceof Error)) throw new Error(`node ${name}: ${String(err)}`);
      if (!err.message.includes(name)) err.message = `node ${name}: ${err.message}`;
      throw err;
    };
    const results = await Promise.allSettled([
      this.#pods.run(own),
      this.#nodeWatch.run(own),
      this.#services.run(own),
      ...this.nodes.map((n) => n.run(own).catch(fail(n.nodeName))),
    ]);
    signal.removeEventListener('abort', stopAll);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }
}

import type { KubeClient } from '../kube/client.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { VirtualNode, type VirtualNodeOptions } from './virtual-node.js';
import { runTogether, sharedSources } from './wiring.js';

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
  readonly #shared: ReturnType<typeof sharedSources>;

  constructor(options: NodeGroupOptions) {
    const names = new Set<string>();
    for (const n of options.nodes) {
      if (names.has(n.nodeName)) throw new Error(`node '${n.nodeName}' is listed twice`);
      names.add(n.nodeName);
    }
    const logger = options.logger ?? silentLogger;
    const { client } = options;
    this.#shared = sharedSources(client, logger);
    const { pods, nodes, services } = this.#shared;
    this.nodes = options.nodes.map(
      (n, i) =>
        new VirtualNode({
          ...n,
          client,
          logger,
          shared: { pods, nodes, services },
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
  run(signal: AbortSignal): Promise<void> {
    const named = (name: string) => (err: unknown) => {
      // The node's name leads the message: the process stops with it, so it must say which.
      if (!(err instanceof Error)) throw new Error(`node ${name}: ${String(err)}`);
      if (!err.message.includes(name)) err.message = `node ${name}: ${err.message}`;
      throw err;
    };
    return runTogether(signal, (own) => [
      this.#shared.run(own),
      ...this.nodes.map((n) => n.run(own).catch(named(n.nodeName))),
    ]);
  }
}

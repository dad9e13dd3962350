import type { V1Node, V1Taint } from '@kubernetes/client-node';
import { setMaxListeners } from 'node:events';
import type { KubeClient } from '../kube/client.js';
import { EventRecorder, type EventRecorderOptions } from '../kube/events.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { NodeController, type NodeControllerOptions } from '../node/node-controller.js';
import {
  PodController,
  type PodControllerOptions,
  type SharedPodSources,
} from '../pods/pod-controller.js';
import type { SharedInformer } from '../kube/shared-informer.js';
import type { Provider } from '../provider.js';
import { Registry } from 'prom-client';
import { KubeletServer, type KubeletServerOptions } from '../api/server.js';
import { AgentMetrics, instrumentProvider } from './metrics.js';

export interface VirtualNodeOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  readonly provider: Provider;
  readonly logger?: Logger;
  /** The node's InternalIP and its pods' hostIP. Default: 127.0.0.1. */
  readonly nodeIP?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly taints?: readonly V1Taint[];
  readonly kubeletPort?: number;
  readonly kubeletVersion?: string;
  readonly operatingSystem?: string;
  /** Node controller tuning; see {@link NodeControllerOptions}. */
  readonly node?: Pick<
    NodeControllerOptions,
    | 'leaseDurationSeconds'
    | 'leaseRenewIntervalMs'
    | 'statusUpdateIntervalMs'
    | 'pingIntervalMs'
    | 'pingTimeoutMs'
  >;
  /**
   * Serve the kubelet API (logs, exec, attach, port-forward, stats, metrics). Its port is
   * published in the Node status; port 0 picks a free one. Default: no kubelet API.
   */
  readonly api?: Omit<KubeletServerOptions, 'nodeName' | 'provider' | 'pods' | 'logger'>;
  /**
   * Watches shared with the other nodes of a {@link NodeGroup}, which runs them. Default: the
   * node watches its own Node, pods and the cluster's Services.
   */
  readonly shared?: SharedPodSources & { readonly nodes: SharedInformer<V1Node> };
  /**
   * Count this node's API requests in its metrics by observing `client`. Nodes sharing one
   * client let one of them do it. Default: true.
   */
  readonly observeClient?: boolean;
  /** Event rate limit; see {@link EventRecorderOptions}. Default: 50 per second, bursts of 100. */
  readonly events?: Pick<EventRecorderOptions, 'qps' | 'burst'>;
  /** Pod controller tuning; see {@link PodControllerOptions}. */
  readonly pods?: Pick<
    PodControllerOptions,
    | 'workers'
    | 'pollIntervalMs'
    | 'fullResyncPeriodMs'
    | 'maxBackoffMs'
    | 'volumeRefreshPeriodMs'
    | 'volumeWorkers'
  >;
}

/**
 * One virtual node: its Node object and Lease, and the pods bound to it, handed to `provider`.
 * The pod controller starts once the Node is registered.
 */
export class VirtualNode {
  readonly nodeName: string;
  readonly nodeController: NodeController;
  readonly podController: PodController;
  readonly events: EventRecorder;
  /** The kubelet API server, when `api` was given. */
  readonly server: KubeletServer | undefined;

  constructor(options: VirtualNodeOptions) {
    this.nodeName = options.nodeName;
    const logger = options.logger ?? silentLogger;
    const registry = options.api?.registry ?? new Registry();
    const metrics = new AgentMetrics(registry);
    const provider = instrumentProvider(options.provider, metrics.providerCalls);
    if (options.observeClient ?? true)
      options.client.observe((method, code, seconds) => {
        metrics.apiRequests.inc({ verb: method, code: String(code) });
        metrics.apiRequestSeconds.observe({ verb: method }, seconds);
      });
    this.events = new EventRecorder({
      client: options.client,
      host: options.nodeName,
      logger,
      ...options.events,
    });
    this.nodeController = new NodeController({
      client: options.client,
      nodeName: options.nodeName,
      provider,
      logger,
      ...(options.labels ? { labels: options.labels } : {}),
      ...(options.taints ? { taints: options.taints } : {}),
      ...(options.nodeIP ? { nodeIP: options.nodeIP } : {}),
      ...(options.kubeletPort ? { kubeletPort: options.kubeletPort } : {}),
      ...(options.kubeletVersion ? { kubeletVersion: options.kubeletVersion } : {}),
      ...(options.operatingSystem ? { operatingSystem: options.operatingSystem } : {}),
      ...(options.shared ? { sharedNodes: options.shared.nodes } : {}),
      ...options.node,
    });
    this.podController = new PodController({
      client: options.client,
      nodeName: options.nodeName,
      provider,
      events: this.events,
      logger,
      onHandled: (queue, seconds, ok) => {
        metrics.reconcileSeconds.observe({ queue, result: ok ? 'ok' : 'error' }, seconds);
      },
      ...(options.nodeIP ? { nodeIP: options.nodeIP } : {}),
      ...(options.shared ? { shared: options.shared } : {}),
      ...options.pods,
    });
    this.server = options.api
      ? new KubeletServer({
          ...options.api,
          nodeName: options.nodeName,
          provider,
          pods: this.podController,
          registry,
          logger,
        })
      : undefined;
    metrics.watchQueues(registry, () => this.podController.stats());
  }

  /** Resolves when the Node is registered and the pods are reconciled with the provider. */
  async whenReady(): Promise<void> {
    await this.nodeController.whenReady();
    await this.podController.whenReady();
  }

  /** Runs until `signal` aborts; resolves after every loop has stopped. */
  async run(signal: AbortSignal): Promise<void> {
    // One part failing stops the others; every part has stopped before this returns.
    const inner = new AbortController();
    const stopAll = (): void => {
      inner.abort();
    };
    if (signal.aborted) stopAll();
    else signal.addEventListener('abort', stopAll, { once: true });
    const own = inner.signal;
    // Every loop and worker of the node listens on this one signal.
    setMaxListeners(0, own);
    const failed = (err: unknown): never => {
      stopAll();
      throw err;
    };
    // Listen first: the Node publishes the port, which may be chosen only now.
    if (this.server) {
      try {
        await this.server.listen();
      } catch (err) {
        this.events.close();
        signal.removeEventListener('abort', stopAll);
        throw err;
      }
      this.nodeController.setKubeletPort(this.server.port);
    }
    const serving = this.server?.run(own).catch(failed);
    const node = this.nodeController.run(own).catch(failed);
    await Promise.race([this.nodeController.whenReady(), node]).catch(() => undefined);
    const pods = own.aborted ? undefined : this.podController.run(own).catch(failed);
    const results = await Promise.allSettled([node, pods, serving]);
    signal.removeEventListener('abort', stopAll);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    // Events still queued get a moment to be written; then the recorder stops either way.
    if (!failure) await this.events.flush();
    this.events.close();
    if (failure) throw failure.reason;
  }
}

import type { V1Node, V1Pod, V1Taint } from '../wire.js';
import { setMaxListeners } from 'node:events';
import { Registry } from 'prom-client';
import { KubeletServer, type KubeletServerOptions } from '../api/server.js';
import type { KubeClient } from '../kube/client.js';
import { EventRecorder, type EventRecorderOptions } from '../kube/events.js';
import { SharedInformer } from '../kube/shared-informer.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { NodeController, type NodeControllerOptions } from '../node/node-controller.js';
import {
  PodController,
  type PodControllerOptions,
  type SharedPodSources,
} from '../pods/pod-controller.js';
import { ServiceIndex } from '../pods/services.js';
import { isClosable, type Provider } from '../provider.js';
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
    | 'renewLease'
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
  readonly shared?: SharedSources;
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
    | 'createTimeoutMs'
    | 'updateTimeoutMs'
    | 'getTimeoutMs'
    | 'deleteTimeoutMarginMs'
    | 'deleteWaitMs'
    | 'abortWaitMs'
  >;
  /**
   * Once the node has stopped, call the provider's `close(signal)` (when it has one), giving
   * it `closeTimeoutMs` before its signal aborts. Default: false, the caller owns the provider
   * (and may hand it to another node, as after a restart).
   */
  readonly closeProvider?: boolean;
  /** How long the provider's `close(signal)` may take before its signal aborts. Default: 10 000. */
  readonly closeTimeoutMs?: number;
}

/** The watches the nodes of one process share, and their owner's run loop. */
export type SharedSources = SharedPodSources & { readonly nodes: SharedInformer<V1Node> };

/** One watch of every bound pod, one of the Nodes, one Service index, for many nodes. */
export function sharedSources(
  client: KubeClient,
  logger: Logger,
): SharedSources & { run(signal: AbortSignal): Promise<void> } {
  const pods = new SharedInformer<V1Pod>({
    client,
    path: '/api/v1/pods',
    fieldSelector: 'spec.nodeName!=',
    partition: (pod) => pod.spec?.nodeName,
    logger,
  });
  const nodes = new SharedInformer<V1Node>({
    client,
    path: '/api/v1/nodes',
    partition: (node) => node.metadata?.name,
    logger,
  });
  const services = new ServiceIndex(client, logger);
  return {
    pods,
    nodes,
    services,
    run: (signal) =>
      runTogether(signal, (own) => [pods.run(own), nodes.run(own), services.run(own)]),
  };
}

/** The parts of one node, wired to each other. */
export interface NodeParts {
  readonly nodeController: NodeController;
  readonly podController: PodController;
  readonly events: EventRecorder;
  readonly server: KubeletServer | undefined;
  /** Runs the parts until `signal` aborts; resolves after every one has stopped. */
  run(signal: AbortSignal): Promise<void>;
}

/**
 * Wires one node: its metrics, the provider timed into them, the event recorder, the node and
 * pod controllers and, with `api`, the kubelet API server. The one place both a single
 * {@link VirtualNode} and the nodes of a {@link NodeGroup} are made.
 */
export function wireNode(options: VirtualNodeOptions): NodeParts {
  const logger = options.logger ?? silentLogger;
  const registry = options.api?.registry ?? new Registry();
  const metrics = new AgentMetrics(registry);
  const provider = instrumentProvider(options.provider, metrics.providerCalls);
  if (options.observeClient ?? true)
    options.client.observe((method, code, seconds) => {
      metrics.apiRequests.inc({ verb: method, code: String(code) });
      metrics.apiRequestSeconds.observe({ verb: method }, seconds);
    });
  const events = new EventRecorder({
    client: options.client,
    host: options.nodeName,
    logger,
    ...options.events,
  });
  const nodeController = new NodeController({
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
  const podController = new PodController({
    client: options.client,
    nodeName: options.nodeName,
    provider,
    events,
    logger,
    onHandled: (queue, seconds, ok) => {
      metrics.reconcileSeconds.observe({ queue, result: ok ? 'ok' : 'error' }, seconds);
    },
    ...(options.nodeIP ? { nodeIP: options.nodeIP } : {}),
    ...(options.shared ? { shared: options.shared } : {}),
    ...options.pods,
  });
  const server = options.api
    ? new KubeletServer({
        ...options.api,
        nodeName: options.nodeName,
        provider,
        pods: podController,
        registry,
        logger,
      })
    : undefined;
  metrics.watchQueues(registry, () => podController.stats());

  const closeProvider = async (): Promise<void> => {
    const p = options.provider;
    if (!(options.closeProvider ?? false) || !isClosable(p)) return;
    try {
      await p.close(AbortSignal.timeout(options.closeTimeoutMs ?? 10_000));
    } catch (err) {
      logger.warn({ node: options.nodeName, err: String(err) }, 'closing the provider failed');
    }
  };

  const run = async (signal: AbortSignal): Promise<void> => {
    // Listen first: the Node publishes the port, which may be chosen only now.
    if (server) {
      try {
        await server.listen();
      } catch (err) {
        events.close();
        await closeProvider();
        throw err;
      }
      nodeController.setKubeletPort(server.port);
    }
    let stopped = false;
    try {
      await runTogether(signal, (own) => {
        const node = nodeController.run(own);
        // The pod controller starts once the Node is registered.
        const pods = Promise.race([nodeController.whenReady(), node])
          .catch(() => undefined)
          .then(() => (own.aborted ? undefined : podController.run(own)));
        return [node, pods, ...(server ? [server.run(own)] : [])];
      });
      stopped = true;
    } finally {
      // Events still queued get a moment to be written; then the recorder stops either way.
      if (stopped) await events.flush();
      events.close();
      await closeProvider();
    }
  };

  return { nodeController, podController, events, server, run };
}

/**
 * Runs parts that live and die together. Each gets one signal (`own`), which aborts when
 * `signal` does or when any part fails. Resolves when every part has settled; rejects with the
 * first failure, after every part has stopped.
 */
export async function runTogether(
  signal: AbortSignal,
  start: (own: AbortSignal) => readonly Promise<unknown>[],
): Promise<void> {
  const inner = new AbortController();
  // Every loop and worker of the parts listens on this one signal.
  setMaxListeners(0, inner.signal);
  const stopAll = (): void => {
    inner.abort();
  };
  if (signal.aborted) stopAll();
  else signal.addEventListener('abort', stopAll, { once: true });
  let parts: readonly Promise<unknown>[];
  try {
    parts = start(inner.signal);
  } catch (err) {
    signal.removeEventListener('abort', stopAll);
    throw err;
  }
  // The first failure in time, not in the list: parts stopped by it may fail too, on the abort.
  let failure: { readonly reason: unknown } | undefined;
  await Promise.allSettled(
    parts.map((p) =>
      p.catch((err: unknown) => {
        failure ??= { reason: err };
        stopAll();
      }),
    ),
  );
  signal.removeEventListener('abort', stopAll);
  if (failure) throw failure.reason;
}

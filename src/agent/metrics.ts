import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { CONTRACT_METHODS, type Provider } from '../provider.js';

/** The agent's own Prometheus metrics, served on the kubelet API's `/metrics`. */
export class AgentMetrics {
  readonly providerCalls: Histogram<'method' | 'result'>;
  readonly apiRequests: Counter<'verb' | 'code'>;
  readonly apiRequestSeconds: Histogram<'verb'>;
  readonly reconcileSeconds: Histogram<'queue' | 'result'>;

  constructor(registry: Registry) {
    this.providerCalls = new Histogram({
      name: 'virtual_kubelet_provider_call_duration_seconds',
      help: 'Duration of provider calls, by method and result (ok or error).',
      labelNames: ['method', 'result'],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10],
      registers: [registry],
    });
    this.apiRequests = new Counter({
      name: 'virtual_kubelet_apiserver_requests_total',
      help: 'Requests to the API server, by verb and HTTP status code (0: no answer).',
      labelNames: ['verb', 'code'],
      registers: [registry],
    });
    this.apiRequestSeconds = new Histogram({
      name: 'virtual_kubelet_apiserver_request_duration_seconds',
      help: 'Duration of requests to the API server (watches excluded), by verb.',
      labelNames: ['verb'],
      buckets: [0.005, 0.025, 0.1, 0.5, 2.5, 10],
      registers: [registry],
    });
    this.reconcileSeconds = new Histogram({
      name: 'virtual_kubelet_reconcile_duration_seconds',
      help: 'Duration of one pass of a pod queue handler, by queue and result (ok or error).',
      labelNames: ['queue', 'result'],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10],
      registers: [registry],
    });
  }

  /** Exposes the depth and counters of work queues, read when `/metrics` is scraped. */
  watchQueues(
    registry: Registry,
    stats: () => Record<
      string,
      {
        queued: number;
        inFlight: number;
        delayed: number;
        processed: number;
        failed: number;
        retried: number;
      }
    >,
  ): void {
    new Gauge({
      name: 'virtual_kubelet_queue_depth',
      help: 'Keys waiting in a pod queue, by queue and state (queued, in_flight, delayed).',
      labelNames: ['queue', 'state'],
      registers: [registry],
      collect() {
        for (const [queue, s] of Object.entries(stats())) {
          this.set({ queue, state: 'queued' }, s.queued);
          this.set({ queue, state: 'in_flight' }, s.inFlight);
          this.set({ queue, state: 'delayed' }, s.delayed);
        }
      },
    });
    new Gauge({
      name: 'virtual_kubelet_queue_items_total',
      help: 'Keys a pod queue handled, by queue and result (processed, failed, retried).',
      labelNames: ['queue', 'result'],
      registers: [registry],
      collect() {
        for (const [queue, s] of Object.entries(stats())) {
          this.set({ queue, result: 'processed' }, s.processed);
          this.set({ queue, result: 'failed' }, s.failed);
          this.set({ queue, result: 'retried' }, s.retried);
        }
      },
    });
  }
}

/**
 * Registers `virtual_kubelet_leader{node}`: 1 for each node this process leads, 0 for each it
 * stands by for (`--leader-elect`), read from `leading` when `/metrics` is scraped.
 */
export function watchLeadership(
  registry: Registry,
  leading: () => Iterable<readonly [node: string, leads: boolean]>,
): void {
  new Gauge({
    name: 'virtual_kubelet_leader',
    help: 'Whether this replica leads the node (1) or stands by for it (0), with --leader-elect.',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      for (const [node, leads] of leading()) this.set({ node }, leads ? 1 : 0);
    },
  });
}

/** Every method of the contract is timed; any other function of the provider is only bound. */
const TIMED: ReadonlySet<string> = new Set(CONTRACT_METHODS);

/**
 * The provider with every contract method timed into `histogram`. Optional methods stay
 * optional (the wrapper has exactly the provider's methods), so capability checks still work.
 */
export function instrumentProvider<P extends Provider>(
  provider: P,
  histogram: Histogram<'method' | 'result'>,
): P {
  return new Proxy(provider, {
    get(target, prop) {
      // Getters too run on the provider itself, where its #private state lives.
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      // Every method runs on the provider itself: its #private state is not on the proxy.
      if (typeof prop !== 'string' || !TIMED.has(prop))
        return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]): unknown => {
        const end = histogram.startTimer({ method: prop });
        try {
          const out: unknown = Reflect.apply(value, target, args);
          if (out instanceof Promise) {
            return out.then(
              (v: unknown) => {
                end({ result: 'ok' });
                return v;
              },
              (err: unknown) => {
                end({ result: 'error' });
                throw err;
              },
            );
          }
          end({ result: 'ok' });
          return out;
        } catch (err) {
          end({ result: 'error' });
          throw err;
        }
      };
    },
  });
}

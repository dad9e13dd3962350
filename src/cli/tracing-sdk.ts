// The OpenTelemetry SDK, loaded by `tracing.ts` only when tracing is on (a dynamic import): no
// other module may import this one or the SDK's packages, so tracing off never loads them.
import { diag, DiagLogLevel, propagation, context, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  NodeTracerProvider,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { StopTracing, TracingPlan } from './tracing.js';
import { VERSION } from './version.js';

/** How long stopping waits for the last spans to be sent. */
const FLUSH_TIMEOUT_MS = 5_000;

/**
 * Registers a tracer provider that batches spans to the OTLP/HTTP exporter (which reads
 * `OTEL_EXPORTER_OTLP_*` itself), with the asynchronous context manager and the W3C propagator.
 * The sampler is `plan.ratio` of new traces (parent-based), else the SDK's from
 * `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`. The resource: `service.name` virtual-kubelet
 * and the version, then `OTEL_SERVICE_NAME`/`OTEL_RESOURCE_ATTRIBUTES`, then the flags.
 */
export function registerTracing(
  plan: Extract<TracingPlan, { enabled: true }>,
  logger: Logger,
): StopTracing {
  const log = logger.child({ component: 'tracing' });
  // The SDK's own complaints (an unreachable collector, a bad variable) go to the agent's log.
  diag.setLogger(
    {
      error: (message: string, ...args: unknown[]) => {
        log.warn({ detail: args.map(errorMessage).join(' ') }, message);
      },
      warn: (message: string, ...args: unknown[]) => {
        log.warn({ detail: args.map(errorMessage).join(' ') }, message);
      },
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    DiagLogLevel.WARN,
  );
  const resource = defaultResource()
    .merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: 'virtual-kubelet',
        [ATTR_SERVICE_VERSION]: VERSION,
      }),
    )
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(
      resourceFromAttributes({
        ...plan.attributes,
        ...(plan.serviceName ? { [ATTR_SERVICE_NAME]: plan.serviceName } : {}),
      }),
    );
  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
    ...(plan.ratio === undefined
      ? {}
      : {
          sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(plan.ratio) }),
        }),
  });
  provider.register();
  return async () => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        provider.shutdown(),
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log.warn({ timeoutMs: FLUSH_TIMEOUT_MS }, 'tracing: the last spans were not sent');
            resolve();
          }, FLUSH_TIMEOUT_MS);
        }),
      ]);
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'tracing: stopping the exporter failed');
    } finally {
      clearTimeout(timer);
      // Back to the API's no-ops, so that a process running agents one after another (tests)
      // starts each from scratch.
      trace.disable();
      context.disable();
      propagation.disable();
      diag.disable();
    }
  };
}

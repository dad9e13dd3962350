import { VirtualKubeletError } from '../errors.js';
import type { Logger } from '../log.js';
import type { GoFlagOptions } from './go-flags.js';

/** Whether the agent sends traces, and how; from the flags and the `OTEL_*` environment. */
export type TracingPlan =
  | { readonly enabled: false; readonly why: string }
  | {
      readonly enabled: true;
      /** Where spans go (the exporter reads the same variables), for the log. */
      readonly endpoint: string;
      /** Fraction of new traces sampled; undefined: the SDK's sampler from the environment. */
      readonly ratio?: number;
      /** `service.name` given by flag (else `OTEL_SERVICE_NAME`, else `virtual-kubelet`). */
      readonly serviceName?: string;
      /** Resource attributes given by `--trace-tag`. */
      readonly attributes: Readonly<Record<string, string>>;
    };

const bad = (message: string): VirtualKubeletError =>
  new VirtualKubeletError('InvalidInput', message);

const truthy = (v: string | undefined): boolean => v?.trim().toLowerCase() === 'true';

/**
 * Decides from the flags and the standard variables whether tracing is on:
 * - off with `OTEL_SDK_DISABLED=true`, `--trace-sample-rate 0` (or `never`), `--trace-exporter
 *   none` or `OTEL_TRACES_EXPORTER=none`;
 * - on with `--trace-exporter otlp`, `OTEL_TRACES_EXPORTER=otlp`, a `--trace-sample-rate` above
 *   0, or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
 * - off otherwise: nothing says where spans should go.
 * Spans go over OTLP/HTTP. A variable this agent cannot honour (a gRPC protocol, another
 * exporter) is an `InvalidInput` error of one line.
 */
export function tracingPlan(
  flags: GoFlagOptions,
  env: NodeJS.ProcessEnv = process.env,
): TracingPlan {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter(Boolean);
  const unknown = exporters.find((e) => e !== 'otlp' && e !== 'none');
  if (unknown !== undefined)
    throw bad(
      `OTEL_TRACES_EXPORTER=${unknown} is not supported: this agent sends traces over OTLP/HTTP (otlp), or none`,
    );
  const protocol = (
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ??
    env.OTEL_EXPORTER_OTLP_PROTOCOL ??
    ''
  ).trim();
  if (protocol === 'grpc')
    throw bad(
      'OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: this agent sends OTLP over HTTP (a collector listens for it on port 4318); unset it or use http/json',
    );
  if (truthy(env.OTEL_SDK_DISABLED)) return { enabled: false, why: 'OTEL_SDK_DISABLED=true' };
  if (flags.traceSampleRate === 0) return { enabled: false, why: '--trace-sample-rate 0' };
  if (flags.traceExporter === 'none') return { enabled: false, why: '--trace-exporter none' };
  if (flags.traceExporter === undefined && exporters.length > 0 && !exporters.includes('otlp'))
    return { enabled: false, why: 'OTEL_TRACES_EXPORTER=none' };
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const asked =
    flags.traceExporter === 'otlp' ||
    exporters.includes('otlp') ||
    flags.traceSampleRate !== undefined ||
    (endpoint !== undefined && endpoint !== '');
  if (!asked) return { enabled: false, why: 'no OTLP endpoint configured' };
  return {
    enabled: true,
    endpoint: endpoint || 'http://localhost:4318',
    ...(flags.traceSampleRate === undefined ? {} : { ratio: flags.traceSampleRate / 100 }),
    ...(flags.traceServiceName ? { serviceName: flags.traceServiceName } : {}),
    attributes: flags.traceTag ?? {},
  };
}

/** Flushes and stops what {@link startTracing} started. */
export type StopTracing = () => Promise<void>;

/**
 * Registers the OpenTelemetry SDK (tracer provider, context manager, propagator, OTLP exporter)
 * when `plan` says tracing is on. The SDK is imported here, on demand: with tracing off it is
 * never loaded and the core's spans stay the API's no-ops.
 */
export async function startTracing(plan: TracingPlan, logger: Logger): Promise<StopTracing> {
  if (!plan.enabled) {
    logger.debug({ why: plan.why }, 'tracing off');
    return () => Promise.resolve();
  }
  const { registerTracing } = await import('./tracing-sdk.js');
  const stop = registerTracing(plan, logger);
  logger.info(
    {
      endpoint: plan.endpoint,
      sampler:
        plan.ratio === undefined
          ? (process.env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on')
          : `parentbased_traceidratio ${String(plan.ratio)}`,
    },
    'tracing on: spans go over OTLP/HTTP',
  );
  return stop;
}

/**
 * Spans of the core, written against `@opentelemetry/api` only. Whoever runs the agent decides
 * whether they go anywhere: the command line registers the OpenTelemetry SDK when tracing is on
 * (see `cli/tracing.ts`), a library user registers their own. With nothing registered the API's
 * tracer is a no-op: each span costs an object that records nothing, and the helpers below skip
 * building attributes and keeping contexts for spans that do not record.
 */
import {
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { errorMessage } from './errors.js';

/** The instrumentation scope of every span of the agent. */
export const TRACER_NAME = 'virtual-kubelet';

let tracerOf: { provider: TracerProvider; tracer: Tracer } | undefined;

/**
 * The agent's tracer from the provider registered now. The API hands out a proxy that follows a
 * later registration, but keeps the first provider it found after `trace.disable()`: the tracer
 * is looked up again whenever the global provider is another object.
 */
function tracer(): Tracer {
  const provider = trace.getTracerProvider();
  if (tracerOf?.provider !== provider)
    tracerOf = { provider, tracer: provider.getTracer(TRACER_NAME) };
  return tracerOf.tracer;
}

/** Attribute names (OpenTelemetry's semantic conventions where there is one). */
export const ATTR = {
  node: 'k8s.node.name',
  namespace: 'k8s.namespace.name',
  pod: 'k8s.pod.name',
  podUid: 'k8s.pod.uid',
  container: 'k8s.container.name',
  /** The provider method a span times (`createPod`, `getPod`, ...). */
  providerMethod: 'virtual_kubelet.provider.method',
  /** The work queue (`sync`, `status`) whose handler a span times. */
  queue: 'virtual_kubelet.queue',
  /** The watch event (`ADDED`, `MODIFIED`, `DELETED`) that queued a pod. */
  watchEvent: 'virtual_kubelet.watch.event',
  httpMethod: 'http.request.method',
  httpRoute: 'http.route',
  httpStatus: 'http.response.status_code',
  urlPath: 'url.path',
  serverAddress: 'server.address',
  serverPort: 'server.port',
} as const;

export { SpanKind };
export type { Attributes, Context, Span };

/** The attributes naming a pod: namespace, name and (when known) UID. */
export function podAttributes(
  namespace: string | undefined,
  name: string | undefined,
  uid: string | undefined,
): Attributes {
  const out: Attributes = {};
  if (namespace) out[ATTR.namespace] = namespace;
  if (name) out[ATTR.pod] = name;
  if (uid && !uid.startsWith('key:')) out[ATTR.podUid] = uid;
  return out;
}

/** The attributes of the pod `namespace/name` key. */
export function podKeyAttributes(key: string, uid?: string): Attributes {
  const slash = key.indexOf('/');
  return slash < 0
    ? podAttributes(undefined, key, uid)
    : podAttributes(key.slice(0, slash), key.slice(slash + 1), uid);
}

export interface SpanOptions {
  readonly kind?: SpanKind;
  /** Computed only when the span records (tracing on and sampled). */
  readonly attributes?: () => Attributes;
  /** The parent; default: the active context. */
  readonly parent?: Context;
}

/**
 * Starts a span. The caller ends it (`endSpan`). Attributes are only computed when it records.
 */
export function startSpan(name: string, options: SpanOptions = {}): Span {
  const span = tracer().startSpan(
    name,
    options.kind === undefined ? undefined : { kind: options.kind },
    options.parent ?? context.active(),
  );
  if (options.attributes && span.isRecording()) span.setAttributes(options.attributes());
  return span;
}

/** Ends `span`, marked as failed with `error` when one is given. */
export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined && span.isRecording()) {
    span.recordException(error instanceof Error ? error : errorMessage(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
  }
  span.end();
}

/**
 * Runs `fn` inside a new span (active for everything `fn` starts, given a context manager) and
 * ends the span when `fn` settles; a rejection marks it failed and is passed on.
 */
export async function inSpan<T>(
  name: string,
  options: SpanOptions,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const span = startSpan(name, options);
  if (!isSpanContextValid(span.spanContext())) {
    // Tracing off: nothing to make active.
    try {
      return await fn(span);
    } finally {
      span.end();
    }
  }
  const ctx = trace.setSpan(options.parent ?? context.active(), span);
  try {
    const value = await context.with(ctx, () => fn(span));
    span.end();
    return value;
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}

/** Calls `fn` with `span` as the active span (for what `fn` starts synchronously or awaits). */
export function withSpan<T>(span: Span, fn: () => T): T {
  // An unsampled span of a valid trace is made active too, so its children are not sampled.
  if (!isSpanContextValid(span.spanContext())) return fn();
  return context.with(trace.setSpan(context.active(), span), fn);
}

/**
 * Adds the W3C trace context of `span` (`traceparent`, `tracestate`) to outgoing `headers`,
 * through the registered propagator; nothing with tracing off.
 */
export function injectTraceHeaders(span: Span, headers: Record<string, string>): void {
  if (!isSpanContextValid(span.spanContext())) return;
  propagation.inject(trace.setSpan(context.active(), span), headers);
}

/** The trace context incoming request `headers` carry (the root context when none). */
export function extractTraceContext(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}

/** The root context: for work that must not join whatever trace is active. */
export const rootContext: Context = ROOT_CONTEXT;

/**
 * The trace context of the event that queued each key of a work queue (which carries keys, not
 * objects): the handler that takes the key continues that trace. The first context kept for a
 * key wins until a handler takes it (a burst of changes is one pass, and one trace); contexts
 * without a recording span are not kept, so with tracing off this holds nothing. At most
 * `maxKeys` contexts are kept; past that a key's handler starts a trace of its own.
 */
export class KeyedContexts {
  readonly #contexts = new Map<string, Context>();
  readonly #maxKeys: number;

  /** @param maxKeys Default: 10 000. */
  constructor(maxKeys = 10_000) {
    this.#maxKeys = maxKeys;
  }

  /** Keeps `ctx` (default: the active context) for `key`, if it carries a recording span. */
  remember(key: string, ctx: Context = context.active()): void {
    if (this.#contexts.has(key)) return;
    if (!trace.getSpan(ctx)?.isRecording()) return;
    if (this.#contexts.size >= this.#maxKeys) return;
    this.#contexts.set(key, ctx);
  }

  /**
   * Keeps `ctx` for `key` whatever its span's state: the context a failed handler took, so that
   * its retry continues the same trace.
   */
  restore(key: string, ctx: Context): void {
    if (this.#contexts.has(key) || this.#contexts.size >= this.#maxKeys) return;
    this.#contexts.set(key, ctx);
  }

  /** The context kept for `key`, forgotten as it is returned. */
  take(key: string): Context | undefined {
    const ctx = this.#contexts.get(key);
    if (ctx !== undefined) this.#contexts.delete(key);
    return ctx;
  }

  /** Contexts kept. */
  get size(): number {
    return this.#contexts.size;
  }
}

import { Agent, request, type RequestOptions } from 'node:https';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { createInterface } from 'node:readline';
import type { IncomingMessage } from 'node:http';
import type { V1Status } from '../wire.js';
import { VirtualKubeletError, errorCode, invalidInput, type ErrorCode } from '../errors.js';
import type { KubeConfigSource } from './kubeconfig.js';
import { ATTR, endSpan, injectTraceHeaders, SpanKind, startSpan, type Span } from '../tracing.js';

export { loadKubeConfig } from './kubeconfig.js';
export type { KubeConfigSource } from './kubeconfig.js';

/** What {@link ApiError} keeps of a failed answer besides its HTTP status. */
export interface ApiErrorOptions {
  /** The Status body's `reason`. Default: `body.reason`, else ''. */
  readonly reason?: string;
  /** The API server's Status object, when the answer was one. */
  readonly body?: V1Status;
  readonly cause?: unknown;
}

/**
 * A failed API request. Its `code` (see `errors.ts`) comes from the HTTP status: 404 NotFound;
 * 409 AlreadyExists when the reason says so (a create), Conflict otherwise (a stale
 * resourceVersion or a failed precondition); 400 and 422 InvalidInput; 429 and 5xx Unavailable;
 * anything else (401, 403, 410...) Internal. 401 and 403 stay retried: credentials rotate, and the
 * Node authorizer lets a node read a pod's objects only once it has seen the pod bound there.
 */
export class ApiError extends VirtualKubeletError {
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The Status body's `reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`...), or ''. */
  readonly reason: string;
  /** The API server's Status object, when the answer was one. */
  readonly body: V1Status | undefined;

  constructor(status: number, message: string, options: ApiErrorOptions = {}) {
    const reason = options.reason ?? options.body?.reason ?? '';
    super(codeOfStatus(status, reason), message, { cause: options.cause });
    this.name = 'ApiError';
    this.status = status;
    this.reason = reason;
    this.body = options.body;
  }
}

/** The mapping described on {@link ApiError}. */
function codeOfStatus(status: number, reason: string): ErrorCode {
  if (status === 404) return 'NotFound';
  if (status === 409) return reason === 'AlreadyExists' ? 'AlreadyExists' : 'Conflict';
  if (status === 400 || status === 422) return 'InvalidInput';
  if (status === 429 || (status >= 500 && status <= 599)) return 'Unavailable';
  return 'Internal';
}

export type PatchType = 'merge' | 'strategic' | 'json';
const PATCH_CONTENT_TYPE: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

export interface RequestOptionsLite {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly signal?: AbortSignal;
  /**
   * Skip the client-side rate limit. For the node's heartbeat (lease and status), which must
   * never queue behind pod traffic, as the kubelet's separate heartbeat client does not.
   */
  readonly unthrottled?: boolean;
  /** Give up after this long. Default: the client's `requestTimeoutMs`. */
  readonly timeoutMs?: number;
}

export interface KubeClientOptions {
  /**
   * Requests per second the client allows itself (token bucket). Default: 1 000; the API
   * server's own flow control is the real limit, this only guards against a runaway loop.
   */
  readonly qps?: number;
  /** Burst of the token bucket. Default: 2 000. */
  readonly burst?: number;
  /** Most connections kept open to the apiserver. Default: 64. */
  readonly maxSockets?: number;
  /** Default: `virtual-kubelet`. */
  readonly userAgent?: string;
  /**
   * A request without an answer after this long fails, so a dead connection cannot hang the
   * caller. Watches get their server-side timeout plus this. Default: 30 000 ms.
   */
  readonly requestTimeoutMs?: number;
}

/** A watch event as the apiserver sends it. */
export interface WatchEvent<T> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: T;
}

/**
 * A small JSON client for the Kubernetes API: one keep-alive connection pool, client-side rate
 * limiting, typed errors, streaming watches. Authentication comes from a kubeconfig
 * ({@link KubeConfigSource}: ours from `./kubeconfig.js`, or `@kubernetes/client-node`'s):
 * client certificates, tokens, exec plugins, in-cluster.
 */
export class KubeClient {
  readonly server: URL;
  readonly #kc: KubeConfigSource;
  readonly #agent: Agent | HttpAgent;
  readonly #userAgent: string;
  #headers: Record<string, string> = {};
  #headersAt = 0;
  readonly #bucket: TokenBucket;
  readonly #timeoutMs: number;
  readonly #observers: ((method: string, code: number, seconds: number) => void)[] = [];

  private constructor(kc: KubeConfigSource, tls: RequestOptions, options: KubeClientOptions) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw invalidInput('the kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.#kc = kc;
    const maxSockets = options.maxSockets ?? 64;
    this.#agent =
      this.server.protocol === 'https:'
        ? new Agent({
            ca: tls.ca,
            cert: tls.cert,
            key: tls.key,
            rejectUnauthorized: tls.rejectUnauthorized,
            servername: tls.servername,
            keepAlive: true,
            maxSockets,
            maxFreeSockets: maxSockets,
          })
        : new HttpAgent({ keepAlive: true, maxSockets });
    this.#userAgent = options.userAgent ?? 'virtual-kubelet';
    this.#bucket = new TokenBucket(options.qps ?? 1000, options.burst ?? 2000);
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /** A client for the current context of `kc`. */
  static async create(kc: KubeConfigSource, options: KubeClientOptions = {}): Promise<KubeClient> {
    const opts: RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    const tls: RequestOptions = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      rejectUnauthorized: opts.rejectUnauthorized,
      servername: opts.servername,
    };
    const client = new KubeClient(kc, tls, options);
    client.#headers = headersOf(opts);
    client.#headersAt = Date.now();
    return client;
  }

  /** The kubeconfig this client authenticates with. */
  get kubeConfig(): KubeConfigSource {
    return this.#kc;
  }

  /** Calls `fn` after every request (not watches) with its method, status (0: none) and duration. */
  observe(fn: (method: string, code: number, seconds: number) => void): void {
    this.#observers.push(fn);
  }

  #observed(method: string, code: number, started: number): void {
    const seconds = (performance.now() - started) / 1000;
    for (const fn of this.#observers) fn(method, code, seconds);
  }

  /** Closes every connection, in-flight requests included. */
  close(): void {
    this.#agent.destroy();
  }

  async #authHeaders(): Promise<Record<string, string>> {
    // Tokens from exec plugins and files expire: refresh them every minute.
    if (Date.now() - this.#headersAt > 60_000) {
      const opts: RequestOptions = {};
      await this.#kc.applyToHTTPSOptions(opts);
      this.#headers = headersOf(opts);
      this.#headersAt = Date.now();
    }
    return this.#headers;
  }

  /** Opens a request; with `idleTimeoutMs`, a connection silent that long fails it. */
  async #open(
    method: string,
    path: string,
    options: RequestOptionsLite,
    idleTimeoutMs?: number,
    span?: Span,
  ): Promise<IncomingMessage> {
    if (!options.unthrottled) await this.#bucket.take(options.signal);
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = {
      ...(await this.#authHeaders()),
      accept: 'application/json',
      'user-agent': this.#userAgent,
    };
    // traceparent: an API server with tracing on continues the trace.
    if (span) injectTraceHeaders(span, headers);
    if (body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const send = url.protocol === 'https:' ? request : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        { method, headers, agent: this.#agent, signal: options.signal },
        resolve,
      );
      req.on('error', reject);
      if (idleTimeoutMs !== undefined)
        req.setTimeout(idleTimeoutMs, () => {
          req.destroy(
            new Error(
              `${method} ${path}: no answer from the API server in ${String(idleTimeoutMs)} ms`,
            ),
          );
        });
      req.end(body);
    });
  }

  /** Sends a request and parses the JSON answer. Non-2xx answers throw {@link ApiError}. */
  async request<T>(method: string, path: string, options: RequestOptionsLite = {}): Promise<T> {
    const started = performance.now();
    const span = startSpan(method, {
      kind: SpanKind.CLIENT,
      attributes: () => ({
        [ATTR.httpMethod]: method,
        [ATTR.urlPath]: path,
        [ATTR.serverAddress]: this.server.hostname,
        [ATTR.serverPort]: Number(this.server.port || 443),
      }),
    });
    let res: IncomingMessage;
    let text: string;
    try {
      res = await this.#open(method, path, options, options.timeoutMs ?? this.#timeoutMs, span);
      text = await readAll(res);
    } catch (err) {
      this.#observed(method, 0, started);
      endSpan(span, err);
      throw err;
    }
    const status = res.statusCode ?? 0;
    this.#observed(method, status, started);
    if (span.isRecording()) span.setAttribute(ATTR.httpStatus, status);
    if (status < 200 || status > 299) {
      const err = apiError(status, text, method, path);
      // A 404 or 409 is an answer the caller expects as often as not; the status code tells.
      endSpan(span, status >= 500 ? err : undefined);
      throw err;
    }
    span.end();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Opens a GET and hands back the answer's body as a stream (a container log, `/readyz`): no
   * parsing, no timeout once the headers arrived. Non-2xx answers throw {@link ApiError}. The
   * caller consumes or destroys the stream.
   */
  async stream(
    path: string,
    query: Readonly<Record<string, string | number | boolean | undefined>> = {},
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const res = await this.#open('GET', path, { query, signal }, this.#timeoutMs);
    // The idle timeout guards the wait for headers only: a followed log may be silent for long.
    res.socket.setTimeout(0);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw apiError(status, await readAll(res), 'GET', path);
    return res;
  }

  /** GET that resolves to undefined on 404. */
  async get<T>(path: string, signal?: AbortSignal, unthrottled = false): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', path, { signal, unthrottled });
    } catch (err) {
      if (errorCode(err) === 'NotFound') return undefined;
      throw err;
    }
  }

  create<T>(path: string, body: unknown, signal?: AbortSignal, unthrottled = false): Promise<T> {
    return this.request<T>('POST', path, { body, signal, unthrottled });
  }

  replace<T>(path: string, body: unknown, signal?: AbortSignal, unthrottled = false): Promise<T> {
    return this.request<T>('PUT', path, { body, signal, unthrottled });
  }

  patch<T>(
    path: string,
    type: PatchType,
    body: unknown,
    signal?: AbortSignal,
    unthrottled = false,
  ): Promise<T> {
    return this.request<T>('PATCH', path, {
      body,
      contentType: PATCH_CONTENT_TYPE[type],
      signal,
      unthrottled,
    });
  }

  delete<T>(path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return this.request<T>('DELETE', path, { body, signal });
  }

  /**
   * Streams a watch. Calls `onEvent` for each event in order and resolves when the server ends
   * the stream (normally after `timeoutSeconds`) or `signal` aborts. A non-200 answer throws.
   */
  async watch<T>(
    path: string,
    query: Readonly<Record<string, string | number | boolean | undefined>>,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    // The server ends a watch after timeoutSeconds; a dead connection never would.
    const serverTimeout = Number(query.timeoutSeconds ?? 0);
    const deadline =
      serverTimeout > 0
        ? AbortSignal.any([signal, AbortSignal.timeout(serverTimeout * 1000 + this.#timeoutMs)])
        : signal;
    let res: IncomingMessage;
    try {
      res = await this.#open('GET', path, { query: { ...query, watch: true }, signal: deadline });
    } catch (err) {
      if (signal.aborted) return;
      throw err;
    }
    const status = res.statusCode ?? 0;
    if (status !== 200) throw apiError(status, await readAll(res), 'WATCH', path);
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
      }
    } catch (err) {
      // The client-side deadline ends the watch like the server's timeout does.
      if (!deadline.aborted) throw err;
    } finally {
      res.destroy();
    }
  }
}

function headersOf(opts: RequestOptions): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    if (typeof v === 'string') out[k.toLowerCase()] = v;
  }
  if (opts.auth) out.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  return out;
}

async function readAll(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function apiError(status: number, text: string, method: string, path: string): ApiError {
  const body = parseStatus(text);
  return body
    ? new ApiError(status, body.message ?? `${method} ${path}: HTTP ${String(status)}`, { body })
    : new ApiError(status, `${method} ${path}: HTTP ${String(status)} ${text.slice(0, 200)}`);
}

/** The Status object of an error answer; undefined when the body is not JSON or not an object. */
function parseStatus(text: string): V1Status | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Client-side rate limit: `qps` tokens a second, up to `burst` saved. Waiters are served in
 * arrival order by a single timer, so a thousand waiting requests cost one timer, not a
 * thousand polling loops. A waiter's abort listener is removed once it is served, so a
 * long-lived signal does not collect one per request.
 */
export class TokenBucket {
  readonly #qps: number;
  readonly #burst: number;
  #tokens: number;
  #last = Date.now();
  readonly #waiters: { serve: () => void }[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(qps: number, burst: number) {
    if (!(qps > 0))
      throw invalidInput(`TokenBucket: qps must be a positive number, got ${String(qps)}`);
    if (!(burst >= 1))
      throw invalidInput(`TokenBucket: burst must be a number >= 1, got ${String(burst)}`);
    this.#qps = qps;
    this.#burst = burst;
    this.#tokens = burst;
  }

  #refill(): void {
    const now = Date.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
    this.#last = now;
  }

  take(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.#refill();
    if (this.#waiters.length === 0 && this.#tokens >= 1) {
      this.#tokens -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) {
          this.#waiters.splice(i, 1);
          reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
        }
      };
      const waiter = {
        serve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#timer || this.#waiters.length === 0) return;
    const wait = Math.max(1, Math.ceil(((1 - this.#tokens) / this.#qps) * 1000));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#refill();
      while (this.#tokens >= 1 && this.#waiters.length > 0) {
        this.#tokens -= 1;
        this.#waiters.shift()?.serve();
      }
      this.#schedule();
    }, wait);
  }
}

import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Counter, Registry } from 'prom-client';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Provider } from '../provider.js';
import {
  AuthenticationBusyError,
  type Authorizer,
  type RequestAttributes,
  type RequestUser,
} from './auth.js';
import { refuseUpgrade, resolveHttpLimits, serverOptionsOf, type HttpLimits } from './http-port.js';
import {
  HttpError,
  statusOf,
  type KubeletContext,
  type PodSource,
  type RouteParams,
} from './routes/context.js';
import {
  authorizationOf,
  findRoute,
  hasTraversal,
  parseTarget,
  routeLabel,
  type Route,
} from './routes/table.js';
import { resolveStreamTimeouts } from './streams/spdy-upgrade.js';
import {
  ATTR,
  endSpan,
  extractTraceContext,
  podAttributes,
  SpanKind,
  startSpan,
  withSpan,
  type Span,
} from '../tracing.js';
import type { StreamTimeouts } from './streams/types.js';

export type { PodSource } from './routes/context.js';
export type { HttpLimits } from './http-port.js';

export interface KubeletServerOptions {
  readonly nodeName: string;
  readonly provider: Provider;
  readonly pods: PodSource;
  readonly authorizer: Authorizer;
  /** PEM serving certificate and key. Swap them later with {@link KubeletServer.setCertificate}. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** PEM CA that signs client certificates. Without it, only bearer tokens authenticate. */
  readonly clientCA?: string | Buffer;
  /** Default: 10250. 0 picks a free port. */
  readonly port?: number;
  /** Default: `0.0.0.0`. */
  readonly host?: string;
  readonly timeouts?: StreamTimeouts;
  /** Header, request and idle timeouts and the connection cap of the port; see {@link HttpLimits}. */
  readonly limits?: HttpLimits;
  readonly logger?: Logger;
  /** Registry for the agent's own metrics, served on `/metrics`. Default: a new one. */
  readonly registry?: Registry;
}

/**
 * The kubelet API over HTTPS: what the API server calls for `kubectl logs`, `exec`, `attach`,
 * `port-forward`, `top` and node proxy requests. Every request is authenticated and authorized
 * (see {@link Authorizer}) with the attributes of its route (see `routes/table.ts`); a
 * capability the provider lacks answers 501.
 */
export class KubeletServer {
  readonly #o: KubeletServerOptions;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #requests: Counter;
  readonly #context: KubeletContext;
  readonly registry: Registry;
  readonly #sockets = new Set<Duplex>();

  constructor(options: KubeletServerOptions) {
    // Bad stream timeouts fail here, at start, not on every exec later.
    resolveStreamTimeouts(options.timeouts);
    const limits = resolveHttpLimits(options.limits);
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({
      node: options.nodeName,
      component: 'kubelet-api',
    });
    this.registry = options.registry ?? new Registry();
    this.#context = {
      provider: options.provider,
      pods: options.pods,
      registry: this.registry,
      timeouts: options.timeouts ?? {},
      log: this.#log,
      port: () => this.port,
    };
    this.#requests = new Counter({
      name: 'kubelet_http_requests_total',
      help: 'Requests to the kubelet API by path, method and status code.',
      labelNames: ['path', 'method', 'code'],
      registers: [this.registry],
    });
    this.#server = createServer(
      {
        cert: options.cert,
        key: options.key,
        ...(options.clientCA ? { ca: options.clientCA } : {}),
        // Without a client CA, Node would check client certificates against public roots.
        requestCert: options.clientCA !== undefined,
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
        ...serverOptionsOf(limits),
      },
      (req, res) => {
        this.#handle(req, res).catch((err: unknown) => {
          this.#log.error({ err: errorMessage(err) }, 'request handler failed');
          res.destroy();
        });
      },
    );
    this.#server.maxConnections = limits.maxConnections;
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
      this.#upgrade(req, socket, head).catch((err: unknown) => {
        this.#log.error({ err: errorMessage(err) }, 'upgrade handler failed');
        socket.destroy();
      });
    });
    this.#server.on('connection', (socket: Duplex) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#server.on('tlsClientError', (err) => {
      this.#log.debug({ err: err.message }, 'TLS handshake failed');
    });
  }

  /** Replaces the serving certificate for new connections (rotation). */
  setCertificate(cert: string | Buffer, key: string | Buffer): void {
    this.#server.setSecureContext({
      cert,
      key,
      ...(this.#o.clientCA ? { ca: this.#o.clientCA } : {}),
    });
  }

  /** The bound port, once listening. */
  get port(): number {
    return (this.#server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Listens until `signal` aborts, then closes every connection. */
  async run(signal: AbortSignal): Promise<void> {
    if (!this.#server.listening) await this.listen();
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await this.close();
  }

  /** Starts listening; rejects with a clear error when the port is taken. */
  listen(): Promise<void> {
    const port = this.#o.port ?? 10250;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(
                `the kubelet API port ${String(port)} is in use: choose another with --listen-port`,
              )
            : err,
        );
      };
      this.#server.once('error', onError);
      this.#server.listen(port, this.#o.host ?? '0.0.0.0', () => {
        this.#server.off('error', onError);
        this.#log.info({ port: this.port }, 'kubelet API listening');
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#server.closeAllConnections();
    await closed;
  }

  /**
   * Authenticates and authorizes `req`, then finds its route: 400 for a target that is no
   * path, 401, 403, 404 for no route, 400 for a route's path of another shape, 405.
   */
  async #admit(req: IncomingMessage, url: URL | undefined): Promise<[Route, URL, RouteParams]> {
    if (!url || hasTraversal(req.url ?? '')) throw new HttpError(400, 'invalid path');
    const match = findRoute(url.pathname);
    await this.#authorize(req, authorizationOf(req.method, match));
    if (!match) throw new HttpError(404, `${url.pathname} not found`);
    if (!match.route)
      throw new HttpError(400, `expected ${match.family.map((r) => r.pattern).join(' or ')}`);
    const method = req.method ?? 'GET';
    if (!match.route.methods.includes(method))
      throw new HttpError(405, `${method} is not allowed on ${url.pathname}`, {
        allow: match.route.methods.join(', '),
      });
    return [match.route, url, match.params];
  }

  async #authorize(req: IncomingMessage, attrs: RequestAttributes): Promise<void> {
    let user: RequestUser | undefined;
    try {
      user = await this.#o.authorizer.authenticate(req);
    } catch (err) {
      // Busy is not unauthorized: a client with good credentials must try again, not give up.
      if (err instanceof AuthenticationBusyError)
        throw new HttpError(429, err.message, { 'retry-after': String(err.retryAfterSeconds) });
      this.#log.warn({ err: errorMessage(err) }, 'authentication failed');
      throw new HttpError(401, 'Unauthorized');
    }
    if (!user) throw new HttpError(401, 'Unauthorized');
    const what = `user=${user.name}, verb=${attrs.verb}, resource=nodes, subresource(s)=[${attrs.subresources.join(' ')}]`;
    let allowed: boolean;
    try {
      allowed = await this.#o.authorizer.authorize(user, attrs);
    } catch (err) {
      throw new HttpError(500, `Authorization error (${what}): ${errorMessage(err)}`);
    }
    if (!allowed) throw new HttpError(403, `Forbidden (${what})`);
  }

  /**
   * A server span for a request, the child of the trace context the request carries (an API
   * server with tracing on sends one).
   */
  #span(req: IncomingMessage, url: URL | undefined, label: string): Span {
    return startSpan(`${req.method ?? ''} ${label}`, {
      kind: SpanKind.SERVER,
      parent: extractTraceContext(req.headers),
      attributes: () => ({
        [ATTR.node]: this.#o.nodeName,
        [ATTR.httpMethod]: req.method ?? '',
        [ATTR.httpRoute]: label,
        ...(url ? { [ATTR.urlPath]: url.pathname } : {}),
      }),
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = parseTarget(req.url);
    const label = routeLabel(url && findRoute(url.pathname));
    const span = this.#span(req, url, label);
    res.on('finish', () =>
      this.#requests.inc({ path: label, method: req.method ?? '', code: String(res.statusCode) }),
    );
    const abort = new AbortController();
    res.on('close', () => {
      abort.abort();
      if (span.isRecording()) span.setAttribute(ATTR.httpStatus, res.statusCode);
      endSpan(
        span,
        res.statusCode >= 500 ? new Error(`status ${String(res.statusCode)}`) : undefined,
      );
    });
    try {
      const [route, target, params] = await this.#admit(req, url);
      if (span.isRecording()) span.setAttributes(paramAttributes(params));
      await withSpan(span, () =>
        route.serve({
          kubelet: this.#context,
          req,
          res,
          url: target,
          params,
          signal: abort.signal,
        }),
      );
    } catch (err) {
      if (!(err instanceof HttpError))
        this.#log.warn({ path: url?.pathname, err: errorMessage(err) }, 'request failed');
      if (res.headersSent) res.destroy();
      else
        res
          .writeHead(statusOf(err), {
            'content-type': 'text/plain; charset=utf-8',
            ...(err instanceof HttpError ? err.headers : {}),
          })
          .end(errorMessage(err));
    }
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = parseTarget(req.url);
    const label = routeLabel(url && findRoute(url.pathname));
    const span = this.#span(req, url, label);
    let code = 101;
    try {
      const [route, target, params] = await this.#admit(req, url);
      if (span.isRecording()) span.setAttributes(paramAttributes(params));
      if (!route.upgrade) throw new HttpError(404, `${target.pathname} not found`);
      const upgrade = route.upgrade;
      await withSpan(span, () =>
        upgrade({ kubelet: this.#context, req, socket, head, url: target, params }),
      );
    } catch (err) {
      code = statusOf(err);
      refuseUpgrade(socket, code, errorMessage(err), err instanceof HttpError ? err.headers : {});
    } finally {
      this.#requests.inc({ path: label, method: req.method ?? '', code: String(code) });
      if (span.isRecording()) span.setAttribute(ATTR.httpStatus, code);
      endSpan(span, code >= 500 ? new Error(`status ${String(code)}`) : undefined);
    }
  }
}

/** The pod (and container) a route's path names, as span attributes. */
function paramAttributes(params: RouteParams): Record<string, string> {
  const out = podAttributes(params.namespace, params.pod, params.uid) as Record<string, string>;
  if (params.container) out[ATTR.container] = params.container;
  return out;
}

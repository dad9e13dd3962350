import type { V1Pod } from '@kubernetes/client-node';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable, type Duplex, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Counter, Registry } from 'prom-client';
import { errorMessage, httpStatusOf } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import {
  hasContainerAttach,
  hasContainerExec,
  hasContainerLogs,
  hasPortForward,
  hasStats,
  type ContainerLogOptions,
  type Provider,
} from '../provider.js';
import { subresourcesOf, verbOf, type Authorizer, type RequestUser } from './auth.js';
import { acceptSpdyPortForward } from './streams/spdy-portforward.js';
import { acceptSpdyRemoteCommand } from './streams/spdy-remotecommand.js';
import { resolveStreamTimeouts } from './streams/spdy-upgrade.js';
import type {
  RemoteCommandOptions,
  RemoteCommandSession,
  StreamTimeouts,
} from './streams/types.js';
import { acceptWebSocketPortForward } from './streams/websocket-portforward.js';
import { acceptWebSocketRemoteCommand } from './streams/websocket-remotecommand.js';

/** The pods the API server has bound to this node. */
export interface PodSource {
  getPod(namespace: string, name: string): V1Pod | undefined;
  listPods(): V1Pod[];
}

/** A provider that can serve `/metrics/resource` (Prometheus text). */
interface ResourceMetricsProvider {
  getMetricsResource(signal: AbortSignal): Promise<string>;
}
const hasResourceMetrics = (p: Provider): p is Provider & ResourceMetricsProvider =>
  typeof (p as Partial<ResourceMetricsProvider>).getMetricsResource === 'function';

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
  readonly logger?: Logger;
  /** Registry for the agent's own metrics, served on `/metrics`. Default: a new one. */
  readonly registry?: Registry;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const truthy = (v: string | null): boolean => v === '1' || v === 'true';

/**
 * The kubelet API over HTTPS: what the API server calls for `kubectl logs`, `exec`, `attach`,
 * `port-forward`, `top` and node proxy requests. Every request is authenticated and authorized
 * (see {@link Authorizer}); a capability the provider lacks answers 501.
 */
export class KubeletServer {
  readonly #o: KubeletServerOptions;
  readonly #log: Logger;
  readonly #server: Server;
  readonly #requests: Counter;
  readonly registry: Registry;
  readonly #sockets = new Set<Duplex>();

  constructor(options: KubeletServerOptions) {
    // Bad stream timeouts fail here, at start, not on every exec later.
    resolveStreamTimeouts(options.timeouts);
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({
      node: options.nodeName,
      component: 'kubelet-api',
    });
    this.registry = options.registry ?? new Registry();
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
      },
      (req, res) => {
        this.#handle(req, res).catch((err: unknown) => {
          this.#log.error({ err: errorMessage(err) }, 'request handler failed');
          res.destroy();
        });
      },
    );
    this.#server.headersTimeout = 30_000;
    this.#server.requestTimeout = 0;
    this.#server.keepAliveTimeout = 90_000;
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

  async #authorize(req: IncomingMessage, path: string): Promise<RequestUser> {
    let user: RequestUser | undefined;
    try {
      user = await this.#o.authorizer.authenticate(req);
    } catch (err) {
      this.#log.warn({ err: errorMessage(err) }, 'authentication failed');
      throw new HttpError(401, 'Unauthorized');
    }
    if (!user) throw new HttpError(401, 'Unauthorized');
    const attrs = { verb: verbOf(req.method), subresources: subresourcesOf(path) };
    let allowed: boolean;
    try {
      allowed = await this.#o.authorizer.authorize(user, attrs);
    } catch (err) {
      throw new HttpError(
        500,
        `Authorization error (user=${user.name}, verb=${attrs.verb}, resource=nodes, subresource(s)=[${attrs.subresources.join(' ')}]): ${errorMessage(err)}`,
      );
    }
    if (!allowed)
      throw new HttpError(
        403,
        `Forbidden (user=${user.name}, verb=${attrs.verb}, resource=nodes, subresource(s)=[${attrs.subresources.join(' ')}])`,
      );
    return user;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = parseTarget(req.url);
    const path = url?.pathname ?? '';
    const route = routeName(path);
    res.on('finish', () =>
      this.#requests.inc({ path: route, method: req.method ?? '', code: String(res.statusCode) }),
    );
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    try {
      if (!url || hasTraversal(req.url ?? '')) throw new HttpError(400, 'invalid path');
      await this.#authorize(req, path);
      await this.#route(req, res, url, abort.signal);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : httpStatusOf(err);
      if (!(err instanceof HttpError))
        this.#log.warn({ path, err: errorMessage(err) }, 'request failed');
      if (res.headersSent) res.destroy();
      else
        res
          .writeHead(status, { 'content-type': 'text/plain; charset=utf-8' })
          .end(errorMessage(err));
    }
  }

  async #route(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    signal: AbortSignal,
  ): Promise<void> {
    const path = url.pathname;
    const seg = path.split('/').slice(1);
    const method = req.method ?? 'GET';
    const only = (...methods: string[]): void => {
      if (!methods.includes(method)) {
        res.setHeader('allow', methods.join(', '));
        throw new HttpError(405, `${method} is not allowed on ${path}`);
      }
    };
    const json = (body: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const p = this.#o.provider;
    switch (seg[0]) {
      case 'healthz':
        only('GET', 'HEAD');
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('ok');
        return;
      case 'pods':
        only('GET');
        json({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: this.#o.pods.listPods() });
        return;
      case 'runningpods':
        only('GET');
        json({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: await p.getPods(signal) });
        return;
      case 'configz':
        only('GET');
        json({
          kubeletconfig: {
            kind: 'KubeletConfiguration',
            apiVersion: 'kubelet.config.k8s.io/v1beta1',
            port: this.port,
            authentication: { anonymous: { enabled: false }, webhook: { enabled: true } },
            authorization: { mode: 'Webhook' },
          },
        });
        return;
      case 'stats':
        if (seg[1] !== 'summary') throw new HttpError(404, `${path} not found`);
        only('GET', 'POST');
        if (!hasStats(p))
          throw new HttpError(501, `the provider does not implement stats (getStatsSummary)`);
        json(await p.getStatsSummary(signal));
        return;
      case 'metrics':
        only('GET');
        if (seg.length === 1) {
          res
            .writeHead(200, { 'content-type': this.registry.contentType })
            .end(await this.registry.metrics());
          return;
        }
        if (seg[1] === 'resource' && seg.length === 2) {
          if (!hasResourceMetrics(p))
            throw new HttpError(
              501,
              'the provider does not implement resource metrics (getMetricsResource)',
            );
          res
            .writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
            .end(await p.getMetricsResource(signal));
          return;
        }
        throw new HttpError(404, `${path} not found`);
      case 'containerLogs':
        only('GET');
        await this.#logs(res, url, seg, signal);
        return;
      case 'exec':
      case 'attach':
      case 'portForward':
        throw new HttpError(400, 'unable to upgrade: missing upgrade headers in request');
      case 'run':
        only('POST');
        await this.#run(res, url, seg, signal);
        return;
      default:
        throw new HttpError(404, `${path} not found`);
    }
  }

  #pod(namespace: string | undefined, name: string | undefined, uid?: string): V1Pod {
    if (!namespace || !name) throw new HttpError(400, 'missing namespace or pod name');
    const pod = this.#o.pods.getPod(namespace, name);
    if (!pod || (uid !== undefined && pod.metadata?.uid !== uid))
      throw new HttpError(404, `pod "${namespace}/${name}" does not exist`);
    return pod;
  }

  #container(pod: V1Pod, name: string | undefined): string {
    const names = [
      ...(pod.spec?.containers ?? []),
      ...(pod.spec?.initContainers ?? []),
      ...(pod.spec?.ephemeralContainers ?? []),
    ].map((c) => c.name);
    if (!name) {
      if (names.length === 1 && names[0]) return names[0];
      throw new HttpError(400, 'a container name must be given');
    }
    if (!names.includes(name))
      throw new HttpError(
        404,
        `container "${name}" not found in pod "${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}"`,
      );
    return name;
  }

  async #logs(res: ServerResponse, url: URL, seg: string[], signal: AbortSignal): Promise<void> {
    if (seg.length !== 4)
      throw new HttpError(400, 'expected /containerLogs/{namespace}/{pod}/{container}');
    const pod = this.#pod(seg[1], seg[2]);
    const container = this.#container(pod, seg[3]);
    const p = this.#o.provider;
    if (!hasContainerLogs(p))
      throw new HttpError(501, 'the provider does not implement container logs (getContainerLogs)');
    const options = parseLogOptions(url.searchParams);
    const stream: Readable = await untilAborted(
      p.getContainerLogs(seg[1] ?? '', seg[2] ?? '', container, options, signal),
      signal,
    );
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'transfer-encoding': 'chunked',
    });
    res.flushHeaders();
    try {
      await pipeline(stream, res);
    } catch (err) {
      if (!signal.aborted)
        this.#log.debug({ err: errorMessage(err) }, 'log stream ended with an error');
    }
  }

  async #run(res: ServerResponse, url: URL, seg: string[], signal: AbortSignal): Promise<void> {
    const { pod, container } = this.#target(seg);
    const p = this.#o.provider;
    if (!hasContainerExec(p))
      throw new HttpError(501, 'the provider does not implement exec (runInContainer)');
    const command = (url.searchParams.get('cmd') ?? '').split(' ').filter(Boolean);
    const chunks: Buffer[] = [];
    let size = 0;
    const tooMuch = new AbortController();
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > RUN_OUTPUT_LIMIT_BYTES) tooMuch.abort();
        else chunks.push(chunk);
        cb();
      },
    });
    const exitCode = await untilAborted(
      p.runInContainer(
        pod.metadata?.namespace ?? '',
        pod.metadata?.name ?? '',
        container,
        command,
        { stdout: out, stderr: out, tty: false },
        AbortSignal.any([signal, tooMuch.signal]),
      ),
      AbortSignal.any([signal, tooMuch.signal]),
    );
    if (tooMuch.signal.aborted)
      throw new HttpError(
        500,
        `the command wrote more than ${String(RUN_OUTPUT_LIMIT_BYTES)} bytes`,
      );
    res
      .writeHead(exitCode === 0 ? 200 : 500, { 'content-type': 'application/json' })
      .end(Buffer.concat(chunks));
  }

  /** `{ns}/{pod}/{container}` or `{ns}/{pod}/{uid}/{container}` after the route name. */
  #target(seg: string[]): { pod: V1Pod; container: string } {
    if (seg.length === 4) {
      const pod = this.#pod(seg[1], seg[2]);
      return { pod, container: this.#container(pod, seg[3]) };
    }
    if (seg.length === 5) {
      const pod = this.#pod(seg[1], seg[2], seg[3]);
      return { pod, container: this.#container(pod, seg[4]) };
    }
    throw new HttpError(400, 'expected {namespace}/{pod}/[{uid}/]{container}');
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const parsed = parseTarget(req.url);
    const url = parsed ?? new URL('https://kubelet/');
    const seg = url.pathname.split('/').slice(1);
    const route = routeName(url.pathname);
    let code = 101;
    try {
      if (!parsed || hasTraversal(req.url ?? '')) throw new HttpError(400, 'invalid path');
      await this.#authorize(req, url.pathname);
      const websocket = (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
      const p = this.#o.provider;
      const timeouts = this.#o.timeouts ?? {};
      if (seg[0] === 'exec' || seg[0] === 'attach') {
        const { pod, container } = this.#target(seg);
        const exec = seg[0] === 'exec';
        if (exec && !hasContainerExec(p))
          throw new HttpError(501, 'the provider does not implement exec (runInContainer)');
        if (!exec && !hasContainerAttach(p))
          throw new HttpError(501, 'the provider does not implement attach (attachToContainer)');
        const q = url.searchParams;
        const tty = truthy(q.get('tty'));
        const options: RemoteCommandOptions = {
          stdin: truthy(q.get('input')) || truthy(q.get('stdin')),
          stdout: truthy(q.get('output')) || truthy(q.get('stdout')),
          stderr: (truthy(q.get('error')) || truthy(q.get('stderr'))) && !tty,
          tty,
        };
        if (!options.stdin && !options.stdout && !options.stderr && !truthy(q.get('error')))
          throw new HttpError(400, 'you must specify at least 1 of stdin, stdout, stderr');
        const command = q.getAll('command');
        if (exec && command.length === 0)
          throw new HttpError(400, 'you must specify at least one command for the container');
        const session = websocket
          ? await acceptWebSocketRemoteCommand(req, socket, head, options, timeouts)
          : await acceptSpdyRemoteCommand(req, socket, head, options, timeouts);
        if (!session) return;
        await this.#remoteCommand(session, pod, container, exec ? command : undefined);
        return;
      }
      if (seg[0] === 'portForward') {
        if (seg.length !== 3 && seg.length !== 4)
          throw new HttpError(400, 'expected /portForward/{namespace}/{pod}');
        const pod = this.#pod(seg[1], seg[2], seg[3]);
        if (!hasPortForward(p))
          throw new HttpError(501, 'the provider does not implement port-forward (portForward)');
        const session = new AbortController();
        socket.once('close', () => session.abort());
        const handler = (
          stream: Parameters<Parameters<typeof acceptSpdyPortForward>[3]>[0],
        ): void => {
          p.portForward(
            pod.metadata?.namespace ?? '',
            pod.metadata?.name ?? '',
            stream.port,
            stream.data,
            session.signal,
          ).catch((err: unknown) => {
            stream.fail(
              `error forwarding port ${String(stream.port)} to pod ${pod.metadata?.name ?? ''}: ${errorMessage(err)}`,
            );
          });
        };
        if (websocket) acceptWebSocketPortForward(req, socket, head, handler, timeouts);
        else acceptSpdyPortForward(req, socket, head, handler, timeouts);
        return;
      }
      throw new HttpError(404, `${url.pathname} not found`);
    } catch (err) {
      code = err instanceof HttpError ? err.status : httpStatusOf(err);
      writeRaw(socket, code, errorMessage(err));
    } finally {
      this.#requests.inc({ path: route, method: req.method ?? '', code: String(code) });
    }
  }

  async #remoteCommand(
    session: RemoteCommandSession,
    pod: V1Pod,
    container: string,
    command?: string[],
  ): Promise<void> {
    const p = this.#o.provider;
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    try {
      if (command) {
        if (!hasContainerExec(p)) throw new Error('exec is not supported');
        const exitCode = await untilAborted(
          p.runInContainer(ns, name, container, command, session, session.signal),
          session.signal,
        );
        await session.finish({ exitCode });
      } else {
        if (!hasContainerAttach(p)) throw new Error('attach is not supported');
        await untilAborted(
          p.attachToContainer(ns, name, container, session, session.signal),
          session.signal,
        );
        await session.finish({ exitCode: 0 });
      }
    } catch (err) {
      await session.finish({ error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
}

/** Parses and validates log options as the kubelet does: 400 for bad values, 422 for invalid ones. */
export function parseLogOptions(q: URLSearchParams): ContainerLogOptions {
  const int = (name: string): number | undefined => {
    const v = q.get(name);
    if (v === null || v === '') return undefined;
    if (!/^-?\d+$/.test(v)) throw new HttpError(400, `invalid value for ${name}: ${v}`);
    return Number(v);
  };
  let tailLines = int('tailLines');
  const tail = q.get('tail');
  if (tailLines === undefined && tail !== null && tail !== 'all') {
    if (!/^\d+$/.test(tail)) throw new HttpError(400, `invalid value for tail: ${tail}`);
    tailLines = Number(tail);
  }
  const limitBytes = int('limitBytes');
  const sinceSeconds = int('sinceSeconds');
  const sinceRaw = q.get('sinceTime');
  let sinceTime: Date | undefined;
  if (sinceRaw) {
    sinceTime = new Date(sinceRaw);
    if (Number.isNaN(sinceTime.getTime()))
      throw new HttpError(400, `invalid value for sinceTime: ${sinceRaw}`);
  }
  const invalid: string[] = [];
  if (tailLines !== undefined && tailLines < 0)
    invalid.push('tailLines: Invalid value: must be greater than or equal to 0');
  if (limitBytes !== undefined && limitBytes < 1)
    invalid.push('limitBytes: Invalid value: must be greater than 0');
  if (sinceSeconds !== undefined && sinceSeconds < 1)
    invalid.push('sinceSeconds: Invalid value: must be greater than 0');
  if (sinceSeconds !== undefined && sinceTime)
    invalid.push(
      'sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified',
    );
  if (invalid.length > 0) throw new HttpError(422, invalid.join(', '));
  return {
    follow: truthy(q.get('follow')),
    previous: truthy(q.get('previous')),
    timestamps: truthy(q.get('timestamps')),
    ...(tailLines !== undefined ? { tailLines } : {}),
    ...(limitBytes !== undefined ? { limitBytes } : {}),
    ...(sinceSeconds !== undefined ? { sinceSeconds } : {}),
    ...(sinceTime ? { sinceTime } : {}),
  };
}

/** Most output `/run` collects. */
const RUN_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024;

/**
 * The provider's promise, or a rejection as soon as `signal` fires: a provider that ignores the
 * abort must not hold the request, its session and its listeners forever.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(new Error('the client went away'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      // What arrives later has nobody to go to: a stream is destroyed, not left open.
      work.then(
        (v) => {
          if (v && typeof (v as { destroy?: unknown }).destroy === 'function')
            (v as unknown as Readable).destroy();
        },
        () => undefined,
      );
      reject(new Error('the client went away'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** The request target as a URL, or undefined for one no URL can be made of (`//`, `http://`). */
function parseTarget(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'https://kubelet');
  } catch {
    return undefined;
  }
}

/** `..` segments (also percent-encoded) or empty segments in the raw request target. */
function hasTraversal(target: string): boolean {
  const path = (target.split('?')[0] ?? '').replace(/%2e/gi, '.').replace(/%2f/gi, '/');
  return path
    .split('/')
    .some(
      (seg, i) =>
        seg === '..' || seg === '.' || (seg === '' && i > 0 && i < path.split('/').length - 1),
    );
}

/** A bounded label for metrics: the first path segment. */
function routeName(path: string): string {
  const first = path.split('/')[1] ?? '';
  return [
    'healthz',
    'pods',
    'runningpods',
    'configz',
    'stats',
    'metrics',
    'containerLogs',
    'exec',
    'attach',
    'portForward',
    'run',
  ].includes(first)
    ? `/${first}`
    : 'other';
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

/** An HTTP response on a socket that asked for an upgrade we refuse. */
function writeRaw(socket: Duplex, status: number, body: string): void {
  if (socket.destroyed) return;
  const text = Buffer.from(body);
  socket.end(
    `HTTP/1.1 ${String(status)} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${String(text.length)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Real servers and a real exec for the probe tests: an HTTP(S) server with status, redirect and
 * slow routes, a TCP listener and a closed port, a hand-written grpc.health.v1 server over
 * HTTP/2 cleartext, and an exec that runs child processes.
 */
import { spawn } from 'node:child_process';
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttp2Server, type Http2Session } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';
import type { ProbeRuntime } from '../../../src/probes/index.js';

/** A runtime's exec. */
export type ProbeExec = NonNullable<ProbeRuntime['exec']>;

export const HOST = '127.0.0.1';

const portOf = (server: Server): number => (server.address() as AddressInfo).port;

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => resolve(portOf(server)));
  });
}

/** A port nothing listens on (it was bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createNetServer();
  const port = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface Recorded {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly at: number;
}

export interface HttpFixture {
  readonly port: number;
  readonly url: string;
  /** Every request, in order. */
  readonly requests: Recorded[];
  /**
   * What `/dyn/<name>` answers: a status, or a queue of statuses consumed one per request (the
   * last one repeats).
   */
  readonly statuses: Map<string, number | number[]>;
  /** Requests to `path` (query excluded) so far. */
  count(path: string): number;
  /** Sockets currently open to the server. */
  openSockets(): number;
  close(): Promise<void>;
}

/**
 * Routes: `/status/<code>`; `/dyn/<name>` (see `statuses`); `/slow` (never answers);
 * `/redirect?to=<url>&code=<3xx>`; `/loop` (redirects to itself); `/echo` (the request headers
 * as JSON); `/big` (20 KiB body).
 */
export async function httpFixture(tls?: { cert: string; key: string }): Promise<HttpFixture> {
  const requests: Recorded[] = [];
  const statuses = new Map<string, number | number[]>();
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ path: url.pathname, headers: req.headers, at: Date.now() });
    const [, route, arg] = url.pathname.split('/');
    const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers });
      res.end(body);
    };
    switch (route) {
      case 'status':
        send(Number(arg), `status ${arg ?? ''}`);
        return;
      case 'dyn': {
        const entry = statuses.get(arg ?? '') ?? 200;
        const status = Array.isArray(entry)
          ? entry.length > 1
            ? (entry.shift() ?? 200)
            : (entry[0] ?? 200)
          : entry;
        send(status, `dyn ${String(status)}`);
        return;
      }
      case 'slow':
        return; // answered never; the socket is destroyed on close
      case 'redirect':
        send(Number(url.searchParams.get('code') ?? 302), 'moved', {
          location: url.searchParams.get('to') ?? '/',
        });
        return;
      case 'loop':
        send(302, 'again', { location: '/loop' });
        return;
      case 'echo':
        send(200, JSON.stringify(req.headers));
        return;
      case 'big':
        send(200, 'x'.repeat(20 * 1024));
        return;
      default:
        send(404, 'not found');
    }
  };
  const server: HttpServer = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler)
    : createHttpServer(handler);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  return {
    port,
    url: `${tls ? 'https' : 'http'}://${HOST}:${String(port)}`,
    requests,
    statuses,
    count: (path) => requests.filter((r) => r.path === path).length,
    openSockets: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface TcpFixture {
  readonly port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

export async function tcpFixture(): Promise<TcpFixture> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
  });
  const port = await listen(server);
  return {
    port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The `service` (field 1) of a HealthCheckRequest message, decoded independently of the module. */
function serviceOf(message: Buffer): string {
  let at = 0;
  let service = '';
  while (at < message.length) {
    const tag = message[at++] ?? 0;
    if (tag !== 0x0a) throw new Error(`unexpected tag ${String(tag)}`);
    let length = 0;
    let shift = 0;
    for (;;) {
      const byte = message[at++] ?? 0;
      length |= (byte & 0x7f) << shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
    }
    service = message.subarray(at, at + length).toString('utf8');
    at += length;
  }
  return service;
}

export interface GrpcFixture {
  readonly port: number;
  /**
   * The serving status (0-3) per service name, `''` for the server as a whole; `'hang'` never
   * answers. A name not in the map answers NOT_FOUND, as grpc-go's health server does.
   */
  readonly services: Map<string, number | 'hang'>;
  /** The services asked for, in order. */
  readonly asked: string[];
  /** The `user-agent` of the last call. */
  userAgent(): string | undefined;
  close(): Promise<void>;
}

/**
 * A grpc.health.v1 server: `Health/Check` answers `{ status }` (field 1, varint) with a
 * `grpc-status: 0` trailer; other methods answer UNIMPLEMENTED trailers-only. `health: false`
 * makes every method unimplemented, as a server without the health service.
 */
export async function grpcFixture(health = true): Promise<GrpcFixture> {
  const services = new Map<string, number | 'hang'>();
  const asked: string[] = [];
  let userAgent: string | undefined;
  const sessions = new Set<Http2Session>();
  const server = createHttp2Server();
  server.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    userAgent = headers['user-agent'];
    const trailersOnly = (code: number, message: string): void => {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': String(code),
          'grpc-message': encodeURIComponent(message),
        },
        { endStream: true },
      );
    };
    if (!health || headers[':path'] !== '/grpc.health.v1.Health/Check') {
      stream.resume();
      trailersOnly(12, `unknown service ${String(headers[':path'])}`);
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const frame = Buffer.concat(chunks);
      const service = serviceOf(frame.subarray(5, 5 + frame.readUInt32BE(1)));
      asked.push(service);
      const status = services.get(service);
      if (status === 'hang') return;
      if (status === undefined) {
        trailersOnly(5, 'unknown service');
        return;
      }
      const body = status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, status]);
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(body.length, 1);
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc' },
        { waitForTrailers: true },
      );
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.concat([prefix, body]));
    });
  });
  const port = await listen(server);
  return {
    port,
    services,
    asked,
    userAgent: () => userAgent,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface ExecFixture {
  readonly exec: ProbeExec;
  /** Pids of the commands started, in order. */
  readonly pids: number[];
  /** Commands still running. */
  running(): number;
}

/** An exec that runs the command as a child process and kills it (SIGKILL) when told to. */
export function execFixture(): ExecFixture {
  const pids: number[] = [];
  let running = 0;
  const exec: ProbeExec = (_container, command, { signal }) =>
    new Promise((resolve, reject) => {
      const [file, ...args] = command;
      if (file === undefined) {
        reject(new Error('empty command'));
        return;
      }
      const child = spawn(file, args, {
        signal,
        killSignal: 'SIGKILL',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      if (child.pid !== undefined) {
        pids.push(child.pid);
        running++;
      }
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => {
        if (child.pid !== undefined) running--;
        resolve({ exitCode: code ?? 128 + 9, output });
      });
    });
  return { exec, pids, running: () => running };
}

/** Whether a process with `pid` exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

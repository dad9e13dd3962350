/**
 * exec, attach and port-forward against the remote API server, as a client of its WebSocket
 * channel protocols: `v5.channel.k8s.io` (or `v4`) for exec and attach (channel 0 stdin, 1
 * stdout, 2 stderr, 3 the closing Status, 4 terminal size; under v5 `0xFF 0` closes stdin) and
 * `v4.channel.k8s.io` for port-forward (channel 0 data, 1 errors, each opened by a 2-byte
 * little-endian port number).
 */
import type { RequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { errorMessage, unavailable, VirtualKubeletError } from '../../errors.js';
import type { AttachStreams } from '../../provider.js';
import type { V1Status } from '../../wire.js';

/** What a WebSocket to the API server needs: its URL and the kubeconfig's credentials. */
export interface RemoteEndpoint {
  readonly server: URL;
  /** Fills TLS material and the auth header, as the kubeconfig says. */
  readonly applyToHTTPSOptions: (opts: RequestOptions) => Promise<void>;
}

async function open(
  endpoint: RemoteEndpoint,
  path: string,
  query: URLSearchParams,
  protocols: readonly string[],
  signal: AbortSignal,
): Promise<WebSocket> {
  const opts: RequestOptions = {};
  await endpoint.applyToHTTPSOptions(opts);
  const url = new URL(path, endpoint.server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = query.toString();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {}))
    if (typeof v === 'string') headers[k] = v;
  if (opts.auth) headers.authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  const ws = new WebSocket(url, [...protocols], {
    ca: opts.ca,
    cert: opts.cert,
    key: opts.key,
    rejectUnauthorized: opts.rejectUnauthorized,
    ...(opts.servername ? { servername: opts.servername } : {}),
    headers,
  });
  const onAbort = (): void => ws.terminate();
  signal.addEventListener('abort', onAbort, { once: true });
  ws.once('close', () => signal.removeEventListener('abort', onAbort));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let message = text.slice(0, 300);
        try {
          message = (JSON.parse(text) as V1Status).message ?? message;
        } catch {
          // not a Status: keep the text
        }
        const status = res.statusCode ?? 0;
        const code = status === 404 ? 'NotFound' : status >= 500 ? 'Unavailable' : 'InvalidInput';
        reject(
          new VirtualKubeletError(code, `remote API server: HTTP ${String(status)}: ${message}`),
        );
      });
    });
    ws.once('error', (err) => reject(unavailable(`remote API server: ${errorMessage(err)}`, err)));
  });
  return ws;
}

const toBuffer = (data: RawData): Buffer =>
  Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);

/** The exit code a remote closing Status gives; throws for a failure that is not an exit. */
export function exitCodeOf(status: V1Status): number {
  if (status.status === 'Success') return 0;
  if (status.reason === 'NonZeroExitCode') {
    const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
    const code = Number(cause?.message);
    if (Number.isInteger(code)) return code;
  }
  throw new VirtualKubeletError('Internal', `remote: ${status.message ?? 'stream failed'}`);
}

/**
 * Runs an exec (with `command`) or attach (without) in the remote pod; resolves to the exit
 * code (attach: 0 when the stream ends).
 */
export async function remoteCommand(
  endpoint: RemoteEndpoint,
  path: string,
  container: string,
  command: readonly string[] | undefined,
  streams: AttachStreams,
  signal: AbortSignal,
): Promise<number> {
  const query = new URLSearchParams({ container });
  for (const c of command ?? []) query.append('command', c);
  query.set('stdin', String(streams.stdin !== undefined));
  query.set('stdout', String(streams.stdout !== undefined));
  // A terminal merges stderr into stdout: the API refuses stderr with tty.
  query.set('stderr', String(streams.stderr !== undefined && !streams.tty));
  query.set('tty', String(streams.tty));
  const ws = await open(endpoint, path, query, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], signal);
  const v5 = ws.protocol === 'v5.channel.k8s.io';
  return new Promise<number>((resolve, reject) => {
    let status: V1Status | undefined;
    ws.on('message', (data) => {
      const buf = toBuffer(data);
      if (buf.length < 2) return;
      const payload = buf.subarray(1);
      if (buf[0] === 1) streams.stdout?.write(payload);
      else if (buf[0] === 2) streams.stderr?.write(payload);
      else if (buf[0] === 3) {
        try {
          status = JSON.parse(payload.toString('utf8')) as V1Status;
        } catch {
          status = { status: 'Failure', message: payload.toString('utf8') };
        }
      }
    });
    ws.once('close', () => {
      streams.stdin?.off('data', onData);
      if (signal.aborted) {
        reject(signal.reason as Error);
        return;
      }
      if (status === undefined) {
        resolve(0);
        return;
      }
      try {
        resolve(exitCodeOf(status));
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    ws.once('error', (err) => reject(unavailable(`remote stream: ${errorMessage(err)}`, err)));
    const onData = (chunk: Buffer | string): void => {
      if (ws.readyState === WebSocket.OPEN)
        ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(chunk)]));
    };
    streams.stdin?.on('data', onData);
    streams.stdin?.once('end', () => {
      if (v5 && ws.readyState === WebSocket.OPEN) ws.send(Buffer.from([0xff, 0]));
    });
    if (streams.resize) {
      const sizes = streams.resize;
      void (async () => {
        for await (const size of sizes) {
          if (ws.readyState !== WebSocket.OPEN) break;
          const json = JSON.stringify({ Width: size.width, Height: size.height });
          ws.send(Buffer.concat([Buffer.from([4]), Buffer.from(json)]));
        }
      })().catch(() => undefined);
    }
  });
}

/** Pipes `stream` to `port` of the remote pod at `path` (`.../portforward`). */
export async function remotePortForward(
  endpoint: RemoteEndpoint,
  path: string,
  port: number,
  stream: Duplex,
  signal: AbortSignal,
): Promise<void> {
  const ws = await open(
    endpoint,
    path,
    new URLSearchParams({ ports: String(port) }),
    ['v4.channel.k8s.io'],
    signal,
  );
  await new Promise<void>((resolve, reject) => {
    const opened = new Set<number>();
    let error = '';
    ws.on('message', (data) => {
      const buf = toBuffer(data);
      const channel = buf[0] ?? -1;
      // The first message of each channel is the port number.
      if (!opened.has(channel)) {
        opened.add(channel);
        return;
      }
      if (channel === 0) stream.write(buf.subarray(1));
      else if (channel === 1) error += buf.subarray(1).toString('utf8');
    });
    const onData = (chunk: Buffer): void => {
      if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.concat([Buffer.from([0]), chunk]));
    };
    stream.on('data', onData);
    stream.once('end', () => ws.close(1000));
    stream.once('close', () => ws.close(1000));
    ws.once('close', () => {
      stream.off('data', onData);
      stream.end();
      if (error) reject(unavailable(`remote port-forward to ${String(port)}: ${error}`));
      else resolve();
    });
    ws.once('error', (err) =>
      reject(unavailable(`remote port-forward: ${errorMessage(err)}`, err)),
    );
  });
}

import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ServerOptions } from 'node:https';

/**
 * Limits of the kubelet port, against clients that are slow or many. Streams (`logs?follow`,
 * exec, attach, port-forward) are bounded by their own idle timeouts (`StreamTimeouts`), never
 * by these: a request counts as received once its headers and body are in, however long its
 * answer lasts, and an upgraded connection leaves the HTTP parser and its timers.
 */
export interface HttpLimits {
  /**
   * Time from the connection to the end of a request's headers (also the TLS handshake's
   * limit); a client sending them byte by byte is cut there. Default: 30 000 ms.
   */
  readonly headersTimeoutMs?: number;
  /**
   * Time to receive a whole request, headers and body, not its answer. At least
   * `headersTimeoutMs`; 0 for none. Default: 300 000 ms.
   */
  readonly requestTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this long. Default: 90 000 ms (the kubelet's). */
  readonly idleTimeoutMs?: number;
  /**
   * Open connections at most, upgraded streams included; connections past it are closed as
   * soon as they are accepted, while the open ones carry on. Default: 1 000.
   */
  readonly maxConnections?: number;
}

/** {@link HttpLimits} with every default filled in. */
export type ResolvedHttpLimits = Required<HttpLimits>;

/** The limits with their defaults; throws a RangeError naming a bad option. */
export function resolveHttpLimits(limits: HttpLimits = {}): ResolvedHttpLimits {
  const r: ResolvedHttpLimits = {
    headersTimeoutMs: limits.headersTimeoutMs ?? 30_000,
    requestTimeoutMs: limits.requestTimeoutMs ?? 300_000,
    idleTimeoutMs: limits.idleTimeoutMs ?? 90_000,
    maxConnections: limits.maxConnections ?? 1_000,
  };
  for (const [name, value] of Object.entries(r))
    if (!Number.isInteger(value) || value < (name === 'requestTimeoutMs' ? 0 : 1))
      throw new RangeError(`limits.${name} must be a positive integer, not ${String(value)}`);
  if (r.requestTimeoutMs !== 0 && r.requestTimeoutMs < r.headersTimeoutMs)
    throw new RangeError(
      `limits.requestTimeoutMs (${String(r.requestTimeoutMs)}) must be at least limits.headersTimeoutMs (${String(r.headersTimeoutMs)})`,
    );
  return r;
}

/** The server options that enforce `limits` (the connection cap is set on the server). */
export function serverOptionsOf(limits: ResolvedHttpLimits): ServerOptions {
  const shortest = Math.min(
    limits.headersTimeoutMs,
    limits.requestTimeoutMs === 0 ? Infinity : limits.requestTimeoutMs,
  );
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    handshakeTimeout: limits.headersTimeoutMs,
    // Timeouts are only checked this often: a tenth of the shortest keeps them within 10 %.
    connectionsCheckingInterval: Math.max(10, Math.min(30_000, Math.floor(shortest / 10))),
  };
}

/**
 * How long a refused upgrade's connection may stay half-closed: a peer that never closes its side
 * would otherwise hold the socket (and a descriptor) for good.
 */
export const REFUSED_CLOSE_MS = 5_000;

/** An HTTP answer on a socket that asked for an upgrade we refuse; the connection closes. */
export function refuseUpgrade(
  socket: Duplex,
  status: number,
  body: string,
  headers: Readonly<Record<string, string>> = {},
  closeAfterMs = REFUSED_CLOSE_MS,
): void {
  if (socket.destroyed) return;
  const text = Buffer.from(body);
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${String(status)} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${String(text.length)}\r\n` +
      `${extra}Connection: close\r\n\r\n${body}`,
  );
  setTimeout(() => {
    socket.destroy();
  }, closeAfterMs).unref();
}

import type { V1HTTPGetAction } from '../wire.js';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import {
  MAX_OUTPUT_BYTES,
  deadline,
  dialError,
  failure,
  joinHostPort,
  success,
  warning,
  type ProbeResult,
} from './common.js';

/** Statuses Go's HTTP client follows (any other 3xx is returned as is). */
const FOLLOWED = new Set([301, 302, 303, 307, 308]);
/** Go's client gives up when this many requests were sent and the last one redirects again. */
const MAX_REQUESTS = 10;

export interface HttpTarget {
  readonly action: V1HTTPGetAction;
  /** `action.host`, or the pod IP when it is empty. */
  readonly host: string;
  /** The resolved port. */
  readonly port: number;
  /** The `User-Agent` sent unless the probe sets one, `kube-probe/<major>.<minor>`. */
  readonly userAgent: string;
}

/** The URL an httpGet probe requests: the path may carry a query; the scheme is lower-cased. */
export function probeURL(target: HttpTarget): URL {
  const scheme = (target.action.scheme ?? 'HTTP').toLowerCase();
  let path = target.action.path ?? '';
  if (path === '') path = '/';
  else if (!path.startsWith('/')) path = `/${path}`;
  return new URL(`${scheme}://${joinHostPort(target.host, target.port)}${path}`);
}

/**
 * The request headers: the probe's `httpHeaders` (repeated names all sent), `User-Agent:
 * kube-probe/…` and `Accept: *\/*` unless the probe sets them (an empty `Accept` removes it), as
 * the kubelet builds them. A `Host` header sets the virtual host.
 */
export function probeHeaders(target: HttpTarget): OutgoingHttpHeaders {
  const headers = new Map<string, string[]>();
  for (const h of target.action.httpHeaders ?? []) {
    const key = h.name.toLowerCase();
    const values = headers.get(key) ?? [];
    values.push(h.value);
    headers.set(key, values);
  }
  if (!headers.has('user-agent')) headers.set('user-agent', [target.userAgent]);
  const accept = headers.get('accept');
  if (!accept) headers.set('accept', ['*/*']);
  else if (accept[0] === '') headers.delete('accept');
  const out: OutgoingHttpHeaders = {};
  for (const [key, values] of headers) {
    // Node sends an array as repeated header lines; `host` takes one value (Go takes the first).
    out[key] = key === 'host' || values.length === 1 ? values[0] : values;
  }
  return out;
}

interface Answer {
  readonly status: number;
  readonly location: string | undefined;
  readonly body: string;
}

/**
 * One httpGet probe attempt, the kubelet's way: a GET without keep-alive (HTTPS without
 * certificate verification), 200-399 a success; redirects are followed while they stay on the
 * same host name (at most 10 requests), a redirect elsewhere ends the probe with a warning and
 * counts as a success; other statuses fail with `HTTP probe failed with statuscode: <code>`
 * (never the body, which may hold secrets). Network errors and the timeout are failures.
 */
export async function httpCheck(
  target: HttpTarget,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const limit = deadline(signal, timeoutMs);
  const first = probeURL(target);
  let url = first;
  let headers = probeHeaders(target);
  try {
    for (let sent = 1; ; sent++) {
      let answer: Answer;
      try {
        answer = await get(url, headers, limit.signal);
      } catch (err) {
        if (limit.timedOut()) {
          return failure(
            `Get ${JSON.stringify(url.href)}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
          );
        }
        if (signal.aborted) return failure('probe cancelled');
        return failure(`Get ${JSON.stringify(url.href)}: ${networkError(url, err)}`);
      }
      const { status, location, body } = answer;
      if (FOLLOWED.has(status) && location !== undefined) {
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return failure(
            `failed to parse Location header ${JSON.stringify(location)}: invalid URL`,
          );
        }
        if (next.hostname === first.hostname) {
          if (sent >= MAX_REQUESTS) {
            return failure(`Get ${JSON.stringify(location)}: stopped after 10 redirects`);
          }
          headers = redirectHeaders(headers, url, next);
          url = next;
          continue;
        }
      }
      if (status >= 200 && status < 400) {
        return status >= 300
          ? warning(`Probe terminated redirects, Response body: ${body}`)
          : success(body);
      }
      return failure(`HTTP probe failed with statuscode: ${String(status)}`);
    }
  } finally {
    limit.dispose();
  }
}

/** Go adds the previous URL as `Referer` when following, except from HTTPS to HTTP. */
function redirectHeaders(headers: OutgoingHttpHeaders, from: URL, to: URL): OutgoingHttpHeaders {
  const out = { ...headers };
  if (from.protocol === 'https:' && to.protocol === 'http:') delete out.referer;
  else {
    const ref = new URL(from.href);
    ref.username = '';
    ref.password = '';
    ref.hash = '';
    out.referer = ref.href;
  }
  return out;
}

function networkError(url: URL, err: unknown): string {
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return dialError(joinHostPort(url.hostname.replace(/^\[|\]$/g, ''), port), err);
  }
  return err instanceof Error ? err.message : String(err);
}

function get(url: URL, headers: OutgoingHttpHeaders, signal: AbortSignal): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const options = { method: 'GET', headers, signal, agent: false as const };
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let size = 0;
      let finished = false;
      const done = (): void => {
        if (finished) return;
        finished = true;
        res.destroy();
        const location = res.headers.location;
        resolve({
          status: res.statusCode ?? 0,
          location,
          body: Buffer.concat(chunks).subarray(0, MAX_OUTPUT_BYTES).toString('utf8'),
        });
      };
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        // The kubelet reads at most 10 KiB of the body and does not mind the rest.
        if (size >= MAX_OUTPUT_BYTES) done();
      });
      res.once('end', done);
      res.once('close', () => {
        if (!finished) reject(new Error('connection closed before the response was complete'));
      });
      res.on('error', reject);
    };
    const req =
      url.protocol === 'https:'
        ? httpsRequest(
            url,
            { ...options, rejectUnauthorized: false, servername: sni(url) },
            onResponse,
          )
        : httpRequest(url, options, onResponse);
    req.on('error', reject);
    req.end();
  });
}

/**
 * The TLS server name: the URL's host as Go sends it (none for an IP address), not the `Host`
 * header, which Node would otherwise use.
 */
function sni(url: URL): string {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return isIP(host) === 0 ? host : '';
}

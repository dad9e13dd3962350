// The kubelet-API fuzzer's pure parts: a seeded random source, request generators (HTTP/1.1
// requests as raw bytes, some of them malformed on purpose), SPDY/3.1 frames for abuse, and the
// check that an answer is well-formed HTTP.
import { constants, deflateSync } from 'node:zlib';
import { SPDY_DICTIONARY } from '../../src/spdy/dictionary.js';

/** A small fast PRNG (mulberry32): the same seed gives the same requests. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(xs: readonly T[]): T {
    const x = xs[this.int(xs.length)];
    if (x === undefined) throw new Error('pick from an empty list');
    return x;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** One generated request. `valid`: well-formed HTTP/1.1, so the server must answer it. */
export interface FuzzRequest {
  readonly method: string;
  readonly target: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Buffer;
  readonly valid: boolean;
}

/** What the generated paths aim at: the routes of the kubelet API and some of the kubelet's. */
const PATTERNS = [
  '/healthz',
  '/healthz/:x',
  '/pods',
  '/runningpods',
  '/configz',
  '/stats/summary',
  '/stats',
  '/metrics',
  '/metrics/resource',
  '/metrics/cadvisor',
  '/containerLogs/:ns/:pod/:c',
  '/exec/:ns/:pod/:c',
  '/exec/:ns/:pod/:uid/:c',
  '/attach/:ns/:pod/:c',
  '/portForward/:ns/:pod',
  '/run/:ns/:pod/:c',
  '/logs/',
  '/spec/',
  '/checkpoint/:ns/:pod/:c',
  '/',
];

const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];
const ODD_METHODS = ['TRACE', 'CONNECT', 'PROPFIND', 'FOO', 'get', 'M-SEARCH', 'PRI'];
const TOKEN_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!*';

/** What a `:segment` becomes: often the real pod, else anything a path may hold. */
function segment(rng: Rng, name: string, real: FuzzTarget): string {
  if (rng.chance(0.5)) {
    if (name === 'ns') return real.namespace;
    if (name === 'pod') return real.pod;
    if (name === 'c') return real.container;
  }
  switch (rng.int(9)) {
    case 0:
      return '..';
    case 1:
      return '%2e%2e';
    case 2:
      return '%00';
    case 3:
      return 'x'.repeat(1 + rng.int(9000));
    case 4:
      return encodeURIComponent('ü∂ƒ©˙∆˚¬…' + String(rng.int(1000)));
    case 5:
      return '';
    case 6:
      return '%zz';
    case 7:
      return token(rng, 1 + rng.int(64));
    default:
      return String(rng.int(100000));
  }
}

const token = (rng: Rng, n: number): string =>
  Array.from({ length: n }, () => TOKEN_CHARS[rng.int(TOKEN_CHARS.length)] ?? 'x').join('');

const QUERY_KEYS = [
  'follow',
  'tailLines',
  'limitBytes',
  'sinceSeconds',
  'sinceTime',
  'timestamps',
  'previous',
  'command',
  'stdin',
  'stdout',
  'stderr',
  'tty',
  'port',
  'only_cpu_and_memory',
  'input',
  'output',
];
const QUERY_VALUES = [
  'true',
  'false',
  '1',
  '0',
  '-1',
  '999999999999999999999',
  'abc',
  '',
  '2026-13-45T99:99:99Z',
  'ls',
  '%ff',
  'x'.repeat(4000),
];

function query(rng: Rng): string {
  if (rng.chance(0.4)) return '';
  const pairs = Array.from({ length: 1 + rng.int(rng.chance(0.05) ? 300 : 5) }, () => {
    const key = rng.chance(0.8) ? rng.pick(QUERY_KEYS) : token(rng, 1 + rng.int(12));
    const value = rng.chance(0.8)
      ? rng.pick(QUERY_VALUES)
      : encodeURIComponent(token(rng, rng.int(30)));
    return `${key}=${value}`;
  });
  return `?${pairs.join(rng.chance(0.9) ? '&' : ';')}`;
}

/** Where the fuzzer's requests may find something: a real pod and container of the node. */
export interface FuzzTarget {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
}

/** A random request: mostly well-formed with odd contents, sometimes malformed on purpose. */
export function randomRequest(rng: Rng, real: FuzzTarget): FuzzRequest {
  let valid = true;
  let method = rng.chance(0.9) ? rng.pick(METHODS) : rng.pick(ODD_METHODS);
  if (rng.chance(0.02)) {
    method = `G\x01T`;
    valid = false;
  }
  const pattern = rng.chance(0.9) ? rng.pick(PATTERNS) : `/${token(rng, 1 + rng.int(20))}`;
  let target =
    pattern
      .split('/')
      .map((s) => (s.startsWith(':') ? segment(rng, s.slice(1), real) : s))
      .join('/') + query(rng);
  if (rng.chance(0.03))
    target = rng.pick(['*', 'http://kubelet/pods', '//pods', '/a/../../etc/passwd', '/%2F%2F']);
  if (rng.chance(0.01)) {
    target = `/pods ${token(rng, 3)}`;
    valid = false;
  }
  // CONNECT takes a host:port, not a path: a server may drop such a request unanswered (Node's
  // HTTP server does, when nothing handles CONNECT), so its answer is not required.
  if (method === 'CONNECT') valid = false;
  const headers: [string, string][] = [['Host', '127.0.0.1']];
  const n = rng.chance(0.03) ? 150 + rng.int(100) : rng.int(6);
  for (let i = 0; i < n; i++) headers.push(randomHeader(rng));
  if (rng.chance(0.1)) {
    headers.push(['Connection', 'Upgrade']);
    headers.push([
      'Upgrade',
      rng.pick(['SPDY/3.1', 'websocket', 'h2c', 'SPDY/3.1, websocket', token(rng, 8)]),
    ]);
    if (rng.chance(0.5))
      headers.push([
        'X-Stream-Protocol-Version',
        rng.pick(['v4.channel.k8s.io', 'v5.channel.k8s.io', 'portforward.k8s.io', token(rng, 20)]),
      ]);
    if (rng.chance(0.5)) {
      headers.push(['Sec-WebSocket-Version', rng.pick(['13', '8', 'x'])]);
      headers.push([
        'Sec-WebSocket-Key',
        rng.chance(0.8) ? rng.bytes(16).toString('base64') : token(rng, 5),
      ]);
      headers.push([
        'Sec-WebSocket-Protocol',
        rng.pick(['v5.channel.k8s.io', 'base64.channel.k8s.io', 'x', '']),
      ]);
    }
  }
  let body: Buffer = Buffer.alloc(0);
  if (rng.chance(0.15)) body = rng.bytes(rng.int(rng.chance(0.1) ? 200_000 : 2000));
  if (body.length > 0 && rng.chance(0.3)) {
    headers.push(['Transfer-Encoding', 'chunked']);
    if (rng.chance(0.3)) {
      // A chunk size that is not hex.
      body = Buffer.concat([
        Buffer.from('zz\r\n'),
        body.subarray(0, 10),
        Buffer.from('\r\n0\r\n\r\n'),
      ]);
      valid = false;
    } else
      body = Buffer.concat([
        Buffer.from(`${body.length.toString(16)}\r\n`),
        body,
        Buffer.from('\r\n0\r\n\r\n'),
      ]);
  } else headers.push(['Content-Length', String(body.length)]);
  if (rng.chance(0.01)) {
    headers.push(['Bad Header', 'x']);
    valid = false;
  }
  headers.push(['Connection', 'close']);
  return { method, target, headers, body, valid };
}

const HEADER_NAMES = [
  'Accept',
  'Authorization',
  'Content-Type',
  'User-Agent',
  'X-Forwarded-For',
  'X-Remote-User',
  'Impersonate-User',
  'Cookie',
  'Range',
  'Expect',
];

function randomHeader(rng: Rng): [string, string] {
  const name = rng.chance(0.7) ? rng.pick(HEADER_NAMES) : `X-${token(rng, 1 + rng.int(30))}`;
  let value: string;
  switch (rng.int(6)) {
    case 0:
      value = `Bearer ${token(rng, rng.int(200))}`;
      break;
    case 1:
      value = 'v'.repeat(rng.int(rng.chance(0.1) ? 20_000 : 500));
      break;
    case 2:
      value = '100-continue';
      break;
    default:
      value = token(rng, rng.int(40));
  }
  return [name, value];
}

/** The bytes of a request as it goes on the wire. */
export function rawRequest(req: FuzzRequest): Buffer {
  const head = [
    `${req.method} ${req.target} HTTP/1.1`,
    ...req.headers.map(([n, v]) => `${n}: ${v}`),
  ];
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), req.body]);
}

export type HeadCheck =
  | { readonly ok: true; readonly code: number; readonly headerBytes: number }
  | { readonly ok: false; readonly why: string };

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5]\d\d)(?: [^\r\n]*)?$/;
const HEADER_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~\x80-\xff]*$/;

/**
 * Whether `data` starts with a complete, well-formed HTTP/1.x response head: a status line with
 * a code from 100 to 599, header lines of a token, a colon and printable text, and the blank
 * line that ends them. `incomplete` when the blank line has not come yet.
 */
export function checkResponseHead(data: Buffer): HeadCheck | { readonly ok: 'incomplete' } {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) {
    if (data.length > 0 && !'HTTP/1.'.startsWith(data.subarray(0, 7).toString('latin1')))
      return {
        ok: false,
        why: `not a status line: ${JSON.stringify(data.subarray(0, 40).toString('latin1'))}`,
      };
    return { ok: 'incomplete' };
  }
  const [status = '', ...lines] = data.subarray(0, end).toString('latin1').split('\r\n');
  const m = STATUS_LINE.exec(status);
  if (!m?.[1]) return { ok: false, why: `bad status line ${JSON.stringify(status.slice(0, 80))}` };
  const bad = lines.find((l) => !HEADER_LINE.test(l));
  if (bad !== undefined)
    return { ok: false, why: `bad header line ${JSON.stringify(bad.slice(0, 80))}` };
  return { ok: true, code: Number(m[1]), headerBytes: end + 4 };
}

// SPDY/3.1 frames (the abuse phase builds them by hand, independent of the server's codec).

/** A control frame: version 3, `type`, `flags`, `payload`. */
export function spdyControl(type: number, flags: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8003, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24) | (payload.length & 0xffffff), 4);
  return Buffer.concat([head, payload]);
}

/** An uncompressed header block of `pairs`. */
export function spdyHeaderBlock(
  pairs: readonly (readonly [string, string])[],
  declared?: number,
): Buffer {
  const parts: Buffer[] = [u32(declared ?? pairs.length)];
  for (const [n, v] of pairs) {
    const nb = Buffer.from(n);
    const vb = Buffer.from(v);
    parts.push(u32(nb.length), nb, u32(vb.length), vb);
  }
  return Buffer.concat(parts);
}

/** `block` compressed as the first block of a connection's header stream (sync-flushed). */
export function compressFirstBlock(block: Buffer): Buffer {
  return deflateSync(block, {
    dictionary: SPDY_DICTIONARY,
    level: 9,
    finishFlush: constants.Z_SYNC_FLUSH,
  });
}

/** SYN_STREAM for `streamId` with an already compressed header block. */
export function spdySynStream(streamId: number, compressed: Buffer, fin = false): Buffer {
  const payload = Buffer.concat([u32(streamId & 0x7fffffff, 0), Buffer.from([0, 0]), compressed]);
  return spdyControl(1, fin ? 1 : 0, payload);
}

export function u32(...values: number[]): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeUInt32BE(v >>> 0, i * 4));
  return out;
}

/**
 * exec and attach over SPDY/3.1, as the kubelet serves them (k8s `remotecommand/httpstream.go`)
 * and client-go's `remotecommand` v2-v5 clients (and the apiserver's StreamTranslator, which is one)
 * use them. The client opens one stream per channel, each named by its `streamtype` header:
 * `error` first, then `stdin`, `stdout`, `stderr` (not with a TTY) and `resize` (TTY, v3+), each
 * waiting for its SYN_REPLY. The command starts once all expected streams exist.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { unavailable } from '../../errors.js';
import type { TerminalSize } from '../../provider.js';
import type { SpdySession, SpdyStream } from '../../spdy/session.js';
import { resolveStreamTimeouts, upgradeSpdy } from './spdy-upgrade.js';
import { errorStatus, exitStatus } from './status.js';
import type {
  RemoteCommandOptions,
  RemoteCommandResult,
  RemoteCommandSession,
  StreamTimeouts,
} from './types.js';
import { PushIterable, ResizeDecoder } from './resize.js';

/** Server support, newest first; the client's order decides (k8s `SupportedStreamingProtocols`). */
export const REMOTECOMMAND_SPDY_PROTOCOLS: readonly string[] = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v3.channel.k8s.io',
  'v2.channel.k8s.io',
  'channel.k8s.io',
];

/**
 * After `finish()`, how long the client gets to close the connection itself (client-go does so
 * as soon as it has read stdout, stderr and the error stream to their end) before we close it.
 * Closing first would risk a TCP reset that discards output the client has not read yet.
 */
export const FINISH_GRACE_MS = 5_000;

/**
 * Most streams one exec/attach connection may have open: one per stream type (error, stdin,
 * stdout, stderr, resize). Past it a SYN_STREAM is answered RST_STREAM REFUSED_STREAM.
 */
export const REMOTECOMMAND_MAX_STREAMS = 5;

type StreamType = 'error' | 'stdin' | 'stdout' | 'stderr' | 'resize';

const STREAM_TYPES: ReadonlySet<string> = new Set<StreamType>([
  'error',
  'stdin',
  'stdout',
  'stderr',
  'resize',
]);

/**
 * Completes a SPDY exec/attach upgrade and waits until the client has opened every stream the
 * request asked for (`options`, with `resize` only for a TTY on v3 and later), replying to each
 * at once. Streams of an unknown or unrequested type, duplicates and late extras are refused with
 * RST_STREAM CANCEL (the kubelet replies to them and keeps them, which lets a client pile up
 * streams); at most `REMOTECOMMAND_MAX_STREAMS` are open at once.
 *
 * Resolves to `undefined` when there is no session to run: the handshake failed (the client got
 * a raw HTTP 400/403 and the socket is closed), or the client did not open its streams within
 * `streamCreationTimeoutMs`, reset one, or went away first (the connection is closed).
 *
 * Throws (before touching the socket) only for invalid `timeouts`.
 */
export async function acceptSpdyRemoteCommand(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  options: RemoteCommandOptions,
  timeouts?: StreamTimeouts,
): Promise<RemoteCommandSession | undefined> {
  const { streamCreationTimeoutMs, streamIdleTimeoutMs } = resolveStreamTimeouts(timeouts);
  const collected = new Map<StreamType, SpdyStream>();
  const expected = new Set<StreamType>();
  let established = false;
  let onComplete: (() => void) | undefined;

  const upgraded = upgradeSpdy(req, socket, head, REMOTECOMMAND_SPDY_PROTOCOLS, {
    idleTimeoutMs: streamIdleTimeoutMs,
    maxStreams: REMOTECOMMAND_MAX_STREAMS,
    onStream: (stream) => {
      stream.on('error', ignore);
      const type = stream.header('streamtype') ?? '';
      if (established || !isStreamType(type) || !expected.has(type) || collected.has(type)) {
        return false;
      }
      collected.set(type, stream);
      if (collected.size === expected.size) onComplete?.();
      return true;
    },
  });
  if (upgraded === undefined) return undefined;
  const { session, protocol } = upgraded;

  const version = protocolVersion(protocol);
  expected.add('error');
  if (options.stdin) expected.add('stdin');
  if (options.stdout) expected.add('stdout');
  if (options.stderr && !options.tty) expected.add('stderr');
  if (options.tty && version >= 3) expected.add('resize');

  const complete = await new Promise<boolean>((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      session.off('close', fail);
      session.off('goAway', fail);
      session.off('reset', onReset);
      onComplete = undefined;
      resolve(ok);
    };
    const fail = (): void => {
      done(false);
    };
    const onReset = (stream: SpdyStream): void => {
      if ([...collected.values()].includes(stream)) done(false);
    };
    const timer = setTimeout(fail, streamCreationTimeoutMs);
    session.on('close', fail);
    session.on('goAway', fail);
    session.on('reset', onReset);
    onComplete = () => {
      done(true);
    };
  });
  if (!complete || session.closed) {
    session.close();
    return undefined;
  }
  established = true;
  return new SpdyRemoteCommandSession(session, protocol, version, options, collected);
}

/**
 * An established session. `signal` aborts when the client goes away (connection closed or idle,
 * GOAWAY, a stream reset) before `finish()` was called.
 */
class SpdyRemoteCommandSession implements RemoteCommandSession {
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly tty: boolean;
  readonly resize?: AsyncIterable<TerminalSize>;
  readonly protocol: string;
  readonly signal: AbortSignal;

  readonly #session: SpdySession;
  readonly #version: number;
  readonly #streams: ReadonlyMap<StreamType, SpdyStream>;
  readonly #abort = new AbortController();
  readonly #resize: PushIterable<TerminalSize> | undefined;
  #finishing: Promise<void> | undefined;
  #graceTimer: NodeJS.Timeout | undefined;

  constructor(
    session: SpdySession,
    protocol: string,
    version: number,
    options: RemoteCommandOptions,
    streams: ReadonlyMap<StreamType, SpdyStream>,
  ) {
    this.#session = session;
    this.#version = version;
    this.#streams = streams;
    this.protocol = protocol;
    this.tty = options.tty;
    this.signal = this.#abort.signal;
    this.stdin = streams.get('stdin');
    this.stdout = streams.get('stdout');
    this.stderr = streams.get('stderr');

    const resizeStream = streams.get('resize');
    if (resizeStream !== undefined) {
      const sizes = new PushIterable<TerminalSize>();
      const decoder = new ResizeDecoder();
      const text = new StringDecoder('utf8');
      resizeStream.on('data', (chunk: Buffer) => {
        for (const size of decoder.write(text.write(chunk))) sizes.push(size);
      });
      resizeStream.on('end', () => {
        sizes.end();
      });
      resizeStream.on('close', () => {
        sizes.end();
      });
      this.#resize = sizes;
      this.resize = sizes;
    }
    // The client never writes on its error stream; read it so that its FIN is noticed.
    streams.get('error')?.resume();

    session.on('goAway', () => {
      this.#abortIfRunning('the client sent GOAWAY');
    });
    session.on('reset', () => {
      this.#abortIfRunning('the client reset a stream');
    });
    session.on('timeout', () => {
      this.#abortIfRunning('the connection was idle for too long');
    });
    session.on('close', () => {
      clearTimeout(this.#graceTimer);
      this.#resize?.end();
      this.#abortIfRunning('the client closed the connection');
    });
    if (session.closed) this.#abortIfRunning('the client closed the connection');
  }

  finish(result: RemoteCommandResult): Promise<void> {
    this.#finishing ??= this.#finish(result);
    return this.#finishing;
  }

  async #finish(result: RemoteCommandResult): Promise<void> {
    const session = this.#session;
    if (!session.closed) {
      // Output first: the status is the last word, and client-go reads it after stdout/stderr.
      await Promise.all([endAndWait(this.stdout), endAndWait(this.stderr)]);
      const error = this.#streams.get('error');
      const status = this.#statusBytes(result);
      if (error !== undefined && status !== undefined && !error.destroyed && !error.writableEnded) {
        error.write(status);
      }
      // FIN on every stream we can write: client-go waits for the server to close stdin, too.
      const stdin = this.#streams.get('stdin');
      stdin?.resume(); // input nobody reads any more must not hold up the socket
      await Promise.all([
        endAndWait(error),
        endAndWait(stdin),
        endAndWait(this.#streams.get('resize')),
      ]);
    }
    this.#resize?.end();
    if (!session.closed) {
      this.#graceTimer = setTimeout(() => {
        session.close();
      }, FINISH_GRACE_MS);
    }
  }

  /** The error stream's content: a `metav1.Status` for v4/v5, text of a failure for v1-v3. */
  #statusBytes(result: RemoteCommandResult): Buffer | undefined {
    const status = 'exitCode' in result ? exitStatus(result.exitCode) : errorStatus(result.error);
    if (this.#version >= 4) return Buffer.from(JSON.stringify(status), 'utf8');
    if (status.status === 'Success') return undefined;
    return Buffer.from(status.message ?? 'error', 'utf8');
  }

  #abortIfRunning(message: string): void {
    if (this.#finishing !== undefined || this.#abort.signal.aborted) return;
    this.#abort.abort(this.#session.closeReason ?? unavailable(message));
  }
}

/** `v5.channel.k8s.io` → 5; `channel.k8s.io` → 1. */
function protocolVersion(protocol: string): number {
  const match = /^v(\d+)\./.exec(protocol);
  return match?.[1] !== undefined ? Number(match[1]) : 1;
}

function isStreamType(type: string): type is StreamType {
  return STREAM_TYPES.has(type);
}

/** Ends `stream`'s writable side and waits until everything was handed to the socket. */
async function endAndWait(stream: Writable | undefined): Promise<void> {
  if (stream === undefined || stream.destroyed) return;
  if (!stream.writableEnded) stream.end();
  try {
    await finished(stream, { readable: false });
  } catch {
    // Destroyed because the client went away: nothing left to flush.
  }
}

function ignore(): void {
  // A stream of ours errs only when misused (e.g. written after its end); that must not take
  // the process down. The session's own outcome is reported through `signal`.
}

/**
 * A client of the runtime's streaming server: the URL that the CRI `Exec` and `Attach` calls
 * return, spoken over SPDY/3.1 with the `v4.channel.k8s.io` remotecommand protocol, as the
 * kubelet's clients speak it to the kubelet (and the kubelet passes through to the runtime).
 *
 * The client opens one stream per channel, named by its `streamtype` header: `error` (a JSON
 * `Status` when the process ends), `stdin`, `stdout`, `stderr` (not with a terminal) and
 * `resize` (terminal sizes, JSON `{"Width","Height"}`, only with a terminal). When the caller's
 * stdin ends, the stdin stream is half-closed (FIN), so the process reads end of file: what
 * `kubectl cp` into a container (`tar xf -`) and `kubectl exec -i ... < file` need. The
 * WebSocket variant of the protocol that containerd also serves (v4) has no way to say so.
 */
import { finished } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import { invalidInput, unavailable } from '../../errors.js';
import type { AttachStreams } from '../../provider.js';
import { connectSpdy, type SpdyClientSession } from '../../spdy/client.js';
import type { SpdyStream } from '../../spdy/session.js';

/** The remotecommand protocol offered to the streaming server. */
export const STREAM_PROTOCOL = 'v4.channel.k8s.io';

/** The most of the error channel kept: a `Status` is far smaller. */
const MAX_STATUS_BYTES = 64 * 1024;

/** How a session ended: the exit code, or undefined when the server sent no status. */
export interface StreamOutcome {
  readonly exitCode: number | undefined;
}

/**
 * Connects `streams` to the session at `url` until the runtime has finished it (the error
 * channel and the output streams ended: the process ended) or `signal` fires (the connection is
 * dropped; the outcome has no exit code). Output is copied with back-pressure (a slow reader
 * holds up the connection, nothing piles up in memory); `streams.stdout` and `streams.stderr`
 * are not ended. Rejects with `Unavailable` when the server cannot be reached or refuses the
 * session, and with `InvalidInput` when the error channel reports a failure other than an exit
 * code.
 */
export async function runStream(
  url: string,
  streams: AttachStreams,
  signal: AbortSignal,
): Promise<StreamOutcome> {
  // A function, so that the checks after an await are not narrowed away.
  const aborted = (): boolean => signal.aborted;
  if (aborted()) return { exitCode: undefined };
  const local = new AbortController();
  const onAbort = (): void => {
    local.abort();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  let session: SpdyClientSession | undefined;
  try {
    const connection = await connectSpdy(url, {
      protocols: [STREAM_PROTOCOL],
      signal: local.signal,
    });
    session = connection.session;
    if (connection.protocol !== STREAM_PROTOCOL) {
      throw unavailable(
        `the runtime's streaming server chose protocol "${connection.protocol}", not ${STREAM_PROTOCOL}`,
      );
    }
    const outcome = await runSession(session, streams, local.signal);
    return aborted() ? { exitCode: undefined } : outcome;
  } catch (err) {
    if (aborted()) return { exitCode: undefined };
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
    session?.close();
  }
}

async function runSession(
  session: SpdyClientSession,
  streams: AttachStreams,
  signal: AbortSignal,
): Promise<StreamOutcome> {
  const flags = streamFlags(streams);
  const open = (type: string): Promise<SpdyStream> => session.openStream([['streamtype', type]]);
  // All requested at once; the server replies to each as it comes.
  const none = Promise.resolve(undefined);
  const pending = [
    open('error'),
    flags.stdin ? open('stdin') : none,
    flags.stdout ? open('stdout') : none,
    flags.stderr ? open('stderr') : none,
    flags.tty ? open('resize') : none,
  ];
  // Every one settled before a failure is thrown: no rejection is left unhandled.
  const settled = await Promise.allSettled(pending);
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  const [error, stdin, stdout, stderr, resize] = await Promise.all(pending);
  if (error === undefined) throw unavailable('the streaming server gave no error stream');
  for (const s of [error, stdin, stdout, stderr, resize]) s?.on('error', ignore);

  // The error channel is read to its end; the server writes nothing on the others we send on.
  let status = '';
  error.setEncoding('utf8');
  error.on('data', (text: string) => {
    if (status.length < MAX_STATUS_BYTES) status += text;
  });
  stdin?.resume();
  resize?.resume();

  if (stdin && streams.stdin) copyStdin(streams.stdin, stdin);
  if (resize && streams.resize) void forwardResize(streams.resize, resize, signal);
  const copies = [
    ended(error),
    ...(stdout ? [copyOutput(stdout, streams.stdout)] : []),
    ...(stderr ? [copyOutput(stderr, streams.stderr)] : []),
  ];
  await Promise.race([
    Promise.all(copies),
    new Promise<void>((resolve) => {
      signal.addEventListener(
        'abort',
        () => {
          resolve();
        },
        { once: true },
      );
      if (signal.aborted) resolve();
    }),
  ]);
  if (signal.aborted) return { exitCode: undefined };
  if (!status) return { exitCode: undefined };
  return { exitCode: exitCodeOf(status) };
}

/**
 * Copies the caller's stdin to the stdin stream with back-pressure, and half-closes the stream
 * (FIN) when the caller's stdin ends, so the process reads end of file.
 */
function copyStdin(from: Readable, to: SpdyStream): void {
  from.pipe(to);
  const stop = (): void => {
    from.unpipe(to);
  };
  to.once('close', stop);
}

/** Copies `from` into `to` (not ending it) with back-pressure; resolves when `from` ended. */
function copyOutput(from: SpdyStream, to: Writable | undefined): Promise<void> {
  if (to === undefined || to.destroyed) {
    from.resume();
    return ended(from);
  }
  from.pipe(to, { end: false });
  const done = ended(from);
  void done.then(() => {
    from.unpipe(to);
  });
  return done;
}

/** Resolves when the stream ended or was destroyed. */
async function ended(stream: Readable): Promise<void> {
  try {
    await finished(stream, { writable: false });
  } catch {
    // Reset or the connection dropped: there is nothing more to read either way.
  }
}

/** Writes each terminal size to the resize stream, one JSON object each, until either ends. */
async function forwardResize(
  sizes: AsyncIterable<{ readonly width: number; readonly height: number }>,
  to: Writable,
  signal: AbortSignal,
): Promise<void> {
  try {
    for await (const size of sizes) {
      if (signal.aborted || to.destroyed || to.writableEnded) return;
      to.write(JSON.stringify({ Width: size.width, Height: size.height }));
    }
  } catch {
    // The session's end ends the sizes too; nothing to report.
  }
}

interface WireStatus {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

/**
 * The exit code in the error channel's `Status`: 0 for `Success`, the `ExitCode` cause of a
 * `NonZeroExitCode` failure. Any other failure (the command was not found by the runtime, the
 * container stopped) is an `InvalidInput` error with the server's message.
 */
export function exitCodeOf(text: string): number {
  let st: WireStatus;
  try {
    st = JSON.parse(text) as WireStatus;
  } catch {
    throw invalidInput(`the runtime's streaming server: ${text.trim()}`);
  }
  if (st.status === 'Success') return 0;
  if (st.reason === 'NonZeroExitCode') {
    const cause = st.details?.causes?.find((c) => c.reason === 'ExitCode');
    const code = Number(cause?.message);
    if (Number.isInteger(code)) return code;
  }
  throw invalidInput(`the runtime's streaming server: ${st.message ?? text.trim()}`);
}

/** The runtime's view of which streams a session carries. */
export function streamFlags(streams: AttachStreams): {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
} {
  const s: Readable | undefined = streams.stdin;
  return {
    stdin: s !== undefined,
    stdout: streams.stdout !== undefined,
    // A terminal merges stderr into stdout.
    stderr: streams.stderr !== undefined && !streams.tty,
    tty: streams.tty,
  };
}

function ignore(): void {
  // A stream's failure (a reset, the connection gone) shows as its end; the session's outcome
  // is reported through the error channel or its absence.
}

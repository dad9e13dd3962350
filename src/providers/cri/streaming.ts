/**
 * A client of the runtime's streaming server: the URL that the CRI `Exec` and `Attach` calls
 * return, spoken over WebSocket with the `v4.channel.k8s.io` subprotocol (the kubelet's
 * remotecommand protocol, which containerd's streaming server accepts besides SPDY).
 *
 * Every binary message starts with its channel: 0 stdin (to the runtime), 1 stdout, 2 stderr,
 * 3 the error channel (a JSON `Status` when the process ends), 4 terminal size (to the runtime,
 * JSON `{"Width","Height"}`). The v4 protocol has no way to close stdin alone: when the
 * client's stdin ends, the process sees no end of file and the session lasts until the process
 * exits or the caller's signal fires.
 */
import type { Readable, Writable } from 'node:stream';
import WebSocket from 'ws';
import { invalidInput, unavailable } from '../../errors.js';
import type { AttachStreams } from '../../provider.js';

/** The subprotocol offered to the streaming server. */
export const STREAM_PROTOCOL = 'v4.channel.k8s.io';

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const ERROR = 3;
const RESIZE = 4;

/** Stdin messages in flight before stdin is paused. */
const MAX_PENDING_SENDS = 16;

/** How a session ended: the exit code, or undefined when the server sent no status. */
export interface StreamOutcome {
  readonly exitCode: number | undefined;
}

/**
 * Connects `streams` to the session at `url` until the server closes it (the process ended)
 * or `signal` fires (the connection is dropped; the outcome has no exit code). Rejects with
 * `Unavailable` when the server cannot be reached or refuses the session, and with
 * `InvalidInput` when the error channel reports a failure other than an exit code.
 */
export function runStream(
  url: string,
  streams: AttachStreams,
  signal: AbortSignal,
): Promise<StreamOutcome> {
  return new Promise<StreamOutcome>((resolve, reject) => {
    if (signal.aborted) {
      resolve({ exitCode: undefined });
      return;
    }
    const ws = new WebSocket(url, [STREAM_PROTOCOL], { perMessageDeflate: false });
    let status = '';
    let opened = false;
    let settled = false;
    const stdin = streams.stdin;

    const finish = (err: Error | undefined, outcome?: StreamOutcome): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      stdin?.off('data', onStdin);
      if (err) reject(err);
      else resolve(outcome ?? { exitCode: undefined });
    };
    const onAbort = (): void => {
      ws.terminate();
      finish(undefined, { exitCode: undefined });
    };
    signal.addEventListener('abort', onAbort, { once: true });

    let pending = 0;
    const send = (channel: number, data: Buffer): void => {
      if (ws.readyState !== WebSocket.OPEN) return;
      pending++;
      if (pending >= MAX_PENDING_SENDS) stdin?.pause();
      ws.send(Buffer.concat([Buffer.of(channel), data]), { binary: true }, () => {
        pending--;
        if (pending < MAX_PENDING_SENDS / 2 && stdin?.isPaused()) stdin.resume();
      });
    };
    const onStdin = (chunk: Buffer | string): void => {
      send(STDIN, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    };

    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 1024) body += d;
      });
      res.on('end', () => {
        ws.terminate();
        finish(
          unavailable(
            `the runtime's streaming server answered ${String(res.statusCode)}: ${body.trim()}`,
          ),
        );
      });
    });
    ws.on('error', (err) => {
      finish(unavailable(`the runtime's streaming session failed: ${err.message}`, err));
    });
    ws.on('open', () => {
      opened = true;
      if (ws.protocol !== STREAM_PROTOCOL) {
        ws.terminate();
        finish(unavailable(`the runtime's streaming server chose protocol "${ws.protocol}"`));
        return;
      }
      stdin?.on('data', onStdin);
      if (streams.resize) void forwardResize(streams.resize, (d) => send(RESIZE, d), signal);
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length < 2) return;
      const payload = data.subarray(1);
      switch (data[0]) {
        case STDOUT:
          writeWithBackpressure(ws, streams.stdout, payload);
          break;
        case STDERR:
          writeWithBackpressure(ws, streams.stderr, payload);
          break;
        case ERROR:
          if (status.length < 64 * 1024) status += payload.toString('utf8');
          break;
      }
    });
    ws.on('close', () => {
      if (!opened) return; // 'error' or 'unexpected-response' settles it
      if (!status) {
        finish(undefined, { exitCode: undefined });
        return;
      }
      try {
        finish(undefined, { exitCode: exitCodeOf(status) });
      } catch (err) {
        finish(err as Error);
      }
    });
  });
}

function writeWithBackpressure(ws: WebSocket, out: Writable | undefined, data: Buffer): void {
  if (!out || out.destroyed) return;
  if (!out.write(data)) {
    ws.pause();
    out.once('drain', () => ws.resume());
  }
}

async function forwardResize(
  sizes: AsyncIterable<{ readonly width: number; readonly height: number }>,
  send: (data: Buffer) => void,
  signal: AbortSignal,
): Promise<void> {
  try {
    for await (const size of sizes) {
      if (signal.aborted) return;
      send(Buffer.from(JSON.stringify({ Width: size.width, Height: size.height })));
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

import type { V1Pod } from '../../wire.js';
import { Writable } from 'node:stream';
import type { ContainerAttach, ContainerExec, Provider } from '../../provider.js';
import { acceptSpdyRemoteCommand } from '../streams/spdy-remotecommand.js';
import type { RemoteCommandOptions, RemoteCommandSession } from '../streams/types.js';
import { acceptWebSocketRemoteCommand } from '../streams/websocket-remotecommand.js';
import {
  containerOf,
  HttpError,
  podOf,
  truthy,
  untilAborted,
  type HttpCall,
  type UpgradeCall,
} from './context.js';

/** Most output `/run` collects. */
const RUN_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024;

/** `POST /run/...?cmd=`: runs a command and answers with its output (500 for a non-zero exit). */
export async function serveRun(call: HttpCall, provider: Provider & ContainerExec): Promise<void> {
  const { res, url, signal } = call;
  const pod = podOf(call.kubelet.pods, call.params);
  const container = containerOf(pod, call.params.container);
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
  const both = AbortSignal.any([signal, tooMuch.signal]);
  const exitCode = await untilAborted(
    provider.runInContainer(
      pod.metadata?.namespace ?? '',
      pod.metadata?.name ?? '',
      container,
      command,
      { stdout: out, stderr: out, tty: false },
      both,
    ),
    both,
  );
  if (tooMuch.signal.aborted)
    throw new HttpError(500, `the command wrote more than ${String(RUN_OUTPUT_LIMIT_BYTES)} bytes`);
  res
    .writeHead(exitCode === 0 ? 200 : 500, { 'content-type': 'application/json' })
    .end(Buffer.concat(chunks));
}

/** Plain HTTP to a streaming route: the client must ask for an upgrade. */
export function refuseWithoutUpgrade(): Promise<void> {
  return Promise.reject(
    new HttpError(400, 'unable to upgrade: missing upgrade headers in request'),
  );
}

/** `exec`: a remote command session running `command` in the container. */
export function upgradeExec(call: UpgradeCall, provider: Provider & ContainerExec): Promise<void> {
  return remoteCommand(call, true, (session, pod, container, command) =>
    provider.runInContainer(
      pod.metadata?.namespace ?? '',
      pod.metadata?.name ?? '',
      container,
      command,
      session,
      session.signal,
    ),
  );
}

/** `attach`: a remote command session connected to the container's main process. */
export function upgradeAttach(
  call: UpgradeCall,
  provider: Provider & ContainerAttach,
): Promise<void> {
  return remoteCommand(call, false, async (session, pod, container) => {
    await provider.attachToContainer(
      pod.metadata?.namespace ?? '',
      pod.metadata?.name ?? '',
      container,
      session,
      session.signal,
    );
    return 0;
  });
}

async function remoteCommand(
  call: UpgradeCall,
  exec: boolean,
  start: (
    session: RemoteCommandSession,
    pod: V1Pod,
    container: string,
    command: readonly string[],
  ) => Promise<number>,
): Promise<void> {
  const { req, socket, head, url } = call;
  const pod = podOf(call.kubelet.pods, call.params);
  const container = containerOf(pod, call.params.container);
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
  const timeouts = call.kubelet.timeouts;
  const websocket = (req.headers.upgrade ?? '').toLowerCase() === 'websocket';
  const session = websocket
    ? await acceptWebSocketRemoteCommand(req, socket, head, options, timeouts)
    : await acceptSpdyRemoteCommand(req, socket, head, options, timeouts);
  if (!session) return;
  try {
    const exitCode = await untilAborted(start(session, pod, container, command), session.signal);
    await session.finish({ exitCode });
  } catch (err) {
    await session.finish({ error: err instanceof Error ? err : new Error(String(err)) });
  }
}

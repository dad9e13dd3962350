import { connect } from 'node:net';
import { deadline, dialError, failure, joinHostPort, success, type ProbeResult } from './common.js';

/**
 * One TCP probe attempt: a connection that opens within `timeoutMs` is a success (and is closed
 * at once); a refused or timed-out one is a failure worded as Go's dialer words it.
 */
export function tcpCheck(
  host: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const address = joinHostPort(host, port);
  const limit = deadline(signal, timeoutMs);
  return new Promise<ProbeResult>((resolve) => {
    const socket = connect({ host, port });
    let settled = false;
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      limit.signal.removeEventListener('abort', onAbort);
      limit.dispose();
      socket.destroy();
      resolve(result);
    };
    const onAbort = (): void =>
      finish(failure(limit.timedOut() ? `dial tcp ${address}: i/o timeout` : 'probe cancelled'));
    socket.once('connect', () => finish(success()));
    socket.on('error', (err) => finish(failure(dialError(address, err))));
    if (limit.signal.aborted) onAbort();
    else limit.signal.addEventListener('abort', onAbort, { once: true });
  });
}

import { errorMessage } from '../../errors.js';
import type { PortForwarder, Provider } from '../../provider.js';
import { acceptSpdyPortForward } from '../streams/spdy-portforward.js';
import { acceptWebSocketPortForward } from '../streams/websocket-portforward.js';
import { podOf, type UpgradeCall } from './context.js';

type ForwardedStream = Parameters<Parameters<typeof acceptSpdyPortForward>[3]>[0];

/** `portForward`: every stream the client opens is piped to its port of the pod. */
export function upgradePortForward(
  call: UpgradeCall,
  provider: Provider & PortForwarder,
): Promise<void> {
  const { req, socket, head } = call;
  const pod = podOf(call.kubelet.pods, call.params);
  const session = new AbortController();
  socket.once('close', () => session.abort());
  const handler = (stream: ForwardedStream): void => {
    provider
      .portForward(
        pod.metadata?.namespace ?? '',
        pod.metadata?.name ?? '',
        stream.port,
        stream.data,
        session.signal,
      )
      .catch((err: unknown) => {
        stream.fail(
          `error forwarding port ${String(stream.port)} to pod ${pod.metadata?.name ?? ''}: ${errorMessage(err)}`,
        );
      });
  };
  const timeouts = call.kubelet.timeouts;
  if ((req.headers.upgrade ?? '').toLowerCase() === 'websocket')
    acceptWebSocketPortForward(req, socket, head, handler, timeouts);
  else acceptSpdyPortForward(req, socket, head, handler, timeouts);
  return Promise.resolve();
}

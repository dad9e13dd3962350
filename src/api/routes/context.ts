import type { V1Pod } from '../../wire.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { Registry } from 'prom-client';
import { httpStatusOf } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Provider } from '../../provider.js';
import type { StreamTimeouts } from '../streams/types.js';

/** The pods the API server has bound to this node. */
export interface PodSource {
  getPod(namespace: string, name: string): V1Pod | undefined;
  listPods(): V1Pod[];
}

/** An answer with an HTTP status; any other error is mapped by {@link statusOf}. */
export class HttpError extends Error {
  readonly status: number;
  /** Headers the answer carries (`allow` on a 405). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, message: string, headers: Readonly<Record<string, string>> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** What every route handler may use of the server it runs in. */
export interface KubeletContext {
  readonly provider: Provider;
  readonly pods: PodSource;
  /** The agent's own metrics, served on `/metrics`. */
  readonly registry: Registry;
  readonly timeouts: StreamTimeouts;
  readonly log: Logger;
  /** The port the server listens on. */
  port(): number;
}

/** The path parameters a route's pattern names (`:namespace` gives `namespace`). */
export type RouteParams = Readonly<Partial<Record<string, string>>>;

/** A plain HTTP request to a route. `signal` aborts when the client goes away. */
export interface HttpCall {
  readonly kubelet: KubeletContext;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly params: RouteParams;
  readonly signal: AbortSignal;
}

/** A request to a route that asks to upgrade the connection (SPDY/3.1 or WebSocket). */
export interface UpgradeCall {
  readonly kubelet: KubeletContext;
  readonly req: IncomingMessage;
  readonly socket: Duplex;
  readonly head: Buffer;
  readonly url: URL;
  readonly params: RouteParams;
}

export const truthy = (v: string | null): boolean => v === '1' || v === 'true';

/** The bound pod `namespace/name` (with `uid`, only that incarnation of it), or 404. */
export function podOf(pods: PodSource, params: RouteParams): V1Pod {
  const { namespace, pod: name, uid } = params;
  if (!namespace || !name) throw new HttpError(400, 'missing namespace or pod name');
  const pod = pods.getPod(namespace, name);
  if (!pod || (uid !== undefined && pod.metadata?.uid !== uid))
    throw new HttpError(404, `pod "${namespace}/${name}" does not exist`);
  return pod;
}

/** The container `name` of `pod`; without a name, the pod's only container. */
export function containerOf(pod: V1Pod, name: string | undefined): string {
  const names = [
    ...(pod.spec?.containers ?? []),
    ...(pod.spec?.initContainers ?? []),
    ...(pod.spec?.ephemeralContainers ?? []),
  ].map((c) => c.name);
  if (!name) {
    if (names.length === 1 && names[0]) return names[0];
    throw new HttpError(400, 'a container name must be given');
  }
  if (!names.includes(name))
    throw new HttpError(
      404,
      `container "${name}" not found in pod "${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}"`,
    );
  return name;
}

/**
 * The provider's promise, or a rejection as soon as `signal` fires: a provider that ignores the
 * abort must not hold the request, its session and its listeners forever.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(new Error('the client went away'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      // What arrives later has nobody to go to: a stream is destroyed, not left open.
      work.then(
        (v) => {
          if (v && typeof (v as { destroy?: unknown }).destroy === 'function')
            (v as unknown as Readable).destroy();
        },
        () => undefined,
      );
      reject(new Error('the client went away'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** The HTTP status for an error: its own for an {@link HttpError}, else by its code. */
export function statusOf(err: unknown): number {
  return err instanceof HttpError ? err.status : httpStatusOf(err);
}

import { pipeline } from 'node:stream/promises';
import { errorMessage } from '../../errors.js';
import type { ContainerLogOptions, ContainerLogs, Provider } from '../../provider.js';
import { containerOf, HttpError, podOf, truthy, untilAborted, type HttpCall } from './context.js';

/** `GET /containerLogs/{namespace}/{pod}/{container}`: the provider's log stream, chunked. */
export async function serveLogs(call: HttpCall, provider: Provider & ContainerLogs): Promise<void> {
  const { res, url, params, signal } = call;
  const pod = podOf(call.kubelet.pods, params);
  const container = containerOf(pod, params.container);
  const options = parseLogOptions(url.searchParams);
  const stream = await untilAborted(
    provider.getContainerLogs(params.namespace ?? '', params.pod ?? '', container, options, signal),
    signal,
  );
  res.writeHead(200, {
    'content-type': 'text/plain; charset=utf-8',
    'transfer-encoding': 'chunked',
  });
  res.flushHeaders();
  try {
    await pipeline(stream, res);
  } catch (err) {
    if (!signal.aborted)
      call.kubelet.log.debug({ err: errorMessage(err) }, 'log stream ended with an error');
  }
}

/** Parses and validates log options as the kubelet does: 400 for bad values, 422 for invalid ones. */
export function parseLogOptions(q: URLSearchParams): ContainerLogOptions {
  const int = (name: string): number | undefined => {
    const v = q.get(name);
    if (v === null || v === '') return undefined;
    if (!/^-?\d+$/.test(v)) throw new HttpError(400, `invalid value for ${name}: ${v}`);
    return Number(v);
  };
  let tailLines = int('tailLines');
  const tail = q.get('tail');
  if (tailLines === undefined && tail !== null && tail !== 'all') {
    if (!/^\d+$/.test(tail)) throw new HttpError(400, `invalid value for tail: ${tail}`);
    tailLines = Number(tail);
  }
  const limitBytes = int('limitBytes');
  const sinceSeconds = int('sinceSeconds');
  const sinceRaw = q.get('sinceTime');
  let sinceTime: Date | undefined;
  if (sinceRaw) {
    sinceTime = new Date(sinceRaw);
    if (Number.isNaN(sinceTime.getTime()))
      throw new HttpError(400, `invalid value for sinceTime: ${sinceRaw}`);
  }
  const invalid: string[] = [];
  if (tailLines !== undefined && tailLines < 0)
    invalid.push('tailLines: Invalid value: must be greater than or equal to 0');
  if (limitBytes !== undefined && limitBytes < 1)
    invalid.push('limitBytes: Invalid value: must be greater than 0');
  if (sinceSeconds !== undefined && sinceSeconds < 1)
    invalid.push('sinceSeconds: Invalid value: must be greater than 0');
  if (sinceSeconds !== undefined && sinceTime)
    invalid.push(
      'sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified',
    );
  if (invalid.length > 0) throw new HttpError(422, invalid.join(', '));
  return {
    follow: truthy(q.get('follow')),
    previous: truthy(q.get('previous')),
    timestamps: truthy(q.get('timestamps')),
    ...(tailLines !== undefined ? { tailLines } : {}),
    ...(limitBytes !== undefined ? { limitBytes } : {}),
    ...(sinceSeconds !== undefined ? { sinceSeconds } : {}),
    ...(sinceTime ? { sinceTime } : {}),
  };
}

import { connect, constants } from 'node:http2';
import { formatGoDuration } from '../kubelet/time.js';
import { deadline, dialError, failure, joinHostPort, success, type ProbeResult } from './common.js';

/** `grpc.health.v1.HealthCheckResponse.ServingStatus` by number. */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;
const SERVING = 1;

/** gRPC status codes by number, as grpc-go names them in errors. */
const CODE_NAMES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
] as const;
const DEADLINE_EXCEEDED = 4;
const UNIMPLEMENTED = 12;
const INTERNAL = 13;

/** grpc-go's code for a response that is not gRPC, from its HTTP status. */
function codeOfHttpStatus(status: number): number {
  if (status === 400) return INTERNAL;
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return UNIMPLEMENTED;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}

/** `HealthCheckRequest { string service = 1; }` with its 5-byte gRPC message prefix. */
export function encodeHealthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const body =
    name.length === 0
      ? Buffer.alloc(0)
      : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(0, 0); // not compressed
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v >= 0x80) {
    bytes.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/**
 * The `status` (field 1) of a `HealthCheckResponse` message without its gRPC prefix; 0
 * (UNKNOWN) when absent, as proto3 defaults it. Unknown fields are skipped. Throws on a
 * malformed message.
 */
export function decodeHealthCheckResponse(message: Buffer): number {
  let status = 0;
  let at = 0;
  const readVarint = (): number => {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = message[at++];
      if (byte === undefined) throw new Error('truncated varint');
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error('varint too long');
  };
  while (at < message.length) {
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      const value = readVarint();
      // An enum is an int32; a negative one arrives as a ten-byte varint.
      if (field === 1) status = value > 0x7fffffff ? -1 : value;
    } else if (wire === 1) at += 8;
    else if (wire === 2) {
      const length = readVarint();
      at += length;
    } else if (wire === 5) at += 4;
    else throw new Error(`unsupported wire type ${String(wire)}`);
    if (at > message.length) throw new Error('truncated field');
  }
  return status;
}

/**
 * One grpc probe attempt: `grpc.health.v1.Health/Check` for `service` over HTTP/2 cleartext, a
 * success when the answer is SERVING. Failures are worded as the kubelet words them (`service
 * unhealthy (responded with "NOT_SERVING")`, `timeout: health rpc did not complete within 1s`,
 * `error: this server does not implement the grpc health protocol …`). Unlike grpc-go, a refused
 * connection fails at once instead of being retried until the timeout.
 */
export function grpcCheck(
  host: string,
  port: number,
  service: string,
  userAgent: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const address = joinHostPort(host, port);
  const limit = deadline(signal, timeoutMs);
  if (limit.signal.aborted) {
    limit.dispose();
    return Promise.resolve(failure('probe cancelled'));
  }
  return new Promise<ProbeResult>((resolve) => {
    let settled = false;
    let connected = false;
    const session = connect(`http://${address}`);
    const finish = (result: ProbeResult): void => {
      if (settled) return;
      settled = true;
      limit.signal.removeEventListener('abort', onAbort);
      limit.dispose();
      session.destroy();
      resolve(result);
    };
    const onAbort = (): void => {
      if (!limit.timedOut()) finish(failure('probe cancelled'));
      else if (!connected) {
        finish(
          failure(
            `timeout: failed to connect service ${JSON.stringify(address)} within ${formatGoDuration(timeoutMs)}: context deadline exceeded`,
          ),
        );
      } else {
        finish(
          failure(`timeout: health rpc did not complete within ${formatGoDuration(timeoutMs)}`),
        );
      }
    };
    limit.signal.addEventListener('abort', onAbort, { once: true });
    session.once('connect', () => (connected = true));
    session.on('error', (err: Error) => {
      finish(
        failure(
          connected
            ? `error: health rpc probe failed: rpc error: code = Unavailable desc = ${err.message}`
            : `error: failed to connect service at ${JSON.stringify(address)}: ${dialError(address, err)}`,
        ),
      );
    });
    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: '/grpc.health.v1.Health/Check',
      [constants.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [constants.HTTP2_HEADER_USER_AGENT]: `${userAgent} grpc-node-http2`,
      te: 'trailers',
      'grpc-timeout': grpcTimeout(timeoutMs),
    });
    let httpStatus = 0;
    let contentType = '';
    let grpcStatus: string | undefined;
    let grpcMessage = '';
    const chunks: Buffer[] = [];
    const readStatus = (headers: Record<string, string | string[] | undefined>): void => {
      const s = headers['grpc-status'];
      if (typeof s === 'string') grpcStatus = s;
      const m = headers['grpc-message'];
      if (typeof m === 'string') grpcMessage = decodeURIComponentSafe(m);
    };
    stream.on('response', (headers) => {
      httpStatus = Number(headers[constants.HTTP2_HEADER_STATUS] ?? 0);
      contentType = String(headers[constants.HTTP2_HEADER_CONTENT_TYPE] ?? '');
      readStatus(headers); // a trailers-only response
    });
    stream.on('trailers', (trailers: Record<string, string | string[] | undefined>) =>
      readStatus(trailers),
    );
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (err: Error) => {
      // A refused connection fails the pending stream first, with the session's error as cause.
      const cause = (err as { cause?: unknown }).cause;
      finish(
        failure(
          connected
            ? `error: health rpc probe failed: rpc error: code = Unavailable desc = ${err.message}`
            : `error: failed to connect service at ${JSON.stringify(address)}: ${dialError(address, cause ?? err)}`,
        ),
      );
    });
    stream.on('end', () => {
      finish(
        verdict(httpStatus, contentType, grpcStatus, grpcMessage, Buffer.concat(chunks), timeoutMs),
      );
    });
    stream.end(encodeHealthCheckRequest(service));
  });
}

function verdict(
  httpStatus: number,
  contentType: string,
  grpcStatus: string | undefined,
  grpcMessage: string,
  payload: Buffer,
  timeoutMs: number,
): ProbeResult {
  const rpcFailed = (code: number, message: string): ProbeResult => {
    if (code === UNIMPLEMENTED) {
      return failure(
        `error: this server does not implement the grpc health protocol (grpc.health.v1.Health): ${message}`,
      );
    }
    const name = CODE_NAMES[code] ?? `Code(${String(code)})`;
    return failure(`error: health rpc probe failed: rpc error: code = ${name} desc = ${message}`);
  };
  if (httpStatus !== 200 || !contentType.startsWith('application/grpc')) {
    const code = httpStatus === 200 ? 2 : codeOfHttpStatus(httpStatus);
    return rpcFailed(
      code,
      httpStatus === 200
        ? `unexpected content-type ${JSON.stringify(contentType)}`
        : `unexpected HTTP status code received from server: ${String(httpStatus)}`,
    );
  }
  if (grpcStatus === undefined) {
    return rpcFailed(INTERNAL, 'server closed the stream without sending trailers');
  }
  const code = Number(grpcStatus);
  if (code === DEADLINE_EXCEEDED) {
    return failure(`timeout: health rpc did not complete within ${formatGoDuration(timeoutMs)}`);
  }
  if (code !== 0) return rpcFailed(code, grpcMessage);
  if (payload.length < 5) return rpcFailed(INTERNAL, 'no response message');
  if (payload.readUInt8(0) !== 0) return rpcFailed(INTERNAL, 'compressed response not requested');
  const length = payload.readUInt32BE(1);
  if (payload.length < 5 + length) return rpcFailed(INTERNAL, 'truncated response message');
  let status: number;
  try {
    status = decodeHealthCheckResponse(payload.subarray(5, 5 + length));
  } catch (err) {
    return rpcFailed(INTERNAL, `grpc: failed to unmarshal the received message: ${String(err)}`);
  }
  if (status !== SERVING) {
    const name = SERVING_STATUS[status] ?? String(status);
    return failure(`service unhealthy (responded with ${JSON.stringify(name)})`);
  }
  return success('service is serving');
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The `grpc-timeout` header: at most 8 digits, in milliseconds or, when too long, seconds. */
function grpcTimeout(ms: number): string {
  const millis = Math.max(1, Math.ceil(ms));
  return millis <= 99_999_999 ? `${String(millis)}m` : `${String(Math.ceil(millis / 1000))}S`;
}

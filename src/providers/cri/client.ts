/**
 * A CRI v1 client: `runtime.v1.RuntimeService` and `runtime.v1.ImageService` over gRPC, from
 * the provider's own protocol text (cri.proto). Messages use the protocol's field names
 * (snake_case); 64-bit integers are decimal strings (timestamps are nanoseconds since the epoch);
 * enums are their names.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { invalidInput, unavailable, VirtualKubeletError } from '../../errors.js';

/** The protocol text; found the same way from src/ and from the compiled dist/. */
const PROTO_PATH = fileURLToPath(new URL('../../../src/providers/cri/cri.proto', import.meta.url));

/** A message as proto-loader decodes it: a plain object. */
export type Message = Record<string, unknown>;

export type RuntimeMethod =
  | 'Version'
  | 'RunPodSandbox'
  | 'StopPodSandbox'
  | 'RemovePodSandbox'
  | 'PodSandboxStatus'
  | 'ListPodSandbox'
  | 'CreateContainer'
  | 'StartContainer'
  | 'StopContainer'
  | 'RemoveContainer'
  | 'ListContainers'
  | 'ContainerStatus'
  | 'ExecSync'
  | 'Exec'
  | 'Attach'
  | 'PortForward'
  | 'ListContainerStats'
  | 'UpdateRuntimeConfig'
  | 'Status';

export type ImageMethod =
  'ListImages' | 'ImageStatus' | 'PullImage' | 'RemoveImage' | 'ImageFsInfo';

type UnaryClient = grpc.Client &
  Record<
    string,
    (
      req: Message,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: Message) => void,
    ) => grpc.ClientUnaryCall
  >;

/** The gRPC target of a CRI endpoint (`unix:///path` or a bare socket path). */
export function grpcTarget(endpoint: string): string {
  if (endpoint.startsWith('unix://')) return endpoint;
  if (endpoint.startsWith('/')) return `unix://${endpoint}`;
  throw invalidInput(`runtime endpoint ${endpoint}: expected unix:///path/to/socket`);
}

/** A gRPC error from the runtime, with its status code. */
export class CriError extends VirtualKubeletError {
  readonly grpcCode: number;
  constructor(method: string, err: grpc.ServiceError) {
    // Unavailable (the runtime is down or restarting) and deadlines are retried by the core.
    super(
      err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED
        ? 'Unavailable'
        : err.code === grpc.status.NOT_FOUND
          ? 'NotFound'
          : 'Internal',
      `CRI ${method}: ${err.details || err.message}`,
      { cause: err },
    );
    this.grpcCode = err.code;
  }
}

export interface CriClientOptions {
  readonly runtimeEndpoint: string;
  /** Default: `runtimeEndpoint`. */
  readonly imageEndpoint?: string;
  /** Deadline of calls other than pulls and ExecSync, in milliseconds. Default: 120 000. */
  readonly callTimeoutMs?: number;
}

export class CriClient {
  readonly #runtime: UnaryClient;
  readonly #image: UnaryClient;
  readonly #timeoutMs: number;

  constructor(options: CriClientOptions) {
    const def = protoLoader.loadSync(PROTO_PATH, {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      runtime: { v1: Record<string, grpc.ServiceClientConstructor> };
    };
    const { RuntimeService, ImageService } = pkg.runtime.v1;
    if (!RuntimeService || !ImageService) throw unavailable('cri.proto lacks the CRI services');
    const opts = { 'grpc.max_receive_message_length': 16 << 20 };
    const creds = grpc.credentials.createInsecure();
    this.#runtime = new RuntimeService(
      grpcTarget(options.runtimeEndpoint),
      creds,
      opts,
    ) as UnaryClient;
    this.#image = new ImageService(
      grpcTarget(options.imageEndpoint ?? options.runtimeEndpoint),
      creds,
      opts,
    ) as UnaryClient;
    this.#timeoutMs = options.callTimeoutMs ?? 120_000;
  }

  runtime<T = Message>(
    method: RuntimeMethod,
    req: Message,
    signal?: AbortSignal,
    timeoutMs?: number,
  ): Promise<T> {
    return this.#call(this.#runtime, method, req, signal, timeoutMs);
  }

  image<T = Message>(
    method: ImageMethod,
    req: Message,
    signal?: AbortSignal,
    timeoutMs?: number,
  ): Promise<T> {
    return this.#call(this.#image, method, req, signal, timeoutMs);
  }

  close(): void {
    this.#runtime.close();
    this.#image.close();
  }

  #call<T>(
    client: UnaryClient,
    method: string,
    req: Message,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
  ): Promise<T> {
    const fn = client[method];
    if (!fn) return Promise.reject(unavailable(`CRI ${method}: not in cri.proto`));
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) {
        reject(unavailable(`CRI ${method}: aborted`));
        return;
      }
      const call = fn.call(
        client,
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + (timeoutMs ?? this.#timeoutMs) },
        (err, res) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(new CriError(method, err));
          else resolve(res as T);
        },
      );
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** Nanoseconds since the epoch (a decimal string) as an RFC 3339 time, or undefined for 0. */
export function nanosToIso(ns: unknown): string | undefined {
  if (typeof ns !== 'string' && typeof ns !== 'number') return undefined;
  const n = BigInt(ns);
  if (n <= 0n) return undefined;
  return new Date(Number(n / 1_000_000n)).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

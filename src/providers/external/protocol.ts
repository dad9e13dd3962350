/**
 * The provider protocol (`proto/virtualkubelet/provider/v1alpha1/provider.proto`) as TypeScript
 * sees it: the service loaded from the `.proto` at run time, the messages as plain objects, and
 * the mapping between gRPC status codes and the contract's error codes, both ways.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { errorCode, errorMessage, VirtualKubeletError, type ErrorCode } from '../../errors.js';
import type { Capability } from '../../provider.js';

/** The protocol version this agent speaks; it is also the proto package's last part. */
export const PROTOCOL_VERSION = 'v1alpha1';

/** The service's full name, as gRPC paths carry it. */
export const SERVICE_NAME = `virtualkubelet.provider.${PROTOCOL_VERSION}.Provider`;

/**
 * The `.proto`, found relative to this module: `src/providers/external/` and
 * `dist/providers/external/` both sit three levels below the package root, which ships `proto/`.
 */
export const PROTO_PATH = fileURLToPath(
  new URL(
    `../../../proto/virtualkubelet/provider/${PROTOCOL_VERSION}/provider.proto`,
    import.meta.url,
  ),
);

/**
 * The capabilities this version of the protocol does not carry: `close` (the provider process
 * ends with the agent), `services` (no Services are sent) and `pullCredentials` (no registry
 * credentials are sent: a provider behind the protocol pulls with its own). The handshake never
 * reports them, and the agent ignores them if a provider does.
 */
export const NOT_CARRIED: ReadonlySet<Capability> = new Set([
  'close',
  'services',
  'pullCredentials',
]);

/** The trailing metadata key that names the contract's error code exactly. */
export const ERROR_CODE_KEY = 'vk-error-code';

let loaded: grpc.ServiceClientConstructor | undefined;

/**
 * The service definition and client constructor, loaded once. Field names are camelCase,
 * 64-bit integers numbers, bytes Buffers; every oneof carries its member's name in `kind`.
 */
export function providerService(): grpc.ServiceClientConstructor {
  if (loaded) return loaded;
  const definition = loadSync(PROTO_PATH, {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    virtualkubelet: { provider: Record<string, { Provider: grpc.ServiceClientConstructor }> };
  };
  const ctor = root.virtualkubelet.provider[PROTOCOL_VERSION]?.Provider;
  if (!ctor) throw new Error(`${PROTO_PATH} has no service ${SERVICE_NAME}`);
  loaded = ctor;
  return ctor;
}

// The messages, as proto-loader hands them over (decoded) or takes them (to encode).

export interface HandshakeRequest {
  readonly versions: readonly string[];
  readonly nodeName: string;
  readonly agentVersion: string;
}
export interface HandshakeResponse {
  readonly version: string;
  readonly capabilities: readonly string[];
  readonly providerName: string;
}
export interface PodRequest {
  readonly podJson: Buffer;
}
export interface PodKey {
  readonly namespace: string;
  readonly name: string;
}
export interface GetPodResponse {
  readonly found: boolean;
  readonly podJson: Buffer;
}
export interface GetPodStatusResponse {
  readonly found: boolean;
  readonly statusJson: Buffer;
}
export interface ListPodsResponse {
  readonly podsJson: readonly Buffer[];
}
export interface PodUpdate {
  readonly podJson: Buffer;
}
export interface NodeUpdate {
  readonly nodeJson: Buffer;
}
export interface PodEventUpdate {
  readonly podJson: Buffer;
  readonly type: string;
  readonly reason: string;
  readonly message: string;
}
export interface LogsRequest {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly follow: boolean;
  readonly previous: boolean;
  readonly timestamps: boolean;
  readonly tailLines?: number;
  readonly limitBytes?: number;
  readonly sinceSeconds?: number;
  readonly sinceTime?: string;
}
export interface LogChunk {
  readonly data: Buffer;
}
export interface StreamStart {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly command: readonly string[];
  readonly tty: boolean;
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
}
export interface TerminalSizeMessage {
  readonly width: number;
  readonly height: number;
}
export type StreamRequest =
  | { readonly kind?: 'start'; readonly start: StreamStart }
  | { readonly kind?: 'stdin'; readonly stdin: Buffer }
  | { readonly kind?: 'stdinClose'; readonly stdinClose: Record<string, never> }
  | { readonly kind?: 'resize'; readonly resize: TerminalSizeMessage };
export type StreamResponse =
  | { readonly kind?: 'stdout'; readonly stdout: Buffer }
  | { readonly kind?: 'stderr'; readonly stderr: Buffer }
  | { readonly kind?: 'exit'; readonly exit: { readonly code: number } };
export interface PortForwardStart {
  readonly namespace: string;
  readonly pod: string;
  readonly port: number;
}
export type PortForwardRequest =
  | { readonly kind?: 'start'; readonly start: PortForwardStart }
  | { readonly kind?: 'data'; readonly data: Buffer }
  | { readonly kind?: 'closeWrite'; readonly closeWrite: Record<string, never> };
export interface PortForwardResponse {
  readonly data: Buffer;
}
export interface VolumeFileMessage {
  readonly path: string;
  readonly data: Buffer;
  readonly mode: number;
  readonly owner?: number;
}
export interface SetPodVolumesRequest {
  readonly podJson: Buffer;
  readonly volumes: readonly {
    readonly name: string;
    readonly files: readonly VolumeFileMessage[];
  }[];
}
export interface PreparePodResponse {
  readonly podIps: readonly string[];
  readonly hostIp: string;
}

/** The contract's code of each gRPC status a provider may answer with. */
const FROM_STATUS: Readonly<Partial<Record<grpc.status, ErrorCode>>> = {
  [grpc.status.NOT_FOUND]: 'NotFound',
  [grpc.status.ALREADY_EXISTS]: 'AlreadyExists',
  [grpc.status.ABORTED]: 'Conflict',
  [grpc.status.INVALID_ARGUMENT]: 'InvalidInput',
  [grpc.status.OUT_OF_RANGE]: 'InvalidInput',
  [grpc.status.FAILED_PRECONDITION]: 'Permanent',
  [grpc.status.PERMISSION_DENIED]: 'Permanent',
  [grpc.status.RESOURCE_EXHAUSTED]: 'Permanent',
  [grpc.status.UNIMPLEMENTED]: 'NotImplemented',
  [grpc.status.UNAVAILABLE]: 'Unavailable',
  [grpc.status.DEADLINE_EXCEEDED]: 'Unavailable',
  [grpc.status.CANCELLED]: 'Unavailable',
};

/** The gRPC status of each of the contract's codes. */
const TO_STATUS: Readonly<Record<ErrorCode, grpc.status>> = {
  NotFound: grpc.status.NOT_FOUND,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  Conflict: grpc.status.ABORTED,
  InvalidInput: grpc.status.INVALID_ARGUMENT,
  Permanent: grpc.status.FAILED_PRECONDITION,
  NotImplemented: grpc.status.UNIMPLEMENTED,
  Unavailable: grpc.status.UNAVAILABLE,
  Internal: grpc.status.INTERNAL,
};

const CODE_NAMES: ReadonlySet<string> = new Set(Object.keys(TO_STATUS));

/** The contract's code for a gRPC status, without metadata: the table of the `.proto`. */
export function codeOfStatus(code: grpc.status): ErrorCode {
  return FROM_STATUS[code] ?? 'Internal';
}

/** The gRPC status for one of the contract's codes. */
export function statusOfCode(code: ErrorCode): grpc.status {
  return TO_STATUS[code];
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<grpc.ServiceError>).code === 'number' &&
    (err as Partial<grpc.ServiceError>).metadata instanceof grpc.Metadata
  );
}

/**
 * The error a failed call stands for, in the contract's family: the code the provider named in
 * `vk-error-code`, else the one its gRPC status maps to. `what` names the call for the message.
 */
export function fromCallError(err: unknown, what: string): VirtualKubeletError {
  if (!isServiceError(err))
    return new VirtualKubeletError('Internal', `${what}: ${errorMessage(err)}`, { cause: err });
  const named = err.metadata.get(ERROR_CODE_KEY)[0];
  const code =
    typeof named === 'string' && CODE_NAMES.has(named)
      ? (named as ErrorCode)
      : codeOfStatus(err.code);
  return new VirtualKubeletError(code, `${what}: ${err.details || grpc.status[err.code]}`, {
    cause: err,
  });
}

/** What a provider's thrown error becomes on the wire: its status, message and exact code. */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const code = errorCode(err);
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_KEY, code);
  return { code: statusOfCode(code), details: errorMessage(err), metadata };
}

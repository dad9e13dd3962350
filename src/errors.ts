/**
 * Stable error codes. Providers throw these to tell the core what happened; API errors
 * (`ApiError` of `kube/client.ts`) carry them too, mapped from the HTTP status. The core maps a
 * code to the kubelet API's HTTP status here ({@link httpStatusOf}) and to a pod's status in one
 * place (`providerFailedStatus` of `pods/status.ts`: reason `ProviderFailed`, the phase Pending
 * while the core retries, Failed once it does not).
 *
 * | code           | retried by the core | HTTP | meaning                                             |
 * |----------------|---------------------|------|-----------------------------------------------------|
 * | NotFound       | no                  | 404  | the object does not exist                           |
 * | AlreadyExists  | no                  | 409  | create of something that exists; treated as success |
 * | Conflict       | yes, with backoff   | 409  | the object changed meanwhile: read it, write again  |
 * | InvalidInput   | no                  | 400  | the request can never succeed as it is              |
 * | Permanent      | no                  | 500  | the backend refuses for good (quota, unsupported)   |
 * | NotImplemented | no                  | 501  | the provider lacks the capability                   |
 * | Unavailable    | yes, with backoff   | 503  | the backend is down or busy; try again later        |
 * | Internal       | yes, with backoff   | 500  | anything else, including errors without a code      |
 *
 * The code of an error is the first code found along its `cause` chain, so an error that wraps
 * one of ours keeps its meaning. Errors of this family are recognised by a brand
 * ({@link isVirtualKubeletError}), not `instanceof`, so errors thrown by another copy of this
 * package (a provider that bundles its own) keep their codes.
 */
export type ErrorCode =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'InvalidInput'
  | 'Permanent'
  | 'NotImplemented'
  | 'Unavailable'
  | 'Internal';

/** The table above: what the core does with each code. */
const CODES: Readonly<Record<ErrorCode, { readonly retryable: boolean; readonly http: number }>> = {
  NotFound: { retryable: false, http: 404 },
  AlreadyExists: { retryable: false, http: 409 },
  Conflict: { retryable: true, http: 409 },
  InvalidInput: { retryable: false, http: 400 },
  Permanent: { retryable: false, http: 500 },
  NotImplemented: { retryable: false, http: 501 },
  Unavailable: { retryable: true, http: 503 },
  Internal: { retryable: true, http: 500 },
};

/**
 * The brand of the family, in the global symbol registry so that every copy of the package
 * loaded in one process uses the same one.
 */
const BRAND = Symbol.for('virtual-kubelet.error');

/** How many `cause` links {@link errorCode} follows; also what keeps a cycle from looping. */
const MAX_CAUSE_DEPTH = 16;

/** An error of the family, made by this copy of the package or by another one. */
export interface CodedError extends Error {
  readonly code: ErrorCode;
}

/** The base error of the library. `code` is stable; `message` is for people. */
export class VirtualKubeletError extends Error implements CodedError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VirtualKubeletError';
    this.code = code;
  }

  /** Whether the core retries the operation that failed with this error. */
  get retryable(): boolean {
    return CODES[this.code].retryable;
  }
}

// On the prototype, not on each instance: invisible to `util.inspect` and JSON, and inherited by
// every subclass.
Object.defineProperty(VirtualKubeletError.prototype, BRAND, { value: true });

function isCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(CODES, value);
}

/**
 * Whether `value` is an error of the family: it carries the brand (its own or its prototype's)
 * and a known code. True as well for errors made by another copy of this package.
 */
export function isVirtualKubeletError(value: unknown): value is CodedError {
  if (typeof value !== 'object' || value === null) return false;
  const branded = value as { readonly [BRAND]?: unknown; readonly code?: unknown };
  return branded[BRAND] === true && isCode(branded.code);
}

export const notFound = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('NotFound', message, { cause });
export const alreadyExists = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('AlreadyExists', message, { cause });
export const conflict = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('Conflict', message, { cause });
export const invalidInput = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('InvalidInput', message, { cause });
export const permanent = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('Permanent', message, { cause });
export const notImplemented = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('NotImplemented', message, { cause });
export const unavailable = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('Unavailable', message, { cause });

/**
 * The code of any thrown value: the code of the first error of the family along its `cause`
 * chain (the value itself first), `Internal` when there is none. Follows at most 16 links, so a
 * cycle of causes ends too.
 */
export function errorCode(err: unknown): ErrorCode {
  let current = err;
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH; depth++) {
    if (isVirtualKubeletError(current)) return current.code;
    if (typeof current !== 'object' || current === null || !('cause' in current)) break;
    current = current.cause;
  }
  return 'Internal';
}

/** Whether the core retries after `err` (see the table above). */
export function isRetryable(err: unknown): boolean {
  return CODES[errorCode(err)].retryable;
}

/** The HTTP status the kubelet API answers with when a request fails with `err`. */
export function httpStatusOf(err: unknown): number {
  return CODES[errorCode(err)].http;
}

/** The message of any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

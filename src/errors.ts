/**
 * Stable error codes. Providers throw these to tell the core what happened; the core maps them to
 * HTTP statuses (kubelet API) and to pod status reasons and Events in one place each.
 *
 * | code           | retried by the core | meaning                                               |
 * |----------------|---------------------|-------------------------------------------------------|
 * | NotFound       | no                  | the object does not exist (in the provider)           |
 * | AlreadyExists  | no                  | create of something that exists; treated as success   |
 * | InvalidInput   | no                  | the request can never succeed as it is                |
 * | Permanent      | no                  | the backend refuses for good (quota, unsupported spec) |
 * | NotImplemented | no                  | the provider lacks the capability                     |
 * | Unavailable    | yes, with backoff   | the backend is down or busy; try again later          |
 * | Internal       | yes, with backoff   | anything else, including errors without a code        |
 */
export type ErrorCode =
  | 'NotFound'
  | 'AlreadyExists'
  | 'InvalidInput'
  | 'Permanent'
  | 'NotImplemented'
  | 'Unavailable'
  | 'Internal';

const FINAL: ReadonlySet<ErrorCode> = new Set([
  'NotFound',
  'AlreadyExists',
  'InvalidInput',
  'Permanent',
  'NotImplemented',
]);

/** The base error of the library. `code` is stable; `message` is for people. */
export class VirtualKubeletError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VirtualKubeletError';
    this.code = code;
  }

  /** Whether the core retries the operation that failed with this error. */
  get retryable(): boolean {
    return !FINAL.has(this.code);
  }
}

export const notFound = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('NotFound', message, { cause });
export const alreadyExists = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('AlreadyExists', message, { cause });
export const invalidInput = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('InvalidInput', message, { cause });
export const permanent = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('Permanent', message, { cause });
export const notImplemented = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('NotImplemented', message, { cause });
export const unavailable = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('Unavailable', message, { cause });

/** The code of any thrown value: its own when it is ours, `Internal` otherwise. */
export function errorCode(err: unknown): ErrorCode {
  return err instanceof VirtualKubeletError ? err.code : 'Internal';
}

/** Whether the core retries after `err` (see the table above). */
export function isRetryable(err: unknown): boolean {
  return !FINAL.has(errorCode(err));
}

/** The message of any thrown value. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

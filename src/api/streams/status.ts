/**
 * The `metav1.Status` objects the remotecommand error stream carries (protocols v4 and v5 of both
 * SPDY and WebSocket). Key order follows Go's encoding of the struct so the JSON matches the
 * kubelet's byte for byte: `metadata`, `status`, `message`, `reason`, `details`, `code`.
 */

/** One entry of `details.causes`; Go serialises the cause's type under the key `reason`. */
export interface StreamStatusCause {
  readonly reason?: string;
  readonly message: string;
}

export interface StreamStatus {
  readonly metadata: Record<string, never>;
  readonly status: 'Success' | 'Failure';
  readonly message?: string;
  readonly reason?: string;
  readonly details?: { readonly causes: readonly StreamStatusCause[] };
  readonly code?: number;
}

/**
 * The status of a command that exited with `exitCode`: `Success` for 0, else a `Failure` with
 * reason `NonZeroExitCode` and an `ExitCode` cause. Clients parse the cause as an unsigned 8-bit
 * integer, so a code outside 1-255 (or not an integer) is reported as 255; the message keeps the
 * original value. `command` only makes the message more helpful.
 */
export function exitStatus(exitCode: number, command?: readonly string[]): StreamStatus {
  if (exitCode === 0) return { metadata: {}, status: 'Success' };
  const reported = Number.isInteger(exitCode) && exitCode > 0 && exitCode <= 255 ? exitCode : 255;
  const detail =
    command !== undefined && command.length > 0
      ? `command '${command.join(' ')}' exited with ${String(exitCode)}`
      : `exit status ${String(exitCode)}`;
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: ${detail}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(reported) }] },
  };
}

/**
 * The status of a command that could not be run or failed without an exit code: the kubelet's
 * `InternalError` (code 500). kubectl prints its `message`.
 */
export function errorStatus(err: Error): StreamStatus {
  const cause = `error executing command in container: ${err.message}`;
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: ${cause}`,
    reason: 'InternalError',
    details: { causes: [{ message: cause }] },
    code: 500,
  };
}

/** Reasons a dev-cluster operation can fail; each message says what to do about it. */
export type DevClusterErrorCode =
  | 'InvalidInput'
  | 'GoMissing'
  | 'BuildFailed'
  | 'PortInUse'
  | 'StartFailed'
  | 'NotRunning'
  | 'Aborted';

/** The one error type of the dev cluster. `message` is a complete sentence for a person. */
export class DevClusterError extends Error {
  readonly code: DevClusterErrorCode;
  /** A log file with details, when there is one. */
  readonly logPath: string | undefined;

  constructor(
    code: DevClusterErrorCode,
    message: string,
    options?: { cause?: unknown; logPath?: string },
  ) {
    super(message, { cause: options?.cause });
    this.name = 'DevClusterError';
    this.code = code;
    this.logPath = options?.logPath;
  }
}

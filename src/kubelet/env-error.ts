import { VirtualKubeletError } from '../errors.js';

/**
 * Why a pod's environment could not be resolved. The `Mandatory*` reasons are the kubelet's
 * (and the Go virtual-kubelet's) event reasons; the others are ours.
 *
 * | reason                          | retryable | meaning                                          |
 * |---------------------------------|-----------|--------------------------------------------------|
 * | MandatoryConfigMapNotFound      | yes       | a non-optional ConfigMap does not exist (yet)    |
 * | MandatorySecretNotFound         | yes       | a non-optional Secret does not exist (yet)       |
 * | MandatoryConfigMapKeyNotFound   | yes       | the ConfigMap exists but lacks the key           |
 * | MandatorySecretKeyNotFound      | yes       | the Secret exists but lacks the key              |
 * | InvalidFieldPath                | no        | a `fieldRef` the kubelet does not support        |
 * | InvalidResourceFieldRef         | no        | a `resourceFieldRef` naming an unknown resource, |
 * |                                 |           | container or divisor                             |
 * | UnsupportedEnvVarSource         | no        | a `valueFrom` the core cannot resolve            |
 * |                                 |           | (`fileKeyRef`, read by a kubelet at start-up)    |
 */
export type EnvResolutionReason =
  | 'MandatoryConfigMapNotFound'
  | 'MandatorySecretNotFound'
  | 'MandatoryConfigMapKeyNotFound'
  | 'MandatorySecretKeyNotFound'
  | 'InvalidFieldPath'
  | 'InvalidResourceFieldRef'
  | 'UnsupportedEnvVarSource';

const RETRYABLE: ReadonlySet<EnvResolutionReason> = new Set([
  'MandatoryConfigMapNotFound',
  'MandatorySecretNotFound',
  'MandatoryConfigMapKeyNotFound',
  'MandatorySecretKeyNotFound',
]);

/**
 * A pod's environment cannot be resolved. Missing objects and keys are retryable (code
 * `Unavailable`: the object or key may appear later, and the kubelet keeps retrying too); a
 * spec the resolver cannot satisfy is not (code `InvalidInput`). `reason` is suitable as the
 * reason of a Kubernetes Event or pod status.
 */
export class EnvResolutionError extends VirtualKubeletError {
  readonly reason: EnvResolutionReason;
  /** The container whose environment failed, when known. */
  readonly container: string | undefined;

  constructor(
    reason: EnvResolutionReason,
    message: string,
    options?: { container?: string; cause?: unknown },
  ) {
    super(RETRYABLE.has(reason) ? 'Unavailable' : 'InvalidInput', message, {
      cause: options?.cause,
    });
    this.name = 'EnvResolutionError';
    this.reason = reason;
    this.container = options?.container;
  }
}

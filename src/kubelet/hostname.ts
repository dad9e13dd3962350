/** The pod's hostname, as the kubelet derives it (`GeneratePodHostNameAndDomain`). */
import type { V1Pod } from '../wire.js';
import { MAX_LABEL_LENGTH } from './pod-validation.js';

/**
 * `spec.hostname`, or the pod's name, cut to 63 characters (a hostname is one DNS label) with
 * trailing `-` and `.` removed, as the kubelet's `truncatePodHostnameIfNeeded` does: a pod
 * named with 253 characters gets a hostname `sethostname(2)` accepts. Empty when nothing is
 * left (a name of dots and dashes, which the API server never lets through).
 */
export function podHostname(pod: V1Pod): string {
  const hostname = pod.spec?.hostname || pod.metadata?.name || '';
  if (hostname.length <= MAX_LABEL_LENGTH) return hostname;
  return hostname.slice(0, MAX_LABEL_LENGTH).replace(/[-.]+$/, '');
}

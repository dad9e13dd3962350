/**
 * Downward API values for environment variables: `fieldRef` and `resourceFieldRef`, as the
 * kubelet computes them (pkg/kubelet/kubelet_pods.go `podFieldSelectorRuntimeValue`,
 * pkg/fieldpath, pkg/api/v1/resource `ExtractContainerResourceValue`).
 */
import type {
  V1Container,
  V1EphemeralContainer,
  V1ObjectFieldSelector,
  V1Pod,
  V1ResourceFieldSelector,
} from '../wire.js';
import { EnvResolutionError } from './env-error.js';
import {
  ceilDiv,
  parseQuantityExact,
  quantityMilliValue,
  quantityValue,
  type ExactQuantity,
} from './quantity.js';

/** The addresses the downward API reports; the first entry of each list is the primary. */
export interface DownwardApiAddresses {
  readonly podIPs: readonly string[];
  readonly hostIPs: readonly string[];
  /** For `spec.nodeName` when the pod has none (it always has one once bound). */
  readonly nodeName: string | undefined;
}

/**
 * Whether the environment of a container of `pod` (init, regular or ephemeral) reads the pod's
 * own IP (`status.podIP` or `status.podIPs`), which only exists once the pod has a network.
 */
export function readsPodIP(pod: V1Pod): boolean {
  const spec = pod.spec;
  const containers = [
    ...(spec?.initContainers ?? []),
    ...(spec?.containers ?? []),
    ...(spec?.ephemeralContainers ?? []),
  ];
  return containers.some((c) =>
    (c.env ?? []).some((e) => {
      const path = e.valueFrom?.fieldRef?.fieldPath;
      return path === 'status.podIP' || path === 'status.podIPs';
    }),
  );
}

/** Resources a container limit falls back to when unset, like the node's allocatable. */
export interface ResourceDefaults {
  readonly cpu?: string;
  readonly memory?: string;
  readonly 'ephemeral-storage'?: string;
}

/**
 * Formats labels or annotations as the kubelet does for `metadata.labels` and
 * `metadata.annotations`: one `key="value"` line per entry, sorted by key, values quoted like
 * Go's `%q`, lines joined by `\n` without a trailing newline.
 */
export function formatMap(map: Readonly<Record<string, string>> | undefined): string {
  const entries = Object.entries(map ?? {});
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.map(([k, v]) => `${k}=${goQuote(v)}`).join('\n');
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;
const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  '\x07': '\\a',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\v': '\\v',
  '"': '\\"',
  '\\': '\\\\',
};

/** Go's `strconv.Quote`: printable runes as they are, the rest escaped. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const short = SHORT_ESCAPES[ch];
    if (short !== undefined) {
      out += short;
      continue;
    }
    if (PRINTABLE.test(ch)) {
      out += ch;
      continue;
    }
    const cp = ch.codePointAt(0) ?? 0;
    if (cp < 0x80) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp < 0x10000) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).padStart(8, '0')}`;
  }
  return out + '"';
}

/** Splits `metadata.labels['key']` into path and key; undefined when not subscripted. */
function splitSubscript(fieldPath: string): { path: string; key: string } | undefined {
  if (!fieldPath.endsWith("']")) return undefined;
  const open = fieldPath.indexOf("['");
  if (open <= 0) return undefined;
  return { path: fieldPath.slice(0, open), key: fieldPath.slice(open + 2, -2) };
}

/**
 * The value of a `fieldRef`. Pod and host IPs come from `addresses` (which the caller fills
 * from what the provider reported, then from the pod status); unknown ones are `''`.
 * Throws `InvalidFieldPath` for a path the kubelet does not support.
 */
export function fieldRefValue(
  pod: V1Pod,
  selector: V1ObjectFieldSelector,
  addresses: DownwardApiAddresses,
): string {
  const { fieldPath } = selector;
  const invalid = (why: string): EnvResolutionError =>
    new EnvResolutionError('InvalidFieldPath', `fieldRef ${JSON.stringify(fieldPath)}: ${why}`);
  if (
    selector.apiVersion !== undefined &&
    selector.apiVersion !== '' &&
    selector.apiVersion !== 'v1'
  ) {
    throw invalid(`unsupported apiVersion ${JSON.stringify(selector.apiVersion)}`);
  }
  const metadata = pod.metadata;

  const sub = splitSubscript(fieldPath);
  if (sub !== undefined) {
    if (sub.path === 'metadata.labels') return metadata?.labels?.[sub.key] ?? '';
    if (sub.path === 'metadata.annotations') return metadata?.annotations?.[sub.key] ?? '';
    throw invalid('subscripts are only supported on metadata.labels and metadata.annotations');
  }

  switch (fieldPath) {
    case 'metadata.name':
      return metadata?.name ?? '';
    case 'metadata.namespace':
      return metadata?.namespace ?? '';
    case 'metadata.uid':
      return metadata?.uid ?? '';
    case 'metadata.labels':
      return formatMap(metadata?.labels);
    case 'metadata.annotations':
      return formatMap(metadata?.annotations);
    case 'spec.nodeName':
    case 'spec.host': // the v1 alias old clients send, converted by the API machinery
      return nonEmpty(pod.spec?.nodeName) ?? addresses.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'spec.terminationGracePeriodSeconds':
      return String(pod.spec?.terminationGracePeriodSeconds ?? 30);
    case 'status.podIP':
      return addresses.podIPs[0] ?? '';
    case 'status.podIPs':
      return addresses.podIPs.join(',');
    case 'status.hostIP':
      return addresses.hostIPs[0] ?? '';
    case 'status.hostIPs':
      return addresses.hostIPs.join(',');
    default:
      throw invalid('unsupported fieldPath');
  }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

type AnyContainer = V1Container | V1EphemeralContainer;

/**
 * The value of a `resourceFieldRef` for `container` (or for the container it names).
 *
 * - CPU is `ceil(milliValue(quantity) / milliValue(divisor))`, so 250m with divisor 1 is "1"
 *   and with divisor 1m is "250"; memory, ephemeral storage and huge pages are
 *   `ceil(value(quantity) / value(divisor))`. A missing or zero divisor means 1.
 * - An unset or zero limit falls back, like the kubelet, to the pod-level limit (cpu, memory),
 *   then to `defaults` (the node's allocatable); when that is unset too the value is "0",
 *   which is what the kubelet's helpers return for an absent quantity. Requests have no
 *   fallback: an unset request is "0" (the API server copies limits into unset requests).
 */
export function resourceFieldRefValue(
  pod: V1Pod,
  container: AnyContainer,
  selector: V1ResourceFieldSelector,
  defaults: ResourceDefaults | undefined,
): string {
  const invalid = (why: string, cause?: unknown): EnvResolutionError =>
    new EnvResolutionError(
      'InvalidResourceFieldRef',
      `resourceFieldRef ${JSON.stringify(selector.resource)}: ${why}`,
      { cause },
    );

  let target: AnyContainer = container;
  const named = selector.containerName;
  if (named !== undefined && named !== '' && named !== container.name) {
    const spec = pod.spec;
    const found = [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])].find(
      (c) => c.name === named,
    );
    if (found === undefined) throw invalid(`container ${JSON.stringify(named)} not found`);
    target = found;
  }

  const dot = selector.resource.indexOf('.');
  const kind = selector.resource.slice(0, dot);
  const name = selector.resource.slice(dot + 1);
  if (dot < 0 || (kind !== 'limits' && kind !== 'requests')) throw invalid('unsupported resource');
  const supported =
    name === 'cpu' ||
    name === 'memory' ||
    name === 'ephemeral-storage' ||
    name.startsWith('hugepages-');
  if (!supported) throw invalid('unsupported resource');

  let divisor: ExactQuantity;
  let quantity: ExactQuantity;
  try {
    // The client types say string; tolerate a number from hand-written objects.
    const rawDivisor: string | number | undefined = selector.divisor;
    divisor = parseQuantityExact(
      typeof rawDivisor === 'number' ? String(rawDivisor) : (rawDivisor ?? '0'),
    );
    if (divisor.numerator <= 0n) divisor = { numerator: 1n, denominator: 1n };
    quantity = parseQuantityExact(resourceQuantity(pod, target, kind, name, defaults));
  } catch (err) {
    throw invalid('invalid quantity', err);
  }

  if (name === 'cpu') {
    return String(ceilDiv(quantityMilliValue(quantity), quantityMilliValue(divisor)));
  }
  return String(ceilDiv(quantityValue(quantity), quantityValue(divisor)));
}

function isZero(q: string | undefined): boolean {
  if (q === undefined) return true;
  try {
    return parseQuantityExact(q).numerator === 0n;
  } catch {
    return false; // let the caller report the bad quantity
  }
}

function resourceQuantity(
  pod: V1Pod,
  container: AnyContainer,
  kind: 'limits' | 'requests',
  name: string,
  defaults: ResourceDefaults | undefined,
): string {
  const own = container.resources?.[kind]?.[name];
  if (kind === 'requests' || !isZero(own)) return own ?? '0';
  // kubelet defaultPodLimitsForDownwardAPI: pod-level limits (PodLevelResources supports cpu
  // and memory), then node allocatable (cpu, memory, ephemeral-storage).
  if (name === 'cpu' || name === 'memory') {
    const podLevel = pod.spec?.resources?.limits?.[name];
    if (!isZero(podLevel) && podLevel !== undefined) return podLevel;
  }
  if (name === 'cpu' || name === 'memory' || name === 'ephemeral-storage') {
    const fallback = defaults?.[name];
    if (fallback !== undefined && fallback !== '') return fallback;
  }
  return own ?? '0';
}

/**
 * The kubernetes provider's configuration (`--provider-config`, JSON). Only `kubeconfig` is
 * required; every other field has the default documented on it.
 */
import { invalidInput } from '../../errors.js';
import type { V1Toleration } from '../../wire.js';

/** How a local namespace is named in the remote cluster. */
export type NamespaceMapping = 'SameName' | 'Prefix' | 'Map';

/**
 * Kinds of local objects that can be created in the remote cluster: the config maps, secrets and
 * service accounts offloaded pods reference, and the Services of the namespaces that hold
 * offloaded pods.
 */
export type ReflectedKind = 'ConfigMap' | 'Secret' | 'ServiceAccount' | 'Service';
/** Every kind that can be reflected. */
export const REFLECTED_KINDS: readonly ReflectedKind[] = [
  'ConfigMap',
  'Secret',
  'ServiceAccount',
  'Service',
];
/** The kinds reflected when `reflect` is not given: Services only on request. */
export const DEFAULT_REFLECTED_KINDS: readonly ReflectedKind[] = [
  'ConfigMap',
  'Secret',
  'ServiceAccount',
];

/**
 * What a remote pod runs as:
 * - `Mirror`: a ServiceAccount of the same name is created in the remote namespace and the pod
 *   keeps its `serviceAccountName`; the remote kubelet projects that account's token (a token of
 *   the remote cluster, with the remote cluster's CA in `kube-root-ca.crt`).
 * - `None`: the remote pod runs as the remote namespace's `default` account without a token
 *   (`automountServiceAccountToken: false`; the projected `kube-api-access-*` volume is dropped).
 */
export type ServiceAccountMode = 'Mirror' | 'None';

/** Whose addresses the local pod reports: the remote pod's (`Remote`) or the virtual node's. */
export type HostIPMode = 'Remote' | 'Node';

export interface KubernetesConfig {
  /** Path of the remote cluster's kubeconfig (its current context is used). Required. */
  readonly kubeconfig: string;
  /** Default: `SameName`. */
  readonly namespaceMapping?: NamespaceMapping;
  /** With `Prefix`: prepended to the local namespace. Default: `<nodeName>-`. */
  readonly namespacePrefix?: string;
  /**
   * With `Map`: local namespace to remote namespace. A local namespace not listed is refused
   * (the pod fails with `InvalidInput`).
   */
  readonly namespaceMap?: Readonly<Record<string, string>>;
  /**
   * Added to every remote pod's `nodeSelector`, and the nodes whose capacity the virtual node
   * offers. Default: `{}` (every node).
   */
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** Added to every remote pod (to tolerate the remote nodes' taints). Default: `[]`. */
  readonly tolerations?: readonly V1Toleration[];
  /**
   * Labels and annotations whose key starts with one of these are not carried to the remote
   * objects. Default: `[]` (all are carried).
   */
  readonly excludeLabelPrefixes?: readonly string[];
  /** Default: `['kubectl.kubernetes.io/last-applied-configuration']`. */
  readonly excludeAnnotationPrefixes?: readonly string[];
  /**
   * The kinds reflected into the remote cluster. A local object's `virtual-kubelet.io/reflect`
   * annotation overrides this for it: `"false"` never, `"true"` even when its kind is not listed.
   * Default: {@link DEFAULT_REFLECTED_KINDS} (`ConfigMap`, `Secret`, `ServiceAccount`; add
   * `Service` to reflect the Services of the namespaces that hold offloaded pods).
   */
  readonly reflect?: readonly ReflectedKind[];
  /** Default: `Mirror`. */
  readonly serviceAccount?: ServiceAccountMode;
  /** Default: `Remote`. */
  readonly hostIP?: HostIPMode;
  /**
   * The local cluster's id, written on remote objects as `virtual-kubelet.io/origin-cluster`.
   * Default: `local`.
   */
  readonly clusterId?: string;
  /** How often the remote capacity is read again. Default: 10 s. */
  readonly capacityRefreshSeconds?: number;
  /**
   * Copy the remote cluster's Events about offloaded pods onto the local pods (a watch of the
   * remote pod Events). Default: true.
   */
  readonly remoteEvents?: boolean;
}

const KEYS = new Set<string>([
  'kubeconfig',
  'namespaceMapping',
  'namespacePrefix',
  'namespaceMap',
  'nodeSelector',
  'tolerations',
  'excludeLabelPrefixes',
  'excludeAnnotationPrefixes',
  'reflect',
  'serviceAccount',
  'hostIP',
  'clusterId',
  'capacityRefreshSeconds',
  'remoteEvents',
]);

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function stringMap(value: unknown, field: string): Record<string, string> {
  if (!isRecord(value)) throw invalidInput(`${field} must be an object of strings`);
  for (const [k, v] of Object.entries(value))
    if (typeof v !== 'string') throw invalidInput(`${field}.${k} must be a string`);
  return value as Record<string, string>;
}

function stringList(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string'))
    throw invalidInput(`${field} must be an array of strings`);
  return value as string[];
}

function oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value))
    throw invalidInput(`${field} must be one of ${choices.join(', ')}`);
  return value as T;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Validates a parsed `--provider-config`; throws `InvalidInput` with a one-line message. */
export function parseKubernetesConfig(json: unknown): KubernetesConfig {
  if (!isRecord(json)) throw invalidInput('the kubernetes provider config must be a JSON object');
  for (const key of Object.keys(json))
    if (!KEYS.has(key))
      throw invalidInput(`unknown field '${key}' (known: ${[...KEYS].join(', ')})`);
  const { kubeconfig } = json;
  if (typeof kubeconfig !== 'string' || kubeconfig === '')
    throw invalidInput('kubeconfig (the remote cluster kubeconfig path) is required');
  const out: { -readonly [K in keyof KubernetesConfig]: KubernetesConfig[K] } = { kubeconfig };
  if (json.namespaceMapping !== undefined)
    out.namespaceMapping = oneOf<NamespaceMapping>(json.namespaceMapping, 'namespaceMapping', [
      'SameName',
      'Prefix',
      'Map',
    ]);
  if (json.namespacePrefix !== undefined) {
    if (typeof json.namespacePrefix !== 'string' || !/^[a-z0-9-]*$/.test(json.namespacePrefix))
      throw invalidInput('namespacePrefix must be lower-case letters, digits and dashes');
    out.namespacePrefix = json.namespacePrefix;
  }
  if (json.namespaceMap !== undefined) {
    const map = stringMap(json.namespaceMap, 'namespaceMap');
    for (const [k, v] of Object.entries(map))
      if (!DNS_LABEL.test(v)) throw invalidInput(`namespaceMap.${k}: '${v}' is no namespace name`);
    out.namespaceMap = map;
  }
  if (out.namespaceMapping === 'Map' && out.namespaceMap === undefined)
    throw invalidInput('namespaceMapping Map needs namespaceMap');
  if (json.nodeSelector !== undefined)
    out.nodeSelector = stringMap(json.nodeSelector, 'nodeSelector');
  if (json.tolerations !== undefined) {
    if (!Array.isArray(json.tolerations) || !json.tolerations.every(isRecord))
      throw invalidInput('tolerations must be an array of tolerations');
    out.tolerations = json.tolerations;
  }
  if (json.excludeLabelPrefixes !== undefined)
    out.excludeLabelPrefixes = stringList(json.excludeLabelPrefixes, 'excludeLabelPrefixes');
  if (json.excludeAnnotationPrefixes !== undefined)
    out.excludeAnnotationPrefixes = stringList(
      json.excludeAnnotationPrefixes,
      'excludeAnnotationPrefixes',
    );
  if (json.reflect !== undefined) {
    const kinds = stringList(json.reflect, 'reflect');
    out.reflect = kinds.map((k) => oneOf(k, 'reflect[]', REFLECTED_KINDS));
  }
  if (json.serviceAccount !== undefined)
    out.serviceAccount = oneOf<ServiceAccountMode>(json.serviceAccount, 'serviceAccount', [
      'Mirror',
      'None',
    ]);
  if (json.hostIP !== undefined)
    out.hostIP = oneOf<HostIPMode>(json.hostIP, 'hostIP', ['Remote', 'Node']);
  if (json.clusterId !== undefined) {
    if (
      typeof json.clusterId !== 'string' ||
      !/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(json.clusterId)
    )
      throw invalidInput('clusterId must be a label value (up to 63 letters, digits, -_.)');
    out.clusterId = json.clusterId;
  }
  if (json.capacityRefreshSeconds !== undefined) {
    const s = json.capacityRefreshSeconds;
    if (typeof s !== 'number' || !(s >= 1))
      throw invalidInput('capacityRefreshSeconds must be a number >= 1');
    out.capacityRefreshSeconds = s;
  }
  if (json.remoteEvents !== undefined) {
    if (typeof json.remoteEvents !== 'boolean')
      throw invalidInput('remoteEvents must be true or false');
    out.remoteEvents = json.remoteEvents;
  }
  return out;
}

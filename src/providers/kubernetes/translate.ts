/**
 * Pure translation between a local pod and its copy in the remote cluster: namespaces, labels
 * and annotations, the spec fields that named the virtual node, the service account, the
 * reflected objects a pod's volumes name, and the status on the way back.
 */
import { invalidInput } from '../../errors.js';
import type { ResolvedVolume } from '../../provider.js';
import type {
  V1ContainerStatus,
  V1Pod,
  V1PodSpec,
  V1PodStatus,
  V1Service,
  V1Taint,
  V1Toleration,
} from '../../wire.js';
import type { KubernetesConfig } from './config.js';

/** Label: the virtual node a remote object belongs to. */
export const ORIGIN_NODE = 'virtual-kubelet.io/origin-node';
/** Label and annotation: the local pod's UID. */
export const ORIGIN_UID = 'virtual-kubelet.io/origin-uid';
/** Label and annotation: the local cluster's id (`clusterId`). */
export const ORIGIN_CLUSTER = 'virtual-kubelet.io/origin-cluster';
/** Annotation: the local pod's namespace. */
export const ORIGIN_NAMESPACE = 'virtual-kubelet.io/origin-namespace';
/** Annotation: the local pod's name. */
export const ORIGIN_NAME = 'virtual-kubelet.io/origin-name';
/** Label on reflected objects and namespaces the provider created. */
export const REFLECTED = 'virtual-kubelet.io/reflected';
/**
 * Annotation on a local ConfigMap, Secret or Service: `"false"` keeps it out of the remote
 * cluster whatever `reflect` says; `"true"` reflects it even when its kind is not in `reflect`.
 */
export const REFLECT_ANNOTATION = 'virtual-kubelet.io/reflect';

/**
 * Whether an object with `annotations` is reflected when its kind is (`kindOn`) or is not in
 * `reflect`: the object's {@link REFLECT_ANNOTATION} decides when it has one.
 */
export function reflectionWanted(
  annotations: Readonly<Record<string, string>> | undefined,
  kindOn: boolean,
): boolean {
  const value = annotations?.[REFLECT_ANNOTATION];
  if (value === 'false') return false;
  if (value === 'true') return true;
  return kindOn;
}

/** The remote namespace of local namespace `namespace`; `InvalidInput` when it has none. */
export function remoteNamespace(
  config: KubernetesConfig,
  nodeName: string,
  namespace: string,
): string {
  switch (config.namespaceMapping ?? 'SameName') {
    case 'SameName':
      return namespace;
    case 'Prefix': {
      const name = `${config.namespacePrefix ?? `${nodeName}-`}${namespace}`;
      if (name.length > 63)
        throw invalidInput(`remote namespace ${name} is longer than 63 characters`);
      return name;
    }
    case 'Map': {
      const mapped = config.namespaceMap?.[namespace];
      if (mapped === undefined)
        throw invalidInput(`namespace ${namespace} has no remote namespace in namespaceMap`);
      return mapped;
    }
  }
}

/** What {@link toRemotePod} needs besides the pod. */
export interface TranslateContext {
  readonly config: KubernetesConfig;
  readonly nodeName: string;
  readonly remoteNamespace: string;
  /** The virtual node's labels: nodeSelector entries equal to one of them are dropped. */
  readonly nodeLabels: Readonly<Record<string, string>>;
  /** The virtual node's taints: tolerations of them are dropped. */
  readonly nodeTaints: readonly V1Taint[];
}

const filtered = (
  map: Readonly<Record<string, string>> | undefined,
  exclude: readonly string[],
): Record<string, string> =>
  Object.fromEntries(
    Object.entries(map ?? {}).filter(
      ([k]) => !k.startsWith('virtual-kubelet.io/origin-') && !exclude.some((p) => k.startsWith(p)),
    ),
  );

const DEFAULT_EXCLUDED_ANNOTATIONS = ['kubectl.kubernetes.io/last-applied-configuration'];

/** Whether `t` tolerates one of `taints` (it was there to reach the virtual node). */
function toleratesAny(t: V1Toleration, taints: readonly V1Taint[]): boolean {
  return taints.some(
    (taint) =>
      t.key === taint.key &&
      (t.effect === undefined || t.effect === '' || t.effect === taint.effect),
  );
}

/** Whether a projected volume is the one the service-account admission adds. */
function isServiceAccountVolume(spec: V1PodSpec, name: string): boolean {
  const v = spec.volumes?.find((x) => x.name === name);
  return v?.projected?.sources?.some((s) => s.serviceAccountToken !== undefined) === true;
}

/**
 * The pod to create in the remote cluster: the name kept, the namespace mapped, labels and
 * annotations carried (minus the excluded prefixes) plus the origin labels and annotations;
 * `nodeName`, tolerations of the virtual node's taints, nodeSelector entries naming the virtual
 * node and node affinity removed; the configured nodeSelector and tolerations added. Priority
 * (class names are the local cluster's), image pull secrets (not reflected) and service links
 * (the core already put the local ones into `env`) are dropped.
 */
export function toRemotePod(pod: V1Pod, ctx: TranslateContext): V1Pod {
  const { config } = ctx;
  const meta = pod.metadata ?? {};
  const uid = meta.uid ?? '';
  const spec: V1PodSpec = structuredClone(pod.spec ?? { containers: [] });
  delete spec.nodeName;
  const tolerations = (spec.tolerations ?? []).filter((t) => !toleratesAny(t, ctx.nodeTaints));
  tolerations.push(...structuredClone(config.tolerations ?? []));
  if (tolerations.length > 0) spec.tolerations = tolerations;
  else delete spec.tolerations;
  const selector = Object.fromEntries(
    Object.entries(spec.nodeSelector ?? {}).filter(([k, v]) => ctx.nodeLabels[k] !== v),
  );
  Object.assign(selector, config.nodeSelector ?? {});
  if (Object.keys(selector).length > 0) spec.nodeSelector = selector;
  else delete spec.nodeSelector;
  if (spec.affinity?.nodeAffinity) {
    delete spec.affinity.nodeAffinity;
    if (Object.keys(spec.affinity).length === 0) delete spec.affinity;
  }
  delete spec.priority;
  delete spec.priorityClassName;
  delete spec.preemptionPolicy;
  delete spec.imagePullSecrets;
  spec.enableServiceLinks = false;
  if ((config.serviceAccount ?? 'Mirror') === 'None') {
    const dropped = new Set(
      (spec.volumes ?? []).filter((v) => isServiceAccountVolume(spec, v.name)).map((v) => v.name),
    );
    spec.volumes = (spec.volumes ?? []).filter((v) => !dropped.has(v.name));
    for (const c of [...spec.containers, ...(spec.initContainers ?? [])])
      if (c.volumeMounts) c.volumeMounts = c.volumeMounts.filter((m) => !dropped.has(m.name));
    spec.serviceAccountName = 'default';
    delete spec.serviceAccount;
    spec.automountServiceAccountToken = false;
  }
  const cluster = config.clusterId ?? 'local';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: meta.name ?? '',
      namespace: ctx.remoteNamespace,
      labels: {
        ...filtered(meta.labels, config.excludeLabelPrefixes ?? []),
        [ORIGIN_NODE]: ctx.nodeName,
        [ORIGIN_UID]: uid,
        [ORIGIN_CLUSTER]: cluster,
      },
      annotations: {
        ...filtered(
          meta.annotations,
          config.excludeAnnotationPrefixes ?? DEFAULT_EXCLUDED_ANNOTATIONS,
        ),
        [ORIGIN_NAMESPACE]: meta.namespace ?? '',
        [ORIGIN_NAME]: meta.name ?? '',
        [ORIGIN_UID]: uid,
        [ORIGIN_CLUSTER]: cluster,
      },
    },
    spec,
  };
}

/** The labels and annotations of a remote pod as `updatePod` patches them. */
export function remoteMetadataOf(
  pod: V1Pod,
  ctx: TranslateContext,
): { labels: Record<string, string>; annotations: Record<string, string> } {
  const meta = toRemotePod(pod, ctx).metadata ?? {};
  return { labels: meta.labels ?? {}, annotations: meta.annotations ?? {} };
}

/** Who a remote pod stands for, from its origin annotations; undefined when it is not ours. */
export function originOf(
  remote: V1Pod,
): { namespace: string; name: string; uid: string } | undefined {
  const a = remote.metadata?.annotations ?? {};
  const [namespace, name, uid] = [a[ORIGIN_NAMESPACE], a[ORIGIN_NAME], a[ORIGIN_UID]];
  if (!namespace || !name || !uid) return undefined;
  return { namespace, name, uid };
}

/**
 * Restart counts across re-created remote pods: a remote pod made again starts its counts at 0,
 * the local pod's keep growing (each re-creation counts as one restart of every container).
 */
export class RestartCounter {
  #remoteUid: string | undefined;
  readonly #base = new Map<string, number>();
  readonly #last = new Map<string, number>();

  /** `statuses` with the counts of earlier remote pods added. */
  apply(remoteUid: string, statuses: readonly V1ContainerStatus[]): V1ContainerStatus[] {
    if (this.#remoteUid !== undefined && this.#remoteUid !== remoteUid) {
      for (const [name, count] of this.#last)
        this.#base.set(name, (this.#base.get(name) ?? 0) + count + 1);
      this.#last.clear();
    }
    this.#remoteUid = remoteUid;
    return statuses.map((s) => {
      this.#last.set(s.name, s.restartCount);
      return { ...s, restartCount: s.restartCount + (this.#base.get(s.name) ?? 0) };
    });
  }
}

/**
 * The local pod's status from the remote pod's: phase, conditions, container statuses (restart
 * counts through `restarts`), pod and host addresses (the virtual node's with `hostIP: Node`).
 */
export function toLocalStatus(
  remote: V1Pod,
  restarts: RestartCounter,
  hostIP: string | undefined,
): V1PodStatus {
  const status: V1PodStatus = structuredClone(remote.status ?? {});
  const uid = remote.metadata?.uid ?? '';
  const all = [
    ...(status.initContainerStatuses ?? []).map((s) => ({ ...s, name: `init:${s.name}` })),
    ...(status.containerStatuses ?? []),
  ];
  const counted = restarts.apply(uid, all);
  if (status.initContainerStatuses)
    status.initContainerStatuses = counted
      .filter((s) => s.name.startsWith('init:'))
      .map((s) => ({ ...s, name: s.name.slice('init:'.length) }));
  if (status.containerStatuses)
    status.containerStatuses = counted.filter((s) => !s.name.startsWith('init:'));
  if (hostIP !== undefined) {
    status.hostIP = hostIP;
    status.hostIPs = [{ ip: hostIP }];
  }
  // The remote scheduler's nomination means nothing in the local cluster.
  delete status.nominatedNodeName;
  return status;
}

/** An object a pod's volumes name, with the keys that pod's volumes hold. */
export interface ReflectedData {
  readonly kind: 'ConfigMap' | 'Secret';
  readonly name: string;
  /** The volume it came from (one pod may name the same object in several volumes). */
  readonly volume: string;
  readonly data: ReadonlyMap<string, Uint8Array>;
}

/** Config maps every namespace has (the API server's CA): the remote cluster has its own. */
const NOT_REFLECTED = new Set(['kube-root-ca.crt']);

/**
 * The config maps and secrets behind `volumes` (resolved volume content of `pod`), with their
 * keys recovered from the file paths: a source with `items` maps each item's path back to its
 * key; a source without `items` owns the files no other source of its volume claims. A projected
 * volume with two or more sources without `items` is ambiguous: those sources are left out and
 * named in `skipped`.
 */
export function reflectedData(
  pod: V1Pod,
  volumes: readonly ResolvedVolume[],
): { objects: ReflectedData[]; skipped: string[] } {
  const objects: ReflectedData[] = [];
  const skipped: string[] = [];
  for (const resolved of volumes) {
    const spec = pod.spec?.volumes?.find((v) => v.name === resolved.name);
    if (!spec) continue;
    const files = new Map(resolved.files.map((f) => [f.path, f.data]));
    interface Source {
      kind: 'ConfigMap' | 'Secret';
      name: string;
      items?: readonly { key: string; path: string }[];
    }
    const sources: Source[] = [];
    const claimed = new Set<string>();
    if (spec.configMap?.name)
      sources.push({ kind: 'ConfigMap', name: spec.configMap.name, items: spec.configMap.items });
    if (spec.secret?.secretName)
      sources.push({ kind: 'Secret', name: spec.secret.secretName, items: spec.secret.items });
    for (const s of spec.projected?.sources ?? []) {
      if (s.configMap?.name)
        sources.push({ kind: 'ConfigMap', name: s.configMap.name, items: s.configMap.items });
      else if (s.secret?.name)
        sources.push({ kind: 'Secret', name: s.secret.name, items: s.secret.items });
      else {
        for (const i of s.downwardAPI?.items ?? []) claimed.add(i.path);
        if (s.serviceAccountToken) claimed.add(s.serviceAccountToken.path);
        if (s.clusterTrustBundle) claimed.add(s.clusterTrustBundle.path);
      }
    }
    for (const s of sources) for (const i of s.items ?? []) claimed.add(i.path);
    const open = sources.filter((s) => !s.items?.length);
    for (const s of sources) {
      if (NOT_REFLECTED.has(s.name) && s.kind === 'ConfigMap') continue;
      const data = new Map<string, Uint8Array>();
      if (s.items?.length) {
        for (const i of s.items) {
          const d = files.get(i.path);
          if (d !== undefined) data.set(i.key, d);
        }
      } else if (open.length > 1) {
        skipped.push(`${s.kind} ${s.name} (volume ${resolved.name})`);
        continue;
      } else {
        for (const [path, d] of files) if (!claimed.has(path)) data.set(path, d);
      }
      objects.push({ kind: s.kind, name: s.name, volume: resolved.name, data });
    }
  }
  return { objects, skipped };
}

/** `data` as a remote object's body fields: text as `data`, other bytes as `binaryData`. */
export function encodeData(
  kind: 'ConfigMap' | 'Secret',
  data: ReadonlyMap<string, Uint8Array>,
): { data?: Record<string, string>; binaryData?: Record<string, string> } {
  const b64 = (d: Uint8Array): string => Buffer.from(d).toString('base64');
  if (kind === 'Secret')
    return { data: Object.fromEntries([...data].map(([k, d]) => [k, b64(d)])) };
  const text: Record<string, string> = {};
  const binary: Record<string, string> = {};
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for (const [k, d] of data) {
    try {
      text[k] = decoder.decode(d);
    } catch {
      binary[k] = b64(d);
    }
  }
  return { data: text, ...(Object.keys(binary).length > 0 ? { binaryData: binary } : {}) };
}

/** Service types whose node ports or load balancer are the local cluster's: reflected as ClusterIP. */
const NODE_TYPES = new Set(['NodePort', 'LoadBalancer']);

/**
 * The Service to create in the remote namespace for local Service `svc`, or undefined when it is
 * not reflected (no selector and not `ExternalName`: its endpoints are kept by hand, locally).
 * The selector, ports (names, protocols, target ports), session affinity and traffic policies are
 * kept; what the local cluster allocated (cluster IPs, node ports, the health-check node port,
 * load balancer and external IPs, IP families) is left for the remote cluster to choose, and a
 * `NodePort` or `LoadBalancer` Service becomes `ClusterIP`. A headless Service stays headless.
 */
export function toRemoteService(
  svc: V1Service,
  ctx: Pick<TranslateContext, 'config' | 'nodeName' | 'remoteNamespace'>,
): V1Service | undefined {
  const local = svc.spec ?? {};
  const type = local.type ?? 'ClusterIP';
  if (
    type !== 'ExternalName' &&
    (local.selector === undefined || Object.keys(local.selector).length === 0)
  )
    return undefined;
  const spec: NonNullable<V1Service['spec']> = { type: NODE_TYPES.has(type) ? 'ClusterIP' : type };
  if (type === 'ExternalName') spec.externalName = local.externalName;
  else {
    spec.selector = { ...local.selector };
    if (local.clusterIP === 'None') spec.clusterIP = 'None';
    if (local.sessionAffinity !== undefined) spec.sessionAffinity = local.sessionAffinity;
    if (local.sessionAffinityConfig !== undefined)
      spec.sessionAffinityConfig = local.sessionAffinityConfig;
    if (local.internalTrafficPolicy !== undefined)
      spec.internalTrafficPolicy = local.internalTrafficPolicy;
    if (local.publishNotReadyAddresses !== undefined)
      spec.publishNotReadyAddresses = local.publishNotReadyAddresses;
    if (local.trafficDistribution !== undefined)
      spec.trafficDistribution = local.trafficDistribution;
  }
  if (local.ports !== undefined)
    spec.ports = local.ports.map((p) => {
      const port = { ...p };
      delete port.nodePort;
      return port;
    });
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: svc.metadata?.name,
      namespace: ctx.remoteNamespace,
      labels: {
        ...filtered(svc.metadata?.labels, ctx.config.excludeLabelPrefixes ?? []),
        [REFLECTED]: 'true',
        [ORIGIN_NODE]: ctx.nodeName,
      },
      annotations: {
        ...filtered(
          svc.metadata?.annotations,
          ctx.config.excludeAnnotationPrefixes ?? DEFAULT_EXCLUDED_ANNOTATIONS,
        ),
        [ORIGIN_NAMESPACE]: svc.metadata?.namespace ?? '',
        [ORIGIN_NAME]: svc.metadata?.name ?? '',
        [ORIGIN_CLUSTER]: ctx.config.clusterId ?? 'local',
      },
    },
    spec,
  };
}

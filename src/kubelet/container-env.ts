/**
 * Container environment resolution: what a kubelet does before it starts a container, computed
 * from API objects already read, so that providers never talk to the API server.
 *
 * For every init, regular and ephemeral container, in the kubelet's order
 * (pkg/kubelet/kubelet_pods.go `makeEnvironmentVariables`):
 *
 * 1. `envFrom` sources in order (ConfigMaps and Secrets, keys prefixed by `prefix`);
 * 2. `env` entries in order, each overriding an earlier variable of the same name: a `value`
 *    is `$(VAR)`-expanded against the variables defined so far and the service-link
 *    variables; a `valueFrom` is read from a ConfigMap key, a Secret key, a `fieldRef` or a
 *    `resourceFieldRef` (never expanded);
 * 3. service-link variables (docker-link style, see service-links.ts) for the names the
 *    container did not define.
 *
 * The result has the service-link variables first, then the container's variables in the
 * order they were first defined, every name once, values only; `envFrom` is removed.
 */
import { Buffer } from 'node:buffer';
import type { V1ConfigMap, V1Container, V1EnvVar, V1Pod, V1Secret, V1Service } from '../wire.js';
import { fieldRefValue, resourceFieldRefValue, type DownwardApiAddresses } from './downward-api.js';
import { EnvResolutionError } from './env-error.js';
import { expandEnvValue } from './env-expansion.js';
import { isServiceIPSet, serviceLinkEnvVars } from './service-links.js';
import { podVolumeObjects } from './volume-projection.js';

/**
 * The API objects a pod's environment reads, already fetched. ConfigMaps and Secrets are in the
 * pod's namespace; `undefined` means the object does not exist. A lookup may throw (the read
 * failed); the error propagates unchanged from {@link resolvePodEnvFrom}.
 */
export interface EnvObjects {
  configMap(name: string): V1ConfigMap | undefined;
  secret(name: string): V1Secret | undefined;
  /** The Services of `namespace`, one of {@link envServiceNamespaces}. */
  services(namespace: string): readonly V1Service[];
}

/** An Event the caller should record on the pod. */
export interface EnvEvent {
  readonly type: 'Normal' | 'Warning';
  readonly reason: string;
  readonly message: string;
}

export interface ResolveEnvOptions {
  /**
   * The node's IP for `status.hostIP`. Default: `hostIPs[0]`, else the pod status.
   * `hostIPs[0]` wins over `hostIP` when both are given, as in the kubelet.
   */
  readonly hostIP?: string;
  /** The node's IPs for `status.hostIPs`. Default: `[hostIP]`, else the pod status. */
  readonly hostIPs?: readonly string[];
  /**
   * The pod's IP for `status.podIP`, as the provider reported it. Default: `podIPs[0]`, else
   * the pod status, else `''` (resolve again once the provider knows the IP).
   */
  readonly podIP?: string;
  /** The pod's IPs for `status.podIPs`. Default: `[podIP]`, else the pod status. */
  readonly podIPs?: readonly string[];
  /** For `spec.nodeName` when the pod has none. Default: `''`. */
  readonly nodeName?: string;
  /** Namespace of the `kubernetes` master service. Default: `'default'`. */
  readonly masterServiceNamespace?: string;
  /**
   * What unset container limits fall back to in `resourceFieldRef` (the node's allocatable,
   * after the pod-level limits). Default: none, an unset limit then resolves to "0".
   */
  readonly nodeAllocatable?: {
    readonly cpu?: string;
    readonly memory?: string;
    readonly 'ephemeral-storage'?: string;
  };
  /**
   * Which `envFrom` keys are valid variable names. Default `false`: Kubernetes' relaxed rule
   * (GA since 1.34: printable ASCII other than `=`), under which every valid ConfigMap or
   * Secret key passes. `true`: the older C-identifier-like rule
   * (`[-._a-zA-Z][-._a-zA-Z0-9]*`, not starting with `..`) that the Go virtual-kubelet
   * applies, for backends whose shells need it. Skipped keys are reported in an Event.
   */
  readonly strictEnvVarNames?: boolean;
}

export interface ResolvedPodEnv {
  /** A deep copy of the input pod with every container's environment resolved. */
  readonly pod: V1Pod;
  /** Warnings about skipped optional sources and keys, in order, without duplicates. */
  readonly events: EnvEvent[];
}

/** The fields that containers, init containers and ephemeral containers share. */
type EnvContainer = Pick<V1Container, 'name' | 'env' | 'envFrom' | 'resources'>;

interface Context {
  readonly pod: V1Pod;
  readonly namespace: string;
  readonly objects: EnvObjects;
  readonly options: ResolveEnvOptions;
  readonly addresses: DownwardApiAddresses;
  readonly events: EnvEvent[];
}

/**
 * Resolves the environment of every container of `pod` from `objects`. The input is never
 * mutated.
 *
 * Throws {@link EnvResolutionError} when a mandatory ConfigMap, Secret or key is missing
 * (retryable) or a field reference cannot be resolved (not retryable); errors thrown by
 * `objects` propagate unchanged. Optional sources that are missing are skipped with a Warning
 * event (`OptionalConfigMapNotFound`, `OptionalConfigMapKeyNotFound` and the Secret
 * equivalents), as are invalid `envFrom` keys (`InvalidEnvironmentVariableNames`).
 */
export function resolvePodEnvFrom(
  pod: V1Pod,
  objects: EnvObjects,
  options: ResolveEnvOptions = {},
): ResolvedPodEnv {
  const copy = structuredClone(pod);
  const events: EnvEvent[] = [];
  const spec = copy.spec;
  if (spec === undefined) return { pod: copy, events };

  const ctx: Context = {
    pod,
    namespace: pod.metadata?.namespace ?? 'default',
    objects,
    options,
    addresses: addressesOf(pod, options),
    events,
  };
  const serviceEnv = serviceLinkEnv(ctx);

  for (const container of containersOf(copy)) {
    container.env = containerEnv(ctx, container, serviceEnv);
    delete container.envFrom;
  }
  return { pod: copy, events };
}

function addressesOf(pod: V1Pod, options: ResolveEnvOptions): DownwardApiAddresses {
  const status = pod.status;
  return {
    podIPs: firstList(
      options.podIPs,
      options.podIP,
      status?.podIPs?.map((p) => p.ip),
      status?.podIP,
    ),
    hostIPs: firstList(
      options.hostIPs,
      options.hostIP,
      status?.hostIPs?.map((h) => h.ip),
      status?.hostIP,
    ),
    nodeName: options.nodeName,
  };
}

/** The first non-empty of: a list, a single value, a list, a single value. */
function firstList(
  list: readonly string[] | undefined,
  one: string | undefined,
  statusList: readonly string[] | undefined,
  statusOne: string | undefined,
): readonly string[] {
  const lists = [
    list,
    one === undefined ? [] : [one],
    statusList,
    statusOne === undefined ? [] : [statusOne],
  ];
  for (const l of lists) {
    const ips = (l ?? []).filter((ip) => ip !== '');
    if (ips.length > 0) return ips;
  }
  return [];
}

/**
 * The service-link variables (kubelet `getServiceEnvVarMap`): the `kubernetes` service of the
 * master namespace always; with `enableServiceLinks` (default true) also every service of the
 * pod's namespace, which wins over the master service on a name clash. Only services with a
 * ClusterIP count. Services are taken in name order so the output is stable (the kubelet
 * iterates a Go map).
 */
function serviceLinkEnv(ctx: Context): ReadonlyMap<string, string> {
  const [masterNamespace, localNamespace] = envServiceNamespaces(ctx.pod, ctx.options);
  const byName = new Map<string, V1Service>();

  const masterList = ctx.objects.services(masterNamespace);
  const master = masterList.find((s) => s.metadata?.name === 'kubernetes' && isServiceIPSet(s));
  if (master !== undefined) byName.set('kubernetes', master);

  if (localNamespace !== undefined) {
    const local =
      localNamespace === masterNamespace ? masterList : ctx.objects.services(localNamespace);
    for (const service of local) {
      const name = service.metadata?.name;
      if (name !== undefined && isServiceIPSet(service)) byName.set(name, service);
    }
  }

  const services = [...byName.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, s]) => s);
  const env = new Map<string, string>();
  for (const v of serviceLinkEnvVars(services)) env.set(v.name, v.value ?? '');
  return env;
}

function containerEnv(
  ctx: Context,
  container: EnvContainer,
  serviceEnv: ReadonlyMap<string, string>,
): V1EnvVar[] {
  // Insertion order is first definition; a later set() replaces the value in place.
  const vars = new Map<string, string>();

  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    let data: Readonly<Record<string, string>>;
    let what: 'configMap' | 'secret';
    let name: string;
    if (from.configMapRef !== undefined) {
      what = 'configMap';
      name = from.configMapRef.name ?? '';
      const cm = lookup(ctx, CONFIG_MAP, container, name, from.configMapRef.optional, 'envFrom');
      if (cm === undefined) continue;
      data = cm.data ?? {};
    } else if (from.secretRef !== undefined) {
      what = 'secret';
      name = from.secretRef.name ?? '';
      const secret = lookup(ctx, SECRET, container, name, from.secretRef.optional, 'envFrom');
      if (secret === undefined) continue;
      data = secretData(secret);
    } else {
      continue;
    }

    const invalid: string[] = [];
    for (const [key, value] of Object.entries(data)) {
      const varName = prefix + key;
      if (isValidEnvVarName(varName, ctx.options.strictEnvVarNames === true)) {
        vars.set(varName, value);
      } else {
        invalid.push(varName);
      }
    }
    if (invalid.length > 0) {
      invalid.sort();
      warn(
        ctx,
        'InvalidEnvironmentVariableNames',
        `Keys [${invalid.join(', ')}] from the EnvFrom ${what} ${ctx.namespace}/${name} were skipped since they are considered invalid environment variable names.`,
      );
    }
  }

  const defined = (name: string): string | undefined => vars.get(name) ?? serviceEnv.get(name);
  for (const env of container.env ?? []) {
    const value = envVarValue(ctx, container, env, defined);
    if (value !== undefined) vars.set(env.name, value);
  }

  const result: V1EnvVar[] = [];
  for (const [name, value] of serviceEnv) {
    if (!vars.has(name)) result.push({ name, value });
  }
  for (const [name, value] of vars) result.push({ name, value });
  return result;
}

/** The value of one `env` entry, or undefined when an optional source is missing. */
function envVarValue(
  ctx: Context,
  container: EnvContainer,
  env: V1EnvVar,
  defined: (name: string) => string | undefined,
): string | undefined {
  // As in the kubelet, a non-empty value wins over valueFrom (the API forbids both).
  if (env.value !== undefined && env.value !== '') return expandEnvValue(env.value, defined);
  const from = env.valueFrom;
  if (from === undefined) return '';
  if (from.configMapKeyRef !== undefined) {
    return keyValue(ctx, CONFIG_MAP, container, env.name, from.configMapKeyRef);
  }
  if (from.secretKeyRef !== undefined) {
    return keyValue(ctx, SECRET, container, env.name, from.secretKeyRef);
  }
  try {
    if (from.fieldRef !== undefined) return fieldRefValue(ctx.pod, from.fieldRef, ctx.addresses);
    if (from.resourceFieldRef !== undefined) {
      return resourceFieldRefValue(
        ctx.pod,
        container,
        from.resourceFieldRef,
        ctx.options.nodeAllocatable,
      );
    }
  } catch (err) {
    // The downward-API helpers know nothing of containers; say which variable failed.
    if (!(err instanceof EnvResolutionError)) throw err;
    throw new EnvResolutionError(
      err.reason,
      `container ${JSON.stringify(container.name)}: env ${JSON.stringify(env.name)}: ${err.message}`,
      { container: container.name, cause: err.cause },
    );
  }
  if (from.fileKeyRef !== undefined) {
    // EnvFiles: the kubelet reads the key from a file in a volume when the container starts;
    // the core cannot, so fail loudly rather than drop the variable as the Go VK does.
    throw new EnvResolutionError(
      'UnsupportedEnvVarSource',
      `container ${JSON.stringify(container.name)}: env ${JSON.stringify(env.name)}: valueFrom.fileKeyRef cannot be resolved before the container starts`,
      { container: container.name },
    );
  }
  // An empty valueFrom: the kubelet sets the variable to "".
  return '';
}

/** How a ConfigMap or a Secret is read and named in messages. */
interface KeyedKind<T> {
  readonly what: 'configmap' | 'secret';
  readonly kind: 'ConfigMap' | 'Secret';
  readonly get: (objects: EnvObjects, name: string) => T | undefined;
  readonly data: (obj: T) => Readonly<Record<string, string>>;
}

const CONFIG_MAP: KeyedKind<V1ConfigMap> = {
  what: 'configmap',
  kind: 'ConfigMap',
  get: (objects, name) => objects.configMap(name),
  data: (cm) => cm.data ?? {},
};

const SECRET: KeyedKind<V1Secret> = {
  what: 'secret',
  kind: 'Secret',
  get: (objects, name) => objects.secret(name),
  data: (secret) => secretData(secret),
};

/** The value of a `configMapKeyRef` or `secretKeyRef`, or undefined when optional and missing. */
function keyValue<T>(
  ctx: Context,
  of: KeyedKind<T>,
  container: EnvContainer,
  envName: string,
  ref: { readonly name?: string; readonly key: string; readonly optional?: boolean },
): string | undefined {
  const name = ref.name ?? '';
  const obj = lookup(ctx, of, container, name, ref.optional, `env ${JSON.stringify(envName)}`);
  if (obj === undefined) return undefined;
  const value = of.data(obj)[ref.key];
  if (value !== undefined) return value;
  if (ref.optional === true) {
    warn(
      ctx,
      `Optional${of.kind}KeyNotFound`,
      `skipping optional envvar ${JSON.stringify(envName)} of container ${JSON.stringify(container.name)}: key ${JSON.stringify(ref.key)} does not exist in ${of.what} ${JSON.stringify(name)}`,
    );
    return undefined;
  }
  throw new EnvResolutionError(
    `Mandatory${of.kind}KeyNotFound`,
    `container ${JSON.stringify(container.name)}: env ${JSON.stringify(envName)}: key ${JSON.stringify(ref.key)} does not exist in ${of.what} ${ctx.namespace}/${name}`,
    { container: container.name },
  );
}

/**
 * The object, or undefined after recording the Warning for a missing optional one; throws for a
 * missing mandatory one.
 */
function lookup<T>(
  ctx: Context,
  of: KeyedKind<T>,
  container: EnvContainer,
  name: string,
  optional: boolean | undefined,
  use: string,
): T | undefined {
  const obj = of.get(ctx.objects, name);
  if (obj !== undefined) return obj;
  const where = `${use} of container ${JSON.stringify(container.name)}`;
  if (optional === true) {
    warn(
      ctx,
      `Optional${of.kind}NotFound`,
      `skipping optional ${where}: ${of.what} ${JSON.stringify(name)} not found`,
    );
    return undefined;
  }
  throw new EnvResolutionError(
    `Mandatory${of.kind}NotFound`,
    `${where}: ${of.what} ${ctx.namespace}/${name} not found`,
    { container: container.name },
  );
}

/**
 * A Secret's values as text: `data` decoded from base64 (as UTF-8; invalid sequences become
 * U+FFFD, where Go would pass the raw bytes), overridden by `stringData`, which the API server
 * merges into `data` on write and so rarely appears on read.
 */
function secretData(secret: V1Secret): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(secret.data ?? {})) {
    out[key] = Buffer.from(value, 'base64').toString('utf8');
  }
  for (const [key, value] of Object.entries(secret.stringData ?? {})) out[key] = value;
  return out;
}

const STRICT_ENV_VAR_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/**
 * apimachinery `IsRelaxedEnvVarName` (printable ASCII but `=`, not empty) or, when `strict`,
 * `IsEnvVarName` (a C-identifier-like name that is not `.` and does not start with `..`).
 */
export function isValidEnvVarName(name: string, strict = false): boolean {
  if (strict) return STRICT_ENV_VAR_NAME.test(name) && name !== '.' && !name.startsWith('..');
  if (name === '') return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x3d) return false;
  }
  return true;
}

function warn(ctx: Context, reason: string, message: string): void {
  const duplicate = ctx.events.some((e) => e.reason === reason && e.message === message);
  if (!duplicate) ctx.events.push({ type: 'Warning', reason, message });
}

/** The ConfigMaps and Secrets a pod refers to, by name, sorted and without duplicates. */
export interface PodObjectRefs {
  readonly configMaps: string[];
  readonly secrets: string[];
}

/**
 * Every ConfigMap and Secret in the pod's namespace that the pod refers to: from `env` and
 * `envFrom` of all containers, from `configMap`, `secret` and `projected` volumes, and from
 * `imagePullSecrets` (a provider may need them to pull). The core watches these objects to
 * re-sync the pod when they change.
 */
export function podNeedsObjects(pod: V1Pod): PodObjectRefs {
  const env = podEnvObjects(pod);
  const volumes = podVolumeObjects(pod);
  const pullSecrets = (pod.spec?.imagePullSecrets ?? []).map((ref) => ref.name ?? '');
  const union = (...lists: string[][]): string[] =>
    [...new Set(lists.flat().filter((name) => name !== ''))].sort();
  return {
    configMaps: union(env.configMaps, volumes.configMaps),
    secrets: union(env.secrets, volumes.secrets, pullSecrets),
  };
}

/**
 * The namespaces whose Services the pod's service-link variables come from: the master
 * service's namespace, then the pod's own when `enableServiceLinks` (default true) is set.
 */
export function envServiceNamespaces(
  pod: V1Pod,
  options: Pick<ResolveEnvOptions, 'masterServiceNamespace'> = {},
): [master: string, local?: string] {
  const master = options.masterServiceNamespace ?? 'default';
  if (pod.spec?.enableServiceLinks === false) return [master];
  return [master, pod.metadata?.namespace ?? 'default'];
}

/** The ConfigMaps and Secrets the pod's environment (`env`, `envFrom`) refers to. */
export function podEnvObjects(pod: V1Pod): PodObjectRefs {
  const configMaps = new Set<string>();
  const secrets = new Set<string>();
  const add = (set: Set<string>, name: string | undefined): void => {
    if (name !== undefined && name !== '') set.add(name);
  };
  for (const c of containersOf(pod)) {
    for (const from of c.envFrom ?? []) {
      add(configMaps, from.configMapRef?.name);
      add(secrets, from.secretRef?.name);
    }
    for (const env of c.env ?? []) {
      add(configMaps, env.valueFrom?.configMapKeyRef?.name);
      add(secrets, env.valueFrom?.secretKeyRef?.name);
    }
  }
  return { configMaps: [...configMaps].sort(), secrets: [...secrets].sort() };
}

function containersOf(pod: V1Pod): EnvContainer[] {
  const spec = pod.spec;
  return [
    ...(spec?.initContainers ?? []),
    ...(spec?.containers ?? []),
    ...(spec?.ephemeralContainers ?? []),
  ];
}

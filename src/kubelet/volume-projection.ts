/**
 * Volume projection: what a kubelet writes into a pod's `configMap`, `secret`, `downwardAPI`
 * and `projected` volumes, computed from API objects already read, so that a provider with the
 * `PodVolumes` capability receives files, never API objects.
 *
 * Behaviour follows the kubelet's volume plugins (pkg/volume/configmap, secret, downwardapi,
 * projected) and its atomic writer's path rules:
 * - without `items`, one file per key (`data`, then `binaryData` for config maps; secret values
 *   base64-decoded); with `items`, one file per item at `items[].path`;
 * - modes: `items[].mode`, else the volume's `defaultMode` (for projected sources, the projected
 *   volume's), else 0644; with `fsGroup` every file also gets group read, and a token is 0600
 *   (0640 with `fsGroup`) when the containers share a user or have an `fsGroup`, and is owned by
 *   that user (`owner`, the kubelet's FsUser). Group ownership is not part of the result: a
 *   provider that cares reads `fsGroup` from the pod;
 * - `optional: true`: a missing object gives no files, a missing item key is skipped; otherwise
 *   both are errors (retryable: the object may appear later);
 * - downward API: `metadata.name`, `namespace`, `uid`, `labels`, `annotations` (and their
 *   `['key']` subscripts) through `fieldRef`, container resources through `resourceFieldRef`;
 * - service-account tokens as requested through a TokenRequest bound to the pod (see
 *   {@link podTokenRequests}).
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import type {
  V1ConfigMap,
  V1DownwardAPIVolumeFile,
  V1KeyToPath,
  V1Pod,
  V1Secret,
  V1ServiceAccountTokenProjection,
  V1Volume,
  V1VolumeProjection,
} from '../wire.js';
import { VirtualKubeletError, errorMessage } from '../errors.js';
import type { ResolvedVolume, VolumeFile, VolumeSourceObject } from '../provider.js';
import { fieldRefValue, resourceFieldRefValue, type ResourceDefaults } from './downward-api.js';
import { EnvResolutionError } from './env-error.js';
import type { PodObjectRefs } from './container-env.js';

/** The mode of a volume file when neither the item nor the volume sets one (`0644`). */
export const DEFAULT_VOLUME_FILE_MODE = 0o644;
/** A service-account token's lifetime when the projection does not set one (1 hour). */
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;
/** The shortest lifetime the API server accepts for a projected token (10 minutes). */
export const MIN_TOKEN_EXPIRATION_SECONDS = 600;

/** A request for a service-account token bound to the pod being resolved. */
export interface TokenRequestSpec {
  readonly serviceAccountName: string;
  /** Undefined: the API server's own audiences. */
  readonly audience: string | undefined;
  readonly expirationSeconds: number;
}

/**
 * The API objects and tokens a pod's volumes read, already fetched. ConfigMaps and Secrets are in
 * the pod's namespace; `undefined` means the object does not exist. A lookup may throw (the read
 * or the TokenRequest failed): the volume then fails with reason `SourceFailed`.
 */
export interface VolumeObjects {
  configMap(name: string): V1ConfigMap | undefined;
  secret(name: string): V1Secret | undefined;
  /** The token for `spec`, one of {@link podTokenRequests}. */
  token(spec: TokenRequestSpec): string;
}

/**
 * Why a volume could not be resolved.
 *
 * | reason          | retryable | meaning                                                  |
 * |-----------------|-----------|----------------------------------------------------------|
 * | ObjectNotFound  | yes       | a non-optional ConfigMap or Secret does not exist (yet)  |
 * | KeyNotFound     | yes       | a non-optional `items[].key` is not in the object        |
 * | SourceFailed    | yes       | reading an object or requesting a token failed           |
 * | InvalidPath     | no        | a file path is absolute, has `..`, or clashes            |
 * | InvalidFieldRef | no        | a downward API item the kubelet does not support         |
 * | InvalidSpec     | no        | a mode out of range, a token lifetime under 10 minutes   |
 * | Unsupported     | no        | a source the core cannot resolve (clusterTrustBundle...) |
 */
export type VolumeResolutionReason =
  | 'ObjectNotFound'
  | 'KeyNotFound'
  | 'SourceFailed'
  | 'InvalidPath'
  | 'InvalidFieldRef'
  | 'InvalidSpec'
  | 'Unsupported';

const RETRYABLE: ReadonlySet<VolumeResolutionReason> = new Set([
  'ObjectNotFound',
  'KeyNotFound',
  'SourceFailed',
]);

/**
 * A volume of the pod cannot be resolved. The message is the kubelet's FailedMount Event message
 * (`MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found`). Code
 * `Unavailable` when the cause may go away (a missing object or key, an API failure),
 * `InvalidInput` when the spec cannot be satisfied.
 */
export class VolumeResolutionError extends VirtualKubeletError {
  readonly reason: VolumeResolutionReason;
  /** `spec.volumes[].name`. */
  readonly volume: string;
  /** The cause alone, without the `MountVolume.SetUp failed` prefix. */
  readonly detail: string;

  constructor(
    reason: VolumeResolutionReason,
    volume: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      RETRYABLE.has(reason) ? 'Unavailable' : 'InvalidInput',
      `MountVolume.SetUp failed for volume ${JSON.stringify(volume)} : ${detail}`,
      { cause: options?.cause },
    );
    this.name = 'VolumeResolutionError';
    this.reason = reason;
    this.volume = volume;
    this.detail = detail;
  }
}

export interface ResolveVolumesOptions {
  /**
   * What unset container limits fall back to in `resourceFieldRef` (the node's allocatable).
   * Default: none; an unset limit then resolves to "0".
   */
  readonly nodeAllocatable?: ResourceDefaults;
}

/** Whether the core resolves this volume's content (configMap, secret, downwardAPI, projected). */
export function isResolvedVolume(volume: V1Volume): boolean {
  return (
    volume.configMap !== undefined ||
    volume.secret !== undefined ||
    volume.downwardAPI !== undefined ||
    volume.projected !== undefined
  );
}

/** Whether `pod` has any volume whose content the core resolves. */
export function podHasResolvedVolumes(pod: V1Pod): boolean {
  return (pod.spec?.volumes ?? []).some(isResolvedVolume);
}

interface Context {
  readonly pod: V1Pod;
  /** The pod has `securityContext.fsGroup`: the kubelet adds group read to every file. */
  readonly fsGroup: boolean;
  /** The one `runAsUser` all (init) containers share, if any: tokens are then 0600. */
  readonly fsUser: number | undefined;
  readonly objects: VolumeObjects;
  readonly options: ResolveVolumesOptions;
}

/**
 * The content of every configMap, secret, downwardAPI and projected volume of `pod`, in spec
 * order, files sorted by path, from `objects`. Other volume types are left out. The input is
 * never mutated.
 *
 * Throws {@link VolumeResolutionError} for the first volume that cannot be resolved.
 */
export function projectPodVolumes(
  pod: V1Pod,
  objects: VolumeObjects,
  options: ResolveVolumesOptions = {},
): ResolvedVolume[] {
  const ctx: Context = {
    pod,
    fsGroup: pod.spec?.securityContext?.fsGroup !== undefined,
    fsUser: fsUserOf(pod),
    objects,
    options,
  };
  const out: ResolvedVolume[] = [];
  for (const volume of pod.spec?.volumes ?? []) {
    if (!isResolvedVolume(volume)) continue;
    out.push({
      name: volume.name,
      files: projectVolume(ctx, volume),
      sources: sourceObjects(volume, objects),
    });
  }
  return out;
}

/** The ConfigMaps and Secrets (that exist) behind `volume`, with their annotations. */
function sourceObjects(volume: V1Volume, objects: VolumeObjects): VolumeSourceObject[] {
  const out: VolumeSourceObject[] = [];
  const add = (kind: 'ConfigMap' | 'Secret', name: string | undefined): void => {
    if (name === undefined || name === '') return;
    if (out.some((o) => o.kind === kind && o.name === name)) return;
    const obj = kind === 'ConfigMap' ? objects.configMap(name) : objects.secret(name);
    if (obj) out.push({ kind, name, annotations: { ...obj.metadata?.annotations } });
  };
  add('ConfigMap', volume.configMap?.name);
  add('Secret', volume.secret?.secretName);
  for (const s of volume.projected?.sources ?? []) {
    add('ConfigMap', s.configMap?.name);
    add('Secret', s.secret?.name);
  }
  return out;
}

/** The ConfigMaps and Secrets `pod`'s volumes refer to, by name, sorted and without duplicates. */
export function podVolumeObjects(pod: V1Pod): PodObjectRefs {
  const configMaps = new Set<string>();
  const secrets = new Set<string>();
  const add = (set: Set<string>, name: string | undefined): void => {
    if (name !== undefined && name !== '') set.add(name);
  };
  for (const volume of pod.spec?.volumes ?? []) {
    add(configMaps, volume.configMap?.name);
    add(secrets, volume.secret?.secretName);
    for (const projection of volume.projected?.sources ?? []) {
      add(configMaps, projection.configMap?.name);
      add(secrets, projection.secret?.name);
    }
  }
  return { configMaps: [...configMaps].sort(), secrets: [...secrets].sort() };
}

/**
 * The service-account tokens `pod`'s projected volumes need, one per distinct spec (see
 * {@link tokenRequestKey}), in spec order. Projections with a lifetime under the minimum are
 * left out: they fail with `InvalidSpec` without a token.
 */
export function podTokenRequests(pod: V1Pod): TokenRequestSpec[] {
  const specs = new Map<string, TokenRequestSpec>();
  for (const volume of pod.spec?.volumes ?? []) {
    for (const p of volume.projected?.sources ?? []) {
      const s = p.serviceAccountToken;
      if (s === undefined) continue;
      const spec = tokenRequestOf(pod, s);
      if (spec.expirationSeconds >= MIN_TOKEN_EXPIRATION_SECONDS) {
        specs.set(tokenRequestKey(spec), spec);
      }
    }
  }
  return [...specs.values()];
}

/** A string equal for two token specs exactly when they ask for the same token. */
export function tokenRequestKey(spec: TokenRequestSpec): string {
  return `${spec.serviceAccountName}\u0000${spec.audience ?? ''}\u0000${String(spec.expirationSeconds)}`;
}

function tokenRequestOf(pod: V1Pod, s: V1ServiceAccountTokenProjection): TokenRequestSpec {
  return {
    serviceAccountName: nonEmpty(pod.spec?.serviceAccountName) ?? 'default',
    audience: nonEmpty(s.audience),
    expirationSeconds: s.expirationSeconds ?? DEFAULT_TOKEN_EXPIRATION_SECONDS,
  };
}

/** Files by path; a later file of the same path replaces an earlier one (as in the kubelet). */
type Payload = Map<string, { data: Uint8Array; mode: number; owner?: number }>;

function projectVolume(ctx: Context, volume: V1Volume): VolumeFile[] {
  const payload: Payload = new Map();
  const name = volume.name;
  if (volume.downwardAPI !== undefined) {
    const s = volume.downwardAPI;
    downwardAPIFiles(ctx, name, s.items, s.defaultMode ?? DEFAULT_VOLUME_FILE_MODE, payload);
  } else if (volume.projected !== undefined) {
    const mode = volume.projected.defaultMode ?? DEFAULT_VOLUME_FILE_MODE;
    for (const projection of volume.projected.sources ?? []) {
      projectionFiles(ctx, name, projection, mode, payload);
    }
  } else {
    // A configMap or secret volume: the same as the projection of one, with its own mode.
    const mode =
      volume.configMap?.defaultMode ?? volume.secret?.defaultMode ?? DEFAULT_VOLUME_FILE_MODE;
    const secret = volume.secret && { ...volume.secret, name: volume.secret.secretName };
    projectionFiles(ctx, name, { configMap: volume.configMap, secret }, mode, payload);
  }
  return filesOf(name, payload, ctx.fsGroup);
}

/**
 * The user all init and regular containers run as (their `runAsUser`, else the pod's), or
 * undefined when one has none or they differ: the kubelet's `FsUserFrom`.
 */
function fsUserOf(pod: V1Pod): number | undefined {
  const spec = pod.spec;
  let user: number | undefined;
  for (const c of [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])]) {
    const own = c.securityContext?.runAsUser ?? spec?.securityContext?.runAsUser;
    if (own === undefined || (user !== undefined && user !== own)) return undefined;
    user = own;
  }
  return user;
}

function projectionFiles(
  ctx: Context,
  volume: string,
  p: V1VolumeProjection,
  mode: number,
  payload: Payload,
): void {
  if (p.configMap !== undefined) {
    keyedObjectFiles(CONFIG_MAP, ctx, volume, p.configMap, mode, payload);
  } else if (p.secret !== undefined) {
    keyedObjectFiles(SECRET, ctx, volume, p.secret, mode, payload);
  } else if (p.downwardAPI !== undefined) {
    downwardAPIFiles(ctx, volume, p.downwardAPI.items, mode, payload);
  } else if (p.serviceAccountToken !== undefined) {
    const s = p.serviceAccountToken;
    const spec = tokenRequestOf(ctx.pod, s);
    if (spec.expirationSeconds < MIN_TOKEN_EXPIRATION_SECONDS) {
      throw new VolumeResolutionError(
        'InvalidSpec',
        volume,
        `serviceAccountToken expirationSeconds ${String(spec.expirationSeconds)} is below the minimum of ${String(MIN_TOKEN_EXPIRATION_SECONDS)}`,
      );
    }
    let token: string;
    try {
      token = ctx.objects.token(spec);
    } catch (err) {
      throw new VolumeResolutionError(
        'SourceFailed',
        volume,
        `failed to fetch token: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    // A token readable by others would leak; with a known owner or group the kubelet makes it
    // 0600 (group read is added below for fsGroup).
    const tokenMode = ctx.fsUser !== undefined || ctx.fsGroup ? 0o600 : mode;
    // And it belongs to that user, so a container running as it reads its own token.
    add(volume, payload, s.path, Buffer.from(token, 'utf8'), tokenMode, ctx.fsUser);
  } else if (p.clusterTrustBundle !== undefined) {
    throw new VolumeResolutionError(
      'Unsupported',
      volume,
      'clusterTrustBundle projections are not supported by this node',
    );
  } else {
    const kind = Object.keys(p).find((k) => (p as Record<string, unknown>)[k] !== undefined);
    throw new VolumeResolutionError(
      'Unsupported',
      volume,
      `${kind ?? 'an empty'} projection is not supported by this node`,
    );
  }
}

/** How the files of a config map or a secret come out of it. */
interface KeyedObject<T> {
  readonly kind: 'configmap' | 'secret';
  /** The word `keyedFiles` uses in its messages. */
  readonly label: 'config' | 'secret';
  readonly get: (objects: VolumeObjects, name: string) => T | undefined;
  readonly keys: (obj: T) => string[];
  readonly value: (obj: T, key: string) => Uint8Array | undefined;
}

/**
 * A kind whose values are text in one field and base64 in another; a key in both is the text
 * (the API server merges a Secret's `stringData` into `data` on write, so it rarely appears).
 */
function keyedObject<T>(
  kind: 'configmap' | 'secret',
  get: (objects: VolumeObjects, name: string) => T | undefined,
  text: (obj: T) => Readonly<Record<string, string>> | undefined,
  base64: (obj: T) => Readonly<Record<string, string>> | undefined,
): KeyedObject<T> {
  return {
    kind,
    label: kind === 'configmap' ? 'config' : 'secret',
    get,
    keys: (obj) => [
      ...new Set([...Object.keys(text(obj) ?? {}), ...Object.keys(base64(obj) ?? {})]),
    ],
    value: (obj, key) => {
      const plain = text(obj)?.[key];
      if (plain !== undefined) return Buffer.from(plain, 'utf8');
      const encoded = base64(obj)?.[key];
      return encoded === undefined ? undefined : Buffer.from(encoded, 'base64');
    },
  };
}

const CONFIG_MAP = keyedObject<V1ConfigMap>(
  'configmap',
  (objects, name) => objects.configMap(name),
  (cm) => cm.data,
  (cm) => cm.binaryData,
);

const SECRET = keyedObject<V1Secret>(
  'secret',
  (objects, name) => objects.secret(name),
  (secret) => secret.stringData,
  (secret) => secret.data,
);

/** A config map or secret source, of a volume or of a projection. */
interface KeyedSource {
  readonly name?: string;
  readonly items?: V1KeyToPath[];
  readonly optional?: boolean;
}

/** The files of config map or secret `source.name` for `volume`. */
function keyedObjectFiles<T>(
  of: KeyedObject<T>,
  ctx: Context,
  volume: string,
  source: KeyedSource,
  mode: number,
  payload: Payload,
): void {
  const name = source.name ?? '';
  let obj: T | undefined;
  try {
    obj = of.get(ctx.objects, name);
  } catch (err) {
    throw new VolumeResolutionError(
      'SourceFailed',
      volume,
      `cannot read ${of.kind} ${JSON.stringify(name)}: ${errorMessage(err)}`,
      { cause: err },
    );
  }
  const optional = source.optional === true;
  if (obj === undefined) {
    if (optional) return;
    throw new VolumeResolutionError(
      'ObjectNotFound',
      volume,
      `${of.kind} ${JSON.stringify(name)} not found`,
    );
  }
  const value = (key: string): Uint8Array | undefined => of.value(obj, key);
  keyedFiles(volume, of.keys(obj), value, source.items, mode, optional, payload, of.kind, of.label);
}

/** Files of a config map or secret: every key, or the listed items. */
function keyedFiles(
  volume: string,
  keys: readonly string[],
  value: (key: string) => Uint8Array | undefined,
  items: readonly V1KeyToPath[] | undefined,
  mode: number,
  optional: boolean,
  payload: Payload,
  what: 'configmap' | 'secret',
  keyWord: 'config' | 'secret',
): void {
  if (items === undefined || items.length === 0) {
    for (const key of keys) {
      const data = value(key);
      if (data !== undefined) add(volume, payload, key, data, mode);
    }
    return;
  }
  for (const item of items) {
    const data = value(item.key);
    if (data === undefined) {
      if (optional) continue;
      throw new VolumeResolutionError(
        'KeyNotFound',
        volume,
        `${what} references non-existent ${keyWord} key: ${item.key}`,
      );
    }
    add(volume, payload, item.path, data, item.mode ?? mode);
  }
}

/** The fieldRef paths a downward API volume may use (the rest are for env only). */
const VOLUME_FIELD_PATHS: ReadonlySet<string> = new Set([
  'metadata.name',
  'metadata.namespace',
  'metadata.uid',
  'metadata.labels',
  'metadata.annotations',
]);

function downwardAPIFiles(
  ctx: Context,
  volume: string,
  items: readonly V1DownwardAPIVolumeFile[] | undefined,
  mode: number,
  payload: Payload,
): void {
  for (const item of items ?? []) {
    let value: string;
    try {
      value = downwardAPIValue(ctx, item);
    } catch (err) {
      if (err instanceof VolumeResolutionError) throw err;
      throw new VolumeResolutionError(
        'InvalidFieldRef',
        volume,
        `downward API item ${JSON.stringify(item.path)}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    add(volume, payload, item.path, Buffer.from(value, 'utf8'), item.mode ?? mode);
  }
}

function downwardAPIValue(ctx: Context, item: V1DownwardAPIVolumeFile): string {
  if (item.fieldRef !== undefined) {
    const path = item.fieldRef.fieldPath;
    const base = path.endsWith("']") ? path.slice(0, path.indexOf("['")) : path;
    const subscripted = base !== path;
    if (
      !VOLUME_FIELD_PATHS.has(base) ||
      (subscripted && base !== 'metadata.labels' && base !== 'metadata.annotations')
    ) {
      throw new EnvResolutionError(
        'InvalidFieldPath',
        `fieldRef ${JSON.stringify(path)}: not supported in a downward API volume`,
      );
    }
    return fieldRefValue(ctx.pod, item.fieldRef, {
      podIPs: [],
      hostIPs: [],
      nodeName: undefined,
    });
  }
  if (item.resourceFieldRef !== undefined) {
    const ref = item.resourceFieldRef;
    const spec = ctx.pod.spec;
    const containers = [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])];
    const container = containers.find((c) => c.name === ref.containerName);
    if (container === undefined) {
      throw new EnvResolutionError(
        'InvalidResourceFieldRef',
        `resourceFieldRef ${JSON.stringify(ref.resource)}: container ${JSON.stringify(ref.containerName ?? '')} not found`,
      );
    }
    return resourceFieldRefValue(ctx.pod, container, ref, ctx.options.nodeAllocatable);
  }
  throw new EnvResolutionError('InvalidFieldPath', 'neither fieldRef nor resourceFieldRef is set');
}

function add(
  volume: string,
  payload: Payload,
  path: string,
  data: Uint8Array,
  mode: number,
  owner?: number,
): void {
  const invalid = volumePathError(path);
  if (invalid !== undefined) {
    throw new VolumeResolutionError(
      'InvalidPath',
      volume,
      `invalid path ${JSON.stringify(path)}: ${invalid}`,
    );
  }
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new VolumeResolutionError(
      'InvalidSpec',
      volume,
      `invalid mode ${String(mode)} for ${JSON.stringify(path)}: must be between 0 and 0777`,
    );
  }
  payload.set(path, owner === undefined ? { data, mode } : { data, mode, owner });
}

/** Longest path of a volume file, and longest element of one (the atomic writer's limits). */
const MAX_PATH_LENGTH = 4096;
const MAX_FILE_NAME_LENGTH = 255;

/**
 * Why `path` cannot name a file inside a volume, or undefined when it can. The rules of the
 * API server's validation and the kubelet's atomic writer: not empty, relative, no `..` element,
 * not starting with `..` (reserved for the writer's own entries), no NUL, within length limits.
 */
export function volumePathError(path: string): string | undefined {
  if (path === '') return 'must not be empty';
  if (path.length > MAX_PATH_LENGTH) return `longer than ${String(MAX_PATH_LENGTH)} characters`;
  if (path.startsWith('/')) return 'must be a relative path';
  if (path.includes('\u0000')) return 'must not contain NUL';
  if (path.startsWith('..')) return "must not start with '..'";
  const elements = path.split('/');
  if (elements.includes('..')) return "must not contain '..'";
  if (elements.some((e) => Buffer.byteLength(e) > MAX_FILE_NAME_LENGTH))
    return `has an element longer than ${String(MAX_FILE_NAME_LENGTH)} bytes`;
  return undefined;
}

/**
 * The files sorted by path. With `fsGroup`, every file also gets group read (`| 0440`), as the
 * kubelet's volume ownership change does for these read-only volumes.
 */
function filesOf(volume: string, payload: Payload, fsGroup: boolean): VolumeFile[] {
  const paths = [...payload.keys()].sort();
  // A file cannot also be a directory of another file ("a" and "a/b").
  const set = new Set(paths.map(normalize));
  for (const p of set) {
    for (let i = p.indexOf('/'); i > 0; i = p.indexOf('/', i + 1)) {
      if (set.has(p.slice(0, i))) {
        throw new VolumeResolutionError(
          'InvalidPath',
          volume,
          `path ${JSON.stringify(p.slice(0, i))} is both a file and a directory`,
        );
      }
    }
  }
  const groupRead = fsGroup ? 0o440 : 0;
  return paths.map((path) => {
    const f = payload.get(path);
    const mode = (f?.mode ?? DEFAULT_VOLUME_FILE_MODE) | groupRead;
    const owner = f?.owner;
    return {
      path,
      data: f?.data ?? new Uint8Array(),
      mode,
      ...(owner !== undefined ? { owner } : {}),
    };
  });
}

/** `a//b/./c` as `a/b/c`, so that clashes are found whatever the spelling. */
function normalize(path: string): string {
  return path
    .split('/')
    .filter((e) => e !== '' && e !== '.')
    .join('/');
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

/**
 * A digest of a volume's content (paths, modes and data) and of its sources' annotations under
 * `virtual-kubelet.io/` (which may change how a provider hands the content on, such as whether it
 * is reflected), to tell whether it changed.
 */
export function volumeDigest(volume: ResolvedVolume): string {
  const hash = createHash('sha256');
  for (const o of volume.sources ?? []) {
    const own = Object.entries(o.annotations)
      .filter(([k]) => k.startsWith('virtual-kubelet.io/'))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (own.length > 0) hash.update(`${o.kind}/${o.name}\u0000${JSON.stringify(own)}\u0000`);
  }
  for (const f of volume.files) {
    hash.update(`${f.path}\u0000${String(f.mode)}\u0000${String(f.data.byteLength)}\u0000`);
    hash.update(f.data);
  }
  return hash.digest('base64url');
}

/**
 * What a node checks in a pod before handing it to a provider: the rules of the API server's
 * pod validation that a provider relies on (a pod may reach a node without them: an old or
 * lenient API server, a static source, a test), and the limits of the node itself (no NUL byte
 * in anything that becomes a process argument, an environment string or a path). A pod that
 * breaks one can never run as it is, so the node reports it once and does not retry.
 */
import type { V1Container, V1ContainerPort, V1Pod, V1Volume } from '../wire.js';
import { isValidEnvVarName } from './container-env.js';
import { parseQuantityExact } from './quantity.js';

/** The API server's limit on all annotations of an object together (keys and values), in bytes. */
export const MAX_ANNOTATION_BYTES = 256 * 1024;
/** The longest DNS-1123 label: container names, the namespace, the pod's hostname. */
export const MAX_LABEL_LENGTH = 63;
/** The longest DNS-1123 subdomain: the pod's name. */
export const MAX_SUBDOMAIN_LENGTH = 253;

const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const RESTART_POLICIES = new Set(['Always', 'OnFailure', 'Never']);
const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);
const HOST_PATH_TYPES = new Set([
  '',
  'DirectoryOrCreate',
  'Directory',
  'FileOrCreate',
  'File',
  'Socket',
  'CharDevice',
  'BlockDevice',
]);
/** Every volume source of core/v1 (exactly one per volume). */
const VOLUME_SOURCES = [
  'awsElasticBlockStore',
  'azureDisk',
  'azureFile',
  'cephfs',
  'cinder',
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'fc',
  'flexVolume',
  'flocker',
  'gcePersistentDisk',
  'gitRepo',
  'glusterfs',
  'hostPath',
  'image',
  'iscsi',
  'nfs',
  'persistentVolumeClaim',
  'photonPersistentDisk',
  'portworxVolume',
  'projected',
  'quobyte',
  'rbd',
  'scaleIO',
  'secret',
  'storageos',
  'vsphereVolume',
] as const;

/**
 * The problems that keep `pod` from running on any node, in the API server's words
 * (`spec.containers[0].image: Required value`), joined with `; `; undefined for a pod without
 * any. Checks names, annotations' size, the restart policy, grace periods and deadlines,
 * container names (unique DNS labels), images, NUL bytes in commands, arguments, environment
 * names and values and working directories, environment names, ports, resource quantities
 * (requests at most their limits), volumes (exactly one known source) and volume mounts.
 */
export function podSpecProblems(pod: V1Pod): string | undefined {
  const problems: string[] = [];
  const add = (path: string, what: string): void => {
    // A thousand broken containers give a thousand problems: the first few say enough.
    if (problems.length < 10) problems.push(`${path}: ${what}`);
  };
  const meta = pod.metadata;
  const name = meta?.name ?? '';
  if (name === '') add('metadata.name', 'Required value');
  else if (name.length > MAX_SUBDOMAIN_LENGTH)
    add('metadata.name', `must be no more than ${String(MAX_SUBDOMAIN_LENGTH)} characters`);
  else if (!SUBDOMAIN.test(name))
    add('metadata.name', `Invalid value: ${quote(name)}: must be a lowercase RFC 1123 subdomain`);
  const namespace = meta?.namespace ?? '';
  if (namespace.length > MAX_LABEL_LENGTH || (namespace !== '' && !LABEL.test(namespace)))
    add('metadata.namespace', `Invalid value: ${quote(namespace)}: must be a DNS label`);
  let annotationBytes = 0;
  for (const [k, v] of Object.entries(meta?.annotations ?? {}))
    annotationBytes += Buffer.byteLength(k) + Buffer.byteLength(text(v));
  if (annotationBytes > MAX_ANNOTATION_BYTES)
    add(
      'metadata.annotations',
      `Too long: must have at most ${String(MAX_ANNOTATION_BYTES)} bytes (has ${String(annotationBytes)})`,
    );

  const spec = pod.spec;
  if (!spec) {
    add('spec', 'Required value');
    return problems.join('; ');
  }
  if (spec.restartPolicy !== undefined && !RESTART_POLICIES.has(spec.restartPolicy))
    add('spec.restartPolicy', `Unsupported value: ${quote(spec.restartPolicy)}`);
  // A negative grace period means "at once" to a node (the API server makes it 1 s).
  const anyGrace = Number.MIN_SAFE_INTEGER;
  seconds(spec.terminationGracePeriodSeconds, 'spec.terminationGracePeriodSeconds', anyGrace, add);
  seconds(meta?.deletionGracePeriodSeconds, 'metadata.deletionGracePeriodSeconds', anyGrace, add);
  seconds(spec.activeDeadlineSeconds, 'spec.activeDeadlineSeconds', 1, add);
  if (!Array.isArray(spec.containers) || spec.containers.length === 0)
    add('spec.containers', 'Required value');

  const volumes = new Set<string>();
  (spec.volumes ?? []).forEach((v, i) => {
    const path = `spec.volumes[${String(i)}]`;
    volumeProblems(v, path, add);
    if (volumes.has(v.name)) add(`${path}.name`, `Duplicate value: ${quote(v.name)}`);
    volumes.add(v.name);
  });

  const names = new Set<string>();
  const groups = [
    ['initContainers', spec.initContainers ?? []],
    ['containers', Array.isArray(spec.containers) ? spec.containers : []],
  ] as const;
  for (const [field, containers] of groups) {
    containers.forEach((c, i) => {
      const path = `spec.${field}[${String(i)}]`;
      if (names.has(c.name)) add(`${path}.name`, `Duplicate value: ${quote(c.name)}`);
      names.add(c.name);
      containerProblems(c, path, volumes, add);
    });
  }
  return problems.length === 0 ? undefined : problems.join('; ');
}

function containerProblems(
  c: V1Container,
  path: string,
  volumes: ReadonlySet<string>,
  add: (path: string, what: string) => void,
): void {
  if (typeof c.name !== 'string' || c.name === '') add(`${path}.name`, 'Required value');
  else if (c.name.length > MAX_LABEL_LENGTH || !LABEL.test(c.name))
    add(`${path}.name`, `Invalid value: ${quote(c.name)}: must be a DNS label`);
  const image = c.image ?? '';
  if (image === '') add(`${path}.image`, 'Required value');
  else if (image.trim() !== image || hasNul(image))
    add(`${path}.image`, `Invalid value: ${quote(image)}: must not have whitespace or NUL`);
  (c.command ?? []).forEach((s, j) => {
    if (hasNul(s)) add(`${path}.command[${String(j)}]`, 'Invalid value: contains a NUL byte');
  });
  (c.args ?? []).forEach((s, j) => {
    if (hasNul(s)) add(`${path}.args[${String(j)}]`, 'Invalid value: contains a NUL byte');
  });
  if (c.workingDir !== undefined && hasNul(c.workingDir))
    add(`${path}.workingDir`, 'Invalid value: contains a NUL byte');
  (c.env ?? []).forEach((e, j) => {
    const p = `${path}.env[${String(j)}]`;
    if (!isValidEnvVarName(e.name))
      add(`${p}.name`, `Invalid value: ${quote(e.name)}: must be printable ASCII without '='`);
    if (e.value !== undefined && hasNul(e.value))
      add(`${p}.value`, 'Invalid value: contains a NUL byte');
    if (e.value !== undefined && e.valueFrom !== undefined)
      add(`${p}.valueFrom`, 'Invalid value: may not be specified when `value` is not empty');
  });
  const ports = c.ports ?? [];
  ports.forEach((p, j) => portProblems(p, `${path}.ports[${String(j)}]`, add));
  const requests = c.resources?.requests ?? {};
  const limits = c.resources?.limits ?? {};
  const parsed = new Map<string, number>();
  for (const [kind, list] of [
    ['limits', limits],
    ['requests', requests],
  ] as const) {
    for (const [resource, value] of Object.entries(list)) {
      const p = `${path}.resources.${kind}[${resource}]`;
      try {
        const q = parseQuantityExact(text(value));
        if (q.numerator < 0n) add(p, `Invalid value: ${quote(text(value))}: must be >= 0`);
        const n = Number(q.numerator) / Number(q.denominator);
        if (kind === 'limits') parsed.set(resource, n);
        else {
          const limit = parsed.get(resource);
          if (limit !== undefined && n > limit)
            add(p, `Invalid value: ${quote(text(value))}: must be less than or equal to the limit`);
        }
      } catch {
        add(p, `Invalid value: ${quote(text(value))}: not a quantity`);
      }
    }
  }
  const mountPaths = new Set<string>();
  (c.volumeMounts ?? []).forEach((m, j) => {
    const p = `${path}.volumeMounts[${String(j)}]`;
    if (!volumes.has(m.name)) add(`${p}.name`, `Not found: ${quote(m.name)}`);
    if (!m.mountPath) add(`${p}.mountPath`, 'Required value');
    else if (hasNul(m.mountPath)) add(`${p}.mountPath`, 'Invalid value: contains a NUL byte');
    else if (mountPaths.has(m.mountPath))
      add(`${p}.mountPath`, `Invalid value: ${quote(m.mountPath)}: must be unique`);
    mountPaths.add(m.mountPath);
    if (m.subPath !== undefined && (hasNul(m.subPath) || backsteps(m.subPath)))
      add(
        `${p}.subPath`,
        `Invalid value: ${quote(m.subPath)}: must be a relative path without '..'`,
      );
  });
}

function portProblems(
  p: V1ContainerPort,
  path: string,
  add: (path: string, what: string) => void,
): void {
  if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535)
    add(
      `${path}.containerPort`,
      `Invalid value: ${String(p.containerPort)}: must be between 1 and 65535, inclusive`,
    );
  if (
    p.hostPort !== undefined &&
    (!Number.isInteger(p.hostPort) || p.hostPort < 0 || p.hostPort > 65535)
  )
    add(
      `${path}.hostPort`,
      `Invalid value: ${String(p.hostPort)}: must be between 0 and 65535, inclusive`,
    );
  if (p.protocol !== undefined && !PROTOCOLS.has(p.protocol))
    add(`${path}.protocol`, `Unsupported value: ${quote(p.protocol)}`);
}

function volumeProblems(
  v: V1Volume,
  path: string,
  add: (path: string, what: string) => void,
): void {
  if (typeof v.name !== 'string' || v.name === '') add(`${path}.name`, 'Required value');
  else if (v.name.length > MAX_LABEL_LENGTH || !LABEL.test(v.name))
    add(`${path}.name`, `Invalid value: ${quote(v.name)}: must be a DNS label`);
  const record = v as unknown as Record<string, unknown>;
  const sources = VOLUME_SOURCES.filter((s) => record[s] !== undefined && record[s] !== null);
  if (sources.length === 0) add(path, 'Required value: must specify a volume type');
  if (sources.length > 1) add(path, 'Forbidden: may not specify more than 1 volume type');
  const hostPath = v.hostPath;
  if (hostPath) {
    if (!hostPath.path) add(`${path}.hostPath.path`, 'Required value');
    else if (hasNul(hostPath.path) || backsteps(hostPath.path))
      add(`${path}.hostPath.path`, `Invalid value: ${quote(hostPath.path)}: must not contain '..'`);
    if (hostPath.type !== undefined && !HOST_PATH_TYPES.has(hostPath.type))
      add(`${path}.hostPath.type`, `Unsupported value: ${quote(hostPath.type)}`);
  }
  const size = v.emptyDir?.sizeLimit;
  if (size !== undefined) {
    try {
      parseQuantityExact(text(size));
    } catch {
      add(`${path}.emptyDir.sizeLimit`, `Invalid value: ${quote(text(size))}: not a quantity`);
    }
  }
}

function seconds(
  value: unknown,
  path: string,
  min: number,
  add: (path: string, what: string) => void,
): void {
  if (value === undefined || value === null) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    add(
      path,
      min === Number.MIN_SAFE_INTEGER
        ? `Invalid value: ${text(value)}: must be an integer`
        : `Invalid value: ${text(value)}: must be an integer >= ${String(min)}`,
    );
}

/** A field's value as text: the wire may carry a number where a string belongs. */
const text = (value: unknown): string =>
  typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);

const hasNul = (s: unknown): boolean => typeof s === 'string' && s.includes('\0');

const backsteps = (path: string): boolean => path.split(/[\\/]/).includes('..');

/** A value in an error message: quoted, shortened (a 1 MiB value must not make a 1 MiB message). */
function quote(value: string): string {
  const text = value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return JSON.stringify(text);
}

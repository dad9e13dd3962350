/**
 * Pod specs a node must survive, each with what the node makes of it: the component test of
 * the PodController (test/component/pods/bad-specs.test.ts) and the chaos suite's `bad-specs`
 * scenario (against a real cluster) send the same table. Each pod is given without namespace
 * and node: the sender sets `metadata.namespace` and `spec.nodeName` (see {@link badSpecPod}).
 *
 * `rejectedByApiServer` marks the specs a real API server (v1.37) refuses at admission (its
 * validation, its admission plugins, or the decoding of the number): they never reach a node
 * there, so the chaos suite expects a 4xx for them, while the component test, whose stand-in API
 * validates nothing, sends them to the node, which must survive them (`expect`; most it refuses
 * the same way). The flags are what the chaos suite found on a real API server: where they
 * differ, the real one is right and the table is fixed.
 */
import type { V1ConfigMap, V1Container, V1Pod, V1PodSpec, V1Secret } from '../../src/wire.js';

/** What the node (the core with the mock provider) makes of a bad spec. */
export type BadSpecExpectation =
  /** It runs: odd, but allowed (long names get a truncated hostname, huge env is passed on). */
  | { readonly status: 'Running' }
  /**
   * Pending, every container Waiting with `waiting`, and one Event with reason `event`: once
   * for a spec that can never run (InvalidPodSpec), its count raised with back-off for a
   * missing object or key (which may appear later). A missing object of the environment waits
   * as CreateContainerConfigError, one of a volume as ContainerCreating (FailedMount).
   */
  | {
      readonly status: 'Pending';
      readonly waiting: 'CreateContainerConfigError' | 'ContainerCreating';
      readonly event: string;
      readonly retried: boolean;
    }
  /** Failed for good with the pod reason `reason`, and one Event with reason `event`. */
  | { readonly status: 'Failed'; readonly reason: string; readonly event: string };

export interface BadPodSpec {
  /** A short name for tables and test titles. */
  readonly name: string;
  /** The pod, without namespace and node. */
  readonly pod: V1Pod;
  readonly expect: BadSpecExpectation;
  /**
   * What the node makes of the pod a real API server stores, when its defaulting turns `pod`
   * into another pod (an unknown volume type dropped, the volume then an emptyDir). Default:
   * `expect`.
   */
  readonly onCluster?: BadSpecExpectation;
  /** A real API server refuses it at admission (it never reaches the node). */
  readonly rejectedByApiServer: boolean;
}

/** The config map and secret the specs' references may name (created before the pods). */
export const PRESENT_CONFIG_MAP = 'bad-specs-present';
export const PRESENT_SECRET = 'bad-specs-present';

/** Objects to create in the pods' namespace before sending the table. */
export function badSpecObjects(namespace: string): { configMap: V1ConfigMap; secret: V1Secret } {
  return {
    configMap: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { namespace, name: PRESENT_CONFIG_MAP },
      data: { present: 'yes' },
    },
    secret: {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { namespace, name: PRESENT_SECRET },
      data: { present: Buffer.from('yes').toString('base64') },
    },
  };
}

/** `entry`'s pod in `namespace`, bound to `nodeName`. */
export function badSpecPod(entry: BadPodSpec, namespace: string, nodeName: string): V1Pod {
  const pod = structuredClone(entry.pod);
  pod.metadata = { ...pod.metadata, namespace };
  if (pod.spec) pod.spec.nodeName = nodeName;
  return pod;
}

const MiB = 1024 * 1024;
const RUNS: BadSpecExpectation = { status: 'Running' };
const REFUSED: BadSpecExpectation = {
  status: 'Pending',
  waiting: 'CreateContainerConfigError',
  event: 'InvalidPodSpec',
  retried: false,
};
const missing = (event: string): BadSpecExpectation => ({
  status: 'Pending',
  waiting: 'CreateContainerConfigError',
  event,
  retried: true,
});
const unmounted: BadSpecExpectation = {
  status: 'Pending',
  waiting: 'ContainerCreating',
  event: 'FailedMount',
  retried: true,
};
const failed = (event: string): BadSpecExpectation => ({
  status: 'Failed',
  reason: 'ProviderFailed',
  event,
});

function app(overrides: Partial<V1Container> = {}): V1Container {
  return { name: 'app', image: 'busybox:1', command: ['sleep', '3600'], ...overrides };
}

function pod(name: string, spec: Partial<V1PodSpec> = {}, container?: Partial<V1Container>): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: { restartPolicy: 'Always', containers: [app(container)], ...spec },
  };
}

/** A spec with a field the types do not allow (a number where a string belongs, and so on). */
function raw(name: string, spec: Record<string, unknown>): V1Pod {
  return pod(name, spec);
}

function entry(
  name: string,
  p: V1Pod,
  expect: BadSpecExpectation,
  rejectedByApiServer: boolean,
  onCluster?: BadSpecExpectation,
): BadPodSpec {
  return { name, pod: p, expect, rejectedByApiServer, ...(onCluster ? { onCluster } : {}) };
}

/** A name of `length` characters, valid as a DNS subdomain. */
function longName(prefix: string, length: number, fill = 'a'): string {
  return (prefix + fill.repeat(length)).slice(0, length - 1) + 'z';
}

function annotations(totalBytes: number): Record<string, string> {
  const out: Record<string, string> = {};
  const chunk = 64 * 1024;
  for (let i = 0; i * chunk < totalBytes; i++)
    out[`bad-specs/a${String(i)}`] = 'x'.repeat(Math.min(chunk, totalBytes - i * chunk));
  return out;
}

const volume = (v: Record<string, unknown>): NonNullable<V1PodSpec['volumes']>[number] =>
  v as unknown as NonNullable<V1PodSpec['volumes']>[number];

/** At least 50 specs, each of them seen on some cluster, none of them to stop the node. */
export const BAD_POD_SPECS: readonly BadPodSpec[] = [
  // Big, but valid: the node runs them.
  entry(
    'env-10000-vars',
    pod(
      'env-10000-vars',
      {},
      {
        env: Array.from({ length: 10_000 }, (_, i) => ({ name: `V${String(i)}`, value: 'x' })),
      },
    ),
    RUNS,
    false,
  ),
  entry(
    'env-value-1mib',
    pod('env-value-1mib', {}, { env: [{ name: 'BIG', value: 'x'.repeat(MiB) }] }),
    RUNS,
    false,
  ),
  entry('args-1mib', pod('args-1mib', {}, { args: ['x'.repeat(MiB)] }), RUNS, false),
  entry(
    'containers-1000',
    pod('containers-1000', {
      containers: Array.from({ length: 1000 }, (_, i) => app({ name: `c${String(i)}` })),
    }),
    RUNS,
    false,
  ),
  entry(
    'ports-1000',
    pod(
      'ports-1000',
      {},
      {
        ports: Array.from({ length: 1000 }, (_, i) => ({ containerPort: 10_000 + i })),
      },
    ),
    RUNS,
    false,
  ),
  entry('name-253-chars', pod(longName('name-253-', 253)), RUNS, false),
  entry('name-64-chars', pod(longName('name-64-', 64)), RUNS, false),
  // Cut to 63 characters the hostname would end in '-' and '.': the kubelet strips them.
  entry('name-truncated-to-dash', pod(`${longName('name-dash-', 62)}-abc`), RUNS, false),
  entry('name-truncated-to-dot', pod(`${longName('name-dot-', 62)}.abc`), RUNS, false),
  entry(
    'annotations-200kib',
    {
      ...pod('annotations-200kib'),
      metadata: { name: 'annotations-200kib', annotations: annotations(200 * 1024) },
    },
    RUNS,
    false,
  ),
  entry(
    'grace-max-int32',
    pod('grace-max-int32', { terminationGracePeriodSeconds: 2_147_483_647 }),
    RUNS,
    false,
  ),
  entry('grace-zero', pod('grace-zero', { terminationGracePeriodSeconds: 0 }), RUNS, false),
  // The API server treats a negative grace period as 1 s; a node takes it as "at once".
  entry(
    'grace-negative',
    pod('grace-negative', { terminationGracePeriodSeconds: -5 }),
    RUNS,
    false,
  ),
  entry(
    'deadline-huge',
    pod('deadline-huge', { activeDeadlineSeconds: 2_147_483_647 }),
    RUNS,
    false,
  ),
  // Over int32: the API server refuses it; the node takes any safe integer.
  entry(
    'deadline-over-int32',
    pod('deadline-over-int32', { activeDeadlineSeconds: 2 ** 52 }),
    RUNS,
    true,
  ),
  // A kubelet fails it (DeadlineExceeded) after 1 s; the core leaves activeDeadlineSeconds to
  // the provider (the process provider enforces it, the mock does not), so the mock runs it.
  entry('deadline-1s', pod('deadline-1s', { activeDeadlineSeconds: 1 }), RUNS, false),
  // The ServiceAccount admission refuses it; a node without that admission just runs it.
  entry(
    'serviceaccount-missing',
    pod('serviceaccount-missing', { serviceAccountName: 'no-such-account' }),
    RUNS,
    true,
  ),
  entry(
    'hostpath-root',
    pod('hostpath-root', { volumes: [{ name: 'v', hostPath: { path: '/' } }] }),
    RUNS,
    false,
  ),
  entry(
    'hostpath-proc',
    pod('hostpath-proc', { volumes: [{ name: 'v', hostPath: { path: '/proc' } }] }),
    RUNS,
    false,
  ),
  entry(
    'hostpath-relative',
    pod('hostpath-relative', { volumes: [{ name: 'v', hostPath: { path: 'relative/dir' } }] }),
    RUNS,
    false,
  ),
  entry(
    'image-unknown',
    pod('image-unknown', {}, { image: 'registry.invalid/nothing:here' }),
    RUNS,
    false,
  ),
  entry(
    'optional-configmap-missing',
    pod(
      'optional-configmap-missing',
      {},
      {
        env: [
          {
            name: 'X',
            valueFrom: { configMapKeyRef: { name: 'no-such-map', key: 'k', optional: true } },
          },
        ],
      },
    ),
    RUNS,
    false,
  ),
  entry(
    'probe-port-name-missing',
    pod(
      'probe-port-name-missing',
      {},
      {
        readinessProbe: { tcpSocket: { port: 'nope' }, periodSeconds: 1 },
      },
    ),
    RUNS,
    false,
  ),
  entry(
    'command-references-unknown-var',
    pod('command-references-unknown-var', {}, { command: ['echo', '$(NOT_SET)', '$$(ESCAPED)'] }),
    RUNS,
    false,
  ),

  // References to objects or keys that are missing (they may appear): retried with back-off.
  entry(
    'env-configmap-missing',
    pod(
      'env-configmap-missing',
      {},
      {
        env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'no-such-map', key: 'k' } } }],
      },
    ),
    missing('MandatoryConfigMapNotFound'),
    false,
  ),
  entry(
    'env-configmap-key-missing',
    pod(
      'env-configmap-key-missing',
      {},
      {
        env: [
          {
            name: 'X',
            valueFrom: { configMapKeyRef: { name: PRESENT_CONFIG_MAP, key: 'absent' } },
          },
        ],
      },
    ),
    missing('MandatoryConfigMapKeyNotFound'),
    false,
  ),
  entry(
    'env-secret-missing',
    pod(
      'env-secret-missing',
      {},
      {
        env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'no-such-secret', key: 'k' } } }],
      },
    ),
    missing('MandatorySecretNotFound'),
    false,
  ),
  entry(
    'env-secret-key-missing',
    pod(
      'env-secret-key-missing',
      {},
      {
        env: [{ name: 'X', valueFrom: { secretKeyRef: { name: PRESENT_SECRET, key: 'absent' } } }],
      },
    ),
    missing('MandatorySecretKeyNotFound'),
    false,
  ),
  entry(
    'envfrom-configmap-missing',
    pod('envfrom-configmap-missing', {}, { envFrom: [{ configMapRef: { name: 'no-such-map' } }] }),
    missing('MandatoryConfigMapNotFound'),
    false,
  ),
  entry(
    'envfrom-secret-missing',
    pod('envfrom-secret-missing', {}, { envFrom: [{ secretRef: { name: 'no-such-secret' } }] }),
    missing('MandatorySecretNotFound'),
    false,
  ),

  // Volumes of objects that are missing: not started (FailedMount), retried with back-off.
  entry(
    'volume-configmap-missing',
    pod(
      'volume-configmap-missing',
      { volumes: [{ name: 'v', configMap: { name: 'no-such-map' } }] },
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
    ),
    unmounted,
    false,
  ),
  entry(
    'volume-secret-missing',
    pod(
      'volume-secret-missing',
      { volumes: [{ name: 'v', secret: { secretName: 'no-such-secret' } }] },
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
    ),
    unmounted,
    false,
  ),
  entry(
    'projected-configmap-missing',
    pod(
      'projected-configmap-missing',
      {
        volumes: [{ name: 'v', projected: { sources: [{ configMap: { name: 'no-such-map' } }] } }],
      },
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
    ),
    unmounted,
    false,
  ),
  entry(
    'projected-secret-missing',
    pod(
      'projected-secret-missing',
      {
        volumes: [
          {
            name: 'v',
            projected: {
              sources: [
                { configMap: { name: PRESENT_CONFIG_MAP } },
                { secret: { name: 'no-such-secret' } },
              ],
            },
          },
        ],
      },
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
    ),
    unmounted,
    false,
  ),
  entry(
    'volume-optional-secret-missing',
    pod(
      'volume-optional-secret-missing',
      { volumes: [{ name: 'v', secret: { secretName: 'no-such-secret', optional: true } }] },
      { volumeMounts: [{ name: 'v', mountPath: '/v' }] },
    ),
    RUNS,
    false,
  ),

  // References the kubelet can never resolve: failed for good.
  entry(
    'fieldref-unknown-path',
    pod(
      'fieldref-unknown-path',
      {},
      {
        env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'metadata.bogus' } } }],
      },
    ),
    failed('InvalidFieldPath'),
    true,
  ),
  entry(
    'resourcefieldref-unknown-container',
    pod(
      'resourcefieldref-unknown-container',
      {},
      {
        env: [
          {
            name: 'X',
            valueFrom: { resourceFieldRef: { containerName: 'nope', resource: 'limits.cpu' } },
          },
        ],
      },
    ),
    failed('InvalidResourceFieldRef'),
    // The API server checks the resource, not that the container exists.
    false,
  ),
  entry(
    'resourcefieldref-unknown-resource',
    pod(
      'resourcefieldref-unknown-resource',
      {},
      {
        env: [{ name: 'X', valueFrom: { resourceFieldRef: { resource: 'limits.bogus' } } }],
      },
    ),
    failed('InvalidResourceFieldRef'),
    true,
  ),

  // NUL bytes: the API server lets them through, execve cannot take them.
  entry(
    'nul-in-command',
    pod('nul-in-command', {}, { command: ['sh\0', '-c', 'true'] }),
    REFUSED,
    false,
  ),
  entry('nul-in-args', pod('nul-in-args', {}, { args: ['a\0b'] }), REFUSED, false),
  entry(
    'nul-in-env-value',
    pod('nul-in-env-value', {}, { env: [{ name: 'X', value: 'a\0b' }] }),
    REFUSED,
    false,
  ),
  entry(
    'nul-in-working-dir',
    pod('nul-in-working-dir', {}, { workingDir: '/tmp\0x' }),
    REFUSED,
    false,
  ),
  entry(
    'nul-in-env-name',
    pod('nul-in-env-name', {}, { env: [{ name: 'A\0B', value: 'x' }] }),
    REFUSED,
    true,
  ),
  // The API server checks an image only for blanks at its ends.
  entry('nul-in-image', pod('nul-in-image', {}, { image: 'busybox\0:1' }), REFUSED, false),
  entry(
    'nul-in-mount-path',
    pod(
      'nul-in-mount-path',
      { volumes: [{ name: 'v', emptyDir: {} }] },
      {
        volumeMounts: [{ name: 'v', mountPath: '/data\0x' }],
      },
    ),
    REFUSED,
    false,
  ),

  // Everything else a real API server refuses at admission.
  entry(
    'env-name-with-equals',
    pod('env-name-with-equals', {}, { env: [{ name: 'A=B', value: 'x' }] }),
    REFUSED,
    true,
  ),
  entry(
    'env-name-empty',
    pod('env-name-empty', {}, { env: [{ name: '', value: 'x' }] }),
    REFUSED,
    true,
  ),
  entry(
    'env-value-and-value-from',
    pod(
      'env-value-and-value-from',
      {},
      {
        env: [{ name: 'X', value: 'x', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
      },
    ),
    REFUSED,
    true,
  ),
  entry('image-empty', pod('image-empty', {}, { image: '' }), REFUSED, true),
  entry('image-whitespace', pod('image-whitespace', {}, { image: ' busybox:1 ' }), REFUSED, true),
  entry('no-containers', pod('no-containers', { containers: [] }), REFUSED, true),
  entry(
    'container-names-duplicate',
    pod('container-names-duplicate', { containers: [app(), app()] }),
    REFUSED,
    true,
  ),
  entry(
    'init-and-app-same-name',
    pod('init-and-app-same-name', { initContainers: [app({ command: ['true'] })] }),
    REFUSED,
    true,
  ),
  entry(
    'container-name-uppercase',
    pod('container-name-uppercase', {}, { name: 'App' }),
    REFUSED,
    true,
  ),
  entry(
    'container-name-64-chars',
    pod('container-name-64-chars', {}, { name: longName('c', 64) }),
    REFUSED,
    true,
  ),
  entry('container-name-empty', pod('container-name-empty', {}, { name: '' }), REFUSED, true),
  entry('name-254-chars', pod(longName('name-254-', 254)), REFUSED, true),
  entry('name-uppercase', pod('Name-Uppercase'), REFUSED, true),
  entry('name-underscore', pod('name_underscore'), REFUSED, true),
  entry(
    'annotations-1mib',
    {
      ...pod('annotations-1mib'),
      metadata: { name: 'annotations-1mib', annotations: annotations(MiB) },
    },
    REFUSED,
    true,
  ),
  entry(
    'quantity-not-a-number',
    pod('quantity-not-a-number', {}, { resources: { limits: { cpu: 'lots' } } }),
    REFUSED,
    true,
  ),
  entry(
    'quantity-negative',
    pod('quantity-negative', {}, { resources: { requests: { memory: '-1Gi' } } }),
    REFUSED,
    true,
  ),
  entry(
    'quantity-bad-suffix',
    pod('quantity-bad-suffix', {}, { resources: { limits: { memory: '1GiB' } } }),
    REFUSED,
    true,
  ),
  entry(
    'requests-over-limits',
    pod(
      'requests-over-limits',
      {},
      {
        resources: { requests: { cpu: '2' }, limits: { cpu: '1' } },
      },
    ),
    REFUSED,
    true,
  ),
  entry(
    'container-port-zero',
    pod('container-port-zero', {}, { ports: [{ containerPort: 0 }] }),
    REFUSED,
    true,
  ),
  entry(
    'container-port-70000',
    pod('container-port-70000', {}, { ports: [{ containerPort: 70_000 }] }),
    REFUSED,
    true,
  ),
  entry(
    'host-port-negative',
    pod('host-port-negative', {}, { ports: [{ containerPort: 80, hostPort: -1 }] }),
    REFUSED,
    true,
  ),
  entry(
    'port-protocol-unknown',
    pod('port-protocol-unknown', {}, { ports: [{ containerPort: 80, protocol: 'QUIC' }] }),
    REFUSED,
    true,
  ),
  entry(
    'volume-type-unknown',
    pod('volume-type-unknown', { volumes: [volume({ name: 'v', madeUpVolume: { path: '/x' } })] }),
    REFUSED,
    // The API server drops the unknown field and defaults the volume to an emptyDir: it runs.
    false,
    RUNS,
  ),
  entry(
    'volume-two-types',
    pod('volume-two-types', { volumes: [{ name: 'v', emptyDir: {}, hostPath: { path: '/tmp' } }] }),
    REFUSED,
    true,
  ),
  entry(
    'volume-names-duplicate',
    pod('volume-names-duplicate', {
      volumes: [
        { name: 'v', emptyDir: {} },
        { name: 'v', emptyDir: {} },
      ],
    }),
    REFUSED,
    true,
  ),
  entry(
    'volume-mount-unknown-volume',
    pod(
      'volume-mount-unknown-volume',
      {},
      { volumeMounts: [{ name: 'nope', mountPath: '/data' }] },
    ),
    REFUSED,
    true,
  ),
  entry(
    'volume-mount-path-duplicate',
    pod(
      'volume-mount-path-duplicate',
      {
        volumes: [
          { name: 'v', emptyDir: {} },
          { name: 'w', emptyDir: {} },
        ],
      },
      {
        volumeMounts: [
          { name: 'v', mountPath: '/data' },
          { name: 'w', mountPath: '/data' },
        ],
      },
    ),
    REFUSED,
    true,
  ),
  entry(
    'subpath-backsteps',
    pod(
      'subpath-backsteps',
      { volumes: [{ name: 'v', emptyDir: {} }] },
      {
        volumeMounts: [{ name: 'v', mountPath: '/data', subPath: '../../etc' }],
      },
    ),
    REFUSED,
    true,
  ),
  entry(
    'hostpath-backsteps',
    pod('hostpath-backsteps', { volumes: [{ name: 'v', hostPath: { path: '/var/../etc' } }] }),
    REFUSED,
    true,
  ),
  entry(
    'hostpath-type-unknown',
    pod('hostpath-type-unknown', {
      volumes: [{ name: 'v', hostPath: { path: '/tmp', type: 'Whatever' } }],
    }),
    REFUSED,
    true,
  ),
  entry(
    'emptydir-size-invalid',
    raw('emptydir-size-invalid', { volumes: [{ name: 'v', emptyDir: { sizeLimit: 'huge' } }] }),
    REFUSED,
    true,
  ),
  entry(
    'restart-policy-unknown',
    pod('restart-policy-unknown', { restartPolicy: 'Sometimes' }),
    REFUSED,
    true,
  ),
  entry(
    'grace-overflow',
    pod('grace-overflow', { terminationGracePeriodSeconds: 1e20 }),
    REFUSED,
    true,
  ),
  entry(
    'grace-fraction',
    pod('grace-fraction', { terminationGracePeriodSeconds: 1.5 }),
    REFUSED,
    true,
  ),
  entry('deadline-zero', pod('deadline-zero', { activeDeadlineSeconds: 0 }), REFUSED, true),
  entry(
    'deadline-negative',
    pod('deadline-negative', { activeDeadlineSeconds: -1 }),
    REFUSED,
    true,
  ),
];

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import type {
  V1ConfigMap,
  V1Container,
  V1EnvVar,
  V1Pod,
  V1Secret,
  V1Service,
} from '../../../src/wire.js';
import {
  isValidEnvVarName,
  podNeedsObjects,
  type ResolveEnvOptions,
} from '../../../src/kubelet/container-env.js';
import { EnvResolutionError } from '../../../src/kubelet/env-error.js';
import { resolvePodEnv, type EnvSource } from '../../../src/pods/env.js';

const NS = 'apps';

/** An in-memory EnvSource that counts its calls. */
class FakeSource implements EnvSource {
  readonly configMaps = new Map<string, V1ConfigMap>();
  readonly secrets = new Map<string, V1Secret>();
  readonly services: V1Service[] = [];
  readonly calls: string[] = [];

  configMap(name: string, data: Record<string, string>, namespace = NS): this {
    this.configMaps.set(`${namespace}/${name}`, { metadata: { name, namespace }, data });
    return this;
  }

  /** Stores `data` base64-encoded, as the API server returns it. */
  secret(name: string, data: Record<string, string>, stringData?: Record<string, string>): this {
    const encoded = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]),
    );
    this.secrets.set(`${NS}/${name}`, {
      metadata: { name, namespace: NS },
      data: encoded,
      ...(stringData === undefined ? {} : { stringData }),
    });
    return this;
  }

  service(namespace: string, name: string, clusterIP: string, ports: V1Service['spec']): this {
    this.services.push({
      metadata: { name, namespace },
      spec: { clusterIP, ...ports },
    });
    return this;
  }

  getConfigMap(namespace: string, name: string): Promise<V1ConfigMap | undefined> {
    this.calls.push(`configmap ${namespace}/${name}`);
    if (name === 'broken') return Promise.reject(new Error('etcd is on fire'));
    return Promise.resolve(this.configMaps.get(`${namespace}/${name}`));
  }

  getSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    this.calls.push(`secret ${namespace}/${name}`);
    return Promise.resolve(this.secrets.get(`${namespace}/${name}`));
  }

  listServices(namespace: string): Promise<V1Service[]> {
    this.calls.push(`services ${namespace}`);
    return Promise.resolve(this.services.filter((s) => s.metadata?.namespace === namespace));
  }
}

function podWith(containers: V1Container[], extra: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'web-0',
      namespace: NS,
      uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
      labels: { app: 'web', tier: 'front' },
      annotations: { note: 'say "hi"\nbye', 'example.com/emoji': 'é😀' },
    },
    spec: { nodeName: 'vk-node', serviceAccountName: 'web-sa', containers, ...extra },
    status: { phase: 'Pending' },
  };
}

function one(env: V1EnvVar[] = [], more: Partial<V1Container> = {}): V1Pod {
  return podWith([{ name: 'app', image: 'nginx', env, ...more }]);
}

function containerEnv(pod: V1Pod, name = 'app'): V1EnvVar[] {
  const spec = pod.spec;
  const all = [
    ...(spec?.initContainers ?? []),
    ...(spec?.containers ?? []),
    ...(spec?.ephemeralContainers ?? []),
  ];
  const c = all.find((x) => x.name === name);
  assert.ok(c, `container ${name}`);
  return c.env ?? [];
}

function envMap(pod: V1Pod, name = 'app'): Record<string, string | undefined> {
  return Object.fromEntries(containerEnv(pod, name).map((e) => [e.name, e.value]));
}

async function resolve(
  pod: V1Pod,
  source: EnvSource = new FakeSource(),
  options: ResolveEnvOptions = {},
): Promise<Awaited<ReturnType<typeof resolvePodEnv>>> {
  return resolvePodEnv(pod, source, options);
}

async function rejectsWith(
  promise: Promise<unknown>,
  reason: string,
  retryable: boolean,
): Promise<EnvResolutionError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof EnvResolutionError,
    `expected EnvResolutionError, got ${String(caught)}`,
  );
  assert.equal(caught.reason, reason);
  assert.equal(caught.retryable, retryable);
  assert.equal(caught.code, retryable ? 'Unavailable' : 'InvalidInput');
  return caught;
}

// ---------------------------------------------------------------------------------------------
// Order, precedence, prefix, expansion

test('envFrom comes first, env overrides it, and the result has values only', async () => {
  const source = new FakeSource()
    .configMap('base', { A: 'from-cm', B: 'from-cm', C: 'from-cm' })
    .secret('creds', { B: 'from-secret', D: 'from-secret' });
  const pod = one(
    [
      { name: 'C', value: 'from-env' },
      { name: 'E', value: 'e' },
    ],
    {
      envFrom: [{ configMapRef: { name: 'base' } }, { secretRef: { name: 'creds' } }],
    },
  );
  const { pod: out, events } = await resolve(pod, source);
  assert.deepEqual(containerEnv(out), [
    { name: 'A', value: 'from-cm' },
    { name: 'B', value: 'from-secret' },
    { name: 'C', value: 'from-env' },
    { name: 'D', value: 'from-secret' },
    { name: 'E', value: 'e' },
  ]);
  assert.equal(out.spec?.containers[0]?.envFrom, undefined);
  assert.deepEqual(events, []);
});

test('later env entries override earlier ones of the same name', async () => {
  const { pod } = await resolve(
    one([
      { name: 'X', value: '1' },
      { name: 'Y', value: 'y' },
      { name: 'X', value: '2' },
    ]),
  );
  assert.deepEqual(containerEnv(pod), [
    { name: 'X', value: '2' },
    { name: 'Y', value: 'y' },
  ]);
});

test('envFrom prefix is prepended to every key', async () => {
  const source = new FakeSource().configMap('db', { HOST: 'db.local', PORT: '5432' });
  const { pod } = await resolve(
    one([], { envFrom: [{ prefix: 'DB_', configMapRef: { name: 'db' } }] }),
    source,
  );
  assert.deepEqual(envMap(pod), { DB_HOST: 'db.local', DB_PORT: '5432' });
});

test('$(VAR) expands previously defined variables; $$ escapes; unknown stays', async () => {
  const source = new FakeSource().configMap('cfg', { HOST: 'db' });
  const pod = one(
    [
      { name: 'PORT', value: '5432' },
      { name: 'URL', value: 'pg://$(HOST):$(PORT)/$(LATER)' },
      { name: 'LITERAL', value: 'echo $$(HOST) $$HOME $HOME' },
      { name: 'LATER', value: 'late' },
      { name: 'EMPTY', value: '' },
      { name: 'SELF', value: '$(SELF)x' },
    ],
    { envFrom: [{ configMapRef: { name: 'cfg' } }] },
  );
  const { pod: out } = await resolve(pod, source);
  assert.deepEqual(envMap(out), {
    HOST: 'db',
    PORT: '5432',
    URL: 'pg://db:5432/$(LATER)',
    LITERAL: 'echo $(HOST) $HOME $HOME',
    LATER: 'late',
    EMPTY: '',
    SELF: '$(SELF)x',
  });
});

test('values from valueFrom are not expanded', async () => {
  const source = new FakeSource().configMap('cfg', { TEMPLATE: '$(A)' });
  const { pod } = await resolve(
    one([
      { name: 'A', value: 'a' },
      { name: 'T', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'TEMPLATE' } } },
    ]),
    source,
  );
  assert.equal(envMap(pod).T, '$(A)');
});

// ---------------------------------------------------------------------------------------------
// envFrom: missing objects, invalid names

test('envFrom: a missing optional ConfigMap is skipped with OptionalConfigMapNotFound', async () => {
  const { pod, events } = await resolve(
    one([{ name: 'A', value: 'a' }], {
      envFrom: [{ configMapRef: { name: 'nope', optional: true } }],
    }),
  );
  assert.deepEqual(envMap(pod), { A: 'a' });
  assert.deepEqual(
    events.map((e) => [e.type, e.reason]),
    [['Warning', 'OptionalConfigMapNotFound']],
  );
  assert.match(events[0]?.message ?? '', /"nope" not found/);
});

test('envFrom: a missing mandatory ConfigMap throws MandatoryConfigMapNotFound (retryable)', async () => {
  const err = await rejectsWith(
    resolve(one([], { envFrom: [{ configMapRef: { name: 'nope' } }] })),
    'MandatoryConfigMapNotFound',
    true,
  );
  assert.equal(err.container, 'app');
  assert.match(err.message, /apps\/nope not found/);
});

test('envFrom: a missing optional Secret is skipped with OptionalSecretNotFound', async () => {
  const { pod, events } = await resolve(
    one([], { envFrom: [{ secretRef: { name: 'nope', optional: true } }] }),
  );
  assert.deepEqual(envMap(pod), {});
  assert.deepEqual(
    events.map((e) => [e.type, e.reason]),
    [['Warning', 'OptionalSecretNotFound']],
  );
});

test('envFrom: a missing mandatory Secret throws MandatorySecretNotFound (retryable)', async () => {
  await rejectsWith(
    resolve(one([], { envFrom: [{ secretRef: { name: 'nope', optional: false } }] })),
    'MandatorySecretNotFound',
    true,
  );
});

test('envFrom: keys that are not valid names are skipped and listed in one event', async () => {
  const source = new FakeSource().configMap('cfg', {
    GOOD: '1',
    'has=equals': '2',
    'tab\there': '3',
    '1digit': '4',
  });
  const pod = one([], { envFrom: [{ configMapRef: { name: 'cfg' } }] });

  const relaxed = await resolve(pod, source);
  assert.deepEqual(envMap(relaxed.pod), { GOOD: '1', '1digit': '4' });
  assert.deepEqual(relaxed.events, [
    {
      type: 'Warning',
      reason: 'InvalidEnvironmentVariableNames',
      message:
        'Keys [has=equals, tab\there] from the EnvFrom configMap apps/cfg were skipped since they are considered invalid environment variable names.',
    },
  ]);

  const strict = await resolve(pod, source, { strictEnvVarNames: true });
  assert.deepEqual(envMap(strict.pod), { GOOD: '1' });
  assert.match(strict.events[0]?.message ?? '', /^Keys \[1digit, has=equals, tab\there\] /);
});

test('env var name rules: relaxed (Kubernetes >= 1.34) and strict (Go virtual-kubelet)', () => {
  for (const ok of ['A', 'a.b-c_d', '1abc', 'with space', 'sym!@#$%^&*()']) {
    assert.equal(isValidEnvVarName(ok), true, ok);
  }
  for (const bad of ['', 'a=b', 'é', 'new\nline']) assert.equal(isValidEnvVarName(bad), false, bad);
  for (const ok of ['A', 'a.b-c_d', '_x', '.hidden', '-dash']) {
    assert.equal(isValidEnvVarName(ok, true), true, ok);
  }
  for (const bad of ['1abc', '.', '..', '..x', 'with space', 'a=b']) {
    assert.equal(isValidEnvVarName(bad, true), false, bad);
  }
});

test('Secret values are decoded from base64, and stringData wins over data', async () => {
  const source = new FakeSource().secret(
    'creds',
    { USER: 'admin', PASS: 'pä55 wörd', TOKEN: 'old' },
    { TOKEN: 'new' },
  );
  const { pod } = await resolve(
    one([{ name: 'P', valueFrom: { secretKeyRef: { name: 'creds', key: 'PASS' } } }], {
      envFrom: [{ secretRef: { name: 'creds' }, prefix: 'S_' }],
    }),
    source,
  );
  assert.deepEqual(envMap(pod), {
    S_USER: 'admin',
    S_PASS: 'pä55 wörd',
    S_TOKEN: 'new',
    P: 'pä55 wörd',
  });
});

// ---------------------------------------------------------------------------------------------
// env valueFrom: ConfigMap and Secret keys

test('configMapKeyRef resolves a key', async () => {
  const source = new FakeSource().configMap('cfg', { level: 'debug' });
  const { pod } = await resolve(
    one([{ name: 'LOG', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'level' } } }]),
    source,
  );
  assert.deepEqual(envMap(pod), { LOG: 'debug' });
});

test('configMapKeyRef: optional missing ConfigMap skips the var (keeping an envFrom value)', async () => {
  const source = new FakeSource().configMap('base', { LOG: 'info' });
  const { pod, events } = await resolve(
    one(
      [
        {
          name: 'LOG',
          valueFrom: { configMapKeyRef: { name: 'nope', key: 'level', optional: true } },
        },
      ],
      { envFrom: [{ configMapRef: { name: 'base' } }] },
    ),
    source,
  );
  assert.deepEqual(envMap(pod), { LOG: 'info' });
  assert.deepEqual(
    events.map((e) => e.reason),
    ['OptionalConfigMapNotFound'],
  );
  assert.match(events[0]?.message ?? '', /env "LOG"/);
});

test('configMapKeyRef: mandatory missing ConfigMap throws MandatoryConfigMapNotFound', async () => {
  await rejectsWith(
    resolve(one([{ name: 'X', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k' } } }])),
    'MandatoryConfigMapNotFound',
    true,
  );
});

test('configMapKeyRef: optional missing key is skipped with OptionalConfigMapKeyNotFound', async () => {
  const source = new FakeSource().configMap('cfg', { other: 'x' });
  const { pod, events } = await resolve(
    one([
      {
        name: 'X',
        valueFrom: { configMapKeyRef: { name: 'cfg', key: 'k', optional: true } },
      },
    ]),
    source,
  );
  assert.deepEqual(envMap(pod), {});
  assert.deepEqual(
    events.map((e) => [e.type, e.reason]),
    [['Warning', 'OptionalConfigMapKeyNotFound']],
  );
  assert.match(events[0]?.message ?? '', /key "k" does not exist in configmap "cfg"/);
});

test('configMapKeyRef: mandatory missing key throws MandatoryConfigMapKeyNotFound', async () => {
  const source = new FakeSource().configMap('cfg', { other: 'x' });
  const err = await rejectsWith(
    resolve(
      one([{ name: 'X', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'k' } } }]),
      source,
    ),
    'MandatoryConfigMapKeyNotFound',
    true,
  );
  assert.match(err.message, /key "k" does not exist in configmap apps\/cfg/);
});

test('secretKeyRef: optional missing Secret is skipped with OptionalSecretNotFound', async () => {
  const { pod, events } = await resolve(
    one([{ name: 'X', valueFrom: { secretKeyRef: { name: 'nope', key: 'k', optional: true } } }]),
  );
  assert.deepEqual(envMap(pod), {});
  assert.deepEqual(
    events.map((e) => e.reason),
    ['OptionalSecretNotFound'],
  );
});

test('secretKeyRef: mandatory missing Secret throws MandatorySecretNotFound', async () => {
  await rejectsWith(
    resolve(one([{ name: 'X', valueFrom: { secretKeyRef: { name: 'nope', key: 'k' } } }])),
    'MandatorySecretNotFound',
    true,
  );
});

test('secretKeyRef: optional missing key is skipped with OptionalSecretKeyNotFound', async () => {
  const source = new FakeSource().secret('creds', { user: 'u' });
  const { pod, events } = await resolve(
    one([{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'k', optional: true } } }]),
    source,
  );
  assert.deepEqual(envMap(pod), {});
  assert.deepEqual(
    events.map((e) => e.reason),
    ['OptionalSecretKeyNotFound'],
  );
});

test('secretKeyRef: mandatory missing key throws MandatorySecretKeyNotFound', async () => {
  const source = new FakeSource().secret('creds', { user: 'u' });
  await rejectsWith(
    resolve(one([{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'k' } } }]), source),
    'MandatorySecretKeyNotFound',
    true,
  );
});

test('errors other than not-found propagate unchanged, even for optional refs', async () => {
  await assert.rejects(
    resolve(one([], { envFrom: [{ configMapRef: { name: 'broken', optional: true } }] })),
    { message: 'etcd is on fire' },
  );
});

test('each object is fetched once per resolution', async () => {
  const source = new FakeSource().configMap('cfg', { a: '1', b: '2' });
  const ref = (key: string): V1EnvVar => ({
    name: key.toUpperCase(),
    valueFrom: { configMapKeyRef: { name: 'cfg', key } },
  });
  const pod = podWith([
    { name: 'one', env: [ref('a'), ref('b')], envFrom: [{ configMapRef: { name: 'cfg' } }] },
    { name: 'two', env: [ref('a')] },
  ]);
  await resolve(pod, source);
  assert.deepEqual(
    source.calls.filter((c) => c.startsWith('configmap')),
    ['configmap apps/cfg'],
  );
});

// ---------------------------------------------------------------------------------------------
// fieldRef

const field = (name: string, fieldPath: string): V1EnvVar => ({
  name,
  valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } },
});

test('fieldRef: metadata and spec fields', async () => {
  const { pod } = await resolve(
    one([
      field('NAME', 'metadata.name'),
      field('NS', 'metadata.namespace'),
      field('UID', 'metadata.uid'),
      field('APP', "metadata.labels['app']"),
      field('MISSING', "metadata.labels['nope']"),
      field('NOTE', "metadata.annotations['note']"),
      field('NODE', 'spec.nodeName'),
      field('SA', 'spec.serviceAccountName'),
      field('GRACE', 'spec.terminationGracePeriodSeconds'),
    ]),
  );
  assert.deepEqual(envMap(pod), {
    NAME: 'web-0',
    NS: 'apps',
    UID: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    APP: 'web',
    MISSING: '',
    NOTE: 'say "hi"\nbye',
    NODE: 'vk-node',
    SA: 'web-sa',
    GRACE: '30',
  });
});

test('fieldRef: metadata.labels and metadata.annotations are formatted like the kubelet', async () => {
  const { pod } = await resolve(
    one([field('LABELS', 'metadata.labels'), field('ANNOTATIONS', 'metadata.annotations')]),
  );
  const env = envMap(pod);
  assert.equal(env.LABELS, 'app="web"\ntier="front"');
  assert.equal(env.ANNOTATIONS, 'example.com/emoji="é😀"\nnote="say \\"hi\\"\\nbye"');
});

test('status.podIP resolves, where the Go virtual-kubelet fails the pod', async () => {
  const { pod } = await resolve(
    one([
      field('POD_IP', 'status.podIP'),
      field('POD_IPS', 'status.podIPs'),
      field('HOST_IP', 'status.hostIP'),
      field('HOST_IPS', 'status.hostIPs'),
    ]),
    new FakeSource(),
    { podIPs: ['10.1.0.5', 'fd00::5'], hostIP: '192.168.1.10' },
  );
  assert.deepEqual(envMap(pod), {
    POD_IP: '10.1.0.5',
    POD_IPS: '10.1.0.5,fd00::5',
    HOST_IP: '192.168.1.10',
    HOST_IPS: '192.168.1.10',
  });
});

test('status.hostIP resolves from the pod status when the options have none', async () => {
  const pod = one([
    field('POD_IP', 'status.podIP'),
    field('POD_IPS', 'status.podIPs'),
    field('HOST_IP', 'status.hostIP'),
    field('HOST_IPS', 'status.hostIPs'),
  ]);
  pod.status = {
    podIP: '10.1.0.9',
    podIPs: [{ ip: '10.1.0.9' }, { ip: 'fd00::9' }],
    hostIP: '192.168.1.11',
    hostIPs: [{ ip: '192.168.1.11' }, { ip: 'fd00::11' }],
  };
  const { pod: out } = await resolve(pod);
  assert.deepEqual(envMap(out), {
    POD_IP: '10.1.0.9',
    POD_IPS: '10.1.0.9,fd00::9',
    HOST_IP: '192.168.1.11',
    HOST_IPS: '192.168.1.11,fd00::11',
  });

  // A provider-reported IP wins over the status; an unknown IP is empty.
  const { pod: out2 } = await resolve(pod, new FakeSource(), { podIP: '10.9.9.9' });
  assert.equal(envMap(out2).POD_IP, '10.9.9.9');
  assert.equal(envMap(out2).POD_IPS, '10.9.9.9');
  const { pod: out3 } = await resolve(one([field('POD_IP', 'status.podIP')]));
  assert.equal(envMap(out3).POD_IP, '');
});

test('fieldRef: an unknown fieldPath throws InvalidFieldPath (not retryable)', async () => {
  const err = await rejectsWith(
    resolve(one([field('PHASE', 'status.phase')])),
    'InvalidFieldPath',
    false,
  );
  assert.equal(err.container, 'app');
  assert.match(err.message, /env "PHASE"/);
  await rejectsWith(resolve(one([field('X', "spec.nodeName['x']")])), 'InvalidFieldPath', false);
  await rejectsWith(
    resolve(
      one([
        { name: 'X', valueFrom: { fieldRef: { apiVersion: 'v2', fieldPath: 'metadata.name' } } },
      ]),
    ),
    'InvalidFieldPath',
    false,
  );
});

// ---------------------------------------------------------------------------------------------
// resourceFieldRef

const res = (
  name: string,
  resource: string,
  divisor?: string,
  containerName?: string,
): V1EnvVar => ({
  name,
  valueFrom: {
    resourceFieldRef: {
      resource,
      ...(divisor === undefined ? {} : { divisor }),
      ...(containerName === undefined ? {} : { containerName }),
    },
  },
});

test('resourceFieldRef: CPU rounds up in divisor units, memory divides and rounds up', async () => {
  const pod = one(
    [
      res('CPU_LIMIT', 'limits.cpu'),
      res('CPU_LIMIT_M', 'limits.cpu', '1m'),
      res('CPU_REQ', 'requests.cpu', '0'),
      res('CPU_REQ_M', 'requests.cpu', '1m'),
      res('MEM_LIMIT', 'limits.memory'),
      res('MEM_LIMIT_MI', 'limits.memory', '1Mi'),
      res('MEM_REQ_MI', 'requests.memory', '1Mi'),
      res('MEM_REQ_K', 'requests.memory', '1k'),
      res('EPH_LIMIT_GI', 'limits.ephemeral-storage', '1Gi'),
      res('EPH_REQ', 'requests.ephemeral-storage'),
      res('HUGE', 'limits.hugepages-2Mi', '1Mi'),
    ],
    {
      resources: {
        limits: {
          cpu: '250m',
          memory: '1G',
          'ephemeral-storage': '1.5Gi',
          'hugepages-2Mi': '4Mi',
        },
        requests: { cpu: '100m', memory: '128Mi', 'ephemeral-storage': '1k' },
      },
    },
  );
  const { pod: out } = await resolve(pod);
  assert.deepEqual(envMap(out), {
    CPU_LIMIT: '1',
    CPU_LIMIT_M: '250',
    CPU_REQ: '1',
    CPU_REQ_M: '100',
    MEM_LIMIT: '1000000000',
    MEM_LIMIT_MI: '954', // 953.67 rounded up
    MEM_REQ_MI: '128',
    MEM_REQ_K: '134218', // 134217.728 rounded up
    EPH_LIMIT_GI: '2',
    EPH_REQ: '1000',
    HUGE: '4',
  });
});

test('resourceFieldRef: unset limits fall back to pod-level limits, then node allocatable, then 0', async () => {
  const pod = one([
    res('CPU', 'limits.cpu', '1m'),
    res('MEM', 'limits.memory', '1Mi'),
    res('EPH', 'limits.ephemeral-storage', '1Gi'),
    res('REQ', 'requests.cpu', '1m'),
  ]);
  const allocatable = { cpu: '4', memory: '8Gi', 'ephemeral-storage': '100Gi' };

  const fromNode = await resolve(pod, new FakeSource(), { nodeAllocatable: allocatable });
  assert.deepEqual(envMap(fromNode.pod), { CPU: '4000', MEM: '8192', EPH: '100', REQ: '0' });

  const withPodLevel = structuredClone(pod);
  assert.ok(withPodLevel.spec);
  withPodLevel.spec.resources = { limits: { cpu: '1500m', memory: '2Gi' } };
  const fromPod = await resolve(withPodLevel, new FakeSource(), { nodeAllocatable: allocatable });
  assert.deepEqual(envMap(fromPod.pod), { CPU: '1500', MEM: '2048', EPH: '100', REQ: '0' });

  const nothing = await resolve(pod);
  assert.deepEqual(envMap(nothing.pod), { CPU: '0', MEM: '0', EPH: '0', REQ: '0' });
});

test('resourceFieldRef: a zero limit also falls back, like the kubelet', async () => {
  const pod = one([res('CPU', 'limits.cpu')], { resources: { limits: { cpu: '0' } } });
  const { pod: out } = await resolve(pod, new FakeSource(), { nodeAllocatable: { cpu: '3' } });
  assert.equal(envMap(out).CPU, '3');
});

test('resourceFieldRef: containerName selects another container', async () => {
  const pod = podWith([
    { name: 'app', env: [res('SIDECAR_MEM', 'limits.memory', '1Mi', 'sidecar')] },
    { name: 'sidecar', resources: { limits: { memory: '64Mi' } } },
  ]);
  const { pod: out } = await resolve(pod);
  assert.equal(envMap(out).SIDECAR_MEM, '64');
});

test('resourceFieldRef: unknown resource or container throws InvalidResourceFieldRef', async () => {
  await rejectsWith(resolve(one([res('X', 'limits.gpu')])), 'InvalidResourceFieldRef', false);
  await rejectsWith(resolve(one([res('X', 'cpu')])), 'InvalidResourceFieldRef', false);
  await rejectsWith(
    resolve(one([res('X', 'limits.cpu', undefined, 'ghost')])),
    'InvalidResourceFieldRef',
    false,
  );
  await rejectsWith(
    resolve(one([res('X', 'limits.cpu', 'lots')])),
    'InvalidResourceFieldRef',
    false,
  );
});

test('fileKeyRef cannot be resolved by the core and says so', async () => {
  await rejectsWith(
    resolve(
      one([
        {
          name: 'X',
          valueFrom: { fileKeyRef: { volumeName: 'cfg', path: 'a.env', key: 'X' } },
        },
      ]),
    ),
    'UnsupportedEnvVarSource',
    false,
  );
});

// ---------------------------------------------------------------------------------------------
// Service links

function withServices(): FakeSource {
  return new FakeSource()
    .service('default', 'kubernetes', '10.96.0.1', {
      ports: [{ name: 'https', port: 443, protocol: 'TCP' }],
    })
    .service('default', 'other-in-default', '10.96.0.2', { ports: [{ port: 80 }] })
    .service(NS, 'my-db', '10.0.0.7', {
      ports: [
        { name: 'pg', port: 5432, protocol: 'TCP' },
        { name: 'metrics', port: 9187, protocol: 'UDP' },
      ],
    })
    .service(NS, 'headless', 'None', { ports: [{ port: 80 }] })
    .service(NS, 'external', '', { type: 'ExternalName', externalName: 'example.com' });
}

const KUBERNETES_VARS = {
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  KUBERNETES_SERVICE_PORT: '443',
  KUBERNETES_SERVICE_PORT_HTTPS: '443',
  KUBERNETES_PORT: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
  KUBERNETES_PORT_443_TCP_PORT: '443',
  KUBERNETES_PORT_443_TCP_ADDR: '10.96.0.1',
};

test('service links: a service with two named ports, plus the master service', async () => {
  const source = withServices();
  const { pod } = await resolve(one([{ name: 'MINE', value: 'x' }]), source);
  const env = containerEnv(pod);
  assert.deepEqual(Object.fromEntries(env.map((e) => [e.name, e.value])), {
    ...KUBERNETES_VARS,
    MY_DB_SERVICE_HOST: '10.0.0.7',
    MY_DB_SERVICE_PORT: '5432',
    MY_DB_SERVICE_PORT_PG: '5432',
    MY_DB_SERVICE_PORT_METRICS: '9187',
    MY_DB_PORT: 'tcp://10.0.0.7:5432',
    MY_DB_PORT_5432_TCP: 'tcp://10.0.0.7:5432',
    MY_DB_PORT_5432_TCP_PROTO: 'tcp',
    MY_DB_PORT_5432_TCP_PORT: '5432',
    MY_DB_PORT_5432_TCP_ADDR: '10.0.0.7',
    MY_DB_PORT_9187_UDP: 'udp://10.0.0.7:9187',
    MY_DB_PORT_9187_UDP_PROTO: 'udp',
    MY_DB_PORT_9187_UDP_PORT: '9187',
    MY_DB_PORT_9187_UDP_ADDR: '10.0.0.7',
    MINE: 'x',
  });
  // Service links come first (lowest precedence); the container's own variables last.
  assert.equal(env.at(-1)?.name, 'MINE');
  assert.equal(env[0]?.name, 'KUBERNETES_SERVICE_HOST');
  assert.deepEqual(source.calls, ['services default', 'services apps']);
});

test('service links: enableServiceLinks=false keeps only the master service', async () => {
  const source = withServices();
  const pod = podWith([{ name: 'app', env: [] }], { enableServiceLinks: false });
  const { pod: out } = await resolve(pod, source);
  assert.deepEqual(envMap(out), KUBERNETES_VARS);
  assert.deepEqual(source.calls, ['services default']);
});

test('service links: a pod in the master namespace sees its services with one list call', async () => {
  const source = withServices();
  const pod = one();
  assert.ok(pod.metadata);
  pod.metadata.namespace = 'default';
  const { pod: out } = await resolve(pod, source);
  assert.deepEqual(
    Object.keys(envMap(out)).filter((k) => k.endsWith('_SERVICE_HOST')),
    ['KUBERNETES_SERVICE_HOST', 'OTHER_IN_DEFAULT_SERVICE_HOST'],
  );
  assert.deepEqual(source.calls, ['services default']);
});

test('service links: masterServiceNamespace option and a same-namespace "kubernetes" service', async () => {
  const source = new FakeSource()
    .service('control', 'kubernetes', '10.96.0.1', { ports: [{ port: 443 }] })
    .service(NS, 'kubernetes', '10.0.0.99', { ports: [{ port: 8443 }] });
  const { pod } = await resolve(one(), source, { masterServiceNamespace: 'control' });
  assert.equal(envMap(pod).KUBERNETES_SERVICE_HOST, '10.0.0.99');
  const { pod: noLinks } = await resolve(
    podWith([{ name: 'app' }], { enableServiceLinks: false }),
    source,
    { masterServiceNamespace: 'control' },
  );
  assert.equal(envMap(noLinks).KUBERNETES_SERVICE_HOST, '10.96.0.1');
});

test('service links: usable in $(VAR) expansion and overridable by the container', async () => {
  const source = withServices();
  const { pod } = await resolve(
    one([
      { name: 'DB_URL', value: 'postgres://$(MY_DB_SERVICE_HOST):$(MY_DB_SERVICE_PORT_PG)' },
      { name: 'KUBERNETES_SERVICE_HOST', value: 'override' },
    ]),
    source,
  );
  const env = containerEnv(pod);
  assert.equal(envMap(pod).DB_URL, 'postgres://10.0.0.7:5432');
  assert.equal(env.filter((e) => e.name === 'KUBERNETES_SERVICE_HOST').length, 1);
  assert.deepEqual(env.slice(-2), [
    { name: 'DB_URL', value: 'postgres://10.0.0.7:5432' },
    { name: 'KUBERNETES_SERVICE_HOST', value: 'override' },
  ]);
});

test('service links: names are upper-cased, dashes become underscores, a leading digit gets _', async () => {
  const source = new FakeSource().service(NS, '3d-render', '10.0.0.3', {
    ports: [{ name: 'http-alt', port: 8080 }],
  });
  const { pod } = await resolve(one(), source);
  const env = envMap(pod);
  assert.equal(env._3D_RENDER_SERVICE_HOST, '10.0.0.3');
  assert.equal(env._3D_RENDER_SERVICE_PORT_HTTP_ALT, '8080');
  assert.equal(env._3D_RENDER_PORT_8080_TCP_PROTO, 'tcp');
});

// ---------------------------------------------------------------------------------------------
// Whole pod

test('init and ephemeral containers are resolved too', async () => {
  const source = new FakeSource().configMap('cfg', { K: 'v' });
  const pod = podWith([{ name: 'app', env: [field('NAME', 'metadata.name')] }], {
    initContainers: [{ name: 'init', envFrom: [{ configMapRef: { name: 'cfg' } }], env: [] }],
    ephemeralContainers: [
      {
        name: 'debug',
        env: [{ name: 'POD', value: 'pod-$(K)' }],
        envFrom: [{ configMapRef: { name: 'cfg' } }],
      },
    ],
  });
  const { pod: out } = await resolve(pod, source);
  assert.deepEqual(envMap(out, 'init'), { K: 'v' });
  assert.deepEqual(envMap(out, 'app'), { NAME: 'web-0' });
  assert.deepEqual(envMap(out, 'debug'), { K: 'v', POD: 'pod-v' });
  assert.equal(out.spec?.initContainers?.[0]?.envFrom, undefined);
  assert.equal(out.spec?.ephemeralContainers?.[0]?.envFrom, undefined);
});

test('the input pod is never mutated', async () => {
  const source = withServices().configMap('cfg', { K: 'v' });
  const pod = podWith(
    [
      {
        name: 'app',
        env: [field('IP', 'status.podIP'), { name: 'X', value: '$(K)' }],
        envFrom: [{ configMapRef: { name: 'cfg' } }],
      },
    ],
    { initContainers: [{ name: 'init', envFrom: [{ configMapRef: { name: 'cfg' } }] }] },
  );
  const before = structuredClone(pod);
  const { pod: out } = await resolve(pod, source, { podIP: '10.0.0.1' });
  assert.deepEqual(pod, before);
  assert.notEqual(out, pod);
  assert.notEqual(out.spec, pod.spec);
  assert.ok(pod.spec?.containers[0]?.envFrom);
});

test('a container without env or envFrom still gets the service links', async () => {
  const { pod } = await resolve(podWith([{ name: 'app' }]), withServices());
  assert.equal(envMap(pod).KUBERNETES_SERVICE_HOST, '10.96.0.1');
});

// ---------------------------------------------------------------------------------------------
// podNeedsObjects

test('podNeedsObjects lists every ConfigMap and Secret the pod refers to', () => {
  const pod = podWith(
    [
      {
        name: 'app',
        envFrom: [{ configMapRef: { name: 'cm-from' } }, { secretRef: { name: 's-from' } }],
        env: [
          { name: 'A', valueFrom: { configMapKeyRef: { name: 'cm-key', key: 'k' } } },
          { name: 'B', valueFrom: { secretKeyRef: { name: 's-key', key: 'k' } } },
          { name: 'C', value: 'plain' },
        ],
      },
    ],
    {
      initContainers: [{ name: 'init', envFrom: [{ configMapRef: { name: 'cm-init' } }] }],
      ephemeralContainers: [
        {
          name: 'debug',
          env: [{ name: 'D', valueFrom: { secretKeyRef: { name: 's-eph', key: 'k' } } }],
        },
      ],
      volumes: [
        { name: 'v1', configMap: { name: 'cm-vol' } },
        { name: 'v2', secret: { secretName: 's-vol' } },
        {
          name: 'v3',
          projected: {
            sources: [
              { configMap: { name: 'cm-proj' } },
              { secret: { name: 's-proj' } },
              { serviceAccountToken: { path: 'token' } },
            ],
          },
        },
        { name: 'v4', emptyDir: {} },
        { name: 'v5', configMap: { name: 'cm-from' } },
      ],
      imagePullSecrets: [{ name: 's-pull' }],
    },
  );
  assert.deepEqual(podNeedsObjects(pod), {
    configMaps: ['cm-from', 'cm-init', 'cm-key', 'cm-proj', 'cm-vol'],
    secrets: ['s-eph', 's-from', 's-key', 's-proj', 's-pull', 's-vol'],
  });
  assert.deepEqual(podNeedsObjects({}), { configMaps: [], secrets: [] });
});

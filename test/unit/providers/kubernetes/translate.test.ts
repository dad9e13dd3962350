import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorCode } from '../../../../src/errors.js';
import { ApiError } from '../../../../src/kube/client.js';
import { freeCapacity } from '../../../../src/providers/kubernetes/capacity.js';
import { parseKubernetesConfig } from '../../../../src/providers/kubernetes/config.js';
import { refusalOf } from '../../../../src/providers/kubernetes/index.js';
import { exitCodeOf } from '../../../../src/providers/kubernetes/streams.js';
import {
  encodeData,
  originOf,
  reflectedData,
  remoteNamespace,
  RestartCounter,
  toLocalStatus,
  toRemotePod,
  type TranslateContext,
} from '../../../../src/providers/kubernetes/translate.js';
import type { V1Node, V1Pod } from '../../../../src/wire.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function localPod(): V1Pod {
  return {
    metadata: {
      namespace: 'shop',
      name: 'web-1',
      uid: 'uid-1',
      labels: { app: 'web', 'internal.example/x': 'y' },
      annotations: { note: 'n', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'rs-1' }],
    },
    spec: {
      nodeName: 'vk-1',
      priorityClassName: 'high',
      priority: 1000,
      serviceAccountName: 'builder',
      imagePullSecrets: [{ name: 'pull' }],
      nodeSelector: { 'kubernetes.io/hostname': 'vk-1', disk: 'ssd' },
      tolerations: [
        { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
        { key: 'dedicated', operator: 'Equal', value: 'a', effect: 'NoExecute' },
      ],
      affinity: {
        nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } },
      },
      containers: [
        {
          name: 'app',
          image: 'app:1',
          volumeMounts: [
            { name: 'cfg', mountPath: '/cfg' },
            {
              name: 'kube-api-access-x',
              mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            },
          ],
        },
      ],
      volumes: [
        { name: 'cfg', configMap: { name: 'settings' } },
        {
          name: 'kube-api-access-x',
          projected: {
            sources: [
              { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
              {
                configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] },
              },
              {
                downwardAPI: {
                  items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }],
                },
              },
            ],
          },
        },
      ],
    },
  };
}

const ctx = (config = parseKubernetesConfig({ kubeconfig: 'r' })): TranslateContext => ({
  config,
  nodeName: 'vk-1',
  remoteNamespace: 'shop',
  nodeLabels: { 'kubernetes.io/hostname': 'vk-1', type: 'virtual-kubelet' },
  nodeTaints: [{ key: 'virtual-kubelet.io/provider', value: 'kubernetes', effect: 'NoSchedule' }],
});

test('the config needs a kubeconfig and refuses unknown fields and bad values in one line', () => {
  assert.deepEqual(parseKubernetesConfig({ kubeconfig: 'remote.kubeconfig' }), {
    kubeconfig: 'remote.kubeconfig',
  });
  for (const [json, message] of [
    [{}, /kubeconfig .* is required/],
    [[], /must be a JSON object/],
    [{ kubeconfig: 'k', nope: 1 }, /unknown field 'nope'/],
    [{ kubeconfig: 'k', namespaceMapping: 'Other' }, /namespaceMapping must be one of/],
    [{ kubeconfig: 'k', namespaceMapping: 'Map' }, /needs namespaceMap/],
    [{ kubeconfig: 'k', namespaceMap: { a: 'Bad_Name' } }, /no namespace name/],
    [{ kubeconfig: 'k', reflect: ['Pod'] }, /reflect\[\] must be one of/],
    [{ kubeconfig: 'k', capacityRefreshSeconds: 0 }, /capacityRefreshSeconds/],
    [{ kubeconfig: 'k', nodeSelector: { a: 1 } }, /nodeSelector.a must be a string/],
  ] as const) {
    assert.throws(
      () => parseKubernetesConfig(json),
      (err: Error) =>
        errorCode(err) === 'InvalidInput' &&
        message.test(err.message) &&
        !err.message.includes('\n'),
    );
  }
});

test('namespaces map by the same name, a prefix, or an explicit map', () => {
  const c = (extra: object) => parseKubernetesConfig({ kubeconfig: 'k', ...extra });
  assert.equal(remoteNamespace(c({}), 'vk-1', 'shop'), 'shop');
  assert.equal(remoteNamespace(c({ namespaceMapping: 'Prefix' }), 'vk-1', 'shop'), 'vk-1-shop');
  assert.equal(
    remoteNamespace(c({ namespaceMapping: 'Prefix', namespacePrefix: 'east-' }), 'vk-1', 'shop'),
    'east-shop',
  );
  const mapped = c({ namespaceMapping: 'Map', namespaceMap: { shop: 'store' } });
  assert.equal(remoteNamespace(mapped, 'vk-1', 'shop'), 'store');
  assert.throws(() => remoteNamespace(mapped, 'vk-1', 'other'), /no remote namespace/);
});

test('a remote pod keeps the name, carries labels with origin ones, and drops what named the virtual node', () => {
  const config = parseKubernetesConfig({
    kubeconfig: 'k',
    clusterId: 'east',
    nodeSelector: { pool: 'offload' },
    tolerations: [{ key: 'remote-taint', operator: 'Exists' }],
    excludeLabelPrefixes: ['internal.example/'],
  });
  const pod = localPod();
  const before = structuredClone(pod);
  const remote = toRemotePod(pod, ctx(config));
  assert.deepEqual(pod, before, 'the local pod is not mutated');
  assert.equal(remote.metadata?.name, 'web-1');
  assert.equal(remote.metadata?.namespace, 'shop');
  assert.deepEqual(remote.metadata?.labels, {
    app: 'web',
    'virtual-kubelet.io/origin-node': 'vk-1',
    'virtual-kubelet.io/origin-uid': 'uid-1',
    'virtual-kubelet.io/origin-cluster': 'east',
  });
  assert.equal(remote.metadata?.annotations?.note, 'n');
  assert.equal(
    remote.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration'],
    undefined,
  );
  assert.equal(remote.metadata?.annotations?.['virtual-kubelet.io/origin-namespace'], 'shop');
  assert.equal(remote.metadata?.annotations?.['virtual-kubelet.io/origin-name'], 'web-1');
  assert.equal(remote.metadata?.ownerReferences, undefined);
  const spec = remote.spec;
  assert.equal(spec?.nodeName, undefined);
  assert.deepEqual(spec?.nodeSelector, { disk: 'ssd', pool: 'offload' });
  assert.deepEqual(
    spec?.tolerations?.map((t) => t.key),
    ['dedicated', 'remote-taint'],
  );
  assert.equal(spec?.affinity, undefined);
  assert.equal(spec?.priorityClassName, undefined);
  assert.equal(spec?.priority, undefined);
  assert.equal(spec?.imagePullSecrets, undefined);
  assert.equal(spec?.enableServiceLinks, false);
  assert.equal(spec?.serviceAccountName, 'builder', 'Mirror keeps the account');
  assert.equal(spec?.volumes?.length, 2);
});

test('serviceAccount None drops the token volume and its mounts', () => {
  const config = parseKubernetesConfig({ kubeconfig: 'k', serviceAccount: 'None' });
  const remote = toRemotePod(localPod(), ctx(config));
  assert.equal(remote.spec?.serviceAccountName, 'default');
  assert.equal(remote.spec?.automountServiceAccountToken, false);
  assert.deepEqual(
    remote.spec?.volumes?.map((v) => v.name),
    ['cfg'],
  );
  assert.deepEqual(
    remote.spec?.containers[0]?.volumeMounts?.map((m) => m.name),
    ['cfg'],
  );
});

test('origin annotations name the local pod; other pods are not ours', () => {
  const remote = toRemotePod(localPod(), ctx());
  assert.deepEqual(originOf(remote), { namespace: 'shop', name: 'web-1', uid: 'uid-1' });
  assert.equal(originOf({ metadata: { name: 'x' } }), undefined);
});

test('status comes back with restart counts that keep growing across re-created remote pods', () => {
  const restarts = new RestartCounter();
  const remote = (uid: string, count: number): V1Pod => ({
    metadata: { uid },
    status: {
      phase: 'Running',
      podIP: '10.1.0.5',
      hostIP: '192.168.1.9',
      nominatedNodeName: 'n',
      conditions: [{ type: 'Ready', status: 'True' }],
      initContainerStatuses: [
        { name: 'init', image: 'i', imageID: '', ready: true, restartCount: 0 },
      ],
      containerStatuses: [
        { name: 'app', image: 'a', imageID: '', ready: true, restartCount: count },
      ],
    },
  });
  const first = toLocalStatus(remote('r1', 2), restarts, undefined);
  assert.equal(first.phase, 'Running');
  assert.equal(first.podIP, '10.1.0.5');
  assert.equal(first.hostIP, '192.168.1.9');
  assert.equal(first.nominatedNodeName, undefined);
  assert.equal(first.containerStatuses?.[0]?.restartCount, 2);
  assert.equal(first.initContainerStatuses?.[0]?.name, 'init');
  // The remote pod was deleted and made again: its counts start at 0.
  const second = toLocalStatus(remote('r2', 0), restarts, '10.0.0.1');
  assert.equal(second.containerStatuses?.[0]?.restartCount, 3);
  assert.equal(second.initContainerStatuses?.[0]?.restartCount, 1);
  assert.equal(second.hostIP, '10.0.0.1', 'hostIP: Node reports the virtual node');
  assert.equal(
    toLocalStatus(remote('r2', 1), restarts, undefined).containerStatuses?.[0]?.restartCount,
    4,
  );
});

test('reflected objects get their keys back from the file paths of the resolved volumes', () => {
  const pod: V1Pod = {
    metadata: { uid: 'u' },
    spec: {
      containers: [],
      volumes: [
        { name: 'whole', configMap: { name: 'settings' } },
        {
          name: 'picked',
          secret: { secretName: 'creds', items: [{ key: 'password', path: 'db/pw' }] },
        },
        {
          name: 'mixed',
          projected: {
            sources: [
              { configMap: { name: 'more' } },
              { secret: { name: 'tls', items: [{ key: 'tls.crt', path: 'cert.pem' }] } },
              {
                downwardAPI: {
                  items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }],
                },
              },
            ],
          },
        },
        {
          name: 'two-open',
          projected: { sources: [{ configMap: { name: 'a' } }, { configMap: { name: 'b' } }] },
        },
      ],
    },
  };
  const file = (path: string, text: string) => ({ path, data: bytes(text), mode: 0o644 });
  const { objects, skipped } = reflectedData(pod, [
    { name: 'whole', files: [file('a.conf', 'x=1'), file('b.conf', 'y=2')] },
    { name: 'picked', files: [file('db/pw', 's3cret')] },
    { name: 'mixed', files: [file('k', 'v'), file('cert.pem', 'PEM'), file('labels', 'app="x"')] },
    { name: 'two-open', files: [file('k', 'v')] },
  ]);
  const view = objects.map((o) => ({
    kind: o.kind,
    name: o.name,
    keys: Object.fromEntries([...o.data].map(([k, d]) => [k, new TextDecoder().decode(d)])),
  }));
  assert.deepEqual(view, [
    { kind: 'ConfigMap', name: 'settings', keys: { 'a.conf': 'x=1', 'b.conf': 'y=2' } },
    { kind: 'Secret', name: 'creds', keys: { password: 's3cret' } },
    { kind: 'ConfigMap', name: 'more', keys: { k: 'v' } },
    { kind: 'Secret', name: 'tls', keys: { 'tls.crt': 'PEM' } },
  ]);
  assert.deepEqual(skipped, ['ConfigMap a (volume two-open)', 'ConfigMap b (volume two-open)']);
  assert.deepEqual(
    encodeData(
      'ConfigMap',
      new Map([
        ['t', bytes('text')],
        ['b', new Uint8Array([0xff, 0])],
      ]),
    ),
    { data: { t: 'text' }, binaryData: { b: '/wA=' } },
  );
  assert.deepEqual(encodeData('Secret', new Map([['p', bytes('pw')]])), { data: { p: 'cHc=' } });
});

test('capacity is the Ready, schedulable nodes allocatable minus their other pods requests', () => {
  const node = (name: string, ready: boolean, unschedulable = false): V1Node => ({
    metadata: { name },
    spec: { unschedulable },
    status: {
      allocatable: { cpu: '4', memory: '8Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    },
  });
  const pod = (
    nodeName: string,
    cpu: string,
    extra: Partial<V1Pod['metadata']> = {},
    phase = 'Running',
  ): V1Pod => ({
    metadata: { name: 'p', ...extra },
    spec: {
      nodeName,
      containers: [{ name: 'c', resources: { requests: { cpu, memory: '1Gi' } } }],
    },
    status: { phase },
  });
  const free = freeCapacity(
    [node('a', true), node('b', true), node('down', false), node('cordoned', true, true)],
    [
      pod('a', '500m'),
      pod('b', '1'),
      pod('down', '2'),
      pod('a', '1', {}, 'Succeeded'),
      pod('a', '1', { labels: { 'virtual-kubelet.io/origin-node': 'vk-1' } }),
    ],
    'vk-1',
  );
  assert.deepEqual(free, {
    cpu: '6500m',
    memory: String(14 * 2 ** 30),
    pods: '218',
    'ephemeral-storage': String(200 * 2 ** 30),
  });
});

test('remote refusals map to the contract codes: quota retried, invalid and webhook denials final', () => {
  const quota = new ApiError(403, 'pods "x" is forbidden: exceeded quota: q, requested: cpu=2', {
    reason: 'Forbidden',
  });
  assert.equal(errorCode(refusalOf(quota, 'creating')), 'Unavailable');
  assert.match(
    refusalOf(quota, 'creating').message,
    /creating: the remote cluster answered 403 Forbidden: .*exceeded quota/,
  );
  const webhook = new ApiError(403, 'admission webhook "deny.example" denied the request: no', {
    reason: 'Forbidden',
  });
  assert.equal(errorCode(refusalOf(webhook, 'creating')), 'Permanent');
  const policy = new ApiError(
    403,
    "pods \"p\" is forbidden: ValidatingAdmissionPolicy 'no-pods' with binding 'no-pods' denied request: no",
    { reason: 'Forbidden' },
  );
  assert.equal(errorCode(refusalOf(policy, 'creating')), 'Permanent');
  assert.equal(
    errorCode(refusalOf(new ApiError(422, 'invalid', { reason: 'Invalid' }), 'c')),
    'InvalidInput',
  );
  assert.equal(errorCode(refusalOf(new ApiError(503, 'down'), 'c')), 'Unavailable');
  assert.equal(errorCode(refusalOf(new Error('ECONNREFUSED'), 'c')), 'Unavailable');
});

test('an admission webhook denial is final whatever 4xx the webhook chose, retried under 429 and 5xx', () => {
  const denied = 'admission webhook "deny.example.com" denied the request: not here';
  // What the API server answers when the webhook sets no code: 400 and no reason.
  const plain = refusalOf(new ApiError(400, denied), 'creating the remote pod ns/p');
  assert.equal(errorCode(plain), 'Permanent');
  assert.equal(
    plain.message,
    `creating the remote pod ns/p: the remote cluster answered 400: ${denied}`,
  );
  for (const [status, reason] of [
    [403, 'Forbidden'],
    [422, 'Invalid'],
    [401, 'Unauthorized'],
    [409, ''],
  ] as const)
    assert.equal(
      errorCode(refusalOf(new ApiError(status, denied, { reason }), 'c')),
      'Permanent',
      `${String(status)} ${reason}`,
    );
  // Newer API servers put the resource before it.
  const prefixed = `pods "p" is forbidden: ${denied}`;
  assert.equal(errorCode(refusalOf(new ApiError(403, prefixed), 'c')), 'Permanent');
  // A webhook's "later".
  for (const status of [429, 500, 503])
    assert.equal(errorCode(refusalOf(new ApiError(status, denied), 'c')), 'Unavailable');
  // A webhook that could not be asked, under failurePolicy Fail: retried.
  const unreachable = new ApiError(
    500,
    'Internal error occurred: failed calling webhook "deny.example.com": failed to call webhook: Post "https://127.0.0.1:1/validate?timeout=5s": dial tcp 127.0.0.1:1: connect: connection refused',
    { reason: 'InternalError' },
  );
  assert.equal(errorCode(refusalOf(unreachable, 'c')), 'Unavailable');
  const timedOut = new ApiError(
    500,
    'Internal error occurred: failed calling webhook "deny.example.com": failed to call webhook: Post "https://127.0.0.1:1/validate?timeout=1s": context deadline exceeded',
    { reason: 'InternalError' },
  );
  assert.equal(errorCode(refusalOf(timedOut, 'c')), 'Unavailable');
  // A webhook's message that speaks of quota is still its final answer.
  const quotaWords = `${denied}: exceeded quota`;
  assert.equal(
    errorCode(refusalOf(new ApiError(403, quotaWords, { reason: 'Forbidden' }), 'c')),
    'Permanent',
  );
  // Not a webhook's words: a plain 400 stays invalid input.
  assert.equal(
    errorCode(refusalOf(new ApiError(400, 'the webhook said admission webhook'), 'c')),
    'InvalidInput',
  );
});

test('a ValidatingAdmissionPolicy denial is final under each status a policy can give', () => {
  const denied =
    "pods \"p\" is forbidden: ValidatingAdmissionPolicy 'no-pods' with binding 'no-pods' denied request: no";
  for (const [status, reason] of [
    [422, 'Invalid'],
    [403, 'Forbidden'],
    [401, 'Unauthorized'],
    [413, 'RequestEntityTooLarge'],
  ] as const)
    assert.equal(
      errorCode(refusalOf(new ApiError(status, denied, { reason }), 'c')),
      'Permanent',
      `${String(status)} ${reason}`,
    );
  const unbound = 'pods "p" is forbidden: ValidatingAdmissionPolicy \'no-pods\' denied request: no';
  assert.equal(
    errorCode(refusalOf(new ApiError(422, unbound, { reason: 'Invalid' }), 'c')),
    'Permanent',
  );
});

test('the exit code comes from the closing Status of the remote stream', () => {
  assert.equal(exitCodeOf({ status: 'Success' }), 0);
  assert.equal(
    exitCodeOf({
      status: 'Failure',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '7' }] },
    }),
    7,
  );
  assert.throws(
    () => exitCodeOf({ status: 'Failure', message: 'container not found' }),
    /container not found/,
  );
});

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import type { V1Pod } from '../../../src/wire.js';
import {
  envServiceNamespaces,
  podEnvObjects,
  resolvePodEnvFrom,
  type EnvObjects,
} from '../../../src/kubelet/container-env.js';
import { EnvResolutionError } from '../../../src/kubelet/env-error.js';

const pod: V1Pod = {
  metadata: { name: 'web-0', namespace: 'apps' },
  spec: {
    containers: [
      {
        name: 'app',
        envFrom: [{ configMapRef: { name: 'cfg' } }],
        env: [
          { name: 'GREETING', value: 'hello $(WHO)' },
          { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'pw' } } },
        ],
      },
    ],
  },
};

const objects: EnvObjects = {
  configMap: (name) => (name === 'cfg' ? { data: { WHO: 'world' } } : undefined),
  secret: (name) =>
    name === 'creds' ? { data: { pw: Buffer.from('s3cret').toString('base64') } } : undefined,
  services: (ns) =>
    ns === 'default'
      ? [
          {
            metadata: { name: 'kubernetes', namespace: 'default' },
            spec: { clusterIP: '10.0.0.1', ports: [{ port: 443, protocol: 'TCP' }] },
          },
        ]
      : [],
};

test('the environment resolves from objects already read, synchronously', () => {
  const { pod: out, events } = resolvePodEnvFrom(pod, objects);
  const env = Object.fromEntries(
    (out.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]),
  );
  assert.equal(env.GREETING, 'hello world');
  assert.equal(env.PASSWORD, 's3cret');
  assert.equal(env.KUBERNETES_SERVICE_HOST, '10.0.0.1');
  assert.deepEqual(events, []);
  assert.equal(out.spec?.containers[0]?.envFrom, undefined);
});

test('a missing mandatory object throws; a failing lookup propagates', () => {
  assert.throws(
    () => resolvePodEnvFrom(pod, { ...objects, configMap: () => undefined }),
    (err: unknown) =>
      err instanceof EnvResolutionError && err.reason === 'MandatoryConfigMapNotFound',
  );
  assert.throws(
    () =>
      resolvePodEnvFrom(pod, {
        ...objects,
        secret: () => {
          throw new Error('etcd is on fire');
        },
      }),
    /etcd is on fire/,
  );
});

test('what to read first: the env objects and the service namespaces', () => {
  assert.deepEqual(podEnvObjects(pod), { configMaps: ['cfg'], secrets: ['creds'] });
  assert.deepEqual(envServiceNamespaces(pod), ['default', 'apps']);
  const noLinks: V1Pod = { ...pod, spec: { containers: [], enableServiceLinks: false } };
  assert.deepEqual(envServiceNamespaces(noLinks, { masterServiceNamespace: 'kube' }), ['kube']);
});

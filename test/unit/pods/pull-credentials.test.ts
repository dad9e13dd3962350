import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import {
  FAILED_PULL_SECRET_REASON,
  resolvePullCredentials,
} from '../../../src/pods/pull-credentials.js';
import type { V1Pod, V1Secret } from '../../../src/wire.js';

const NS = 'apps';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

const pullSecret = (name: string, registry: string, password: string): V1Secret => ({
  metadata: { name, namespace: NS },
  type: 'kubernetes.io/dockerconfigjson',
  data: {
    '.dockerconfigjson': b64(
      JSON.stringify({ auths: { [registry]: { username: name, password } } }),
    ),
  },
});

const podWith = (...names: string[]): V1Pod => ({
  metadata: { namespace: NS, name: 'web' },
  spec: {
    containers: [{ name: 'main', image: 'r.example/app' }],
    imagePullSecrets: names.map((name) => ({ name })),
  },
});

/** Secrets by name; `reads` records each read, a name in `failing` throws. */
function source(secrets: readonly V1Secret[], failing: readonly string[] = []) {
  const reads: string[] = [];
  return {
    reads,
    getSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
      reads.push(`${namespace}/${name}`);
      if (failing.includes(name)) return Promise.reject(new Error('forbidden'));
      return Promise.resolve(secrets.find((s) => s.metadata?.name === name));
    },
  };
}

test('the credentials of every pull secret, in the pod order, each secret read once', async () => {
  const src = source([pullSecret('b', 'r2.example', 'pb'), pullSecret('a', 'r1.example', 'pa')]);
  const got = await resolvePullCredentials(podWith('b', 'a', 'b'), src);
  assert.deepEqual(got.credentials, [
    { registry: 'r2.example', username: 'b', password: 'pb' },
    { registry: 'r1.example', username: 'a', password: 'pa' },
  ]);
  assert.deepEqual(got.events, []);
  assert.deepEqual(src.reads, ['apps/b', 'apps/a']);
});

test('a pod without pull secrets reads nothing and gets an empty list', async () => {
  const src = source([]);
  const pod = podWith();
  delete pod.spec?.imagePullSecrets;
  assert.deepEqual(await resolvePullCredentials(pod, src), { credentials: [], events: [] });
  assert.deepEqual(src.reads, []);
});

test('missing or unreadable secrets are left out with one Warning naming them, as the kubelet words it', async () => {
  const src = source([pullSecret('good', 'r.example', 'pg')], ['denied']);
  const got = await resolvePullCredentials(podWith('gone', 'good', 'denied'), src);
  assert.deepEqual(got.credentials, [{ registry: 'r.example', username: 'good', password: 'pg' }]);
  assert.deepEqual(got.events, [
    {
      type: 'Warning',
      reason: FAILED_PULL_SECRET_REASON,
      message:
        'Unable to retrieve some image pull secrets (gone, denied); attempting to pull the image may not succeed.',
    },
  ]);
});

test('a secret that is not a docker config is left out with a Warning saying why, never quoting it', async () => {
  const broken: V1Secret = {
    metadata: { name: 'broken', namespace: NS },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': b64('{"auths": {"r": {"password": "hunter2"') },
  };
  const opaque: V1Secret = {
    metadata: { name: 'opaque', namespace: NS },
    type: 'Opaque',
    data: { password: b64('hunter3') },
  };
  const src = source([broken, opaque, pullSecret('good', 'r.example', 'pg')]);
  const got = await resolvePullCredentials(podWith('broken', 'opaque', 'good'), src);
  assert.equal(got.credentials.length, 1);
  assert.deepEqual(
    got.events.map((e) => [e.type, e.reason]),
    [
      ['Warning', FAILED_PULL_SECRET_REASON],
      ['Warning', FAILED_PULL_SECRET_REASON],
    ],
  );
  assert.match(got.events[0]?.message ?? '', /"broken" is not valid JSON/);
  assert.match(got.events[1]?.message ?? '', /"opaque" is of type "Opaque"/);
  const all = JSON.stringify(got.events);
  for (const secret of ['hunter2', 'hunter3', 'pg']) assert.ok(!all.includes(secret), secret);
});

test('an aborted signal stops the resolution', async () => {
  const controller = new AbortController();
  controller.abort(new Error('shutting down'));
  await assert.rejects(
    resolvePullCredentials(podWith('a'), source([]), controller.signal),
    /shutting down/,
  );
});

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import type { V1Pod } from '../../../src/wire.js';
import {
  podTokenRequests,
  podVolumeObjects,
  projectPodVolumes,
  VolumeResolutionError,
  type VolumeObjects,
} from '../../../src/kubelet/volume-projection.js';

const pod: V1Pod = {
  metadata: { name: 'web', namespace: 'apps' },
  spec: {
    containers: [{ name: 'app' }],
    serviceAccountName: 'builder',
    volumes: [
      { name: 'cfg', configMap: { name: 'cfg', items: [{ key: 'a', path: 'dir/a.txt' }] } },
      {
        name: 'all',
        projected: {
          defaultMode: 0o600,
          sources: [
            { secret: { name: 'creds' } },
            { serviceAccountToken: { path: 'token', audience: 'vault' } },
          ],
        },
      },
    ],
  },
};

const objects: VolumeObjects = {
  configMap: (name) => (name === 'cfg' ? { data: { a: 'alpha', b: 'beta' } } : undefined),
  secret: (name) =>
    name === 'creds' ? { data: { pw: Buffer.from('s3cret').toString('base64') } } : undefined,
  token: (spec) => `token-${spec.audience ?? ''}`,
};

const text = (data: Uint8Array): string => Buffer.from(data).toString('utf8');

test('volumes project into files from objects already read', () => {
  const [cfg, all] = projectPodVolumes(pod, objects);
  assert.deepEqual(
    cfg?.files.map((f) => [f.path, text(f.data), f.mode]),
    [['dir/a.txt', 'alpha', 0o644]],
  );
  assert.deepEqual(
    all?.files.map((f) => [f.path, text(f.data), f.mode]),
    [
      ['pw', 's3cret', 0o600],
      ['token', 'token-vault', 0o600],
    ],
  );
});

test('a token belongs to the user every container runs as, and is 0600 then', () => {
  const projected = { sources: [{ serviceAccountToken: { path: 'token' } }] };
  const as = (spec: NonNullable<V1Pod['spec']>): unknown =>
    projectPodVolumes(
      { metadata: pod.metadata, spec: { ...spec, volumes: [{ name: 'sa', projected }] } },
      objects,
    )[0]?.files.map((f) => [f.path, f.mode, f.owner]);
  assert.deepEqual(as({ securityContext: { runAsUser: 1000 }, containers: [{ name: 'a' }] }), [
    ['token', 0o600, 1000],
  ]);
  // Users that differ: no owner, the volume's mode.
  assert.deepEqual(
    as({
      securityContext: { runAsUser: 1000 },
      containers: [{ name: 'a' }, { name: 'b', securityContext: { runAsUser: 2000 } }],
    }),
    [['token', 0o644, undefined]],
  );
});

test('a failing lookup fails the volume with SourceFailed', () => {
  const failing: VolumeObjects = {
    ...objects,
    token: () => {
      throw new Error('forbidden');
    },
  };
  assert.throws(
    () => projectPodVolumes(pod, failing),
    (err: unknown) =>
      err instanceof VolumeResolutionError && err.reason === 'SourceFailed' && err.volume === 'all',
  );
});

test('what to read first: the objects and the tokens', () => {
  assert.deepEqual(podVolumeObjects(pod), { configMaps: ['cfg'], secrets: ['creds'] });
  assert.deepEqual(podTokenRequests(pod), [
    { serviceAccountName: 'builder', audience: 'vault', expirationSeconds: 3600 },
  ]);
});

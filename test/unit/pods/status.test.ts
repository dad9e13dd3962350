import type { V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mutableFingerprint, needsSync } from '../../../src/pods/status.js';

const base = (): V1Pod => ({
  metadata: { name: 'p', namespace: 'ns', uid: 'u1', labels: { a: '1' }, annotations: { x: 'y' } },
  spec: { containers: [{ name: 'c', image: 'img:1' }], tolerations: [] },
  status: { phase: 'Pending', qosClass: 'BestEffort' },
});

type Edit = (pod: {
  metadata: NonNullable<V1Pod['metadata']>;
  spec: NonNullable<V1Pod['spec']>;
}) => void;
const edited = (edit: Edit): V1Pod => {
  const pod = base() as {
    metadata: NonNullable<V1Pod['metadata']>;
    spec: NonNullable<V1Pod['spec']>;
  };
  edit(pod);
  return pod;
};

test('needsSync: status-only changes do not sync; mutable fields and deletion do', () => {
  const a = base();
  const statusOnly = { ...base(), status: { phase: 'Running' } };
  assert.equal(needsSync(a, statusOnly), false);
  const image = edited((p) => {
    p.spec.containers = [{ name: 'c', image: 'img:2' }];
  });
  assert.equal(needsSync(a, image), true);
  const labels = edited((p) => {
    p.metadata.labels = { a: '2' };
  });
  assert.equal(needsSync(a, labels), true);
  const deleting = edited((p) => {
    p.metadata.deletionTimestamp = new Date().toISOString();
  });
  assert.equal(needsSync(a, deleting), true);
  const tolerations = edited((p) => {
    p.spec.tolerations = [{ key: 'k', operator: 'Exists' }];
  });
  assert.equal(needsSync(a, tolerations), true);
});

test('mutableFingerprint ignores label order and fields Kubernetes does not let change', () => {
  const a = edited((p) => {
    p.metadata.labels = { a: '1', b: '2' };
  });
  const b = edited((p) => {
    p.metadata.labels = { b: '2', a: '1' };
    p.spec.containers = [{ name: 'c', image: 'img:1', command: ['sleep', '1'] }];
  });
  assert.equal(mutableFingerprint(a), mutableFingerprint(b));
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { namespacedKey, podKey, splitPodKey } from '../../../src/kubelet/pod-key.js';

test('a pod key is namespace/name, and splits back', () => {
  assert.equal(namespacedKey('apps', 'web-0'), 'apps/web-0');
  assert.equal(podKey({ metadata: { namespace: 'apps', name: 'web-0' } }), 'apps/web-0');
  assert.equal(podKey({}), '/');
  assert.deepEqual(splitPodKey('apps/web-0'), { namespace: 'apps', name: 'web-0' });
  assert.equal(splitPodKey('no-slash'), undefined);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  imageUserOf,
  needsImageUser,
  runAsNonRootError,
} from '../../../../src/providers/cri/non-root.js';
import type { V1Container, V1Pod } from '../../../../src/wire.js';

const pod = (psc: NonNullable<V1Pod['spec']>['securityContext'] = {}): V1Pod => ({
  metadata: { name: 'p', namespace: 'ns', uid: 'u1' },
  spec: { containers: [], securityContext: psc },
});
const ctr = (sc: V1Container['securityContext'] = {}): V1Container => ({
  name: 'c',
  image: 'x',
  securityContext: sc,
});
const WHERE = '(pod: "p_ns(u1)", container: c)';

test('without an effective runAsNonRoot the image user is not read and anything runs', () => {
  assert.equal(needsImageUser(pod(), ctr()), false);
  assert.equal(runAsNonRootError(pod(), ctr(), { uid: 0n }), undefined);
  // The container's false overrides the pod's true.
  const p = pod({ runAsNonRoot: true });
  assert.equal(needsImageUser(p, ctr({ runAsNonRoot: false })), false);
  assert.equal(runAsNonRootError(p, ctr({ runAsNonRoot: false }), { uid: 0n }), undefined);
});

test('runAsNonRoot (pod or container) with no runAsUser refuses an image that runs as root', () => {
  for (const [p, c] of [
    [pod({ runAsNonRoot: true }), ctr()],
    [pod(), ctr({ runAsNonRoot: true })],
  ] as const) {
    assert.equal(needsImageUser(p, c), true);
    assert.equal(
      runAsNonRootError(p, c, { uid: 0n }),
      `container has runAsNonRoot and image will run as root ${WHERE}`,
    );
    // An image that names no user runs as root.
    assert.equal(
      runAsNonRootError(p, c, {}),
      `container has runAsNonRoot and image will run as root ${WHERE}`,
    );
    assert.equal(runAsNonRootError(p, c, { uid: 1000n }), undefined);
  }
});

test('a non-numeric image user cannot be verified and is refused', () => {
  assert.equal(
    runAsNonRootError(pod({ runAsNonRoot: true }), ctr(), { username: 'nobody' }),
    `container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root ${WHERE}`,
  );
});

test('runAsUser decides without the image: 0 breaks the policy, another user passes', () => {
  const p = pod({ runAsNonRoot: true });
  assert.equal(needsImageUser(p, ctr({ runAsUser: 0 })), false);
  assert.equal(
    runAsNonRootError(p, ctr({ runAsUser: 0 }), undefined),
    `container's runAsUser breaks non-root policy ${WHERE}`,
  );
  // The pod's runAsUser counts when the container sets none; the container's wins over it.
  assert.equal(
    runAsNonRootError(pod({ runAsNonRoot: true, runAsUser: 0 }), ctr(), undefined),
    `container's runAsUser breaks non-root policy ${WHERE}`,
  );
  assert.equal(
    runAsNonRootError(
      pod({ runAsNonRoot: true, runAsUser: 0 }),
      ctr({ runAsUser: 1000 }),
      undefined,
    ),
    undefined,
  );
});

test('the image user comes from the CRI Image message: uid as Int64Value, else username', () => {
  assert.deepEqual(imageUserOf({ uid: { value: '0' }, username: '' }), { uid: 0n });
  assert.deepEqual(imageUserOf({ uid: { value: '65534' } }), { uid: 65534n });
  assert.deepEqual(imageUserOf({ uid: null, username: 'app' }), { username: 'app' });
  assert.deepEqual(imageUserOf({ uid: null, username: '' }), {});
  assert.deepEqual(imageUserOf(null), {});
});

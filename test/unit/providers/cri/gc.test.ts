import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  containersToRemove,
  detectImages,
  gcContainerOf,
  gcImageOf,
  imagesToRemove,
  sandboxesToRemove,
  sandboxImageOf,
  type GcContainer,
  type GcImage,
  type GcLive,
  type ImageRecord,
} from '../../../../src/providers/cri/gc.js';

const ctr = (
  id: string,
  attempt: number,
  state = 'CONTAINER_EXITED',
  podUid = 'u1',
  name = 'app',
  sandboxId = 's1',
): GcContainer => ({ id, sandboxId, podUid, name, attempt, createdAt: BigInt(attempt), state });

const live = (keep: string[] = [], pods: Record<string, string> = { u1: 's1' }): GcLive => ({
  pods: new Map(Object.entries(pods).map(([uid, sandboxId]) => [uid, { sandboxId }])),
  keepIds: new Set(keep),
});

test('a crash-looping container keeps its current and previous runs; older dead runs go', () => {
  const cs = [ctr('a0', 0), ctr('a1', 1), ctr('a2', 2), ctr('a3', 3)];
  assert.deepEqual(containersToRemove(cs, live(['a3', 'a2'])).sort(), ['a0', 'a1']);
  // Running current run: its previous dead one stays, the rest go.
  const running = [ctr('a0', 0), ctr('a1', 1), ctr('a2', 2, 'CONTAINER_RUNNING')];
  assert.deepEqual(containersToRemove(running, live(['a2', 'a1'])), ['a0']);
});

test('without records of the provider, the newest dead container per name of a live pod stays', () => {
  const cs = [ctr('a0', 0), ctr('a1', 1), ctr('b0', 0, 'CONTAINER_EXITED', 'u1', 'side')];
  assert.deepEqual(containersToRemove(cs, live()), ['a0']);
  assert.deepEqual(containersToRemove(cs, live(), 2), []);
});

test('running containers and a created one of a live pod (it may be starting) stay', () => {
  const cs = [
    ctr('a0', 0),
    ctr('a1', 1),
    ctr('a2', 2),
    ctr('a3', 3, 'CONTAINER_CREATED'),
    ctr('r0', 0, 'CONTAINER_RUNNING', 'u1', 'other'),
  ];
  assert.deepEqual(containersToRemove(cs, live(['a2', 'a1'])), ['a0']);
});

test('every dead or created container of a pod that is gone goes; running ones stay', () => {
  const cs = [
    ctr('g0', 0, 'CONTAINER_EXITED', 'gone'),
    ctr('g1', 1, 'CONTAINER_CREATED', 'gone'),
    ctr('g2', 2, 'CONTAINER_RUNNING', 'gone'),
    ctr('a0', 0),
  ];
  assert.deepEqual(containersToRemove(cs, live()).sort(), ['g0', 'g1']);
});

test('sandboxes: not-ready ones of gone pods and old ones of live pods go, unless containers remain', () => {
  const sb = (id: string, podUid: string, ready: boolean, createdAt: bigint) => ({
    id,
    podUid,
    ready,
    createdAt,
  });
  const sandboxes = [
    sb('s0', 'u1', false, 1n), // an old sandbox of a live pod
    sb('s1', 'u1', true, 2n), // its current one
    sb('g0', 'gone', false, 1n),
    sb('g1', 'gone', false, 2n), // still has a container
    sb('g2', 'gone', true, 3n), // ready: left to the pod's deletion
  ];
  const remaining = [ctr('x', 0, 'CONTAINER_RUNNING', 'gone', 'app', 'g1')];
  assert.deepEqual(sandboxesToRemove(sandboxes, remaining, live()).sort(), ['g0', 's0']);
  // A live pod's newest sandbox stays even when not ready and not (yet) its current one.
  assert.deepEqual(
    sandboxesToRemove(
      [sb('n0', 'u2', false, 1n), sb('n1', 'u2', false, 2n)],
      [],
      live([], { u2: '' }),
    ),
    ['n0'],
  );
});

const img = (id: string, sizeBytes: number, names: string[] = [], pinned = false): GcImage => ({
  id,
  names,
  sizeBytes,
  pinned,
});
const GB = 1e9;
const policy = { highThresholdPercent: 85, lowThresholdPercent: 80, minimumAgeMs: 120_000 };

test('image records: first detection is kept, use is stamped, vanished images are forgotten', () => {
  const r1 = detectImages(
    new Map(),
    [img('i1', 1), img('i2', 1, ['busybox:1'])],
    new Set(['busybox:1']),
    1000,
  );
  assert.deepEqual(r1.get('i1'), { firstDetectedMs: 1000, lastUsedMs: 0 });
  assert.deepEqual(r1.get('i2'), { firstDetectedMs: 1000, lastUsedMs: 1000 });
  const r2 = detectImages(r1, [img('i2', 1, ['busybox:1'])], new Set(), 5000);
  assert.deepEqual([...r2.keys()], ['i2']);
  assert.deepEqual(r2.get('i2'), { firstDetectedMs: 1000, lastUsedMs: 1000 });
});

test('image GC: nothing under the high threshold; above it unused images go, least recently used first, down to the low threshold', () => {
  const images = [
    img('old', 3 * GB),
    img('older', 3 * GB),
    img('used', 5 * GB, ['app:1']),
    img('pause', 1 * GB, ['registry.k8s.io/pause:3.10']),
    img('pinned', 1 * GB, [], true),
    img('young', 9 * GB),
  ];
  const now = 1_000_000;
  const records = new Map<string, ImageRecord>([
    ['old', { firstDetectedMs: 0, lastUsedMs: 500 }],
    ['older', { firstDetectedMs: 0, lastUsedMs: 100 }],
    ['used', { firstDetectedMs: 0, lastUsedMs: now }],
    ['pause', { firstDetectedMs: 0, lastUsedMs: 0 }],
    ['pinned', { firstDetectedMs: 0, lastUsedMs: 0 }],
    ['young', { firstDetectedMs: now - 60_000, lastUsedMs: 0 }],
  ]);
  const base = {
    images,
    records,
    inUse: new Set(['app:1']),
    protectedNames: new Set(['registry.k8s.io/pause:3.10']),
    capacityBytes: 100 * GB,
    policy,
    nowMs: now,
  };
  // 84 % used: under the threshold.
  assert.deepEqual(imagesToRemove({ ...base, availableBytes: 16 * GB }), []);
  // 86 % used: 6 GB to free to reach 80 %; the least recently used goes first.
  assert.deepEqual(imagesToRemove({ ...base, availableBytes: 14 * GB }), ['older', 'old']);
  // 88 % used: 8 GB to free, but only 6 GB may go (in use, pinned, sandbox, young images stay).
  assert.deepEqual(imagesToRemove({ ...base, availableBytes: 12 * GB }), ['older', 'old']);
  // A minute later the young image is 2 minutes old: never used, it goes first (9 GB is enough).
  assert.deepEqual(imagesToRemove({ ...base, availableBytes: 12 * GB, nowMs: now + 60_000 }), [
    'young',
  ]);
  // 100 turns it off.
  assert.deepEqual(
    imagesToRemove({
      ...base,
      availableBytes: 1 * GB,
      policy: { ...policy, highThresholdPercent: 100 },
    }),
    [],
  );
});

test('CRI messages: containers by their labels, images by tags and digests, the sandbox image from the status', () => {
  assert.deepEqual(
    gcContainerOf({
      id: 'c',
      pod_sandbox_id: 's',
      metadata: { name: 'app', attempt: 2 },
      state: 'CONTAINER_EXITED',
      created_at: '123',
      labels: { 'io.kubernetes.pod.uid': 'u', 'io.kubernetes.container.name': 'app' },
    }),
    {
      id: 'c',
      sandboxId: 's',
      podUid: 'u',
      name: 'app',
      attempt: 2,
      createdAt: 123n,
      state: 'CONTAINER_EXITED',
    },
  );
  assert.deepEqual(
    gcImageOf({
      id: 'sha256:1',
      repo_tags: ['a:1'],
      repo_digests: ['a@sha256:2'],
      size: '42',
      pinned: true,
    }),
    { id: 'sha256:1', names: ['a:1', 'a@sha256:2'], sizeBytes: 42, pinned: true },
  );
  assert.equal(sandboxImageOf({ config: '{"sandboxImage":"pause:3.9"}' }), 'pause:3.9');
  assert.equal(
    sandboxImageOf({ config: '{"pinnedImages":{"sandbox":"pause:3.10"}}' }),
    'pause:3.10',
  );
  assert.equal(sandboxImageOf({}), undefined);
});

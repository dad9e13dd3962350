import type { V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { podSpecProblems } from '../../../src/kubelet/pod-validation.js';

const pod = (extra: Partial<NonNullable<V1Pod['spec']>['containers'][number]> = {}): V1Pod => ({
  metadata: { namespace: 'ns', name: 'p' },
  spec: { containers: [{ name: 'app', image: 'busybox', ...extra }] },
});

test('a valid pod has no problems', () => {
  assert.equal(podSpecProblems(pod()), undefined);
  assert.equal(
    podSpecProblems(pod({ resources: { requests: { cpu: '100m' }, limits: { cpu: '1' } } })),
    undefined,
  );
});

test('problems are named by field, in the API server words', () => {
  assert.equal(
    podSpecProblems(pod({ args: ['a\0b'] })),
    'spec.containers[0].args[0]: Invalid value: contains a NUL byte',
  );
  assert.equal(podSpecProblems(pod({ image: '' })), 'spec.containers[0].image: Required value');
  assert.match(
    podSpecProblems(pod({ resources: { requests: { cpu: '2' }, limits: { cpu: '1' } } })) ?? '',
    /requests\[cpu\]: .*less than or equal to the limit/,
  );
  assert.match(podSpecProblems(pod({ ports: [{ containerPort: 0 }] })) ?? '', /containerPort/);
});

test('a thousand problems are reported as the first ten, values shortened', () => {
  const p = pod();
  if (p.spec)
    p.spec.containers = Array.from({ length: 1000 }, () => ({
      name: 'x',
      image: '',
      args: ['\0'.repeat(1e6)],
    }));
  const problems = podSpecProblems(p) ?? '';
  assert.equal(problems.split('; ').length, 10);
  assert.ok(problems.length < 2000);
});

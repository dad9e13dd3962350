import type { V1Pod, V1PodStatus } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  configErrorStatus,
  isTerminal,
  isTerminalPhase,
  mergeStatus,
  providerFailedStatus,
  sameStatus,
} from '../../../src/kubelet/pod-status.js';

const base = (): V1Pod => ({
  metadata: { name: 'p', namespace: 'ns', uid: 'u1', labels: { a: '1' }, annotations: { x: 'y' } },
  spec: { containers: [{ name: 'c', image: 'img:1' }], tolerations: [] },
  status: { phase: 'Pending', qosClass: 'BestEffort' },
});

const running = (ready: boolean): V1PodStatus => ({
  phase: 'Running',
  podIP: '10.0.0.5',
  containerStatuses: [
    {
      name: 'c',
      image: 'img:1',
      imageID: '',
      ready,
      restartCount: 0,
      state: { running: { startedAt: '2026-01-01T00:00:00Z' } },
    },
  ],
});

test('isTerminal: Succeeded and Failed are final, other phases are not', () => {
  assert.equal(isTerminalPhase('Succeeded'), true);
  assert.equal(isTerminalPhase('Failed'), true);
  for (const phase of ['Pending', 'Running', 'Unknown', '', undefined]) {
    assert.equal(isTerminalPhase(phase), false);
  }
  assert.equal(isTerminal({ phase: 'Failed' }), true);
  assert.equal(isTerminal(undefined), false);
});

test('mergeStatus fills conditions, hostIP, podIPs and startTime as a kubelet does', () => {
  const now = new Date('2026-11-23T10:00:00Z');
  const s = mergeStatus(base(), running(true), { nodeIP: '192.168.1.2', now });
  assert.equal(s.phase, 'Running');
  assert.equal(s.hostIP, '192.168.1.2');
  assert.deepEqual(s.hostIPs, [{ ip: '192.168.1.2' }]);
  assert.deepEqual(s.podIPs, [{ ip: '10.0.0.5' }]);
  assert.equal(s.qosClass, 'BestEffort');
  assert.equal(String(s.startTime), '2026-11-23T10:00:00Z');
  const byType = Object.fromEntries((s.conditions ?? []).map((c) => [c.type, c.status]));
  assert.deepEqual(byType, {
    PodScheduled: 'True',
    Initialized: 'True',
    ContainersReady: 'True',
    Ready: 'True',
  });
});

test('mergeStatus derives NotReady from an unready container and keeps transition times while unchanged', () => {
  const t1 = new Date('2026-11-23T10:00:00Z');
  const t2 = new Date('2026-11-23T10:05:00Z');
  const pod = base();
  pod.status = mergeStatus(pod, running(false), { nodeIP: '1.1.1.1', now: t1 });
  const ready1 = pod.status.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready1?.status, 'False');
  assert.equal(ready1?.reason, 'ContainersNotReady');
  const again = mergeStatus(pod, running(false), { nodeIP: '1.1.1.1', now: t2 });
  assert.equal(
    String(again.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime),
    String(ready1?.lastTransitionTime),
  );
  const flipped = mergeStatus(pod, running(true), { nodeIP: '1.1.1.1', now: t2 });
  assert.equal(
    String(flipped.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime),
    '2026-11-23T10:05:00Z',
  );
});

test('mergeStatus keeps conditions other actors own', () => {
  const pod = base();
  pod.status = {
    ...pod.status,
    conditions: [{ type: 'DisruptionTarget', status: 'True', reason: 'EvictionByEvictionAPI' }],
  };
  const s = mergeStatus(pod, running(true), { nodeIP: '1.1.1.1' });
  assert.ok(
    s.conditions?.some(
      (c) => c.type === 'DisruptionTarget' && c.reason === 'EvictionByEvictionAPI',
    ),
  );
});

test('sameStatus: equal statuses need no write; any visible change does', () => {
  const now = new Date('2026-11-23T10:00:00Z');
  const pod = base();
  const s = mergeStatus(pod, running(true), { nodeIP: '1.1.1.1', now });
  assert.ok(sameStatus(s, structuredClone(s)));
  assert.ok(!sameStatus(s, { ...s, phase: 'Succeeded' }));
  assert.ok(!sameStatus(s, { ...s, podIP: '10.0.0.6' }));
  assert.ok(!sameStatus(s, undefined));
  // The same time written with and without a fraction of a second.
  assert.ok(
    sameStatus(
      { ...s, startTime: '2026-11-23T10:00:00.000Z' },
      { ...s, startTime: '2026-11-23T10:00:00Z' },
    ),
  );
});

test("sameStatus: times compare at the API server's second precision", () => {
  const pod = base();
  const s = mergeStatus(pod, running(true), { nodeIP: '1.1.1.1' });
  const at = (ms: string): V1PodStatus => ({
    ...s,
    startTime: `2026-11-23T10:00:00${ms}Z`,
    containerStatuses: [
      {
        name: 'c',
        image: 'i',
        imageID: '',
        ready: true,
        restartCount: 0,
        state: { running: { startedAt: `2026-11-23T10:00:00${ms}Z` } },
      },
    ],
  });
  // What the provider reported (milliseconds) and what the API server gives back (seconds).
  const stored = JSON.parse(JSON.stringify(at(''))) as V1PodStatus;
  assert.ok(sameStatus(at('.734'), stored));
  const later = structuredClone(at(''));
  const running0 = later.containerStatuses?.[0]?.state?.running;
  if (running0) running0.startedAt = '2026-11-23T10:00:01Z';
  assert.ok(!sameStatus(at('.734'), later));
});

test('failure statuses: ProviderFailed Pending or Failed, and CreateContainerConfigError', () => {
  assert.equal(providerFailedStatus(base(), 'm', false).phase, 'Pending');
  const final = providerFailedStatus(base(), 'boom', true);
  assert.equal(final.phase, 'Failed');
  assert.equal(final.reason, 'ProviderFailed');
  assert.equal(final.message, 'boom');
  const cfg = configErrorStatus(base(), 'configmap "x" not found');
  assert.equal(cfg.containerStatuses?.[0]?.state?.waiting?.reason, 'CreateContainerConfigError');
  assert.equal(cfg.phase, 'Pending');
});

test('mergeStatus: a report with a phase clears an old reason; readiness gates hold Ready back', () => {
  const pod = base();
  pod.status = { ...pod.status, reason: 'ProviderFailed', message: 'try again' };
  const s = mergeStatus(pod, running(true), { nodeIP: '1.1.1.1' });
  assert.equal(s.reason, undefined);
  assert.equal(s.message, undefined);

  const gated = base();
  gated.spec = {
    ...gated.spec,
    containers: gated.spec?.containers ?? [],
    readinessGates: [{ conditionType: 'example.com/lb' }],
  };
  const closed = mergeStatus(gated, running(true), { nodeIP: '1.1.1.1' });
  const ready = closed.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'False');
  assert.equal(ready?.reason, 'ReadinessGatesNotReady');
  gated.status = { ...gated.status, conditions: [{ type: 'example.com/lb', status: 'True' }] };
  assert.equal(
    mergeStatus(gated, running(true), { nodeIP: '1.1.1.1' }).conditions?.find(
      (c) => c.type === 'Ready',
    )?.status,
    'True',
  );
});

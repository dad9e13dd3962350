import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  asContainer,
  ephemeralStatus,
  ephemeralStep,
  withTargetPid,
} from '../../../../src/providers/cri/ephemeral.js';

const ids = new Map([['app', 'c-app']]);
const idOf = (name: string): string | undefined => ids.get(name);

test('an ephemeral container starts once: never again once created', () => {
  const c = { name: 'debugger', image: 'busybox' };
  assert.deepEqual(ephemeralStep(c, false, idOf), { start: true, targetId: undefined });
  assert.deepEqual(ephemeralStep(c, true, idOf), { start: false });
});

test('with a target it waits for the target to run, then joins its PID namespace', () => {
  const c = { name: 'debugger', image: 'busybox', targetContainerName: 'app' };
  assert.deepEqual(ephemeralStep(c, false, idOf), { start: true, targetId: 'c-app' });
  assert.deepEqual(ephemeralStep({ ...c, targetContainerName: 'gone' }, false, idOf), {
    start: false,
  });
  const config = {
    metadata: { name: 'debugger' },
    linux: {
      resources: { cpu_shares: '2' },
      security_context: {
        privileged: false,
        namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
      },
    },
  };
  assert.deepEqual(withTargetPid(config, 'c-app'), {
    metadata: { name: 'debugger' },
    linux: {
      resources: { cpu_shares: '2' },
      security_context: {
        privileged: false,
        namespace_options: { network: 'POD', pid: 'TARGET', ipc: 'POD', target_id: 'c-app' },
      },
    },
  });
  assert.equal(withTargetPid(config, undefined), config);
  assert.deepEqual(asContainer(c), { name: 'debugger', image: 'busybox' });
});

test('its status is never ready and has no started field, as the kubelet reports it', () => {
  const status = ephemeralStatus({
    name: 'debugger',
    image: 'busybox',
    imageID: 'sha256:1',
    restartCount: 0,
    ready: true,
    started: true,
    state: { running: { startedAt: '2026-01-01T00:00:00Z' } },
  });
  assert.equal(status.ready, false);
  assert.equal('started' in status, false);
  assert.deepEqual(status.state, { running: { startedAt: '2026-01-01T00:00:00Z' } });
});

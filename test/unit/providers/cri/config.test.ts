import assert from 'node:assert/strict';
import { test } from 'node:test';
import { linuxResources, parseCriConfig, pullPolicy } from '../../../../src/providers/cri/index.js';

test('the config needs a unix runtimeEndpoint and refuses unknown fields', () => {
  assert.deepEqual(parseCriConfig({ runtimeEndpoint: 'unix:///run/c.sock' }), {
    runtimeEndpoint: 'unix:///run/c.sock',
  });
  assert.throws(() => parseCriConfig({}), /'runtimeEndpoint' is required/);
  assert.throws(() => parseCriConfig({ runtimeEndpoint: 'tcp://x:1' }), /unix:\/\/\//);
  assert.throws(
    () => parseCriConfig({ runtimeEndpoint: '/run/c.sock', podCidr: 'x' }),
    /unknown field 'podCidr'/,
  );
  assert.throws(
    () => parseCriConfig({ runtimeEndpoint: '/run/c.sock', syncIntervalMs: 1 }),
    /syncIntervalMs/,
  );
});

test('the default pull policy is Always for :latest or no tag, else IfNotPresent', () => {
  assert.equal(pullPolicy({ name: 'a', image: 'busybox' }), 'Always');
  assert.equal(pullPolicy({ name: 'a', image: 'busybox:latest' }), 'Always');
  assert.equal(pullPolicy({ name: 'a', image: '127.0.0.1:5000/busybox' }), 'Always');
  assert.equal(pullPolicy({ name: 'a', image: '127.0.0.1:5000/busybox:v1' }), 'IfNotPresent');
  assert.equal(pullPolicy({ name: 'a', image: 'x@sha256:abc' }), 'IfNotPresent');
  assert.equal(pullPolicy({ name: 'a', image: 'x:v1', imagePullPolicy: 'Never' }), 'Never');
});

test('resources become CPU shares and quota and a memory limit, as the kubelet computes them', () => {
  assert.deepEqual(linuxResources({ name: 'a' }), { cpu_shares: '2' });
  assert.deepEqual(
    linuxResources({
      name: 'a',
      resources: { requests: { cpu: '250m' }, limits: { cpu: '500m', memory: '32Mi' } },
    }),
    {
      cpu_shares: '256',
      cpu_period: '100000',
      cpu_quota: '50000',
      memory_limit_in_bytes: String(32 * 1024 * 1024),
    },
  );
  // A limit without a request: the request defaults to the limit.
  assert.equal(
    linuxResources({ name: 'a', resources: { limits: { cpu: '1' } } }).cpu_shares,
    '1024',
  );
});

test('the GC settings: intervals of at least 100 ms, thresholds in percent with low <= high', () => {
  const ok = {
    runtimeEndpoint: '/run/c.sock',
    containerGcIntervalMs: 500,
    imageGcIntervalMs: 1000,
    imageGcHighThresholdPercent: 90,
    imageGcLowThresholdPercent: 70,
    imageMinimumGcAgeSeconds: 0,
  };
  assert.deepEqual(parseCriConfig(ok), ok);
  assert.throws(
    () => parseCriConfig({ ...ok, containerGcIntervalMs: 10 }),
    /containerGcIntervalMs/,
  );
  assert.throws(
    () => parseCriConfig({ ...ok, imageGcHighThresholdPercent: 101 }),
    /'imageGcHighThresholdPercent' must be a number from 0 to 100/,
  );
  assert.throws(
    () => parseCriConfig({ runtimeEndpoint: '/run/c.sock', imageGcLowThresholdPercent: 90 }),
    /'imageGcLowThresholdPercent' must not be above/,
  );
});

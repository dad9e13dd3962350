import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebhookAuthorizer } from '../../../src/api/auth.js';
import { resolveHttpLimits, serverOptionsOf } from '../../../src/api/http-port.js';
import { errorCode } from '../../../src/errors.js';
import type { KubeClient } from '../../../src/kube/client.js';

test('the kubelet port limits: defaults, and the Node server options that enforce them', () => {
  const limits = resolveHttpLimits();
  assert.deepEqual(limits, {
    headersTimeoutMs: 30_000,
    requestTimeoutMs: 300_000,
    idleTimeoutMs: 90_000,
    maxConnections: 1_000,
  });
  assert.deepEqual(serverOptionsOf(limits), {
    headersTimeout: 30_000,
    requestTimeout: 300_000,
    keepAliveTimeout: 90_000,
    handshakeTimeout: 30_000,
    connectionsCheckingInterval: 3_000,
  });
  const short = serverOptionsOf(resolveHttpLimits({ headersTimeoutMs: 50, requestTimeoutMs: 0 }));
  assert.equal(short.connectionsCheckingInterval, 10);
  assert.equal(short.requestTimeout, 0);
});

test('bad limits are refused by name', () => {
  assert.throws(() => resolveHttpLimits({ headersTimeoutMs: 0 }), /limits\.headersTimeoutMs/);
  assert.throws(() => resolveHttpLimits({ maxConnections: 1.5 }), /limits\.maxConnections/);
  assert.throws(() => resolveHttpLimits({ idleTimeoutMs: -1 }), /limits\.idleTimeoutMs/);
  assert.throws(
    () => resolveHttpLimits({ headersTimeoutMs: 2_000, requestTimeoutMs: 1_000 }),
    /requestTimeoutMs \(1000\) must be at least limits\.headersTimeoutMs \(2000\)/,
  );
});

test('bad authentication limits are refused by name, as InvalidInput', () => {
  const client = {} as KubeClient;
  for (const [name, value] of [
    ['maxReviewsInFlight', 0],
    ['tokenCacheSize', 0],
    ['rejectedTokenCacheSize', 2.5],
    ['maxReviewsQueued', -1],
  ] as const)
    assert.throws(
      () => new WebhookAuthorizer({ client, nodeName: 'n', [name]: value }),
      (err: unknown) => errorCode(err) === 'InvalidInput' && String(err).includes(name),
    );
  assert.ok(new WebhookAuthorizer({ client, nodeName: 'n', maxReviewsQueued: 0 }));
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebhookAuthorizer } from '../../../src/api/auth.js';
import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';
import { refuseUpgrade, resolveHttpLimits, serverOptionsOf } from '../../../src/api/http-port.js';
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

test(
  'a refused upgrade whose peer never closes its side is closed after the deadline, not held',
  { timeout: 10_000 },
  async (t) => {
    const accepted: Socket[] = [];
    const server = createServer({ allowHalfOpen: false }, (socket) => {
      accepted.push(socket);
      refuseUpgrade(socket, 400, 'no upgrade here', {}, 100);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    // The client reads the answer but never ends its side (allowHalfOpen keeps it open).
    const client = createConnection({ port: address.port, host: '127.0.0.1', allowHalfOpen: true });
    t.after(() => client.destroy());
    let answer = '';
    client.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    await once(client, 'end');
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nno upgrade here$/);
    const [socket] = accepted;
    assert.ok(socket);
    if (!socket.destroyed) await once(socket, 'close');
    assert.equal(socket.destroyed, true);
  },
);

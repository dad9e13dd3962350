import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { once } from 'node:events';
import { test } from 'node:test';
import {
  deadlineAt,
  LIFECYCLE_USER_AGENT,
  runHook,
  stopOrder,
  stopTimeoutSeconds,
  type HookRuntime,
} from '../../../../src/providers/cri/lifecycle.js';
import type { V1Pod } from '../../../../src/wire.js';

const container = { name: 'app', image: 'busybox', ports: [{ name: 'web', containerPort: 1 }] };

function fakeRuntime(exitCode: number, output = ''): HookRuntime & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  return {
    podIP: '127.0.0.1',
    calls,
    exec: (command, timeoutSeconds) => {
      calls.push([command, timeoutSeconds]);
      return Promise.resolve({ exitCode, output });
    },
  };
}

test('an exec hook runs its command through the runtime; a non-zero exit fails it', async () => {
  const ok = fakeRuntime(0);
  const handler = { exec: { command: ['sh', '-c', 'echo hi'] } };
  await runHook(handler, container, ok, undefined, AbortSignal.timeout(5000));
  // postStart has no timeout (0); preStop has what is left of the grace period.
  await runHook(handler, container, ok, 2500, AbortSignal.timeout(5000));
  assert.deepEqual(ok.calls, [
    [['sh', '-c', 'echo hi'], 0],
    [['sh', '-c', 'echo hi'], 3],
  ]);
  await assert.rejects(
    runHook(handler, container, fakeRuntime(2, 'no\n'), undefined, AbortSignal.timeout(5000)),
    /command 'sh -c echo hi' exited with 2: no/,
  );
});

test('an httpGet hook requests the pod IP on the named port; any status is a success, no answer a failure', async (t) => {
  const seen: { url: string | undefined; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    res.statusCode = 500;
    res.end('broken');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  const named = { ...container, ports: [{ name: 'web', containerPort: address.port }] };
  await runHook(
    { httpGet: { path: '/stop', port: 'web' } },
    named,
    fakeRuntime(0),
    5000,
    AbortSignal.timeout(5000),
  );
  assert.equal(seen[0]?.url, '/stop');
  assert.equal(seen[0]?.headers['user-agent'], LIFECYCLE_USER_AGENT);
  server.close();
  await once(server, 'close');
  await assert.rejects(
    runHook(
      { httpGet: { path: '/stop', port: address.port } },
      named,
      fakeRuntime(0),
      5000,
      AbortSignal.timeout(5000),
    ),
    /connection refused/,
  );
  await assert.rejects(
    runHook({ httpGet: { port: 'nope' } }, named, fakeRuntime(0), 5000, AbortSignal.timeout(5000)),
    /port nope not found/,
  );
});

test('a sleep hook waits, and ends with the grace period; tcpSocket is not a hook', async () => {
  await runHook(
    { sleep: { seconds: 0 } },
    container,
    fakeRuntime(0),
    1000,
    AbortSignal.timeout(5000),
  );
  const began = Date.now();
  await assert.rejects(
    runHook({ sleep: { seconds: 60 } }, container, fakeRuntime(0), 50, AbortSignal.timeout(5000)),
  );
  assert.ok(Date.now() - began < 5000, 'the hook ended with its timeout');
  await assert.rejects(
    runHook(
      { tcpSocket: { port: 80 } },
      container,
      fakeRuntime(0),
      1000,
      AbortSignal.timeout(5000),
    ),
    /invalid handler/,
  );
});

const pod = (spec: Partial<NonNullable<V1Pod['spec']>>): V1Pod => ({
  metadata: { name: 'p' },
  spec: { containers: [{ name: 'main' }], ...spec },
});

test('main containers stop together first, then the sidecars one by one in reverse order', () => {
  const p = pod({
    initContainers: [
      { name: 'setup' },
      { name: 'proxy', restartPolicy: 'Always' },
      { name: 'logs', restartPolicy: 'Always' },
    ],
    containers: [{ name: 'a' }, { name: 'b' }],
  });
  assert.deepEqual(stopOrder(p, ['proxy', 'a', 'logs', 'b']), [['a', 'b'], ['logs'], ['proxy']]);
  assert.deepEqual(stopOrder(p, ['proxy']), [['proxy']]);
  assert.deepEqual(stopOrder(p, ['a']), [['a']]);
});

test('the active deadline counts from the start; without activeDeadlineSeconds there is none', () => {
  const start = '2026-01-01T00:00:00Z';
  assert.equal(deadlineAt(pod({}), start), undefined);
  assert.equal(deadlineAt(pod({ activeDeadlineSeconds: 5 }), start), Date.parse(start) + 5000);
});

test('a container gets what is left of the grace period after its preStop hook, at least 2 s', () => {
  assert.equal(stopTimeoutSeconds(30, 0), 30);
  assert.equal(stopTimeoutSeconds(30, 10_500), 20);
  assert.equal(stopTimeoutSeconds(30, 29_000), 2);
  assert.equal(stopTimeoutSeconds(1, 0), 2);
});

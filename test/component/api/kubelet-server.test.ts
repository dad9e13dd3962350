import type { V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verbOf, WebhookAuthorizer } from '../../../src/api/auth.js';
import { ROUTES, type Route } from '../../../src/api/routes/table.js';
import {
  CAPABILITIES,
  notImplementedMessage,
  type Capability,
  type PodLifecycleHandler,
} from '../../../src/provider.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { startKubeletServer, ScriptedAuthorizer } from '../../helpers/kubelet-server.js';
import { localApi } from '../../helpers/local-api.js';
import { waitFor } from '../../helpers/wait.js';

const POD: V1Pod = {
  metadata: { namespace: 'default', name: 'web', uid: 'uid-1' },
  spec: { containers: [{ name: 'app', image: 'x' }] },
};

/** A path of `pattern`'s shape for POD (optional segments left out). */
const samplePath = (pattern: string): string =>
  pattern
    .split('/')
    .filter((s) => !s.endsWith('?'))
    .map((s) => ({ ':namespace': 'default', ':pod': 'web', ':container': 'app' })[s] ?? s)
    .join('/');

/** A provider with nothing but the pod lifecycle. */
function bareProvider(): PodLifecycleHandler {
  return {
    createPod: () => Promise.resolve(),
    updatePod: () => Promise.resolve(),
    deletePod: () => Promise.resolve(),
    getPod: () => Promise.resolve(undefined),
    getPodStatus: () => Promise.resolve(undefined),
    getPods: () => Promise.resolve([]),
  };
}

async function mockServer(t: Parameters<typeof startKubeletServer>[0]) {
  const provider = new MockProvider({ nodeName: 'kubelet-test' });
  t.after(() => provider.close());
  await provider.createPod(structuredClone(POD), AbortSignal.timeout(5_000));
  const kubelet = await startKubeletServer(t, { provider });
  kubelet.pods.add(POD);
  return kubelet;
}

test('every route answers with a provider that has every capability', async (t) => {
  const k = await mockServer(t);
  const get = (path: string, method = 'GET') => k.fetch(path, { method, token: 'alice' });
  const health = await get('/healthz');
  assert.deepEqual([health.status, health.body], [200, 'ok']);
  assert.equal((await get('/healthz', 'HEAD')).status, 200);
  assert.equal((await get('/healthz/ping')).status, 200);
  const pods = JSON.parse((await get('/pods')).body) as { kind: string; items: V1Pod[] };
  assert.equal(pods.kind, 'PodList');
  assert.deepEqual(
    pods.items.map((p) => p.metadata?.name),
    ['web'],
  );
  const running = JSON.parse((await get('/runningpods/')).body) as { items: V1Pod[] };
  assert.ok(running.items.some((p) => p.metadata?.name === 'web'));
  const configz = JSON.parse((await get('/configz')).body) as {
    kubeletconfig: { port: number };
  };
  assert.equal(configz.kubeletconfig.port, k.port);
  const summary = await waitFor(async () => {
    const s = JSON.parse((await get('/stats/summary', 'POST')).body) as {
      node: { nodeName: string };
      pods: { podRef: { name: string } }[];
    };
    return s.pods.length > 0 && s;
  });
  assert.equal(summary.node.nodeName, 'kubelet-test');
  assert.equal(summary.pods[0]?.podRef.name, 'web');
  assert.match((await get('/metrics/resource')).body, /^pod_memory_working_set_bytes\{/m);
  const logs = await get('/containerLogs/default/web/app?tailLines=1');
  assert.equal(logs.status, 200);
  const run = await get('/run/default/web/app?cmd=echo%20hello', 'POST');
  assert.deepEqual([run.status, run.body.trim()], [200, 'hello']);
  assert.equal((await get('/run/default/web/uid-1/app?cmd=true', 'POST')).status, 200);
  assert.equal((await get('/run/default/web/other-uid/app?cmd=true', 'POST')).status, 404);
  const plainExec = await get('/exec/default/web/app?command=ls', 'POST');
  assert.deepEqual(
    [plainExec.status, plainExec.body],
    [400, 'unable to upgrade: missing upgrade headers in request'],
  );
  const metrics = (await get('/metrics')).body;
  assert.match(metrics, /^kubelet_http_requests_total\{path="\/stats",method="POST",code="200"\}/m);
});

test('paths, shapes and methods no route takes: 404, 400 naming the shape, 405 with Allow', async (t) => {
  const k = await mockServer(t);
  const get = (path: string, method = 'GET') => k.fetch(path, { method, token: 'alice' });
  assert.equal((await get('/no/such/path')).status, 404);
  const shape = await get('/containerLogs/default/web');
  assert.deepEqual(
    [shape.status, shape.body],
    [400, 'expected /containerLogs/:namespace/:pod/:container'],
  );
  assert.equal((await get('/containerLogs/default/nope/app')).status, 404);
  assert.equal((await get('/containerLogs/default/web/nope')).status, 404);
  assert.equal((await get('/containerLogs/default/web/app?tailLines=x')).status, 400);
  assert.equal((await get('/containerLogs/default/web/app?limitBytes=0')).status, 422);
  const wrong = await get('/pods', 'DELETE');
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.allow, 'GET');
  assert.equal((await get('/containerLogs/../../etc/passwd')).status, 400);
  assert.equal((await k.refusedUpgrade('/pods', 'alice')).status, 405);
  assert.equal((await k.refusedUpgrade('/stats/summary', 'alice')).status, 404);
  assert.equal((await k.refusedUpgrade('/exec/default/nope/app?command=ls', 'alice')).status, 404);
});

const withCapability = ROUTES.filter(
  (r): r is Route & { capability: Capability } => r.capability !== undefined,
);

test('a provider lacking a route capability gets 501 naming it, for every route of the table', async (t) => {
  assert.ok(withCapability.length >= 6);
  const k = await startKubeletServer(t, { provider: bareProvider() });
  k.pods.add(POD);
  for (const route of withCapability) {
    const { capability } = route;
    const path = `${samplePath(route.pattern)}?command=ls&cmd=ls&output=1`;
    const method = route.methods[0] ?? 'GET';
    const answer = await k.fetch(path, { method, token: 'alice' });
    assert.deepEqual([answer.status, answer.body], [501, notImplementedMessage(capability)], path);
    for (const m of CAPABILITIES[capability].methods) assert.ok(answer.body.includes(m));
    assert.ok(answer.body.includes(CAPABILITIES[capability].title));
    if (route.upgrade) {
      const refused = await k.refusedUpgrade(path, 'alice');
      assert.deepEqual([refused.status, refused.body], [501, notImplementedMessage(capability)]);
    }
  }
});

test('no credentials and failed authentication: 401; denied: 403 naming the attributes; a failed review: 500', async (t) => {
  const k = await mockServer(t);
  assert.equal((await k.fetch('/pods')).status, 401);
  assert.equal((await k.fetch('/pods', { token: 'throw' })).status, 401);
  assert.equal((await k.refusedUpgrade('/exec/default/web/app?command=ls')).status, 401);
  const denied = await k.fetch('/stats/summary', { token: 'denied' });
  assert.deepEqual(
    [denied.status, denied.body],
    [403, 'Forbidden (user=denied, verb=get, resource=nodes, subresource(s)=[stats])'],
  );
  // Authorization comes before routing: an unknown path tells an unauthorized client nothing.
  assert.equal((await k.fetch('/no/such/path', { token: 'denied' })).status, 403);
  assert.equal((await k.refusedUpgrade('/portForward/default/web', 'denied')).status, 403);
  const broken = await k.fetch('/pods', { token: 'broken' });
  assert.equal(broken.status, 500);
  assert.match(broken.body, /^Authorization error \(user=broken, verb=get, .*\[pods proxy\]\): /);
});

test('each route is authorized with its table attributes, for each of its methods', async (t) => {
  const authorizer = new ScriptedAuthorizer();
  const provider = new MockProvider({ nodeName: 'kubelet-test' });
  t.after(() => provider.close());
  const k = await startKubeletServer(t, { provider, authorizer });
  k.pods.add(POD);
  for (const route of ROUTES)
    for (const method of route.methods) {
      authorizer.calls.length = 0;
      await k.fetch(samplePath(route.pattern), { method, token: 'alice' });
      assert.deepEqual(
        authorizer.calls,
        [{ user: 'alice', attrs: { verb: verbOf(method), subresources: route.subresources } }],
        `${method} ${route.pattern}`,
      );
    }
  authorizer.calls.length = 0;
  await k.fetch('/stats/other', { token: 'alice' });
  await k.fetch('/nothing/here', { method: 'POST', token: 'alice' });
  assert.deepEqual(
    authorizer.calls.map((c) => c.attrs),
    [
      { verb: 'get', subresources: ['stats'] },
      { verb: 'create', subresources: ['proxy'] },
    ],
  );
});

test('with the webhook authorizer, a route makes SubjectAccessReviews for its subresources, in order', async (t) => {
  const reviews: Record<string, string>[] = [];
  const { client } = await localApi(t, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const spec = (JSON.parse(body) as { spec: Record<string, unknown> }).spec;
      res.setHeader('content-type', 'application/json');
      if (req.url?.endsWith('/tokenreviews')) {
        const token = String(spec.token);
        res.end(
          JSON.stringify({
            status: { authenticated: token !== 'bad', user: { username: token, groups: [] } },
          }),
        );
        return;
      }
      const user = String(spec.user);
      const attrs = spec.resourceAttributes as Record<string, string>;
      reviews.push({ user, ...attrs });
      // Each user may use only the last subresource of its route: every one is asked, in order.
      res.end(JSON.stringify({ status: { allowed: attrs.subresource === 'proxy' } }));
    });
  });
  const provider = new MockProvider({ nodeName: 'kubelet-test' });
  t.after(() => provider.close());
  const authorizer = new WebhookAuthorizer({ client, nodeName: 'kubelet-test' });
  const k = await startKubeletServer(t, { provider, authorizer });
  k.pods.add(POD);
  assert.equal((await k.fetch('/pods', { token: 'bad' })).status, 401);
  for (const [i, route] of ROUTES.entries()) {
    const user = `user-${String(i)}`;
    const method = route.methods[0] ?? 'GET';
    reviews.length = 0;
    const answer = await k.fetch(samplePath(route.pattern), { method, token: user });
    const allowed = route.subresources.includes('proxy');
    assert.equal(answer.status === 403, !allowed, `${route.pattern}: ${String(answer.status)}`);
    const asked = allowed
      ? route.subresources.slice(0, route.subresources.indexOf('proxy') + 1)
      : route.subresources;
    assert.deepEqual(
      reviews,
      asked.map((subresource) => ({
        user,
        group: '',
        version: 'v1',
        resource: 'nodes',
        subresource,
        name: 'kubelet-test',
        verb: verbOf(method),
      })),
      route.pattern,
    );
  }
});

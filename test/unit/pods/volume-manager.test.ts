import { KubeConfig } from '@kubernetes/client-node';
import type { V1ConfigMap, V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { test, type TestContext } from 'node:test';
import { KubeClient } from '../../../src/kube/client.js';
import { EventRecorder } from '../../../src/kube/events.js';
import type { PodVolumes, Provider, ResolvedVolume } from '../../../src/provider.js';
import { PodVolumeManager } from '../../../src/pods/volume-manager.js';
import { waitFor } from '../../helpers/wait.js';

const NS = 'apps';

interface TokenRequestBody {
  spec: {
    audiences?: string[];
    expirationSeconds: number;
    boundObjectRef: { kind: string; name: string; uid: string };
  };
}

/** A fake API server: config maps from a map, tokens numbered t1, t2... living `ttlMs`. */
class FakeApi {
  readonly configMaps = new Map<string, V1ConfigMap>();
  readonly tokenRequests: { at: number; path: string; body: TokenRequestBody }[] = [];
  readonly events: string[] = [];
  configMapReads = 0;
  ttlMs = 3_600_000;
  /** Token requests after the first `tokensBeforeFailing` answer 500. */
  tokensBeforeFailing = Infinity;
  /** How far this server's clock is behind the agent's (its expirationTimestamp is that early). */
  clockBehindMs = 0;

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const cm = /^\/api\/v1\/namespaces\/[^/]+\/configmaps\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && cm) {
      this.configMapReads++;
      const found = this.configMaps.get(cm[1] ?? '');
      if (found) json(200, found);
      else json(404, { kind: 'Status', reason: 'NotFound', message: 'not found' });
      return;
    }
    if (req.method === 'POST' && url.pathname.endsWith('/token')) {
      this.tokenRequests.push({
        at: Date.now(),
        path: url.pathname,
        body: JSON.parse(text) as TokenRequestBody,
      });
      if (this.tokenRequests.length > this.tokensBeforeFailing) {
        json(500, { kind: 'Status', code: 500, message: 'etcd is unavailable' });
        return;
      }
      json(201, {
        spec: { expirationSeconds: this.ttlMs / 1000 },
        status: {
          token: `t${String(this.tokenRequests.length)}`,
          expirationTimestamp: new Date(Date.now() + this.ttlMs - this.clockBehindMs).toISOString(),
        },
      });
      return;
    }
    if (req.method === 'POST' && url.pathname.endsWith('/events')) {
      this.events.push((JSON.parse(text) as { message: string }).message);
      json(201, {});
      return;
    }
    json(404, { kind: 'Status', reason: 'NotFound', message: `no route ${url.pathname}` });
  }
}

/** A provider that only records setPodVolumes calls (the manager calls nothing else). */
class RecordingProvider {
  readonly calls: { pod: string; volumes: ResolvedVolume[] }[] = [];
  setPodVolumes(pod: V1Pod, volumes: readonly ResolvedVolume[]): Promise<void> {
    this.calls.push({ pod: pod.metadata?.name ?? '', volumes: structuredClone([...volumes]) });
    return Promise.resolve();
  }
  /** The text of `path` in the volume `name` of call `i`. */
  text(i: number, name: string, path: string): string | undefined {
    const file = this.calls[i]?.volumes
      .find((v) => v.name === name)
      ?.files.find((f) => f.path === path);
    return file ? Buffer.from(file.data).toString('utf8') : undefined;
  }
}

const pod: V1Pod = {
  metadata: { name: 'web', namespace: NS, uid: 'uid-1' },
  spec: {
    containers: [{ name: 'app', image: 'busybox' }],
    volumes: [
      { name: 'cfg', configMap: { name: 'cfg' } },
      {
        name: 'kube-api-access-abc',
        projected: {
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            {
              downwardAPI: {
                items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }],
              },
            },
          ],
        },
      },
    ],
  },
};

async function setup(
  t: TestContext,
  refreshPeriodMs: number,
): Promise<{
  api: FakeApi;
  provider: RecordingProvider;
  manager: PodVolumeManager;
  pods: Map<string, V1Pod>;
  start: () => Promise<void>;
}> {
  const api = new FakeApi();
  api.configMaps.set('cfg', { metadata: { name: 'cfg', namespace: NS }, data: { level: 'info' } });
  const server = createServer((req, res) => {
    void api.handle(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'c', server: `http://127.0.0.1:${String(address.port)}`, skipTLSVerify: true },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const client = await KubeClient.create(kc);
  const provider = new RecordingProvider();
  const pods = new Map<string, V1Pod>([[`${NS}/web`, pod]]);
  const manager = new PodVolumeManager({
    client,
    provider: provider as unknown as Provider & PodVolumes,
    events: new EventRecorder({ client, host: 'node-1' }),
    getPod: (key) => pods.get(key),
    refreshPeriodMs,
  });
  const stop = new AbortController();
  let running: Promise<void> | undefined;
  t.after(async () => {
    stop.abort();
    await running;
    client.close();
    server.close();
  });
  return {
    api,
    provider,
    manager,
    pods,
    start: async () => {
      running = manager.run(stop.signal);
      await Promise.resolve();
    },
  };
}

const never = new AbortController().signal;

test('a token is requested bound to the pod and refreshed after 80 % of its lifetime, alone', async (t) => {
  const { api, provider, manager, start } = await setup(t, 60_000);
  api.ttlMs = 2_000;
  const volumes = await manager.resolve(pod, never);
  const first = api.tokenRequests[0];
  assert.equal(api.tokenRequests.length, 1);
  assert.equal(first?.path, `/api/v1/namespaces/${NS}/serviceaccounts/default/token`);
  assert.deepEqual(first.body.spec, {
    expirationSeconds: 3607,
    boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'web', uid: 'uid-1' },
  });
  // Resolving again before the refresh is due reuses the token.
  await manager.resolve(pod, never);
  assert.equal(api.tokenRequests.length, 1);

  manager.track(pod, volumes);
  await start();
  await waitFor(() => provider.calls.length > 0, { what: 'a refresh', timeoutMs: 10_000 });
  const second = api.tokenRequests[1];
  assert.ok(second, 'a second token was requested');
  const age = second.at - first.at;
  // Due at 1.6 s after the request was sent; `first.at` is when it arrived, which on a loaded
  // machine can be a few hundred milliseconds later. Neither at once nor only at expiry.
  assert.ok(age >= 1_000 && age < 4_000, `refreshed after ${String(age)} ms`);
  // Only the token's volume changed; the config map volume was not passed again.
  assert.deepEqual(
    provider.calls[0]?.volumes.map((v) => v.name),
    ['kube-api-access-abc'],
  );
  assert.equal(provider.text(0, 'kube-api-access-abc', 'token'), 't2');
});

test('a changed config map is passed on at the next period; an unchanged one is not', async (t) => {
  const { api, provider, manager, start } = await setup(t, 200);
  manager.track(pod, await manager.resolve(pod, never));
  await start();
  // Several periods without changes: nothing is passed, no token is requested again.
  await waitFor(() => manager.stats().processed >= 3, {
    what: 'three refresh passes',
    timeoutMs: 5_000,
  });
  assert.equal(provider.calls.length, 0);
  assert.equal(api.tokenRequests.length, 1);

  api.configMaps.set('cfg', {
    metadata: { name: 'cfg', namespace: NS },
    data: { level: 'debug' },
  });
  await waitFor(() => provider.calls.length > 0, { what: 'the change', timeoutMs: 5_000 });
  assert.deepEqual(
    provider.calls[0]?.volumes.map((v) => v.name),
    ['cfg'],
  );
  assert.equal(provider.text(0, 'cfg', 'level'), 'debug');
});

test('a config map that disappears gives a FailedMount event and leaves the provider alone', async (t) => {
  const { api, provider, manager, start } = await setup(t, 100);
  manager.track(pod, await manager.resolve(pod, never));
  api.configMaps.delete('cfg');
  await start();
  await waitFor(() => api.events.length > 0, { what: 'an event', timeoutMs: 5_000 });
  assert.equal(
    api.events[0],
    'MountVolume.SetUp failed for volume "cfg" : configmap "cfg" not found',
  );
  assert.equal(provider.calls.length, 0);
});

test('an adopted pod gets all its volumes at once; a forgotten or deleted pod is dropped', async (t) => {
  const { provider, manager, pods, start } = await setup(t, 100);
  manager.adopt(pod);
  await start();
  await waitFor(() => provider.calls.length > 0, { what: 'the adoption push', timeoutMs: 5_000 });
  assert.deepEqual(
    provider.calls[0]?.volumes.map((v) => v.name),
    ['cfg', 'kube-api-access-abc'],
  );
  assert.equal(manager.size, 1);
  pods.delete(`${NS}/web`);
  await waitFor(() => manager.size === 0, { what: 'the pod to be dropped', timeoutMs: 5_000 });

  manager.track(pod, []);
  assert.equal(manager.size, 1);
  manager.forget(`${NS}/web`, 'another-uid');
  assert.equal(manager.size, 1, 'a different UID is left alone');
  manager.forget(`${NS}/web`, 'uid-1');
  assert.equal(manager.size, 0);
  assert.equal(manager.stats().delayed, 0);
});

test('pods of a namespace share one read of an object within a quarter of the period', async (t) => {
  const { api, manager } = await setup(t, 40_000);
  const other: V1Pod = { ...pod, metadata: { name: 'other', namespace: NS, uid: 'uid-2' } };
  await Promise.all([manager.resolve(pod, never), manager.resolve(other, never)]);
  await manager.resolve(pod, never);
  assert.equal(api.configMapReads, 1);
  // Absent objects are not kept: the pod waiting for one sees it at its next try.
  api.configMaps.delete('cfg');
  const missing: V1Pod = {
    ...pod,
    spec: { containers: [], volumes: [{ name: 'm', configMap: { name: 'late' } }] },
  };
  await assert.rejects(manager.resolve(missing, never), /configmap "late" not found/);
  api.configMaps.set('late', { metadata: { name: 'late', namespace: NS }, data: { a: 'b' } });
  const [v] = await manager.resolve(missing, never);
  assert.equal(v?.files[0]?.path, 'a');
});

test('a failing TokenRequest is retried with a growing delay, not at once again', async (t) => {
  const { api, manager, start } = await setup(t, 60_000);
  api.ttlMs = 1_000;
  api.tokensBeforeFailing = 1;
  manager.track(pod, await manager.resolve(pod, never));
  await start();
  // Due after 0.8 s; then it fails, and is tried again 1 s, 2 s, 4 s... later.
  await waitFor(() => api.tokenRequests.length >= 3 || undefined, {
    what: 'two retries',
    timeoutMs: 10_000,
  });
  const at = api.tokenRequests.map((r) => r.at);
  const gaps = at.slice(2).map((x, i) => x - (at[i + 1] ?? 0));
  assert.ok(
    gaps.every((g) => g >= 900),
    `retries ${JSON.stringify(gaps)} ms apart`,
  );
  assert.ok(api.tokenRequests.length <= 4, `${String(api.tokenRequests.length)} requests`);
});

test('the lifetime of a token comes from the answer, not from two clocks agreeing', async (t) => {
  const { api, manager, start } = await setup(t, 60_000);
  api.ttlMs = 3_000;
  // The API server's clock is an hour behind: its expiration time is already past for us.
  api.clockBehindMs = 3_600_000;
  manager.track(pod, await manager.resolve(pod, never));
  await start();
  await waitFor(() => api.tokenRequests.length >= 2 || undefined, {
    what: 'the refresh',
    timeoutMs: 10_000,
  });
  const [first, second] = api.tokenRequests;
  const age = (second?.at ?? 0) - (first?.at ?? 0);
  assert.ok(age >= 2_000, `refreshed after ${String(age)} ms, expected about 2 400`);
});

import { KubeConfig } from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { test } from 'node:test';
import { KubeClient } from '../../../src/kube/client.js';
import { Informer, type KubeObject } from '../../../src/kube/informer.js';
import { waitFor } from '../../helpers/wait.js';

const obj = (name: string, rv: string): KubeObject & { metadata: { managedFields?: unknown } } => ({
  metadata: {
    name,
    namespace: 'ns',
    resourceVersion: rv,
    uid: name,
    managedFields: [{ big: true }],
  },
});

/** An API server that answers from a script: list answers in order, watch answers by resourceVersion. */
function scriptedServer(
  lists: ((res: ServerResponse) => void)[],
  watches: Record<string, (res: ServerResponse) => void>,
) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('watch') === 'true') {
      const rv = url.searchParams.get('resourceVersion') ?? '';
      seen.push(`watch@${rv}`);
      const answer = watches[rv];
      if (answer) answer(res);
      else res.writeHead(500).end();
      return;
    }
    seen.push('list');
    const answer = lists.shift();
    if (answer) answer(res);
    else res.writeHead(500).end();
  });
  return { server, seen };
}

const json = (res: ServerResponse, body: unknown, status = 200): void => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};
const events = (res: ServerResponse, lines: unknown[], keepOpen = false): void => {
  res.writeHead(200, { 'content-type': 'application/json' });
  for (const l of lines) res.write(JSON.stringify(l) + '\n');
  if (!keepOpen) res.end();
};

test('the informer hands out old and new objects, follows bookmarks, relists after 410 Gone and retries errors', async (t) => {
  const open: ServerResponse[] = [];
  const { server, seen } = scriptedServer(
    [
      (res) => json(res, { kind: 'Status', code: 500, message: 'etcd is sad' }, 500),
      (res) =>
        json(res, { metadata: { resourceVersion: '10' }, items: [obj('a', '1'), obj('b', '2')] }),
      (res) =>
        json(res, { metadata: { resourceVersion: '20' }, items: [obj('a', '5'), obj('c', '6')] }),
    ],
    {
      '10': (res) =>
        events(res, [
          { type: 'MODIFIED', object: obj('b', '11') },
          { type: 'BOOKMARK', object: { metadata: { resourceVersion: '12' } } },
        ]),
      '12': (res) =>
        events(res, [{ type: 'ERROR', object: { kind: 'Status', code: 410, message: 'too old' } }]),
      '20': (res) => {
        open.push(res);
        events(res, [{ type: 'ADDED', object: obj('d', '21') }], true);
      },
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const r of open) r.end();
    server.close();
  });
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
  t.after(() => client.close());

  const log: string[] = [];
  const name = (o: KubeObject): string =>
    `${o.metadata?.name ?? ''}@${o.metadata?.resourceVersion ?? ''}`;
  const informer = new Informer<KubeObject>({
    client,
    path: '/api/v1/pods',
    handlers: {
      onAdd: (o) => log.push(`add ${name(o)}`),
      onUpdate: (o, n) => log.push(`update ${name(o)} -> ${name(n)}`),
      onDelete: (o) => log.push(`delete ${name(o)}`),
    },
  });
  const stop = new AbortController();
  const running = informer.run(stop.signal);
  await informer.whenSynced();
  await waitFor(() => log.includes('add d@21'), {
    what: 'the last watch event',
    timeoutMs: 10_000,
  });
  stop.abort();
  for (const r of open) r.end();
  await running;

  assert.deepEqual(log, [
    'add a@1',
    'add b@2',
    'update b@2 -> b@11',
    // The relist after 410 Gone: what vanished is deleted, what changed is updated.
    'delete b@11',
    'update a@1 -> a@5',
    'add c@6',
    'add d@21',
  ]);
  assert.deepEqual(seen, ['list', 'list', 'watch@10', 'watch@12', 'list', 'watch@20']);
  assert.deepEqual([...informer.list()].map(name).sort(), ['a@5', 'c@6', 'd@21']);
  assert.equal(
    (informer.get('ns/a')?.metadata as { managedFields?: unknown }).managedFields,
    undefined,
  );
});

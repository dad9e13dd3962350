import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import { SharedInformer } from '../../../src/kube/shared-informer.js';
import { localApi } from '../../helpers/local-api.js';
import { waitFor } from '../../helpers/wait.js';

interface Pod {
  metadata: { name: string; namespace: string; resourceVersion: string; uid: string };
  spec: { nodeName: string };
}
const pod = (name: string, node: string, rv: string): Pod => ({
  metadata: { name, namespace: 'ns', resourceVersion: rv, uid: name },
  spec: { nodeName: node },
});

test('a shared informer hands each view only its own objects, and caches no others', async (t) => {
  const open: ServerResponse[] = [];
  let query = '';
  const { client } = await localApi(t, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('watch') === 'true') {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (const e of [
        { type: 'ADDED', object: pod('b2', 'b', '11') },
        { type: 'ADDED', object: pod('other2', 'z', '12') },
        { type: 'MODIFIED', object: pod('a1', 'a', '13') },
        { type: 'DELETED', object: pod('b1', 'b', '14') },
      ])
        res.write(JSON.stringify(e) + '\n');
      open.push(res);
      return;
    }
    query = url.searchParams.get('fieldSelector') ?? '';
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        metadata: { resourceVersion: '10' },
        items: [pod('a1', 'a', '1'), pod('b1', 'b', '2'), pod('other', 'z', '3')],
      }),
    );
  });
  t.after(() => {
    for (const r of open) r.end();
  });

  const shared = new SharedInformer<Pod>({
    client,
    path: '/api/v1/pods',
    fieldSelector: 'spec.nodeName!=',
    partition: (p) => p.spec.nodeName,
  });
  const seen: string[] = [];
  const handlers = (node: string) => ({
    onAdd: (p: Pod) => seen.push(`${node}+${p.metadata.name}`),
    onUpdate: (_o: Pod, p: Pod) =>
      seen.push(`${node}~${p.metadata.name}@${p.metadata.resourceVersion}`),
    onDelete: (p: Pod) => seen.push(`${node}-${p.metadata.name}`),
  });
  const a = shared.view('a', handlers('a'));
  const b = shared.view('b', handlers('b'));
  assert.throws(() => shared.view('a'), /exists already/);
  const stop = new AbortController();
  const running = shared.run(stop.signal);
  const viewRun = a.run(stop.signal);
  await a.whenSynced();
  await waitFor(() => seen.length === 5 || undefined, { what: 'every event of views a and b' });
  assert.equal(query, 'spec.nodeName!=');
  assert.deepEqual(seen, ['a+a1', 'b+b1', 'b+b2', 'a~a1@13', 'b-b1']);
  assert.deepEqual(
    [...a.list()].map((p) => p.metadata.name),
    ['a1'],
  );
  assert.deepEqual(
    [...b.list()].map((p) => p.metadata.name),
    ['b2'],
  );
  assert.equal(a.get('ns/a1')?.metadata.resourceVersion, '13');
  // Pods of nodes without a view are not kept.
  assert.equal(shared.size, 2);
  // A view made now would miss what was listed: refused.
  assert.throws(() => shared.view('c'), /must be made before run/);
  stop.abort();
  await Promise.all([running, viewRun]);
});

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { KubeClient } from '../../../src/kube/client.js';
import { EventRecorder, MAX_SEEN } from '../../../src/kube/events.js';
import { localApi } from '../../helpers/local-api.js';
import { waitFor } from '../../helpers/wait.js';

/** An API server that accepts every Event and remembers when each arrived. */
async function eventSink(t: TestContext): Promise<{ client: KubeClient; arrivals: number[] }> {
  const arrivals: number[] = [];
  const { client } = await localApi(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      arrivals.push(performance.now());
      res.writeHead(201, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return { client, arrivals };
}

const pod = (i: number) => ({ kind: 'Pod', metadata: { name: `p${String(i)}`, namespace: 'ns' } });

test('events are written at most qps per second after a burst, as the kubelet limits them', async (t) => {
  const { client, arrivals } = await eventSink(t);
  const events = new EventRecorder({ client, host: 'n', qps: 20, burst: 3 });
  const started = performance.now();
  for (let i = 0; i < 9; i++) events.record(pod(i), 'Normal', 'R', 'm');
  await waitFor(() => arrivals.length === 9 || undefined, { what: 'every event written' });
  // 3 at once, then 6 more at 20 per second: the last no sooner than 300 ms after the start. (How
  // soon the burst arrives is not asserted: a busy machine only delays it.)
  assert.ok((arrivals[8] ?? 0) - started >= 250, `took ${String((arrivals[8] ?? 0) - started)} ms`);
  events.close();
});

test('close drops what is queued and records nothing more', async (t) => {
  const { client, arrivals } = await eventSink(t);
  const events = new EventRecorder({ client, host: 'n', qps: 1, burst: 1 });
  for (let i = 0; i < 5; i++) events.record(pod(i), 'Normal', 'R', 'm');
  await waitFor(() => arrivals.length === 1 || undefined, { what: 'the first event' });
  events.close();
  events.record(pod(9), 'Normal', 'R', 'm');
  await events.flush(2_000);
  assert.equal(arrivals.length, 1);
});

test('the same event recorded twice at once is one Event counted twice, never two Events', async (t) => {
  const requests: { method: string; url: string; body: string }[] = [];
  // Creates answer slowly, so the second record of the event arrives while the first is written.
  const { client } = await localApi(t, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body });
      const answer = (): void => {
        res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' });
        res.end('{}');
      };
      if (req.method === 'POST') setTimeout(answer, 100);
      else answer();
    });
  });
  const events = new EventRecorder({ client, host: 'n', qps: 0 });
  events.record(pod(1), 'Warning', 'FailedMount', 'no such secret');
  events.record(pod(1), 'Warning', 'FailedMount', 'no such secret');
  await waitFor(() => requests.length === 2 || undefined, { what: 'two writes' });
  await events.flush();
  assert.deepEqual(
    requests.map((r) => r.method),
    ['POST', 'PATCH'],
  );
  assert.equal((JSON.parse(requests[1]?.body ?? '{}') as { count?: number }).count, 2);
  events.close();
});

test('repeats are counted for the last 4096 distinct events; an older one is written anew', async (t) => {
  const methods: string[] = [];
  const { client } = await localApi(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      methods.push(req.method ?? '');
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  const events = new EventRecorder({ client, host: 'n', qps: 0 });
  const write = async (i: number): Promise<void> => {
    events.record(pod(i), 'Normal', 'R', 'm');
    await events.flush();
  };
  await write(0);
  await write(1);
  // Still remembered: counted on the Event it wrote.
  await write(0);
  assert.deepEqual(methods, ['POST', 'POST', 'PATCH']);
  // 0 was used after 1: once MAX_SEEN others come, 1 falls out first, then 0.
  // In batches: the recorder queues at most 1 000.
  for (let i = 2; i < 2 + MAX_SEEN - 1; i++) {
    events.record(pod(i), 'Normal', 'R', 'm');
    if (i % 500 === 0) await events.flush(30_000);
  }
  await events.flush();
  assert.equal(methods.length, 3 + MAX_SEEN - 1, 'every other event written');
  methods.length = 0;
  await write(0);
  await write(1);
  assert.deepEqual(methods, ['PATCH', 'POST'], '0 still counted, 1 written anew');
  events.close();
});

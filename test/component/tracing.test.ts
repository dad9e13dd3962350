import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { context, propagation, trace } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  NodeTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-node';
import { request } from 'node:https';
import { MockProvider } from '../../src/providers/mock/index.js';
import { FakeApi } from '../helpers/fake-api.js';
import { startKubeletServer } from '../helpers/kubelet-server.js';
import { runPodController, testPod, waitPodPhase } from '../helpers/pod-controller.js';
import { waitFor } from '../helpers/wait.js';

const NODE = 'traced-node';
const NS = 'apps';
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };

/** Registers an SDK that keeps every span in memory, until the test ends. */
function recordSpans(t: TestContext): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  provider.register();
  t.after(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });
  return exporter;
}

const parentOf = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId;

for (const notify of [true, false]) {
  describe(`tracing, ${notify ? 'push' : 'polling'} provider`, () => {
    test("a pod's watch event, its sync and the provider's createPod are one trace, parent to child", async (t) => {
      const spans = recordSpans(t);
      const api = await FakeApi.start(t);
      const provider = new MockProvider({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
      t.after(() => provider.close());
      await runPodController(t, api, provider, { nodeName: NODE });
      const created = api.create('pods', testPod(NS, NODE, 'web'));
      const uid = created.metadata?.uid ?? '';
      await waitPodPhase(api, NS, 'web', 'Running', WAIT);

      const find = (name: string): ReadableSpan[] =>
        spans
          .getFinishedSpans()
          .filter((s) => s.name === name && s.attributes['k8s.pod.name'] === 'web');
      await waitFor(() => find('provider createPod').length > 0, WAIT);
      const [create] = find('provider createPod');
      assert.ok(create);
      const sync = find('pod sync').find((s) => s.spanContext().spanId === parentOf(create));
      assert.ok(sync, 'the createPod span is the child of a pod sync span');
      const event = find('pod ADDED')[0];
      assert.ok(event);
      assert.equal(parentOf(sync), event.spanContext().spanId, 'the sync continues the event');
      assert.equal(sync.spanContext().traceId, event.spanContext().traceId);
      assert.equal(create.spanContext().traceId, event.spanContext().traceId);
      for (const s of [event, sync, create]) {
        assert.equal(s.attributes['k8s.node.name'], NODE, s.name);
        assert.equal(s.attributes['k8s.namespace.name'], NS, s.name);
        assert.equal(s.attributes['k8s.pod.uid'], uid, s.name);
      }
      assert.equal(create.attributes['virtual_kubelet.provider.method'], 'createPod');

      // The status write that made the pod Running, and its PATCH to the API server under it.
      await waitFor(
        () => find('pod status write').some((s) => s.attributes['k8s.pod.phase'] === 'Running'),
        WAIT,
      );
      const write = find('pod status write').find(
        (s) => s.attributes['k8s.pod.phase'] === 'Running',
      );
      assert.ok(write);
      const patch = spans
        .getFinishedSpans()
        .find((s) => s.name === 'PATCH' && parentOf(s) === write.spanContext().spanId);
      assert.ok(patch, 'the status PATCH is the child of the status write');
      assert.equal(patch.attributes['http.response.status_code'], 200);
      assert.match(String(patch.attributes['url.path']), /\/pods\/web\/status$/);
    });
  });
}

test('a failed provider call marks its span failed and the retry joins the same trace', async (t) => {
  const spans = recordSpans(t);
  const api = await FakeApi.start(t);
  let failures = 1;
  class FlakyMock extends MockProvider {
    override async createPod(
      pod: Parameters<MockProvider['createPod']>[0],
      signal: AbortSignal,
    ): Promise<void> {
      if (failures-- > 0) throw new Error('backend busy');
      await super.createPod(pod, signal);
    }
  }
  const provider = new FlakyMock({ nodeName: NODE, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  await runPodController(t, api, provider, { nodeName: NODE });
  api.create('pods', testPod(NS, NODE, 'flaky', { restartPolicy: 'Always' }));
  await waitPodPhase(api, NS, 'flaky', 'Running', WAIT);
  await waitFor(
    () => spans.getFinishedSpans().filter((s) => s.name === 'provider createPod').length >= 2,
    WAIT,
  );
  const creates = spans.getFinishedSpans().filter((s) => s.name === 'provider createPod');
  const [failed, ok] = creates;
  assert.ok(failed && ok);
  assert.equal(failed.status.code, 2, 'the failed call has status ERROR');
  assert.equal(ok.status.code, 0);
  assert.equal(failed.spanContext().traceId, ok.spanContext().traceId);
});

test("a kubelet API request is a server span with the pod and container, continuing the caller's trace", async (t) => {
  const spans = recordSpans(t);
  const provider = new MockProvider({ nodeName: 'kubelet-test' });
  t.after(() => provider.close());
  const pod = testPod('default', 'kubelet-test', 'web');
  pod.metadata = { ...pod.metadata, uid: 'uid-1' };
  await provider.createPod(structuredClone(pod), AbortSignal.timeout(5_000));
  const kubelet = await startKubeletServer(t, { provider });
  kubelet.pods.add(pod);
  const traceId = '0af7651916cd43dd8448eb211c80319c';
  const callerSpan = 'b7ad6b7169203331';
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: kubelet.port,
        path: '/containerLogs/default/web/app?tailLines=1',
        rejectUnauthorized: false,
        agent: false,
        headers: {
          authorization: 'Bearer alice',
          traceparent: `00-${traceId}-${callerSpan}-01`,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
  const served = await waitFor(
    () => spans.getFinishedSpans().find((s) => s.name === 'GET /containerLogs'),
    WAIT,
  );
  assert.equal(served.kind, 1, 'SpanKind.SERVER');
  assert.equal(served.spanContext().traceId, traceId);
  assert.equal(parentOf(served), callerSpan);
  assert.equal(served.attributes['k8s.node.name'], 'kubelet-test');
  assert.equal(served.attributes['k8s.namespace.name'], 'default');
  assert.equal(served.attributes['k8s.pod.name'], 'web');
  assert.equal(served.attributes['k8s.container.name'], 'app');
  assert.equal(served.attributes['http.response.status_code'], 200);
});

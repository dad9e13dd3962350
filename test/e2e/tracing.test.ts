import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePorts } from '../../src/devcluster/cluster.js';
import { ensureJaeger, startJaeger, type JaegerInstance } from '../../src/devcluster/jaeger.js';
import {
  nodeKubeconfig,
  onNode,
  servingCertificate,
  spawnAgent,
  uniqueNodeName,
  waitNodeReady,
} from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

/** A span as Jaeger's query API (`/api/traces`) returns it. */
interface JaegerSpan {
  readonly traceID: string;
  readonly spanID: string;
  readonly operationName: string;
  readonly references?: readonly { refType: string; traceID: string; spanID: string }[];
  readonly tags: readonly { key: string; value: unknown }[];
}

interface JaegerTrace {
  readonly traceID: string;
  readonly spans: readonly JaegerSpan[];
}

const tag = (span: JaegerSpan, key: string): unknown => span.tags.find((t) => t.key === key)?.value;
const parentOf = (span: JaegerSpan): string | undefined =>
  span.references?.find((r) => r.refType === 'CHILD_OF')?.spanID;

/** The traces of `service` that have a span `operation` with the tag k8s.pod.name `pod`. */
async function traces(
  jaeger: JaegerInstance,
  service: string,
  operation: string,
  pod: string,
): Promise<JaegerTrace[]> {
  const url = new URL('/api/traces', jaeger.queryUrl);
  url.searchParams.set('service', service);
  url.searchParams.set('operation', operation);
  url.searchParams.set('tags', JSON.stringify({ 'k8s.pod.name': pod }));
  url.searchParams.set('lookback', '1h');
  url.searchParams.set('limit', '100');
  const res = await fetch(url);
  if (!res.ok) return [];
  return ((await res.json()) as { data: JaegerTrace[] | null }).data ?? [];
}

// The first run builds Jaeger (many minutes, once; .ci/run builds it before the tests).
test(
  "the agent's spans reach Jaeger: a pod's sync and its provider call, parent and child, and a kubectl logs",
  { timeout: 60 * 60_000 },
  async (t) => {
    const { binary } = await ensureJaeger({ progress: (line) => t.diagnostic(line) });
    const jaeger = await startJaeger({
      binary,
      dir: join(testCluster().dir, `jaeger-${randomBytes(3).toString('hex')}`),
    });
    t.after(() => jaeger.stop());

    const nodeName = uniqueNodeName('traced');
    const service = `vk-e2e-${randomBytes(3).toString('hex')}`;
    const { pkiDir } = testCluster();
    await servingCertificate(nodeName);
    const [port] = await freePorts(1);
    const providerConfig = join(testCluster().dir, `mock-${nodeName}.json`);
    await writeFile(providerConfig, JSON.stringify({ logIntervalMs: 200 }));
    const agent = spawnAgent(
      t,
      [
        '--kubeconfig',
        await nodeKubeconfig(nodeName),
        '--nodename',
        nodeName,
        '--provider',
        'mock',
        '--provider-config',
        providerConfig,
        '--node-ip',
        '127.0.0.1',
        '--listen-port',
        String(port),
        '--tls-cert-file',
        join(pkiDir, `serving-${nodeName}.crt`),
        '--tls-private-key-file',
        join(pkiDir, `serving-${nodeName}.key`),
        '--trace-sample-rate',
        'always',
      ],
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint,
        OTEL_SERVICE_NAME: service,
        // Batches leave every 200 ms instead of 5 s, so the test need not wait.
        OTEL_BSP_SCHEDULE_DELAY: '200',
      },
    );
    // Generous: on a loaded machine the agent alone may take tens of seconds to start.
    await waitNodeReady(nodeName, 'True', 180_000).catch(async (err: unknown) => {
      throw new Error(`${String(err)}\nagent output:\n${await agent.logs()}`);
    });
    assert.match(await agent.logs(), /tracing on: spans go over OTLP\/HTTP/);

    const ns = await testNamespace(t);
    const core = testCluster().kc.makeApiClient(k8s.CoreV1Api);
    const created = await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'traced' },
        spec: { ...onNode(nodeName), containers: [{ name: 'app', image: 'busybox' }] },
      },
    });
    const uid = created.metadata?.uid ?? '';
    await waitFor(
      async () =>
        (await core.readNamespacedPod({ name: 'traced', namespace: ns })).status?.phase ===
        'Running',
      { what: 'pod traced Running', timeoutMs: 120_000 },
    );
    const logs = await waitFor(
      async () => {
        const r = await kubectl(['logs', 'traced', '-n', ns], { allowFailure: true });
        return r.code === 0 && r.stdout.length > 0 ? r.stdout : undefined;
      },
      { what: 'kubectl logs traced', timeoutMs: 120_000 },
    );
    assert.ok(logs.length > 0);

    // The pod's create: watch event -> sync -> provider createPod, one trace.
    const [createTrace] = await waitFor(
      async () => {
        const found = await traces(jaeger, service, 'provider createPod', 'traced');
        return found.length > 0 ? found : undefined;
      },
      { what: 'a trace with the provider createPod span in Jaeger', timeoutMs: 60_000 },
    );
    assert.ok(createTrace);
    const spans = createTrace.spans;
    const byId = new Map(spans.map((s) => [s.spanID, s]));
    const create = spans.find((s) => s.operationName === 'provider createPod');
    assert.ok(create);
    const sync = byId.get(parentOf(create) ?? '');
    assert.equal(sync?.operationName, 'pod sync', 'createPod is the child of the pod sync');
    const event = byId.get(parentOf(sync) ?? '');
    assert.equal(event?.operationName, 'pod ADDED', 'the sync continues the watch event');
    for (const s of [event, sync, create]) {
      assert.equal(tag(s, 'k8s.node.name'), nodeName, s.operationName);
      assert.equal(tag(s, 'k8s.namespace.name'), ns, s.operationName);
      assert.equal(tag(s, 'k8s.pod.name'), 'traced', s.operationName);
      assert.equal(tag(s, 'k8s.pod.uid'), uid, s.operationName);
    }
    // The provider's getPod before it, a sibling under the same sync.
    assert.ok(
      spans.some((s) => s.operationName === 'provider getPod' && parentOf(s) === sync.spanID),
      'the sync also asked the provider for the pod first',
    );

    // The status write that made it Running, with its PATCH to the API server as a child.
    const [statusTrace] = await waitFor(
      async () => {
        const found = await traces(jaeger, service, 'pod status write', 'traced');
        const running = found.filter((tr) =>
          tr.spans.some(
            (s) => s.operationName === 'pod status write' && tag(s, 'k8s.pod.phase') === 'Running',
          ),
        );
        return running.length > 0 ? running : undefined;
      },
      { what: 'the Running status write in Jaeger', timeoutMs: 60_000 },
    );
    assert.ok(statusTrace);
    const write = statusTrace.spans.find(
      (s) => s.operationName === 'pod status write' && tag(s, 'k8s.pod.phase') === 'Running',
    );
    assert.ok(write);
    assert.equal(tag(write, 'k8s.pod.uid'), uid);
    const patch = statusTrace.spans.find(
      (s) => s.operationName === 'PATCH' && parentOf(s) === write.spanID,
    );
    assert.ok(patch, 'the status PATCH is the child of the status write');
    assert.equal(tag(patch, 'span.kind'), 'client');
    assert.match(
      String(tag(patch, 'url.path')),
      new RegExp(`/namespaces/${ns}/pods/traced/status$`),
    );

    // kubectl logs: the API server calls the kubelet API; a server span per request.
    const [logsTrace] = await waitFor(
      async () => {
        const found = await traces(jaeger, service, 'GET /containerLogs', 'traced');
        return found.length > 0 ? found : undefined;
      },
      { what: 'the kubelet API span of kubectl logs in Jaeger', timeoutMs: 60_000 },
    );
    const served = logsTrace?.spans.find((s) => s.operationName === 'GET /containerLogs');
    assert.ok(served);
    assert.equal(tag(served, 'span.kind'), 'server');
    assert.equal(tag(served, 'k8s.node.name'), nodeName);
    assert.equal(tag(served, 'k8s.namespace.name'), ns);
    assert.equal(tag(served, 'k8s.container.name'), 'app');
    assert.equal(tag(served, 'http.response.status_code'), 200);
  },
);

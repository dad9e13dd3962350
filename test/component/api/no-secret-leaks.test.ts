import type { V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Logger } from '../../../src/log.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { runPodController } from '../../helpers/pod-controller.js';
import { startKubeletServer } from '../../helpers/kubelet-server.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'kubelet-test';
const SECRET = 'hunter2-from-the-secret';
const LITERAL = 'literal-but-private';
const WAIT = { timeoutMs: 5_000, intervalMs: 20 };

/** Every line a logger would write, as pino would serialize it, at every level. */
function capturingLogger(lines: string[], bindings: Record<string, unknown> = {}): Logger {
  const errors = (_: string, v: unknown): unknown =>
    v instanceof Error ? { ...v, message: v.message, stack: v.stack } : v;
  const write =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      const fields = typeof obj === 'string' ? { msg: obj } : { ...obj, msg };
      lines.push(JSON.stringify({ level, ...bindings, ...fields }, errors));
    };
  return {
    error: write('error'),
    warn: write('warn'),
    info: write('info'),
    debug: write('debug'),
    child: (more) => capturingLogger(lines, { ...bindings, ...more }),
  };
}

const POD: V1Pod = {
  metadata: { namespace: 'apps', name: 'web' },
  spec: {
    nodeName: NODE,
    containers: [
      {
        name: 'app',
        image: 'registry.example/app:1',
        command: ['sh', '-c', 'echo $(PASSWORD)'],
        env: [
          { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'pw' } } },
          { name: 'PLAIN', value: LITERAL },
        ],
      },
    ],
  },
};

test('a pod with a Secret in its env: the value is in no log line, /pods or /runningpods', async (t) => {
  const lines: string[] = [];
  const logger = capturingLogger(lines);
  const api = await FakeApi.start(t);
  api.create('secrets', {
    metadata: { namespace: 'apps', name: 'creds' },
    data: { pw: Buffer.from(SECRET).toString('base64') },
  });
  const provider = new MockProvider({ nodeName: NODE, logger, config: { logIntervalMs: 0 } });
  t.after(() => provider.close());
  const { controller } = await runPodController(t, api, provider, {
    nodeName: NODE,
    logger,
    // The controller's own backoff ceiling.
    maxBackoffMs: undefined,
  });
  const kubelet = await startKubeletServer(t, { provider });
  const { uid } = api.create('pods', structuredClone(POD)).metadata ?? {};
  // The provider has the resolved value: what follows is not vacuous.
  const given = await waitFor(async () => {
    const pods = await provider.getPods(AbortSignal.timeout(1_000));
    return pods.find((p) => p.spec?.containers[0]?.env?.some((e) => e.value === SECRET));
  }, WAIT);
  assert.equal(given.metadata?.uid, uid);
  await waitFor(() => api.get('pods', 'apps', 'web')?.status?.phase === 'Running', WAIT);
  for (const p of controller.listPods()) kubelet.pods.add(p);

  const answers = {
    pods: await kubelet.fetch('/pods', { token: 'alice' }),
    runningpods: await kubelet.fetch('/runningpods/', { token: 'alice' }),
  };
  for (const [path, answer] of Object.entries(answers)) {
    assert.equal(answer.status, 200, path);
    assert.ok(!answer.body.includes(SECRET), `${path} has the Secret's value`);
  }
  // The API's own objects: the reference is there, nothing resolved.
  const pods = JSON.parse(answers.pods.body) as { items: V1Pod[] };
  assert.deepEqual(pods.items[0]?.spec?.containers[0]?.env, POD.spec?.containers[0]?.env);
  // The runtime's view, as the kubelet gives it: names, UID, images.
  assert.deepEqual(JSON.parse(answers.runningpods.body), {
    kind: 'PodList',
    apiVersion: 'v1',
    metadata: {},
    items: [
      {
        metadata: { name: 'web', namespace: 'apps', uid },
        spec: { containers: [{ name: 'app', image: 'registry.example/app:1' }] },
      },
    ],
  });

  api.update('pods', 'apps', 'web', (p) => {
    p.metadata = { ...p.metadata, labels: { changed: 'yes' } };
  });
  api.deletePod('apps', 'web', 0);
  await waitFor(
    async () => (await provider.getPods(AbortSignal.timeout(1_000))).length === 0,
    WAIT,
  );
  assert.ok(
    lines.some((l) => l.includes('"level":"debug"')),
    'debug lines were captured',
  );
  const secretB64 = Buffer.from(SECRET).toString('base64');
  for (const line of lines) {
    assert.ok(!line.includes(SECRET) && !line.includes(secretB64), `a log line leaks: ${line}`);
    assert.ok(!line.includes(LITERAL), `a log line prints an env value: ${line}`);
  }
});

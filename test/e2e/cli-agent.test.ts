import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePorts } from '../../src/devcluster/cluster.js';
import { nodeKubeconfig, spawnAgent, uniqueNodeName, waitNodeReady } from '../helpers/agent.js';
import { testCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

/** Exit code and output of an agent that is expected to stop by itself. */
async function runToExit(
  t: Parameters<typeof spawnAgent>[0],
  args: string[],
): Promise<{ code: number | string; output: string }> {
  const agent = spawnAgent(t, args);
  const code = await agent.exited;
  return { code, output: (await agent.logs()).trim() };
}

/** The output is one line for a person: no stack trace, no JSON log. */
function assertOneLine(output: string, pattern: RegExp): void {
  assert.equal(output.split('\n').length, 1, `expected one line, got:\n${output}`);
  assert.match(output, pattern);
  assert.match(output, /^virtual-kubelet: /);
}

test('a missing kubeconfig is one line and a non-zero exit', async (t) => {
  const r = await runToExit(t, [
    '--kubeconfig',
    '/nonexistent/kubeconfig',
    '--nodename',
    uniqueNodeName('cli'),
  ]);
  assert.equal(r.code, 1);
  assertOneLine(r.output, /cannot load the kubeconfig \/nonexistent\/kubeconfig/);
});

test('an unreachable API server is one line and a non-zero exit', async (t) => {
  const [port] = await freePorts(1);
  const path = join(testCluster().dir, 'unreachable.kubeconfig');
  const text = await readFile(testCluster().kubeconfigPath, 'utf8');
  await writeFile(path, text.replace(/server: .*/, `server: https://127.0.0.1:${String(port)}`));
  const r = await runToExit(t, ['--kubeconfig', path, '--nodename', uniqueNodeName('cli')]);
  assert.equal(r.code, 1);
  assertOneLine(r.output, /cannot reach the API server at https:\/\/127\.0\.0\.1:\d+/);
});

test('an unknown provider is one line naming the known ones', async (t) => {
  const r = await runToExit(t, [
    '--kubeconfig',
    testCluster().kubeconfigPath,
    '--provider',
    'nomad-ish',
  ]);
  assert.equal(r.code, 1);
  assertOneLine(r.output, /unknown provider 'nomad-ish': choose one of mock, mock-polling/);
});

test('a bad provider config is one line naming the field', async (t) => {
  const path = join(testCluster().dir, 'bad-mock.json');
  await writeFile(path, JSON.stringify({ faults: { createPod: { errorRate: 7 } } }));
  const r = await runToExit(t, [
    '--kubeconfig',
    testCluster().kubeconfigPath,
    '--provider-config',
    path,
  ]);
  assert.equal(r.code, 1);
  assertOneLine(r.output, /faults\.createPod\.errorRate must be a number between 0 and 1/);
});

test('a node name taken by a real kubelet is refused in one line', async (t) => {
  const name = uniqueNodeName('real');
  const core = testCluster().kc.makeApiClient(k8s.CoreV1Api);
  await core.createNode({ body: { metadata: { name } } });
  t.after(() => core.deleteNode({ name }).catch(() => undefined));
  await core.patchNodeStatus(
    { name, body: { status: { nodeInfo: { kubeletVersion: 'v1.37.2' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  const r = await runToExit(t, ['--kubeconfig', testCluster().kubeconfigPath, '--nodename', name]);
  assert.equal(r.code, 1);
  assertOneLine(
    r.output
      .split('\n')
      .filter((l) => !l.startsWith('{'))
      .join('\n'),
    /is registered by a real kubelet \(v1\.37\.2\): choose another --nodename/,
  );
});

test('the CLI runs a Ready node with a node identity and stops cleanly on SIGTERM', async (t) => {
  const name = uniqueNodeName('cli');
  const [port] = await freePorts(1);
  const agent = spawnAgent(t, [
    '--listen-port',
    String(port),
    '--kubeconfig',
    await nodeKubeconfig(name),
    '--nodename',
    name,
    '--node-ip',
    '127.0.0.1',
    '--provider',
    'mock-polling',
  ]);
  await waitNodeReady(name);
  await waitFor(async () => /virtual node ready/.test(await agent.logs()), {
    what: 'the agent to be ready',
  });
  agent.child.kill('SIGTERM');
  assert.equal(await agent.exited, 0);
  const logs = await agent.logs();
  assert.match(logs, /virtual node ready/);
  assert.match(logs, /SIGTERM: shutting down/);
});

import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseMockConfig, readMockState } from '../../../../src/providers/mock/index.js';
import { mock, pod, signal } from './helpers.js';

function stateFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vk-mock-state-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return join(dir, 'state.jsonl');
}

test('pods in the state file run again in a new provider, without a second create', async (t) => {
  const file = stateFile(t);
  const first = mock({ config: { stateFile: file } }).provider;
  await first.createPod(pod('a'), signal);
  await first.createPod(pod('b', { containers: [{ name: 'main', image: 'v1' }] }), signal);
  await first.updatePod(pod('b', { containers: [{ name: 'main', image: 'v2' }] }), signal);
  await first.createPod(pod('c'), signal);
  await first.deletePod(pod('c'), signal);
  // No close(): the process that ran it is gone, as after a kill -9.

  const second = mock({ config: { stateFile: file } }).provider;
  t.after(() => second.close());
  const pods = await second.getPods(signal);
  assert.deepEqual(pods.map((p) => p.metadata?.name).sort(), ['a', 'b']);
  const b = pods.find((p) => p.metadata?.name === 'b');
  assert.equal(b?.spec?.containers[0]?.image, 'v2');
  assert.equal(b?.status?.phase, 'Running');
  assert.equal(b?.status?.containerStatuses?.[0]?.state?.running !== undefined, true);

  // The agent's create after its restart finds the pod running: no second start.
  await second.createPod(pod('a'), signal);
  const state = readMockState(file);
  assert.deepEqual([...state.creates].sort(), [
    ['uid-a', 1],
    ['uid-b', 1],
    ['uid-c', 1],
  ]);
  assert.deepEqual([...state.pods.keys()].sort(), ['ns/a', 'ns/b']);
});

test('a create after a forget, or of a new UID under the same name, counts again', async (t) => {
  const file = stateFile(t);
  const { provider } = mock({ config: { stateFile: file } });
  t.after(() => provider.close());
  await provider.createPod(pod('a'), signal);
  provider.forgetPod('ns', 'a');
  await provider.createPod(pod('a'), signal);
  await provider.createPod(
    { ...pod('a'), metadata: { namespace: 'ns', name: 'a', uid: 'new' } },
    signal,
  );
  const state = readMockState(file);
  assert.equal(state.creates.get('uid-a'), 2);
  assert.equal(state.creates.get('new'), 1);
  assert.equal(state.pods.get('ns/a')?.pod.metadata?.uid, 'new');
});

test('a last line torn by a kill is ignored; a bad line elsewhere is an error', (t) => {
  const file = stateFile(t);
  assert.equal(readMockState(file).pods.size, 0, 'a missing file is an empty state');
  writeFileSync(
    file,
    `${JSON.stringify({ op: 'create', pod: pod('a'), status: { phase: 'Running' } })}\n`,
  );
  appendFileSync(file, '{"op":"create","pod":{"meta');
  assert.deepEqual([...readMockState(file).pods.keys()], ['ns/a']);
  appendFileSync(file, '\n{"op":"forget","key":"ns/a"}\n');
  assert.throws(() => readMockState(file), { code: 'InvalidInput', message: /line 2/ });
});

test('stateFile must be a non-empty path', () => {
  assert.throws(() => parseMockConfig({ stateFile: '' }), {
    code: 'InvalidInput',
    message: /stateFile must be a non-empty path/,
  });
  assert.deepEqual(parseMockConfig({ stateFile: 'x.jsonl' }), { stateFile: 'x.jsonl' });
});

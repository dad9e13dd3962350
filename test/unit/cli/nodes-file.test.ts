import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { defaultRunOptions, readNodesFile } from '../../../src/cli/run.js';

const io = { out: () => undefined, err: () => undefined, exitCode: 0 };

async function file(t: TestContext, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vk-nodes-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'nodes');
  await writeFile(path, text);
  return path;
}

test('--nodes: fields default to the flags; ports to --listen-port plus the index', async (t) => {
  const opts = { ...defaultRunOptions(io), listenPort: 20000, providerConfig: '/etc/mock.json' };
  const path = await file(
    t,
    JSON.stringify({
      nodes: [{ name: 'a' }, { name: 'b', provider: 'mock-polling', port: 0 }, { name: 'c' }],
    }),
  );
  assert.deepEqual(await readNodesFile(path, opts), [
    { name: 'a', provider: 'mock', port: 20000, providerConfig: '/etc/mock.json' },
    { name: 'b', provider: 'mock-polling', port: 0, providerConfig: '/etc/mock.json' },
    { name: 'c', provider: 'mock', port: 20002, providerConfig: '/etc/mock.json' },
  ]);
});

test('--nodes: every mistake is one error naming the file and the entry', async (t) => {
  const opts = defaultRunOptions(io);
  const cases: [string, RegExp][] = [
    ['nodes: [', /not valid JSON or YAML/],
    ['{}', /at least one node/],
    ['{"nodes": [{"name": "a"}, {"name": "a"}]}', /node 'a' is listed twice/],
    ['{"nodes": [{"name": "a", "port": 1}, {"name": "b", "port": 1}]}', /port 1 is used twice/],
    ['{"nodes": [{"name": "a", "provider": "nope"}]}', /nodes\[0\]\.provider must be one of/],
    ['{"nodes": [{"name": "a", "port": 70000}]}', /nodes\[0\]\.port must be a port number/],
    ['{"nodes": [{"name": "a", "size": 3}]}', /nodes\[0\] has unknown field\(s\) size/],
    ['{"nodes": [{"name": "A"}]}', /nodes\[0\]\.name must be a DNS subdomain/],
  ];
  for (const [text, pattern] of cases) {
    const path = await file(t, text);
    await assert.rejects(readNodesFile(path, opts), (err: Error) => {
      assert.match(err.message, pattern);
      assert.ok(err.message.startsWith(`--nodes ${path}: `), err.message);
      return true;
    });
  }
  await assert.rejects(readNodesFile('/nonexistent/nodes.json', opts), /cannot read it/);
});

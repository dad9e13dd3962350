import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createProvider, readProviderConfig } from '../../../src/cli/registry.js';
import { errorCode } from '../../../src/errors.js';
import { parseMockConfig } from '../../../src/providers/mock/index.js';
import { parseProcessConfig, ProcessProvider } from '../../../src/providers/process/index.js';
import { silentLogger } from '../../../src/log.js';

async function dir(t: TestContext): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'vk-unit-registry-'));
  t.after(() => rm(path, { recursive: true, force: true }));
  return path;
}

/** Checks that `promise` rejects with one InvalidInput line matching `message`. */
async function rejectsInvalid(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal(errorCode(err), 'InvalidInput');
    assert.ok(err instanceof Error);
    assert.match(err.message, message);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
}

test('readProviderConfig: a valid file is parsed by the provider', async (t) => {
  const good = join(await dir(t), 'good.json');
  await writeFile(good, JSON.stringify({ cpu: '4', faults: { ping: { errorRate: 1 } } }));
  assert.deepEqual(await readProviderConfig(good, parseMockConfig), {
    cpu: '4',
    faults: { ping: { errorRate: 1 } },
  });
  assert.deepEqual(await readProviderConfig(good, (json) => json), {
    cpu: '4',
    faults: { ping: { errorRate: 1 } },
  });
});

test('readProviderConfig: every failure is one line starting with the file', async (t) => {
  const d = await dir(t);
  const missing = join(d, 'missing.json');
  await rejectsInvalid(
    readProviderConfig(missing, parseMockConfig),
    new RegExp(`^${missing}: cannot read the provider config: .*ENOENT`),
  );

  const bad = join(d, 'bad.json');
  await writeFile(bad, '{ "cpu": ');
  await rejectsInvalid(readProviderConfig(bad, parseMockConfig), /bad\.json: not valid JSON: /);

  const invalid = join(d, 'invalid.json');
  await writeFile(invalid, '{ "pods": "many" }');
  await rejectsInvalid(readProviderConfig(invalid, parseMockConfig), /invalid\.json: pods must be/);

  const unknown = join(d, 'unknown.json');
  await writeFile(unknown, '{ "nope": 1 }');
  await rejectsInvalid(
    readProviderConfig(unknown, parseProcessConfig),
    /unknown\.json: process provider config: unknown field "nope"/,
  );
});

test('createProvider hands --cluster-dns and --cluster-domain to the process provider', async (t) => {
  // Not dir(t): its removal would run before the pod's (after hooks run in order).
  const d = await mkdtemp(join(tmpdir(), 'vk-unit-registry-'));
  const config = join(d, 'process.json');
  const nodeName = `unit-registry-${String(process.pid)}`;
  await writeFile(config, JSON.stringify({ stateDir: join(d, 'state'), cgroups: 'none' }));
  const provider = await createProvider('process', {
    nodeName,
    configPath: config,
    nodeIP: '127.0.0.1',
    clusterDNS: ['10.96.0.10'],
    clusterDomain: 'k8s.test',
    logger: silentLogger,
  });
  assert.ok(provider instanceof ProcessProvider);
  const never = new AbortController().signal;
  const pod = {
    metadata: { namespace: 'ns', name: 'p', uid: 'uid-registry' },
    spec: {
      terminationGracePeriodSeconds: 0,
      containers: [{ name: 'app', image: 'busybox', command: ['sleep', '60'] }],
    },
  };
  t.after(async () => {
    await provider.deletePod(pod, never);
    await provider.close();
    await rm(d, { recursive: true, force: true });
  });
  assert.ok(
    provider.isolation.startsWith('namespaces'),
    `the pod's resolv.conf needs mount namespaces: ${provider.isolation}`,
  );
  await provider.createPod(pod, never);
  const podDir = provider.podRecord('ns', 'p')?.dir ?? '';
  const resolv = await readFile(join(podDir, 'etc', 'resolv.conf'), 'utf8');
  assert.match(resolv, /^search ns\.svc\.k8s\.test svc\.k8s\.test k8s\.test\b/);
  assert.match(resolv, /^nameserver 10\.96\.0\.10$/m);
});

test('--provider external: needs a config; a bad one is one line naming the file', async (t) => {
  const ctx = { nodeName: 'n', nodeIP: '127.0.0.1', logger: silentLogger };
  await rejectsInvalid(
    createProvider('external', ctx),
    /--provider external needs --provider-config/,
  );
  const bad = join(await dir(t), 'external.json');
  await writeFile(bad, JSON.stringify({ address: '127.0.0.1:9000' }));
  await rejectsInvalid(
    createProvider('external', { ...ctx, configPath: bad }),
    /external\.json: .*tls .*required/,
  );
});

test('createProvider kubernetes: the config is required and checked, the kubeconfig read from its folder', async (t) => {
  const d = await dir(t);
  const ctx = { nodeName: 'vk-remote', nodeIP: '127.0.0.1', logger: silentLogger };
  await rejectsInvalid(createProvider('kubernetes', ctx), /needs --provider-config .*kubeconfig/);
  const noKubeconfig = join(d, 'none.json');
  await writeFile(noKubeconfig, '{}');
  await rejectsInvalid(
    createProvider('kubernetes', { ...ctx, configPath: noKubeconfig }),
    /none\.json: kubeconfig .* is required/,
  );
  const missing = join(d, 'missing.json');
  await writeFile(missing, JSON.stringify({ kubeconfig: 'remote.kubeconfig' }));
  await rejectsInvalid(
    createProvider('kubernetes', { ...ctx, configPath: missing }),
    new RegExp(`kubeconfig ${join(d, 'remote.kubeconfig')}: `),
  );
});

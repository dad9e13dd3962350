import { execFile, spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { createServer } from 'node:net';
import { binaryPaths, isAlive, type ClusterState } from '../../src/devcluster/index.js';
import { readCertificate } from '../../src/pki/index.js';
import { kubectl, testCluster } from '../helpers/cluster.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { waitFor } from '../helpers/wait.js';

const bin = new URL('../../bin/virtual-kubelet', import.meta.url).pathname;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 180_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Processes whose command line mentions `dir` (the components carry it in their flags). */
function processesUsing(dir: string): string[] {
  const r = spawnSync('pgrep', ['-a', '-f', dir], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.trim() && !l.includes('pgrep'));
}

async function scratch(t: TestContext): Promise<string> {
  testCluster(); // these tests need the built binaries: fail with the reason when there are none
  const dir = await mkdtemp(join(tmpdir(), 'vk-e2e-cli-'));
  // The runner's sweep of stale vk-e2e-* directories leaves those of a live owner alone.
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  const stopCluster = (): void => {
    spawnSync(process.execPath, [bin, 'dev-cluster', 'down', '--dir', dir]);
  };
  const forget = onOrphaned(() => {
    stopCluster();
    rmSync(dir, { recursive: true, force: true });
  });
  t.after(async () => {
    forget();
    stopCluster();
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

test('dev-cluster up, status and down: a working cluster, then no process left', async (t) => {
  const dir = await scratch(t);
  const up = await cli(['dev-cluster', 'up', '--dir', dir]);
  assert.equal(up.code, 0, up.stderr);
  const kubeconfig = join(dir, 'admin.kubeconfig');
  assert.equal(
    up.stdout.trim(),
    `export KUBECONFIG=${kubeconfig}\nexport PATH=${dirname(binaryPaths().kubectl)}:$PATH`,
  );

  const ready = await kubectl(['get', '--raw', '/readyz'], { kubeconfig });
  assert.equal(ready.stdout.trim(), 'ok');
  // A pod applied right after `up` is accepted: the default ServiceAccount is there already.
  const first = await kubectl(
    ['run', 'right-after-up', '--image=busybox', '--restart=Never', '--', 'true'],
    { kubeconfig, allowFailure: true },
  );
  assert.equal(first.code, 0, first.stderr);
  const pods = await kubectl(['get', 'pods', '-A'], { kubeconfig, allowFailure: true });
  assert.equal(pods.code, 0, pods.stderr);

  const status = await cli(['dev-cluster', 'status', '--dir', dir]);
  assert.equal(status.code, 0);
  assert.match(status.stdout, /ready/);
  assert.match(status.stdout, /kubelet-serving CSRs: approved when they match their node/);

  // A node's kubeconfig, and a serving certificate for it from the cluster CA.
  const node = await cli([
    'dev-cluster',
    'node-kubeconfig',
    '--dir',
    dir,
    '--name',
    'vk-cli',
    '--node-ip',
    '10.1.2.3',
  ]);
  assert.equal(node.code, 0, node.stderr);
  assert.equal(node.stdout.trim(), join(dir, 'node-vk-cli.kubeconfig'));
  const certFile = join(dir, 'pki', 'node-vk-cli-serving.crt');
  assert.match(
    node.stderr,
    new RegExp(
      `--tls-cert-file ${certFile} --tls-private-key-file ${join(dir, 'pki', 'node-vk-cli-serving.key')}`,
    ),
  );
  const serving = readCertificate(await readFile(certFile));
  assert.equal(serving.subject.commonName, 'system:node:vk-cli');
  assert.deepEqual(serving.subject.organizations, ['system:nodes']);
  assert.deepEqual(serving.altNames, { dnsNames: ['vk-cli'], ipAddresses: ['10.1.2.3'] });
  assert.deepEqual(serving.extendedKeyUsages, ['serverAuth']);
  assert.equal(serving.issuer.commonName, 'virtual-kubelet-dev-ca');
  const badIp = await cli([
    'dev-cluster',
    'node-kubeconfig',
    '--dir',
    dir,
    '--name',
    'x',
    '--node-ip',
    'nope',
  ]);
  assert.equal(badIp.code, 1);
  assert.equal(badIp.stderr.trim(), '--node-ip: nope is not an IP address');
  for (const c of [
    'etcd',
    'kube-apiserver',
    'kube-controller-manager',
    'kube-scheduler',
    'metrics-server',
  ])
    assert.match(status.stdout, new RegExp(`${c}: pid \\d+`));

  const again = await cli(['dev-cluster', 'up', '--dir', dir]);
  assert.equal(again.code, 0);
  const why = async (): Promise<string> =>
    `state: ${await readFile(join(dir, 'state.json'), 'utf8').catch(() => '?')}\nsupervisor log:\n${await readFile(join(dir, 'supervisor.log'), 'utf8').catch(() => '?')}`;
  if (!/already running/.test(again.stderr))
    assert.fail(`the first cluster was not found running:\n${again.stderr}\n${await why()}`);

  const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as ClusterState;
  const pids = [state.pid, ...Object.values(state.components ?? {})];
  assert.equal(pids.length, 6);

  // A component that dies on its own is restarted; the cluster stays up.
  const scheduler = state.components?.['kube-scheduler'] ?? 0;
  process.kill(scheduler, 'SIGKILL');
  await waitFor(
    () =>
      processesUsing(dir).some(
        (l) => l.includes('kube-scheduler') && !l.startsWith(`${String(scheduler)} `),
      ),
    { what: 'a new kube-scheduler', timeoutMs: 20_000 },
  );
  const still = await cli(['dev-cluster', 'status', '--dir', dir]);
  assert.equal(still.code, 0, still.stdout);

  const down = await cli(['dev-cluster', 'down', '--dir', dir]);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(pids.filter(isAlive), []);
  assert.deepEqual(processesUsing(dir), []);
  const after = await cli(['dev-cluster', 'status', '--dir', dir]);
  assert.equal(after.code, 3);
  assert.match(after.stdout, /no dev cluster running/);
});

test('a SIGKILLed owner takes every control-plane process with it; serve --no-approve-serving-csrs records that it approves none', async (t) => {
  const dir = await scratch(t);
  const owner = spawn(
    process.execPath,
    [bin, 'dev-cluster', 'serve', '--dir', dir, '--no-approve-serving-csrs'],
    { stdio: 'ignore' },
  );
  t.after(onOrphaned(() => owner.kill('SIGKILL')));
  t.after(() => owner.kill('SIGKILL'));
  const state = await waitFor(
    async () => {
      const s = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as ClusterState;
      if (s.status === 'failed') throw new Error(s.error);
      return s.status === 'ready' ? s : undefined;
    },
    { what: 'the dev cluster to be ready', timeoutMs: 120_000 },
  );
  assert.equal(state.approvesServingCsrs, false, '--no-approve-serving-csrs');
  const pids = Object.values(state.components ?? {});
  assert.equal(pids.length, 5);
  assert.ok(pids.every(isAlive));
  owner.kill('SIGKILL');
  await waitFor(() => pids.every((p) => !isAlive(p)), {
    what: 'every component to exit after its owner was killed',
    timeoutMs: 10_000,
  });
  assert.deepEqual(processesUsing(dir), []);
});

test('dev-cluster up on a port in use says so in one line and exits non-zero', async (t) => {
  const dir = await scratch(t);
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => blocker.close());
  const address = blocker.address();
  assert.ok(address && typeof address === 'object');
  const r = await cli(['dev-cluster', 'up', '--dir', dir, '--port', String(address.port)]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`port ${String(address.port)} on 127.0.0.1 is in use`));
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.deepEqual(processesUsing(dir), []);
});

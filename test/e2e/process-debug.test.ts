/**
 * The process provider against the real control plane with the pinned kubectl: `kubectl debug`
 * with an ephemeral container on a real terminal, `kubectl cp` both ways, and the pod's
 * resolv.conf and hosts as the kubelet writes them.
 */
import * as k8s from '@kubernetes/client-node';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ProcessProvider } from '../../src/providers/process/index.js';
import { onNode, startNode, uniqueNodeName } from '../helpers/agent.js';
import { kubectl, testCluster, testNamespace } from '../helpers/cluster.js';
import { onOrphaned } from '../helpers/orphan-watchdog.js';
import { processStateDir, reap } from '../helpers/process-pods.js';
import { waitFor } from '../helpers/wait.js';

const core = (): k8s.CoreV1Api => testCluster().kc.makeApiClient(k8s.CoreV1Api);
const CLUSTER_DNS = '10.96.0.10';

interface Fixture {
  readonly ns: string;
  readonly nodeName: string;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName('dbg');
  const dir = processStateDir();
  const provider = new ProcessProvider({
    nodeName,
    clusterDNS: [CLUSTER_DNS],
    config: { stateDir: dir, monitorIntervalMs: 200 },
  });
  const forget = onOrphaned(() => {
    reap(dir, nodeName);
  });
  t.after(async () => {
    forget();
    await provider.close();
    reap(dir, nodeName);
  });
  assert.ok(
    provider.isolation.startsWith('namespaces'),
    `these tests need mount and PID namespaces: ${provider.isolation}`,
  );
  await startNode(t, { nodeName, api: true, provider });
  return { ns, nodeName };
}

/** A Running pod with one busybox container `app` that sleeps. */
async function sleeper(f: Fixture, name: string, spec: Partial<k8s.V1PodSpec> = {}) {
  await core().createNamespacedPod({
    namespace: f.ns,
    body: {
      metadata: { name },
      spec: {
        ...onNode(f.nodeName),
        terminationGracePeriodSeconds: 2,
        containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
        ...spec,
      },
    },
  });
  await waitFor(
    async () =>
      (await core().readNamespacedPod({ name, namespace: f.ns })).status?.phase === 'Running',
    { what: `pod ${name} Running` },
  );
}

/**
 * Runs `kubectl <args>` on a pseudo-terminal (`script`), typing `input` once kubectl printed
 * `ready` (or at once without it). Resolves with what the terminal showed and the exit code.
 */
function onTerminal(
  t: TestContext,
  args: readonly string[],
  input: string,
  ready: RegExp,
): Promise<{ code: number | null; out: string }> {
  const c = testCluster();
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = [c.kubectlPath, ...args].map(quote).join(' ');
  const child = spawn('script', ['-qec', cmd, '/dev/null'], {
    env: { ...process.env, KUBECONFIG: c.kubeconfigPath },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.after(onOrphaned(() => child.kill('SIGKILL')));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return new Promise((resolve) => {
    let out = '';
    let typed = false;
    let nudged = false;
    const onData = (d: Buffer): void => {
      out += d.toString();
      // kubectl's hint comes before the shell's output is attached: Enter makes the shell print
      // its prompt again, which then says that it reads what is typed.
      if (!nudged && /If you don't see a command prompt/.test(out)) {
        nudged = true;
        child.stdin.write('\n');
      }
      if (!typed && ready.test(out)) {
        typed = true;
        child.stdin.write(input);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code) => resolve({ code, out }));
  });
}

test('kubectl debug -it with --target runs an ephemeral shell on a terminal, which ends Terminated 0', async (t) => {
  const f = await fixture(t);
  await sleeper(f, 'target');
  const { code, out } = await onTerminal(
    t,
    ['debug', '-it', 'target', '-n', f.ns, '--image=busybox', '--target=app', '--', 'sh'],
    // The target's process is there: the pod has one PID namespace.
    'ps -e -o args | grep -c "^sleep 3600"; echo hi-from-debug; exit\n',
    /[$#] $/,
  );
  assert.equal(code, 0, out);
  assert.match(out, /hi-from-debug/);
  assert.match(out, /^(?:[^\n]*# )?1\r?$/m);
  const pod = await waitFor(
    async () => {
      const p = await core().readNamespacedPod({ name: 'target', namespace: f.ns });
      return p.status?.ephemeralContainerStatuses?.[0]?.state?.terminated ? p : undefined;
    },
    { what: 'the debug container Terminated' },
  );
  const status = pod.status?.ephemeralContainerStatuses?.[0];
  const debugger_ = pod.spec?.ephemeralContainers?.[0]?.name ?? '';
  assert.equal(status?.name, debugger_);
  assert.equal(status?.state?.terminated?.exitCode, 0);
  assert.equal(pod.status?.phase, 'Running');
  assert.equal(pod.status?.containerStatuses?.[0]?.restartCount, 0);
  const logs = await kubectl(['logs', 'target', '-n', f.ns, '-c', debugger_]);
  assert.match(logs.stdout, /hi-from-debug/);
});

test('kubectl cp copies a file into a process pod and back, byte for byte', async (t) => {
  const f = await fixture(t);
  await sleeper(f, 'files');
  const dir = mkdtempSync(join(tmpdir(), 'vk-cp-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const data = randomBytes(3 * 1024 * 1024 + 17);
  writeFileSync(join(dir, 'in.bin'), data);
  // The pod's /tmp is its own (a tmpfs in its mount namespace).
  await kubectl(['cp', join(dir, 'in.bin'), `${f.ns}/files:/tmp/copied.bin`, '-c', 'app']);
  const size = await kubectl(['exec', 'files', '-n', f.ns, '--', 'wc', '-c', '/tmp/copied.bin']);
  assert.equal(size.stdout.trim().split(/\s+/)[0], String(data.length));
  await kubectl(['cp', `${f.ns}/files:/tmp/copied.bin`, join(dir, 'out.bin'), '-c', 'app']);
  const back = readFileSync(join(dir, 'out.bin'));
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(back.length, data.length);
  assert.equal(sha(back), sha(data));
});

test("a process pod's resolv.conf and hosts are the kubelet's: cluster DNS, search path, aliases", async (t) => {
  const f = await fixture(t);
  await sleeper(f, 'named', {
    hostname: 'web',
    subdomain: 'front',
    hostAliases: [{ ip: '192.0.2.10', hostnames: ['foo.local'] }],
  });
  const resolv = await kubectl(['exec', 'named', '-n', f.ns, '--', 'cat', '/etc/resolv.conf']);
  assert.match(
    resolv.stdout,
    new RegExp(`^search ${f.ns}\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local\\b`),
  );
  assert.match(resolv.stdout, new RegExp(`^nameserver ${CLUSTER_DNS.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(resolv.stdout, /^options ndots:5$/m);
  const pod = await core().readNamespacedPod({ name: 'named', namespace: f.ns });
  const hosts = await kubectl(['exec', 'named', '-n', f.ns, '--', 'cat', '/etc/hosts']);
  assert.match(hosts.stdout, /^# Kubernetes-managed hosts file\.$/m);
  assert.ok(
    hosts.stdout.includes(`${pod.status?.podIP ?? ''}\tweb.front.${f.ns}.svc.cluster.local\tweb\n`),
    hosts.stdout,
  );
  assert.match(hosts.stdout, /# Entries added by HostAliases\.\n192\.0\.2\.10\tfoo\.local\n$/);
  // Read-only for the container.
  const write = await kubectl(
    ['exec', 'named', '-n', f.ns, '--', 'sh', '-c', 'echo x >> /etc/hosts'],
    { allowFailure: true },
  );
  assert.notEqual(write.code, 0);
});

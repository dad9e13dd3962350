import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ensureHelm } from '../../src/devcluster/helm.js';
import { kubectl, testNamespace } from '../helpers/cluster.js';

const chart = new URL('../../charts/virtual-kubelet', import.meta.url).pathname;

/** Runs the helm built into the cache (built first if it is not there yet, which takes minutes). */
async function helm(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = await ensureHelm();
  return new Promise((resolve) => {
    execFile(bin, [...args], { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Every value the chart has, set away from its default. */
const everything = [
  '--set',
  'replicas=2',
  '--set',
  'leaderElection.enabled=true',
  '--set',
  'leaderElection.leaseDuration=15s',
  '--set',
  'leaderElection.renewDeadline=10s',
  '--set',
  'leaderElection.retryPeriod=2s',
  '--set',
  'provider=process',
  '--set-string',
  'providerConfig.content=images: {}',
  '--set',
  'nodes[0].name=vk-chart-a,nodes[0].port=10250',
  '--set',
  'nodes[1].name=vk-chart-b,nodes[1].port=10251,nodes[1].provider=mock',
  '--set',
  'servingCertificate.mode=secret,servingCertificate.secretName=vk-serving',
  '--set',
  'nodeLabels.zone=a',
  '--set',
  'nodeSelector.kubernetes\\.io/os=linux',
  '--set',
  'tolerations[0].key=dedicated,tolerations[0].operator=Exists',
  '--set',
  'resources.limits.cpu=1',
  '--set',
  'hostNetwork=true',
  '--set',
  'extraArgs[0]=--pod-sync-workers=4',
];

test('helm lint accepts the chart, with its defaults and with every value set', async () => {
  for (const values of [[], everything]) {
    const r = await helm(['lint', '--strict', chart, ...values]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

test('the rendered chart is accepted by the API server (kubectl apply --dry-run=server)', async (t) => {
  const ns = await testNamespace(t, 'chart');
  for (const values of [[], everything]) {
    const rendered = await helm(['template', `vk-${ns}`, chart, '--namespace', ns, ...values]);
    assert.equal(rendered.code, 0, rendered.stderr);
    const applied = await kubectl(['apply', '--dry-run=server', '-f', '-'], {
      input: rendered.stdout,
    });
    for (const kind of [
      'serviceaccount',
      'clusterrole.rbac.authorization.k8s.io',
      'clusterrolebinding.rbac.authorization.k8s.io',
      'deployment.apps',
    ])
      assert.match(
        applied.stdout,
        new RegExp(`^${kind.replace(/\./g, '\\.')}/\\S+ created \\(server dry run\\)$`, 'm'),
      );
    if (values.length > 0) {
      assert.match(applied.stdout, /^configmap\/\S+ created \(server dry run\)$/m);
      assert.match(rendered.stdout, /- --leader-elect\n/);
      assert.match(rendered.stdout, /- --nodes=\/etc\/virtual-kubelet\/nodes\/nodes\.yaml/);
      assert.match(rendered.stdout, /- --tls-cert-file=/);
      assert.match(rendered.stdout, /hostNetwork: true\n\s+dnsPolicy: ClusterFirstWithHostNet\n/);
    } else assert.match(rendered.stdout, /- --rotate-server-certificates\n/);
  }
});

test('the chart refuses replicas without leader election, in one line', async () => {
  const r = await helm(['template', 'vk', chart, '--set', 'replicas=2']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /replicas > 1 needs leaderElection\.enabled/);
});

test('deploy/virtual-kubelet.yaml is the chart rendered with its defaults', async () => {
  const rendered = await helm([
    'template',
    'virtual-kubelet',
    chart,
    '--namespace',
    'virtual-kubelet',
  ]);
  assert.equal(rendered.code, 0, rendered.stderr);
  const file = await readFile(
    new URL('../../deploy/virtual-kubelet.yaml', import.meta.url),
    'utf8',
  );
  const body = file.slice(file.indexOf('\n---\n') + 1);
  assert.equal(body, rendered.stdout, 'regenerate deploy/virtual-kubelet.yaml (see its header)');
});

// authz-matrix: every route of our kubelet API against six identities, each answer compared with
// what the kubelet's own rules decide (bench/chaos/authz-rules.ts), and our route table's
// subresources compared with the kubelet's path mapping.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { ROUTES } from '../../src/api/routes/table.js';
import { ensurePki, PKI } from '../../src/devcluster/pki.js';
import { table } from '../util.js';
import {
  expectedOutcome,
  IDENTITIES,
  type Identity,
  kubeletSubresources,
  outcomeOf,
  samplePath,
} from './authz-rules.js';
import { apiserverKubeletClient, type Credentials, kubeletRequest } from './kubelet-client.js';
import { createNamespace } from './namespace.js';
import type { ChaosContext, ScenarioResult } from './types.js';

/** Paths the kubelet serves and we do not, or no one does: authorization comes first anyway. */
const EXTRA_PATHS = ['/logs/', '/checkpoint/default/p/c', '/spec/', '/statusz', '/no-such-path'];

const NAMESPACE = 'chaos-authz';

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const agent = await ctx.startAgent();
  await ctx.waitReady(agent, 90_000);
  const creds = await identities(ctx, agent.nodeName);
  const values = { namespace: NAMESPACE, pod: 'absent', container: 'c', check: 'ping' };
  const requests: { method: string; path: string; pattern: string }[] = [];
  for (const route of ROUTES)
    for (const method of route.methods)
      requests.push({ method, path: samplePath(route.pattern, values), pattern: route.pattern });
  for (const path of EXTRA_PATHS) requests.push({ method: 'GET', path, pattern: path });

  const rows: string[][] = [['request', ...IDENTITIES]];
  const mismatches: string[] = [];
  for (const r of requests) {
    const row = [`${r.method} ${r.path}`];
    for (const id of IDENTITIES) {
      const expected = expectedOutcome(id, r.path);
      let status: number;
      try {
        status = (await kubeletRequest(agent.port, r.path, creds[id], { method: r.method })).status;
      } catch {
        status = 0;
      }
      const got = outcomeOf(status);
      const good = got === expected;
      row.push(good ? String(status) : `${String(status)}!=${expected}`);
      if (!good)
        mismatches.push(`${id} ${r.method} ${r.path}: ${String(status)}, expected ${expected}`);
    }
    rows.push(row);
  }
  const mapping: string[] = [];
  for (const route of ROUTES) {
    const ours = route.subresources.join(',');
    const kubelet = kubeletSubresources(samplePath(route.pattern, values)).join(',');
    if (ours !== kubelet) mapping.push(`${route.pattern}: ours [${ours}], kubelet [${kubelet}]`);
  }
  process.stdout.write(
    `\nauthz-matrix (status per identity; A!=E: got A, the kubelet's rules expect E)\n${table(rows)}\n`,
  );
  for (const m of mapping) ctx.log(`mapping differs: ${m}`);
  const alive = agent.exited() === undefined;
  const reasons = [
    ...(alive ? [] : [`the agent ${agent.exited() ?? ''}`]),
    ...mismatches.slice(0, 10),
    ...mapping.map((m) => `mapping: ${m}`),
  ];
  return {
    ok: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    requests: requests.length * IDENTITIES.length,
    routes: ROUTES.length,
    identities: IDENTITIES.length,
    mismatches: mismatches.length,
    mappingDiffs: mapping.length,
    agentAlive: alive,
  };
}

/** Credentials for every identity of the matrix, with what the cluster needs for them. */
async function identities(
  ctx: ChaosContext,
  nodeName: string,
): Promise<Record<Identity, Credentials>> {
  const pki = ctx.info.pkiDir;
  const ca = await readFile(join(pki, `${PKI.ca}.crt`));
  // A whole PKI of its own: its admin certificate (system:masters, but from a CA the cluster
  // does not know) must authenticate no one.
  const foreign = join(ctx.dir, 'foreign-pki');
  await mkdir(foreign, { recursive: true });
  await ensurePki(foreign);
  const c = ctx.client;
  await createNamespace(c, NAMESPACE, ctx.signal);
  for (const name of ['chaos-nobody', 'chaos-stats'])
    await c.request('POST', `/api/v1/namespaces/${NAMESPACE}/serviceaccounts`, {
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } },
    });
  await c.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'chaos-node-stats' },
      rules: [{ apiGroups: [''], resources: ['nodes/stats'], verbs: ['get', 'create'] }],
    },
  });
  await c.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'chaos-node-stats' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'chaos-node-stats',
      },
      subjects: [{ kind: 'ServiceAccount', name: 'chaos-stats', namespace: NAMESPACE }],
    },
  });
  // The binding reaches the API server's authorizer through its informers: give it a moment.
  await delay(2000, undefined, { signal: ctx.signal });
  const token = async (sa: string): Promise<string> => {
    const res = await c.request<{ status: { token: string } }>(
      'POST',
      `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/${sa}/token`,
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { expirationSeconds: 3600 },
        },
      },
    );
    return res.status.token;
  };
  const read = (dir: string, stem: string): Promise<[Buffer, Buffer]> =>
    Promise.all([readFile(join(dir, `${stem}.crt`)), readFile(join(dir, `${stem}.key`))]);
  const [foreignCert, foreignKey] = await read(foreign, PKI.admin);
  // The agent's client certificate, written with its kubeconfig.
  const [nodeCert, nodeKey] = await read(pki, `node-${nodeName}`);
  return {
    anonymous: { ca },
    'untrusted-cert': { ca, cert: foreignCert, key: foreignKey },
    'sa-no-rbac': { ca, token: await token('chaos-nobody') },
    'sa-stats-only': { ca, token: await token('chaos-stats') },
    'apiserver-client': await apiserverKubeletClient(pki),
    'node-self': { ca, cert: nodeCert, key: nodeKey },
  };
}

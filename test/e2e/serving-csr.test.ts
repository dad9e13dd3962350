import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { AltNames } from '../../src/pki/index.js';
import { createCertificateRequest, generateKeyPair } from '../../src/pki/index.js';
import { nodeKubeconfig, uniqueNodeName } from '../helpers/agent.js';
import { kubectl } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait.js';

interface Csr {
  metadata: { name: string };
  spec: { username: string };
  status?: { certificate?: string; conditions?: { type: string; reason?: string }[] };
}

/** Creates a kubelet-serving CSR as the identity of `kubeconfig` (the admin when undefined). */
async function createCsr(
  name: string,
  commonName: string,
  altNames: AltNames,
  kubeconfig: string | undefined,
): Promise<void> {
  const request = await createCertificateRequest({
    subject: { commonName, organizations: ['system:nodes'] },
    altNames,
    keys: await generateKeyPair(),
  });
  const csr = {
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'CertificateSigningRequest',
    metadata: { name },
    spec: {
      request: Buffer.from(request).toString('base64'),
      signerName: 'kubernetes.io/kubelet-serving',
      usages: ['digital signature', 'server auth'],
    },
  };
  await kubectl(['create', '-f', '-'], {
    input: JSON.stringify(csr),
    ...(kubeconfig ? { kubeconfig } : {}),
  });
}

const getCsr = async (name: string): Promise<Csr> =>
  JSON.parse((await kubectl(['get', 'csr', name, '-o', 'json'])).stdout) as Csr;

test("the dev cluster approves a node's serving CSR for its own names and addresses and leaves every other one pending", async (t) => {
  const node = uniqueNodeName('csr-match');
  const missing = uniqueNodeName('csr-missing');
  const id = randomBytes(3).toString('hex');
  const address = '10.250.0.8';
  await kubectl(['create', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } }),
  });
  const csrs: string[] = [];
  t.after(async () => {
    await kubectl(['delete', 'node', node, '--ignore-not-found'], { allowFailure: true });
    if (csrs.length > 0)
      await kubectl(['delete', 'csr', ...csrs, '--ignore-not-found'], { allowFailure: true });
  });
  await kubectl([
    'patch',
    'node',
    node,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({
      status: {
        addresses: [
          { type: 'InternalIP', address },
          { type: 'Hostname', address: node },
        ],
      },
    }),
  ]);
  const asNode = await nodeKubeconfig(node);
  const asMissing = await nodeKubeconfig(missing);
  const own = { dnsNames: [node], ipAddresses: [address] };
  // Listed (by name) before the matching one, so the pass that approves it has seen them all.
  const pending: [string, string, AltNames, string | undefined][] = [
    [
      `a-${id}-foreign-ip`,
      `system:node:${node}`,
      { dnsNames: [node], ipAddresses: ['10.250.0.9'] },
      asNode,
    ],
    [
      `a-${id}-foreign-dns`,
      `system:node:${node}`,
      { dnsNames: [node, 'other-host'], ipAddresses: [address] },
      asNode,
    ],
    [
      `a-${id}-loopback`,
      `system:node:${node}`,
      { dnsNames: [node], ipAddresses: [address, '127.0.0.1'] },
      asNode,
    ],
    [`a-${id}-not-a-node`, `system:node:${node}`, own, undefined],
    [
      `a-${id}-no-node`,
      `system:node:${missing}`,
      { dnsNames: [missing], ipAddresses: [address] },
      asMissing,
    ],
  ];
  for (const [name, cn, names, kubeconfig] of pending) {
    await createCsr(name, cn, names, kubeconfig);
    csrs.push(name);
  }
  // A node asking in another node's name is refused by the API server itself (NodeRestriction).
  await assert.rejects(
    createCsr(`a-${id}-other-cn`, `system:node:${missing}`, own, asNode),
    /can only create a node CSR with CN=system:node:/,
  );
  const good = `z-${id}-match`;
  await createCsr(good, `system:node:${node}`, own, asNode);
  csrs.push(good);

  const approved = await waitFor(
    async () => {
      const csr = await getCsr(good);
      return csr.status?.certificate ? csr : undefined;
    },
    { what: 'the matching CSR to be approved and signed' },
  );
  assert.equal(approved.spec.username, `system:node:${node}`);
  assert.equal(
    approved.status?.conditions?.find((c) => c.type === 'Approved')?.reason,
    'NodeNamesMatch',
  );
  for (const [name] of pending) {
    const csr = await getCsr(name);
    assert.deepEqual(
      csr.status?.conditions ?? [],
      [],
      `${name} is left pending, neither approved nor denied`,
    );
    assert.equal(csr.status?.certificate, undefined, `${name} has no certificate`);
  }
});

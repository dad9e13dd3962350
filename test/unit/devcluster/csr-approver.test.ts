import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isDecided,
  servingCsrDecision,
  type ServingCsr,
  type ServingNode,
} from '../../../src/devcluster/csr-approver.js';
import type { AltNames, CertificateRequestInfo } from '../../../src/pki/index.js';
import {
  createCertificateRequest,
  generateKeyPair,
  readCertificateRequest,
} from '../../../src/pki/index.js';

const node: ServingNode = {
  metadata: { name: 'n1' },
  status: {
    addresses: [
      { type: 'InternalIP', address: '10.0.0.5' },
      { type: 'ExternalIP', address: '2001:db8::5' },
      { type: 'Hostname', address: 'n1.local' },
      { type: 'InternalDNS', address: 'n1.internal' },
    ],
  },
};

async function request(
  altNames: AltNames,
  commonName = 'system:node:n1',
  organizations = ['system:nodes'],
): Promise<CertificateRequestInfo> {
  const pem = await createCertificateRequest({
    subject: { commonName, organizations },
    altNames,
    keys: await generateKeyPair(),
  });
  return readCertificateRequest(pem);
}

function csr(spec: Partial<NonNullable<ServingCsr['spec']>> = {}): ServingCsr {
  return {
    metadata: { name: 'csr-1' },
    spec: {
      signerName: 'kubernetes.io/kubelet-serving',
      username: 'system:node:n1',
      groups: ['system:nodes', 'system:authenticated'],
      usages: ['digital signature', 'key encipherment', 'server auth'],
      ...spec,
    },
  };
}

test('a node asking for its own name and addresses is approved (IPv6 compared as addresses)', async () => {
  const info = await request({
    dnsNames: ['n1', 'n1.local', 'n1.internal'],
    ipAddresses: ['10.0.0.5', '2001:0db8:0000::5'],
  });
  assert.deepEqual(servingCsrDecision(csr(), info, node), { approve: true });
});

test('names or addresses the Node does not have leave the request pending, with the reason', async () => {
  const cases: [AltNames, RegExp][] = [
    [
      { dnsNames: ['n1'], ipAddresses: ['10.0.0.6'] },
      /IP address 10\.0\.0\.6 is not an InternalIP or ExternalIP of node n1/,
    ],
    [{ dnsNames: ['n1'], ipAddresses: ['127.0.0.1'] }, /127\.0\.0\.1/],
    [
      { dnsNames: ['n2'], ipAddresses: [] },
      /DNS name n2 is neither the name nor a DNS address of node n1/,
    ],
    [{ dnsNames: [], ipAddresses: [] }, /neither a DNS name nor an IP address/],
  ];
  for (const [names, reason] of cases) {
    const d = servingCsrDecision(csr(), await request(names), node);
    assert.equal(d.approve, false);
    assert.match(d.approve ? '' : d.reason, reason);
  }
});

test('a request that is not a node asking for itself stays pending', async () => {
  const own = { dnsNames: ['n1'], ipAddresses: ['10.0.0.5'] };
  const info = await request(own);
  const cases: [ServingCsr, CertificateRequestInfo, ServingNode | undefined, RegExp][] = [
    [
      csr({ username: 'kubernetes-admin', groups: ['system:masters'] }),
      info,
      node,
      /not by a node/,
    ],
    [csr({ groups: ['system:authenticated'] }), info, node, /system:nodes group/],
    [csr({ signerName: 'kubernetes.io/kube-apiserver-client' }), info, node, /signer/],
    [csr({ usages: ['digital signature', 'client auth'] }), info, node, /usages/],
    [csr(), await request(own, 'system:node:n2'), node, /common name system:node:n2/],
    [csr(), await request(own, 'system:node:n1', ['system:masters']), node, /organizations/],
    [csr(), info, undefined, /node n1 does not exist/],
  ];
  for (const [c, i, n, reason] of cases) {
    const d = servingCsrDecision(c, i, n);
    assert.equal(d.approve, false);
    assert.match(d.approve ? '' : d.reason, reason);
  }
});

test('approved, denied or signed requests count as decided', () => {
  assert.equal(isDecided(csr()), false);
  assert.equal(isDecided({ status: { conditions: [{ type: 'Approved', status: 'True' }] } }), true);
  assert.equal(isDecided({ status: { conditions: [{ type: 'Denied', status: 'True' }] } }), true);
  assert.equal(isDecided({ status: { certificate: 'x' } }), true);
});

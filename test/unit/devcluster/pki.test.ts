import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensurePki, issueCert, renderKubeconfig } from '../../../src/devcluster/pki.js';
import { keyPairFromPem, publicKeyToPem, readCertificate } from '../../../src/pki/index.js';

async function withPki(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vk-unit-pki-'));
  try {
    await ensurePki(dir);
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const cert = async (dir: string, name: string): Promise<X509Certificate> =>
  new X509Certificate(await readFile(join(dir, `${name}.crt`)));

test('ensurePki makes a CA and leaf certificates it signed, with the identities Kubernetes expects', async () => {
  await withPki(async (dir) => {
    const ca = await cert(dir, 'ca');
    assert.ok(ca.ca);
    const apiserver = await cert(dir, 'apiserver');
    assert.ok(apiserver.verify(ca.publicKey));
    assert.ok(apiserver.checkIP('127.0.0.1'));
    assert.ok(apiserver.checkHost('localhost'));
    assert.ok(apiserver.checkHost('kubernetes.default.svc'));
    assert.ok(apiserver.checkIP('10.96.0.1'));
    assert.ok(!apiserver.ca);
    const admin = await cert(dir, 'admin');
    assert.ok(admin.verify(ca.publicKey));
    assert.match(admin.subject, /O=system:masters/);
    assert.match(admin.subject, /CN=kubernetes-admin/);
    assert.match(
      (await cert(dir, 'kube-controller-manager')).subject,
      /CN=system:kube-controller-manager/,
    );
    assert.match(
      (await cert(dir, 'apiserver-kubelet-client')).subject,
      /CN=kube-apiserver-kubelet-client/,
    );
    const fpCa = await cert(dir, 'front-proxy-ca');
    assert.ok((await cert(dir, 'front-proxy-client')).verify(fpCa.publicKey));
    assert.ok(!(await cert(dir, 'front-proxy-client')).verify(ca.publicKey));
    assert.match(await readFile(join(dir, 'sa.pub'), 'utf8'), /BEGIN PUBLIC KEY/);
  });
});

test('ensurePki writes what kube-apiserver and etcd check: constraints, usages, key ids, serials, key modes', async () => {
  await withPki(async (dir) => {
    const names = [
      'ca',
      'front-proxy-ca',
      'apiserver',
      'admin',
      'kube-scheduler',
      'front-proxy-client',
    ];
    const infos = await Promise.all(
      names.map(async (n) => readCertificate(await readFile(join(dir, `${n}.crt`)))),
    );
    const [ca, fpCa, apiserver, admin] = infos;
    assert.ok(ca?.isCa && fpCa?.isCa);
    assert.deepEqual(ca.keyUsages, ['digitalSignature', 'keyCertSign', 'cRLSign']);
    assert.equal(apiserver?.isCa, false);
    assert.deepEqual(apiserver.extendedKeyUsages, ['serverAuth']);
    assert.deepEqual(apiserver.altNames.ipAddresses, ['127.0.0.1', '10.96.0.1']);
    assert.deepEqual(admin?.extendedKeyUsages, ['clientAuth']);
    assert.equal(apiserver.authorityKeyId, ca.subjectKeyId);
    assert.equal(infos[5]?.authorityKeyId, fpCa.subjectKeyId);
    assert.equal(new Set(infos.map((i) => i.serialNumber)).size, infos.length);
    for (const i of infos) assert.match(i.serialNumber, /^[4-7]/); // positive
    for (const key of [...names, 'sa'])
      assert.equal((await stat(join(dir, `${key}.key`))).mode & 0o777, 0o600, key);
    const sa = await keyPairFromPem(await readFile(join(dir, 'sa.key')));
    assert.equal(await publicKeyToPem(sa), await readFile(join(dir, 'sa.pub'), 'utf8'));
  });
});

test('ensurePki keeps existing files, so a cluster directory keeps its identity', async () => {
  await withPki(async (dir) => {
    const before = await readFile(join(dir, 'ca.crt'));
    const mtime = (await stat(join(dir, 'admin.crt'))).mtimeMs;
    await ensurePki(dir);
    assert.deepEqual(await readFile(join(dir, 'ca.crt')), before);
    assert.equal((await stat(join(dir, 'admin.crt'))).mtimeMs, mtime);
  });
});

test('issueCert makes a node client identity with groups', async () => {
  await withPki(async (dir) => {
    await issueCert(dir, {
      name: 'node-vk',
      cn: 'system:node:vk-0',
      organizations: ['system:nodes'],
      usage: 'client',
    });
    const node = await cert(dir, 'node-vk');
    assert.match(node.subject, /O=system:nodes/);
    assert.match(node.subject, /CN=system:node:vk-0/);
    assert.ok(node.verify((await cert(dir, 'ca')).publicKey));
    assert.match(node.keyUsage.join(','), /1\.3\.6\.1\.5\.5\.7\.3\.2/); // clientAuth
  });
});

test('renderKubeconfig embeds the CA and the client key pair', async () => {
  await withPki(async (dir) => {
    const text = await renderKubeconfig({
      server: 'https://127.0.0.1:6443',
      caFile: join(dir, 'ca.crt'),
      certFile: join(dir, 'admin.crt'),
      keyFile: join(dir, 'admin.key'),
    });
    const b64 = (f: string): Promise<string> =>
      readFile(join(dir, f)).then((b) => b.toString('base64'));
    assert.match(text, /server: https:\/\/127\.0\.0\.1:6443/);
    assert.ok(text.includes(`certificate-authority-data: ${await b64('ca.crt')}`));
    assert.ok(text.includes(`client-certificate-data: ${await b64('admin.crt')}`));
    assert.ok(text.includes(`client-key-data: ${await b64('admin.key')}`));
  });
});

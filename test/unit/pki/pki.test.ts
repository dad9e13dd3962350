import assert from 'node:assert/strict';
import {
  createPrivateKey,
  generateKeyPairSync,
  sign,
  verify,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, request } from 'node:https';
import type { RequestOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { test } from 'node:test';
import type { CertifiedKeyPair } from '../../../src/pki/index.js';
import {
  createCertificateAuthority,
  createCertificateRequest,
  createSelfSignedCertificate,
  fromPem,
  generateKeyPair,
  issueCertificate,
  keyPairFromPem,
  privateKeyToPem,
  publicKeyToPem,
  readCertificate,
  readCertificateRequest,
  writeCertifiedKeyPair,
} from '../../../src/pki/index.js';

interface Tls {
  readonly cert: string;
  readonly key: string;
}

const tls = async (pair: CertifiedKeyPair): Promise<Tls> => ({
  cert: pair.certificate,
  key: await privateKeyToPem(pair.keys),
});

/** An HTTPS server on 127.0.0.1:0 that answers with the client certificate's CN, if any. */
async function serve(
  options: Tls & { ca?: string; requestCert?: boolean },
): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer(
    { ...options, rejectUnauthorized: options.requestCert ?? false },
    (req: IncomingMessage, res: ServerResponse) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(typeof peer.subject?.CN === 'string' ? peer.subject.CN : 'anonymous');
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A GET over a real TLS handshake; resolves with the body or rejects with the TLS error. */
function get(options: RequestOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', path: '/', agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const caPromise = createCertificateAuthority({
  subject: { commonName: 'pki-test-ca', organizations: ['pki-test'] },
});

const serverCert = async (): Promise<CertifiedKeyPair> =>
  issueCertificate(await caPromise, {
    subject: { commonName: 'pki-test-server' },
    altNames: { dnsNames: ['localhost', 'server.test'], ipAddresses: ['127.0.0.1', '::1'] },
    extendedKeyUsages: ['serverAuth'],
  });

test('a server certificate signed by the CA passes a real TLS handshake, by IP and by name', async () => {
  const ca = await caPromise;
  const server = await serve(await tls(await serverCert()));
  try {
    assert.equal(await get({ port: server.port, ca: ca.certificate }), 'anonymous');
    assert.equal(
      await get({ port: server.port, ca: ca.certificate, servername: 'server.test' }),
      'anonymous',
    );
    await assert.rejects(
      get({ port: server.port, ca: ca.certificate, servername: 'other.test' }),
      /ERR_TLS_CERT_ALTNAME_INVALID|does not match/,
    );
    const other = await createCertificateAuthority({ subject: { commonName: 'other-ca' } });
    await assert.rejects(
      get({ port: server.port, ca: other.certificate }),
      /self.signed|unable to get local issuer|unable to verify the first certificate/i,
    );
  } finally {
    await server.close();
  }
});

test('a client certificate with clientAuth is verified by a server that requires one', async () => {
  const ca = await caPromise;
  const server = await serve({
    ...(await tls(await serverCert())),
    ca: ca.certificate,
    requestCert: true,
  });
  try {
    const client = await issueCertificate(ca, {
      subject: { commonName: 'system:node:vk-0', organizations: ['system:nodes'] },
      extendedKeyUsages: ['clientAuth'],
    });
    assert.equal(
      await get({ port: server.port, ca: ca.certificate, ...(await tls(client)) }),
      'system:node:vk-0',
    );
    // A certificate only for servers is not accepted as a client's.
    const serverOnly = await issueCertificate(ca, {
      subject: { commonName: 'not-a-client' },
      extendedKeyUsages: ['serverAuth'],
    });
    await assert.rejects(
      get({ port: server.port, ca: ca.certificate, ...(await tls(serverOnly)) }),
    );
    await assert.rejects(get({ port: server.port, ca: ca.certificate }));
  } finally {
    await server.close();
  }
});

test("node:crypto's X509Certificate reads the names, usages and constraints that were set", async () => {
  const ca = await caPromise;
  const leaf = await serverCert();
  const caX509 = new X509Certificate(ca.certificate);
  const x = new X509Certificate(leaf.certificate);
  assert.ok(caX509.ca);
  assert.ok(!x.ca);
  assert.ok(x.verify(caX509.publicKey));
  assert.ok(x.checkIssued(caX509));
  assert.equal(
    x.subjectAltName,
    'DNS:localhost, DNS:server.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
  );
  assert.ok(x.checkHost('server.test'));
  assert.ok(x.checkIP('::1'));
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1']); // serverAuth
  assert.match(x.subject, /CN=pki-test-server/);
  assert.match(x.issuer, /O=pki-test/);
  assert.match(x.issuer, /CN=pki-test-ca/);
  assert.match(x.serialNumber, /^[4-7][0-9A-F]{31}$/); // positive, 16 bytes
  assert.notEqual(
    x.serialNumber,
    new X509Certificate((await serverCert()).certificate).serialNumber,
  );
});

test('readCertificate reads back subject, issuer, validity, names, usages and key identifiers', async () => {
  const ca = await caPromise;
  const notBefore = new Date('2030-01-02T03:04:05.678Z');
  const leaf = await issueCertificate(ca, {
    subject: { commonName: 'leaf', organizations: ['a', 'b'] },
    altNames: { dnsNames: ['leaf.test'], ipAddresses: ['10.0.0.1'] },
    extendedKeyUsages: ['serverAuth', 'clientAuth'],
    notBefore,
    validityDays: 10,
  });
  const info = readCertificate(leaf.certificate);
  const caInfo = readCertificate(ca.certificate);
  assert.deepEqual(info.subject, { commonName: 'leaf', organizations: ['a', 'b'] });
  assert.deepEqual(info.issuer, { commonName: 'pki-test-ca', organizations: ['pki-test'] });
  assert.equal(info.notBefore.toISOString(), '2030-01-02T03:04:05.000Z');
  assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 10 * 86_400_000);
  assert.deepEqual(info.altNames, { dnsNames: ['leaf.test'], ipAddresses: ['10.0.0.1'] });
  assert.deepEqual(info.keyUsages, ['digitalSignature', 'keyEncipherment']);
  assert.deepEqual(info.extendedKeyUsages, ['serverAuth', 'clientAuth']);
  assert.equal(info.isCa, false);
  assert.equal(caInfo.isCa, true);
  assert.deepEqual(caInfo.keyUsages, ['digitalSignature', 'keyCertSign', 'cRLSign']);
  assert.ok(caInfo.subjectKeyId);
  assert.equal(info.authorityKeyId, caInfo.subjectKeyId);
  assert.notEqual(info.subjectKeyId, caInfo.subjectKeyId);
  assert.throws(() => readCertificate('not a certificate'), /no PEM certificate/);
});

test('a self-signed certificate is its own issuer and is trusted when given as the CA', async () => {
  const self = await createSelfSignedCertificate({
    subject: { commonName: 'system:node:alone' },
    altNames: { ipAddresses: ['127.0.0.1'] },
    keyUsages: ['digitalSignature'],
    extendedKeyUsages: ['serverAuth'],
  });
  const x = new X509Certificate(self.certificate);
  assert.ok(x.checkIssued(x));
  assert.ok(x.verify(x.publicKey));
  const server = await serve(await tls(self));
  try {
    assert.equal(await get({ port: server.port, ca: self.certificate }), 'anonymous');
    await assert.rejects(get({ port: server.port }));
  } finally {
    await server.close();
  }
});

test('a certificate signing request carries its subject and names, signed by its key', async () => {
  const keys = await generateKeyPair();
  const pem = await createCertificateRequest({
    subject: { commonName: 'system:node:vk-1', organizations: ['system:nodes'] },
    altNames: { dnsNames: ['vk-1'], ipAddresses: ['127.0.0.1', 'fd00::1'] },
    keys,
  });
  assert.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
  const info = await readCertificateRequest(pem);
  assert.deepEqual(info.subject, {
    commonName: 'system:node:vk-1',
    organizations: ['system:nodes'],
  });
  assert.deepEqual(info.altNames.dnsNames, ['vk-1']);
  assert.equal(info.altNames.ipAddresses.length, 2);
  assert.equal(info.altNames.ipAddresses[0], '127.0.0.1');
  assert.ok(info.signatureValid);
  // One flipped byte of the signature, at the end of the DER: the signature no longer verifies.
  const der = fromPem('CERTIFICATE REQUEST', pem)[0];
  assert.ok(der);
  der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0xff;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  assert.equal((await readCertificateRequest(tampered)).signatureValid, false);
  await assert.rejects(readCertificateRequest('nothing here'), /no PEM certificate request/);
});

test('keys round-trip through PEM, from PKCS #8 and from the older forms OpenSSL writes', async () => {
  const keys = await generateKeyPair();
  const pem = await privateKeyToPem(keys);
  assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.match(await publicKeyToPem(keys), /^-----BEGIN PUBLIC KEY-----\n/);
  const back = await keyPairFromPem(pem);
  assert.equal(back.algorithm, 'ec-p256');
  assert.equal(await publicKeyToPem(back), await publicKeyToPem(keys));
  const data = new TextEncoder().encode('signed');
  const alg = { name: 'ECDSA', hash: 'SHA-256' };
  const signature = await webcrypto.subtle.sign(alg, back.privateKey, data);
  assert.ok(await webcrypto.subtle.verify(alg, keys.publicKey, signature, data));

  const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'sec1', format: 'pem' })
    .toString();
  assert.match(sec1, /BEGIN EC PRIVATE KEY/);
  assert.equal((await keyPairFromPem(sec1)).algorithm, 'ec-p256');
  const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs1', format: 'pem' })
    .toString();
  const rsa = await keyPairFromPem(pkcs1);
  assert.equal(rsa.algorithm, 'rsa-2048');
  // A key read from PEM signs certificates, here an RSA CA.
  const rsaCa = await createCertificateAuthority({ subject: { commonName: 'rsa-ca' }, keys: rsa });
  const leaf = await issueCertificate(rsaCa, { subject: { commonName: 'under-rsa' } });
  assert.ok(
    new X509Certificate(leaf.certificate).verify(new X509Certificate(rsaCa.certificate).publicKey),
  );

  const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
  await assert.rejects(keyPairFromPem(ed), /unsupported private key type ed25519/);
  await assert.rejects(keyPairFromPem('not a key'));
  // Node reads what was written, and the halves match.
  const nodeKey = createPrivateKey(pem);
  const sig = sign('sha256', Buffer.from('x'), nodeKey);
  assert.ok(verify('sha256', Buffer.from('x'), await publicKeyToPem(keys), sig));
});

test('fromPem finds every block of a label and ignores the text around them', async () => {
  const ca = await caPromise;
  const leaf = await serverCert();
  const bundle = `leaf\n${leaf.certificate}issuer\n${ca.certificate}${await privateKeyToPem(leaf.keys)}`;
  const certs = fromPem('CERTIFICATE', bundle);
  assert.equal(certs.length, 2);
  assert.deepEqual(certs[1], new X509Certificate(ca.certificate).raw);
  assert.equal(fromPem('PRIVATE KEY', bundle).length, 1);
  assert.equal(readCertificate(bundle).subject.commonName, 'pki-test-server');
});

test('private keys are written readable by their owner only, also over an existing file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-unit-pki-'));
  try {
    const files = { certFile: join(dir, 'a.crt'), keyFile: join(dir, 'a.key') };
    await writeFile(files.keyFile, 'old', { mode: 0o644 });
    await writeCertifiedKeyPair(await serverCert(), files);
    assert.equal((await stat(files.keyFile)).mode & 0o777, 0o600);
    assert.equal((await keyPairFromPem(await readFile(files.keyFile))).algorithm, 'ec-p256');
    assert.ok(
      new X509Certificate(await readFile(files.certFile)).verify(
        new X509Certificate((await caPromise).certificate).publicKey,
      ),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

import { readFile } from 'node:fs/promises';
import { aborted, sleep } from '../abort.js';
import { errorMessage, VirtualKubeletError } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { AltNames } from '../pki/index.js';
import {
  createCertificateRequest,
  createSelfSignedCertificate,
  generateKeyPair,
  privateKeyToPem,
  readCertificate,
} from '../pki/index.js';

/** A PEM key pair and when its certificate expires. */
export interface ServingCertificate {
  readonly cert: string;
  readonly key: string;
  readonly notAfter: Date;
}

/** Subject alternative names a serving certificate needs: the addresses clients dial. */
export interface ServingNames {
  readonly nodeName: string;
  readonly ips: readonly string[];
  readonly dnsNames?: readonly string[];
}

const altNamesOf = (n: ServingNames): AltNames => ({
  ipAddresses: n.ips,
  dnsNames: [n.nodeName, ...(n.dnsNames ?? [])],
});

function notAfterOf(cert: string): Date {
  return readCertificate(cert).notAfter;
}

/** Reads a key pair from files (`--tls-cert-file`, `--tls-private-key-file`). */
export async function certificateFromFiles(
  certFile: string,
  keyFile: string,
): Promise<ServingCertificate> {
  try {
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return { cert, key, notAfter: notAfterOf(cert) };
  } catch (err) {
    throw new VirtualKubeletError(
      'InvalidInput',
      `cannot read the serving certificate ${certFile} / ${keyFile}: ${errorMessage(err)}`,
      { cause: err },
    );
  }
}

/** A self-signed certificate: the last resort, which clients that verify will refuse. */
export async function selfSignedCertificate(names: ServingNames): Promise<ServingCertificate> {
  const pair = await createSelfSignedCertificate({
    subject: { commonName: `system:node:${names.nodeName}` },
    altNames: altNamesOf(names),
    keyUsages: ['digitalSignature'],
    extendedKeyUsages: ['serverAuth'],
    validityDays: 365,
  });
  const cert = pair.certificate;
  return { cert, key: await privateKeyToPem(pair.keys), notAfter: notAfterOf(cert) };
}

export interface CsrOptions {
  readonly client: KubeClient;
  readonly names: ServingNames;
  readonly logger?: Logger;
  /** Requested lifetime. Default: the signer's (a year for the cluster signer). */
  readonly expirationSeconds?: number;
  /** How often the CSR is checked for a certificate. Default: 1 000 ms. */
  readonly pollIntervalMs?: number;
}

interface Csr {
  metadata?: { name?: string };
  status?: {
    certificate?: string;
    conditions?: { type?: string; reason?: string; message?: string }[];
  };
}

/**
 * Asks the cluster for a serving certificate through a `kubernetes.io/kubelet-serving`
 * CertificateSigningRequest, as a kubelet with `--rotate-server-certificates` does, and waits
 * until someone approves it (`kubectl certificate approve <name>`; nothing approves these
 * automatically) and the signer issues it. A denied or failed request throws.
 */
export async function certificateFromCsr(
  options: CsrOptions,
  signal: AbortSignal,
): Promise<ServingCertificate> {
  const { client, names } = options;
  const log = options.logger ?? silentLogger;
  // The subject and names the kubernetes.io/kubelet-serving signer insists on.
  const keys = await generateKeyPair();
  const request = await createCertificateRequest({
    subject: { commonName: `system:node:${names.nodeName}`, organizations: ['system:nodes'] },
    altNames: altNamesOf(names),
    keys,
  });
  const key = await privateKeyToPem(keys);
  const created = await client.create<Csr>(
    '/apis/certificates.k8s.io/v1/certificatesigningrequests',
    {
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { generateName: `csr-${names.nodeName}-` },
      spec: {
        request: Buffer.from(request).toString('base64'),
        signerName: 'kubernetes.io/kubelet-serving',
        usages: ['digital signature', 'server auth'],
        ...(options.expirationSeconds ? { expirationSeconds: options.expirationSeconds } : {}),
      },
    },
    signal,
  );
  const name = created.metadata?.name ?? '';
  log.info(
    { csr: name },
    `waiting for the serving certificate request to be approved: kubectl certificate approve ${name}`,
  );
  for (;;) {
    signal.throwIfAborted();
    const csr = await client.get<Csr>(
      `/apis/certificates.k8s.io/v1/certificatesigningrequests/${name}`,
      signal,
    );
    const bad = csr?.status?.conditions?.find((c) => c.type === 'Denied' || c.type === 'Failed');
    if (bad)
      throw new VirtualKubeletError(
        'Permanent',
        `the serving certificate request ${name} was ${bad.type === 'Denied' ? 'denied' : 'not signed'}: ${bad.message ?? bad.reason ?? ''}`,
      );
    if (!csr)
      throw new VirtualKubeletError(
        'Unavailable',
        `the serving certificate request ${name} disappeared`,
      );
    if (csr.status?.certificate) {
      const cert = Buffer.from(csr.status.certificate, 'base64').toString('utf8');
      log.info({ csr: name }, 'serving certificate issued');
      return { cert, key, notAfter: notAfterOf(cert) };
    }
    await sleep(options.pollIntervalMs ?? 1_000, signal);
  }
}

/**
 * Keeps a serving certificate fresh: calls `renew` when 80% of the current certificate's
 * lifetime has passed (as the kubelet does, give or take), and hands the new one to `apply`.
 * Failures are logged and retried a minute later.
 */
export async function rotateCertificate(
  current: ServingCertificate,
  renew: (signal: AbortSignal) => Promise<ServingCertificate>,
  apply: (cert: ServingCertificate) => void,
  signal: AbortSignal,
  logger: Logger = silentLogger,
): Promise<void> {
  let cert = current;
  let since = Date.now();
  while (!aborted(signal)) {
    const start = Math.min(since, cert.notAfter.getTime());
    const due = start + (cert.notAfter.getTime() - start) * 0.8;
    await sleep(Math.min(Math.max(due - Date.now(), 0), 2 ** 31 - 1), signal);
    if (aborted(signal)) return;
    if (Date.now() < due) continue;
    try {
      const next = await renew(signal);
      apply(next);
      cert = next;
      since = Date.now();
      logger.info({ notAfter: cert.notAfter.toISOString() }, 'serving certificate rotated');
    } catch (err) {
      if (aborted(signal)) return;
      logger.warn(
        { err: errorMessage(err) },
        'serving certificate rotation failed; retrying in a minute',
      );
      await sleep(60_000, signal);
    }
  }
}

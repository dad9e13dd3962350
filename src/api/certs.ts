import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { aborted, sleep } from '../abort.js';
import { errorMessage, VirtualKubeletError } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';

const exec = promisify(execFile);

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

const sanOf = (n: ServingNames): string =>
  [
    ...n.ips.map((ip) => `IP:${ip}`),
    ...[n.nodeName, ...(n.dnsNames ?? [])].map((d) => `DNS:${d}`),
  ].join(',');

function notAfterOf(cert: string): Date {
  return new Date(new X509Certificate(cert).validTo);
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

async function openssl(args: string[], dir: string): Promise<void> {
  try {
    await exec('openssl', args, { cwd: dir });
  } catch (err) {
    throw new VirtualKubeletError(
      'Unavailable',
      (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'openssl was not found: install it, or pass --tls-cert-file and --tls-private-key-file'
        : `openssl failed: ${errorMessage(err)}`,
      { cause: err },
    );
  }
}

/** A self-signed certificate: the last resort, which clients that verify will refuse. */
export async function selfSignedCertificate(names: ServingNames): Promise<ServingCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'vk-cert-'));
  try {
    await openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '365',
        '-keyout',
        'key.pem',
        '-out',
        'cert.pem',
        '-subj',
        `/CN=system:node:${names.nodeName}`,
        '-addext',
        `subjectAltName=${sanOf(names)}`,
        '-addext',
        'extendedKeyUsage=serverAuth',
      ],
      dir,
    );
    const [cert, key] = await Promise.all([
      readFile(join(dir, 'cert.pem'), 'utf8'),
      readFile(join(dir, 'key.pem'), 'utf8'),
    ]);
    return { cert, key, notAfter: notAfterOf(cert) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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
  const dir = await mkdtemp(join(tmpdir(), 'vk-csr-'));
  let key: string;
  let request: string;
  try {
    await writeFile(join(dir, 'ext.cnf'), '');
    await openssl(
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'key.pem',
        '-out',
        'csr.pem',
        '-subj',
        `/O=system:nodes/CN=system:node:${names.nodeName}`,
        '-addext',
        `subjectAltName=${sanOf(names)}`,
      ],
      dir,
    );
    [key, request] = await Promise.all([
      readFile(join(dir, 'key.pem'), 'utf8'),
      readFile(join(dir, 'csr.pem'), 'utf8'),
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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

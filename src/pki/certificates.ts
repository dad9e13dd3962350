// @peculiar/x509's dependency container (tsyringe) needs the Reflect metadata API when it loads.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import type { KeyPair } from './keys.js';
import { fromPem, generateKeyPair, privateKeyToPem, signingAlgorithm } from './keys.js';

/** Subject or issuer of a certificate: a common name and organizations (Kubernetes groups). */
export interface DistinguishedName {
  readonly commonName: string;
  readonly organizations?: readonly string[];
}

/** Subject alternative names: the DNS names and IP addresses (v4 or v6) a certificate is for. */
export interface AltNames {
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
}

export type KeyUsageName = 'digitalSignature' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign';
export type ExtendedKeyUsageName = 'serverAuth' | 'clientAuth';

/** What a certificate says about its key. */
export interface CertificateProfile {
  readonly subject: DistinguishedName;
  readonly altNames?: AltNames;
  /** Default: `digitalSignature` and `keyEncipherment`, as kubeadm's leaf certificates have. */
  readonly keyUsages?: readonly KeyUsageName[];
  /** Default: none, which TLS libraries read as "any purpose". */
  readonly extendedKeyUsages?: readonly ExtendedKeyUsageName[];
  /** Default: 365. */
  readonly validityDays?: number;
  /** Default: now. */
  readonly notBefore?: Date;
  /** The key to certify. Default: a new EC P-256 key pair. */
  readonly keys?: KeyPair;
}

export interface CertificateAuthorityOptions {
  readonly subject: DistinguishedName;
  /** Default: 3650. */
  readonly validityDays?: number;
  /** Default: now. */
  readonly notBefore?: Date;
  /** Default: a new EC P-256 key pair. */
  readonly keys?: KeyPair;
}

/** A PEM certificate and the key pair it certifies. */
export interface CertifiedKeyPair {
  readonly certificate: string;
  readonly keys: KeyPair;
}

/** What a certificate says, read back. */
export interface CertificateInfo {
  readonly subject: DistinguishedName;
  readonly issuer: DistinguishedName;
  /** Hexadecimal, as `openssl x509 -serial` prints it (lower case). */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly altNames: Required<AltNames>;
  readonly isCa: boolean;
  readonly keyUsages: readonly KeyUsageName[];
  readonly extendedKeyUsages: readonly ExtendedKeyUsageName[];
  /** Hexadecimal SubjectKeyIdentifier, when the certificate has one. */
  readonly subjectKeyId: string | undefined;
  /** Hexadecimal key identifier of the AuthorityKeyIdentifier, when the certificate has one. */
  readonly authorityKeyId: string | undefined;
}

/** A certificate signing request, read back. */
export interface CertificateRequestInfo {
  readonly subject: DistinguishedName;
  readonly altNames: Required<AltNames>;
  /** Whether the request is signed by the key it carries. */
  readonly signatureValid: boolean;
}

const crypto = webcrypto;
const DAY_MS = 86_400_000;
const SUBJECT_ALT_NAME = '2.5.29.17';

const KEY_USAGE: Record<KeyUsageName, x509.KeyUsageFlags> = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
};
const EKU: Record<ExtendedKeyUsageName, string> = {
  serverAuth: x509.ExtendedKeyUsage.serverAuth,
  clientAuth: x509.ExtendedKeyUsage.clientAuth,
};

/**
 * A self-signed certificate authority: basic constraints `CA:TRUE` (critical), key usage
 * keyCertSign, cRLSign and digitalSignature (critical), and a SubjectKeyIdentifier that the
 * certificates it issues name as their AuthorityKeyIdentifier.
 */
export async function createCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertifiedKeyPair> {
  const keys = options.keys ?? (await generateKeyPair());
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto);
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: jsonName(options.subject),
      keys,
      serialNumber: serialNumber(),
      signingAlgorithm: signingAlgorithm(keys.algorithm),
      ...validity(options.notBefore, options.validityDays ?? 3650),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          usageFlags(['keyCertSign', 'cRLSign', 'digitalSignature']),
          true,
        ),
        ski,
        new x509.AuthorityKeyIdentifierExtension(ski.keyId),
      ],
    },
    crypto,
  );
  return { certificate: cert.toString('pem') + '\n', keys };
}

/**
 * A certificate for `profile.keys` signed by `issuer` (a CA from `createCertificateAuthority`,
 * or one read from files): basic constraints `CA:FALSE`, the profile's key usages (critical),
 * extended key usages and subject alternative names, a random positive 127-bit serial number,
 * and SubjectKeyIdentifier/AuthorityKeyIdentifier.
 */
export async function issueCertificate(
  issuer: CertifiedKeyPair,
  profile: CertificateProfile,
): Promise<CertifiedKeyPair> {
  const keys = profile.keys ?? (await generateKeyPair());
  const ca = parse(issuer.certificate);
  const caKeyId =
    ca.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ??
    (await x509.SubjectKeyIdentifierExtension.create(issuer.keys.publicKey, false, crypto)).keyId;
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject: jsonName(profile.subject),
      // The issuer's subject exactly as encoded, so chain building matches it byte for byte.
      issuer: ca.subjectName,
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      serialNumber: serialNumber(),
      signingAlgorithm: signingAlgorithm(issuer.keys.algorithm),
      ...validity(profile.notBefore, profile.validityDays ?? 365),
      extensions: [
        new x509.BasicConstraintsExtension(false),
        ...(await leafExtensions(profile, keys)),
        new x509.AuthorityKeyIdentifierExtension(caKeyId),
      ],
    },
    crypto,
  );
  return { certificate: cert.toString('pem') + '\n', keys };
}

/**
 * A self-signed leaf certificate (no basic constraints), for a server that has no CA to ask:
 * clients that verify refuse it unless told to trust this very certificate. Its key usages
 * include keyCertSign, since it signs itself: OpenSSL does not take a certificate as its own
 * issuer without it.
 */
export async function createSelfSignedCertificate(
  profile: CertificateProfile,
): Promise<CertifiedKeyPair> {
  const keys = profile.keys ?? (await generateKeyPair());
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: jsonName(profile.subject),
      keys,
      serialNumber: serialNumber(),
      signingAlgorithm: signingAlgorithm(keys.algorithm),
      ...validity(profile.notBefore, profile.validityDays ?? 365),
      extensions: await leafExtensions(
        {
          ...profile,
          keyUsages: [...new Set([...leafKeyUsages(profile), 'keyCertSign' as const])],
        },
        keys,
      ),
    },
    crypto,
  );
  return { certificate: cert.toString('pem') + '\n', keys };
}

export interface CertificateRequestOptions {
  readonly subject: DistinguishedName;
  readonly altNames?: AltNames;
  readonly keys: KeyPair;
}

/**
 * A PKCS #10 certificate signing request (`BEGIN CERTIFICATE REQUEST`) for `keys`, with the
 * subject alternative names in an extension request, as Kubernetes' CSR signers expect.
 */
export async function createCertificateRequest(
  options: CertificateRequestOptions,
): Promise<string> {
  const san = altNamesExtension(options.altNames);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: jsonName(options.subject),
      keys: options.keys,
      signingAlgorithm: signingAlgorithm(options.keys.algorithm),
      extensions: san ? [san] : [],
    },
    crypto,
  );
  return csr.toString('pem') + '\n';
}

/** Reads the first certificate in `pem`. Throws when there is none or it does not parse. */
export function readCertificate(pem: string | Buffer): CertificateInfo {
  const cert = parse(pem);
  const ku = cert.getExtension(x509.KeyUsagesExtension)?.usages ?? 0;
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [];
  return {
    subject: dn(cert.subjectName),
    issuer: dn(cert.issuerName),
    serialNumber: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    altNames: altNamesOf(cert.getExtension(x509.SubjectAlternativeNameExtension)),
    isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    keyUsages: (Object.keys(KEY_USAGE) as KeyUsageName[]).filter((k) => (ku & KEY_USAGE[k]) !== 0),
    extendedKeyUsages: (Object.keys(EKU) as ExtendedKeyUsageName[]).filter((k) =>
      eku.some((u) => u === EKU[k]),
    ),
    subjectKeyId: cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    authorityKeyId: cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
  };
}

/** Reads a PEM certificate signing request and checks its signature. */
export async function readCertificateRequest(
  pem: string | Buffer,
): Promise<CertificateRequestInfo> {
  const der = fromPem('CERTIFICATE REQUEST', pem.toString())[0];
  if (!der) throw new TypeError('no PEM certificate request (BEGIN CERTIFICATE REQUEST) found');
  const csr = new x509.Pkcs10CertificateRequest(der);
  const san = csr.getExtension(SUBJECT_ALT_NAME);
  return {
    subject: dn(csr.subjectName),
    altNames: altNamesOf(san ? new x509.SubjectAlternativeNameExtension(san.rawData) : null),
    signatureValid: await csr.verify(crypto),
  };
}

/**
 * Writes a key pair's files: the private key first and readable by its owner only (0600, also
 * when the file was there before), then the certificate, so a certificate on disk always has
 * its key next to it.
 */
export async function writeCertifiedKeyPair(
  pair: CertifiedKeyPair,
  files: { readonly certFile: string; readonly keyFile: string },
): Promise<void> {
  await writePrivateKeyFile(files.keyFile, await privateKeyToPem(pair.keys));
  await writeFile(files.certFile, pair.certificate, { mode: 0o644 });
}

/** Writes a PEM private key readable by its owner only (0600, also when the file existed). */
export async function writePrivateKeyFile(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o600 });
  await chmod(path, 0o600);
}

function parse(pem: string | Buffer): x509.X509Certificate {
  const der = fromPem('CERTIFICATE', pem.toString())[0];
  if (!der) throw new TypeError('no PEM certificate (BEGIN CERTIFICATE) found');
  return new x509.X509Certificate(der);
}

async function leafExtensions(
  profile: CertificateProfile,
  keys: KeyPair,
): Promise<x509.Extension[]> {
  const san = altNamesExtension(profile.altNames);
  const ekus = profile.extendedKeyUsages ?? [];
  return [
    new x509.KeyUsagesExtension(usageFlags(leafKeyUsages(profile)), true),
    ...(ekus.length > 0 ? [new x509.ExtendedKeyUsageExtension(ekus.map((u) => EKU[u]))] : []),
    ...(san ? [san] : []),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
  ];
}

function leafKeyUsages(profile: CertificateProfile): readonly KeyUsageName[] {
  return profile.keyUsages ?? ['digitalSignature', 'keyEncipherment'];
}

function altNamesExtension(
  names: AltNames | undefined,
): x509.SubjectAlternativeNameExtension | undefined {
  const entries = [
    ...(names?.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(names?.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  return entries.length > 0 ? new x509.SubjectAlternativeNameExtension(entries) : undefined;
}

function altNamesOf(ext: x509.SubjectAlternativeNameExtension | null): Required<AltNames> {
  const items = ext?.names.items ?? [];
  return {
    dnsNames: items.filter((n) => n.type === 'dns').map((n) => n.value),
    ipAddresses: items.filter((n) => n.type === 'ip').map((n) => n.value),
  };
}

function usageFlags(usages: readonly KeyUsageName[]): x509.KeyUsageFlags {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment -- a bit mask of the enum's flags
  return usages.reduce<number>((flags, u) => flags | KEY_USAGE[u], 0);
}

function jsonName(name: DistinguishedName): x509.JsonName {
  return [...(name.organizations ?? []).map((o) => ({ O: [o] })), { CN: [name.commonName] }];
}

function dn(name: x509.Name): DistinguishedName {
  return {
    commonName: name.getField('CN')[0] ?? '',
    organizations: name.getField('O'),
  };
}

/**
 * A random serial number of 16 bytes whose first byte is in 0x40–0x7f: positive, minimally
 * encoded (Go's parser rejects a leading zero byte) and unique in practice.
 */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return bytes.toString('hex');
}

/** X.509 times have whole seconds; the validity starts now (or at `notBefore`). */
function validity(notBefore: Date | undefined, days: number): { notBefore: Date; notAfter: Date } {
  const start = Math.floor((notBefore ?? new Date()).getTime() / 1000) * 1000;
  return { notBefore: new Date(start), notAfter: new Date(start + days * DAY_MS) };
}

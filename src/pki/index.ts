/**
 * Certificates made in process on WebCrypto (`@peculiar/x509`): key pairs, PEM, certificate
 * authorities, certificates they sign, self-signed certificates, certificate signing requests,
 * and reading certificates back. A leaf room: it imports nothing else of the project, so the dev
 * cluster (plain Node) and the kubelet API both use it.
 */
export type {
  AltNames,
  CertificateAuthorityOptions,
  CertificateInfo,
  CertificateProfile,
  CertificateRequestInfo,
  CertificateRequestOptions,
  CertifiedKeyPair,
  DistinguishedName,
  ExtendedKeyUsageName,
  KeyUsageName,
} from './certificates.js';
export {
  createCertificateAuthority,
  createCertificateRequest,
  createSelfSignedCertificate,
  issueCertificate,
  readCertificate,
  readCertificateRequest,
  writeCertifiedKeyPair,
  writePrivateKeyFile,
} from './certificates.js';
export type { KeyAlgorithm, KeyPair } from './keys.js';
export {
  fromPem,
  generateKeyPair,
  keyPairFromPem,
  privateKeyToPem,
  publicKeyToPem,
  toPem,
} from './keys.js';

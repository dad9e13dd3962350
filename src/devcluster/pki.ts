import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AltNames } from '../pki/index.js';
import {
  createCertificateAuthority,
  generateKeyPair,
  issueCertificate,
  keyPairFromPem,
  privateKeyToPem,
  publicKeyToPem,
  writeCertifiedKeyPair,
  writePrivateKeyFile,
} from '../pki/index.js';

/** Names of the files a dev cluster's PKI holds (each `<name>.crt` + `<name>.key`). */
export const PKI = {
  ca: 'ca',
  frontProxyCa: 'front-proxy-ca',
  apiserver: 'apiserver',
  admin: 'admin',
  apiserverKubeletClient: 'apiserver-kubelet-client',
  controllerManager: 'kube-controller-manager',
  scheduler: 'kube-scheduler',
  frontProxyClient: 'front-proxy-client',
  /** etcd's own CA: it signs etcd's serving/peer certificate and the clients etcd accepts. */
  etcdCa: 'etcd-ca',
  /** etcd's serving and peer certificate (server and client usage, 127.0.0.1). */
  etcdServer: 'etcd-server',
  /** kube-apiserver's client certificate for etcd. */
  apiserverEtcdClient: 'apiserver-etcd-client',
  /** kube-proxy's identity: `system:kube-proxy`, bound to `system:node-proxier` by default. */
  kubeProxy: 'kube-proxy',
  /** CoreDNS's identity: `system:coredns`, bound to the ClusterRole the dev cluster ships. */
  coredns: 'coredns',
  /** Service-account signing key pair: `sa.key` and `sa.pub`. */
  serviceAccount: 'sa',
} as const;

/** `peer`: both server and client usage (etcd's peer certificate is both). */
export type CertUsage = 'client' | 'server' | 'peer';

export interface CertRequest {
  /** File stem inside the PKI directory. */
  readonly name: string;
  /** Common name. */
  readonly cn: string;
  /** Organizations (Kubernetes groups for client certificates). */
  readonly organizations?: readonly string[];
  readonly usage: CertUsage;
  /** Subject alternative names, e.g. `IP:127.0.0.1`, `DNS:localhost`. */
  readonly sans?: readonly string[];
  /** Stem of the signing CA. Default: `ca`. */
  readonly ca?: string;
  /** Default: 825. */
  readonly days?: number;
}

const API_SANS = [
  'IP:127.0.0.1',
  'IP:10.96.0.1',
  'DNS:localhost',
  'DNS:kubernetes',
  'DNS:kubernetes.default',
  'DNS:kubernetes.default.svc',
  'DNS:kubernetes.default.svc.cluster.local',
];

/**
 * Creates the dev cluster's CAs, certificates and service-account keys in `dir`. Files that
 * already exist are kept, so a cluster directory keeps its identity across restarts.
 */
export async function ensurePki(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await ensureCa(dir, PKI.ca, 'virtual-kubelet-dev-ca');
  await ensureCa(dir, PKI.frontProxyCa, 'virtual-kubelet-dev-front-proxy-ca');
  // A CA of its own: a certificate from the cluster CA (a node's, a user's) must not open etcd.
  await ensureCa(dir, PKI.etcdCa, 'virtual-kubelet-dev-etcd-ca');
  const leaves: CertRequest[] = [
    { name: PKI.apiserver, cn: 'kube-apiserver', usage: 'server', sans: API_SANS },
    { name: PKI.admin, cn: 'kubernetes-admin', organizations: ['system:masters'], usage: 'client' },
    {
      name: PKI.apiserverKubeletClient,
      cn: 'kube-apiserver-kubelet-client',
      organizations: ['system:masters'],
      usage: 'client',
    },
    { name: PKI.controllerManager, cn: 'system:kube-controller-manager', usage: 'client' },
    { name: PKI.scheduler, cn: 'system:kube-scheduler', usage: 'client' },
    {
      name: PKI.frontProxyClient,
      cn: 'front-proxy-client',
      usage: 'client',
      ca: PKI.frontProxyCa,
    },
    {
      name: PKI.etcdServer,
      cn: 'etcd',
      usage: 'peer',
      sans: ['IP:127.0.0.1', 'DNS:localhost'],
      ca: PKI.etcdCa,
    },
    {
      name: PKI.apiserverEtcdClient,
      cn: 'kube-apiserver-etcd-client',
      usage: 'client',
      ca: PKI.etcdCa,
    },
    { name: PKI.kubeProxy, cn: 'system:kube-proxy', usage: 'client' },
    { name: PKI.coredns, cn: 'system:coredns', usage: 'client' },
  ];
  await Promise.all(
    leaves.map(async (leaf) => {
      if (!(await exists(join(dir, `${leaf.name}.crt`)))) await issueCert(dir, leaf);
    }),
  );
  if (!(await exists(join(dir, 'sa.pub')))) {
    const keys = await generateKeyPair();
    await writePrivateKeyFile(join(dir, 'sa.key'), await privateKeyToPem(keys));
    await writeFile(join(dir, 'sa.pub'), await publicKeyToPem(keys), { mode: 0o644 });
  }
}

async function ensureCa(dir: string, name: string, cn: string): Promise<void> {
  if (await exists(join(dir, `${name}.crt`))) return;
  const ca = await createCertificateAuthority({ subject: { commonName: cn }, validityDays: 3650 });
  await writeCertifiedKeyPair(ca, files(dir, name));
}

/**
 * Issues `<name>.crt`/`<name>.key` in `dir`, signed by the CA in the same directory.
 * Overwrites an existing pair of that name.
 */
export async function issueCert(dir: string, req: CertRequest): Promise<void> {
  const caFiles = files(dir, req.ca ?? PKI.ca);
  const [certificate, caKey] = await Promise.all([
    readFile(caFiles.certFile, 'utf8'),
    readFile(caFiles.keyFile),
  ]);
  const leaf = await issueCertificate(
    { certificate, keys: await keyPairFromPem(caKey) },
    {
      subject: { commonName: req.cn, organizations: req.organizations ?? [] },
      altNames: parseSans(req.sans ?? []),
      keyUsages: ['digitalSignature', 'keyEncipherment'],
      extendedKeyUsages:
        req.usage === 'peer'
          ? ['serverAuth', 'clientAuth']
          : [req.usage === 'server' ? 'serverAuth' : 'clientAuth'],
      validityDays: req.days ?? 825,
    },
  );
  await writeCertifiedKeyPair(leaf, files(dir, req.name));
}

const files = (dir: string, name: string): { certFile: string; keyFile: string } => ({
  certFile: join(dir, `${name}.crt`),
  keyFile: join(dir, `${name}.key`),
});

/** `CertRequest.sans`: `IP:<address>` and `DNS:<name>` entries. */
function parseSans(sans: readonly string[]): AltNames {
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const san of sans) {
    const colon = san.indexOf(':');
    const kind = san.slice(0, colon).toUpperCase();
    const value = san.slice(colon + 1);
    if (kind === 'DNS' && value) dnsNames.push(value);
    else if (kind === 'IP' && value) ipAddresses.push(value);
    else
      throw new TypeError(`subject alternative name ${san}: IP:<address> or DNS:<name> expected`);
  }
  return { dnsNames, ipAddresses };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export interface KubeconfigOptions {
  readonly server: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Context, cluster and user names. Default: `virtual-kubelet-dev`. */
  readonly name?: string;
}

/** A kubeconfig with the CA and the client key pair embedded, so it works from any directory. */
export async function renderKubeconfig(options: KubeconfigOptions): Promise<string> {
  const name = options.name ?? 'virtual-kubelet-dev';
  const b64 = async (path: string): Promise<string> => (await readFile(path)).toString('base64');
  const [ca, cert, key] = await Promise.all([
    b64(options.caFile),
    b64(options.certFile),
    b64(options.keyFile),
  ]);
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${options.server}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    `- name: ${name}`,
    '  user:',
    `    client-certificate-data: ${cert}`,
    `    client-key-data: ${key}`,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    `current-context: ${name}`,
    '',
  ].join('\n');
}

export interface NodeKubeconfigOptions {
  readonly pkiDir: string;
  readonly server: string;
  readonly nodeName: string;
  /** Where to write the kubeconfig. */
  readonly path: string;
}

/**
 * Writes a kubeconfig for the identity a kubelet has: a client certificate for
 * `CN=system:node:<nodeName>, O=system:nodes`, which the Node authorizer and NodeRestriction
 * confine to that node's objects.
 */
export async function writeNodeKubeconfig(options: NodeKubeconfigOptions): Promise<string> {
  const stem = `node-${options.nodeName}`;
  await issueCert(options.pkiDir, {
    name: stem,
    cn: `system:node:${options.nodeName}`,
    organizations: ['system:nodes'],
    usage: 'client',
  });
  const text = await renderKubeconfig({
    server: options.server,
    caFile: join(options.pkiDir, `${PKI.ca}.crt`),
    certFile: join(options.pkiDir, `${stem}.crt`),
    keyFile: join(options.pkiDir, `${stem}.key`),
    name: `system:node:${options.nodeName}`,
  });
  await writeFile(options.path, text, { mode: 0o600 });
  return options.path;
}

export interface NodeServingCertificateOptions {
  readonly pkiDir: string;
  readonly nodeName: string;
  /** The node's addresses the API server dials (its InternalIP). Default: `['127.0.0.1']`. */
  readonly ips?: readonly string[];
}

/**
 * Issues a kubelet serving certificate for a node from the cluster CA, with the subject and
 * names a kubelet-serving CSR of that node would get (`CN=system:node:<nodeName>`,
 * `O=system:nodes`, DNS the node name, IP its addresses), as `<pkiDir>/node-<nodeName>-serving.crt`
 * and `.key`. Resolves to both paths (for `--tls-cert-file` and `--tls-private-key-file`).
 */
export async function writeNodeServingCertificate(
  options: NodeServingCertificateOptions,
): Promise<{ certFile: string; keyFile: string }> {
  const name = `node-${options.nodeName}-serving`;
  await issueCert(options.pkiDir, {
    name,
    cn: `system:node:${options.nodeName}`,
    organizations: ['system:nodes'],
    usage: 'server',
    sans: [`DNS:${options.nodeName}`, ...(options.ips ?? ['127.0.0.1']).map((ip) => `IP:${ip}`)],
    days: 365,
  });
  return files(options.pkiDir, name);
}

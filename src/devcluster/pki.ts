import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DevClusterError } from './errors.js';

const exec = promisify(execFile);

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
  /** Service-account signing key pair: `sa.key` and `sa.pub`. */
  serviceAccount: 'sa',
} as const;

export type CertUsage = 'client' | 'server';

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
  ];
  await Promise.all(
    leaves.map(async (leaf) => {
      if (!(await exists(join(dir, `${leaf.name}.crt`)))) await issueCert(dir, leaf);
    }),
  );
  if (!(await exists(join(dir, 'sa.pub')))) {
    await openssl([
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-out',
      join(dir, 'sa.key'),
    ]);
    await openssl(['pkey', '-in', join(dir, 'sa.key'), '-pubout', '-out', join(dir, 'sa.pub')]);
  }
}

async function ensureCa(dir: string, name: string, cn: string): Promise<void> {
  if (await exists(join(dir, `${name}.crt`))) return;
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '3650',
    '-keyout',
    join(dir, `${name}.key`),
    '-out',
    join(dir, `${name}.crt`),
    '-subj',
    `/CN=${cn}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
}

/**
 * Issues `<name>.crt`/`<name>.key` in `dir`, signed by the CA in the same directory.
 * Overwrites an existing pair of that name.
 */
export async function issueCert(dir: string, req: CertRequest): Promise<void> {
  const ca = req.ca ?? PKI.ca;
  const base = join(dir, req.name);
  const subject =
    (req.organizations ?? []).map((o) => `/O=${escapeRdn(o)}`).join('') +
    `/CN=${escapeRdn(req.cn)}`;
  const ext = [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${req.usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
    ...(req.sans && req.sans.length > 0 ? [`subjectAltName=${req.sans.join(',')}`] : []),
  ].join('\n');
  const tag = randomBytes(4).toString('hex');
  const csr = `${base}.${tag}.csr`;
  const extFile = `${base}.${tag}.ext`;
  try {
    await writeFile(extFile, ext + '\n');
    await openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${base}.key`,
      '-out',
      csr,
      '-subj',
      subject,
    ]);
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      join(dir, `${ca}.crt`),
      '-CAkey',
      join(dir, `${ca}.key`),
      '-set_serial',
      `0x${randomBytes(16).toString('hex')}`,
      '-days',
      String(req.days ?? 825),
      '-extfile',
      extFile,
      '-out',
      `${base}.crt`,
    ]);
  } finally {
    await Promise.all([rm(csr, { force: true }), rm(extFile, { force: true })]);
  }
}

function escapeRdn(value: string): string {
  return value.replace(/[/\\]/g, (c) => `\\${c}`);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await exec('openssl', args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new DevClusterError(
      'OpensslFailed',
      missing
        ? 'openssl was not found: install it (apt-get install openssl); it makes the dev cluster certificates'
        : `openssl ${args[0] ?? ''} failed: ${stderr.trim().split('\n').slice(-1)[0] ?? ''}`,
      { cause: err },
    );
  }
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

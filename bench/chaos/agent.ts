// Our agent as the chaos scenarios run it: `bin/virtual-kubelet` in its own process with a
// kubelet's identity (system:node:<name> under the Node authorizer and NodeRestriction), the
// cluster CA for client certificates, webhook authorization of the kubelet API.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClusterInfo } from '../../src/devcluster/cluster.js';
import { freePorts } from '../../src/devcluster/cluster.js';
import { issueCert, PKI, writeNodeKubeconfig } from '../../src/devcluster/pki.js';
import { spawnOwned, stopProcess } from '../../src/devcluster/process.js';
import { repoRoot } from '../systems.js';
import type { AgentOptions, ChaosAgent } from './types.js';

/** Capacity every mock node of the suite offers, under whatever the scenario configures. */
const MOCK_BASE = { cpu: '1000', memory: '10000Gi', pods: '5000', logIntervalMs: 0 };

let started = 0;

/** A fresh node name for `scenario`. */
export const freshNodeName = (scenario: string): string =>
  `chaos-${scenario}-${randomBytes(3).toString('hex')}`;

/** The serving certificate of `nodeName` (files `serving-<node>.crt/.key` in the PKI). */
export async function servingCert(
  pkiDir: string,
  nodeName: string,
): Promise<{ cert: string; key: string }> {
  const name = `serving-${nodeName}`;
  await issueCert(pkiDir, {
    name,
    cn: `system:node:${nodeName}`,
    organizations: ['system:nodes'],
    usage: 'server',
    sans: ['IP:127.0.0.1', `DNS:${nodeName}`],
  });
  return { cert: join(pkiDir, `${name}.crt`), key: join(pkiDir, `${name}.key`) };
}

/** Starts our agent; see {@link ChaosAgent} for what it runs with. */
export async function startAgent(
  info: ClusterInfo,
  dir: string,
  scenario: string,
  options: AgentOptions = {},
): Promise<ChaosAgent> {
  const nodeName = options.nodeName ?? freshNodeName(scenario);
  const provider = options.provider ?? 'mock';
  const [port] = await freePorts(1);
  if (port === undefined) throw new Error('no free port');
  const kubeconfig = await writeNodeKubeconfig({
    pkiDir: info.pkiDir,
    server: info.server,
    nodeName,
    path: join(dir, `node-${nodeName}.kubeconfig`),
  });
  const serving = await servingCert(info.pkiDir, nodeName);
  const n = ++started;
  const config = join(dir, `${String(n).padStart(2, '0')}-${nodeName}.${provider}.json`);
  const providerConfig =
    provider === 'mock' ? { ...MOCK_BASE, ...options.providerConfig } : options.providerConfig;
  if (providerConfig) await writeFile(config, JSON.stringify(providerConfig));
  const logPath = join(dir, `${String(n).padStart(2, '0')}-${nodeName}.log`);
  const child = spawnOwned(process.execPath, {
    args: [
      join(repoRoot, 'bin', 'virtual-kubelet'),
      '--kubeconfig',
      kubeconfig,
      '--nodename',
      nodeName,
      '--provider',
      provider,
      ...(providerConfig ? ['--provider-config', config] : []),
      '--node-ip',
      '127.0.0.1',
      '--listen-port',
      String(port),
      '--tls-cert-file',
      serving.cert,
      '--tls-private-key-file',
      serving.key,
      '--client-ca-file',
      join(info.pkiDir, `${PKI.ca}.crt`),
      '--authorization-mode',
      'Webhook',
      ...(options.args ?? []),
    ],
    logPath,
    cwd: repoRoot,
    env: { ...process.env, ...options.env },
  });
  let why: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      why = signal ? `killed by ${signal}` : `exited with code ${String(code)}`;
      resolve();
    });
    child.once('error', (err) => {
      why = `could not start: ${err.message}`;
      resolve();
    });
  });
  return {
    nodeName,
    pid: child.pid,
    port,
    logPath,
    kubeconfig,
    exited: () => why,
    exit,
    kill: (signal) => {
      if (why === undefined) child.kill(signal);
    },
    stop: () => stopProcess(child, 10_000),
  };
}

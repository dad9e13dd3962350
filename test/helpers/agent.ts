import * as k8s from '@kubernetes/client-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { readFile } from 'node:fs/promises';
import { WebhookAuthorizer } from '../../src/api/auth.js';
import { issueCert, writeNodeKubeconfig } from '../../src/devcluster/pki.js';
import { KubeClient } from '../../src/kube/client.js';
import type { Provider } from '../../src/provider.js';
import { MockProvider } from '../../src/providers/mock/index.js';
import type { MockConfig } from '../../src/providers/mock/config.js';
import { VirtualNode, type VirtualNodeOptions } from '../../src/agent/virtual-node.js';
import { testCluster } from './cluster.js';
import { onOrphaned } from './orphan-watchdog.js';
import { waitFor } from './wait.js';

const bin = new URL('../../bin/virtual-kubelet', import.meta.url).pathname;

/** A node name unique to this run, e.g. `vk-deploy-3f9a1c`. */
export function uniqueNodeName(prefix: string): string {
  return `vk-${prefix}-${randomBytes(3).toString('hex')}`.toLowerCase();
}

/** Writes a kubeconfig with the identity `system:node:<name>` for the test cluster. */
export async function nodeKubeconfig(nodeName: string): Promise<string> {
  const c = testCluster();
  return writeNodeKubeconfig({
    pkiDir: c.pkiDir,
    server: c.server,
    nodeName,
    path: join(c.dir, `node-${nodeName}.kubeconfig`),
  });
}

export interface InProcessNode {
  readonly nodeName: string;
  readonly provider: Provider;
  readonly node: VirtualNode;
  /** Stops the agent (not the provider) and waits for every loop to end. */
  stop(): Promise<void>;
}

export interface NodeOptions {
  /** Default: a fresh unique name. */
  readonly nodeName?: string;
  /** A mock that pushes statuses (true) or one the core polls (false). Default: true. */
  readonly notify?: boolean;
  readonly config?: MockConfig;
  /** Reuse a provider (to restart the agent over a backend that kept its pods). */
  readonly provider?: Provider;
  readonly tuning?: Partial<Pick<VirtualNodeOptions, 'node' | 'pods'>>;
  /**
   * Serve the kubelet API on a free port, with a serving certificate from the cluster CA (the
   * API server verifies it) and webhook authentication and authorization. Default: false.
   */
  readonly api?: boolean;
  /** The node's InternalIP (and a SAN of its serving certificate). Default: 127.0.0.1. */
  readonly nodeIP?: string;
}

/** A serving certificate for `nodeName` signed by the test cluster's CA. */
export async function servingCertificate(
  nodeName: string,
  ips: readonly string[] = ['127.0.0.1'],
): Promise<{ cert: string; key: string }> {
  const { pkiDir } = testCluster();
  const name = `serving-${nodeName}`;
  await issueCert(pkiDir, {
    name,
    cn: `system:node:${nodeName}`,
    organizations: ['system:nodes'],
    usage: 'server',
    sans: [...new Set(['127.0.0.1', ...ips])].map((ip) => `IP:${ip}`).concat(`DNS:${nodeName}`),
  });
  const [cert, key] = await Promise.all([
    readFile(join(pkiDir, `${name}.crt`), 'utf8'),
    readFile(join(pkiDir, `${name}.key`), 'utf8'),
  ]);
  return { cert, key };
}

/**
 * Runs a virtual node in this process with the identity of a kubelet (`system:node:<name>`,
 * under the Node authorizer and NodeRestriction), with fast timings for tests. Stopped, and its
 * Node deleted, when the test ends.
 */
export async function startNode(t: TestContext, options: NodeOptions = {}): Promise<InProcessNode> {
  const nodeName = options.nodeName ?? uniqueNodeName('node');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(await nodeKubeconfig(nodeName));
  const client = await KubeClient.create(kc);
  const provider =
    options.provider ??
    new MockProvider({ nodeName, config: options.config ?? {}, notify: options.notify ?? true });
  const node = new VirtualNode({
    client,
    nodeName,
    provider,
    nodeIP: options.nodeIP ?? '127.0.0.1',
    taints: [{ key: 'virtual-kubelet.io/provider', value: 'mock', effect: 'NoSchedule' }],
    kubeletVersion: 'v1.37.2-vk-test',
    node: {
      statusUpdateIntervalMs: 2_000,
      pingIntervalMs: 500,
      leaseDurationSeconds: 8,
      ...options.tuning?.node,
    },
    pods: {
      pollIntervalMs: 300,
      fullResyncPeriodMs: 10_000,
      maxBackoffMs: 2_000,
      ...options.tuning?.pods,
    },
    ...(options.api
      ? {
          api: {
            ...(await servingCertificate(nodeName, [options.nodeIP ?? '127.0.0.1'])),
            clientCA: await readFile(join(testCluster().pkiDir, 'ca.crt')),
            port: 0,
            host: '127.0.0.1',
            authorizer: new WebhookAuthorizer({ client, nodeName }),
          },
        }
      : {}),
  });
  const controller = new AbortController();
  const running = node.run(controller.signal);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    controller.abort();
    await running;
    client.close();
  };
  t.after(async () => {
    await stop();
    if (!options.provider && provider instanceof MockProvider) await provider.close();
    await deleteNode(nodeName);
  });
  await Promise.race([node.whenReady(), running]);
  return { nodeName, provider, node, stop };
}

async function deleteNode(name: string): Promise<void> {
  const core = testCluster().kc.makeApiClient(k8s.CoreV1Api);
  await core.deleteNode({ name }).catch(() => undefined);
}

export interface SpawnedAgent {
  readonly nodeName: string;
  readonly child: ChildProcess;
  readonly logPath: string;
  /** Resolves to the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  logs(): Promise<string>;
}

/** Starts `bin/virtual-kubelet` as a separate process; killed when the test ends. */
export function spawnAgent(
  t: TestContext,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): SpawnedAgent {
  const c = testCluster();
  const at = args.indexOf('--nodename');
  const nodeName = (at >= 0 ? args[at + 1] : undefined) ?? 'virtual-kubelet';
  const logPath = join(c.dir, `agent-${nodeName}-${randomBytes(2).toString('hex')}.log`);
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => chunks.push(d));
  child.stderr.on('data', (d: Buffer) => chunks.push(d));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)),
  );
  const forget = onOrphaned(() => child.kill('SIGKILL'));
  t.after(async () => {
    forget();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await deleteNode(nodeName);
  });
  return {
    nodeName,
    child,
    logPath,
    exited,
    logs: () => Promise.resolve(Buffer.concat(chunks).toString('utf8')),
  };
}

/**
 * Waits until the Node's Ready condition has `status`; resolves to the Node. The default allows for
 * an agent's start on a busy machine (loading its code, then registering).
 */
export async function waitNodeReady(
  name: string,
  status = 'True',
  timeoutMs = 60_000,
): Promise<k8s.V1Node> {
  const core = testCluster().kc.makeApiClient(k8s.CoreV1Api);
  return waitFor(
    async () => {
      const node = await core.readNode({ name });
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      return ready?.status === status ? node : undefined;
    },
    { what: `node ${name} Ready=${status}`, timeoutMs },
  );
}

/** The pod spec fields a pod needs to run on a test node. */
export function onNode(nodeName: string): Pick<k8s.V1PodSpec, 'nodeName' | 'tolerations'> {
  return {
    nodeName,
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
  };
}

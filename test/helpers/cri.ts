/**
 * The cri provider's tests: one dev runtime (containerd, registries, test images) per test file,
 * and providers on it, each with its own node name, pod CIDR and state directory.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import { DevRuntime, type RuntimeInfo } from '../../src/devcluster/index.js';
import { silentLogger } from '../../src/log.js';
import { CriProvider, removeGuard, type CriConfig } from '../../src/providers/cri/index.js';
import { startNode, uniqueNodeName, type InProcessNode } from './agent.js';
import { testNamespace } from './cluster.js';
import { randomPodCidr } from './process-pods.js';

export interface FileRuntime {
  /** The file's scratch directory (the runtime's is `rt/` in it); removed after the file. */
  readonly dir: string;
  /** What the runtime offers; throws until the file's `before` hook has started it. */
  readonly info: RuntimeInfo;
}

/**
 * Starts a dev runtime in a fresh directory `<tmp>/<prefix>XXXXXX` before the file's tests and
 * stops it, removing the directory, after them.
 */
export function runtimeForFile(prefix: string): FileRuntime {
  let dir = '';
  let runtime: DevRuntime | undefined;
  let info: RuntimeInfo | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    // The runner's sweep of stale vk-e2e-* directories leaves those of a live owner alone.
    await writeFile(join(dir, 'owner.pid'), String(process.pid));
    runtime = new DevRuntime({ dir: join(dir, 'rt') });
    info = await runtime.start();
  });
  after(async () => {
    await runtime?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return dir;
    },
    get info() {
      if (!info) throw new Error('the dev runtime did not start');
      return info;
    },
  };
}

export interface CriProviderSpec {
  readonly nodeName: string;
  /** Given over the defaults: the runtime's endpoint, a state directory in the file's. */
  readonly config?: Partial<CriConfig>;
  readonly clusterDNS?: readonly string[];
}

/** A cri provider on the file's runtime, on 127.0.0.1, with a state directory of the node's. */
export function criProvider(rt: FileRuntime, spec: CriProviderSpec): CriProvider {
  return new CriProvider({
    nodeName: spec.nodeName,
    nodeIP: '127.0.0.1',
    ...(spec.clusterDNS ? { clusterDNS: spec.clusterDNS } : {}),
    config: {
      runtimeEndpoint: rt.info.runtimeEndpoint,
      stateDir: join(rt.dir, 'state', spec.nodeName),
      ...spec.config,
    },
    logger: silentLogger,
  });
}

/** Whatever the core has not deleted yet goes: sandboxes, containers, logs, the node's guard. */
export async function removeAll(
  provider: CriProvider,
  nodeName: string,
  timeoutMs = 60_000,
): Promise<void> {
  for (const pod of await provider.getPods())
    await provider.deletePod(pod, AbortSignal.timeout(timeoutMs)).catch(() => undefined);
  await provider.close();
  removeGuard(nodeName);
}

export interface CriNode {
  /** A namespace of the test's own. */
  readonly ns: string;
  readonly nodeName: string;
  readonly node: InProcessNode;
  readonly podCidr: string;
  readonly provider: CriProvider;
}

/**
 * A namespace, and a node of the cri provider on the file's runtime with a fresh name and pod
 * CIDR, serving the kubelet API; its pods and guard are removed when the test ends.
 */
export async function criNode(
  t: TestContext,
  rt: FileRuntime,
  options: {
    /** Of the node's name: `vk-<prefix>-<random>`. */
    readonly prefix: string;
    readonly config?: Partial<CriConfig>;
    readonly clusterDNS?: readonly string[];
  },
): Promise<CriNode> {
  const ns = await testNamespace(t);
  const nodeName = uniqueNodeName(options.prefix);
  const podCidr = randomPodCidr();
  const provider = criProvider(rt, {
    nodeName,
    ...(options.clusterDNS ? { clusterDNS: options.clusterDNS } : {}),
    config: { podCIDR: podCidr, ...options.config },
  });
  const node = await startNode(t, { nodeName, api: true, provider });
  t.after(() => removeAll(provider, nodeName));
  return { ns, nodeName, node, podCidr, provider };
}

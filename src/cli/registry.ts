import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage, invalidInput, VirtualKubeletError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Provider } from '../provider.js';
import { KubernetesProvider, parseKubernetesConfig } from '../providers/kubernetes/index.js';
import { MockProvider, parseMockConfig } from '../providers/mock/index.js';
import { parseCidr, parseProcessConfig, ProcessProvider } from '../providers/process/index.js';

/** What a provider factory gets from the command line. */
export interface ProviderContext {
  readonly nodeName: string;
  /** `--provider-config`, when given. */
  readonly configPath?: string;
  readonly nodeIP: string;
  /** `--pod-cidr`, when given. */
  readonly podCIDR?: string;
  /** `--cluster-dns`: the cluster DNS servers for pods with dnsPolicy ClusterFirst. Default: none. */
  readonly clusterDNS?: readonly string[];
  /** `--cluster-domain`. Default: `cluster.local`. */
  readonly clusterDomain?: string;
  readonly logger: Logger;
}

/** Throws `InvalidInput` (one line naming the flag) when `--pod-cidr` is not an IPv4 CIDR. */
export function checkPodCidr(text: string): void {
  parseCidr(text, '--pod-cidr');
}

/**
 * Makes a provider. What it holds is released through the contract's optional
 * `close(signal)`, which the node calls once it has stopped.
 */
type Factory = (ctx: ProviderContext) => Promise<Provider>;

/**
 * Reads `--provider-config` as JSON and validates it with the provider's `parse`. Every failure
 * is an `InvalidInput` whose message is one line starting with the file's path.
 */
export async function readProviderConfig<T>(path: string, parse: (json: unknown) => T): Promise<T> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw invalidInput(`${path}: cannot read the provider config: ${errorMessage(err)}`, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalidInput(`${path}: not valid JSON: ${errorMessage(err)}`, err);
  }
  try {
    return parse(json);
  } catch (err) {
    throw invalidInput(`${path}: ${errorMessage(err)}`, err);
  }
}

const mock =
  (notify: boolean): Factory =>
  async (ctx) => {
    const config = ctx.configPath ? await readProviderConfig(ctx.configPath, parseMockConfig) : {};
    return new MockProvider({
      nodeName: ctx.nodeName,
      // Pods get addresses of the mock's podCIDR; their host is the node.
      config: { hostIP: ctx.nodeIP, ...config },
      logger: ctx.logger,
      notify,
    });
  };

const processProvider: Factory = async (ctx) => {
  const config = ctx.configPath ? await readProviderConfig(ctx.configPath, parseProcessConfig) : {};
  return new ProcessProvider({
    nodeName: ctx.nodeName,
    nodeIP: ctx.nodeIP,
    ...(ctx.podCIDR !== undefined ? { podCIDR: ctx.podCIDR } : {}),
    ...(ctx.clusterDNS ? { clusterDNS: ctx.clusterDNS } : {}),
    ...(ctx.clusterDomain !== undefined ? { clusterDomain: ctx.clusterDomain } : {}),
    config,
    logger: ctx.logger,
  });
};

const kubernetesProvider: Factory = async (ctx) => {
  if (!ctx.configPath)
    throw invalidInput(
      'the kubernetes provider needs --provider-config with {"kubeconfig": "<remote cluster kubeconfig>"}',
    );
  const config = await readProviderConfig(ctx.configPath, parseKubernetesConfig);
  return KubernetesProvider.create({
    nodeName: ctx.nodeName,
    nodeIP: ctx.nodeIP,
    config,
    // A relative kubeconfig path is read from the provider config's folder.
    baseDir: dirname(ctx.configPath),
    logger: ctx.logger,
  });
};

/** The only place that names the built-in providers. */
const PROVIDERS: Readonly<Record<string, { description: string; create: Factory }>> = {
  mock: { description: 'pods run in memory and report Running at once', create: mock(true) },
  'mock-polling': {
    description: 'the mock without status notifications: the core polls it',
    create: mock(false),
  },
  process: {
    description: 'containers run as local processes in Linux namespaces, limited by cgroups',
    create: processProvider,
  },
  kubernetes: {
    description: 'pods run in another Kubernetes cluster, whose free capacity the node offers',
    create: kubernetesProvider,
  },
};

export const providerNames = (): string[] => Object.keys(PROVIDERS);

export async function createProvider(name: string, ctx: ProviderContext): Promise<Provider> {
  const entry = PROVIDERS[name];
  if (!entry)
    throw new VirtualKubeletError(
      'InvalidInput',
      `unknown provider '${name}': choose one of ${providerNames().join(', ')}`,
    );
  return entry.create(ctx);
}

import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorMessage, invalidInput, VirtualKubeletError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Provider } from '../provider.js';
import { CriProvider, parseCriConfig, removeGuard } from '../providers/cri/index.js';
import { parseExternalConfig, startExternalProvider } from '../providers/external/index.js';
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

const external: Factory = async (ctx) => {
  if (!ctx.configPath)
    throw invalidInput('--provider external needs --provider-config (address and/or command)');
  const config = await readProviderConfig(ctx.configPath, parseExternalConfig);
  return startExternalProvider({ nodeName: ctx.nodeName, config, logger: ctx.logger });
};

const criProvider: Factory = async (ctx) => {
  if (!ctx.configPath)
    throw invalidInput(
      '--provider cri needs --provider-config with {"runtimeEndpoint": "unix:///path/to/socket"}',
    );
  const config = await readProviderConfig(ctx.configPath, parseCriConfig);
  return new CriProvider({
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
const PROVIDERS: Readonly<
  Record<
    string,
    {
      description: string;
      create: Factory;
      parse: (json: unknown) => unknown;
      /** See {@link removeHostState}. */
      removeHostState?: (nodeName: string) => void;
    }
  >
> = {
  mock: {
    description: 'pods run in memory and report Running at once',
    create: mock(true),
    parse: parseMockConfig,
  },
  'mock-polling': {
    description: 'the mock without status notifications: the core polls it',
    create: mock(false),
    parse: parseMockConfig,
  },
  process: {
    description: 'containers run as local processes in Linux namespaces, limited by cgroups',
    create: processProvider,
    parse: parseProcessConfig,
  },
  external: {
    description: 'a provider in another process, in any language, over the provider protocol',
    create: external,
    parse: parseExternalConfig,
  },
  cri: {
    description: 'real containers from OCI images through a CRI v1 runtime (containerd)',
    create: criProvider,
    parse: parseCriConfig,
    removeHostState: removeGuard,
  },
  kubernetes: {
    description: 'pods run in another Kubernetes cluster, whose free capacity the node offers',
    create: kubernetesProvider,
    parse: parseKubernetesConfig,
  },
};

export const providerNames = (): string[] => Object.keys(PROVIDERS);

/**
 * Checks a provider's name and reads its `--provider-config` (one-line `InvalidInput` errors, as
 * {@link createProvider} gives them) without making the provider: a standby of `--leader-elect`
 * makes it only once it leads, yet refuses a bad configuration at start.
 */
export async function checkProvider(name: string, configPath: string | undefined): Promise<void> {
  const entry = PROVIDERS[name];
  if (!entry)
    throw new VirtualKubeletError(
      'InvalidInput',
      `unknown provider '${name}': choose one of ${providerNames().join(', ')}`,
    );
  if (configPath !== undefined) await readProviderConfig(configPath, entry.parse);
}

export async function createProvider(name: string, ctx: ProviderContext): Promise<Provider> {
  const entry = PROVIDERS[name];
  if (!entry)
    throw new VirtualKubeletError(
      'InvalidInput',
      `unknown provider '${name}': choose one of ${providerNames().join(', ')}`,
    );
  return entry.create(ctx);
}

/**
 * Removes what a provider keeps on the host for pods that outlive the agent (the cri provider's
 * guard, in nftables), for a caller that knows the node's pods are gone for good: it stopped the
 * runtime they ran in. Nothing for a provider that keeps nothing there. Never throws.
 */
export function removeHostState(name: string, nodeName: string): void {
  PROVIDERS[name]?.removeHostState?.(nodeName);
}

import { VirtualKubeletError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Provider } from '../provider.js';
import { loadMockConfig, MockProvider } from '../providers/mock/index.js';
import { loadProcessConfig, ProcessProvider } from '../providers/process/index.js';

/** What a provider factory gets from the command line. */
export interface ProviderContext {
  readonly nodeName: string;
  /** `--provider-config`, when given. */
  readonly configPath?: string;
  readonly nodeIP: string;
  readonly logger: Logger;
}

/** A provider and how to release what it holds. */
export interface ProviderInstance {
  readonly provider: Provider;
  close(): Promise<void>;
}

type Factory = (ctx: ProviderContext) => Promise<ProviderInstance>;

const mock =
  (notify: boolean): Factory =>
  async (ctx) => {
    const config = ctx.configPath ? await loadMockConfig(ctx.configPath) : {};
    const provider = new MockProvider({
      nodeName: ctx.nodeName,
      config: { podIP: ctx.nodeIP, hostIP: ctx.nodeIP, ...config },
      logger: ctx.logger,
      notify,
    });
    return { provider, close: () => provider.close() };
  };

const processProvider: Factory = async (ctx) => {
  const config = ctx.configPath ? await loadProcessConfig(ctx.configPath) : {};
  const provider = new ProcessProvider({
    nodeName: ctx.nodeName,
    nodeIP: ctx.nodeIP,
    config,
    logger: ctx.logger,
  });
  return { provider, close: () => provider.close() };
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
};

export const providerNames = (): string[] => Object.keys(PROVIDERS);

export async function createProvider(
  name: string,
  ctx: ProviderContext,
): Promise<ProviderInstance> {
  const entry = PROVIDERS[name];
  if (!entry)
    throw new VirtualKubeletError(
      'InvalidInput',
      `unknown provider '${name}': choose one of ${providerNames().join(', ')}`,
    );
  return entry.create(ctx);
}

import { startExternalProvider } from '../../src/providers/external/index.js';
import { providerContractSuite } from '../../src/testing/index.js';
import { PYTHON_MOCK, protocolDescriptorSet } from '../helpers/example-providers.js';

// The Python example provider (Debian's python3-grpcio), started by the external provider.
providerContractSuite('external provider: examples/providers/python-mock', async () => {
  const provider = await startExternalProvider({
    nodeName: 'conformance-node',
    config: {
      command: ['/usr/bin/python3', PYTHON_MOCK],
      env: { VK_PROVIDER_DESCRIPTOR_SET: protocolDescriptorSet() },
    },
  });
  return { provider, close: () => provider.close(AbortSignal.timeout(10_000)) };
});

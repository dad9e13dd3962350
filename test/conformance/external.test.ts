import { before } from 'node:test';
import { startExternalProvider } from '../../src/providers/external/index.js';
import { providerContractSuite } from '../../src/testing/index.js';
import { buildGoMock } from '../helpers/example-providers.js';

// The Go example provider, started by the external provider for each test: the contract's
// suite across the protocol, from another language.
let binary = '';
before(async () => {
  binary = await buildGoMock();
});

providerContractSuite('external provider: examples/providers/go-mock', async () => {
  const provider = await startExternalProvider({
    nodeName: 'conformance-node',
    config: { command: [binary], connectTimeoutMs: 30_000 },
  });
  return { provider, close: () => provider.close(AbortSignal.timeout(10_000)) };
});

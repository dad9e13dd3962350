import { MockProvider } from '../../src/providers/mock/index.js';
import { providerContractSuite } from '../../src/testing/index.js';

for (const notify of [true, false]) {
  providerContractSuite(`mock provider (${notify ? 'push' : 'polled'})`, () => {
    const provider = new MockProvider({ nodeName: 'conformance-node', notify });
    return Promise.resolve({ provider, close: () => provider.close() });
  });
}

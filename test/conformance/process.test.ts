import { ProcessProvider } from '../../src/providers/process/index.js';
import { processStateDir, randomPodCidr, reap } from '../helpers/process-pods.js';
import { providerContractSuite } from '../../src/testing/index.js';

let n = 0;
providerContractSuite('process provider', () => {
  const nodeName = `conformance-process-${String(++n)}`;
  const dir = processStateDir();
  const provider = new ProcessProvider({
    nodeName,
    // A pod network of its own (a random CIDR, so runs at once do not collide).
    config: { stateDir: dir, monitorIntervalMs: 100, podCIDR: randomPodCidr() },
  });
  return Promise.resolve({
    provider,
    close: async () => {
      await provider.close();
      // The provider leaves pod processes running on close (an agent restart adopts them).
      reap(dir, nodeName);
    },
  });
});

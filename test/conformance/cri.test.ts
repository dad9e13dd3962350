import { providerContractSuite } from '../../src/testing/index.js';
import { criProvider, removeAll, runtimeForFile } from '../helpers/cri.js';
import { randomPodCidr } from '../helpers/process-pods.js';

// A real containerd (the dev runtime) for the whole file; each test gets its own node name,
// pod CIDR and state directory on it.
const rt = runtimeForFile('vk-conformance-cri-');

let n = 0;
providerContractSuite(
  'cri provider',
  () => {
    const nodeName = `conformance-cri-${String(++n)}`;
    const provider = criProvider(rt, {
      nodeName,
      config: { podCIDR: randomPodCidr(), syncIntervalMs: 200 },
    });
    return Promise.resolve({
      provider,
      // Pods the suite left (it deletes most) go with the runtime; the guard goes now.
      close: () => removeAll(provider, nodeName, 30_000),
    });
  },
  // The suite's pods run the busybox test image of the local registry, started by then.
  {
    get image(): string {
      return rt.info.images.busybox;
    },
  },
);
